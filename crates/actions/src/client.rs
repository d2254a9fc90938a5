//! The Actions service client (spec §4.6, §5.5, §6): admin-token calls of §6.18 rows 1–9, 12–17.

use crate::actions_url::{self, segment};
use crate::auth::Credentials;
use crate::auth::admin_token::{self, AdminToken};
use crate::auth::chain::{self, Auth};
use crate::config_url::GitHubConfig;
use crate::error::{Error, Result};
use crate::http::{DEFAULT_TIMEOUT, HttpClient, HttpOptions, Request, Response};
use crate::proxy::ProxyEnv;
use crate::retry::RetryPolicy;
use crate::secret::Secret;
use crate::types::{
    AcquirableJob, AcquireJobsResponse, JitConfigRequest, JitRunnerConfig, ListResponse, RunnerGroup, RunnerReference,
    RunnerScaleSet, RunnerScaleSetSession, SessionCreateRequest, ZERO_SESSION_ID,
};
use crate::user_agent::UserAgentInfo;
use http::header::CONTENT_TYPE;
use http::{Method, StatusCode};
use serde::Serialize;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;
use time::OffsetDateTime;
use url::Url;

const SCALE_SETS: &str = "_apis/runtime/runnerscalesets";
const AGENTS: &str = "_apis/distributedtask/pools/0/agents";

/// Everything needed to build an [`ActionsClient`].
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// The GitHub configure URL (org, enterprise or repository).
    pub config_url: String,
    pub credentials: Credentials,
    /// Extra root CA certificates (PEM bundle) appended to the system roots.
    pub root_ca_pem: Option<String>,
    pub retry: RetryPolicy,
    /// Per-attempt HTTP timeout (default 5 min).
    pub http_timeout: Duration,
    pub user_agent: UserAgentInfo,
    /// Proxy variables (default: read from the process environment).
    pub proxy: ProxyEnv,
}

impl ClientConfig {
    /// Defaults for everything but the URL and credentials; proxy variables from the environment.
    pub fn new(config_url: impl Into<String>, credentials: Credentials) -> Self {
        Self {
            config_url: config_url.into(),
            credentials,
            root_ca_pem: None,
            retry: RetryPolicy::default(),
            http_timeout: DEFAULT_TIMEOUT,
            user_agent: UserAgentInfo::default(),
            proxy: ProxyEnv::from_env(),
        }
    }
}

/// Client of the GitHub API and the Actions service. Cheap to clone; clones share the transport
/// and the cached admin token.
#[derive(Clone)]
pub struct ActionsClient {
    inner: Arc<Inner>,
}

struct Inner {
    http: HttpClient,
    github: GitHubConfig,
    auth: Auth,
    /// `{A}`, admin token and expiry; refreshed under this lock (§4.6).
    admin: tokio::sync::Mutex<Option<AdminToken>>,
}

impl fmt::Debug for ActionsClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ActionsClient")
            .field("config_url", &self.inner.github.configure_url)
            .finish_non_exhaustive()
    }
}

impl ActionsClient {
    /// Validates the configuration and builds the transport. No network call is made.
    /// `GITHUB_ACTIONS_FORCE_GHES` is read from the environment.
    pub fn new(config: ClientConfig) -> Result<Self> {
        let github = GitHubConfig::parse(&config.config_url)?;
        Self::with_github_config(config, github)
    }

    /// Like [`ActionsClient::new`] with an already parsed configure URL.
    pub fn with_github_config(config: ClientConfig, github: GitHubConfig) -> Result<Self> {
        config.credentials.validate()?;
        let auth = match (&config.credentials, config.credentials.app_signer()?) {
            (_, Some((signer, installation_id))) => Auth::App {
                signer,
                installation_id,
            },
            (Credentials::Pat(pat), None) => Auth::Pat(pat.clone()),
            (Credentials::App { .. }, None) => {
                return Err(Error::InvalidCredentials("GitHub App without a key".into()));
            }
        };
        let http = HttpClient::new(HttpOptions {
            timeout: config.http_timeout,
            retry: config.retry,
            root_ca_pem: config.root_ca_pem,
            proxy: config.proxy,
            user_agent: config.user_agent,
        })?;
        Ok(Self {
            inner: Arc::new(Inner {
                http,
                github,
                auth,
                admin: tokio::sync::Mutex::new(None),
            }),
        })
    }

    /// The parsed configure URL.
    pub fn github_config(&self) -> &GitHubConfig {
        &self.inner.github
    }

    /// Replaces the User-Agent information (e.g. once the scale set id is known).
    pub fn set_user_agent(&self, info: &UserAgentInfo) {
        self.inner.http.set_user_agent(info);
    }

    /// `{A}` from the cached admin connection, if the chain has run.
    pub async fn cached_actions_url(&self) -> Option<Url> {
        self.inner.admin.lock().await.as_ref().map(|t| t.actions_url.clone())
    }

    /// Expiry of the cached admin token, if the chain has run.
    pub async fn cached_admin_token_expiry(&self) -> Option<OffsetDateTime> {
        self.inner.admin.lock().await.as_ref().map(|t| t.expires_at)
    }

    /// Runs the token chain now if the admin token is absent or about to expire.
    pub async fn ensure_admin_token(&self) -> Result<()> {
        self.admin().await.map(|_| ())
    }

    pub(crate) fn http(&self) -> &HttpClient {
        &self.inner.http
    }

    /// `{A}` and the admin token, refreshed first when needed (§4.6). On failure the old token is
    /// kept and the error returned.
    pub(crate) async fn admin(&self) -> Result<(Url, Secret)> {
        let mut cached = self.inner.admin.lock().await;
        if admin_token::needs_refresh(cached.as_ref(), OffsetDateTime::now_utc()) {
            tracing::debug!(had_token = cached.is_some(), "refreshing admin token");
            let fresh = chain::fetch_admin_token(&self.inner.http, &self.inner.github, &self.inner.auth).await?;
            *cached = Some(fresh);
        }
        cached
            .as_ref()
            .map(|t| (t.actions_url.clone(), t.token.clone()))
            .ok_or_else(|| Error::protocol("no admin token after refresh"))
    }

    /// One admin-token call: `Authorization: Bearer <admin>`, `Content-Type: application/json`.
    ///
    /// A 401 drops the cached admin token (unless another call already replaced it) and the call
    /// is tried once more with a fresh one: a token revoked before its `exp` (an App key
    /// rotated, the service restarted) costs one extra round trip instead of an hour of failures.
    async fn admin_call(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, &str)],
        body: Option<Vec<u8>>,
    ) -> Result<Response> {
        let mut retried = false;
        loop {
            let (base, token) = self.admin().await?;
            let url = actions_url::actions_url(&base, path, query);
            let mut request = Request::new(method.clone(), url)
                .authorization("Bearer", &token)?
                .header(CONTENT_TYPE, "application/json");
            if let Some(body) = &body {
                request = request.body(body.clone());
            }
            match self.inner.http.send(&request).await {
                Ok(r) if r.status == StatusCode::UNAUTHORIZED && !retried => {
                    retried = true;
                    let mut cached = self.inner.admin.lock().await;
                    if cached.as_ref().is_some_and(|t| t.token.expose() == token.expose()) {
                        tracing::info!("admin token refused (401); fetching a new one");
                        *cached = None;
                    }
                }
                other => return other,
            }
        }
    }

    /// Row 1: the scale set named `name` in `runner_group_id`; `None` when absent.
    pub async fn get_runner_scale_set(&self, runner_group_id: i64, name: &str) -> Result<Option<RunnerScaleSet>> {
        let group = runner_group_id.to_string();
        let response = self
            .admin_call(
                Method::GET,
                SCALE_SETS,
                &[("runnerGroupId", &group), ("name", name)],
                None,
            )
            .await?
            .expect(&[StatusCode::OK])?;
        let list: ListResponse<RunnerScaleSet> = response.json()?;
        single(list, || format!("multiple runner scale sets found with name {name:?}"))
    }

    /// Row 2: the scale set with id `id`.
    pub async fn get_runner_scale_set_by_id(&self, id: i64) -> Result<RunnerScaleSet> {
        self.admin_call(Method::GET, &format!("{SCALE_SETS}/{id}"), &[], None)
            .await?
            .expect(&[StatusCode::OK])?
            .json()
    }

    /// Row 3: creates a scale set (200).
    pub async fn create_runner_scale_set(&self, scale_set: &RunnerScaleSet) -> Result<RunnerScaleSet> {
        self.admin_call(Method::POST, SCALE_SETS, &[], Some(encode(scale_set)?))
            .await?
            .expect(&[StatusCode::OK])?
            .json()
    }

    /// Row 4: updates a scale set with a partial body (200).
    pub async fn update_runner_scale_set(&self, id: i64, scale_set: &RunnerScaleSet) -> Result<RunnerScaleSet> {
        self.admin_call(
            Method::PATCH,
            &format!("{SCALE_SETS}/{id}"),
            &[],
            Some(encode(scale_set)?),
        )
        .await?
        .expect(&[StatusCode::OK])?
        .json()
    }

    /// Row 5: deletes a scale set (204).
    pub async fn delete_runner_scale_set(&self, id: i64) -> Result<()> {
        self.admin_call(Method::DELETE, &format!("{SCALE_SETS}/{id}"), &[], None)
            .await?
            .expect(&[StatusCode::NO_CONTENT])
            .map(drop)
    }

    /// Row 6: the runner group named `name`; none is an error.
    pub async fn get_runner_group_by_name(&self, name: &str) -> Result<RunnerGroup> {
        let response = self
            .admin_call(Method::GET, "_apis/runtime/runnergroups/", &[("groupName", name)], None)
            .await?
            .expect(&[StatusCode::OK])?;
        let list: ListResponse<RunnerGroup> = response.json()?;
        single(list, || format!("multiple runner groups found with name {name:?}"))?
            .ok_or_else(|| Error::protocol(format!("no runner group found with name {name:?}")))
    }

    /// Row 7: opens a message session (200).
    pub async fn create_message_session(&self, scale_set_id: i64, owner: &str) -> Result<RunnerScaleSetSession> {
        let body = SessionCreateRequest {
            session_id: Some(ZERO_SESSION_ID.to_owned()),
            owner_name: owner.to_owned(),
        };
        self.admin_call(
            Method::POST,
            &format!("{SCALE_SETS}/{scale_set_id}/sessions"),
            &[],
            Some(encode(&body)?),
        )
        .await?
        .expect(&[StatusCode::OK])?
        .json()
    }

    /// Row 8: refreshes a session (PATCH, no body, 200): new MQ token, maybe a new MQ URL.
    pub async fn refresh_message_session(&self, scale_set_id: i64, session_id: &str) -> Result<RunnerScaleSetSession> {
        let path = format!("{SCALE_SETS}/{scale_set_id}/sessions/{}", segment(session_id));
        self.admin_call(Method::PATCH, &path, &[], Some(Vec::new()))
            .await?
            .expect(&[StatusCode::OK])?
            .json()
    }

    /// Row 9: deletes a session (204).
    pub async fn delete_message_session(&self, scale_set_id: i64, session_id: &str) -> Result<()> {
        let path = format!("{SCALE_SETS}/{scale_set_id}/sessions/{}", segment(session_id));
        self.admin_call(Method::DELETE, &path, &[], None)
            .await?
            .expect(&[StatusCode::NO_CONTENT])
            .map(drop)
    }

    /// Row 12: acquires jobs with the MQ token (the admin token may be refreshed first, §4.6).
    pub(crate) async fn acquire_jobs_with(
        &self,
        scale_set_id: i64,
        mq_token: &Secret,
        ids: &[i64],
    ) -> Result<Vec<i64>> {
        let (base, _) = self.admin().await?;
        let url = actions_url::actions_url(&base, &format!("{SCALE_SETS}/{scale_set_id}/acquirejobs"), &[]);
        let request = Request::new(Method::POST, url)
            .authorization("Bearer", mq_token)?
            .header(CONTENT_TYPE, "application/json")
            .body(encode(&ids)?);
        let response = self.inner.http.send(&request).await?.expect(&[StatusCode::OK])?;
        let acquired: AcquireJobsResponse = response.json()?;
        Ok(acquired.value)
    }

    /// Row 13: jobs offered to the scale set (classic only; 204 ⇒ none).
    pub async fn get_acquirable_jobs(&self, scale_set_id: i64) -> Result<ListResponse<AcquirableJob>> {
        let response = self
            .admin_call(
                Method::GET,
                &format!("{SCALE_SETS}/{scale_set_id}/acquirablejobs"),
                &[],
                None,
            )
            .await?
            .expect(&[StatusCode::OK, StatusCode::NO_CONTENT])?;
        if response.status == StatusCode::NO_CONTENT {
            return Ok(ListResponse::default());
        }
        response.json()
    }

    /// Row 14: a JIT config for a new runner (200; 409 `AgentExistsException` when the name is taken).
    pub async fn generate_jit_runner_config(
        &self,
        scale_set_id: i64,
        request: &JitConfigRequest,
    ) -> Result<JitRunnerConfig> {
        self.admin_call(
            Method::POST,
            &format!("{SCALE_SETS}/{scale_set_id}/generatejitconfig"),
            &[],
            Some(encode(request)?),
        )
        .await?
        .expect(&[StatusCode::OK])?
        .json()
    }

    /// Row 15: a runner by id.
    pub async fn get_runner(&self, runner_id: i64) -> Result<RunnerReference> {
        self.admin_call(Method::GET, &format!("{AGENTS}/{runner_id}"), &[], None)
            .await?
            .expect(&[StatusCode::OK])?
            .json()
    }

    /// Row 16: a runner by name; `None` when absent.
    pub async fn get_runner_by_name(&self, name: &str) -> Result<Option<RunnerReference>> {
        let response = self
            .admin_call(Method::GET, AGENTS, &[("agentName", name)], None)
            .await?
            .expect(&[StatusCode::OK])?;
        let list: ListResponse<RunnerReference> = response.json()?;
        single(list, || format!("multiple runners found with name {name:?}"))
    }

    /// Row 17: removes a runner (204; 400 `JobStillRunningException` while it runs a job).
    pub async fn remove_runner(&self, runner_id: i64) -> Result<()> {
        self.admin_call(Method::DELETE, &format!("{AGENTS}/{runner_id}"), &[], None)
            .await?
            .expect(&[StatusCode::NO_CONTENT])
            .map(drop)
    }
}

/// The only element of a list: `None` when empty, an error when there are several.
fn single<T>(list: ListResponse<T>, many: impl FnOnce() -> String) -> Result<Option<T>> {
    if list.count > 1 || list.value.len() > 1 {
        return Err(Error::protocol(many()));
    }
    Ok(list.value.into_iter().next())
}

fn encode<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>> {
    serde_json::to_vec(value).map_err(|e| Error::InvalidArgument(format!("encoding the request body: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn single_element_lists() {
        assert_eq!(single(ListResponse::<i64>::default(), String::new).unwrap(), None);
        assert_eq!(single(ListResponse::new(vec![4]), String::new).unwrap(), Some(4));
        let err = single(ListResponse::new(vec![1, 2]), || "multiple".into()).unwrap_err();
        assert!(matches!(err, Error::Protocol(m) if m == "multiple"));
        let lying = ListResponse {
            count: 2,
            value: vec![1],
        };
        assert!(single(lying, String::new).is_err());
    }

    #[test]
    fn construction_validates_without_network() {
        let pat = Credentials::Pat(Secret::new("ghp_x"));
        let mut config = ClientConfig::new("https://github.com/org", pat.clone());
        config.proxy = ProxyEnv::default();
        let client = ActionsClient::new(config.clone()).unwrap();
        assert_eq!(client.github_config().configure_url, "https://github.com/org");
        assert!(!format!("{client:?}").contains("ghp_x"));

        let bad_url = ClientConfig {
            config_url: "https://github.com".into(),
            ..config.clone()
        };
        assert!(matches!(
            ActionsClient::new(bad_url),
            Err(Error::InvalidConfigUrl { .. })
        ));

        let bad_ca = ClientConfig {
            root_ca_pem: Some("nope".into()),
            ..config.clone()
        };
        assert!(matches!(ActionsClient::new(bad_ca), Err(Error::InvalidRootCa(_))));

        let bad_app = ClientConfig {
            credentials: Credentials::App {
                app_id: "1".into(),
                installation_id: 0,
                private_key: Secret::new("k"),
            },
            ..config
        };
        assert!(matches!(ActionsClient::new(bad_app), Err(Error::InvalidCredentials(_))));
    }
}
