//! Running one local process as (part of) a step: its output pumped live to the log, its real exit
//! status returned, and cancellation applied to its whole process group.
//!
//! The process gets its own process group, so that the signal the hook received reaches the step's
//! whole tree (a shell and what it started) and nothing it started outlives the hook. On
//! cancellation the group gets the hook's signal, then SIGKILL after the grace period (or at once on
//! a second signal). There is no timeout otherwise: a silent step is waited for as long as it runs.

use crate::error::HookError;
use crate::exit::{StepExit, Termination};
use crate::output::{Sinks, pump};
use crate::signals::Cancellation;
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use std::process::Stdio;
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use tokio::process::Command;

/// How long the output of a process may lag behind its exit (a background grandchild can hold the
/// pipes open forever); what is still unread after that is dropped and the group is killed.
pub const DRAIN_GRACE: Duration = Duration::from_secs(2);

/// The default time a cancelled step gets between the forwarded signal and SIGKILL. The runner
/// sends SIGTERM 7.5 s after SIGINT, so this ends the step well before.
pub const DEFAULT_KILL_GRACE: Duration = Duration::from_secs(5);

/// What the process reads on stdin.
#[derive(Clone, Default)]
pub enum Input {
    /// `/dev/null`.
    #[default]
    Null,
    /// These bytes, then end of file (a password for `--password-stdin`, a script).
    Bytes(Vec<u8>),
}

impl std::fmt::Debug for Input {
    // The bytes may be a secret.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Null => f.write_str("Null"),
            Self::Bytes(b) => write!(f, "Bytes({} bytes)", b.len()),
        }
    }
}

/// Options for [`run`].
#[derive(Debug, Clone)]
pub struct RunOptions {
    pub input: Input,
    /// Between the forwarded signal and SIGKILL.
    pub kill_grace: Duration,
}

impl Default for RunOptions {
    fn default() -> Self {
        Self {
            input: Input::Null,
            kill_grace: DEFAULT_KILL_GRACE,
        }
    }
}

/// Runs `cmd` to its end with its stdout/stderr pumped to `sinks`. The caller sets the program,
/// arguments, environment and working directory; this sets stdio, the process group and
/// kill-on-drop. Secrets belong in the environment or [`Input::Bytes`], never in the arguments.
pub async fn run(
    mut cmd: Command,
    sinks: Sinks,
    cancel: &Cancellation,
    options: RunOptions,
) -> Result<StepExit, HookError> {
    let program = cmd.as_std().get_program().to_string_lossy().into_owned();
    cmd.stdin(match options.input {
        Input::Null => Stdio::null(),
        Input::Bytes(_) => Stdio::piped(),
    })
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .process_group(0)
    .kill_on_drop(true);
    if cancel.is_cancelled() {
        return Err(HookError::Cancelled(cancel.signal().unwrap_or(Signal::SIGINT as i32)));
    }
    let mut child = cmd.spawn().map_err(|source| HookError::Spawn {
        program: program.clone(),
        source,
    })?;
    let group = child.id().and_then(|id| i32::try_from(id).ok()).map(Pid::from_raw);
    tracing::debug!(program, pid = ?group, "started");

    if let (Some(mut stdin), Input::Bytes(bytes)) = (child.stdin.take(), options.input) {
        tokio::spawn(async move {
            // A process that does not read its stdin is not an error.
            let _ = stdin.write_all(&bytes).await;
            let _ = stdin.shutdown().await;
        });
    }
    let Sinks { stdout, stderr } = sinks;
    let mut pumps = Vec::new();
    if let Some(out) = child.stdout.take() {
        pumps.push(tokio::spawn(pump(out, stdout)));
    }
    if let Some(err) = child.stderr.take() {
        pumps.push(tokio::spawn(pump(err, stderr)));
    }

    let wait_error = |source| HookError::Wait {
        program: program.clone(),
        source,
    };
    let status = tokio::select! {
        status = child.wait() => status.map_err(wait_error)?,
        () = cancel.cancelled() => {
            let signal = cancel.signal().and_then(|s| Signal::try_from(s).ok()).unwrap_or(Signal::SIGINT);
            tracing::debug!(program, signal = signal.as_str(), "cancelling the step");
            signal_group(group, signal);
            tokio::select! {
                status = child.wait() => status.map_err(wait_error)?,
                () = tokio::time::sleep(options.kill_grace) => kill_and_wait(&mut child, group).await.map_err(wait_error)?,
                () = cancel.urgent() => kill_and_wait(&mut child, group).await.map_err(wait_error)?,
            }
        }
    };

    let drain = async {
        for p in &mut pumps {
            match p.await {
                Ok(Err(e)) => tracing::debug!(error = %e, "writing step output failed"),
                Err(e) => tracing::debug!(error = %e, "output pump ended abnormally"),
                Ok(Ok(_)) => {}
            }
        }
    };
    let drained = tokio::select! {
        () = drain => true,
        () = tokio::time::sleep(DRAIN_GRACE) => false,
        () = cancel.urgent() => false,
    };
    // Nothing the step started outlives it.
    signal_group(group, Signal::SIGKILL);
    if !drained {
        tracing::debug!(program, "output still open after the process ended; dropped");
        for p in &pumps {
            p.abort();
        }
    }
    let exit = StepExit {
        termination: Termination::from_status(status),
        cancelled: cancel.signal(),
    };
    tracing::debug!(program, ?exit, "ended");
    Ok(exit)
}

fn signal_group(group: Option<Pid>, signal: Signal) {
    if let Some(group) = group {
        // ESRCH: the group is already gone.
        let _ = killpg(group, signal);
    }
}

async fn kill_and_wait(
    child: &mut tokio::process::Child,
    group: Option<Pid>,
) -> std::io::Result<std::process::ExitStatus> {
    signal_group(group, Signal::SIGKILL);
    child.wait().await
}
