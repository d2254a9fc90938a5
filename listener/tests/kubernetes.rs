//! The Kubernetes backend against the REAL local cluster (`tests/cluster/up`), driven by the
//! listener loop against rarc-sim. Fails (never skips) when the cluster is not up.
//!
//! Covers §15.8 items 53–55 (ERS patch body, patch ids, ERS 404 fatal) and §15.9 items 56–57
//! (EphemeralRunner status patch on JobStarted, unknown runner ignored).

#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

mod common;

use common::*;
use kube::Api;
use kube::api::{DeleteParams, DynamicObject, PostParams};
use rarc_actions::types::{JobMessageBase, JobStarted};
use rarc_listener::backend::kubernetes::{KubernetesBackend, ephemeral_runner_resource, ephemeral_runner_set_resource};
use rarc_listener::backend::{Backend, BackendError};
use rarc_listener::listener::{Listener, ListenerError, ListenerSettings};
use rarc_sim::runner::{RunnerArgs, run_until};
use serde_json::{Value, json};
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

/// The real CRDs (the generated ones of crates/crd), so the listener is tested against ARC's schemas.
const CRDS: &str = concat!(
    include_str!("../../crates/crd/crds/actions.github.com_ephemeralrunnersets.yaml"),
    "\n---\n",
    include_str!("../../crates/crd/crds/actions.github.com_ephemeralrunners.yaml")
);

async fn install_crds(client: &kube::Client) {
    rarc_kube_test::apply_yaml(client, None, CRDS)
        .await
        .expect("install CRDs");
}

fn object(kind: &str, name: &str, body: Value) -> DynamicObject {
    let mut v = json!({"apiVersion": "actions.github.com/v1alpha1", "kind": kind, "metadata": {"name": name}});
    for (k, val) in body.as_object().unwrap() {
        v[k] = val.clone();
    }
    serde_json::from_value(v).unwrap()
}

/// Creates `obj`, retrying while the freshly installed CRD is not served yet.
async fn create(api: &Api<DynamicObject>, obj: &DynamicObject) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match api.create(&PostParams::default(), obj).await {
            Ok(_) => return,
            Err(e) if Instant::now() < deadline => {
                tracing::debug!(error = %e, "CRD not ready yet");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(e) => panic!("create {:?}: {e}", obj.metadata.name),
        }
    }
}

/// Polls `api.get(name)` until `check` holds (tests may GET; the listener never does).
async fn wait_object(api: &Api<DynamicObject>, name: &str, what: &str, check: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let data = api.get(name).await.map(|o| o.data).unwrap_or(Value::Null);
        if check(&data) {
            return data;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}; last: {data}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kubernetes_backend_end_to_end() {
    rarc_kube_test::with_temp_ns("listener-k8s", |client, ns| async move {
        install_crds(&client).await;
        let sets: Api<DynamicObject> = Api::namespaced_with(client.clone(), &ns, &ephemeral_runner_set_resource());
        let runners: Api<DynamicObject> = Api::namespaced_with(client.clone(), &ns, &ephemeral_runner_resource());
        create(
            &sets,
            &object(
                "EphemeralRunnerSet",
                "ers-1",
                json!({"spec": {"replicas": 0, "patchID": 0, "ephemeralRunnerSpec": {"githubConfigUrl": "https://github.com/o", "githubConfigSecret": "s", "runnerScaleSetId": 1}}}),
            ),
        )
        .await;
        create(&runners, &object("EphemeralRunner", "runner-1", json!({"spec": {"githubConfigUrl": "https://github.com/o", "githubConfigSecret": "s", "runnerScaleSetId": 1}}))).await;

        let s = sim().await;
        let id = create_set(&pat_client(&s), "k8s").await;
        queue(&s, 1, "k8s");

        let backend = KubernetesBackend::new(client.clone(), &ns, "ers-1");
        // §15.9 item 57: an EphemeralRunner that does not exist (404) is ignored.
        backend
            .job_started(&JobStarted {
                base: JobMessageBase {
                    job_id: "x".into(),
                    ..Default::default()
                },
                runner_name: "not-ours".into(),
                ..Default::default()
            })
            .await
            .expect("404 on the status patch is ignored");

        let stop = CancellationToken::new();
        let mut settings = ListenerSettings::new(id, 0, 5, "k8s-listener");
        settings.close_timeout = Duration::from_secs(5);
        let listener = Listener::new(pat_client(&s), backend.clone(), settings).with_shutdown(stop.clone());
        let task = tokio::spawn(listener.run());

        // Initial patch: replicas = min(0 + 1, 5) = 1 with patchID 0 — then non-zero ids.
        wait_object(&sets, "ers-1", "initial patch", |d| d["spec"]["replicas"] == 1).await;
        let later = wait_object(&sets, "ers-1", "a later patch", |d| {
            d["spec"]["patchID"].as_i64().unwrap_or(0) > 0
        })
        .await;
        assert_eq!(later["spec"]["replicas"], 1);

        // A runner named like the EphemeralRunner takes the job: JobStarted patches its status.
        let jit = s
            .sim
            .with_state(|st| st.generate_jit_config(id, "runner-1", ""))
            .expect("JIT config");
        let root = tempfile::tempdir().unwrap();
        let runner_stop = CancellationToken::new();
        let runner = tokio::spawn(run_until(
            RunnerArgs {
                jitconfig: Some(jit.encoded_jit_config),
                root: Some(root.path().to_path_buf()),
                wait_ms: 500,
                quiet: true,
                ..Default::default()
            },
            runner_stop.clone(),
        ));
        let er = wait_object(&runners, "runner-1", "ER status patch", |d| {
            d["status"]["jobId"].as_str().is_some_and(|j| !j.is_empty())
        })
        .await;
        let status = &er["status"];
        assert!(status["jobRepositoryName"].as_str().unwrap().contains('/'), "{status}");
        assert!(status["jobRequestId"].as_i64().unwrap() > 0, "{status}");
        assert!(status["workflowRunId"].as_i64().unwrap_or(0) >= 0);
        let _ = tokio::time::timeout(Duration::from_secs(20), runner).await;
        runner_stop.cancel();

        // §15.8 item 55: the EphemeralRunnerSet disappears ⇒ the next patch is fatal.
        sets.delete("ers-1", &DeleteParams::default()).await.unwrap();
        let result = tokio::time::timeout(Duration::from_secs(20), task)
            .await
            .expect("the listener stops on its own")
            .unwrap();
        match result {
            Err(ListenerError::Backend {
                source: BackendError::NotFound { what },
                ..
            }) => assert!(what.contains("ers-1"), "{what}"),
            other => panic!("expected a fatal NotFound, got {other:?}"),
        }
        assert!(
            s.sim.with_state(|st| st.sessions()).is_empty(),
            "the session was deleted on the way out"
        );
    })
    .await
    .expect("test cluster (run tests/cluster/up)");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ers_patch_body_and_zero_replicas() {
    rarc_kube_test::with_temp_ns("listener-ers", |client, ns| async move {
        install_crds(&client).await;
        let sets: Api<DynamicObject> = Api::namespaced_with(client.clone(), &ns, &ephemeral_runner_set_resource());
        create(
            &sets,
            &object(
                "EphemeralRunnerSet",
                "ers",
                json!({"spec": {"replicas": 4, "patchID": 9, "ephemeralRunnerSpec": {"githubConfigUrl": "https://github.com/o", "githubConfigSecret": "s", "runnerScaleSetId": 1}}}),
            ),
        )
        .await;
        let backend = KubernetesBackend::new(client.clone(), &ns, "ers");
        backend.apply_desired(3, 7).await.unwrap();
        let d = sets.get("ers").await.unwrap().data;
        assert_eq!(
            (d["spec"]["replicas"].clone(), d["spec"]["patchID"].clone()),
            (json!(3), json!(7))
        );
        backend.apply_desired(0, 0).await.unwrap();
        let d = sets.get("ers").await.unwrap().data;
        assert_eq!(
            d["spec"]["replicas"].as_i64().unwrap_or(0),
            0,
            "replicas 0 is sent as 0"
        );
        assert_eq!(d["spec"]["patchID"], 0);
        let missing = KubernetesBackend::new(client, &ns, "absent");
        assert!(matches!(
            missing.apply_desired(1, 1).await,
            Err(BackendError::NotFound { .. })
        ));
    })
    .await
    .expect("test cluster (run tests/cluster/up)");
}
