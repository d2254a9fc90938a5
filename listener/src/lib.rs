//! rarc-listener: the scale-set listener (spec `actions-protocol.md` §2, §8–§10, §13–§15).
//!
//! - [`config`]: config.json (§2.2) and its validation;
//! - [`listener`]: the session loop (§9) as [`listener::Listener::run`];
//! - [`backend`]: where desired runners become real ([`backend::kubernetes`], Docker);
//! - [`metrics`] (§10) and [`health`] (`/healthz` and the HTTP server);
//! - [`app`]: command line and process wiring used by `main`.

pub mod app;
pub mod backend;
pub mod config;
pub mod health;
pub mod listener;
pub mod metrics;
