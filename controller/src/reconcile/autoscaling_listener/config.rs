//! The listener's `config.json` (arc-controller.md §4.5, the config secret table): built from the
//! AutoscalingListener spec, the resolved credentials and CA, and the controller's listener
//! settings; validated like ARC's `ghalistener` config before it is written.
//!
//! The JSON is what both ARC's `/ghalistener` and `rarc-listener` read (`listener/src/config.rs`).
//! Only the credential keys in use are written (ARC writes the unused ones as `""`/`0`; both
//! listeners read a missing key as unset).

use rarc_crd::{AutoscalingListenerSpec, MetricsConfig};
use serde::Serialize;

use crate::github::GitHubSecret;

/// The key of the config secret that holds the JSON.
pub const CONFIG_KEY: &str = "config.json";
/// The only vault type ARC knows.
pub const VAULT_AZURE_KEY_VAULT: &str = "azure_key_vault";

/// The listener's metrics server, from `--listener-metrics-addr`/`--listener-metrics-endpoint`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MetricsServer {
    /// As given on the command line (Go's `:8080` form is kept: the listener binds it).
    pub addr: String,
    pub endpoint: String,
}

/// `None` when the address is `0` (listener metrics off); otherwise the address and endpoint as
/// given. An empty address gives an empty `metrics_addr` and no container port, as in ARC.
pub fn metrics_server(addr: &str, endpoint: &str) -> Option<MetricsServer> {
    (addr.trim() != "0").then(|| MetricsServer {
        addr: addr.trim().to_owned(),
        endpoint: endpoint.to_owned(),
    })
}

/// Credentials as config.json carries them.
#[derive(Serialize, Clone, PartialEq, Eq)]
#[serde(untagged)]
pub enum ConfigCredentials {
    Token {
        github_token: String,
    },
    App {
        github_app_id: String,
        github_app_installation_id: i64,
        github_app_private_key: String,
    },
}

impl From<&GitHubSecret> for ConfigCredentials {
    fn from(s: &GitHubSecret) -> Self {
        match s {
            GitHubSecret::Token(t) => Self::Token {
                github_token: t.clone(),
            },
            GitHubSecret::App {
                app_id,
                installation_id,
                private_key,
            } => Self::App {
                github_app_id: app_id.clone(),
                github_app_installation_id: *installation_id,
                github_app_private_key: private_key.clone(),
            },
        }
    }
}

/// `azure_key_vault` of config.json.
#[derive(Serialize, Clone, Debug, PartialEq, Eq)]
pub struct AzureKeyVault {
    pub tenant_id: String,
    pub client_id: String,
    pub url: String,
    pub certificate_path: String,
}

/// config.json. Deliberately not `Debug`: it holds credentials.
#[derive(Serialize, Clone, PartialEq)]
pub struct ListenerConfig {
    pub configure_url: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vault_type: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vault_lookup_key: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub azure_key_vault: Option<AzureKeyVault>,
    /// Absent when a vault provides them.
    #[serde(flatten)]
    pub credentials: Option<ConfigCredentials>,
    pub ephemeral_runner_set_namespace: String,
    pub ephemeral_runner_set_name: String,
    pub max_runners: i32,
    pub min_runners: i32,
    pub runner_scale_set_id: i64,
    pub runner_scale_set_name: String,
    pub server_root_ca: String,
    pub log_level: String,
    pub log_format: String,
    pub metrics_addr: String,
    pub metrics_endpoint: String,
    /// `null` when unset (the listener then exports every metric with its default labels).
    pub metrics: Option<MetricsConfig>,
}

/// Why a config cannot be written: the config.json field and the reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub field: &'static str,
    pub reason: String,
}

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.field, self.reason)
    }
}

fn invalid(field: &'static str, reason: impl Into<String>) -> ConfigError {
    ConfigError {
        field,
        reason: reason.into(),
    }
}

/// What config.json is built from.
pub struct Inputs<'a> {
    pub spec: &'a AutoscalingListenerSpec,
    /// `None` when a vault provides the credentials (or when they could not be read).
    pub credentials: Option<&'a GitHubSecret>,
    /// PEM of `githubServerTLS`.
    pub root_ca: Option<&'a str>,
    pub log_level: &'a str,
    pub log_format: &'a str,
    pub metrics: Option<&'a MetricsServer>,
}

/// The vault type of `spec`, `None` when credentials come from the Secret.
pub fn vault_type(spec: &AutoscalingListenerSpec) -> Option<&str> {
    spec.vault_config
        .as_ref()
        .and_then(|v| v.type_.as_deref())
        .filter(|t| !t.is_empty())
}

/// Builds and validates config.json.
pub fn build(inputs: &Inputs<'_>) -> Result<ListenerConfig, ConfigError> {
    let spec = inputs.spec;
    let owned = |v: &Option<String>| v.clone().unwrap_or_default();
    let (vault_type, vault_lookup_key, azure_key_vault, credentials) = match vault_type(spec) {
        Some(t) => {
            let akv = spec
                .vault_config
                .as_ref()
                .and_then(|v| v.azure_key_vault.as_ref())
                .map(|a| AzureKeyVault {
                    tenant_id: a.tenant_id.clone(),
                    client_id: a.client_id.clone(),
                    url: a.url.clone(),
                    certificate_path: a.certificate_path.clone(),
                });
            (Some(t.to_owned()), Some(owned(&spec.github_config_secret)), akv, None)
        }
        None => (None, None, None, inputs.credentials.map(ConfigCredentials::from)),
    };
    let config = ListenerConfig {
        configure_url: owned(&spec.github_config_url),
        vault_type,
        vault_lookup_key,
        azure_key_vault,
        credentials,
        ephemeral_runner_set_namespace: owned(&spec.autoscaling_runner_set_namespace),
        ephemeral_runner_set_name: owned(&spec.ephemeral_runner_set_name),
        max_runners: spec.max_runners,
        min_runners: spec.min_runners,
        runner_scale_set_id: spec.runner_scale_set_id,
        runner_scale_set_name: owned(&spec.autoscaling_runner_set_name),
        server_root_ca: inputs.root_ca.unwrap_or_default().to_owned(),
        log_level: inputs.log_level.to_owned(),
        log_format: inputs.log_format.to_owned(),
        metrics_addr: inputs.metrics.map(|m| m.addr.clone()).unwrap_or_default(),
        metrics_endpoint: inputs.metrics.map(|m| m.endpoint.clone()).unwrap_or_default(),
        metrics: spec.metrics.clone(),
    };
    config.validate()?;
    Ok(config)
}

impl ListenerConfig {
    /// ARC's checks (url, EphemeralRunnerSet, scale set id, max ≥ min, credentials unless vault).
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.configure_url.trim().is_empty() {
            return Err(invalid("configure_url", "is required (spec.githubConfigUrl)"));
        }
        if self.ephemeral_runner_set_namespace.is_empty() {
            return Err(invalid(
                "ephemeral_runner_set_namespace",
                "is required (spec.autoscalingRunnerSetNamespace)",
            ));
        }
        if self.ephemeral_runner_set_name.is_empty() {
            return Err(invalid(
                "ephemeral_runner_set_name",
                "is required (spec.ephemeralRunnerSetName)",
            ));
        }
        if self.runner_scale_set_id == 0 {
            return Err(invalid("runner_scale_set_id", "must not be 0 (spec.runnerScaleSetId)"));
        }
        if self.max_runners < self.min_runners {
            return Err(invalid(
                "max_runners",
                format!(
                    "max_runners ({}) is less than min_runners ({})",
                    self.max_runners, self.min_runners
                ),
            ));
        }
        match self.vault_type.as_deref() {
            Some(VAULT_AZURE_KEY_VAULT) => {
                if self.vault_lookup_key.as_deref().unwrap_or_default().is_empty() {
                    return Err(invalid(
                        "vault_lookup_key",
                        "is required with a vault (spec.githubConfigSecret)",
                    ));
                }
                if self.azure_key_vault.is_none() {
                    return Err(invalid(
                        "azure_key_vault",
                        "is required with vault type azure_key_vault",
                    ));
                }
            }
            Some(other) => {
                return Err(invalid(
                    "vault_type",
                    format!("{other:?} is not supported (only {VAULT_AZURE_KEY_VAULT:?})"),
                ));
            }
            None => match &self.credentials {
                None => return Err(invalid("github_token", "no GitHub credentials")),
                Some(ConfigCredentials::Token { github_token }) if github_token.is_empty() => {
                    return Err(invalid("github_token", "is empty"));
                }
                Some(ConfigCredentials::App {
                    github_app_id,
                    github_app_installation_id,
                    github_app_private_key,
                }) if github_app_id.is_empty()
                    || *github_app_installation_id <= 0
                    || github_app_private_key.is_empty() =>
                {
                    return Err(invalid("github_app_id", "GitHub App credentials are incomplete"));
                }
                Some(_) => {}
            },
        }
        Ok(())
    }

    /// The bytes of the `config.json` key.
    pub fn to_json(&self) -> Result<Vec<u8>, ConfigError> {
        serde_json::to_vec(self).map_err(|e| invalid("config.json", format!("encode: {e}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rarc_crd::{AzureKeyVaultConfig, CounterMetric, VaultConfig};
    use serde_json::{Value, json};

    fn spec() -> AutoscalingListenerSpec {
        AutoscalingListenerSpec {
            github_config_url: Some("https://github.com/my-org".into()),
            github_config_secret: Some("gh".into()),
            runner_scale_set_id: 5,
            autoscaling_runner_set_namespace: Some("arc-runners".into()),
            autoscaling_runner_set_name: Some("set".into()),
            ephemeral_runner_set_name: Some("set".into()),
            max_runners: i32::MAX,
            min_runners: 0,
            image: Some("img".into()),
            ..Default::default()
        }
    }

    fn json_of(inputs: &Inputs<'_>) -> Value {
        let bytes = build(inputs).expect("valid").to_json().expect("encodes");
        serde_json::from_slice(&bytes).expect("json")
    }

    #[test]
    fn token_config_with_metrics_on() {
        let spec = spec();
        let token = GitHubSecret::Token("ghp_x".into());
        let metrics = metrics_server(":8080", "/metrics");
        let v = json_of(&Inputs {
            spec: &spec,
            credentials: Some(&token),
            root_ca: Some("PEM"),
            log_level: "info",
            log_format: "json",
            metrics: metrics.as_ref(),
        });
        assert_eq!(
            v,
            json!({
                "configure_url": "https://github.com/my-org",
                "github_token": "ghp_x",
                "ephemeral_runner_set_namespace": "arc-runners",
                "ephemeral_runner_set_name": "set",
                "max_runners": 2147483647,
                "min_runners": 0,
                "runner_scale_set_id": 5,
                "runner_scale_set_name": "set",
                "server_root_ca": "PEM",
                "log_level": "info",
                "log_format": "json",
                "metrics_addr": ":8080",
                "metrics_endpoint": "/metrics",
                "metrics": null
            })
        );
    }

    #[test]
    fn metrics_off_gives_empty_fields() {
        assert_eq!(metrics_server("0", "/metrics"), None);
        assert_eq!(metrics_server(" 0 ", "/metrics"), None);
        let spec = spec();
        let token = GitHubSecret::Token("t".into());
        let v = json_of(&Inputs {
            spec: &spec,
            credentials: Some(&token),
            root_ca: None,
            log_level: "debug",
            log_format: "text",
            metrics: metrics_server("0", "/metrics").as_ref(),
        });
        assert_eq!(v["metrics_addr"], "");
        assert_eq!(v["metrics_endpoint"], "");
        assert_eq!(v["server_root_ca"], "");
    }

    #[test]
    fn app_credentials_and_metrics_config() {
        let mut spec = spec();
        spec.metrics = Some(MetricsConfig {
            counters: Some(
                [(
                    "gha_started_jobs_total".to_owned(),
                    CounterMetric {
                        labels: vec!["repository".into()],
                    },
                )]
                .into(),
            ),
            ..Default::default()
        });
        let app = GitHubSecret::App {
            app_id: "12".into(),
            installation_id: 34,
            private_key: "KEY".into(),
        };
        let v = json_of(&Inputs {
            spec: &spec,
            credentials: Some(&app),
            root_ca: None,
            log_level: "debug",
            log_format: "text",
            metrics: None,
        });
        assert_eq!(v["github_app_id"], "12");
        assert_eq!(v["github_app_installation_id"], 34);
        assert!(v["github_app_installation_id"].is_number());
        assert_eq!(v["github_app_private_key"], "KEY");
        assert!(v.get("github_token").is_none());
        assert_eq!(
            v["metrics"],
            json!({"counters": {"gha_started_jobs_total": {"labels": ["repository"]}}})
        );
    }

    #[test]
    fn vault_config_replaces_credentials() {
        let mut spec = spec();
        spec.vault_config = Some(VaultConfig {
            type_: Some("azure_key_vault".into()),
            azure_key_vault: Some(AzureKeyVaultConfig {
                url: "https://v".into(),
                tenant_id: "t".into(),
                client_id: "c".into(),
                certificate_path: "/p".into(),
            }),
            proxy: None,
        });
        assert_eq!(vault_type(&spec), Some("azure_key_vault"));
        let v = json_of(&Inputs {
            spec: &spec,
            credentials: None,
            root_ca: None,
            log_level: "debug",
            log_format: "text",
            metrics: None,
        });
        assert_eq!(v["vault_type"], "azure_key_vault");
        assert_eq!(v["vault_lookup_key"], "gh");
        assert_eq!(
            v["azure_key_vault"],
            json!({"tenant_id": "t", "client_id": "c", "url": "https://v", "certificate_path": "/p"})
        );
        assert!(v.get("github_token").is_none());
    }

    #[test]
    fn validation_names_the_field() {
        let token = GitHubSecret::Token("t".into());
        let check = |f: &dyn Fn(&mut AutoscalingListenerSpec), creds: Option<&GitHubSecret>| {
            let mut s = spec();
            f(&mut s);
            build(&Inputs {
                spec: &s,
                credentials: creds,
                root_ca: None,
                log_level: "debug",
                log_format: "text",
                metrics: None,
            })
            .err()
            .map(|e| e.field)
        };
        assert_eq!(check(&|_| {}, Some(&token)), None);
        assert_eq!(
            check(&|s| s.github_config_url = None, Some(&token)),
            Some("configure_url")
        );
        assert_eq!(
            check(&|s| s.autoscaling_runner_set_namespace = None, Some(&token)),
            Some("ephemeral_runner_set_namespace")
        );
        assert_eq!(
            check(&|s| s.ephemeral_runner_set_name = Some(String::new()), Some(&token)),
            Some("ephemeral_runner_set_name")
        );
        assert_eq!(
            check(&|s| s.runner_scale_set_id = 0, Some(&token)),
            Some("runner_scale_set_id")
        );
        assert_eq!(
            check(
                &|s| {
                    s.min_runners = 3;
                    s.max_runners = 2;
                },
                Some(&token)
            ),
            Some("max_runners")
        );
        assert_eq!(check(&|_| {}, None), Some("github_token"));
        assert_eq!(
            check(
                &|s| s.vault_config = Some(VaultConfig {
                    type_: Some("hashicorp".into()),
                    ..Default::default()
                }),
                None
            ),
            Some("vault_type")
        );
        assert_eq!(
            check(
                &|s| s.vault_config = Some(VaultConfig {
                    type_: Some("azure_key_vault".into()),
                    ..Default::default()
                }),
                None
            ),
            Some("azure_key_vault")
        );
    }
}
