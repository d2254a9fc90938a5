//! The four resources of `actions.github.com/v1alpha1` (arc-controller.md §2): field names,
//! optionality, validation, printer columns and status subresources as in ARC's CRDs.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{LocalObjectReference, PodTemplateSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::common::{MetricsConfig, ProxyConfig, ResourceMeta, TlsConfig, VaultConfig};

/// The scale set a user declares (Helm's `gha-runner-scale-set` renders it).
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[kube(
    group = "actions.github.com",
    version = "v1alpha1",
    kind = "AutoscalingRunnerSet",
    namespaced,
    status = "AutoscalingRunnerSetStatus",
    doc = "AutoscalingRunnerSet is the Schema for the autoscalingrunnersets API",
    printcolumn = r#"{"name":"Minimum Runners","type":"integer","jsonPath":".spec.minRunners"}"#,
    printcolumn = r#"{"name":"Maximum Runners","type":"integer","jsonPath":".spec.maxRunners"}"#,
    printcolumn = r#"{"name":"Current Runners","type":"integer","jsonPath":".status.currentRunners"}"#,
    printcolumn = r#"{"name":"Phase","type":"string","jsonPath":".status.phase"}"#,
    printcolumn = r#"{"name":"Pending Runners","type":"integer","jsonPath":".status.pendingEphemeralRunners"}"#,
    printcolumn = r#"{"name":"Running Runners","type":"integer","jsonPath":".status.runningEphemeralRunners"}"#,
    printcolumn = r#"{"name":"Finished Runners","type":"integer","jsonPath":".status.finishedEphemeralRunners"}"#,
    printcolumn = r#"{"name":"Deleting Runners","type":"integer","jsonPath":".status.deletingEphemeralRunners"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct AutoscalingRunnerSetSpec {
    /// `https://<host>/<org>`, `https://<host>/<org>/<repo>` or `https://<host>/enterprises/<ent>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub github_config_url: Option<String>,
    /// A Secret in this namespace with `github_token`, or the three `github_app_*` keys.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub github_config_secret: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runner_group: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runner_scale_set_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runner_scale_set_labels: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proxy: Option<ProxyConfig>,
    #[serde(default, rename = "githubServerTLS", skip_serializing_if = "Option::is_none")]
    pub github_server_tls: Option<TlsConfig>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vault_config: Option<VaultConfig>,
    /// The runner pod template; its container `runner` gets the JIT configuration.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template: Option<PodTemplateSpec>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub autoscaling_listener: Option<ResourceMeta>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub listener_metrics: Option<MetricsConfig>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub listener_template: Option<PodTemplateSpec>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub listener_service_account_metadata: Option<ResourceMeta>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub listener_role_metadata: Option<ResourceMeta>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub listener_role_binding_metadata: Option<ResourceMeta>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub listener_config_secret_metadata: Option<ResourceMeta>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ephemeral_runner_set_metadata: Option<ResourceMeta>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ephemeral_runner_metadata: Option<ResourceMeta>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ephemeral_runner_config_secret_metadata: Option<ResourceMeta>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "crate::schema::nullable_count")]
    pub max_runners: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "crate::schema::nullable_count")]
    pub min_runners: Option<i32>,
}

/// What the controller reports on an AutoscalingRunnerSet.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AutoscalingRunnerSetStatus {
    #[serde(default)]
    #[schemars(schema_with = "crate::schema::int")]
    pub current_runners: i32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<String>,
    #[serde(default)]
    #[schemars(schema_with = "crate::schema::int")]
    pub pending_ephemeral_runners: i32,
    #[serde(default)]
    #[schemars(schema_with = "crate::schema::int")]
    pub running_ephemeral_runners: i32,
    #[serde(default)]
    #[schemars(schema_with = "crate::schema::int")]
    pub failed_ephemeral_runners: i32,
    /// rarc extension (docs/compat.md): why the set is not running (credentials, GitHub errors).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conditions: Option<Vec<Condition>>,
}

/// The listener of one scale set; lives in the controller's namespace.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[kube(
    group = "actions.github.com",
    version = "v1alpha1",
    kind = "AutoscalingListener",
    namespaced,
    status = "AutoscalingListenerStatus",
    doc = "AutoscalingListener is the Schema for the autoscalinglisteners API",
    printcolumn = r#"{"name":"GitHub Configure URL","type":"string","jsonPath":".spec.githubConfigUrl"}"#,
    printcolumn = r#"{"name":"AutoscalingRunnerSet Namespace","type":"string","jsonPath":".spec.autoscalingRunnerSetNamespace"}"#,
    printcolumn = r#"{"name":"AutoscalingRunnerSet Name","type":"string","jsonPath":".spec.autoscalingRunnerSetName"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct AutoscalingListenerSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub github_config_url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub github_config_secret: Option<String>,
    #[serde(default)]
    #[schemars(schema_with = "crate::schema::int")]
    pub runner_scale_set_id: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub autoscaling_runner_set_namespace: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub autoscaling_runner_set_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ephemeral_runner_set_name: Option<String>,
    #[serde(default)]
    #[schemars(schema_with = "crate::schema::count")]
    pub max_runners: i32,
    #[serde(default)]
    #[schemars(schema_with = "crate::schema::count")]
    pub min_runners: i32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_pull_secrets: Option<Vec<LocalObjectReference>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proxy: Option<ProxyConfig>,
    #[serde(default, rename = "githubServerTLS", skip_serializing_if = "Option::is_none")]
    pub github_server_tls: Option<TlsConfig>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vault_config: Option<VaultConfig>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metrics: Option<MetricsConfig>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template: Option<PodTemplateSpec>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_secret_metadata: Option<ResourceMeta>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_account_metadata: Option<ResourceMeta>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role_metadata: Option<ResourceMeta>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role_binding_metadata: Option<ResourceMeta>,
}

/// Empty, as in ARC.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
pub struct AutoscalingListenerStatus {}

/// The runners of one scale set; the listener writes `replicas` and `patchID`.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[kube(
    group = "actions.github.com",
    version = "v1alpha1",
    kind = "EphemeralRunnerSet",
    namespaced,
    status = "EphemeralRunnerSetStatus",
    doc = "EphemeralRunnerSet is the Schema for the ephemeralrunnersets API",
    printcolumn = r#"{"name":"DesiredReplicas","type":"integer","jsonPath":".spec.replicas"}"#,
    printcolumn = r#"{"name":"CurrentReplicas","type":"integer","jsonPath":".status.currentReplicas"}"#,
    printcolumn = r#"{"name":"Pending Runners","type":"integer","jsonPath":".status.pendingEphemeralRunners"}"#,
    printcolumn = r#"{"name":"Running Runners","type":"integer","jsonPath":".status.runningEphemeralRunners"}"#,
    printcolumn = r#"{"name":"Finished Runners","type":"integer","jsonPath":".status.finishedEphemeralRunners"}"#,
    printcolumn = r#"{"name":"Deleting Runners","type":"integer","jsonPath":".status.deletingEphemeralRunners"}"#,
    printcolumn = r#"{"name":"Phase","type":"string","jsonPath":".status.phase"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct EphemeralRunnerSetSpec {
    /// Desired EphemeralRunners; absent means 0.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "crate::schema::int")]
    pub replicas: Option<i32>,
    /// The id of the listener's last patch; 0 means "converge exactly".
    #[serde(rename = "patchID")]
    #[schemars(schema_with = "crate::schema::int")]
    pub patch_id: i32,
    pub ephemeral_runner_spec: EphemeralRunnerSpec,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ephemeral_runner_metadata: Option<ResourceMeta>,
}

/// What the controller reports on an EphemeralRunnerSet; `currentReplicas` is always sent.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct EphemeralRunnerSetStatus {
    #[schemars(schema_with = "crate::schema::int")]
    pub current_replicas: i32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "crate::schema::int")]
    pub pending_ephemeral_runners: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "crate::schema::int")]
    pub running_ephemeral_runners: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "crate::schema::int")]
    pub failed_ephemeral_runners: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<String>,
}

/// One just-in-time runner: its JIT Secret and pod are named after it.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[kube(
    group = "actions.github.com",
    version = "v1alpha1",
    kind = "EphemeralRunner",
    namespaced,
    status = "EphemeralRunnerStatus",
    doc = "EphemeralRunner is the Schema for the ephemeralrunners API",
    printcolumn = r#"{"name":"GitHub Config URL","type":"string","jsonPath":".spec.githubConfigUrl"}"#,
    printcolumn = r#"{"name":"RunnerId","type":"number","jsonPath":".status.runnerId"}"#,
    printcolumn = r#"{"name":"Phase","type":"string","jsonPath":".status.phase"}"#,
    printcolumn = r#"{"name":"JobRepository","type":"string","jsonPath":".status.jobRepositoryName"}"#,
    printcolumn = r#"{"name":"JobWorkflowRef","type":"string","jsonPath":".status.jobWorkflowRef"}"#,
    printcolumn = r#"{"name":"WorkflowRunId","type":"number","jsonPath":".status.workflowRunId"}"#,
    printcolumn = r#"{"name":"JobDisplayName","type":"string","jsonPath":".status.jobDisplayName"}"#,
    printcolumn = r#"{"name":"JobId","type":"string","jsonPath":".status.jobId"}"#,
    printcolumn = r#"{"name":"Message","type":"string","jsonPath":".status.message"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct EphemeralRunnerSpec {
    pub github_config_url: String,
    pub github_config_secret: String,
    #[schemars(schema_with = "crate::schema::int")]
    pub runner_scale_set_id: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proxy: Option<ProxyConfig>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proxy_secret_ref: Option<String>,
    #[serde(default, rename = "githubServerTLS", skip_serializing_if = "Option::is_none")]
    pub github_server_tls: Option<TlsConfig>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vault_config: Option<VaultConfig>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ephemeral_runner_config_secret_metadata: Option<ResourceMeta>,
    /// The runner pod template, inlined: `metadata` and `spec` are keys of this object.
    #[serde(flatten)]
    pub pod_template: PodTemplateSpec,
}

/// What the controller (runner fields) and the listener (job fields) report on an EphemeralRunner.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct EphemeralRunnerStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ready: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "crate::schema::int")]
    pub runner_id: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runner_name: Option<String>,
    /// Failed pod UID → time of the failure (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "crate::schema::failures")]
    pub failures: Option<BTreeMap<String, String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job_request_id: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job_repository_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job_workflow_ref: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workflow_run_id: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job_display_name: Option<String>,
}

impl EphemeralRunner {
    /// `status.jobId` is non-empty: the runner has (had) a job.
    pub fn has_job(&self) -> bool {
        self.status
            .as_ref()
            .and_then(|s| s.job_id.as_deref())
            .is_some_and(|j| !j.is_empty())
    }

    /// `status.runnerId`, 0 when not registered yet.
    pub fn runner_id(&self) -> i64 {
        self.status.as_ref().and_then(|s| s.runner_id).unwrap_or(0)
    }

    /// `status.phase`, empty when unset.
    pub fn phase(&self) -> &str {
        self.status.as_ref().and_then(|s| s.phase.as_deref()).unwrap_or("")
    }
}
