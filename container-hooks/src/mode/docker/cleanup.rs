//! Removing what a job on this runner created, by the instance label (`container-hooks.md` §3.2
//! step 1, §3.5): containers (with their anonymous volumes), networks and, at `cleanup_job`, the
//! images built for Dockerfile actions. Ignores `state`; idempotent; a container or network that is
//! already gone is not an error.

use super::docker_err;
use crate::error::HookError;
use bollard::Docker;
use bollard::query_parameters::{
    ListContainersOptions, ListImagesOptions, ListNetworksOptions, RemoveContainerOptions, RemoveImageOptions,
};
use std::collections::HashMap;

fn label_filter(label: &str) -> Option<HashMap<String, Vec<String>>> {
    Some(HashMap::from([("label".to_owned(), vec![label.to_owned()])]))
}

fn gone(e: &bollard::errors::Error) -> bool {
    matches!(
        e,
        bollard::errors::Error::DockerResponseServerError { status_code: 404, .. }
    )
}

/// Removes every container and network labelled `label`, and its images when `images`.
pub async fn remove_labelled(docker: &Docker, label: &str, images: bool) -> Result<(), HookError> {
    let containers = docker
        .list_containers(Some(ListContainersOptions {
            all: true,
            filters: label_filter(label),
            ..Default::default()
        }))
        .await
        .map_err(docker_err("listing the job's containers"))?;
    let removals = containers.iter().filter_map(|c| c.id.as_deref()).map(|id| async move {
        match docker
            .remove_container(
                id,
                Some(RemoveContainerOptions {
                    force: true,
                    v: true,
                    ..Default::default()
                }),
            )
            .await
        {
            Err(e) if !gone(&e) => Err(docker_err(&format!("removing container {id}"))(e)),
            _ => Ok(()),
        }
    });
    futures::future::try_join_all(removals).await?;

    let networks = docker
        .list_networks(Some(ListNetworksOptions {
            filters: label_filter(label),
        }))
        .await
        .map_err(docker_err("listing the job's networks"))?;
    for net in networks {
        let Some(id) = net.id.as_deref() else { continue };
        match docker.remove_network(id).await {
            Err(e) if !gone(&e) => {
                let name = net.name.as_deref().unwrap_or(id);
                return Err(docker_err(&format!("removing network {name}"))(e));
            }
            _ => {}
        }
    }

    if images {
        let found = docker
            .list_images(Some(ListImagesOptions {
                filters: label_filter(label),
                ..Default::default()
            }))
            .await
            .map_err(docker_err("listing the job's images"))?;
        for image in found {
            let removed = docker
                .remove_image(
                    &image.id,
                    Some(RemoveImageOptions {
                        force: true,
                        ..Default::default()
                    }),
                    None,
                )
                .await;
            if let Err(e) = removed
                && !gone(&e)
            {
                // An image still used elsewhere is not worth failing the job for.
                tracing::warn!(image = image.id, error = %e, "removing a built image failed");
            }
        }
    }
    Ok(())
}
