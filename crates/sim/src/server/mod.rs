//! The HTTP(S) server: routes, the recording / fault-injection layer, start-up and shutdown.

mod actions;
mod broker;
mod control;
mod github;
mod runners;

use crate::auth::{self, App};
use crate::calllog::{CallLog, CallRecord, MAX_BODY};
use crate::config::SimSettings;
use crate::error::{ApiError, exc};
use crate::faults::{FaultKind, FaultRule, Faults};
use crate::state::{State, TokenOwner};
use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Request, State as AxState};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use serde::de::DeserializeOwned;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use tokio::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

/// How to start a simulator.
#[derive(Debug, Clone)]
pub struct SimOptions {
    pub settings: SimSettings,
    pub seed: u64,
    pub addr: SocketAddr,
    /// PATs accepted by the registration-token call.
    pub pats: Vec<String>,
    pub apps: Vec<App>,
    /// Serve HTTPS with a freshly generated CA (see [`SimServer::ca_pem`]).
    pub tls: bool,
    /// A session nobody polls for this long expires (and stops conflicting).
    pub session_ttl: Duration,
    /// The host name the simulator calls itself in the URLs it hands out (default `127.0.0.1`).
    /// Proxy tests use a name that resolves nowhere, so clients must go through the proxy.
    pub public_host: Option<String>,
}

impl Default for SimOptions {
    fn default() -> Self {
        Self {
            settings: SimSettings::default(),
            seed: 1,
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            pats: vec![auth::DEFAULT_PAT.to_owned()],
            apps: vec![App::default_app()],
            tls: false,
            session_ttl: Duration::from_secs(120),
            public_host: None,
        }
    }
}

struct Inner {
    state: Mutex<State>,
    faults: Mutex<Faults>,
    calls: Mutex<CallLog>,
    started: Instant,
    session_ttl: Duration,
    shutdown: CancellationToken,
}

/// A handle on a running simulator's state. Cheap to clone.
#[derive(Clone)]
pub struct Sim(Arc<Inner>);

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding the lock leaves the data usable for a simulator; carry on.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Sim {
    /// Runs `f` on the state under its lock.
    pub fn with_state<R>(&self, f: impl FnOnce(&mut State) -> R) -> R {
        f(&mut lock(&self.0.state))
    }

    pub fn calls(&self) -> Vec<CallRecord> {
        lock(&self.0.calls).since(0)
    }

    pub fn calls_since(&self, seq: u64) -> Vec<CallRecord> {
        lock(&self.0.calls).since(seq)
    }

    pub fn clear_calls(&self) {
        lock(&self.0.calls).clear();
    }

    pub fn add_fault(&self, rule: FaultRule) -> Result<FaultRule, String> {
        lock(&self.0.faults).add(rule)
    }

    pub fn faults(&self) -> Vec<FaultRule> {
        lock(&self.0.faults).list()
    }

    pub fn clear_faults(&self) {
        lock(&self.0.faults).clear();
    }

    pub fn remove_fault(&self, id: u64) -> bool {
        lock(&self.0.faults).remove(id)
    }

    pub fn session_ttl(&self) -> Duration {
        self.0.session_ttl
    }

    fn shutdown(&self) -> &CancellationToken {
        &self.0.shutdown
    }
}

/// A running simulator.
pub struct SimServer {
    /// `http(s)://127.0.0.1:PORT`.
    pub url: String,
    pub addr: SocketAddr,
    pub sim: Sim,
    /// The CA certificate (PEM) clients must trust when serving HTTPS.
    pub ca_pem: Option<String>,
    task: tokio::task::JoinHandle<()>,
}

impl SimServer {
    /// Binds and starts serving in the background.
    pub async fn start(opts: SimOptions) -> std::io::Result<SimServer> {
        let listener = std::net::TcpListener::bind(opts.addr)?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let scheme = if opts.tls { "https" } else { "http" };
        let host = opts.public_host.clone().unwrap_or_else(|| addr.ip().to_string());
        let url = format!("{scheme}://{host}:{}", addr.port());
        let mut state = State::new(opts.settings.clone(), opts.seed);
        state.base_url = url.clone();
        state.pats = opts.pats.clone();
        state.apps = opts.apps.clone();
        let sim = Sim(Arc::new(Inner {
            state: Mutex::new(state),
            faults: Mutex::new(Faults::default()),
            calls: Mutex::new(CallLog::default()),
            started: Instant::now(),
            session_ttl: opts.session_ttl,
            shutdown: CancellationToken::new(),
        }));
        let app = router(sim.clone());
        let shutdown = sim.shutdown().clone();
        let ticker = sim.clone();
        tokio::spawn(async move {
            let mut every = tokio::time::interval(Duration::from_millis(100));
            loop {
                tokio::select! {
                    _ = every.tick() => ticker.with_state(|s| s.tick()),
                    _ = ticker.shutdown().cancelled() => break,
                }
            }
        });
        let (task, ca_pem) = if opts.tls {
            let certs = crate::tls::generate(&["127.0.0.1", "localhost", &host]).map_err(std::io::Error::other)?;
            let config = axum_server::tls_rustls::RustlsConfig::from_pem(
                certs.server_cert_pem.into_bytes(),
                certs.server_key_pem.into_bytes(),
            )
            .await?;
            let handle = axum_server::Handle::new();
            let h2 = handle.clone();
            let sd = shutdown.clone();
            tokio::spawn(async move {
                sd.cancelled().await;
                h2.graceful_shutdown(Some(std::time::Duration::from_secs(1)));
            });
            let server = axum_server::from_tcp_rustls(listener, config)?.handle(handle);
            let task = tokio::spawn(async move {
                if let Err(e) = server.serve(app.into_make_service()).await {
                    tracing::error!(error = %e, "rarc-sim TLS server stopped");
                }
            });
            (task, Some(certs.ca_cert_pem))
        } else {
            let listener = tokio::net::TcpListener::from_std(listener)?;
            let task = tokio::spawn(async move {
                let serve =
                    axum::serve(listener, app).with_graceful_shutdown(async move { shutdown.cancelled().await });
                if let Err(e) = serve.await {
                    tracing::error!(error = %e, "rarc-sim server stopped");
                }
            });
            (task, None)
        };
        Ok(SimServer {
            url,
            addr,
            sim,
            ca_pem,
            task,
        })
    }

    /// A config URL for an organization, as a GHES user would write it.
    pub fn config_url(&self, org: &str) -> String {
        format!("{}/{org}", self.url)
    }

    /// Stops serving and waits for open connections to end.
    pub async fn stop(self) {
        self.sim.shutdown().cancel();
        let _ = tokio::time::timeout(Duration::from_secs(5), self.task).await;
    }

    /// Waits until the server is told to stop (used by `rarc-sim serve`).
    pub async fn wait(self) {
        let _ = self.task.await;
    }

    pub fn stop_token(&self) -> CancellationToken {
        self.sim.shutdown().clone()
    }
}

fn router(sim: Sim) -> Router {
    let tenant = sim.with_state(|s| s.tenant.clone());
    let inner = Router::new()
        .merge(github::routes())
        .merge(actions::routes(&tenant))
        .merge(broker::routes(&tenant))
        .merge(runners::routes(&tenant))
        .merge(control::routes())
        .fallback(not_found)
        .with_state(sim.clone());
    Router::new()
        .fallback_service(inner)
        .layer(middleware::from_fn_with_state(sim, record_and_inject))
}

async fn not_found(method: Method, uri: Uri) -> Response {
    (
        StatusCode::NOT_FOUND,
        format!("rarc-sim: no route for {method} {}", uri.path()),
    )
        .into_response()
}

/// Collapses duplicate slashes (the classic client sends `//_apis/...`).
fn normalize_path(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    let mut prev_slash = false;
    for c in path.chars() {
        if c == '/' && prev_slash {
            continue;
        }
        prev_slash = c == '/';
        out.push(c);
    }
    out
}

fn auth_kind(sim: &Sim, headers: &HeaderMap, path: &str) -> String {
    let Some(value) = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()) else {
        return String::new();
    };
    let Some((_, cred)) = auth::split_authorization(value) else {
        return "unknown".into();
    };
    if path.contains("/app/installations/") {
        return "app-jwt".into();
    }
    sim.with_state(|s| s.token_owner(cred).kind().to_owned())
}

fn redacted_headers(headers: &HeaderMap) -> std::collections::BTreeMap<String, String> {
    headers
        .iter()
        .map(|(k, v)| {
            let name = k.as_str().to_ascii_lowercase();
            let value = String::from_utf8_lossy(v.as_bytes()).into_owned();
            let value = if name == "authorization" || name == "proxy-authorization" {
                match value.split_once(' ') {
                    Some((scheme, _)) => format!("{scheme} ***"),
                    None => "***".into(),
                }
            } else {
                value
            };
            (name, value)
        })
        .collect()
}

async fn record_and_inject(AxState(sim): AxState<Sim>, req: Request, next: Next) -> Response {
    let start = Instant::now();
    let (mut parts, body) = req.into_parts();
    let raw_path = parts.uri.path().to_owned();
    let path = normalize_path(&raw_path);
    if path != raw_path {
        let pq = match parts.uri.query() {
            Some(q) => format!("{path}?{q}"),
            None => path.clone(),
        };
        if let Ok(uri) = pq.parse::<Uri>() {
            parts.uri = uri;
        }
    }
    let body = axum::body::to_bytes(body, 16 * 1024 * 1024).await.unwrap_or_default();
    let mut rec = CallRecord {
        seq: 0,
        at_ms: start.duration_since(sim.0.started).as_millis() as u64,
        method: parts.method.to_string(),
        path: raw_path,
        query: parts.uri.query().unwrap_or_default().to_owned(),
        headers: redacted_headers(&parts.headers),
        auth: auth_kind(&sim, &parts.headers, &path),
        body: String::from_utf8_lossy(&body[..body.len().min(MAX_BODY)]).into_owned(),
        status: 0,
        fault: None,
        duration_ms: 0,
    };
    let is_control = path.starts_with("/_sim");
    let fault = if is_control {
        None
    } else {
        lock(&sim.0.faults).take(parts.method.as_str(), &path)
    };
    rec.fault = fault.as_ref().map(|f| {
        serde_json::to_value(f)
            .ok()
            .and_then(|v| v.get("kind").and_then(|k| k.as_str()).map(str::to_owned))
            .unwrap_or_default()
    });
    let req = Request::from_parts(parts, Body::from(body));
    let mut resp = match fault {
        None => next.run(req).await,
        Some(FaultKind::Latency { ms }) => {
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(ms)) => next.run(req).await,
                _ = sim.shutdown().cancelled() => StatusCode::SERVICE_UNAVAILABLE.into_response(),
            }
        }
        Some(FaultKind::Hang) => {
            sim.shutdown().cancelled().await;
            StatusCode::SERVICE_UNAVAILABLE.into_response()
        }
        Some(FaultKind::EmptyBody) => StatusCode::OK.into_response(),
        Some(FaultKind::Malformed { body }) => (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "application/json")],
            body.unwrap_or_else(|| "{\"messageId\":".to_owned()),
        )
            .into_response(),
        Some(FaultKind::Bom) => {
            let resp = next.run(req).await;
            let (parts, body) = resp.into_parts();
            let bytes = axum::body::to_bytes(body, 64 * 1024 * 1024).await.unwrap_or_default();
            let mut with_bom = crate::BOM.to_vec();
            with_bom.extend_from_slice(&bytes);
            let mut resp = Response::from_parts(parts, Body::from(with_bom));
            resp.headers_mut().remove(header::CONTENT_LENGTH);
            resp
        }
        Some(FaultKind::Status {
            status,
            exception,
            body,
            content_type,
            retry_after,
        }) => {
            let code = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            let mut resp = match (exception, body) {
                (Some(exc), _) => {
                    ApiError::exception(code, &exc, format!("rarc-sim injected fault {status}")).into_response()
                }
                (None, Some(body)) => {
                    let ct = content_type.unwrap_or_else(|| "text/plain; charset=utf-8".into());
                    (code, [(header::CONTENT_TYPE, ct)], body).into_response()
                }
                (None, None) => code.into_response(),
            };
            if let Some(ra) = retry_after.and_then(|v| HeaderValue::from_str(&v).ok()) {
                resp.headers_mut().insert(header::RETRY_AFTER, ra);
            }
            resp
        }
    };
    let id = HeaderValue::from_str(&uuid::Uuid::new_v4().to_string()).unwrap_or(HeaderValue::from_static("0"));
    if path.starts_with("/api/v3") {
        resp.headers_mut().insert("x-github-request-id", id);
    } else if !is_control {
        resp.headers_mut().insert("activityid", id);
    }
    rec.status = resp.status().as_u16();
    rec.duration_ms = start.elapsed().as_millis() as u64;
    lock(&sim.0.calls).push(rec);
    resp
}

// ---- helpers shared by the handlers --------------------------------------------------------------

/// The credential of a `Bearer` / `token` / `RemoteAuth` Authorization header with that scheme.
pub(crate) fn credential<'a>(headers: &'a HeaderMap, schemes: &[&str]) -> Option<&'a str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, cred) = auth::split_authorization(value)?;
    schemes.iter().any(|s| s.eq_ignore_ascii_case(scheme)).then_some(cred)
}

/// Requires a valid admin token.
pub(crate) fn require_admin(sim: &Sim, headers: &HeaderMap) -> Result<(), ApiError> {
    let token = credential(headers, &["Bearer"]).ok_or_else(ApiError::unauthorized)?;
    match sim.with_state(|s| s.token_owner(token)) {
        TokenOwner::Admin => Ok(()),
        _ => Err(ApiError::unauthorized()),
    }
}

/// Requires a valid message-queue token; returns (session id, scale set id).
pub(crate) fn require_mq(sim: &Sim, headers: &HeaderMap) -> Result<(String, i64), ApiError> {
    let token = credential(headers, &["Bearer"]).ok_or_else(ApiError::unauthorized)?;
    match sim.with_state(|s| s.token_owner(token)) {
        TokenOwner::Mq {
            session_id,
            scale_set_id,
        } => Ok((session_id, scale_set_id)),
        _ => Err(ApiError::unauthorized()),
    }
}

/// Requires `api-version=6.0-preview` (spec §5.5).
pub(crate) fn require_api_version(
    method: &Method,
    query: &std::collections::HashMap<String, String>,
) -> Result<(), ApiError> {
    match query.get("api-version") {
        None => Err(ApiError::exception(
            StatusCode::BAD_REQUEST,
            exc::VERSION_NOT_SPECIFIED,
            format!("No api-version was supplied for the {method} request."),
        )),
        Some(v) if v.starts_with(rarc_actions::types::API_VERSION) => Ok(()),
        Some(v) => Err(ApiError::exception(
            StatusCode::BAD_REQUEST,
            exc::VERSION_OUT_OF_RANGE,
            format!("The requested REST API version of {v} is out of range for this server."),
        )),
    }
}

/// Decodes a service request body leniently (the service is case-insensitive too).
pub(crate) fn service_body<T: DeserializeOwned>(body: &Bytes) -> Result<T, ApiError> {
    rarc_actions::lenient::from_slice(body).map_err(|e| {
        ApiError::exception(
            StatusCode::BAD_REQUEST,
            exc::ARGUMENT,
            format!("The request body could not be read: {e}"),
        )
    })
}

/// Decodes a control-API body strictly, naming the field at fault.
pub(crate) fn control_body<T: DeserializeOwned>(body: &Bytes) -> Result<T, ApiError> {
    if body.is_empty() {
        return Err(ApiError::control("request body: a JSON object is required"));
    }
    let de = &mut serde_json::Deserializer::from_slice(body);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        if path == "." || path == "?" || path.is_empty() {
            ApiError::control(format!("request body: {}", e.inner()))
        } else {
            ApiError::control(format!("field `{path}`: {}", e.inner()))
        }
    })
}

pub(crate) fn parse_id(what: &str, text: &str) -> Result<i64, ApiError> {
    text.parse::<i64>().map_err(|_| {
        ApiError::exception(
            StatusCode::BAD_REQUEST,
            exc::ARGUMENT,
            format!("The {what} '{text}' is not a valid integer."),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn collapses_duplicate_slashes() {
        assert_eq!(normalize_path("/tenant/1//_apis///x"), "/tenant/1/_apis/x");
        assert_eq!(normalize_path("/"), "/");
    }
}
