//! The GitHub / Actions scale-set protocol (spec `actions-protocol.md`).
//!
//! - [`ActionsClient`]: the token chain (§4) and every admin-token call of §6.
//! - [`MessageSession`]: one message session and the message-queue calls (§4.7, §6.10–§6.12).
//! - [`scaling`]: the desired-runner formula and patchID rules (§9.4).
//! - Pure building blocks: [`config_url`] (§3), [`retry`] (§5.1), [`proxy`] (§2.3), [`lenient`] (§5.6).

mod actions_url;
pub mod auth;
pub mod client;
pub mod config_url;
pub mod error;
pub mod http;
pub mod lenient;
pub mod proxy;
pub mod retry;
pub mod scaling;
pub mod secret;
pub mod session;
pub mod types;
pub mod user_agent;

pub use auth::Credentials;
pub use client::{ActionsClient, ClientConfig};
pub use config_url::{GitHubConfig, Scope};
pub use error::{Error, Result};
pub use proxy::ProxyEnv;
pub use retry::RetryPolicy;
pub use secret::Secret;
pub use session::MessageSession;
pub use user_agent::UserAgentInfo;
