//! `rarc-listener`: reads config.json, serves one scale set until SIGTERM/SIGINT (with the Docker
//! backend, optionally several: the `scaleSets` of `--docker-config`).
//!
//! Exit codes: 0 after a signal-initiated shutdown (the session is deleted first); 1 on a missing
//! or invalid config and on any fatal error (the controller recreates the pod).

use anyhow::Context;
use clap::Parser;
use rarc_listener::app::{self, BackendKind, Cli, MISSING_CONFIG_PATH, RunOptions, ScaleSet};
use rarc_listener::backend::docker::DockerBackend;
use rarc_listener::backend::docker::scale_sets::{self, DockerScaleSet};
use rarc_listener::backend::kubernetes::KubernetesBackend;
use rarc_listener::backend::recording::DryRunBackend;
use rarc_listener::config::Config;
use rarc_listener::listener::error_chain;
use std::path::PathBuf;
use std::process::ExitCode;
use tokio_util::sync::CancellationToken;

/// What this process serves.
enum Served {
    /// One scale set (Kubernetes and dry-run backends: ARC's one-listener-per-set contract).
    One(Box<Config>),
    /// The scale sets of the Docker config.
    Docker(Vec<DockerScaleSet>),
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let config_path = cli.config.clone().filter(|p| !p.is_empty()).map(PathBuf::from);
    let docker_path = cli.docker_config.clone().filter(|p| !p.is_empty()).map(PathBuf::from);
    let loaded = match (cli.backend, docker_path, config_path) {
        (BackendKind::Docker, Some(docker), config) => scale_sets::load(&docker, config.as_deref())
            .map(Served::Docker)
            .map_err(|e| error_chain(&e)),
        (BackendKind::Docker, None, _) => {
            Err("--backend docker needs --docker-config PATH (or LISTENER_DOCKER_CONFIG)".to_owned())
        }
        (_, _, Some(path)) => Config::load(&path)
            .map(|c| Served::One(Box::new(c)))
            .map_err(|e| error_chain(&e)),
        (_, _, None) => {
            eprintln!("{MISSING_CONFIG_PATH}");
            return ExitCode::FAILURE;
        }
    };
    let served = match loaded {
        Ok(served) => served,
        Err(e) => {
            eprintln!("Error: {e}");
            return ExitCode::FAILURE;
        }
    };
    // Logging follows the (first) scale set's config.json.
    let logging = match &served {
        Served::One(config) => config,
        Served::Docker(sets) => match sets.first() {
            Some(set) => &set.listener,
            None => return ExitCode::FAILURE,
        },
    };
    app::init_tracing(&logging.log_level(), &logging.log_format());
    match run(cli, served).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = format!("{e:#}"), "listener exited with an error");
            eprintln!("Error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli, served: Served) -> anyhow::Result<()> {
    let shutdown = CancellationToken::new();
    let options = RunOptions::from_cli(&cli);
    match (cli.backend, served) {
        (BackendKind::Docker, Served::Docker(sets)) => {
            // Before any network call: vault credentials are not supported.
            for set in &sets {
                set.listener
                    .credentials()
                    .with_context(|| format!("listener config {}", set.listener_path.display()))?;
            }
            tokio::spawn(signals(shutdown.clone()));
            let mut docker_sets = Vec::with_capacity(sets.len());
            for set in sets {
                let client = app::actions_client(&set.listener, None)?;
                let backend = DockerBackend::new(set.docker, client).await?;
                docker_sets.push(ScaleSet {
                    config: set.listener,
                    backend,
                });
            }
            app::run_many(docker_sets, options, shutdown).await?;
        }
        (backend, Served::One(config)) => {
            config.credentials()?;
            tokio::spawn(signals(shutdown.clone()));
            if backend == BackendKind::DryRun {
                app::run(&config, DryRunBackend, options, shutdown).await?;
            } else {
                let (ns, name) = (
                    &config.ephemeral_runner_set_namespace,
                    &config.ephemeral_runner_set_name,
                );
                let backend = KubernetesBackend::connect(ns, name).await?;
                app::run(&config, backend, options, shutdown).await?;
            }
        }
        (backend, Served::Docker(_)) => anyhow::bail!("the {backend:?} backend serves one config.json"),
    }
    tracing::info!("listener stopped");
    Ok(())
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
