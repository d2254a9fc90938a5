//! Helpers for tests that run against the real local Kubernetes cluster of `tests/cluster/up`.
//!
//! - [`client`] connects to it (and fails with `no test cluster at <path>: run tests/cluster/up`
//!   when it is not there: tests must fail, never skip);
//! - [`with_temp_ns`] / [`TempNamespace`] give each test a namespace of its own and delete it;
//! - [`await_condition`] and [`within`] wait with a time limit;
//! - [`apply_yaml`] server-side applies multi-document manifests of any kind (CRDs included), and
//!   [`install_crds`] applies CRD manifests and waits until they are Established;
//! - [`exec`] runs a command in a container and returns its output and exit code;
//! - [`prometheus`] parses the text exposition of a `/metrics` endpoint.
//!
//! ```no_run
//! use std::time::Duration;
//! use k8s_openapi::api::core::v1::Pod;
//! use kube::Api;
//!
//! # async fn doc() -> Result<(), rarc_kube_test::Error> {
//! rarc_kube_test::with_temp_ns("example", |client, ns| async move {
//!     let pods: Api<Pod> = Api::namespaced(client, &ns);
//!     // ... create a pod, then:
//!     let out = rarc_kube_test::exec(&pods, "shell", None, ["/bin/true"]).await.unwrap();
//!     assert_eq!(out.exit_code, 0);
//! })
//! .await
//! # }
//! ```

mod apply;
mod client;
mod error;
mod exec;
mod namespace;
pub mod prometheus;
mod wait;

pub use apply::{FIELD_MANAGER, apply_yaml, install_crds, parse_yaml_documents};
pub use client::{DEFAULT_KUBECONFIG, client, kubeconfig_location};
pub use error::Error;
pub use exec::{ExecOutput, exec};
pub use namespace::{TEMP_NAMESPACE_LABEL, TempNamespace, with_temp_ns};
pub use wait::{await_condition, within};

/// The test image that `tests/cluster/up` loads into the node's containerd: FROM scratch with a
/// static busybox at `/bin/busybox` and its applets linked in `/bin`. Use it with
/// `imagePullPolicy: Never`; no registry is reachable.
pub const TEST_IMAGE: &str = "rarc.local/busybox:1";

/// The name of the test cluster's only node.
pub const NODE_NAME: &str = "rarc-node";
