//! The four reconcilers and what they share: owner references, finalizers, status patches.
//!
//! Each reconciler module keeps its decisions in pure functions (unit-tested beside them) and
//! does the Kubernetes and GitHub I/O in `reconcile`.

pub mod autoscaling_listener;
pub mod autoscaling_runner_set;
pub mod ephemeral_runner;
pub mod ephemeral_runner_set;

use std::fmt::Debug;
use std::time::Duration;

use k8s_openapi::api::core::v1::{EnvVar, EnvVarSource, SecretKeySelector};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::api::{Patch, PatchParams, PostParams};
use kube::runtime::controller::Action;
use kube::{Api, Resource, ResourceExt};
use rarc_actions::ProxyEnv;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::json;

use crate::error::{Error, Result, is_not_found};

/// The field manager of every write.
pub const FIELD_MANAGER: &str = "rarc-controller";

/// Create options naming [`FIELD_MANAGER`].
pub(crate) fn post_params() -> PostParams {
    PostParams {
        field_manager: Some(FIELD_MANAGER.into()),
        ..PostParams::default()
    }
}

/// Patch options naming [`FIELD_MANAGER`].
pub(crate) fn patch_params() -> PatchParams {
    PatchParams {
        field_manager: Some(FIELD_MANAGER.into()),
        ..PatchParams::default()
    }
}

/// A controller owner reference to `owner` (controller and blockOwnerDeletion true).
pub fn owner_reference<K: Resource<DynamicType = ()>>(owner: &K) -> OwnerReference {
    OwnerReference {
        api_version: K::api_version(&()).into_owned(),
        kind: K::kind(&()).into_owned(),
        name: owner.meta().name.clone().unwrap_or_default(),
        uid: owner.meta().uid.clone().unwrap_or_default(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    }
}

/// True when `obj` carries `finalizer`.
pub fn has_finalizer<K: Resource>(obj: &K, finalizer: &str) -> bool {
    obj.meta()
        .finalizers
        .as_ref()
        .is_some_and(|f| f.iter().any(|x| x == finalizer))
}

/// Requeue after `secs` seconds.
pub fn requeue_secs(secs: u64) -> Action {
    Action::requeue(Duration::from_secs(secs))
}

/// Writes `finalizers` (the whole list) with the object's resourceVersion as a precondition, so a
/// concurrent change makes this fail (409) and the reconcile retry instead of clobbering it.
async fn write_finalizers<K>(api: &Api<K>, obj: &K, finalizers: Vec<String>) -> Result<()>
where
    K: Resource + Clone + DeserializeOwned + Serialize + Debug,
{
    let name = obj.name_any();
    let patch = json!({ "metadata": { "resourceVersion": obj.resource_version(), "finalizers": finalizers } });
    match api.patch(&name, &PatchParams::default(), &Patch::Merge(&patch)).await {
        Ok(_) => Ok(()),
        Err(e) if is_not_found(&e) => Ok(()),
        Err(e) => Err(Error::kube(format!("patch finalizers of {name}"))(e)),
    }
}

/// Adds the `wanted` finalizers that are missing (one write, none if all are there).
pub async fn add_finalizers<K>(api: &Api<K>, obj: &K, wanted: &[&str]) -> Result<bool>
where
    K: Resource + Clone + DeserializeOwned + Serialize + Debug,
{
    let mut list = obj.finalizers().to_vec();
    let before = list.len();
    for f in wanted {
        if !list.iter().any(|x| x == f) {
            list.push((*f).to_owned());
        }
    }
    if list.len() == before {
        return Ok(false);
    }
    write_finalizers(api, obj, list).await?;
    Ok(true)
}

/// Removes the `unwanted` finalizers that are present (one write, none if absent).
pub async fn remove_finalizers<K>(api: &Api<K>, obj: &K, unwanted: &[&str]) -> Result<bool>
where
    K: Resource + Clone + DeserializeOwned + Serialize + Debug,
{
    let list: Vec<String> = obj
        .finalizers()
        .iter()
        .filter(|f| !unwanted.contains(&f.as_str()))
        .cloned()
        .collect();
    if list.len() == obj.finalizers().len() {
        return Ok(false);
    }
    write_finalizers(api, obj, list).await?;
    Ok(true)
}

/// A JSON merge patch of the status subresource.
pub async fn patch_status<K>(api: &Api<K>, name: &str, status: serde_json::Value) -> Result<()>
where
    K: Resource + Clone + DeserializeOwned + Debug,
{
    api.patch_status(
        name,
        &PatchParams::default(),
        &Patch::Merge(&json!({ "status": status })),
    )
    .await
    .map(|_| ())
    .map_err(Error::kube(format!("patch status of {name}")))
}

/// Deletes `name`; a 404 counts as done. Returns whether a delete was sent to an existing object.
pub async fn delete_if_exists<K>(api: &Api<K>, name: &str) -> Result<bool>
where
    K: Resource + Clone + DeserializeOwned + Debug,
{
    match api.delete(name, &Default::default()).await {
        Ok(_) => Ok(true),
        Err(e) if is_not_found(&e) => Ok(false),
        Err(e) => Err(Error::kube(format!("delete {name}"))(e)),
    }
}

/// The namespace of a namespaced object (empty for none).
pub fn namespace_of<K: Resource>(obj: &K) -> String {
    obj.meta().namespace.clone().unwrap_or_default()
}

/// `name` from key `key` of Secret `secret`.
pub(crate) fn secret_env(name: &str, secret: &str, key: &str) -> EnvVar {
    EnvVar {
        name: name.to_owned(),
        value_from: Some(EnvVarSource {
            secret_key_ref: Some(SecretKeySelector {
                name: secret.to_owned(),
                key: key.to_owned(),
                optional: None,
            }),
            ..EnvVarSource::default()
        }),
        ..EnvVar::default()
    }
}

/// `name=value`.
pub(crate) fn value_env(name: &str, value: &str) -> EnvVar {
    EnvVar {
        name: name.to_owned(),
        value: Some(value.to_owned()),
        ..EnvVar::default()
    }
}

/// The keys of a proxy Secret (the runners' and the listener's), each also the name of the env
/// var it feeds.
pub const PROXY_KEYS: [&str; 3] = ["http_proxy", "https_proxy", "no_proxy"];

/// Each proxy Secret key with its value in `env`.
pub(crate) fn proxy_values(env: &ProxyEnv) -> [(&'static str, Option<&String>); 3] {
    let [http, https, no] = PROXY_KEYS;
    [
        (http, env.http_proxy.as_ref()),
        (https, env.https_proxy.as_ref()),
        (no, env.no_proxy.as_ref()),
    ]
}

/// A stable hash of any serializable value (of its JSON: struct field order, sorted maps).
pub fn hash_of<T: serde::Serialize>(value: &T) -> String {
    rarc_crd::names::content_hash(serde_json::to_string(value).unwrap_or_default().as_bytes())
}
