//! The EphemeralRunnerSet reconciler (arc-controller.md §4.3, ARC master "H" flavour) with rarc's
//! deliberate differences:
//!
//! - both ERS finalizer strings are honoured (ARC 0.14.2's `ephemeralrunner.actions.github.com/finalizer`
//!   is replaced by `ephemeralrunnerset.actions.github.com/finalizer` on a live ERS, both are removed
//!   on deletion);
//! - each EphemeralRunner records the spec it was built from (`actions.github.com/integrity-hash` =
//!   [`runner_spec_hash`]); idle runners of an older spec are deregistered and deleted whatever the
//!   `patchID`, and replaced in the same pass, so a spec roll-out never waits on idle runners (#4432);
//! - scale-down also picks runners whose `status.runnerId` is still 0: their JIT Secret says whether
//!   they are registered (no Secret ⇒ deleted directly, without a GitHub call);
//! - ERS deletion never waits on GitHub credentials: when the credentials Secret is missing or
//!   invalid, runners are deleted directly and their own finalizer deregisters them;
//! - an `Outdated` ERS (sticky, as in ARC) keeps scaling down and deleting outdated runners but
//!   creates none; lifting it (status `phase`) is the AutoscalingRunnerSet reconciler's call;
//! - finished (`Succeeded`, a legacy phase) and outdated runners are deleted on every pass, not only
//!   when a new patch is evaluated.
//!
//! Children are found by listing the EphemeralRunners of the ERS namespace and keeping those whose
//! *controller* owner reference has the ERS uid (no label selector: labels can be excluded from
//! propagation or differ on objects created by ARC). The list is a consistent (quorum) read, so a
//! runner created by the previous pass is always seen and the `patchID` protocol never over-creates.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use futures::future::join_all;
use futures::{StreamExt, stream};
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{ListParams, Patch};
use kube::runtime::controller::Action;
use kube::{Api, ResourceExt};
use rarc_actions::{ActionsClient, ProxyEnv};
use rarc_crd::keys::{annotations as ann, finalizers as fin, labels as lbl};
use rarc_crd::{
    EphemeralRunner, EphemeralRunnerSet, EphemeralRunnerSetStatus, EphemeralRunnerSpec, ResourceMeta, names,
};
use serde_json::{Value, json};
use tokio::sync::OnceCell;

use super::ephemeral_runner::{RemoveFailure, classify_remove_error, jit_keys, phase, secret_value};
use super::{
    delete_if_exists, has_finalizer, hash_of, namespace_of, owner_reference, patch_params, patch_status, post_params,
    proxy_values, remove_finalizers, requeue_secs, write_finalizers,
};
use crate::context::Context;
use crate::error::{Error, Result, is_already_exists, not_found_as_none};
use crate::github::{Target, resolve_proxy};
use crate::labels::{Labels, merge, url_labels};
use crate::metrics::{FAILED_EPHEMERAL_RUNNERS, LabelSet, PENDING_EPHEMERAL_RUNNERS, RUNNING_EPHEMERAL_RUNNERS};

mod status_pace;
use status_pace::Pace;

/// How many EphemeralRunner creates (or runner removals) run at once.
const CONCURRENCY: usize = 20;
/// Safety-net requeue while a deleted ERS waits for its runners (ER events normally drive it).
const DELETION_REQUEUE_SECS: u64 = 10;
/// Requeue after a failed reconcile.
const ERROR_REQUEUE_SECS: u64 = 5;

// ------------------------------------------------------------------------------------------------
// Pure decisions
// ------------------------------------------------------------------------------------------------

/// The integrity hash of an ERS spec (`ephemeralRunnerSpec` only), stamped on each runner.
///
/// A hash of the spec's JSON (struct field order, sorted maps), so it is stable across processes.
/// It cannot match ARC's go-spew hashes: on take-over every ARC-created runner counts as outdated
/// once and idle ones are replaced.
pub fn runner_spec_hash(spec: &EphemeralRunnerSpec) -> String {
    hash_of(spec)
}

/// The runners of an ERS by state (§4.3 step 7).
#[derive(Debug, Default)]
pub(crate) struct Buckets<'a> {
    pub deleting: Vec<&'a EphemeralRunner>,
    pub pending: Vec<&'a EphemeralRunner>,
    pub running: Vec<&'a EphemeralRunner>,
    pub finished: Vec<&'a EphemeralRunner>,
    pub failed: Vec<&'a EphemeralRunner>,
    pub outdated: Vec<&'a EphemeralRunner>,
}

impl<'a> Buckets<'a> {
    /// Sorts `runners` into buckets; a deletion timestamp wins over the phase, an unknown or empty
    /// phase is pending.
    pub fn of(runners: &'a [EphemeralRunner]) -> Self {
        let mut b = Self::default();
        for er in runners {
            let bucket = if er.metadata.deletion_timestamp.is_some() {
                &mut b.deleting
            } else {
                match er.phase() {
                    phase::RUNNING => &mut b.running,
                    phase::SUCCEEDED => &mut b.finished,
                    phase::FAILED => &mut b.failed,
                    phase::OUTDATED => &mut b.outdated,
                    _ => &mut b.pending,
                }
            };
            bucket.push(er);
        }
        b
    }

    /// The runners that occupy replicas: pending + running + failed (deleting ones do not).
    pub fn total(&self) -> usize {
        self.pending.len() + self.running.len() + self.failed.len()
    }
}

/// The highest numeric `actions.github.com/patch-id` annotation over all runners (deleting ones
/// included); `None` when no runner has one.
pub(crate) fn latest_patch_id(runners: &[EphemeralRunner]) -> Option<i64> {
    runners
        .iter()
        .filter_map(|er| {
            er.annotations()
                .get(ann::PATCH_ID)
                .and_then(|v| v.trim().parse::<i64>().ok())
        })
        .max()
}

/// What scaling does in one pass.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Scale {
    Hold,
    Create(usize),
    DeleteIdle(usize),
}

/// Inputs of [`scale_decision`].
#[derive(Debug, Clone, Copy)]
pub(crate) struct ScaleInput {
    /// `spec.replicas` (absent = 0).
    pub replicas: Option<i32>,
    /// `spec.patchID`.
    pub patch_id: i32,
    /// [`latest_patch_id`] of the listed runners.
    pub latest_patch_id: Option<i64>,
    /// Pending + running + failed runners, minus those removed this pass for a spec roll-out.
    pub total: usize,
    /// Runners removed this pass for a spec roll-out (rarc): replaced even without a new patch.
    pub replaced: usize,
    /// False while the ERS is `Outdated`: nothing is created.
    pub creates_allowed: bool,
}

/// ARC's `patchID` protocol (§4.3 step 9): evaluated only on `patchID == 0` or a patch id newer
/// than every runner's; creates the shortfall; shrinks (idle runners only) only on `patchID == 0`.
/// rarc: runners removed for a spec roll-out are replaced even when the patch was already handled
/// (that is no over-provisioning: we removed them ourselves).
pub(crate) fn scale_decision(input: ScaleInput) -> Scale {
    let replicas = usize::try_from(input.replicas.unwrap_or(0)).unwrap_or(0);
    let evaluate = input.patch_id == 0 || input.latest_patch_id != Some(i64::from(input.patch_id));
    let decision = if evaluate {
        if input.total < replicas {
            Scale::Create(replicas - input.total)
        } else if input.patch_id == 0 && input.total > replicas {
            Scale::DeleteIdle(input.total - replicas)
        } else {
            Scale::Hold
        }
    } else if input.replaced > 0 && input.total < replicas {
        Scale::Create(input.replaced.min(replicas - input.total))
    } else {
        Scale::Hold
    };
    match decision {
        Scale::Create(_) if !input.creates_allowed => Scale::Hold,
        d => d,
    }
}

/// Oldest first (creation time, then name for a stable order).
fn oldest_first(mut runners: Vec<&EphemeralRunner>) -> Vec<&EphemeralRunner> {
    runners.sort_by(|a, b| {
        a.metadata
            .creation_timestamp
            .cmp(&b.metadata.creation_timestamp)
            .then_with(|| a.name_any().cmp(&b.name_any()))
    });
    runners
}

/// True when the runner was built from a spec other than `hash` (no annotation counts as other).
pub(crate) fn is_stale(er: &EphemeralRunner, hash: &str) -> bool {
    er.annotations().get(ann::INTEGRITY_HASH).map(String::as_str) != Some(hash)
}

/// Runners to remove for a spec roll-out: pending, failed and running runners of an older spec
/// without a job (runners with a job finish first), pending oldest first.
pub(crate) fn stale_runners<'a>(b: &Buckets<'a>, hash: &str) -> Vec<&'a EphemeralRunner> {
    let pick = |list: &Vec<&'a EphemeralRunner>| {
        oldest_first(
            list.iter()
                .copied()
                .filter(|er| !er.has_job() && is_stale(er, hash))
                .collect(),
        )
    };
    let mut out = pick(&b.pending);
    out.extend(pick(&b.failed));
    out.extend(pick(&b.running));
    out
}

/// Scale-down candidates (§4.3 "delete idle runners"): pending runners oldest first, then running
/// runners oldest first; never one with a job, nor one named in `exclude`. rarc: runners with
/// `runnerId == 0` are candidates too (their JIT Secret decides how they are removed).
pub(crate) fn scale_down_candidates<'a>(b: &Buckets<'a>, exclude: &BTreeSet<String>) -> Vec<&'a EphemeralRunner> {
    let pick = |list: &Vec<&'a EphemeralRunner>| {
        oldest_first(
            list.iter()
                .copied()
                .filter(|er| !er.has_job() && !exclude.contains(&er.name_any()))
                .collect(),
        )
    };
    let mut out = pick(&b.pending);
    out.extend(pick(&b.running));
    out
}

/// What the deletion of an ERS does with its runners.
#[derive(Debug, Default)]
pub(crate) struct CleanupPlan<'a> {
    /// Finished, failed and outdated runners: deleted directly.
    pub delete: Vec<&'a EphemeralRunner>,
    /// Pending runners and running runners without a job: deregistered, then deleted.
    pub remove: Vec<&'a EphemeralRunner>,
    /// Runners with a job, and runners already being deleted: waited for.
    pub waiting: usize,
}

/// The runner cleanup of a deleted ERS (§4.3 *cleanUpEphemeralRunners*, H flavour).
pub(crate) fn cleanup_plan<'a>(b: &Buckets<'a>) -> CleanupPlan<'a> {
    let mut plan = CleanupPlan {
        waiting: b.deleting.len(),
        ..CleanupPlan::default()
    };
    plan.delete
        .extend(b.finished.iter().chain(&b.failed).chain(&b.outdated).copied());
    plan.remove.extend(oldest_first(b.pending.clone()));
    for er in oldest_first(b.running.clone()) {
        if er.has_job() {
            plan.waiting += 1;
        } else {
            plan.remove.push(er);
        }
    }
    plan
}

/// The ERS finalizers to write on a live ERS: ours added, ARC 0.14.2's replaced; `None` when the
/// list is already right.
pub(crate) fn live_finalizers(current: &[String]) -> Option<Vec<String>> {
    let has_new = current.iter().any(|f| f == fin::EPHEMERAL_RUNNER_SET);
    let has_legacy = current.iter().any(|f| f == fin::EPHEMERAL_RUNNER_SET_LEGACY);
    if has_new && !has_legacy {
        return None;
    }
    let mut list: Vec<String> = current
        .iter()
        .filter(|f| *f != fin::EPHEMERAL_RUNNER_SET_LEGACY)
        .cloned()
        .collect();
    if !has_new {
        list.push(fin::EPHEMERAL_RUNNER_SET.to_owned());
    }
    Some(list)
}

/// The status for `b`, or `None` when `current` already says it. `phase` is `Outdated` when any
/// runner is outdated, otherwise the current phase is kept (empty → `Running`; `Outdated` sticks).
pub(crate) fn desired_status(
    b: &Buckets<'_>,
    current: Option<&EphemeralRunnerSetStatus>,
) -> Option<EphemeralRunnerSetStatus> {
    let count = |n: usize| i32::try_from(n).unwrap_or(i32::MAX);
    let phase = if b.outdated.is_empty() {
        current
            .and_then(|s| s.phase.clone())
            .filter(|p| !p.is_empty())
            .unwrap_or_else(|| phase::RUNNING.to_owned())
    } else {
        phase::OUTDATED.to_owned()
    };
    let desired = EphemeralRunnerSetStatus {
        current_replicas: count(b.total()),
        pending_ephemeral_runners: Some(count(b.pending.len())),
        running_ephemeral_runners: Some(count(b.running.len())),
        failed_ephemeral_runners: Some(count(b.failed.len())),
        phase: Some(phase),
    };
    (current != Some(&desired)).then_some(desired)
}

/// True when the ERS is `Outdated` (status) or has an outdated runner.
fn is_outdated(ers: &EphemeralRunnerSet, b: &Buckets<'_>) -> bool {
    !b.outdated.is_empty() || ers.status.as_ref().and_then(|s| s.phase.as_deref()) == Some(phase::OUTDATED)
}

/// A new EphemeralRunner of `ers` (§3.2, §3.3, §4.3 step 9).
pub(crate) fn build_runner(
    ers: &EphemeralRunnerSet,
    spec_hash: &str,
    proxy_secret: Option<&str>,
    excluded_prefixes: &[String],
) -> EphemeralRunner {
    let reserved: Labels = [(lbl::COMPONENT.to_owned(), lbl::COMPONENT_RUNNER.to_owned())].into();
    let user_meta = &ers.spec.ephemeral_runner_metadata;
    let labels = merge(
        ers.labels(),
        reserved,
        &ResourceMeta::labels(user_meta),
        excluded_prefixes,
    );
    let reserved_annotations: Labels = [
        (ann::PATCH_ID.to_owned(), ers.spec.patch_id.to_string()),
        (ann::INTEGRITY_HASH.to_owned(), spec_hash.to_owned()),
    ]
    .into();
    let annotations = merge(
        ers.annotations(),
        reserved_annotations,
        &ResourceMeta::annotations(user_meta),
        &[],
    );
    let mut spec = ers.spec.ephemeral_runner_spec.clone();
    if spec.proxy.is_some() {
        spec.proxy_secret_ref = proxy_secret.map(str::to_owned);
    }
    EphemeralRunner {
        metadata: ObjectMeta {
            generate_name: Some(names::runner_generate_name(&ers.name_any())),
            namespace: ers.metadata.namespace.clone(),
            labels: Some(labels),
            annotations: Some(annotations),
            finalizers: Some(vec![
                fin::EPHEMERAL_RUNNER.to_owned(),
                fin::EPHEMERAL_RUNNER_REGISTRATION.to_owned(),
            ]),
            owner_references: Some(vec![owner_reference(ers)]),
            ..ObjectMeta::default()
        },
        spec,
        status: None,
    }
}

/// What a runner's registration is, as far as we can tell.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Registration {
    /// Registered with this runner id.
    Registered(i64),
    /// No JIT config was ever stored: nothing to deregister.
    Unregistered,
    /// The JIT Secret exists but its `runnerId` is unreadable (the ER reconciler repairs it).
    Unknown,
}

/// The registration of a runner whose `status.runnerId` is 0, from its JIT Secret.
pub(crate) fn registration_from_secret(secret: Option<&Secret>) -> Registration {
    let Some(secret) = secret else {
        return Registration::Unregistered;
    };
    match secret_value(secret, jit_keys::RUNNER_ID).map(|v| v.parse::<i64>()) {
        Some(Ok(id)) if id > 0 => Registration::Registered(id),
        Some(Ok(_)) => Registration::Unregistered,
        _ => Registration::Unknown,
    }
}

/// The data of the runner proxy Secret (only the configured keys).
pub(crate) fn proxy_secret_data(env: &ProxyEnv) -> BTreeMap<String, ByteString> {
    proxy_values(env)
        .into_iter()
        .filter_map(|(k, v)| v.map(|v| (k.to_owned(), ByteString(v.as_bytes().to_vec()))))
        .collect()
}

/// The scale set name of an ERS: its `actions.github.com/scale-set-name` label, else its name.
fn scale_set_name(ers: &EphemeralRunnerSet) -> String {
    ers.labels()
        .get(lbl::SCALE_SET_NAME)
        .cloned()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| ers.name_any())
}

/// The labels of the runner proxy Secret: scale-set name and namespace only.
pub(crate) fn proxy_secret_labels(ers: &EphemeralRunnerSet) -> Labels {
    [
        (lbl::SCALE_SET_NAME.to_owned(), scale_set_name(ers)),
        (lbl::SCALE_SET_NAMESPACE.to_owned(), namespace_of(ers)),
    ]
    .into()
}

/// A merge patch bringing `existing` to `data` and `labels` (other labels untouched), or `None`.
pub(crate) fn proxy_secret_patch(
    existing: &Secret,
    data: &BTreeMap<String, ByteString>,
    labels: &Labels,
) -> Option<Value> {
    let current = existing.data.clone().unwrap_or_default();
    let have = existing.labels();
    let labels_ok = labels.iter().all(|(k, v)| have.get(k) == Some(v));
    if current == *data && labels_ok {
        return None;
    }
    let mut patch_data = serde_json::Map::new();
    for k in current.keys().filter(|k| !data.contains_key(*k)) {
        patch_data.insert(k.clone(), Value::Null);
    }
    for (k, v) in data {
        patch_data.insert(k.clone(), json!(v));
    }
    Some(json!({ "metadata": { "labels": labels }, "data": patch_data }))
}

/// The gauge labels of §6: `name`, `namespace`, `repository`, `organization`, `enterprise`.
pub(crate) fn gauge_labels(ers: &EphemeralRunnerSet) -> LabelSet {
    let url = url_labels(&ers.spec.ephemeral_runner_spec.github_config_url);
    let get = |k: &str| url.get(k).cloned().unwrap_or_default();
    vec![
        ("name", scale_set_name(ers)),
        ("namespace", namespace_of(ers)),
        ("repository", get(lbl::REPOSITORY)),
        ("organization", get(lbl::ORGANIZATION)),
        ("enterprise", get(lbl::ENTERPRISE)),
    ]
}

/// True when `er`'s controller owner reference has `uid`.
pub(crate) fn is_controlled_by(er: &EphemeralRunner, uid: &str) -> bool {
    er.owner_references()
        .iter()
        .any(|o| o.controller == Some(true) && o.uid == uid)
}

// ------------------------------------------------------------------------------------------------
// I/O
// ------------------------------------------------------------------------------------------------

/// Reconciles one EphemeralRunnerSet.
pub async fn reconcile(ers: Arc<EphemeralRunnerSet>, ctx: Arc<Context>) -> Result<Action> {
    let ns = namespace_of(&*ers);
    let name = ers.name_any();
    let sets: Api<EphemeralRunnerSet> = Api::namespaced(ctx.client.clone(), &ns);
    let runners: Api<EphemeralRunner> = Api::namespaced(ctx.client.clone(), &ns);
    // The cached object can lag behind this reconciler's own status write of the previous pass
    // (a runner event queues the next pass while that write is in flight). Decisions and the
    // status diff made from it would undo the write: an `Outdated` phase reverted to `Running`
    // and runners created for an outdated set. So the set is read like its runners, not cached.
    let Some(ers) = not_found_as_none(sets.get(&name).await)
        .map_err(Error::kube(format!("get EphemeralRunnerSet {ns}/{name}")))?
        .map(Arc::new)
    else {
        return Ok(Action::await_change());
    };

    if ers.metadata.deletion_timestamp.is_some() {
        return finalize(&ers, &ctx, &sets, &runners).await;
    }

    if let Some(list) = live_finalizers(ers.finalizers()) {
        tracing::debug!(scale_set = %name, namespace = %ns, "writing the EphemeralRunnerSet finalizer");
        write_finalizers(&sets, &*ers, list).await?;
    }

    let hash = runner_spec_hash(&ers.spec.ephemeral_runner_spec);
    let proxy_secret = ensure_proxy_secret(&ers, &ctx).await?;
    let children = list_runners(&runners, &ers).await?;
    let b = Buckets::of(&children);
    let latest = latest_patch_id(&children);

    if ctx.settings.metrics_bind().is_some() {
        let labels = gauge_labels(&ers);
        ctx.metrics
            .set(PENDING_EPHEMERAL_RUNNERS, &labels, b.pending.len() as f64);
        ctx.metrics
            .set(RUNNING_EPHEMERAL_RUNNERS, &labels, b.running.len() as f64);
        ctx.metrics
            .set(FAILED_EPHEMERAL_RUNNERS, &labels, b.failed.len() as f64);
    }

    let mut errors = Vec::new();
    let remover = Remover::new(&ctx, &ers, runners.clone(), false);

    // Finished (legacy phase) and outdated runners go; outdated ones are not replaced.
    let done: Vec<&EphemeralRunner> = b.finished.iter().chain(&b.outdated).copied().collect();
    if !done.is_empty() {
        tracing::info!(scale_set = %name, namespace = %ns, count = done.len(), "deleting finished and outdated runners");
        delete_all(&runners, &done, &mut errors).await;
    }

    // Spec roll-out: idle runners of an older spec are removed now, whatever the patchID.
    let stale = stale_runners(&b, &hash);
    let replaced = if stale.is_empty() {
        0
    } else {
        let removed = remover.remove_up_to(&stale, usize::MAX, &mut errors).await;
        if removed > 0 {
            tracing::info!(scale_set = %name, namespace = %ns, removed, "removed idle runners of an older spec");
        } else {
            tracing::debug!(scale_set = %name, namespace = %ns, candidates = stale.len(), "no idle runner of an older spec removed");
        }
        removed
    };

    let outdated = is_outdated(&ers, &b);
    let decision = scale_decision(ScaleInput {
        replicas: ers.spec.replicas,
        patch_id: ers.spec.patch_id,
        latest_patch_id: latest,
        total: b.total().saturating_sub(replaced),
        replaced,
        creates_allowed: !outdated,
    });
    match decision {
        Scale::Hold => {}
        Scale::Create(count) => {
            tracing::info!(
                scale_set = %name, namespace = %ns, count, replicas = ers.spec.replicas.unwrap_or(0),
                patch_id = ers.spec.patch_id, "creating runners"
            );
            let template = build_runner(&ers, &hash, proxy_secret.as_deref(), ctx.excluded_prefixes());
            create_runners(&runners, &template, count, &mut errors).await;
        }
        Scale::DeleteIdle(count) => {
            let exclude: BTreeSet<String> = stale.iter().map(|er| er.name_any()).collect();
            let candidates = scale_down_candidates(&b, &exclude);
            let removed = remover.remove_up_to(&candidates, count, &mut errors).await;
            let replicas = ers.spec.replicas.unwrap_or(0);
            if removed > 0 {
                tracing::info!(scale_set = %name, namespace = %ns, wanted = count, removed, replicas, "scaled down idle runners");
            } else {
                tracing::debug!(scale_set = %name, namespace = %ns, wanted = count, replicas, "no idle runner to scale down");
            }
        }
    }

    let mut action = Action::await_change();
    let wanted = desired_status(&b, ers.status.as_ref());
    let urgent = wanted.as_ref().is_some_and(|st| {
        ers.status.is_none() || ers.status.as_ref().and_then(|s| s.phase.as_deref()) != st.phase.as_deref()
    });
    match status_pace::decide(&ers.uid().unwrap_or_default(), wanted.as_ref(), urgent) {
        None => {}
        Some(Pace::After(wait, _)) => action = Action::requeue(wait),
        Some(Pace::Now) => match serde_json::to_value(&wanted) {
            Ok(value) => {
                if let Err(e) = patch_status(&sets, &name, value).await {
                    errors.push(e);
                }
            }
            Err(e) => errors.push(Error::Other(format!("encoding the status of {ns}/{name}: {e}"))),
        },
    }

    match errors.into_iter().next() {
        Some(e) => Err(e),
        None => Ok(action),
    }
}

/// Logs the error and retries after 5 s.
pub fn error_policy(ers: Arc<EphemeralRunnerSet>, err: &Error, _ctx: Arc<Context>) -> Action {
    tracing::warn!(
        scale_set = %ers.name_any(), namespace = %namespace_of(&*ers), reason = err.reason(), error = %err,
        "EphemeralRunnerSet reconcile failed"
    );
    requeue_secs(ERROR_REQUEUE_SECS)
}

/// Deletion (§4.3 step 2): runners cleaned up, then the proxy Secret, then the finalizer(s).
async fn finalize(
    ers: &EphemeralRunnerSet,
    ctx: &Context,
    sets: &Api<EphemeralRunnerSet>,
    runners: &Api<EphemeralRunner>,
) -> Result<Action> {
    let ns = namespace_of(ers);
    let name = ers.name_any();
    let ours = [fin::EPHEMERAL_RUNNER_SET, fin::EPHEMERAL_RUNNER_SET_LEGACY];
    if !ours.iter().any(|f| has_finalizer(ers, f)) {
        remove_gauges(ctx, ers);
        status_pace::forget(&ers.uid().unwrap_or_default());
        return Ok(Action::await_change());
    }

    let children = list_runners(runners, ers).await?;
    if !children.is_empty() {
        let b = Buckets::of(&children);
        let plan = cleanup_plan(&b);
        tracing::info!(
            scale_set = %name, namespace = %ns, delete = plan.delete.len(), remove = plan.remove.len(),
            waiting = plan.waiting, "cleaning up the runners of a deleted EphemeralRunnerSet"
        );
        let mut errors = Vec::new();
        delete_all(runners, &plan.delete, &mut errors).await;
        let remover = Remover::new(ctx, ers, runners.clone(), true);
        remover.remove_up_to(&plan.remove, usize::MAX, &mut errors).await;
        if let Some(e) = errors.into_iter().next() {
            return Err(e);
        }
        // Runner deletions drive the next pass; the requeue is only a safety net.
        return Ok(requeue_secs(DELETION_REQUEUE_SECS));
    }

    let secrets: Api<Secret> = Api::namespaced(ctx.client.clone(), &ns);
    let proxy_secret = names::runner_proxy_secret_name(&name, &ns);
    if delete_if_exists(&secrets, &proxy_secret).await? {
        tracing::debug!(scale_set = %name, namespace = %ns, secret = %proxy_secret, "deleted the runner proxy Secret");
    }
    remove_finalizers(sets, ers, &ours).await?;
    remove_gauges(ctx, ers);
    status_pace::forget(&ers.uid().unwrap_or_default());
    tracing::info!(scale_set = %name, namespace = %ns, "EphemeralRunnerSet cleaned up");
    Ok(Action::await_change())
}

/// Drops the gauges of a deleted ERS.
fn remove_gauges(ctx: &Context, ers: &EphemeralRunnerSet) {
    let labels = gauge_labels(ers);
    for gauge in [
        PENDING_EPHEMERAL_RUNNERS,
        RUNNING_EPHEMERAL_RUNNERS,
        FAILED_EPHEMERAL_RUNNERS,
    ] {
        ctx.metrics.remove(gauge, &labels);
    }
}

/// The EphemeralRunners controlled by `ers` (a consistent list of the namespace, filtered by uid).
async fn list_runners(api: &Api<EphemeralRunner>, ers: &EphemeralRunnerSet) -> Result<Vec<EphemeralRunner>> {
    let uid = ers.uid().unwrap_or_default();
    let list = api
        .list(&ListParams::default())
        .await
        .map_err(Error::kube(format!("list EphemeralRunners in {}", namespace_of(ers))))?;
    Ok(list.items.into_iter().filter(|er| is_controlled_by(er, &uid)).collect())
}

/// Creates or updates the runner proxy Secret when `ephemeralRunnerSpec.proxy` is set; returns its
/// name then.
async fn ensure_proxy_secret(ers: &EphemeralRunnerSet, ctx: &Context) -> Result<Option<String>> {
    let Some(proxy) = ers.spec.ephemeral_runner_spec.proxy.as_ref() else {
        return Ok(None);
    };
    let ns = namespace_of(ers);
    let name = names::runner_proxy_secret_name(&ers.name_any(), &ns);
    let env = resolve_proxy(&ctx.client, &ns, Some(proxy)).await?;
    let data = proxy_secret_data(&env);
    let labels = proxy_secret_labels(ers);
    let api: Api<Secret> = Api::namespaced(ctx.client.clone(), &ns);
    let existing = not_found_as_none(api.get(&name).await).map_err(Error::kube(format!("get Secret {ns}/{name}")))?;
    match existing {
        None => {
            let secret = Secret {
                metadata: ObjectMeta {
                    name: Some(name.clone()),
                    namespace: Some(ns.clone()),
                    labels: Some(labels),
                    owner_references: Some(vec![owner_reference(ers)]),
                    ..ObjectMeta::default()
                },
                data: Some(data),
                ..Secret::default()
            };
            match api.create(&post_params(), &secret).await {
                Ok(_) => {
                    tracing::info!(scale_set = %ers.name_any(), namespace = %ns, secret = %name, "created the runner proxy Secret")
                }
                // Created concurrently: the next pass compares it.
                Err(e) if is_already_exists(&e) => {}
                Err(e) => return Err(Error::kube(format!("create Secret {ns}/{name}"))(e)),
            }
        }
        Some(existing) => {
            if let Some(patch) = proxy_secret_patch(&existing, &data, &labels) {
                api.patch(&name, &patch_params(), &Patch::Merge(&patch))
                    .await
                    .map_err(Error::kube(format!("patch Secret {ns}/{name}")))?;
                tracing::info!(scale_set = %ers.name_any(), namespace = %ns, secret = %name, "updated the runner proxy Secret");
            }
        }
    }
    Ok(Some(name))
}

/// Creates `count` copies of `template` (generateName), `CONCURRENCY` at a time.
async fn create_runners(api: &Api<EphemeralRunner>, template: &EphemeralRunner, count: usize, errors: &mut Vec<Error>) {
    let ns = template.metadata.namespace.as_deref().unwrap_or_default();
    let scale_set = template
        .owner_references()
        .first()
        .map(|o| o.name.as_str())
        .unwrap_or_default();
    let pp = post_params();
    let results: Vec<_> = stream::iter(0..count)
        .map(|_| api.create(&pp, template))
        .buffer_unordered(CONCURRENCY)
        .collect()
        .await;
    let mut created = 0usize;
    for r in results {
        match r {
            Ok(er) => {
                created += 1;
                tracing::debug!(scale_set, namespace = ns, runner = %er.name_any(), "created EphemeralRunner");
            }
            Err(e) => errors.push(Error::kube(format!("create EphemeralRunner for {ns}/{scale_set}"))(e)),
        }
    }
    if created < count {
        tracing::warn!(
            scale_set,
            namespace = ns,
            wanted = count,
            created,
            "some EphemeralRunners could not be created"
        );
    }
}

/// Deletes `list` directly, `CONCURRENCY` at a time.
async fn delete_all(api: &Api<EphemeralRunner>, list: &[&EphemeralRunner], errors: &mut Vec<Error>) {
    // Names collected first: a borrowing closure kept across an await makes the future !Send
    // (rustc's higher-ranked lifetime limitation).
    let names: Vec<String> = list.iter().map(|er| er.name_any()).collect();
    let results: Vec<_> = stream::iter(names)
        .map(|name| async move { delete_if_exists(api, &name).await })
        .buffer_unordered(CONCURRENCY)
        .collect()
        .await;
    errors.extend(results.into_iter().filter_map(Result::err));
}

/// What happened to one runner.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Removal {
    Removed,
    Skipped,
}

/// Deregisters runners from GitHub and deletes their EphemeralRunners; the Actions client is built
/// only when a registered runner needs it.
struct Remover<'a> {
    ctx: &'a Context,
    ers: &'a EphemeralRunnerSet,
    runners: Api<EphemeralRunner>,
    secrets: Api<Secret>,
    client: OnceCell<Arc<ActionsClient>>,
    /// The ERS is being deleted: unusable credentials or an unreadable JIT Secret do not block.
    deleting_set: bool,
}

impl<'a> Remover<'a> {
    fn new(ctx: &'a Context, ers: &'a EphemeralRunnerSet, runners: Api<EphemeralRunner>, deleting_set: bool) -> Self {
        let secrets = Api::namespaced(ctx.client.clone(), &namespace_of(ers));
        Self {
            ctx,
            ers,
            runners,
            secrets,
            client: OnceCell::new(),
            deleting_set,
        }
    }

    async fn client(&self) -> Result<Arc<ActionsClient>> {
        let ns = namespace_of(self.ers);
        let spec = &self.ers.spec.ephemeral_runner_spec;
        self.client
            .get_or_try_init(|| async {
                let target = Target::for_runners(&ns, spec);
                self.ctx.github.client(&self.ctx.client, &target).await
            })
            .await
            .cloned()
    }

    async fn registration(&self, er: &EphemeralRunner) -> Result<Registration> {
        let id = er.runner_id();
        if id > 0 {
            return Ok(Registration::Registered(id));
        }
        let name = er.name_any();
        let secret = not_found_as_none(self.secrets.get(&name).await)
            .map_err(Error::kube(format!("get Secret {}/{name}", namespace_of(self.ers))))?;
        Ok(registration_from_secret(secret.as_ref()))
    }

    async fn delete(&self, name: &str) -> Result<Removal> {
        delete_if_exists(&self.runners, name).await?;
        Ok(Removal::Removed)
    }

    /// Deregisters (RemoveRunner) then deletes one runner. A busy runner (JobStillRunning) is
    /// skipped; a runner GitHub no longer knows is just deleted.
    async fn remove(&self, er: &EphemeralRunner) -> Result<Removal> {
        let name = er.name_any();
        let ns = namespace_of(self.ers);
        let id = match self.registration(er).await? {
            Registration::Registered(id) => id,
            Registration::Unregistered => {
                tracing::debug!(runner = %name, namespace = %ns, "runner never registered: deleting it directly");
                return self.delete(&name).await;
            }
            Registration::Unknown if self.deleting_set => return self.delete(&name).await,
            Registration::Unknown => {
                tracing::debug!(runner = %name, namespace = %ns, "JIT Secret has no readable runnerId: skipping");
                return Ok(Removal::Skipped);
            }
        };
        let client = match self.client().await {
            Ok(c) => c,
            Err(e @ (Error::MissingSecret { .. } | Error::InvalidSecret { .. })) if self.deleting_set => {
                tracing::warn!(
                    runner = %name, namespace = %ns, error = %e,
                    "no usable credentials: deleting the runner without deregistering it (its finalizer retries)"
                );
                return self.delete(&name).await;
            }
            Err(e) => return Err(e),
        };
        if let Err(e) = self
            .ctx
            .github
            .call(&format!("remove runner {id} ({ns}/{name})"), client.remove_runner(id))
            .await
        {
            match classify_remove_error(&e) {
                RemoveFailure::Gone => {}
                RemoveFailure::JobStillRunning => {
                    tracing::debug!(runner = %name, namespace = %ns, runner_id = id, "runner is busy: kept");
                    return Ok(Removal::Skipped);
                }
                RemoveFailure::CannotDeregister | RemoveFailure::Retry => return Err(e),
            }
        }
        tracing::debug!(runner = %name, namespace = %ns, runner_id = id, "runner deregistered: deleting it");
        self.delete(&name).await
    }

    /// Removes candidates in order until `count` are removed, `CONCURRENCY` at a time (never more
    /// in flight than still wanted). Errors are collected; returns how many were removed.
    async fn remove_up_to(&self, candidates: &[&EphemeralRunner], count: usize, errors: &mut Vec<Error>) -> usize {
        let mut removed = 0usize;
        let mut rest = candidates.iter();
        while removed < count {
            let batch: Vec<&&EphemeralRunner> = rest.by_ref().take((count - removed).min(CONCURRENCY)).collect();
            if batch.is_empty() {
                break;
            }
            for r in join_all(batch.into_iter().map(|er| self.remove(er))).await {
                match r {
                    Ok(Removal::Removed) => removed += 1,
                    Ok(Removal::Skipped) => {}
                    Err(e) => errors.push(e),
                }
            }
        }
        removed
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{OwnerReference, Time};
    use k8s_openapi::jiff::Timestamp;
    use rarc_crd::{EphemeralRunnerSetSpec, EphemeralRunnerStatus, ProxyConfig, ProxyServerConfig};

    const UID: &str = "ers-uid";

    /// The wiring needs a `Send + 'static` future (kube's Controller); this fails to compile if not.
    #[allow(dead_code)]
    fn reconcile_future_is_send(
        ers: Arc<EphemeralRunnerSet>,
        ctx: Arc<Context>,
    ) -> impl std::future::Future<Output = Result<Action>> + Send + 'static {
        reconcile(ers, ctx)
    }

    struct R {
        name: &'static str,
        phase: &'static str,
        created: i64,
        patch_id: Option<&'static str>,
        hash: Option<&'static str>,
        job: bool,
        runner_id: i64,
        deleting: bool,
    }

    impl R {
        fn new(name: &'static str, phase: &'static str, created: i64) -> Self {
            Self {
                name,
                phase,
                created,
                patch_id: None,
                hash: Some("h"),
                job: false,
                runner_id: 1,
                deleting: false,
            }
        }
        fn build(self) -> EphemeralRunner {
            let mut annotations = BTreeMap::new();
            if let Some(p) = self.patch_id {
                annotations.insert(ann::PATCH_ID.to_owned(), p.to_owned());
            }
            if let Some(h) = self.hash {
                annotations.insert(ann::INTEGRITY_HASH.to_owned(), h.to_owned());
            }
            EphemeralRunner {
                metadata: ObjectMeta {
                    name: Some(self.name.to_owned()),
                    namespace: Some("ns".into()),
                    creation_timestamp: Some(Time(Timestamp::from_second(self.created).expect("ts"))),
                    deletion_timestamp: self.deleting.then(|| Time(Timestamp::from_second(9_999).expect("ts"))),
                    annotations: Some(annotations),
                    owner_references: Some(vec![OwnerReference {
                        controller: Some(true),
                        uid: UID.into(),
                        ..OwnerReference::default()
                    }]),
                    ..ObjectMeta::default()
                },
                spec: EphemeralRunnerSpec::default(),
                status: Some(EphemeralRunnerStatus {
                    phase: (!self.phase.is_empty()).then(|| self.phase.to_owned()),
                    job_id: self.job.then(|| "job-1".to_owned()),
                    runner_id: Some(self.runner_id),
                    ..EphemeralRunnerStatus::default()
                }),
            }
        }
    }

    fn names_of(list: &[&EphemeralRunner]) -> Vec<String> {
        list.iter().map(|er| er.name_any()).collect()
    }

    fn ers() -> EphemeralRunnerSet {
        let mut ers = EphemeralRunnerSet::new(
            "set",
            EphemeralRunnerSetSpec {
                replicas: Some(3),
                patch_id: 7,
                ephemeral_runner_spec: EphemeralRunnerSpec {
                    github_config_url: "https://github.com/my-org/my-repo".into(),
                    github_config_secret: "gh".into(),
                    runner_scale_set_id: 1,
                    ..EphemeralRunnerSpec::default()
                },
                ephemeral_runner_metadata: Some(ResourceMeta {
                    labels: Some(
                        [
                            (lbl::COMPONENT.to_owned(), "mine".to_owned()),
                            ("team".to_owned(), "a".to_owned()),
                        ]
                        .into(),
                    ),
                    annotations: Some(
                        [
                            (ann::PATCH_ID.to_owned(), "99".to_owned()),
                            ("note".to_owned(), "n".to_owned()),
                        ]
                        .into(),
                    ),
                }),
            },
        );
        ers.metadata.namespace = Some("arc-runners".into());
        ers.metadata.uid = Some(UID.into());
        ers.metadata.labels = Some(
            [
                (lbl::COMPONENT.to_owned(), lbl::COMPONENT_RUNNER_SET.to_owned()),
                (lbl::SCALE_SET_NAME.to_owned(), "arc".to_owned()),
                ("argocd.argoproj.io/instance".to_owned(), "x".to_owned()),
            ]
            .into(),
        );
        ers.metadata.annotations = Some([(ann::RUNNER_GROUP_NAME.to_owned(), "default".to_owned())].into());
        ers
    }

    fn input(replicas: Option<i32>, patch_id: i32, latest: Option<i64>, total: usize) -> ScaleInput {
        ScaleInput {
            replicas,
            patch_id,
            latest_patch_id: latest,
            total,
            replaced: 0,
            creates_allowed: true,
        }
    }

    #[test]
    fn buckets_by_phase_with_deletion_first_and_empty_phase_pending() {
        let runners = vec![
            R::new("a", "", 1).build(),
            R::new("b", phase::PENDING, 1).build(),
            R::new("c", phase::RUNNING, 1).build(),
            R::new("d", phase::SUCCEEDED, 1).build(),
            R::new("e", phase::FAILED, 1).build(),
            R::new("f", phase::OUTDATED, 1).build(),
            R {
                deleting: true,
                ..R::new("g", phase::RUNNING, 1)
            }
            .build(),
            R::new("h", "Weird", 1).build(),
        ];
        let b = Buckets::of(&runners);
        assert_eq!(names_of(&b.pending), ["a", "b", "h"]);
        assert_eq!(names_of(&b.running), ["c"]);
        assert_eq!(names_of(&b.finished), ["d"]);
        assert_eq!(names_of(&b.failed), ["e"]);
        assert_eq!(names_of(&b.outdated), ["f"]);
        assert_eq!(names_of(&b.deleting), ["g"]);
        assert_eq!(b.total(), 5);
    }

    #[test]
    fn latest_patch_id_is_the_numeric_max_including_deleting_runners() {
        assert_eq!(latest_patch_id(&[]), None);
        let runners = vec![
            R {
                patch_id: Some("3"),
                ..R::new("a", "", 1)
            }
            .build(),
            R {
                patch_id: Some("12"),
                deleting: true,
                ..R::new("b", "", 1)
            }
            .build(),
            R {
                patch_id: Some("x"),
                ..R::new("c", "", 1)
            }
            .build(),
            R::new("d", "", 1).build(),
        ];
        assert_eq!(latest_patch_id(&runners), Some(12));
    }

    #[test]
    fn t20_new_patch_creates_the_shortfall() {
        assert_eq!(scale_decision(input(Some(3), 1, None, 0)), Scale::Create(3));
        assert_eq!(scale_decision(input(Some(3), 1, Some(0), 1)), Scale::Create(2));
    }

    #[test]
    fn t21_same_patch_id_is_not_reevaluated() {
        assert_eq!(scale_decision(input(Some(3), 1, Some(1), 2)), Scale::Hold);
        // A newer patch id is.
        assert_eq!(scale_decision(input(Some(3), 2, Some(1), 2)), Scale::Create(1));
    }

    #[test]
    fn t22_positive_patch_never_shrinks_zero_converges() {
        assert_eq!(scale_decision(input(Some(1), 2, Some(1), 3)), Scale::Hold);
        assert_eq!(scale_decision(input(Some(1), 0, Some(2), 3)), Scale::DeleteIdle(2));
        // patchID 0 is evaluated even when the runners carry patch id 0.
        assert_eq!(scale_decision(input(Some(1), 0, Some(0), 3)), Scale::DeleteIdle(2));
        assert_eq!(scale_decision(input(Some(3), 0, Some(0), 1)), Scale::Create(2));
        assert_eq!(scale_decision(input(Some(3), 0, Some(0), 3)), Scale::Hold);
    }

    #[test]
    fn t24_failed_runners_occupy_replicas() {
        let runners = vec![R::new("a", phase::FAILED, 1).build()];
        let b = Buckets::of(&runners);
        assert_eq!(scale_decision(input(Some(2), 5, Some(4), b.total())), Scale::Create(1));
    }

    #[test]
    fn t25_absent_replicas_is_zero() {
        assert_eq!(scale_decision(input(None, 0, Some(3), 2)), Scale::DeleteIdle(2));
        assert_eq!(scale_decision(input(None, 4, Some(3), 2)), Scale::Hold);
        assert_eq!(scale_decision(input(None, 4, None, 0)), Scale::Hold);
        assert_eq!(scale_decision(input(Some(-1), 0, None, 0)), Scale::Hold);
    }

    #[test]
    fn outdated_sets_create_nothing_but_still_shrink() {
        let blocked = ScaleInput {
            creates_allowed: false,
            ..input(Some(3), 1, None, 0)
        };
        assert_eq!(scale_decision(blocked), Scale::Hold);
        let shrink = ScaleInput {
            creates_allowed: false,
            ..input(Some(0), 0, None, 2)
        };
        assert_eq!(scale_decision(shrink), Scale::DeleteIdle(2));
    }

    #[test]
    fn runners_removed_for_a_roll_out_are_replaced_without_a_new_patch() {
        // Patch 4 already handled (latest 4); 2 of 3 runners were stale and removed.
        let i = ScaleInput {
            replaced: 2,
            ..input(Some(3), 4, Some(4), 1)
        };
        assert_eq!(scale_decision(i), Scale::Create(2));
        // Never more than the shortfall.
        let i = ScaleInput {
            replaced: 2,
            ..input(Some(2), 4, Some(4), 1)
        };
        assert_eq!(scale_decision(i), Scale::Create(1));
        // Not while outdated.
        let i = ScaleInput {
            replaced: 2,
            creates_allowed: false,
            ..input(Some(3), 4, Some(4), 1)
        };
        assert_eq!(scale_decision(i), Scale::Hold);
    }

    #[test]
    fn t23_scale_down_order_pending_then_running_oldest_first_never_busy() {
        let runners = vec![
            R::new("run-new", phase::RUNNING, 30).build(),
            R::new("run-old", phase::RUNNING, 10).build(),
            R {
                job: true,
                ..R::new("run-busy", phase::RUNNING, 1)
            }
            .build(),
            R::new("pend-new", phase::PENDING, 20).build(),
            R {
                runner_id: 0,
                ..R::new("pend-unregistered", "", 15)
            }
            .build(),
            R::new("pend-old", phase::PENDING, 5).build(),
            R::new("failed", phase::FAILED, 1).build(),
            R {
                deleting: true,
                ..R::new("deleting", phase::RUNNING, 1)
            }
            .build(),
        ];
        let b = Buckets::of(&runners);
        let c = scale_down_candidates(&b, &BTreeSet::new());
        assert_eq!(
            names_of(&c),
            ["pend-old", "pend-unregistered", "pend-new", "run-old", "run-new"]
        );
        let exclude: BTreeSet<String> = ["pend-old".to_owned()].into();
        assert_eq!(names_of(&scale_down_candidates(&b, &exclude))[0], "pend-unregistered");
    }

    #[test]
    fn stale_runners_are_idle_ones_of_another_or_no_hash() {
        let runners = vec![
            R {
                hash: Some("old"),
                ..R::new("run-old", phase::RUNNING, 1)
            }
            .build(),
            R {
                hash: Some("old"),
                job: true,
                ..R::new("busy-old", phase::RUNNING, 1)
            }
            .build(),
            R {
                hash: None,
                ..R::new("pend-arc", "", 2)
            }
            .build(),
            R {
                hash: Some("old"),
                ..R::new("failed-old", phase::FAILED, 3)
            }
            .build(),
            R::new("current", phase::RUNNING, 1).build(),
            R {
                hash: Some("old"),
                ..R::new("outdated", phase::OUTDATED, 1)
            }
            .build(),
        ];
        let b = Buckets::of(&runners);
        assert_eq!(names_of(&stale_runners(&b, "h")), ["pend-arc", "failed-old", "run-old"]);
    }

    #[test]
    fn cleanup_plan_of_a_deleted_set() {
        let runners = vec![
            R::new("pend", "", 1).build(),
            R::new("idle", phase::RUNNING, 1).build(),
            R {
                job: true,
                ..R::new("busy", phase::RUNNING, 1)
            }
            .build(),
            R::new("failed", phase::FAILED, 1).build(),
            R::new("outdated", phase::OUTDATED, 1).build(),
            R::new("done", phase::SUCCEEDED, 1).build(),
            R {
                deleting: true,
                ..R::new("going", "", 1)
            }
            .build(),
        ];
        let b = Buckets::of(&runners);
        let plan = cleanup_plan(&b);
        assert_eq!(names_of(&plan.delete), ["done", "failed", "outdated"]);
        assert_eq!(names_of(&plan.remove), ["pend", "idle"]);
        assert_eq!(plan.waiting, 2);
    }

    #[test]
    fn finalizers_added_and_legacy_replaced_in_one_list() {
        let s = |v: &[&str]| v.iter().map(|x| (*x).to_owned()).collect::<Vec<_>>();
        assert_eq!(live_finalizers(&[]), Some(s(&[fin::EPHEMERAL_RUNNER_SET])));
        assert_eq!(live_finalizers(&s(&[fin::EPHEMERAL_RUNNER_SET])), None);
        assert_eq!(
            live_finalizers(&s(&["other", fin::EPHEMERAL_RUNNER_SET_LEGACY])),
            Some(s(&["other", fin::EPHEMERAL_RUNNER_SET]))
        );
        assert_eq!(
            live_finalizers(&s(&[fin::EPHEMERAL_RUNNER_SET_LEGACY, fin::EPHEMERAL_RUNNER_SET])),
            Some(s(&[fin::EPHEMERAL_RUNNER_SET]))
        );
    }

    #[test]
    fn t26_status_counts_phase_and_diff() {
        let runners = vec![
            R::new("a", "", 1).build(),
            R::new("b", phase::RUNNING, 1).build(),
            R::new("c", phase::FAILED, 1).build(),
            R {
                deleting: true,
                ..R::new("d", "", 1)
            }
            .build(),
        ];
        let b = Buckets::of(&runners);
        let fresh = desired_status(&b, None).expect("fresh ERS gets a status");
        assert_eq!(fresh.current_replicas, 3);
        assert_eq!(
            (
                fresh.pending_ephemeral_runners,
                fresh.running_ephemeral_runners,
                fresh.failed_ephemeral_runners
            ),
            (Some(1), Some(1), Some(1))
        );
        assert_eq!(fresh.phase.as_deref(), Some(phase::RUNNING));
        assert_eq!(desired_status(&b, Some(&fresh)), None);
        // currentReplicas is always in the patch body, even at 0.
        let empty = Buckets::of(&[]);
        let zero = serde_json::to_value(desired_status(&empty, None).expect("status")).expect("json");
        assert_eq!(zero["currentReplicas"], 0);
        // Outdated sticks once set, and is set by any outdated runner.
        let outdated = EphemeralRunnerSetStatus {
            phase: Some(phase::OUTDATED.into()),
            ..fresh.clone()
        };
        assert_eq!(desired_status(&b, Some(&outdated)), None);
        let with_outdated = vec![R::new("o", phase::OUTDATED, 1).build()];
        let s = desired_status(&Buckets::of(&with_outdated), Some(&fresh)).expect("changed");
        assert_eq!((s.phase.as_deref(), s.current_replicas), (Some(phase::OUTDATED), 0));
    }

    #[test]
    fn new_runner_object() {
        let mut set = ers();
        let prefixes = vec!["argocd.argoproj.io/".to_owned()];
        let er = build_runner(&set, "hash1", Some("set-754b578d-runner-proxy"), &prefixes);
        assert_eq!(er.metadata.generate_name.as_deref(), Some("set-runner-"));
        assert_eq!(er.metadata.name, None);
        assert_eq!(er.metadata.namespace.as_deref(), Some("arc-runners"));
        assert_eq!(
            er.finalizers(),
            [fin::EPHEMERAL_RUNNER, fin::EPHEMERAL_RUNNER_REGISTRATION]
        );
        let owner = &er.owner_references()[0];
        assert_eq!(
            (owner.kind.as_str(), owner.name.as_str(), owner.uid.as_str()),
            ("EphemeralRunnerSet", "set", UID)
        );
        assert_eq!(owner.controller, Some(true));
        let labels = er.labels();
        assert_eq!(labels[lbl::COMPONENT], lbl::COMPONENT_RUNNER);
        assert_eq!(labels[lbl::SCALE_SET_NAME], "arc");
        assert_eq!(labels["team"], "a");
        assert!(!labels.contains_key("argocd.argoproj.io/instance"));
        let annotations = er.annotations();
        assert_eq!(annotations[ann::PATCH_ID], "7");
        assert_eq!(annotations[ann::INTEGRITY_HASH], "hash1");
        assert_eq!(annotations[ann::RUNNER_GROUP_NAME], "default");
        assert_eq!(annotations["note"], "n");
        assert_eq!(er.spec.github_config_secret, "gh");
        // No proxy: no proxySecretRef.
        assert_eq!(er.spec.proxy_secret_ref, None);
        set.spec.ephemeral_runner_spec.proxy = Some(ProxyConfig::default());
        let er = build_runner(&set, "hash1", Some("set-754b578d-runner-proxy"), &prefixes);
        assert_eq!(er.spec.proxy_secret_ref.as_deref(), Some("set-754b578d-runner-proxy"));
    }

    #[test]
    fn spec_hash_tracks_the_runner_spec_only() {
        let set = ers();
        let h = runner_spec_hash(&set.spec.ephemeral_runner_spec);
        assert_eq!(h, runner_spec_hash(&set.clone().spec.ephemeral_runner_spec));
        let mut other = set.spec.ephemeral_runner_spec.clone();
        other.proxy = Some(ProxyConfig {
            http: Some(ProxyServerConfig {
                url: Some("http://p".into()),
                credential_secret_ref: None,
            }),
            ..ProxyConfig::default()
        });
        assert_ne!(h, runner_spec_hash(&other));
        let r = R {
            hash: Some("x"),
            ..R::new("a", "", 1)
        }
        .build();
        assert!(is_stale(&r, &h));
        assert!(!is_stale(
            &R {
                hash: Some("x"),
                ..R::new("a", "", 1)
            }
            .build(),
            "x"
        ));
    }

    #[test]
    fn registration_from_the_jit_secret() {
        let secret = |v: Option<&str>| Secret {
            data: v.map(|v| [(jit_keys::RUNNER_ID.to_owned(), ByteString(v.as_bytes().to_vec()))].into()),
            ..Secret::default()
        };
        assert_eq!(registration_from_secret(None), Registration::Unregistered);
        assert_eq!(
            registration_from_secret(Some(&secret(Some("42")))),
            Registration::Registered(42)
        );
        assert_eq!(
            registration_from_secret(Some(&secret(Some("0")))),
            Registration::Unregistered
        );
        assert_eq!(
            registration_from_secret(Some(&secret(Some("x")))),
            Registration::Unknown
        );
        assert_eq!(registration_from_secret(Some(&secret(None))), Registration::Unknown);
    }

    #[test]
    fn proxy_secret_data_labels_and_drift() {
        let env = ProxyEnv {
            http_proxy: Some("http://u:p@proxy:3128".into()),
            https_proxy: None,
            no_proxy: Some("a,b".into()),
        };
        let data = proxy_secret_data(&env);
        assert_eq!(data.keys().collect::<Vec<_>>(), ["http_proxy", "no_proxy"]);
        let set = ers();
        let labels = proxy_secret_labels(&set);
        assert_eq!(labels.len(), 2);
        assert_eq!(
            (
                labels[lbl::SCALE_SET_NAME].as_str(),
                labels[lbl::SCALE_SET_NAMESPACE].as_str()
            ),
            ("arc", "arc-runners")
        );
        let mut existing = Secret {
            metadata: ObjectMeta {
                labels: Some(labels.clone()),
                ..ObjectMeta::default()
            },
            data: Some(data.clone()),
            ..Secret::default()
        };
        assert_eq!(proxy_secret_patch(&existing, &data, &labels), None);
        existing.data = Some([("https_proxy".to_owned(), ByteString(b"old".to_vec()))].into());
        let patch = proxy_secret_patch(&existing, &data, &labels).expect("drift");
        assert_eq!(patch["data"]["https_proxy"], Value::Null);
        assert_eq!(patch["data"]["no_proxy"], "YSxi");
        assert_eq!(patch["metadata"]["labels"][lbl::SCALE_SET_NAME], "arc");
    }

    #[test]
    fn gauge_labels_and_ownership() {
        let set = ers();
        let labels = gauge_labels(&set);
        let keys: Vec<&str> = labels.iter().map(|(k, _)| *k).collect();
        assert_eq!(keys, ["name", "namespace", "repository", "organization", "enterprise"]);
        let values: Vec<&str> = labels.iter().map(|(_, v)| v.as_str()).collect();
        assert_eq!(values, ["arc", "arc-runners", "my-repo", "my-org", ""]);
        let er = R::new("a", "", 1).build();
        assert!(is_controlled_by(&er, UID));
        assert!(!is_controlled_by(&er, "other"));
    }
}
