//! The harness of the controller's tests against the REAL local cluster (`tests/cluster/up`) and an
//! in-process rarc-sim. Fails (never skips) when the cluster is not up.
//!
//! [`Env::run`] gives a test: the four CRDs (server-side applied once per process), two fresh
//! namespaces (the controller's and the runners'), a simulator with the credentials Secret `gh` in
//! the runner namespace, the `rarc.local/rarc` image (`tests/cluster/rarc-image`, built once per
//! process) and the controller running in-process, watching only this test's runner namespace.
//! After the test body (also when it panics or times out) it deletes every AutoscalingRunnerSet,
//! waits until the controller has removed everything (finalizers included), checks that nothing is
//! left in the cluster or registered in the simulator, stops the controller and deletes both
//! namespaces. Anything left behind fails the test, after it was stripped of its finalizers so the
//! namespaces still go away.
//!
//! Pods reach the simulator at `127.0.0.1`, so runner and listener pods use `hostNetwork: true`;
//! the listener reaches the API server through the `kubernetes` Service (10.96.0.1, kube-proxy).
//! `RUST_LOG` sets the log filter (default `info`).

#![allow(dead_code)] // not every test binary uses every helper

use std::collections::BTreeMap;
use std::fmt::{Debug, Write as _};
use std::panic::AssertUnwindSafe;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::FutureExt as _;
use k8s_openapi::api::core::v1::{Event, Pod, Secret};
use kube::api::{DeleteParams, ListParams, LogParams, Patch, PatchParams, PostParams};
use kube::{Api, Client, Resource, ResourceExt};
use rarc_controller::Settings;
use rarc_controller::context::Context;
use rarc_controller::github::GitHub;
use rarc_controller::run::Readiness;
use rarc_crd::keys::{annotations, labels};
use rarc_crd::{
    AutoscalingListener, AutoscalingRunnerSet, AutoscalingRunnerSetSpec, EphemeralRunner, EphemeralRunnerSet,
};
use rarc_kube_test::TempNamespace;
use rarc_sim::SimServer;
use rarc_sim::calllog::CallRecord;
use rarc_sim::state::{JobState, JobView, RunnerView, SessionView};
use serde::de::DeserializeOwned;
use serde_json::json;
use tokio::sync::OnceCell;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// The organization of every scale set (`<sim url>/my-org`).
pub const ORG: &str = "my-org";
/// The credentials Secret in the runner namespace (`github_token` = the simulator's PAT).
pub const SECRET: &str = "gh";
/// The build version; ARS carry it as `app.kubernetes.io/version` so the version gate passes.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
/// The simulated runner's command in runner pods.
pub const RUNNER_COMMAND: [&str; 2] = ["/usr/local/bin/rarc-sim", "runner"];
/// The listener's command in the image.
pub const LISTENER_ENTRYPOINT: &str = "/rarc-listener";

/// How often the waits poll.
const POLL: Duration = Duration::from_millis(250);
/// The longest a test body may take before it fails (and is torn down).
const BODY_TIMEOUT: Duration = Duration::from_secs(180);
/// How long teardown waits for the controller to delete what the scale sets own.
const TEARDOWN_TIMEOUT: Duration = Duration::from_secs(90);
/// How long a graceful controller stop may take before the task is aborted.
const STOP_TIMEOUT: Duration = Duration::from_secs(20);

static CRDS: OnceCell<()> = OnceCell::const_new();
static IMAGE: OnceCell<String> = OnceCell::const_new();

/// The repository root (controller/..).
fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The cargo profile directory this test binary was built into (`target/debug`), where
/// `cargo build -p rarc-listener -p rarc-sim` puts the binaries the image is made of.
fn profile_dir() -> Option<PathBuf> {
    let exe = std::env::current_exe().ok()?;
    // target/debug/deps/cluster-<hash>
    Some(exe.parent()?.parent()?.to_path_buf())
}

fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(false)
        .with_test_writer()
        .try_init();
}

/// Server-side applies the four CRDs (`rarc_crd::crds_yaml`, as committed in crates/crd/crds) and
/// waits until they are Established.
async fn install_crds(client: &Client) {
    CRDS.get_or_init(|| async {
        let crds = rarc_crd::crds_yaml();
        assert_eq!(
            crds.len(),
            rarc_crd::CRD_NAMES.len(),
            "expected the {} CRDs, found {:?}",
            rarc_crd::CRD_NAMES.len(),
            crds.iter().map(|(file, _)| file).collect::<Vec<_>>()
        );
        rarc_kube_test::install_crds(
            client,
            crds.into_iter().map(|(_, yaml)| yaml),
            &rarc_crd::CRD_NAMES,
            Duration::from_secs(60),
        )
        .await
        .unwrap_or_else(|e| panic!("install the CRDs: {e:?}"));
    })
    .await;
}

/// Builds (or reuses) and imports the test image with tests/cluster/rarc-image; once per process.
pub async fn image() -> String {
    IMAGE
        .get_or_init(|| async {
            let script = repo_root().join("tests/cluster/rarc-image");
            let mut cmd = tokio::process::Command::new(&script);
            if let Some(dir) = profile_dir() {
                for (var, bin) in [("RARC_LISTENER_BIN", "rarc-listener"), ("RARC_SIM_BIN", "rarc-sim")] {
                    if std::env::var_os(var).is_none() && dir.join(bin).is_file() {
                        cmd.env(var, dir.join(bin));
                    }
                }
            }
            let out = cmd
                .output()
                .await
                .unwrap_or_else(|e| panic!("cannot run {}: {e}", script.display()));
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert!(
                out.status.success(),
                "{} failed ({}); build the binaries first: `cargo build -p rarc-listener -p rarc-sim`\n{stderr}",
                script.display(),
                out.status
            );
            let stdout = String::from_utf8_lossy(&out.stdout);
            let image = stdout.lines().last().unwrap_or_default().trim().to_owned();
            assert!(
                image.starts_with("rarc.local/rarc:"),
                "unexpected image reference {image:?}\n{stderr}"
            );
            image
        })
        .await
        .clone()
}

/// Polls `probe` every 250 ms until it returns `Ok`, for at most `timeout`; then panics with
/// `what` and the last `Err` (which should describe the state seen).
pub async fn eventually<T>(what: &str, timeout: Duration, mut probe: impl AsyncFnMut() -> Result<T, String>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        let last = match probe().await {
            Ok(v) => return v,
            Err(e) => e,
        };
        if Instant::now() >= deadline {
            panic!("timed out after {timeout:?} waiting for {what}; last seen: {last}");
        }
        tokio::time::sleep(POLL).await;
    }
}

/// Lists `api` (all objects), as a probe-friendly `Result`.
pub async fn list<K>(api: &Api<K>) -> Result<Vec<K>, String>
where
    K: Resource + Clone + DeserializeOwned + Debug,
{
    api.list(&ListParams::default())
        .await
        .map(|l| l.items)
        .map_err(|e| format!("list {}: {e}", api.resource_url()))
}

/// `GET`, `None` on 404, as a probe-friendly `Result`.
pub async fn get<K>(api: &Api<K>, name: &str) -> Result<Option<K>, String>
where
    K: Resource + Clone + DeserializeOwned + Debug,
{
    api.get_opt(name)
        .await
        .map_err(|e| format!("get {}/{name}: {e}", api.resource_url()))
}

/// Waits until object `name` of `api` is gone.
pub async fn wait_gone<K>(api: &Api<K>, name: &str, timeout: Duration)
where
    K: Resource + Clone + DeserializeOwned + Debug,
{
    eventually(
        &format!("{} {name} to be gone", api.resource_url()),
        timeout,
        async || match get(api, name).await? {
            None => Ok(()),
            Some(o) => Err(format!(
                "still there: deleting {}, finalizers {:?}",
                deleting(&o),
                o.meta().finalizers
            )),
        },
    )
    .await;
}

/// Names of `objects`, sorted.
pub fn names<K: Resource>(objects: &[K]) -> Vec<String> {
    let mut v: Vec<String> = objects
        .iter()
        .map(|o| o.meta().name.clone().unwrap_or_default())
        .collect();
    v.sort();
    v
}

/// True when the object is being deleted.
pub fn deleting<K: Resource>(obj: &K) -> bool {
    obj.meta().deletion_timestamp.is_some()
}

/// `Ready` condition of the ARS status, if any.
pub fn ready_condition(
    ars: &AutoscalingRunnerSet,
) -> Option<k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition> {
    ars.status
        .as_ref()
        .and_then(|s| s.conditions.clone())
        .unwrap_or_default()
        .into_iter()
        .find(|c| c.type_ == "Ready")
}

/// The phase of a pod (`""` when unknown).
pub fn pod_phase(pod: &Pod) -> &str {
    pod.status.as_ref().and_then(|s| s.phase.as_deref()).unwrap_or("")
}

/// Independent checks of one test, all evaluated before it fails, so one wrong field does not hide
/// the others. [`Checks::done`] panics with every failed check.
#[derive(Default)]
pub struct Checks(Vec<String>);

impl Checks {
    /// Records a failure unless `got == want`.
    pub fn eq<T: PartialEq + Debug>(&mut self, what: &str, got: T, want: T) {
        if got != want {
            self.0.push(format!("{what}: got {got:?}, want {want:?}"));
        }
    }

    /// Records a failure unless `ok`; `detail` says what was seen.
    pub fn ok(&mut self, what: &str, ok: bool, detail: impl Debug) {
        if !ok {
            self.0.push(format!("{what}: saw {detail:?}"));
        }
    }

    /// Panics listing every failed check, if any.
    pub fn done(self) {
        assert!(
            self.0.is_empty(),
            "{} check(s) failed:\n- {}",
            self.0.len(),
            self.0.join("\n- ")
        );
    }
}

/// A running controller.
struct Controller {
    token: CancellationToken,
    task: JoinHandle<rarc_controller::Result<()>>,
    readiness: Readiness,
}

/// One test's world: namespaces, simulator, image and an in-process controller.
pub struct Env {
    /// The test's name (namespace prefix).
    pub name: String,
    pub client: Client,
    pub sim: SimServer,
    /// The `rarc.local/rarc:<tag>` image (listener and runner pods).
    pub image: String,
    /// The runner namespace (AutoscalingRunnerSets, runner pods, the `gh` Secret).
    pub ns: String,
    /// The controller namespace (AutoscalingListeners, listener pods).
    pub cns: String,
    /// The controller's settings; [`Env::start_controller`] uses the current value.
    pub settings: Settings,
    runner_ns: Option<TempNamespace>,
    controller_ns: Option<TempNamespace>,
    controller: Option<Controller>,
    finished: bool,
}

impl Env {
    /// Runs `body` in a fresh [`Env`] named `name`, with the default settings, then tears it down
    /// (see the module docs). Panics (fails the test) when the body fails or times out, or when
    /// teardown finds anything left behind.
    pub async fn run(name: &str, body: impl AsyncFnOnce(&mut Env)) {
        Self::run_with(name, |_| {}, body).await;
    }

    /// [`Env::run`] with `tweak` applied to the controller settings before the controller starts.
    pub async fn run_with(name: &str, tweak: impl FnOnce(&mut Settings), body: impl AsyncFnOnce(&mut Env)) {
        let mut env = Env::start_with(name, tweak).await;
        let outcome = AssertUnwindSafe(tokio::time::timeout(BODY_TIMEOUT, body(&mut env)))
            .catch_unwind()
            .await;
        let failure = match outcome {
            Ok(Ok(())) => None,
            Ok(Err(_)) => Some(format!("the test body did not finish within {BODY_TIMEOUT:?}")),
            Err(panic) => Some(panic_message(&panic)),
        };
        if failure.is_some() {
            eprintln!("==== {name}: state when the test failed ====\n{}", env.describe().await);
        }
        let problems = env.teardown().await;
        match (failure, problems.is_empty()) {
            (None, true) => {}
            (None, false) => panic!("{name}: teardown found problems:\n- {}", problems.join("\n- ")),
            (Some(f), true) => panic!("{name}: {f}"),
            (Some(f), false) => panic!("{name}: {f}\nteardown also found:\n- {}", problems.join("\n- ")),
        }
    }

    /// Sets everything up and starts the controller (default settings).
    pub async fn start(name: &str) -> Env {
        Self::start_with(name, |_| {}).await
    }

    /// Sets everything up, applies `tweak` to the settings and starts the controller.
    pub async fn start_with(name: &str, tweak: impl FnOnce(&mut Settings)) -> Env {
        init_tracing();
        let client = rarc_kube_test::client()
            .await
            .unwrap_or_else(|e| panic!("no test cluster (run tests/cluster/up): {e}"));
        install_crds(&client).await;
        let image = image().await;
        let prefix = name.replace('_', "-");
        let runner_ns = TempNamespace::new(&client, &format!("{}-r", truncate(&prefix, 30)))
            .await
            .unwrap_or_else(|e| panic!("runner namespace: {e}"));
        let controller_ns = TempNamespace::new(&client, &format!("{}-c", truncate(&prefix, 30)))
            .await
            .unwrap_or_else(|e| panic!("controller namespace: {e}"));
        let ns = runner_ns.name().to_owned();
        let cns = controller_ns.name().to_owned();
        // A 2 s long poll: idle listeners re-send their count (an ERS patch) once per poll; shorter
        // polls only add API server load, since messages are delivered as soon as they exist.
        let sim = rarc_sim::testing::sim_with(rarc_sim::config::SimSettings {
            long_poll_ms: 2000,
            ..rarc_sim::config::SimSettings::default()
        })
        .await;

        let secrets: Api<Secret> = Api::namespaced(client.clone(), &ns);
        let secret: Secret = serde_json::from_value(json!({
            "metadata": {"name": SECRET},
            "stringData": {"github_token": rarc_sim::auth::DEFAULT_PAT},
        }))
        .expect("a Secret");
        secrets
            .create(&PostParams::default(), &secret)
            .await
            .unwrap_or_else(|e| panic!("create Secret {ns}/{SECRET}: {e}"));

        let mut settings = test_settings(&cns, &image, &ns);
        tweak(&mut settings);
        let mut env = Env {
            name: name.to_owned(),
            client,
            sim,
            image,
            ns,
            cns,
            settings,
            runner_ns: Some(runner_ns),
            controller_ns: Some(controller_ns),
            controller: None,
            finished: false,
        };
        env.start_controller().await;
        tracing::info!(test = name, runners = %env.ns, controller = %env.cns, sim = %env.sim.url, "environment ready");
        env
    }

    /// Starts the controller in-process (a fresh Context, as after a process restart) and waits
    /// until its controllers run. Panics when it is already running.
    pub async fn start_controller(&mut self) {
        assert!(self.controller.is_none(), "the controller is already running");
        let github = GitHub::new(self.settings.github_call_timeout()).with_retry(rarc_sim::testing::fast_retry());
        let ctx = Arc::new(Context::with_github(self.client.clone(), self.settings.clone(), github));
        let token = CancellationToken::new();
        let readiness = Readiness::default();
        let task = tokio::spawn(rarc_controller::run::run(
            self.client.clone(),
            ctx,
            readiness.clone(),
            token.clone(),
        ));
        self.controller = Some(Controller { token, task, readiness });
        let readiness = self.controller.as_ref().map(|c| c.readiness.clone()).expect("just set");
        eventually("the controller to be ready", Duration::from_secs(30), async || {
            let finished = self.controller.as_ref().is_some_and(|c| c.task.is_finished());
            assert!(!finished, "the controller stopped right after starting (see its log)");
            if readiness.get() {
                Ok(())
            } else {
                Err("not ready".into())
            }
        })
        .await;
    }

    /// Kills the controller: aborts its task wherever it is (mid-reconcile, mid-request), like a
    /// SIGKILL of the process. Panics when it already ended with an error.
    pub async fn stop_controller(&mut self) {
        let Some(c) = self.controller.take() else {
            panic!("the controller is not running");
        };
        c.task.abort();
        match c.task.await {
            Err(e) if e.is_cancelled() => {}
            Ok(Ok(())) => panic!("the controller had already stopped on its own"),
            Ok(Err(e)) => panic!("the controller had already failed: {e}"),
            Err(e) => panic!("the controller task panicked: {e}"),
        }
        tracing::info!(test = %self.name, "controller killed");
    }

    /// Stops the controller gracefully (cancellation: running reconciles finish) and checks that
    /// it returned `Ok`.
    pub async fn stop_controller_gracefully(&mut self) {
        let Some(mut c) = self.controller.take() else {
            panic!("the controller is not running");
        };
        c.token.cancel();
        match tokio::time::timeout(STOP_TIMEOUT, &mut c.task).await {
            Ok(Ok(Ok(()))) => {}
            Ok(Ok(Err(e))) => panic!("the controller returned an error on shutdown: {e}"),
            Ok(Err(e)) => panic!("the controller task panicked: {e}"),
            Err(_) => {
                c.task.abort();
                panic!("the controller did not stop within {STOP_TIMEOUT:?} of its cancellation");
            }
        }
    }

    /// True while the in-process controller runs.
    pub fn controller_running(&self) -> bool {
        self.controller.as_ref().is_some_and(|c| !c.task.is_finished())
    }

    // ---- names and APIs ------------------------------------------------------------------------

    /// `<sim url>/my-org`.
    pub fn config_url(&self) -> String {
        self.sim.config_url(ORG)
    }

    /// The AutoscalingListener (and listener pod, SA, Role, RoleBinding) name of ARS `ars`
    /// (no runner group): `<ars>-<hash8(ns@@url)>-listener`.
    pub fn listener_name(&self, ars: &str) -> String {
        rarc_crd::names::listener_name(ars, &self.ns, "", &self.config_url())
    }

    pub fn ars_api(&self) -> Api<AutoscalingRunnerSet> {
        Api::namespaced(self.client.clone(), &self.ns)
    }
    pub fn ers_api(&self) -> Api<EphemeralRunnerSet> {
        Api::namespaced(self.client.clone(), &self.ns)
    }
    pub fn er_api(&self) -> Api<EphemeralRunner> {
        Api::namespaced(self.client.clone(), &self.ns)
    }
    pub fn al_api(&self) -> Api<AutoscalingListener> {
        Api::namespaced(self.client.clone(), &self.cns)
    }
    /// Pods of the runner namespace (only runner pods live there).
    pub fn runner_pod_api(&self) -> Api<Pod> {
        Api::namespaced(self.client.clone(), &self.ns)
    }
    /// Pods of the controller namespace (listener pods).
    pub fn listener_pod_api(&self) -> Api<Pod> {
        Api::namespaced(self.client.clone(), &self.cns)
    }
    /// Any namespaced kind in the runner namespace.
    pub fn api<K>(&self) -> Api<K>
    where
        K: Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>,
    {
        Api::namespaced(self.client.clone(), &self.ns)
    }
    /// Any namespaced kind in the controller namespace.
    pub fn capi<K>(&self) -> Api<K>
    where
        K: Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>,
    {
        Api::namespaced(self.client.clone(), &self.cns)
    }

    // ---- AutoscalingRunnerSets -----------------------------------------------------------------

    /// An AutoscalingRunnerSet for this environment, not yet created: config URL `<sim>/my-org`,
    /// Secret `gh`, the version label, runner pods running `rarc-sim runner` from the test image on
    /// the host network, and a listener template putting the listener on the host network too.
    /// minRunners/maxRunners are unset (0 and unbounded).
    pub fn ars(&self, name: &str) -> AutoscalingRunnerSet {
        let template = serde_json::from_value(json!({
            "spec": {
                "hostNetwork": true,
                "restartPolicy": "Never",
                "terminationGracePeriodSeconds": 15,
                "containers": [{
                    "name": "runner",
                    "image": self.image,
                    "imagePullPolicy": "Never",
                    "command": RUNNER_COMMAND,
                }],
            },
        }))
        .expect("a runner pod template");
        let listener_template = serde_json::from_value(json!({
            "spec": {
                "hostNetwork": true,
                "dnsPolicy": "ClusterFirstWithHostNet",
                "containers": [],
            },
        }))
        .expect("a listener pod template");
        let mut ars = AutoscalingRunnerSet::new(
            name,
            AutoscalingRunnerSetSpec {
                github_config_url: Some(self.config_url()),
                github_config_secret: Some(SECRET.into()),
                template: Some(template),
                listener_template: Some(listener_template),
                ..AutoscalingRunnerSetSpec::default()
            },
        );
        ars.metadata.namespace = Some(self.ns.clone());
        ars.metadata.labels = Some(BTreeMap::from([(labels::VERSION.to_owned(), VERSION.to_owned())]));
        ars
    }

    /// Creates `ars` in the runner namespace.
    pub async fn create_ars(&self, ars: &AutoscalingRunnerSet) -> AutoscalingRunnerSet {
        self.ars_api()
            .create(&PostParams::default(), ars)
            .await
            .unwrap_or_else(|e| panic!("create AutoscalingRunnerSet {}: {e}", ars.name_any()))
    }

    /// Merge-patches ARS `name`.
    pub async fn patch_ars(&self, name: &str, patch: serde_json::Value) -> AutoscalingRunnerSet {
        self.ars_api()
            .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .unwrap_or_else(|e| panic!("patch AutoscalingRunnerSet {name}: {e}"))
    }

    /// Deletes ARS `name` (the controller's finalizer then runs).
    pub async fn delete_ars(&self, name: &str) {
        self.ars_api()
            .delete(name, &DeleteParams::default())
            .await
            .unwrap_or_else(|e| panic!("delete AutoscalingRunnerSet {name}: {e}"));
    }

    /// Waits until ARS `name` has `status.phase == phase`.
    pub async fn wait_ars_phase(&self, name: &str, phase: &str, timeout: Duration) -> AutoscalingRunnerSet {
        let api = self.ars_api();
        eventually(
            &format!("AutoscalingRunnerSet {name} phase {phase}"),
            timeout,
            async || {
                let ars = get(&api, name).await?.ok_or("it does not exist")?;
                let now = ars.status.as_ref().and_then(|s| s.phase.clone()).unwrap_or_default();
                if now == phase {
                    Ok(ars)
                } else {
                    Err(format!("phase {now:?}, status {:?}", ars.status))
                }
            },
        )
        .await
    }

    /// Waits until ARS `name` is gone (its finalizer removed).
    pub async fn wait_ars_gone(&self, name: &str, timeout: Duration) {
        let api = self.ars_api();
        eventually(
            &format!("AutoscalingRunnerSet {name} to be gone"),
            timeout,
            async || match get(&api, name).await? {
                None => Ok(()),
                Some(ars) => Err(format!(
                    "still there: finalizers {:?}, deleting {}, annotations {:?}",
                    ars.finalizers(),
                    deleting(&ars),
                    ars.annotations()
                )),
            },
        )
        .await;
    }

    /// The scale set id the controller stored on ARS `name` (`runner-scale-set-id`), once set.
    pub async fn wait_scale_set_id(&self, name: &str, timeout: Duration) -> i64 {
        let api = self.ars_api();
        eventually(
            &format!("annotation {} on {name}", annotations::RUNNER_SCALE_SET_ID),
            timeout,
            async || {
                let ars = get(&api, name).await?.ok_or("the ARS does not exist")?;
                ars.annotations()
                    .get(annotations::RUNNER_SCALE_SET_ID)
                    .and_then(|v| v.parse::<i64>().ok())
                    .filter(|id| *id > 0)
                    .ok_or_else(|| format!("annotations {:?}", ars.annotations()))
            },
        )
        .await
    }

    /// Waits until the listener of ARS `ars` runs: its AutoscalingListener exists, its pod is
    /// Running with the `listener` container ready or running, and the simulator holds a message
    /// session for scale set `scale_set_id` (the listener got through to it). Returns the pod.
    pub async fn wait_listener_running(&self, ars: &str, scale_set_id: i64, timeout: Duration) -> Pod {
        let name = self.listener_name(ars);
        let (als, pods) = (self.al_api(), self.listener_pod_api());
        eventually(
            &format!("listener {name} running with a session"),
            timeout,
            async || {
                get(&als, &name)
                    .await?
                    .ok_or_else(|| format!("no AutoscalingListener {}/{name}", self.cns))?;
                let pod = get(&pods, &name)
                    .await?
                    .ok_or_else(|| format!("no listener pod {}/{name}", self.cns))?;
                let running = pod
                    .status
                    .as_ref()
                    .and_then(|s| s.container_statuses.as_ref())
                    .and_then(|cs| cs.iter().find(|c| c.name == "listener"))
                    .is_some_and(|c| c.state.as_ref().is_some_and(|s| s.running.is_some()));
                if pod_phase(&pod) != "Running" || !running {
                    return Err(format!("pod phase {:?}, status {:?}", pod_phase(&pod), pod.status));
                }
                if !self.sessions().iter().any(|s| s.scale_set_id == scale_set_id) {
                    return Err(format!(
                        "pod Running, but no session for scale set {scale_set_id}: {:?}",
                        self.sessions()
                    ));
                }
                Ok(pod)
            },
        )
        .await
    }

    /// The EphemeralRunnerSets owned by ARS `ars` (by controller owner reference).
    pub async fn owned_ers(&self, ars: &AutoscalingRunnerSet) -> Result<Vec<EphemeralRunnerSet>, String> {
        let uid = ars.uid().unwrap_or_default();
        Ok(list(&self.ers_api())
            .await?
            .into_iter()
            .filter(|ers| {
                ers.owner_references()
                    .iter()
                    .any(|o| o.uid == uid && o.controller == Some(true))
            })
            .collect())
    }

    // ---- runners -------------------------------------------------------------------------------

    /// Runner pods (every pod of the runner namespace), including terminating ones.
    pub async fn runner_pods(&self) -> Result<Vec<Pod>, String> {
        list(&self.runner_pod_api()).await
    }

    /// EphemeralRunners of the runner namespace, including deleting ones.
    pub async fn ephemeral_runners(&self) -> Result<Vec<EphemeralRunner>, String> {
        list(&self.er_api()).await
    }

    /// Waits until exactly `n` runner pods exist that are not being deleted (for `n == 0`: no pod
    /// at all, terminating ones included). Returns them.
    pub async fn wait_runner_pods(&self, n: usize, timeout: Duration) -> Vec<Pod> {
        eventually(&format!("{n} runner pod(s) in {}", self.ns), timeout, async || {
            let pods = self.runner_pods().await?;
            let live: Vec<Pod> = pods.iter().filter(|p| !deleting(*p)).cloned().collect();
            let ok = if n == 0 { pods.is_empty() } else { live.len() == n };
            if ok { Ok(live) } else { Err(describe_pods(&pods)) }
        })
        .await
    }

    /// Waits until exactly `n` EphemeralRunners exist that are not being deleted (for `n == 0`: none
    /// at all). Returns them.
    pub async fn wait_ephemeral_runners(&self, n: usize, timeout: Duration) -> Vec<EphemeralRunner> {
        eventually(&format!("{n} EphemeralRunner(s) in {}", self.ns), timeout, async || {
            let ers = self.ephemeral_runners().await?;
            let live: Vec<EphemeralRunner> = ers.iter().filter(|e| !deleting(*e)).cloned().collect();
            let ok = if n == 0 { ers.is_empty() } else { live.len() == n };
            if ok { Ok(live) } else { Err(describe_ers(&ers)) }
        })
        .await
    }

    /// JIT config Secrets (every Secret of the runner namespace but `gh`).
    pub async fn jit_secrets(&self) -> Result<Vec<String>, String> {
        let secrets: Vec<Secret> = list(&self.api::<Secret>()).await?;
        Ok(names(&secrets).into_iter().filter(|n| n != SECRET).collect())
    }

    /// Events (core/v1) about object `name` in namespace `ns`.
    pub async fn events_about(&self, ns: &str, name: &str) -> Result<Vec<Event>, String> {
        let api: Api<Event> = Api::namespaced(self.client.clone(), ns);
        Ok(list(&api)
            .await?
            .into_iter()
            .filter(|e| e.involved_object.name.as_deref() == Some(name))
            .collect())
    }

    // ---- simulator -----------------------------------------------------------------------------

    /// Queues `count` jobs for scale set `label`, each `duration_ms` long with one `echo hello` step.
    pub fn queue_jobs(&self, count: u32, label: &str, duration_ms: u64) -> Vec<i64> {
        rarc_sim::testing::queue_steps(&self.sim, count, label, duration_ms)
    }

    /// The runners registered in the simulator.
    pub fn sim_runners(&self) -> Vec<RunnerView> {
        self.sim.sim.with_state(|s| s.runners())
    }

    /// Every job of the simulator.
    pub fn sim_jobs(&self) -> Vec<JobView> {
        self.sim.sim.with_state(|s| s.jobs())
    }

    /// The scale sets of the simulator.
    pub fn sim_scale_sets(&self) -> Vec<rarc_actions::types::RunnerScaleSet> {
        self.sim.sim.with_state(|s| s.all_scale_sets())
    }

    /// Message sessions open in the simulator.
    pub fn sessions(&self) -> Vec<SessionView> {
        self.sim.sim.with_state(|s| s.sessions())
    }

    /// Calls the simulator received whose path contains `needle` (and with `method`, if given).
    pub fn calls(&self, method: Option<&str>, needle: &str) -> Vec<CallRecord> {
        rarc_sim::testing::calls_to(&self.sim, needle)
            .into_iter()
            .filter(|c| method.is_none_or(|m| c.method == m))
            .collect()
    }

    /// Calls with `method` whose path (without a trailing `/`) ends with `suffix`, e.g.
    /// `/runnerscalesets/7` (not `/runnerscalesets/7/sessions/…`).
    pub fn calls_ending(&self, method: &str, suffix: &str) -> Vec<CallRecord> {
        self.sim
            .sim
            .calls()
            .into_iter()
            .filter(|c| c.method == method && c.path.trim_end_matches('/').ends_with(suffix))
            .collect()
    }

    /// The step output of job `id` (its log lines joined).
    pub fn job_log(&self, id: i64) -> String {
        self.sim
            .sim
            .with_state(|s| s.job_log(id))
            .unwrap_or_default()
            .into_iter()
            .map(|l| l.line)
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// The simulator's views of the jobs `ids`.
    pub fn jobs_of(&self, ids: &[i64]) -> Vec<JobView> {
        self.sim_jobs()
            .into_iter()
            .filter(|j| ids.contains(&j.runner_request_id))
            .collect()
    }

    /// Waits until the first job of `ids` runs; returns its runner's name.
    pub async fn wait_job_running(&self, ids: &[i64], timeout: Duration) -> String {
        eventually("the job to run", timeout, async || {
            let jobs = self.jobs_of(ids);
            match jobs.first() {
                Some(j) if j.state == JobState::Running => j.runner_name.clone().ok_or_else(|| describe_jobs(&jobs)),
                _ => Err(describe_jobs(&jobs)),
            }
        })
        .await
    }

    /// Waits for a Warning event about `name` in the runner namespace whose message contains `needle`.
    pub async fn wait_warning(&self, name: &str, needle: &str) -> k8s_openapi::api::core::v1::Event {
        eventually(
            &format!("a Warning event about {name} mentioning {needle:?}"),
            Duration::from_secs(60),
            async || {
                let events = self.events_about(&self.ns, name).await?;
                events
                    .iter()
                    .find(|e| {
                        e.type_.as_deref() == Some("Warning")
                            && e.message.as_deref().is_some_and(|m| m.contains(needle))
                    })
                    .cloned()
                    .ok_or_else(|| {
                        format!(
                            "{:?}",
                            events
                                .iter()
                                .map(|e| (&e.type_, &e.reason, &e.message))
                                .collect::<Vec<_>>()
                        )
                    })
            },
        )
        .await
    }

    /// Waits until every job of `ids` is completed; returns their views.
    pub async fn wait_jobs_completed(&self, ids: &[i64], timeout: Duration) -> Vec<JobView> {
        eventually(&format!("jobs {ids:?} to complete"), timeout, async || {
            let jobs = self.jobs_of(ids);
            if jobs.len() == ids.len() && jobs.iter().all(|j| j.state == JobState::Completed) {
                Ok(jobs)
            } else {
                Err(describe_jobs(&jobs))
            }
        })
        .await
    }

    /// Waits until the simulator has no runner registered in scale set `scale_set_id`.
    pub async fn wait_no_sim_runners(&self, scale_set_id: i64, timeout: Duration) {
        eventually(
            &format!("no runner registered in scale set {scale_set_id}"),
            timeout,
            async || {
                let left: Vec<RunnerView> = self
                    .sim_runners()
                    .into_iter()
                    .filter(|r| r.scale_set_id == scale_set_id)
                    .collect();
                if left.is_empty() {
                    Ok(())
                } else {
                    Err(format!("{left:?}"))
                }
            },
        )
        .await;
    }

    // ---- diagnostics and teardown --------------------------------------------------------------

    /// A readable dump of everything the test touches: the four kinds, pods, recent events, the
    /// listener pods' log tails and the simulator's state.
    pub async fn describe(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "runner namespace {}, controller namespace {}, sim {}",
            self.ns, self.cns, self.sim.url
        );
        match list(&self.ars_api()).await {
            Ok(v) => {
                for a in v {
                    let _ = writeln!(
                        out,
                        "ARS {} deleting={} finalizers={:?} annotations={:?} status={}",
                        a.name_any(),
                        deleting(&a),
                        a.finalizers(),
                        a.annotations(),
                        serde_json::to_string(&a.status).unwrap_or_default()
                    );
                }
            }
            Err(e) => out.push_str(&format!("{e}\n")),
        }
        match list(&self.ers_api()).await {
            Ok(v) => {
                for s in v {
                    let _ = writeln!(
                        out,
                        "ERS {} deleting={} finalizers={:?} replicas={:?} patchID={} status={}",
                        s.name_any(),
                        deleting(&s),
                        s.finalizers(),
                        s.spec.replicas,
                        s.spec.patch_id,
                        serde_json::to_string(&s.status).unwrap_or_default()
                    );
                }
            }
            Err(e) => out.push_str(&format!("{e}\n")),
        }
        match self.ephemeral_runners().await {
            Ok(v) => out.push_str(&describe_ers(&v)),
            Err(e) => out.push_str(&format!("{e}\n")),
        }
        match list(&self.al_api()).await {
            Ok(v) => {
                for l in v {
                    let _ = writeln!(
                        out,
                        "AL {} deleting={} finalizers={:?} ers={:?} scaleSetId={} min={} max={}",
                        l.name_any(),
                        deleting(&l),
                        l.finalizers(),
                        l.spec.ephemeral_runner_set_name,
                        l.spec.runner_scale_set_id,
                        l.spec.min_runners,
                        l.spec.max_runners
                    );
                }
            }
            Err(e) => out.push_str(&format!("{e}\n")),
        }
        for api in [self.runner_pod_api(), self.listener_pod_api()] {
            match list(&api).await {
                Ok(v) => out.push_str(&describe_pods(&v)),
                Err(e) => out.push_str(&format!("{e}\n")),
            }
        }
        for ns in [&self.ns, &self.cns] {
            let api: Api<Event> = Api::namespaced(self.client.clone(), ns);
            if let Ok(mut events) = list(&api).await {
                events.sort_by_key(|e| e.metadata.creation_timestamp.clone());
                for e in events.iter().rev().take(25).rev() {
                    let _ = writeln!(
                        out,
                        "event {ns} {} {} {}/{} x{}: {}",
                        e.type_.as_deref().unwrap_or(""),
                        e.reason.as_deref().unwrap_or(""),
                        e.involved_object.kind.as_deref().unwrap_or(""),
                        e.involved_object.name.as_deref().unwrap_or(""),
                        e.count.unwrap_or(1),
                        e.message.as_deref().unwrap_or("")
                    );
                }
            }
        }
        let pods = self.listener_pod_api();
        if let Ok(v) = list(&pods).await {
            for p in v {
                let params = LogParams {
                    tail_lines: Some(30),
                    ..LogParams::default()
                };
                let log = pods
                    .logs(&p.name_any(), &params)
                    .await
                    .unwrap_or_else(|e| format!("(no log: {e})"));
                let _ = writeln!(
                    out,
                    "--- log of listener pod {} (last 30 lines) ---\n{log}",
                    p.name_any()
                );
            }
        }
        let _ = writeln!(
            out,
            "sim scale sets: {:?}",
            self.sim_scale_sets()
                .iter()
                .map(|s| (s.id, &s.name))
                .collect::<Vec<_>>()
        );
        let _ = writeln!(out, "sim sessions: {:?}", self.sessions());
        let _ = writeln!(out, "sim runners: {:?}", self.sim_runners());
        out.push_str(&describe_jobs(&self.sim_jobs()));
        out
    }

    /// Deletes every ARS, waits for the controller to clean up, checks nothing is left in the
    /// cluster or the simulator, stops the controller, strips leftover finalizers and deletes both
    /// namespaces. Returns the problems found (empty when all is clean).
    pub async fn teardown(&mut self) -> Vec<String> {
        self.finished = true;
        let mut problems = Vec::new();
        if self.controller.is_none() {
            self.start_controller().await;
        } else if !self.controller_running() {
            problems.push("the controller task had stopped before teardown".to_owned());
            self.controller = None;
            self.start_controller().await;
        }
        let ars_api = self.ars_api();
        match list(&ars_api).await {
            Ok(all) => {
                for a in all.iter().filter(|a| !deleting(*a)) {
                    if let Err(e) = ars_api.delete(&a.name_any(), &DeleteParams::default()).await {
                        problems.push(format!("delete ARS {}: {e}", a.name_any()));
                    }
                }
            }
            Err(e) => problems.push(e),
        }
        let clean = tokio::time::timeout(TEARDOWN_TIMEOUT, async {
            loop {
                match self.leftovers().await {
                    Ok(left) if left.is_empty() => return,
                    _ => tokio::time::sleep(POLL).await,
                }
            }
        })
        .await;
        if clean.is_err() {
            let left = self.leftovers().await.unwrap_or_else(|e| vec![e]);
            problems.push(format!(
                "{TEARDOWN_TIMEOUT:?} after the AutoscalingRunnerSets were deleted, these were still there:\n    {}",
                left.join("\n    ")
            ));
            eprintln!("==== {}: state at teardown ====\n{}", self.name, self.describe().await);
        } else {
            let left_runners = self.sim_runners();
            if !left_runners.is_empty() {
                problems.push(format!("runners still registered in the simulator: {left_runners:?}"));
            }
            let left_sets = self.sim_scale_sets();
            if !left_sets.is_empty() {
                let sets: Vec<_> = left_sets.iter().map(|s| (s.id, s.name.clone())).collect();
                problems.push(format!("scale sets still registered in the simulator: {sets:?}"));
            }
            let sessions = self.sessions();
            if !sessions.is_empty() {
                problems.push(format!("message sessions still open in the simulator: {sessions:?}"));
            }
        }
        if let Some(mut c) = self.controller.take() {
            c.token.cancel();
            match tokio::time::timeout(STOP_TIMEOUT, &mut c.task).await {
                Ok(Ok(Ok(()))) => {}
                Ok(Ok(Err(e))) => problems.push(format!("the controller returned an error on shutdown: {e}")),
                Ok(Err(e)) => problems.push(format!("the controller task panicked: {e}")),
                Err(_) => {
                    c.task.abort();
                    problems.push(format!(
                        "the controller did not stop within {STOP_TIMEOUT:?} of its cancellation"
                    ));
                }
            }
        }
        for ns in [self.ns.clone(), self.cns.clone()] {
            let stripped = strip_finalizers(&self.client, &ns).await;
            if !stripped.is_empty() {
                problems.push(format!("finalizers stripped by the harness: {}", stripped.join(", ")));
            }
        }
        for ns in [self.runner_ns.take(), self.controller_ns.take()].into_iter().flatten() {
            let name = ns.name().to_owned();
            if let Err(e) = ns.delete().await {
                problems.push(format!("namespace {name} was not deleted: {e}"));
            }
        }
        problems
    }

    /// What still exists that the controller should have removed once every ARS is gone.
    async fn leftovers(&self) -> Result<Vec<String>, String> {
        let mut left = Vec::new();
        let tag = |kind: &str, ns: &str, name: String, finalizers: &[String]| {
            format!("{kind} {ns}/{name} finalizers={finalizers:?}")
        };
        for a in list(&self.ars_api()).await? {
            left.push(tag("AutoscalingRunnerSet", &self.ns, a.name_any(), a.finalizers()));
        }
        for s in list(&self.ers_api()).await? {
            left.push(tag("EphemeralRunnerSet", &self.ns, s.name_any(), s.finalizers()));
        }
        for r in list(&self.er_api()).await? {
            left.push(tag("EphemeralRunner", &self.ns, r.name_any(), r.finalizers()));
        }
        for l in list(&self.al_api()).await? {
            left.push(tag("AutoscalingListener", &self.cns, l.name_any(), l.finalizers()));
        }
        for (ns, api) in [(&self.ns, self.runner_pod_api()), (&self.cns, self.listener_pod_api())] {
            for p in list(&api).await? {
                left.push(tag("Pod", ns, p.name_any(), p.finalizers()));
            }
        }
        for s in self.jit_secrets().await? {
            left.push(format!("Secret {}/{s}", self.ns));
        }
        let roles: Vec<k8s_openapi::api::rbac::v1::Role> = list(&self.api()).await?;
        let bindings: Vec<k8s_openapi::api::rbac::v1::RoleBinding> = list(&self.api()).await?;
        for name in names(&roles) {
            left.push(format!("Role {}/{name}", self.ns));
        }
        for name in names(&bindings) {
            left.push(format!("RoleBinding {}/{name}", self.ns));
        }
        let secrets: Vec<Secret> = list(&self.capi()).await?;
        for name in names(&secrets) {
            left.push(format!("Secret {}/{name}", self.cns));
        }
        let sas: Vec<k8s_openapi::api::core::v1::ServiceAccount> = list(&self.capi()).await?;
        for name in names(&sas).into_iter().filter(|n| n != "default") {
            left.push(format!("ServiceAccount {}/{name}", self.cns));
        }
        Ok(left)
    }
}

impl Drop for Env {
    /// The fallback when [`Env::teardown`] did not run (a test not using [`Env::run`] panicked):
    /// kill the controller, strip the finalizers of the four kinds so the namespaces can go, and
    /// let `TempNamespace`'s own `Drop` send their deletes.
    fn drop(&mut self) {
        if self.finished {
            return;
        }
        if let Some(c) = self.controller.take() {
            c.token.cancel();
            c.task.abort();
        }
        let namespaces = [self.ns.clone(), self.cns.clone()];
        let worker = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
            runtime.block_on(async move {
                let client = rarc_kube_test::client().await.map_err(std::io::Error::other)?;
                for ns in &namespaces {
                    let stripped = strip_finalizers(&client, ns).await;
                    if !stripped.is_empty() {
                        eprintln!("harness: stripped finalizers of {}", stripped.join(", "));
                    }
                }
                Ok::<(), std::io::Error>(())
            })
        });
        match worker.join() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => eprintln!("harness: cannot strip finalizers: {e}"),
            Err(_) => eprintln!("harness: the finalizer-stripping thread panicked"),
        }
    }
}

/// The controller settings of a test: ARC's defaults, controller metrics off, listener metrics
/// off (listener pods share the host network: a fixed port would collide), the listener
/// command of the test image, and only the test's runner namespace watched (tests run in
/// parallel, each with its own controller).
pub fn test_settings(controller_ns: &str, image: &str, runner_ns: &str) -> Settings {
    use clap::Parser as _;
    Settings::try_parse_from([
        "rarc-controller".to_owned(),
        "--metrics-addr=0".to_owned(),
        "--listener-metrics-addr=0".to_owned(),
        "--log-level=info".to_owned(),
        format!("--controller-namespace={controller_ns}"),
        format!("--listener-image={image}"),
        format!("--listener-entrypoint={LISTENER_ENTRYPOINT}"),
        format!("--watch-single-namespace={runner_ns}"),
    ])
    .expect("controller settings parse")
}

/// Removes the finalizers of every object of the four kinds in `ns`; returns what was stripped.
pub async fn strip_finalizers(client: &Client, ns: &str) -> Vec<String> {
    let mut stripped = strip::<AutoscalingRunnerSet>(client, ns).await;
    stripped.extend(strip::<EphemeralRunnerSet>(client, ns).await);
    stripped.extend(strip::<EphemeralRunner>(client, ns).await);
    stripped.extend(strip::<AutoscalingListener>(client, ns).await);
    stripped
}

async fn strip<K>(client: &Client, ns: &str) -> Vec<String>
where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()> + Clone + DeserializeOwned + Debug,
{
    let api: Api<K> = Api::namespaced(client.clone(), ns);
    let Ok(objects) = list(&api).await else {
        return Vec::new();
    };
    let mut stripped = Vec::new();
    for obj in objects.iter().filter(|o| !o.finalizers().is_empty()) {
        let name = obj.name_any();
        let patch = json!({"metadata": {"finalizers": null}});
        match api.patch(&name, &PatchParams::default(), &Patch::Merge(&patch)).await {
            Ok(_) => stripped.push(format!("{} {ns}/{name} {:?}", K::kind(&()), obj.finalizers())),
            Err(kube::Error::Api(s)) if s.code == 404 => {}
            Err(e) => eprintln!("harness: cannot strip the finalizers of {ns}/{name}: {e}"),
        }
    }
    stripped
}

/// One line per pod: name, phase, deleting, container states.
pub fn describe_pods(pods: &[Pod]) -> String {
    let mut out = String::new();
    for p in pods {
        let states: Vec<String> = p
            .status
            .as_ref()
            .and_then(|s| s.container_statuses.as_ref())
            .map(|cs| {
                cs.iter()
                    .map(|c| {
                        let state = c.state.as_ref();
                        let what = if state.is_some_and(|s| s.running.is_some()) {
                            "running".to_owned()
                        } else if let Some(t) = state.and_then(|s| s.terminated.as_ref()) {
                            format!("terminated({})", t.exit_code)
                        } else if let Some(w) = state.and_then(|s| s.waiting.as_ref()) {
                            format!("waiting({})", w.reason.as_deref().unwrap_or(""))
                        } else {
                            "unknown".to_owned()
                        };
                        format!("{}={what}", c.name)
                    })
                    .collect()
            })
            .unwrap_or_default();
        let _ = writeln!(
            out,
            "Pod {}/{} phase={} deleting={} containers={states:?}",
            p.namespace().unwrap_or_default(),
            p.name_any(),
            pod_phase(p),
            deleting(p)
        );
    }
    if pods.is_empty() {
        out.push_str("no pods\n");
    }
    out
}

/// One line per EphemeralRunner.
pub fn describe_ers(ers: &[EphemeralRunner]) -> String {
    let mut out = String::new();
    for e in ers {
        let st = e.status.clone().unwrap_or_default();
        let _ = writeln!(
            out,
            "ER {} deleting={} finalizers={:?} phase={:?} runnerId={:?} jobId={:?} failures={:?}",
            e.name_any(),
            deleting(e),
            e.finalizers(),
            st.phase,
            st.runner_id,
            st.job_id,
            st.failures.map(|f| f.len())
        );
    }
    if ers.is_empty() {
        out.push_str("no EphemeralRunners\n");
    }
    out
}

/// One line per job.
pub fn describe_jobs(jobs: &[JobView]) -> String {
    let mut out = String::new();
    for j in jobs {
        let _ = writeln!(
            out,
            "job {} state={:?} result={:?} runner={:?} runs={} reassignments={}",
            j.runner_request_id, j.state, j.result, j.runner_name, j.runs, j.reassignments
        );
    }
    if jobs.is_empty() {
        out.push_str("no jobs\n");
    }
    out
}

fn truncate(s: &str, n: usize) -> &str {
    match s.char_indices().nth(n) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

fn panic_message(panic: &Box<dyn std::any::Any + Send>) -> String {
    if let Some(s) = panic.downcast_ref::<String>() {
        s.clone()
    } else if let Some(s) = panic.downcast_ref::<&str>() {
        (*s).to_owned()
    } else {
        "the test body panicked".to_owned()
    }
}
