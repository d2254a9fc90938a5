//! The listener pod (arc-controller.md §4.5 "Common pod build"), the `listenerTemplate` merge,
//! the integrity hash that decides when the pod is recreated, and what the pod's status means.

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::{
    Container, ContainerPort, Pod, PodSpec, PodTemplateSpec, SecretVolumeSource, Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::jiff::Timestamp;
use kube::ResourceExt;
use rarc_crd::AutoscalingListener;
use rarc_crd::keys::{annotations as a, labels as l};
use rarc_crd::names::{content_hash, listener_config_secret_name, listener_proxy_secret_name};
use serde_json::json;

use super::config::MetricsServer;
use crate::labels::{Labels, exclude};
use crate::reconcile::{PROXY_KEYS, namespace_of, owner_reference, secret_env, value_env};

/// The listener container's name.
pub const CONTAINER: &str = "listener";
/// The config volume and where it is mounted.
pub const CONFIG_VOLUME: &str = "listener-config";
pub const CONFIG_MOUNT_PATH: &str = "/etc/gha-listener";
/// The environment variable naming the config file, and its value.
pub const CONFIG_PATH_ENV: &str = "LISTENER_CONFIG_PATH";
pub const CONFIG_PATH: &str = "/etc/gha-listener/config.json";
/// The metrics port's name.
pub const METRICS_PORT: &str = "metrics";
/// `terminationGracePeriodSeconds` of the listener pod (lets it delete its message session).
pub const TERMINATION_GRACE_SECS: i64 = 60;
/// rarc: the least time between a listener container's exit and the deletion of its pod, so a
/// listener that dies at start (bad credentials, session conflict) is not recreated in a hot loop.
/// ARC recreates at once.
pub const CRASH_RECREATE_DELAY: Duration = Duration::from_secs(2);

/// What the pod is built from.
pub struct Inputs<'a> {
    pub al: &'a AutoscalingListener,
    /// `spec.image`, or the controller's listener image when the spec has none.
    pub image: &'a str,
    /// `LISTENER_ENTRYPOINT`.
    pub entrypoint: &'a str,
    pub metrics: Option<&'a MetricsServer>,
    /// The data of the proxy secret: one env var per key present.
    pub proxy_data: &'a BTreeMap<String, ByteString>,
    pub excluded_prefixes: &'a [String],
}

/// The `metrics` container port of a Go-style `host:port` address.
pub fn container_port(addr: &str) -> Result<ContainerPort, String> {
    let (_, port) = addr
        .rsplit_once(':')
        .ok_or_else(|| format!("{addr:?}: missing port in address"))?;
    let port: u16 = port.parse().map_err(|_| format!("{addr:?}: invalid port {port:?}"))?;
    Ok(ContainerPort {
        container_port: i32::from(port),
        name: Some(METRICS_PORT.into()),
        protocol: Some("TCP".into()),
        ..Default::default()
    })
}

/// The pod before the template merge and without the integrity annotation.
pub fn build(inputs: &Inputs<'_>) -> Result<Pod, String> {
    let al = inputs.al;
    let name = al.name_any();
    let mut env = vec![value_env(CONFIG_PATH_ENV, CONFIG_PATH)];
    let proxy_secret = listener_proxy_secret_name(&name);
    for key in PROXY_KEYS.into_iter().filter(|k| inputs.proxy_data.contains_key(*k)) {
        env.push(secret_env(key, &proxy_secret, key));
    }
    let ports = match inputs.metrics.filter(|m| !m.addr.is_empty()) {
        Some(m) => Some(vec![
            container_port(&m.addr).map_err(|e| format!("--listener-metrics-addr {e}"))?,
        ]),
        None => None,
    };
    let container = Container {
        name: CONTAINER.into(),
        image: Some(inputs.image.to_owned()),
        command: Some(vec![inputs.entrypoint.to_owned()]),
        env: Some(env),
        ports,
        volume_mounts: Some(vec![VolumeMount {
            name: CONFIG_VOLUME.into(),
            mount_path: CONFIG_MOUNT_PATH.into(),
            read_only: Some(true),
            ..Default::default()
        }]),
        ..Default::default()
    };
    let mut labels = exclude(al.labels().clone(), inputs.excluded_prefixes);
    // The controller's pod watch selects on this label (kept even under an excluded prefix).
    labels.insert(l::COMPONENT.into(), l::COMPONENT_LISTENER.into());
    Ok(Pod {
        metadata: ObjectMeta {
            name: Some(name.clone()),
            namespace: Some(namespace_of(al)),
            labels: Some(labels),
            annotations: Some(BTreeMap::new()),
            owner_references: Some(vec![owner_reference(al)]),
            ..Default::default()
        },
        spec: Some(PodSpec {
            service_account_name: Some(name.clone()),
            node_selector: Some([("kubernetes.io/os".to_owned(), "linux".to_owned())].into()),
            containers: vec![container],
            volumes: Some(vec![Volume {
                name: CONFIG_VOLUME.into(),
                secret: Some(SecretVolumeSource {
                    secret_name: Some(listener_config_secret_name(&name)),
                    ..Default::default()
                }),
                ..Default::default()
            }]),
            image_pull_secrets: al.spec.image_pull_secrets.clone(),
            restart_policy: Some("Never".into()),
            termination_grace_period_seconds: Some(TERMINATION_GRACE_SECS),
            ..Default::default()
        }),
        status: None,
    })
}

fn append<T: Clone>(base: &mut Option<Vec<T>>, more: &Option<Vec<T>>) {
    if let Some(more) = more.as_ref().filter(|m| !m.is_empty()) {
        base.get_or_insert_with(Vec::new).extend(more.iter().cloned());
    }
}

fn add_missing(base: &mut Option<BTreeMap<String, String>>, more: &Option<BTreeMap<String, String>>) {
    if let Some(more) = more {
        let base = base.get_or_insert_with(BTreeMap::new);
        for (k, v) in more {
            base.entry(k.clone()).or_insert_with(|| v.clone());
        }
    }
}

/// Merges the template's `listener` container into `base` (ARC's rules: image and command replace
/// when set; lists append; the other fields are replaced even when the template leaves them empty).
fn merge_container(base: &mut Container, from: &Container) {
    if let Some(image) = from.image.as_ref().filter(|i| !i.is_empty()) {
        base.image = Some(image.clone());
    }
    if let Some(command) = from.command.as_ref().filter(|c| !c.is_empty()) {
        base.command = Some(command.clone());
    }
    append(&mut base.env, &from.env);
    append(&mut base.args, &from.args);
    append(&mut base.ports, &from.ports);
    append(&mut base.env_from, &from.env_from);
    append(&mut base.volume_mounts, &from.volume_mounts);
    append(&mut base.volume_devices, &from.volume_devices);
    base.image_pull_policy = from.image_pull_policy.clone();
    base.working_dir = from.working_dir.clone();
    base.resources = from.resources.clone();
    base.liveness_probe = from.liveness_probe.clone();
    base.readiness_probe = from.readiness_probe.clone();
    base.startup_probe = from.startup_probe.clone();
    base.lifecycle = from.lifecycle.clone();
    base.termination_message_path = from.termination_message_path.clone();
    base.termination_message_policy = from.termination_message_policy.clone();
    base.security_context = from.security_context.clone();
    base.resize_policy = from.resize_policy.clone();
    base.restart_policy = from.restart_policy.clone();
    base.restart_policy_rules = from.restart_policy_rules.clone();
    base.stdin = from.stdin;
    base.stdin_once = from.stdin_once;
    base.tty = from.tty;
}

/// Merges `listenerTemplate` into the pod by ARC's rules (§4.5): template labels and annotations
/// only add missing keys; the `listener` container is merged, other containers appended;
/// restartPolicy, imagePullSecrets and nodeSelector replaced when set; volumes appended; the other
/// scheduling/runtime fields replaced unconditionally (so a template without
/// `terminationGracePeriodSeconds` drops the 60 s). `serviceAccountName`,
/// `serviceAccount` and `automountServiceAccountToken` are never taken from the template.
/// rarc: pod-level `resources` and `hostnameOverride` (newer than ARC's merge) replace when set.
pub fn merge_template(pod: &mut Pod, tmpl: &PodTemplateSpec) {
    if let Some(meta) = &tmpl.metadata {
        add_missing(&mut pod.metadata.annotations, &meta.annotations);
        add_missing(&mut pod.metadata.labels, &meta.labels);
    }
    let Some(from) = &tmpl.spec else { return };
    let spec = pod.spec.get_or_insert_with(Default::default);
    for c in &from.containers {
        let base = (c.name == CONTAINER)
            .then(|| spec.containers.iter_mut().find(|b| b.name == CONTAINER))
            .flatten();
        match base {
            Some(base) => merge_container(base, c),
            None => spec.containers.push(c.clone()),
        }
    }
    if let Some(p) = from.restart_policy.as_ref().filter(|p| !p.is_empty()) {
        spec.restart_policy = Some(p.clone());
    }
    if from.image_pull_secrets.is_some() {
        spec.image_pull_secrets = from.image_pull_secrets.clone();
    }
    if from.node_selector.is_some() {
        spec.node_selector = from.node_selector.clone();
    }
    if from.resources.is_some() {
        spec.resources = from.resources.clone();
    }
    if from.hostname_override.is_some() {
        spec.hostname_override = from.hostname_override.clone();
    }
    append(&mut spec.volumes, &from.volumes);
    spec.init_containers = from.init_containers.clone();
    spec.ephemeral_containers = from.ephemeral_containers.clone();
    spec.termination_grace_period_seconds = from.termination_grace_period_seconds;
    spec.active_deadline_seconds = from.active_deadline_seconds;
    spec.dns_policy = from.dns_policy.clone();
    spec.node_name = from.node_name.clone();
    spec.host_network = from.host_network;
    spec.host_pid = from.host_pid;
    spec.host_ipc = from.host_ipc;
    spec.share_process_namespace = from.share_process_namespace;
    spec.security_context = from.security_context.clone();
    spec.hostname = from.hostname.clone();
    spec.subdomain = from.subdomain.clone();
    spec.affinity = from.affinity.clone();
    spec.scheduler_name = from.scheduler_name.clone();
    spec.tolerations = from.tolerations.clone();
    spec.host_aliases = from.host_aliases.clone();
    spec.priority_class_name = from.priority_class_name.clone();
    spec.priority = from.priority;
    spec.dns_config = from.dns_config.clone();
    spec.readiness_gates = from.readiness_gates.clone();
    spec.runtime_class_name = from.runtime_class_name.clone();
    spec.enable_service_links = from.enable_service_links;
    spec.preemption_policy = from.preemption_policy.clone();
    spec.overhead = from.overhead.clone();
    spec.topology_spread_constraints = from.topology_spread_constraints.clone();
    spec.set_hostname_as_fqdn = from.set_hostname_as_fqdn;
    spec.os = from.os.clone();
    spec.host_users = from.host_users;
    spec.scheduling_gates = from.scheduling_gates.clone();
    spec.resource_claims = from.resource_claims.clone();
}

/// Hash of what the pod is made of: its labels, annotations (without the hash itself) and spec
/// as built, the config.json bytes and the proxy secret data. Any change recreates the pod.
pub fn integrity_hash(pod: &Pod, config: &[u8], proxy_data: &BTreeMap<String, ByteString>) -> String {
    let mut annotations = pod.metadata.annotations.clone().unwrap_or_default();
    annotations.remove(a::INTEGRITY_HASH);
    let doc = json!({
        "labels": pod.metadata.labels,
        "annotations": annotations,
        "spec": pod.spec,
        "proxy": proxy_data,
    });
    let mut bytes = serde_json::to_vec(&doc).unwrap_or_default();
    bytes.push(0);
    bytes.extend_from_slice(config);
    content_hash(&bytes)
}

/// The listener pod to create: built, merged with `spec.template`, annotated with its integrity
/// hash.
pub fn desired(inputs: &Inputs<'_>, config: &[u8]) -> Result<Pod, String> {
    let mut pod = build(inputs)?;
    if let Some(tmpl) = &inputs.al.spec.template {
        merge_template(&mut pod, tmpl);
    }
    let hash = integrity_hash(&pod, config, inputs.proxy_data);
    pod.metadata
        .annotations
        .get_or_insert_with(Labels::new)
        .insert(a::INTEGRITY_HASH.into(), hash);
    Ok(pod)
}

/// The integrity hash a pod carries.
pub fn hash_of(pod: &Pod) -> Option<&str> {
    pod.metadata
        .annotations
        .as_ref()
        .and_then(|m| m.get(a::INTEGRITY_HASH))
        .map(String::as_str)
}

/// What to do with an existing listener pod.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PodAction {
    /// Being deleted: wait until it is gone, then create the new one.
    WaitGone,
    /// Delete it (recreated on a later pass), for the reason given.
    Delete(&'static str),
    /// The listener exited too recently: look again after this long.
    WaitBeforeDelete(Duration),
    /// The listener container runs.
    Running,
    /// Scheduled or starting.
    Starting,
}

/// Decides on `pod` given the hash of the desired pod. Order: terminating, integrity hash,
/// Evicted, listener container terminated (after [`CRASH_RECREATE_DELAY`]), pod phase
/// `Failed`/`Succeeded` without a terminated listener status (rarc: ARC waits forever), running.
pub fn pod_action(pod: &Pod, desired_hash: &str, now: Timestamp) -> PodAction {
    if pod.metadata.deletion_timestamp.is_some() {
        return PodAction::WaitGone;
    }
    if hash_of(pod) != Some(desired_hash) {
        return PodAction::Delete("its configuration changed");
    }
    let status = pod.status.as_ref();
    if status.and_then(|s| s.reason.as_deref()) == Some("Evicted") {
        return PodAction::Delete("it was evicted");
    }
    let state = status
        .and_then(|s| s.container_statuses.as_ref())
        .and_then(|cs| cs.iter().find(|c| c.name == CONTAINER))
        .and_then(|c| c.state.as_ref());
    if let Some(t) = state.and_then(|s| s.terminated.as_ref()) {
        // A finish time ahead of our clock (node clock skew) does not delay anything.
        let since = t
            .finished_at
            .as_ref()
            .and_then(|f| u64::try_from(now.as_millisecond() - f.0.as_millisecond()).ok())
            .map(Duration::from_millis);
        return match since {
            Some(since) if since < CRASH_RECREATE_DELAY => PodAction::WaitBeforeDelete(CRASH_RECREATE_DELAY - since),
            _ => PodAction::Delete("the listener container terminated"),
        };
    }
    if matches!(status.and_then(|s| s.phase.as_deref()), Some("Failed" | "Succeeded")) {
        return PodAction::Delete("the pod finished");
    }
    if state.is_some_and(|s| s.running.is_some()) {
        PodAction::Running
    } else {
        PodAction::Starting
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{
        ContainerState, ContainerStateRunning, ContainerStateTerminated, ContainerStatus, LocalObjectReference,
        PodStatus, Toleration,
    };
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
    use rarc_crd::AutoscalingListenerSpec;

    fn al() -> AutoscalingListener {
        let mut al = AutoscalingListener::new(
            "set-56b4bcfc-listener",
            AutoscalingListenerSpec {
                github_config_url: Some("https://github.com/my-org".into()),
                autoscaling_runner_set_namespace: Some("arc-runners".into()),
                autoscaling_runner_set_name: Some("set".into()),
                ephemeral_runner_set_name: Some("set".into()),
                runner_scale_set_id: 5,
                max_runners: 10,
                image: Some("ghcr.io/x/controller:1".into()),
                image_pull_secrets: Some(vec![LocalObjectReference { name: "pull".into() }]),
                ..Default::default()
            },
        );
        al.metadata.namespace = Some("arc-systems".into());
        al.metadata.uid = Some("uid-1".into());
        al.metadata.labels = Some(
            [
                (l::COMPONENT.to_owned(), l::COMPONENT_LISTENER.to_owned()),
                ("argocd.argoproj.io/instance".to_owned(), "x".to_owned()),
            ]
            .into(),
        );
        al
    }

    fn inputs<'a>(
        al: &'a AutoscalingListener,
        metrics: Option<&'a MetricsServer>,
        proxy: &'a BTreeMap<String, ByteString>,
        excluded: &'a [String],
    ) -> Inputs<'a> {
        Inputs {
            al,
            image: "ghcr.io/x/controller:1",
            entrypoint: "/ghalistener",
            metrics,
            proxy_data: proxy,
            excluded_prefixes: excluded,
        }
    }

    fn listener(pod: &Pod) -> &Container {
        pod.spec
            .as_ref()
            .and_then(|s| s.containers.iter().find(|c| c.name == CONTAINER))
            .expect("listener")
    }

    #[test]
    fn the_pod_has_the_t11_fields() {
        let al = al();
        let m = MetricsServer {
            addr: ":8080".into(),
            endpoint: "/metrics".into(),
        };
        let proxy = BTreeMap::new();
        let pod = build(&inputs(&al, Some(&m), &proxy, &[])).expect("builds");
        assert_eq!(pod.metadata.name.as_deref(), Some("set-56b4bcfc-listener"));
        assert_eq!(pod.metadata.namespace.as_deref(), Some("arc-systems"));
        let owner = &pod.metadata.owner_references.as_ref().expect("owner")[0];
        assert_eq!(
            (owner.kind.as_str(), owner.uid.as_str(), owner.controller),
            ("AutoscalingListener", "uid-1", Some(true))
        );
        let spec = pod.spec.as_ref().expect("spec");
        assert_eq!(spec.service_account_name.as_deref(), Some("set-56b4bcfc-listener"));
        assert_eq!(spec.node_selector.as_ref().expect("ns")["kubernetes.io/os"], "linux");
        assert_eq!(spec.restart_policy.as_deref(), Some("Never"));
        assert_eq!(spec.termination_grace_period_seconds, Some(60));
        assert_eq!(spec.image_pull_secrets.as_ref().expect("ips")[0].name, "pull");
        let vol = &spec.volumes.as_ref().expect("volumes")[0];
        assert_eq!(vol.name, "listener-config");
        assert_eq!(
            vol.secret.as_ref().and_then(|s| s.secret_name.as_deref()),
            Some("set-56b4bcfc-listener-config")
        );
        let c = listener(&pod);
        assert_eq!(c.image.as_deref(), Some("ghcr.io/x/controller:1"));
        assert_eq!(c.command.as_deref(), Some(&["/ghalistener".to_owned()][..]));
        let env = c.env.as_ref().expect("env");
        assert_eq!(env.len(), 1);
        assert_eq!(
            (env[0].name.as_str(), env[0].value.as_deref()),
            ("LISTENER_CONFIG_PATH", Some("/etc/gha-listener/config.json"))
        );
        let mount = &c.volume_mounts.as_ref().expect("mounts")[0];
        assert_eq!(
            (mount.name.as_str(), mount.mount_path.as_str(), mount.read_only),
            ("listener-config", "/etc/gha-listener", Some(true))
        );
        let port = &c.ports.as_ref().expect("ports")[0];
        assert_eq!(
            (port.name.as_deref(), port.container_port, port.protocol.as_deref()),
            (Some("metrics"), 8080, Some("TCP"))
        );
    }

    #[test]
    fn metrics_off_means_no_port_and_bad_addresses_are_errors() {
        let al = al();
        let proxy = BTreeMap::new();
        let pod = build(&inputs(&al, None, &proxy, &[])).expect("builds");
        assert!(listener(&pod).ports.is_none());
        let empty = MetricsServer {
            addr: String::new(),
            endpoint: "/metrics".into(),
        };
        assert!(
            listener(&build(&inputs(&al, Some(&empty), &proxy, &[])).expect("builds"))
                .ports
                .is_none()
        );
        assert_eq!(container_port("127.0.0.1:9102").expect("port").container_port, 9102);
        assert_eq!(container_port("[::]:8080").expect("port").container_port, 8080);
        assert!(container_port("8080").is_err());
        assert!(container_port(":http").is_err());
        let bad = MetricsServer {
            addr: "localhost".into(),
            endpoint: String::new(),
        };
        assert!(
            build(&inputs(&al, Some(&bad), &proxy, &[]))
                .expect_err("bad")
                .contains("--listener-metrics-addr")
        );
    }

    #[test]
    fn proxy_env_comes_from_the_proxy_secret_keys_present() {
        let al = al();
        let proxy: BTreeMap<String, ByteString> = [
            ("http_proxy".to_owned(), ByteString(b"http://p:3128".to_vec())),
            ("no_proxy".to_owned(), ByteString(b"a,b".to_vec())),
        ]
        .into();
        let pod = build(&inputs(&al, None, &proxy, &[])).expect("builds");
        let env = listener(&pod).env.clone().expect("env");
        let names: Vec<&str> = env.iter().map(|e| e.name.as_str()).collect();
        assert_eq!(names, ["LISTENER_CONFIG_PATH", "http_proxy", "no_proxy"]);
        let r = env[1]
            .value_from
            .as_ref()
            .and_then(|v| v.secret_key_ref.as_ref())
            .expect("ref");
        assert_eq!(
            (r.name.as_str(), r.key.as_str()),
            ("set-56b4bcfc-listener-proxy", "http_proxy")
        );
    }

    #[test]
    fn labels_come_from_the_listener_minus_excluded_prefixes() {
        let al = al();
        let proxy = BTreeMap::new();
        let excluded = vec!["argocd.argoproj.io/".to_owned()];
        let pod = build(&inputs(&al, None, &proxy, &excluded)).expect("builds");
        let labels = pod.metadata.labels.expect("labels");
        assert!(!labels.contains_key("argocd.argoproj.io/instance"));
        assert_eq!(labels[l::COMPONENT], l::COMPONENT_LISTENER);
    }

    #[test]
    fn template_merge_follows_arcs_rules() {
        let mut al = al();
        let tmpl: PodTemplateSpec = serde_json::from_value(json!({
            "metadata": {"labels": {"team": "a", "app.kubernetes.io/component": "mine"}, "annotations": {"x": "y"}},
            "spec": {
                "serviceAccountName": "other",
                "containers": [
                    {"name": "listener", "env": [{"name": "FOO", "value": "bar"}], "resources": {"limits": {"cpu": "1"}}},
                    {"name": "sidecar", "image": "busybox"}
                ],
                "tolerations": [{"key": "dedicated", "operator": "Exists"}],
                "volumes": [{"name": "extra", "emptyDir": {}}]
            }
        }))
        .expect("template");
        al.spec.template = Some(tmpl);
        let proxy = BTreeMap::new();
        let pod = desired(&inputs(&al, None, &proxy, &[]), b"{}").expect("builds");
        let spec = pod.spec.as_ref().expect("spec");
        // serviceAccountName never comes from the template.
        assert_eq!(spec.service_account_name.as_deref(), Some("set-56b4bcfc-listener"));
        // The listener container: env appended, image and command kept, resources replaced.
        let c = listener(&pod);
        let env: Vec<&str> = c.env.as_ref().expect("env").iter().map(|e| e.name.as_str()).collect();
        assert_eq!(env, ["LISTENER_CONFIG_PATH", "FOO"]);
        assert_eq!(c.image.as_deref(), Some("ghcr.io/x/controller:1"));
        assert_eq!(c.command.as_deref(), Some(&["/ghalistener".to_owned()][..]));
        assert!(
            c.resources
                .as_ref()
                .and_then(|r| r.limits.as_ref())
                .is_some_and(|l| l.contains_key("cpu"))
        );
        // Sidecar appended.
        let names: Vec<&str> = spec.containers.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, ["listener", "sidecar"]);
        // Tolerations replaced; volumes appended; nodeSelector kept (template has none).
        assert_eq!(
            spec.tolerations,
            Some(vec![Toleration {
                key: Some("dedicated".into()),
                operator: Some("Exists".into()),
                ..Default::default()
            }])
        );
        let vols: Vec<&str> = spec
            .volumes
            .as_ref()
            .expect("vols")
            .iter()
            .map(|v| v.name.as_str())
            .collect();
        assert_eq!(vols, ["listener-config", "extra"]);
        assert_eq!(spec.node_selector.as_ref().expect("ns")["kubernetes.io/os"], "linux");
        // Replaced unconditionally: the template has no grace period, so the 60 s is dropped.
        assert_eq!(spec.termination_grace_period_seconds, None);
        assert_eq!(spec.restart_policy.as_deref(), Some("Never"));
        // Template metadata only adds missing keys; the hash annotation is ours.
        let labels = pod.metadata.labels.as_ref().expect("labels");
        assert_eq!(labels["team"], "a");
        assert_eq!(labels[l::COMPONENT], l::COMPONENT_LISTENER);
        let annotations = pod.metadata.annotations.as_ref().expect("annotations");
        assert_eq!(annotations["x"], "y");
        assert!(annotations.contains_key(a::INTEGRITY_HASH));
    }

    #[test]
    fn template_values_replace_when_set() {
        let mut pod = Pod {
            spec: Some(PodSpec {
                containers: vec![Container {
                    name: CONTAINER.into(),
                    image: Some("a".into()),
                    ..Default::default()
                }],
                restart_policy: Some("Never".into()),
                ..Default::default()
            }),
            ..Default::default()
        };
        let tmpl: PodTemplateSpec = serde_json::from_value(json!({"spec": {
            "containers": [{"name": "listener", "image": "b", "command": ["/x"], "args": ["-v"]}],
            "terminationGracePeriodSeconds": 30,
            "restartPolicy": "OnFailure",
            "nodeSelector": {"pool": "infra"},
            "imagePullSecrets": [{"name": "mine"}]
        }}))
        .expect("template");
        merge_template(&mut pod, &tmpl);
        let spec = pod.spec.expect("spec");
        let c = &spec.containers[0];
        assert_eq!(
            (c.image.as_deref(), c.command.clone(), c.args.clone()),
            (Some("b"), Some(vec!["/x".into()]), Some(vec!["-v".into()]))
        );
        assert_eq!(spec.termination_grace_period_seconds, Some(30));
        assert_eq!(spec.restart_policy.as_deref(), Some("OnFailure"));
        assert_eq!(
            spec.node_selector,
            Some([("pool".to_owned(), "infra".to_owned())].into())
        );
        assert_eq!(
            spec.image_pull_secrets,
            Some(vec![LocalObjectReference { name: "mine".into() }])
        );
    }

    #[test]
    fn integrity_hash_changes_with_spec_config_proxy_and_labels() {
        let al = al();
        let proxy = BTreeMap::new();
        let base = desired(&inputs(&al, None, &proxy, &[]), b"{\"a\":1}").expect("pod");
        let h = hash_of(&base).expect("hash").to_owned();
        // Stable.
        assert_eq!(
            hash_of(&desired(&inputs(&al, None, &proxy, &[]), b"{\"a\":1}").expect("pod")),
            Some(h.as_str())
        );
        // Config data (credential rotation, min/max).
        assert_ne!(
            hash_of(&desired(&inputs(&al, None, &proxy, &[]), b"{\"a\":2}").expect("pod")),
            Some(h.as_str())
        );
        // Proxy data.
        let p2: BTreeMap<String, ByteString> = [("http_proxy".to_owned(), ByteString(b"http://p".to_vec()))].into();
        assert_ne!(
            hash_of(&desired(&inputs(&al, None, &p2, &[]), b"{\"a\":1}").expect("pod")),
            Some(h.as_str())
        );
        // Image (controller upgrade).
        let mut i = inputs(&al, None, &proxy, &[]);
        i.image = "ghcr.io/x/controller:2";
        assert_ne!(hash_of(&desired(&i, b"{\"a\":1}").expect("pod")), Some(h.as_str()));
        // Labels.
        let mut al2 = al.clone();
        al2.metadata
            .labels
            .get_or_insert_with(Default::default)
            .insert("new".into(), "v".into());
        assert_ne!(
            hash_of(&desired(&inputs(&al2, None, &proxy, &[]), b"{\"a\":1}").expect("pod")),
            Some(h.as_str())
        );
        // The hash annotation itself is not hashed.
        assert_eq!(integrity_hash(&base, b"{\"a\":1}", &proxy), h);
    }

    fn pod_with(hash: &str, status: PodStatus) -> Pod {
        Pod {
            metadata: ObjectMeta {
                annotations: Some([(a::INTEGRITY_HASH.to_owned(), hash.to_owned())].into()),
                ..Default::default()
            },
            status: Some(status),
            ..Default::default()
        }
    }

    fn listener_state(state: ContainerState) -> PodStatus {
        PodStatus {
            phase: Some("Running".into()),
            container_statuses: Some(vec![ContainerStatus {
                name: CONTAINER.into(),
                state: Some(state),
                ..Default::default()
            }]),
            ..Default::default()
        }
    }

    #[test]
    fn pod_actions() {
        let now = Timestamp::from_second(1_000_000).expect("ts");
        let running = listener_state(ContainerState {
            running: Some(ContainerStateRunning::default()),
            ..Default::default()
        });
        assert_eq!(
            pod_action(&pod_with("h", running.clone()), "h", now),
            PodAction::Running
        );
        assert_eq!(
            pod_action(&pod_with("old", running.clone()), "h", now),
            PodAction::Delete("its configuration changed")
        );
        assert_eq!(
            pod_action(&pod_with("h", PodStatus::default()), "h", now),
            PodAction::Starting
        );
        let mut deleting = pod_with("old", running);
        deleting.metadata.deletion_timestamp = Some(Time(now));
        assert_eq!(pod_action(&deleting, "h", now), PodAction::WaitGone);

        let evicted = PodStatus {
            phase: Some("Failed".into()),
            reason: Some("Evicted".into()),
            ..Default::default()
        };
        assert_eq!(
            pod_action(&pod_with("h", evicted), "h", now),
            PodAction::Delete("it was evicted")
        );

        let terminated = |secs_ago: i64| {
            listener_state(ContainerState {
                terminated: Some(ContainerStateTerminated {
                    exit_code: 1,
                    finished_at: Some(Time(Timestamp::from_second(1_000_000 - secs_ago).expect("ts"))),
                    ..Default::default()
                }),
                ..Default::default()
            })
        };
        assert_eq!(
            pod_action(&pod_with("h", terminated(0)), "h", now),
            PodAction::WaitBeforeDelete(CRASH_RECREATE_DELAY)
        );
        assert_eq!(
            pod_action(&pod_with("h", terminated(1)), "h", now),
            PodAction::WaitBeforeDelete(Duration::from_secs(1))
        );
        assert_eq!(
            pod_action(&pod_with("h", terminated(5)), "h", now),
            PodAction::Delete("the listener container terminated")
        );
        assert_eq!(
            pod_action(&pod_with("h", terminated(-60)), "h", now),
            PodAction::Delete("the listener container terminated")
        );

        let failed = PodStatus {
            phase: Some("Failed".into()),
            ..Default::default()
        };
        assert_eq!(
            pod_action(&pod_with("h", failed), "h", now),
            PodAction::Delete("the pod finished")
        );
    }
}
