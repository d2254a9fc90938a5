//! The listener's `config.json` (spec §2.2) and its validation.
//!
//! Decoding is lenient like Go's `encoding/json`: unknown keys are ignored, keys match
//! case-insensitively (struct fields, not metric names), `null` means "not set", and zero values
//! (`""`, `0`) mean "not set".

use rarc_actions::{Credentials, GitHubConfig, Secret};
use serde::Deserialize;
use serde_json::{Map, Value};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The only vault type ARC knows.
pub const VAULT_AZURE_KEY_VAULT: &str = "azure_key_vault";
/// The largest `max_runners` (Go's MaxInt32); what the controller writes when the user set none.
pub const MAX_RUNNERS_LIMIT: i64 = i32::MAX as i64;
/// Accepted `log_level` values (an empty value means [`DEFAULT_LOG_LEVEL`]).
pub const LOG_LEVELS: [&str; 4] = ["debug", "info", "warn", "error"];
/// Accepted `log_format` values (an empty value means [`DEFAULT_LOG_FORMAT`]).
pub const LOG_FORMATS: [&str; 2] = ["text", "json"];
pub const DEFAULT_LOG_LEVEL: &str = "info";
pub const DEFAULT_LOG_FORMAT: &str = "text";
/// Path of the metrics endpoint when `metrics_endpoint` is empty.
pub const DEFAULT_METRICS_ENDPOINT: &str = "/metrics";

/// Why a config cannot be used. Each message names the offending field.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("read config file {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("decode config file {path}: {source}")]
    Decode {
        path: PathBuf,
        #[source]
        source: serde_path_to_error::Error<serde_json::Error>,
    },
    #[error("decode config: the file must hold one JSON object")]
    NotAnObject,
    #[error("invalid config: {field}: {reason}")]
    Invalid { field: &'static str, reason: String },
    #[error("{0}")]
    BothCredentials(&'static str),
    #[error(
        "invalid config: vault_type {VAULT_AZURE_KEY_VAULT}: reading credentials from Azure Key Vault is not supported by rarc-listener; put github_token or the github_app_* fields in the config instead"
    )]
    VaultUnsupported,
}

fn invalid(field: &'static str, reason: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        field,
        reason: reason.into(),
    }
}

/// `azure_key_vault` (parsed and validated, but resolving secrets from it is not supported).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct AzureKeyVault {
    pub tenant_id: String,
    pub client_id: String,
    pub url: String,
    pub certificate_path: String,
    pub proxy: Option<AzureProxy>,
}

/// Go's `httpproxy.Config` field names (matched case-insensitively).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct AzureProxy {
    #[serde(rename = "httpproxy")]
    pub http_proxy: String,
    #[serde(rename = "httpsproxy")]
    pub https_proxy: String,
    #[serde(rename = "noproxy")]
    pub no_proxy: String,
}

/// The `metrics` object of §10: which metrics to expose, with which labels and buckets.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default)]
pub struct MetricsConfig {
    pub counters: BTreeMap<String, MetricSpec>,
    pub gauges: BTreeMap<String, MetricSpec>,
    pub histograms: BTreeMap<String, MetricSpec>,
}

/// One configured metric. `buckets` is only meaningful for histograms (empty ⇒ defaults).
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default)]
pub struct MetricSpec {
    pub labels: Vec<String>,
    pub buckets: Vec<f64>,
}

/// The decoded `config.json`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default)]
pub struct Config {
    pub configure_url: String,
    pub github_token: Secret,
    pub github_app_id: String,
    pub github_app_installation_id: i64,
    pub github_app_private_key: Secret,
    pub vault_type: String,
    pub vault_lookup_key: String,
    pub azure_key_vault: Option<AzureKeyVault>,
    pub ephemeral_runner_set_namespace: String,
    pub ephemeral_runner_set_name: String,
    pub max_runners: i64,
    pub min_runners: i64,
    pub runner_scale_set_id: i64,
    pub runner_scale_set_name: String,
    pub server_root_ca: String,
    pub log_level: String,
    pub log_format: String,
    pub metrics_addr: String,
    pub metrics_endpoint: String,
    /// `None` (absent or `null`) ⇒ every metric with its default labels; `Some(empty)` ⇒ none.
    pub metrics: Option<MetricsConfig>,
}

impl Config {
    /// Reads, decodes and validates the file at `path` (for the Kubernetes backend).
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        Self::load_for(path, true)
    }

    /// Like [`Config::load`]; `kubernetes: false` (the Docker backend) makes the EphemeralRunnerSet
    /// fields optional.
    pub fn load_for(path: &Path, kubernetes: bool) -> Result<Self, ConfigError> {
        let bytes = std::fs::read(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        let config = Self::from_slice(&bytes).map_err(|e| match e {
            ConfigError::Decode { source, .. } => ConfigError::Decode {
                path: path.to_owned(),
                source,
            },
            other => other,
        })?;
        config.validate_for(kubernetes)?;
        Ok(config)
    }

    /// Decodes (without validating) one JSON object, leniently.
    pub fn from_slice(bytes: &[u8]) -> Result<Self, ConfigError> {
        let bytes = bytes.strip_prefix(rarc_actions::lenient::BOM).unwrap_or(bytes);
        let value: Value = {
            let de = &mut serde_json::Deserializer::from_slice(bytes);
            serde_path_to_error::deserialize(de).map_err(|source| ConfigError::Decode {
                path: PathBuf::new(),
                source,
            })?
        };
        let Value::Object(map) = value else {
            return Err(ConfigError::NotAnObject);
        };
        let normalized = Value::Object(normalize_struct(map, 0));
        serde_path_to_error::deserialize(normalized).map_err(|source| ConfigError::Decode {
            path: PathBuf::new(),
            source,
        })
    }

    /// The checks of §2.2, in the spec's order, then the listener's own (max range, log settings,
    /// configure URL syntax, histogram buckets).
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.validate_for(true)
    }

    /// [`Config::validate`]; without `kubernetes` the EphemeralRunnerSet namespace and name are
    /// not required (the Docker backend has none).
    pub fn validate_for(&self, kubernetes: bool) -> Result<(), ConfigError> {
        if self.configure_url.trim().is_empty() {
            return Err(invalid("configure_url", "is required"));
        }
        if kubernetes && self.ephemeral_runner_set_namespace.is_empty() {
            return Err(invalid("ephemeral_runner_set_namespace", "is required"));
        }
        if kubernetes && self.ephemeral_runner_set_name.is_empty() {
            return Err(invalid("ephemeral_runner_set_name", "is required"));
        }
        if self.runner_scale_set_id == 0 {
            return Err(invalid("runner_scale_set_id", "is required and must not be 0"));
        }
        if self.max_runners < self.min_runners {
            return Err(invalid(
                "max_runners",
                format!(
                    "max_runners ({}) must be greater than or equal to min_runners ({})",
                    self.max_runners, self.min_runners
                ),
            ));
        }
        if !self.vault_type.is_empty() {
            if self.vault_type != VAULT_AZURE_KEY_VAULT {
                return Err(invalid(
                    "vault_type",
                    format!(
                        "{:?} is not supported; the only vault type is {VAULT_AZURE_KEY_VAULT:?}",
                        self.vault_type
                    ),
                ));
            }
            if self.vault_lookup_key.is_empty() {
                return Err(invalid("vault_lookup_key", "is required when vault_type is set"));
            }
        } else if !self.vault_lookup_key.is_empty() {
            return Err(invalid("vault_type", "is required when vault_lookup_key is set"));
        } else {
            let has_token = !self.github_token.is_empty();
            let has_app = !self.github_app_id.is_empty()
                && self.github_app_installation_id > 0
                && !self.github_app_private_key.is_empty();
            match (has_token, has_app) {
                (true, true) => {
                    return Err(ConfigError::BothCredentials(
                        "invalid config: both PAT and GitHub App credentials provided; set either github_token or github_app_id, github_app_installation_id and github_app_private_key",
                    ));
                }
                (false, false) => {
                    return Err(invalid(
                        "github_token",
                        "no GitHub credentials: set github_token, or all of github_app_id, github_app_installation_id (> 0) and github_app_private_key",
                    ));
                }
                _ => {}
            }
        }
        if !(0..=MAX_RUNNERS_LIMIT).contains(&self.max_runners) {
            return Err(invalid(
                "max_runners",
                format!("{} is out of range 0..={MAX_RUNNERS_LIMIT}", self.max_runners),
            ));
        }
        if self.min_runners < 0 {
            return Err(invalid(
                "min_runners",
                format!("{} must not be negative", self.min_runners),
            ));
        }
        if !self.log_level.is_empty() && !LOG_LEVELS.contains(&self.log_level.to_ascii_lowercase().as_str()) {
            return Err(invalid(
                "log_level",
                format!("{:?} is not one of {}", self.log_level, LOG_LEVELS.join(", ")),
            ));
        }
        if !self.log_format.is_empty() && !LOG_FORMATS.contains(&self.log_format.to_ascii_lowercase().as_str()) {
            return Err(invalid(
                "log_format",
                format!("{:?} is not one of {}", self.log_format, LOG_FORMATS.join(", ")),
            ));
        }
        GitHubConfig::parse(&self.configure_url).map_err(|e| invalid("configure_url", e.to_string()))?;
        if let Some(metrics) = &self.metrics {
            for (name, spec) in &metrics.histograms {
                if !spec.buckets.windows(2).all(|w| w[0] < w[1]) || spec.buckets.iter().any(|b| b.is_nan()) {
                    return Err(invalid(
                        "metrics.histograms",
                        format!("buckets of {name} must be strictly increasing"),
                    ));
                }
            }
        }
        Ok(())
    }

    /// The credentials to use. Vault credentials are not supported (a clear startup error).
    pub fn credentials(&self) -> Result<Credentials, ConfigError> {
        if !self.vault_type.is_empty() {
            return Err(ConfigError::VaultUnsupported);
        }
        if !self.github_token.is_empty() {
            return Ok(Credentials::Pat(self.github_token.clone()));
        }
        Ok(Credentials::App {
            app_id: self.github_app_id.clone(),
            installation_id: self.github_app_installation_id,
            private_key: self.github_app_private_key.clone(),
        })
    }

    /// `log_level`, lower-cased, with the empty value replaced by the default (`info`).
    pub fn log_level(&self) -> String {
        if self.log_level.is_empty() {
            DEFAULT_LOG_LEVEL.into()
        } else {
            self.log_level.to_ascii_lowercase()
        }
    }

    /// `log_format`, lower-cased, with the empty value replaced by the default (`text`).
    pub fn log_format(&self) -> String {
        if self.log_format.is_empty() {
            DEFAULT_LOG_FORMAT.into()
        } else {
            self.log_format.to_ascii_lowercase()
        }
    }

    /// `metrics_endpoint`, or `/metrics` when empty.
    pub fn metrics_endpoint(&self) -> String {
        if self.metrics_endpoint.is_empty() {
            DEFAULT_METRICS_ENDPOINT.into()
        } else if self.metrics_endpoint.starts_with('/') {
            self.metrics_endpoint.clone()
        } else {
            format!("/{}", self.metrics_endpoint)
        }
    }

    /// `server_root_ca`, `None` when empty.
    pub fn root_ca(&self) -> Option<String> {
        (!self.server_root_ca.trim().is_empty()).then(|| self.server_root_ca.clone())
    }
}

/// Lower-cases the keys of a JSON object that maps onto a struct (Go matches struct fields
/// case-insensitively) and drops `null`s (Go leaves the field at its zero value). Nested struct
/// objects are normalized too; map keys (metric names) are kept as written.
fn normalize_struct(map: Map<String, Value>, depth: u8) -> Map<String, Value> {
    let mut out = Map::new();
    for (key, value) in map {
        if value.is_null() {
            continue;
        }
        let lower = key.to_ascii_lowercase();
        let value = match (lower.as_str(), value) {
            ("azure_key_vault" | "proxy", Value::Object(m)) if depth < 2 => {
                Value::Object(normalize_struct(m, depth + 1))
            }
            ("metrics", Value::Object(m)) if depth == 0 => Value::Object(
                normalize_struct_shallow(m)
                    .into_iter()
                    .map(|(kind, v)| match v {
                        Value::Object(per_metric) => (
                            kind,
                            Value::Object(
                                per_metric
                                    .into_iter()
                                    .filter(|(_, spec)| !spec.is_null())
                                    .map(|(name, spec)| match spec {
                                        Value::Object(s) => (name, Value::Object(normalize_struct_shallow(s))),
                                        other => (name, other),
                                    })
                                    .collect(),
                            ),
                        ),
                        other => (kind, other),
                    })
                    .collect(),
            ),
            (_, v) => v,
        };
        // An exact-case key wins over a case-insensitive one (Go prefers the exact match).
        if out.contains_key(&lower) && key != lower {
            continue;
        }
        out.insert(lower, value);
    }
    out
}

fn normalize_struct_shallow(map: Map<String, Value>) -> Map<String, Value> {
    map.into_iter()
        .filter(|(_, v)| !v.is_null())
        .map(|(k, v)| (k.to_ascii_lowercase(), v))
        .collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use serde_json::json;

    fn base() -> Value {
        json!({
            "configure_url": "https://github.com/my-org",
            "vault_type": "",
            "vault_lookup_key": "",
            "github_app_id": "",
            "github_app_installation_id": 0,
            "github_app_private_key": "",
            "github_token": "ghp_xxx",
            "ephemeral_runner_set_namespace": "arc-runners",
            "ephemeral_runner_set_name": "arc-runner-set-7zb9q",
            "max_runners": 2147483647,
            "min_runners": 0,
            "runner_scale_set_id": 5,
            "runner_scale_set_name": "arc-runner-set",
            "server_root_ca": "",
            "log_level": "debug",
            "log_format": "text",
            "metrics_addr": ":8080",
            "metrics_endpoint": "/metrics",
            "metrics": null
        })
    }

    fn with(changes: Value) -> Value {
        let mut v = base();
        for (k, val) in changes.as_object().unwrap() {
            v[k] = val.clone();
        }
        v
    }

    fn check(v: &Value) -> Result<Config, ConfigError> {
        let c = Config::from_slice(v.to_string().as_bytes())?;
        c.validate()?;
        Ok(c)
    }

    #[test]
    fn the_docker_backend_needs_no_ephemeral_runner_set() {
        let v = with(json!({"ephemeral_runner_set_namespace": "", "ephemeral_runner_set_name": null}));
        let c = Config::from_slice(v.to_string().as_bytes()).unwrap();
        assert!(c.validate_for(false).is_ok());
        assert!(
            c.validate()
                .unwrap_err()
                .to_string()
                .contains("ephemeral_runner_set_namespace")
        );
        let no_url = with(json!({"configure_url": ""}));
        let c = Config::from_slice(no_url.to_string().as_bytes()).unwrap();
        assert!(c.validate_for(false).unwrap_err().to_string().contains("configure_url"));
    }

    #[test]
    fn controller_example_parses() {
        let c = check(&base()).unwrap();
        assert_eq!(c.max_runners, MAX_RUNNERS_LIMIT);
        assert!(c.metrics.is_none());
        assert_eq!(c.credentials().unwrap(), Credentials::Pat(Secret::new("ghp_xxx")));
        assert_eq!(c.metrics_endpoint(), "/metrics");
    }

    /// §15.2 item 3: the App variant with `github_token: ""` present parses as App.
    #[test]
    fn app_variant_with_empty_token_key() {
        let c = check(&with(json!({
            "github_token": "",
            "github_app_id": "Iv1.abc",
            "github_app_installation_id": 42,
            "github_app_private_key": "PEM"
        })))
        .unwrap();
        assert!(
            matches!(c.credentials().unwrap(), Credentials::App { installation_id: 42, ref app_id, .. } if app_id == "Iv1.abc")
        );
    }

    /// §15.2 item 2: each validation rule, in the spec's order, names its field.
    #[test]
    fn validation_table() {
        let app = json!({"github_app_id": "1", "github_app_installation_id": 2, "github_app_private_key": "k"});
        let cases: Vec<(Value, &str)> = vec![
            (with(json!({"configure_url": ""})), "configure_url"),
            (
                with(json!({"configure_url": "", "runner_scale_set_id": 0})),
                "configure_url",
            ),
            (
                with(json!({"ephemeral_runner_set_namespace": ""})),
                "ephemeral_runner_set_namespace",
            ),
            (
                with(json!({"ephemeral_runner_set_name": ""})),
                "ephemeral_runner_set_name",
            ),
            (with(json!({"runner_scale_set_id": 0})), "runner_scale_set_id"),
            (
                with(json!({"runner_scale_set_id": 0, "min_runners": 5, "max_runners": 1})),
                "runner_scale_set_id",
            ),
            (with(json!({"min_runners": 5, "max_runners": 1})), "max_runners"),
            (
                with(json!({"vault_type": "hashicorp", "vault_lookup_key": "k"})),
                "vault_type",
            ),
            (with(json!({"vault_type": "azure_key_vault"})), "vault_lookup_key"),
            (with(json!({"vault_lookup_key": "k"})), "vault_type"),
            (with(json!({"github_token": ""})), "github_token"),
            (
                with(
                    json!({"github_token": "", "github_app_id": "1", "github_app_installation_id": 0, "github_app_private_key": "k"}),
                ),
                "github_token",
            ),
            (with(app.clone()), "both PAT and GitHub App credentials provided"),
            (with(json!({"max_runners": 2147483648i64})), "max_runners"),
            (with(json!({"min_runners": -2, "max_runners": -1})), "max_runners"),
            (with(json!({"min_runners": -1})), "min_runners"),
            (with(json!({"log_level": "verbose"})), "log_level"),
            (with(json!({"log_format": "xml"})), "log_format"),
            (with(json!({"configure_url": "https://github.com/"})), "configure_url"),
            (
                with(json!({"metrics": {"histograms": {"gha_job_startup_duration_seconds": {"buckets": [2.0, 1.0]}}}})),
                "metrics.histograms",
            ),
        ];
        for (value, field) in cases {
            let err = check(&value).unwrap_err().to_string();
            assert!(err.contains(field), "expected {field:?} in {err:?} for {value}");
        }
    }

    #[test]
    fn decode_errors_name_the_field() {
        let err = Config::from_slice(br#"{"runner_scale_set_id": "five"}"#)
            .unwrap_err()
            .to_string();
        assert!(err.contains("runner_scale_set_id"), "{err}");
        assert!(Config::from_slice(b"{not json").is_err());
        assert!(matches!(Config::from_slice(b"[1]"), Err(ConfigError::NotAnObject)));
    }

    #[test]
    fn lenient_decoding() {
        let c = Config::from_slice(
            br#"{"Configure_URL":"https://github.com/o","GITHUB_TOKEN":"t","unknown":{"x":1},
                "ephemeral_runner_set_namespace":null,"max_runners":null,
                "Azure_Key_Vault":{"Tenant_ID":"t","proxy":{"HTTPProxy":"http://p"}},
                "metrics":{"Counters":{"gha_started_jobs_total":{"Labels":["repository"]}}}}"#,
        )
        .unwrap();
        assert_eq!(c.configure_url, "https://github.com/o");
        assert_eq!(c.github_token.expose(), "t");
        assert_eq!(c.ephemeral_runner_set_namespace, "");
        assert_eq!(c.max_runners, 0);
        let akv = c.azure_key_vault.unwrap();
        assert_eq!(akv.tenant_id, "t");
        assert_eq!(akv.proxy.unwrap().http_proxy, "http://p");
        let m = c.metrics.unwrap();
        assert_eq!(m.counters["gha_started_jobs_total"].labels, ["repository"]);
        let empty = Config::from_slice(br#"{"metrics":{}}"#).unwrap();
        assert_eq!(empty.metrics, Some(MetricsConfig::default()));
    }

    /// §15.2 item 5: accepted log settings and the defaults for empty values.
    #[test]
    fn log_settings() {
        for level in ["debug", "info", "warn", "error", "INFO"] {
            let c = check(&with(json!({ "log_level": level }))).unwrap();
            assert_eq!(c.log_level(), level.to_ascii_lowercase());
        }
        for format in ["text", "json", "JSON"] {
            check(&with(json!({ "log_format": format }))).unwrap();
        }
        let c = check(&with(json!({"log_level": "", "log_format": ""}))).unwrap();
        assert_eq!((c.log_level().as_str(), c.log_format().as_str()), ("info", "text"));
    }

    #[test]
    fn vault_validates_but_is_unsupported() {
        let v = with(
            json!({"github_token": "", "vault_type": "azure_key_vault", "vault_lookup_key": "k",
                            "azure_key_vault": {"tenant_id": "t", "client_id": "c", "url": "https://v", "certificate_path": "/c"}}),
        );
        let c = check(&v).unwrap();
        let err = c.credentials().unwrap_err().to_string();
        assert!(err.contains("not supported"), "{err}");
    }
}
