//! `prepare_job` (`container-hooks.md` §3.2): clean the runner's leftovers, create the job network,
//! pull/create/start the job container and the services (services get network aliases: their
//! workflow name when the runner sends one, and their image name), wait for health checks, detect
//! Alpine, and answer with ids, network and published ports.

use super::cleanup::remove_labelled;
use super::names;
use super::registry;
use super::spec::{Placement, Role, container_body, is_user_defined_network, published_ports};
use super::{State, create_container, docker_err, exec, health};
use crate::error::HookError;
use crate::mode::Invocation;
use crate::protocol::{ContainerInfo, HookContainer, PrepareJobArgs, PrepareJobResponse, ResponseContext};
use bollard::Docker;
use bollard::models::NetworkCreateRequest;
use std::collections::HashMap;
use std::time::Duration;

/// The reference's Alpine test (`container-hooks.md` §2.1.9).
const ALPINE_TEST: &str = r#"[ $(cat /etc/*release* | grep -i -E "^ID=*alpine*" -c) != 0 ] || exit 1"#;

fn cancelled(inv: &Invocation) -> Result<(), HookError> {
    match inv.cancel.signal() {
        Some(signal) => Err(HookError::Cancelled(signal)),
        None => Ok(()),
    }
}

/// The network aliases of each service: its workflow name (`contextName`) and its image's name
/// when no other service has the same one.
pub fn service_aliases(services: &[HookContainer]) -> Vec<Vec<String>> {
    let image_aliases: Vec<Option<String>> = services
        .iter()
        .map(|s| s.image.as_deref().and_then(names::image_alias))
        .collect();
    services
        .iter()
        .zip(&image_aliases)
        .map(|(s, alias)| {
            let mut out: Vec<String> = s
                .context_name
                .as_deref()
                .and_then(names::dns_label)
                .into_iter()
                .collect();
            if let Some(a) = alias
                && image_aliases.iter().filter(|o| o.as_ref() == Some(a)).count() == 1
                && !out.contains(a)
            {
                out.push(a.clone());
            }
            out
        })
        .collect()
}

pub async fn run(
    docker: &Docker,
    inv: &Invocation,
    args: &PrepareJobArgs,
    label: &str,
) -> Result<PrepareJobResponse, HookError> {
    remove_labelled(docker, label, false).await?;
    let job = args.container.as_ref();
    if job.is_none() && args.services.is_empty() {
        crate::workflow_command::emit("No containers exist, skipping hook invocation");
        return Ok(PrepareJobResponse::default());
    }
    if let Some(job) = job
        && job.image.as_deref().is_none_or(str::is_empty)
    {
        return Err(HookError::InvalidRequest {
            field: "args.container.image".into(),
            detail: "the job container needs an image".into(),
        });
    }
    for (i, s) in args.services.iter().enumerate() {
        if s.image.as_deref().is_none_or(str::is_empty) {
            return Err(HookError::InvalidRequest {
                field: format!("args.services[{i}].image"),
                detail: "a service needs an image".into(),
            });
        }
    }
    // Bad createOptions, ports or args fail before anything is created.
    let roles = job
        .map(|j| (j, Role::Job))
        .into_iter()
        .chain(args.services.iter().map(|s| (s, Role::Service)));
    for (c, role) in roles {
        let placement = Placement {
            label,
            network: None,
            aliases: Vec::new(),
            role,
        };
        container_body(c, c.image.as_deref().unwrap_or_default(), &placement)?;
    }
    cancelled(inv)?;

    let network = match inv.env.get("ACTIONS_RUNNER_NETWORK_DRIVER") {
        Some(net) => net.to_owned(),
        None => {
            let name = names::network_name();
            docker
                .create_network(NetworkCreateRequest {
                    name: name.clone(),
                    labels: Some(HashMap::from([(label.to_owned(), String::new())])),
                    ..Default::default()
                })
                .await
                .map_err(docker_err(&format!("creating network {name}")))?;
            name
        }
    };
    let aliases_ok = is_user_defined_network(&network);

    let mut state = State {
        network: Some(network.clone()),
        ..State::default()
    };
    let mut to_check: Vec<(String, String)> = Vec::new();

    let mut job_info = None;
    if let Some(job) = job {
        let image = job.image.clone().unwrap_or_default();
        let placement = Placement {
            label,
            network: Some(&network),
            aliases: Vec::new(),
            role: Role::Job,
        };
        let id = create_and_start(docker, inv, job, &image, &placement, "job container").await?;
        to_check.push((id.clone(), image.clone()));
        state.container = Some(id.clone());
        job_info = Some((id, image));
    }

    let aliases = service_aliases(&args.services);
    let mut service_ids = Vec::new();
    for (service, aliases) in args.services.iter().zip(aliases) {
        cancelled(inv)?;
        let image = service.image.clone().unwrap_or_default();
        let placement = Placement {
            label,
            network: Some(&network),
            aliases: if aliases_ok { aliases } else { Vec::new() },
            role: Role::Service,
        };
        let what = match &service.context_name {
            Some(n) => format!("service '{n}'"),
            None => format!("service '{image}'"),
        };
        let id = create_and_start(docker, inv, service, &image, &placement, &what).await?;
        let shown = service.context_name.clone().unwrap_or_else(|| image.clone());
        to_check.push((id.clone(), shown));
        service_ids.push(id);
    }
    state.services = service_ids.clone();

    let limit = health::timeout(inv.env.get("RARC_HOOKS_HEALTH_TIMEOUT"));
    health::wait_all(docker, &to_check, limit, &inv.cancel).await?;

    let mut is_alpine = false;
    let mut context = ResponseContext::default();
    if let Some((id, image)) = &job_info {
        is_alpine = alpine(docker, id).await;
        context.container = Some(ContainerInfo {
            id: Some(id.clone()),
            image: Some(image.clone()),
            network: Some(network.clone()),
            ports: ports_of(docker, id).await?,
            context_name: None,
        });
    }
    for (service, id) in args.services.iter().zip(&service_ids) {
        context.services.push(ContainerInfo {
            id: Some(id.clone()),
            image: service.image.clone(),
            network: Some(network.clone()),
            ports: ports_of(docker, id).await?,
            context_name: service.context_name.clone(),
        });
    }
    Ok(PrepareJobResponse {
        state: Some(serde_json::to_value(&state).unwrap_or_default()),
        context,
        is_alpine,
    })
}

async fn create_and_start(
    docker: &Docker,
    inv: &Invocation,
    container: &HookContainer,
    image: &str,
    placement: &Placement<'_>,
    what: &str,
) -> Result<String, HookError> {
    registry::pull(docker, image, container.registry.as_ref(), &inv.cancel).await?;
    cancelled(inv)?;
    let (name, id) = create_container(docker, container, image, placement, what).await?;
    docker
        .start_container(&id, None::<bollard::query_parameters::StartContainerOptions>)
        .await
        .map_err(docker_err(&format!("starting the {what} ({name})")))?;
    tracing::debug!(what, id, name, "started");
    Ok(id)
}

async fn ports_of(docker: &Docker, id: &str) -> Result<std::collections::BTreeMap<String, String>, HookError> {
    let inspect = docker
        .inspect_container(id, None)
        .await
        .map_err(docker_err(&format!("inspecting container {id}")))?;
    Ok(published_ports(
        inspect.network_settings.as_ref().and_then(|n| n.ports.as_ref()),
    ))
}

async fn alpine(docker: &Docker, id: &str) -> bool {
    let cmd = vec!["sh".to_owned(), "-c".to_owned(), ALPINE_TEST.to_owned()];
    matches!(
        exec::capture(docker, id, cmd, Duration::from_secs(30)).await,
        Ok((Some(0), _))
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn service(image: &str, name: Option<&str>) -> HookContainer {
        HookContainer {
            image: Some(image.into()),
            context_name: name.map(str::to_owned),
            ..Default::default()
        }
    }

    #[test]
    fn aliases_from_names_and_unique_images() {
        let got = service_aliases(&[
            service("redis:7", Some("cache")),
            service("postgres:16", None),
            service("ghcr.io/o/db:1", None),
            service("mirror/db:2", Some("db2")),
            service("redis:7", None),
        ]);
        assert_eq!(
            got,
            vec![
                vec!["cache".to_owned()],
                vec!["postgres".to_owned()],
                vec![],
                vec!["db2".to_owned()],
                vec![],
            ]
        );
        assert_eq!(
            service_aliases(&[service("web", Some("web"))]),
            vec![vec!["web".to_owned()]]
        );
    }
}
