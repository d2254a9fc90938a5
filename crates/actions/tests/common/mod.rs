//! A scripted, recording HTTP server on 127.0.0.1:0 standing in for GitHub and the Actions
//! service in this crate's own tests (the faithful simulator lives in `rarc-sim`).
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rarc_actions::{ClientConfig, Credentials, ProxyEnv, RetryPolicy, Secret, UserAgentInfo};
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

pub const PAT: &str = "ghp_test_pat";
pub const REG_TOKEN: &str = "reg-token-1";

#[derive(Debug, Clone)]
pub struct Recorded {
    pub method: String,
    pub path: String,
    pub query: Option<String>,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
    /// The request target as sent (absolute form through a proxy).
    pub uri: String,
}

impl Recorded {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(&'static str, String)>,
    pub body: Vec<u8>,
}

impl Reply {
    pub fn json(status: u16, value: serde_json::Value) -> Self {
        Self {
            status,
            headers: vec![("content-type", "application/json".into())],
            body: value.to_string().into_bytes(),
        }
    }
    pub fn empty(status: u16) -> Self {
        Self {
            status,
            headers: vec![],
            body: vec![],
        }
    }
    pub fn text(status: u16, text: &str) -> Self {
        Self {
            status,
            headers: vec![("content-type", "text/plain; charset=utf-8".into())],
            body: text.as_bytes().to_vec(),
        }
    }
    pub fn exception(status: u16, type_name: &str, message: &str) -> Self {
        Self::json(
            status,
            serde_json::json!({"$id": "1", "typeName": type_name, "message": message}),
        )
    }
    pub fn header(mut self, name: &'static str, value: &str) -> Self {
        self.headers.push((name, value.to_owned()));
        self
    }
}

#[derive(Default)]
struct Inner {
    log: Mutex<Vec<Recorded>>,
    /// (method, path) → replies; the last one repeats.
    routes: Mutex<HashMap<(String, String), VecDeque<Reply>>>,
}

#[derive(Clone)]
pub struct Mock {
    pub base: String,
    inner: Arc<Inner>,
}

async fn handle(State(inner): State<Arc<Inner>>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let body = axum::body::to_bytes(body, usize::MAX)
        .await
        .unwrap_or_default()
        .to_vec();
    let method = parts.method.to_string();
    let path = parts.uri.path().to_owned();
    inner.log.lock().unwrap().push(Recorded {
        method: method.clone(),
        path: path.clone(),
        query: parts.uri.query().map(str::to_owned),
        headers: parts.headers.clone(),
        body,
        uri: parts.uri.to_string(),
    });
    let reply = {
        let mut routes = inner.routes.lock().unwrap();
        match routes.get_mut(&(method, path)) {
            Some(queue) if queue.len() > 1 => queue.pop_front(),
            Some(queue) => queue.front().cloned(),
            None => None,
        }
    }
    .unwrap_or_else(|| Reply::text(404, "no route"));
    let mut response = Response::builder().status(StatusCode::from_u16(reply.status).unwrap());
    for (k, v) in &reply.headers {
        response = response.header(*k, v);
    }
    response.body(Body::from(reply.body)).unwrap()
}

impl Mock {
    pub fn router(&self) -> Router {
        Router::new().fallback(handle).with_state(self.inner.clone())
    }

    /// Serves plain HTTP on 127.0.0.1:0.
    pub async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let mock = Self {
            base: format!("http://{addr}"),
            inner: Arc::default(),
        };
        let app = mock.router();
        tokio::spawn(async move { axum::serve(listener, app).await });
        mock
    }

    /// A mock that is not listening yet (for TLS tests that serve the router themselves).
    pub fn unstarted(base: String) -> Self {
        Self {
            base,
            inner: Arc::default(),
        }
    }

    pub fn on(&self, method: &str, path: &str, replies: Vec<Reply>) {
        self.inner
            .routes
            .lock()
            .unwrap()
            .insert((method.into(), path.into()), replies.into());
    }

    pub fn requests(&self) -> Vec<Recorded> {
        self.inner.log.lock().unwrap().clone()
    }

    pub fn requests_to(&self, method: &str, path: &str) -> Vec<Recorded> {
        self.requests()
            .into_iter()
            .filter(|r| r.method == method && r.path == path)
            .collect()
    }

    pub fn clear_log(&self) {
        self.inner.log.lock().unwrap().clear();
    }

    /// `{A}` as the mock announces it.
    pub fn actions_base(&self) -> String {
        format!("{}/tenant/123/", self.base)
    }

    /// Scripts G2 (org scope) and G3 with an admin token valid for `ttl`.
    pub fn chain(&self, ttl: Duration) {
        self.chain_with_base(ttl, &self.actions_base());
    }

    pub fn chain_with_base(&self, ttl: Duration, actions_base: &str) {
        self.on(
            "POST",
            "/api/v3/orgs/my-org/actions/runners/registration-token",
            vec![Reply::json(
                201,
                serde_json::json!({"token": REG_TOKEN, "expires_at": "2099-01-01T00:00:00Z"}),
            )],
        );
        self.on(
            "POST",
            "/api/v3/actions/runner-registration",
            vec![Reply::json(
                201,
                serde_json::json!({"url": actions_base, "token": admin_jwt(ttl), "token_schema": "OAuthAccessToken"}),
            )],
        );
    }

    pub fn config_url(&self) -> String {
        format!("{}/my-org", self.base)
    }

    /// A PAT config with 10 ms backoff and no proxy.
    pub fn config(&self) -> ClientConfig {
        let mut config = ClientConfig::new(self.config_url(), Credentials::Pat(Secret::new(PAT)));
        config.retry = fast_retry();
        config.proxy = ProxyEnv::default();
        config.http_timeout = Duration::from_secs(10);
        config.user_agent = UserAgentInfo {
            subsystem: "test".into(),
            scale_set_id: 5,
            ..UserAgentInfo::default()
        };
        config
    }
}

pub fn fast_retry() -> RetryPolicy {
    RetryPolicy {
        max_retries: 4,
        wait_min: Duration::from_millis(10),
        wait_max: Duration::from_millis(300),
    }
}

pub fn now_secs() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs() as i64
}

/// An unsigned-looking admin JWT whose `exp` is `ttl` from now.
pub fn admin_jwt(ttl: Duration) -> String {
    let exp = now_secs() + ttl.as_secs() as i64;
    format!(
        "{}.{}.c2ln",
        URL_SAFE_NO_PAD.encode(r#"{"alg":"RS256","typ":"JWT"}"#),
        URL_SAFE_NO_PAD.encode(format!(r#"{{"exp":{exp},"sub":"admin"}}"#))
    )
}

pub fn stats(assigned: i64) -> serde_json::Value {
    serde_json::json!({"totalAvailableJobs":0,"totalAcquiredJobs":0,"totalAssignedJobs":assigned,
        "totalRunningJobs":0,"totalRegisteredRunners":0,"totalBusyRunners":0,"totalIdleRunners":0})
}

pub fn session_json(mock: &Mock, id: &str, mq_path: &str, token: &str) -> serde_json::Value {
    serde_json::json!({
        "sessionId": id,
        "ownerName": "listener-pod",
        "runnerScaleSet": {"id": 5, "name": "arc-runner-set", "runnerGroupId": 1},
        "messageQueueUrl": format!("{}{}", mock.base, mq_path),
        "messageQueueAccessToken": token,
        "statistics": stats(2),
    })
}
