//! The runner's side of the runner stand-in protocol (`runner_api.rs`): five calls, bearer-authenticated
//! with the runner token from the JIT config, with a small retry on transport errors and 5xx.

use super::RunnerError;
use crate::runner_api::{AssignedJob, CompleteRequest, LogLines, OnlineRequest, OnlineResponse, PREFIX};
use rarc_actions::Secret;
use reqwest::{Method, StatusCode};
use std::time::Duration;

/// How often and how fast a call is retried on transport errors, 429 and 5xx.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Retry {
    pub attempts: u32,
    pub first_backoff: Duration,
}

impl Retry {
    pub const DEFAULT: Retry = Retry {
        attempts: 4,
        first_backoff: Duration::from_millis(100),
    };
    pub const ONCE: Retry = Retry {
        attempts: 1,
        first_backoff: Duration::ZERO,
    };

    fn backoff(&self, attempt: u32) -> Duration {
        (self.first_backoff * 2u32.saturating_pow(attempt)).min(Duration::from_secs(5))
    }
}

/// What the wait-for-a-job call answered.
#[derive(Debug)]
pub(crate) enum Wait {
    Job(Box<AssignedJob>),
    NoneYet,
    Removed,
}

pub(crate) struct SimClient {
    http: reqwest::Client,
    /// `{A}_apis/simrunner/runners/{runnerId}`.
    base: String,
    runner_id: i64,
    token: Secret,
}

impl SimClient {
    pub fn new(server_url: &str, runner_id: i64, token: Secret) -> Result<Self, RunnerError> {
        let parsed = url::Url::parse(server_url)
            .ok()
            .filter(|u| matches!(u.scheme(), "http" | "https"))
            .ok_or_else(|| RunnerError::InvalidServerUrl {
                url: server_url.to_owned(),
            })?;
        let mut a = parsed.to_string();
        if !a.ends_with('/') {
            a.push('/');
        }
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .user_agent(concat!("rarc-sim-runner/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(RunnerError::HttpClient)?;
        Ok(Self {
            http,
            base: format!("{a}{PREFIX}/runners/{runner_id}"),
            runner_id,
            token,
        })
    }

    pub fn runner_id(&self) -> i64 {
        self.runner_id
    }

    pub async fn online(&self, req: &OnlineRequest) -> Result<OnlineResponse, RunnerError> {
        const CALL: &str = "online";
        let body = serde_json::to_vec(req).map_err(|source| RunnerError::Decode { call: CALL, source })?;
        let resp = self
            .send(
                CALL,
                Method::POST,
                "/online",
                Some(body),
                Duration::from_secs(30),
                Retry::DEFAULT,
            )
            .await?;
        match resp.status() {
            s if s.is_success() => decode_or_default(CALL, resp).await,
            StatusCode::NOT_FOUND => Err(RunnerError::RunnerNotFound {
                call: CALL,
                runner_id: self.runner_id,
            }),
            _ => Err(unexpected(CALL, resp).await),
        }
    }

    pub async fn wait_job(&self, wait_ms: u64) -> Result<Wait, RunnerError> {
        const CALL: &str = "wait for a job";
        let path = format!("/job?waitMs={wait_ms}");
        let timeout = Duration::from_millis(wait_ms) + Duration::from_secs(30);
        let resp = self
            .send(CALL, Method::GET, &path, None, timeout, Retry::DEFAULT)
            .await?;
        match resp.status() {
            StatusCode::OK => {
                let bytes = resp.bytes().await.map_err(|e| transport(CALL, 1, &e))?;
                let job =
                    serde_json::from_slice(&bytes).map_err(|source| RunnerError::Decode { call: CALL, source })?;
                Ok(Wait::Job(Box::new(job)))
            }
            StatusCode::ACCEPTED | StatusCode::NO_CONTENT => Ok(Wait::NoneYet),
            StatusCode::NOT_FOUND => Ok(Wait::Removed),
            _ => Err(unexpected(CALL, resp).await),
        }
    }

    pub async fn post_log(&self, request_id: i64, lines: &LogLines) -> Result<(), RunnerError> {
        const CALL: &str = "log";
        self.post_json(CALL, &format!("/jobs/{request_id}/log"), lines, Retry::DEFAULT)
            .await
    }

    /// Tells the service the job is still being worked on (the real runner renews its job lock).
    /// Not one of the five documented calls: rarc-sim's server accepts it and counts it as a sign of
    /// life, so a long, quiet step is not taken for a lost runner.
    pub async fn renew(&self, request_id: i64) -> Result<(), RunnerError> {
        const CALL: &str = "renew";
        self.post_json(
            CALL,
            &format!("/jobs/{request_id}/renew"),
            &serde_json::json!({}),
            Retry::ONCE,
        )
        .await
    }

    pub async fn complete(&self, request_id: i64, req: &CompleteRequest) -> Result<(), RunnerError> {
        const CALL: &str = "complete";
        self.post_json(CALL, &format!("/jobs/{request_id}/complete"), req, Retry::DEFAULT)
            .await
    }

    pub async fn offline(&self, retry: Retry) -> Result<(), RunnerError> {
        const CALL: &str = "offline";
        self.post_json(CALL, "/offline", &serde_json::json!({}), retry).await
    }

    async fn post_json<T: serde::Serialize>(
        &self,
        call: &'static str,
        path: &str,
        body: &T,
        retry: Retry,
    ) -> Result<(), RunnerError> {
        let body = serde_json::to_vec(body).map_err(|source| RunnerError::Decode { call, source })?;
        let resp = self
            .send(call, Method::POST, path, Some(body), Duration::from_secs(30), retry)
            .await?;
        if resp.status().is_success() {
            return Ok(());
        }
        match resp.status() {
            StatusCode::NOT_FOUND => Err(RunnerError::RunnerNotFound {
                call,
                runner_id: self.runner_id,
            }),
            _ => Err(unexpected(call, resp).await),
        }
    }

    /// Sends one call, retrying transport errors, 429 and 5xx. 401 becomes [`RunnerError::Unauthorized`];
    /// every other answer is handed back.
    async fn send(
        &self,
        call: &'static str,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
        timeout: Duration,
        retry: Retry,
    ) -> Result<reqwest::Response, RunnerError> {
        let url = format!("{}{path}", self.base);
        let attempts = retry.attempts.max(1);
        let mut last = String::new();
        for attempt in 0..attempts {
            if attempt > 0 {
                tokio::time::sleep(retry.backoff(attempt - 1)).await;
            }
            let mut req = self
                .http
                .request(method.clone(), &url)
                .bearer_auth(self.token.expose())
                .header(reqwest::header::ACCEPT, "application/json")
                .timeout(timeout);
            if let Some(body) = &body {
                req = req
                    .header(reqwest::header::CONTENT_TYPE, "application/json")
                    .body(body.clone());
            }
            match req.send().await {
                Ok(resp) if resp.status() == StatusCode::UNAUTHORIZED => {
                    return Err(RunnerError::Unauthorized { call });
                }
                Ok(resp) if resp.status().is_server_error() || resp.status() == StatusCode::TOO_MANY_REQUESTS => {
                    last = format!("HTTP {}", resp.status().as_u16());
                    tracing::debug!(call, attempt, status = resp.status().as_u16(), "retrying");
                }
                Ok(resp) => return Ok(resp),
                Err(e) => {
                    last = error_chain(&e);
                    tracing::debug!(call, attempt, error = %last, "retrying");
                }
            }
        }
        Err(RunnerError::Unavailable {
            call,
            attempts,
            detail: last,
        })
    }
}

async fn decode_or_default<T: serde::de::DeserializeOwned + Default>(
    call: &'static str,
    resp: reqwest::Response,
) -> Result<T, RunnerError> {
    let bytes = resp.bytes().await.map_err(|e| transport(call, 1, &e))?;
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    serde_json::from_slice(&bytes).map_err(|source| RunnerError::Decode { call, source })
}

async fn unexpected(call: &'static str, resp: reqwest::Response) -> RunnerError {
    let status = resp.status().as_u16();
    let mut body = resp.text().await.unwrap_or_default();
    if body.len() > 512 {
        let mut cut = 512;
        while !body.is_char_boundary(cut) {
            cut -= 1;
        }
        body.truncate(cut);
        body.push('…');
    }
    RunnerError::UnexpectedStatus { call, status, body }
}

fn transport(call: &'static str, attempts: u32, e: &reqwest::Error) -> RunnerError {
    RunnerError::Unavailable {
        call,
        attempts,
        detail: error_chain(e),
    }
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}
