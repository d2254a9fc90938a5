//! The runner pod of an EphemeralRunner (arc-controller.md §3.2 "ER → Pod", §4.4 step 9).

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Container, EnvVar, Pod, PodSpec};

use crate::reconcile::{PROXY_KEYS, secret_env, value_env};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::ResourceExt;
use rarc_crd::keys::labels as l;
use rarc_crd::{EphemeralRunner, EphemeralRunnerSpec};

/// The container that runs the runner; only this one gets the injected env.
pub const RUNNER_CONTAINER: &str = "runner";
/// The JIT config, from the JIT Secret.
pub const ENV_JIT_CONFIG: &str = "ACTIONS_RUNNER_INPUT_JITCONFIG";
pub const ENV_EXTRA_USER_AGENT: &str = "GITHUB_ACTIONS_RUNNER_EXTRA_USER_AGENT";
/// Makes a deprecated runner exit with code 7 (ARC 0.14.0+).
pub const ENV_DEPRECATED_EXIT_CODE: &str = "ACTIONS_RUNNER_RETURN_VERSION_DEPRECATED_EXIT_CODE";
/// Declared by kubernetes-mode runners (runner-container-hooks).
pub const ENV_CONTAINER_HOOKS: &str = "ACTIONS_RUNNER_CONTAINER_HOOKS";
/// The JIT Secret key holding the encoded JIT config.
pub const JIT_TOKEN_KEY: &str = "jitToken";

/// `actions-runner-controller/<version>`: the runner's extra user agent.
pub fn extra_user_agent() -> String {
    format!("actions-runner-controller/{}", env!("CARGO_PKG_VERSION"))
}

/// The template's `runner` container, if any.
pub fn runner_container(spec: &EphemeralRunnerSpec) -> Option<&Container> {
    spec.pod_template
        .spec
        .as_ref()?
        .containers
        .iter()
        .find(|c| c.name == RUNNER_CONTAINER)
}

/// True when the runner container declares `ACTIONS_RUNNER_CONTAINER_HOOKS` (kubernetes mode).
pub fn uses_container_hooks(spec: &EphemeralRunnerSpec) -> bool {
    runner_container(spec)
        .and_then(|c| c.env.as_ref())
        .is_some_and(|env| env.iter().any(|e| e.name == ENV_CONTAINER_HOOKS))
}

/// The env appended to the runner container: JIT config, user agent, deprecation exit code, and
/// the proxy variables configured in `spec.proxy` (secretKeyRefs into `spec.proxySecretRef`).
pub fn runner_env(spec: &EphemeralRunnerSpec, jit_secret_name: &str) -> Vec<EnvVar> {
    let mut env = vec![
        secret_env(ENV_JIT_CONFIG, jit_secret_name, JIT_TOKEN_KEY),
        value_env(ENV_EXTRA_USER_AGENT, &extra_user_agent()),
        value_env(ENV_DEPRECATED_EXIT_CODE, "1"),
    ];
    if let (Some(secret), Some(proxy)) = (spec.proxy_secret_ref.as_deref().filter(|s| !s.is_empty()), &spec.proxy) {
        let configured = [
            proxy.http.is_some(),
            proxy.https.is_some(),
            proxy.no_proxy.as_ref().is_some_and(|n| !n.is_empty()),
        ];
        for (key, on) in PROXY_KEYS.into_iter().zip(configured) {
            if on {
                env.push(secret_env(key, secret, key));
            }
        }
    }
    env
}

/// The pod `<er>`: ER labels ∪ template labels (template wins) plus `actions-ephemeral-runner=True`
/// and `pod-template-hash`; ER annotations ∪ template annotations; controller ownerRef to the ER
/// (when the ER has a uid); the template spec with [`runner_env`] appended to the `runner`
/// container. Pure.
pub fn build_pod(er: &EphemeralRunner, jit_secret_name: &str) -> Pod {
    let template = &er.spec.pod_template;
    let template_meta = template.metadata.clone().unwrap_or_default();

    let mut labels: BTreeMap<String, String> = er.labels().clone();
    labels.extend(template_meta.labels.unwrap_or_default());
    let mut annotations: BTreeMap<String, String> = er.annotations().clone();
    annotations.extend(template_meta.annotations.unwrap_or_default());

    let mut spec: PodSpec = template.spec.clone().unwrap_or_default();
    let extra = runner_env(&er.spec, jit_secret_name);
    for c in spec.containers.iter_mut().filter(|c| c.name == RUNNER_CONTAINER) {
        c.env.get_or_insert_with(Vec::new).extend(extra.iter().cloned());
    }

    labels.insert(l::EPHEMERAL_RUNNER.into(), l::EPHEMERAL_RUNNER_TRUE.into());
    labels.insert(
        l::POD_TEMPLATE_HASH.into(),
        template_hash(&labels, &annotations, &er.spec, jit_secret_name),
    );

    Pod {
        metadata: ObjectMeta {
            name: Some(er.name_any()),
            namespace: er.namespace(),
            labels: Some(labels),
            annotations: (!annotations.is_empty()).then_some(annotations),
            owner_references: er.uid().map(|_| vec![crate::reconcile::owner_reference(er)]),
            ..ObjectMeta::default()
        },
        spec: Some(spec),
        status: None,
    }
}

/// Informational `pod-template-hash`: a content hash of the labels, annotations, ER spec and JIT
/// Secret name the pod is built from.
fn template_hash(
    labels: &BTreeMap<String, String>,
    annotations: &BTreeMap<String, String>,
    spec: &EphemeralRunnerSpec,
    jit_secret_name: &str,
) -> String {
    let input = serde_json::json!([labels, annotations, spec, jit_secret_name]);
    rarc_crd::names::content_hash(input.to_string().as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::PodTemplateSpec;
    use rarc_crd::{ProxyConfig, ProxyServerConfig};

    fn container(name: &str, env: &[(&str, &str)]) -> Container {
        Container {
            name: name.into(),
            env: (!env.is_empty()).then(|| env.iter().map(|(k, v)| value_env(k, v)).collect()),
            ..Container::default()
        }
    }

    fn runner(containers: Vec<Container>) -> EphemeralRunner {
        let mut er = EphemeralRunner::new(
            "set-runner-abcde",
            EphemeralRunnerSpec {
                github_config_url: "https://github.com/org".into(),
                github_config_secret: "gh".into(),
                runner_scale_set_id: 3,
                pod_template: PodTemplateSpec {
                    metadata: Some(ObjectMeta {
                        labels: Some([("app".to_owned(), "tmpl".to_owned()), ("t".to_owned(), "1".to_owned())].into()),
                        annotations: Some([("a".to_owned(), "tmpl".to_owned())].into()),
                        ..ObjectMeta::default()
                    }),
                    spec: Some(PodSpec {
                        containers,
                        restart_policy: Some("Never".into()),
                        ..PodSpec::default()
                    }),
                },
                ..EphemeralRunnerSpec::default()
            },
        );
        er.metadata.namespace = Some("arc-runners".into());
        er.metadata.uid = Some("uid-1".into());
        er.metadata.labels = Some([("app".to_owned(), "er".to_owned()), ("e".to_owned(), "2".to_owned())].into());
        er.metadata.annotations = Some(
            [
                ("a".to_owned(), "er".to_owned()),
                ("actions.github.com/patch-id".to_owned(), "4".to_owned()),
            ]
            .into(),
        );
        er
    }

    fn env_names(c: &Container) -> Vec<&str> {
        c.env.iter().flatten().map(|e| e.name.as_str()).collect()
    }

    #[test]
    fn metadata_merges_with_template_winning() {
        let pod = build_pod(&runner(vec![container("runner", &[])]), "set-runner-abcde");
        let m = &pod.metadata;
        assert_eq!(m.name.as_deref(), Some("set-runner-abcde"));
        assert_eq!(m.namespace.as_deref(), Some("arc-runners"));
        let labels = m.labels.as_ref().expect("labels");
        assert_eq!(labels["app"], "tmpl");
        assert_eq!(labels["e"], "2");
        assert_eq!(labels["t"], "1");
        assert_eq!(labels[l::EPHEMERAL_RUNNER], "True");
        assert!(!labels[l::POD_TEMPLATE_HASH].is_empty());
        let ann = m.annotations.as_ref().expect("annotations");
        assert_eq!(ann["a"], "tmpl");
        assert_eq!(ann["actions.github.com/patch-id"], "4");
        let owner = &m.owner_references.as_ref().expect("owner")[0];
        assert_eq!(
            (owner.kind.as_str(), owner.uid.as_str(), owner.controller),
            ("EphemeralRunner", "uid-1", Some(true))
        );
        assert_eq!(
            pod.spec.as_ref().and_then(|s| s.restart_policy.as_deref()),
            Some("Never")
        );
    }

    #[test]
    fn only_the_runner_container_gets_env_appended() {
        let er = runner(vec![
            container("init-ish", &[("X", "1")]),
            container("runner", &[("KEEP", "me")]),
        ]);
        let pod = build_pod(&er, "jit");
        let spec = pod.spec.expect("spec");
        assert_eq!(env_names(&spec.containers[0]), ["X"]);
        let runner = &spec.containers[1];
        assert_eq!(
            env_names(runner),
            ["KEEP", ENV_JIT_CONFIG, ENV_EXTRA_USER_AGENT, ENV_DEPRECATED_EXIT_CODE]
        );
        let env = runner.env.as_ref().expect("env");
        let jit = env[1]
            .value_from
            .as_ref()
            .and_then(|v| v.secret_key_ref.as_ref())
            .expect("secretKeyRef");
        assert_eq!((jit.name.as_str(), jit.key.as_str()), ("jit", "jitToken"));
        assert_eq!(
            env[2].value.as_deref(),
            Some(format!("actions-runner-controller/{}", env!("CARGO_PKG_VERSION")).as_str())
        );
        assert_eq!(env[3].value.as_deref(), Some("1"));
    }

    #[test]
    fn proxy_env_only_for_configured_proxies_and_with_a_secret() {
        let mut er = runner(vec![container("runner", &[])]);
        er.spec.proxy = Some(ProxyConfig {
            http: Some(ProxyServerConfig {
                url: Some("http://p:3128".into()),
                credential_secret_ref: None,
            }),
            https: None,
            no_proxy: Some(vec![]),
        });
        // No proxySecretRef: nothing to point at.
        assert_eq!(runner_env(&er.spec, "jit").len(), 3);
        er.spec.proxy_secret_ref = Some("set-754b578d-runner-proxy".into());
        let env = runner_env(&er.spec, "jit");
        let names: Vec<&str> = env.iter().map(|e| e.name.as_str()).collect();
        assert_eq!(names[3..], ["http_proxy"]);
        let r = env[3]
            .value_from
            .as_ref()
            .and_then(|v| v.secret_key_ref.as_ref())
            .expect("ref");
        assert_eq!(
            (r.name.as_str(), r.key.as_str()),
            ("set-754b578d-runner-proxy", "http_proxy")
        );
        if let Some(p) = er.spec.proxy.as_mut() {
            p.https = Some(ProxyServerConfig::default());
            p.no_proxy = Some(vec!["10.0.0.0/8".into()]);
        }
        let names: Vec<String> = runner_env(&er.spec, "jit").into_iter().map(|e| e.name).collect();
        assert_eq!(names[3..], ["http_proxy", "https_proxy", "no_proxy"]);
    }

    #[test]
    fn hash_is_stable_and_follows_the_spec() {
        let er = runner(vec![container("runner", &[])]);
        let h =
            |er: &EphemeralRunner| build_pod(er, "jit").metadata.labels.expect("labels")[l::POD_TEMPLATE_HASH].clone();
        assert_eq!(h(&er), h(&er));
        let mut other = er.clone();
        other.spec.runner_scale_set_id = 4;
        assert_ne!(h(&er), h(&other));
        assert!(h(&er).len() <= 63);
    }

    #[test]
    fn hooks_detection_and_no_template() {
        assert!(uses_container_hooks(
            &runner(vec![container("runner", &[(ENV_CONTAINER_HOOKS, "/h/index.js")])]).spec
        ));
        assert!(!uses_container_hooks(
            &runner(vec![container("side", &[(ENV_CONTAINER_HOOKS, "x")])]).spec
        ));
        let mut er = runner(vec![]);
        er.spec.pod_template = PodTemplateSpec::default();
        er.metadata.uid = None;
        let pod = build_pod(&er, "jit");
        assert!(pod.metadata.owner_references.is_none());
        assert!(pod.spec.expect("spec").containers.is_empty());
    }
}
