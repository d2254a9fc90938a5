//! The custom resources of ARC's `gha-runner-scale-set` mode, group `actions.github.com/v1alpha1`:
//! [`AutoscalingRunnerSet`], [`AutoscalingListener`], [`EphemeralRunnerSet`] and
//! [`EphemeralRunner`], with the names, labels, annotations and finalizers of
//! `arc-controller.md` §3 ([`keys`], [`names`]).
//!
//! The CRD manifests in `crates/crd/crds/` are generated from these types ([`crds`],
//! [`crds_yaml`]); `cargo test -p rarc-crd` fails when they differ from the code, and
//! `RARC_UPDATE_CRDS=1 cargo test -p rarc-crd --test crds` rewrites them.

mod common;
pub mod keys;
pub mod names;
mod resources;
mod schema;

pub use common::{
    AzureKeyVaultConfig, CounterMetric, GaugeMetric, HistogramMetric, MetricsConfig, ProxyConfig, ProxyServerConfig,
    ResourceMeta, TlsCertificateSource, TlsConfig, VaultConfig,
};
pub use resources::{
    AutoscalingListener, AutoscalingListenerSpec, AutoscalingListenerStatus, AutoscalingRunnerSet,
    AutoscalingRunnerSetSpec, AutoscalingRunnerSetStatus, EphemeralRunner, EphemeralRunnerSet, EphemeralRunnerSetSpec,
    EphemeralRunnerSetStatus, EphemeralRunnerSpec, EphemeralRunnerStatus,
};

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::CustomResourceExt;

/// The names of the four CRDs.
pub const CRD_NAMES: [&str; 4] = [
    "autoscalinglisteners.actions.github.com",
    "autoscalingrunnersets.actions.github.com",
    "ephemeralrunnersets.actions.github.com",
    "ephemeralrunners.actions.github.com",
];

/// The four CRDs, in the order of ARC's chart (file names `actions.github.com_<plural>.yaml`).
pub fn crds() -> Vec<CustomResourceDefinition> {
    vec![
        AutoscalingListener::crd(),
        AutoscalingRunnerSet::crd(),
        EphemeralRunnerSet::crd(),
        EphemeralRunner::crd(),
    ]
}

/// `(file name, YAML)` of each CRD, as committed in `crates/crd/crds/`.
pub fn crds_yaml() -> Vec<(String, String)> {
    crds()
        .into_iter()
        .map(|crd| {
            let plural = crd.spec.names.plural.clone();
            let json = serde_json::to_value(&crd).expect("a CRD serializes");
            let yaml = serde_saphyr::to_string(&json).expect("a CRD renders as YAML");
            (format!("actions.github.com_{plural}.yaml"), format!("# Generated from crates/crd/src by `RARC_UPDATE_CRDS=1 cargo test -p rarc-crd --test crds`. Do not edit.\n{yaml}"))
        })
        .collect()
}
