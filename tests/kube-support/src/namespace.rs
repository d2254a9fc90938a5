//! Throw-away namespaces, one per test.

use std::{collections::BTreeMap, future::Future, panic::AssertUnwindSafe, time::Duration};

use futures::FutureExt as _;
use k8s_openapi::{
    api::core::v1::{ConfigMap, Namespace, ServiceAccount},
    apimachinery::pkg::apis::meta::v1::ObjectMeta,
};
use kube::{
    Api, Client, Config, Resource,
    api::{DeleteParams, PostParams},
    runtime::wait::conditions,
};

use crate::{Error, await_condition};

/// Label put on every temporary namespace, so leftovers can be found with
/// `kubectl get ns -l rarc.test/temporary=true`.
pub const TEMP_NAMESPACE_LABEL: &str = "rarc.test/temporary";

/// How long [`TempNamespace::new`] waits for the namespace and its `default` ServiceAccount.
const READY_TIMEOUT: Duration = Duration::from_secs(60);
/// How long [`TempNamespace::delete`] waits for the namespace to be gone.
const DELETE_TIMEOUT: Duration = Duration::from_secs(180);
/// How long the [`Drop`] fallback may take to send its delete request.
const DROP_DELETE_TIMEOUT: Duration = Duration::from_secs(10);

/// A namespace made for one test and deleted after it.
///
/// Call [`delete`](Self::delete) at the end. If the value is dropped without it (a test that
/// panicked or timed out), `Drop` still sends the delete request, over a new connection made from
/// the kubeconfig that [`client`](crate::client) uses, but does not wait for the namespace to go.
pub struct TempNamespace {
    client: Client,
    name: String,
    uid: String,
    /// For the `Drop` fallback: the test's own [`Client`] may belong to a runtime that is gone.
    config: Option<Config>,
    deleted: bool,
}

impl TempNamespace {
    /// Creates a namespace named `<prefix>-<5 random characters>` (the API server picks the
    /// suffix through `generateName`), then waits until it is `Active` and its `default`
    /// ServiceAccount and `kube-root-ca.crt` ConfigMap exist, since pods need both.
    ///
    /// `prefix` is made a valid DNS label (lowercased, other characters turned into `-`, cut to
    /// 40 characters), so a test function's name can be passed as it is.
    pub async fn new(client: &Client, prefix: &str) -> Result<Self, Error> {
        let prefix = dns_label_prefix(prefix);
        let config = match crate::client::load_config().await {
            Ok((config, _)) => Some(config),
            Err(error) => {
                tracing::warn!(?error, "no kubeconfig for the namespace delete fallback");
                None
            }
        };
        let namespaces: Api<Namespace> = Api::all(client.clone());
        let wanted = Namespace {
            metadata: ObjectMeta {
                generate_name: Some(format!("{prefix}-")),
                labels: Some(BTreeMap::from([(TEMP_NAMESPACE_LABEL.to_owned(), "true".to_owned())])),
                ..ObjectMeta::default()
            },
            ..Namespace::default()
        };
        // A generated name can collide with an existing one (409); the API server asks to retry.
        let mut attempts = 0;
        let created = loop {
            attempts += 1;
            match namespaces.create(&PostParams::default(), &wanted).await {
                Err(kube::Error::Api(status)) if status.is_already_exists() && attempts < 5 => continue,
                other => {
                    break other.map_err(|source| Error::CreateNamespace {
                        prefix: prefix.clone(),
                        source,
                    })?;
                }
            }
        };
        let ns = Self {
            client: client.clone(),
            name: created.metadata.name.clone().unwrap_or_default(),
            uid: created.metadata.uid.clone().unwrap_or_default(),
            config,
            deleted: false,
        };
        tracing::info!(namespace = %ns.name, "created temporary namespace");
        if let Err(error) = ns.wait_usable().await {
            // Best effort: the wait's error is the one worth reporting.
            if let Err(cleanup) = ns.delete().await {
                tracing::warn!(error = ?cleanup, "cannot delete the unusable namespace");
            }
            return Err(error);
        }
        Ok(ns)
    }

    async fn wait_usable(&self) -> Result<(), Error> {
        let namespaces: Api<Namespace> = Api::all(self.client.clone());
        let active = |ns: Option<&Namespace>| {
            ns.and_then(|ns| ns.status.as_ref())
                .and_then(|s| s.phase.as_deref())
                .is_some_and(|phase| phase == "Active")
        };
        let not_usable = |problem| {
            let name = self.name.clone();
            move |source| Error::NamespaceNotUsable {
                name,
                problem,
                source: Box::new(source),
            }
        };
        await_condition(&namespaces, &self.name, active, READY_TIMEOUT)
            .await
            .map_err(not_usable("it did not become Active"))?;
        await_condition(&self.api::<ServiceAccount>(), "default", conditions::is_created(), READY_TIMEOUT)
            .await
            .map_err(not_usable(
                "its default ServiceAccount did not appear (is kube-controller-manager running its serviceaccount controller?)",
            ))?;
        await_condition(&self.api::<ConfigMap>(), "kube-root-ca.crt", conditions::is_created(), READY_TIMEOUT)
            .await
            .map_err(not_usable(
                "its kube-root-ca.crt ConfigMap did not appear (is kube-controller-manager running its root-ca-cert-publisher controller?)",
            ))?;
        Ok(())
    }

    /// The namespace's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The client the namespace was made with.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// An [`Api`] for a namespaced kind in this namespace.
    pub fn api<K>(&self) -> Api<K>
    where
        K: Resource<Scope = k8s_openapi::NamespaceResourceScope>,
        <K as Resource>::DynamicType: Default,
    {
        Api::namespaced(self.client.clone(), &self.name)
    }

    /// Deletes the namespace and waits (up to 3 minutes) until it is gone, with everything in it.
    pub async fn delete(mut self) -> Result<(), Error> {
        self.deleted = true;
        let namespaces: Api<Namespace> = Api::all(self.client.clone());
        match namespaces.delete(&self.name, &DeleteParams::background()).await {
            Ok(_) => {}
            Err(kube::Error::Api(status)) if status.is_not_found() => return Ok(()),
            Err(source) => {
                return Err(Error::DeleteNamespace {
                    name: self.name.clone(),
                    source,
                });
            }
        }
        await_condition(
            &namespaces,
            &self.name,
            conditions::is_deleted(&self.uid),
            DELETE_TIMEOUT,
        )
        .await?;
        tracing::info!(namespace = %self.name, "deleted temporary namespace");
        Ok(())
    }
}

impl Drop for TempNamespace {
    fn drop(&mut self) {
        if self.deleted {
            return;
        }
        tracing::warn!(namespace = %self.name, "temporary namespace dropped without delete(); deleting it in the background");
        let Some(config) = self.config.take() else {
            tracing::error!(namespace = %self.name, "no kubeconfig to delete the namespace with: it is left behind");
            return;
        };
        // The test's runtime may be unwinding or gone, so use a runtime of our own on a thread.
        let name = std::mem::take(&mut self.name);
        let sender = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
            runtime.block_on(async {
                let client = Client::try_from(config).map_err(std::io::Error::other)?;
                let namespaces: Api<Namespace> = Api::all(client);
                let params = DeleteParams::background();
                match tokio::time::timeout(DROP_DELETE_TIMEOUT, namespaces.delete(&name, &params)).await {
                    Ok(Ok(_)) => Ok(()),
                    Ok(Err(kube::Error::Api(status))) if status.is_not_found() => Ok(()),
                    Ok(Err(e)) => Err(std::io::Error::other(e)),
                    Err(elapsed) => Err(std::io::Error::other(elapsed)),
                }
            })
        });
        match sender.join() {
            Ok(Ok(())) => {}
            Ok(Err(error)) => tracing::error!(%error, "cannot delete the temporary namespace"),
            Err(_) => tracing::error!("the thread deleting the temporary namespace panicked"),
        }
    }
}

/// Runs `f(client, namespace)` in a new temporary namespace and deletes the namespace afterwards,
/// also when `f` panics (the panic is then resumed after the cleanup).
///
/// Fails before running `f` when there is no test cluster or the namespace cannot be made, and
/// after it when the namespace cannot be deleted. Put a time limit inside `f` (see
/// [`within`](crate::within)) so that a hung test still cleans up.
pub async fn with_temp_ns<F, Fut, T>(prefix: &str, f: F) -> Result<T, Error>
where
    F: FnOnce(Client, String) -> Fut,
    Fut: Future<Output = T>,
{
    let client = crate::client().await?;
    let ns = TempNamespace::new(&client, prefix).await?;
    let name = ns.name().to_owned();
    let outcome = AssertUnwindSafe(async move { f(client, name).await })
        .catch_unwind()
        .await;
    let deleted = ns.delete().await;
    match outcome {
        Ok(value) => deleted.map(|()| value),
        Err(panic) => {
            if let Err(error) = deleted {
                tracing::error!(?error, "cannot delete the temporary namespace of a failed test");
            }
            std::panic::resume_unwind(panic)
        }
    }
}

/// Makes `prefix` usable at the start of a namespace name (a DNS-1123 label).
fn dns_label_prefix(prefix: &str) -> String {
    let mapped: String = prefix
        .chars()
        .map(|c| match c.to_ascii_lowercase() {
            c @ ('a'..='z' | '0'..='9') => c,
            _ => '-',
        })
        .take(40)
        .collect();
    let trimmed = mapped.trim_matches('-');
    if trimmed.is_empty() {
        "rarc-test".to_owned()
    } else {
        trimmed.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::dns_label_prefix;

    #[test]
    fn prefixes_become_dns_labels() {
        for (given, want) in [
            ("smoke", "smoke"),
            ("logs_stream", "logs-stream"),
            ("Exec::Returns", "exec--returns"),
            ("__", "rarc-test"),
            ("", "rarc-test"),
            (
                "deleting_an_owner_garbage_collects_dependents",
                "deleting-an-owner-garbage-collects-depen",
            ),
        ] {
            assert_eq!(dns_label_prefix(given), want, "{given:?}");
        }
    }
}
