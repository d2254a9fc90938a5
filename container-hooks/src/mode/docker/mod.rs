//! The docker mode (`container-hooks.md` §3). Not implemented yet: every command fails with a clear
//! `::error::` and exit 1.

use super::{Hook, Invocation, Mode};
use crate::error::HookError;
use crate::exit::StepExit;
use crate::protocol::{Command, HookContainer, PrepareJobArgs, PrepareJobResponse, ScriptStepArgs};

/// Containers on the runner's Docker daemon.
#[derive(Debug, Clone, Default)]
pub struct Docker;

fn not_yet(command: Command) -> HookError {
    HookError::NotImplemented {
        mode: Mode::Docker,
        command,
    }
}

impl Hook for Docker {
    async fn prepare_job(&self, _: &Invocation, _: &PrepareJobArgs) -> Result<PrepareJobResponse, HookError> {
        Err(not_yet(Command::PrepareJob))
    }

    async fn run_script_step(&self, _: &Invocation, _: &ScriptStepArgs) -> Result<StepExit, HookError> {
        Err(not_yet(Command::RunScriptStep))
    }

    async fn run_container_step(&self, _: &Invocation, _: &HookContainer) -> Result<StepExit, HookError> {
        Err(not_yet(Command::RunContainerStep))
    }

    async fn cleanup_job(&self, _: &Invocation) -> Result<(), HookError> {
        Err(not_yet(Command::CleanupJob))
    }
}
