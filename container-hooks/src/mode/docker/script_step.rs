//! `run_script_step` (`container-hooks.md` §3.3): an exec in the job container with the step's
//! environment, `PATH` = `prependPath` + the container's `PATH`, and `workingDirectory`; output
//! streamed live; the exec's real exit code returned.
//!
//! Cancellation: when the container has `/bin/sh`, the step runs under [`exec::WRAPPER`], which
//! records its pid; the first SIGINT/SIGTERM is delivered to that process tree inside the container
//! ([`exec::KILL_TREE`]), SIGKILL follows after the grace period or a second signal, and the hook
//! returns at the latest shortly after that, whatever the container does.

use super::exec::{self, KILL_TREE, WRAPPER};
use super::spec::{exec_env, path_of, rejoin_args};
use super::{State, docker_err};
use crate::error::HookError;
use crate::exit::{StepExit, Termination};
use crate::mode::Invocation;
use crate::process::DRAIN_GRACE;
use crate::protocol::ScriptStepArgs;
use bollard::Docker;
use bollard::exec::{StartExecOptions, StartExecResults};
use bollard::models::ExecConfig;
use bollard::query_parameters::ContainerArchiveInfoOptions;
use futures::StreamExt;
use nix::sys::signal::Signal;
use std::time::{Duration, Instant};

/// How often the exec is inspected while its output is open (exit detection, cancellation).
const POLL: Duration = Duration::from_millis(500);

/// Where a cancelled step is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stop {
    Running,
    Signalled(Instant),
    Killed(Instant),
}

pub async fn run(docker: &Docker, inv: &Invocation, args: &ScriptStepArgs) -> Result<StepExit, HookError> {
    let state = State::from_invocation(inv);
    let container = state
        .container
        .ok_or(HookError::MissingState("job container (state.container)"))?;

    let prepend = args.prepend_path_joined();
    let container_path = match &prepend {
        Some(_) => {
            let inspect = docker
                .inspect_container(&container, None)
                .await
                .map_err(docker_err(&format!("inspecting the job container {container}")))?;
            inspect
                .config
                .and_then(|c| c.env)
                .and_then(|env| path_of(&env).map(str::to_owned))
        }
        None => None,
    };
    let env = exec_env(
        &args.environment_variables,
        prepend.as_deref(),
        container_path.as_deref(),
    );
    let mut argv = vec![args.entry_point.clone()];
    argv.extend(args.entry_point_args.iter().cloned());
    let argv = rejoin_args(&argv, "args.entryPoint/entryPointArgs")?;

    let has_sh = docker
        .get_container_archive_info(&container, Some(ContainerArchiveInfoOptions { path: "/bin/sh".into() }))
        .await
        .is_ok();
    let pidfile = format!("/tmp/.rarc-hooks-step-{}.pid", uuid::Uuid::new_v4().simple());
    let cmd = if has_sh {
        let mut cmd = vec![
            "/bin/sh".to_owned(),
            "-c".to_owned(),
            WRAPPER.to_owned(),
            pidfile.clone(),
        ];
        cmd.extend(argv);
        cmd
    } else {
        argv
    };
    tracing::debug!(container, wrapped = has_sh, "running the script step");

    let exec = docker
        .create_exec(
            &container,
            ExecConfig {
                attach_stdout: Some(true),
                attach_stderr: Some(true),
                env: Some(env),
                cmd: Some(cmd),
                working_dir: args.working_directory.clone().filter(|w| !w.is_empty()),
                ..Default::default()
            },
        )
        .await
        .map_err(docker_err(&format!(
            "creating the step's exec in the job container {container}"
        )))?;
    let started = docker
        .start_exec(&exec.id, Some(StartExecOptions::default()))
        .await
        .map_err(docker_err("starting the step's exec"))?;
    let StartExecResults::Attached { mut output, .. } = started else {
        return Err(HookError::MissingState("attached exec output"));
    };

    let cancel = &inv.cancel;
    let mut stdout = tokio::io::stdout();
    let mut stderr = tokio::io::stderr();
    let mut poll = tokio::time::interval(POLL);
    poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut exited_at: Option<Instant> = None;
    let mut stop = Stop::Running;
    let signal_in = |sig: &'static str| {
        let pidfile = pidfile.clone();
        let container = container.clone();
        async move {
            if !has_sh {
                return;
            }
            let cmd = vec!["/bin/sh".into(), "-c".into(), KILL_TREE.into(), pidfile, sig.into()];
            if let Err(e) = exec::capture(docker, &container, cmd, Duration::from_secs(5)).await {
                tracing::debug!(error = %e, "signalling the step failed");
            }
        }
    };
    loop {
        tokio::select! {
            item = output.next() => {
                if !exec::forward(item, &mut stdout, &mut stderr, "the exec's output stream").await {
                    break;
                }
            }
            _ = poll.tick() => {
                if exited_at.is_none()
                    && let Ok(i) = docker.inspect_exec(&exec.id).await
                    && i.running == Some(false)
                {
                    exited_at = Some(Instant::now());
                }
                if exited_at.is_some_and(|t| t.elapsed() >= DRAIN_GRACE) {
                    tracing::debug!("the step ended but its output is still open; dropped");
                    break;
                }
                match stop {
                    Stop::Signalled(at) if at.elapsed() >= inv.kill_grace => {
                        signal_in("KILL").await;
                        stop = Stop::Killed(Instant::now());
                    }
                    Stop::Killed(at) if at.elapsed() >= DRAIN_GRACE => {
                        tracing::debug!("the cancelled step did not end; leaving it to cleanup_job");
                        break;
                    }
                    _ => {}
                }
            }
            () = cancel.cancelled(), if stop == Stop::Running => {
                let sig = match cancel.signal().and_then(|s| Signal::try_from(s).ok()) {
                    Some(Signal::SIGTERM) => "TERM",
                    _ => "INT",
                };
                tracing::debug!(sig, "cancelling the script step");
                signal_in(sig).await;
                stop = Stop::Signalled(Instant::now());
            }
            () = cancel.urgent(), if matches!(stop, Stop::Signalled(_)) => {
                signal_in("KILL").await;
                stop = Stop::Killed(Instant::now());
            }
        }
    }

    let code = exec::exit_code(docker, &exec.id).await;
    let termination = match (code, cancel.signal()) {
        (Some(code), _) => Termination::Exited(code),
        (None, Some(signal)) => Termination::Signaled(signal),
        (None, None) => {
            return Err(HookError::Docker {
                action: "the step's exec ended without an exit code".into(),
                source: bollard::errors::Error::DockerStreamError {
                    error: format!("exec {} reported no exit code", exec.id),
                },
            });
        }
    };
    Ok(StepExit {
        termination,
        cancelled: cancel.signal(),
    })
}
