//! The Kubernetes modes (`container-hooks.md` §2): `k8s` (a work volume shared with the runner pod)
//! and `k8s-novolume` (files copied into the job pod). Not implemented yet: every command fails with
//! a clear `::error::` and exit 1.

use super::{Hook, Invocation, Mode};
use crate::error::HookError;
use crate::exit::StepExit;
use crate::protocol::{Command, HookContainer, PrepareJobArgs, PrepareJobResponse, ScriptStepArgs};

/// How the job pod gets the runner's files.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Storage {
    /// The runner's work volume is mounted into the job pod (`k8s`).
    SharedVolume,
    /// No shared volume: files are copied in and out (`k8s-novolume`).
    NoVolume,
}

/// Job and service containers in a pod next to the runner's.
#[derive(Debug, Clone)]
pub struct Kubernetes {
    pub storage: Storage,
}

impl Kubernetes {
    pub fn new(storage: Storage) -> Self {
        Self { storage }
    }

    fn mode(&self) -> Mode {
        match self.storage {
            Storage::SharedVolume => Mode::K8s,
            Storage::NoVolume => Mode::K8sNoVolume,
        }
    }

    fn not_yet(&self, command: Command) -> HookError {
        HookError::NotImplemented {
            mode: self.mode(),
            command,
        }
    }
}

impl Hook for Kubernetes {
    async fn prepare_job(&self, _: &Invocation, _: &PrepareJobArgs) -> Result<PrepareJobResponse, HookError> {
        Err(self.not_yet(Command::PrepareJob))
    }

    async fn run_script_step(&self, _: &Invocation, _: &ScriptStepArgs) -> Result<StepExit, HookError> {
        Err(self.not_yet(Command::RunScriptStep))
    }

    async fn run_container_step(&self, _: &Invocation, _: &HookContainer) -> Result<StepExit, HookError> {
        Err(self.not_yet(Command::RunContainerStep))
    }

    async fn cleanup_job(&self, _: &Invocation) -> Result<(), HookError> {
        Err(self.not_yet(Command::CleanupJob))
    }
}
