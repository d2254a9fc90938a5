//! The docker mode (`container-hooks.md` §3): job, service and step containers on the runner's
//! Docker daemon through the Engine API (bollard), not the docker CLI.
//!
//! | module | what |
//! | --- | --- |
//! | [`client`] | `DOCKER_HOST` (unix, tcp, TLS) and API version negotiation |
//! | [`names`] | the instance label, container/network names, image references (pure) |
//! | [`create_options`] | `createOptions` parsed like `docker create` flags (pure) |
//! | [`spec`] | `HookContainer` → container-create body; env, mounts, ports (pure) |
//! | [`registry`] | credentials and pulls |
//! | [`health`] | waiting for health checks |
//! | [`prepare`], [`script_step`], [`container_step`], [`cleanup`] | the commands |
//! | [`exec`] | exec output streaming and the in-container wrapper used for cancellation |
//!
//! Environment values and registry passwords never appear in a log line or an error: they only go
//! into API request bodies and headers.

pub mod cleanup;
pub mod client;
pub mod container_step;
pub mod create_options;
pub mod exec;
pub mod health;
pub mod names;
pub mod prepare;
pub mod registry;
pub mod script_step;
pub mod spec;

use super::{Hook, Invocation};
use crate::error::HookError;
use crate::exit::StepExit;
use crate::protocol::{HookContainer, PrepareJobArgs, PrepareJobResponse, ScriptStepArgs};
use serde::{Deserialize, Serialize};

/// Containers on the runner's Docker daemon.
#[derive(Debug, Clone, Default)]
pub struct Docker;

/// The state `prepare_job` returns (the reference's shape): `{network, container, services}`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct State {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container: Option<String>,
    #[serde(default)]
    pub services: Vec<String>,
}

impl State {
    /// The request's state (anything unreadable is an empty state).
    pub fn from_invocation(inv: &Invocation) -> Self {
        inv.state
            .clone()
            .and_then(|s| serde_json::from_value(s).ok())
            .unwrap_or_default()
    }
}

/// The daemon's own message for an API error (without bollard's prefixes).
pub fn api_message(e: &bollard::errors::Error) -> String {
    match e {
        bollard::errors::Error::DockerResponseServerError { message, .. } => message.trim().to_owned(),
        bollard::errors::Error::DockerStreamError { error } => error.trim().to_owned(),
        other => other.to_string(),
    }
}

/// Wraps an API error with what the hook was doing.
pub fn docker_err(action: &str) -> impl Fn(bollard::errors::Error) -> HookError + '_ {
    move |source| HookError::Docker {
        action: action.to_owned(),
        source,
    }
}

/// Creates the container `container` describes from `image` (not started), named as its create
/// options say or after the image; returns its name and id. `what` names it in errors.
async fn create_container(
    docker: &bollard::Docker,
    container: &HookContainer,
    image: &str,
    placement: &spec::Placement<'_>,
    what: &str,
) -> Result<(String, String), HookError> {
    let (name, body) = spec::container_body(container, image, placement)?;
    let name = name.unwrap_or_else(|| names::container_name(image));
    let created = docker
        .create_container(
            Some(bollard::query_parameters::CreateContainerOptions {
                name: Some(name.clone()),
                ..Default::default()
            }),
            body,
        )
        .await
        .map_err(docker_err(&format!("creating the {what} from '{image}'")))?;
    Ok((name, created.id))
}

/// The instance label of this runner (`RUNNER_NAME` is required before any command runs).
fn label(inv: &Invocation) -> String {
    names::instance_label(inv.env.get("RUNNER_NAME").unwrap_or_default())
}

impl Hook for Docker {
    async fn prepare_job(&self, inv: &Invocation, args: &PrepareJobArgs) -> Result<PrepareJobResponse, HookError> {
        let docker = client::connect(&inv.env).await?;
        prepare::run(&docker, inv, args, &label(inv)).await
    }

    async fn run_script_step(&self, inv: &Invocation, args: &ScriptStepArgs) -> Result<StepExit, HookError> {
        let docker = client::connect(&inv.env).await?;
        script_step::run(&docker, inv, args).await
    }

    async fn run_container_step(&self, inv: &Invocation, args: &HookContainer) -> Result<StepExit, HookError> {
        let docker = client::connect(&inv.env).await?;
        container_step::run(&docker, inv, args, &label(inv)).await
    }

    async fn cleanup_job(&self, inv: &Invocation) -> Result<(), HookError> {
        let docker = client::connect(&inv.env).await?;
        cleanup::remove_labelled(&docker, &label(inv), true).await
    }
}
