//! GitHub/Actions clients for reconcilers: credentials read from the Secret named by
//! `githubConfigSecret` (a direct GET, never a watch), proxy and extra CA from the resource, one
//! cached client per (URL, namespace, credentials, proxy, CA), and a deadline on every call.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::{Api, Client};
use rarc_actions::{ActionsClient, ClientConfig, Credentials, ProxyEnv, UserAgentInfo};
use rarc_crd::{ProxyConfig, ProxyServerConfig, TlsConfig};

use crate::error::{Error, Result, not_found_as_none};

/// The keys of a credentials Secret (ARC's names).
pub mod keys {
    pub const GITHUB_TOKEN: &str = "github_token";
    pub const GITHUB_APP_ID: &str = "github_app_id";
    pub const GITHUB_APP_INSTALLATION_ID: &str = "github_app_installation_id";
    pub const GITHUB_APP_PRIVATE_KEY: &str = "github_app_private_key";
}

/// Credentials as a Secret holds them: a token, or the three GitHub App values.
#[derive(Clone, PartialEq, Eq)]
pub enum GitHubSecret {
    Token(String),
    App {
        app_id: String,
        installation_id: i64,
        private_key: String,
    },
}

impl std::fmt::Debug for GitHubSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Token(_) => f.write_str("GitHubSecret::Token(<redacted>)"),
            Self::App {
                app_id,
                installation_id,
                ..
            } => {
                write!(
                    f,
                    "GitHubSecret::App {{ app_id: {app_id}, installation_id: {installation_id}, private_key: <redacted> }}"
                )
            }
        }
    }
}

impl GitHubSecret {
    /// Reads a Secret's data; the error names the missing or bad key.
    pub fn from_data(data: &BTreeMap<String, ByteString>) -> Result<Self, String> {
        let get = |k: &str| {
            data.get(k)
                .map(|v| String::from_utf8_lossy(&v.0).trim().to_owned())
                .filter(|v| !v.is_empty())
        };
        if let Some(token) = get(keys::GITHUB_TOKEN) {
            return Ok(Self::Token(token));
        }
        match (
            get(keys::GITHUB_APP_ID),
            get(keys::GITHUB_APP_INSTALLATION_ID),
            get(keys::GITHUB_APP_PRIVATE_KEY),
        ) {
            (None, None, None) => Err(format!(
                "has neither `{}` nor `{}`/`{}`/`{}`",
                keys::GITHUB_TOKEN,
                keys::GITHUB_APP_ID,
                keys::GITHUB_APP_INSTALLATION_ID,
                keys::GITHUB_APP_PRIVATE_KEY
            )),
            (Some(app_id), Some(installation), Some(private_key)) => {
                let installation_id = installation
                    .parse::<i64>()
                    .map_err(|_| format!("`{}` is not a number", keys::GITHUB_APP_INSTALLATION_ID))?;
                Ok(Self::App {
                    app_id,
                    installation_id,
                    private_key,
                })
            }
            (app, inst, key) => {
                let missing: Vec<&str> = [
                    (app.is_none(), keys::GITHUB_APP_ID),
                    (inst.is_none(), keys::GITHUB_APP_INSTALLATION_ID),
                    (key.is_none(), keys::GITHUB_APP_PRIVATE_KEY),
                ]
                .into_iter()
                .filter_map(|(m, k)| m.then_some(k))
                .collect();
                Err(format!(
                    "GitHub App credentials are incomplete: missing `{}`",
                    missing.join("`, `")
                ))
            }
        }
    }

    /// The client credentials.
    pub fn credentials(&self) -> Credentials {
        match self {
            Self::Token(t) => Credentials::Pat(t.clone().into()),
            Self::App {
                app_id,
                installation_id,
                private_key,
            } => Credentials::App {
                app_id: app_id.clone(),
                installation_id: *installation_id,
                private_key: private_key.clone().into(),
            },
        }
    }

    /// A fingerprint for cache keys (never logged).
    fn fingerprint(&self) -> String {
        let text = match self {
            Self::Token(t) => format!("t:{t}"),
            Self::App {
                app_id,
                installation_id,
                private_key,
            } => format!("a:{app_id}:{installation_id}:{private_key}"),
        };
        rarc_crd::names::content_hash(text.as_bytes())
    }
}

/// Reads the credentials Secret `name` in `namespace`.
pub async fn read_secret(client: &Client, namespace: &str, name: &str) -> Result<GitHubSecret> {
    if name.is_empty() {
        return Err(Error::InvalidSecret {
            namespace: namespace.into(),
            name: name.into(),
            reason: "githubConfigSecret is empty".into(),
        });
    }
    let api: Api<Secret> = Api::namespaced(client.clone(), namespace);
    let secret = not_found_as_none(api.get(name).await)
        .map_err(Error::kube(format!("get Secret {namespace}/{name}")))?
        .ok_or_else(|| Error::MissingSecret {
            namespace: namespace.into(),
            name: name.into(),
        })?;
    GitHubSecret::from_data(&secret.data.unwrap_or_default()).map_err(|reason| Error::InvalidSecret {
        namespace: namespace.into(),
        name: name.into(),
        reason,
    })
}

/// One proxy URL with the user-info of its `credentialSecretRef` Secret (ARS namespace).
async fn proxy_url(client: &Client, namespace: &str, server: &ProxyServerConfig) -> Result<Option<String>> {
    let Some(raw) = server.url.as_deref().filter(|u| !u.is_empty()) else {
        return Ok(None);
    };
    let Some(secret_name) = server.credential_secret_ref.as_deref().filter(|s| !s.is_empty()) else {
        return Ok(Some(raw.to_owned()));
    };
    let api: Api<Secret> = Api::namespaced(client.clone(), namespace);
    let secret = not_found_as_none(api.get(secret_name).await)
        .map_err(Error::kube(format!("get Secret {namespace}/{secret_name}")))?
        .ok_or_else(|| {
            Error::Other(format!(
                "proxy credentialSecretRef: Secret {namespace}/{secret_name} not found"
            ))
        })?;
    let data = secret.data.unwrap_or_default();
    let get = |k: &str| {
        data.get(k)
            .map(|v| String::from_utf8_lossy(&v.0).into_owned())
            .unwrap_or_default()
    };
    let mut url = url::Url::parse(raw).map_err(|e| Error::Other(format!("proxy url {raw:?}: {e}")))?;
    let _ = url.set_username(&get("username"));
    let _ = url.set_password(Some(&get("password")).filter(|p| !p.is_empty()).map(String::as_str));
    Ok(Some(url.to_string()))
}

/// The proxy variables of `proxy` (`http_proxy`, `https_proxy`, `no_proxy`), credentials resolved.
pub async fn resolve_proxy(client: &Client, namespace: &str, proxy: Option<&ProxyConfig>) -> Result<ProxyEnv> {
    let Some(proxy) = proxy else {
        return Ok(ProxyEnv::default());
    };
    let http_proxy = match &proxy.http {
        Some(s) => proxy_url(client, namespace, s).await?,
        None => None,
    };
    let https_proxy = match &proxy.https {
        Some(s) => proxy_url(client, namespace, s).await?,
        None => None,
    };
    let no_proxy = proxy.no_proxy.as_ref().filter(|l| !l.is_empty()).map(|l| l.join(","));
    Ok(ProxyEnv {
        http_proxy,
        https_proxy,
        no_proxy,
    })
}

/// The PEM of `githubServerTLS` (a ConfigMap key in `namespace`).
pub async fn resolve_root_ca(client: &Client, namespace: &str, tls: Option<&TlsConfig>) -> Result<Option<String>> {
    let Some(sel) = tls
        .and_then(|t| t.certificate_from.as_ref())
        .and_then(|c| c.config_map_key_ref.as_ref())
    else {
        return Ok(None);
    };
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), namespace);
    let name = sel.name.as_str();
    let cm =
        not_found_as_none(api.get(name).await).map_err(Error::kube(format!("get ConfigMap {namespace}/{name}")))?;
    let value = cm.and_then(|cm| cm.data).and_then(|d| d.get(&sel.key).cloned());
    match value {
        Some(pem) => Ok(Some(pem)),
        None if sel.optional == Some(true) => Ok(None),
        None => Err(Error::Other(format!(
            "githubServerTLS: ConfigMap {namespace}/{name} has no key {:?}",
            sel.key
        ))),
    }
}

/// What a client is built for.
pub struct Target<'a> {
    pub namespace: &'a str,
    pub config_url: &'a str,
    pub secret_name: &'a str,
    pub proxy: Option<&'a ProxyConfig>,
    pub tls: Option<&'a TlsConfig>,
}

impl<'a> Target<'a> {
    /// The client the runners of `spec` (an EphemeralRunner's, or an EphemeralRunnerSet's
    /// `ephemeralRunnerSpec`) in `namespace` are registered and removed with.
    pub fn for_runners(namespace: &'a str, spec: &'a rarc_crd::EphemeralRunnerSpec) -> Self {
        Self {
            namespace,
            config_url: &spec.github_config_url,
            secret_name: &spec.github_config_secret,
            proxy: spec.proxy.as_ref(),
            tls: spec.github_server_tls.as_ref(),
        }
    }
}

/// Cached Actions clients and the per-call deadline.
pub struct GitHub {
    clients: Mutex<HashMap<String, Arc<ActionsClient>>>,
    timeout: Duration,
    retry: Option<rarc_actions::RetryPolicy>,
}

impl GitHub {
    /// A cache whose calls each get `timeout`.
    pub fn new(timeout: Duration) -> Self {
        Self {
            clients: Mutex::new(HashMap::new()),
            timeout,
            retry: None,
        }
    }

    /// Overrides the HTTP retry policy (tests use short waits).
    pub fn with_retry(mut self, retry: rarc_actions::RetryPolicy) -> Self {
        self.retry = Some(retry);
        self
    }

    /// The client for `target`, built on first use and rebuilt when credentials, proxy or CA change.
    pub async fn client(&self, kube: &Client, target: &Target<'_>) -> Result<Arc<ActionsClient>> {
        let secret = read_secret(kube, target.namespace, target.secret_name).await?;
        let proxy = resolve_proxy(kube, target.namespace, target.proxy).await?;
        let root_ca = resolve_root_ca(kube, target.namespace, target.tls).await?;
        let key = format!(
            "{}|{}|{}|{:?}|{}",
            target.config_url,
            target.namespace,
            secret.fingerprint(),
            proxy,
            root_ca
                .as_deref()
                .map(|p| rarc_crd::names::content_hash(p.as_bytes()))
                .unwrap_or_default()
        );
        if let Some(c) = self.clients.lock().expect("client cache").get(&key) {
            return Ok(c.clone());
        }
        let mut config = ClientConfig::new(target.config_url, secret.credentials());
        config.root_ca_pem = root_ca;
        config.proxy = proxy;
        config.http_timeout = self.timeout;
        if let Some(r) = &self.retry {
            config.retry = *r;
        }
        config.user_agent = UserAgentInfo {
            system: "actions-runner-controller".into(),
            subsystem: "gha-scale-set-controller".into(),
            ..UserAgentInfo::default()
        };
        let client = Arc::new(ActionsClient::new(config).map_err(|e| Error::InvalidSpec {
            kind: "resource",
            namespace: target.namespace.into(),
            name: target.secret_name.into(),
            field: "githubConfigUrl".into(),
            reason: e.to_string(),
        })?);
        let mut cache = self.clients.lock().expect("client cache");
        // Drop stale clients of the same URL and namespace (rotated credentials, new proxy).
        let prefix = format!("{}|{}|", target.config_url, target.namespace);
        cache.retain(|k, _| !k.starts_with(&prefix));
        cache.insert(key, client.clone());
        Ok(client)
    }

    /// Runs one GitHub call with the deadline (retries inside the call count against it too).
    pub async fn call<T>(&self, context: &str, fut: impl Future<Output = rarc_actions::Result<T>>) -> Result<T> {
        // Retries with backoff happen inside the client; the deadline bounds the whole call.
        let budget = self.timeout * 2;
        match tokio::time::timeout(budget, fut).await {
            Ok(r) => r.map_err(Error::actions(context)),
            Err(_) => Err(Error::Timeout {
                context: context.to_owned(),
                seconds: budget.as_secs(),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(pairs: &[(&str, &str)]) -> BTreeMap<String, ByteString> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), ByteString(v.as_bytes().to_vec())))
            .collect()
    }

    #[test]
    fn token_wins_and_is_redacted() {
        let s = GitHubSecret::from_data(&data(&[("github_token", "ghp_secret")])).expect("token");
        assert_eq!(s, GitHubSecret::Token("ghp_secret".into()));
        assert!(!format!("{s:?}").contains("ghp_secret"));
    }

    #[test]
    fn app_needs_all_three_and_a_numeric_installation() {
        let ok = GitHubSecret::from_data(&data(&[
            ("github_app_id", "12"),
            ("github_app_installation_id", "34"),
            ("github_app_private_key", "KEY"),
        ]))
        .expect("app");
        assert!(matches!(
            ok,
            GitHubSecret::App {
                installation_id: 34,
                ..
            }
        ));
        assert!(!format!("{ok:?}").contains("KEY"));
        let err = GitHubSecret::from_data(&data(&[("github_app_id", "12")])).expect_err("incomplete");
        assert!(
            err.contains("github_app_installation_id") && err.contains("github_app_private_key"),
            "{err}"
        );
        let err = GitHubSecret::from_data(&data(&[
            ("github_app_id", "12"),
            ("github_app_installation_id", "x"),
            ("github_app_private_key", "KEY"),
        ]))
        .expect_err("bad id");
        assert!(err.contains("not a number"), "{err}");
        let err = GitHubSecret::from_data(&data(&[("other", "v")])).expect_err("empty");
        assert!(err.contains("github_token"), "{err}");
    }
}
