//! The Docker daemon connection: `DOCKER_HOST` (default `unix:///var/run/docker.sock`, the dind
//! sidecar's socket), plain `tcp://`, or TLS when `DOCKER_TLS_VERIFY` is set (certificates from
//! `DOCKER_CERT_PATH`, default `~/.docker`: `ca.pem`, `cert.pem`, `key.pem`) or the scheme is
//! `https://`. The API version is negotiated with the daemon: on a unix socket from the
//! `Api-Version` header of `HEAD /_ping`, as the docker CLI does (one sub-millisecond call, where
//! `GET /version` costs the daemon 7–17 ms of containerd queries on every hook invocation);
//! otherwise, or when that header is missing, from `GET /version`.

use crate::env::RunnerEnv;
use crate::error::HookError;
use bollard::{API_DEFAULT_VERSION, ClientVersion, Docker};
use hyper_util::rt::TokioIo;
use std::path::PathBuf;
use std::time::Duration;

/// The dind sidecar's socket, the default of the docker CLI.
pub const DEFAULT_HOST: &str = "unix:///var/run/docker.sock";

/// Seconds the daemon gets to answer a request's headers (streams, once started, are not limited).
const REQUEST_TIMEOUT: u64 = 300;

/// How to reach the daemon.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    Unix(String),
    Http(String),
    Tls {
        addr: String,
        ca: PathBuf,
        cert: PathBuf,
        key: PathBuf,
    },
}

/// Decides the transport from the environment (pure).
pub fn target(env: &RunnerEnv) -> Result<(String, Target), HookError> {
    let host = env.get("DOCKER_HOST").unwrap_or(DEFAULT_HOST).to_owned();
    let tls = env.get("DOCKER_TLS_VERIFY").is_some();
    let certs = || {
        let dir = env
            .get("DOCKER_CERT_PATH")
            .map(PathBuf::from)
            .or_else(|| env.get("HOME").map(|h| PathBuf::from(h).join(".docker")))
            .unwrap_or_else(|| PathBuf::from(".docker"));
        (dir.join("ca.pem"), dir.join("cert.pem"), dir.join("key.pem"))
    };
    let t = if host.starts_with("unix://") {
        Target::Unix(host.clone())
    } else if let Some(addr) = host.strip_prefix("tcp://").or_else(|| host.strip_prefix("http://")) {
        if tls {
            let (ca, cert, key) = certs();
            Target::Tls {
                addr: format!("https://{addr}"),
                ca,
                cert,
                key,
            }
        } else {
            Target::Http(format!("http://{addr}"))
        }
    } else if host.starts_with("https://") {
        let (ca, cert, key) = certs();
        Target::Tls {
            addr: host.clone(),
            ca,
            cert,
            key,
        }
    } else {
        return Err(HookError::DockerConnect {
            host,
            detail: "unsupported DOCKER_HOST scheme (use unix://, tcp:// or https://)".into(),
        });
    };
    Ok((host, t))
}

/// Connects, negotiates the API version and checks that the daemon answers.
pub async fn connect(env: &RunnerEnv) -> Result<Docker, HookError> {
    let (host, target) = target(env)?;
    let fail = |detail: String| HookError::DockerConnect {
        host: host.clone(),
        detail,
    };
    if let Target::Unix(path) = &target
        && let Some(server) = ping_unix(path).await.map_err(fail)?
    {
        let version = if server < *API_DEFAULT_VERSION {
            server
        } else {
            *API_DEFAULT_VERSION
        };
        let docker = Docker::connect_with_unix(path, REQUEST_TIMEOUT, &version).map_err(|e| fail(causes(&e)))?;
        tracing::debug!(host, version = ?docker.client_version(), "connected to the Docker daemon");
        return Ok(docker);
    }
    let docker = match &target {
        Target::Unix(path) => Docker::connect_with_unix(path, REQUEST_TIMEOUT, API_DEFAULT_VERSION),
        Target::Http(addr) => Docker::connect_with_http(addr, REQUEST_TIMEOUT, API_DEFAULT_VERSION),
        Target::Tls { addr, ca, cert, key } => {
            for f in [ca, cert, key] {
                if !f.is_file() {
                    return Err(fail(format!(
                        "DOCKER_TLS_VERIFY is set but {} does not exist (set DOCKER_CERT_PATH)",
                        f.display()
                    )));
                }
            }
            Docker::connect_with_ssl(addr, key, cert, ca, REQUEST_TIMEOUT, API_DEFAULT_VERSION)
        }
    }
    .map_err(|e| fail(causes(&e)))?;
    let docker = docker.negotiate_version().await.map_err(|e| fail(causes(&e)))?;
    docker.ping().await.map_err(|e| fail(causes(&e)))?;
    tracing::debug!(host, version = ?docker.client_version(), "connected to the Docker daemon");
    Ok(docker)
}

/// `e` and its causes, `: `-joined (pure): bollard's transport errors say only `client error
/// (Connect)`; what failed (refused, TLS alert, untrusted certificate) is in the causes. A cause
/// whose text is already shown is skipped.
fn causes(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut next = e.source();
    while let Some(cause) = next {
        let part = cause.to_string();
        if !part.is_empty() && !text.contains(&part) {
            text.push_str(": ");
            text.push_str(&part);
        }
        next = cause.source();
    }
    text
}

/// A unix socket: `HEAD /_ping` checks that the daemon answers and gives its API version
/// (`Api-Version`), the client then uses the lower of that and bollard's. `None`: the daemon
/// answered without the header (negotiate through `/version` instead).
async fn ping_unix(path: &str) -> Result<Option<ClientVersion>, String> {
    let socket = path.strip_prefix("unix://").unwrap_or(path).to_owned();
    let exchange = async move {
        let stream = tokio::net::UnixStream::connect(&socket)
            .await
            .map_err(|e| e.to_string())?;
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| e.to_string())?;
        let driver = tokio::spawn(connection);
        let request = http::Request::head("/_ping")
            .header(http::header::HOST, "docker")
            .header(http::header::USER_AGENT, "rarc-hooks")
            .body(String::new())
            .map_err(|e| e.to_string())?;
        let response = sender.send_request(request).await.map_err(|e| e.to_string());
        driver.abort();
        let response = response?;
        let version = response
            .headers()
            .get("api-version")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        Ok::<_, String>((response.status(), version))
    };
    let (status, version) = tokio::time::timeout(Duration::from_secs(REQUEST_TIMEOUT), exchange)
        .await
        .map_err(|_| format!("no answer to /_ping within {REQUEST_TIMEOUT} s"))??;
    if status != http::StatusCode::OK {
        return Err(format!("the daemon answered /_ping with {status}"));
    }
    Ok(version.as_deref().and_then(parse_api_version))
}

/// `1.41` → API version 1.41 (pure); `None` when malformed.
fn parse_api_version(v: &str) -> Option<ClientVersion> {
    let (major, minor) = v.trim().split_once('.')?;
    Some(ClientVersion {
        major_version: major.parse().ok()?,
        minor_version: minor.parse().ok()?,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn env(vars: &[(&str, &str)]) -> RunnerEnv {
        RunnerEnv::from_vars(vars.iter().copied())
    }

    #[test]
    fn targets() {
        assert_eq!(target(&env(&[])).unwrap().1, Target::Unix(DEFAULT_HOST.into()));
        assert_eq!(
            target(&env(&[("DOCKER_HOST", "unix:///run/dind.sock")])).unwrap().1,
            Target::Unix("unix:///run/dind.sock".into())
        );
        assert_eq!(
            target(&env(&[("DOCKER_HOST", "tcp://dind:2375")])).unwrap().1,
            Target::Http("http://dind:2375".into())
        );
        assert_eq!(
            target(&env(&[
                ("DOCKER_HOST", "tcp://dind:2376"),
                ("DOCKER_TLS_VERIFY", "1"),
                ("DOCKER_CERT_PATH", "/certs/client")
            ]))
            .unwrap()
            .1,
            Target::Tls {
                addr: "https://dind:2376".into(),
                ca: "/certs/client/ca.pem".into(),
                cert: "/certs/client/cert.pem".into(),
                key: "/certs/client/key.pem".into(),
            }
        );
        let Target::Tls { ca, .. } = target(&env(&[("DOCKER_HOST", "https://d:2376"), ("HOME", "/home/runner")]))
            .unwrap()
            .1
        else {
            panic!()
        };
        assert_eq!(ca, PathBuf::from("/home/runner/.docker/ca.pem"));
        let e = target(&env(&[("DOCKER_HOST", "ssh://x")])).unwrap_err().to_string();
        assert!(e.contains("unsupported DOCKER_HOST scheme"), "{e}");
    }

    #[test]
    fn api_versions() {
        let v = |major_version, minor_version| ClientVersion {
            major_version,
            minor_version,
        };
        assert_eq!(parse_api_version("1.41"), Some(v(1, 41)));
        assert_eq!(parse_api_version(" 1.52 "), Some(v(1, 52)));
        assert_eq!(parse_api_version("x"), None);
        assert_eq!(parse_api_version("1.x"), None);
    }

    #[test]
    fn causes_are_shown() {
        #[derive(Debug)]
        struct E(&'static str, Option<Box<E>>);
        impl std::fmt::Display for E {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.0)
            }
        }
        impl std::error::Error for E {
            fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
                self.1.as_deref().map(|e| e as _)
            }
        }
        let e = E(
            "client error (Connect)",
            Some(Box::new(E(
                "invalid peer certificate: UnknownIssuer",
                Some(Box::new(E("UnknownIssuer", None))),
            ))),
        );
        assert_eq!(
            causes(&e),
            "client error (Connect): invalid peer certificate: UnknownIssuer"
        );
        assert_eq!(causes(&E("alone", None)), "alone");
    }

    #[tokio::test]
    async fn missing_certificates_and_sockets_are_clear_errors() {
        let e = connect(&env(&[
            ("DOCKER_HOST", "tcp://127.0.0.1:1"),
            ("DOCKER_TLS_VERIFY", "1"),
            ("DOCKER_CERT_PATH", "/nonexistent"),
        ]))
        .await
        .unwrap_err()
        .to_string();
        assert!(
            e.starts_with("cannot connect to the Docker daemon at tcp://127.0.0.1:1: DOCKER_TLS_VERIFY is set but /nonexistent/ca.pem does not exist"),
            "{e}"
        );
        let e = connect(&env(&[("DOCKER_HOST", "unix:///nonexistent.sock")]))
            .await
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("cannot connect to the Docker daemon at unix:///nonexistent.sock"),
            "{e}"
        );
    }
}
