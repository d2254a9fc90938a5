//! Server-side apply of multi-document YAML manifests, for any kind the API server serves.

use std::{
    collections::HashMap,
    time::{Duration, Instant},
};

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::{
    Api, Client,
    api::{Patch, PatchParams},
    core::{DynamicObject, GroupVersionKind},
    discovery::{ApiCapabilities, ApiResource, Scope},
    runtime::wait::conditions,
};

use crate::{Error, await_condition};

/// The field manager of every server-side apply made by these helpers.
pub const FIELD_MANAGER: &str = "rarc-tests";

/// How long a CustomResourceDefinition applied by [`apply_yaml`] may take to become Established.
const CRD_ESTABLISHED_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a kind may take to appear in discovery after its CRD was applied.
const NEW_KIND_TIMEOUT: Duration = Duration::from_secs(30);

/// Parses a YAML stream (documents separated by `---`; empty documents are skipped) into JSON values.
pub fn parse_yaml_documents(yaml: &str) -> Result<Vec<serde_json::Value>, Error> {
    let documents: Vec<serde_json::Value> = serde_saphyr::from_multiple(yaml).map_err(|source| Error::ParseYaml {
        source: Box::new(source),
    })?;
    Ok(documents.into_iter().filter(|doc| !doc.is_null()).collect())
}

/// Server-side applies every document of `yaml`, in order, with field manager [`FIELD_MANAGER`]
/// (forcing conflicts), and returns the objects as the API server stored them.
///
/// Each document's kind is looked up in API discovery, so any built-in or custom kind works.
/// Namespaced objects go to their own `metadata.namespace`, else to `namespace`; cluster-scoped
/// objects ignore `namespace`. After a CustomResourceDefinition is applied, this waits until it
/// is Established, so a later document of the same manifest may be one of its custom resources.
pub async fn apply_yaml(client: &Client, namespace: Option<&str>, yaml: &str) -> Result<Vec<DynamicObject>, Error> {
    let params = PatchParams::apply(FIELD_MANAGER).force();
    let mut kinds: HashMap<GroupVersionKind, (ApiResource, ApiCapabilities)> = HashMap::new();
    let mut applied_a_crd = false;
    let mut applied = Vec::new();
    for (index, document) in parse_yaml_documents(yaml)?.into_iter().enumerate() {
        let object: DynamicObject =
            serde_json::from_value(document).map_err(|source| Error::DecodeObject { index, source })?;
        let invalid = |reason: &str| Error::InvalidObject {
            index,
            reason: reason.to_owned(),
        };
        let types = object
            .types
            .as_ref()
            .ok_or_else(|| invalid("it has no apiVersion and kind"))?;
        let gvk = GroupVersionKind::try_from(types).map_err(|e| invalid(&e.to_string()))?;
        let name = object
            .metadata
            .name
            .clone()
            .ok_or_else(|| invalid("it has no metadata.name"))?;
        let (resource, capabilities) = match kinds.get(&gvk) {
            Some(found) => found.clone(),
            None => {
                let found = discover(client, &gvk, applied_a_crd).await?;
                kinds.insert(gvk.clone(), found.clone());
                found
            }
        };
        let api: Api<DynamicObject> = match capabilities.scope {
            Scope::Cluster => Api::all_with(client.clone(), &resource),
            Scope::Namespaced => {
                let ns = object
                    .metadata
                    .namespace
                    .as_deref()
                    .or(namespace)
                    .ok_or_else(|| invalid("it is namespaced but has no namespace, and none was given"))?;
                Api::namespaced_with(client.clone(), ns, &resource)
            }
        };
        let stored = api
            .patch(&name, &params, &Patch::Apply(&object))
            .await
            .map_err(|source| Error::Apply {
                kind: gvk.kind.clone(),
                name: name.clone(),
                source,
            })?;
        tracing::debug!(kind = %gvk.kind, %name, "applied");
        if gvk.group == "apiextensions.k8s.io" && gvk.kind == "CustomResourceDefinition" {
            let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
            await_condition(&crds, &name, conditions::is_crd_established(), CRD_ESTABLISHED_TIMEOUT).await?;
            applied_a_crd = true;
        }
        applied.push(stored);
    }
    Ok(applied)
}

/// Installs CustomResourceDefinitions: server-side applies each manifest of `manifests` with
/// [`apply_yaml`] (which waits until each CRD it applies is Established), then waits until each
/// CRD named in `names` is Established, for at most `timeout` each.
///
/// For rarc's four CRDs: `install_crds(&client, rarc_crd::crds_yaml().into_iter().map(|(_, yaml)| yaml),
/// &rarc_crd::CRD_NAMES, timeout)`.
pub async fn install_crds(
    client: &Client,
    manifests: impl IntoIterator<Item = impl AsRef<str>>,
    names: &[&str],
    timeout: Duration,
) -> Result<(), Error> {
    for yaml in manifests {
        apply_yaml(client, None, yaml.as_ref()).await?;
    }
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    for name in names {
        await_condition(&crds, name, conditions::is_crd_established(), timeout).await?;
    }
    Ok(())
}

/// Finds the resource serving `gvk`. After a CRD was applied, a kind may take a moment to be
/// discoverable, so then failures are retried for a while.
async fn discover(
    client: &Client,
    gvk: &GroupVersionKind,
    may_be_new: bool,
) -> Result<(ApiResource, ApiCapabilities), Error> {
    let deadline = Instant::now() + if may_be_new { NEW_KIND_TIMEOUT } else { Duration::ZERO };
    loop {
        match kube::discovery::pinned_kind(client, gvk).await {
            Ok(found) => return Ok(found),
            Err(error) if Instant::now() < deadline => {
                tracing::debug!(?gvk, %error, "kind not discoverable yet");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            Err(source) => {
                return Err(Error::Discover {
                    gvk: format!("{}/{} {}", gvk.group, gvk.version, gvk.kind),
                    source,
                });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::parse_yaml_documents;

    #[test]
    fn multi_document_yaml_skips_empty_documents() {
        let yaml = "---\n# a comment only\n---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: a\ndata:\n  n: \"1\"\n---\n---\napiVersion: v1\nkind: Secret\nmetadata: {name: b}\nstringData: {x: y}\n";
        let docs = parse_yaml_documents(yaml).unwrap();
        assert_eq!(docs.len(), 2, "{docs:?}");
        assert_eq!(docs[0]["kind"], "ConfigMap");
        assert_eq!(docs[0]["data"]["n"], "1");
        assert_eq!(docs[1]["metadata"]["name"], "b");
    }

    #[test]
    fn scalars_keep_their_yaml_types() {
        let docs = parse_yaml_documents("a: 1\nb: true\nc: \"1\"\nd: [x]\ne: {}\n").unwrap();
        assert_eq!(
            docs[0],
            serde_json::json!({"a": 1, "b": true, "c": "1", "d": ["x"], "e": {}})
        );
    }

    #[test]
    fn invalid_yaml_is_an_error() {
        assert!(parse_yaml_documents("a: [unclosed\n").is_err());
    }

    /// A fake API server that serves discovery of core/v1 ConfigMaps and Namespaces and answers
    /// every PATCH with its body, recording the requests.
    mod fake {
        use std::sync::{Arc, Mutex};

        use kube::client::Body;

        #[derive(Debug, Clone)]
        pub struct Seen {
            pub method: String,
            pub uri: String,
            pub content_type: String,
            pub body: serde_json::Value,
        }

        pub fn client() -> (kube::Client, Arc<Mutex<Vec<Seen>>>) {
            let seen = Arc::new(Mutex::new(Vec::new()));
            let log = seen.clone();
            let service = tower::service_fn(move |request: http::Request<Body>| {
                let log = log.clone();
                async move {
                    let (parts, body) = request.into_parts();
                    let body = body.collect_bytes().await.unwrap();
                    log.lock().unwrap().push(Seen {
                        method: parts.method.to_string(),
                        uri: parts.uri.to_string(),
                        content_type: parts
                            .headers
                            .get(http::header::CONTENT_TYPE)
                            .map(|v| v.to_str().unwrap().to_owned())
                            .unwrap_or_default(),
                        body: serde_json::from_slice(&body).unwrap_or_default(),
                    });
                    let (status, answer) = match (parts.method.as_str(), parts.uri.path()) {
                        ("GET", "/api/v1") => (200, discovery().to_string().into_bytes()),
                        ("PATCH", _) => (200, body.to_vec()),
                        _ => (404, not_found().to_string().into_bytes()),
                    };
                    let response = http::Response::builder()
                        .status(status)
                        .body(Body::from(answer))
                        .unwrap();
                    Ok::<_, std::convert::Infallible>(response)
                }
            });
            (kube::Client::new(service, "default"), seen)
        }

        fn discovery() -> serde_json::Value {
            serde_json::json!({
                "kind": "APIResourceList",
                "groupVersion": "v1",
                "resources": [
                    {"name": "configmaps", "singularName": "configmap", "namespaced": true, "kind": "ConfigMap",
                     "verbs": ["create", "delete", "get", "list", "patch", "update", "watch"]},
                    {"name": "namespaces", "singularName": "namespace", "namespaced": false, "kind": "Namespace",
                     "verbs": ["create", "delete", "get", "list", "patch", "update", "watch"]},
                ],
            })
        }

        fn not_found() -> serde_json::Value {
            serde_json::json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "NotFound", "code": 404, "message": "not found"})
        }
    }

    #[tokio::test]
    async fn applies_each_document_where_it_belongs_with_one_field_manager() {
        let (client, seen) = fake::client();
        let yaml = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\ndata: {k: v}\n---\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: b, namespace: other}\n---\napiVersion: v1\nkind: Namespace\nmetadata: {name: c}\n";
        let applied = super::apply_yaml(&client, Some("given"), yaml).await.unwrap();
        assert_eq!(applied.len(), 3);
        assert_eq!(applied[0].data["data"]["k"], "v");

        let seen = seen.lock().unwrap().clone();
        let calls: Vec<(&str, &str)> = seen.iter().map(|s| (s.method.as_str(), s.uri.as_str())).collect();
        assert_eq!(
            calls,
            [
                ("GET", "/api/v1"),
                (
                    "PATCH",
                    "/api/v1/namespaces/given/configmaps/a?&force=true&fieldManager=rarc-tests"
                ),
                (
                    "PATCH",
                    "/api/v1/namespaces/other/configmaps/b?&force=true&fieldManager=rarc-tests"
                ),
                ("GET", "/api/v1"),
                ("PATCH", "/api/v1/namespaces/c?&force=true&fieldManager=rarc-tests"),
            ],
            "discovery is asked once per kind"
        );
        for patch in seen.iter().filter(|s| s.method == "PATCH") {
            assert_eq!(patch.content_type, "application/apply-patch+yaml");
            assert_eq!(patch.body["apiVersion"], "v1", "{:?}", patch.body);
        }
    }

    #[tokio::test]
    async fn a_namespaced_object_without_a_namespace_is_refused() {
        let (client, _) = fake::client();
        let error = super::apply_yaml(&client, None, "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\n")
            .await
            .unwrap_err();
        assert!(
            matches!(error, crate::Error::InvalidObject { index: 0, .. }),
            "{error:?}"
        );
    }

    #[tokio::test]
    async fn an_unknown_kind_fails_at_once() {
        let (client, _) = fake::client();
        let yaml = "apiVersion: example.com/v1\nkind: Nope\nmetadata: {name: a}\n";
        let error = super::apply_yaml(&client, Some("ns"), yaml).await.unwrap_err();
        assert!(
            matches!(&error, crate::Error::Discover { gvk, .. } if gvk == "example.com/v1 Nope"),
            "{error:?}"
        );
    }
}
