//! The AutoscalingRunnerSet reconciler (arc-controller.md §4.1/§4.2): registers the scale set on
//! GitHub, keeps ONE EphemeralRunnerSet named like the ARS (updated in place) and one
//! AutoscalingListener, mirrors the runner counts, and cleans everything up on deletion.
//!
//! Deliberate differences from ARC (docs/compat.md "Controller"):
//! - the version gate never deletes an ARS (`--version-mismatch-policy`, default `refuse` with a
//!   status condition, and ARC 0.14 labels count as compatible);
//! - missing or bad credentials set a `Ready=False` condition and a Warning event before anything
//!   is created;
//! - the stored scale set id is revalidated (at start, when the listener is missing, and every
//!   few minutes) and re-registered on 404;
//! - runner deprecation (exit 7) never deletes the scale set: the listener is stopped and the
//!   runner set pinned to 0 until the spec changes;
//! - ERS left by ARC 0.14.2 (`generateName`) are drained and deleted, the ERS `<ars>` replaces them.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{LocalObjectReference, Secret, ServiceAccount};
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use k8s_openapi::jiff::Timestamp;
use kube::api::{ListParams, ObjectMeta, Patch, PatchParams, PostParams};
use kube::runtime::controller::Action;
use kube::{Api, Resource, ResourceExt};
use rarc_actions::ActionsClient;
use rarc_actions::types::{Label, RunnerScaleSet, RunnerSetting};
use rarc_crd::keys::{annotations as a, finalizers as f, labels as l};
use rarc_crd::{
    AutoscalingListener, AutoscalingListenerSpec, AutoscalingRunnerSet, AutoscalingRunnerSetSpec, EphemeralRunnerSet,
    EphemeralRunnerSetSpec, EphemeralRunnerSpec, ResourceMeta, names,
};
use serde_json::json;

use super::{
    add_finalizers, delete_if_exists, has_finalizer, hash_of, namespace_of, owner_reference, patch_status,
    remove_finalizers,
};

use crate::context::Context;
use crate::error::{Error, Result, not_found_as_none};
use crate::github::Target;
use crate::labels::{Labels, exclude, merge, url_labels};

/// The ARC chart version whose labels this controller accepts (the version gate).
pub const COMPATIBLE_ARC_VERSION: &str = "0.14";
/// The condition type rarc adds to the ARS status.
pub const READY: &str = "Ready";
/// How often a stored scale set id is checked against GitHub.
const REVALIDATE_EVERY: Duration = Duration::from_secs(300);

/// When each ARS (uid) last had its scale set id confirmed by GitHub.
static VALIDATED: Mutex<Option<HashMap<String, (i64, Instant)>>> = Mutex::new(None);

fn validated_recently(uid: &str, id: i64) -> bool {
    let map = VALIDATED.lock().expect("validated ids");
    map.as_ref()
        .and_then(|m| m.get(uid))
        .is_some_and(|(v, at)| *v == id && at.elapsed() < REVALIDATE_EVERY)
}

fn mark_validated(uid: &str, id: i64) {
    VALIDATED
        .lock()
        .expect("validated ids")
        .get_or_insert_with(HashMap::new)
        .insert(uid.to_owned(), (id, Instant::now()));
}

/// Scale sets this process deleted (ARS uid → id): a reconcile of a stale cached copy of the
/// ARS must not delete the scale set a second time.
static DELETED: Mutex<Option<HashMap<String, i64>>> = Mutex::new(None);

fn recently_deleted(uid: &str, id: i64) -> bool {
    DELETED.lock().expect("deleted ids").as_ref().and_then(|m| m.get(uid)) == Some(&id)
}

fn mark_deleted(uid: &str, id: i64) {
    let mut map = DELETED.lock().expect("deleted ids");
    let map = map.get_or_insert_with(HashMap::new);
    if map.len() > 10_000 {
        map.clear();
    }
    map.insert(uid.to_owned(), id);
}

/// Forgets every confirmed scale set id, so each is checked against GitHub again on its next
/// reconcile. Called when the controllers start (also in-process, and on a new leader): the stored
/// ids are revalidated at start, not only every [`REVALIDATE_EVERY`].
pub fn forget_all_validations() {
    if let Some(m) = VALIDATED.lock().expect("validated ids").as_mut() {
        m.clear();
    }
}

fn forget_validated(uid: &str) {
    if let Some(m) = VALIDATED.lock().expect("validated ids").as_mut() {
        m.remove(uid);
    }
}

// ---------------------------------------------------------------------------------------------
// Pure decisions

/// What the version gate says about an ARS's `app.kubernetes.io/version` label.
#[derive(Debug, PartialEq, Eq)]
pub enum VersionGate {
    Allowed,
    Mismatch(String),
}

fn major_minor(v: &str) -> Option<(u64, u64)> {
    let v = v.trim_start_matches('v');
    let mut parts = v.split(['.', '-', '+']);
    Some((parts.next()?.parse().ok()?, parts.next()?.parse().ok()?))
}

/// Allowed: no label (hand-written manifests), `dev`/`canary-*` builds, our own version, or a
/// version with the same major.minor as ours or as the ARC release we are compatible with.
pub fn version_gate(label: Option<&str>, build: &str) -> VersionGate {
    let Some(label) = label.filter(|v| !v.is_empty()) else {
        return VersionGate::Allowed;
    };
    if build == "dev" || build.starts_with("canary-") || label == build {
        return VersionGate::Allowed;
    }
    let mm = major_minor(label);
    if mm.is_some() && (mm == major_minor(build) || mm == major_minor(COMPATIBLE_ARC_VERSION)) {
        return VersionGate::Allowed;
    }
    VersionGate::Mismatch(format!(
        "label app.kubernetes.io/version={label} does not match controller {build} (or ARC {COMPATIBLE_ARC_VERSION}.x)"
    ))
}

/// The stored scale set id, if the annotation is a positive number.
pub fn stored_scale_set_id(ars: &AutoscalingRunnerSet) -> Option<i64> {
    ars.annotations()
        .get(a::RUNNER_SCALE_SET_ID)
        .and_then(|v| v.trim().parse::<i64>().ok())
        .filter(|id| *id > 0)
}

/// The GitHub scale set name: `runnerScaleSetName`, else the ARS name.
pub fn scale_set_name(ars: &AutoscalingRunnerSet) -> String {
    ars.spec
        .runner_scale_set_name
        .clone()
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| ars.name_any())
}

/// Labels sent at creation: the name first, then the extra labels, deduplicated.
pub fn scale_set_labels(name: &str, extra: &[String]) -> Vec<String> {
    let mut out = vec![name.to_owned()];
    for l in extra {
        if !l.is_empty() && !out.contains(l) {
            out.push(l.clone());
        }
    }
    out
}

fn config_url(spec: &AutoscalingRunnerSetSpec) -> String {
    spec.github_config_url
        .clone()
        .unwrap_or_default()
        .trim_end_matches('/')
        .to_owned()
}

/// The AutoscalingListener's name for this ARS.
pub fn listener_name(ars: &AutoscalingRunnerSet) -> String {
    names::listener_name(
        &ars.name_any(),
        &ars.namespace().unwrap_or_default(),
        ars.spec.runner_group.as_deref().unwrap_or(""),
        &config_url(&ars.spec),
    )
}

/// Labels of an object built from the ARS (§3.2): the ARS labels overwritten by the reserved
/// keys (`component` given), the user's `extra` under them, `prefixes` excluded.
fn child_labels(
    ars: &AutoscalingRunnerSet,
    component: &str,
    extra: &Option<ResourceMeta>,
    prefixes: &[String],
) -> Labels {
    let mut reserved: Labels = [
        (l::PART_OF, l::PART_OF_SCALE_SET.to_owned()),
        (l::COMPONENT, component.to_owned()),
        (l::SCALE_SET_NAME, ars.name_any()),
        (l::SCALE_SET_NAMESPACE, ars.namespace().unwrap_or_default()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    if let Some(v) = ars.labels().get(l::VERSION) {
        reserved.insert(l::VERSION.into(), v.clone());
    }
    reserved.extend(url_labels(&config_url(&ars.spec)));
    merge(ars.labels(), reserved, &ResourceMeta::labels(extra), prefixes)
}

/// The ERS labels (§3.2 ARS → ERS).
pub fn runner_set_labels(ars: &AutoscalingRunnerSet, prefixes: &[String]) -> Labels {
    child_labels(
        ars,
        l::COMPONENT_RUNNER_SET,
        &ars.spec.ephemeral_runner_set_metadata,
        prefixes,
    )
}

/// The ERS spec's runner template, built from the ARS.
pub fn runner_spec(ars: &AutoscalingRunnerSet, scale_set_id: i64) -> EphemeralRunnerSpec {
    let s = &ars.spec;
    EphemeralRunnerSpec {
        github_config_url: config_url(s),
        github_config_secret: s.github_config_secret.clone().unwrap_or_default(),
        runner_scale_set_id: scale_set_id,
        proxy: s.proxy.clone(),
        proxy_secret_ref: None,
        github_server_tls: s.github_server_tls.clone(),
        vault_config: s.vault_config.clone(),
        ephemeral_runner_config_secret_metadata: s.ephemeral_runner_config_secret_metadata.clone(),
        pod_template: s.template.clone().unwrap_or_default(),
    }
}

/// The ERS annotations (§3.3).
fn runner_set_annotations(ars: &AutoscalingRunnerSet, spec_hash: &str) -> BTreeMap<String, String> {
    let mut out = ResourceMeta::annotations(&ars.spec.ephemeral_runner_set_metadata);
    for key in [a::RUNNER_GROUP_NAME, a::RUNNER_SCALE_SET_NAME] {
        if let Some(v) = ars.annotations().get(key) {
            out.insert(key.into(), v.clone());
        }
    }
    out.insert(a::RUNNER_SPEC_HASH.into(), spec_hash.to_owned());
    out
}

/// The AL labels (§3.2 ARS → AL).
fn listener_labels(ars: &AutoscalingRunnerSet, prefixes: &[String]) -> Labels {
    child_labels(ars, l::COMPONENT_LISTENER, &ars.spec.autoscaling_listener, prefixes)
}

/// The desired AutoscalingListener. Its `integrity-hash` covers the spec, labels and the runner
/// spec hash, so any difference (min/max, image, template, runner spec) recreates it.
pub fn desired_listener(
    ars: &AutoscalingRunnerSet,
    scale_set_id: i64,
    controller_namespace: &str,
    image: &str,
    pull_secrets: &[String],
    runner_spec_hash: &str,
    prefixes: &[String],
) -> AutoscalingListener {
    let s = &ars.spec;
    let spec = AutoscalingListenerSpec {
        github_config_url: Some(config_url(s)),
        github_config_secret: s.github_config_secret.clone(),
        runner_scale_set_id: scale_set_id,
        autoscaling_runner_set_namespace: ars.namespace(),
        autoscaling_runner_set_name: Some(ars.name_any()),
        ephemeral_runner_set_name: Some(ars.name_any()),
        max_runners: s.max_runners.unwrap_or(i32::MAX).max(0),
        min_runners: s.min_runners.unwrap_or(0).max(0),
        image: Some(image.to_owned()),
        image_pull_secrets: (!pull_secrets.is_empty()).then(|| {
            pull_secrets
                .iter()
                .map(|n| LocalObjectReference { name: n.clone() })
                .collect()
        }),
        proxy: s.proxy.clone(),
        github_server_tls: s.github_server_tls.clone(),
        vault_config: s.vault_config.clone(),
        metrics: s.listener_metrics.clone(),
        template: s.listener_template.clone(),
        config_secret_metadata: s.listener_config_secret_metadata.clone(),
        service_account_metadata: s.listener_service_account_metadata.clone(),
        role_metadata: s.listener_role_metadata.clone(),
        role_binding_metadata: s.listener_role_binding_metadata.clone(),
    };
    let labels = listener_labels(ars, prefixes);
    let mut annotations = ResourceMeta::annotations(&s.autoscaling_listener);
    annotations.insert(a::RUNNER_SPEC_HASH.into(), runner_spec_hash.to_owned());
    if let Some(v) = ars.annotations().get(a::VALUES_HASH) {
        annotations.insert(a::VALUES_HASH.into(), v.clone());
    }
    let integrity = hash_of(&(&spec, &labels, &annotations));
    annotations.insert(a::INTEGRITY_HASH.into(), integrity);
    AutoscalingListener {
        metadata: ObjectMeta {
            name: Some(listener_name(ars)),
            namespace: Some(controller_namespace.to_owned()),
            labels: Some(labels),
            annotations: Some(annotations),
            ..Default::default()
        },
        spec,
        status: None,
    }
}

/// The ARS status from the ERS counts (phase `Running`, or `Outdated`).
pub fn desired_status(ers: Option<&EphemeralRunnerSet>, outdated: bool) -> serde_json::Value {
    let st = ers.and_then(|e| e.status.clone()).unwrap_or_default();
    json!({
        "phase": if outdated { "Outdated" } else { "Running" },
        "currentRunners": st.current_replicas,
        "pendingEphemeralRunners": st.pending_ephemeral_runners.unwrap_or(0),
        "runningEphemeralRunners": st.running_ephemeral_runners.unwrap_or(0),
        "failedEphemeralRunners": st.failed_ephemeral_runners.unwrap_or(0),
    })
}

/// The `Ready` condition, keeping `lastTransitionTime` when the status does not change.
pub fn ready_condition(
    current: Option<&[Condition]>,
    ok: bool,
    reason: &str,
    message: &str,
    generation: Option<i64>,
) -> Condition {
    let status = if ok { "True" } else { "False" };
    let previous = current.and_then(|c| c.iter().find(|c| c.type_ == READY));
    let last_transition_time = match previous {
        Some(p) if p.status == status => p.last_transition_time.clone(),
        _ => Time(Timestamp::now()),
    };
    Condition {
        type_: READY.into(),
        status: status.into(),
        reason: reason.into(),
        message: message.into(),
        observed_generation: generation,
        last_transition_time,
    }
}

fn condition_differs(current: Option<&[Condition]>, wanted: &Condition) -> bool {
    match current.and_then(|c| c.iter().find(|c| c.type_ == READY)) {
        Some(c) => c.status != wanted.status || c.reason != wanted.reason || c.message != wanted.message,
        None => true,
    }
}

/// The ERS spec differs from the desired one in something the runners are built from.
fn runner_set_differs(ers: &EphemeralRunnerSet, spec: &EphemeralRunnerSpec, meta: &Option<ResourceMeta>) -> bool {
    serde_json::to_value(&ers.spec.ephemeral_runner_spec).ok() != serde_json::to_value(spec).ok()
        || ers.spec.ephemeral_runner_metadata != *meta
}

// ---------------------------------------------------------------------------------------------
// I/O

fn ars_api(ctx: &Context, ns: &str) -> Api<AutoscalingRunnerSet> {
    Api::namespaced(ctx.client.clone(), ns)
}

async fn set_not_ready(ctx: &Context, ars: &AutoscalingRunnerSet, err: &Error) -> Result<()> {
    let ns = ars.namespace().unwrap_or_default();
    let conditions = ars.status.as_ref().and_then(|s| s.conditions.as_deref());
    let cond = ready_condition(
        conditions,
        false,
        err.reason(),
        &err.to_string(),
        ars.metadata.generation,
    );
    if condition_differs(conditions, &cond) {
        ctx.event(ars, true, err.reason(), "Reconcile", err.to_string()).await;
        let current = ars.status.clone().unwrap_or_default();
        patch_status(
            &ars_api(ctx, &ns),
            &ars.name_any(),
            json!({
                "phase": current.phase.clone().unwrap_or_else(|| "Pending".into()),
                "currentRunners": current.current_runners,
                "conditions": [cond],
            }),
        )
        .await?;
    }
    Ok(())
}

/// Reconciles one AutoscalingRunnerSet.
pub async fn reconcile(ars: Arc<AutoscalingRunnerSet>, ctx: Arc<Context>) -> Result<Action> {
    let name = ars.name_any();
    let ns = ars.namespace().unwrap_or_default();

    if ars.meta().deletion_timestamp.is_some() {
        return finalize(&ars, &ctx).await;
    }

    // Version gate: never deletes by default.
    let build = env!("CARGO_PKG_VERSION");
    if let VersionGate::Mismatch(msg) = version_gate(ars.labels().get(l::VERSION).map(String::as_str), build) {
        match ctx.settings.version_mismatch_policy.as_str() {
            "delete" => {
                tracing::warn!(scale_set = %name, namespace = %ns, "{msg}: deleting (--version-mismatch-policy=delete)");
                delete_if_exists(&ars_api(&ctx, &ns), &name).await?;
                return Ok(Action::await_change());
            }
            "refuse" => {
                let err = Error::InvalidSpec {
                    kind: "AutoscalingRunnerSet",
                    namespace: ns.clone(),
                    name: name.clone(),
                    field: "metadata.labels[app.kubernetes.io/version]".into(),
                    reason: msg,
                };
                set_not_ready(&ctx, &ars, &err).await?;
                return Ok(Action::await_change());
            }
            _ => tracing::debug!(scale_set = %name, "{msg}: reconciling anyway"),
        }
    }

    if add_finalizers(&ars_api(&ctx, &ns), ars.as_ref(), &[f::AUTOSCALING_RUNNER_SET]).await? {
        return Ok(Action::await_change());
    }

    match reconcile_live(&ars, &ctx).await {
        Ok(action) => Ok(action),
        Err(e @ (Error::MissingSecret { .. } | Error::InvalidSecret { .. } | Error::InvalidSpec { .. })) => {
            tracing::warn!(scale_set = %name, namespace = %ns, error = %e, "not reconciling");
            set_not_ready(&ctx, &ars, &e).await?;
            Ok(Action::requeue(Duration::from_secs(30)))
        }
        Err(e) => {
            if matches!(e, Error::Actions { .. } | Error::Timeout { .. }) {
                set_not_ready(&ctx, &ars, &e).await?;
            }
            Err(e)
        }
    }
}

fn require_spec(ars: &AutoscalingRunnerSet) -> Result<()> {
    let invalid = |field: &str, reason: &str| Error::InvalidSpec {
        kind: "AutoscalingRunnerSet",
        namespace: ars.namespace().unwrap_or_default(),
        name: ars.name_any(),
        field: field.into(),
        reason: reason.into(),
    };
    if config_url(&ars.spec).is_empty() {
        return Err(invalid("spec.githubConfigUrl", "required"));
    }
    if rarc_actions::GitHubConfig::parse(&config_url(&ars.spec)).is_err() {
        return Err(invalid(
            "spec.githubConfigUrl",
            "not a GitHub org, repository or enterprise URL",
        ));
    }
    if ars.spec.github_config_secret.as_deref().unwrap_or("").is_empty() {
        return Err(invalid("spec.githubConfigSecret", "required"));
    }
    if let (Some(min), Some(max)) = (ars.spec.min_runners, ars.spec.max_runners)
        && min > max
    {
        return Err(invalid("spec.minRunners", "greater than spec.maxRunners"));
    }
    Ok(())
}

async fn github_client(ars: &AutoscalingRunnerSet, ctx: &Context) -> Result<Arc<ActionsClient>> {
    let ns = ars.namespace().unwrap_or_default();
    let url = config_url(&ars.spec);
    let secret = ars.spec.github_config_secret.clone().unwrap_or_default();
    ctx.github
        .client(
            &ctx.client,
            &Target {
                namespace: &ns,
                config_url: &url,
                secret_name: &secret,
                proxy: ars.spec.proxy.as_ref(),
                tls: ars.spec.github_server_tls.as_ref(),
            },
        )
        .await
}

/// Registers the scale set (or finds it by name) and records it in the ARS annotations.
async fn register(ars: &AutoscalingRunnerSet, ctx: &Context, client: &ActionsClient) -> Result<i64> {
    let ns = ars.namespace().unwrap_or_default();
    let name = scale_set_name(ars);
    let group = ars.spec.runner_group.clone().unwrap_or_default();
    let (group_id, group_name) = if group.is_empty() {
        (1, "default".to_owned())
    } else {
        let g = ctx
            .github
            .call("get runner group", client.get_runner_group_by_name(&group))
            .await?;
        (g.id, g.name)
    };
    let found = ctx
        .github
        .call("get runner scale set", client.get_runner_scale_set(group_id, &name))
        .await?;
    let set = match found {
        Some(set) => set,
        None => {
            let labels = scale_set_labels(&name, ars.spec.runner_scale_set_labels.as_deref().unwrap_or(&[]));
            let body = RunnerScaleSet {
                name: name.clone(),
                runner_group_id: group_id,
                labels: labels.into_iter().map(Label::system).collect(),
                runner_setting: RunnerSetting {
                    disable_update: Some(true),
                    ..Default::default()
                },
                ..Default::default()
            };
            let set = ctx
                .github
                .call("create runner scale set", client.create_runner_scale_set(&body))
                .await?;
            ctx.event(
                ars,
                false,
                "ScaleSetCreated",
                "Register",
                format!("created runner scale set {:?} (id {})", set.name, set.id),
            )
            .await;
            set
        }
    };
    let group_name = if set.runner_group_name.is_empty() {
        group_name
    } else {
        set.runner_group_name.clone()
    };
    let mut labels = url_labels(&config_url(&ars.spec));
    labels = exclude(labels, ctx.excluded_prefixes());
    let patch = json!({
        "metadata": {
            "annotations": {
                a::RUNNER_SCALE_SET_ID: set.id.to_string(),
                a::RUNNER_SCALE_SET_NAME: set.name,
                a::RUNNER_GROUP_NAME: group_name,
            },
            "labels": labels,
        }
    });
    ars_api(ctx, &ns)
        .patch(&ars.name_any(), &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .map_err(Error::kube("annotate AutoscalingRunnerSet with the scale set"))?;
    tracing::info!(scale_set = %ars.name_any(), namespace = %ns, id = set.id, "scale set registered");
    mark_validated(&ars.uid().unwrap_or_default(), set.id);
    Ok(set.id)
}

/// True when the runner group or the scale set name differs from what was registered (the
/// annotations), so the scale set must be updated on GitHub.
pub fn registration_outdated(ars: &AutoscalingRunnerSet) -> bool {
    let ann = ars.annotations();
    let group = ars.spec.runner_group.clone().unwrap_or_default();
    let group_differs = ann
        .get(a::RUNNER_GROUP_NAME)
        .is_none_or(|g| !group.is_empty() && !g.eq_ignore_ascii_case(&group));
    group_differs
        || ann
            .get(a::RUNNER_SCALE_SET_NAME)
            .is_none_or(|n| !n.eq_ignore_ascii_case(&scale_set_name(ars)))
}

/// Group or name changed since registration: update the scale set on GitHub. True when this pass
/// must end (an update was made, or the cached copy was stale).
async fn update_registration(
    ars: &AutoscalingRunnerSet,
    ctx: &Context,
    client: &ActionsClient,
    id: i64,
) -> Result<bool> {
    if !registration_outdated(ars) {
        return Ok(false);
    }
    // The cached copy can predate the annotations written by the previous pass (the watch lags):
    // decide on a fresh read, so that one change sends one UpdateRunnerScaleSet.
    let fresh = ars_api(ctx, &ars.namespace().unwrap_or_default())
        .get(&ars.name_any())
        .await
        .map_err(Error::kube("get AutoscalingRunnerSet"))?;
    if !registration_outdated(&fresh) {
        return Ok(true);
    }
    let ars = &fresh;
    let ann = ars.annotations();
    let group = ars.spec.runner_group.clone().unwrap_or_default();
    let name = scale_set_name(ars);
    let mut body = None;
    if !ann.contains_key(a::RUNNER_GROUP_NAME)
        || (!group.is_empty() && !ann[a::RUNNER_GROUP_NAME].eq_ignore_ascii_case(&group))
    {
        let group_id = if group.is_empty() {
            1
        } else {
            ctx.github
                .call("get runner group", client.get_runner_group_by_name(&group))
                .await?
                .id
        };
        body = Some(RunnerScaleSet {
            runner_group_id: group_id,
            ..Default::default()
        });
    } else if ann
        .get(a::RUNNER_SCALE_SET_NAME)
        .is_none_or(|n| !n.eq_ignore_ascii_case(&name))
    {
        body = Some(RunnerScaleSet {
            name: name.clone(),
            ..Default::default()
        });
    }
    let Some(body) = body else { return Ok(false) };
    let set = ctx
        .github
        .call("update runner scale set", client.update_runner_scale_set(id, &body))
        .await?;
    let mut annotations = BTreeMap::from([(a::RUNNER_SCALE_SET_NAME.to_owned(), set.name.clone())]);
    if !set.runner_group_name.is_empty() {
        annotations.insert(a::RUNNER_GROUP_NAME.into(), set.runner_group_name.clone());
    }
    ars_api(ctx, &ars.namespace().unwrap_or_default())
        .patch(
            &ars.name_any(),
            &PatchParams::default(),
            &Patch::Merge(&json!({"metadata": {"annotations": annotations}})),
        )
        .await
        .map_err(Error::kube("annotate AutoscalingRunnerSet after a scale set update"))?;
    Ok(true)
}

async fn reconcile_live(ars: &AutoscalingRunnerSet, ctx: &Context) -> Result<Action> {
    let name = ars.name_any();
    let ns = ars.namespace().unwrap_or_default();
    let uid = ars.uid().unwrap_or_default();
    require_spec(ars)?;
    // Credentials first: nothing is created without them.
    let client = github_client(ars, ctx).await?;

    // Integrity: a spec or label change resets the phase to Pending (and clears Outdated).
    let integrity = hash_of(&(&ars.spec, ars.labels()));
    let ers_api: Api<EphemeralRunnerSet> = Api::namespaced(ctx.client.clone(), &ns);
    let ers = not_found_as_none(ers_api.get(&name).await).map_err(Error::kube("get EphemeralRunnerSet"))?;
    if ars.annotations().get(a::INTEGRITY_HASH) != Some(&integrity) {
        ars_api(ctx, &ns)
            .patch(
                &name,
                &PatchParams::default(),
                &Patch::Merge(&json!({"metadata": {"annotations": {a::INTEGRITY_HASH: integrity}}})),
            )
            .await
            .map_err(Error::kube("annotate AutoscalingRunnerSet"))?;
        if let Some(e) = &ers
            && e.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Outdated")
        {
            let current = e.status.as_ref().map(|s| s.current_replicas).unwrap_or(0);
            patch_status(&ers_api, &name, json!({"currentReplicas": current, "phase": "Running"})).await?;
        }
        let current = ars.status.clone().unwrap_or_default();
        if current.phase.as_deref() != Some("Pending") {
            patch_status(
                &ars_api(ctx, &ns),
                &name,
                json!({"phase": "Pending", "currentRunners": current.current_runners}),
            )
            .await?;
        }
        return Ok(Action::requeue(Duration::from_millis(100)));
    }

    // Scale set registration and revalidation.
    let listener_name = listener_name(ars);
    let al_api: Api<AutoscalingListener> = Api::namespaced(ctx.client.clone(), ctx.controller_namespace());
    let al = not_found_as_none(al_api.get(&listener_name).await).map_err(Error::kube("get AutoscalingListener"))?;
    let id = match stored_scale_set_id(ars) {
        None => {
            // Continue with the annotated object (the next pass), so children see the names.
            register(ars, ctx, &client).await?;
            return Ok(Action::requeue(Duration::from_millis(100)));
        }
        Some(id) if al.is_none() || !validated_recently(&uid, id) => {
            match ctx
                .github
                .call("get runner scale set by id", client.get_runner_scale_set_by_id(id))
                .await
            {
                Ok(_) => {
                    mark_validated(&uid, id);
                    id
                }
                Err(e)
                    if e.as_actions()
                        .is_some_and(|a| a.is_scale_set_not_found() || a.is_not_found()) =>
                {
                    tracing::warn!(scale_set = %name, namespace = %ns, id, "scale set no longer exists on GitHub: registering again");
                    ctx.event(
                        ars,
                        true,
                        "ScaleSetNotFound",
                        "Register",
                        format!("scale set {id} not found on GitHub; registering again"),
                    )
                    .await;
                    forget_validated(&uid);
                    if let Some(al) = &al {
                        delete_if_exists(&al_api, &al.name_any()).await?;
                    }
                    register(ars, ctx, &client).await?
                }
                Err(e) => return Err(e),
            }
        }
        Some(id) => id,
    };
    if update_registration(ars, ctx, &client, id).await? {
        return Ok(Action::requeue(Duration::from_millis(100)));
    }

    // The one EphemeralRunnerSet, `<ars>`, updated in place. ERS of ARC 0.14.2 are drained.
    let runner = runner_spec(ars, id);
    let spec_hash = hash_of(&(&runner, &ars.spec.ephemeral_runner_metadata));
    let labels = runner_set_labels(ars, ctx.excluded_prefixes());
    let annotations = runner_set_annotations(ars, &spec_hash);
    let legacy = ers_api
        .list(&ListParams::default().labels(&format!("{}={}", l::SCALE_SET_NAME, name)))
        .await
        .map_err(Error::kube("list EphemeralRunnerSets"))?;
    for old in legacy.items.iter().filter(|e| {
        e.name_any() != name
            && e.meta().deletion_timestamp.is_none()
            && e.owner_references()
                .iter()
                .any(|o| o.controller == Some(true) && Some(&o.uid) == ars.uid().as_ref())
    }) {
        tracing::info!(scale_set = %name, old = %old.name_any(), "deleting an EphemeralRunnerSet of an earlier controller");
        delete_if_exists(&ers_api, &old.name_any()).await?;
    }
    let ers = match ers {
        None => {
            let obj = EphemeralRunnerSet {
                metadata: ObjectMeta {
                    name: Some(name.clone()),
                    namespace: Some(ns.clone()),
                    labels: Some(labels),
                    annotations: Some(annotations),
                    owner_references: Some(vec![owner_reference(ars)]),
                    ..Default::default()
                },
                spec: EphemeralRunnerSetSpec {
                    replicas: None,
                    patch_id: 0,
                    ephemeral_runner_spec: runner,
                    ephemeral_runner_metadata: ars.spec.ephemeral_runner_metadata.clone(),
                },
                status: None,
            };
            ers_api
                .create(&PostParams::default(), &obj)
                .await
                .map_err(Error::kube("create EphemeralRunnerSet"))?;
            tracing::info!(scale_set = %name, namespace = %ns, "EphemeralRunnerSet created");
            return Ok(Action::requeue(Duration::from_millis(100)));
        }
        Some(e) if e.meta().deletion_timestamp.is_some() => {
            // Being deleted (by a user): wait for it to go, then recreate.
            return Ok(Action::requeue(Duration::from_secs(2)));
        }
        Some(e) => e,
    };
    let labels_differ = ers.labels() != &labels;
    let ann_differ = annotations.iter().any(|(k, v)| ers.annotations().get(k) != Some(v));
    if runner_set_differs(&ers, &runner, &ars.spec.ephemeral_runner_metadata) || labels_differ || ann_differ {
        let patch = json!({
            "metadata": { "labels": labels, "annotations": annotations },
            "spec": {
                "ephemeralRunnerSpec": runner,
                "ephemeralRunnerMetadata": ars.spec.ephemeral_runner_metadata,
            }
        });
        ers_api
            .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .map_err(Error::kube("update EphemeralRunnerSet"))?;
        tracing::info!(scale_set = %name, namespace = %ns, "EphemeralRunnerSet updated in place");
    }

    // Runner deprecation: stop the listener, pin the runner set to 0, keep the scale set.
    let outdated = ers.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Outdated");
    if outdated {
        if let Some(al) = &al {
            delete_if_exists(&al_api, &al.name_any()).await?;
        }
        if ers.spec.replicas.unwrap_or(0) != 0 || ers.spec.patch_id != 0 {
            ers_api
                .patch(
                    &name,
                    &PatchParams::default(),
                    &Patch::Merge(&json!({"spec": {"replicas": null, "patchID": 0}})),
                )
                .await
                .map_err(Error::kube("pin EphemeralRunnerSet to 0"))?;
        }
        let err = Error::Other("the runner version is deprecated (runner exited 7): update the runner image".into());
        let conditions = ars.status.as_ref().and_then(|s| s.conditions.as_deref());
        let cond = ready_condition(
            conditions,
            false,
            "RunnerOutdated",
            &err.to_string(),
            ars.metadata.generation,
        );
        let mut status = desired_status(Some(&ers), true);
        if condition_differs(conditions, &cond) {
            ctx.event(ars, true, "RunnerOutdated", "Reconcile", err.to_string())
                .await;
            status["conditions"] = json!([cond]);
            patch_status(&ars_api(ctx, &ns), &name, status).await?;
        } else if ars.status.as_ref().and_then(|s| s.phase.as_deref()) != Some("Outdated") {
            patch_status(&ars_api(ctx, &ns), &name, status).await?;
        }
        return Ok(Action::await_change());
    }

    // The listener: created for the current ERS, recreated when anything it is built from changes.
    let desired = desired_listener(
        ars,
        id,
        ctx.controller_namespace(),
        &ctx.settings.listener_image,
        &ctx.settings.auto_scaler_image_pull_secrets,
        &spec_hash,
        ctx.excluded_prefixes(),
    );
    // Listeners of this ARS under another name (runner group or URL changed): removed.
    for other in listeners_of(&al_api, ars)
        .await?
        .iter()
        .filter(|o| o.name_any() != listener_name && o.meta().deletion_timestamp.is_none())
    {
        delete_if_exists(&al_api, &other.name_any()).await?;
    }
    match &al {
        None => {
            al_api
                .create(&PostParams::default(), &desired)
                .await
                .map_err(Error::kube("create AutoscalingListener"))?;
            tracing::info!(scale_set = %name, listener = %listener_name, "AutoscalingListener created");
        }
        Some(al) if al.meta().deletion_timestamp.is_some() => return Ok(Action::requeue(Duration::from_secs(1))),
        Some(al) if al.annotations().get(a::INTEGRITY_HASH) != desired.annotations().get(a::INTEGRITY_HASH) => {
            tracing::info!(scale_set = %name, listener = %listener_name, "listener out of date: recreating");
            delete_if_exists(&al_api, &listener_name).await?;
            return Ok(Action::requeue(Duration::from_secs(1)));
        }
        Some(_) => {}
    }

    // Status.
    let status = desired_status(Some(&ers), false);
    let conditions = ars.status.as_ref().and_then(|s| s.conditions.as_deref());
    let cond = ready_condition(
        conditions,
        true,
        "Running",
        "scale set registered; listener and runner set reconciled",
        ars.metadata.generation,
    );
    let current = serde_json::to_value(ars.status.clone().unwrap_or_default()).unwrap_or_default();
    let counts_differ = [
        "phase",
        "currentRunners",
        "pendingEphemeralRunners",
        "runningEphemeralRunners",
        "failedEphemeralRunners",
    ]
    .iter()
    .any(|k| current.get(*k) != status.get(*k));
    if counts_differ || condition_differs(conditions, &cond) {
        let mut status = status;
        status["conditions"] = json!([cond]);
        patch_status(&ars_api(ctx, &ns), &name, status).await?;
    }
    Ok(Action::requeue(REVALIDATE_EVERY))
}

/// Deletion: listener, runner sets, scale set on GitHub, chart finalizers, then our finalizer.
/// The AutoscalingListeners of `ars`, by its scale-set name and namespace labels.
async fn listeners_of(api: &Api<AutoscalingListener>, ars: &AutoscalingRunnerSet) -> Result<Vec<AutoscalingListener>> {
    let selector = format!(
        "{}={},{}={}",
        l::SCALE_SET_NAME,
        ars.name_any(),
        l::SCALE_SET_NAMESPACE,
        namespace_of(ars)
    );
    let list = api
        .list(&ListParams::default().labels(&selector))
        .await
        .map_err(Error::kube("list AutoscalingListeners"))?;
    Ok(list.items)
}

async fn finalize(ars: &AutoscalingRunnerSet, ctx: &Context) -> Result<Action> {
    if !has_finalizer(ars, f::AUTOSCALING_RUNNER_SET) {
        return Ok(Action::await_change());
    }
    let name = ars.name_any();
    let ns = ars.namespace().unwrap_or_default();
    let uid = ars.uid().unwrap_or_default();

    // (a) listeners of this ARS (in the controller namespace).
    let al_api: Api<AutoscalingListener> = Api::namespaced(ctx.client.clone(), ctx.controller_namespace());
    let als = listeners_of(&al_api, ars).await?;
    let mut waiting = false;
    for al in &als {
        waiting = true;
        if al.meta().deletion_timestamp.is_none() {
            delete_if_exists(&al_api, &al.name_any()).await?;
        }
    }
    if delete_if_exists(&al_api, &listener_name(ars)).await? {
        waiting = true;
    }
    if waiting {
        return Ok(Action::requeue(Duration::from_secs(1)));
    }

    // (b) runner sets owned by this ARS.
    let ers_api: Api<EphemeralRunnerSet> = Api::namespaced(ctx.client.clone(), &ns);
    let sets = ers_api
        .list(&ListParams::default())
        .await
        .map_err(Error::kube("list EphemeralRunnerSets"))?;
    let owned: Vec<_> = sets
        .items
        .iter()
        .filter(|e| {
            e.owner_references()
                .iter()
                .any(|o| o.controller == Some(true) && o.uid == uid)
        })
        .collect();
    for e in &owned {
        if e.meta().deletion_timestamp.is_none() {
            delete_if_exists(&ers_api, &e.name_any()).await?;
        }
    }
    if !owned.is_empty() {
        return Ok(Action::requeue(Duration::from_secs(5)));
    }

    // (c) the scale set on GitHub (never blocking local cleanup on missing credentials). The
    // rest of the pass continues with the object the annotation patch returns: a requeue could
    // read a cached copy that still has the id and delete the scale set twice.
    let mut fresh = None;
    if let Some(id) = stored_scale_set_id(ars).filter(|id| !recently_deleted(&uid, *id)) {
        match github_client(ars, ctx).await {
            Ok(client) => match ctx
                .github
                .call("delete runner scale set", client.delete_runner_scale_set(id))
                .await
            {
                Ok(()) => mark_deleted(&uid, id),
                Err(e)
                    if e.as_actions()
                        .is_some_and(|a| a.is_not_found() || a.is_scale_set_not_found()) => {}
                Err(e) => return Err(e),
            },
            Err(e @ (Error::MissingSecret { .. } | Error::InvalidSecret { .. })) => {
                tracing::warn!(scale_set = %name, id, error = %e, "cannot delete the scale set on GitHub without credentials");
                ctx.event(
                    ars,
                    true,
                    e.reason(),
                    "Delete",
                    format!("scale set {id} left on GitHub: {e}"),
                )
                .await;
            }
            Err(e) => return Err(e),
        }
        let patch = json!({"metadata": {"annotations": {a::RUNNER_SCALE_SET_ID: null}}});
        match ars_api(ctx, &ns)
            .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
        {
            Ok(updated) => fresh = Some(updated),
            Err(e) if crate::error::is_not_found(&e) => return Ok(Action::await_change()),
            Err(e) => return Err(Error::kube("remove the scale set id annotation")(e)),
        }
        forget_validated(&uid);
    }
    let ars = fresh.as_ref().unwrap_or(ars);

    // Chart objects protected by `actions.github.com/cleanup-protection`, in ARC's order.
    remove_chart_finalizers(ars, ctx).await?;
    remove_finalizers(&ars_api(ctx, &ns), ars, &[f::AUTOSCALING_RUNNER_SET]).await?;
    tracing::info!(scale_set = %name, namespace = %ns, "AutoscalingRunnerSet cleaned up");
    Ok(Action::await_change())
}

async fn strip_protection<K>(api: Api<K>, name: &str) -> Result<()>
where
    K: Resource + Clone + serde::de::DeserializeOwned + serde::Serialize + std::fmt::Debug,
{
    match api.get(name).await {
        Ok(obj) => match remove_finalizers(&api, &obj, &[f::CLEANUP_PROTECTION]).await {
            Ok(_) => Ok(()),
            Err(Error::Kube {
                source: kube::Error::Api(e),
                ..
            }) if e.code == 403 => Ok(()),
            Err(e) => Err(e),
        },
        Err(kube::Error::Api(e)) if e.code == 404 || e.code == 403 => Ok(()),
        Err(e) => Err(Error::kube(format!("get {name}"))(e)),
    }
}

/// The kinds the chart protects with `cleanup-protection`.
#[derive(Clone, Copy)]
enum Protected {
    Role,
    RoleBinding,
    ServiceAccount,
    Secret,
}

/// The chart's cleanup annotations (arc-controller.md §3) and the kind each one names.
const CHART_PROTECTED: [(&str, Protected); 7] = [
    (a::CLEANUP_KUBERNETES_MODE_ROLE_BINDING_NAME, Protected::RoleBinding),
    (a::CLEANUP_KUBERNETES_MODE_ROLE_NAME, Protected::Role),
    (
        a::CLEANUP_KUBERNETES_MODE_SERVICE_ACCOUNT_NAME,
        Protected::ServiceAccount,
    ),
    (a::CLEANUP_NO_PERMISSION_SERVICE_ACCOUNT_NAME, Protected::ServiceAccount),
    (a::CLEANUP_GITHUB_SECRET_NAME, Protected::Secret),
    (a::CLEANUP_MANAGER_ROLE_BINDING, Protected::RoleBinding),
    (a::CLEANUP_MANAGER_ROLE_NAME, Protected::Role),
];

async fn remove_chart_finalizers(ars: &AutoscalingRunnerSet, ctx: &Context) -> Result<()> {
    let ns = ars.namespace().unwrap_or_default();
    let c = ctx.client.clone();
    let ann = ars.annotations();
    for (key, kind) in CHART_PROTECTED {
        let Some(n) = ann.get(key).filter(|v| !v.is_empty()) else {
            continue;
        };
        match kind {
            Protected::Role => strip_protection(Api::<Role>::namespaced(c.clone(), &ns), n).await?,
            Protected::RoleBinding => strip_protection(Api::<RoleBinding>::namespaced(c.clone(), &ns), n).await?,
            Protected::ServiceAccount => {
                strip_protection(Api::<ServiceAccount>::namespaced(c.clone(), &ns), n).await?;
            }
            Protected::Secret => strip_protection(Api::<Secret>::namespaced(c.clone(), &ns), n).await?,
        }
    }
    Ok(())
}

/// Logs and retries: 30 s for credentials and spec errors (a change to the Secret or ARS
/// triggers a reconcile anyway), 10 s for GitHub, 2 s for the API server.
pub fn error_policy(ars: Arc<AutoscalingRunnerSet>, err: &Error, _ctx: Arc<Context>) -> Action {
    tracing::warn!(scale_set = %ars.name_any(), namespace = ars.namespace().unwrap_or_default(), error = %err, "reconcile failed");
    match err {
        Error::MissingSecret { .. } | Error::InvalidSecret { .. } | Error::InvalidSpec { .. } => {
            Action::requeue(Duration::from_secs(30))
        }
        Error::Actions { .. } | Error::Timeout { .. } => Action::requeue(Duration::from_secs(10)),
        _ => Action::requeue(Duration::from_secs(2)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ars(name: &str, ns: &str) -> AutoscalingRunnerSet {
        let mut a = AutoscalingRunnerSet::new(
            name,
            AutoscalingRunnerSetSpec {
                github_config_url: Some("https://github.com/my-org/".into()),
                github_config_secret: Some("gh".into()),
                ..Default::default()
            },
        );
        a.metadata.namespace = Some(ns.into());
        a.metadata.uid = Some("uid-1".into());
        a
    }

    #[test]
    fn version_gate_never_rejects_compatible_or_unlabelled_sets() {
        assert_eq!(version_gate(None, "0.1.0"), VersionGate::Allowed);
        assert_eq!(version_gate(Some("0.1.3"), "0.1.0"), VersionGate::Allowed);
        assert_eq!(version_gate(Some("0.14.2"), "0.1.0"), VersionGate::Allowed);
        assert_eq!(version_gate(Some("0.14.1"), "0.1.0"), VersionGate::Allowed);
        assert!(matches!(version_gate(Some("0.13.0"), "0.1.0"), VersionGate::Mismatch(m) if m.contains("0.13.0")));
        assert_eq!(version_gate(Some("0.13.0"), "dev"), VersionGate::Allowed);
    }

    #[test]
    fn scale_set_id_annotation_must_be_positive() {
        let mut a = ars("set", "ns");
        assert_eq!(stored_scale_set_id(&a), None);
        for (v, want) in [("12", Some(12)), ("0", None), ("-3", None), ("x", None)] {
            a.metadata.annotations = Some([(a::RUNNER_SCALE_SET_ID.to_owned(), v.to_owned())].into());
            assert_eq!(stored_scale_set_id(&a), want, "{v}");
        }
    }

    #[test]
    fn labels_sent_at_creation_are_deduplicated_name_first() {
        assert_eq!(
            scale_set_labels("set", &["a".into(), "set".into(), "a".into(), "b".into()]),
            ["set", "a", "b"]
        );
    }

    #[test]
    fn registration_is_outdated_when_group_or_name_annotations_differ() {
        let mut a = ars("set", "ns");
        assert!(registration_outdated(&a), "no annotations yet");
        a.metadata.annotations = Some(
            [
                (a::RUNNER_GROUP_NAME.to_owned(), "Default".to_owned()),
                (a::RUNNER_SCALE_SET_NAME.to_owned(), "set".to_owned()),
            ]
            .into(),
        );
        assert!(!registration_outdated(&a));
        a.spec.runner_group = Some("default".into());
        assert!(!registration_outdated(&a), "group names compare case-insensitively");
        a.spec.runner_group = Some("g2".into());
        assert!(registration_outdated(&a));
        a.spec.runner_group = None;
        a.spec.runner_scale_set_name = Some("other".into());
        assert!(registration_outdated(&a));
    }

    #[test]
    fn listener_name_hashes_namespace_group_and_url() {
        let a = ars("set", "arc-runners");
        assert_eq!(listener_name(&a), "set-56b4bcfc-listener");
    }

    #[test]
    fn runner_set_labels_reserve_keys_and_exclude_prefixes() {
        let mut a = ars("set", "arc-runners");
        a.metadata.labels = Some(
            [
                ("argocd.argoproj.io/instance".to_owned(), "x".to_owned()),
                (l::COMPONENT.to_owned(), "mine".to_owned()),
                (l::VERSION.to_owned(), "0.14.2".to_owned()),
            ]
            .into(),
        );
        a.spec.ephemeral_runner_set_metadata = Some(ResourceMeta {
            labels: Some(
                [
                    (l::PART_OF.to_owned(), "x".to_owned()),
                    ("team".to_owned(), "a".to_owned()),
                ]
                .into(),
            ),
            annotations: None,
        });
        let labels = runner_set_labels(&a, &["argocd.argoproj.io/".into()]);
        assert_eq!(labels[l::COMPONENT], "runner-set");
        assert_eq!(labels[l::PART_OF], "gha-runner-scale-set");
        assert_eq!(labels[l::ORGANIZATION], "my-org");
        assert_eq!(labels[l::VERSION], "0.14.2");
        assert_eq!(labels["team"], "a");
        assert!(!labels.contains_key("argocd.argoproj.io/instance"));
    }

    #[test]
    fn desired_listener_has_effective_min_max_and_stable_integrity() {
        let a = ars("set", "arc-runners");
        let al = desired_listener(&a, 7, "arc-systems", "img:1", &["pull".into()], "h", &[]);
        assert_eq!(al.spec.max_runners, i32::MAX);
        assert_eq!(al.spec.min_runners, 0);
        assert_eq!(al.spec.runner_scale_set_id, 7);
        assert_eq!(al.spec.ephemeral_runner_set_name.as_deref(), Some("set"));
        assert_eq!(al.spec.image_pull_secrets.as_ref().map(Vec::len), Some(1));
        // The same inputs give the same hash (no recreate loop, T54); a change gives another.
        let again = desired_listener(&a, 7, "arc-systems", "img:1", &["pull".into()], "h", &[]);
        assert_eq!(
            al.annotations().get(a::INTEGRITY_HASH),
            again.annotations().get(a::INTEGRITY_HASH)
        );
        let mut b = a.clone();
        b.spec.max_runners = Some(3);
        let changed = desired_listener(&b, 7, "arc-systems", "img:1", &["pull".into()], "h", &[]);
        assert_ne!(
            al.annotations().get(a::INTEGRITY_HASH),
            changed.annotations().get(a::INTEGRITY_HASH)
        );
        let new_image = desired_listener(&a, 7, "arc-systems", "img:2", &["pull".into()], "h", &[]);
        assert_ne!(
            al.annotations().get(a::INTEGRITY_HASH),
            new_image.annotations().get(a::INTEGRITY_HASH)
        );
    }

    #[test]
    fn status_copies_runner_set_counts() {
        let mut e = EphemeralRunnerSet::new("set", EphemeralRunnerSetSpec::default());
        e.status = Some(rarc_crd::EphemeralRunnerSetStatus {
            current_replicas: 3,
            pending_ephemeral_runners: Some(1),
            running_ephemeral_runners: Some(2),
            failed_ephemeral_runners: None,
            phase: None,
        });
        let s = desired_status(Some(&e), false);
        assert_eq!(
            s,
            json!({"phase": "Running", "currentRunners": 3, "pendingEphemeralRunners": 1, "runningEphemeralRunners": 2, "failedEphemeralRunners": 0})
        );
    }

    #[test]
    fn ready_condition_keeps_transition_time_while_unchanged() {
        let first = ready_condition(None, false, "CredentialsSecretNotFound", "m", Some(1));
        let again = ready_condition(
            Some(std::slice::from_ref(&first)),
            false,
            "CredentialsSecretNotFound",
            "m",
            Some(1),
        );
        assert_eq!(first.last_transition_time, again.last_transition_time);
        assert!(!condition_differs(Some(std::slice::from_ref(&first)), &again));
        let ok = ready_condition(Some(std::slice::from_ref(&first)), true, "Running", "m", Some(1));
        assert!(condition_differs(Some(std::slice::from_ref(&first)), &ok));
    }
}
