//! An in-memory backend that records every call, for tests and dry runs.

use super::{Backend, BackendError};
use rarc_actions::types::{JobCompleted, JobStarted};
use std::sync::{Arc, Mutex};

/// One call the listener made.
#[derive(Debug, Clone, PartialEq)]
pub enum Call {
    Desired { target: i64, patch_id: i64 },
    Started(Box<JobStarted>),
    Completed(Box<JobCompleted>),
}

/// Records calls; can be told to fail. Clones share the record.
#[derive(Debug, Clone, Default)]
pub struct RecordingBackend {
    calls: Arc<Mutex<Vec<Call>>>,
    fail_desired: Arc<Mutex<Option<BackendError>>>,
}

impl RecordingBackend {
    pub fn new() -> Self {
        Self::default()
    }

    /// Every call so far.
    pub fn calls(&self) -> Vec<Call> {
        self.calls
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// `(target, patch_id)` of every `apply_desired`.
    pub fn desired(&self) -> Vec<(i64, i64)> {
        self.calls()
            .into_iter()
            .filter_map(|c| match c {
                Call::Desired { target, patch_id } => Some((target, patch_id)),
                _ => None,
            })
            .collect()
    }

    /// The next `apply_desired` fails with `error`.
    pub fn fail_next_desired(&self, error: BackendError) {
        *self
            .fail_desired
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(error);
    }

    fn push(&self, call: Call) {
        self.calls
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(call);
    }
}

impl Backend for RecordingBackend {
    async fn apply_desired(&self, target: i64, patch_id: i64) -> Result<(), BackendError> {
        if let Some(e) = self
            .fail_desired
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take()
        {
            return Err(e);
        }
        self.push(Call::Desired { target, patch_id });
        Ok(())
    }

    async fn job_started(&self, job: &JobStarted) -> Result<(), BackendError> {
        self.push(Call::Started(Box::new(job.clone())));
        Ok(())
    }

    async fn job_completed(&self, job: &JobCompleted) -> Result<(), BackendError> {
        self.push(Call::Completed(Box::new(job.clone())));
        Ok(())
    }
}

/// Changes nothing, logs every decision (`--backend dry-run`): for trying a config against the
/// Actions service without a cluster.
#[derive(Debug, Clone, Copy, Default)]
pub struct DryRunBackend;

impl Backend for DryRunBackend {
    async fn apply_desired(&self, target: i64, patch_id: i64) -> Result<(), BackendError> {
        tracing::info!(target, patch_id, "dry run: desired runners");
        Ok(())
    }

    async fn job_started(&self, job: &JobStarted) -> Result<(), BackendError> {
        tracing::info!(runner = %job.runner_name, job_id = %job.base.job_id, "dry run: job started");
        Ok(())
    }

    async fn job_completed(&self, job: &JobCompleted) -> Result<(), BackendError> {
        tracing::info!(runner = %job.runner_name, job_id = %job.base.job_id, result = %job.result, "dry run: job completed");
        Ok(())
    }
}
