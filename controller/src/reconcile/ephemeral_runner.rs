//! The EphemeralRunner reconciler (arc-controller.md §4.4): JIT registration and its Secret, the
//! runner pod and what its state means, deregistration on deletion.
//!
//! Decisions are pure functions below (unit-tested at the end); [`reconcile`] does the I/O.
//! rarc differences from ARC:
//! - deletion never calls `DELETE agents/0`, treats 404/`AgentNotFoundException` as deregistered,
//!   gives up deregistering (Warning event) when the credentials are missing or invalid, and does
//!   not wait for GitHub to clean up an idle runner's pod and Secret locally;
//! - a `Failed` runner is deleted after `--failed-runner-ttl-secs` (see [`failed_since`]), a pod
//!   `Pending` longer than `--pending-pod-timeout-secs` is restarted like a failed pod;
//! - status is written only when the runner starts running or fails (never while the pod is
//!   merely Pending), and only when it differs; the pod and JIT Secret of a deleted runner are
//!   left to the garbage collector (they are owned by the ER).

mod pod;

pub use pod::{
    ENV_CONTAINER_HOOKS, ENV_DEPRECATED_EXIT_CODE, ENV_EXTRA_USER_AGENT, ENV_JIT_CONFIG, JIT_TOKEN_KEY,
    RUNNER_CONTAINER, build_pod, runner_env, uses_container_hooks,
};

use std::collections::{BTreeMap, HashMap};
use std::ops::ControlFlow;
use std::sync::{Arc, LazyLock, Mutex};
use std::time::Duration;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::{Pod, Secret};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::jiff::Timestamp;
use kube::api::ListParams;
use kube::runtime::controller::Action;
use kube::{Api, Resource, ResourceExt};
use rarc_actions::ActionsClient;
use rarc_actions::types::{JitConfigRequest, JitRunnerConfig, RunnerReference};
use rarc_crd::keys::{finalizers, labels as l};
use rarc_crd::{EphemeralRunner, EphemeralRunnerSpec, EphemeralRunnerStatus, ResourceMeta};
use serde_json::{Map, Value, json};
use tracing::{debug, info, warn};

use super::{
    add_finalizers, delete_if_exists, has_finalizer, namespace_of, patch_status, post_params, remove_finalizers,
    requeue_secs,
};
use crate::context::Context;
use crate::error::{Error, Result, is_already_exists, not_found_as_none};
use crate::github::Target;

/// `status.phase` values.
pub mod phase {
    pub const PENDING: &str = "Pending";
    pub const RUNNING: &str = "Running";
    pub const FAILED: &str = "Failed";
    pub const OUTDATED: &str = "Outdated";
    /// Legacy: no code path sets it, but an ER in it is done.
    pub const SUCCEEDED: &str = "Succeeded";
}

/// Keys of the JIT Secret `<er>`.
pub mod jit_keys {
    pub const JIT_TOKEN: &str = super::JIT_TOKEN_KEY;
    pub const RUNNER_NAME: &str = "runnerName";
    pub const RUNNER_ID: &str = "runnerId";
    pub const SCALE_SET_ID: &str = "scaleSetId";
}

/// More recorded pod failures than this deletes the ER (the ERS replaces it).
pub const MAX_FAILURES: usize = 5;
/// Wait before recreating the pod, by number of recorded failures.
pub const FAILURE_BACKOFF_SECS: [u64; 6] = [0, 5, 10, 20, 40, 80];
/// Requeue while RemoveRunner answers JobStillRunning during deletion.
const JOB_STILL_RUNNING_REQUEUE_SECS: u64 = 30;
/// Requeue when the pod already exists on create.
const POD_EXISTS_REQUEUE_SECS: u64 = 5;
/// Requeue while pod creation is denied by a ResourceQuota.
const QUOTA_REQUEUE_SECS: u64 = 30;
/// An ER whose pod is denied by quota for longer than this is deleted (the ERS recreates it).
const QUOTA_GIVE_UP_SECS: i64 = 600;
/// Requeue when GetRunnerByName finds no runner after a name conflict.
const NAME_CONFLICT_REQUEUE_SECS: u64 = 5;
/// "Immediate" requeue (after a fix-up write), still paced.
const IMMEDIATE: Duration = Duration::from_secs(1);
/// Reason of a failure caused by an invalid or forbidden pod.
pub const REASON_INVALID_POD: &str = "InvalidPod";
pub const REASON_OUTDATED: &str = "Outdated";
pub const MESSAGE_OUTDATED: &str = "Runner is deprecated";
/// Reason of a restart because the pod stayed Pending too long (rarc).
pub const REASON_PENDING_TIMEOUT: &str = "PendingTimeout";

// ---------------------------------------------------------------------------------------------
// Pure decisions
// ---------------------------------------------------------------------------------------------

/// The registration a JIT Secret records.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JitInfo {
    pub runner_id: i64,
    pub runner_name: String,
}

/// The trimmed, non-empty value of `key` in `secret`.
pub(crate) fn secret_value(secret: &Secret, key: &str) -> Option<String> {
    let data = secret
        .data
        .as_ref()
        .and_then(|d| d.get(key))
        .map(|v| String::from_utf8_lossy(&v.0).trim().to_owned());
    data.or_else(|| {
        secret
            .string_data
            .as_ref()
            .and_then(|d| d.get(key))
            .map(|v| v.trim().to_owned())
    })
    .filter(|v| !v.is_empty())
}

/// `runnerId` of a JIT Secret, if it is a positive number.
pub fn secret_runner_id(secret: &Secret) -> Option<i64> {
    secret_value(secret, jit_keys::RUNNER_ID)
        .and_then(|v| v.parse::<i64>().ok())
        .filter(|id| *id > 0)
}

/// The registration of a usable JIT Secret: a positive `runnerId` and a `jitToken`; `None` means
/// corrupt (deleted and regenerated). `runnerName` defaults to the ER name.
pub fn parse_jit_secret(secret: &Secret, er_name: &str) -> Option<JitInfo> {
    let runner_id = secret_runner_id(secret)?;
    secret_value(secret, jit_keys::JIT_TOKEN)?;
    let runner_name = secret_value(secret, jit_keys::RUNNER_NAME).unwrap_or_else(|| er_name.to_owned());
    Some(JitInfo { runner_id, runner_name })
}

/// The JIT Secret `<er>`: ownerRef ER, metadata from `ephemeralRunnerConfigSecretMetadata`.
pub fn build_jit_secret(er: &EphemeralRunner, jit: &JitRunnerConfig) -> Secret {
    let name = er.name_any();
    let runner_name = if jit.runner.name.is_empty() {
        name.clone()
    } else {
        jit.runner.name.clone()
    };
    let scale_set_id = if jit.runner.runner_scale_set_id > 0 {
        jit.runner.runner_scale_set_id
    } else {
        er.spec.runner_scale_set_id
    };
    let data: BTreeMap<String, ByteString> = [
        (jit_keys::JIT_TOKEN, jit.encoded_jit_config.expose().to_owned()),
        (jit_keys::RUNNER_NAME, runner_name),
        (jit_keys::RUNNER_ID, jit.runner.id.to_string()),
        (jit_keys::SCALE_SET_ID, scale_set_id.to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), ByteString(v.into_bytes())))
    .collect();
    let meta = &er.spec.ephemeral_runner_config_secret_metadata;
    let labels = ResourceMeta::labels(meta);
    let annotations = ResourceMeta::annotations(meta);
    Secret {
        metadata: ObjectMeta {
            name: Some(name),
            namespace: er.namespace(),
            labels: (!labels.is_empty()).then_some(labels),
            annotations: (!annotations.is_empty()).then_some(annotations),
            owner_references: Some(vec![crate::reconcile::owner_reference(er)]),
            ..ObjectMeta::default()
        },
        data: Some(data),
        ..Secret::default()
    }
}

/// The `workFolder` of the JIT request: the runner container's `workingDir`, empty when unset.
pub fn work_folder(spec: &EphemeralRunnerSpec) -> String {
    pod::runner_container(spec)
        .and_then(|c| c.working_dir.clone())
        .unwrap_or_default()
}

/// What to do after GenerateJitRunnerConfig said the runner name is taken.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NameConflict {
    /// GetRunnerByName found nothing (yet): try again later.
    Retry,
    /// A runner of our scale set holds the name (a crash after registering): remove it, retry.
    RemoveAndRetry(i64),
    /// A runner of another scale set holds the name: this ER can never register.
    DeleteRunner,
}

/// Resolves a name conflict from GetRunnerByName's answer.
pub fn name_conflict(existing: Option<&RunnerReference>, scale_set_id: i64) -> NameConflict {
    match existing {
        None => NameConflict::Retry,
        Some(r) if r.runner_scale_set_id == scale_set_id => NameConflict::RemoveAndRetry(r.id),
        Some(_) => NameConflict::DeleteRunner,
    }
}

/// True for a phase in which the runner will not run again (its pod and Secret go away).
pub fn is_done_phase(phase: &str) -> bool {
    matches!(phase, phase::FAILED | phase::OUTDATED | phase::SUCCEEDED)
}

fn failures(er: &EphemeralRunner) -> Option<&BTreeMap<String, String>> {
    er.status.as_ref().and_then(|s| s.failures.as_ref())
}

/// More than [`MAX_FAILURES`] pod failures recorded.
pub fn too_many_failures(er: &EphemeralRunner) -> bool {
    failures(er).is_some_and(|f| f.len() > MAX_FAILURES)
}

/// The newest parseable failure time.
fn last_failure(failures: &BTreeMap<String, String>) -> Option<Timestamp> {
    failures.values().filter_map(|t| t.parse::<Timestamp>().ok()).max()
}

/// Time left before the pod may be recreated: [`FAILURE_BACKOFF_SECS`] indexed by the number of
/// failures, counted from the last failure. `None` when it may be recreated now.
pub fn failure_backoff_remaining(failures: Option<&BTreeMap<String, String>>, now: Timestamp) -> Option<Duration> {
    let failures = failures.filter(|f| !f.is_empty())?;
    let last = last_failure(failures)?;
    let backoff = FAILURE_BACKOFF_SECS[failures.len().min(FAILURE_BACKOFF_SECS.len() - 1)];
    let elapsed = now.as_second() - last.as_second();
    let remaining = i64::try_from(backoff).unwrap_or(i64::MAX).saturating_sub(elapsed);
    (remaining > 0).then(|| Duration::from_secs(remaining.unsigned_abs()))
}

fn creation_time(meta: &ObjectMeta) -> Option<Timestamp> {
    meta.creation_timestamp.as_ref().map(|t| t.0)
}

/// When a `Failed` ER is taken to have failed: the newest of its `creationTimestamp` and its last
/// recorded pod failure. `Failed` (InvalidPod) is only set when a pod is created, which happens
/// right after creation or right after a failure's backoff, so this is at most one backoff
/// (≤ 80 s) early and needs no extra status field.
pub fn failed_since(er: &EphemeralRunner) -> Option<Timestamp> {
    let created = creation_time(&er.metadata);
    let failed = failures(er).and_then(last_failure);
    created.into_iter().chain(failed).max()
}

/// What to do with a `Failed` ER under `--failed-runner-ttl`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FailedRunner {
    /// Keep it (TTL 0, as ARC).
    Keep,
    /// Delete it now; the ERS creates a replacement.
    Delete,
    /// Look again after this long.
    Wait(Duration),
}

/// Applies the failed-runner TTL (see [`failed_since`]).
pub fn failed_runner(er: &EphemeralRunner, ttl_secs: u64, now: Timestamp) -> FailedRunner {
    if ttl_secs == 0 {
        return FailedRunner::Keep;
    }
    let since = failed_since(er).unwrap_or(now);
    let left = i64::try_from(ttl_secs)
        .unwrap_or(i64::MAX)
        .saturating_sub(now.as_second() - since.as_second());
    if left <= 0 {
        FailedRunner::Delete
    } else {
        FailedRunner::Wait(Duration::from_secs(left.unsigned_abs()))
    }
}

/// True when pod creation has been denied by quota for long enough to recreate the ER.
pub fn quota_gives_up(er: &EphemeralRunner, now: Timestamp) -> bool {
    creation_time(&er.metadata).is_some_and(|c| now.as_second() - c.as_second() > QUOTA_GIVE_UP_SECS)
}

/// How a failed pod creation is handled.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PodCreateFailure {
    AlreadyExists,
    /// Denied by a ResourceQuota ("exceeded quota:").
    Quota,
    /// Invalid (422) or Forbidden (403) for another reason: the ER becomes `Failed`.
    Invalid(String),
    Other,
}

/// Classifies a pod creation error.
pub fn classify_pod_create_error(e: &kube::Error) -> PodCreateFailure {
    let kube::Error::Api(s) = e else {
        return PodCreateFailure::Other;
    };
    match s.code {
        409 if s.reason == "AlreadyExists" => PodCreateFailure::AlreadyExists,
        403 if s.message.contains("exceeded quota:") => PodCreateFailure::Quota,
        403 | 422 => PodCreateFailure::Invalid(if s.message.is_empty() {
            e.to_string()
        } else {
            s.message.clone()
        }),
        _ => PodCreateFailure::Other,
    }
}

/// How a RemoveRunner failure (or a failure to get a client for it) is handled.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RemoveFailure {
    /// 404 / `AgentNotFoundException`: the runner is already gone.
    Gone,
    /// The runner is busy: try again later.
    JobStillRunning,
    /// The credentials cannot work (Secret missing or invalid, bad config URL or key): give up.
    CannotDeregister,
    /// Anything else (5xx, timeout, API server): retry with backoff.
    Retry,
}

/// Classifies an error of RemoveRunner.
pub fn classify_remove_error(e: &Error) -> RemoveFailure {
    use rarc_actions::Error as A;
    match e {
        Error::MissingSecret { .. } | Error::InvalidSecret { .. } | Error::InvalidSpec { .. } => {
            RemoveFailure::CannotDeregister
        }
        Error::Actions { source, .. } => {
            if source.is_not_found() || source.is_runner_not_found() {
                RemoveFailure::Gone
            } else if source.is_job_still_running() {
                RemoveFailure::JobStillRunning
            } else if matches!(
                source,
                A::InvalidCredentials(_) | A::InvalidPrivateKey(_) | A::InvalidConfigUrl { .. } | A::InvalidRootCa(_)
            ) {
                RemoveFailure::CannotDeregister
            } else {
                RemoveFailure::Retry
            }
        }
        _ => RemoveFailure::Retry,
    }
}

/// What the runner pod's state means (arc-controller.md §4.4 step 10, plus the Pending timeout).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PodDecision {
    /// Nothing to do; look again after this long if set (pod events drive the rest).
    Wait(Option<Duration>),
    /// The runner is alive: mirror the pod's phase, readiness, reason and message.
    Mirror {
        phase: String,
        ready: bool,
        reason: Option<String>,
        message: Option<String>,
    },
    /// The runner exited 0: delete the ER.
    Succeeded,
    /// The runner exited 7 (deprecated version): phase `Outdated`, RemoveRunner.
    Outdated,
    /// The pod failed: delete the ER if it has a job, else delete the pod and record a failure.
    Restart {
        reason: Option<String>,
        message: Option<String>,
    },
}

fn non_empty(s: Option<&String>) -> Option<String> {
    s.filter(|s| !s.is_empty()).cloned()
}

/// The PodReady condition (the latest transition wins when there are several).
pub fn pod_ready(pod: &Pod) -> bool {
    let conditions = pod.status.as_ref().and_then(|s| s.conditions.as_ref());
    conditions
        .into_iter()
        .flatten()
        .filter(|c| c.type_ == "Ready")
        .max_by_key(|c| c.last_transition_time.as_ref().map(|t| t.0))
        .is_some_and(|c| c.status == "True")
}

/// Decides from the pod's status. `pending_timeout_secs` 0 never times a Pending pod out.
pub fn decide_pod(pod: &Pod, now: Timestamp, pending_timeout_secs: u64) -> PodDecision {
    let status = pod.status.clone().unwrap_or_default();
    let pod_phase = status.phase.clone().unwrap_or_default();
    let pod_reason = non_empty(status.reason.as_ref());
    let pod_message = non_empty(status.message.as_ref());
    let restart = |reason: &str, message: String| PodDecision::Restart {
        reason: pod_reason.clone().or_else(|| Some(reason.to_owned())),
        message: pod_message.clone().or(Some(message)),
    };
    let runner = status
        .container_statuses
        .iter()
        .flatten()
        .find(|c| c.name == RUNNER_CONTAINER);

    if let Some(t) = runner
        .and_then(|c| c.state.as_ref())
        .and_then(|s| s.terminated.as_ref())
    {
        return match t.exit_code {
            0 => PodDecision::Succeeded,
            7 => PodDecision::Outdated,
            code => restart("RunnerFailed", format!("runner container exited with code {code}")),
        };
    }
    if pod_phase == "Failed" {
        return restart("PodFailed", "pod failed without a runner container exit status".into());
    }
    // Native sidecars (restartPolicy Always) are restarted by the kubelet; they do not count.
    let sidecars: Vec<&str> = pod
        .spec
        .iter()
        .flat_map(|s| s.init_containers.iter().flatten())
        .filter(|c| c.restart_policy.as_deref() == Some("Always"))
        .map(|c| c.name.as_str())
        .collect();
    let failed_init = status.init_container_statuses.iter().flatten().find_map(|c| {
        let t = c.state.as_ref()?.terminated.as_ref()?;
        (t.exit_code != 0 && !sidecars.contains(&c.name.as_str())).then(|| (c.name.clone(), t.exit_code))
    });
    if let Some((name, code)) = failed_init {
        return restart(
            "InitContainerFailed",
            format!("init container {name} exited with code {code}"),
        );
    }
    if pod_phase == "Succeeded" {
        return PodDecision::Succeeded;
    }
    if pod_phase.is_empty() || pod_phase == phase::PENDING {
        if pending_timeout_secs == 0 {
            return PodDecision::Wait(None);
        }
        let timeout = i64::try_from(pending_timeout_secs).unwrap_or(i64::MAX);
        let created = creation_time(&pod.metadata).unwrap_or(now);
        let left = timeout.saturating_sub(now.as_second() - created.as_second());
        if left <= 0 {
            return PodDecision::Restart {
                reason: Some(REASON_PENDING_TIMEOUT.into()),
                message: Some(format!(
                    "pod was still Pending after {pending_timeout_secs} s{}",
                    pod_message.map(|m| format!(": {m}")).unwrap_or_default()
                )),
            };
        }
        return PodDecision::Wait(Some(Duration::from_secs(left.unsigned_abs() + 1)));
    }
    if runner.is_none() {
        return PodDecision::Wait(None);
    }
    PodDecision::Mirror {
        phase: pod_phase,
        ready: pod_ready(pod),
        reason: pod_reason,
        message: pod_message,
    }
}

/// The controller's fields of a status write (never the listener's job fields).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StatusUpdate {
    pub phase: String,
    pub ready: bool,
    pub reason: Option<String>,
    pub message: Option<String>,
    /// `runnerId`/`runnerName` to record.
    pub runner: Option<JitInfo>,
    /// A failure to add: (pod UID, RFC 3339 time); an already recorded UID is kept as is.
    pub failure: Option<(String, String)>,
}

/// The merge patch of `status` that brings `current` to `update`, with only the fields that
/// differ (`null` clears reason/message); `None` when nothing differs.
pub fn status_patch(current: Option<&EphemeralRunnerStatus>, update: &StatusUpdate) -> Option<Value> {
    let empty = EphemeralRunnerStatus::default();
    let cur = current.unwrap_or(&empty);
    let mut patch = Map::new();
    if cur.phase.as_deref() != Some(update.phase.as_str()) {
        patch.insert("phase".into(), json!(update.phase));
    }
    if cur.ready.unwrap_or(false) != update.ready {
        patch.insert("ready".into(), json!(update.ready));
    }
    for (key, have, want) in [
        ("reason", &cur.reason, &update.reason),
        ("message", &cur.message, &update.message),
    ] {
        let want = non_empty(want.as_ref());
        if non_empty(have.as_ref()) != want {
            patch.insert(key.into(), want.map_or(Value::Null, Value::String));
        }
    }
    if let Some(r) = &update.runner
        && (cur.runner_id != Some(r.runner_id) || cur.runner_name.as_deref() != Some(r.runner_name.as_str()))
    {
        patch.insert("runnerId".into(), json!(r.runner_id));
        patch.insert("runnerName".into(), json!(r.runner_name));
    }
    if let Some((uid, at)) = &update.failure
        && !cur.failures.as_ref().is_some_and(|f| f.contains_key(uid))
    {
        patch.insert("failures".into(), json!({ uid: at }));
    }
    (!patch.is_empty()).then_some(Value::Object(patch))
}

/// True when `name` can be a label value (the hooks' `runner-pod` label): at most 63 characters.
fn valid_label_value(name: &str) -> bool {
    name.len() <= 63
}

/// The requeue delay after a reconcile error, by the number of consecutive errors (≥ 1):
/// 1 s for a conflict, 1 s doubling to 60 s for other API server errors, 5 s doubling to 5 min
/// for GitHub and everything else.
pub fn error_delay(err: &Error, attempt: u32) -> Duration {
    let (base, cap) = match err {
        Error::Kube {
            source: kube::Error::Api(s),
            ..
        } if s.code == 409 && s.reason != "AlreadyExists" => {
            return Duration::from_secs(1);
        }
        Error::Kube { .. } => (1u64, 60u64),
        _ => (5, 300),
    };
    let factor = 1u64 << attempt.saturating_sub(1).min(16);
    Duration::from_secs(base.saturating_mul(factor).min(cap))
}

// ---------------------------------------------------------------------------------------------
// I/O
// ---------------------------------------------------------------------------------------------

/// Consecutive reconcile errors per ER (`namespace/name`), for [`error_policy`]'s backoff.
static ERROR_STREAKS: LazyLock<Mutex<HashMap<String, u32>>> = LazyLock::new(Mutex::default);

fn streak_key(er: &EphemeralRunner) -> String {
    format!("{}/{}", namespace_of(er), er.name_any())
}

fn streaks() -> std::sync::MutexGuard<'static, HashMap<String, u32>> {
    ERROR_STREAKS.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn now() -> Timestamp {
    Timestamp::from_second(time::OffsetDateTime::now_utc().unix_timestamp()).unwrap_or(Timestamp::UNIX_EPOCH)
}

/// The APIs one reconcile uses, all in the ER's namespace.
struct Apis {
    ers: Api<EphemeralRunner>,
    pods: Api<Pod>,
    secrets: Api<Secret>,
}

/// One reconcile of one ER.
struct Run<'a> {
    er: &'a EphemeralRunner,
    ctx: &'a Context,
    apis: Apis,
    name: String,
    namespace: String,
}

/// Reconciles one EphemeralRunner (arc-controller.md §4.4 with rarc's changes, see the module doc).
#[tracing::instrument(skip_all, fields(runner = %er.name_any(), namespace = %namespace_of(&*er)))]
pub async fn reconcile(er: Arc<EphemeralRunner>, ctx: Arc<Context>) -> Result<Action> {
    let namespace = namespace_of(&*er);
    let client = ctx.client.clone();
    let run = Run {
        er: &er,
        ctx: &ctx,
        apis: Apis {
            ers: Api::namespaced(client.clone(), &namespace),
            pods: Api::namespaced(client.clone(), &namespace),
            secrets: Api::namespaced(client, &namespace),
        },
        name: er.name_any(),
        namespace,
    };
    let result = run.reconcile().await;
    if result.is_ok() {
        streaks().remove(&streak_key(&er));
    }
    result
}

/// Logs the error and requeues with a per-ER backoff ([`error_delay`]).
pub fn error_policy(er: Arc<EphemeralRunner>, err: &Error, _ctx: Arc<Context>) -> Action {
    let attempt = {
        let mut map = streaks();
        // Entries of ERs that vanished while failing are never removed by a success; bound them.
        if map.len() > 10_000 {
            map.clear();
        }
        let n = map.entry(streak_key(&er)).or_insert(0);
        *n = n.saturating_add(1);
        *n
    };
    let delay = error_delay(err, attempt);
    warn!(
        runner = %er.name_any(),
        namespace = %namespace_of(&*er),
        error = %err,
        reason = err.reason(),
        attempt,
        retry_in_secs = delay.as_secs(),
        "EphemeralRunner reconcile failed"
    );
    Action::requeue(delay)
}

impl Run<'_> {
    async fn reconcile(&self) -> Result<Action> {
        let er = self.er;
        if er.meta().deletion_timestamp.is_some() {
            return self.finalize().await;
        }
        if is_done_phase(er.phase()) {
            return self.finish_done().await;
        }
        add_finalizers(
            &self.apis.ers,
            er,
            &[finalizers::EPHEMERAL_RUNNER, finalizers::EPHEMERAL_RUNNER_REGISTRATION],
        )
        .await?;

        let jit = match self.ensure_jit_secret().await? {
            ControlFlow::Continue(jit) => jit,
            ControlFlow::Break(action) => return Ok(action),
        };
        let pod = not_found_as_none(self.apis.pods.get(&self.name).await)
            .map_err(Error::kube(format!("get Pod {}/{}", self.namespace, self.name)))?;
        match pod {
            None => self.create_pod(&jit).await,
            Some(pod) => self.handle_pod(&pod, &jit).await,
        }
    }

    async fn github(&self) -> Result<Arc<ActionsClient>> {
        let target = Target::for_runners(&self.namespace, &self.er.spec);
        self.ctx.github.client(&self.ctx.client, &target).await
    }

    async fn remove_runner(&self, runner_id: i64) -> Result<()> {
        let client = self.github().await?;
        self.ctx
            .github
            .call(&format!("remove runner {runner_id}"), client.remove_runner(runner_id))
            .await
    }

    /// RemoveRunner where failing only delays GitHub's cleanup (the finalizer retries it).
    async fn remove_runner_best_effort(&self, runner_id: i64) {
        if runner_id <= 0 {
            return;
        }
        match self.remove_runner(runner_id).await {
            Ok(()) => info!(runner_id, "runner deregistered"),
            Err(e) if classify_remove_error(&e) == RemoveFailure::Gone => debug!(runner_id, "runner already gone"),
            Err(e) => warn!(runner_id, error = %e, "could not deregister the runner (retried on deletion)"),
        }
    }

    async fn delete_self(&self, why: &str) -> Result<Action> {
        info!(why, "deleting EphemeralRunner");
        delete_if_exists(&self.apis.ers, &self.name).await?;
        Ok(Action::await_change())
    }

    async fn get_secret(&self) -> Result<Option<Secret>> {
        not_found_as_none(self.apis.secrets.get(&self.name).await)
            .map_err(Error::kube(format!("get Secret {}/{}", self.namespace, self.name)))
    }

    async fn write_status(&self, update: &StatusUpdate) -> Result<bool> {
        let Some(patch) = status_patch(self.er.status.as_ref(), update) else {
            return Ok(false);
        };
        debug!(patch = %patch, "patching EphemeralRunner status");
        patch_status(&self.apis.ers, &self.name, patch).await?;
        Ok(true)
    }

    /// Deletion: deregister (unless impossible or unneeded), clean up hook leftovers, then drop
    /// both finalizers in one write. The ER-owned pod and Secret go with the garbage collector.
    async fn finalize(&self) -> Result<Action> {
        let er = self.er;
        // ARC stops when the main finalizer is gone; rarc also finishes an ER left with only the
        // registration finalizer (a hand edit), which would otherwise never go away.
        let registered = has_finalizer(er, finalizers::EPHEMERAL_RUNNER_REGISTRATION);
        if !has_finalizer(er, finalizers::EPHEMERAL_RUNNER) && !registered {
            return Ok(Action::await_change());
        }
        // A pass over a cached copy of an ER this process already finalized (the object is gone
        // or going): no second RemoveRunner, no finalizer patch that can only answer 404.
        let uid = er.uid().unwrap_or_default();
        if finalized::contains(&uid) {
            return Ok(Action::await_change());
        }
        if registered {
            let runner_id = match er.runner_id() {
                id if id > 0 => id,
                _ => self
                    .get_secret()
                    .await?
                    .as_ref()
                    .and_then(secret_runner_id)
                    .unwrap_or(0),
            };
            if runner_id == 0 {
                debug!("runner was never registered; nothing to deregister");
            } else if let Err(e) = self.remove_runner(runner_id).await {
                match classify_remove_error(&e) {
                    RemoveFailure::Gone => debug!(runner_id, "runner already gone"),
                    RemoveFailure::JobStillRunning => {
                        info!(runner_id, "runner still runs a job; waiting before deregistering");
                        return Ok(requeue_secs(JOB_STILL_RUNNING_REQUEUE_SECS));
                    }
                    RemoveFailure::CannotDeregister => {
                        warn!(runner_id, error = %e, "cannot deregister the runner; finishing deletion without it");
                        let note = format!("runner {runner_id} was not removed from GitHub: {e}");
                        self.ctx.event(er, true, e.reason(), "DeregisterRunner", note).await;
                    }
                    RemoveFailure::Retry => {
                        if !er.has_job() {
                            self.delete_local_objects(runner_id).await;
                        }
                        return Err(e);
                    }
                }
            } else {
                info!(runner_id, "runner deregistered");
            }
        }
        if uses_container_hooks(&er.spec) {
            self.delete_hook_objects().await?;
        }
        self.delete_unowned().await?;
        remove_finalizers(
            &self.apis.ers,
            er,
            &[finalizers::EPHEMERAL_RUNNER, finalizers::EPHEMERAL_RUNNER_REGISTRATION],
        )
        .await?;
        finalized::insert(uid);
        info!("EphemeralRunner finalized");
        Ok(Action::await_change())
    }

    /// Deletes the pod and JIT Secret now (GitHub is unreachable and the runner has no job).
    /// The Secret may be the only record of the runner id, so the id goes to the status first.
    async fn delete_local_objects(&self, runner_id: i64) {
        if let Err(e) = delete_if_exists(&self.apis.pods, &self.name).await {
            warn!(error = %e, "could not delete the runner pod");
        }
        if self.er.runner_id() != runner_id
            && let Err(e) = patch_status(&self.apis.ers, &self.name, json!({ "runnerId": runner_id })).await
        {
            warn!(error = %e, "could not record the runner id; keeping the JIT Secret");
            return;
        }
        if let Err(e) = delete_if_exists(&self.apis.secrets, &self.name).await {
            warn!(error = %e, "could not delete the JIT Secret");
        }
    }

    /// Deletes pods and Secrets labelled `runner-pod=<er>` (runner-container-hooks leftovers).
    async fn delete_hook_objects(&self) -> Result<()> {
        if !valid_label_value(&self.name) {
            debug!("name is not a valid label value; no hook objects can carry it");
            return Ok(());
        }
        let lp = ListParams::default().labels(&format!("{}={}", l::HOOKS_RUNNER_POD, self.name));
        let pods = self
            .apis
            .pods
            .list(&lp)
            .await
            .map_err(Error::kube(format!("list hook pods of {}", self.name)))?;
        for p in pods {
            if delete_if_exists(&self.apis.pods, &p.name_any()).await? {
                info!(pod = %p.name_any(), "deleted container-hook pod");
            }
        }
        let secrets = self
            .apis
            .secrets
            .list(&lp)
            .await
            .map_err(Error::kube(format!("list hook secrets of {}", self.name)))?;
        for s in secrets {
            if delete_if_exists(&self.apis.secrets, &s.name_any()).await? {
                info!(secret = %s.name_any(), "deleted container-hook Secret");
            }
        }
        Ok(())
    }

    /// Deletes a pod or JIT Secret named `<er>` that the garbage collector will not (not owned),
    /// and a pod that still runs.
    async fn delete_unowned(&self) -> Result<()> {
        let uid = self.er.uid();
        let owned = |meta: &ObjectMeta| {
            meta.owner_references
                .iter()
                .flatten()
                .any(|o| Some(&o.uid) == uid.as_ref())
        };
        let pod = not_found_as_none(self.apis.pods.get(&self.name).await)
            .map_err(Error::kube(format!("get Pod {}/{}", self.namespace, self.name)))?;
        // An owned pod that still runs (scale-down of an idle runner) is deleted now: the garbage
        // collector would stop it only after the ER is gone, minutes later for a large set. A
        // terminated one (the runner exited after its job) is left to the collector: no write.
        let live = |p: &Pod| {
            !matches!(
                p.status.as_ref().and_then(|s| s.phase.as_deref()),
                Some("Succeeded") | Some("Failed")
            )
        };
        if let Some(p) = pod
            && (!owned(&p.metadata) || live(&p))
            && p.metadata.deletion_timestamp.is_none()
        {
            delete_if_exists(&self.apis.pods, &self.name).await?;
        }
        if let Some(s) = self.get_secret().await?
            && !owned(&s.metadata)
        {
            delete_if_exists(&self.apis.secrets, &self.name).await?;
        }
        Ok(())
    }

    /// `Failed`/`Outdated`: remove the pod and JIT Secret; delete a `Failed` ER after the TTL.
    async fn finish_done(&self) -> Result<Action> {
        if delete_if_exists(&self.apis.pods, &self.name).await? {
            info!(phase = self.er.phase(), "deleted the pod of a finished runner");
        }
        if delete_if_exists(&self.apis.secrets, &self.name).await? {
            info!(phase = self.er.phase(), "deleted the JIT Secret of a finished runner");
        }
        if self.er.phase() != phase::FAILED {
            return Ok(Action::await_change());
        }
        match failed_runner(self.er, self.ctx.settings.failed_runner_ttl_secs, now()) {
            FailedRunner::Keep => Ok(Action::await_change()),
            FailedRunner::Wait(d) => Ok(Action::requeue(d)),
            FailedRunner::Delete => self.delete_self("Failed for longer than the failed-runner TTL").await,
        }
    }

    /// The JIT Secret's registration, creating it (GenerateJitRunnerConfig) when missing.
    async fn ensure_jit_secret(&self) -> Result<ControlFlow<Action, JitInfo>> {
        if let Some(secret) = self.get_secret().await? {
            return match parse_jit_secret(&secret, &self.name) {
                Some(jit) => Ok(ControlFlow::Continue(jit)),
                None => {
                    warn!("JIT Secret has no usable runnerId/jitToken; deleting it to regenerate");
                    delete_if_exists(&self.apis.secrets, &self.name).await?;
                    Ok(ControlFlow::Break(Action::requeue(IMMEDIATE)))
                }
            };
        }
        let client = self.github().await?;
        let request = JitConfigRequest {
            name: self.name.clone(),
            work_folder: work_folder(&self.er.spec),
        };
        let scale_set_id = self.er.spec.runner_scale_set_id;
        let generated = self
            .ctx
            .github
            .call(
                "generate JIT runner config",
                client.generate_jit_runner_config(scale_set_id, &request),
            )
            .await;
        let jit = match generated {
            Ok(jit) => jit,
            Err(e) if e.as_actions().is_some_and(rarc_actions::Error::is_runner_exists) => {
                return self.resolve_name_conflict(&client).await.map(ControlFlow::Break);
            }
            Err(e) => return Err(e),
        };
        let secret = build_jit_secret(self.er, &jit);
        match self.apis.secrets.create(&post_params(), &secret).await {
            Ok(created) => {
                info!(runner_id = jit.runner.id, "runner registered; JIT Secret created");
                Ok(parse_jit_secret(&created, &self.name)
                    .map_or(ControlFlow::Break(Action::requeue(IMMEDIATE)), ControlFlow::Continue))
            }
            Err(e) if is_already_exists(&e) => Ok(ControlFlow::Break(Action::requeue(IMMEDIATE))),
            Err(e) => Err(Error::kube(format!("create Secret {}/{}", self.namespace, self.name))(
                e,
            )),
        }
    }

    /// GenerateJitRunnerConfig said the name is taken (arc-controller.md §4.4 step 5).
    async fn resolve_name_conflict(&self, client: &ActionsClient) -> Result<Action> {
        let existing = self
            .ctx
            .github
            .call("get runner by name", client.get_runner_by_name(&self.name))
            .await?;
        match name_conflict(existing.as_ref(), self.er.spec.runner_scale_set_id) {
            NameConflict::Retry => {
                info!("runner name taken but no runner found; retrying");
                Ok(requeue_secs(NAME_CONFLICT_REQUEUE_SECS))
            }
            NameConflict::RemoveAndRetry(id) => {
                info!(runner_id = id, "removing a stale registration of this runner's name");
                self.ctx
                    .github
                    .call(&format!("remove runner {id}"), client.remove_runner(id))
                    .await?;
                Ok(Action::requeue(IMMEDIATE))
            }
            NameConflict::DeleteRunner => {
                let other = existing.map(|r| r.runner_scale_set_id).unwrap_or_default();
                warn!(
                    other_scale_set_id = other,
                    "runner name is registered in another scale set"
                );
                self.delete_self("runner name taken in another scale set").await
            }
        }
    }

    /// Requeue for a freshly created (Pending) pod: at the Pending timeout, if any.
    fn pending_requeue(&self) -> Action {
        match self.ctx.settings.pending_pod_timeout_secs {
            0 => Action::await_change(),
            t => Action::requeue(Duration::from_secs(t.saturating_add(1))),
        }
    }

    /// No pod: apply the failure limit and backoff, then create it.
    async fn create_pod(&self, jit: &JitInfo) -> Result<Action> {
        let er = self.er;
        if too_many_failures(er) {
            return self.delete_self("too many pod failures").await;
        }
        let now = now();
        if let Some(wait) = failure_backoff_remaining(failures(er), now) {
            debug!(wait_secs = wait.as_secs(), "backing off before recreating the pod");
            return Ok(Action::requeue(wait));
        }
        let pod = build_pod(er, &self.name);
        let err = match self.apis.pods.create(&post_params(), &pod).await {
            Ok(_) => {
                info!("runner pod created");
                return Ok(self.pending_requeue());
            }
            Err(e) => e,
        };
        match classify_pod_create_error(&err) {
            PodCreateFailure::AlreadyExists => Ok(requeue_secs(POD_EXISTS_REQUEUE_SECS)),
            PodCreateFailure::Quota if quota_gives_up(er, now) => {
                self.delete_self("pod creation denied by quota for more than 10 minutes")
                    .await
            }
            PodCreateFailure::Quota => {
                info!(error = %err, "pod creation denied by quota; retrying");
                Ok(requeue_secs(QUOTA_REQUEUE_SECS))
            }
            PodCreateFailure::Invalid(message) => {
                warn!(error = %err, "runner pod is invalid; marking the runner Failed");
                let update = StatusUpdate {
                    phase: phase::FAILED.into(),
                    ready: false,
                    reason: Some(REASON_INVALID_POD.into()),
                    message: Some(message.clone()),
                    runner: Some(jit.clone()),
                    failure: None,
                };
                self.write_status(&update).await?;
                self.ctx.event(er, true, REASON_INVALID_POD, "CreatePod", message).await;
                self.remove_runner_best_effort(jit.runner_id).await;
                Ok(Action::await_change())
            }
            PodCreateFailure::Other => Err(Error::kube(format!("create Pod {}/{}", self.namespace, self.name))(err)),
        }
    }

    /// The pod exists: act on its state.
    async fn handle_pod(&self, pod: &Pod, jit: &JitInfo) -> Result<Action> {
        let er = self.er;
        match decide_pod(pod, now(), self.ctx.settings.pending_pod_timeout_secs) {
            PodDecision::Wait(None) => Ok(Action::await_change()),
            PodDecision::Wait(Some(d)) => Ok(Action::requeue(d)),
            PodDecision::Mirror {
                phase,
                ready,
                reason,
                message,
            } => {
                let update = StatusUpdate {
                    phase,
                    ready,
                    reason,
                    message,
                    runner: Some(jit.clone()),
                    failure: None,
                };
                if self.write_status(&update).await? {
                    info!(phase = %update.phase, ready, "runner status updated");
                }
                Ok(Action::await_change())
            }
            PodDecision::Succeeded => self.delete_self("runner finished").await,
            PodDecision::Outdated => {
                warn!("runner version is deprecated (exit code 7); marking the runner Outdated");
                let update = StatusUpdate {
                    phase: phase::OUTDATED.into(),
                    ready: false,
                    reason: Some(REASON_OUTDATED.into()),
                    message: Some(MESSAGE_OUTDATED.into()),
                    runner: Some(jit.clone()),
                    failure: None,
                };
                self.write_status(&update).await?;
                self.remove_runner_best_effort(jit.runner_id).await;
                Ok(Action::await_change())
            }
            PodDecision::Restart { reason, message } => {
                if er.has_job() {
                    info!(
                        reason = reason.as_deref().unwrap_or(""),
                        "runner with a job failed; deleting the runner"
                    );
                    let action = self.delete_self("runner with a job failed").await?;
                    self.remove_runner_best_effort(jit.runner_id).await;
                    return Ok(action);
                }
                let uid = pod.metadata.uid.clone().unwrap_or_else(|| pod.name_any());
                let at = now().to_string();
                let update = StatusUpdate {
                    phase: phase::PENDING.into(),
                    ready: false,
                    reason,
                    message,
                    runner: Some(jit.clone()),
                    failure: Some((uid.clone(), at)),
                };
                // Record first, so the reconcile the pod deletion triggers sees the failure.
                if self.write_status(&update).await? {
                    info!(
                        pod_uid = %uid,
                        failures = failures(er).map_or(0, BTreeMap::len) + 1,
                        reason = update.reason.as_deref().unwrap_or(""),
                        "runner pod failed; recreating it"
                    );
                }
                if pod.metadata.deletion_timestamp.is_none() {
                    delete_if_exists(&self.apis.pods, &self.name).await?;
                }
                Ok(Action::await_change())
            }
        }
    }
}

/// The uids of EphemeralRunners this process finalized, most recent last (bounded).
mod finalized {
    use std::collections::{HashSet, VecDeque};
    use std::sync::Mutex;

    const KEEP: usize = 4096;
    static SET: Mutex<Option<(HashSet<String>, VecDeque<String>)>> = Mutex::new(None);

    pub fn contains(uid: &str) -> bool {
        let guard = SET.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        !uid.is_empty() && guard.as_ref().is_some_and(|(set, _)| set.contains(uid))
    }

    pub fn insert(uid: String) {
        if uid.is_empty() {
            return;
        }
        let mut guard = SET.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let (set, order) = guard.get_or_insert_with(Default::default);
        if set.insert(uid.clone()) {
            order.push_back(uid);
            if order.len() > KEEP
                && let Some(old) = order.pop_front()
            {
                set.remove(&old);
            }
        }
    }

    #[cfg(test)]
    mod tests {
        #[test]
        fn remembers_a_bounded_number_of_uids() {
            super::insert("finalized-test-a".into());
            assert!(super::contains("finalized-test-a"));
            assert!(!super::contains("finalized-test-b"));
            assert!(!super::contains(""));
            for i in 0..=super::KEEP {
                super::insert(format!("finalized-test-{i}"));
            }
            assert!(!super::contains("finalized-test-a"), "the oldest is forgotten");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{
        Container, ContainerState, ContainerStateRunning, ContainerStateTerminated, ContainerStatus, PodCondition,
        PodSpec, PodStatus, PodTemplateSpec,
    };
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    fn ts(s: &str) -> Timestamp {
        s.parse().expect("timestamp")
    }

    fn er() -> EphemeralRunner {
        let mut er = EphemeralRunner::new(
            "set-runner-abcde",
            EphemeralRunnerSpec {
                github_config_url: "https://github.com/org".into(),
                github_config_secret: "gh".into(),
                runner_scale_set_id: 3,
                pod_template: PodTemplateSpec {
                    metadata: None,
                    spec: Some(PodSpec {
                        containers: vec![Container {
                            name: "runner".into(),
                            working_dir: Some("/home/runner/_work".into()),
                            ..Container::default()
                        }],
                        ..PodSpec::default()
                    }),
                },
                ..EphemeralRunnerSpec::default()
            },
        );
        er.metadata.namespace = Some("arc-runners".into());
        er.metadata.uid = Some("er-uid".into());
        er.metadata.creation_timestamp = Some(Time(ts("2026-01-01T00:00:00Z")));
        er
    }

    fn secret(pairs: &[(&str, &str)]) -> Secret {
        Secret {
            data: Some(
                pairs
                    .iter()
                    .map(|(k, v)| ((*k).to_owned(), ByteString(v.as_bytes().to_vec())))
                    .collect(),
            ),
            ..Secret::default()
        }
    }

    fn terminated(code: i32) -> ContainerState {
        ContainerState {
            terminated: Some(ContainerStateTerminated {
                exit_code: code,
                ..ContainerStateTerminated::default()
            }),
            ..ContainerState::default()
        }
    }

    fn running() -> ContainerState {
        ContainerState {
            running: Some(ContainerStateRunning::default()),
            ..ContainerState::default()
        }
    }

    fn status(name: &str, state: ContainerState) -> ContainerStatus {
        ContainerStatus {
            name: name.into(),
            state: Some(state),
            ..ContainerStatus::default()
        }
    }

    fn pod(phase: &str, runner: Option<ContainerState>) -> Pod {
        Pod {
            metadata: ObjectMeta {
                uid: Some("pod-uid".into()),
                creation_timestamp: Some(Time(ts("2026-01-01T00:00:00Z"))),
                ..ObjectMeta::default()
            },
            spec: None,
            status: Some(PodStatus {
                phase: Some(phase.into()),
                container_statuses: runner.map(|s| vec![status("runner", s)]),
                ..PodStatus::default()
            }),
        }
    }

    fn ready_condition(status: &str, at: &str) -> PodCondition {
        PodCondition {
            type_: "Ready".into(),
            status: status.into(),
            last_transition_time: Some(Time(ts(at))),
            ..PodCondition::default()
        }
    }

    const T0: &str = "2026-01-01T00:00:00Z";

    #[test]
    fn jit_secret_round_trip_and_corruption() {
        let er = er();
        let jit = JitRunnerConfig {
            runner: RunnerReference {
                id: 42,
                name: "set-runner-abcde".into(),
                runner_scale_set_id: 3,
                ..Default::default()
            },
            encoded_jit_config: "ENCODED".into(),
        };
        let mut er_meta = er.clone();
        er_meta.spec.ephemeral_runner_config_secret_metadata = Some(ResourceMeta {
            labels: Some([("l".to_owned(), "v".to_owned())].into()),
            annotations: None,
        });
        let s = build_jit_secret(&er_meta, &jit);
        assert_eq!(s.metadata.name.as_deref(), Some("set-runner-abcde"));
        assert_eq!(s.metadata.labels.as_ref().map(|l| l["l"].as_str()), Some("v"));
        assert!(s.metadata.annotations.is_none());
        assert_eq!(
            s.metadata.owner_references.as_ref().map(|o| o[0].uid.as_str()),
            Some("er-uid")
        );
        let data = s.data.as_ref().expect("data");
        assert_eq!(data["jitToken"].0, b"ENCODED");
        assert_eq!(data["scaleSetId"].0, b"3");
        assert_eq!(
            parse_jit_secret(&s, "set-runner-abcde"),
            Some(JitInfo {
                runner_id: 42,
                runner_name: "set-runner-abcde".into()
            })
        );
        assert_eq!(parse_jit_secret(&secret(&[("jitToken", "x")]), "n"), None);
        assert_eq!(
            parse_jit_secret(&secret(&[("jitToken", "x"), ("runnerId", "abc")]), "n"),
            None
        );
        assert_eq!(parse_jit_secret(&secret(&[("runnerId", "5")]), "n"), None);
        assert_eq!(
            parse_jit_secret(&secret(&[("jitToken", "x"), ("runnerId", "5")]), "n"),
            Some(JitInfo {
                runner_id: 5,
                runner_name: "n".into()
            })
        );
        assert_eq!(secret_runner_id(&secret(&[("runnerId", "0")])), None);
        assert_eq!(work_folder(&er.spec), "/home/runner/_work");
    }

    #[test]
    fn name_conflicts() {
        let r = |ss| RunnerReference {
            id: 9,
            name: "n".into(),
            runner_scale_set_id: ss,
            ..Default::default()
        };
        assert_eq!(name_conflict(None, 3), NameConflict::Retry);
        assert_eq!(name_conflict(Some(&r(3)), 3), NameConflict::RemoveAndRetry(9));
        assert_eq!(name_conflict(Some(&r(4)), 3), NameConflict::DeleteRunner);
    }

    #[test]
    fn backoff_by_failure_count() {
        let now = ts("2026-01-01T00:00:07Z");
        assert_eq!(failure_backoff_remaining(None, now), None);
        let mut f = BTreeMap::new();
        f.insert("a".to_owned(), T0.to_owned());
        // One failure: 5 s from T0, already past at T0+7.
        assert_eq!(failure_backoff_remaining(Some(&f), now), None);
        f.insert("b".to_owned(), "2026-01-01T00:00:05Z".to_owned());
        // Two failures: 10 s from the last (T0+5) → 8 s left.
        assert_eq!(failure_backoff_remaining(Some(&f), now), Some(Duration::from_secs(8)));
        for k in ["c", "d", "e", "f", "g"] {
            f.insert(k.to_owned(), "2026-01-01T00:00:05Z".to_owned());
        }
        // Seven failures: capped at 80 s.
        assert_eq!(failure_backoff_remaining(Some(&f), now), Some(Duration::from_secs(78)));
        let mut er = er();
        er.status = Some(EphemeralRunnerStatus {
            failures: Some(f.clone()),
            ..Default::default()
        });
        assert!(too_many_failures(&er));
        f.retain(|k, _| k.as_str() < "f");
        er.status = Some(EphemeralRunnerStatus {
            failures: Some(f),
            ..Default::default()
        });
        assert!(!too_many_failures(&er), "exactly 5 is allowed");
    }

    #[test]
    fn failed_runner_ttl() {
        let mut er = er();
        let at = |s: &str| failed_runner(&er, 600, ts(s));
        assert_eq!(at("2026-01-01T00:09:00Z"), FailedRunner::Wait(Duration::from_secs(60)));
        assert_eq!(at("2026-01-01T00:10:00Z"), FailedRunner::Delete);
        assert_eq!(failed_runner(&er, 0, ts("2027-01-01T00:00:00Z")), FailedRunner::Keep);
        // A later recorded failure moves the reference time.
        er.status = Some(EphemeralRunnerStatus {
            failures: Some([("p".to_owned(), "2026-01-01T00:05:00Z".to_owned())].into()),
            ..Default::default()
        });
        assert_eq!(
            failed_runner(&er, 600, ts("2026-01-01T00:10:00Z")),
            FailedRunner::Wait(Duration::from_secs(300))
        );
        assert!(!quota_gives_up(&er, ts("2026-01-01T00:10:00Z")));
        assert!(quota_gives_up(&er, ts("2026-01-01T00:10:01Z")));
    }

    #[test]
    fn pod_create_errors() {
        let api = |code: u16, reason: &str, message: &str| {
            kube::Error::Api(Box::new(kube::core::Status {
                code,
                reason: reason.into(),
                message: message.into(),
                ..kube::core::Status::default()
            }))
        };
        assert_eq!(
            classify_pod_create_error(&api(409, "AlreadyExists", "x")),
            PodCreateFailure::AlreadyExists
        );
        assert_eq!(
            classify_pod_create_error(&api(403, "Forbidden", "pods \"p\" is forbidden: exceeded quota: q")),
            PodCreateFailure::Quota
        );
        assert_eq!(
            classify_pod_create_error(&api(403, "Forbidden", "no PriorityClass with name x was found")),
            PodCreateFailure::Invalid("no PriorityClass with name x was found".into())
        );
        assert_eq!(
            classify_pod_create_error(&api(422, "Invalid", "spec.containers[1].name: Duplicate value")),
            PodCreateFailure::Invalid("spec.containers[1].name: Duplicate value".into())
        );
        assert_eq!(
            classify_pod_create_error(&api(500, "InternalError", "x")),
            PodCreateFailure::Other
        );
    }

    fn actions_error(status: u16, type_name: &str) -> Error {
        let e: rarc_actions::Error = rarc_actions::error::UnexpectedStatus {
            method: reqwest::Method::DELETE,
            url: "https://x/_apis/distributedtask/pools/0/agents/1".into(),
            status: reqwest::StatusCode::from_u16(status).expect("status"),
            activity_id: None,
            github_request_id: None,
            exception_type: (!type_name.is_empty()).then(|| type_name.to_owned()),
            message: "m".into(),
        }
        .into();
        Error::actions("remove runner 1")(e)
    }

    #[test]
    fn remove_runner_errors() {
        assert_eq!(classify_remove_error(&actions_error(404, "")), RemoveFailure::Gone);
        assert_eq!(
            classify_remove_error(&actions_error(400, "AgentNotFoundException")),
            RemoveFailure::Gone
        );
        assert_eq!(
            classify_remove_error(&actions_error(400, "JobStillRunningException")),
            RemoveFailure::JobStillRunning
        );
        assert_eq!(classify_remove_error(&actions_error(500, "")), RemoveFailure::Retry);
        let missing = Error::MissingSecret {
            namespace: "n".into(),
            name: "gh".into(),
        };
        assert_eq!(classify_remove_error(&missing), RemoveFailure::CannotDeregister);
        let invalid = Error::InvalidSecret {
            namespace: "n".into(),
            name: "gh".into(),
            reason: "r".into(),
        };
        assert_eq!(classify_remove_error(&invalid), RemoveFailure::CannotDeregister);
        let bad_key = Error::actions("x")(rarc_actions::Error::InvalidCredentials("empty token".into()));
        assert_eq!(classify_remove_error(&bad_key), RemoveFailure::CannotDeregister);
        assert_eq!(
            classify_remove_error(&Error::Timeout {
                context: "x".into(),
                seconds: 60
            }),
            RemoveFailure::Retry
        );
    }

    #[test]
    fn exit_codes_decide() {
        let now = ts(T0);
        assert_eq!(
            decide_pod(&pod("Succeeded", Some(terminated(0))), now, 0),
            PodDecision::Succeeded
        );
        // A sidecar failed the pod but the runner exited 0: success.
        assert_eq!(
            decide_pod(&pod("Failed", Some(terminated(0))), now, 0),
            PodDecision::Succeeded
        );
        assert_eq!(
            decide_pod(&pod("Failed", Some(terminated(7))), now, 0),
            PodDecision::Outdated
        );
        // The runner terminated while a sidecar keeps the pod Running.
        assert_eq!(
            decide_pod(&pod("Running", Some(terminated(7))), now, 0),
            PodDecision::Outdated
        );
        assert_eq!(
            decide_pod(&pod("Running", Some(terminated(0))), now, 0),
            PodDecision::Succeeded
        );
        match decide_pod(&pod("Failed", Some(terminated(1))), now, 0) {
            PodDecision::Restart { message, .. } => {
                assert_eq!(message.as_deref(), Some("runner container exited with code 1"))
            }
            d => panic!("{d:?}"),
        }
    }

    #[test]
    fn failed_pods_without_runner_status_and_init_failures_restart() {
        let now = ts(T0);
        let mut evicted = pod("Failed", None);
        if let Some(s) = evicted.status.as_mut() {
            s.reason = Some("Evicted".into());
            s.message = Some("low on memory".into());
        }
        assert_eq!(
            decide_pod(&evicted, now, 0),
            PodDecision::Restart {
                reason: Some("Evicted".into()),
                message: Some("low on memory".into())
            }
        );
        let mut init = pod("Pending", None);
        if let Some(s) = init.status.as_mut() {
            s.init_container_statuses = Some(vec![status("setup", terminated(2))]);
        }
        assert!(
            matches!(decide_pod(&init, now, 0), PodDecision::Restart { reason: Some(r), .. } if r == "InitContainerFailed")
        );
        // A native sidecar's exit does not count.
        init.spec = Some(PodSpec {
            init_containers: Some(vec![Container {
                name: "setup".into(),
                restart_policy: Some("Always".into()),
                ..Container::default()
            }]),
            ..PodSpec::default()
        });
        assert_eq!(decide_pod(&init, now, 0), PodDecision::Wait(None));
    }

    #[test]
    fn pending_pods_wait_then_time_out() {
        let p = pod("Pending", None);
        assert_eq!(decide_pod(&p, ts("2030-01-01T00:00:00Z"), 0), PodDecision::Wait(None));
        assert_eq!(
            decide_pod(&p, ts("2026-01-01T00:10:00Z"), 900),
            PodDecision::Wait(Some(Duration::from_secs(301)))
        );
        let mut p2 = pod("Pending", Some(ContainerState::default()));
        if let Some(s) = p2.status.as_mut() {
            s.message = Some("ErrImagePull".into());
        }
        match decide_pod(&p2, ts("2026-01-01T00:15:00Z"), 900) {
            PodDecision::Restart { reason, message } => {
                assert_eq!(reason.as_deref(), Some(REASON_PENDING_TIMEOUT));
                assert_eq!(
                    message.as_deref(),
                    Some("pod was still Pending after 900 s: ErrImagePull")
                );
            }
            d => panic!("{d:?}"),
        }
        // No status at all yet counts as Pending.
        let mut fresh = pod("", None);
        fresh.status = None;
        assert_eq!(decide_pod(&fresh, ts(T0), 0), PodDecision::Wait(None));
    }

    #[test]
    fn running_pods_are_mirrored() {
        let now = ts(T0);
        assert_eq!(decide_pod(&pod("Running", None), now, 0), PodDecision::Wait(None));
        let mut p = pod("Running", Some(running()));
        if let Some(s) = p.status.as_mut() {
            s.conditions = Some(vec![
                ready_condition("False", "2026-01-01T00:00:01Z"),
                ready_condition("True", "2026-01-01T00:00:02Z"),
            ]);
        }
        assert_eq!(
            decide_pod(&p, now, 900),
            PodDecision::Mirror {
                phase: "Running".into(),
                ready: true,
                reason: None,
                message: None
            }
        );
        assert!(!pod_ready(&pod("Running", Some(running()))));
    }

    #[test]
    fn status_patches_carry_only_differences() {
        let jit = JitInfo {
            runner_id: 42,
            runner_name: "r".into(),
        };
        let running = StatusUpdate {
            phase: "Running".into(),
            ready: true,
            runner: Some(jit.clone()),
            ..Default::default()
        };
        // First write: phase, ready and the registration together.
        assert_eq!(
            status_patch(None, &running),
            Some(json!({ "phase": "Running", "ready": true, "runnerId": 42, "runnerName": "r" }))
        );
        // Same state (with listener job fields present): no write.
        let cur = EphemeralRunnerStatus {
            phase: Some("Running".into()),
            ready: Some(true),
            runner_id: Some(42),
            runner_name: Some("r".into()),
            job_id: Some("j".into()),
            reason: Some(String::new()),
            ..Default::default()
        };
        assert_eq!(status_patch(Some(&cur), &running), None);
        // A failure: new key merged in, reason set, stale message cleared.
        let mut failed_before = cur.clone();
        failed_before.message = Some("old".into());
        failed_before.failures = Some([("p0".to_owned(), T0.to_owned())].into());
        let restart = StatusUpdate {
            phase: "Pending".into(),
            ready: false,
            reason: Some("Evicted".into()),
            message: None,
            runner: Some(jit.clone()),
            failure: Some(("p1".into(), "2026-01-01T00:01:00Z".into())),
        };
        let patch = status_patch(Some(&failed_before), &restart).expect("patch");
        assert_eq!(
            patch,
            json!({
                "phase": "Pending", "ready": false, "reason": "Evicted", "message": null,
                "failures": { "p1": "2026-01-01T00:01:00Z" }
            })
        );
        assert!(patch.get("jobId").is_none());
        // The same failure again (pod still terminating): nothing to write.
        let mut recorded = failed_before;
        recorded.phase = Some("Pending".into());
        recorded.ready = Some(false);
        recorded.reason = Some("Evicted".into());
        recorded.message = None;
        recorded.failures = Some([("p1".to_owned(), "2026-01-01T00:01:00Z".to_owned())].into());
        let again = StatusUpdate {
            failure: Some(("p1".into(), "2026-01-01T00:02:00Z".into())),
            ..restart
        };
        assert_eq!(status_patch(Some(&recorded), &again), None);
    }

    #[test]
    fn error_backoff() {
        let conflict = Error::kube("patch")(kube::Error::Api(Box::new(kube::core::Status {
            code: 409,
            reason: "Conflict".into(),
            ..kube::core::Status::default()
        })));
        assert_eq!(error_delay(&conflict, 7), Duration::from_secs(1));
        let gh = Error::Timeout {
            context: "x".into(),
            seconds: 60,
        };
        assert_eq!(error_delay(&gh, 1), Duration::from_secs(5));
        assert_eq!(error_delay(&gh, 3), Duration::from_secs(20));
        assert_eq!(error_delay(&gh, 40), Duration::from_secs(300));
        let api = Error::kube("get")(kube::Error::Api(Box::new(kube::core::Status {
            code: 500,
            ..kube::core::Status::default()
        })));
        assert_eq!(error_delay(&api, 1), Duration::from_secs(1));
        assert_eq!(error_delay(&api, 10), Duration::from_secs(60));
    }

    #[test]
    fn done_phases_and_label_values() {
        assert!(is_done_phase("Failed") && is_done_phase("Outdated") && is_done_phase("Succeeded"));
        assert!(!is_done_phase("") && !is_done_phase("Running") && !is_done_phase("Pending"));
        assert!(valid_label_value(&"a".repeat(63)));
        assert!(!valid_label_value(&"a".repeat(64)));
    }
}
