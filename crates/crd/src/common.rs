//! Sub-types shared by the four resources (arc-controller.md §2, "Shared sub-types").

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Extra labels and annotations for an object the controller creates.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
pub struct ResourceMeta {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub labels: Option<BTreeMap<String, String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<BTreeMap<String, String>>,
}

impl ResourceMeta {
    /// The labels, empty when unset.
    pub fn labels(meta: &Option<Self>) -> BTreeMap<String, String> {
        meta.as_ref().and_then(|m| m.labels.clone()).unwrap_or_default()
    }

    /// The annotations, empty when unset.
    pub fn annotations(meta: &Option<Self>) -> BTreeMap<String, String> {
        meta.as_ref().and_then(|m| m.annotations.clone()).unwrap_or_default()
    }
}

/// Proxies for GitHub traffic of the controller, the listener and the runners.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ProxyConfig {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http: Option<ProxyServerConfig>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub https: Option<ProxyServerConfig>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub no_proxy: Option<Vec<String>>,
}

/// One proxy: its URL, and optionally a Secret (keys `username`, `password`) in the object's
/// namespace whose values become the URL's user-info.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ProxyServerConfig {
    /// Required.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credential_secret_ref: Option<String>,
}

/// An extra CA for a GitHub Enterprise Server, read from a ConfigMap key.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TlsConfig {
    /// Required.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub certificate_from: Option<TlsCertificateSource>,
}

/// Where the CA comes from.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TlsCertificateSource {
    /// Required.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_map_key_ref: Option<k8s_openapi::api::core::v1::ConfigMapKeySelector>,
}

/// Secret resolution through a vault instead of a Kubernetes Secret.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct VaultConfig {
    /// `azure_key_vault` is the only accepted value.
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub type_: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub azure_key_vault: Option<AzureKeyVaultConfig>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proxy: Option<ProxyConfig>,
}

/// Azure Key Vault access (all four fields required when present).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AzureKeyVaultConfig {
    pub url: String,
    pub tenant_id: String,
    pub client_id: String,
    pub certificate_path: String,
}

/// Which listener metrics to export, and with which labels.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
pub struct MetricsConfig {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub counters: Option<BTreeMap<String, CounterMetric>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gauges: Option<BTreeMap<String, GaugeMetric>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub histograms: Option<BTreeMap<String, HistogramMetric>>,
}

/// A counter and its labels.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
pub struct CounterMetric {
    pub labels: Vec<String>,
}

/// A gauge and its labels.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
pub struct GaugeMetric {
    pub labels: Vec<String>,
}

/// A histogram, its labels and buckets.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
pub struct HistogramMetric {
    pub labels: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub buckets: Option<Vec<f64>>,
}
