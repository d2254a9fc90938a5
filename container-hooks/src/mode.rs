//! Modes: one implementation of the four commands per backend, chosen by the first argument.
//!
//! | mode | replaces | ships as |
//! | --- | --- | --- |
//! | `docker` | `packages/docker` | `<dir>/index.js` (any directory; `docker` by convention) |
//! | `k8s` | `packages/k8s` v0.7.0, shared work volume | `/home/runner/k8s/index.js` |
//! | `k8s-novolume` | `packages/k8s` v0.8.x, no shared volume | `/home/runner/k8s-novolume/index.js` |
//!
//! A mode implements [`Hook`]; the protocol core ([`crate::run`]) reads and checks the request, calls
//! the mode, writes the response and turns the outcome into the exit code.

pub mod docker;
pub mod k8s;

use crate::env::{self, Required, RunnerEnv};
use crate::error::HookError;
use crate::exit::StepExit;
use crate::protocol::{HookContainer, PrepareJobArgs, PrepareJobResponse, ScriptStepArgs};
use crate::signals::Cancellation;
use serde_json::Value;
use std::future::Future;
use std::time::Duration;

/// The mode, as the shims pass it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, clap::ValueEnum)]
pub enum Mode {
    /// Containers on the runner's Docker daemon (actions/runner-container-hooks `packages/docker`).
    Docker,
    /// Kubernetes, job pod sharing the runner's work volume (the reference k8s hook 0.7.0).
    #[value(name = "k8s", alias = "k8s-volume")]
    K8s,
    /// Kubernetes without a shared volume: files copied into the job pod (the reference 0.8.x).
    #[value(name = "k8s-novolume")]
    K8sNoVolume,
}

impl Mode {
    pub const ALL: [Mode; 3] = [Self::Docker, Self::K8s, Self::K8sNoVolume];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Docker => "docker",
            Self::K8s => "k8s",
            Self::K8sNoVolume => "k8s-novolume",
        }
    }

    /// The mode a shim infers from the name of the directory it sits in (`/home/runner/k8s/index.js`
    /// → `k8s`). The shims implement the same rule; this is its reference.
    pub fn from_dir_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|m| m.as_str() == name)
    }

    /// The environment variables this mode cannot work without.
    pub fn required_env(self) -> &'static [Required] {
        match self {
            Self::Docker => &[env::GITHUB_WORKSPACE, env::RUNNER_NAME],
            Self::K8s | Self::K8sNoVolume => &[env::ACTIONS_RUNNER_POD_NAME, env::GITHUB_WORKSPACE],
        }
    }

    /// Whether the commands are implemented in this build.
    pub fn implemented(self) -> bool {
        self == Self::Docker
    }
}

impl std::fmt::Display for Mode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What every command gets besides its `args`.
#[derive(Debug, Clone)]
pub struct Invocation {
    pub mode: Mode,
    /// The hook's environment (the runner's, with its host paths).
    pub env: RunnerEnv,
    /// The request's `state` (what `prepare_job` returned), if any.
    pub state: Option<Value>,
    /// Cancelled by the first SIGINT/SIGTERM.
    pub cancel: Cancellation,
    /// How long a cancelled local process gets before SIGKILL.
    pub kill_grace: Duration,
}

/// The four commands of one mode.
///
/// Contract: step output goes to stdout/stderr live ([`crate::process::run`],
/// [`crate::output::pump`]); a step's end is returned as a [`StepExit`] (never an error), so that
/// its real code becomes the hook's; an `Err` is a failure of the hook itself (one `::error::` line,
/// exit 1). When [`Invocation::cancel`] fires, stop what this invocation started and return
/// promptly: the runner calls `cleanup_job` next, which must work after any earlier failure or
/// cancellation and when there is nothing to clean.
pub trait Hook {
    fn prepare_job(
        &self,
        invocation: &Invocation,
        args: &PrepareJobArgs,
    ) -> impl Future<Output = Result<PrepareJobResponse, HookError>>;

    fn run_script_step(
        &self,
        invocation: &Invocation,
        args: &ScriptStepArgs,
    ) -> impl Future<Output = Result<StepExit, HookError>>;

    fn run_container_step(
        &self,
        invocation: &Invocation,
        args: &HookContainer,
    ) -> impl Future<Output = Result<StepExit, HookError>>;

    fn cleanup_job(&self, invocation: &Invocation) -> impl Future<Output = Result<(), HookError>>;
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::ValueEnum;

    #[test]
    fn names_and_aliases() {
        for m in Mode::ALL {
            assert_eq!(Mode::from_str(m.as_str(), false), Ok(m));
            assert_eq!(Mode::from_dir_name(m.as_str()), Some(m));
        }
        assert_eq!(Mode::from_str("k8s-volume", false), Ok(Mode::K8s));
        assert_eq!(Mode::from_dir_name("hooks"), None);
        assert_eq!(Mode::from_dir_name("K8s"), None);
    }

    #[test]
    fn required_env_per_mode() {
        let names = |m: Mode| m.required_env().iter().map(|r| r.name).collect::<Vec<_>>();
        assert_eq!(names(Mode::Docker), ["GITHUB_WORKSPACE", "RUNNER_NAME"]);
        assert_eq!(names(Mode::K8s), ["ACTIONS_RUNNER_POD_NAME", "GITHUB_WORKSPACE"]);
        assert_eq!(names(Mode::K8sNoVolume), names(Mode::K8s));
    }
}
