//! `rarc-controller`: a Kubernetes controller for ARC's four `actions.github.com/v1alpha1`
//! resources (arc-controller.md), a drop-in for ARC's `gha-runner-scale-set-controller`.
//!
//! - [`reconcile`]: the AutoscalingRunnerSet, EphemeralRunnerSet, EphemeralRunner and
//!   AutoscalingListener reconcilers;
//! - [`github`]: credentials, proxy and CA resolution and the cached Actions clients;
//! - [`labels`]: label propagation;
//! - [`run`]: watches, leader election, `/healthz` `/readyz` and `/metrics`.

pub mod config;
pub mod context;
pub mod error;
pub mod github;
pub mod labels;
pub mod leader;
pub mod metrics;
pub mod reconcile;
pub mod run;

pub use config::Settings;
pub use context::Context;
pub use error::{Error, Result};
