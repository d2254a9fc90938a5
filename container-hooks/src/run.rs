//! One hook invocation, the protocol core shared by every mode: read the request from stdin, check
//! the environment, parse the request, call the mode, write the response file, and turn the outcome
//! into the exit code (0, the step's own code, `128 + signal`, or 1 with one `::error::` line).
//!
//! Nothing is started before the input has been checked, so bad input leaves nothing running.

use crate::env::RunnerEnv;
use crate::error::HookError;
use crate::exit::{StepExit, Termination, signal_name};
use crate::mode::docker::Docker;
use crate::mode::k8s::{Kubernetes, Storage};
use crate::mode::{Hook, Invocation, Mode};
use crate::protocol::input;
use crate::protocol::response::require_response_file;
use crate::protocol::{Request, RequestArgs};
use crate::signals::Cancellation;
use crate::workflow_command;
use std::time::Duration;
use tokio::io::AsyncRead;

/// The settings of one invocation (from the command line).
#[derive(Debug, Clone)]
pub struct Config {
    pub mode: Mode,
    /// How long to wait for stdin to be closed.
    pub stdin_timeout: Duration,
    /// How long a cancelled local process gets before SIGKILL.
    pub kill_grace: Duration,
}

/// Runs one invocation and returns the process exit code. Errors are reported on stdout as one
/// `::error::` line.
pub async fn run<R: AsyncRead + Unpin>(config: &Config, stdin: R, env: RunnerEnv, cancel: Cancellation) -> u8 {
    match invoke(config, stdin, env, cancel).await {
        Ok(code) => code,
        Err(e) => {
            tracing::debug!(error = %e, "invocation failed");
            workflow_command::error(&e.to_string());
            e.exit_code()
        }
    }
}

async fn invoke<R: AsyncRead + Unpin>(
    config: &Config,
    stdin: R,
    env: RunnerEnv,
    cancel: Cancellation,
) -> Result<u8, HookError> {
    let bytes = input::read_all(stdin, config.stdin_timeout, &cancel).await?;
    env.require(config.mode.required_env())?;
    let request = Request::parse(&bytes)?;
    tracing::info!(mode = %config.mode, command = %request.command(), "request");
    let invocation = Invocation {
        mode: config.mode,
        env,
        state: request.state.clone(),
        cancel,
        kill_grace: config.kill_grace,
    };
    match config.mode {
        Mode::Docker => execute(&Docker, &invocation, &request).await,
        Mode::K8s => execute(&Kubernetes::new(Storage::SharedVolume), &invocation, &request).await,
        Mode::K8sNoVolume => execute(&Kubernetes::new(Storage::NoVolume), &invocation, &request).await,
    }
}

/// Calls `hook` for `request` and returns the exit code; the response of `prepare_job` is checked
/// against the request and written to `responseFile`.
pub async fn execute<H: Hook>(hook: &H, invocation: &Invocation, request: &Request) -> Result<u8, HookError> {
    match &request.args {
        RequestArgs::PrepareJob(args) => {
            // Before anything is created: a response that cannot be delivered fails the job anyway.
            require_response_file(&request.response_file)?;
            let response = hook.prepare_job(invocation, args).await?;
            response.validate(args)?;
            response.write_to(&request.response_file)?;
            Ok(0)
        }
        RequestArgs::RunScriptStep(args) => Ok(step_code(hook.run_script_step(invocation, args).await?)),
        RequestArgs::RunContainerStep(args) => Ok(step_code(hook.run_container_step(invocation, args).await?)),
        RequestArgs::CleanupJob => {
            hook.cleanup_job(invocation).await?;
            Ok(0)
        }
    }
}

/// The exit code of a step command. A step killed by a signal (not a cancellation) is also reported
/// as an error annotation; a plain non-zero exit is not, as the runner already reports its code.
fn step_code(exit: StepExit) -> u8 {
    if let (Termination::Signaled(signal), None) = (exit.termination, exit.cancelled) {
        workflow_command::error(&format!("the step was killed by {}", signal_name(signal)));
    }
    exit.hook_code()
}
