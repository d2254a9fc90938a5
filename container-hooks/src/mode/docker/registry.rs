//! Registry login and pull (`container-hooks.md` §3.6). There is no CLI login: the request's
//! credentials go with the pull itself (`X-Registry-Auth`), so nothing is written to disk and
//! there is nothing to log out of. Up to 3 attempts, like the reference; a rejected login is
//! reported at once. When every attempt fails but the daemon already has the image, that copy is
//! used (the reference would fail; this keeps offline and locally built images working).

use super::api_message;
use crate::error::HookError;
use crate::protocol::Registry;
use crate::signals::Cancellation;
use crate::workflow_command;
use bollard::Docker;
use bollard::auth::DockerCredentials;
use bollard::query_parameters::CreateImageOptions;
use futures::StreamExt;

/// Pull attempts before giving up.
pub const PULL_ATTEMPTS: u32 = 3;

/// The credentials to send, if the request has a username and a password.
pub fn credentials(registry: Option<&Registry>) -> Option<DockerCredentials> {
    let r = registry?;
    let username = r.username.as_deref().filter(|u| !u.is_empty())?;
    let password = r.password.as_deref().filter(|p| !p.is_empty())?;
    Some(DockerCredentials {
        username: Some(username.to_owned()),
        password: Some(password.to_owned()),
        serveraddress: Some(r.server_url.clone()).filter(|s| !s.is_empty()),
        ..Default::default()
    })
}

/// Whether a pull error says the registry refused the credentials (not worth retrying).
pub fn is_auth_error(message: &str) -> bool {
    let m = message.to_ascii_lowercase();
    [
        "unauthorized",
        "authentication required",
        "no basic auth credentials",
        "access denied",
        "denied:",
    ]
    .iter()
    .any(|needle| m.contains(needle))
}

/// Pulls `image` (with the request's credentials, if any).
pub async fn pull(
    docker: &Docker,
    image: &str,
    registry: Option<&Registry>,
    cancel: &Cancellation,
) -> Result<(), HookError> {
    let creds = credentials(registry);
    let server = registry.map(|r| r.server_url.clone()).unwrap_or_default();
    workflow_command::emit(&format!("Pulling {image}"));
    let mut last = String::new();
    for attempt in 1..=PULL_ATTEMPTS {
        let options = CreateImageOptions {
            from_image: Some(image.to_owned()),
            tag: super::names::pull_tag(image).map(str::to_owned),
            ..Default::default()
        };
        let mut stream = docker.create_image(Some(options), None, creds.clone());
        let outcome = loop {
            let item = tokio::select! {
                item = stream.next() => item,
                () = cancel.cancelled() => return Err(HookError::Cancelled(cancel.signal().unwrap_or(2))),
            };
            match item {
                None => break Ok(()),
                Some(Ok(info)) => {
                    if let Some(detail) = info.error_detail.and_then(|d| d.message) {
                        break Err(detail);
                    }
                }
                Some(Err(e)) => break Err(api_message(&e)),
            }
        };
        match outcome {
            Ok(()) => return Ok(()),
            Err(message) => {
                tracing::debug!(image, attempt, error = %message, "pull failed");
                if creds.is_some() && is_auth_error(&message) {
                    return Err(HookError::RegistryAuth {
                        image: image.to_owned(),
                        server: if server.is_empty() { "docker.io".into() } else { server },
                        detail: message,
                    });
                }
                last = message;
            }
        }
    }
    if docker.inspect_image(image).await.is_ok() {
        workflow_command::emit(&format!(
            "Pulling {image} failed ({last}); using the image already on the Docker daemon"
        ));
        return Ok(());
    }
    Err(HookError::PullFailed {
        image: image.to_owned(),
        attempts: PULL_ATTEMPTS,
        detail: last,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_need_a_username_and_a_password() {
        let r = |u: Option<&str>, p: Option<&str>, s: &str| Registry {
            username: u.map(str::to_owned),
            password: p.map(str::to_owned),
            server_url: s.to_owned(),
        };
        let c = credentials(Some(&r(Some("u"), Some("p"), "ghcr.io"))).unwrap_or_default();
        assert_eq!(c.username.as_deref(), Some("u"));
        assert_eq!(c.password.as_deref(), Some("p"));
        assert_eq!(c.serveraddress.as_deref(), Some("ghcr.io"));
        let hub = credentials(Some(&r(Some("u"), Some("p"), ""))).unwrap_or_default();
        assert_eq!(hub.serveraddress, None);
        assert!(credentials(Some(&r(Some("u"), None, "x"))).is_none());
        assert!(credentials(Some(&r(None, Some("p"), "x"))).is_none());
        assert!(credentials(None).is_none());
    }

    #[test]
    fn auth_errors() {
        assert!(is_auth_error(
            "Head \"http://127.0.0.1:5000/v2/x/manifests/1\": no basic auth credentials"
        ));
        assert!(is_auth_error("unauthorized: authentication required"));
        assert!(is_auth_error("pull access denied for x, repository does not exist"));
        assert!(!is_auth_error("manifest for x:1 not found: manifest unknown"));
        assert!(!is_auth_error("dial tcp: lookup ghcr.io: no such host"));
    }
}
