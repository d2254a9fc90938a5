//! `run_container_step` (`container-hooks.md` §3.4): a container action from an image (pulled)
//! or a Dockerfile (built through the Engine API from a tar of the Dockerfile's directory, tagged
//! `<label>:<6 hex>` and labelled, so `cleanup_job` removes it). The container is created with the
//! step's env, mounts and network, attached before it starts, waited for, and removed; its exit code
//! is the step's. On cancellation it is stopped (SIGTERM, SIGKILL after the grace period).

use super::exec;
use super::names;
use super::registry;
use super::spec::{Placement, Role};
use super::{State, api_message, create_container, docker_err};
use crate::error::HookError;
use crate::exit::{StepExit, Termination};
use crate::mode::Invocation;
use crate::protocol::HookContainer;
use bollard::Docker;
use bollard::query_parameters::{
    AttachContainerOptions, BuildImageOptions, KillContainerOptions, RemoveContainerOptions, StopContainerOptions,
};
use futures::StreamExt;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio::io::AsyncWriteExt;

pub async fn run(docker: &Docker, inv: &Invocation, args: &HookContainer, label: &str) -> Result<StepExit, HookError> {
    let state = State::from_invocation(inv);
    let image = match (
        args.image.as_deref().filter(|i| !i.is_empty()),
        args.dockerfile.as_deref().filter(|d| !d.is_empty()),
    ) {
        (Some(image), _) => {
            registry::pull(docker, image, args.registry.as_ref(), &inv.cancel).await?;
            image.to_owned()
        }
        (None, Some(dockerfile)) => {
            let workspace = inv.env.get("GITHUB_WORKSPACE").unwrap_or(".");
            build(docker, &resolve(dockerfile, workspace), label, inv).await?
        }
        (None, None) => {
            return Err(HookError::InvalidRequest {
                field: "args".into(),
                detail: "run container step should have image or dockerfile fields specified".into(),
            });
        }
    };
    let placement = Placement {
        label,
        network: state.network.as_deref(),
        aliases: Vec::new(),
        role: Role::Step,
    };
    let (_, id) = create_container(docker, args, &image, &placement, "step container").await?;
    let outcome = attach_start_wait(docker, inv, &id).await;
    let removed = docker
        .remove_container(
            &id,
            Some(RemoveContainerOptions {
                force: true,
                v: true,
                ..Default::default()
            }),
        )
        .await;
    if let Err(e) = removed {
        tracing::debug!(error = %e, "removing the step container failed; cleanup_job will");
    }
    outcome
}

/// A relative Dockerfile path is taken from the workspace.
fn resolve(dockerfile: &str, workspace: &str) -> PathBuf {
    let p = Path::new(dockerfile);
    if p.is_absolute() {
        p.to_owned()
    } else {
        Path::new(workspace).join(p)
    }
}

async fn attach_start_wait(docker: &Docker, inv: &Invocation, id: &str) -> Result<StepExit, HookError> {
    let attached = docker
        .attach_container(
            id,
            Some(AttachContainerOptions {
                stream: true,
                stdout: true,
                stderr: true,
                logs: true,
                ..Default::default()
            }),
        )
        .await
        .map_err(docker_err("attaching to the step container"))?;
    let mut output = attached.output;
    docker
        .start_container(id, None::<bollard::query_parameters::StartContainerOptions>)
        .await
        .map_err(docker_err("starting the step container"))?;

    let cancel = &inv.cancel;
    let mut stdout = tokio::io::stdout();
    let mut stderr = tokio::io::stderr();
    let mut stopping = false;
    let mut killed = false;
    loop {
        tokio::select! {
            item = output.next() => {
                if !exec::forward(item, &mut stdout, &mut stderr, "the step container's output stream").await {
                    break;
                }
            }
            () = cancel.cancelled(), if !stopping => {
                stopping = true;
                let (docker, id) = (docker.clone(), id.to_owned());
                let grace = i32::try_from(inv.kill_grace.as_secs()).unwrap_or(5);
                tokio::spawn(async move {
                    let _ = docker.stop_container(&id, Some(StopContainerOptions { t: Some(grace), ..Default::default() })).await;
                });
            }
            () = cancel.urgent(), if stopping && !killed => {
                killed = true;
                let _ = docker.kill_container(id, Some(KillContainerOptions { signal: "KILL".into() })).await;
            }
        }
    }

    // The output ends when the container does; wait for the daemon to record the exit.
    for _ in 0..100 {
        let inspect = docker
            .inspect_container(id, None)
            .await
            .map_err(docker_err("inspecting the step container"))?;
        let state = inspect.state.unwrap_or_default();
        if state.running != Some(true) {
            let code = state.exit_code.unwrap_or(-1);
            return Ok(StepExit {
                termination: Termination::Exited(code),
                cancelled: cancel.signal(),
            });
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Err(HookError::Docker {
        action: "waiting for the step container".into(),
        source: bollard::errors::Error::DockerStreamError {
            error: "its output ended but it is still running".into(),
        },
    })
}

/// Builds the Dockerfile's directory; returns the tag.
async fn build(docker: &Docker, dockerfile: &Path, label: &str, inv: &Invocation) -> Result<String, HookError> {
    let shown = dockerfile.display().to_string();
    let fail = |detail: String| HookError::Build {
        dockerfile: shown.clone(),
        detail,
    };
    if !dockerfile.is_file() {
        return Err(fail("no such file".into()));
    }
    let context = dockerfile.parent().unwrap_or(Path::new("/")).to_owned();
    let name_in_context = dockerfile
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "Dockerfile".into());
    let ctx = context.clone();
    let tar = tokio::task::spawn_blocking(move || context_tar(&ctx))
        .await
        .map_err(|e| fail(format!("packing the build context: {e}")))?
        .map_err(|e| fail(format!("packing the build context {}: {e}", context.display())))?;
    let tag = names::step_image_tag(label);
    crate::workflow_command::emit(&format!("Building {tag} from {shown}"));
    let options = BuildImageOptions {
        dockerfile: name_in_context,
        t: Some(tag.clone()),
        rm: true,
        forcerm: true,
        labels: Some(HashMap::from([(label.to_owned(), String::new())])),
        ..Default::default()
    };
    let mut stream = docker.build_image(options, None, Some(bollard::body_full(tar.into())));
    let mut stdout = tokio::io::stdout();
    loop {
        let item = tokio::select! {
            item = stream.next() => item,
            () = inv.cancel.cancelled() => return Err(HookError::Cancelled(inv.cancel.signal().unwrap_or(2))),
        };
        match item {
            None => break,
            Some(Ok(info)) => {
                if let Some(detail) = info.error_detail.and_then(|d| d.message) {
                    return Err(fail(detail));
                }
                if let Some(text) = info.stream {
                    let _ = stdout.write_all(text.as_bytes()).await;
                    let _ = stdout.flush().await;
                }
            }
            Some(Err(e)) => return Err(fail(api_message(&e))),
        }
    }
    // The build reported success: the tag must exist.
    docker
        .inspect_image(&tag)
        .await
        .map_err(|e| fail(format!("the built image {tag} is missing: {}", api_message(&e))))?;
    Ok(tag)
}

/// A tar of `dir` (symlinks kept as links).
fn context_tar(dir: &Path) -> std::io::Result<Vec<u8>> {
    let mut builder = tar::Builder::new(Vec::new());
    builder.follow_symlinks(false);
    builder.mode(tar::HeaderMode::Deterministic);
    builder.append_dir_all(".", dir)?;
    builder.into_inner()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn relative_dockerfiles_are_in_the_workspace() {
        assert_eq!(resolve("/a/Dockerfile", "/w"), PathBuf::from("/a/Dockerfile"));
        assert_eq!(resolve("Dockerfile", "/w"), PathBuf::from("/w/Dockerfile"));
        assert_eq!(resolve("sub/Dockerfile.x", "/w"), PathBuf::from("/w/sub/Dockerfile.x"));
    }

    #[test]
    fn the_context_tar_holds_the_directory() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("Dockerfile"), "FROM scratch\n").unwrap();
        std::fs::create_dir(dir.path().join("sub")).unwrap();
        std::fs::write(dir.path().join("sub/entry.sh"), "echo hi\n").unwrap();
        let bytes = context_tar(dir.path()).unwrap();
        let mut archive = tar::Archive::new(&bytes[..]);
        let names: Vec<String> = archive
            .entries()
            .unwrap()
            .map(|e| e.unwrap().path().unwrap().to_string_lossy().into_owned())
            .collect();
        assert!(names.iter().any(|n| n.ends_with("Dockerfile")), "{names:?}");
        assert!(names.iter().any(|n| n.ends_with("sub/entry.sh")), "{names:?}");
    }
}
