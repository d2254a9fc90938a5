//! The simulated runner (`rarc-sim runner`): the stand-in for the GitHub Actions runner in every
//! later test of rarc.
//!
//! Like an ephemeral runner started with `--jitconfig`, it decodes the JIT config, goes online
//! ([`crate::runner_api`]), waits for its one job, runs it, reports it complete and goes offline.
//! A job's steps run on the host (`sh -e <script>`), or, when the job declares a job container,
//! services or a `docker://` step, through the container hook named by
//! `ACTIONS_RUNNER_CONTAINER_HOOKS`, called exactly as the runner calls it (`container-hooks.md` §1;
//! see [`hooks`]).
//!
//! # Exit codes ([`exit_code`])
//!
//! | code | when |
//! | --- | --- |
//! | 0 | the job ran and was reported, whatever its result; or the runner was removed (404) or told to stop (SIGTERM/SIGINT) before it got a job |
//! | 1 | configuration or protocol error: no or undecodable JIT config, bad server URL, the token rejected (401), the runner unknown on `online` (404), an unexpected answer |
//! | 2 | retryable: the service unreachable or answering 5xx/429 after a few quick retries |
//!
//! # Signals
//!
//! SIGTERM or SIGINT while waiting for a job: go offline, exit 0. While running a job: the current
//! step's process (or hook) gets SIGINT, SIGTERM 7.5 s later, and its process tree SIGKILL 2.5 s after
//! that; the remaining steps are skipped, `cleanup_job` still runs if `prepare_job` was attempted, and
//! the job is reported `canceled`.
//!
//! # Deviations from the real runner
//!
//! * `.js` hooks run with `<root>/externals/node20/bin/node` when that exists, else `node` on `PATH`.
//! * A hook failure logs the runner's generic error line *and* the cause (the real runner keeps the
//!   cause in its diagnostic log only).
//! * Without a hook, container jobs fail with the runner's "already running inside container"
//!   message: the simulator has no docker code of its own.
//! * Workflow commands other than `::error::`, `::warning::`, `::notice::` and `::debug::` are not
//!   interpreted; file commands (`GITHUB_ENV`, …) are created but not read back.

mod client;
pub mod hooks;
mod log;
mod process;
mod steps;
pub mod workdir;

pub use hooks::{ContainerContext, HookError, ServiceContext};
pub use log::Annotation;
pub use process::Escalation;
pub use steps::{NO_CONTAINER_SUPPORT_MSG, REQUIRE_JOB_CONTAINER_MSG};

use crate::runner_api::{AssignedJob, CompleteRequest, JitConfig, JitConfigError, OnlineRequest, StepResult};
use client::{Retry, SimClient, Wait};
use rarc_actions::Secret;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

/// The runner version the simulator reports.
pub const RUNNER_VERSION: &str = "2.329.0";

/// Output format of the runner's own stdout (step output) and diagnostics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

/// `rarc-sim runner`: run one job as an ephemeral runner.
#[derive(Debug, Clone, clap::Args)]
pub struct RunnerArgs {
    /// The encoded JIT config (`encodedJITConfig`).
    #[arg(long, env = "ACTIONS_RUNNER_INPUT_JITCONFIG", hide_env_values = true, value_parser = parse_secret)]
    pub jitconfig: Option<Secret>,

    /// The runner root: holds `_work` and `externals`. Defaults to the current directory.
    #[arg(long, env = "RUNNER_ROOT")]
    pub root: Option<PathBuf>,

    /// Format of step output echoed on stdout and of diagnostics on stderr.
    #[arg(long, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,

    /// The container hook (`.js`, `.sh` or `.ps1`).
    #[arg(long, env = "ACTIONS_RUNNER_CONTAINER_HOOKS")]
    pub container_hooks: Option<String>,

    /// Fail jobs without a job container (`1`, `true`, `$true`, any case).
    #[arg(long, env = "ACTIONS_RUNNER_REQUIRE_JOB_CONTAINER")]
    pub require_job_container: Option<String>,

    /// Long-poll window of the wait-for-a-job call, in milliseconds.
    #[arg(long, default_value_t = 30_000)]
    pub wait_ms: u64,

    /// Interval of the job-renewal heartbeat while a job runs, in milliseconds (0: none).
    #[arg(long, default_value_t = 5_000)]
    pub renew_ms: u64,

    /// Do not echo step output on stdout (it is still sent to the service).
    #[arg(long)]
    pub quiet: bool,
}

impl Default for RunnerArgs {
    fn default() -> Self {
        Self {
            jitconfig: None,
            root: None,
            log_format: LogFormat::Text,
            container_hooks: None,
            require_job_container: None,
            wait_ms: 30_000,
            renew_ms: 5_000,
            quiet: false,
        }
    }
}

fn parse_secret(s: &str) -> Result<Secret, std::convert::Infallible> {
    Ok(Secret::new(s))
}

/// How a job ended.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum JobResult {
    #[default]
    Succeeded,
    Failed,
    Canceled,
}

impl JobResult {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Succeeded => "succeeded",
            Self::Failed => "failed",
            Self::Canceled => "canceled",
        }
    }
}

impl std::fmt::Display for JobResult {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How the runner ended (all of these exit 0).
#[derive(Debug, Clone, PartialEq)]
pub enum RunnerOutcome {
    /// The service removed the runner (404 on the wait call) before it got a job.
    Removed,
    /// Stopped by SIGTERM/SIGINT (or the shutdown token) while waiting for a job; went offline.
    Stopped,
    /// Ran its one job and reported it.
    Completed(Box<CompletedJob>),
}

/// What the runner did with its job.
#[derive(Debug, Clone, PartialEq)]
pub struct CompletedJob {
    pub runner_request_id: i64,
    pub job_id: String,
    pub result: JobResult,
    pub steps: Vec<StepResult>,
    /// `::error::` / `::warning::` / `::notice::` lines seen in step and hook output.
    pub annotations: Vec<Annotation>,
    /// `job.container` from the prepare_job response.
    pub container: Option<ContainerContext>,
    /// `job.services.<alias>` from the prepare_job response (mapped by position).
    pub services: BTreeMap<String, ServiceContext>,
}

/// Why the runner gave up. [`RunnerError::exit_code`] maps each to 1 or 2.
#[derive(Debug, thiserror::Error)]
pub enum RunnerError {
    #[error("no JIT config: pass --jitconfig or set ACTIONS_RUNNER_INPUT_JITCONFIG")]
    MissingJitConfig,
    #[error("the JIT config given by --jitconfig / ACTIONS_RUNNER_INPUT_JITCONFIG cannot be decoded")]
    InvalidJitConfig(#[source] JitConfigError),
    #[error("the JIT config's serverUrl {url:?} is not an http(s) URL")]
    InvalidServerUrl { url: String },
    #[error("cannot build the HTTP client")]
    HttpClient(#[source] reqwest::Error),
    #[error("the service rejected the runner token (401) on the {call} call")]
    Unauthorized { call: &'static str },
    #[error("runner {runner_id} is not known to the service (404) on the {call} call")]
    RunnerNotFound { call: &'static str, runner_id: i64 },
    #[error("the {call} call answered HTTP {status}: {body}")]
    UnexpectedStatus {
        call: &'static str,
        status: u16,
        body: String,
    },
    #[error("the {call} call answered a body that is not the expected JSON")]
    Decode {
        call: &'static str,
        #[source]
        source: serde_json::Error,
    },
    #[error("the service is unavailable: the {call} call failed {attempts} time(s), last: {detail}")]
    Unavailable {
        call: &'static str,
        attempts: u32,
        detail: String,
    },
    #[error("cannot install the SIGTERM/SIGINT handlers")]
    Signals(#[source] std::io::Error),
}

impl RunnerError {
    /// 2 for retryable errors (service unreachable / 5xx), 1 for everything else.
    pub fn exit_code(&self) -> i32 {
        match self {
            Self::Unavailable { .. } => 2,
            _ => 1,
        }
    }
}

/// The process exit code for a [`run`] result: 0 for any outcome (whatever the job's result),
/// 1 for configuration / protocol errors, 2 for retryable errors.
pub fn exit_code(result: &Result<RunnerOutcome, RunnerError>) -> i32 {
    match result {
        Ok(_) => 0,
        Err(e) => e.exit_code(),
    }
}

/// Runs the runner until it has done its job, stopping on SIGTERM/SIGINT. Installs a tracing
/// subscriber in `--log-format` on stderr unless one is already installed.
pub async fn run(args: RunnerArgs) -> Result<RunnerOutcome, RunnerError> {
    init_tracing(args.log_format);
    let shutdown = CancellationToken::new();
    let mut term =
        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).map_err(RunnerError::Signals)?;
    let mut int =
        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt()).map_err(RunnerError::Signals)?;
    let trigger = shutdown.clone();
    let watcher = tokio::spawn(async move {
        loop {
            let name = tokio::select! {
                _ = term.recv() => "SIGTERM",
                _ = int.recv() => "SIGINT",
            };
            if trigger.is_cancelled() {
                tracing::info!(signal = name, "already stopping");
            } else {
                tracing::info!(signal = name, "stopping");
                trigger.cancel();
            }
        }
    });
    let result = run_until(args, shutdown).await;
    watcher.abort();
    result
}

/// [`run`] without signal handling: `shutdown` plays the part of SIGTERM/SIGINT.
pub async fn run_until(args: RunnerArgs, shutdown: CancellationToken) -> Result<RunnerOutcome, RunnerError> {
    run_with(args, shutdown, Escalation::default()).await
}

/// [`run_until`] with the cancellation grace periods chosen by the caller (tests).
pub async fn run_with(
    args: RunnerArgs,
    shutdown: CancellationToken,
    escalation: Escalation,
) -> Result<RunnerOutcome, RunnerError> {
    let encoded = args
        .jitconfig
        .as_ref()
        .filter(|s| !s.expose().trim().is_empty())
        .ok_or(RunnerError::MissingJitConfig)?;
    let jit = JitConfig::decode(encoded.expose()).map_err(RunnerError::InvalidJitConfig)?;
    let settings = jit.settings.clone();
    let client = Arc::new(SimClient::new(
        &settings.server_url,
        settings.agent_id,
        jit.token.clone(),
    )?);
    let root = match &args.root {
        Some(r) => std::path::absolute(r).unwrap_or_else(|_| r.clone()),
        None => std::env::current_dir().unwrap_or_else(|_| PathBuf::from(".")),
    };

    let online = client
        .online(&OnlineRequest {
            version: RUNNER_VERSION.into(),
            os: "Linux".into(),
        })
        .await?;
    let runner_name = if online.name.is_empty() {
        settings.agent_name.clone()
    } else {
        online.name.clone()
    };
    tracing::info!(runner_id = client.runner_id(), runner = %runner_name, "online; waiting for a job");

    let job = loop {
        let wait = tokio::select! {
            w = client.wait_job(args.wait_ms) => w?,
            () = shutdown.cancelled() => {
                tracing::info!("stopping before a job arrived; going offline");
                if let Err(e) = client.offline(Retry::ONCE).await {
                    tracing::warn!(error = %e, "offline call failed");
                }
                return Ok(RunnerOutcome::Stopped);
            }
        };
        match wait {
            Wait::Job(job) => break job,
            Wait::NoneYet => continue,
            Wait::Removed => {
                tracing::info!("the service removed this runner; exiting without a job");
                return Ok(RunnerOutcome::Removed);
            }
        }
    };

    let completed = run_job(
        &args,
        &client,
        &root,
        &settings,
        &runner_name,
        *job,
        shutdown,
        escalation,
    )
    .await?;
    if let Err(e) = client.offline(Retry::ONCE).await {
        // An ephemeral runner is deregistered on completion; a 404 here is expected.
        tracing::debug!(error = %e, "offline call failed");
    }
    Ok(RunnerOutcome::Completed(Box::new(completed)))
}

#[allow(clippy::too_many_arguments)]
async fn run_job(
    args: &RunnerArgs,
    client: &Arc<SimClient>,
    root: &std::path::Path,
    settings: &crate::runner_api::RunnerSettings,
    runner_name: &str,
    job: AssignedJob,
    cancel: CancellationToken,
    escalation: Escalation,
) -> Result<CompletedJob, RunnerError> {
    let request_id = job.runner_request_id;
    tracing::info!(request_id, job_id = %job.job_id, job = %job.job_display_name, "running job");
    let layout = workdir::Layout::new(root, &settings.work_folder, &job.repository);
    let context_env = workdir::context_env(&layout, &job, settings, runner_name);
    let (log, writer) = log::LogWriter::start(client.clone(), request_id, args.log_format, !args.quiet);
    let hooks = hooks::HookInvoker::new(args.container_hooks.clone(), layout.clone(), &context_env, escalation);
    let executor = steps::Executor {
        job: &job,
        layout,
        context_env,
        log,
        hooks,
        cancel,
        escalation,
        require_job_container: truthy(args.require_job_container.as_deref()),
    };
    let heartbeat = (args.renew_ms > 0).then(|| {
        let client = client.clone();
        let every = std::time::Duration::from_millis(args.renew_ms);
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(every).await;
                if let Err(e) = client.renew(request_id).await {
                    tracing::debug!(request_id, error = %e, "renew failed");
                }
            }
        })
    });
    let report = executor.execute().await;
    if let Some(h) = heartbeat {
        h.abort();
    }
    let annotations = writer.finish().await;
    tracing::info!(request_id, result = %report.result, "job finished; reporting");
    let body = CompleteRequest {
        result: report.result.as_str().into(),
        steps: report.steps.clone(),
    };
    client.complete(request_id, &body).await?;
    Ok(CompletedJob {
        runner_request_id: request_id,
        job_id: job.job_id.clone(),
        result: report.result,
        steps: report.steps,
        annotations,
        container: report.container,
        services: report.services,
    })
}

/// `1`, `true` or `$true`, any case.
fn truthy(v: Option<&str>) -> bool {
    v.map(str::trim)
        .is_some_and(|v| v == "1" || v.eq_ignore_ascii_case("true") || v.eq_ignore_ascii_case("$true"))
}

fn init_tracing(format: LogFormat) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        runner: RunnerArgs,
    }

    #[test]
    fn truthy_values() {
        for (v, want) in [
            ("1", true),
            ("TRUE", true),
            ("$True", true),
            ("0", false),
            ("yes", false),
            ("", false),
        ] {
            assert_eq!(truthy(Some(v)), want, "{v}");
        }
        assert!(!truthy(None));
    }

    #[test]
    fn args_parse_and_never_show_the_jit_config() {
        let cli =
            Cli::try_parse_from(["x", "--jitconfig", "c2VjcmV0", "--log-format", "json", "--root", "/r"]).unwrap();
        assert_eq!(cli.runner.jitconfig.as_ref().map(Secret::expose), Some("c2VjcmV0"));
        assert_eq!(cli.runner.log_format, LogFormat::Json);
        assert!(!format!("{:?}", cli.runner).contains("c2VjcmV0"));
    }

    #[test]
    fn exit_codes() {
        assert_eq!(exit_code(&Ok(RunnerOutcome::Removed)), 0);
        assert_eq!(exit_code(&Err(RunnerError::MissingJitConfig)), 1);
        assert_eq!(exit_code(&Err(RunnerError::Unauthorized { call: "online" })), 1);
        let unavailable = RunnerError::Unavailable {
            call: "online",
            attempts: 4,
            detail: "refused".into(),
        };
        assert_eq!(exit_code(&Err(unavailable)), 2);
    }
}
