//! rarc-controller's scale set registration, listener management and controller-level behaviour,
//! end to end against the REAL local cluster (`tests/cluster/up`) and an in-process rarc-sim.
//! Named after the scenarios of arc-controller.md §12 (T02–T06, T14, T51–T55, T62, T63, T80,
//! T83–T86) plus ARC's chart renderings in `fixtures/arc-samples`. Fails (never skips) when the
//! cluster is not up or the listener and rarc-sim binaries are not built:
//!
//! ```sh
//! cargo build -p rarc-listener -p rarc-sim
//! RARC_KUBECONFIG=$(tests/cluster/up | tail -1) cargo test -p rarc-controller --test scale_sets
//! ```
//!
//! Most tests run the controller in-process (see `support`); T83 and T84 stop it and run the
//! `rarc-controller` binary as subprocesses instead (metrics server, leader election), and the
//! harness's teardown restarts the in-process one to clean up.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Secret, ServiceAccount};
use k8s_openapi::api::rbac::v1::{PolicyRule, Role, RoleBinding};
use kube::api::{ApiResource, DeleteParams, DynamicObject, Patch, PatchParams};
use kube::{Api, Client, Resource, ResourceExt};
use rarc_crd::keys::{annotations, finalizers, labels};
use rarc_crd::{AutoscalingListener, AutoscalingRunnerSet, EphemeralRunner, EphemeralRunnerSet};
use rarc_kube_test::prometheus::{self, Series};
use serde_json::{Value, json};
use support::*;

const MINUTE: Duration = Duration::from_secs(60);
const SCALE_UP: Duration = Duration::from_secs(90);

// ---- helpers -----------------------------------------------------------------------------------

/// Creates `ars` and waits until it is registered (scale set id) and reconciled (phase `Running`:
/// the ERS and the AutoscalingListener exist). Does not wait for the listener pod.
async fn create_and_wait_reconciled(env: &Env, ars: AutoscalingRunnerSet) -> (AutoscalingRunnerSet, i64) {
    let name = ars.name_any();
    env.create_ars(&ars).await;
    let id = env.wait_scale_set_id(&name, MINUTE).await;
    let ars = env.wait_ars_phase(&name, "Running", MINUTE).await;
    (ars, id)
}

/// [`create_and_wait_reconciled`], then waits until the listener pod runs with a session.
async fn create_and_wait_listening(env: &Env, ars: AutoscalingRunnerSet) -> (AutoscalingRunnerSet, i64) {
    let (ars, id) = create_and_wait_reconciled(env, ars).await;
    env.wait_listener_running(&ars.name_any(), id, SCALE_UP).await;
    (ars, id)
}

/// The listener name of ARS `ars` in runner group `group`.
fn listener_in_group(env: &Env, ars: &str, group: &str) -> String {
    rarc_crd::names::listener_name(ars, &env.ns, group, &env.config_url())
}

/// Waits until `api` has `name` and `ok` accepts it; returns it.
async fn wait_obj<K>(
    api: &Api<K>,
    name: &str,
    what: &str,
    timeout: Duration,
    ok: impl Fn(&K) -> Result<(), String>,
) -> K
where
    K: Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    eventually(&format!("{what} {name}"), timeout, async || {
        let obj = get(api, name).await?.ok_or("it does not exist")?;
        ok(&obj).map(|()| obj)
    })
    .await
}

/// The object as the API server stores it, as JSON (no typed deserialization that could drop
/// unknown fields).
async fn raw<K>(client: &Client, ns: &str, name: &str) -> Value
where
    K: Resource<DynamicType = ()>,
{
    let resource = ApiResource::erase::<K>(&());
    let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), ns, &resource);
    let obj = api
        .get(name)
        .await
        .unwrap_or_else(|e| panic!("get {} {ns}/{name}: {e}", K::kind(&())));
    serde_json::to_value(obj).expect("JSON")
}

/// Paths where `want` is not contained in `got` (objects: every key of `want`, recursively;
/// arrays: same length, element-wise; numbers compared as numbers).
fn not_contained(want: &Value, got: &Value, path: &str, out: &mut Vec<String>) {
    match (want, got) {
        (Value::Object(w), Value::Object(g)) => {
            for (k, v) in w {
                match g.get(k) {
                    Some(gv) => not_contained(v, gv, &format!("{path}/{k}"), out),
                    None => out.push(format!("{path}/{k}: dropped (wanted {v})")),
                }
            }
        }
        (Value::Array(w), Value::Array(g)) if w.len() == g.len() => {
            for (i, (a, b)) in w.iter().zip(g).enumerate() {
                not_contained(a, b, &format!("{path}/{i}"), out);
            }
        }
        (Value::Number(a), Value::Number(b)) if a.as_f64() == b.as_f64() => {}
        (a, b) if a == b => {}
        (a, b) => out.push(format!("{path}: wanted {a}, stored {b}")),
    }
}

/// The `config.json` of listener `listener`.
async fn listener_config(env: &Env, listener: &str) -> Result<Value, String> {
    let secret = get(&env.capi::<Secret>(), &format!("{listener}-config"))
        .await?
        .ok_or("no config Secret")?;
    let raw = secret
        .data
        .and_then(|d| d.get("config.json").cloned())
        .ok_or("no config.json")?;
    serde_json::from_slice(&raw.0).map_err(|e| format!("config.json: {e}"))
}

/// The ERS `name` (updated in place, so always this name).
async fn ers_named(env: &Env, name: &str) -> Result<EphemeralRunnerSet, String> {
    get(&env.ers_api(), name)
        .await?
        .ok_or_else(|| format!("no EphemeralRunnerSet {name}"))
}

/// Waits until exactly `n` EphemeralRunners exist, none deleting, each registered (runner id).
async fn wait_registered_runners(env: &Env, n: usize, timeout: Duration) -> Vec<EphemeralRunner> {
    eventually(&format!("{n} registered EphemeralRunner(s)"), timeout, async || {
        let ers = env.ephemeral_runners().await?;
        if ers.len() == n && ers.iter().all(|e| !deleting(e) && e.runner_id() > 0) {
            Ok(ers)
        } else {
            Err(describe_ers(&ers))
        }
    })
    .await
}

/// `(uid, deleting)` of an object, for "untouched" checks.
fn identity<K: Resource>(obj: &K) -> (String, bool) {
    (obj.meta().uid.clone().unwrap_or_default(), deleting(obj))
}

/// Strips `actions.github.com/cleanup-protection` from every ServiceAccount, Role and RoleBinding
/// of a namespace when dropped, so a failed test does not leave the namespace stuck (the harness
/// only strips the finalizers of the four ARC kinds).
struct ProtectionGuard(String);

impl Drop for ProtectionGuard {
    fn drop(&mut self) {
        let ns = self.0.clone();
        let worker = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
            runtime.block_on(async move {
                let client = rarc_kube_test::client().await.map_err(std::io::Error::other)?;
                strip_protection::<ServiceAccount>(&client, &ns).await;
                strip_protection::<Role>(&client, &ns).await;
                strip_protection::<RoleBinding>(&client, &ns).await;
                Ok::<(), std::io::Error>(())
            })
        });
        if let Ok(Err(e)) = worker.join() {
            eprintln!("cannot strip cleanup-protection finalizers: {e}");
        }
    }
}

async fn strip_protection<K>(client: &Client, ns: &str)
where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug,
{
    let api: Api<K> = Api::namespaced(client.clone(), ns);
    for obj in list(&api).await.unwrap_or_default() {
        if obj.finalizers().iter().any(|f| f == finalizers::CLEANUP_PROTECTION) {
            let patch = json!({"metadata": {"finalizers": null}});
            let _ = api
                .patch(&obj.name_any(), &PatchParams::default(), &Patch::Merge(&patch))
                .await;
        }
    }
}

/// A `rarc-controller` subprocess (the binary this test was built with), watching only the
/// test's runner namespace; killed (SIGKILL) when dropped.
struct ControllerProcess {
    identity: String,
    child: tokio::process::Child,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl ControllerProcess {
    /// Starts the binary with `HOSTNAME=identity` (its leader-election identity and event
    /// reporting instance) and `extra` flags (which must include `--metrics-addr`).
    fn spawn(env: &Env, identity: &str, extra: &[String]) -> Self {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let log = dir.path().join(format!("{identity}.log"));
        let file = std::fs::File::create(&log).expect("the log file");
        let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_rarc-controller"));
        cmd.args([
            "--auto-scaling-runner-set-only".to_owned(),
            "--listener-metrics-addr=0".to_owned(),
            "--log-level=info".to_owned(),
            format!("--controller-namespace={}", env.cns),
            format!("--listener-image={}", env.image),
            format!("--listener-entrypoint={LISTENER_ENTRYPOINT}"),
            format!("--watch-single-namespace={}", env.ns),
        ])
        .args(extra)
        .env("KUBECONFIG", rarc_kube_test::kubeconfig_location())
        .env("HOSTNAME", identity)
        .env("RARC_LOG", "info,kube=warn,hyper=warn,tower=warn")
        .stdin(std::process::Stdio::null())
        .stdout(file.try_clone().expect("log file handle"))
        .stderr(file)
        .kill_on_drop(true);
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", env!("CARGO_BIN_EXE_rarc-controller")));
        tracing::info!(identity, log = %log.display(), "controller subprocess started");
        ControllerProcess {
            identity: identity.to_owned(),
            child,
            log,
            _dir: dir,
        }
    }

    /// Its log so far.
    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Panics (with the log) when the process has exited.
    fn assert_running(&mut self) {
        if let Ok(Some(status)) = self.child.try_wait() {
            panic!("controller {} exited ({status}); log:\n{}", self.identity, self.log());
        }
    }

    /// SIGKILL, and reap it.
    async fn kill(&mut self) {
        let _ = self.child.start_kill();
        let _ = tokio::time::timeout(Duration::from_secs(10), self.child.wait()).await;
    }
}

/// A free loopback port (bound then released).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

/// `GET http://addr/metrics`.
async fn scrape(addr: &str) -> Result<String, String> {
    let client = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(5))
        .build()
        .map_err(|e| e.to_string())?;
    let response = client
        .get(format!("http://{addr}/metrics"))
        .send()
        .await
        .map_err(|e| format!("GET /metrics: {e}"))?;
    if !response.status().is_success() {
        return Err(format!("GET /metrics: {}", response.status()));
    }
    response.text().await.map_err(|e| e.to_string())
}

/// The comparator and the parser above can fail: a dropped or changed field is reported, extra
/// stored fields and `1` for `1.0` are not; label sets are parsed in full.
#[test]
fn helpers_detect_dropped_fields_and_parse_series() {
    let want = json!({"a": {"b": [1, {"c": "x"}], "d": 1.0}});
    let mut out = Vec::new();
    not_contained(
        &want,
        &json!({"a": {"b": [1, {"c": "x", "e": 2}], "d": 1, "f": 0}}),
        "",
        &mut out,
    );
    assert!(out.is_empty(), "{out:?}");
    not_contained(&want, &json!({"a": {"b": [1, {}], "d": 2}}), "", &mut out);
    assert_eq!(out.len(), 2, "{out:?}");
    let series = prometheus::parse("# TYPE g gauge\ng{name=\"a\",namespace=\"\"} 3\nc 1\n");
    assert_eq!(series.len(), 2);
    assert_eq!(series[0].name, "g");
    assert_eq!(series[0].value, Some(3.0));
    assert_eq!(
        series[0].labels,
        BTreeMap::from([
            ("name".to_owned(), "a".to_owned()),
            ("namespace".to_owned(), String::new())
        ])
    );
}

// ---- ARC's chart renderings --------------------------------------------------------------------

/// ARC's `gha-runner-scale-set` renderings (default, dind, kubernetes mode) apply unchanged: the
/// API server keeps every field (read back raw and compared, plus a few deep fields by name),
/// the controller registers each scale set and creates ERS `<name>` (template passed through
/// whole) and the listener with its objects. Deleting them like `helm uninstall` does (ARS and
/// the chart's objects together) completes: the controller removes the
/// `actions.github.com/cleanup-protection` finalizers of the objects the `cleanup-*` annotations
/// name (absent ones are skipped), so those objects go too. The runner image cannot be pulled:
/// no job is queued and the listeners are not on the host network (they cannot reach the
/// simulator), so no runner is ever created.
#[tokio::test]
async fn arc_sample_manifests_apply_unchanged_and_reconcile() {
    Env::run("samples", async |env| {
        let _guard = ProtectionGuard(env.ns.clone());
        let samples = [
            ("default", "smp-default", ""),
            ("dind", "smp-dind", "default"),
            ("kubernetes", "smp-kube", ""),
        ];
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/arc-samples");
        let mut c = Checks::default();
        for (file, name, _) in samples {
            let path = dir.join(format!("{file}.yaml"));
            let yaml = std::fs::read_to_string(&path)
                .unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
                .replace("@NAMESPACE@", &env.ns)
                .replace("@NAME@", name)
                .replace("@CONFIG_URL@", &env.config_url());
            let documents = rarc_kube_test::parse_yaml_documents(&yaml).expect("the sample parses");
            rarc_kube_test::apply_yaml(&env.client, Some(&env.ns), &yaml)
                .await
                .unwrap_or_else(|e| panic!("{file}.yaml was refused: {e}"));
            for doc in documents {
                let kind = doc["kind"].as_str().unwrap_or_default().to_owned();
                let obj_name = doc["metadata"]["name"].as_str().unwrap_or_default().to_owned();
                let stored = match kind.as_str() {
                    "AutoscalingRunnerSet" => raw::<AutoscalingRunnerSet>(&env.client, &env.ns, &obj_name).await,
                    "ServiceAccount" => raw::<ServiceAccount>(&env.client, &env.ns, &obj_name).await,
                    other => panic!("{file}.yaml: unexpected kind {other}"),
                };
                let mut lost = Vec::new();
                not_contained(&doc, &stored, "", &mut lost);
                c.ok(
                    &format!("{file}.yaml {kind} {obj_name}: every field kept"),
                    lost.is_empty(),
                    &lost,
                );
            }
        }
        // A few deep fields by name (what a pruning or lossy schema would drop first).
        let dind = raw::<AutoscalingRunnerSet>(&env.client, &env.ns, "smp-dind").await;
        let init = &dind["spec"]["template"]["spec"]["initContainers"][1];
        c.eq("dind: init container dind restartPolicy", init["restartPolicy"].clone(), json!("Always"));
        c.eq(
            "dind: startupProbe exec command",
            init["startupProbe"]["exec"]["command"].clone(),
            json!(["docker", "info"]),
        );
        c.eq("dind: startupProbe failureThreshold", init["startupProbe"]["failureThreshold"].clone(), json!(24));
        c.eq("dind: privileged", init["securityContext"]["privileged"].clone(), json!(true));
        let buckets = dind["spec"]["listenerMetrics"]["histograms"]["gha_job_startup_duration_seconds"]["buckets"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        c.eq("dind: listenerMetrics buckets", buckets.len(), 15);
        c.ok(
            "dind: last bucket 3600",
            buckets.last().and_then(Value::as_f64) == Some(3600.0),
            &buckets,
        );
        let kube_mode = raw::<AutoscalingRunnerSet>(&env.client, &env.ns, "smp-kube").await;
        let claim = &kube_mode["spec"]["template"]["spec"]["volumes"][0]["ephemeral"]["volumeClaimTemplate"]["spec"];
        c.eq("kubernetes: claim storageClassName", claim["storageClassName"].clone(), json!("local-path"));
        c.eq(
            "kubernetes: claim storage request",
            claim["resources"]["requests"]["storage"].clone(),
            json!("1Gi"),
        );
        c.eq(
            "kubernetes: ACTIONS_RUNNER_POD_NAME fieldRef",
            kube_mode["spec"]["template"]["spec"]["containers"][0]["env"][1]["valueFrom"]["fieldRef"]["fieldPath"]
                .clone(),
            json!("metadata.name"),
        );
        c.eq(
            "kubernetes: proxy noProxy",
            kube_mode["spec"]["proxy"]["noProxy"].clone(),
            json!(["127.0.0.1", "localhost"]),
        );

        // The kubernetes mode's chart objects (not in the fixture), protected like the chart does.
        let kube_objects = format!(
            "apiVersion: v1\nkind: ServiceAccount\nmetadata: {{name: smp-kube-gha-rs-kube-mode, finalizers: [{p}]}}\n---\n\
             apiVersion: rbac.authorization.k8s.io/v1\nkind: Role\nmetadata: {{name: smp-kube-gha-rs-kube-mode, finalizers: [{p}]}}\n\
             rules: [{{apiGroups: [''], resources: [pods], verbs: [get]}}]\n---\n\
             apiVersion: rbac.authorization.k8s.io/v1\nkind: RoleBinding\nmetadata: {{name: smp-kube-gha-rs-kube-mode, finalizers: [{p}]}}\n\
             roleRef: {{apiGroup: rbac.authorization.k8s.io, kind: Role, name: smp-kube-gha-rs-kube-mode}}\n\
             subjects: [{{kind: ServiceAccount, name: smp-kube-gha-rs-kube-mode, namespace: {ns}}}]\n",
            p = finalizers::CLEANUP_PROTECTION,
            ns = env.ns
        );
        rarc_kube_test::apply_yaml(&env.client, Some(&env.ns), &kube_objects)
            .await
            .expect("apply the kubernetes-mode chart objects");

        // The controller reconciles each: scale set, ERS `<name>` (template kept whole), listener.
        let mut ids = BTreeMap::new();
        for (file, name, group) in samples {
            let id = env.wait_scale_set_id(name, MINUTE).await;
            ids.insert(name, id);
            let ers = eventually(&format!("ERS {name}"), MINUTE, async || ers_named(env, name).await).await;
            c.eq(&format!("{file}: ERS runnerScaleSetId"), ers.spec.ephemeral_runner_spec.runner_scale_set_id, id);
            let ars_raw = raw::<AutoscalingRunnerSet>(&env.client, &env.ns, name).await;
            let ers_raw = raw::<EphemeralRunnerSet>(&env.client, &env.ns, name).await;
            let mut lost = Vec::new();
            not_contained(&ars_raw["spec"]["template"], &ers_raw["spec"]["ephemeralRunnerSpec"], "", &mut lost);
            c.ok(&format!("{file}: the runner template reaches the ERS whole"), lost.is_empty(), &lost);
            let listener = listener_in_group(env, name, group);
            let al = wait_obj(&env.al_api(), &listener, "AutoscalingListener", MINUTE, |_| Ok(())).await;
            c.eq(&format!("{file}: AL runnerScaleSetId"), al.spec.runner_scale_set_id, id);
            let al_raw = raw::<AutoscalingListener>(&env.client, &env.cns, &listener).await;
            c.eq(
                &format!("{file}: AL metrics = listenerMetrics"),
                al_raw["spec"]["metrics"].clone(),
                ars_raw["spec"]["listenerMetrics"].clone(),
            );
            let config = eventually(&format!("{file}: listener config"), MINUTE, async || {
                listener_config(env, &listener).await
            })
            .await;
            c.eq(&format!("{file}: config.json runner_scale_set_id"), config["runner_scale_set_id"].clone(), json!(id));
            for (kind, found) in [
                ("ServiceAccount", get(&env.capi::<ServiceAccount>(), &listener).await.expect("get").is_some()),
                ("Role", get(&env.api::<Role>(), &listener).await.expect("get").is_some()),
                ("RoleBinding", get(&env.api::<RoleBinding>(), &listener).await.expect("get").is_some()),
            ] {
                c.ok(&format!("{file}: listener {kind}"), found, &listener);
            }
            let pod = eventually(&format!("{file}: listener pod"), MINUTE, async || {
                get(&env.listener_pod_api(), &listener).await?.ok_or("no pod".to_owned())
            })
            .await;
            if file == "kubernetes" {
                // The listenerTemplate merged in (T13): env appended, tolerations replaced.
                let spec = pod.spec.clone().unwrap_or_default();
                c.ok(
                    "kubernetes: listener env EXTRA from the listenerTemplate",
                    spec.containers
                        .iter()
                        .find(|c| c.name == "listener")
                        .and_then(|c| c.env.as_ref())
                        .is_some_and(|e| e.iter().any(|v| v.name == "EXTRA" && v.value.as_deref() == Some("1"))),
                    &spec.containers,
                );
                c.ok(
                    "kubernetes: listener tolerations from the listenerTemplate",
                    spec.tolerations
                        .as_ref()
                        .is_some_and(|t| t.iter().any(|t| t.key.as_deref() == Some("ci"))),
                    &spec.tolerations,
                );
                let proxy = get(&env.capi::<Secret>(), &format!("{listener}-proxy"))
                    .await
                    .expect("get proxy Secret");
                let keys: Vec<String> = proxy
                    .and_then(|s| s.data)
                    .map(|d| d.into_keys().collect())
                    .unwrap_or_default();
                c.eq("kubernetes: listener proxy Secret keys", keys, vec!["http_proxy".to_owned(), "no_proxy".to_owned()]);
            }
        }
        c.ok("no runner was created", env.ephemeral_runners().await.expect("list").is_empty(), "ERs");

        // `helm uninstall`: the ARS and the chart objects are deleted together.
        let sas = env.api::<ServiceAccount>();
        let dp = DeleteParams::default();
        for (_, name, _) in samples {
            env.delete_ars(name).await;
        }
        sas.delete("smp-default-gha-rs-no-permission", &dp).await.expect("delete SA");
        sas.delete("smp-kube-gha-rs-kube-mode", &dp).await.expect("delete SA");
        env.api::<Role>()
            .delete("smp-kube-gha-rs-kube-mode", &dp)
            .await
            .expect("delete Role");
        env.api::<RoleBinding>()
            .delete("smp-kube-gha-rs-kube-mode", &dp)
            .await
            .expect("delete RoleBinding");
        for (_, name, _) in samples {
            env.wait_ars_gone(name, SCALE_UP).await;
        }
        for name in ["smp-default-gha-rs-no-permission", "smp-kube-gha-rs-kube-mode"] {
            wait_gone(&sas, name, MINUTE).await;
        }
        wait_gone(&env.api::<Role>(), "smp-kube-gha-rs-kube-mode", MINUTE).await;
        wait_gone(&env.api::<RoleBinding>(), "smp-kube-gha-rs-kube-mode", MINUTE).await;
        for (name, id) in &ids {
            let deletes = env.calls_ending("DELETE", &format!("/runnerscalesets/{id}"));
            c.ok(
                &format!("{name}: DeleteRunnerScaleSet({id}) once, 2xx"),
                deletes.len() == 1 && (200..300).contains(&deletes[0].status),
                deletes.iter().map(|d| d.status).collect::<Vec<_>>(),
            );
        }
        c.ok("no scale set left", env.sim_scale_sets().is_empty(), env.sim_scale_sets());
        c.done();
    })
    .await;
}

// ---- scale set registration --------------------------------------------------------------------

/// T02: a scale set of the same name already exists in the group: its id is reused, nothing is
/// created.
#[tokio::test]
async fn t02_existing_scale_set_is_reused() {
    Env::run("t02", async |env| {
        let name = "t02-set";
        let existing = env
            .sim
            .sim
            .with_state(|s| s.create_scale_set(rarc_sim::testing::scale_set_body(name)))
            .expect("create the scale set in the simulator");
        let (ars, id) = create_and_wait_reconciled(env, env.ars(name)).await;
        let mut c = Checks::default();
        c.eq("the annotated id is the existing one", id, existing.id);
        let creates = env.calls_ending("POST", "/runnerscalesets");
        c.eq("CreateRunnerScaleSet calls", creates.len(), 0);
        let lookups: Vec<_> = env
            .calls(Some("GET"), "/runnerscalesets")
            .into_iter()
            .filter(|c| c.query_param("name").as_deref() == Some(name))
            .collect();
        c.ok(
            "GetRunnerScaleSet(runnerGroupId 1, name)",
            lookups
                .iter()
                .any(|l| l.query_param("runnerGroupId").as_deref() == Some("1")),
            &lookups,
        );
        c.eq("scale sets in the simulator", env.sim_scale_sets().len(), 1);
        c.eq(
            "ARS runner-scale-set-name",
            ars.annotations().get(annotations::RUNNER_SCALE_SET_NAME).cloned(),
            Some(name.to_owned()),
        );
        c.eq(
            "ARS runner-group-name",
            ars.annotations().get(annotations::RUNNER_GROUP_NAME).cloned(),
            Some(existing.runner_group_name.clone()),
        );
        let ers = ers_named(env, name).await.expect("ERS");
        c.eq(
            "ERS runnerScaleSetId",
            ers.spec.ephemeral_runner_spec.runner_scale_set_id,
            id,
        );
        let al = get(&env.al_api(), &env.listener_name(name))
            .await
            .expect("get AL")
            .expect("AL");
        c.eq("AL runnerScaleSetId", al.spec.runner_scale_set_id, id);
        c.done();
    })
    .await;
}

/// T03: `runnerGroup: g1` is looked up by name; while no such group exists the ARS gets a
/// `Ready=False` condition and a Warning event naming it, and nothing is created (no scale set, no
/// ERS, no listener). The lookup is retried: once the group exists the scale set is registered in
/// it.
#[tokio::test]
async fn t03_unknown_runner_group_sets_condition_and_creates_nothing() {
    Env::run("t03", async |env| {
        let name = "t03-set";
        let mut ars = env.ars(name);
        ars.spec.runner_group = Some("g1".into());
        env.create_ars(&ars).await;
        let api = env.ars_api();
        let cond = eventually("a Ready=False condition naming g1", MINUTE, async || {
            let a = get(&api, name).await?.ok_or("no ARS")?;
            match ready_condition(&a) {
                Some(c) if c.status == "False" && c.message.contains("g1") => Ok(c),
                other => Err(format!("{other:?}")),
            }
        })
        .await;
        assert_eq!(cond.reason, "GitHubAPIError", "{cond:?}");
        env.wait_warning(name, "g1").await;

        tokio::time::sleep(Duration::from_secs(3)).await;
        let mut c = Checks::default();
        let a = get(&api, name).await.expect("get").expect("ARS");
        c.ok(
            "no scale set id annotation",
            !a.annotations().contains_key(annotations::RUNNER_SCALE_SET_ID),
            a.annotations(),
        );
        c.ok("no scale set", env.sim_scale_sets().is_empty(), env.sim_scale_sets());
        c.ok("no ERS", list(&env.ers_api()).await.expect("list").is_empty(), "ERS");
        c.ok("no AL", list(&env.al_api()).await.expect("list").is_empty(), "AL");
        let group_lookups = env
            .calls(Some("GET"), "/runnergroups")
            .into_iter()
            .filter(|c| c.query_param("groupName").as_deref() == Some("g1"))
            .count();
        c.ok("GetRunnerGroupByName(g1) was called", group_lookups >= 1, group_lookups);
        c.eq(
            "CreateRunnerScaleSet calls",
            env.calls_ending("POST", "/runnerscalesets").len(),
            0,
        );
        c.done();

        // The group appears: the next retry registers the scale set in it.
        let group = env.sim.sim.with_state(|s| s.add_runner_group("g1"));
        let id = env.wait_scale_set_id(name, MINUTE).await;
        let a = env.wait_ars_phase(name, "Running", MINUTE).await;
        let mut c = Checks::default();
        let set = env
            .sim_scale_sets()
            .into_iter()
            .find(|s| s.id == id)
            .expect("the scale set");
        c.eq("scale set runner group", set.runner_group_id, group.id);
        c.eq(
            "ARS runner-group-name",
            a.annotations().get(annotations::RUNNER_GROUP_NAME).cloned(),
            Some("g1".to_owned()),
        );
        c.ok(
            "GetRunnerScaleSet used the group's id",
            env.calls(Some("GET"), "/runnerscalesets")
                .iter()
                .any(|l| l.query_param("runnerGroupId") == Some(group.id.to_string())),
            group.id,
        );
        let al = get(&env.al_api(), &listener_in_group(env, name, "g1"))
            .await
            .expect("get AL");
        c.ok(
            "AL named with the group",
            al.is_some(),
            listener_in_group(env, name, "g1"),
        );
        c.eq("Ready", ready_condition(&a).map(|c| c.status), Some("True".to_owned()));
        c.done();
    })
    .await;
}

/// T04: `runnerScaleSetLabels: [a, <ars>, a, b]` → CreateRunnerScaleSet sends `<ars>, a, b`, all
/// of type System.
#[tokio::test]
async fn t04_scale_set_labels_sent_deduplicated() {
    Env::run("t04", async |env| {
        let name = "t04-set";
        let mut ars = env.ars(name);
        ars.spec.runner_scale_set_labels = Some(vec!["a".into(), name.into(), "a".into(), "b".into()]);
        let (_, id) = create_and_wait_reconciled(env, ars).await;
        let creates = env.calls_ending("POST", "/runnerscalesets");
        assert_eq!(creates.len(), 1, "one CreateRunnerScaleSet: {creates:?}");
        let body: Value = serde_json::from_str(&creates[0].body).expect("a JSON body");
        let sent: Vec<(String, String)> = body["labels"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .iter()
            .map(|l| {
                (
                    l["type"].as_str().unwrap_or_default().to_owned(),
                    l["name"].as_str().unwrap_or_default().to_owned(),
                )
            })
            .collect();
        let want: Vec<(String, String)> = [name, "a", "b"]
            .iter()
            .map(|n| ("System".to_owned(), (*n).to_owned()))
            .collect();
        assert_eq!(sent, want, "labels sent: {body}");
        let set = env.sim_scale_sets().into_iter().find(|s| s.id == id).expect("set");
        let names: Vec<&str> = set.labels.iter().map(|l| l.name.as_str()).collect();
        assert_eq!(names, [name, "a", "b"]);
    })
    .await;
}

/// T05: changing `runnerGroup` sends UpdateRunnerScaleSet(id, {runnerGroupId}) and updates the
/// annotation (the listener moves to the group's name); changing `runnerScaleSetName` sends
/// UpdateRunnerScaleSet(id, {name}). The id never changes and nothing is created again.
#[tokio::test]
async fn t05_group_and_name_changes_update_the_scale_set() {
    Env::run("t05", async |env| {
        let name = "t05-set";
        let (_, id) = create_and_wait_reconciled(env, env.ars(name)).await;
        let old_listener = env.listener_name(name);
        let group = env.sim.sim.with_state(|s| s.add_runner_group("g2"));

        env.patch_ars(name, json!({"spec": {"runnerGroup": "g2"}})).await;
        let api = env.ars_api();
        wait_obj(&api, name, "ARS runner-group-name g2", MINUTE, |a| {
            match a.annotations().get(annotations::RUNNER_GROUP_NAME) {
                Some(g) if g == "g2" => Ok(()),
                other => Err(format!("{other:?}")),
            }
        })
        .await;
        let mut c = Checks::default();
        let set = env.sim_scale_sets().into_iter().find(|s| s.id == id).expect("set");
        c.eq("scale set group", set.runner_group_id, group.id);
        let patches = env.calls_ending("PATCH", &format!("/runnerscalesets/{id}"));
        let first: Value = patches
            .first()
            .map(|p| serde_json::from_str(&p.body).unwrap_or(Value::Null))
            .unwrap_or(Value::Null);
        c.eq(
            "UpdateRunnerScaleSet runnerGroupId",
            first["runnerGroupId"].clone(),
            json!(group.id),
        );
        c.ok(
            "the group update does not send a name",
            first.get("name").is_none(),
            &first,
        );
        let new_listener = listener_in_group(env, name, "g2");
        wait_obj(&env.al_api(), &new_listener, "AL of group g2", MINUTE, |_| Ok(())).await;
        wait_gone(&env.al_api(), &old_listener, MINUTE).await;

        env.patch_ars(name, json!({"spec": {"runnerScaleSetName": "t05-renamed"}}))
            .await;
        wait_obj(&api, name, "ARS runner-scale-set-name", MINUTE, |a| {
            match a.annotations().get(annotations::RUNNER_SCALE_SET_NAME) {
                Some(n) if n == "t05-renamed" => Ok(()),
                other => Err(format!("{other:?}")),
            }
        })
        .await;
        let set = env.sim_scale_sets().into_iter().find(|s| s.id == id).expect("set");
        c.eq("scale set name", set.name.as_str(), "t05-renamed");
        let patches = env.calls_ending("PATCH", &format!("/runnerscalesets/{id}"));
        let renames: Vec<Value> = patches
            .iter()
            .map(|p| serde_json::from_str(&p.body).unwrap_or(Value::Null))
            .filter(|b| b.get("name").is_some())
            .collect();
        c.ok(
            "UpdateRunnerScaleSet(name) without runnerGroupId",
            renames.len() == 1 && renames[0]["name"] == "t05-renamed" && renames[0].get("runnerGroupId").is_none(),
            &renames,
        );
        c.ok(
            "one UpdateRunnerScaleSet per change (none repeated from a stale cached ARS)",
            patches.len() == 2,
            patches.iter().map(|p| (p.seq, &p.body)).collect::<Vec<_>>(),
        );
        c.eq(
            "CreateRunnerScaleSet calls",
            env.calls_ending("POST", "/runnerscalesets").len(),
            1,
        );
        c.eq("scale sets", env.sim_scale_sets().len(), 1);
        let a = get(&api, name).await.expect("get").expect("ARS");
        c.eq(
            "the id is kept",
            a.annotations().get(annotations::RUNNER_SCALE_SET_ID).cloned(),
            Some(id.to_string()),
        );
        c.done();
    })
    .await;
}

/// T06: the `runner-scale-set-id` annotation garbled, then removed, by a user → the scale set is
/// looked up by name again and the same id annotated; nothing is created.
#[tokio::test]
async fn t06_garbled_scale_set_id_is_looked_up_again() {
    Env::run("t06", async |env| {
        let name = "t06-set";
        let (_, id) = create_and_wait_reconciled(env, env.ars(name)).await;
        let lookups = || {
            env.calls(Some("GET"), "/runnerscalesets")
                .into_iter()
                .filter(|c| c.query_param("name").as_deref() == Some(name))
                .count()
        };
        let api = env.ars_api();
        for (garbled, what) in [(json!("not-a-number"), "garbled"), (Value::Null, "removed")] {
            let before = lookups();
            env.patch_ars(
                name,
                json!({"metadata": {"annotations": {annotations::RUNNER_SCALE_SET_ID: garbled}}}),
            )
            .await;
            wait_obj(
                &api,
                name,
                &format!("the id annotated again ({what})"),
                MINUTE,
                |a| match a.annotations().get(annotations::RUNNER_SCALE_SET_ID) {
                    Some(v) if *v == id.to_string() => Ok(()),
                    other => Err(format!("{other:?}")),
                },
            )
            .await;
            assert!(
                lookups() > before,
                "{what}: the scale set was not looked up by name again"
            );
        }
        assert_eq!(
            env.calls_ending("POST", "/runnerscalesets").len(),
            1,
            "one CreateRunnerScaleSet only"
        );
        assert_eq!(env.sim_scale_sets().len(), 1, "{:?}", env.sim_scale_sets());
        let ers = ers_named(env, name).await.expect("ERS");
        assert_eq!(ers.spec.ephemeral_runner_spec.runner_scale_set_id, id);
    })
    .await;
}

// ---- object graph ------------------------------------------------------------------------------

/// T14: `--exclude-label-propagation-prefix=argocd.argoproj.io/` → an ARS label under it is on
/// none of the ERS, ER, runner pod, AL, listener pod, ServiceAccount, Role and RoleBinding, while
/// another ARS label is on all of them.
#[tokio::test]
async fn t14_excluded_label_prefixes_are_not_propagated() {
    Env::run_with(
        "t14",
        |s| s.exclude_label_propagation_prefixes = vec!["argocd.argoproj.io/".into()],
        async |env| {
            let name = "t14-set";
            let mut ars = env.ars(name);
            ars.labels_mut()
                .insert("argocd.argoproj.io/instance".into(), "x".into());
            ars.labels_mut().insert("team".into(), "platform".into());
            ars.spec.min_runners = Some(1);
            ars.spec.max_runners = Some(1);
            create_and_wait_listening(env, ars).await;
            let er = wait_registered_runners(env, 1, SCALE_UP).await.remove(0);
            let pod = env.wait_runner_pods(1, SCALE_UP).await.remove(0);
            let listener = env.listener_name(name);
            let mut seen: Vec<(&str, BTreeMap<String, String>)> = vec![
                ("ERS", ers_named(env, name).await.expect("ERS").labels().clone()),
                ("ER", er.labels().clone()),
                ("runner pod", pod.labels().clone()),
            ];
            let al = get(&env.al_api(), &listener).await.expect("get").expect("AL");
            seen.push(("AL", al.labels().clone()));
            let listener_pod = get(&env.listener_pod_api(), &listener)
                .await
                .expect("get")
                .expect("pod");
            seen.push(("listener pod", listener_pod.labels().clone()));
            let sa = get(&env.capi::<ServiceAccount>(), &listener)
                .await
                .expect("get")
                .expect("SA");
            seen.push(("ServiceAccount", sa.labels().clone()));
            let role = get(&env.api::<Role>(), &listener).await.expect("get").expect("Role");
            seen.push(("Role", role.labels().clone()));
            let rb = get(&env.api::<RoleBinding>(), &listener)
                .await
                .expect("get")
                .expect("RB");
            seen.push(("RoleBinding", rb.labels().clone()));
            let mut c = Checks::default();
            for (what, l) in &seen {
                c.ok(
                    &format!("{what}: no argocd.argoproj.io/ label"),
                    !l.keys().any(|k| k.starts_with("argocd.argoproj.io/")),
                    l,
                );
                c.eq(
                    &format!("{what}: team label"),
                    l.get("team").map(String::as_str),
                    Some("platform"),
                );
            }
            c.done();
        },
    )
    .await;
}

// ---- listener management -----------------------------------------------------------------------

/// T51: changing maxRunners recreates the AutoscalingListener (new uid, new values, new
/// config.json, a new listener pod that connects) while the ERS and its idle runner are
/// untouched.
#[tokio::test]
async fn t51_min_max_change_recreates_listener_keeps_runner_set() {
    Env::run("t51", async |env| {
        let name = "t51-set";
        let mut ars = env.ars(name);
        ars.spec.min_runners = Some(1);
        ars.spec.max_runners = Some(3);
        let (_, id) = create_and_wait_listening(env, ars).await;
        let runner = wait_registered_runners(env, 1, SCALE_UP).await.remove(0);
        let runner_id = identity(&runner);
        let ers_uid = ers_named(env, name).await.expect("ERS").uid();
        let listener = env.listener_name(name);
        let al_uid = get(&env.al_api(), &listener).await.expect("get").expect("AL").uid();
        let pod_uid = get(&env.listener_pod_api(), &listener)
            .await
            .expect("get")
            .expect("pod")
            .uid();

        env.patch_ars(name, json!({"spec": {"maxRunners": 5}})).await;
        let untouched = async || -> Result<(), String> {
            let er = get(&env.er_api(), &runner.name_any())
                .await?
                .ok_or("the idle runner's EphemeralRunner was deleted")?;
            assert_eq!(identity(&er), runner_id, "the idle runner was deleted or replaced");
            let ers = ers_named(env, name).await?;
            assert_eq!(ers.uid(), ers_uid, "the ERS was replaced");
            Ok(())
        };
        eventually("a new AL with maxRunners 5 and its config", MINUTE, async || {
            untouched().await?;
            let al = get(&env.al_api(), &listener).await?.ok_or("no AL")?;
            if al.uid() == al_uid || deleting(&al) || al.spec.max_runners != 5 || al.spec.min_runners != 1 {
                return Err(format!(
                    "AL uid {:?} (old {al_uid:?}), min {} max {}",
                    al.uid(),
                    al.spec.min_runners,
                    al.spec.max_runners
                ));
            }
            let config = listener_config(env, &listener).await?;
            if config["max_runners"] == json!(5) && config["min_runners"] == json!(1) {
                Ok(())
            } else {
                Err(format!("config.json {config}"))
            }
        })
        .await;
        let pod = env.wait_listener_running(name, id, SCALE_UP).await;
        assert_ne!(pod.uid(), pod_uid, "the listener pod was recreated");
        // The new listener's first patch (patchID 0, replicas 1) keeps the idle runner.
        let until = Instant::now() + Duration::from_secs(5);
        while Instant::now() < until {
            untouched().await.expect("list");
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        let live: Vec<String> = names(&env.ephemeral_runners().await.expect("list"));
        assert_eq!(live, [runner.name_any()], "still exactly the one idle runner");
    })
    .await;
}

/// T52: rotated credentials reach the listener: the Secret `gh` gets a new token (the old one is
/// revoked in the simulator), the listener's config.json follows and its pod is recreated and
/// opens a new session with the new token.
#[tokio::test]
async fn t52_rotated_credentials_reach_the_listener_config() {
    Env::run("t52", async |env| {
        let name = "t52-set";
        let (_, id) = create_and_wait_listening(env, env.ars(name)).await;
        let listener = env.listener_name(name);
        let old_pod = get(&env.listener_pod_api(), &listener)
            .await
            .expect("get")
            .expect("pod")
            .uid();
        let old_sessions: BTreeSet<String> = env.sessions().into_iter().map(|s| s.session_id).collect();

        let rotated = "ghp_rotatedtoken000000000000000000000000";
        env.sim.sim.with_state(|s| s.pats.push(rotated.to_owned()));
        env.api::<Secret>()
            .patch(
                SECRET,
                &PatchParams::default(),
                &Patch::Merge(&json!({"stringData": {"github_token": rotated}})),
            )
            .await
            .expect("rotate the Secret");
        env.sim
            .sim
            .with_state(|s| s.pats.retain(|p| p != rarc_sim::auth::DEFAULT_PAT));

        eventually("config.json to carry the new token", MINUTE, async || {
            let config = listener_config(env, &listener).await?;
            if config["github_token"] == json!(rotated) {
                Ok(())
            } else {
                Err("still the old token".into())
            }
        })
        .await;
        eventually("a new listener pod with a new session", SCALE_UP, async || {
            let pod = get(&env.listener_pod_api(), &listener).await?.ok_or("no pod")?;
            if pod.uid() == old_pod || pod_phase(&pod) != "Running" {
                return Err(format!("pod uid {:?} phase {}", pod.uid(), pod_phase(&pod)));
            }
            let sessions: Vec<_> = env
                .sessions()
                .into_iter()
                .filter(|s| s.scale_set_id == id && !old_sessions.contains(&s.session_id))
                .collect();
            if sessions.is_empty() {
                Err(format!("no new session: {:?}", env.sessions()))
            } else {
                Ok(())
            }
        })
        .await;
    })
    .await;
}

/// T53: the listener's Role rules and RoleBinding subjects edited by hand, and the Role deleted,
/// are restored.
#[tokio::test]
async fn t53_role_drift_is_restored() {
    Env::run("t53", async |env| {
        let name = "t53-set";
        create_and_wait_reconciled(env, env.ars(name)).await;
        let listener = env.listener_name(name);
        let roles = env.api::<Role>();
        let bindings = env.api::<RoleBinding>();
        let rules_ok = |r: &Role| -> Result<(), String> {
            let rules: Vec<PolicyRule> = r.rules.clone().unwrap_or_default();
            let ers_rule = rules.iter().any(|r| {
                r.resources.as_deref() == Some(&["ephemeralrunnersets".to_owned()][..])
                    && r.resource_names.as_deref() == Some(&[name.to_owned()][..])
                    && r.verbs == ["patch"]
            });
            let er_rule = rules.iter().any(|r| {
                r.resources.as_ref().is_some_and(|x| {
                    x.contains(&"ephemeralrunners".to_owned()) && x.contains(&"ephemeralrunners/status".to_owned())
                }) && r.verbs == ["patch"]
            });
            if rules.len() == 2 && ers_rule && er_rule {
                Ok(())
            } else {
                Err(format!("rules {rules:?}"))
            }
        };
        let role = wait_obj(&roles, &listener, "listener Role", MINUTE, rules_ok).await;

        roles
            .patch(
                &listener,
                &PatchParams::default(),
                &Patch::Merge(
                    &json!({"rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list"]}]}),
                ),
            )
            .await
            .expect("edit the Role");
        wait_obj(&roles, &listener, "Role rules restored", MINUTE, rules_ok).await;

        let subject_ok = |rb: &RoleBinding| -> Result<(), String> {
            let s = rb.subjects.clone().unwrap_or_default();
            if s.len() == 1 && s[0].name == listener && s[0].namespace.as_deref() == Some(env.cns.as_str()) {
                Ok(())
            } else {
                Err(format!("subjects {s:?}"))
            }
        };
        wait_obj(&bindings, &listener, "listener RoleBinding", MINUTE, subject_ok).await;
        bindings
            .patch(
                &listener,
                &PatchParams::default(),
                &Patch::Merge(
                    &json!({"subjects": [{"kind": "ServiceAccount", "name": "intruder", "namespace": env.ns}]}),
                ),
            )
            .await
            .expect("edit the RoleBinding");
        wait_obj(
            &bindings,
            &listener,
            "RoleBinding subjects restored",
            MINUTE,
            subject_ok,
        )
        .await;

        roles
            .delete(&listener, &DeleteParams::default())
            .await
            .expect("delete the Role");
        let again = wait_obj(&roles, &listener, "Role recreated", MINUTE, |r| {
            if r.uid() == role.uid() {
                Err("the old Role".into())
            } else {
                rules_ok(r)
            }
        })
        .await;
        assert_eq!(
            again.labels().get(labels::LISTENER_NAME),
            Some(&listener),
            "{:?}",
            again.labels()
        );
    })
    .await;
}

/// T55: the AutoscalingListener deleted → its cleanup removes its pod, config Secret, RoleBinding,
/// Role and ServiceAccount and its finalizer; the ARS controller creates it again with all its
/// objects (new uids) and the listener connects again. The ARS and ERS are kept.
#[tokio::test]
async fn t55_deleted_listener_is_recreated_with_all_its_objects() {
    Env::run("t55", async |env| {
        let name = "t55-set";
        let (ars, id) = create_and_wait_listening(env, env.ars(name)).await;
        let listener = env.listener_name(name);
        let config_name = format!("{listener}-config");
        let ers_uid = ers_named(env, name).await.expect("ERS").uid();
        let uids = async || -> Result<BTreeMap<&'static str, Option<String>>, String> {
            Ok(BTreeMap::from([
                (
                    "AutoscalingListener",
                    get(&env.al_api(), &listener).await?.and_then(|o| o.uid()),
                ),
                (
                    "Pod",
                    get(&env.listener_pod_api(), &listener).await?.and_then(|o| o.uid()),
                ),
                (
                    "ServiceAccount",
                    get(&env.capi::<ServiceAccount>(), &listener)
                        .await?
                        .and_then(|o| o.uid()),
                ),
                (
                    "config Secret",
                    get(&env.capi::<Secret>(), &config_name).await?.and_then(|o| o.uid()),
                ),
                ("Role", get(&env.api::<Role>(), &listener).await?.and_then(|o| o.uid())),
                (
                    "RoleBinding",
                    get(&env.api::<RoleBinding>(), &listener).await?.and_then(|o| o.uid()),
                ),
            ]))
        };
        let before = uids().await.expect("uids");
        assert!(
            before.values().all(Option::is_some),
            "every listener object exists: {before:?}"
        );

        env.al_api()
            .delete(&listener, &DeleteParams::default())
            .await
            .expect("delete the AL");
        eventually("every listener object replaced", SCALE_UP, async || {
            let now = uids().await?;
            let stale: Vec<&str> = now
                .iter()
                .filter(|(k, v)| v.is_none() || **v == before[*k])
                .map(|(k, _)| *k)
                .collect();
            if stale.is_empty() {
                Ok(())
            } else {
                Err(format!("not yet replaced: {stale:?}"))
            }
        })
        .await;
        env.wait_listener_running(name, id, SCALE_UP).await;
        let a = get(&env.ars_api(), name).await.expect("get").expect("ARS");
        assert_eq!(a.uid(), ars.uid(), "the ARS is kept");
        assert_eq!(
            ers_named(env, name).await.expect("ERS").uid(),
            ers_uid,
            "the ERS is kept"
        );
    })
    .await;
}

// ---- runner spec changes -----------------------------------------------------------------------

/// T62: five ARS updates within about a second (template and maxRunners) → never more than one
/// ERS or live AutoscalingListener, and at the end exactly one ERS (the same object, updated in
/// place) carrying the last template and one AL with the last maxRunners.
#[tokio::test]
async fn t62_burst_of_updates_leaves_exactly_one_runner_set() {
    Env::run("t62", async |env| {
        let name = "t62-set";
        let (ars, _) = create_and_wait_reconciled(env, env.ars(name)).await;
        let ers_uid = ers_named(env, name).await.expect("ERS").uid();
        let mut peak_ers = 0;
        let mut peak_al = 0;
        let mut sample = async || -> Result<(), String> {
            let owned = env.owned_ers(&ars).await?;
            peak_ers = peak_ers.max(list(&env.ers_api()).await?.len().max(owned.len()));
            let als = list(&env.al_api()).await?;
            peak_al = peak_al.max(als.iter().filter(|a| !deleting(*a)).count());
            Ok(())
        };
        for i in 1..=5 {
            let mut template = env.ars(name).spec.template.expect("template");
            template.spec.as_mut().expect("spec").containers[0].env = Some(vec![k8s_openapi::api::core::v1::EnvVar {
                name: "BURST".into(),
                value: Some(i.to_string()),
                ..Default::default()
            }]);
            env.patch_ars(name, json!({"spec": {"template": template, "maxRunners": 10 + i}}))
                .await;
            sample().await.expect("sample");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        let listener = env.listener_name(name);
        eventually("the last update to be reconciled", MINUTE, async || {
            sample().await?;
            let ers = ers_named(env, name).await?;
            let env_vars = ers
                .spec
                .ephemeral_runner_spec
                .pod_template
                .spec
                .as_ref()
                .and_then(|s| s.containers[0].env.clone())
                .unwrap_or_default();
            let al = get(&env.al_api(), &listener).await?.ok_or("no AL")?;
            let a = get(&env.ars_api(), name).await?.ok_or("no ARS")?;
            let phase = a.status.as_ref().and_then(|s| s.phase.clone()).unwrap_or_default();
            if env_vars.iter().any(|e| e.value.as_deref() == Some("5"))
                && al.spec.max_runners == 15
                && !deleting(&al)
                && phase == "Running"
            {
                Ok(())
            } else {
                Err(format!(
                    "ERS env {env_vars:?}, AL max {}, phase {phase}",
                    al.spec.max_runners
                ))
            }
        })
        .await;
        // A little longer: nothing else appears once the updates settled.
        for _ in 0..6 {
            sample().await.expect("sample");
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        let owned = env.owned_ers(&ars).await.expect("list");
        assert_eq!(names(&owned), [name], "exactly one ERS owned by the ARS");
        assert_eq!(owned[0].uid(), ers_uid, "the ERS was updated in place, not replaced");
        assert_eq!(peak_ers, 1, "never more than one ERS");
        assert_eq!(peak_al, 1, "never more than one live AutoscalingListener");
        assert_eq!(names(&list(&env.al_api()).await.expect("list")), [listener]);
    })
    .await;
}

/// T63: a label-only change on the ARS recreates no runner. rarc's policy (ARC master's): the
/// ERS labels are patched and the listener is recreated with the new labels; the running runner,
/// its EphemeralRunner and pod, are kept.
#[tokio::test]
async fn t63_label_only_change_recreates_no_runner() {
    Env::run("t63", async |env| {
        let name = "t63-set";
        let mut ars = env.ars(name);
        ars.spec.min_runners = Some(1);
        ars.spec.max_runners = Some(2);
        create_and_wait_listening(env, ars).await;
        let runner = wait_registered_runners(env, 1, SCALE_UP).await.remove(0);
        let pod = env.wait_runner_pods(1, SCALE_UP).await.remove(0);
        let (er_id, pod_id) = (identity(&runner), identity(&pod));
        let untouched = async || -> Result<(), String> {
            let er = get(&env.er_api(), &runner.name_any()).await?;
            assert_eq!(
                er.as_ref().map(identity),
                Some(er_id.clone()),
                "the runner's ER was deleted or replaced"
            );
            let p = get(&env.runner_pod_api(), &pod.name_any()).await?;
            assert_eq!(
                p.as_ref().map(identity),
                Some(pod_id.clone()),
                "the runner's pod was deleted or replaced"
            );
            Ok(())
        };

        env.patch_ars(name, json!({"metadata": {"labels": {"team": "blue"}}}))
            .await;
        let listener = env.listener_name(name);
        eventually("the ERS and the AL to carry the new label", MINUTE, async || {
            untouched().await?;
            let ers = ers_named(env, name).await?;
            let al = get(&env.al_api(), &listener).await?.ok_or("no AL")?;
            let (a, b) = (ers.labels().get("team"), al.labels().get("team"));
            if a.map(String::as_str) == Some("blue") && b.map(String::as_str) == Some("blue") && !deleting(&al) {
                Ok(())
            } else {
                Err(format!("ERS team {a:?}, AL team {b:?}"))
            }
        })
        .await;
        let until = Instant::now() + Duration::from_secs(6);
        while Instant::now() < until {
            untouched().await.expect("list");
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        let live: Vec<EphemeralRunner> = env
            .ephemeral_runners()
            .await
            .expect("list")
            .into_iter()
            .filter(|e| !deleting(e))
            .collect();
        assert_eq!(names(&live), [runner.name_any()], "no runner added or replaced");
    })
    .await;
}

// ---- controller-level --------------------------------------------------------------------------

/// T80: version gate with rarc's `refuse` policy: an ARS labelled `0.13.0` gets `Ready=False`
/// naming the label and a Warning event; nothing is created, GitHub is not called, and the ARS is
/// NOT deleted. Relabelled `0.14.1` (ARC 0.14, patch skew) it is reconciled.
#[tokio::test]
async fn t80_version_gate_refuses_incompatible_versions_without_deleting() {
    Env::run("t80", async |env| {
        let name = "t80-set";
        let mut ars = env.ars(name);
        ars.labels_mut().insert(labels::VERSION.into(), "0.13.0".into());
        let created = env.create_ars(&ars).await;
        let api = env.ars_api();
        let cond = eventually("Ready=False naming the version label", MINUTE, async || {
            let a = get(&api, name).await?.ok_or("the ARS was deleted")?;
            match ready_condition(&a) {
                Some(c) if c.status == "False" && c.message.contains("0.13.0") => Ok(c),
                other => Err(format!("{other:?}")),
            }
        })
        .await;
        assert!(cond.message.contains(labels::VERSION), "{cond:?}");
        let event = env.wait_warning(name, "0.13.0").await;
        assert_eq!(event.involved_object.kind.as_deref(), Some("AutoscalingRunnerSet"));

        tokio::time::sleep(Duration::from_secs(3)).await;
        let a = get(&api, name)
            .await
            .expect("get")
            .expect("the ARS must not be deleted");
        let mut c = Checks::default();
        c.eq("same ARS", a.uid(), created.uid());
        c.ok("not being deleted", !deleting(&a), &a.metadata.deletion_timestamp);
        c.ok(
            "no scale set id",
            !a.annotations().contains_key(annotations::RUNNER_SCALE_SET_ID),
            a.annotations(),
        );
        c.ok("no ERS", list(&env.ers_api()).await.expect("list").is_empty(), "ERS");
        c.ok("no AL", list(&env.al_api()).await.expect("list").is_empty(), "AL");
        c.ok(
            "GitHub not called",
            env.sim.sim.calls().is_empty(),
            env.sim.sim.calls().len(),
        );
        c.done();

        env.patch_ars(name, json!({"metadata": {"labels": {labels::VERSION: "0.14.1"}}}))
            .await;
        let id = env.wait_scale_set_id(name, MINUTE).await;
        let a = wait_obj(&api, name, "Ready=True", MINUTE, |a| match ready_condition(a) {
            Some(c) if c.status == "True" => Ok(()),
            other => Err(format!("{other:?}")),
        })
        .await;
        assert_eq!(a.status.as_ref().and_then(|s| s.phase.as_deref()), Some("Running"));
        let ers = ers_named(env, name).await.expect("ERS");
        assert_eq!(ers.spec.ephemeral_runner_spec.runner_scale_set_id, id);
        assert!(
            get(&env.al_api(), &env.listener_name(name))
                .await
                .expect("get")
                .is_some(),
            "AL"
        );
    })
    .await;
}

/// T83: the `rarc-controller` binary with `--metrics-addr` serves ARC's four `gha_controller_*`
/// gauges with the labels of §6 (and the reconcile counters); the series of a deleted scale set
/// go away with it.
#[tokio::test]
async fn t83_metrics_exposes_the_gha_controller_gauges() {
    Env::run("t83", async |env| {
        env.stop_controller_gracefully().await;
        let addr = format!("127.0.0.1:{}", free_port());
        let mut controller = ControllerProcess::spawn(env, "t83-controller", &[format!("--metrics-addr={addr}")]);
        eventually("the metrics server", MINUTE, async || {
            controller.assert_running();
            scrape(&addr).await
        })
        .await;

        let name = "t83-set";
        let mut ars = env.ars(name);
        ars.spec.min_runners = Some(1);
        ars.spec.max_runners = Some(2);
        create_and_wait_listening(env, ars).await;
        let listener = env.listener_name(name);
        let want_runner_labels = BTreeMap::from([
            ("name".to_owned(), name.to_owned()),
            ("namespace".to_owned(), env.ns.clone()),
            ("repository".to_owned(), String::new()),
            ("organization".to_owned(), ORG.to_owned()),
            ("enterprise".to_owned(), String::new()),
        ]);
        let want_listener_labels = BTreeMap::from([
            ("name".to_owned(), listener.clone()),
            ("namespace".to_owned(), env.cns.clone()),
            ("repository".to_owned(), String::new()),
            ("organization".to_owned(), ORG.to_owned()),
            ("enterprise".to_owned(), String::new()),
        ]);
        let text = eventually("the gauges of a running listener and runner", SCALE_UP, async || {
            controller.assert_running();
            let text = scrape(&addr).await?;
            let series = prometheus::parse(&text);
            let value = |metric: &str, want: &BTreeMap<String, String>| {
                series
                    .iter()
                    .find(|s| s.name == metric && &s.labels == want)
                    .and_then(|s| s.value)
            };
            let got = (
                value("gha_controller_running_listeners", &want_listener_labels),
                value("gha_controller_running_ephemeral_runners", &want_runner_labels),
                value("gha_controller_pending_ephemeral_runners", &want_runner_labels),
                value("gha_controller_failed_ephemeral_runners", &want_runner_labels),
            );
            if got == (Some(1.0), Some(1.0), Some(0.0), Some(0.0)) {
                Ok(text)
            } else {
                Err(format!("(listeners, running, pending, failed) = {got:?} in\n{text}"))
            }
        })
        .await;
        for metric in [
            "gha_controller_running_listeners",
            "gha_controller_running_ephemeral_runners",
            "gha_controller_pending_ephemeral_runners",
            "gha_controller_failed_ephemeral_runners",
        ] {
            assert!(
                text.contains(&format!("# TYPE {metric} gauge")),
                "{metric} TYPE line:\n{text}"
            );
        }
        let series = prometheus::parse(&text);
        assert!(
            series.iter().any(|s| s.name == "controller_runtime_reconcile_total"
                && s.labels.get("controller").map(String::as_str) == Some("autoscalingrunnerset")
                && s.value.is_some_and(|v| v >= 1.0)),
            "reconcile counter:\n{text}"
        );

        env.delete_ars(name).await;
        env.wait_ars_gone(name, SCALE_UP).await;
        eventually("the deleted scale set's series to go", MINUTE, async || {
            let text = scrape(&addr).await?;
            let left: Vec<Series> = prometheus::parse(&text)
                .into_iter()
                .filter(|s| {
                    s.name.starts_with("gha_controller_")
                        && (s.labels.get("name") == Some(&name.to_owned()) || s.labels.get("name") == Some(&listener))
                })
                .collect();
            if left.is_empty() {
                Ok(())
            } else {
                Err(format!("{left:?}"))
            }
        })
        .await;
        controller.assert_running();
        controller.kill().await;
    })
    .await;
}

/// T84: two `rarc-controller` replicas with leader election: only the Lease holder reconciles
/// (its events, its log); after it is killed (SIGKILL, no release) the other takes the Lease over
/// and carries on, and no runner is duplicated.
#[tokio::test]
async fn t84_leader_election_only_one_replica_reconciles() {
    Env::run("t84", async |env| {
        env.stop_controller_gracefully().await;
        let lease_id = format!("rarc-{}", env.ns);
        let flags = [
            "--metrics-addr=0".to_owned(),
            "--enable-leader-election".to_owned(),
            format!("--leader-election-id={lease_id}"),
        ];
        let leases: Api<Lease> = Api::namespaced(env.client.clone(), &env.cns);
        let holder = async || -> Result<String, String> {
            let lease = get(&leases, &lease_id).await?.ok_or("no Lease")?;
            lease
                .spec
                .and_then(|s| s.holder_identity)
                .filter(|h| !h.is_empty())
                .ok_or_else(|| "no holder".to_owned())
        };
        let mut first = ControllerProcess::spawn(env, "t84-first", &flags);
        eventually("the first replica to hold the Lease", MINUTE, async || {
            first.assert_running();
            match holder().await? {
                h if h == "t84-first" => Ok(()),
                h => Err(format!("held by {h}")),
            }
        })
        .await;
        let mut second = ControllerProcess::spawn(env, "t84-second", &flags);

        let name = "t84-set";
        let mut ars = env.ars(name);
        ars.spec.min_runners = Some(1);
        ars.spec.max_runners = Some(3);
        let (_, id) = create_and_wait_listening(env, ars).await;
        let runner = wait_registered_runners(env, 1, SCALE_UP).await.remove(0);
        first.assert_running();
        second.assert_running();
        assert_eq!(holder().await.expect("lease"), "t84-first");
        let events = env.events_about(&env.ns, name).await.expect("events");
        let instances: BTreeSet<String> = events.iter().filter_map(|e| e.reporting_instance.clone()).collect();
        assert_eq!(
            instances,
            BTreeSet::from(["t84-first".to_owned()]),
            "events about the ARS come from the leader only: {:?}",
            events
                .iter()
                .map(|e| (&e.reason, &e.reporting_instance))
                .collect::<Vec<_>>()
        );
        let standby_log = second.log();
        assert!(
            !standby_log.contains("controllers started") && !standby_log.contains("became leader"),
            "the standby reconciled:\n{standby_log}"
        );

        // Failover: the leader dies without releasing the Lease; the standby takes over after
        // it expires and reconciles a new minRunners.
        first.kill().await;
        env.patch_ars(name, json!({"spec": {"minRunners": 2}})).await;
        let mut peak = 0;
        let mut registered: BTreeMap<String, BTreeSet<i64>> = BTreeMap::new();
        let runners = eventually(
            "the standby to take over and add the second runner",
            SCALE_UP,
            async || {
                second.assert_running();
                let ers = env.ephemeral_runners().await?;
                let live: Vec<EphemeralRunner> = ers.iter().filter(|e| !deleting(*e)).cloned().collect();
                peak = peak.max(live.len());
                for r in env.sim_runners().into_iter().filter(|r| r.scale_set_id == id) {
                    registered.entry(r.name).or_default().insert(r.id);
                }
                let h = holder().await?;
                if h == "t84-second" && live.len() == 2 && live.iter().all(|e| e.runner_id() > 0) {
                    Ok(live)
                } else {
                    Err(format!("lease held by {h}\n{}", describe_ers(&ers)))
                }
            },
        )
        .await;
        assert!(peak <= 2, "at most minRunners 2 EphemeralRunners at once, saw {peak}");
        assert!(
            runners.iter().any(|r| r.name_any() == runner.name_any()),
            "the first runner was kept: {:?}",
            names(&runners)
        );
        let ids: BTreeSet<i64> = runners.iter().map(EphemeralRunner::runner_id).collect();
        assert_eq!(ids.len(), 2, "two distinct runner ids: {ids:?}");
        for (runner, ids) in &registered {
            assert_eq!(ids.len(), 1, "runner {runner} registered twice: {ids:?}");
        }
        let sim_runners: Vec<_> = env.sim_runners().into_iter().filter(|r| r.scale_set_id == id).collect();
        assert_eq!(sim_runners.len(), 2, "{sim_runners:?}");
        let log = second.log();
        assert!(
            log.contains("became leader") && log.contains("controllers started"),
            "the new leader's log:\n{log}"
        );
        second.kill().await;
    })
    .await;
}

/// T85: GitHub hangs on one scale set's DeleteRunnerScaleSet. While that call hangs (each
/// attempt has a 10 s deadline, `RARC_GITHUB_CALL_TIMEOUT_SECS`), another scale set is registered
/// and reconciled; the hung attempt then times out and is retried, and once GitHub answers again
/// the deletion completes.
#[tokio::test]
async fn t85_hanging_github_does_not_block_other_scale_sets() {
    Env::run_with(
        "t85",
        |s| s.github_call_timeout_secs = 10,
        async |env| {
            // A's listener is not on the host network: it never reaches the simulator, so it
            // opens (and deletes) no session, whose path the fault would also match.
            let mut a = env.ars("t85-a");
            a.spec.listener_template = None;
            let (_, id_a) = create_and_wait_reconciled(env, a).await;
            rarc_sim::testing::fault(
                &env.sim,
                &format!(r#"{{"path":"/runnerscalesets/{id_a}","method":"DELETE","kind":"hang"}}"#),
            );
            let hits = || env.sim.sim.faults().iter().map(|f| f.hits).sum::<u32>();
            env.delete_ars("t85-a").await;
            eventually("DeleteRunnerScaleSet to hang", MINUTE, async || {
                if hits() >= 1 {
                    Ok(())
                } else {
                    Err("not called yet".into())
                }
            })
            .await;

            let (_, id_b) = create_and_wait_reconciled(env, env.ars("t85-b")).await;
            assert_ne!(id_a, id_b);
            assert_eq!(
                hits(),
                1,
                "B must be reconciled while A's first DeleteRunnerScaleSet attempt still hangs"
            );
            let a_now = get(&env.ars_api(), "t85-a").await.expect("get");
            assert!(
                a_now.as_ref().is_some_and(deleting),
                "A waits for its scale set to be deleted"
            );

            eventually("the hung attempt to time out and be retried", MINUTE, async || {
                if hits() >= 2 {
                    Ok(())
                } else {
                    Err(format!("{} hit(s)", hits()))
                }
            })
            .await;
            assert!(
                env.calls_ending("DELETE", &format!("/runnerscalesets/{id_a}"))
                    .iter()
                    .all(|c| !(200..300).contains(&c.status)),
                "no DeleteRunnerScaleSet succeeded while it hung"
            );
            env.sim.sim.clear_faults();
            env.wait_ars_gone("t85-a", SCALE_UP).await;
            let deleted = env.calls_ending("DELETE", &format!("/runnerscalesets/{id_a}"));
            assert!(
                deleted.iter().any(|c| (200..300).contains(&c.status)),
                "DeleteRunnerScaleSet({id_a}) succeeded in the end: {deleted:?}"
            );
            let sets: Vec<i64> = env.sim_scale_sets().iter().map(|s| s.id).collect();
            assert_eq!(sets, [id_b]);
            env.wait_ars_phase("t85-b", "Running", MINUTE).await;
        },
    )
    .await;
}

/// T86: the scale set is deleted on GitHub behind the controller's back (the listener loses its
/// session). After a controller restart the stored id is revalidated, the 404 re-registers the
/// scale set under a new id, and the listener is rebuilt for it (AL, config.json, session).
#[tokio::test]
async fn t86_deleted_scale_set_is_registered_again() {
    Env::run("t86", async |env| {
        let name = "t86-set";
        let (_, old) = create_and_wait_listening(env, env.ars(name)).await;
        env.sim
            .sim
            .with_state(|s| s.delete_scale_set(old))
            .expect("delete the scale set server-side");
        env.stop_controller().await;
        env.start_controller().await;

        let api = env.ars_api();
        let new = eventually("a new scale set id", MINUTE, async || {
            let a = get(&api, name).await?.ok_or("no ARS")?;
            match a
                .annotations()
                .get(annotations::RUNNER_SCALE_SET_ID)
                .and_then(|v| v.parse::<i64>().ok())
            {
                Some(id) if id != old && id > 0 => Ok(id),
                other => Err(format!("{other:?}")),
            }
        })
        .await;
        let listener = env.listener_name(name);
        wait_obj(&env.al_api(), &listener, "AL for the new id", MINUTE, |al| {
            if al.spec.runner_scale_set_id == new && !deleting(al) {
                Ok(())
            } else {
                Err(format!("AL id {}", al.spec.runner_scale_set_id))
            }
        })
        .await;
        env.wait_listener_running(name, new, SCALE_UP).await;
        let mut c = Checks::default();
        let config = listener_config(env, &listener).await.expect("config");
        c.eq(
            "config.json runner_scale_set_id",
            config["runner_scale_set_id"].clone(),
            json!(new),
        );
        let ers = ers_named(env, name).await.expect("ERS");
        c.eq(
            "ERS runnerScaleSetId",
            ers.spec.ephemeral_runner_spec.runner_scale_set_id,
            new,
        );
        let sets: Vec<(i64, String)> = env.sim_scale_sets().iter().map(|s| (s.id, s.name.clone())).collect();
        c.eq("scale sets", sets, vec![(new, name.to_owned())]);
        let events = env.events_about(&env.ns, name).await.expect("events");
        c.ok(
            "a ScaleSetNotFound Warning event",
            events
                .iter()
                .any(|e| e.reason.as_deref() == Some("ScaleSetNotFound") && e.type_.as_deref() == Some("Warning")),
            events.iter().map(|e| (&e.reason, &e.message)).collect::<Vec<_>>(),
        );
        c.done();
    })
    .await;
}
