//! rarc-controller end to end, against the REAL local cluster (`tests/cluster/up`) and an
//! in-process rarc-sim: the controller runs in-process, the listener and the runners run as pods of
//! the `rarc.local/rarc` image (`tests/cluster/rarc-image`). Named after the scenarios of
//! arc-controller.md §12. Fails (never skips) when the cluster is not up or the listener and
//! rarc-sim binaries are not built:
//!
//! ```sh
//! cargo build -p rarc-listener -p rarc-sim
//! RARC_KUBECONFIG=$(tests/cluster/up | tail -1) cargo test -p rarc-controller --test cluster
//! ```
//!
//! Each test has its own namespaces, simulator, scale set and controller (see `support`), so they
//! run in parallel; teardown fails a test that leaves anything behind.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use k8s_openapi::api::core::v1::{Pod, Secret, ServiceAccount};
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use kube::ResourceExt;
use rarc_actions::types::Label;
use rarc_crd::keys::{annotations, finalizers, labels};
use rarc_crd::{AutoscalingRunnerSet, EphemeralRunner};
use rarc_sim::state::{JobState, JobView};
use serde_json::json;
use support::*;

const MINUTE: Duration = Duration::from_secs(60);
const SCALE_UP: Duration = Duration::from_secs(90);
const JOBS_DONE: Duration = Duration::from_secs(120);

/// Creates `ars` and waits until it is registered (scale set id), its listener pod runs with a
/// session in the simulator, and its phase is `Running`. Returns the ARS and its scale set id.
async fn create_and_wait_running(env: &Env, ars: AutoscalingRunnerSet) -> (AutoscalingRunnerSet, i64) {
    let name = ars.name_any();
    env.create_ars(&ars).await;
    let id = env.wait_scale_set_id(&name, MINUTE).await;
    env.wait_listener_running(&name, id, SCALE_UP).await;
    let ars = env.wait_ars_phase(&name, "Running", MINUTE).await;
    (ars, id)
}

/// What a test saw of the runners while it waited: peaks and every object once.
#[derive(Default)]
struct Seen {
    /// Most EphemeralRunners not being deleted at once.
    peak_ers: usize,
    /// Most runner pods not being deleted at once.
    peak_pods: usize,
    /// Most runners registered in the simulator at once.
    peak_sim_runners: usize,
    /// Every EphemeralRunner seen (last version seen with a runner id, else the last one).
    ers: BTreeMap<String, EphemeralRunner>,
    /// Every runner pod seen (the first version seen).
    pods: BTreeMap<String, Pod>,
    /// Runner name → the ids it was registered under in the simulator.
    sim_ids: BTreeMap<String, BTreeSet<i64>>,
    /// Runner id → the EphemeralRunners whose status carried it.
    er_ids: BTreeMap<i64, BTreeSet<String>>,
}

impl Seen {
    async fn sample(&mut self, env: &Env, scale_set_id: i64) -> Result<(), String> {
        let ers = env.ephemeral_runners().await?;
        self.peak_ers = self.peak_ers.max(ers.iter().filter(|e| !deleting(*e)).count());
        for er in ers {
            let id = er.runner_id();
            if id > 0 {
                self.er_ids.entry(id).or_default().insert(er.name_any());
            }
            let keep = id > 0 || !self.ers.contains_key(&er.name_any());
            if keep {
                self.ers.insert(er.name_any(), er);
            }
        }
        let pods = env.runner_pods().await?;
        self.peak_pods = self.peak_pods.max(pods.iter().filter(|p| !deleting(*p)).count());
        for pod in pods {
            self.pods.entry(pod.name_any()).or_insert(pod);
        }
        let runners: Vec<_> = env
            .sim_runners()
            .into_iter()
            .filter(|r| r.scale_set_id == scale_set_id)
            .collect();
        self.peak_sim_runners = self.peak_sim_runners.max(runners.len());
        for r in runners {
            self.sim_ids.entry(r.name).or_default().insert(r.id);
        }
        Ok(())
    }
}

/// The jobs of `ids` once all are completed, sampling into `seen` meanwhile.
async fn wait_jobs(env: &Env, ids: &[i64], scale_set_id: i64, seen: &mut Seen) -> Vec<JobView> {
    eventually(&format!("jobs {ids:?} to complete"), JOBS_DONE, async || {
        seen.sample(env, scale_set_id).await?;
        let jobs = env.jobs_of(ids);
        if jobs.len() == ids.len() && jobs.iter().all(|j| j.state == JobState::Completed) {
            Ok(jobs)
        } else {
            Err(describe_jobs(&jobs))
        }
    })
    .await
}

/// Every job succeeded, ran exactly once, each on its own runner, and that runner was one of our
/// EphemeralRunners (the JIT runner name is the ER's name) whose pod we saw.
fn assert_jobs_ran_once_on_our_runners(jobs: &[JobView], seen: &Seen) {
    let mut runners = BTreeSet::new();
    for j in jobs {
        assert_eq!(
            j.result.as_deref(),
            Some("succeeded"),
            "job {}: {j:?}",
            j.runner_request_id
        );
        assert_eq!(
            j.runs, 1,
            "job {} was handed to a runner {} times",
            j.runner_request_id, j.runs
        );
        let runner = j.runner_name.clone().unwrap_or_default();
        assert!(
            seen.ers.contains_key(&runner),
            "job {} ran on {runner:?}, not one of the EphemeralRunners seen: {:?}",
            j.runner_request_id,
            seen.ers.keys()
        );
        assert!(
            seen.pods.contains_key(&runner),
            "job {} ran on {runner:?}, but no pod of that name was seen: {:?}",
            j.runner_request_id,
            seen.pods.keys()
        );
        assert!(
            runners.insert(runner.clone()),
            "runner {runner} ran two jobs (ephemeral runners take one)"
        );
    }
}

/// No runner id was ever carried by two EphemeralRunners, and no EphemeralRunner name was
/// registered twice in the simulator.
fn assert_no_duplicate_registrations(seen: &Seen) {
    for (id, ers) in &seen.er_ids {
        assert_eq!(
            ers.len(),
            1,
            "runner id {id} is in the status of several EphemeralRunners: {ers:?}"
        );
    }
    for (name, ids) in &seen.sim_ids {
        assert_eq!(
            ids.len(),
            1,
            "runner {name} was registered in the simulator under several ids: {ids:?}"
        );
    }
}

/// Waits until no runner is left: no EphemeralRunner, no pod, no JIT Secret, nothing registered
/// in the simulator, and the ERS and ARS statuses say 0 current runners.
async fn wait_scaled_to_zero(env: &Env, ars: &str, scale_set_id: i64) {
    env.wait_ephemeral_runners(0, MINUTE).await;
    env.wait_runner_pods(0, MINUTE).await;
    env.wait_no_sim_runners(scale_set_id, MINUTE).await;
    eventually("the JIT Secrets to be gone", MINUTE, async || {
        let left = env.jit_secrets().await?;
        if left.is_empty() {
            Ok(())
        } else {
            Err(format!("{left:?}"))
        }
    })
    .await;
    let ars_api = env.ars_api();
    eventually("ERS and ARS status to show 0 runners", MINUTE, async || {
        let a = get(&ars_api, ars).await?.ok_or("no ARS")?;
        let owned = env.owned_ers(&a).await?;
        let ers_current: Vec<i32> = owned
            .iter()
            .map(|s| s.status.as_ref().map(|st| st.current_replicas).unwrap_or(-1))
            .collect();
        let st = a.status.clone().unwrap_or_default();
        if ers_current == [0] && st.current_runners == 0 && st.phase.as_deref() == Some("Running") {
            Ok(())
        } else {
            Err(format!("ERS currentReplicas {ers_current:?}, ARS status {st:?}"))
        }
    })
    .await;
}

/// Deletes ARS `ars` and checks that everything of it is gone from the cluster and the simulator:
/// the listener and its objects, the ERS, and the scale set (deleted exactly once).
async fn delete_and_check_gone(env: &Env, ars: &str, scale_set_id: i64) {
    let listener = env.listener_name(ars);
    env.delete_ars(ars).await;
    env.wait_ars_gone(ars, SCALE_UP).await;
    eventually("the listener, its objects and the ERS to be gone", MINUTE, async || {
        let mut left = Vec::new();
        if get(&env.al_api(), &listener).await?.is_some() {
            left.push("AutoscalingListener");
        }
        if get(&env.listener_pod_api(), &listener).await?.is_some() {
            left.push("listener pod");
        }
        if get(&env.capi::<ServiceAccount>(), &listener).await?.is_some() {
            left.push("ServiceAccount");
        }
        if get(&env.capi::<Secret>(), &format!("{listener}-config"))
            .await?
            .is_some()
        {
            left.push("config Secret");
        }
        if get(&env.api::<Role>(), &listener).await?.is_some() {
            left.push("Role");
        }
        if get(&env.api::<RoleBinding>(), &listener).await?.is_some() {
            left.push("RoleBinding");
        }
        if !list(&env.ers_api()).await?.is_empty() {
            left.push("EphemeralRunnerSet");
        }
        if left.is_empty() {
            Ok(())
        } else {
            Err(format!("still there: {left:?}"))
        }
    })
    .await;
    assert!(
        env.sim_scale_sets().iter().all(|s| s.id != scale_set_id),
        "scale set {scale_set_id} is still registered in the simulator: {:?}",
        env.sim_scale_sets()
    );
    let deletes: Vec<(u16, u64)> = env
        .calls_ending("DELETE", &format!("/runnerscalesets/{scale_set_id}"))
        .iter()
        .map(|c| (c.status, c.at_ms))
        .collect();
    assert!(
        deletes.len() == 1 && (200..300).contains(&deletes[0].0),
        "DeleteRunnerScaleSet({scale_set_id}) should be called once and succeed; (status, ms) {deletes:?}"
    );
    let sessions: Vec<_> = env
        .sessions()
        .into_iter()
        .filter(|s| s.scale_set_id == scale_set_id)
        .collect();
    assert!(sessions.is_empty(), "message sessions left: {sessions:?}");
}

/// T01 + T10 + T11 + T26: registration, the ARS's annotations/labels/finalizer, the ERS, the
/// AutoscalingListener and its objects, and a listener pod that reaches the simulator.
#[tokio::test]
async fn t01_create_registers_scale_set_and_reaches_running() {
    Env::run("t01", async |env| {
        let name = "t01-set";
        let (ars, id) = create_and_wait_running(env, env.ars(name)).await;
        let mut c = Checks::default();

        // T01: GetRunnerScaleSet(groupId 1, name) then one CreateRunnerScaleSet.
        let sets = env.sim_scale_sets();
        assert_eq!(sets.len(), 1, "one scale set in the simulator: {sets:?}");
        let set = &sets[0];
        c.eq(
            "scale set (id, name, group)",
            (set.id, set.name.as_str(), set.runner_group_id),
            (id, name, 1),
        );
        c.eq("scale set labels", set.labels.clone(), vec![Label::system(name)]);
        c.eq(
            "RunnerSetting.disableUpdate",
            set.runner_setting.disable_update,
            Some(true),
        );
        let creates: Vec<_> = env
            .calls(Some("POST"), "/_apis/runtime/runnerscalesets")
            .into_iter()
            .filter(|c| c.path.trim_end_matches('/').ends_with("/runnerscalesets"))
            .collect();
        c.eq("CreateRunnerScaleSet calls", creates.len(), 1);
        let lookup = env
            .calls(Some("GET"), "/_apis/runtime/runnerscalesets")
            .into_iter()
            .find(|c| c.query_param("name").as_deref() == Some(name));
        c.ok(
            "GetRunnerScaleSet(runnerGroupId 1, name) before CreateRunnerScaleSet",
            lookup.as_ref().is_some_and(|l| {
                l.query_param("runnerGroupId").as_deref() == Some("1") && creates.first().is_some_and(|c| l.seq < c.seq)
            }),
            (&lookup, creates.first().map(|c| c.seq)),
        );

        let a = ars.annotations();
        c.eq(
            "ARS runner-scale-set-id",
            a.get(annotations::RUNNER_SCALE_SET_ID),
            Some(&id.to_string()),
        );
        c.eq(
            "ARS runner-scale-set-name",
            a.get(annotations::RUNNER_SCALE_SET_NAME).map(String::as_str),
            Some(name),
        );
        c.eq(
            "ARS runner-group-name",
            a.get(annotations::RUNNER_GROUP_NAME),
            Some(&set.runner_group_name),
        );
        c.eq(
            "ARS organization label",
            ars.labels().get(labels::ORGANIZATION).map(String::as_str),
            Some(ORG),
        );
        c.ok(
            "ARS finalizer",
            ars.finalizers().iter().any(|f| f == finalizers::AUTOSCALING_RUNNER_SET),
            ars.finalizers(),
        );
        c.eq(
            "ARS status.currentRunners",
            ars.status.clone().unwrap_or_default().current_runners,
            0,
        );

        // T10: one ERS, named like the ARS (updated in place), owned by it.
        let owned = env.owned_ers(&ars).await.expect("list ERS");
        assert_eq!(
            names(&owned),
            [name],
            "the ARS owns exactly one EphemeralRunnerSet, named like it"
        );
        let ers = &owned[0];
        let owner = &ers.owner_references()[0];
        c.eq(
            "ERS ownerReference (kind, controller, blockOwnerDeletion)",
            (owner.kind.as_str(), owner.controller, owner.block_owner_deletion),
            ("AutoscalingRunnerSet", Some(true), Some(true)),
        );
        let l = ers.labels();
        for (key, want) in [
            (labels::COMPONENT, labels::COMPONENT_RUNNER_SET),
            (labels::PART_OF, labels::PART_OF_SCALE_SET),
            (labels::SCALE_SET_NAME, name),
            (labels::SCALE_SET_NAMESPACE, env.ns.as_str()),
            (labels::VERSION, VERSION),
        ] {
            c.eq(&format!("ERS label {key}"), l.get(key).map(String::as_str), Some(want));
        }
        c.ok(
            "ERS finalizer",
            ers.finalizers().iter().any(|f| f == finalizers::EPHEMERAL_RUNNER_SET),
            ers.finalizers(),
        );
        c.eq("ERS replicas (no job, minRunners 0)", ers.spec.replicas.unwrap_or(0), 0);
        let spec = &ers.spec.ephemeral_runner_spec;
        c.eq("ERS runnerScaleSetId", spec.runner_scale_set_id, id);
        c.eq("ERS githubConfigUrl", spec.github_config_url.clone(), env.config_url());
        c.eq("ERS githubConfigSecret", spec.github_config_secret.as_str(), SECRET);

        // T11: the AutoscalingListener in the controller namespace, and its objects.
        let listener = env.listener_name(name);
        let al = get(&env.al_api(), &listener)
            .await
            .expect("get AL")
            .unwrap_or_else(|| panic!("no AutoscalingListener {}/{listener}", env.cns));
        let s = &al.spec;
        c.eq("AL runnerScaleSetId", s.runner_scale_set_id, id);
        c.eq(
            "AL autoscalingRunnerSetNamespace",
            s.autoscaling_runner_set_namespace.as_deref(),
            Some(env.ns.as_str()),
        );
        c.eq(
            "AL autoscalingRunnerSetName",
            s.autoscaling_runner_set_name.as_deref(),
            Some(name),
        );
        c.eq(
            "AL ephemeralRunnerSetName",
            s.ephemeral_runner_set_name.as_deref(),
            Some(name),
        );
        c.eq(
            "AL (minRunners, maxRunners) when unset",
            (s.min_runners, s.max_runners),
            (0, i32::MAX),
        );
        c.eq("AL image", s.image.as_deref(), Some(env.image.as_str()));
        c.eq(
            "AL githubConfigUrl",
            s.github_config_url.clone(),
            Some(env.config_url()),
        );
        c.ok(
            "AL finalizer",
            al.finalizers().iter().any(|f| f == finalizers::AUTOSCALING_LISTENER),
            al.finalizers(),
        );
        c.eq(
            "AL component label",
            al.labels().get(labels::COMPONENT).map(String::as_str),
            Some(labels::COMPONENT_LISTENER),
        );

        let pod = get(&env.listener_pod_api(), &listener)
            .await
            .expect("get pod")
            .expect("listener pod");
        let pod_spec = pod.spec.clone().expect("pod spec");
        let container = pod_spec
            .containers
            .iter()
            .find(|c| c.name == "listener")
            .expect("container listener");
        c.eq(
            "listener command",
            container.command.clone(),
            Some(vec![LISTENER_ENTRYPOINT.to_owned()]),
        );
        let env_vars = container.env.clone().unwrap_or_default();
        c.ok(
            "listener env LISTENER_CONFIG_PATH",
            env_vars.iter().any(|e| {
                e.name == "LISTENER_CONFIG_PATH" && e.value.as_deref() == Some("/etc/gha-listener/config.json")
            }),
            &env_vars,
        );
        c.eq(
            "listener serviceAccountName",
            pod_spec.service_account_name.as_deref(),
            Some(listener.as_str()),
        );
        c.eq(
            "listener restartPolicy",
            pod_spec.restart_policy.as_deref(),
            Some("Never"),
        );
        c.ok(
            "listener pod owned by the AL",
            pod.owner_references()
                .iter()
                .any(|o| o.kind == "AutoscalingListener" && o.name == listener),
            pod.owner_references(),
        );

        let sa = get(&env.capi::<ServiceAccount>(), &listener).await.expect("get SA");
        c.ok("listener ServiceAccount", sa.is_some(), &listener);
        match get(&env.api::<Role>(), &listener).await.expect("get Role") {
            None => c.ok("listener Role", false, &listener),
            Some(role) => {
                let rules = role.rules.clone().unwrap_or_default();
                c.ok(
                    "Role: patch ephemeralrunnersets/<ers> only",
                    rules.iter().any(|r| {
                        r.resources
                            .as_ref()
                            .is_some_and(|x| x.iter().any(|x| x == "ephemeralrunnersets"))
                            && r.resource_names.as_ref().is_some_and(|n| n == &[name.to_owned()])
                            && r.verbs.iter().any(|v| v == "patch")
                    }),
                    &rules,
                );
                c.eq(
                    "Role label auto-scaling-listener-name",
                    role.labels().get(labels::LISTENER_NAME),
                    Some(&listener),
                );
                c.eq(
                    "Role label auto-scaling-listener-namespace",
                    role.labels().get(labels::LISTENER_NAMESPACE),
                    Some(&env.cns),
                );
            }
        }
        match get(&env.api::<RoleBinding>(), &listener)
            .await
            .expect("get RoleBinding")
        {
            None => c.ok("listener RoleBinding", false, &listener),
            Some(binding) => {
                let subjects = binding.subjects.clone().unwrap_or_default();
                c.ok(
                    "RoleBinding subject: the listener ServiceAccount",
                    subjects.iter().any(|s| {
                        s.kind == "ServiceAccount"
                            && s.name == listener
                            && s.namespace.as_deref() == Some(env.cns.as_str())
                    }),
                    &subjects,
                );
            }
        }
        let secret = get(&env.capi::<Secret>(), &format!("{listener}-config"))
            .await
            .expect("get config Secret")
            .expect("listener config Secret");
        let raw = secret
            .data
            .and_then(|d| d.get("config.json").cloned())
            .expect("config.json");
        let config: serde_json::Value = serde_json::from_slice(&raw.0).expect("config.json is JSON");
        for (key, want) in [
            ("configure_url", json!(env.config_url())),
            ("runner_scale_set_id", json!(id)),
            ("ephemeral_runner_set_namespace", json!(env.ns)),
            ("ephemeral_runner_set_name", json!(name)),
            ("github_token", json!(rarc_sim::auth::DEFAULT_PAT)),
            ("min_runners", json!(0)),
            ("max_runners", json!(i32::MAX)),
        ] {
            c.eq(&format!("config.json {key}"), config[key].clone(), want);
        }
        c.ok(
            "no runner pod without a job (minRunners 0)",
            env.runner_pods().await.expect("list pods").is_empty(),
            "pods",
        );
        c.done();
    })
    .await;
}

/// The main scenario: jobs queued in the simulator run on runner pods the controller creates, the
/// runners are deregistered and their pods, Secrets and EphemeralRunners removed; deleting the
/// ARS removes everything and the scale set.
#[tokio::test]
async fn e2e_jobs_run_on_runner_pods_and_runners_are_deregistered() {
    Env::run("e2e", async |env| {
        let name = "e2e-set";
        let mut ars = env.ars(name);
        ars.spec.max_runners = Some(5);
        let (_, id) = create_and_wait_running(env, ars).await;

        let ids = env.queue_jobs(3, name, 1500);
        let mut seen = Seen::default();
        let jobs = wait_jobs(env, &ids, id, &mut seen).await;
        assert_jobs_ran_once_on_our_runners(&jobs, &seen);
        assert_no_duplicate_registrations(&seen);
        assert!(
            seen.peak_ers <= 5,
            "at most maxRunners EphemeralRunners: peak {}",
            seen.peak_ers
        );
        for j in &jobs {
            let log = env.job_log(j.runner_request_id);
            assert!(
                log.contains("hello"),
                "job {}'s step ran: log {log:?}",
                j.runner_request_id
            );
        }

        // T30: the runner pods and their EphemeralRunners as the controller made them.
        for j in &jobs {
            let runner = j.runner_name.clone().unwrap_or_default();
            let er = &seen.ers[&runner];
            for f in [finalizers::EPHEMERAL_RUNNER, finalizers::EPHEMERAL_RUNNER_REGISTRATION] {
                assert!(
                    er.finalizers().iter().any(|x| x == f),
                    "ER {runner} finalizers {:?}",
                    er.finalizers()
                );
            }
            assert_eq!(
                er.labels().get(labels::COMPONENT).map(String::as_str),
                Some(labels::COMPONENT_RUNNER)
            );
            assert!(
                er.annotations().contains_key(annotations::PATCH_ID),
                "ER {runner}: {:?}",
                er.annotations()
            );
            assert!(
                er.owner_references()
                    .iter()
                    .any(|o| o.kind == "EphemeralRunnerSet" && o.controller == Some(true)),
                "{:?}",
                er.owner_references()
            );
            assert_eq!(
                Some(er.runner_id()),
                j.runner_id,
                "ER {runner}'s runnerId is the id its runner had in the simulator"
            );
            let pod = &seen.pods[&runner];
            assert_eq!(
                pod.labels().get(labels::EPHEMERAL_RUNNER).map(String::as_str),
                Some(labels::EPHEMERAL_RUNNER_TRUE),
                "{:?}",
                pod.labels()
            );
            assert_eq!(pod.labels().get(labels::SCALE_SET_NAME).map(String::as_str), Some(name));
            assert!(
                pod.owner_references()
                    .iter()
                    .any(|o| o.kind == "EphemeralRunner" && o.name == runner),
                "{:?}",
                pod.owner_references()
            );
            let spec = pod.spec.clone().expect("pod spec");
            let c = spec
                .containers
                .iter()
                .find(|c| c.name == "runner")
                .expect("container runner");
            let jit = c
                .env
                .iter()
                .flatten()
                .find(|e| e.name == "ACTIONS_RUNNER_INPUT_JITCONFIG")
                .and_then(|e| e.value_from.as_ref())
                .and_then(|v| v.secret_key_ref.as_ref())
                .unwrap_or_else(|| {
                    panic!(
                        "pod {runner}: no ACTIONS_RUNNER_INPUT_JITCONFIG from a Secret: {:?}",
                        c.env
                    )
                });
            assert_eq!((jit.name.as_str(), jit.key.as_str()), (runner.as_str(), "jitToken"));
        }

        // The runners took one job each and exited: everything of them goes.
        wait_scaled_to_zero(env, name, id).await;
        delete_and_check_gone(env, name, id).await;
    })
    .await;
}

/// 0 → maxRunners → 0: six jobs, maxRunners 3. Never more than 3 runners, all jobs run once,
/// then back to no runner at all (cluster and simulator) with the statuses at 0.
#[tokio::test]
async fn scale_0_to_n_to_0() {
    Env::run("scale", async |env| {
        let name = "scale-set";
        let mut ars = env.ars(name);
        ars.spec.min_runners = Some(0);
        ars.spec.max_runners = Some(3);
        let (_, id) = create_and_wait_running(env, ars).await;
        assert!(
            env.ephemeral_runners().await.expect("list ERs").is_empty(),
            "no runner at rest"
        );

        let ids = env.queue_jobs(6, name, 1000);
        let mut seen = Seen::default();
        let jobs = wait_jobs(env, &ids, id, &mut seen).await;
        assert_jobs_ran_once_on_our_runners(&jobs, &seen);
        assert_no_duplicate_registrations(&seen);
        assert_eq!(
            seen.peak_ers, 3,
            "6 jobs with maxRunners 3: exactly 3 EphemeralRunners at the peak"
        );
        assert!(
            seen.peak_pods <= 3,
            "at most 3 live runner pods, saw {}",
            seen.peak_pods
        );
        assert!(
            seen.peak_sim_runners <= 3,
            "at most 3 registered runners, saw {}",
            seen.peak_sim_runners
        );

        wait_scaled_to_zero(env, name, id).await;
    })
    .await;
}

/// T07: the credentials Secret does not exist. The ARS gets a condition and a Warning event naming
/// it; no ERS, listener, runner or scale set is created and GitHub is never called; deleting the
/// ARS still completes.
#[tokio::test]
async fn t07_missing_credentials_sets_condition_and_event_and_creates_nothing() {
    Env::run("t07", async |env| {
        let name = "t07-set";
        let secret = "absent-credentials";
        let mut ars = env.ars(name);
        ars.spec.github_config_secret = Some(secret.into());
        env.create_ars(&ars).await;

        let api = env.ars_api();
        let condition = eventually("a status condition naming the missing Secret", MINUTE, async || {
            let a = get(&api, name).await?.ok_or("no ARS")?;
            let conditions = a.status.clone().and_then(|s| s.conditions).unwrap_or_default();
            conditions
                .into_iter()
                .find(|c| c.message.contains(secret))
                .ok_or_else(|| format!("status {:?}", a.status))
        })
        .await;
        assert!(!condition.reason.is_empty(), "{condition:?}");
        let event = env.wait_warning(name, secret).await;
        assert_eq!(
            event.involved_object.kind.as_deref(),
            Some("AutoscalingRunnerSet"),
            "{event:?}"
        );

        // Give the controller time to retry; still nothing may exist.
        tokio::time::sleep(Duration::from_secs(5)).await;
        let a = get(&api, name).await.expect("get ARS").expect("ARS");
        assert_ne!(
            a.status.as_ref().and_then(|s| s.phase.as_deref()),
            Some("Running"),
            "{:?}",
            a.status
        );
        assert!(
            !a.annotations().contains_key(annotations::RUNNER_SCALE_SET_ID),
            "{:?}",
            a.annotations()
        );
        assert!(
            list(&env.ers_api()).await.expect("list ERS").is_empty(),
            "no EphemeralRunnerSet"
        );
        assert!(
            list(&env.er_api()).await.expect("list ER").is_empty(),
            "no EphemeralRunner"
        );
        assert!(
            list(&env.al_api()).await.expect("list AL").is_empty(),
            "no AutoscalingListener"
        );
        assert!(
            list(&env.listener_pod_api()).await.expect("list pods").is_empty(),
            "no listener pod"
        );
        assert!(env.runner_pods().await.expect("list pods").is_empty(), "no runner pod");
        assert!(env.sim_scale_sets().is_empty(), "no scale set");
        let calls = env.sim.sim.calls();
        assert!(calls.is_empty(), "GitHub was called without credentials: {calls:?}");

        env.delete_ars(name).await;
        env.wait_ars_gone(name, MINUTE).await;
        let calls = env.sim.sim.calls();
        assert!(
            calls.is_empty(),
            "deleting an unregistered ARS called GitHub: {calls:?}"
        );
    })
    .await;
}

/// T50: the listener pod is deleted → a new one (new UID) runs and opens a session again; the
/// AutoscalingListener itself is kept.
#[tokio::test]
async fn t50_deleted_listener_pod_is_recreated_and_reconnects() {
    Env::run("t50", async |env| {
        let name = "t50-set";
        let (_, id) = create_and_wait_running(env, env.ars(name)).await;
        let listener = env.listener_name(name);
        let al_uid = get(&env.al_api(), &listener).await.expect("get AL").expect("AL").uid();
        let pods = env.listener_pod_api();
        let old = get(&pods, &listener)
            .await
            .expect("get pod")
            .expect("listener pod")
            .uid();
        pods.delete(&listener, &Default::default())
            .await
            .expect("delete the listener pod");

        let new = eventually("a new listener pod", SCALE_UP, async || {
            let pod = get(&pods, &listener).await?.ok_or("no listener pod")?;
            if pod.uid() != old && pod_phase(&pod) == "Running" {
                Ok(pod)
            } else {
                Err(format!("uid {:?} phase {}", pod.uid(), pod_phase(&pod)))
            }
        })
        .await;
        env.wait_listener_running(name, id, SCALE_UP).await;
        assert_eq!(
            get(&env.al_api(), &listener).await.expect("get AL").expect("AL").uid(),
            al_uid,
            "AL kept"
        );
        assert_ne!(new.uid(), old);
    })
    .await;
}

/// The controller is killed (its task aborted mid-reconcile) twice while it scales up for six
/// jobs: when the first EphemeralRunner appears, and when the first job completes. After each
/// restart it converges: every job runs exactly once, never more than maxRunners runners exist
/// or are registered, no runner is registered twice, and nothing is left at the end.
#[tokio::test]
async fn controller_killed_mid_scale_up_leaves_no_duplicates_or_orphans() {
    Env::run("killed", async |env| {
        let name = "kill-set";
        let mut ars = env.ars(name);
        ars.spec.max_runners = Some(4);
        let (_, id) = create_and_wait_running(env, ars).await;

        let ids = env.queue_jobs(6, name, 2000);
        let mut seen = Seen::default();
        eventually("the first EphemeralRunner", SCALE_UP, async || {
            seen.sample(env, id).await?;
            if seen.ers.is_empty() {
                Err("none yet".into())
            } else {
                Ok(())
            }
        })
        .await;
        env.stop_controller().await;
        let at_kill: BTreeSet<String> = names(&env.ephemeral_runners().await.expect("list ERs"))
            .into_iter()
            .collect();
        tokio::time::sleep(Duration::from_secs(3)).await;
        let while_down: BTreeSet<String> = names(&env.ephemeral_runners().await.expect("list ERs"))
            .into_iter()
            .collect();
        assert!(
            while_down.is_subset(&at_kill),
            "EphemeralRunners appeared while the controller was down: {at_kill:?} → {while_down:?}"
        );
        env.start_controller().await;

        eventually("the first job to complete", JOBS_DONE, async || {
            seen.sample(env, id).await?;
            let jobs = env.sim_jobs();
            if jobs.iter().any(|j| j.state == JobState::Completed) {
                Ok(())
            } else {
                Err(describe_jobs(&jobs))
            }
        })
        .await;
        env.stop_controller().await;
        tokio::time::sleep(Duration::from_secs(2)).await;
        env.start_controller().await;

        let jobs = wait_jobs(env, &ids, id, &mut seen).await;
        assert_jobs_ran_once_on_our_runners(&jobs, &seen);
        assert_no_duplicate_registrations(&seen);
        assert!(
            seen.peak_ers <= 4,
            "at most maxRunners EphemeralRunners: peak {}",
            seen.peak_ers
        );
        assert!(
            seen.peak_sim_runners <= 4,
            "at most maxRunners registered runners: peak {}",
            seen.peak_sim_runners
        );
        wait_scaled_to_zero(env, name, id).await;
        delete_and_check_gone(env, name, id).await;
    })
    .await;
}

/// Creates `ars` (minRunners `idle`), waits until its `idle` runners are registered and online,
/// then queues one 15 s job and waits until it runs. Returns the scale set id, the job's id, the
/// busy runner's name and its pod's uid.
async fn start_with_one_busy_runner(
    env: &Env,
    ars: AutoscalingRunnerSet,
    idle: usize,
) -> (i64, Vec<i64>, String, Option<String>) {
    let name = ars.name_any();
    let (_, id) = create_and_wait_running(env, ars).await;
    eventually(&format!("{idle} idle runner(s) registered"), SCALE_UP, async || {
        let runners: Vec<_> = env
            .sim_runners()
            .into_iter()
            .filter(|r| r.scale_set_id == id && r.online)
            .collect();
        if runners.len() == idle {
            Ok(())
        } else {
            Err(format!("{runners:?}"))
        }
    })
    .await;

    let ids = env.queue_jobs(1, &name, 15_000);
    let busy = env.wait_job_running(&ids, SCALE_UP).await;
    let busy_uid = get(&env.runner_pod_api(), &busy)
        .await
        .expect("get pod")
        .expect("the busy runner's pod")
        .uid();
    (id, ids, busy, busy_uid)
}

/// T60/T61: the runner template changes while one runner runs a job (minRunners 1). The busy
/// runner's pod is never deleted before its job completes; afterwards the idle runners run the
/// new template, the listener runs again on the one ERS, and a new job runs on a new-template pod.
#[tokio::test]
async fn t60_template_change_rolls_out_without_killing_busy_runner() {
    Env::run("t60", async |env| {
        let name = "t60-set";
        let mut ars = env.ars(name);
        ars.spec.min_runners = Some(1);
        ars.spec.max_runners = Some(3);
        let (id, ids, busy, busy_uid) = start_with_one_busy_runner(env, ars, 1).await;
        let pods = env.runner_pod_api();

        let mut template = env.ars(name).spec.template.expect("template");
        template.metadata.get_or_insert_default().labels =
            Some(BTreeMap::from([("rarc.test/template".to_owned(), "v2".to_owned())]));
        let containers = &mut template.spec.as_mut().expect("template spec").containers;
        containers[0].env = Some(vec![k8s_openapi::api::core::v1::EnvVar {
            name: "TEMPLATE_REV".into(),
            value: Some("2".into()),
            ..Default::default()
        }]);
        env.patch_ars(name, json!({"spec": {"template": template}})).await;

        // Until its job completes, the busy runner's pod stays (same pod, not terminating).
        let job = eventually("the busy job to complete", MINUTE, async || {
            let pod = get(&pods, &busy).await?;
            let job = env.jobs_of(&ids).into_iter().next().ok_or("no job")?;
            if job.state == JobState::Completed {
                return Ok(job);
            }
            match &pod {
                Some(p) if p.uid() == busy_uid && !deleting(p) => {}
                other => panic!(
                    "the busy runner's pod {busy} was deleted or replaced while its job ran: {:?}",
                    other.as_ref().map(|p| (p.uid(), p.metadata.deletion_timestamp.clone()))
                ),
            }
            Err(describe_jobs(std::slice::from_ref(&job)))
        })
        .await;
        assert_eq!(job.result.as_deref(), Some("succeeded"), "{job:?}");
        assert_eq!(job.runs, 1, "{job:?}");

        // The rollout: one idle runner (minRunners 1), on the new template, and a listener.
        let ars_api = env.ars_api();
        eventually("the idle runner to run the new template", SCALE_UP, async || {
            let all = env.runner_pods().await?;
            let live: Vec<&Pod> = all.iter().filter(|p| !deleting(*p)).collect();
            let new = live
                .iter()
                .filter(|p| p.labels().get("rarc.test/template").map(String::as_str) == Some("v2"));
            if live.len() == 1 && new.count() == 1 && all.len() == 1 {
                Ok(())
            } else {
                Err(describe_pods(&all))
            }
        })
        .await;
        let a = get(&ars_api, name).await.expect("get ARS").expect("ARS");
        let owned = env.owned_ers(&a).await.expect("list ERS");
        assert_eq!(names(&owned), [name], "still one EphemeralRunnerSet");
        env.wait_listener_running(name, id, SCALE_UP).await;
        let al = get(&env.al_api(), &env.listener_name(name))
            .await
            .expect("get AL")
            .expect("AL");
        assert_eq!(
            al.spec.ephemeral_runner_set_name.as_deref(),
            Some(name),
            "the listener patches the live ERS"
        );

        let ids2 = env.queue_jobs(1, name, 1000);
        let mut seen = Seen::default();
        let jobs = wait_jobs(env, &ids2, id, &mut seen).await;
        assert_jobs_ran_once_on_our_runners(&jobs, &seen);
        let runner = jobs[0].runner_name.clone().unwrap_or_default();
        let pod = &seen.pods[&runner];
        assert_eq!(
            pod.labels().get("rarc.test/template").map(String::as_str),
            Some("v2"),
            "{:?}",
            pod.labels()
        );
        let c = &pod.spec.as_ref().expect("spec").containers[0];
        assert!(
            c.env
                .iter()
                .flatten()
                .any(|e| e.name == "TEMPLATE_REV" && e.value.as_deref() == Some("2")),
            "{:?}",
            c.env
        );
    })
    .await;
}

/// T70: deleting an ARS with 2 idle runners and 1 busy one. The listener goes and the idle runners
/// are deregistered and deleted while the job runs; the busy runner finishes its job; only then
/// do the ERS, the scale set (deleted once) and the ARS go. Nothing is left.
#[tokio::test]
async fn t70_delete_ars_cleans_up_cluster_and_sim() {
    Env::run("t70", async |env| {
        let name = "t70-set";
        let mut ars = env.ars(name);
        ars.spec.min_runners = Some(2);
        ars.spec.max_runners = Some(5);
        let (id, ids, busy, busy_uid) = start_with_one_busy_runner(env, ars, 2).await;
        let pods = env.runner_pod_api();
        let idle_ids: BTreeMap<String, i64> = env
            .sim_runners()
            .into_iter()
            .filter(|r| r.scale_set_id == id && r.name != busy)
            .map(|r| (r.name, r.id))
            .collect();
        assert!(!idle_ids.is_empty(), "idle runners besides {busy}");

        env.delete_ars(name).await;
        let listener = env.listener_name(name);
        let ars_api = env.ars_api();
        // While the job runs: the busy pod stays, the ARS stays, the scale set is not deleted;
        // the listener and the idle runners go.
        eventually(
            "the listener and the idle runners to go while the job runs",
            MINUTE,
            async || {
                let ars_now = get(&ars_api, name).await?;
                let deletes = env.calls_ending("DELETE", &format!("/runnerscalesets/{id}"));
                let pod = get(&pods, &busy).await?;
                let ers = env.ephemeral_runners().await?;
                let al = get(&env.al_api(), &listener).await?;
                let listener_pod = get(&env.listener_pod_api(), &listener).await?;
                let sim_left: Vec<String> = env
                    .sim_runners()
                    .into_iter()
                    .filter(|r| r.scale_set_id == id)
                    .map(|r| r.name)
                    .collect();
                let job = env.jobs_of(&ids).into_iter().next().ok_or("no job")?;
                assert_ne!(
                    job.state,
                    JobState::Completed,
                    "the job completed before the listener and idle runners were gone:\n{}",
                    describe_ers(&ers)
                );
                assert!(ars_now.is_some(), "the ARS was gone while its runner still ran a job");
                assert!(
                    deletes.is_empty(),
                    "DeleteRunnerScaleSet was called while one of the scale set's runners ran a job: {deletes:?}"
                );
                assert!(
                    pod.as_ref().is_some_and(|p| p.uid() == busy_uid && !deleting(p)),
                    "the busy runner's pod was deleted while its job ran"
                );
                let others: Vec<String> = names(&ers).into_iter().filter(|n| *n != busy).collect();
                if al.is_none() && listener_pod.is_none() && others.is_empty() && sim_left == [busy.clone()] {
                    Ok(())
                } else {
                    Err(format!(
                        "AL {}, listener pod {}, other ERs {others:?}, registered {sim_left:?}",
                        al.is_some(),
                        listener_pod.is_some()
                    ))
                }
            },
        )
        .await;
        for (runner, runner_id) in &idle_ids {
            let removes = env.calls_ending("DELETE", &format!("/agents/{runner_id}"));
            assert!(
                !removes.is_empty(),
                "idle runner {runner} ({runner_id}) was not deregistered (RemoveRunner)"
            );
        }

        let job = eventually("the busy job to complete", MINUTE, async || {
            let ars_now = get(&ars_api, name).await?;
            let job = env.jobs_of(&ids).into_iter().next().ok_or("no job")?;
            if job.state == JobState::Completed {
                return Ok(job);
            }
            assert!(ars_now.is_some(), "the ARS was gone while its runner still ran a job");
            Err(describe_jobs(std::slice::from_ref(&job)))
        })
        .await;
        assert_eq!(job.result.as_deref(), Some("succeeded"), "{job:?}");
        assert_eq!(job.runs, 1, "{job:?}");
        let completed_at = env
            .calls(Some("POST"), &format!("/jobs/{}/complete", job.runner_request_id))
            .iter()
            .map(|c| c.seq)
            .max();

        env.wait_ars_gone(name, SCALE_UP).await;
        let scale_set_deletes = env.calls_ending("DELETE", &format!("/runnerscalesets/{id}"));
        assert!(
            scale_set_deletes.len() == 1 && (200..300).contains(&scale_set_deletes[0].status),
            "DeleteRunnerScaleSet should be called once and succeed: {scale_set_deletes:?}"
        );
        if let Some(done) = completed_at {
            assert!(
                scale_set_deletes[0].seq > done,
                "the scale set was deleted before the busy runner finished its job"
            );
        }
        assert!(env.sim_scale_sets().is_empty(), "{:?}", env.sim_scale_sets());
        env.wait_runner_pods(0, MINUTE).await;
        env.wait_no_sim_runners(id, MINUTE).await;
        assert!(list(&env.ers_api()).await.expect("list ERS").is_empty(), "ERS gone");
        assert!(list(&env.er_api()).await.expect("list ER").is_empty(), "ERs gone");
        assert!(list(&env.al_api()).await.expect("list AL").is_empty(), "AL gone");
        assert!(env.sessions().is_empty(), "{:?}", env.sessions());
    })
    .await;
}
