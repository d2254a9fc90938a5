//! rarc-hooks: the runner container hooks (`ACTIONS_RUNNER_CONTAINER_HOOKS`) as one native binary
//! with three modes (`docker`, `k8s`, `k8s-novolume`), a drop-in for
//! actions/runner-container-hooks. See `docs/hooks.md`.
//!
//! This crate holds the protocol core every mode shares: the request and response
//! ([`protocol`]), the runner's environment ([`env`]), live step output ([`output`], [`process`]),
//! exit codes ([`exit`]), cancellation by SIGINT/SIGTERM ([`signals`]), workflow commands
//! ([`workflow_command`]) and one invocation end to end ([`run`]). The modes live in [`mode`].

pub mod env;
pub mod error;
pub mod exit;
pub mod mode;
pub mod output;
pub mod process;
pub mod protocol;
pub mod run;
pub mod signals;
pub mod workflow_command;

pub use error::HookError;
pub use mode::{Hook, Invocation, Mode};
pub use run::{Config, execute, run};
