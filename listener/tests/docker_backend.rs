//! The Docker backend against a real dockerd (started by `scripts/dockerd-up`) and rarc-sim
//! in-process. Runner containers run `rarc-sim runner` from an image built `FROM scratch`
//! (imported from a tar: the binary, the libraries `ldd` lists, busybox as `/bin/sh`), on the host
//! network so they reach the simulator on 127.0.0.1.
//!
//! Needs root (dockerd) and a built `rarc-sim` binary next to this test's target directory
//! (`cargo build -p rarc-sim`; `RARC_SIM_BIN` overrides the path). The harness (daemon, image,
//! sweeping) is in `support/docker.rs`; the image comes from `scripts/runner-image`, tagged by the
//! binary's size and mtime and reused. Every container is labelled `rarc.test.run=<uuid>` and
//! force-removed when the test's guard drops, also on failure.

use rarc_actions::types::JitConfigRequest;
use rarc_listener::backend::Backend;
use rarc_listener::backend::docker::{
    ContainerState, DockerBackend, DockerBackendConfig, JIT_CONFIG_ENV, pending_volume,
};
use std::collections::{BTreeMap, HashSet};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};
use support::docker::{docker_ok, runner_image, sweep};
use tokio_util::sync::CancellationToken;

mod support;
use support::drive::{drive, eventually};
use support::world::World;

const TEST_LABEL: &str = "rarc.test.run";

/// Docker tests share one daemon and measure latencies: one at a time.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

// ---- harness: one test's world -----------------------------------------------------------------

async fn world() -> World {
    captured_logs();
    World::new(TEST_LABEL).await
}

/// The backend-specific parts of the world.
trait BackendWorld {
    fn config(&self, id: i64, name: &str) -> DockerBackendConfig;
    async fn backend(&self, id: i64, name: &str) -> DockerBackend;
    async fn drain(&self, backend: &DockerBackend, set: i64, timeout: Duration);
}

impl BackendWorld for World {
    fn config(&self, id: i64, name: &str) -> DockerBackendConfig {
        DockerBackendConfig {
            extra_env: BTreeMap::from([("RARC_TEST".to_owned(), "1".to_owned())]),
            max_runners: 50,
            ..self.base_config(id, name)
        }
    }

    async fn backend(&self, id: i64, name: &str) -> DockerBackend {
        DockerBackend::new(self.config(id, name), self.client.clone())
            .await
            .expect("docker backend")
    }

    /// Scales `backend` to 0 (patch id 0) and waits until it has no container and `set` no
    /// registered runner.
    async fn drain(&self, backend: &DockerBackend, set: i64, timeout: Duration) {
        backend.apply_desired(0, 0).await.expect("apply_desired(0, 0)");
        eventually("nothing left", timeout, || async {
            backend.containers().await.expect("list containers").is_empty() && self.registered_runners(set) == 0
        })
        .await;
    }
}

async fn running(b: &DockerBackend) -> usize {
    b.containers()
        .await
        .expect("list")
        .iter()
        .filter(|c| c.state == ContainerState::Running)
        .count()
}

// ---- tests --------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn jobs_get_one_runner_each_and_everything_is_cleaned_up() {
    let _serial = SERIAL.lock().await;
    let w = world().await;
    let set = w.scale_set("dk-jobs").await;
    let backend = Arc::new(w.backend(set, "dk-jobs").await);
    let stop = CancellationToken::new();
    let driver = drive(backend.clone(), w.client.clone(), set, 50, "docker-test", stop.clone());

    let jobs = w.queue(5, "dk-jobs", 500);
    eventually("every job to complete", Duration::from_secs(60), || async {
        w.server
            .sim
            .with_state(|s| s.jobs())
            .iter()
            .filter(|j| jobs.contains(&j.runner_request_id))
            .all(|j| j.result.is_some())
    })
    .await;
    let done: Vec<_> = w
        .server
        .sim
        .with_state(|s| s.jobs())
        .into_iter()
        .filter(|j| jobs.contains(&j.runner_request_id))
        .collect();
    assert_eq!(done.len(), 5);
    for j in &done {
        assert_eq!(j.runs, 1, "job {} ran {} times", j.runner_request_id, j.runs);
        assert_eq!(j.result.as_deref(), Some("succeeded"), "job {}", j.runner_request_id);
    }
    let runners: HashSet<_> = done.iter().filter_map(|j| j.runner_name.clone()).collect();
    assert_eq!(runners.len(), 5, "each runner took exactly one job: {runners:?}");
    assert!(runners.iter().all(|n| n.starts_with("dk-jobs-")), "{runners:?}");

    // Exited runners are removed; with nothing assigned the loop converges to 0 (patch id 0).
    eventually("no containers left", Duration::from_secs(30), || async {
        backend.containers().await.expect("list").is_empty()
    })
    .await;
    eventually("no registered runners", Duration::from_secs(10), || async {
        w.registered_runners(set) == 0
    })
    .await;
    stop.cancel();
    driver.await.expect("driver");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn patch_id_zero_trims_idle_runners_and_deregisters_them() {
    let _serial = SERIAL.lock().await;
    let w = world().await;
    let set = w.scale_set("dk-down").await;
    let backend = w.backend(set, "dk-down").await;

    backend.apply_desired(3, 1).await.unwrap();
    eventually("3 running runners online", Duration::from_secs(30), || async {
        running(&backend).await == 3 && w.online_runners(set) == 3
    })
    .await;

    // A non-zero patch id never scales down.
    backend.apply_desired(1, 2).await.unwrap();
    let report = backend.reconcile_now().await.unwrap();
    assert_eq!((report.live, report.scaled_down), (3, 0), "{report:?}");
    assert_eq!(w.registered_runners(set), 3);

    backend.apply_desired(1, 0).await.unwrap();
    eventually("1 runner left", Duration::from_secs(20), || async {
        backend.containers().await.unwrap().len() == 1 && w.registered_runners(set) == 1
    })
    .await;
    let left = backend.containers().await.unwrap();
    let registered = w.server.sim.with_state(|s| s.runners());
    assert_eq!(
        registered.iter().find(|r| r.scale_set_id == set).map(|r| r.id),
        left[0].runner_id,
        "the runner left is the one still registered"
    );

    w.drain(&backend, set, Duration::from_secs(20)).await;
}

/// What a process killed between the JIT call and the container create leaves: a registered
/// runner, no container, and its pending marker. The next pass deregisters it.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_runner_registered_without_a_container_is_deregistered() {
    let _serial = SERIAL.lock().await;
    let w = world().await;
    let set = w.scale_set("dk-orphan").await;
    let backend = w.backend(set, "dk-orphan").await;
    // The marker the killed process made, with the backend's own selector labels.
    let orphan = "dk-orphan-zzzzz";
    let mut args: Vec<String> = vec!["volume".into(), "create".into()];
    for (k, v) in backend.selector() {
        args.extend(["--label".into(), format!("{k}={v}")]);
    }
    args.extend([
        "--label".into(),
        format!("rarc.runner.name={orphan}"),
        "--label".into(),
        "rarc.runner.role=pending".into(),
        pending_volume(orphan),
    ]);
    docker_ok(&args.iter().map(String::as_str).collect::<Vec<_>>());
    // A marker without a registration (killed before the JIT call answered) goes too.
    let never = "dk-orphan-yyyyy";
    let mut args2 = args.clone();
    let n = args2.len();
    args2[n - 1] = pending_volume(never);
    args2[n - 4] = format!("rarc.runner.name={never}");
    docker_ok(&args2.iter().map(String::as_str).collect::<Vec<_>>());
    w.client
        .generate_jit_runner_config(
            set,
            &JitConfigRequest {
                name: orphan.into(),
                work_folder: "_work".into(),
            },
        )
        .await
        .expect("register the orphan");
    assert_eq!(w.registered_runners(set), 1);

    let report = backend.reconcile_now().await.unwrap();
    assert_eq!(report.orphans_deregistered, 1, "{report:?}");
    assert_eq!(w.registered_runners(set), 0, "the orphan is deregistered");
    let left = docker_ok(&["volume", "ls", "-q", "--filter", "label=rarc.runner.role=pending"]);
    assert!(
        !left.contains(&pending_volume(orphan)) && !left.contains(&pending_volume(never)),
        "markers removed: {left}"
    );

    // Runners created normally leave no marker behind.
    backend.apply_desired(2, 0).await.unwrap();
    eventually("2 runners online", Duration::from_secs(30), || async {
        running(&backend).await == 2 && w.online_runners(set) == 2
    })
    .await;
    let left = docker_ok(&[
        "volume",
        "ls",
        "-q",
        "--filter",
        &format!("label={TEST_LABEL}={}", w.run),
    ]);
    assert!(left.trim().is_empty(), "no marker for created runners: {left}");
    w.drain(&backend, set, Duration::from_secs(20)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_new_instance_adopts_running_containers_without_duplicates() {
    let _serial = SERIAL.lock().await;
    let w = world().await;
    let set = w.scale_set("dk-adopt").await;
    let first = w.backend(set, "dk-adopt").await;
    first.apply_desired(3, 1).await.unwrap();
    eventually("3 running", Duration::from_secs(30), || async {
        running(&first).await == 3
    })
    .await;
    let before: HashSet<String> = first
        .containers()
        .await
        .unwrap()
        .into_iter()
        .map(|c| c.container_id)
        .collect();
    first.shutdown().await; // the listener restarts
    drop(first);

    let second = w.backend(set, "dk-adopt").await;
    second.apply_desired(3, 7).await.unwrap();
    let report = second.reconcile_now().await.unwrap();
    assert_eq!((report.live, report.created), (3, 0), "{report:?}");
    // More passes (events, resyncs) change nothing either.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let after: HashSet<String> = second
        .containers()
        .await
        .unwrap()
        .into_iter()
        .map(|c| c.container_id)
        .collect();
    assert_eq!(before, after, "the same containers, adopted");
    assert_eq!(w.registered_runners(set), 3);

    // Scaling up from there adds only the difference.
    second.apply_desired(4, 8).await.unwrap();
    eventually("4 running", Duration::from_secs(30), || async {
        running(&second).await == 4
    })
    .await;
    assert_eq!(second.containers().await.unwrap().len(), 4);

    w.drain(&second, set, Duration::from_secs(20)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_scale_sets_in_one_process_keep_to_their_own_containers() {
    let _serial = SERIAL.lock().await;
    let w = world().await;
    let (a_id, b_id) = (w.scale_set("dk-a").await, w.scale_set("dk-b").await);
    let a = w.backend(a_id, "dk-a").await;
    let b = w.backend(b_id, "dk-b").await;
    a.apply_desired(2, 1).await.unwrap();
    b.apply_desired(1, 1).await.unwrap();
    eventually("2 + 1 running", Duration::from_secs(30), || async {
        running(&a).await == 2 && running(&b).await == 1
    })
    .await;
    let b_before = b.containers().await.unwrap();
    assert!(b_before.iter().all(|c| c.runner_name.starts_with("dk-b-")));

    a.apply_desired(0, 0).await.unwrap();
    eventually("a empty", Duration::from_secs(20), || async {
        a.containers().await.unwrap().is_empty() && w.registered_runners(a_id) == 0
    })
    .await;
    b.reconcile_now().await.unwrap();
    assert_eq!(b.containers().await.unwrap(), b_before, "b untouched");
    assert_eq!(w.registered_runners(b_id), 1);

    b.apply_desired(0, 0).await.unwrap();
    eventually("b empty", Duration::from_secs(20), || async {
        b.containers().await.unwrap().is_empty()
    })
    .await;
}

/// A writer collecting every log line of the process (the global subscriber of this binary).
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Captured {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().expect("log buffer")).into_owned()
    }
}

/// Installs (once) the global subscriber: `info`, and everything of rarc-listener, into memory.
fn captured_logs() -> &'static Captured {
    static LOGS: OnceLock<Captured> = OnceLock::new();
    LOGS.get_or_init(|| {
        let logs = Captured::default();
        let sink = logs.clone();
        tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new("info,rarc_listener=trace"))
            .with_writer(move || sink.clone())
            .with_ansi(false)
            .init();
        logs
    })
}

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("log buffer").extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_jit_config_is_in_the_env_only_never_in_labels_or_logs() {
    let logs = captured_logs();
    {
        let _serial = SERIAL.lock().await;
        let w = world().await;
        let set = w.scale_set("dk-secret").await;
        let backend = w.backend(set, "dk-secret").await;
        backend.apply_desired(1, 1).await.unwrap();
        eventually("1 running", Duration::from_secs(30), || async {
            running(&backend).await == 1
        })
        .await;
        let c = backend.containers().await.unwrap().remove(0);
        let inspect = backend.docker().inspect_container(&c.container_id, None).await.unwrap();
        let config = inspect.config.unwrap();
        let jit = config
            .env
            .unwrap_or_default()
            .iter()
            .find_map(|e| e.strip_prefix(&format!("{JIT_CONFIG_ENV}=")).map(str::to_owned))
            .expect("JIT config in the env");
        assert!(jit.len() > 20);
        let labels = config.labels.unwrap_or_default();
        assert!(labels.contains_key("rarc.runner.id") && labels.contains_key("rarc.runner.name"));
        assert_eq!(labels.get("rarc.runner.scale-set-id"), Some(&set.to_string()));
        for (k, v) in &labels {
            assert!(!k.contains(&jit) && !v.contains(&jit), "label {k} holds the JIT config");
        }
        // The runner's token inside the JIT config must not leak either.
        w.drain(&backend, set, Duration::from_secs(20)).await;
        let text = logs.text();
        assert!(text.contains("reconciled"), "the backend logged: {text}");
        assert!(!text.contains(&jit), "a log line holds the JIT config");
    }
}

/// Start latency: `apply_desired(20)` → 20 running containers, against 20 sequential
/// `docker run -d` of the same image through the CLI. Prints the figures.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn start_latency_of_20_runners() {
    let _serial = SERIAL.lock().await;
    let w = world().await;
    let set = w.scale_set("dk-bench").await;
    let backend = w.backend(set, "dk-bench").await;
    // Let the adoption pass finish so it does not count.
    backend.reconcile_now().await.unwrap();

    let t0 = Instant::now();
    backend.apply_desired(20, 1).await.unwrap();
    let mut first_created = None;
    loop {
        let cs = backend.containers().await.unwrap();
        if first_created.is_none() && !cs.is_empty() {
            first_created = Some(t0.elapsed());
        }
        if cs.iter().filter(|c| c.state == ContainerState::Running).count() == 20 {
            break;
        }
        assert!(t0.elapsed() < Duration::from_secs(60), "20 runners did not start");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let backend_total = t0.elapsed();
    let first_created = first_created.unwrap_or(backend_total);
    eventually("20 online", Duration::from_secs(30), || async {
        w.online_runners(set) == 20
    })
    .await;
    let online = t0.elapsed();

    w.drain(&backend, set, Duration::from_secs(30)).await;

    // Baseline: the CLI, one `docker run -d` after the other.
    let image = runner_image();
    let label = format!("{TEST_LABEL}={}", w.run);
    let t1 = Instant::now();
    for i in 0..20 {
        docker_ok(&[
            "run",
            "-d",
            "--network",
            "host",
            "--label",
            &label,
            "--name",
            &format!("dk-bench-cli-{}-{i}", &w.run[..8]),
            "-e",
            "RARC_TEST=1",
            image,
        ]);
    }
    let cli_total = t1.elapsed();
    let ratio = backend_total.as_secs_f64() / cli_total.as_secs_f64();
    println!(
        "docker backend: first container {first_created:?}, 20 running {backend_total:?}, 20 online at the sim {online:?}; \
         20 sequential `docker run -d`: {cli_total:?}; ratio {ratio:.2}"
    );
    sweep(TEST_LABEL, &w.run);
    assert!(
        ratio < 1.0,
        "the backend should beat sequential docker run ({ratio:.2})"
    );
}

/// The real binary, `--backend docker`: config.json without the Kubernetes fields plus a Docker
/// config file; jobs are run by runner containers, everything is cleaned up, SIGTERM exits 0 after
/// deleting the session.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_binary_runs_jobs_with_the_docker_backend() {
    let _serial = SERIAL.lock().await;
    let w = world().await;
    let set = w.scale_set("dk-bin").await;
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("config.json");
    std::fs::write(
        &config,
        serde_json::json!({
            "configure_url": w.server.config_url("my-org"),
            "github_token": rarc_sim::auth::DEFAULT_PAT,
            "runner_scale_set_id": set,
            "runner_scale_set_name": "dk-bin",
            "min_runners": 0,
            "max_runners": 10,
            "log_level": "info",
            "log_format": "text",
        })
        .to_string(),
    )
    .expect("write config.json");
    let docker = dir.path().join("docker.json");
    std::fs::write(
        &docker,
        serde_json::to_string(&w.config(set, "dk-bin")).expect("docker config"),
    )
    .expect("write");
    let bin = env!("CARGO_BIN_EXE_rarc-listener");
    let mut child = tokio::process::Command::new(bin)
        .args(["--backend", "docker", "--docker-config"])
        .arg(&docker)
        .env("LISTENER_CONFIG_PATH", &config)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start rarc-listener");
    let jobs = w.queue(3, "dk-bin", 200);
    eventually("every job to complete", Duration::from_secs(60), || async {
        w.server
            .sim
            .with_state(|s| s.jobs())
            .iter()
            .filter(|j| jobs.contains(&j.runner_request_id))
            .all(|j| j.result.as_deref() == Some("succeeded") && j.runs == 1)
    })
    .await;
    eventually("runners deregistered", Duration::from_secs(30), || async {
        w.server.sim.with_state(|s| s.statistics(set).total_registered_runners) == 0
    })
    .await;
    let pid = child.id().expect("pid").to_string();
    Command::new("kill").args(["-TERM", &pid]).status().expect("kill");
    let status = tokio::time::timeout(Duration::from_secs(30), child.wait())
        .await
        .expect("exits")
        .expect("wait");
    assert_eq!(status.code(), Some(0));
    assert!(
        w.server.sim.with_state(|s| s.sessions()).is_empty(),
        "session deleted on SIGTERM"
    );
    // A Docker config naming an unknown field is refused, naming it.
    std::fs::write(&docker, r#"{"runnerImage":"x","bogus":1}"#).expect("write");
    let out = tokio::process::Command::new(bin)
        .args(["--backend", "docker", "--docker-config"])
        .arg(&docker)
        .env("LISTENER_CONFIG_PATH", &config)
        .output()
        .await
        .expect("run");
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("bogus"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
