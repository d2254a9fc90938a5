//! The HTTP transport shared by every call (spec §2.3, §2.4, §5.1–§5.4).
//!
//! One reqwest client per [`crate::ActionsClient`]; one [`HttpClient::send`] path that runs the retry
//! loop, re-sends the body on each attempt, reads the whole body, strips a BOM and logs each attempt
//! (method, URL, status, attempt; never a header value).

use crate::error::{Error, Result, RetriesExhausted, UnexpectedStatus, header_text};
use crate::lenient;
use crate::proxy::{ProxyConfig, ProxyEnv};
use crate::retry::{self, AttemptOutcome, RetryPolicy, TransportFailure, Verdict};
use crate::secret::Secret;
use crate::user_agent::UserAgentInfo;
use bytes::Bytes;
use http::header::{AUTHORIZATION, CONTENT_LENGTH, HeaderName, USER_AGENT};
use http::{HeaderMap, HeaderValue, Method, StatusCode};
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;
use serde::de::DeserializeOwned;
use std::sync::RwLock;
use std::time::{Duration, Instant, SystemTime};
use url::Url;

/// Default per-attempt timeout; must exceed the ~50 s long poll.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5 * 60);
/// TCP (and TLS) connect timeout.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);

/// How to build the transport.
#[derive(Debug, Clone)]
pub(crate) struct HttpOptions {
    pub timeout: Duration,
    pub retry: RetryPolicy,
    pub root_ca_pem: Option<String>,
    pub proxy: ProxyEnv,
    pub user_agent: UserAgentInfo,
}

/// Parses a PEM bundle (one or more certificates). No certificate, or one that does not parse, is
/// an error: a bad `server_root_ca` must stop startup.
pub fn parse_root_ca(pem: &str) -> Result<Vec<CertificateDer<'static>>> {
    let mut certs = Vec::new();
    for item in CertificateDer::pem_slice_iter(pem.as_bytes()) {
        let cert = item.map_err(|e| Error::InvalidRootCa(format!("reading PEM: {e}")))?;
        let mut store = rustls::RootCertStore::empty();
        store
            .add(cert.clone())
            .map_err(|e| Error::InvalidRootCa(format!("certificate {} does not parse: {e}", certs.len() + 1)))?;
        certs.push(cert);
    }
    if certs.is_empty() {
        return Err(Error::InvalidRootCa("no certificate found in the PEM bundle".into()));
    }
    Ok(certs)
}

/// The shared transport.
#[derive(Debug)]
pub(crate) struct HttpClient {
    client: reqwest::Client,
    retry: RetryPolicy,
    user_agent: RwLock<HeaderValue>,
}

/// Which statuses an attempt retries beyond §5.1's defaults.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) enum RetryMode {
    /// §5.1 as is.
    #[default]
    Standard,
    /// runner-registration: also retry 401/403, and hand the last response to the caller when
    /// attempts run out.
    Registration,
}

/// One logical request (re-sent as is on every attempt).
#[derive(Debug, Clone)]
pub(crate) struct Request {
    pub method: Method,
    pub url: Url,
    pub headers: HeaderMap,
    pub body: Option<Bytes>,
    pub mode: RetryMode,
}

impl Request {
    pub fn new(method: Method, url: Url) -> Self {
        Self {
            method,
            url,
            headers: HeaderMap::new(),
            body: None,
            mode: RetryMode::Standard,
        }
    }

    pub fn header(mut self, name: HeaderName, value: &'static str) -> Self {
        self.headers.insert(name, HeaderValue::from_static(value));
        self
    }

    pub fn header_value(mut self, name: HeaderName, value: HeaderValue) -> Self {
        self.headers.insert(name, value);
        self
    }

    /// `Authorization: <scheme> <token>`, marked sensitive.
    pub fn authorization(mut self, scheme: &str, token: &Secret) -> Result<Self> {
        let mut value = HeaderValue::from_str(&format!("{scheme} {}", token.expose()))
            .map_err(|_| Error::InvalidCredentials("a token contains characters not allowed in a header".into()))?;
        value.set_sensitive(true);
        self.headers.insert(AUTHORIZATION, value);
        Ok(self)
    }

    pub fn body(mut self, body: impl Into<Bytes>) -> Self {
        self.body = Some(body.into());
        self
    }

    pub fn mode(mut self, mode: RetryMode) -> Self {
        self.mode = mode;
        self
    }
}

/// A fully read response.
#[derive(Debug, Clone)]
pub(crate) struct Response {
    pub method: Method,
    pub url: Url,
    pub status: StatusCode,
    pub headers: HeaderMap,
    /// The body with any UTF-8 BOM removed.
    pub body: Bytes,
}

impl Response {
    /// The §5.3 error for this response.
    pub fn error(&self) -> Error {
        UnexpectedStatus::from_response(
            self.method.clone(),
            self.url.as_str(),
            self.status,
            &self.headers,
            &self.body,
        )
        .into()
    }

    /// `self` when its status is one of `ok`, else the §5.3 error.
    pub fn expect(self, ok: &[StatusCode]) -> Result<Self> {
        if ok.contains(&self.status) {
            Ok(self)
        } else {
            Err(self.error())
        }
    }

    /// `self` when its status is 2xx, else the §5.3 error.
    pub fn expect_success(self) -> Result<Self> {
        if self.status.is_success() {
            Ok(self)
        } else {
            Err(self.error())
        }
    }

    /// Decodes the body leniently.
    pub fn json<T: DeserializeOwned>(&self) -> Result<T> {
        lenient::from_slice(&self.body).map_err(|source| Error::Decode {
            method: self.method.clone(),
            url: self.url.to_string(),
            source,
        })
    }
}

type AttemptResult = std::result::Result<Response, reqwest::Error>;

impl HttpClient {
    pub fn new(options: HttpOptions) -> Result<Self> {
        let proxy = ProxyConfig::new(&options.proxy);
        let mut builder = reqwest::Client::builder()
            .timeout(options.timeout)
            .connect_timeout(CONNECT_TIMEOUT)
            .pool_idle_timeout(Duration::from_secs(90))
            .tcp_keepalive(Duration::from_secs(30));
        builder = if proxy.is_empty() {
            builder.no_proxy()
        } else {
            builder.proxy(reqwest::Proxy::custom(move |target| proxy.proxy_for(target)))
        };
        if let Some(pem) = &options.root_ca_pem {
            let certs = parse_root_ca(pem)?
                .iter()
                .map(|der| reqwest::Certificate::from_der(der).map_err(|e| Error::InvalidRootCa(e.to_string())))
                .collect::<Result<Vec<_>>>()?;
            builder = builder.tls_certs_merge(certs);
        }
        let client = builder.build().map_err(Error::HttpClient)?;
        Ok(Self {
            client,
            retry: options.retry,
            user_agent: RwLock::new(user_agent_header(&options.user_agent)),
        })
    }

    pub fn set_user_agent(&self, info: &UserAgentInfo) {
        let value = user_agent_header(info);
        *self.user_agent.write().unwrap_or_else(|poisoned| poisoned.into_inner()) = value;
    }

    fn user_agent(&self) -> HeaderValue {
        self.user_agent
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    /// Sends `request` under the retry policy and reads the whole response.
    ///
    /// Returns the final response whatever its status (callers check it with
    /// [`Response::expect`]); an error when no response came back, or when a retryable status
    /// persisted through every attempt ("giving up after N attempt(s)").
    pub async fn send(&self, request: &Request) -> Result<Response> {
        let user_agent = self.user_agent();
        let retry_auth = request.mode == RetryMode::Registration;
        let finished = retry::run(
            &self.retry,
            |attempt| self.attempt(request, &user_agent, attempt),
            |result: &AttemptResult| judge(result, retry_auth),
        )
        .await;
        let method = request.method.clone();
        let url = request.url.to_string();
        match finished.result {
            Ok(response) if !finished.exhausted || retry_auth => Ok(response),
            Ok(response) => Err(RetriesExhausted {
                method,
                url,
                attempts: finished.attempts,
                last_status: Some(response.status),
                activity_id: header_text(&response.headers, crate::error::ACTIVITY_ID),
                github_request_id: header_text(&response.headers, crate::error::GITHUB_REQUEST_ID),
                last_error: None,
            }
            .into()),
            Err(source) if finished.exhausted => Err(RetriesExhausted {
                method,
                url,
                attempts: finished.attempts,
                last_status: None,
                activity_id: None,
                github_request_id: None,
                last_error: Some(source),
            }
            .into()),
            Err(source) => Err(Error::Transport { method, url, source }),
        }
    }

    async fn attempt(&self, request: &Request, user_agent: &HeaderValue, attempt: u32) -> AttemptResult {
        let mut builder = self
            .client
            .request(request.method.clone(), request.url.clone())
            .headers(request.headers.clone())
            .header(USER_AGENT, user_agent.clone());
        if let Some(body) = &request.body {
            if body.is_empty() {
                // hyper omits the header for an empty body; GitHub expects `Content-Length: 0` on an
                // empty POST (§4.4).
                builder = builder.header(CONTENT_LENGTH, "0");
            }
            builder = builder.body(body.clone());
        }
        let started = Instant::now();
        let result = async {
            let response = builder.send().await?;
            let status = response.status();
            let headers = response.headers().clone();
            let body = response.bytes().await?;
            Ok::<_, reqwest::Error>((status, headers, body))
        }
        .await;
        let elapsed_ms = started.elapsed().as_millis() as u64;
        match result {
            Ok((status, headers, body)) => {
                tracing::debug!(
                    method = %request.method,
                    url = %request.url,
                    status = status.as_u16(),
                    attempt = attempt + 1,
                    elapsed_ms,
                    "http response"
                );
                let body = if body.starts_with(lenient::BOM) {
                    body.slice(lenient::BOM.len()..)
                } else {
                    body
                };
                Ok(Response {
                    method: request.method.clone(),
                    url: request.url.clone(),
                    status,
                    headers,
                    body,
                })
            }
            Err(error) => {
                tracing::warn!(
                    method = %request.method,
                    url = %request.url,
                    attempt = attempt + 1,
                    elapsed_ms,
                    error = %error,
                    "http request failed"
                );
                Err(error)
            }
        }
    }
}

fn user_agent_header(info: &UserAgentInfo) -> HeaderValue {
    HeaderValue::from_str(&info.header_value()).unwrap_or_else(|_| HeaderValue::from_static("rarc"))
}

/// The retry verdict on one attempt (§5.1).
fn judge(result: &AttemptResult, retry_auth: bool) -> Verdict {
    let outcome = match result {
        Ok(response) => AttemptOutcome::Status(response.status.as_u16()),
        Err(error) => AttemptOutcome::Transport(TransportFailure::classify(error)),
    };
    if !retry::should_retry(outcome, retry_auth) {
        return Verdict::Done;
    }
    let after = match result {
        Ok(response) => retry::retry_after(
            response.status.as_u16(),
            response
                .headers
                .get(http::header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok()),
            SystemTime::now(),
        ),
        Err(_) => None,
    };
    if let Ok(response) = result {
        tracing::warn!(
            method = %response.method,
            url = %response.url,
            status = response.status.as_u16(),
            "retryable status"
        );
    }
    Verdict::Retry { after }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_ca_bundles_must_contain_valid_certificates() {
        assert!(matches!(parse_root_ca(""), Err(Error::InvalidRootCa(_))));
        assert!(matches!(parse_root_ca("not pem at all"), Err(Error::InvalidRootCa(_))));
        let bad = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n";
        assert!(matches!(parse_root_ca(bad), Err(Error::InvalidRootCa(_))));
        let broken_base64 = "-----BEGIN CERTIFICATE-----\n!!!!\n-----END CERTIFICATE-----\n";
        assert!(matches!(parse_root_ca(broken_base64), Err(Error::InvalidRootCa(_))));
    }

    #[test]
    fn authorization_is_sensitive_and_checked() {
        let r = Request::new(Method::GET, Url::parse("http://x/").unwrap())
            .authorization("Bearer", &Secret::new("tok"))
            .unwrap();
        let v = r.headers.get(AUTHORIZATION).unwrap();
        assert!(v.is_sensitive());
        assert_eq!(v, "Bearer tok");
        assert!(
            !format!("{r:?}").contains("tok\""),
            "sensitive header values are hidden in Debug"
        );
        let bad =
            Request::new(Method::GET, Url::parse("http://x/").unwrap()).authorization("Bearer", &Secret::new("a\nb"));
        assert!(matches!(bad, Err(Error::InvalidCredentials(_))));
    }

    #[test]
    fn response_expectations() {
        let mut headers = HeaderMap::new();
        headers.insert("content-type", HeaderValue::from_static("text/plain"));
        let r = Response {
            method: Method::DELETE,
            url: Url::parse("http://x/m/1").unwrap(),
            status: StatusCode::NOT_FOUND,
            headers,
            body: Bytes::from_static(b"no such message"),
        };
        assert!(r.clone().expect(&[StatusCode::NOT_FOUND]).is_ok());
        let e = r.clone().expect(&[StatusCode::NO_CONTENT]).unwrap_err();
        assert_eq!(
            e.to_string(),
            "DELETE http://x/m/1: unexpected status 404 Not Found: no such message"
        );
        assert!(r.expect_success().is_err());
    }
}
