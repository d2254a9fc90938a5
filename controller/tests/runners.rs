//! The EphemeralRunnerSet and EphemeralRunner scenarios of arc-controller.md §12 (T20–T42, T73 and
//! rarc's pending-pod timeout), against the REAL local cluster (`tests/cluster/up`) and an
//! in-process rarc-sim, with the harness of `support` (see cluster.rs for how to run them):
//!
//! ```sh
//! cargo build -p rarc-listener -p rarc-sim
//! RARC_KUBECONFIG=$(tests/cluster/up | tail -1) cargo test -p rarc-controller --test runners
//! ```
//!
//! Most tests play the listener themselves: their AutoscalingRunnerSet's `listenerTemplate` gives
//! the `listener` container an image that does not exist with `imagePullPolicy: Never`, so the
//! listener pod stays Pending, never opens a session and never patches the EphemeralRunnerSet; the
//! test then merge-patches `spec.replicas`/`spec.patchID` exactly as a listener does (§2.5). The
//! controller itself is untouched (its AutoscalingListener and listener pod exist as usual). The
//! tests that need jobs (T35, T40) run the real listener.
//!
//! Objects that come and go between two polls (an `Outdated` runner, a pod recreated after a
//! failure) are seen through a watch ([`History`]), not by polling.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Debug;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt as _;
use k8s_openapi::api::core::v1::{Container, EnvVar, Pod, Secret};
use k8s_openapi::jiff::Timestamp;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use kube::runtime::{WatchStreamExt as _, watcher};
use kube::{Api, Resource, ResourceExt};
use rarc_crd::keys::{annotations, finalizers, labels};
use rarc_crd::{AutoscalingRunnerSet, EphemeralRunner};
use rarc_sim::state::JobState;
use serde::de::DeserializeOwned;
use serde_json::json;
use support::*;

const MINUTE: Duration = Duration::from_secs(60);
/// Pods on a loaded 2-CPU machine.
const PODS: Duration = Duration::from_secs(120);
/// An image that is not in the node's store; with `imagePullPolicy: Never` its pod never starts.
const ABSENT_IMAGE: &str = "rarc.local/absent:none";
/// How long to watch for something that must NOT happen (after the controller had its chance).
const SETTLE: Duration = Duration::from_secs(4);

// ---- helpers ------------------------------------------------------------------------------------

/// Every version of every object of one kind seen by a watch started before the test acted, so
/// states that last less than a poll interval are not missed. Aborted on drop.
struct History<K> {
    seen: Arc<Mutex<Vec<K>>>,
    task: tokio::task::JoinHandle<()>,
}

impl<K> History<K>
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
{
    /// Starts watching `api` and waits until the initial list is done.
    async fn start(api: Api<K>) -> Self {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let ready = Arc::new(AtomicBool::new(false));
        let (sink, flag) = (seen.clone(), ready.clone());
        let task = tokio::spawn(async move {
            let stream = watcher(api, watcher::Config::default()).default_backoff();
            let mut stream = std::pin::pin!(stream);
            while let Some(event) = stream.next().await {
                match event {
                    Ok(watcher::Event::Apply(o) | watcher::Event::InitApply(o) | watcher::Event::Delete(o)) => {
                        sink.lock().unwrap_or_else(std::sync::PoisonError::into_inner).push(o);
                    }
                    Ok(watcher::Event::InitDone) => flag.store(true, Ordering::SeqCst),
                    Ok(watcher::Event::Init) | Err(_) => {}
                }
            }
        });
        let history = Self { seen, task };
        eventually("a watch to start", MINUTE, async || {
            if ready.load(Ordering::SeqCst) {
                Ok(())
            } else {
                Err("no initial list yet".into())
            }
        })
        .await;
        history
    }

    /// Every version seen, in order.
    fn all(&self) -> Vec<K> {
        self.seen
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Every version of `name` seen, in order.
    fn of(&self, name: &str) -> Vec<K> {
        self.all().into_iter().filter(|o| o.name_any() == name).collect()
    }

    /// The names of every object seen.
    fn names(&self) -> BTreeSet<String> {
        self.all().iter().map(ResourceExt::name_any).collect()
    }
}

impl<K> Drop for History<K> {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// `env.ars(name)` whose listener pod never starts (see the module doc): nothing but the test
/// patches the EphemeralRunnerSet.
fn ars_without_listener(env: &Env, name: &str) -> AutoscalingRunnerSet {
    let mut ars = env.ars(name);
    let spec = ars
        .spec
        .listener_template
        .as_mut()
        .and_then(|t| t.spec.as_mut())
        .expect("listener template spec");
    spec.containers.push(Container {
        name: "listener".into(),
        image: Some(ABSENT_IMAGE.into()),
        image_pull_policy: Some("Never".into()),
        ..Container::default()
    });
    ars
}

/// The runner container of `ars`'s template.
fn runner_container(ars: &mut AutoscalingRunnerSet) -> &mut Container {
    ars.spec
        .template
        .as_mut()
        .and_then(|t| t.spec.as_mut())
        .and_then(|s| s.containers.iter_mut().find(|c| c.name == "runner"))
        .expect("runner container")
}

/// Creates `ars`, waits for its scale set id and for its EphemeralRunnerSet to be reconciled (a
/// status written). Returns the scale set id.
async fn create_and_wait_ers(env: &Env, ars: &AutoscalingRunnerSet) -> i64 {
    let name = ars.name_any();
    env.create_ars(ars).await;
    let id = env.wait_scale_set_id(&name, MINUTE).await;
    let api = env.ers_api();
    eventually(&format!("EphemeralRunnerSet {name} reconciled"), MINUTE, async || {
        let ers = get(&api, &name).await?.ok_or("no EphemeralRunnerSet")?;
        if ers.status.is_some() && ers.finalizers().iter().any(|f| f == finalizers::EPHEMERAL_RUNNER_SET) {
            Ok(())
        } else {
            Err(format!("finalizers {:?}, status {:?}", ers.finalizers(), ers.status))
        }
    })
    .await;
    id
}

/// Merge-patches ERS `name` as a listener does: `spec.replicas` (`None` → `null`) and `spec.patchID`.
async fn patch_ers(env: &Env, name: &str, replicas: Option<i32>, patch_id: i32) {
    let body = json!({"spec": {"replicas": replicas, "patchID": patch_id}});
    env.ers_api()
        .patch(name, &PatchParams::default(), &Patch::Merge(&body))
        .await
        .unwrap_or_else(|e| panic!("patch EphemeralRunnerSet {name}: {e}"));
}

/// The EphemeralRunners controlled by ERS `ers` (deleting ones included).
async fn runners_of(env: &Env, ers: &str) -> Result<Vec<EphemeralRunner>, String> {
    Ok(env
        .ephemeral_runners()
        .await?
        .into_iter()
        .filter(|er| {
            er.owner_references()
                .iter()
                .any(|o| o.kind == "EphemeralRunnerSet" && o.name == ers && o.controller == Some(true))
        })
        .collect())
}

/// Waits until ERS `ers` has exactly `n` EphemeralRunners, none of them being deleted.
async fn wait_runners_of(env: &Env, ers: &str, n: usize, timeout: Duration) -> Vec<EphemeralRunner> {
    eventually(
        &format!("exactly {n} EphemeralRunner(s) of {ers}"),
        timeout,
        async || {
            let all = runners_of(env, ers).await?;
            if all.len() == n && all.iter().all(|e| !deleting(e)) {
                Ok(all)
            } else {
                Err(describe_ers(&all))
            }
        },
    )
    .await
}

/// Waits until EphemeralRunner `name` satisfies `ok`; returns it.
async fn wait_er(
    env: &Env,
    name: &str,
    what: &str,
    timeout: Duration,
    ok: impl Fn(&EphemeralRunner) -> bool,
) -> EphemeralRunner {
    let api = env.er_api();
    eventually(&format!("EphemeralRunner {name}: {what}"), timeout, async || {
        let er = get(&api, name).await?.ok_or("it does not exist")?;
        if ok(&er) {
            Ok(er)
        } else {
            Err(describe_ers(std::slice::from_ref(&er)))
        }
    })
    .await
}

/// Waits until `n` runners of scale set `id` are online in the simulator (their pods run).
async fn wait_online(env: &Env, id: i64, n: usize, timeout: Duration) {
    eventually(
        &format!("{n} runner(s) of scale set {id} online"),
        timeout,
        async || {
            let runners: Vec<_> = env.sim_runners().into_iter().filter(|r| r.scale_set_id == id).collect();
            if runners.iter().filter(|r| r.online).count() == n {
                Ok(())
            } else {
                Err(format!("{runners:?}"))
            }
        },
    )
    .await;
}

/// The id runner `name` is registered under in the simulator, if it is.
fn sim_runner_id(env: &Env, name: &str) -> Option<i64> {
    env.sim_runners().into_iter().find(|r| r.name == name).map(|r| r.id)
}

/// `(status, seq)` of every `DELETE …/agents/<id>` (RemoveRunner) the simulator received.
fn remove_calls(env: &Env, runner_id: i64) -> Vec<(u16, u64)> {
    env.calls_ending("DELETE", &format!("/agents/{runner_id}"))
        .iter()
        .map(|c| (c.status, c.seq))
        .collect()
}

/// Every RemoveRunner call the simulator received, as `(path, status)`.
fn all_remove_calls(env: &Env) -> Vec<(String, u16)> {
    env.calls(Some("DELETE"), "/agents/")
        .into_iter()
        .map(|c| (c.path, c.status))
        .collect()
}

/// Statuses of the GenerateJitRunnerConfig calls for scale set `id`.
fn jit_calls(env: &Env, id: i64) -> Vec<u16> {
    env.calls_ending("POST", &format!("/runnerscalesets/{id}/generatejitconfig"))
        .iter()
        .map(|c| c.status)
        .collect()
}

fn annotation<'a, K: Resource>(obj: &'a K, key: &str) -> Option<&'a str> {
    obj.meta()
        .annotations
        .as_ref()
        .and_then(|a| a.get(key))
        .map(String::as_str)
}

fn failures_of(er: &EphemeralRunner) -> BTreeMap<String, String> {
    er.status.as_ref().and_then(|s| s.failures.clone()).unwrap_or_default()
}

fn reason_of(er: &EphemeralRunner) -> Option<&str> {
    er.status.as_ref().and_then(|s| s.reason.as_deref())
}

fn message_of(er: &EphemeralRunner) -> Option<&str> {
    er.status.as_ref().and_then(|s| s.message.as_deref())
}

fn created_secs<K: Resource>(obj: &K) -> i64 {
    obj.meta()
        .creation_timestamp
        .as_ref()
        .map(|t| t.0.as_second())
        .unwrap_or_default()
}

/// The env var `name` of the `runner` container of `pod`.
fn runner_env<'a>(pod: &'a Pod, name: &str) -> Option<&'a EnvVar> {
    pod.spec
        .as_ref()?
        .containers
        .iter()
        .find(|c| c.name == "runner")?
        .env
        .as_ref()?
        .iter()
        .find(|e| e.name == name)
}

/// `(secret, key)` of an env var taken from a Secret.
fn secret_ref(var: Option<&EnvVar>) -> Option<(String, String)> {
    let r = var?.value_from.as_ref()?.secret_key_ref.as_ref()?;
    Some((r.name.clone(), r.key.clone()))
}

/// A Pod or Secret as runner-container-hooks leaves them: labelled `runner-pod=<runner>`.
async fn create_hook_leftovers(env: &Env, runner: &str) -> (String, String) {
    let name = format!("{runner}-workflow");
    let pod: Pod = serde_json::from_value(json!({
        "metadata": {"name": name, "labels": {labels::HOOKS_RUNNER_POD: runner}},
        "spec": {
            "terminationGracePeriodSeconds": 0,
            "containers": [{"name": "job", "image": ABSENT_IMAGE, "imagePullPolicy": "Never"}],
        },
    }))
    .expect("a pod");
    env.runner_pod_api()
        .create(&PostParams::default(), &pod)
        .await
        .unwrap_or_else(|e| panic!("create hook pod {name}: {e}"));
    let secret: Secret = serde_json::from_value(json!({
        "metadata": {"name": name, "labels": {labels::HOOKS_RUNNER_POD: runner}},
        "stringData": {"x": "y"},
    }))
    .expect("a secret");
    env.api::<Secret>()
        .create(&PostParams::default(), &secret)
        .await
        .unwrap_or_else(|e| panic!("create hook secret {name}: {e}"));
    (name.clone(), name)
}

// ---- scaling protocol ---------------------------------------------------------------------------

/// T20 + T21: `{replicas: 3, patchID: 1}` creates exactly 3 EphemeralRunners, each created with
/// both finalizers, the ERS as controller owner, `patch-id: "1"` and the `runner` component label,
/// and never more; after one is deleted, re-reconciling the same patch does not replace it; the
/// next patch id (`{replicas: 3, patchID: 2}`) creates exactly the one missing.
#[tokio::test]
async fn t20_t21_patch_creates_exactly_the_shortfall_once() {
    Env::run("t20", async |env| {
        let name = "t20-set";
        let history = History::start(env.er_api()).await;
        let id = create_and_wait_ers(env, &ars_without_listener(env, name)).await;
        tokio::time::sleep(Duration::from_secs(2)).await;
        assert!(
            history.names().is_empty(),
            "EphemeralRunners without any patch: {:?}",
            history.names()
        );

        patch_ers(env, name, Some(3), 1).await;
        let ers = wait_runners_of(env, name, 3, MINUTE).await;
        let mut c = Checks::default();
        let ers_uid = get(&env.ers_api(), name).await.expect("get ERS").expect("ERS").uid();
        for er in &ers {
            let n = er.name_any();
            c.ok(
                &format!("{n}: generateName <ers>-runner-"),
                n.starts_with(&format!("{name}-runner-")) && n.len() > format!("{name}-runner-").len(),
                &n,
            );
            // The first version the watch saw is the created object: both finalizers pre-set.
            let first = history.of(&n).into_iter().next().expect("seen by the watch");
            for f in [finalizers::EPHEMERAL_RUNNER, finalizers::EPHEMERAL_RUNNER_REGISTRATION] {
                c.ok(
                    &format!("{n} created with finalizer {f}"),
                    first.finalizers().iter().any(|x| x == f),
                    first.finalizers(),
                );
            }
            c.ok(
                &format!("{n}: controller ownerReference to the ERS"),
                er.owner_references().iter().any(|o| {
                    o.kind == "EphemeralRunnerSet"
                        && o.name == name
                        && Some(&o.uid) == ers_uid.as_ref()
                        && o.controller == Some(true)
                }),
                er.owner_references(),
            );
            c.eq(
                &format!("{n} patch-id"),
                annotation(er, annotations::PATCH_ID),
                Some("1"),
            );
            c.eq(
                &format!("{n} component label"),
                er.labels().get(labels::COMPONENT).map(String::as_str),
                Some(labels::COMPONENT_RUNNER),
            );
            c.eq(&format!("{n} runnerScaleSetId"), er.spec.runner_scale_set_id, id);
        }
        c.done();

        // Exactly once: the passes that follow (status writes, runner updates) create nothing.
        wait_online(env, id, 3, PODS).await;
        tokio::time::sleep(SETTLE).await;
        let first_three = history.names();
        assert_eq!(first_three.len(), 3, "EphemeralRunners ever created: {first_three:?}");

        // T21: one is deleted; the same patch is evaluated again (an ERS update forces a pass) and
        // creates no replacement.
        let victim = ers[0].name_any();
        let victim_id = sim_runner_id(env, &victim).expect("the victim is registered");
        env.er_api()
            .delete(&victim, &DeleteParams::default())
            .await
            .expect("delete an EphemeralRunner");
        wait_gone(&env.er_api(), &victim, MINUTE).await;
        assert!(
            remove_calls(env, victim_id).iter().any(|(s, _)| (200..300).contains(s)),
            "the deleted runner {victim} ({victim_id}) was deregistered: {:?}",
            remove_calls(env, victim_id)
        );
        let ers_api = env.ers_api();
        eventually("ERS status currentReplicas 2", MINUTE, async || {
            let s = get(&ers_api, name).await?.ok_or("no ERS")?;
            match s.status.as_ref().map(|st| st.current_replicas) {
                Some(2) => Ok(()),
                other => Err(format!("currentReplicas {other:?}")),
            }
        })
        .await;
        ers_api
            .patch(
                name,
                &PatchParams::default(),
                &Patch::Merge(&json!({"metadata": {"annotations": {"rarc.test/poke": "1"}}})),
            )
            .await
            .expect("poke the ERS");
        tokio::time::sleep(SETTLE).await;
        let live = runners_of(env, name).await.expect("list ERs");
        assert_eq!(
            live.len(),
            2,
            "no replacement for the same patchID:\n{}",
            describe_ers(&live)
        );
        assert_eq!(
            history.names(),
            first_three,
            "no EphemeralRunner created for the same patchID"
        );

        // A new patch id: exactly the shortfall (1), once.
        patch_ers(env, name, Some(3), 2).await;
        let ers = wait_runners_of(env, name, 3, MINUTE).await;
        tokio::time::sleep(SETTLE).await;
        let created: Vec<String> = history.names().difference(&first_three).cloned().collect();
        assert_eq!(
            created.len(),
            1,
            "patch 2 creates exactly one EphemeralRunner: {created:?}"
        );
        let new = ers
            .iter()
            .find(|e| e.name_any() == created[0])
            .expect("the new runner is live");
        assert_eq!(annotation(new, annotations::PATCH_ID), Some("2"));
        assert_eq!(runners_of(env, name).await.expect("list ERs").len(), 3);
    })
    .await;
}

/// T22: with 3 idle registered runners, `{replicas: 1, patchID: 2}` deletes nothing (a listener
/// patch never shrinks the set); `{replicas: 1, patchID: 0}` removes 2 — each RemoveRunner first,
/// and while RemoveRunner fails nothing is deleted; `{replicas: null, patchID: 0}` removes the last.
#[tokio::test]
async fn t22_positive_patch_never_shrinks_zero_converges() {
    Env::run("t22", async |env| {
        let name = "t22-set";
        let id = create_and_wait_ers(env, &ars_without_listener(env, name)).await;
        patch_ers(env, name, Some(3), 1).await;
        wait_runners_of(env, name, 3, MINUTE).await;
        wait_online(env, id, 3, PODS).await;

        patch_ers(env, name, Some(1), 2).await;
        tokio::time::sleep(SETTLE).await;
        let all = runners_of(env, name).await.expect("list ERs");
        assert!(
            all.len() == 3 && all.iter().all(|e| !deleting(e)),
            "patchID 2 with replicas 1 must not shrink:\n{}",
            describe_ers(&all)
        );
        assert!(all_remove_calls(env).is_empty(), "{:?}", all_remove_calls(env));

        // patchID 0 converges, but only through successful RemoveRunner calls.
        rarc_sim::testing::fault(
            &env.sim,
            r#"{"path":"/agents/","method":"DELETE","kind":"status","status":500}"#,
        );
        patch_ers(env, name, Some(1), 0).await;
        eventually("RemoveRunner to be attempted", MINUTE, async || {
            if all_remove_calls(env).is_empty() {
                Err("no call yet".into())
            } else {
                Ok(())
            }
        })
        .await;
        tokio::time::sleep(SETTLE).await;
        let all = runners_of(env, name).await.expect("list ERs");
        assert!(
            all.len() == 3 && all.iter().all(|e| !deleting(e)),
            "a runner was deleted although RemoveRunner failed:\n{}",
            describe_ers(&all)
        );
        assert_eq!(
            env.sim_runners().iter().filter(|r| r.scale_set_id == id).count(),
            3,
            "all 3 still registered"
        );
        env.sim.sim.clear_faults();

        let left = wait_runners_of(env, name, 1, MINUTE).await;
        let kept = left[0].name_any();
        eventually("2 runners deregistered", MINUTE, async || {
            let names: Vec<String> = env
                .sim_runners()
                .into_iter()
                .filter(|r| r.scale_set_id == id)
                .map(|r| r.name)
                .collect();
            if names == [kept.clone()] {
                Ok(())
            } else {
                Err(format!("registered {names:?}, kept {kept}"))
            }
        })
        .await;
        let ok_removes = all_remove_calls(env)
            .into_iter()
            .filter(|(_, s)| (200..300).contains(s))
            .count();
        assert_eq!(
            ok_removes,
            2,
            "two successful RemoveRunner calls: {:?}",
            all_remove_calls(env)
        );

        patch_ers(env, name, None, 0).await;
        wait_runners_of(env, name, 0, MINUTE).await;
        env.wait_no_sim_runners(id, MINUTE).await;
    })
    .await;
}

/// T24 (and rarc's failed-runner TTL): a `Failed` runner (its pod is invalid) occupies a replica —
/// with one Failed runner, `{replicas: 2}` creates only one more; with `failed_runner_ttl_secs`
/// 20 the Failed runners are deleted once that old (not before), and the set then replaces them.
#[tokio::test]
async fn t24_failed_runner_occupies_replicas_until_its_ttl() {
    const TTL: u64 = 20;
    Env::run_with(
        "t24",
        |s| s.failed_runner_ttl_secs = TTL,
        async |env| {
            let name = "t24-set";
            let mut ars = ars_without_listener(env, name);
            let runner = runner_container(&mut ars).clone();
            ars.spec
                .template
                .as_mut()
                .and_then(|t| t.spec.as_mut())
                .expect("template spec")
                .containers
                .push(runner);
            let history = History::start(env.er_api()).await;
            let id = create_and_wait_ers(env, &ars).await;

            patch_ers(env, name, Some(1), 1).await;
            let first = wait_runners_of(env, name, 1, MINUTE).await[0].name_any();
            let first_seen = Instant::now();
            wait_er(env, &first, "phase Failed", MINUTE, |e| e.phase() == "Failed").await;

            patch_ers(env, name, Some(2), 2).await;
            let both = wait_runners_of(env, name, 2, MINUTE).await;
            let second = both
                .iter()
                .map(ResourceExt::name_any)
                .find(|n| *n != first)
                .expect("a second runner");
            wait_er(env, &second, "phase Failed", MINUTE, |e| e.phase() == "Failed").await;
            tokio::time::sleep(Duration::from_secs(2)).await;
            let ever = history.names();
            assert_eq!(
                ever,
                BTreeSet::from([first.clone(), second.clone()]),
                "a Failed runner counts toward replicas: replicas 2 with 1 Failed creates 1"
            );
            let ers_api = env.ers_api();
            eventually("ERS status: 2 current, 2 failed", MINUTE, async || {
                let st = get(&ers_api, name).await?.ok_or("no ERS")?.status.unwrap_or_default();
                if (st.current_replicas, st.failed_ephemeral_runners) == (2, Some(2)) {
                    Ok(())
                } else {
                    Err(format!("{st:?}"))
                }
            })
            .await;
            env.wait_no_sim_runners(id, MINUTE).await;

            // rarc: deleted after the TTL, then replaced (the set has no runner left to carry the
            // patch id, so the patch is evaluated again).
            wait_gone(&env.er_api(), &first, MINUTE).await;
            let lived = first_seen.elapsed();
            assert!(
                lived >= Duration::from_secs(TTL - 4),
                "the Failed runner {first} was deleted after {lived:?}, before its TTL of {TTL} s"
            );
            wait_gone(&env.er_api(), &second, MINUTE).await;
            let replaced = wait_runners_of(env, name, 2, MINUTE).await;
            for er in &replaced {
                assert!(
                    !ever.contains(&er.name_any()),
                    "replacements are new runners: {}",
                    er.name_any()
                );
            }
        },
    )
    .await;
}

// ---- runner lifecycle ---------------------------------------------------------------------------

/// T33: the runner container exits 1 without a job. Each time the pod is deleted and the failure
/// recorded under the pod's UID; the pod is recreated (same registration, same JIT config) after
/// the backoff (5 s after the first failure). With more than 5 failures the runner is deleted,
/// deregistered and replaced by a new one. (To skip the 10+20+40+80 s backoffs, the test adds 4
/// failures with old timestamps to the status after two real ones.)
#[tokio::test]
async fn t33_runner_exit_1_restarts_pod_with_backoff() {
    Env::run("t33", async |env| {
        let name = "t33-set";
        let mut ars = ars_without_listener(env, name);
        runner_container(&mut ars).command = Some(vec!["/bin/sh".into(), "-c".into(), "exit 1".into()]);
        let runners = History::start(env.er_api()).await;
        let pods = History::start(env.runner_pod_api()).await;
        let id = create_and_wait_ers(env, &ars).await;
        patch_ers(env, name, Some(1), 1).await;
        let er = wait_runners_of(env, name, 1, MINUTE).await[0].name_any();

        let failed_twice = wait_er(env, &er, "two recorded failures", PODS, |e| failures_of(e).len() >= 2).await;
        let failures = failures_of(&failed_twice);
        let pod_versions = pods.of(&er);
        let uids: BTreeSet<String> = pod_versions.iter().filter_map(|p| p.uid()).collect();
        let mut c = Checks::default();
        c.ok(
            "every recorded failure is one of the runner's pods (by UID)",
            failures.keys().all(|k| uids.contains(k)),
            (&failures, &uids),
        );
        c.ok("at least two pods ran", uids.len() >= 2, &uids);
        c.eq("ER phase after a failure", failed_twice.phase(), "Pending");
        c.ok(
            "ER not ready after a failure",
            failed_twice.status.as_ref().and_then(|s| s.ready) != Some(true),
            failed_twice.status.as_ref().and_then(|s| s.ready),
        );
        // The pod after the first failure was created no sooner than the 5 s backoff.
        let mut times: Vec<(i64, String)> = failures
            .iter()
            .map(|(uid, at)| (at.parse::<Timestamp>().map(|t| t.as_second()).unwrap_or(0), uid.clone()))
            .collect();
        times.sort();
        let (first_failed_at, first_uid) = times[0].clone();
        let second_pod = pod_versions
            .iter()
            .filter(|p| p.uid().is_some_and(|u| u != first_uid))
            .map(created_secs)
            .min()
            .unwrap_or_default();
        c.ok(
            "second pod created ≥ 5 s (backoff; 1 s timestamp resolution) after the first failure",
            second_pod - first_failed_at >= 4,
            (first_failed_at, second_pod),
        );
        c.ok(
            "the runner kept its registration across pod restarts",
            runners
                .of(&er)
                .iter()
                .filter_map(|e| e.status.as_ref()?.runner_id)
                .collect::<BTreeSet<_>>()
                .len()
                <= 1,
            describe_ers(&runners.of(&er)),
        );
        c.eq("one JIT config for the runner", jit_calls(env, id), vec![200]);
        c.done();
        let runner_id = sim_runner_id(env, &er).expect("still registered while it restarts");

        // More than 5 failures: the runner is deleted, deregistered and replaced.
        let fake: serde_json::Map<String, serde_json::Value> = (1..=4)
            .map(|i| (format!("old-pod-{i}"), json!("2000-01-01T00:00:00Z")))
            .collect();
        env.er_api()
            .patch_status(
                &er,
                &PatchParams::default(),
                &Patch::Merge(&json!({"status": {"failures": fake}})),
            )
            .await
            .expect("add old failures");
        wait_gone(&env.er_api(), &er, MINUTE).await;
        // Its JIT Secret (owned by it) goes with it.
        wait_gone(&env.api::<Secret>(), &er, MINUTE).await;
        let replacement = wait_runners_of(env, name, 1, MINUTE).await[0].name_any();
        assert_ne!(replacement, er, "the replacement is a new EphemeralRunner");
        assert!(
            remove_calls(env, runner_id).iter().any(|(s, _)| (200..300).contains(s)),
            "the replaced runner {runner_id} was deregistered: {:?}",
            remove_calls(env, runner_id)
        );
        eventually(
            "the replacement to get its own JIT config",
            MINUTE,
            async || match sim_runner_id(env, &replacement) {
                Some(new) if new != runner_id => Ok(()),
                other => Err(format!("{other:?}")),
            },
        )
        .await;
        assert_eq!(sim_runner_id(env, &er), None, "old registration gone");
    })
    .await;
}

/// T35: the runner exits 7 (deprecated version). The runner becomes `Outdated` (reason
/// `Outdated`, message `Runner is deprecated`) and is deregistered and deleted; the ERS phase is
/// `Outdated`; rarc's policy: the listener is removed, the ERS pinned to `replicas: 0, patchID: 0`,
/// nothing new is created, the ARS is `Outdated` with `Ready=False` reason `RunnerOutdated` (and a
/// Warning event), and the scale set stays registered.
#[tokio::test]
async fn t35_runner_exit_7_marks_outdated_and_keeps_the_scale_set() {
    Env::run("t35", async |env| {
        let name = "t35-set";
        let mut ars = env.ars(name);
        ars.spec.min_runners = Some(1);
        runner_container(&mut ars).command = Some(vec!["/bin/sh".into(), "-c".into(), "exit 7".into()]);
        let runners = History::start(env.er_api()).await;
        env.create_ars(&ars).await;
        let id = env.wait_scale_set_id(name, MINUTE).await;
        let outdated = env.wait_ars_phase(name, "Outdated", PODS).await;

        let mut c = Checks::default();
        let seen = runners.all();
        let first = seen.iter().find(|e| e.phase() == "Outdated");
        c.ok(
            "an EphemeralRunner in phase Outdated",
            first.is_some(),
            describe_ers(&seen),
        );
        if let Some(er) = first {
            c.eq("Outdated reason", reason_of(er), Some("Outdated"));
            c.eq("Outdated message", message_of(er), Some("Runner is deprecated"));
            let runner_id = runners
                .of(&er.name_any())
                .iter()
                .map(EphemeralRunner::runner_id)
                .max()
                .unwrap_or(0);
            c.ok("the outdated runner was registered", runner_id > 0, runner_id);
            c.ok(
                "RemoveRunner for the outdated runner",
                remove_calls(env, runner_id).iter().any(|(s, _)| (200..300).contains(s)),
                remove_calls(env, runner_id),
            );
        }
        let cond = ready_condition(&outdated);
        c.eq(
            "ARS Ready condition (status, reason)",
            cond.as_ref().map(|c| (c.status.clone(), c.reason.clone())),
            Some(("False".into(), "RunnerOutdated".into())),
        );
        c.ok(
            "a session was opened (the listener ran)",
            env.calls(Some("POST"), &format!("/runnerscalesets/{id}/sessions"))
                .iter()
                .any(|c| (200..300).contains(&c.status)),
            "no session",
        );
        c.done();

        let listener = env.listener_name(name);
        wait_gone(&env.al_api(), &listener, MINUTE).await;
        wait_gone(&env.listener_pod_api(), &listener, MINUTE).await;
        eventually("the listener's session to be deleted", MINUTE, async || {
            let s: Vec<_> = env.sessions().into_iter().filter(|s| s.scale_set_id == id).collect();
            if s.is_empty() { Ok(()) } else { Err(format!("{s:?}")) }
        })
        .await;
        wait_runners_of(env, name, 0, MINUTE).await;
        let ers_api = env.ers_api();
        let ers = eventually("the ERS pinned to 0 and Outdated", MINUTE, async || {
            let s = get(&ers_api, name).await?.ok_or("no ERS")?;
            let phase = s.status.as_ref().and_then(|st| st.phase.clone());
            if s.spec.replicas.unwrap_or(0) == 0 && s.spec.patch_id == 0 && phase.as_deref() == Some("Outdated") {
                Ok(s)
            } else {
                Err(format!(
                    "replicas {:?} patchID {} phase {phase:?}",
                    s.spec.replicas, s.spec.patch_id
                ))
            }
        })
        .await;
        tokio::time::sleep(SETTLE).await;
        let mut c = Checks::default();
        c.eq("EphemeralRunners ever created", runners.names().len(), 1);
        c.eq(
            "EphemeralRunners now",
            runners_of(env, name).await.expect("list").len(),
            0,
        );
        c.eq(
            "ERS status phase",
            ers.status.and_then(|s| s.phase),
            Some("Outdated".to_owned()),
        );
        c.ok(
            "the scale set is still registered",
            env.sim_scale_sets().iter().any(|s| s.id == id),
            env.sim_scale_sets().iter().map(|s| s.id).collect::<Vec<_>>(),
        );
        c.eq(
            "DeleteRunnerScaleSet calls",
            env.calls_ending("DELETE", &format!("/runnerscalesets/{id}")).len(),
            0,
        );
        let ars_now = get(&env.ars_api(), name).await.expect("get ARS").expect("ARS");
        c.eq(
            "ARS keeps its scale set id",
            ars_now.annotations().get(annotations::RUNNER_SCALE_SET_ID).cloned(),
            Some(id.to_string()),
        );
        c.eq(
            "ARS phase",
            ars_now.status.as_ref().and_then(|s| s.phase.clone()),
            Some("Outdated".into()),
        );
        c.ok(
            "no listener came back",
            get(&env.al_api(), &listener).await.expect("get AL").is_none(),
            &listener,
        );
        let events = env.events_about(&env.ns, name).await.expect("events");
        c.ok(
            "a Warning event RunnerOutdated on the ARS",
            events
                .iter()
                .any(|e| e.type_.as_deref() == Some("Warning") && e.reason.as_deref() == Some("RunnerOutdated")),
            events.iter().map(|e| (&e.type_, &e.reason)).collect::<Vec<_>>(),
        );
        c.done();
    })
    .await;
}

/// T37: the runner pod is rejected by the API server (two containers named `runner`: Invalid,
/// which the ARS CRD itself accepts). The runner becomes `Failed` with reason `InvalidPod` and the
/// API server's message, is deregistered (RemoveRunner), gets a Warning event, loses its JIT
/// Secret, never has a pod, and (default TTL) stays and is not replaced.
#[tokio::test]
async fn t37_invalid_pod_marks_runner_failed() {
    Env::run("t37", async |env| {
        let name = "t37-set";
        let mut ars = ars_without_listener(env, name);
        let runner = runner_container(&mut ars).clone();
        ars.spec
            .template
            .as_mut()
            .and_then(|t| t.spec.as_mut())
            .expect("template spec")
            .containers
            .push(runner);
        let pods = History::start(env.runner_pod_api()).await;
        let runners = History::start(env.er_api()).await;
        let id = create_and_wait_ers(env, &ars).await;
        patch_ers(env, name, Some(1), 1).await;
        let er = wait_runners_of(env, name, 1, MINUTE).await[0].name_any();
        let failed = wait_er(env, &er, "phase Failed", MINUTE, |e| e.phase() == "Failed").await;

        let mut c = Checks::default();
        c.eq("reason", reason_of(&failed), Some("InvalidPod"));
        c.ok(
            "message: the API server's",
            message_of(&failed).is_some_and(|m| m.contains("Duplicate value")),
            message_of(&failed),
        );
        let runner_id = failed.runner_id();
        c.ok("runnerId recorded", runner_id > 0, runner_id);
        wait_gone(&env.api::<Secret>(), &er, MINUTE).await;
        c.ok(
            "RemoveRunner succeeded",
            remove_calls(env, runner_id).iter().any(|(s, _)| (200..300).contains(s)),
            remove_calls(env, runner_id),
        );
        c.ok(
            "deregistered",
            env.sim_runners().iter().all(|r| r.scale_set_id != id),
            env.sim_runners(),
        );
        let events = env.events_about(&env.ns, &er).await.expect("events");
        c.ok(
            "Warning event InvalidPod on the runner",
            events
                .iter()
                .any(|e| e.type_.as_deref() == Some("Warning") && e.reason.as_deref() == Some("InvalidPod")),
            events.iter().map(|e| (&e.type_, &e.reason)).collect::<Vec<_>>(),
        );
        tokio::time::sleep(SETTLE).await;
        c.ok("no pod was ever created", pods.all().is_empty(), pods.names());
        c.eq("EphemeralRunners ever", runners.names(), BTreeSet::from([er.clone()]));
        let now = get(&env.er_api(), &er).await.expect("get ER");
        c.ok(
            "the Failed runner stays (TTL 600 s)",
            now.as_ref().is_some_and(|e| !deleting(e) && e.phase() == "Failed"),
            now.as_ref().map(|e| (deleting(e), e.phase().to_owned())),
        );
        // The set's counts are written once they have been the same for 3 s (status_pace).
        let ers_api = env.ers_api();
        eventually("ERS status (currentReplicas, failed) = (1, 1)", MINUTE, async || {
            let st = get(&ers_api, name).await?.ok_or("no ERS")?.status.unwrap_or_default();
            match (st.current_replicas, st.failed_ephemeral_runners) {
                (1, Some(1)) => Ok(()),
                other => Err(format!("{other:?}")),
            }
        })
        .await;
        c.done();
    })
    .await;
}

/// T40: deleting an EphemeralRunner whose runner runs a job. RemoveRunner answers
/// JobStillRunning, so the runner stays with a deletionTimestamp and its finalizers and its pod
/// keeps running until the job completes; then the runner, its pod and JIT Secret go, and it is no
/// longer registered.
#[tokio::test]
async fn t40_deleting_a_busy_runner_waits_for_its_job() {
    Env::run("t40", async |env| {
        let name = "t40-set";
        let mut ars = env.ars(name);
        ars.spec.max_runners = Some(1);
        env.create_ars(&ars).await;
        let id = env.wait_scale_set_id(name, MINUTE).await;
        env.wait_listener_running(name, id, PODS).await;

        let ids = env.queue_jobs(1, name, 12_000);
        let busy = env.wait_job_running(&ids, PODS).await;
        let runner_id = sim_runner_id(env, &busy).expect("the busy runner is registered");
        let pods = env.runner_pod_api();
        let pod_uid = get(&pods, &busy).await.expect("get pod").expect("the busy pod").uid();
        env.er_api()
            .delete(&busy, &DeleteParams::default())
            .await
            .expect("delete the busy EphemeralRunner");

        let er_api = env.er_api();
        let mut checked = 0;
        let job = eventually("the job to complete", MINUTE, async || {
            let job = env.jobs_of(&ids).into_iter().next().ok_or("no job")?;
            if job.state == JobState::Completed {
                return Ok(job);
            }
            let er = get(&er_api, &busy).await?;
            let pod = get(&pods, &busy).await?;
            let Some(er) = er else {
                panic!("the busy EphemeralRunner {busy} was gone while its job ran");
            };
            assert!(deleting(&er), "{busy} has no deletionTimestamp");
            assert!(
                er.finalizers()
                    .iter()
                    .any(|f| f == finalizers::EPHEMERAL_RUNNER_REGISTRATION),
                "{busy} lost its registration finalizer while its job ran: {:?}",
                er.finalizers()
            );
            assert!(
                pod.as_ref().is_some_and(|p| p.uid() == pod_uid && !deleting(p)),
                "the busy pod {busy} was deleted or replaced while its job ran"
            );
            checked += 1;
            Err(describe_jobs(std::slice::from_ref(&job)))
        })
        .await;
        assert!(checked > 0, "the job completed before the deletion could be checked");
        assert_eq!(job.result.as_deref(), Some("succeeded"), "{job:?}");
        assert_eq!(job.runs, 1, "{job:?}");
        assert!(
            remove_calls(env, runner_id).iter().any(|(s, _)| *s == 400),
            "RemoveRunner answered JobStillRunning while the job ran: {:?}",
            remove_calls(env, runner_id)
        );

        wait_gone(&er_api, &busy, MINUTE).await;
        wait_gone(&pods, &busy, MINUTE).await;
        wait_gone(&env.api::<Secret>(), &busy, MINUTE).await;
        assert_eq!(sim_runner_id(env, &busy), None, "{busy} still registered");
    })
    .await;
}

/// T41: when the runner container declares `ACTIONS_RUNNER_CONTAINER_HOOKS`, the Pods and Secrets
/// labelled `runner-pod=<runner>` (container-hook leftovers) are deleted when the runner is
/// finalized; without that env they are left alone.
#[tokio::test]
async fn t41_hook_leftovers_are_deleted_with_the_runner() {
    Env::run("t41", async |env| {
        let (hooked, plain) = ("t41-hooks", "t41-plain");
        let mut ars = ars_without_listener(env, hooked);
        runner_container(&mut ars).env = Some(vec![EnvVar {
            name: "ACTIONS_RUNNER_CONTAINER_HOOKS".into(),
            value: Some("/home/runner/k8s/index.js".into()),
            ..EnvVar::default()
        }]);
        let id_hooked = create_and_wait_ers(env, &ars).await;
        let id_plain = create_and_wait_ers(env, &ars_without_listener(env, plain)).await;
        patch_ers(env, hooked, Some(1), 1).await;
        patch_ers(env, plain, Some(1), 1).await;
        let er_hooked = wait_runners_of(env, hooked, 1, MINUTE).await[0].name_any();
        let er_plain = wait_runners_of(env, plain, 1, MINUTE).await[0].name_any();
        wait_online(env, id_hooked, 1, PODS).await;
        wait_online(env, id_plain, 1, PODS).await;
        let (hooked_pod, hooked_secret) = create_hook_leftovers(env, &er_hooked).await;
        let (plain_pod, plain_secret) = create_hook_leftovers(env, &er_plain).await;

        // Scale both to 0: the idle runners are deregistered and deleted, their finalizers run.
        patch_ers(env, hooked, None, 0).await;
        patch_ers(env, plain, None, 0).await;
        wait_gone(&env.er_api(), &er_hooked, MINUTE).await;
        wait_gone(&env.er_api(), &er_plain, MINUTE).await;
        let pods = env.runner_pod_api();
        let secrets = env.api::<Secret>();
        eventually("the hook pod to be deleted", MINUTE, async || {
            match get(&pods, &hooked_pod).await? {
                None => Ok(()),
                Some(p) if deleting(&p) => Ok(()),
                Some(_) => Err("still there".into()),
            }
        })
        .await;
        wait_gone(&secrets, &hooked_secret, MINUTE).await;
        tokio::time::sleep(SETTLE).await;
        let pod = get(&pods, &plain_pod).await.expect("get pod");
        let secret = get(&secrets, &plain_secret).await.expect("get secret");
        assert!(
            pod.as_ref().is_some_and(|p| !deleting(p)),
            "without the hooks env the leftover pod stays"
        );
        assert!(secret.is_some(), "without the hooks env the leftover Secret stays");

        // Our own leftovers must not outlive the test.
        for n in [&plain_pod, &hooked_pod] {
            let _ = pods.delete(n, &DeleteParams::default()).await;
        }
        let _ = secrets.delete(&plain_secret, &DeleteParams::default()).await;
        wait_gone(&pods, &plain_pod, MINUTE).await;
        wait_gone(&pods, &hooked_pod, MINUTE).await;
        wait_gone(&secrets, &plain_secret, MINUTE).await;
    })
    .await;
}

/// T73: a runner that was never registered (GenerateJitRunnerConfig keeps failing, so no JIT
/// Secret and `runnerId` 0) is finalized without any RemoveRunner call (no `DELETE …/agents/0`),
/// whether it is deleted directly or scaled down by the set.
#[tokio::test]
async fn t73_unregistered_runner_is_finalized_without_agents_0() {
    Env::run("t73", async |env| {
        let name = "t73-set";
        let id = create_and_wait_ers(env, &ars_without_listener(env, name)).await;
        rarc_sim::testing::fault(
            &env.sim,
            r#"{"path":"/generatejitconfig","method":"POST","kind":"status","status":500}"#,
        );
        patch_ers(env, name, Some(1), 1).await;
        let er = wait_runners_of(env, name, 1, MINUTE).await[0].name_any();
        eventually("GenerateJitRunnerConfig to fail", MINUTE, async || {
            if jit_calls(env, id).contains(&500) {
                Ok(())
            } else {
                Err(format!("{:?}", jit_calls(env, id)))
            }
        })
        .await;
        let now = get(&env.er_api(), &er).await.expect("get ER").expect("ER");
        assert_eq!(now.runner_id(), 0, "{}", describe_ers(std::slice::from_ref(&now)));
        assert!(
            get(&env.api::<Secret>(), &er).await.expect("get").is_none(),
            "no JIT Secret"
        );

        // Deleted directly.
        env.er_api()
            .delete(&er, &DeleteParams::default())
            .await
            .expect("delete the runner");
        wait_gone(&env.er_api(), &er, MINUTE).await;
        assert!(
            all_remove_calls(env).is_empty(),
            "RemoveRunner called for an unregistered runner: {:?}",
            all_remove_calls(env)
        );

        // The set replaces it (no runner carries patch 1 any more); scaled down by patchID 0.
        let replacement = wait_runners_of(env, name, 1, MINUTE).await[0].name_any();
        assert_ne!(replacement, er);
        patch_ers(env, name, None, 0).await;
        wait_runners_of(env, name, 0, MINUTE).await;
        assert!(
            all_remove_calls(env).is_empty(),
            "RemoveRunner called for an unregistered runner: {:?}",
            all_remove_calls(env)
        );
        assert!(env.sim_runners().is_empty(), "{:?}", env.sim_runners());
        env.sim.sim.clear_faults();
    })
    .await;
}

/// rarc: a runner pod that never starts (an image that is not there, `imagePullPolicy: Never`)
/// is restarted like a failed pod once it has been Pending for `pending_pod_timeout_secs` (5 s
/// here): failure recorded with reason `PendingTimeout`, pod deleted and recreated after the
/// backoff, registration kept.
#[tokio::test]
async fn rarc_pending_pod_timeout_replaces_a_pod_that_never_starts() {
    Env::run_with(
        "pending",
        |s| s.pending_pod_timeout_secs = 5,
        async |env| {
            let name = "pending-set";
            let mut ars = ars_without_listener(env, name);
            let runner = runner_container(&mut ars);
            runner.image = Some(ABSENT_IMAGE.into());
            runner.image_pull_policy = Some("Never".into());
            let pods = History::start(env.runner_pod_api()).await;
            let runners = History::start(env.er_api()).await;
            let id = create_and_wait_ers(env, &ars).await;
            patch_ers(env, name, Some(1), 1).await;
            let er = wait_runners_of(env, name, 1, MINUTE).await[0].name_any();
            let twice = wait_er(env, &er, "two recorded failures", PODS, |e| failures_of(e).len() >= 2).await;

            let mut c = Checks::default();
            let timed_out = runners
                .of(&er)
                .into_iter()
                .find(|e| reason_of(e) == Some("PendingTimeout"));
            c.ok(
                "status reason PendingTimeout",
                timed_out.is_some(),
                describe_ers(&runners.of(&er)),
            );
            c.ok(
                "status message says Pending",
                timed_out
                    .as_ref()
                    .and_then(message_of)
                    .is_some_and(|m| m.contains("Pending")),
                timed_out.as_ref().and_then(message_of),
            );
            let versions = pods.of(&er);
            let uids: BTreeSet<String> = versions.iter().filter_map(|p| p.uid()).collect();
            c.ok("at least two pods", uids.len() >= 2, &uids);
            c.ok(
                "the failures are those pods",
                failures_of(&twice).keys().all(|k| uids.contains(k)),
                (failures_of(&twice), &uids),
            );
            c.ok(
                "no pod ever ran",
                versions.iter().all(|p| pod_phase(p) != "Running"),
                describe_pods(&versions),
            );
            // The first pod was given its 5 s.
            let first_uid = versions.first().and_then(|p| p.uid()).unwrap_or_default();
            let first = versions
                .iter()
                .filter(|p| p.uid().as_deref() == Some(first_uid.as_str()));
            let created = versions.first().map(created_secs).unwrap_or_default();
            let deleted = first
                .filter_map(|p| p.metadata.deletion_timestamp.as_ref().map(|t| t.0.as_second()))
                .min();
            c.ok(
                "the first pod was deleted ≥ 5 s after its creation",
                deleted.is_some_and(|d| d - created >= 4),
                (created, deleted),
            );
            c.eq("one JIT config (registration kept)", jit_calls(env, id), vec![200]);
            c.ok("still registered", sim_runner_id(env, &er).is_some(), env.sim_runners());
            c.done();
        },
    )
    .await;
}

/// T42: ARS `proxy.http` with a `credentialSecretRef` and `noProxy` → the runner proxy Secret
/// `<ers>-<hash8(ns)>-runner-proxy` (owned by the ERS) with `http_proxy` carrying the user-info and
/// `no_proxy`, no `https_proxy`; each runner's `spec.proxySecretRef` names it; the runner container
/// gets `http_proxy` and `no_proxy` from it (no `https_proxy`), and the runner, with `no_proxy`
/// 127.0.0.1, still reaches the simulator. The Secret goes with the ERS.
#[tokio::test]
async fn t42_proxy_secret_and_env() {
    Env::run("t42", async |env| {
        let name = "t42-set";
        let creds = "proxy-creds";
        let secret: Secret = serde_json::from_value(json!({
            "metadata": {"name": creds},
            "stringData": {"username": "proxyuser", "password": "s3cret"},
        }))
        .expect("a secret");
        let secrets = env.api::<Secret>();
        secrets
            .create(&PostParams::default(), &secret)
            .await
            .expect("create the proxy credentials");
        let mut ars = ars_without_listener(env, name);
        ars.spec.proxy = Some(
            serde_json::from_value(json!({
                "http": {"url": "http://proxy.rarc.invalid:3128", "credentialSecretRef": creds},
                "noProxy": ["127.0.0.1"],
            }))
            .expect("a proxy config"),
        );
        let id = create_and_wait_ers(env, &ars).await;
        patch_ers(env, name, Some(1), 1).await;
        let er = wait_runners_of(env, name, 1, MINUTE).await.remove(0);
        let proxy_secret = rarc_crd::names::runner_proxy_secret_name(name, &env.ns);

        let mut c = Checks::default();
        c.ok(
            "proxy Secret name <ers>-<hash8>-runner-proxy",
            proxy_secret.starts_with(&format!("{name}-")) && proxy_secret.ends_with("-runner-proxy"),
            &proxy_secret,
        );
        let ps = get(&secrets, &proxy_secret)
            .await
            .expect("get")
            .expect("the runner proxy Secret");
        let data: BTreeMap<String, String> = ps
            .data
            .clone()
            .unwrap_or_default()
            .into_iter()
            .map(|(k, v)| (k, String::from_utf8_lossy(&v.0).into_owned()))
            .collect();
        c.ok(
            "http_proxy with user-info",
            data.get("http_proxy")
                .is_some_and(|v| v.starts_with("http://proxyuser:s3cret@proxy.rarc.invalid:3128")),
            data.get("http_proxy"),
        );
        c.eq("no_proxy", data.get("no_proxy").map(String::as_str), Some("127.0.0.1"));
        c.ok(
            "no https_proxy key",
            !data.contains_key("https_proxy"),
            data.keys().collect::<Vec<_>>(),
        );
        c.ok(
            "proxy Secret owned by the ERS",
            ps.owner_references()
                .iter()
                .any(|o| o.kind == "EphemeralRunnerSet" && o.name == name),
            ps.owner_references(),
        );
        c.eq(
            "ER spec.proxySecretRef",
            er.spec.proxy_secret_ref.as_deref(),
            Some(proxy_secret.as_str()),
        );
        let pod = eventually("the runner pod", PODS, async || {
            get(&env.runner_pod_api(), &er.name_any())
                .await?
                .ok_or_else(|| "no pod".to_owned())
        })
        .await;
        c.eq(
            "runner env http_proxy",
            secret_ref(runner_env(&pod, "http_proxy")),
            Some((proxy_secret.clone(), "http_proxy".into())),
        );
        c.eq(
            "runner env no_proxy",
            secret_ref(runner_env(&pod, "no_proxy")),
            Some((proxy_secret.clone(), "no_proxy".into())),
        );
        c.ok(
            "no https_proxy env",
            runner_env(&pod, "https_proxy").is_none(),
            runner_env(&pod, "https_proxy"),
        );
        c.done();
        wait_online(env, id, 1, PODS).await;

        // The Secret goes with the ERS; then our credentials Secret (the controller needs it to
        // build the proxy URL until the ERS is gone).
        env.delete_ars(name).await;
        env.wait_ars_gone(name, PODS).await;
        wait_gone(&secrets, &proxy_secret, MINUTE).await;
        secrets
            .delete(creds, &DeleteParams::default())
            .await
            .expect("delete the proxy credentials");
        wait_gone(&secrets, creds, MINUTE).await;
    })
    .await;
}

/// T38: GenerateJitRunnerConfig answers 409 `AgentExistsException`:
/// - no runner of that name found (an injected 409) → retried, then registered;
/// - a stale runner of the same name in this scale set → RemoveRunner(stale), then registered
///   under a new id;
/// - the name taken in another scale set → the EphemeralRunner is deleted, the other runner kept.
///
/// The runners are EphemeralRunners created by the test with fixed names (no ERS owns them), built
/// from the ERS's runner spec.
#[tokio::test]
async fn t38_jit_name_conflict_is_resolved() {
    Env::run("t38", async |env| {
        let name = "t38-set";
        let id = create_and_wait_ers(env, &ars_without_listener(env, name)).await;
        let spec = get(&env.ers_api(), name)
            .await
            .expect("get ERS")
            .expect("ERS")
            .spec
            .ephemeral_runner_spec;
        let er_api = env.er_api();
        let create = async |runner: &str| {
            let mut er = EphemeralRunner::new(runner, spec.clone());
            er.metadata.namespace = Some(env.ns.clone());
            er_api
                .create(&PostParams::default(), &er)
                .await
                .unwrap_or_else(|e| panic!("create EphemeralRunner {runner}: {e}"));
        };
        let registered = async |runner: &str| {
            eventually(&format!("{runner} registered with a JIT Secret"), MINUTE, async || {
                let s = get(&env.api::<Secret>(), runner).await?.ok_or("no JIT Secret")?;
                let id = s
                    .data
                    .as_ref()
                    .and_then(|d| d.get("runnerId"))
                    .map(|v| String::from_utf8_lossy(&v.0).into_owned())
                    .ok_or("no runnerId")?;
                id.parse::<i64>().map_err(|e| e.to_string())
            })
            .await
        };

        // 409 but nobody has the name: retried.
        rarc_sim::testing::fault(
            &env.sim,
            r#"{"path":"/generatejitconfig","method":"POST","kind":"status","status":409,
                "exception":"GitHub.DistributedTask.WebApi.AgentExistsException","times":1}"#,
        );
        create("t38-retry").await;
        let retry_id = registered("t38-retry").await;
        let lookups = env.calls(Some("GET"), "/agents");
        assert!(
            lookups
                .iter()
                .any(|c| c.query_param("agentName").as_deref() == Some("t38-retry")),
            "GetRunnerByName after the conflict: {lookups:?}"
        );
        assert_eq!(jit_calls(env, id), vec![409, 200]);
        assert_eq!(sim_runner_id(env, "t38-retry"), Some(retry_id));

        // A stale registration of the same name in this scale set.
        let stale = env
            .sim
            .sim
            .with_state(|s| s.generate_jit_config(id, "t38-same", ""))
            .expect("register a stale runner")
            .runner
            .id;
        // The name taken in another scale set.
        let other_set = env
            .sim
            .sim
            .with_state(|s| s.create_scale_set(rarc_sim::testing::scale_set_body("t38-other-set")))
            .expect("another scale set")
            .id;
        let other = env
            .sim
            .sim
            .with_state(|s| s.generate_jit_config(other_set, "t38-other", ""))
            .expect("register a runner in the other scale set")
            .runner
            .id;
        create("t38-same").await;
        create("t38-other").await;

        let same_id = registered("t38-same").await;
        assert_ne!(same_id, stale, "registered under a new id");
        assert!(
            remove_calls(env, stale).iter().any(|(s, _)| (200..300).contains(s)),
            "the stale runner {stale} was removed: {:?}",
            remove_calls(env, stale)
        );
        assert_eq!(sim_runner_id(env, "t38-same"), Some(same_id));

        wait_gone(&er_api, "t38-other", MINUTE).await;
        assert_eq!(
            sim_runner_id(env, "t38-other"),
            Some(other),
            "the other scale set's runner is kept"
        );
        assert!(remove_calls(env, other).is_empty(), "{:?}", remove_calls(env, other));
        assert!(
            get(&env.runner_pod_api(), "t38-other").await.expect("get").is_none(),
            "no pod for the deleted runner"
        );

        // Clean up: our runners (deregistered by their finalizers), the other scale set.
        for r in ["t38-retry", "t38-same"] {
            er_api.delete(r, &DeleteParams::default()).await.expect("delete");
        }
        for r in ["t38-retry", "t38-same"] {
            wait_gone(&er_api, r, MINUTE).await;
        }
        assert_eq!(sim_runner_id(env, "t38-same"), None);
        assert_eq!(sim_runner_id(env, "t38-retry"), None);
        env.sim.sim.with_state(|s| {
            s.remove_runner(other).expect("remove the other runner");
            s.delete_scale_set(other_set).expect("delete the other scale set");
        });
    })
    .await;
}
