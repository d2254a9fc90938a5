//! Process wiring shared by `main` and the tests: command line, logging, client, admin server,
//! listener (spec §9.1 startup order).

use crate::backend::Backend;
use crate::config::{Config, ConfigError};
use crate::health::{AdminServer, Health, ServerError, router_for};
use crate::listener::{ConflictRetry, Listener, ListenerError, ListenerSettings, Stopped};
use crate::metrics::{BaseLabels, Metrics};
use futures::StreamExt;
use futures::stream::FuturesUnordered;
use rarc_actions::{ActionsClient, ClientConfig, UserAgentInfo};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

/// The message printed (to stderr) when no config path is given; exit code 1.
pub const MISSING_CONFIG_PATH: &str = "Error: LISTENER_CONFIG_PATH environment variable is not set";

const EXIT_CODES: &str = "\
EXIT CODES:
  0  stopped by SIGTERM or SIGINT (the message session was deleted)
  1  invalid configuration, or a fatal error (Actions service, Kubernetes); the pod restart is the recovery";

/// Where desired runners go.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum BackendKind {
    /// Patch the EphemeralRunnerSet / EphemeralRunners (ARC's contract: one listener per scale set).
    #[default]
    Kubernetes,
    /// Change nothing; log every decision.
    DryRun,
    /// Runner containers on one Docker host (`--docker-config`); no Kubernetes needed.
    Docker,
}

/// `rarc-listener`: the scale-set listener.
#[derive(Debug, Clone, clap::Parser)]
#[command(name = "rarc-listener", version, about, after_help = EXIT_CODES)]
pub struct Cli {
    /// Path of config.json (spec §2.2).
    #[arg(long = "config", env = "LISTENER_CONFIG_PATH", value_name = "PATH")]
    pub config: Option<String>,

    /// Where desired runners go.
    #[arg(long, value_enum, default_value_t = BackendKind::Kubernetes, env = "LISTENER_BACKEND")]
    pub backend: BackendKind,

    /// The Docker backend's settings (JSON: `runnerImage`, `dockerHost`, `containerMode`, limits,
    /// extra env/volumes…); the scale set id, name and min/max runners come from config.json.
    #[arg(long, env = "LISTENER_DOCKER_CONFIG", value_name = "PATH")]
    pub docker_config: Option<String>,

    /// Serve /healthz here when metrics are disabled (metrics_addr empty), e.g. `:8081`.
    #[arg(long, env = "LISTENER_HEALTH_ADDR", value_name = "ADDR")]
    pub health_addr: Option<String>,

    /// /healthz turns 503 when the poll loop made no progress for this many seconds.
    #[arg(
        long,
        env = "LISTENER_HEALTH_DEADLINE_SECS",
        default_value_t = 180,
        value_name = "SECS"
    )]
    pub health_deadline_secs: u64,

    /// Keep retrying session creation on 409 (a stale session) for this many seconds.
    #[arg(
        long,
        env = "LISTENER_SESSION_CONFLICT_RETRY_SECS",
        default_value_t = 300,
        value_name = "SECS"
    )]
    pub session_conflict_retry_secs: u64,
}

/// Why the process failed.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("build the Actions client")]
    Client(#[source] rarc_actions::Error),
    #[error("start the metrics/health server")]
    Server(#[source] ServerError),
    #[error(transparent)]
    Listener(#[from] ListenerError),
    #[error(
        "metrics_addr {addr}: scale set {scale_set} serves metrics on {endpoint} but another scale set on the same address uses {other}; give them the same metrics_endpoint or different addresses"
    )]
    SharedAddress {
        addr: String,
        scale_set: String,
        endpoint: String,
        other: String,
    },
}

/// Options of [`run`] that do not come from config.json.
#[derive(Debug, Clone)]
pub struct RunOptions {
    pub health_addr: Option<String>,
    pub health_deadline: Duration,
    pub conflict_retry: ConflictRetry,
    pub close_timeout: Duration,
    /// Session owner; `None` ⇒ the host name (random UUID if that fails).
    pub owner: Option<String>,
    /// Replaces the client's retry policy (tests).
    pub retry: Option<rarc_actions::RetryPolicy>,
}

impl Default for RunOptions {
    fn default() -> Self {
        Self {
            health_addr: None,
            health_deadline: crate::health::DEFAULT_HEALTH_DEADLINE,
            conflict_retry: ConflictRetry::default(),
            close_timeout: Duration::from_secs(30),
            owner: None,
            retry: None,
        }
    }
}

impl RunOptions {
    pub fn from_cli(cli: &Cli) -> Self {
        Self {
            health_addr: cli.health_addr.clone().filter(|a| !a.is_empty()),
            health_deadline: Duration::from_secs(cli.health_deadline_secs),
            conflict_retry: ConflictRetry {
                total: Duration::from_secs(cli.session_conflict_retry_secs),
                ..ConflictRetry::default()
            },
            ..Self::default()
        }
    }
}

/// The session owner: the host name (the pod name), else a random UUID.
pub fn owner_name() -> String {
    nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string())
}

/// The Actions client of `config` (no network call).
pub fn actions_client(config: &Config, retry: Option<rarc_actions::RetryPolicy>) -> Result<ActionsClient, AppError> {
    let mut cc = ClientConfig::new(config.configure_url.clone(), config.credentials()?);
    cc.root_ca_pem = config.root_ca();
    cc.user_agent = UserAgentInfo {
        version: env!("CARGO_PKG_VERSION").into(),
        commit_sha: rarc_actions::user_agent::BUILD_COMMIT_SHA.into(),
        scale_set_id: config.runner_scale_set_id,
        subsystem: "ghalistener".into(),
        ..UserAgentInfo::default()
    };
    if let Some(retry) = retry {
        cc.retry = retry;
    }
    ActionsClient::new(cc).map_err(AppError::Client)
}

/// One scale set of [`run_many`]: its config.json and where its runners go.
pub struct ScaleSet<B> {
    pub config: Config,
    pub backend: B,
}

/// Runs the listener of `config` with `backend` until `shutdown` or a fatal error, with the
/// metrics/health server alongside (stopped when the listener returns).
pub async fn run<B: Backend>(
    config: &Config,
    backend: B,
    options: RunOptions,
    shutdown: CancellationToken,
) -> Result<Stopped, AppError> {
    let set = ScaleSet {
        config: config.clone(),
        backend,
    };
    run_many(vec![set], options, shutdown).await
}

/// What one admin address serves.
#[derive(Default)]
struct Served {
    endpoint: Option<String>,
    metrics: Vec<Arc<Metrics>>,
    health: Vec<(String, Health)>,
}

/// Runs one listener per scale set, concurrently, until `shutdown` or a fatal error of any of
/// them. A fatal error stops the others too (each deletes its session) and is returned: the
/// process exits 1 and its supervisor restarts it, as with ARC's one-pod-per-set contract.
///
/// Sets with the same `metrics_addr` share one server: one exposition on their (equal)
/// `metrics_endpoint`, told apart by the `name` label, and a `/healthz` that is healthy only
/// while every one of them is. Sets without metrics get `/healthz` on `options.health_addr`.
pub async fn run_many<B: Backend>(
    sets: Vec<ScaleSet<B>>,
    options: RunOptions,
    shutdown: CancellationToken,
) -> Result<Stopped, AppError> {
    let owner = options.owner.clone().unwrap_or_else(owner_name);
    let mut served: BTreeMap<String, Served> = BTreeMap::new();
    let mut listeners = Vec::with_capacity(sets.len());
    // Cancelled by `shutdown`, or by us when one listener fails.
    let stop_all = shutdown.child_token();
    for ScaleSet { config, backend } in sets {
        let client = actions_client(&config, options.retry)?;
        let health = Health::new(options.health_deadline);
        let name = set_name(&config);
        let metrics = (!config.metrics_addr.is_empty())
            .then(|| Arc::new(Metrics::new(config.metrics.as_ref(), BaseLabels::from_config(&config))));
        let addr = if config.metrics_addr.is_empty() {
            options.health_addr.clone()
        } else {
            Some(config.metrics_addr.clone())
        };
        if let Some(addr) = addr {
            let entry = served.entry(addr.clone()).or_default();
            if let Some(m) = &metrics {
                let endpoint = config.metrics_endpoint();
                match &entry.endpoint {
                    Some(other) if *other != endpoint => {
                        return Err(AppError::SharedAddress {
                            addr,
                            scale_set: name,
                            endpoint,
                            other: other.clone(),
                        });
                    }
                    _ => entry.endpoint = Some(endpoint),
                }
                entry.metrics.push(m.clone());
            }
            entry.health.push((name.clone(), health.clone()));
        }
        tracing::info!(
            scale_set = config.runner_scale_set_id,
            scale_set_name = %name,
            owner = %owner,
            min_runners = config.min_runners,
            max_runners = config.max_runners,
            runner_set = %config.ephemeral_runner_set_name,
            namespace = %config.ephemeral_runner_set_namespace,
            "starting listener"
        );
        let mut settings = ListenerSettings::new(
            config.runner_scale_set_id,
            config.min_runners,
            config.max_runners,
            owner.clone(),
        );
        settings.conflict_retry = options.conflict_retry;
        settings.close_timeout = options.close_timeout;
        let mut listener = Listener::new(client, backend, settings)
            .with_health(health)
            .with_shutdown(stop_all.clone());
        if let Some(m) = metrics {
            listener = listener.with_metrics(m);
        }
        let span = tracing::info_span!("listener", scale_set = config.runner_scale_set_id, scale_set_name = %name);
        listeners.push(listener.run().instrument(span));
    }
    let single = served.len() == 1 && listeners.len() == 1;
    let server_stop = CancellationToken::new();
    let mut servers = Vec::new();
    for (addr, s) in served {
        let health = if single {
            // One set: the stall message needs no name (ARC-shaped single-listener process).
            s.health.into_iter().map(|(_, h)| (String::new(), h)).collect()
        } else {
            s.health
        };
        let endpoint = s
            .endpoint
            .unwrap_or_else(|| crate::config::DEFAULT_METRICS_ENDPOINT.to_owned());
        let app = router_for(s.metrics, &endpoint, health);
        let server = AdminServer::bind(&addr, app).await.map_err(AppError::Server)?;
        servers.push(tokio::spawn(server.serve(server_stop.clone())));
    }
    let mut running: FuturesUnordered<_> = listeners.into_iter().collect();
    let mut first_error = None;
    while let Some(result) = running.next().await {
        if let Err(e) = result
            && first_error.is_none()
        {
            // Stop the others cleanly (their sessions are deleted), then report this one.
            stop_all.cancel();
            first_error = Some(e);
        }
    }
    server_stop.cancel();
    for task in servers {
        if let Err(e) = task.await {
            tracing::warn!(error = %e, "admin server task failed");
        }
    }
    match first_error {
        Some(e) => Err(e.into()),
        None => Ok(Stopped::Shutdown),
    }
}

/// The name a scale set is shown under: `runner_scale_set_name`, else the EphemeralRunnerSet
/// name, else `scale-set-<id>`.
pub fn set_name(config: &Config) -> String {
    [&config.runner_scale_set_name, &config.ephemeral_runner_set_name]
        .into_iter()
        .find(|n| !n.is_empty())
        .cloned()
        .unwrap_or_else(|| format!("scale-set-{}", config.runner_scale_set_id))
}

/// Installs the tracing subscriber of `log_level` / `log_format` (stdout; `RUST_LOG` overrides
/// the level).
pub fn init_tracing(level: &str, format: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stdout);
    let result = if format == "json" {
        builder.json().flatten_event(true).try_init()
    } else {
        builder.try_init()
    };
    if let Err(e) = result {
        eprintln!("tracing already initialised: {e}");
    }
}
