//! `rarc-listener`: reads config.json, serves one scale set until SIGTERM/SIGINT.
//!
//! Exit codes: 0 after a signal-initiated shutdown (the session is deleted first); 1 on a missing
//! or invalid config and on any fatal error (the controller recreates the pod).

use anyhow::Context;
use clap::Parser;
use rarc_listener::app::{self, BackendKind, Cli, MISSING_CONFIG_PATH, RunOptions};
use rarc_listener::backend::docker::{DockerBackend, DockerBackendConfig};
use rarc_listener::backend::kubernetes::KubernetesBackend;
use rarc_listener::backend::recording::DryRunBackend;
use rarc_listener::config::Config;
use std::process::ExitCode;
use tokio_util::sync::CancellationToken;

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let Some(path) = cli
        .config
        .clone()
        .filter(|p| !p.is_empty())
        .map(std::path::PathBuf::from)
    else {
        eprintln!("{MISSING_CONFIG_PATH}");
        return ExitCode::FAILURE;
    };
    let config = match Config::load_for(&path, cli.backend != BackendKind::Docker) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("Error: {}", rarc_listener::listener::error_chain(&e));
            return ExitCode::FAILURE;
        }
    };
    app::init_tracing(&config.log_level(), &config.log_format());
    match run(cli, config).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = format!("{e:#}"), "listener exited with an error");
            eprintln!("Error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli, config: Config) -> anyhow::Result<()> {
    // Before any network call: vault credentials are not supported.
    config.credentials()?;
    let shutdown = CancellationToken::new();
    tokio::spawn(signals(shutdown.clone()));
    let options = RunOptions::from_cli(&cli);
    let ns = &config.ephemeral_runner_set_namespace;
    let name = &config.ephemeral_runner_set_name;
    match cli.backend {
        BackendKind::Kubernetes => {
            let backend = KubernetesBackend::connect(ns, name).await?;
            app::run(&config, backend, options, shutdown).await?;
        }
        BackendKind::DryRun => {
            app::run(&config, DryRunBackend, options, shutdown).await?;
        }
        BackendKind::Docker => {
            let backend = docker_backend(&cli, &config).await?;
            app::run(&config, backend, options, shutdown).await?;
        }
    }
    tracing::info!("listener stopped");
    Ok(())
}

/// The Docker backend for the scale set of `config`, with the settings of `--docker-config`.
async fn docker_backend(cli: &Cli, config: &Config) -> anyhow::Result<DockerBackend> {
    let path = cli
        .docker_config
        .as_deref()
        .filter(|p| !p.is_empty())
        .context("--backend docker needs --docker-config PATH (or LISTENER_DOCKER_CONFIG)")?;
    let bytes = std::fs::read(path).with_context(|| format!("reading the Docker config {path}"))?;
    let de = &mut serde_json::Deserializer::from_slice(&bytes);
    let mut docker: DockerBackendConfig = serde_path_to_error::deserialize(de)
        .map_err(|e| anyhow::anyhow!("Docker config {path}: field `{}`: {}", e.path(), e.inner()))?;
    // config.json is the authority on which scale set this is.
    docker.scale_set_id = config.runner_scale_set_id;
    if docker.scale_set_name.is_empty() {
        docker.scale_set_name = if config.runner_scale_set_name.is_empty() {
            format!("scale-set-{}", config.runner_scale_set_id)
        } else {
            config.runner_scale_set_name.clone()
        };
    }
    docker.min_runners = config.min_runners;
    docker.max_runners = config.max_runners;
    docker
        .validate()
        .map_err(|e| anyhow::anyhow!("Docker config {path}: {e}"))?;
    let client = app::actions_client(config, None)?;
    Ok(DockerBackend::new(docker, client).await?)
}

/// The first SIGTERM/SIGINT cancels `shutdown`; a second one exits at once with code 1.
async fn signals(shutdown: CancellationToken) {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (signal(SignalKind::terminate()), signal(SignalKind::interrupt())) else {
        tracing::error!("cannot install signal handlers");
        return;
    };
    tokio::select! { _ = term.recv() => {}, _ = int.recv() => {} }
    tracing::info!("signal received; shutting down");
    shutdown.cancel();
    tokio::select! { _ = term.recv() => {}, _ = int.recv() => {} }
    tracing::warn!("second signal; exiting immediately");
    std::process::exit(1);
}
