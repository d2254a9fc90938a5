//! Waiting for health checks (`container-hooks.md` §3.2 step 9): every container the job created
//! is polled in parallel until it is healthy or has no health check; `unhealthy`, a container with
//! a health check that stopped, or no verdict within the time limit fails `prepare_job`, naming the
//! service.

use super::docker_err;
use crate::error::HookError;
use crate::signals::Cancellation;
use bollard::Docker;
use bollard::models::{ContainerState, ContainerStateStatusEnum, HealthStatusEnum};
use std::time::{Duration, Instant};

/// The default time limit (`RARC_HOOKS_HEALTH_TIMEOUT` seconds overrides it).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(600);

/// What an inspected container's state says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Healthy, or no health check.
    Ready,
    /// The health check has not decided yet.
    Starting,
    Failed {
        status: String,
        detail: String,
    },
}

/// Decides from a container's state (pure).
pub fn verdict(state: Option<&ContainerState>) -> Verdict {
    let Some(state) = state else {
        return Verdict::Ready;
    };
    let health = state.health.as_ref().and_then(|h| h.status);
    let last_output = || {
        state
            .health
            .as_ref()
            .and_then(|h| h.log.as_ref())
            .and_then(|log| log.last())
            .and_then(|r| r.output.as_deref())
            .map(|o| o.trim())
            .filter(|o| !o.is_empty())
            .map(|o| {
                let short: String = o.chars().take(300).collect();
                format!(": last health check output: {short}")
            })
            .unwrap_or_default()
    };
    match health {
        None | Some(HealthStatusEnum::NONE) | Some(HealthStatusEnum::EMPTY) => Verdict::Ready,
        Some(HealthStatusEnum::HEALTHY) => Verdict::Ready,
        Some(HealthStatusEnum::UNHEALTHY) => Verdict::Failed {
            status: "unhealthy".into(),
            detail: last_output(),
        },
        Some(HealthStatusEnum::STARTING) if state.running == Some(false) => Verdict::Failed {
            status: state
                .status
                .filter(|s| *s != ContainerStateStatusEnum::EMPTY)
                .map_or_else(|| "exited".to_owned(), |s| s.to_string()),
            detail: format!(" (the container stopped, exit code {})", state.exit_code.unwrap_or(-1)),
        },
        Some(HealthStatusEnum::STARTING) => Verdict::Starting,
    }
}

/// The limit from the environment.
pub fn timeout(value: Option<&str>) -> Duration {
    value
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map_or(DEFAULT_TIMEOUT, Duration::from_secs)
}

/// Waits for every `(id, name)` in parallel.
pub async fn wait_all(
    docker: &Docker,
    containers: &[(String, String)],
    limit: Duration,
    cancel: &Cancellation,
) -> Result<(), HookError> {
    let waits = containers
        .iter()
        .map(|(id, name)| wait_one(docker, id, name, limit, cancel));
    futures::future::try_join_all(waits).await.map(drop)
}

async fn wait_one(
    docker: &Docker,
    id: &str,
    name: &str,
    limit: Duration,
    cancel: &Cancellation,
) -> Result<(), HookError> {
    let start = Instant::now();
    let mut pause = Duration::from_millis(250);
    let mut announced = false;
    loop {
        let inspect = docker
            .inspect_container(id, None)
            .await
            .map_err(docker_err(&format!("inspecting container '{name}'")))?;
        match verdict(inspect.state.as_ref()) {
            Verdict::Ready => return Ok(()),
            Verdict::Failed { status, detail } => {
                return Err(HookError::Unhealthy {
                    name: name.to_owned(),
                    status,
                    detail,
                });
            }
            Verdict::Starting if start.elapsed() >= limit => {
                return Err(HookError::Unhealthy {
                    name: name.to_owned(),
                    status: "starting".into(),
                    detail: format!(" after {}s (RARC_HOOKS_HEALTH_TIMEOUT)", limit.as_secs()),
                });
            }
            Verdict::Starting => {
                if !announced {
                    crate::workflow_command::emit(&format!("Waiting for container '{name}' to be healthy"));
                    announced = true;
                }
            }
        }
        tokio::select! {
            () = tokio::time::sleep(pause) => {}
            () = cancel.cancelled() => return Err(HookError::Cancelled(cancel.signal().unwrap_or(2))),
        }
        pause = (pause * 2).min(Duration::from_secs(2));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bollard::models::{Health, HealthcheckResult};

    fn state(status: Option<HealthStatusEnum>, running: bool) -> ContainerState {
        ContainerState {
            running: Some(running),
            status: Some(if running {
                ContainerStateStatusEnum::RUNNING
            } else {
                ContainerStateStatusEnum::EXITED
            }),
            exit_code: Some(if running { 0 } else { 3 }),
            health: status.map(|s| Health {
                status: Some(s),
                failing_streak: None,
                log: Some(vec![HealthcheckResult {
                    output: Some("connection refused\n".into()),
                    ..Default::default()
                }]),
            }),
            ..Default::default()
        }
    }

    #[test]
    fn verdicts() {
        assert_eq!(verdict(None), Verdict::Ready);
        assert_eq!(verdict(Some(&state(None, true))), Verdict::Ready);
        // No health check: ready even if it stopped (the reference does not look).
        assert_eq!(verdict(Some(&state(None, false))), Verdict::Ready);
        assert_eq!(
            verdict(Some(&state(Some(HealthStatusEnum::NONE), true))),
            Verdict::Ready
        );
        assert_eq!(
            verdict(Some(&state(Some(HealthStatusEnum::HEALTHY), true))),
            Verdict::Ready
        );
        assert_eq!(
            verdict(Some(&state(Some(HealthStatusEnum::STARTING), true))),
            Verdict::Starting
        );
        assert_eq!(
            verdict(Some(&state(Some(HealthStatusEnum::UNHEALTHY), true))),
            Verdict::Failed {
                status: "unhealthy".into(),
                detail: ": last health check output: connection refused".into()
            }
        );
        assert_eq!(
            verdict(Some(&state(Some(HealthStatusEnum::STARTING), false))),
            Verdict::Failed {
                status: "exited".into(),
                detail: " (the container stopped, exit code 3)".into()
            }
        );
    }

    #[test]
    fn timeouts() {
        assert_eq!(timeout(None), DEFAULT_TIMEOUT);
        assert_eq!(timeout(Some("30")), Duration::from_secs(30));
        assert_eq!(timeout(Some("x")), DEFAULT_TIMEOUT);
    }
}
