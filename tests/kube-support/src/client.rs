//! Finding the test cluster and connecting to it.

use std::{
    path::{Path, PathBuf},
    time::Duration,
};

use kube::{
    Client, Config,
    config::{KubeConfigOptions, Kubeconfig},
};

use crate::Error;

/// Where `tests/cluster/up` writes the admin kubeconfig when `RARC_CLUSTER_DIR` is not set.
pub const DEFAULT_KUBECONFIG: &str = "/var/tmp/rarc-cluster/admin.kubeconfig";

/// How long to wait for a TCP connection to the API server.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long the API server may take to answer `/readyz`.
const READYZ_TIMEOUT: Duration = Duration::from_secs(10);

/// The kubeconfig the helpers use, first match wins:
/// `RARC_KUBECONFIG`; `KUBECONFIG` (a `:`-separated list, merged like kubectl does);
/// `$RARC_CLUSTER_DIR/admin.kubeconfig`; [`DEFAULT_KUBECONFIG`].
///
/// Returns the paths to merge (usually one) and a label for messages.
fn kubeconfig_paths() -> (Vec<PathBuf>, String) {
    let non_empty = |var: &str| std::env::var_os(var).filter(|v| !v.is_empty());
    if let Some(path) = non_empty("RARC_KUBECONFIG") {
        let path = PathBuf::from(path);
        let label = path.display().to_string();
        return (vec![path], label);
    }
    if let Some(list) = non_empty("KUBECONFIG") {
        let paths: Vec<PathBuf> = std::env::split_paths(&list)
            .filter(|p| !p.as_os_str().is_empty())
            .collect();
        if !paths.is_empty() {
            return (paths, list.to_string_lossy().into_owned());
        }
    }
    let path = match non_empty("RARC_CLUSTER_DIR") {
        Some(dir) => Path::new(&dir).join("admin.kubeconfig"),
        None => PathBuf::from(DEFAULT_KUBECONFIG),
    };
    let label = path.display().to_string();
    (vec![path], label)
}

/// The path (or `:`-separated list) of the kubeconfig that [`client`] uses, for messages.
pub fn kubeconfig_location() -> String {
    kubeconfig_paths().1
}

/// Loads the client configuration from the test kubeconfig, without contacting the cluster.
pub(crate) async fn load_config() -> Result<(Config, String), Error> {
    let (paths, label) = kubeconfig_paths();
    let mut merged: Option<Kubeconfig> = None;
    for path in &paths {
        let next = Kubeconfig::read_from(path).map_err(|source| Error::LoadKubeconfig {
            path: path.clone(),
            source,
        })?;
        merged = Some(match merged {
            None => next,
            Some(base) => base.merge(next).map_err(|source| Error::LoadKubeconfig {
                path: path.clone(),
                source,
            })?,
        });
    }
    let kubeconfig = merged.unwrap_or_default();
    let mut config = Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .map_err(|source| Error::LoadKubeconfig {
            path: label.clone().into(),
            source,
        })?;
    config.connect_timeout = Some(CONNECT_TIMEOUT);
    Ok((config, label))
}

/// A client for the test cluster, after checking that its API server answers `/readyz` with `ok`.
///
/// The kubeconfig comes from `RARC_KUBECONFIG`, else `KUBECONFIG`, else
/// `$RARC_CLUSTER_DIR/admin.kubeconfig`, else [`DEFAULT_KUBECONFIG`]. When it is missing or the
/// cluster does not answer, the error says `no test cluster at <path>: run tests/cluster/up`.
///
/// Make a new client in each test: a [`Client`] belongs to the Tokio runtime it was made on, and
/// every `#[tokio::test]` has its own.
pub async fn client() -> Result<Client, Error> {
    let (config, label) = load_config().await?;
    let server = config.cluster_url.to_string();
    let client = Client::try_from(config).map_err(|source| Error::BuildClient {
        path: label.clone().into(),
        source,
    })?;
    let not_ready = |detail: String| Error::ClusterNotReady {
        path: label.clone().into(),
        server: server.clone(),
        detail,
    };
    let request = http::Request::get("/readyz")
        .body(Vec::new())
        .map_err(|e| not_ready(e.to_string()))?;
    match tokio::time::timeout(READYZ_TIMEOUT, client.request_text(request)).await {
        Ok(Ok(body)) if body.trim() == "ok" => {
            tracing::debug!(%server, kubeconfig = %label, "test cluster is ready");
            Ok(client)
        }
        Ok(Ok(body)) => Err(not_ready(format!("/readyz answered {:?}", body.trim()))),
        Ok(Err(e)) => Err(not_ready(e.to_string())),
        Err(_) => Err(not_ready(format!("/readyz did not answer within {READYZ_TIMEOUT:?}"))),
    }
}
