//! The runner stand-in protocol: how a simulated runner holding a JIT config talks to rarc-sim.
//!
//! The real runner speaks a large private protocol; rarc-sim replaces it with a few endpoints under the
//! Actions service base `{A}` (`/tenant/<n>/`), authenticated with the runner token carried in the JIT
//! config:
//!
//! | call | method | path under `{A}` | answer |
//! | --- | --- | --- | --- |
//! | go online | POST | `_apis/simrunner/runners/{runnerId}/online` | 200 [`OnlineResponse`]; 401 bad token; 404 runner removed |
//! | wait for a job | GET | `_apis/simrunner/runners/{runnerId}/job?waitMs=N` | 200 [`AssignedJob`]; 202 none yet; 404 runner removed |
//! | stream log lines | POST | `_apis/simrunner/runners/{runnerId}/jobs/{requestId}/log` | 204 ([`LogLines`] body) |
//! | renew the job lock | POST | `_apis/simrunner/runners/{runnerId}/jobs/{requestId}/renew` | 204 (a running job whose runner is silent for `lostAfterMs` is lost) |
//! | finish the job | POST | `_apis/simrunner/runners/{runnerId}/jobs/{requestId}/complete` | 204 ([`CompleteRequest`] body) |
//! | go offline | POST | `_apis/simrunner/runners/{runnerId}/offline` | 204 |
//!
//! Handing out a job (200 on the wait call) is the moment the job starts on the runner: the service
//! emits `JobStarted`. `complete` emits `JobCompleted`; an ephemeral runner is then deregistered by the
//! service, as GitHub does.
//!
//! The JIT config has the real runner's outer shape: base64 of a JSON object whose members are the
//! runner's settings files (`.runner`, `.credentials`, `.credentials_rsaparams`), each base64 of JSON.

use crate::job::JobSpec;
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use rarc_actions::Secret;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The path prefix of the runner stand-in endpoints, under `{A}`.
pub const PREFIX: &str = "_apis/simrunner";

/// The `.runner` settings file.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct RunnerSettings {
    pub agent_id: i64,
    pub agent_name: String,
    pub pool_id: i64,
    pub pool_name: String,
    /// The Actions service base `{A}` the runner talks to.
    pub server_url: String,
    pub git_hub_url: String,
    pub work_folder: String,
    pub ephemeral: bool,
    pub disable_update: bool,
    /// rarc-sim extension: the scale set the runner belongs to.
    pub runner_scale_set_id: i64,
}

/// The `.credentials` file. rarc-sim puts the runner token in `data.token`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct RunnerCredentials {
    pub scheme: String,
    pub data: BTreeMap<String, String>,
}

/// A decoded JIT config.
#[derive(Debug, Clone, PartialEq)]
pub struct JitConfig {
    pub settings: RunnerSettings,
    pub token: Secret,
}

#[derive(Debug, thiserror::Error)]
pub enum JitConfigError {
    #[error("JIT config is not valid base64")]
    Base64,
    #[error("JIT config is not a JSON object of settings files: {0}")]
    Json(String),
    #[error("JIT config has no `{0}` file")]
    Missing(&'static str),
}

impl JitConfig {
    /// Encodes as `encodedJITConfig`.
    pub fn encode(&self) -> Secret {
        let mut data = BTreeMap::new();
        data.insert("clientId".to_owned(), uuid::Uuid::new_v4().to_string());
        data.insert(
            "authorizationUrl".to_owned(),
            format!("{}_apis/oauth2/token", self.settings.server_url),
        );
        data.insert("token".to_owned(), self.token.expose().to_owned());
        let creds = RunnerCredentials {
            scheme: "OAuth".into(),
            data,
        };
        let rsa = serde_json::json!({ "d": "", "dp": "", "dq": "", "exponent": "AQAB", "inverseQ": "", "modulus": "", "p": "", "q": "" });
        let file = |v: serde_json::Value| B64.encode(v.to_string());
        let outer = serde_json::json!({
            ".runner": file(serde_json::to_value(&self.settings).unwrap_or_default()),
            ".credentials": file(serde_json::to_value(&creds).unwrap_or_default()),
            ".credentials_rsaparams": file(rsa),
        });
        Secret::new(B64.encode(outer.to_string()))
    }

    /// Decodes an `encodedJITConfig` (what `ACTIONS_RUNNER_INPUT_JITCONFIG` holds).
    pub fn decode(encoded: &str) -> Result<Self, JitConfigError> {
        let outer = B64.decode(encoded.trim()).map_err(|_| JitConfigError::Base64)?;
        let files: BTreeMap<String, String> =
            serde_json::from_slice(&outer).map_err(|e| JitConfigError::Json(e.to_string()))?;
        let read = |name: &'static str| -> Result<Vec<u8>, JitConfigError> {
            let b = files.get(name).ok_or(JitConfigError::Missing(name))?;
            B64.decode(b).map_err(|_| JitConfigError::Base64)
        };
        let settings: RunnerSettings =
            serde_json::from_slice(&read(".runner")?).map_err(|e| JitConfigError::Json(e.to_string()))?;
        let creds: RunnerCredentials =
            serde_json::from_slice(&read(".credentials")?).map_err(|e| JitConfigError::Json(e.to_string()))?;
        let token = creds
            .data
            .get("token")
            .cloned()
            .ok_or(JitConfigError::Missing(".credentials data.token"))?;
        Ok(Self {
            settings,
            token: Secret::new(token),
        })
    }
}

/// Body of the online call.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct OnlineRequest {
    pub version: String,
    pub os: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct OnlineResponse {
    pub runner_id: i64,
    pub name: String,
    pub runner_scale_set_id: i64,
}

/// A job handed to a runner.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct AssignedJob {
    pub runner_request_id: i64,
    pub job_id: String,
    pub job_display_name: String,
    /// `owner/repo`.
    pub repository: String,
    pub workflow_run_id: i64,
    pub spec: JobSpec,
}

/// One line of step output.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct LogLine {
    /// Index of the step in the job's steps; `-1` for the runner's own lines (hooks, set-up).
    pub step: i64,
    /// `stdout` or `stderr`.
    pub stream: String,
    pub line: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct LogLines {
    pub lines: Vec<LogLine>,
}

/// The outcome of one step.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct StepResult {
    pub name: String,
    /// `succeeded`, `failed` or `skipped`.
    pub result: String,
    pub exit_code: i32,
}

/// Body of the complete call.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct CompleteRequest {
    /// `succeeded`, `failed` or `canceled`.
    pub result: String,
    pub steps: Vec<StepResult>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jit_config_round_trips_and_rejects_garbage() {
        let cfg = JitConfig {
            settings: RunnerSettings {
                agent_id: 11,
                agent_name: "r-1".into(),
                server_url: "http://127.0.0.1:1/tenant/1/".into(),
                runner_scale_set_id: 5,
                ephemeral: true,
                ..Default::default()
            },
            token: Secret::new("runner-token"),
        };
        let enc = cfg.encode();
        assert_eq!(JitConfig::decode(enc.expose()).unwrap(), cfg);
        assert!(matches!(JitConfig::decode("***"), Err(JitConfigError::Base64)));
        assert!(matches!(
            JitConfig::decode(&B64.encode("[]")),
            Err(JitConfigError::Json(_))
        ));
        assert!(matches!(
            JitConfig::decode(&B64.encode("{}")),
            Err(JitConfigError::Missing(".runner"))
        ));
    }
}
