//! AutoscalingListener reconciler (arc-controller.md §4.5, ARC master's "H" flow) with rarc's
//! choices:
//!
//! - every pass walks all steps (finalizer, ARS check, credentials, ServiceAccount, Role,
//!   RoleBinding, proxy secret, config secret, pod) and writes only what differs;
//! - the config secret's data follows the credentials Secret, CA and settings (ARC master only
//!   updates its metadata), and the pod carries an `actions.github.com/integrity-hash` of its
//!   spec, labels, annotations, config.json and proxy data: any change recreates it;
//! - a listener that exited is recreated no sooner than [`pod::CRASH_RECREATE_DELAY`] after it
//!   exited, and a pod that finished without a container status is recreated too;
//! - the pod is never patched (the chart grants `create/delete/get` on pods only): label or
//!   annotation changes go through the hash;
//! - a steady listener is looked at again every [`RESYNC_SECS`], because the credentials Secret
//!   and the CA ConfigMap are not watched (rotation must still reach the listener).
//!
//! Decisions are pure functions with unit tests; `reconcile` does the I/O.

pub mod config;
pub mod pod;

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::sync::Arc;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::{Pod, Secret, ServiceAccount};
use k8s_openapi::api::rbac::v1::{PolicyRule, Role, RoleBinding, RoleRef, Subject};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::jiff::Timestamp;
use kube::api::Patch;
use kube::runtime::controller::Action;
use kube::{Api, Resource, ResourceExt};
use rarc_actions::ProxyEnv;
use rarc_crd::keys::{finalizers, labels as l};
use rarc_crd::names::{listener_config_secret_name, listener_proxy_secret_name};
use rarc_crd::{AutoscalingListener, AutoscalingRunnerSet, ResourceMeta};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

use super::{
    add_finalizers, delete_if_exists, has_finalizer, namespace_of, owner_reference, patch_params, post_params,
    proxy_values, remove_finalizers, requeue_secs,
};
use crate::context::Context;
use crate::error::{Error, Result, is_already_exists, not_found_as_none};
use crate::github::{self, GitHubSecret};
use crate::labels::{self as lbl, Labels};
use crate::metrics::{LabelSet, RUNNING_LISTENERS};

/// The AutoscalingListener finalizer.
pub const FINALIZER: &str = finalizers::AUTOSCALING_LISTENER;
/// Requeue while the cleanup of a deleted listener waits for its objects (§4.7).
pub const CLEANUP_REQUEUE_SECS: u64 = 1;
/// Requeue after deleting the pod or when a create raced with another.
pub const SHORT_REQUEUE_SECS: u64 = 1;
/// Requeue while an old pod terminates (the pod watch usually comes first).
pub const POD_GONE_REQUEUE_SECS: u64 = 5;
/// Steady-state re-check: the credentials Secret and CA ConfigMap are not watched.
pub const RESYNC_SECS: u64 = 30;
/// Requeue after an error.
pub const ERROR_REQUEUE_SECS: u64 = 5;
/// `apiGroup` of the RoleBinding's roleRef.
pub const RBAC_API_GROUP: &str = "rbac.authorization.k8s.io";

const KIND: &str = "AutoscalingListener";

/// The AutoscalingRunnerSet a listener serves.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    pub ars_namespace: String,
    pub ars_name: String,
}

/// `spec.autoscalingRunnerSetNamespace`/`Name`, both required.
pub fn target(al: &AutoscalingListener) -> Result<Target> {
    let field = |value: &Option<String>, field: &str| {
        value
            .clone()
            .filter(|v| !v.is_empty())
            .ok_or_else(|| Error::InvalidSpec {
                kind: KIND,
                namespace: namespace_of(al),
                name: al.name_any(),
                field: field.into(),
                reason: "is required".into(),
            })
    };
    Ok(Target {
        ars_namespace: field(
            &al.spec.autoscaling_runner_set_namespace,
            "spec.autoscalingRunnerSetNamespace",
        )?,
        ars_name: field(&al.spec.autoscaling_runner_set_name, "spec.autoscalingRunnerSetName")?,
    })
}

// ---------------------------------------------------------------------------------------------
// Desired objects (pure)
// ---------------------------------------------------------------------------------------------

fn reserved(al: &AutoscalingListener, rbac: bool) -> Labels {
    let mut out = Labels::new();
    out.insert(l::COMPONENT.into(), l::COMPONENT_LISTENER.into());
    out.insert(
        l::SCALE_SET_NAMESPACE.into(),
        al.spec.autoscaling_runner_set_namespace.clone().unwrap_or_default(),
    );
    out.insert(
        l::SCALE_SET_NAME.into(),
        al.spec.autoscaling_runner_set_name.clone().unwrap_or_default(),
    );
    if rbac {
        out.insert(l::LISTENER_NAMESPACE.into(), namespace_of(al));
        out.insert(l::LISTENER_NAME.into(), al.name_any());
    }
    out
}

/// Labels of the ServiceAccount (`rbac: false`) or Role/RoleBinding (`rbac: true`), §3.2: the
/// AL's labels, overwritten by the scale-set (and, for RBAC, listener-link) labels, with the
/// user's metadata labels under them; excluded prefixes removed. rarc: the component label
/// (`runner-scale-set-listener`) is always set, even under an excluded prefix: the controller's
/// watches select on it.
pub fn object_labels(al: &AutoscalingListener, user: &Option<ResourceMeta>, rbac: bool, prefixes: &[String]) -> Labels {
    let mut out = lbl::merge(al.labels(), reserved(al, rbac), &ResourceMeta::labels(user), prefixes);
    out.insert(l::COMPONENT.into(), l::COMPONENT_LISTENER.into());
    out
}

fn meta(name: &str, namespace: &str, labels: Labels, annotations: Labels) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.to_owned()),
        namespace: Some(namespace.to_owned()),
        labels: Some(labels),
        annotations: Some(annotations),
        ..Default::default()
    }
}

/// The listener's ServiceAccount (controller namespace, owned by the AL).
pub fn desired_service_account(al: &AutoscalingListener, prefixes: &[String]) -> ServiceAccount {
    let user = &al.spec.service_account_metadata;
    let mut m = meta(
        &al.name_any(),
        &namespace_of(al),
        object_labels(al, user, false, prefixes),
        ResourceMeta::annotations(user),
    );
    m.owner_references = Some(vec![owner_reference(al)]);
    ServiceAccount {
        metadata: m,
        ..Default::default()
    }
}

/// The listener Role's rules: patch its EphemeralRunnerSet, and EphemeralRunners (and status).
pub fn role_rules(ers_name: &str) -> Vec<PolicyRule> {
    let strings = |v: &[&str]| Some(v.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>());
    vec![
        PolicyRule {
            api_groups: strings(&[rarc_crd::keys::GROUP]),
            resources: strings(&["ephemeralrunnersets"]),
            resource_names: strings(&[ers_name]),
            verbs: vec!["patch".into()],
            ..Default::default()
        },
        PolicyRule {
            api_groups: strings(&[rarc_crd::keys::GROUP]),
            resources: strings(&["ephemeralrunners", "ephemeralrunners/status"]),
            verbs: vec!["patch".into()],
            ..Default::default()
        },
    ]
}

/// The listener Role (ARS namespace, no owner: tied by the listener labels).
pub fn desired_role(al: &AutoscalingListener, t: &Target, prefixes: &[String]) -> Role {
    let user = &al.spec.role_metadata;
    Role {
        metadata: meta(
            &al.name_any(),
            &t.ars_namespace,
            object_labels(al, user, true, prefixes),
            ResourceMeta::annotations(user),
        ),
        rules: Some(role_rules(
            al.spec.ephemeral_runner_set_name.as_deref().unwrap_or_default(),
        )),
    }
}

/// The listener RoleBinding (ARS namespace): Role `<al>` to ServiceAccount `<al>` of the
/// controller namespace.
pub fn desired_role_binding(al: &AutoscalingListener, t: &Target, prefixes: &[String]) -> RoleBinding {
    let user = &al.spec.role_binding_metadata;
    let name = al.name_any();
    RoleBinding {
        metadata: meta(
            &name,
            &t.ars_namespace,
            object_labels(al, user, true, prefixes),
            ResourceMeta::annotations(user),
        ),
        role_ref: RoleRef {
            api_group: RBAC_API_GROUP.into(),
            kind: "Role".into(),
            name: name.clone(),
        },
        subjects: Some(vec![Subject {
            kind: "ServiceAccount".into(),
            name,
            namespace: Some(namespace_of(al)),
            api_group: None,
        }]),
    }
}

/// The proxy secret's data: one key per configured proxy variable.
pub fn proxy_data(env: &ProxyEnv) -> BTreeMap<String, ByteString> {
    proxy_values(env)
        .into_iter()
        .filter_map(|(k, v)| {
            v.filter(|v| !v.is_empty())
                .map(|v| (k.to_owned(), ByteString(v.as_bytes().to_vec())))
        })
        .collect()
}

/// `<al>-proxy` (controller namespace, owned by the AL; labels: scale-set name and namespace).
pub fn desired_proxy_secret(al: &AutoscalingListener, data: BTreeMap<String, ByteString>) -> Secret {
    let mut labels = reserved(al, false);
    labels.remove(l::COMPONENT);
    let mut m = meta(
        &listener_proxy_secret_name(&al.name_any()),
        &namespace_of(al),
        labels,
        Labels::new(),
    );
    m.owner_references = Some(vec![owner_reference(al)]);
    Secret {
        metadata: m,
        data: Some(data),
        ..Default::default()
    }
}

/// `<al>-config` (controller namespace, owned by the AL; only the user's metadata).
pub fn desired_config_secret(al: &AutoscalingListener, config_json: Vec<u8>, prefixes: &[String]) -> Secret {
    let user = &al.spec.config_secret_metadata;
    let mut m = meta(
        &listener_config_secret_name(&al.name_any()),
        &namespace_of(al),
        lbl::exclude(ResourceMeta::labels(user), prefixes),
        ResourceMeta::annotations(user),
    );
    m.owner_references = Some(vec![owner_reference(al)]);
    Secret {
        metadata: m,
        data: Some([(config::CONFIG_KEY.to_owned(), ByteString(config_json))].into()),
        ..Default::default()
    }
}

/// The `gha_controller_running_listeners` labels: name, namespace, repository, organization,
/// enterprise.
pub fn gauge_labels(al: &AutoscalingListener) -> LabelSet {
    let url = lbl::url_labels(al.spec.github_config_url.as_deref().unwrap_or_default());
    let get = |k: &str| url.get(k).cloned().unwrap_or_default();
    vec![
        ("name", al.name_any()),
        ("namespace", namespace_of(al)),
        ("repository", get(l::REPOSITORY)),
        ("organization", get(l::ORGANIZATION)),
        ("enterprise", get(l::ENTERPRISE)),
    ]
}

// ---------------------------------------------------------------------------------------------
// Drift (pure): merge patches restoring what we own, `None` when nothing differs
// ---------------------------------------------------------------------------------------------

/// Keys of `want` that `have` lacks or holds with another value (other keys are left alone).
fn map_drift(have: Option<&Labels>, want: Option<&Labels>) -> Labels {
    want.into_iter()
        .flatten()
        .filter(|(k, v)| have.and_then(|h| h.get(*k)) != Some(*v))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

/// The `metadata` part of a merge patch: wanted labels and annotations that are missing or differ.
pub fn metadata_patch(have: &ObjectMeta, want: &ObjectMeta) -> Option<Value> {
    let mut out = Map::new();
    let labels = map_drift(have.labels.as_ref(), want.labels.as_ref());
    if !labels.is_empty() {
        out.insert("labels".into(), serde_json::to_value(labels).ok()?);
    }
    let annotations = map_drift(have.annotations.as_ref(), want.annotations.as_ref());
    if !annotations.is_empty() {
        out.insert("annotations".into(), serde_json::to_value(annotations).ok()?);
    }
    (!out.is_empty()).then_some(Value::Object(out))
}

fn with_metadata(mut patch: Map<String, Value>, have: &ObjectMeta, want: &ObjectMeta) -> Option<Value> {
    if let Some(m) = metadata_patch(have, want) {
        patch.insert("metadata".into(), m);
    }
    (!patch.is_empty()).then_some(Value::Object(patch))
}

/// ServiceAccount drift: labels and annotations.
pub fn service_account_patch(have: &ServiceAccount, want: &ServiceAccount) -> Option<Value> {
    with_metadata(Map::new(), &have.metadata, &want.metadata)
}

fn rule_key(r: &PolicyRule) -> [Vec<String>; 5] {
    let v = |x: &Option<Vec<String>>| x.clone().unwrap_or_default();
    [
        v(&r.api_groups),
        v(&r.resources),
        v(&r.resource_names),
        r.verbs.clone(),
        v(&r.non_resource_urls),
    ]
}

/// True when two rule lists grant the same (absent lists equal empty ones).
pub fn rules_equal(a: Option<&Vec<PolicyRule>>, b: Option<&Vec<PolicyRule>>) -> bool {
    let keys = |x: Option<&Vec<PolicyRule>>| x.into_iter().flatten().map(rule_key).collect::<Vec<_>>();
    keys(a) == keys(b)
}

/// Role drift: labels, annotations and the rules (replaced whole).
pub fn role_patch(have: &Role, want: &Role) -> Option<Value> {
    let mut patch = Map::new();
    if !rules_equal(have.rules.as_ref(), want.rules.as_ref()) {
        patch.insert("rules".into(), serde_json::to_value(&want.rules).ok()?);
    }
    with_metadata(patch, &have.metadata, &want.metadata)
}

/// True when the RoleBinding's (immutable) roleRef is not the wanted one: delete and recreate.
pub fn role_ref_differs(have: &RoleBinding, want: &RoleBinding) -> bool {
    let key = |r: &RoleRef| (r.api_group.clone(), r.kind.clone(), r.name.clone());
    key(&have.role_ref) != key(&want.role_ref)
}

fn subject_keys(rb: &RoleBinding) -> Vec<(String, String, String)> {
    rb.subjects
        .iter()
        .flatten()
        .map(|s| (s.kind.clone(), s.name.clone(), s.namespace.clone().unwrap_or_default()))
        .collect()
}

/// RoleBinding drift: labels, annotations and subjects.
pub fn role_binding_patch(have: &RoleBinding, want: &RoleBinding) -> Option<Value> {
    let mut patch = Map::new();
    if subject_keys(have) != subject_keys(want) {
        patch.insert("subjects".into(), serde_json::to_value(&want.subjects).ok()?);
    }
    with_metadata(patch, &have.metadata, &want.metadata)
}

/// Secret drift: labels, annotations and the data (exactly the wanted keys; others are removed).
pub fn secret_patch(have: &Secret, want: &Secret) -> Option<Value> {
    let empty = BTreeMap::new();
    let have_data = have.data.as_ref().unwrap_or(&empty);
    let want_data = want.data.as_ref().unwrap_or(&empty);
    let mut data = Map::new();
    for (k, v) in want_data {
        if have_data.get(k) != Some(v) {
            data.insert(k.clone(), serde_json::to_value(v).ok()?);
        }
    }
    for k in have_data.keys().filter(|k| !want_data.contains_key(*k)) {
        data.insert(k.clone(), Value::Null);
    }
    let mut patch = Map::new();
    if !data.is_empty() {
        patch.insert("data".into(), Value::Object(data));
    }
    with_metadata(patch, &have.metadata, &want.metadata)
}

// ---------------------------------------------------------------------------------------------
// I/O
// ---------------------------------------------------------------------------------------------

async fn get_opt<K>(api: &Api<K>, name: &str, what: &str) -> Result<Option<K>>
where
    K: Resource + Clone + DeserializeOwned + Debug,
{
    not_found_as_none(api.get(name).await).map_err(Error::kube(format!("get {what} {name}")))
}

/// Creates `want` when `existing` is `None`, else applies the patch `drift` computes (if any).
/// `what` names the kind in logs and errors; object contents are never logged.
async fn ensure_with<K>(
    api: &Api<K>,
    existing: Option<K>,
    want: &K,
    what: &str,
    listener: &str,
    drift: impl Fn(&K, &K) -> Option<Value>,
) -> Result<()>
where
    K: Resource + Clone + DeserializeOwned + Serialize + Debug,
{
    let name = want.name_any();
    let ns = want.meta().namespace.clone().unwrap_or_default();
    match existing {
        None => match api.create(&post_params(), want).await {
            Ok(_) => tracing::info!(listener, namespace = %ns, object = %name, kind = what, "created"),
            Err(e) if is_already_exists(&e) => {
                tracing::debug!(listener, namespace = %ns, object = %name, kind = what, "already exists")
            }
            Err(e) => return Err(Error::kube(format!("create {what} {ns}/{name}"))(e)),
        },
        Some(have) => {
            if let Some(patch) = drift(&have, want) {
                api.patch(&name, &patch_params(), &Patch::Merge(&patch))
                    .await
                    .map_err(Error::kube(format!("patch {what} {ns}/{name}")))?;
                tracing::info!(listener, namespace = %ns, object = %name, kind = what, "updated");
            }
        }
    }
    Ok(())
}

/// [`ensure_with`] after a GET.
async fn ensure<K>(
    api: &Api<K>,
    want: &K,
    what: &str,
    listener: &str,
    drift: impl Fn(&K, &K) -> Option<Value>,
) -> Result<()>
where
    K: Resource + Clone + DeserializeOwned + Serialize + Debug,
{
    let existing = get_opt(api, &want.name_any(), what).await?;
    ensure_with(api, existing, want, what, listener, drift).await
}

/// The RoleBinding: its roleRef is immutable, so a wrong one means delete and create.
async fn ensure_role_binding(api: &Api<RoleBinding>, want: &RoleBinding, listener: &str) -> Result<()> {
    let name = want.name_any();
    let mut existing = get_opt(api, &name, "RoleBinding").await?;
    if existing.as_ref().is_some_and(|have| role_ref_differs(have, want)) {
        tracing::info!(listener, object = %name, "RoleBinding has another roleRef; replacing it");
        delete_if_exists(api, &name).await?;
        existing = None;
    }
    ensure_with(api, existing, want, "RoleBinding", listener, role_binding_patch).await
}

/// Deletes `name` unless already going; true while it still exists.
async fn delete_step<K>(api: &Api<K>, name: &str, what: &str, listener: &str) -> Result<bool>
where
    K: Resource + Clone + DeserializeOwned + Debug,
{
    let Some(obj) = get_opt(api, name, what).await? else {
        return Ok(false);
    };
    if obj.meta().deletion_timestamp.is_none() {
        delete_if_exists(api, name).await?;
        tracing::info!(listener, object = %name, kind = what, "deleted");
    }
    Ok(true)
}

/// True for a 403 from the API server.
pub fn is_forbidden(e: &Error) -> bool {
    matches!(e, Error::Kube { source: kube::Error::Api(s), .. } if s.code == 403)
}

/// rarc: during cleanup, a 403 on the runner namespace's Role/RoleBinding (the chart's manager
/// Role is already gone, e.g. an uninstall in the wrong order) counts as gone instead of
/// blocking the listener's deletion forever; the objects carry the listener labels for a manual
/// cleanup.
fn forbidden_as_gone(r: Result<bool>, listener: &str) -> Result<bool> {
    match r {
        Err(e) if is_forbidden(&e) => {
            tracing::warn!(listener, error = %e, "no access to the listener's Role/RoleBinding; leaving it");
            Ok(false)
        }
        other => other,
    }
}

fn publish(ctx: &Context, al: &AutoscalingListener, running: bool) {
    if ctx.settings.metrics_bind().is_some() {
        ctx.metrics
            .set(RUNNING_LISTENERS, &gauge_labels(al), if running { 1.0 } else { 0.0 });
    }
}

/// Deletes pod, config secret, proxy secret, RoleBinding, Role and ServiceAccount, in that order;
/// true while any of them still exists.
async fn cleanup(ctx: &Context, al: &AutoscalingListener) -> Result<bool> {
    let name = al.name_any();
    let ns = namespace_of(al);
    let client = &ctx.client;
    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &ns);
    let mut remaining = false;
    if delete_step(&pods, &name, "Pod", &name).await? {
        publish(ctx, al, false);
        remaining = true;
    }
    remaining |= delete_step(&secrets, &listener_config_secret_name(&name), "Secret", &name).await?;
    remaining |= delete_step(&secrets, &listener_proxy_secret_name(&name), "Secret", &name).await?;
    // Without the ARS namespace there is no Role/RoleBinding to find.
    if let Some(ars_ns) = al
        .spec
        .autoscaling_runner_set_namespace
        .as_deref()
        .filter(|n| !n.is_empty())
    {
        let rbs: Api<RoleBinding> = Api::namespaced(client.clone(), ars_ns);
        let roles: Api<Role> = Api::namespaced(client.clone(), ars_ns);
        remaining |= forbidden_as_gone(delete_step(&rbs, &name, "RoleBinding", &name).await, &name)?;
        remaining |= forbidden_as_gone(delete_step(&roles, &name, "Role", &name).await, &name)?;
    }
    let sas: Api<ServiceAccount> = Api::namespaced(client.clone(), &ns);
    remaining |= delete_step(&sas, &name, "ServiceAccount", &name).await?;
    Ok(remaining)
}

async fn finalize(api: &Api<AutoscalingListener>, al: &AutoscalingListener, ctx: &Context) -> Result<Action> {
    let name = al.name_any();
    if !has_finalizer(al, FINALIZER) {
        return Ok(Action::await_change());
    }
    if cleanup(ctx, al).await? {
        tracing::debug!(listener = %name, namespace = %namespace_of(al), "waiting for listener objects to go");
        return Ok(requeue_secs(CLEANUP_REQUEUE_SECS));
    }
    remove_finalizers(api, al, &[FINALIZER]).await?;
    ctx.metrics.remove(RUNNING_LISTENERS, &gauge_labels(al));
    tracing::info!(listener = %name, namespace = %namespace_of(al), "listener cleaned up");
    Ok(Action::await_change())
}

/// Reconciles one AutoscalingListener.
pub async fn reconcile(al: Arc<AutoscalingListener>, ctx: Arc<Context>) -> Result<Action> {
    let al = al.as_ref();
    let name = al.name_any();
    let ns = namespace_of(al);
    let client = &ctx.client;
    let api: Api<AutoscalingListener> = Api::namespaced(client.clone(), &ns);

    if al.meta().deletion_timestamp.is_some() {
        return finalize(&api, al, &ctx).await;
    }
    add_finalizers(&api, al, &[FINALIZER]).await?;

    let t = target(al)?;
    let ars_api: Api<AutoscalingRunnerSet> = Api::namespaced(client.clone(), &t.ars_namespace);
    // Only whether it exists: its metadata, not its whole pod template.
    let ars = not_found_as_none(ars_api.get_metadata(&t.ars_name).await).map_err(Error::kube(format!(
        "get AutoscalingRunnerSet {}/{}",
        t.ars_namespace, t.ars_name
    )))?;
    if ars.is_none() {
        tracing::info!(listener = %name, namespace = %ns, ars = %t.ars_name, ars_namespace = %t.ars_namespace,
            "AutoscalingRunnerSet is gone; deleting the listener");
        delete_if_exists(&api, &name).await?;
        return Ok(Action::await_change());
    }

    // Credentials live in the ARS namespace; a vault gives them to the listener directly.
    let credentials: Option<GitHubSecret> = match config::vault_type(&al.spec) {
        Some(_) => None,
        None => Some(
            github::read_secret(
                client,
                &t.ars_namespace,
                al.spec.github_config_secret.as_deref().unwrap_or_default(),
            )
            .await?,
        ),
    };

    let prefixes = ctx.excluded_prefixes();
    let sas: Api<ServiceAccount> = Api::namespaced(client.clone(), &ns);
    ensure(
        &sas,
        &desired_service_account(al, prefixes),
        "ServiceAccount",
        &name,
        service_account_patch,
    )
    .await?;
    let roles: Api<Role> = Api::namespaced(client.clone(), &t.ars_namespace);
    ensure(&roles, &desired_role(al, &t, prefixes), "Role", &name, role_patch).await?;
    let rbs: Api<RoleBinding> = Api::namespaced(client.clone(), &t.ars_namespace);
    ensure_role_binding(&rbs, &desired_role_binding(al, &t, prefixes), &name).await?;

    let secrets: Api<Secret> = Api::namespaced(client.clone(), &ns);
    let proxy = match &al.spec.proxy {
        Some(p) => proxy_data(&github::resolve_proxy(client, &t.ars_namespace, Some(p)).await?),
        None => BTreeMap::new(),
    };
    if al.spec.proxy.is_some() {
        ensure(
            &secrets,
            &desired_proxy_secret(al, proxy.clone()),
            "Secret",
            &name,
            secret_patch,
        )
        .await?;
    } else {
        // The proxy was removed: its secret goes (nothing references it any more).
        delete_step(&secrets, &listener_proxy_secret_name(&name), "Secret", &name).await?;
    }

    let root_ca = github::resolve_root_ca(client, &t.ars_namespace, al.spec.github_server_tls.as_ref()).await?;
    let settings = &ctx.settings;
    let metrics = config::metrics_server(&settings.listener_metrics_addr, &settings.listener_metrics_endpoint);
    let invalid = |field: &str, reason: String| Error::InvalidSpec {
        kind: KIND,
        namespace: ns.clone(),
        name: name.clone(),
        field: field.to_owned(),
        reason,
    };
    let config_json = config::build(&config::Inputs {
        spec: &al.spec,
        credentials: credentials.as_ref(),
        root_ca: root_ca.as_deref(),
        log_level: settings.listener_log_level(),
        log_format: settings.listener_log_format(),
        metrics: metrics.as_ref(),
    })
    .and_then(|c| c.to_json())
    .map_err(|e| invalid(&format!("config.json {}", e.field), e.reason))?;
    let config_secret = desired_config_secret(al, config_json.clone(), prefixes);
    ensure(&secrets, &config_secret, "Secret", &name, secret_patch).await?;

    let image = al
        .spec
        .image
        .as_deref()
        .filter(|i| !i.is_empty())
        .unwrap_or(&settings.listener_image);
    let desired = pod::desired(
        &pod::Inputs {
            al,
            image,
            entrypoint: &settings.listener_entrypoint,
            metrics: metrics.as_ref(),
            proxy_data: &proxy,
            excluded_prefixes: prefixes,
        },
        &config_json,
    )
    .map_err(|e| Error::Other(format!("listener pod of {ns}/{name}: {e}")))?;
    reconcile_pod(&ctx, al, desired).await
}

async fn reconcile_pod(ctx: &Context, al: &AutoscalingListener, desired: Pod) -> Result<Action> {
    let name = al.name_any();
    let ns = namespace_of(al);
    let pods: Api<Pod> = Api::namespaced(ctx.client.clone(), &ns);
    let Some(existing) = get_opt(&pods, &name, "Pod").await? else {
        publish(ctx, al, false);
        return match pods.create(&post_params(), &desired).await {
            Ok(_) => {
                tracing::info!(listener = %name, namespace = %ns, "created listener pod");
                Ok(requeue_secs(RESYNC_SECS))
            }
            // The old pod is still there under the same name (or a concurrent create won).
            Err(e) if is_already_exists(&e) => Ok(requeue_secs(SHORT_REQUEUE_SECS)),
            Err(e) => Err(Error::kube(format!("create Pod {ns}/{name}"))(e)),
        };
    };
    let desired_hash = pod::hash_of(&desired).unwrap_or_default();
    match pod::pod_action(&existing, desired_hash, Timestamp::now()) {
        pod::PodAction::WaitGone => {
            publish(ctx, al, false);
            Ok(requeue_secs(POD_GONE_REQUEUE_SECS))
        }
        pod::PodAction::Delete(why) => {
            publish(ctx, al, false);
            tracing::info!(listener = %name, namespace = %ns, reason = why, "deleting listener pod; it is recreated");
            delete_if_exists(&pods, &name).await?;
            Ok(requeue_secs(SHORT_REQUEUE_SECS))
        }
        pod::PodAction::WaitBeforeDelete(after) => {
            publish(ctx, al, false);
            tracing::debug!(listener = %name, namespace = %ns, "listener exited; recreating it shortly");
            Ok(Action::requeue(after))
        }
        pod::PodAction::Running => {
            publish(ctx, al, true);
            Ok(requeue_secs(RESYNC_SECS))
        }
        pod::PodAction::Starting => {
            publish(ctx, al, false);
            Ok(requeue_secs(RESYNC_SECS))
        }
    }
}

/// Logs the error and retries after [`ERROR_REQUEUE_SECS`].
pub fn error_policy(al: Arc<AutoscalingListener>, err: &Error, _ctx: Arc<Context>) -> Action {
    tracing::warn!(
        listener = %al.name_any(),
        namespace = %namespace_of(al.as_ref()),
        reason = err.reason(),
        error = %err,
        "AutoscalingListener reconcile failed"
    );
    requeue_secs(ERROR_REQUEUE_SECS)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rarc_crd::AutoscalingListenerSpec;
    use serde_json::json;

    fn al() -> AutoscalingListener {
        let mut al = AutoscalingListener::new(
            "set-56b4bcfc-listener",
            AutoscalingListenerSpec {
                github_config_url: Some("https://github.com/my-org/my-repo".into()),
                autoscaling_runner_set_namespace: Some("arc-runners".into()),
                autoscaling_runner_set_name: Some("set".into()),
                ephemeral_runner_set_name: Some("set".into()),
                runner_scale_set_id: 5,
                ..Default::default()
            },
        );
        al.metadata.namespace = Some("arc-systems".into());
        al.metadata.uid = Some("uid-1".into());
        al.metadata.labels = Some(
            [
                (l::COMPONENT.to_owned(), l::COMPONENT_LISTENER.to_owned()),
                (l::PART_OF.to_owned(), l::PART_OF_SCALE_SET.to_owned()),
                ("argocd.argoproj.io/instance".to_owned(), "x".to_owned()),
            ]
            .into(),
        );
        al
    }

    fn t() -> Target {
        target(&al()).expect("target")
    }

    #[test]
    fn target_requires_the_ars_fields() {
        assert_eq!(
            t(),
            Target {
                ars_namespace: "arc-runners".into(),
                ars_name: "set".into()
            }
        );
        let mut bad = al();
        bad.spec.autoscaling_runner_set_name = Some(String::new());
        assert!(
            matches!(target(&bad), Err(Error::InvalidSpec { field, .. }) if field == "spec.autoscalingRunnerSetName")
        );
    }

    #[test]
    fn role_rules_are_exactly_arcs() {
        let rules = serde_json::to_value(role_rules("set")).expect("json");
        assert_eq!(
            rules,
            json!([
                {"apiGroups": ["actions.github.com"], "resources": ["ephemeralrunnersets"], "resourceNames": ["set"], "verbs": ["patch"]},
                {"apiGroups": ["actions.github.com"], "resources": ["ephemeralrunners", "ephemeralrunners/status"], "verbs": ["patch"]}
            ])
        );
        let role = desired_role(&al(), &t(), &[]);
        assert_eq!(role.metadata.namespace.as_deref(), Some("arc-runners"));
        assert_eq!(role.metadata.name.as_deref(), Some("set-56b4bcfc-listener"));
        assert!(role.metadata.owner_references.is_none());
    }

    #[test]
    fn role_binding_links_the_role_to_the_controller_namespace_service_account() {
        let rb = desired_role_binding(&al(), &t(), &[]);
        assert_eq!(rb.metadata.namespace.as_deref(), Some("arc-runners"));
        assert_eq!(
            (
                rb.role_ref.api_group.as_str(),
                rb.role_ref.kind.as_str(),
                rb.role_ref.name.as_str()
            ),
            ("rbac.authorization.k8s.io", "Role", "set-56b4bcfc-listener")
        );
        let s = &rb.subjects.as_ref().expect("subjects")[0];
        assert_eq!(
            (s.kind.as_str(), s.name.as_str(), s.namespace.as_deref()),
            ("ServiceAccount", "set-56b4bcfc-listener", Some("arc-systems"))
        );
        assert!(rb.metadata.owner_references.is_none());
    }

    #[test]
    fn labels_reserved_keys_win_and_prefixes_are_excluded() {
        let mut al = al();
        al.spec.role_metadata = Some(ResourceMeta {
            labels: Some(
                [
                    (l::LISTENER_NAME.to_owned(), "evil".to_owned()),
                    ("team".to_owned(), "a".to_owned()),
                    ("argocd.argoproj.io/x".to_owned(), "y".to_owned()),
                ]
                .into(),
            ),
            annotations: Some([("note".to_owned(), "n".to_owned())].into()),
        });
        let prefixes = vec!["argocd.argoproj.io/".to_owned()];
        let role = desired_role(&al, &t(), &prefixes);
        let labels = role.metadata.labels.as_ref().expect("labels");
        assert_eq!(labels[l::LISTENER_NAME], "set-56b4bcfc-listener");
        assert_eq!(labels[l::LISTENER_NAMESPACE], "arc-systems");
        assert_eq!(labels[l::SCALE_SET_NAME], "set");
        assert_eq!(labels[l::SCALE_SET_NAMESPACE], "arc-runners");
        assert_eq!(labels[l::COMPONENT], l::COMPONENT_LISTENER);
        assert_eq!(labels[l::PART_OF], l::PART_OF_SCALE_SET);
        assert_eq!(labels["team"], "a");
        assert!(!labels.keys().any(|k| k.starts_with("argocd.argoproj.io/")));
        assert_eq!(role.metadata.annotations.as_ref().expect("ann")["note"], "n");

        let sa = desired_service_account(&al, &prefixes);
        let labels = sa.metadata.labels.as_ref().expect("labels");
        assert!(!labels.contains_key(l::LISTENER_NAME));
        assert_eq!(labels[l::SCALE_SET_NAME], "set");
        assert!(!labels.contains_key("argocd.argoproj.io/instance"));
        assert_eq!(sa.metadata.namespace.as_deref(), Some("arc-systems"));
        assert_eq!(
            sa.metadata.owner_references.as_ref().expect("owner")[0].name,
            "set-56b4bcfc-listener"
        );
    }

    #[test]
    fn the_watched_component_label_survives_exclusion() {
        let prefixes = vec!["app.kubernetes.io/".to_owned()];
        let role = desired_role(&al(), &t(), &prefixes);
        let labels = role.metadata.labels.as_ref().expect("labels");
        assert_eq!(labels[l::COMPONENT], l::COMPONENT_LISTENER);
        assert!(!labels.contains_key(l::PART_OF));
        let sa = desired_service_account(&al(), &prefixes);
        assert_eq!(
            sa.metadata.labels.as_ref().expect("labels")[l::COMPONENT],
            l::COMPONENT_LISTENER
        );
    }

    #[test]
    fn forbidden_is_recognised() {
        let api = |code: u16| Error::Kube {
            context: "get Role".into(),
            source: kube::Error::Api(kube::core::Status::failure("no", "Forbidden").with_code(code).boxed()),
        };
        assert!(is_forbidden(&api(403)));
        assert!(!is_forbidden(&api(404)));
        assert!(matches!(forbidden_as_gone(Err(api(403)), "l"), Ok(false)));
        assert!(forbidden_as_gone(Err(api(500)), "l").is_err());
    }

    #[test]
    fn secrets_carry_their_metadata_and_owner() {
        let mut al = al();
        al.spec.config_secret_metadata = Some(ResourceMeta {
            labels: Some(
                [
                    ("a".to_owned(), "1".to_owned()),
                    ("argocd.argoproj.io/x".to_owned(), "2".to_owned()),
                ]
                .into(),
            ),
            annotations: None,
        });
        let prefixes = vec!["argocd.argoproj.io/".to_owned()];
        let config = desired_config_secret(&al, b"{}".to_vec(), &prefixes);
        assert_eq!(config.metadata.name.as_deref(), Some("set-56b4bcfc-listener-config"));
        assert_eq!(config.metadata.labels, Some([("a".to_owned(), "1".to_owned())].into()));
        assert_eq!(
            config.data.as_ref().expect("data")["config.json"],
            ByteString(b"{}".to_vec())
        );
        assert_eq!(config.metadata.owner_references.as_ref().expect("owner").len(), 1);

        let env = ProxyEnv {
            http_proxy: Some("http://u:p@proxy:3128".into()),
            https_proxy: None,
            no_proxy: Some("a,b".into()),
        };
        let data = proxy_data(&env);
        assert_eq!(
            data.keys().map(String::as_str).collect::<Vec<_>>(),
            ["http_proxy", "no_proxy"]
        );
        let proxy = desired_proxy_secret(&al, data);
        assert_eq!(proxy.metadata.name.as_deref(), Some("set-56b4bcfc-listener-proxy"));
        assert_eq!(
            proxy.metadata.labels,
            Some(
                [
                    (l::SCALE_SET_NAME.to_owned(), "set".to_owned()),
                    (l::SCALE_SET_NAMESPACE.to_owned(), "arc-runners".to_owned())
                ]
                .into()
            )
        );
    }

    #[test]
    fn gauge_labels_name_the_listener_and_the_url() {
        assert_eq!(
            gauge_labels(&al()),
            vec![
                ("name", "set-56b4bcfc-listener".to_owned()),
                ("namespace", "arc-systems".to_owned()),
                ("repository", "my-repo".to_owned()),
                ("organization", "my-org".to_owned()),
                ("enterprise", String::new()),
            ]
        );
    }

    #[test]
    fn no_patch_when_nothing_differs_and_extra_keys_are_kept() {
        let want = desired_role(&al(), &t(), &[]);
        let mut have = want.clone();
        have.metadata
            .labels
            .get_or_insert_with(Default::default)
            .insert("added-by-someone".into(), "x".into());
        have.metadata.resource_version = Some("7".into());
        assert_eq!(role_patch(&have, &want), None);
        let sa = desired_service_account(&al(), &[]);
        assert_eq!(service_account_patch(&sa, &sa), None);
        let rb = desired_role_binding(&al(), &t(), &[]);
        let mut rb_have = rb.clone();
        // The API server fills in the subject's apiGroup; that is not drift.
        if let Some(s) = rb_have.subjects.as_mut() {
            s[0].api_group = Some(String::new());
        }
        assert_eq!(role_binding_patch(&rb_have, &rb), None);
        assert!(!role_ref_differs(&rb_have, &rb));
    }

    #[test]
    fn role_drift_restores_rules_and_labels() {
        let want = desired_role(&al(), &t(), &[]);
        let mut have = want.clone();
        have.rules = Some(vec![PolicyRule {
            verbs: vec!["*".into()],
            ..Default::default()
        }]);
        if let Some(l) = have.metadata.labels.as_mut() {
            l.insert(l::LISTENER_NAME.into(), "other".into());
        }
        let patch = role_patch(&have, &want).expect("drift");
        assert_eq!(patch["rules"], serde_json::to_value(&want.rules).expect("json"));
        assert_eq!(
            patch["metadata"],
            json!({"labels": {l::LISTENER_NAME: "set-56b4bcfc-listener"}})
        );
        // Rules written with empty lists instead of absent ones are the same rules.
        let mut same = want.clone();
        if let Some(r) = same.rules.as_mut() {
            r[1].resource_names = Some(vec![]);
        }
        assert!(rules_equal(same.rules.as_ref(), want.rules.as_ref()));
    }

    #[test]
    fn role_binding_drift() {
        let want = desired_role_binding(&al(), &t(), &[]);
        let mut have = want.clone();
        have.role_ref.name = "other".into();
        assert!(role_ref_differs(&have, &want));
        let mut have = want.clone();
        have.subjects = Some(vec![]);
        assert_eq!(
            role_binding_patch(&have, &want).expect("drift")["subjects"][0]["name"],
            "set-56b4bcfc-listener"
        );
    }

    #[test]
    fn secret_drift_updates_data_and_drops_stale_keys() {
        let want = desired_config_secret(&al(), b"{\"new\":1}".to_vec(), &[]);
        assert_eq!(secret_patch(&want, &want), None);
        let mut have = want.clone();
        have.data = Some(
            [
                ("config.json".to_owned(), ByteString(b"{\"old\":1}".to_vec())),
                ("stale".to_owned(), ByteString(b"x".to_vec())),
            ]
            .into(),
        );
        let patch = secret_patch(&have, &want).expect("drift");
        assert_eq!(patch, json!({"data": {"config.json": "eyJuZXciOjF9", "stale": null}}));
    }
}
