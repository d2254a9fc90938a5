//! Smoke tests of the local test cluster (`tests/cluster/up`): each proves one thing that rarc's
//! controller, listener and container hooks rely on, in a namespace of its own.
//!
//! They need the cluster and fail (never skip) without it, with
//! `no test cluster at <path>: run tests/cluster/up`.
#![allow(clippy::unwrap_used)]

use std::{
    future::Future,
    panic::AssertUnwindSafe,
    time::{Duration, Instant},
};

use futures::{AsyncBufReadExt as _, FutureExt as _, StreamExt as _};
use k8s_openapi::{
    api::{
        apps::v1::{Deployment, ReplicaSet},
        core::v1::{ConfigMap, Pod, Secret},
    },
    apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition,
    apimachinery::pkg::apis::meta::v1::OwnerReference,
};
use kube::{
    Api, Client, Resource, ResourceExt as _,
    api::{
        ApiResource, DeleteParams, DynamicObject, GroupVersionKind, ListParams, LogParams, Patch, PatchParams,
        PostParams,
    },
    runtime::wait::conditions,
};
use rarc_kube_test::{ExecOutput, NODE_NAME, TEST_IMAGE, apply_yaml, await_condition, exec, with_temp_ns, within};
use serde_json::json;

/// Runs `body` in a new namespace, fails it after `timeout`, and deletes the namespace either way.
async fn run<F, Fut>(prefix: &str, timeout: Duration, body: F)
where
    F: FnOnce(Client, String) -> Fut,
    Fut: Future<Output = ()>,
{
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "rarc_kube_test=info".into()),
        )
        .with_test_writer()
        .try_init();
    let result = with_temp_ns(prefix, |client, ns| async move {
        within(
            timeout,
            &format!("the test body in namespace {ns}"),
            body(client, ns.clone()),
        )
        .await
        .unwrap_or_else(|e| panic!("{e:?}"));
    })
    .await;
    if let Err(e) = result {
        panic!("{e:?}");
    }
}

/// A pod spec of one container `main` running `command` from the test image; it dies at once
/// when deleted, so namespaces go quickly.
fn busybox_spec(command: &[&str]) -> serde_json::Value {
    json!({
        "terminationGracePeriodSeconds": 0,
        "containers": [{
            "name": "main",
            "image": TEST_IMAGE,
            "imagePullPolicy": "Never",
            "command": command,
        }],
    })
}

fn busybox_pod(name: &str, command: &[&str]) -> Pod {
    let mut spec = busybox_spec(command);
    spec["restartPolicy"] = json!("Never");
    serde_json::from_value(json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": { "name": name },
        "spec": spec,
    }))
    .unwrap()
}

fn sleeper_deployment(name: &str, replicas: i32) -> Deployment {
    serde_json::from_value(json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": { "name": name },
        "spec": {
            "replicas": replicas,
            "selector": { "matchLabels": { "app": name } },
            "template": {
                "metadata": { "labels": { "app": name } },
                "spec": busybox_spec(&["/bin/sleep", "3600"]),
            },
        },
    }))
    .unwrap()
}

fn is_running(pod: &Pod) -> bool {
    pod.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running")
}

/// One line per pod of `pods`: phase, node, and why each container is not running, for failure messages.
async fn describe_pods(pods: &Api<Pod>) -> String {
    let list = match pods.list(&ListParams::default()).await {
        Ok(list) => list,
        Err(e) => return format!("(cannot list pods: {e})"),
    };
    let mut lines = Vec::new();
    for pod in &list.items {
        let status = pod.status.clone().unwrap_or_default();
        let node = pod
            .spec
            .as_ref()
            .and_then(|s| s.node_name.clone())
            .unwrap_or_else(|| "unscheduled".into());
        let mut line = format!("pod {}: {} on {node}", pod.name_any(), status.phase.unwrap_or_default());
        for condition in status.conditions.iter().flatten().filter(|c| c.status != "True") {
            line += &format!(
                "; {} is {} ({})",
                condition.type_,
                condition.status,
                condition.message.clone().unwrap_or_default()
            );
        }
        for container in status.container_statuses.iter().flatten() {
            let state = container.state.clone().unwrap_or_default();
            if let Some(waiting) = state.waiting {
                line += &format!(
                    "; container {} waiting: {} {}",
                    container.name,
                    waiting.reason.unwrap_or_default(),
                    waiting.message.unwrap_or_default()
                );
            }
            if let Some(terminated) = state.terminated {
                line += &format!(
                    "; container {} exited {}: {}",
                    container.name,
                    terminated.exit_code,
                    terminated.reason.unwrap_or_default()
                );
            }
        }
        lines.push(line);
    }
    if lines.is_empty() {
        "no pods".into()
    } else {
        lines.join("\n")
    }
}

/// Starts a pod and waits until its container runs.
async fn start_pod(pods: &Api<Pod>, pod: &Pod) {
    pods.create(&PostParams::default(), pod).await.unwrap();
    let name = pod.name_any();
    if let Err(e) = await_condition(pods, &name, conditions::is_pod_running(), Duration::from_secs(120)).await {
        panic!("{e:?}\n{}", describe_pods(pods).await);
    }
}

/// Waits until the Deployment `name` has `replicas` available replicas.
async fn await_available(deployments: &Api<Deployment>, pods: &Api<Pod>, name: &str, replicas: i32) {
    let available = move |d: Option<&Deployment>| {
        d.and_then(|d| d.status.as_ref()).and_then(|s| s.available_replicas) == Some(replicas)
    };
    if let Err(e) = await_condition(deployments, name, available, Duration::from_secs(120)).await {
        panic!("{e:?}\n{}", describe_pods(pods).await);
    }
}

/// Whether the object that had `uid` is gone (absent, or replaced by another one of the same name).
async fn is_gone<K>(api: &Api<K>, name: &str, uid: &str) -> bool
where
    K: Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    api.get_opt(name)
        .await
        .unwrap()
        .is_none_or(|obj| obj.meta().uid.as_deref() != Some(uid))
}

#[tokio::test]
async fn deployment_of_a_local_scratch_image_becomes_ready() {
    run("deployment-ready", Duration::from_secs(180), |client, ns| async move {
        let deployments: Api<Deployment> = Api::namespaced(client.clone(), &ns);
        deployments
            .create(&PostParams::default(), &sleeper_deployment("sleepers", 2))
            .await
            .unwrap();
        let pods: Api<Pod> = Api::namespaced(client, &ns);
        await_available(&deployments, &pods, "sleepers", 2).await;

        let pods = pods.list(&ListParams::default().labels("app=sleepers")).await.unwrap();
        let running: Vec<&Pod> = pods.items.iter().filter(|p| is_running(p)).collect();
        assert_eq!(
            running.len(),
            2,
            "running pods: {:?}",
            pods.items.iter().map(|p| p.name_any()).collect::<Vec<_>>()
        );
        for pod in running {
            let node = pod.spec.as_ref().and_then(|s| s.node_name.as_deref());
            assert_eq!(node, Some(NODE_NAME), "pod {} was scheduled elsewhere", pod.name_any());
        }
    })
    .await;
}

#[tokio::test]
async fn exec_returns_output_and_exit_code() {
    run("exec", Duration::from_secs(180), |client, ns| async move {
        let pods: Api<Pod> = Api::namespaced(client, &ns);
        start_pod(&pods, &busybox_pod("shell", &["/bin/sleep", "3600"])).await;

        let failing = exec(
            &pods,
            "shell",
            None,
            ["/bin/sh", "-c", "echo out; echo err >&2; exit 3"],
        )
        .await
        .unwrap();
        assert_eq!(
            failing,
            ExecOutput {
                stdout: "out\n".into(),
                stderr: "err\n".into(),
                exit_code: 3
            }
        );

        let succeeding = exec(&pods, "shell", Some("main"), ["/bin/true"]).await.unwrap();
        assert_eq!(
            succeeding,
            ExecOutput {
                stdout: String::new(),
                stderr: String::new(),
                exit_code: 0
            }
        );
    })
    .await;
}

#[tokio::test]
async fn logs_stream() {
    run("logs-stream", Duration::from_secs(180), |client, ns| async move {
        let pods: Api<Pod> = Api::namespaced(client, &ns);
        let script = r#"i=0; while true; do echo "tick $i"; i=$((i+1)); sleep 0.1; done"#;
        start_pod(&pods, &busybox_pod("ticker", &["/bin/sh", "-c", script])).await;

        // Start from the newest line: every later one must come live, 100 ms apart.
        let params = LogParams {
            follow: true,
            container: Some("main".into()),
            tail_lines: Some(1),
            ..LogParams::default()
        };
        let started = Instant::now();
        let stream = pods.log_stream("ticker", &params).await.unwrap();
        let lines: Vec<String> = within(
            Duration::from_secs(30),
            "6 log lines",
            stream.lines().take(6).collect::<Vec<_>>(),
        )
        .await
        .unwrap()
        .into_iter()
        .collect::<Result<_, _>>()
        .unwrap();
        let elapsed = started.elapsed();
        assert_eq!(lines.len(), 6, "the log stream ended early: {lines:?}");
        let ticks: Vec<u64> = lines
            .iter()
            .map(|line| {
                line.strip_prefix("tick ")
                    .and_then(|n| n.parse().ok())
                    .unwrap_or_else(|| panic!("unexpected log line {line:?}"))
            })
            .collect();
        let first = ticks[0];
        assert_eq!(
            ticks,
            (first..first + 6).collect::<Vec<_>>(),
            "lines out of order or missing"
        );
        // The 5 lines after the tailed one were printed at least 0.4 s after the request began.
        assert!(
            elapsed >= Duration::from_millis(300),
            "6 lines in {elapsed:?}: not followed live"
        );

        let pod = pods.get("ticker").await.unwrap();
        assert!(is_running(&pod), "the pod stopped while its logs were followed");
    })
    .await;
}

#[tokio::test]
async fn deleting_an_owner_garbage_collects_dependents() {
    run(
        "garbage-collection",
        Duration::from_secs(300),
        |client, ns| async move {
            background_deletion_removes_dependents(&client, &ns).await;
            foreground_deletion_of_a_deployment_waits_for_its_replica_set_and_pods(&client, &ns).await;
        },
    )
    .await;
}

/// A ConfigMap owns a Secret and a Pod; deleting it in the background makes the garbage collector
/// of kube-controller-manager delete both.
async fn background_deletion_removes_dependents(client: &Client, ns: &str) {
    let config_maps: Api<ConfigMap> = Api::namespaced(client.clone(), ns);
    let secrets: Api<Secret> = Api::namespaced(client.clone(), ns);
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    let owner: ConfigMap = serde_json::from_value(json!({
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": { "name": "owner" },
        "data": { "role": "owner" },
    }))
    .unwrap();
    let owner = config_maps.create(&PostParams::default(), &owner).await.unwrap();
    let owned_by = vec![OwnerReference {
        api_version: "v1".into(),
        kind: "ConfigMap".into(),
        name: "owner".into(),
        uid: owner.uid().unwrap(),
        block_owner_deletion: Some(true),
        controller: None,
    }];
    let mut secret: Secret = serde_json::from_value(json!({
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": { "name": "owned-secret" },
        "stringData": { "k": "v" },
    }))
    .unwrap();
    secret.metadata.owner_references = Some(owned_by.clone());
    let secret = secrets.create(&PostParams::default(), &secret).await.unwrap();
    let mut pod = busybox_pod("owned-pod", &["/bin/sleep", "3600"]);
    pod.metadata.owner_references = Some(owned_by);
    let pod = pods.create(&PostParams::default(), &pod).await.unwrap();

    config_maps.delete("owner", &DeleteParams::background()).await.unwrap();
    // Both waits run at once, so together they take at most 60 s.
    let (secret_uid, pod_uid) = (secret.uid().unwrap(), pod.uid().unwrap());
    let timeout = Duration::from_secs(60);
    let (secret_gone, pod_gone) = tokio::join!(
        await_condition(&secrets, "owned-secret", conditions::is_deleted(&secret_uid), timeout),
        await_condition(&pods, "owned-pod", conditions::is_deleted(&pod_uid), timeout),
    );
    secret_gone.unwrap();
    pod_gone.unwrap();
}

/// A foreground delete keeps the Deployment (with the `foregroundDeletion` finalizer) until its
/// ReplicaSet and that one's pods are gone.
async fn foreground_deletion_of_a_deployment_waits_for_its_replica_set_and_pods(client: &Client, ns: &str) {
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), ns);
    let replica_sets: Api<ReplicaSet> = Api::namespaced(client.clone(), ns);
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    let deployment = deployments
        .create(&PostParams::default(), &sleeper_deployment("web", 1))
        .await
        .unwrap();
    await_available(&deployments, &pods, "web", 1).await;
    let by_app = ListParams::default().labels("app=web");
    let owned_sets = replica_sets.list(&by_app).await.unwrap().items;
    let owned_pods = pods.list(&by_app).await.unwrap().items;
    assert_eq!(owned_sets.len(), 1, "ReplicaSets of the Deployment");
    assert!(!owned_pods.is_empty(), "the Deployment has no pods");

    let deleting = deployments.delete("web", &DeleteParams::foreground()).await.unwrap();
    let deleting = deleting
        .left()
        .expect("a foreground delete returns the object, still there");
    assert!(
        deleting.finalizers().iter().any(|f| f == "foregroundDeletion"),
        "finalizers: {:?}",
        deleting.finalizers()
    );
    let uid = deployment.uid().unwrap();
    await_condition(
        &deployments,
        "web",
        conditions::is_deleted(&uid),
        Duration::from_secs(120),
    )
    .await
    .unwrap();
    for set in &owned_sets {
        let (name, uid) = (set.name_any(), set.uid().unwrap());
        assert!(
            is_gone(&replica_sets, &name, &uid).await,
            "ReplicaSet {name} outlived its Deployment"
        );
    }
    for pod in &owned_pods {
        let (name, uid) = (pod.name_any(), pod.uid().unwrap());
        assert!(is_gone(&pods, &name, &uid).await, "pod {name} outlived its Deployment");
    }
}

#[tokio::test]
async fn crd_from_yaml_serves_custom_resources_with_status() {
    run("crd", Duration::from_secs(240), |client, ns| async move {
        // CRDs are cluster-scoped: name this run's after its namespace's random suffix.
        let suffix = ns.rsplit('-').next().unwrap().to_owned();
        let plural = format!("widgets{suffix}");
        let kind = format!("Widget{}", suffix.to_uppercase());
        let crd_name = format!("{plural}.smoke.rarc.test");
        let crds: Api<CustomResourceDefinition> = Api::all(client.clone());

        // The checks get less time than the whole test, so that the CRD is deleted in any case.
        let checks = check_custom_resources(client.clone(), &ns, &crd_name, &plural, &kind);
        let checks = async {
            within(Duration::from_secs(150), "the custom resource checks", checks)
                .await
                .unwrap_or_else(|e| panic!("{e:?}"));
        };
        let outcome = AssertUnwindSafe(checks).catch_unwind().await;
        let cleanup = delete_crd(&crds, &crd_name).await;
        match (outcome, cleanup) {
            (Ok(()), Ok(())) => {}
            (Ok(()), Err(e)) => panic!("cannot delete CRD {crd_name}: {e:?}"),
            (Err(panic), cleanup) => {
                if let Err(e) = cleanup {
                    eprintln!("cannot delete CRD {crd_name} either: {e:?}");
                }
                std::panic::resume_unwind(panic);
            }
        }
    })
    .await;
}

/// Deletes the CRD, if it exists, and waits until it is gone.
async fn delete_crd(crds: &Api<CustomResourceDefinition>, name: &str) -> Result<(), Box<dyn std::error::Error>> {
    let Some(crd) = crds.get_opt(name).await? else {
        return Ok(());
    };
    crds.delete(name, &DeleteParams::background()).await?;
    let uid = crd.meta().uid.clone().unwrap_or_default();
    await_condition(crds, name, conditions::is_deleted(&uid), Duration::from_secs(60)).await?;
    Ok(())
}

async fn check_custom_resources(client: Client, ns: &str, crd_name: &str, plural: &str, kind: &str) {
    let singular = kind.to_lowercase();
    let crd_yaml = format!(
        r#"
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: {crd_name}
spec:
  group: smoke.rarc.test
  scope: Namespaced
  names:
    plural: {plural}
    singular: {singular}
    kind: {kind}
    listKind: {kind}List
  versions:
    - name: v1
      served: true
      storage: true
      subresources:
        status: {{}}
      additionalPrinterColumns:
        - name: Phase
          type: string
          jsonPath: .status.phase
      schema:
        openAPIV3Schema:
          type: object
          properties:
            spec:
              type: object
              properties:
                size:
                  type: integer
            status:
              type: object
              properties:
                phase:
                  type: string
"#
    );
    apply_yaml(&client, None, &crd_yaml).await.unwrap();
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    await_condition(
        &crds,
        crd_name,
        conditions::is_crd_established(),
        Duration::from_secs(60),
    )
    .await
    .unwrap();

    // Created from YAML into the namespace given, with the status in the manifest ignored.
    let cr_yaml = format!("apiVersion: smoke.rarc.test/v1\nkind: {kind}\nmetadata:\n  name: w1\nspec:\n  size: 1\n");
    let applied = apply_yaml(&client, Some(ns), &cr_yaml).await.unwrap();
    assert_eq!(applied.len(), 1);
    assert_eq!(applied[0].namespace().as_deref(), Some(ns));
    assert_eq!(applied[0].data["spec"]["size"], 1);

    let resource = ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk("smoke.rarc.test", "v1", kind), plural);
    let widgets: Api<DynamicObject> = Api::namespaced_with(client.clone(), ns, &resource);
    let params = PatchParams::default();

    let patched = widgets
        .patch_status(
            "w1",
            &params,
            &Patch::Merge(json!({ "status": { "phase": "Running" } })),
        )
        .await
        .unwrap();
    assert_eq!(
        patched.data["status"]["phase"], "Running",
        "the status subresource took the status"
    );
    let generation = patched.metadata.generation;

    let patched = widgets
        .patch(
            "w1",
            &params,
            &Patch::Merge(json!({ "spec": { "size": 2 }, "status": { "phase": "Hacked" } })),
        )
        .await
        .unwrap();
    assert_eq!(patched.data["spec"]["size"], 2, "the main resource took the spec");
    assert_eq!(
        patched.data["status"]["phase"], "Running",
        "the main resource must not change status"
    );
    assert_eq!(
        patched.metadata.generation,
        generation.map(|g| g + 1),
        "a spec change bumps the generation"
    );
    let generation = patched.metadata.generation;

    let patched = widgets
        .patch_status(
            "w1",
            &params,
            &Patch::Merge(json!({ "spec": { "size": 99 }, "status": { "phase": "Done" } })),
        )
        .await
        .unwrap();
    assert_eq!(patched.data["status"]["phase"], "Done");
    assert_eq!(
        patched.data["spec"]["size"], 2,
        "the status subresource must not change spec"
    );
    assert_eq!(
        patched.metadata.generation, generation,
        "a status change keeps the generation"
    );

    // The printer column is served in the Table form that kubectl shows.
    let request = http::Request::get(format!("/apis/smoke.rarc.test/v1/namespaces/{ns}/{plural}/w1"))
        .header(http::header::ACCEPT, "application/json;as=Table;v=v1;g=meta.k8s.io")
        .body(Vec::new())
        .unwrap();
    let table: serde_json::Value = client.request(request).await.unwrap();
    assert_eq!(table["kind"], "Table", "{table}");
    let columns: Vec<&str> = table["columnDefinitions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    let phase = columns
        .iter()
        .position(|c| *c == "Phase")
        .unwrap_or_else(|| panic!("no Phase column in {columns:?}"));
    assert_eq!(table["rows"][0]["cells"][phase], "Done", "{table}");

    widgets.delete("w1", &DeleteParams::default()).await.unwrap();
}

/// `kubectl` and `helm` on PATH (put there by scripts/test) are the cluster's own real builds, and
/// Helm installs and uninstalls a chart through the API server.
#[tokio::test]
async fn kubectl_and_helm_on_path_are_real_builds() {
    run("smoke-helm", Duration::from_secs(120), |client, ns| async move {
        let kubeconfig = rarc_kube_test::kubeconfig_location();
        let tool = |program: &str, args: &[&str]| {
            let out = std::process::Command::new(program)
                .args(args)
                .env("KUBECONFIG", &kubeconfig)
                .output()
                .unwrap_or_else(|e| panic!("{program} is not on PATH (run the tests through `make test`): {e}"));
            let text = String::from_utf8_lossy(&out.stdout).into_owned();
            assert!(out.status.success(), "{program} {args:?}: {}", String::from_utf8_lossy(&out.stderr));
            text
        };
        let version: serde_json::Value = serde_json::from_str(&tool("kubectl", &["version", "-o", "json"])).unwrap();
        assert_eq!(version["clientVersion"]["gitVersion"], "v1.34.4");
        assert_eq!(version["serverVersion"]["gitVersion"], "v1.34.4");
        assert!(tool("helm", &["version", "--short"]).starts_with("v3."));
        let chart = std::env::temp_dir().join(format!("rarc-smoke-chart-{ns}"));
        std::fs::create_dir_all(chart.join("templates")).unwrap();
        std::fs::write(
            chart.join("Chart.yaml"),
            "apiVersion: v2\nname: smoke\nversion: 0.1.0\nkubeVersion: \">=1.30.0-0\"\n",
        )
        .unwrap();
        std::fs::write(
            chart.join("templates/cm.yaml"),
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {{ .Release.Name }}-cm\ndata:\n  greeting: {{ .Values.greeting | quote }}\n",
        )
        .unwrap();
        std::fs::write(chart.join("values.yaml"), "greeting: hello\n").unwrap();
        let chart_path = chart.to_string_lossy().into_owned();
        tool("helm", &["install", "smoke", &chart_path, "-n", &ns, "--set", "greeting=from-helm", "--wait"]);
        let cms: Api<ConfigMap> = Api::namespaced(client.clone(), &ns);
        let cm = cms.get("smoke-cm").await.unwrap();
        assert_eq!(cm.data.unwrap()["greeting"], "from-helm");
        tool("helm", &["uninstall", "smoke", "-n", &ns, "--wait"]);
        assert!(cms.get_opt("smoke-cm").await.unwrap().is_none());
        let _ = std::fs::remove_dir_all(&chart);
    })
    .await;
}

/// A privileged pod runs: containerd grants the capabilities this machine has, although Docker's
/// `--privileged` fails here for want of CAP_SYS_RESOURCE. The dind sidecar of runner pods needs it.
#[tokio::test]
async fn privileged_pod_runs() {
    run("smoke-priv", Duration::from_secs(120), |client, ns| async move {
        let pods: Api<Pod> = Api::namespaced(client, &ns);
        let pod: Pod = serde_json::from_value(json!({
            "metadata": {"name": "priv"},
            "spec": {
                "terminationGracePeriodSeconds": 0,
                "containers": [{
                    "name": "main", "image": TEST_IMAGE, "imagePullPolicy": "Never",
                    "command": ["/bin/sleep", "3600"],
                    "securityContext": {"privileged": true}
                }]
            }
        }))
        .unwrap();
        pods.create(&PostParams::default(), &pod).await.unwrap();
        await_condition(&pods, "priv", conditions::is_pod_running(), Duration::from_secs(60))
            .await
            .unwrap();
        // Privileged means it can do what only privileged containers can: mount a tmpfs.
        let out = exec(
            &pods,
            "priv",
            Some("main"),
            ["/bin/sh", "-c", "mkdir -p /m && mount -t tmpfs t /m && echo mounted"],
        )
        .await
        .unwrap();
        assert_eq!((out.stdout.as_str(), out.exit_code), ("mounted\n", 0), "{out:?}");
    })
    .await;
}
