//! rarc-sim: a faithful simulator of the GitHub API and the Actions scale-set service
//! (spec `actions-protocol.md` §15.1), plus a simulated runner process.
//!
//! Start one in-process with [`SimServer::start`], or as `rarc-sim serve`. Clients reach it as a GitHub
//! Enterprise Server: config URL `http://127.0.0.1:PORT/<org>`, REST API under `/api/v3`, the Actions
//! service under `/tenant/123/`, the message broker under `/broker/`, the control API under `/_sim/`.

pub mod auth;
pub mod calllog;
pub mod config;
pub mod error;
pub mod faults;
pub mod job;
pub mod proxy;
pub mod runner;
pub mod runner_api;
pub mod server;
pub mod state;
pub mod stats;
pub mod testing;
pub mod tls;

pub use rarc_actions::lenient::BOM;
pub use server::{Sim, SimOptions, SimServer};
