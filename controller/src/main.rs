//! `rarc-controller`: see `rarc-controller --help`.
//!
//! Exit codes: 0 after SIGTERM/SIGINT (running reconciles finish, the lease is released); 1 on a
//! fatal error (no API server, CRDs missing, a bind address in use, lost leadership); 2 on a
//! command-line usage error (clap).

use std::io::IsTerminal;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context as _;
use clap::Parser;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::Api;
use rarc_controller::Context;
use rarc_controller::config::{LogFormat, Settings};
use rarc_controller::run::{self, Readiness};
use tokio_util::sync::CancellationToken;

fn init_logging(settings: &Settings) {
    // The same rule as the listener's config.json: an unknown level means debug.
    let level = settings.listener_log_level();
    let filter = tracing_subscriber::EnvFilter::try_from_env("RARC_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(format!("{level},kube=warn,hyper=warn,tower=warn")));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    match settings.log_format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.init(),
    }
}

async fn shutdown_signal(token: CancellationToken) {
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(s) => s,
        Err(_) => return,
    };
    tokio::select! {
        _ = term.recv() => {},
        _ = tokio::signal::ctrl_c() => {},
    }
    tracing::info!("signal received: stopping");
    token.cancel();
}

async fn run(settings: Settings) -> anyhow::Result<()> {
    if settings.controller_namespace.is_empty() {
        anyhow::bail!("CONTROLLER_MANAGER_POD_NAMESPACE (--controller-namespace) is required");
    }
    if settings.listener_image.is_empty() {
        anyhow::bail!("CONTROLLER_MANAGER_CONTAINER_IMAGE (--listener-image) is required");
    }
    let client = kube::Client::try_default()
        .await
        .context("connecting to the Kubernetes API server")?;
    // The CRDs must be installed: say so clearly instead of failing watches forever.
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    // ARC's chart grants no access to CRDs: a 403 means "cannot check", not "missing".
    // Metadata only: the CRDs' schemas are large and would stay in the heap.
    for name in rarc_crd::CRD_NAMES {
        match crds.get_metadata(name).await {
            Ok(_) => {}
            Err(kube::Error::Api(e)) if e.code == 403 => {
                tracing::debug!(crd = %name, "no permission to read CRDs: not checking them");
                break;
            }
            Err(e) => {
                return Err(e).with_context(|| format!("CRD {name} (install crates/crd/crds or the chart's crds/)"));
            }
        }
    }
    let shutdown = CancellationToken::new();
    tokio::spawn(shutdown_signal(shutdown.clone()));
    let readiness = Readiness::default();
    let ctx = Arc::new(Context::new(client.clone(), settings.clone()));
    let mut servers = Vec::new();
    if let Some(addr) = settings.health_bind() {
        servers.push(tokio::spawn(
            run::serve(addr, run::health_router(readiness.clone()), shutdown.clone()).await?,
        ));
    }
    if let Some(addr) = settings.metrics_bind() {
        servers.push(tokio::spawn(
            run::serve(addr, run::metrics_router(ctx.clone()), shutdown.clone()).await?,
        ));
    }
    let result = run::run(client, ctx, readiness, shutdown.clone()).await;
    shutdown.cancel();
    // Open keep-alive connections (a Prometheus scraper) must not hold the exit up.
    for s in servers {
        if tokio::time::timeout(std::time::Duration::from_secs(2), s)
            .await
            .is_err()
        {
            tracing::debug!("an HTTP server still had open connections at exit");
        }
    }
    result.map_err(Into::into)
}

#[tokio::main]
async fn main() -> ExitCode {
    let settings = Settings::parse();
    init_logging(&settings);
    match run(settings).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            eprintln!("Error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
