//! Where desired runners become real: an EphemeralRunnerSet in Kubernetes ([`kubernetes`]) or
//! runner containers on one Docker host ([`docker`]). The listener loop only talks to this trait.

pub mod docker;
pub mod kubernetes;
pub mod recording;

use rarc_actions::types::{JobCompleted, JobStarted};
use std::future::Future;

/// Failures of a backend. Each variant names the operation that failed.
#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    /// A resource the backend must change does not exist (e.g. the EphemeralRunnerSet).
    #[error("{what} not found")]
    NotFound { what: String },
    /// Any other failure of the backend's API (Kubernetes, Docker, Actions service).
    #[error("{operation} failed: {message}")]
    Api { operation: &'static str, message: String },
}

/// A runtime for runners. One value per scale set served.
///
/// Calls come from the single listener loop of that scale set, in message order (spec §9.3):
/// `job_started` for each `JobStarted`, `job_completed` for each `JobCompleted`, then
/// `apply_desired` once per message and once per empty poll.
pub trait Backend: Send + Sync + 'static {
    /// Makes `target` runners exist (spec §9.4/§9.5). `patch_id` follows the ARC rules: non-zero
    /// means "scale up only", 0 means "converge exactly, trimming idle runners".
    fn apply_desired(&self, target: i64, patch_id: i64) -> impl Future<Output = Result<(), BackendError>> + Send;

    /// A job started on one of our runners (spec §9.6). A runner that is not ours is not an error.
    fn job_started(&self, job: &JobStarted) -> impl Future<Output = Result<(), BackendError>> + Send;

    /// A job completed (spec §9.7). Kubernetes does nothing here; Docker may clean up early.
    fn job_completed(&self, job: &JobCompleted) -> impl Future<Output = Result<(), BackendError>> + Send;

    /// The listener stops (signal or fatal error): finish work in progress so nothing is left
    /// half-done (e.g. a runner registered at the service whose container does not exist yet),
    /// and start nothing new. Called once, after the last `apply_desired`. Default: nothing.
    fn shutdown(&self) -> impl Future<Output = ()> + Send {
        async {}
    }
}
