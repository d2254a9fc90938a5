//! Wire types of the GitHub API and the Actions service (spec §4, §6, §7).
//!
//! Shared by the client and by `rarc-sim`, so both sides of every test speak exactly the same JSON.
//! Decode with [`crate::lenient::from_slice`]; every struct defaults missing fields. Serialisation
//! reproduces what the Go clients send (camelCase, `RunnerSetting`, zero `createdOn`).

use crate::lenient::time_opt;
use crate::secret::Secret;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

/// The api-version every Actions service call carries.
pub const API_VERSION: &str = "6.0-preview";
/// The only message envelope type the listener accepts.
pub const MESSAGE_TYPE_JOB_MESSAGES: &str = "RunnerScaleSetJobMessages";
/// The zero UUID the current client sends when creating a session.
pub const ZERO_SESSION_ID: &str = "00000000-0000-0000-0000-000000000000";
/// Go's zero time, which the Go client always writes as `createdOn`.
pub const GO_ZERO_TIME: &str = "0001-01-01T00:00:00Z";

fn is_zero(n: &i64) -> bool {
    *n == 0
}

/// `{"count":N,"value":[...]}`, the Actions service's list envelope.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ListResponse<T> {
    pub count: i64,
    pub value: Vec<T>,
}

impl<T> Default for ListResponse<T> {
    fn default() -> Self {
        Self {
            count: 0,
            value: Vec::new(),
        }
    }
}

impl<T> ListResponse<T> {
    pub fn new(value: Vec<T>) -> Self {
        Self {
            count: value.len() as i64,
            value,
        }
    }
}

/// A scale-set label (`type` defaults to `System`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Label {
    #[serde(rename = "type")]
    pub kind: String,
    pub name: String,
}

impl Label {
    pub fn system(name: impl Into<String>) -> Self {
        Self {
            kind: "System".into(),
            name: name.into(),
        }
    }
}

impl Default for Label {
    fn default() -> Self {
        Self::system("")
    }
}

/// `RunnerSetting` of a scale set. Absent members are not sent (a PATCH sends `{}`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct RunnerSetting {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ephemeral: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub is_elastic: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub disable_update: Option<bool>,
}

/// Scale-set statistics (spec §7.4). `totalAssignedJobs` is the scaling signal.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct Statistics {
    pub total_available_jobs: i64,
    pub total_acquired_jobs: i64,
    pub total_assigned_jobs: i64,
    pub total_running_jobs: i64,
    pub total_registered_runners: i64,
    pub total_busy_runners: i64,
    pub total_idle_runners: i64,
}

/// A runner scale set (spec §7.1). Also the body of create (§6.3) and update (§6.4).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct RunnerScaleSet {
    #[serde(skip_serializing_if = "is_zero")]
    pub id: i64,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub name: String,
    #[serde(skip_serializing_if = "is_zero")]
    pub runner_group_id: i64,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub runner_group_name: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub labels: Vec<Label>,
    #[serde(rename = "RunnerSetting", alias = "runnerSetting")]
    pub runner_setting: RunnerSetting,
    /// Go always writes its zero time here; we do the same on the wire.
    #[serde(serialize_with = "created_on_ser", deserialize_with = "time_opt::deserialize")]
    pub created_on: Option<OffsetDateTime>,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub runner_jit_config_url: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub statistics: Option<Statistics>,
}

fn created_on_ser<S: serde::Serializer>(t: &Option<OffsetDateTime>, s: S) -> Result<S::Ok, S::Error> {
    match t {
        Some(_) => time_opt::serialize(t, s),
        None => s.serialize_str(GO_ZERO_TIME),
    }
}

/// A runner group (spec §7.2).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct RunnerGroup {
    pub id: i64,
    pub name: String,
    pub size: i64,
    pub is_default_group: bool,
}

/// A runner as the agents API returns it (spec §7.3). `status`/`busy` are extra fields the service
/// also returns; clients ignore them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct RunnerReference {
    pub id: i64,
    pub name: String,
    pub runner_scale_set_id: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub busy: Option<bool>,
}

/// Body of generate-JIT-config (spec §6.14). `workFolder` is always sent.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct JitConfigRequest {
    pub name: String,
    pub work_folder: String,
}

/// Response of generate-JIT-config.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct JitRunnerConfig {
    pub runner: RunnerReference,
    #[serde(rename = "encodedJITConfig", alias = "encodedJitConfig")]
    pub encoded_jit_config: Secret,
}

/// Body of create-session (spec §6.7).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct SessionCreateRequest {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub session_id: Option<String>,
    pub owner_name: String,
}

/// A message session (spec §7.5).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct RunnerScaleSetSession {
    pub session_id: String,
    pub owner_name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub runner_scale_set: Option<RunnerScaleSet>,
    pub message_queue_url: String,
    pub message_queue_access_token: Secret,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub statistics: Option<Statistics>,
}

/// The envelope returned by GET message (spec §7.6). `body` is a JSON array in a string.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct RunnerScaleSetMessage {
    pub message_id: i64,
    pub message_type: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub statistics: Option<Statistics>,
    pub body: String,
}

/// Fields common to the four job messages (spec §7.7).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct JobMessageBase {
    pub message_type: String,
    pub runner_request_id: i64,
    pub repository_name: String,
    pub owner_name: String,
    pub job_id: String,
    pub job_workflow_ref: String,
    pub job_display_name: String,
    pub workflow_run_id: i64,
    pub event_name: String,
    pub request_labels: Vec<String>,
    #[serde(with = "time_opt", skip_serializing_if = "Option::is_none")]
    pub queue_time: Option<OffsetDateTime>,
    #[serde(with = "time_opt", skip_serializing_if = "Option::is_none")]
    pub scale_set_assign_time: Option<OffsetDateTime>,
    #[serde(with = "time_opt", skip_serializing_if = "Option::is_none")]
    pub runner_assign_time: Option<OffsetDateTime>,
    #[serde(with = "time_opt", skip_serializing_if = "Option::is_none")]
    pub finish_time: Option<OffsetDateTime>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct JobAvailable {
    #[serde(flatten)]
    pub base: JobMessageBase,
    pub acquire_job_url: String,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct JobAssigned {
    #[serde(flatten)]
    pub base: JobMessageBase,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct JobStarted {
    #[serde(flatten)]
    pub base: JobMessageBase,
    pub runner_id: i64,
    pub runner_name: String,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct JobCompleted {
    #[serde(flatten)]
    pub base: JobMessageBase,
    pub result: String,
    pub runner_id: i64,
    pub runner_name: String,
}

/// One element of a message body, dispatched on `messageType`.
#[derive(Debug, Clone, PartialEq)]
pub enum JobMessage {
    Available(JobAvailable),
    Assigned(JobAssigned),
    Started(JobStarted),
    Completed(JobCompleted),
    /// A type this client does not know; ignored by the listener.
    Unknown(String),
}

impl JobMessage {
    pub fn base(&self) -> Option<&JobMessageBase> {
        match self {
            JobMessage::Available(m) => Some(&m.base),
            JobMessage::Assigned(m) => Some(&m.base),
            JobMessage::Started(m) => Some(&m.base),
            JobMessage::Completed(m) => Some(&m.base),
            JobMessage::Unknown(_) => None,
        }
    }

    /// Encodes as the service does, with `messageType` set.
    pub fn to_value(&self) -> serde_json::Value {
        let (kind, value) = match self {
            JobMessage::Available(m) => ("JobAvailable", serde_json::to_value(m)),
            JobMessage::Assigned(m) => ("JobAssigned", serde_json::to_value(m)),
            JobMessage::Started(m) => ("JobStarted", serde_json::to_value(m)),
            JobMessage::Completed(m) => ("JobCompleted", serde_json::to_value(m)),
            JobMessage::Unknown(kind) => {
                return serde_json::json!({ "messageType": kind });
            }
        };
        let mut value = value.unwrap_or_default();
        if let Some(obj) = value.as_object_mut() {
            obj.insert("messageType".into(), kind.into());
        }
        value
    }
}

impl RunnerScaleSetMessage {
    /// Decodes `body` into job messages. An empty body means no job messages.
    pub fn job_messages(&self) -> Result<Vec<JobMessage>, serde_json::Error> {
        decode_job_messages(&self.body)
    }
}

/// Decodes a message body (a JSON array of job messages). Unknown types are kept as
/// [`JobMessage::Unknown`]; a malformed array or element is an error.
pub fn decode_job_messages(body: &str) -> Result<Vec<JobMessage>, serde_json::Error> {
    if body.trim().is_empty() {
        return Ok(Vec::new());
    }
    let items: Vec<serde_json::Value> = crate::lenient::from_slice(body.as_bytes())?;
    items
        .into_iter()
        .map(|item| {
            let kind = item
                .get("messageType")
                .or_else(|| item.get("MessageType"))
                .and_then(|v| v.as_str())
                .unwrap_or_default()
                .to_owned();
            Ok(match kind.as_str() {
                "JobAvailable" => JobMessage::Available(crate::lenient::from_value(item)?),
                "JobAssigned" => JobMessage::Assigned(crate::lenient::from_value(item)?),
                "JobStarted" => JobMessage::Started(crate::lenient::from_value(item)?),
                "JobCompleted" => JobMessage::Completed(crate::lenient::from_value(item)?),
                _ => JobMessage::Unknown(kind),
            })
        })
        .collect()
}

/// Encodes job messages as a message body string.
pub fn encode_job_messages(messages: &[JobMessage]) -> String {
    let values: Vec<serde_json::Value> = messages.iter().map(JobMessage::to_value).collect();
    serde_json::Value::Array(values).to_string()
}

/// A job offered to the scale set, as `acquirablejobs` returns it (spec §7.8; classic only).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct AcquirableJob {
    pub acquire_job_url: String,
    pub message_type: String,
    pub runner_request_id: i64,
    pub repository_name: String,
    pub owner_name: String,
    pub job_workflow_ref: String,
    pub event_name: String,
    pub request_labels: Vec<String>,
}

/// Response of acquirejobs: the ids actually acquired.
pub type AcquireJobsResponse = ListResponse<i64>;

/// `{"token":..., "expires_at":...}` from the installation-token and registration-token calls.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct GitHubToken {
    pub token: Secret,
    #[serde(with = "time_opt", skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<OffsetDateTime>,
}

/// Body of `POST {API}/actions/runner-registration`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct RunnerRegistrationRequest {
    pub url: String,
    pub runner_event: String,
}

/// Response of runner-registration: the Actions service base and the admin JWT.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct AdminConnection {
    pub url: String,
    pub token: Secret,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token_schema: Option<String>,
}

/// The .NET exception body of Actions service errors (spec §5.3).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct ExceptionBody {
    #[serde(rename = "$id", skip_serializing_if = "String::is_empty")]
    pub id: String,
    pub type_name: String,
    pub type_key: String,
    pub message: String,
    pub error_code: i64,
    pub event_id: i64,
}

impl ExceptionBody {
    /// Builds the body the service sends for `type_name` (a full .NET type name).
    pub fn new(type_name: &str, message: impl Into<String>) -> Self {
        let short = type_name.rsplit('.').next().unwrap_or(type_name);
        Self {
            id: "1".into(),
            type_name: format!("{type_name}, GitHub.Actions.Runtime.WebApi"),
            type_key: short.into(),
            message: message.into(),
            error_code: 0,
            event_id: 3000,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lenient;

    #[test]
    fn create_scale_set_body_matches_the_go_client() {
        let body = RunnerScaleSet {
            name: "arc-runner-set".into(),
            runner_group_id: 1,
            labels: vec![Label::system("arc-runner-set"), Label::system("extra-label")],
            runner_setting: RunnerSetting {
                disable_update: Some(true),
                ..Default::default()
            },
            ..Default::default()
        };
        assert_eq!(
            serde_json::to_string(&body).unwrap(),
            r#"{"name":"arc-runner-set","runnerGroupId":1,"labels":[{"type":"System","name":"arc-runner-set"},{"type":"System","name":"extra-label"}],"RunnerSetting":{"disableUpdate":true},"createdOn":"0001-01-01T00:00:00Z"}"#
        );
        let back: RunnerScaleSet = lenient::from_slice(serde_json::to_string(&body).unwrap().as_bytes()).unwrap();
        assert_eq!(back.runner_setting.disable_update, Some(true));
        assert_eq!(back.created_on, None);
    }

    #[test]
    fn job_messages_round_trip_and_unknown_types_are_kept() {
        let body = r#"[{"messageType":"JobAssigned","runnerRequestId":101,"repositoryName":"r","ownerName":"o","jobId":"j","requestLabels":["x"],"queueTime":"2026-05-01T10:00:00.1234567Z"},
            {"messageType":"JobStarted","runnerRequestId":100,"runnerId":42,"runnerName":"n"},
            {"messageType":"JobCompleted","runnerRequestId":99,"result":"succeeded","runnerId":41},
            {"messageType":"JobAvailable","runnerRequestId":102,"acquireJobUrl":"u"},
            {"messageType":"SomethingNew","x":1}]"#;
        let msgs = decode_job_messages(body).unwrap();
        assert_eq!(msgs.len(), 5);
        assert!(
            matches!(&msgs[0], JobMessage::Assigned(m) if m.base.runner_request_id == 101 && m.base.queue_time.is_some())
        );
        assert!(matches!(&msgs[1], JobMessage::Started(m) if m.runner_id == 42 && m.runner_name == "n"));
        assert!(matches!(&msgs[2], JobMessage::Completed(m) if m.result == "succeeded"));
        assert!(matches!(&msgs[3], JobMessage::Available(m) if m.acquire_job_url == "u"));
        assert_eq!(msgs[4], JobMessage::Unknown("SomethingNew".into()));
        let again = decode_job_messages(&encode_job_messages(&msgs[..4])).unwrap();
        assert_eq!(again, msgs[..4].to_vec());
    }

    #[test]
    fn empty_body_has_no_messages_and_malformed_body_fails() {
        assert!(decode_job_messages("").unwrap().is_empty());
        assert!(decode_job_messages("[{").is_err());
        assert!(decode_job_messages("{}").is_err());
    }

    #[test]
    fn session_token_is_redacted_in_debug() {
        let s = RunnerScaleSetSession {
            message_queue_access_token: Secret::new("mq-token-value"),
            ..Default::default()
        };
        assert!(!format!("{s:?}").contains("mq-token-value"));
    }
}
