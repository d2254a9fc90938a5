//! `rarc-listener`: reads config.json, serves one scale set until SIGTERM/SIGINT.
//!
//! Exit codes: 0 after a signal-initiated shutdown (the session is deleted first); 1 on a missing
//! or invalid config and on any fatal error (the controller recreates the pod).

use clap::Parser;
use rarc_listener::app::{self, BackendKind, Cli, MISSING_CONFIG_PATH, RunOptions};
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
    let config = match Config::load(&path) {
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
