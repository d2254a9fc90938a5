//! The Kubernetes backend (spec §9.5, §9.6): JSON merge patches on the EphemeralRunnerSet and on
//! EphemeralRunner status. No GETs, no LISTs, no watches: the listener's Role only allows `patch`.
//!
//! Configuration: in-cluster (service-account token and CA, `KUBERNETES_SERVICE_HOST/PORT`) when
//! `KUBERNETES_SERVICE_HOST` is set, else the kubeconfig (`KUBECONFIG` or `~/.kube/config`).
//! kube-rs re-reads the projected service-account token file when it rotates, as client-go does.

use super::{Backend, BackendError};
use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind, Patch, PatchParams};
use rarc_actions::types::{JobCompleted, JobStarted};
use serde_json::{Map, Value, json};

/// API group of the ARC resources.
pub const GROUP: &str = "actions.github.com";
/// API version of the ARC resources.
pub const VERSION: &str = "v1alpha1";

/// The resource of EphemeralRunnerSets.
pub fn ephemeral_runner_set_resource() -> ApiResource {
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk(GROUP, VERSION, "EphemeralRunnerSet"),
        "ephemeralrunnersets",
    )
}

/// The resource of EphemeralRunners.
pub fn ephemeral_runner_resource() -> ApiResource {
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk(GROUP, VERSION, "EphemeralRunner"),
        "ephemeralrunners",
    )
}

/// The ERS patch body of §9.5. `replicas` is always a number (0 rather than `null`; the API
/// server and the controller read both as 0).
pub fn runner_set_patch(target: i64, patch_id: i64) -> Value {
    json!({ "spec": { "patchID": patch_id, "replicas": target } })
}

/// The EphemeralRunner status patch of §9.6: only non-empty fields; `jobRepositoryName` is
/// always `owner/repo`.
pub fn runner_status_patch(job: &JobStarted) -> Value {
    let b = &job.base;
    let mut status = Map::new();
    let mut put_str = |key: &str, value: &str| {
        if !value.is_empty() {
            status.insert(key.into(), Value::from(value));
        }
    };
    put_str("jobDisplayName", &b.job_display_name);
    put_str("jobId", &b.job_id);
    put_str("jobRepositoryName", &format!("{}/{}", b.owner_name, b.repository_name));
    put_str("jobWorkflowRef", &b.job_workflow_ref);
    if b.runner_request_id != 0 {
        status.insert("jobRequestId".into(), Value::from(b.runner_request_id));
    }
    if b.workflow_run_id != 0 {
        status.insert("workflowRunId".into(), Value::from(b.workflow_run_id));
    }
    json!({ "status": status })
}

/// Patches one EphemeralRunnerSet and its EphemeralRunners.
#[derive(Clone)]
pub struct KubernetesBackend {
    runner_sets: Api<DynamicObject>,
    runners: Api<DynamicObject>,
    namespace: String,
    name: String,
}

impl KubernetesBackend {
    /// Uses `client` for the set `name` in `namespace`.
    pub fn new(client: kube::Client, namespace: &str, name: &str) -> Self {
        Self {
            runner_sets: Api::namespaced_with(client.clone(), namespace, &ephemeral_runner_set_resource()),
            runners: Api::namespaced_with(client, namespace, &ephemeral_runner_resource()),
            namespace: namespace.to_owned(),
            name: name.to_owned(),
        }
    }

    /// Connects as described in the module docs.
    pub async fn connect(namespace: &str, name: &str) -> Result<Self, BackendError> {
        Ok(Self::new(client().await?, namespace, name))
    }
}

/// A Kubernetes client: in-cluster when `KUBERNETES_SERVICE_HOST` is set, else the kubeconfig.
pub async fn client() -> Result<kube::Client, BackendError> {
    let config = if std::env::var_os("KUBERNETES_SERVICE_HOST").is_some() {
        kube::Config::incluster().map_err(|e| api_error("load in-cluster Kubernetes config", e))?
    } else {
        kube::Config::from_kubeconfig(&kube::config::KubeConfigOptions::default())
            .await
            .map_err(|e| api_error("load kubeconfig", e))?
    };
    kube::Client::try_from(config).map_err(|e| api_error("build Kubernetes client", e))
}

fn api_error(operation: &'static str, e: impl std::fmt::Display) -> BackendError {
    BackendError::Api {
        operation,
        message: e.to_string(),
    }
}

fn is_not_found(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(status) if status.code == 404)
}

impl Backend for KubernetesBackend {
    async fn apply_desired(&self, target: i64, patch_id: i64) -> Result<(), BackendError> {
        let patch = runner_set_patch(target, patch_id);
        match self
            .runner_sets
            .patch(&self.name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
        {
            Ok(ers) => {
                let replicas = ers.data.pointer("/spec/replicas").and_then(Value::as_i64).unwrap_or(0);
                tracing::info!(
                    runner_set = %self.name,
                    namespace = %self.namespace,
                    replicas,
                    patch_id,
                    "ephemeral runner set patched"
                );
                Ok(())
            }
            Err(e) if is_not_found(&e) => Err(BackendError::NotFound {
                what: format!("EphemeralRunnerSet {}/{}", self.namespace, self.name),
            }),
            Err(e) => Err(api_error("patch EphemeralRunnerSet", e)),
        }
    }

    async fn job_started(&self, job: &JobStarted) -> Result<(), BackendError> {
        if job.runner_name.is_empty() {
            tracing::warn!(job_id = %job.base.job_id, "JobStarted without a runner name; nothing to patch");
            return Ok(());
        }
        let patch = runner_status_patch(job);
        match self
            .runners
            .patch_status(&job.runner_name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
        {
            Ok(_) => {
                tracing::info!(runner = %job.runner_name, job_id = %job.base.job_id, "ephemeral runner marked busy");
                Ok(())
            }
            Err(e) if is_not_found(&e) => {
                tracing::info!(
                    runner = %job.runner_name,
                    job_id = %job.base.job_id,
                    "ephemeral runner not found (not ours or already gone); ignored"
                );
                Ok(())
            }
            Err(e) => Err(api_error("patch EphemeralRunner status", e)),
        }
    }

    async fn job_completed(&self, _job: &JobCompleted) -> Result<(), BackendError> {
        // §9.7: no Kubernetes call; the controller cleans up when the runner pod exits.
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rarc_actions::types::JobMessageBase;

    #[test]
    fn patch_bodies() {
        assert_eq!(
            runner_set_patch(3, 7).to_string(),
            r#"{"spec":{"patchID":7,"replicas":3}}"#
        );
        assert_eq!(
            runner_set_patch(0, 0).to_string(),
            r#"{"spec":{"patchID":0,"replicas":0}}"#
        );
        let job = JobStarted {
            base: JobMessageBase {
                job_display_name: "build".into(),
                job_id: "6e1f".into(),
                owner_name: "my-org".into(),
                repository_name: "my-repo".into(),
                runner_request_id: 101,
                job_workflow_ref: "my-org/my-repo/.github/workflows/ci.yml@refs/heads/main".into(),
                workflow_run_id: 9001,
                ..Default::default()
            },
            runner_name: "r".into(),
            ..Default::default()
        };
        assert_eq!(
            runner_status_patch(&job).to_string(),
            r#"{"status":{"jobDisplayName":"build","jobId":"6e1f","jobRepositoryName":"my-org/my-repo","jobRequestId":101,"jobWorkflowRef":"my-org/my-repo/.github/workflows/ci.yml@refs/heads/main","workflowRunId":9001}}"#
        );
        assert_eq!(
            runner_status_patch(&JobStarted::default()).to_string(),
            r#"{"status":{"jobRepositoryName":"/"}}"#
        );
    }
}
