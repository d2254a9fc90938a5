//! Liveness (`/healthz`) and the HTTP server that also serves the metrics endpoint.
//!
//! The loop calls [`Health::beat`] whenever it completes a poll cycle (and while it waits to
//! create a session). `/healthz` answers 200 while the last beat is younger than the deadline
//! (long-poll window plus a margin) and 503 afterwards, so a wedged listener gets restarted.

use crate::metrics::Metrics;
use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

/// Default deadline: the service's 50 s long poll plus room for HTTP retries.
pub const DEFAULT_HEALTH_DEADLINE: Duration = Duration::from_secs(180);
/// Path of the liveness endpoint.
pub const HEALTHZ: &str = "/healthz";

/// The loop's heartbeat. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Health {
    inner: Arc<HealthInner>,
}

#[derive(Debug)]
struct HealthInner {
    started: Instant,
    last_beat_ms: AtomicU64,
    deadline: Duration,
}

impl Health {
    /// A heartbeat that counts as fresh at creation.
    pub fn new(deadline: Duration) -> Self {
        Self {
            inner: Arc::new(HealthInner {
                started: Instant::now(),
                last_beat_ms: AtomicU64::new(0),
                deadline,
            }),
        }
    }

    /// The loop made progress.
    pub fn beat(&self) {
        let ms = u64::try_from(self.inner.started.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.inner.last_beat_ms.store(ms, Ordering::Relaxed);
    }

    /// Time since the last beat.
    pub fn since_last_beat(&self) -> Duration {
        let last = Duration::from_millis(self.inner.last_beat_ms.load(Ordering::Relaxed));
        self.inner.started.elapsed().saturating_sub(last)
    }

    /// Whether the last beat is within the deadline.
    pub fn is_healthy(&self) -> bool {
        self.since_last_beat() <= self.inner.deadline
    }
}

impl Default for Health {
    fn default() -> Self {
        Self::new(DEFAULT_HEALTH_DEADLINE)
    }
}

#[derive(Clone)]
struct AppState {
    metrics: Arc<Vec<Arc<Metrics>>>,
    health: Arc<Vec<(String, Health)>>,
}

/// The router of one scale set: `endpoint` (metrics, when `metrics` is given) and `/healthz`.
pub fn router(metrics: Option<Arc<Metrics>>, endpoint: &str, health: Health) -> Router {
    router_for(metrics.into_iter().collect(), endpoint, vec![(String::new(), health)])
}

/// The router of several scale sets on one address: their metrics on `endpoint` (one exposition,
/// the `name` label tells them apart) and `/healthz`, healthy only while every set's loop is.
/// `health` pairs each heartbeat with the scale set name shown when it stalls.
pub fn router_for(metrics: Vec<Arc<Metrics>>, endpoint: &str, health: Vec<(String, Health)>) -> Router {
    let mut router = Router::new().route(HEALTHZ, get(healthz));
    if !metrics.is_empty() {
        router = router.route(endpoint, get(render_metrics));
    }
    router.with_state(AppState {
        metrics: Arc::new(metrics),
        health: Arc::new(health),
    })
}

async fn healthz(State(state): State<AppState>) -> impl IntoResponse {
    let stalled: Vec<String> = state
        .health
        .iter()
        .filter(|(_, h)| !h.is_healthy())
        .map(|(name, h)| {
            let secs = h.since_last_beat().as_secs();
            if name.is_empty() {
                format!("listener loop stalled: no progress for {secs} s\n")
            } else {
                format!("listener loop stalled: scale set {name}: no progress for {secs} s\n")
            }
        })
        .collect();
    if stalled.is_empty() {
        (StatusCode::OK, "ok\n".to_owned())
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, stalled.concat())
    }
}

async fn render_metrics(State(state): State<AppState>) -> impl IntoResponse {
    let sets: Vec<&Metrics> = state.metrics.iter().map(AsRef::as_ref).collect();
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")],
        crate::metrics::render_all(&sets),
    )
}

/// Errors of the admin server.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("bind {addr}")]
    Bind {
        addr: String,
        #[source]
        source: std::io::Error,
    },
}

/// Turns Go-style addresses into something bindable: `:8080` ⇒ `0.0.0.0:8080` (all interfaces).
pub fn normalize_addr(addr: &str) -> String {
    if addr.starts_with(':') {
        format!("0.0.0.0{addr}")
    } else {
        addr.to_owned()
    }
}

/// A bound admin server; [`AdminServer::serve`] runs it until `shutdown`.
pub struct AdminServer {
    listener: tokio::net::TcpListener,
    router: Router,
}

impl AdminServer {
    /// Binds `addr` (Go syntax accepted).
    pub async fn bind(addr: &str, router: Router) -> Result<Self, ServerError> {
        let normalized = normalize_addr(addr);
        let listener = tokio::net::TcpListener::bind(&normalized)
            .await
            .map_err(|source| ServerError::Bind {
                addr: addr.to_owned(),
                source,
            })?;
        Ok(Self { listener, router })
    }

    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.listener.local_addr().ok()
    }

    /// Serves until `shutdown` is cancelled, then stops within 5 s.
    pub async fn serve(self, shutdown: CancellationToken) {
        let addr = self.local_addr();
        tracing::info!(addr = ?addr, "admin server listening");
        let graceful = shutdown.clone();
        let server =
            axum::serve(self.listener, self.router).with_graceful_shutdown(async move { graceful.cancelled().await });
        tokio::select! {
            r = server => if let Err(e) = r { tracing::error!(error = %e, "admin server failed") },
            _ = async { shutdown.cancelled().await; tokio::time::sleep(Duration::from_secs(5)).await } => {
                tracing::warn!("admin server did not stop within 5 s; abandoned");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn go_style_addresses() {
        assert_eq!(normalize_addr(":8080"), "0.0.0.0:8080");
        assert_eq!(normalize_addr("127.0.0.1:9"), "127.0.0.1:9");
    }

    #[tokio::test]
    async fn healthz_goes_503_after_the_deadline() {
        let health = Health::new(Duration::from_millis(300));
        let server = AdminServer::bind("127.0.0.1:0", router(None, "/metrics", health.clone()))
            .await
            .unwrap();
        let addr = server.local_addr().unwrap();
        let stop = CancellationToken::new();
        let task = tokio::spawn(server.serve(stop.clone()));
        let url = format!("http://{addr}{HEALTHZ}");
        health.beat();
        assert_eq!(reqwest::get(&url).await.unwrap().status(), 200);
        tokio::time::sleep(Duration::from_millis(400)).await;
        assert_eq!(reqwest::get(&url).await.unwrap().status(), 503);
        health.beat();
        assert_eq!(reqwest::get(&url).await.unwrap().status(), 200);
        assert_eq!(
            reqwest::get(format!("http://{addr}/metrics")).await.unwrap().status(),
            404,
            "no metrics route when metrics are disabled"
        );
        stop.cancel();
        task.await.unwrap();
    }

    #[tokio::test]
    async fn one_server_for_several_sets_names_the_stalled_one() {
        let linux = Health::new(Duration::from_secs(60));
        let gpu = Health::new(Duration::from_millis(200));
        let app = router_for(
            vec![],
            "/metrics",
            vec![("linux".into(), linux.clone()), ("gpu".into(), gpu.clone())],
        );
        let server = AdminServer::bind("127.0.0.1:0", app).await.unwrap();
        let addr = server.local_addr().unwrap();
        let stop = CancellationToken::new();
        let task = tokio::spawn(server.serve(stop.clone()));
        let url = format!("http://{addr}{HEALTHZ}");
        assert_eq!(reqwest::get(&url).await.unwrap().status(), 200);
        tokio::time::sleep(Duration::from_millis(300)).await;
        linux.beat();
        let r = reqwest::get(&url).await.unwrap();
        assert_eq!(r.status(), 503);
        let body = r.text().await.unwrap();
        assert!(body.contains("scale set gpu: no progress"), "{body}");
        assert!(!body.contains("linux"), "{body}");
        gpu.beat();
        assert_eq!(reqwest::get(&url).await.unwrap().status(), 200);
        stop.cancel();
        task.await.unwrap();
    }
}
