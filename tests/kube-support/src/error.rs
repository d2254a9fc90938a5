//! The crate's one error type.

use std::{fmt, path::PathBuf, time::Duration};

/// Everything that can go wrong in the helpers of this crate.
///
/// Each variant names the operation that failed; the cause, when there is one, is its
/// [`source`](std::error::Error::source). `Debug` prints the message followed by the whole cause
/// chain, so that `expect`/`unwrap` in a test and `fn main() -> Result<..>` show something readable.
#[derive(thiserror::Error)]
pub enum Error {
    /// The kubeconfig could not be found or loaded.
    #[error("no test cluster at {path}: run tests/cluster/up (cannot load the kubeconfig)")]
    LoadKubeconfig {
        path: PathBuf,
        #[source]
        source: kube::config::KubeconfigError,
    },
    /// The kubeconfig loaded but a client could not be built from it.
    #[error("cannot build a Kubernetes client from {path}")]
    BuildClient {
        path: PathBuf,
        #[source]
        source: kube::Error,
    },
    /// The API server named by the kubeconfig did not answer `/readyz` with `ok`.
    #[error("no test cluster at {path}: run tests/cluster/up (API server {server} is not ready: {detail})")]
    ClusterNotReady {
        path: PathBuf,
        server: String,
        detail: String,
    },
    /// Creating the temporary namespace failed.
    #[error("cannot create a namespace named {prefix}-*")]
    CreateNamespace {
        prefix: String,
        #[source]
        source: kube::Error,
    },
    /// The temporary namespace was made but did not become usable for pods in time.
    #[error("namespace {name} is not usable: {problem}")]
    NamespaceNotUsable {
        name: String,
        problem: &'static str,
        #[source]
        source: Box<Error>,
    },
    /// Deleting the temporary namespace failed.
    #[error("cannot delete namespace {name}")]
    DeleteNamespace {
        name: String,
        #[source]
        source: kube::Error,
    },
    /// Something did not happen within its time limit.
    #[error("timed out after {timeout:?} waiting for {what}")]
    Timeout { what: String, timeout: Duration },
    /// A watch used to wait for a condition failed.
    #[error("watch failed while waiting for {what}")]
    Watch {
        what: String,
        #[source]
        source: kube::runtime::wait::Error,
    },
    /// A manifest is not valid YAML.
    #[error("cannot parse the manifest as YAML")]
    ParseYaml {
        #[source]
        source: Box<serde_saphyr::Error>,
    },
    /// A document of a manifest is not a Kubernetes object.
    #[error("document {index} of the manifest is not a Kubernetes object")]
    DecodeObject {
        index: usize,
        #[source]
        source: serde_json::Error,
    },
    /// A document of a manifest lacks something it needs (kind, apiVersion, name, namespace).
    #[error("document {index} of the manifest is invalid: {reason}")]
    InvalidObject { index: usize, reason: String },
    /// The API server does not serve the kind of a manifest's document.
    #[error("the API server does not serve {gvk}")]
    Discover {
        gvk: String,
        #[source]
        source: kube::Error,
    },
    /// Server-side apply of one object failed.
    #[error("cannot apply {kind} {name}")]
    Apply {
        kind: String,
        name: String,
        #[source]
        source: kube::Error,
    },
    /// Starting a command in a container failed.
    #[error("cannot exec in pod {pod}")]
    Exec {
        pod: String,
        #[source]
        source: kube::Error,
    },
    /// Reading the output of a command in a container failed.
    #[error("cannot read the output of exec in pod {pod}")]
    ExecOutput {
        pod: String,
        #[source]
        source: std::io::Error,
    },
    /// The connection carrying the command's streams failed.
    #[error("the exec stream of pod {pod} failed")]
    ExecStream {
        pod: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The command's final status was neither success nor a non-zero exit code.
    #[error("exec in pod {pod} failed: {message}")]
    ExecStatus { pod: String, message: String },
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{self}")?;
        let mut source = std::error::Error::source(self);
        while let Some(cause) = source {
            write!(f, "\n  caused by: {cause}")?;
            source = cause.source();
        }
        Ok(())
    }
}
