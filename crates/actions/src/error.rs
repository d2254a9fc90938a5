//! The one error type of the crate (spec §5.3).
//!
//! An unexpected HTTP status carries everything GitHub support needs (method, URL, status,
//! `ActivityId`, `X-GitHub-Request-Id`) plus the server's message decoded as §5.3 says. No variant
//! ever holds a token: requests are described by method and URL only, and URLs carry no secrets.

use crate::lenient;
use crate::types::ExceptionBody;
use http::{HeaderMap, Method, StatusCode};
use std::fmt;

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Exception type names (substrings of `typeName`) that callers branch on.
pub mod exceptions {
    pub const RUNNER_EXISTS: &str = "AgentExistsException";
    pub const RUNNER_NOT_FOUND: &str = "AgentNotFoundException";
    pub const JOB_STILL_RUNNING: &str = "JobStillRunningException";
    pub const SESSION_CONFLICT: &str = "RunnerScaleSetSessionConflictException";
    pub const SCALE_SET_NOT_FOUND: &str = "RunnerScaleSetNotFoundException";
}

/// The header the Actions service uses to identify a request.
pub const ACTIVITY_ID: &str = "ActivityId";
/// The header the GitHub API uses to identify a request.
pub const GITHUB_REQUEST_ID: &str = "X-GitHub-Request-Id";

/// The longest server message we keep in an error.
const MAX_MESSAGE: usize = 2048;

/// A response whose status the caller did not expect.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnexpectedStatus {
    pub method: Method,
    pub url: String,
    pub status: StatusCode,
    pub activity_id: Option<String>,
    pub github_request_id: Option<String>,
    /// `typeName` of an exception body, when the server sent one.
    pub exception_type: Option<String>,
    /// The server's message (§5.3): "unknown error", the text/plain body, or the exception message.
    pub message: String,
}

impl UnexpectedStatus {
    /// Builds the error from a response (§5.3).
    pub fn from_response(method: Method, url: &str, status: StatusCode, headers: &HeaderMap, body: &[u8]) -> Self {
        let (exception_type, message) = decode_error_body(headers, body);
        Self {
            method,
            url: url.to_owned(),
            status,
            activity_id: header_text(headers, ACTIVITY_ID),
            github_request_id: header_text(headers, GITHUB_REQUEST_ID),
            exception_type,
            message,
        }
    }

    fn has_exception(&self, name: &str) -> bool {
        self.exception_type.as_deref().is_some_and(|t| t.contains(name))
    }
}

impl fmt::Display for UnexpectedStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}: unexpected status {}: ", self.method, self.url, self.status)?;
        if let Some(kind) = &self.exception_type {
            write!(f, "{kind}: ")?;
        }
        f.write_str(&self.message)?;
        write_ids(f, self.activity_id.as_deref(), self.github_request_id.as_deref())
    }
}

/// Every attempt of a retried request failed (§5.1).
#[derive(Debug)]
pub struct RetriesExhausted {
    pub method: Method,
    pub url: String,
    pub attempts: u32,
    /// Status of the last attempt, when it got a response.
    pub last_status: Option<StatusCode>,
    pub activity_id: Option<String>,
    pub github_request_id: Option<String>,
    /// Transport error of the last attempt, when it got no response.
    pub last_error: Option<reqwest::Error>,
}

impl fmt::Display for RetriesExhausted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {} giving up after {} attempt(s)",
            self.method, self.url, self.attempts
        )?;
        if let Some(status) = self.last_status {
            write!(f, " (last status {status})")?;
        }
        write_ids(f, self.activity_id.as_deref(), self.github_request_id.as_deref())
    }
}

impl std::error::Error for UnexpectedStatus {}

impl std::error::Error for RetriesExhausted {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.last_error.as_ref().map(|e| e as _)
    }
}

fn write_ids(f: &mut fmt::Formatter<'_>, activity: Option<&str>, request: Option<&str>) -> fmt::Result {
    if let Some(id) = activity {
        write!(f, " [ActivityId: {id}]")?;
    }
    if let Some(id) = request {
        write!(f, " [X-GitHub-Request-Id: {id}]")?;
    }
    Ok(())
}

/// Errors of the Actions client.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The server answered with a status the call does not accept.
    #[error(transparent)]
    UnexpectedStatus(Box<UnexpectedStatus>),

    /// A retryable failure persisted through every attempt.
    #[error(transparent)]
    RetriesExhausted(Box<RetriesExhausted>),

    /// A transport failure that is not retried (certificate verification, redirect limit, ...).
    #[error("{method} {url}: request failed")]
    Transport {
        method: Method,
        url: String,
        #[source]
        source: reqwest::Error,
    },

    /// A response body that does not decode.
    #[error("{method} {url}: decoding the response body")]
    Decode {
        method: Method,
        url: String,
        #[source]
        source: serde_json::Error,
    },

    /// The configure URL does not name an enterprise, organisation or repository (§3).
    #[error(
        "{url:?}: invalid config URL, should point to an enterprise, org, or repository{}",
        detail(reason)
    )]
    InvalidConfigUrl { url: String, reason: Option<String> },

    /// A URL built from server data (`{A}`, `{MQ}`) does not parse.
    #[error("invalid URL {url:?}")]
    InvalidUrl {
        url: String,
        #[source]
        source: url::ParseError,
    },

    /// Credentials fail validation (never contains the secret itself).
    #[error("invalid credentials: {0}")]
    InvalidCredentials(String),

    /// The GitHub App private key is not an RSA key in PEM (PKCS#1 or PKCS#8).
    #[error("invalid GitHub App private key (expected an RSA key in PEM, PKCS#1 or PKCS#8)")]
    InvalidPrivateKey(#[source] jsonwebtoken::errors::Error),

    /// Signing the GitHub App JWT failed.
    #[error("signing the GitHub App JWT")]
    Jwt(#[source] jsonwebtoken::errors::Error),

    /// The root CA bundle does not parse.
    #[error("invalid root CA bundle: {0}")]
    InvalidRootCa(String),

    /// The HTTP client could not be built.
    #[error("building the HTTP client")]
    HttpClient(#[source] reqwest::Error),

    /// A caller-supplied argument is out of range.
    #[error("invalid argument: {0}")]
    InvalidArgument(String),

    /// The server sent something the protocol does not allow (wrong message type, no statistics,
    /// a non-JWT admin token, duplicate names...).
    #[error("protocol error: {0}")]
    Protocol(String),
}

fn detail(reason: &Option<String>) -> String {
    reason.as_ref().map(|r| format!(" ({r})")).unwrap_or_default()
}

impl Error {
    pub(crate) fn protocol(message: impl Into<String>) -> Self {
        Self::Protocol(message.into())
    }

    /// The status of an unexpected response.
    pub fn status(&self) -> Option<StatusCode> {
        match self {
            Error::UnexpectedStatus(e) => Some(e.status),
            _ => None,
        }
    }

    /// The unexpected-status details, if this is one.
    pub fn unexpected_status(&self) -> Option<&UnexpectedStatus> {
        match self {
            Error::UnexpectedStatus(e) => Some(e),
            _ => None,
        }
    }

    /// The `typeName` of the exception body, if any.
    pub fn exception_type(&self) -> Option<&str> {
        self.unexpected_status().and_then(|e| e.exception_type.as_deref())
    }

    /// `ActivityId` of the failing response (last attempt when retries were exhausted).
    pub fn activity_id(&self) -> Option<&str> {
        match self {
            Error::UnexpectedStatus(e) => e.activity_id.as_deref(),
            Error::RetriesExhausted(e) => e.activity_id.as_deref(),
            _ => None,
        }
    }

    /// `X-GitHub-Request-Id` of the failing response.
    pub fn github_request_id(&self) -> Option<&str> {
        match self {
            Error::UnexpectedStatus(e) => e.github_request_id.as_deref(),
            Error::RetriesExhausted(e) => e.github_request_id.as_deref(),
            _ => None,
        }
    }

    fn has_exception(&self, name: &str) -> bool {
        self.unexpected_status().is_some_and(|e| e.has_exception(name))
    }

    /// `AgentExistsException`: a runner with that name already exists.
    pub fn is_runner_exists(&self) -> bool {
        self.has_exception(exceptions::RUNNER_EXISTS)
    }

    /// `AgentNotFoundException`.
    pub fn is_runner_not_found(&self) -> bool {
        self.has_exception(exceptions::RUNNER_NOT_FOUND)
    }

    /// `JobStillRunningException`: the runner is busy and cannot be removed yet.
    pub fn is_job_still_running(&self) -> bool {
        self.has_exception(exceptions::JOB_STILL_RUNNING)
    }

    /// 409 or `RunnerScaleSetSessionConflictException`: another session is active.
    pub fn is_session_conflict(&self) -> bool {
        self.status() == Some(StatusCode::CONFLICT) && !self.is_runner_exists()
            || self.has_exception(exceptions::SESSION_CONFLICT)
    }

    /// `RunnerScaleSetNotFoundException`: the scale set was deleted.
    pub fn is_scale_set_not_found(&self) -> bool {
        self.has_exception(exceptions::SCALE_SET_NOT_FOUND)
    }

    /// HTTP 401.
    pub fn is_unauthorized(&self) -> bool {
        self.status() == Some(StatusCode::UNAUTHORIZED)
    }

    /// HTTP 404 (any exception).
    pub fn is_not_found(&self) -> bool {
        self.status() == Some(StatusCode::NOT_FOUND)
    }

    /// Every attempt of a retried request failed.
    pub fn is_retries_exhausted(&self) -> bool {
        matches!(self, Error::RetriesExhausted(_))
    }

    /// A short, stable name of the variant (for metric labels and log fields).
    pub fn kind(&self) -> &'static str {
        match self {
            Error::UnexpectedStatus(_) => "UnexpectedStatus",
            Error::RetriesExhausted(_) => "RetriesExhausted",
            Error::Transport { .. } => "Transport",
            Error::Decode { .. } => "Decode",
            Error::InvalidConfigUrl { .. } => "InvalidConfigUrl",
            Error::InvalidUrl { .. } => "InvalidUrl",
            Error::InvalidCredentials(_) => "InvalidCredentials",
            Error::InvalidPrivateKey(_) => "InvalidPrivateKey",
            Error::Jwt(_) => "Jwt",
            Error::InvalidRootCa(_) => "InvalidRootCa",
            Error::HttpClient(_) => "HttpClient",
            Error::InvalidArgument(_) => "InvalidArgument",
            Error::Protocol(_) => "Protocol",
        }
    }
}

impl From<UnexpectedStatus> for Error {
    fn from(e: UnexpectedStatus) -> Self {
        Error::UnexpectedStatus(Box::new(e))
    }
}

impl From<RetriesExhausted> for Error {
    fn from(e: RetriesExhausted) -> Self {
        Error::RetriesExhausted(Box::new(e))
    }
}

/// A header's value as text, when present and printable.
pub(crate) fn header_text(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .map(str::to_owned)
}

/// Decodes an error body per §5.3 into (exception type, message).
///
/// 1. An empty body (Content-Length 0) ⇒ "unknown error".
/// 2. `Content-Type` containing `text/plain` ⇒ the body verbatim.
/// 3. Otherwise an exception `{"typeName","message"}`. A body that is not such JSON (a GitHub API
///    error such as `{"message":"Bad credentials"}` decodes too; HTML does not) is kept verbatim
///    so the status and body always reach the log.
pub fn decode_error_body(headers: &HeaderMap, body: &[u8]) -> (Option<String>, String) {
    let body = lenient::strip_bom(body);
    let declared_empty = header_text(headers, http::header::CONTENT_LENGTH.as_str()).as_deref() == Some("0");
    if declared_empty || body.is_empty() {
        return (None, "unknown error".to_owned());
    }
    let text = String::from_utf8_lossy(body);
    let content_type = header_text(headers, http::header::CONTENT_TYPE.as_str()).unwrap_or_default();
    if content_type.to_ascii_lowercase().contains("text/plain") {
        return (None, truncate(text.trim_end()));
    }
    match lenient::from_slice::<ExceptionBody>(body) {
        Ok(ex) if !ex.type_name.is_empty() || !ex.message.is_empty() => {
            let kind = (!ex.type_name.is_empty()).then_some(ex.type_name);
            let message = if ex.message.is_empty() {
                "unknown error".to_owned()
            } else {
                truncate(&ex.message)
            };
            (kind, message)
        }
        _ => (None, truncate(text.trim_end())),
    }
}

fn truncate(text: &str) -> String {
    if text.len() <= MAX_MESSAGE {
        return text.to_owned();
    }
    let mut end = MAX_MESSAGE;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &text[..end])
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, HeaderValue::from_static(v));
        }
        h
    }

    fn status_error(status: u16, type_name: &str) -> Error {
        UnexpectedStatus {
            method: Method::POST,
            url: "http://x/".into(),
            status: StatusCode::from_u16(status).unwrap(),
            activity_id: None,
            github_request_id: None,
            exception_type: (!type_name.is_empty()).then(|| type_name.to_owned()),
            message: "m".into(),
        }
        .into()
    }

    #[test]
    fn decodes_error_bodies_per_5_3() {
        type Case<'a> = (&'a [(&'a str, &'a str)], &'a [u8], Option<&'a str>, &'a str);
        let cases: &[Case] = &[
            (&[("content-length", "0")], b"", None, "unknown error"),
            (&[], b"", None, "unknown error"),
            (&[("content-type", "text/plain; charset=utf-8")], b"capacity exceeded\n", None, "capacity exceeded"),
            (
                &[("content-type", "application/json")],
                br#"{"$id":"1","typeName":"GitHub.Actions.Runtime.WebApi.RunnerScaleSetSessionConflictException, GitHub.Actions.Runtime.WebApi","message":"already has an active session."}"#,
                Some("GitHub.Actions.Runtime.WebApi.RunnerScaleSetSessionConflictException, GitHub.Actions.Runtime.WebApi"),
                "already has an active session.",
            ),
            (&[], b"\xEF\xBB\xBF{\"typeName\":\"AgentExistsException\",\"message\":\"x\"}", Some("AgentExistsException"), "x"),
            (&[], br#"{"message":"Bad credentials","documentation_url":"https://docs"}"#, None, "Bad credentials"),
            (&[], b"<html>bad gateway</html>", None, "<html>bad gateway</html>"),
        ];
        for (hs, body, kind, message) in cases {
            let mut h = HeaderMap::new();
            for (k, v) in *hs {
                h.insert(*k, HeaderValue::from_str(v).unwrap());
            }
            let (k, m) = decode_error_body(&h, body);
            assert_eq!(k.as_deref(), *kind, "{body:?}");
            assert_eq!(m, *message, "{body:?}");
        }
    }

    #[test]
    fn unexpected_status_text_carries_ids_and_message() {
        let h = headers(&[
            ("content-type", "application/json"),
            ("activityid", "act-1"),
            ("x-github-request-id", "req-2"),
        ]);
        let e = UnexpectedStatus::from_response(
            Method::GET,
            "http://h/_apis/x",
            StatusCode::NOT_FOUND,
            &h,
            br#"{"typeName":"RunnerScaleSetNotFoundException","message":"gone"}"#,
        );
        assert_eq!(
            e.to_string(),
            "GET http://h/_apis/x: unexpected status 404 Not Found: RunnerScaleSetNotFoundException: gone \
             [ActivityId: act-1] [X-GitHub-Request-Id: req-2]"
        );
        let e: Error = e.into();
        assert!(e.is_scale_set_not_found());
        assert!(e.is_not_found());
        assert_eq!(e.activity_id(), Some("act-1"));
        assert_eq!(e.github_request_id(), Some("req-2"));
        assert_eq!(e.kind(), "UnexpectedStatus");
    }

    #[test]
    fn retries_exhausted_text() {
        let e: Error = RetriesExhausted {
            method: Method::GET,
            url: "http://h/m".into(),
            attempts: 5,
            last_status: Some(StatusCode::SERVICE_UNAVAILABLE),
            activity_id: Some("a".into()),
            github_request_id: None,
            last_error: None,
        }
        .into();
        assert_eq!(
            e.to_string(),
            "GET http://h/m giving up after 5 attempt(s) (last status 503 Service Unavailable) [ActivityId: a]"
        );
        assert!(e.is_retries_exhausted());
        assert_eq!(e.status(), None);
    }

    #[test]
    fn predicates_follow_exception_names_and_statuses() {
        assert!(status_error(409, "GitHub.DistributedTask.WebApi.AgentExistsException").is_runner_exists());
        assert!(!status_error(409, "AgentExistsException").is_session_conflict());
        assert!(status_error(409, "").is_session_conflict());
        assert!(status_error(400, "X.RunnerScaleSetSessionConflictException").is_session_conflict());
        assert!(status_error(404, "AgentNotFoundException").is_runner_not_found());
        assert!(status_error(400, "JobStillRunningException").is_job_still_running());
        assert!(status_error(401, "").is_unauthorized());
        assert!(!status_error(403, "").is_unauthorized());
        assert_eq!(status_error(500, "").status(), Some(StatusCode::INTERNAL_SERVER_ERROR));
    }

    #[test]
    fn long_bodies_are_truncated_on_a_char_boundary() {
        let body = "é".repeat(MAX_MESSAGE);
        let (_, m) = decode_error_body(&headers(&[("content-type", "text/plain")]), body.as_bytes());
        assert!(m.len() <= MAX_MESSAGE + "…".len());
        assert!(m.ends_with('…'));
    }

    #[test]
    fn error_is_send_sync_and_small() {
        fn assert_send_sync<T: Send + Sync + 'static>() {}
        assert_send_sync::<Error>();
        assert!(
            std::mem::size_of::<Error>() <= 128,
            "keep Result<T, Error> cheap to move"
        );
    }

    #[test]
    fn invalid_config_url_text() {
        let e = Error::InvalidConfigUrl {
            url: "https://github.com".into(),
            reason: None,
        };
        assert_eq!(
            e.to_string(),
            "\"https://github.com\": invalid config URL, should point to an enterprise, org, or repository"
        );
    }
}
