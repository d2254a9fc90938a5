//! The listener's performance acceptance (docs/benchmarks.md, "Listener"): the release
//! `rarc-listener` binary as a child process against rarc-sim in this process.
//!
//! 1. Idle RSS (VmRSS / VmHWM from `/proc/PID/status`) once the session is open and the listener
//!    sits in the long poll: dry-run backend, Docker backend (when dockerd answers), Kubernetes
//!    backend (when the test cluster answers). Baseline in the same run: `bare_poll` (this
//!    package's other bench target), a process that does the same network wait with the same
//!    runtime and client and nothing else.
//! 2. Peak RSS (VmHWM) after a 1,000-job burst queued in one call, against the same burst handled
//!    by `bare_poll`.
//! 3. Latency from a job queued in rarc-sim to the desired count applied, for single jobs trickled
//!    one at a time and for 1,000 jobs queued back to back: the Kubernetes backend observed by a
//!    watch on the EphemeralRunnerSet, the dry-run backend observed by its log line. Baselines in
//!    the same run, interleaved: a bare `MessageSession` in this process (queue → message
//!    received), and the cluster's floor (this process PATCHes another EphemeralRunnerSet → its
//!    watch event).
//!
//! The Docker backend's 0 → 20 containers figure is `tests/docker_backend.rs`
//! `start_latency_of_20_runners`. `RARC_BENCH_QUICK=1` runs fewer iterations (CI). The test
//! cluster and dockerd must be up (`make bench` runs `scripts/bench`, which starts them).

use futures::StreamExt;
use kube::Api;
use kube::api::{DynamicObject, Patch, PatchParams, PostParams};
use kube::runtime::watcher;
use rarc_actions::types::JobMessage;
use rarc_actions::{ActionsClient, ClientConfig, Credentials, MessageSession, ProxyEnv, Secret};
use rarc_listener::backend::kubernetes::ephemeral_runner_set_resource;
use rarc_sim::auth::DEFAULT_PAT;
use rarc_sim::config::{JobMode, SimSettings};
use rarc_sim::state::QueueJobs;
use rarc_sim::{SimOptions, SimServer};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::watch;

type Error = Box<dyn std::error::Error + Send + Sync>;
type Result<T, E = Error> = std::result::Result<T, E>;

const CRDS: &str = concat!(
    include_str!("../../crates/crd/crds/actions.github.com_ephemeralrunnersets.yaml"),
    "\n---\n",
    include_str!("../../crates/crd/crds/actions.github.com_ephemeralrunners.yaml")
);
/// max_runners of every scale set: never the limit here.
const MAX_RUNNERS: i64 = 1_000_000;
const BURST: u32 = 1000;
const MIB: f64 = 1024.0 * 1024.0;

// ---- observations ---------------------------------------------------------------------------------

/// A value that only grows (desired replicas, jobs received) and when each value was first seen.
#[derive(Clone)]
struct Observed {
    history: Arc<Mutex<Vec<(Instant, i64)>>>,
    changed: watch::Sender<usize>,
}

impl Observed {
    fn new() -> Self {
        Self {
            history: Arc::default(),
            changed: watch::channel(0).0,
        }
    }

    fn push(&self, value: i64) {
        let now = Instant::now();
        let mut h = self.history.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        h.push((now, value));
        self.changed.send_replace(h.len());
    }

    fn latest(&self) -> i64 {
        self.history
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .last()
            .map_or(0, |(_, v)| *v)
    }

    /// When the value was first seen at `target` or more, at or after `since`.
    fn first_at_least(&self, target: i64, since: Instant) -> Option<Instant> {
        self.history
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .iter()
            .find(|(t, v)| *t >= since && *v >= target)
            .map(|(t, _)| *t)
    }

    async fn wait_at_least(&self, target: i64, since: Instant, what: &str) -> Result<Instant> {
        let mut rx = self.changed.subscribe();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        loop {
            rx.borrow_and_update();
            if let Some(t) = self.first_at_least(target, since) {
                return Ok(t);
            }
            if tokio::time::timeout_at(deadline, rx.changed()).await.is_err() {
                return Err(format!("{what}: timed out waiting for {target} (last {})", self.latest()).into());
            }
        }
    }
}

// ---- statistics -----------------------------------------------------------------------------------

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let rank = ((p / 100.0) * (sorted.len() as f64 - 1.0)).round() as usize;
    sorted[rank.min(sorted.len() - 1)]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

#[derive(Clone, Copy)]
struct Stats {
    p50: f64,
    p99: f64,
    max: f64,
}

fn stats(mut samples: Vec<Duration>) -> Stats {
    samples.sort();
    if samples.is_empty() {
        return Stats {
            p50: f64::NAN,
            p99: f64::NAN,
            max: f64::NAN,
        };
    }
    Stats {
        p50: ms(percentile(&samples, 50.0)),
        p99: ms(percentile(&samples, 99.0)),
        max: ms(*samples.last().unwrap_or(&Duration::ZERO)),
    }
}

// ---- processes ------------------------------------------------------------------------------------

struct Bins {
    listener: PathBuf,
    bare: PathBuf,
}

/// `cargo build --release` of one target; returns its executable.
fn cargo_build(args: &[&str], name: &str) -> Result<PathBuf> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut cmd = std::process::Command::new(cargo);
    // What cargo sets for the running bench must not reach the inner build: build scripts that
    // watch these (ring: CARGO_MANIFEST_DIR) would rebuild, then the outer build again next time.
    for (key, _) in std::env::vars_os() {
        let k = key.to_string_lossy();
        if k.starts_with("CARGO_PKG_")
            || [
                "CARGO_MANIFEST_DIR",
                "CARGO_MANIFEST_PATH",
                "CARGO_CRATE_NAME",
                "CARGO_BIN_NAME",
                "CARGO_PRIMARY_PACKAGE",
                "CARGO_TARGET_TMPDIR",
            ]
            .contains(&k.as_ref())
        {
            cmd.env_remove(&key);
        }
    }
    let out = cmd
        .current_dir(root)
        .args(["build", "--locked", "-p", "rarc-listener"])
        .args(args)
        .arg("--message-format=json-render-diagnostics")
        .stderr(Stdio::inherit())
        .output()?;
    if !out.status.success() {
        return Err(format!("cargo build {args:?} failed").into());
    }
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v["reason"] == "compiler-artifact" && v["target"]["name"] == name)
        .find_map(|v| v["executable"].as_str().map(PathBuf::from))
        .ok_or_else(|| format!("no executable for {name} in cargo's output").into())
}

/// Builds the production binary on its own (release profile, its own features rather than the
/// benches' unified ones), then the baseline helper in the bench profile, whose dependencies the
/// running `cargo bench` has just built.
fn build() -> Result<Bins> {
    let start = Instant::now();
    let listener = cargo_build(&["--release", "--bin", "rarc-listener"], "rarc-listener")?;
    let bare = cargo_build(&["--profile", "bench", "--bench", "bare_poll"], "bare_poll")?;
    eprintln!("release binaries ready in {:.1} s", start.elapsed().as_secs_f64());
    Ok(Bins { listener, bare })
}

#[derive(Debug, Clone, Copy, Default)]
struct Mem {
    rss: u64,
    hwm: u64,
    /// Of `rss`: heap and stacks (the rest is the binary's and libraries' pages).
    anon: u64,
    threads: u64,
}

fn mem(pid: u32) -> Result<Mem> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let mut m = Mem::default();
    for line in status.lines() {
        let mut parts = line.split_whitespace();
        let (Some(key), Some(value)) = (parts.next(), parts.next()) else {
            continue;
        };
        let value: u64 = value.parse().unwrap_or(0);
        match key {
            "VmRSS:" => m.rss = value * 1024,
            "VmHWM:" => m.hwm = value * 1024,
            "RssAnon:" => m.anon = value * 1024,
            "Threads:" => m.threads = value,
            _ => {}
        }
    }
    Ok(m)
}

/// Idle figures: the largest VmRSS over a few samples, and VmHWM after them.
async fn idle_mem(pid: u32, settle: Duration) -> Result<Mem> {
    tokio::time::sleep(settle).await;
    let mut out = Mem::default();
    for _ in 0..5 {
        let m = mem(pid)?;
        if m.rss >= out.rss {
            out.rss = m.rss;
            out.anon = m.anon;
        }
        out.hwm = m.hwm;
        out.threads = m.threads;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Ok(out)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    DryRun,
    Docker,
    Kubernetes,
}

impl Kind {
    fn arg(self) -> &'static str {
        match self {
            Kind::DryRun => "dry-run",
            Kind::Docker => "docker",
            Kind::Kubernetes => "kubernetes",
        }
    }
}

/// A running `rarc-listener`, killed on drop.
struct ListenerProc {
    child: Child,
    pid: u32,
    scale_set_id: i64,
    /// Desired runners as seen from outside (its log line, or the cluster's watch).
    desired: Observed,
    log: PathBuf,
}

struct Env<'a> {
    bins: &'a Bins,
    server: &'a SimServer,
    dir: &'a Path,
}

/// `RARC_BENCH_LISTENER_ENV="K=V K=V"`: extra environment of the listener processes, to try a
/// setting (e.g. `TOKIO_WORKER_THREADS=1`, `MALLOC_ARENA_MAX=1`) without rebuilding.
fn extra_env() -> Vec<(String, String)> {
    std::env::var("RARC_BENCH_LISTENER_ENV")
        .unwrap_or_default()
        .split_whitespace()
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

async fn start_listener(
    env: &Env<'_>,
    kind: Kind,
    set: i64,
    ers: (&str, &str),
    kubeconfig: Option<&str>,
) -> Result<ListenerProc> {
    let name = format!("listener-{}", kind.arg());
    // As ARC deploys it: metrics on (on a free port), log level info, text logs.
    let config = json!({
        "configure_url": env.server.config_url("my-org"),
        "github_token": DEFAULT_PAT,
        "ephemeral_runner_set_namespace": ers.0,
        "ephemeral_runner_set_name": ers.1,
        "max_runners": MAX_RUNNERS,
        "min_runners": 0,
        "runner_scale_set_id": set,
        "log_level": "info",
        "log_format": "text",
        "metrics_addr": format!("127.0.0.1:{}", free_port()?),
        "metrics": null,
    });
    let config_path = env.dir.join(format!("{name}.json"));
    std::fs::write(&config_path, config.to_string())?;
    let log = env.dir.join(format!("{name}.log"));
    let mut cmd = Command::new(&env.bins.listener);
    cmd.env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("LISTENER_CONFIG_PATH", &config_path)
        .env("NO_COLOR", "1")
        .envs(extra_env())
        .arg("--backend")
        .arg(kind.arg())
        .stdin(Stdio::null())
        .stderr(std::fs::File::create(env.dir.join(format!("{name}.stderr")))?)
        .kill_on_drop(true);
    if let Some(k) = kubeconfig {
        cmd.env("KUBECONFIG", k);
    }
    if kind == Kind::Docker {
        let docker = env.dir.join("docker.json");
        std::fs::write(
            &docker,
            json!({"runnerImage": "rarc-bench/never-started:0"}).to_string(),
        )?;
        cmd.arg("--docker-config").arg(docker);
    }
    let desired = Observed::new();
    let child = if kind == Kind::DryRun {
        // The decision is observed by its log line, read as it is written.
        cmd.stdout(Stdio::piped());
        let mut child = cmd.spawn()?;
        let stdout = child.stdout.take().ok_or("piped stdout")?;
        let obs = desired.clone();
        let mut file = tokio::fs::File::create(&log).await?;
        tokio::spawn(async move {
            use tokio::io::AsyncWriteExt;
            let mut lines = BufReader::new(stdout).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                if let Some(rest) = line.split("dry run: desired runners target=").nth(1) {
                    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
                    if let Ok(v) = digits.parse() {
                        obs.push(v);
                    }
                }
                let _ = file.write_all(line.as_bytes()).await;
                let _ = file.write_all(b"\n").await;
            }
        });
        child
    } else {
        cmd.stdout(std::fs::File::create(&log)?);
        cmd.spawn()?
    };
    let pid = child.id().ok_or("listener pid")?;
    let mut p = ListenerProc {
        child,
        pid,
        scale_set_id: set,
        desired,
        log,
    };
    wait_session(env.server, set, &mut p.child, &p.log).await?;
    Ok(p)
}

/// Waits until scale set `set` has a message session (the child is then in its first long poll
/// within a few milliseconds).
async fn wait_session(server: &SimServer, set: i64, child: &mut Child, log: &Path) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if server
            .sim
            .with_state(|s| s.sessions())
            .iter()
            .any(|s| s.scale_set_id == set)
        {
            return Ok(());
        }
        if let Some(status) = child.try_wait()? {
            let tail = std::fs::read_to_string(log).unwrap_or_default();
            return Err(format!(
                "process exited ({status}) before opening its session; log {}:\n{tail}",
                log.display()
            )
            .into());
        }
        if Instant::now() > deadline {
            return Err("no session within 30 s".into());
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

impl ListenerProc {
    /// SIGTERM; the exit code (0 expected).
    async fn stop(mut self) -> Result<Option<i32>> {
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(i32::try_from(self.pid)?),
            nix::sys::signal::Signal::SIGTERM,
        )?;
        let status = tokio::time::timeout(Duration::from_secs(15), self.child.wait()).await??;
        Ok(status.code())
    }
}

/// `bare_poll` as a child process; its `jobs N` lines feed `received`.
struct BareProc {
    child: Child,
    pid: u32,
    received: Observed,
}

async fn start_bare(env: &Env<'_>, set: i64) -> Result<BareProc> {
    let mut child = Command::new(&env.bins.bare)
        .env_clear()
        .env(
            "RARC_BENCH_BARE_POLL",
            format!("{} {set}", env.server.config_url("my-org")),
        )
        .env("RARC_BENCH_BARE_TOKEN", DEFAULT_PAT)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()?;
    let pid = child.id().ok_or("bare_poll pid")?;
    let mut lines = BufReader::new(child.stdout.take().ok_or("piped stdout")?).lines();
    match tokio::time::timeout(Duration::from_secs(30), lines.next_line()).await?? {
        Some(l) if l == "ready" => {}
        other => return Err(format!("bare_poll did not start: {other:?}").into()),
    }
    let received = Observed::new();
    let obs = received.clone();
    tokio::spawn(async move {
        while let Ok(Some(line)) = lines.next_line().await {
            if let Some(n) = line.strip_prefix("jobs ").and_then(|n| n.parse().ok()) {
                obs.push(n);
            }
        }
    });
    Ok(BareProc { child, pid, received })
}

// ---- the simulator --------------------------------------------------------------------------------

/// Creates a scale set whose only label is `name`.
async fn create_set(client: &ActionsClient, name: &str) -> Result<i64> {
    Ok(client
        .create_runner_scale_set(&rarc_sim::testing::scale_set_body(name))
        .await?
        .id)
}

fn queue(server: &SimServer, label: &str, count: u32) -> Result<()> {
    let req = QueueJobs {
        count,
        labels: vec![label.into()],
        ..Default::default()
    };
    server
        .sim
        .with_state(|s| s.queue_jobs(&req))
        .map_err(|e| format!("queue jobs: {e:?}"))?;
    Ok(())
}

/// No message of `set` is waiting to be acknowledged.
fn drained(server: &SimServer, set: i64) -> bool {
    server.sim.with_state(|s| s.next_message(set, 0).is_none())
}

async fn wait_drained(server: &SimServer, set: i64) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !drained(server, set) {
        if Instant::now() > deadline {
            return Err(format!("the messages of scale set {set} were not acknowledged within 60 s").into());
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    Ok(())
}

/// A bare `MessageSession` in this process (no backend): long poll → decode → acknowledge; the
/// number of jobs received feeds the returned observation.
async fn bare_in_process(client: ActionsClient, set: i64) -> Result<Observed> {
    let mut session = MessageSession::open(client, set, "bare-in-process").await?;
    let received = Observed::new();
    let obs = received.clone();
    tokio::spawn(async move {
        let (mut last, mut jobs) = (0i64, 0i64);
        loop {
            let msg = match session.get_message(last, MAX_RUNNERS).await {
                Ok(Some(m)) => m,
                Ok(None) => continue,
                Err(e) => {
                    eprintln!("bare session: {e}");
                    return;
                }
            };
            last = msg.message_id;
            let assigned = msg
                .job_messages()
                .map(|j| j.iter().filter(|j| matches!(j, JobMessage::Assigned(_))).count())
                .unwrap_or(0);
            jobs += i64::try_from(assigned).unwrap_or(0);
            obs.push(jobs);
            if let Err(e) = session.delete_message(msg.message_id).await {
                eprintln!("bare session: {e}");
                return;
            }
        }
    });
    Ok(received)
}

// ---- Kubernetes -----------------------------------------------------------------------------------

struct Cluster {
    ns: rarc_kube_test::TempNamespace,
    sets: Api<DynamicObject>,
    kubeconfig: String,
    /// Per EphemeralRunnerSet name, `.spec.replicas` as the watch delivers it.
    watched: Arc<Mutex<std::collections::HashMap<String, Observed>>>,
}

async fn cluster() -> Result<Cluster> {
    let client = rarc_kube_test::client().await?;
    let ns = rarc_kube_test::TempNamespace::new(&client, "listener-bench").await?;
    let result = async {
        rarc_kube_test::apply_yaml(&client, None, CRDS).await?;
        let sets: Api<DynamicObject> =
            Api::namespaced_with(client.clone(), ns.name(), &ephemeral_runner_set_resource());
        let watched: Arc<Mutex<std::collections::HashMap<String, Observed>>> = Arc::default();
        for name in ["listener-ers", "floor-ers"] {
            watched
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .insert(name.into(), Observed::new());
            let obj: DynamicObject = serde_json::from_value(json!({
                "apiVersion": "actions.github.com/v1alpha1",
                "kind": "EphemeralRunnerSet",
                "metadata": {"name": name},
                "spec": {"replicas": 0, "patchID": 0, "ephemeralRunnerSpec": {"githubConfigUrl": "https://github.com/o", "githubConfigSecret": "s", "runnerScaleSetId": 1}}
            }))?;
            let deadline = Instant::now() + Duration::from_secs(30);
            // Retried while the freshly installed CRD is not served yet.
            while let Err(e) = sets.create(&PostParams::default(), &obj).await {
                if Instant::now() > deadline {
                    return Err(Error::from(format!("create EphemeralRunnerSet {name}: {e}")));
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
        let watch_start = Instant::now();
        let w = watched.clone();
        let stream = watcher(sets.clone(), watcher::Config::default());
        tokio::spawn(async move {
            let mut stream = std::pin::pin!(stream);
            while let Some(event) = stream.next().await {
                let obj = match event {
                    Ok(watcher::Event::Apply(o) | watcher::Event::InitApply(o)) => o,
                    _ => continue,
                };
                let replicas = obj.data.pointer("/spec/replicas").and_then(Value::as_i64).unwrap_or(0);
                let name = obj.metadata.name.unwrap_or_default();
                if let Some(o) = w.lock().unwrap_or_else(std::sync::PoisonError::into_inner).get(&name) {
                    o.push(replicas);
                }
            }
        });
        // The watch is established once both sets were seen.
        for name in ["listener-ers", "floor-ers"] {
            let o = watched.lock().unwrap_or_else(std::sync::PoisonError::into_inner)[name].clone();
            o.wait_at_least(0, watch_start, "watch start").await?;
        }
        Ok::<_, Error>((sets, watched))
    }
    .await;
    match result {
        Ok((sets, watched)) => Ok(Cluster {
            ns,
            sets,
            kubeconfig: rarc_kube_test::kubeconfig_location(),
            watched,
        }),
        Err(e) => {
            let _ = ns.delete().await;
            Err(e)
        }
    }
}

impl Cluster {
    fn observed(&self, name: &str) -> Observed {
        self.watched.lock().unwrap_or_else(std::sync::PoisonError::into_inner)[name].clone()
    }
}

fn docker_available() -> bool {
    let path = std::env::var("DOCKER_HOST")
        .ok()
        .and_then(|h| h.strip_prefix("unix://").map(str::to_owned))
        .unwrap_or_else(|| "/var/run/docker.sock".into());
    std::os::unix::net::UnixStream::connect(path).is_ok()
}

// ---- the benchmark --------------------------------------------------------------------------------

/// One latency series: queue a job (or patch, for the floor), wait for the observation.
#[derive(Clone)]
enum Series {
    /// Queue `count` jobs labelled `label`; `observed` reaches base + count.
    Jobs { label: String, observed: Observed },
    /// PATCH `floor-ers` to base + 1; the watch sees it.
    Floor {
        sets: Box<Api<DynamicObject>>,
        observed: Observed,
    },
}

impl Series {
    async fn one(&self, server: &SimServer) -> Result<Duration> {
        match self {
            Series::Jobs { label, observed } => {
                let base = observed.latest();
                let t0 = Instant::now();
                queue(server, label, 1)?;
                let t = observed.wait_at_least(base + 1, t0, label).await?;
                Ok(t - t0)
            }
            Series::Floor { sets, observed } => {
                let base = observed.latest();
                let t0 = Instant::now();
                let patch = json!({"spec": {"replicas": base + 1}});
                sets.patch("floor-ers", &PatchParams::default(), &Patch::Merge(&patch))
                    .await?;
                let t = observed.wait_at_least(base + 1, t0, "floor").await?;
                Ok(t - t0)
            }
        }
    }

    /// `n` single-job queue calls back to back; per-job latency to the observation covering it,
    /// and the time until all were covered.
    async fn burst(&self, server: &SimServer, n: u32) -> Result<(Vec<Duration>, Duration)> {
        let Series::Jobs { label, observed } = self else {
            return Err("no burst for the floor".into());
        };
        let base = observed.latest();
        let mut queued = Vec::with_capacity(n as usize);
        for _ in 0..n {
            queued.push(Instant::now());
            queue(server, label, 1)?;
        }
        let t0 = queued[0];
        let end = observed.wait_at_least(base + i64::from(n), t0, label).await?;
        let mut lat = Vec::with_capacity(n as usize);
        for (i, t) in queued.iter().enumerate() {
            let covered = observed
                .first_at_least(base + i64::try_from(i)? + 1, *t)
                .ok_or("covered")?;
            lat.push(covered - *t);
        }
        Ok((lat, end - t0))
    }
}

struct MemRow {
    what: String,
    idle: Mem,
    burst: Option<(Mem, Duration)>,
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<()> {
    let quick = std::env::var_os("RARC_BENCH_QUICK").is_some();
    let trickle_n = if quick { 20 } else { 200 };
    let bursts = if quick { 1 } else { 3 };
    let settle = Duration::from_millis(if quick { 500 } else { 2000 });
    let bins = build()?;

    let settings = SimSettings {
        mode: JobMode::Assign,
        long_poll_ms: 50_000,
        reassign_after_ms: 0,
        lost_after_ms: 0,
        ..SimSettings::default()
    };
    let server = SimServer::start(SimOptions {
        settings,
        ..SimOptions::default()
    })
    .await?;
    let dir = tempfile::tempdir()?;
    let env = Env {
        bins: &bins,
        server: &server,
        dir: dir.path(),
    };
    let mut cfg = ClientConfig::new(server.config_url("my-org"), Credentials::Pat(Secret::new(DEFAULT_PAT)));
    cfg.proxy = ProxyEnv::default();
    let client = ActionsClient::new(cfg)?;

    // `make bench` (scripts/bench) starts the test cluster and dockerd: a missing one is an
    // error, not a skipped measurement.
    let cluster = Some(cluster().await.map_err(|e| {
        Error::from(format!(
            "the Kubernetes parts need the test cluster (tests/cluster/up, RARC_KUBECONFIG): {e}"
        ))
    })?);
    if !docker_available() {
        return Err(Error::from(
            "the Docker part needs dockerd (scripts/dockerd-up) at DOCKER_HOST or /var/run/docker.sock",
        ));
    }
    let result = run(&env, &client, cluster.as_ref(), quick, trickle_n, bursts, settle).await;
    if let Some(c) = cluster
        && let Err(e) = c.ns.delete().await
    {
        eprintln!("cannot delete the temporary namespace: {e}");
    }
    server.stop().await;
    result
}

#[allow(clippy::too_many_arguments)]
async fn run(
    env: &Env<'_>,
    client: &ActionsClient,
    cluster: Option<&Cluster>,
    quick: bool,
    trickle_n: usize,
    bursts: usize,
    settle: Duration,
) -> Result<()> {
    let server = env.server;
    let mut rows: Vec<MemRow> = Vec::new();
    let mut exits: Vec<(String, Option<i32>)> = Vec::new();

    // 1. Idle RSS. The baseline first.
    let bare_set = create_set(client, "bare-proc").await?;
    let bare = start_bare(env, bare_set).await?;
    rows.push(MemRow {
        what: "baseline: bare_poll (client + session only)".into(),
        idle: idle_mem(bare.pid, settle).await?,
        burst: None,
    });

    let dry_set = create_set(client, "dry").await?;
    let dry = start_listener(env, Kind::DryRun, dry_set, ("bench", "dry"), None).await?;
    let dry_idle = idle_mem(dry.pid, settle).await?;

    if docker_available() {
        let set = create_set(client, "docker").await?;
        let docker = start_listener(env, Kind::Docker, set, ("bench", "docker"), None).await?;
        rows.push(MemRow {
            what: "rarc-listener --backend docker".into(),
            idle: idle_mem(docker.pid, settle).await?,
            burst: None,
        });
        exits.push(("docker".into(), docker.stop().await?));
    }

    let mut k8s = None;
    if let Some(c) = cluster {
        let set = create_set(client, "k8s").await?;
        let mut p = start_listener(
            env,
            Kind::Kubernetes,
            set,
            (c.ns.name(), "listener-ers"),
            Some(&c.kubeconfig),
        )
        .await?;
        p.desired = c.observed("listener-ers");
        let idle = idle_mem(p.pid, settle).await?;
        k8s = Some((p, idle));
    }

    // 2. A 1,000-job burst in one queue call, handled by each process in turn.
    async fn burst_once(server: &SimServer, label: &str, set: i64, obs: &Observed) -> Result<Duration> {
        let base = obs.latest();
        let t0 = Instant::now();
        queue(server, label, BURST)?;
        let t = obs.wait_at_least(base + i64::from(BURST), t0, label).await?;
        wait_drained(server, set).await?;
        Ok(t - t0)
    }
    let settle_burst = Duration::from_millis(300);
    let t = burst_once(server, "bare-proc", bare_set, &bare.received).await?;
    tokio::time::sleep(settle_burst).await;
    rows[0].burst = Some((mem(bare.pid)?, t));
    let t = burst_once(server, "dry", dry.scale_set_id, &dry.desired).await?;
    tokio::time::sleep(settle_burst).await;
    rows.push(MemRow {
        what: "rarc-listener --backend dry-run".into(),
        idle: dry_idle,
        burst: Some((mem(dry.pid)?, t)),
    });
    if let Some((p, idle)) = &k8s {
        let t = burst_once(server, "k8s", p.scale_set_id, &p.desired).await?;
        tokio::time::sleep(settle_burst).await;
        rows.push(MemRow {
            what: "rarc-listener --backend kubernetes".into(),
            idle: *idle,
            burst: Some((mem(p.pid)?, t)),
        });
    }
    // Baseline first, then listeners, in the table.
    rows.sort_by_key(|r| !r.what.starts_with("baseline"));

    // 3. Latency. Series interleaved job by job, so noise hits them alike.
    let bare_in_set = create_set(client, "bare-in").await?;
    let bare_in = bare_in_process(client.clone(), bare_in_set).await?;
    let mut series: Vec<(&str, Series)> = vec![
        (
            "baseline: bare MessageSession, queue → message received",
            Series::Jobs {
                label: "bare-in".into(),
                observed: bare_in.clone(),
            },
        ),
        (
            "rarc-listener dry-run, queue → decision logged",
            Series::Jobs {
                label: "dry".into(),
                observed: dry.desired.clone(),
            },
        ),
    ];
    if let (Some(c), Some((p, _))) = (cluster, &k8s) {
        series.push((
            "rarc-listener kubernetes, queue → ERS replicas (watch)",
            Series::Jobs {
                label: "k8s".into(),
                observed: p.desired.clone(),
            },
        ));
        series.push((
            "baseline: bench PATCH → ERS replicas (watch)",
            Series::Floor {
                sets: Box::new(c.sets.clone()),
                observed: c.observed("floor-ers"),
            },
        ));
    }
    // Warm-up: a few of each, not counted.
    for _ in 0..3 {
        for (_, s) in &series {
            s.one(server).await?;
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    let mut trickle: Vec<Vec<Duration>> = vec![Vec::new(); series.len()];
    for _ in 0..trickle_n {
        for (i, (_, s)) in series.iter().enumerate() {
            trickle[i].push(s.one(server).await?);
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    let mut burst_lat: Vec<Vec<Duration>> = vec![Vec::new(); series.len()];
    let mut burst_all: Vec<Vec<Duration>> = vec![Vec::new(); series.len()];
    for _ in 0..bursts {
        for (i, (_, s)) in series.iter().enumerate() {
            if matches!(s, Series::Floor { .. }) {
                continue;
            }
            let (lat, all) = s.burst(server, BURST).await?;
            burst_lat[i].extend(lat);
            burst_all[i].push(all);
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    }
    let dry_final = mem(dry.pid)?;
    let k8s_final = match &k8s {
        Some((p, _)) => Some(mem(p.pid)?),
        None => None,
    };

    // Stop everything (exit code 0 expected after SIGTERM).
    exits.push(("dry-run".into(), dry.stop().await?));
    if let Some((p, _)) = k8s {
        exits.push(("kubernetes".into(), p.stop().await?));
    }
    let mut bare = bare;
    let _ = bare.child.start_kill();
    let _ = bare.child.wait().await;

    // ---- report ----
    println!();
    println!(
        "rarc-listener (release) against rarc-sim, {}; {} trickled jobs per series, {} × {BURST}-job bursts{}",
        if quick { "QUICK" } else { "full run" },
        trickle_n,
        bursts,
        std::env::var("RARC_BENCH_LISTENER_ENV").map_or(String::new(), |e| format!("; listener env: {e}"))
    );
    println!();
    println!("memory (MiB; idle = session open, in the long poll; burst = {BURST} jobs queued in one call)");
    println!(
        "| process | idle VmRSS | of which RssAnon | idle VmHWM | threads | VmHWM after burst | burst → target seen ms |"
    );
    println!("| --- | --- | --- | --- | --- | --- | --- |");
    for r in &rows {
        let (b_hwm, b_ms) = r.burst.map_or(("–".to_string(), "–".to_string()), |(m, t)| {
            (format!("{:.1}", m.hwm as f64 / MIB), format!("{:.1}", ms(t)))
        });
        println!(
            "| {} | {:.1} | {:.1} | {:.1} | {} | {} | {} |",
            r.what,
            r.idle.rss as f64 / MIB,
            r.idle.anon as f64 / MIB,
            r.idle.hwm as f64 / MIB,
            r.idle.threads,
            b_hwm,
            b_ms
        );
    }
    let base = &rows[0];
    for r in rows.iter().skip(1) {
        let mut line = format!(
            "ratio {} / baseline: idle VmRSS {:.2}",
            r.what,
            r.idle.rss as f64 / base.idle.rss as f64
        );
        if let (Some((m, _)), Some((bm, _))) = (r.burst, base.burst) {
            line.push_str(&format!(", VmHWM after burst {:.2}", m.hwm as f64 / bm.hwm as f64));
        }
        println!("{line}");
    }
    println!(
        "after all phases: dry-run VmRSS {:.1} VmHWM {:.1}{}",
        dry_final.rss as f64 / MIB,
        dry_final.hwm as f64 / MIB,
        k8s_final.map_or(String::new(), |m| format!(
            "; kubernetes VmRSS {:.1} VmHWM {:.1}",
            m.rss as f64 / MIB,
            m.hwm as f64 / MIB
        ))
    );

    println!();
    println!("latency, job queued → observed (ms)");
    println!("| series | trickle p50 | trickle p99 | trickle max | burst p50 | burst p99 | burst all applied |");
    println!("| --- | --- | --- | --- | --- | --- | --- |");
    let mut summary = Vec::new();
    for (i, (name, _)) in series.iter().enumerate() {
        let t = stats(trickle[i].clone());
        let b = stats(burst_lat[i].clone());
        let all = stats(burst_all[i].clone());
        summary.push((t, b));
        let fmt = |v: f64| {
            if v.is_nan() {
                "–".to_string()
            } else {
                format!("{v:.2}")
            }
        };
        println!(
            "| {name} | {} | {} | {} | {} | {} | {} |",
            fmt(t.p50),
            fmt(t.p99),
            fmt(t.max),
            fmt(b.p50),
            fmt(b.p99),
            fmt(all.max)
        );
    }
    let (bt, bb) = summary[0];
    for (i, (name, s)) in series.iter().enumerate().skip(1) {
        if matches!(s, Series::Floor { .. }) {
            continue;
        }
        let (t, b) = summary[i];
        println!(
            "{name}: overhead over delivery p50 {:.2} ms (trickle) / {:.2} ms (burst); ratio to delivery p50 {:.2} p99 {:.2} (trickle), p50 {:.2} p99 {:.2} (burst)",
            t.p50 - bt.p50,
            b.p50 - bb.p50,
            t.p50 / bt.p50,
            t.p99 / bt.p99,
            b.p50 / bb.p50,
            b.p99 / bb.p99,
        );
    }
    if series.len() > 3 {
        let floor = summary[3].0;
        let k = summary[2].0;
        println!(
            "kubernetes listener minus (delivery + patch→watch floor), trickle p50: {:.2} ms",
            k.p50 - bt.p50 - floor.p50
        );
    }
    println!("exit codes after SIGTERM: {exits:?}");

    // Acceptance (docs/benchmarks.md): < 15 MiB idle, applied within 100 ms.
    let mut missed = Vec::new();
    for r in rows.iter().skip(1) {
        if r.idle.rss as f64 / MIB >= 15.0 {
            missed.push(format!(
                "{}: idle VmRSS {:.1} MiB ≥ 15",
                r.what,
                r.idle.rss as f64 / MIB
            ));
        }
    }
    for (i, (name, s)) in series.iter().enumerate().skip(1) {
        if matches!(s, Series::Floor { .. }) {
            continue;
        }
        if summary[i].0.p99 > 100.0 {
            missed.push(format!("{name}: trickle p99 {:.1} ms > 100", summary[i].0.p99));
        }
    }
    if exits.iter().any(|(_, c)| *c != Some(0)) {
        missed.push(format!("a listener did not exit 0 on SIGTERM: {exits:?}"));
    }
    if missed.is_empty() {
        println!("targets met: idle VmRSS < 15 MiB, trickle p99 < 100 ms");
    } else {
        println!("TARGETS MISSED:");
        for m in &missed {
            println!("  {m}");
        }
    }
    Ok(())
}
