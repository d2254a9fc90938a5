//! Reliability acceptance of the listener: the real binary `rarc-listener --backend docker`
//! against rarc-sim in-process (with fault injection) and the real dockerd, runner containers
//! running the simulated runner (`rarc-sim runner`) on the host network.
//!
//! Every scenario checks the same outcome: each queued job completes exactly once (`runs == 1` in
//! the simulator), and the listener either stays up (one session for the whole test) or, where the
//! spec makes the error fatal (§9.8), exits 1 and a restart of the binary recovers.
//!
//! The binary runs with the client's production settings (retries 1, 2, 4, 8 s; 5 min per
//! attempt), so faults are sized to fit: bursts of two 5xx, `Retry-After: 2`. Containers carry
//! `rarc.test.reliability=<uuid>`; the test asserts what the listener removed itself and sweeps
//! only as a safety net when a test fails.

use rarc_actions::types::Statistics;
use rarc_listener::backend::docker::DockerBackendConfig;
use rarc_sim::calllog::CallRecord;
use rarc_sim::config::{JobMode, SimSettings};
use rarc_sim::state::{JobState, JobView, RunnerView};
use rarc_sim::{SimOptions, SimServer, testing};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};
use support::docker::{containers_matching, docker_cli, docker_host, runner_image, sweep, volumes_matching};

mod support;

/// The label (key) of every container of this test binary; the value is one test's run id.
const LABEL: &str = "rarc.test.reliability";

// ---- harness ------------------------------------------------------------------------------------

/// How a scenario's world is set up.
struct Setup {
    name: &'static str,
    settings: SimSettings,
    min_runners: i64,
    max_runners: i64,
    /// `--health-deadline-secs`.
    health_deadline_secs: u64,
}

impl Setup {
    fn new(name: &'static str) -> Self {
        Self {
            name,
            settings: SimSettings {
                long_poll_ms: 1_000,
                ..SimSettings::default()
            },
            min_runners: 0,
            max_runners: 10,
            health_deadline_secs: 180,
        }
    }
}

/// A running listener process; its stdout and stderr go to `log`.
struct Proc {
    child: tokio::process::Child,
    log: PathBuf,
}

/// One scenario: a simulator with one scale set, the listener's config files, the listener
/// process (when started) and the label value of its containers.
struct Rig {
    server: SimServer,
    set: i64,
    name: &'static str,
    run: String,
    dir: tempfile::TempDir,
    metrics_addr: String,
    health_deadline_secs: u64,
    proc: Option<Proc>,
    starts: u32,
    logs: Vec<PathBuf>,
}

impl Drop for Rig {
    fn drop(&mut self) {
        if let Some(p) = self.proc.as_mut() {
            let _ = p.child.start_kill();
        }
        if std::thread::panicking() {
            for log in &self.logs {
                let text = std::fs::read_to_string(log).unwrap_or_default();
                let lines: Vec<&str> = text.lines().collect();
                let tail = lines[lines.len().saturating_sub(60)..].join("\n");
                eprintln!("---- {} (last 60 lines) ----\n{tail}", log.display());
            }
        }
        // Safety net only: the tests assert the listener removed its containers itself.
        sweep(LABEL, &self.run);
    }
}

fn free_addr() -> String {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = l.local_addr().expect("addr");
    format!("127.0.0.1:{}", addr.port())
}

async fn rig(setup: Setup) -> Rig {
    docker_host();
    runner_image();
    let server = SimServer::start(SimOptions {
        settings: setup.settings.clone(),
        // A killed listener's session stops conflicting soon (the restart retries 409 meanwhile).
        session_ttl: Duration::from_secs(3),
        ..SimOptions::default()
    })
    .await
    .expect("start rarc-sim");
    let client = testing::pat_client(&server);
    let set = testing::create_set(&client, setup.name).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let run = uuid::Uuid::new_v4().to_string();
    let r = Rig {
        server,
        set,
        name: setup.name,
        run,
        dir,
        metrics_addr: free_addr(),
        health_deadline_secs: setup.health_deadline_secs,
        proc: None,
        starts: 0,
        logs: Vec::new(),
    };
    r.write_config(setup.min_runners, setup.max_runners);
    r
}

impl Rig {
    fn config_path(&self) -> PathBuf {
        self.dir.path().join("config.json")
    }

    fn docker_path(&self) -> PathBuf {
        self.dir.path().join("docker.json")
    }

    /// config.json (without the Kubernetes fields) and the Docker config of this scale set.
    fn write_config(&self, min_runners: i64, max_runners: i64) {
        let config = serde_json::json!({
            "configure_url": self.server.config_url("my-org"),
            "github_token": rarc_sim::auth::DEFAULT_PAT,
            "runner_scale_set_id": self.set,
            "runner_scale_set_name": self.name,
            "min_runners": min_runners,
            "max_runners": max_runners,
            "metrics_addr": self.metrics_addr,
            "metrics_endpoint": "/metrics",
            "log_level": "info",
            "log_format": "text",
        });
        std::fs::write(self.config_path(), config.to_string()).expect("write config.json");
        let docker = DockerBackendConfig {
            scale_set_id: self.set,
            scale_set_name: self.name.into(),
            runner_image: runner_image().to_owned(),
            docker_host: Some(docker_host().to_owned()),
            network_mode: Some("host".into()),
            extra_labels: BTreeMap::from([(LABEL.to_owned(), self.run.clone())]),
            resync_interval_ms: 2_000,
            ..Default::default()
        };
        std::fs::write(
            self.docker_path(),
            serde_json::to_string(&docker).expect("docker config"),
        )
        .expect("write docker.json");
    }

    /// Starts the binary (a previous process must have exited).
    fn start(&mut self) {
        assert!(self.proc.is_none(), "the listener is already running");
        self.starts += 1;
        let log = self.dir.path().join(format!("listener-{}.log", self.starts));
        let out = std::fs::File::create(&log).expect("log file");
        let err = out.try_clone().expect("log file");
        let child = tokio::process::Command::new(env!("CARGO_BIN_EXE_rarc-listener"))
            .args(["--backend", "docker", "--docker-config"])
            .arg(self.docker_path())
            .args([
                "--health-deadline-secs",
                &self.health_deadline_secs.to_string(),
                "--session-conflict-retry-secs",
                "60",
            ])
            .env("LISTENER_CONFIG_PATH", self.config_path())
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .kill_on_drop(true)
            .spawn()
            .expect("start rarc-listener");
        self.logs.push(log.clone());
        self.proc = Some(Proc { child, log });
    }

    fn pid(&self) -> String {
        self.proc
            .as_ref()
            .and_then(|p| p.child.id())
            .expect("a running listener")
            .to_string()
    }

    fn signal(&self, sig: &str) {
        let status = std::process::Command::new("kill")
            .args(["-s", sig, &self.pid()])
            .status()
            .expect("kill");
        assert!(status.success(), "kill -s {sig}");
    }

    /// Still running?
    fn alive(&mut self) -> bool {
        self.proc
            .as_mut()
            .is_some_and(|p| matches!(p.child.try_wait(), Ok(None)))
    }

    /// Waits for the process to exit; its exit code (`None`: killed by a signal).
    async fn exited(&mut self, timeout: Duration) -> Option<i32> {
        let mut p = self.proc.take().expect("a listener process");
        let status = tokio::time::timeout(timeout, p.child.wait())
            .await
            .unwrap_or_else(|_| panic!("the listener did not exit within {timeout:?}"))
            .expect("wait");
        status.code()
    }

    /// The log of the current (or last) process.
    fn log(&self) -> String {
        let path = match &self.proc {
            Some(p) => p.log.clone(),
            None => self.logs.last().cloned().unwrap_or_default(),
        };
        std::fs::read_to_string(path).unwrap_or_default()
    }

    fn fault(&self, json: &str) {
        testing::fault(&self.server, json);
    }

    fn queue(&self, count: u32, duration_ms: u64) -> Vec<i64> {
        testing::queue_steps(&self.server, count, self.name, duration_ms)
    }

    fn jobs(&self, ids: &[i64]) -> Vec<JobView> {
        let want: HashSet<i64> = ids.iter().copied().collect();
        self.server
            .sim
            .with_state(|s| s.jobs())
            .into_iter()
            .filter(|j| want.contains(&j.runner_request_id))
            .collect()
    }

    /// Waits until every job of `ids` completed, then asserts each succeeded on its first and only
    /// run.
    async fn all_done_once(&self, ids: &[i64], timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            let jobs = self.jobs(ids);
            if jobs.len() == ids.len() && jobs.iter().all(|j| j.state == JobState::Completed) {
                for j in &jobs {
                    assert_eq!(
                        j.result.as_deref(),
                        Some("succeeded"),
                        "job {} ended {:?}",
                        j.runner_request_id,
                        j.result
                    );
                    assert_eq!(j.runs, 1, "job {} ran {} times", j.runner_request_id, j.runs);
                }
                return;
            }
            if Instant::now() > deadline {
                let mut by_state: BTreeMap<String, usize> = BTreeMap::new();
                for j in &jobs {
                    *by_state.entry(format!("{:?}", j.state)).or_default() += 1;
                }
                panic!(
                    "{} jobs not all completed within {timeout:?}: {by_state:?}; runs>1: {:?}",
                    ids.len(),
                    jobs.iter()
                        .filter(|j| j.runs > 1)
                        .map(|j| j.runner_request_id)
                        .collect::<Vec<_>>()
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    fn stats(&self) -> Statistics {
        self.server.sim.with_state(|s| s.statistics(self.set))
    }

    fn registered(&self) -> Vec<RunnerView> {
        self.server
            .sim
            .with_state(|s| s.runners())
            .into_iter()
            .filter(|r| r.scale_set_id == self.set)
            .collect()
    }

    /// This scenario's containers: (runner name label, state).
    fn containers(&self) -> Vec<(String, String)> {
        let out = docker_cli()
            .args([
                "ps",
                "-a",
                "--filter",
                &format!("label={LABEL}={}", self.run),
                "--format",
                r#"{{.Label "rarc.runner.name"}} {{.State}}"#,
            ])
            .output()
            .expect("docker ps");
        assert!(
            out.status.success(),
            "docker ps: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| l.split_once(' ').map(|(n, s)| (n.to_owned(), s.to_owned())))
            .collect()
    }

    fn calls(&self, method: &str, needle: &str) -> Vec<CallRecord> {
        testing::calls_to(&self.server, needle)
            .into_iter()
            .filter(|c| c.method == method)
            .collect()
    }

    /// Sessions created successfully (one per listener start that got going).
    fn sessions_created(&self) -> usize {
        self.calls("POST", "/sessions")
            .iter()
            .filter(|c| c.status == 200)
            .count()
    }

    async fn http_get(&self, path: &str) -> (u16, String) {
        let client = reqwest::Client::builder()
            .no_proxy()
            .timeout(Duration::from_secs(5))
            .build()
            .expect("http client");
        match client.get(format!("http://{}{path}", self.metrics_addr)).send().await {
            Ok(r) => {
                let status = r.status().as_u16();
                (status, r.text().await.unwrap_or_default())
            }
            Err(_) => (0, String::new()),
        }
    }

    /// The listener's metrics: family name → sum of its samples.
    async fn metrics(&self) -> HashMap<String, f64> {
        let (status, text) = self.http_get("/metrics").await;
        assert_eq!(status, 200, "GET /metrics");
        let mut out = HashMap::new();
        for line in text.lines().filter(|l| !l.starts_with('#') && !l.is_empty()) {
            let Some((series, value)) = line.rsplit_once(' ') else {
                continue;
            };
            let name = series.split('{').next().unwrap_or(series).to_owned();
            if let Ok(v) = value.parse::<f64>() {
                *out.entry(name).or_insert(0.0) += v;
            }
        }
        out
    }

    /// Waits until the listener serves /healthz and has its message session.
    async fn serving(&self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while self.http_get("/healthz").await.0 != 200 || self.sessions().is_empty() {
            assert!(
                Instant::now() < deadline,
                "the listener never served /healthz: {}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Waits until no runner container of this scenario is left and none is registered.
    async fn drained(&self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            let (containers, registered) = (self.containers(), self.registered());
            if containers.is_empty() && registered.is_empty() {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "after {timeout:?}: containers {containers:?}, registered runners {registered:?}, statistics {:?}",
                self.stats()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// SIGTERM: exit code 0 and the session deleted.
    async fn stop(&mut self) {
        self.signal("TERM");
        let code = self.exited(Duration::from_secs(30)).await;
        assert_eq!(code, Some(0), "exit code after SIGTERM; log:\n{}", self.log());
        let left: Vec<_> = self
            .server
            .sim
            .with_state(|s| s.sessions())
            .into_iter()
            .filter(|s| s.scale_set_id == self.set)
            .collect();
        assert!(left.is_empty(), "session deleted on SIGTERM: {left:?}");
    }
}

async fn eventually(what: &str, timeout: Duration, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !check() {
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Milliseconds between the end of call `a` and the start of call `b`.
fn gap_ms(a: &CallRecord, b: &CallRecord) -> u64 {
    b.at_ms.saturating_sub(a.at_ms + a.duration_ms)
}

/// The call right after the one answered `status` (same method and path).
fn after_status(calls: &[CallRecord], status: u16) -> (CallRecord, CallRecord) {
    let i = calls
        .iter()
        .position(|c| c.status == status)
        .unwrap_or_else(|| panic!("no call answered {status}"));
    let next = calls.get(i + 1).unwrap_or_else(|| panic!("no call after the {status}"));
    (calls[i].clone(), next.clone())
}

// ---- scenarios ----------------------------------------------------------------------------------

/// 5xx bursts on every call the listener makes (registration token, session creation, GET and
/// DELETE message, acquirejobs, JIT config generation, runner removal) and 429 + `Retry-After`:
/// all retried inside the client (§5.1), so the listener stays up on its first session, every
/// job runs once, and `Retry-After: 2` replaces the 4 s backoff that attempt would have waited.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn server_errors_and_rate_limits_are_retried_and_the_listener_stays_up() {
    let mut setup = Setup::new("rel-5xx");
    // Offer mode (GHES): jobs go through acquirejobs.
    setup.settings.mode = JobMode::Offer;
    let mut r = rig(setup).await;
    for rule in [
        r#"{"method":"POST","path":"/actions/runners/registration-token","kind":"status","status":503,"times":2}"#,
        r#"{"method":"POST","path":"/sessions","kind":"status","status":500,"times":2}"#,
        r#"{"method":"GET","path":"/broker/scalesets/message","kind":"status","status":503,"skip":1,"times":2}"#,
        r#"{"method":"GET","path":"/broker/scalesets/message","kind":"status","status":429,"retryAfter":"2","times":1}"#,
        r#"{"method":"DELETE","path":"/broker/scalesets/message/","kind":"status","status":502,"times":2}"#,
        r#"{"method":"POST","path":"/acquirejobs","kind":"status","status":500,"times":2}"#,
        r#"{"method":"POST","path":"/acquirejobs","kind":"status","status":429,"retryAfter":"2","times":1}"#,
        r#"{"method":"POST","path":"/generatejitconfig","kind":"status","status":503,"times":2}"#,
        r#"{"method":"POST","path":"/generatejitconfig","kind":"status","status":429,"retryAfter":"2","times":1}"#,
        r#"{"method":"DELETE","path":"/agents/","kind":"status","status":500,"times":2}"#,
    ] {
        r.fault(rule);
    }
    r.start();
    r.serving().await;
    let jobs = r.queue(6, 300);
    r.all_done_once(&jobs, Duration::from_secs(90)).await;
    // Every rule fired as often as it was told to (each path was exercised), then retired.
    eventually("every fault rule to be used up", Duration::from_secs(30), || {
        r.server.sim.faults().is_empty()
    })
    .await;
    r.drained(Duration::from_secs(30)).await;
    assert!(r.alive(), "the listener stayed up; log:\n{}", r.log());
    assert_eq!(r.sessions_created(), 1, "one session: no restart");

    // Retry-After: 2 on the third attempt, whose computed backoff would be 4 s.
    for (method, path) in [("GET", "/broker/scalesets/message"), ("POST", "/acquirejobs")] {
        let calls = r.calls(method, path);
        let (limited, next) = after_status(&calls, 429);
        let gap = gap_ms(&limited, &next);
        assert!(
            (1_800..3_500).contains(&gap),
            "{method} {path}: {gap} ms after the 429 (Retry-After 2 s, computed backoff 4 s)"
        );
        assert_eq!(next.status / 100, 2, "{method} {path} succeeded after the 429");
    }
    let acquired: Vec<i64> = r
        .calls("POST", "/acquirejobs")
        .iter()
        .filter(|c| c.status == 200)
        .flat_map(|c| serde_json::from_str::<Vec<i64>>(&c.body).unwrap_or_default())
        .collect();
    let acquired: HashSet<i64> = acquired.into_iter().collect();
    assert_eq!(acquired, jobs.iter().copied().collect(), "every offered job acquired");
    r.stop().await;
    assert!(r.containers().is_empty(), "the listener left no container behind");
}

/// Expiring tokens while jobs run: message-queue tokens (2 s TTL) are renewed by refreshing the
/// session on 401 (§4.7); admin tokens (62 s TTL, so inside the 60 s margin after 2 s) are renewed
/// before use (§4.6), so no admin call is ever refused. No restart, one session.
///
/// (A message-queue token revoked in the few milliseconds between a refresh and the retried call
/// is a second 401 and fatal, as in ARC; revocation of both tokens at once is exercised in
/// `revoked_tokens_are_renewed_without_a_restart`.)
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn expiring_tokens_are_renewed_without_a_restart() {
    let mut setup = Setup::new("rel-tokens");
    setup.settings.admin_token_ttl_secs = 62;
    setup.settings.mq_token_ttl_secs = 2;
    let mut r = rig(setup).await;
    r.start();
    r.serving().await;
    let first = r.queue(4, 300);
    r.all_done_once(&first, Duration::from_secs(60)).await;
    // Let the 2 s message-queue tokens run out a few times more while the listener polls.
    eventually("three message-queue token expiries", Duration::from_secs(20), || {
        r.calls("GET", "/broker/scalesets/message")
            .iter()
            .filter(|c| c.status == 401)
            .count()
            >= 3
    })
    .await;
    let second = r.queue(4, 300);
    r.all_done_once(&second, Duration::from_secs(60)).await;
    r.drained(Duration::from_secs(30)).await;

    assert!(r.alive(), "the listener stayed up; log:\n{}", r.log());
    assert_eq!(r.sessions_created(), 1, "one session: no restart");
    let rejected = r
        .calls("GET", "/broker/scalesets/message")
        .iter()
        .filter(|c| c.status == 401)
        .count();
    let refreshed = r
        .calls("PATCH", "/sessions/")
        .iter()
        .filter(|c| c.status == 200)
        .count();
    assert!(rejected >= 3, "message-queue tokens expired {rejected} times");
    assert!(
        refreshed >= rejected,
        "{refreshed} session refreshes for {rejected} rejections"
    );
    let chains = r.calls("POST", "/actions/runner-registration").len();
    assert!(chains >= 2, "the admin token was renewed ({chains} registrations)");
    // Only message-queue calls were ever refused: admin tokens were renewed before they expired.
    let refused: Vec<String> = r
        .server
        .sim
        .calls()
        .into_iter()
        .filter(|c| {
            c.status == 401 && !c.path.contains("/broker/scalesets/message") && !c.path.contains("/acquirejobs")
        })
        .map(|c| format!("{} {}", c.method, c.path))
        .collect();
    assert!(refused.is_empty(), "admin calls refused: {refused:?}");
    r.stop().await;
    assert!(r.containers().is_empty());
}

/// Admin and message-queue tokens revoked server-side: the next GET message is refused (401),
/// the session refresh is refused too with the revoked admin token; the client drops that token,
/// runs the token chain once and refreshes, and the loop goes on (JIT configs likewise). No
/// restart, one session, every job runs once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn revoked_tokens_are_renewed_without_a_restart() {
    let mut r = rig(Setup::new("rel-revoked")).await;
    r.start();
    r.serving().await;
    let before = r.queue(3, 300);
    r.all_done_once(&before, Duration::from_secs(60)).await;

    // Both tokens revoked before their expiry (ARC's listener dies here: the session refresh an
    // MQ 401 triggers is refused too, and its client only renews the admin token by expiry).
    r.server.sim.with_state(|s| s.expire_tokens(true, true));
    let after = r.queue(3, 300);
    r.all_done_once(&after, Duration::from_secs(60)).await;
    assert!(r.alive(), "no restart needed; log:\n{}", r.log());
    assert!(
        r.log().contains("admin token refused (401); fetching a new one"),
        "the refused admin token was replaced:\n{}",
        r.log()
    );
    assert_eq!(r.sessions_created(), 1, "the session survived");
    r.drained(Duration::from_secs(30)).await;
    r.stop().await;
}

/// Malformed bodies, each fatal by the spec (§9.8, §15 #29) and each recovered by a restart
/// (session deleted on the way out, so the restart is immediate):
/// 1. a truncated GET message envelope;
/// 2. a well-formed envelope whose job-message `body` is garbage;
/// 3. a truncated acquirejobs response (GHES offer mode), after the message was acknowledged.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn malformed_bodies_are_fatal_and_a_restart_recovers() {
    let mut setup = Setup::new("rel-malformed");
    setup.settings.mode = JobMode::Offer;
    let mut r = rig(setup).await;

    // 1. Truncated envelope.
    r.fault(r#"{"method":"GET","path":"/broker/scalesets/message","kind":"malformed","body":"{\"messageId\":12,\"messageTy","times":1}"#);
    r.start();
    assert_eq!(r.exited(Duration::from_secs(30)).await, Some(1), "{}", r.log());
    let jobs = r.queue(2, 300);

    // 2. Garbage job messages in a valid envelope.
    let garbage = serde_json::json!({
        "messageId": 7,
        "messageType": "RunnerScaleSetJobMessages",
        "statistics": {"totalAvailableJobs": 2},
        "body": "[{\"messageType\":\"JobAvailable\",\"runnerRequestId\":",
    })
    .to_string();
    let rule = serde_json::json!({
        "method": "GET",
        "path": "/broker/scalesets/message",
        "kind": "malformed",
        "body": garbage,
        "times": 1,
    });
    r.fault(&rule.to_string());
    r.start();
    assert_eq!(r.exited(Duration::from_secs(30)).await, Some(1), "{}", r.log());

    // 3. Truncated acquire response: the JobAvailable message was acknowledged before the acquire.
    r.fault(
        r#"{"method":"POST","path":"/acquirejobs","kind":"malformed","body":"{\"count\":2,\"value\":[","times":1}"#,
    );
    r.start();
    assert_eq!(r.exited(Duration::from_secs(30)).await, Some(1), "{}", r.log());
    assert!(r.server.sim.faults().is_empty(), "every malformed body was served");
    assert_eq!(r.sessions().len(), 0, "each failed listener deleted its session");

    // The restart finds the offered jobs and runs them.
    r.start();
    r.serving().await;
    r.all_done_once(&jobs, Duration::from_secs(60)).await;
    let recovered: Vec<i64> = r
        .calls("GET", "/acquirablejobs")
        .iter()
        .filter(|c| c.status == 200)
        .map(|_| 1)
        .collect();
    assert!(!recovered.is_empty(), "the restart looked up the jobs still on offer");
    let more = r.queue(2, 300);
    r.all_done_once(&more, Duration::from_secs(60)).await;
    r.drained(Duration::from_secs(30)).await;
    assert!(r.alive());
    assert_eq!(r.sessions_created(), 4);
    r.stop().await;
}

/// A slow long poll (2.5 s on top of the window, within the client's timeout) is just slow. A hung
/// one is not abandoned before the client's 5 min attempt timeout, so the listener's own liveness
/// turns `/healthz` 503 after `--health-deadline-secs` (here 5 s), which is what restarts it under
/// Kubernetes: the test plays kubelet, sees the 503, sends SIGTERM (the hung poll is aborted, the
/// session deleted, exit 0) and starts a new process, which runs the jobs queued meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_hanging_long_poll_turns_healthz_red_and_a_restart_recovers() {
    let mut setup = Setup::new("rel-hang");
    setup.health_deadline_secs = 5;
    let mut r = rig(setup).await;
    r.start();
    r.serving().await;
    r.fault(r#"{"method":"GET","path":"/broker/scalesets/message","kind":"latency","ms":2500,"times":3}"#);
    let slow = r.queue(2, 300);
    r.all_done_once(&slow, Duration::from_secs(60)).await;
    r.drained(Duration::from_secs(30)).await;
    assert_eq!(r.http_get("/healthz").await.0, 200, "slow polls keep /healthz green");

    r.fault(r#"{"method":"GET","path":"/broker/scalesets/message","kind":"hang","times":1}"#);
    // The poll in flight ends; the next one hangs.
    eventually("a poll to hang", Duration::from_secs(10), || {
        r.server.sim.faults().is_empty()
    })
    .await;
    let stuck = r.queue(2, 300);
    let t0 = Instant::now();
    let deadline = Instant::now() + Duration::from_secs(20);
    while r.http_get("/healthz").await.0 != 503 {
        assert!(
            Instant::now() < deadline,
            "/healthz never turned 503 during a hung poll"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let red_after = t0.elapsed();
    assert!(
        r.jobs(&stuck)
            .iter()
            .all(|j| j.state == JobState::Assigned && j.runs == 0),
        "nothing ran while the poll hung"
    );
    assert!(r.alive(), "a hung poll is not fatal by itself");
    r.stop().await;

    r.start();
    r.serving().await;
    r.all_done_once(&stuck, Duration::from_secs(60)).await;
    r.drained(Duration::from_secs(30)).await;
    assert_eq!(r.sessions_created(), 2);
    r.stop().await;
    println!("hung poll: /healthz 503 {red_after:?} after the jobs were queued");
}

/// SIGKILL in the middle of a 200-job burst (maxRunners 20, minRunners 1, 200 ms jobs), then a
/// restart of the binary: every job completes exactly once, the runner containers come back to
/// minRunners, every registered runner has a container (except registrations the SIGKILL caught
/// between JIT config and container creation: a known gap, checked to be unused), and the
/// metrics agree with the
/// simulator's statistics at quiescence. A last restart with minRunners 0 shows the listener
/// trims the adopted idle runner itself and leaves nothing behind after SIGTERM.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigkill_during_a_200_job_burst_loses_nothing() {
    let mut setup = Setup::new("rel-burst");
    setup.min_runners = 1;
    setup.max_runners = 20;
    let mut r = rig(setup).await;
    r.start();
    r.serving().await;
    eventually("the idle floor of 1 runner online", Duration::from_secs(30), || {
        r.registered().iter().filter(|x| x.online).count() == 1
    })
    .await;

    let t0 = Instant::now();
    let jobs = r.queue(200, 200);
    // Kill once a good part (but not all) of the burst is done.
    eventually("60 jobs done", Duration::from_secs(90), || {
        r.jobs(&jobs).iter().filter(|j| j.state == JobState::Completed).count() >= 60
    })
    .await;
    r.signal("KILL");
    assert_eq!(r.exited(Duration::from_secs(10)).await, None, "killed by SIGKILL");
    let done_at_kill = r.jobs(&jobs).iter().filter(|j| j.state == JobState::Completed).count();
    assert!(done_at_kill < 200, "the kill came in the middle of the burst");
    let running_at_kill = r.containers().len();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let max_id_at_kill = r.registered().iter().map(|x| x.id).max().unwrap_or(0);

    r.start();
    r.all_done_once(&jobs, Duration::from_secs(150)).await;
    let burst = t0.elapsed();

    // A SIGKILL between registering a runner (JIT config) and creating its container leaves a
    // registration without a container; its pending marker (a labelled volume) lets the restarted
    // process find and deregister it. Below, "exactly one registered runner" proves it did.
    let registered_at_kill = max_id_at_kill;

    // Back to the floor: exactly minRunners containers, each the container of a registered runner.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (c, reg) = (r.containers(), r.registered());
        if c.len() == 1 && reg.len() == 1 && c[0].1 == "running" && c[0].0 == reg[0].name {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "not back to one runner: containers {c:?}, registered {reg:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Stable: nothing more is created or removed.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let containers = r.containers();
    let registered = r.registered();
    assert_eq!(containers.len(), 1, "{containers:?}");
    assert_eq!(registered.len(), 1, "{registered:?}");
    assert_eq!(containers[0].0, registered[0].name);

    // Metrics of the restarted listener agree with the simulator.
    let stats = r.stats();
    assert_eq!((stats.total_assigned_jobs, stats.total_running_jobs), (0, 0));
    let deadline = Instant::now() + Duration::from_secs(15);
    let m = loop {
        let m = r.metrics().await;
        let ok = m.get("gha_assigned_jobs") == Some(&(stats.total_assigned_jobs as f64))
            && m.get("gha_running_jobs") == Some(&(stats.total_running_jobs as f64))
            && m.get("gha_desired_runners") == Some(&1.0);
        if ok || Instant::now() > deadline {
            break m;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let desired = (1 + stats.total_assigned_jobs).min(20) as f64;
    assert_eq!(
        m.get("gha_assigned_jobs"),
        Some(&(stats.total_assigned_jobs as f64)),
        "{m:?}"
    );
    assert_eq!(
        m.get("gha_running_jobs"),
        Some(&(stats.total_running_jobs as f64)),
        "{m:?}"
    );
    assert_eq!(m.get("gha_desired_runners"), Some(&desired), "{m:?}");
    assert_eq!(m.get("gha_min_runners"), Some(&1.0), "{m:?}");
    assert_eq!(m.get("gha_max_runners"), Some(&20.0), "{m:?}");
    assert!(r.alive());
    assert_eq!(r.sessions_created(), 2);

    // SIGTERM keeps the idle runner for the next instance (adoption)...
    r.stop().await;
    assert_eq!(
        r.containers().len(),
        1,
        "the idle runner is kept across a graceful restart"
    );
    // ...which, configured with minRunners 0, trims it (deregistering it first) and leaves nothing.
    r.write_config(0, 20);
    r.start();
    r.drained(Duration::from_secs(30)).await;
    r.stop().await;
    assert!(r.containers().is_empty(), "the listener removed every container itself");
    assert!(r.registered().is_empty());
    assert!(
        containers_matching(&format!("label={LABEL}={}", r.run)).is_empty(),
        "nothing for the safety-net sweep"
    );
    assert!(
        volumes_matching(&format!("label={LABEL}={}", r.run)).is_empty(),
        "no pending-runner marker left"
    );
    let swept: usize = r
        .logs
        .iter()
        .map(|l| {
            std::fs::read_to_string(l)
                .unwrap_or_default()
                .matches("registered without a container")
                .count()
        })
        .sum();
    println!(
        "200-job burst: {done_at_kill} done and {running_at_kill} containers at the SIGKILL (runner ids up to {registered_at_kill}); all done after {burst:?}; {swept} runner(s) registered without a container deregistered after the restart"
    );
}

impl Rig {
    fn sessions(&self) -> Vec<rarc_sim::state::SessionView> {
        self.server
            .sim
            .with_state(|s| s.sessions())
            .into_iter()
            .filter(|s| s.scale_set_id == self.set)
            .collect()
    }
}
