//! What a simulated job is: the definition queued through the control API and handed to the runner.
//!
//! The shape follows a workflow job closely enough that the simulated runner can drive container hooks
//! the way the real runner does (`container-hooks.md` §1): an optional job container, services, and a
//! list of steps that are either scripts (`run:`) or container actions (`uses: docker://…`).

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// A job container or service (`container:` / `services.<name>:` of a workflow).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct ContainerSpec {
    pub image: String,
    /// The workflow `options:` string, verbatim.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub options: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub entrypoint: Option<String>,
    /// The workflow `command:` string (split on single spaces by the runner).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub command: Option<String>,
    pub env: BTreeMap<String, String>,
    pub ports: Vec<String>,
    /// `source:target[:ro]`, `target:ro` or `target`.
    pub volumes: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub credentials: Option<Credentials>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Credentials {
    pub username: String,
    pub password: String,
}

/// A service: its workflow alias and its container.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct ServiceSpec {
    pub name: String,
    #[serde(flatten)]
    pub container: ContainerSpec,
}

/// One step: exactly one of `run` (a script) or `uses` (`docker://image`) is set.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct StepSpec {
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub run: Option<String>,
    /// `sh` (default, run as `sh -e {0}`) or `bash` (`bash --noprofile --norc -e -o pipefail {0}`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub shell: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub uses: Option<String>,
    /// `with: args:` of a container action.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub args: Option<String>,
    /// `with: entrypoint:` of a container action.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub entrypoint: Option<String>,
    pub env: BTreeMap<String, String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub working_directory: Option<String>,
    pub continue_on_error: bool,
}

/// The definition of a job, as queued and as delivered to the runner.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct JobSpec {
    /// Simulated work before the steps run, in milliseconds (the control API's "job duration").
    pub duration_ms: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub container: Option<ContainerSpec>,
    pub services: Vec<ServiceSpec>,
    pub steps: Vec<StepSpec>,
    pub env: BTreeMap<String, String>,
}

impl JobSpec {
    /// Whether the runner must call `prepare_job` (a job container or at least one service).
    pub fn needs_prepare(&self) -> bool {
        self.container.is_some() || !self.services.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minimal_json_decodes_with_defaults() {
        let spec: JobSpec = serde_json::from_str(r#"{"steps":[{"run":"echo hi"}]}"#).unwrap();
        assert_eq!(spec.steps[0].run.as_deref(), Some("echo hi"));
        assert!(!spec.needs_prepare());
        let spec: JobSpec =
            serde_json::from_str(r#"{"services":[{"name":"redis","image":"redis","ports":["6379"]}]}"#).unwrap();
        assert_eq!(spec.services[0].container.image, "redis");
        assert!(spec.needs_prepare());
    }
}
