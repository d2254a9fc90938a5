//! Several scale sets served by one `rarc-listener --backend docker` process (`scaleSets` in the
//! Docker config), against a real dockerd and rarc-sim in-process. Runner containers run the
//! simulated runner (`scripts/runner-image`) on the host network.
//!
//! Containers are labelled `rarc.test.sets=<uuid>` and force-removed when the guard drops.

use rarc_sim::{SimServer, testing};
use serde_json::json;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};
use support::docker::{docker_ok, runner_image, sweep, sweep_all};

mod support;

const TEST_LABEL: &str = "rarc.test.sets";

struct Guard(String);

impl Drop for Guard {
    fn drop(&mut self) {
        sweep(TEST_LABEL, &self.0);
    }
}

fn queue(s: &SimServer, count: u32, label: &str) -> Vec<i64> {
    testing::queue_steps(s, count, label, 300)
}

fn listener_config(dir: &Path, file: &str, s: &SimServer, id: i64, name: &str, min: i64, metrics: &str) {
    let v = json!({
        "configure_url": s.config_url("my-org"),
        "github_token": rarc_sim::auth::DEFAULT_PAT,
        "runner_scale_set_id": id,
        "runner_scale_set_name": name,
        "min_runners": min,
        "max_runners": 3,
        "metrics_addr": metrics,
    });
    std::fs::write(dir.join(file), v.to_string()).expect("write config.json");
}

async fn eventually<F: FnMut() -> bool>(what: &str, timeout: Duration, mut check: F) {
    let start = Instant::now();
    while !check() {
        assert!(
            start.elapsed() < timeout,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_scale_sets_in_one_process() {
    let image = runner_image();
    sweep_all(TEST_LABEL);
    let run = uuid::Uuid::new_v4().to_string();
    let _guard = Guard(run.clone());
    let s = testing::sim_with(rarc_sim::config::SimSettings {
        long_poll_ms: 300,
        ..Default::default()
    })
    .await;
    let client = testing::pat_client(&s);
    let linux = testing::create_set(&client, "sets-linux").await;
    let gpu = testing::create_set(&client, "sets-gpu").await;
    let dir = tempfile::tempdir().expect("tempdir");
    let metrics = format!("127.0.0.1:{}", free_port());
    listener_config(dir.path(), "linux.json", &s, linux, "sets-linux", 0, &metrics);
    listener_config(dir.path(), "gpu.json", &s, gpu, "sets-gpu", 1, &metrics);
    let docker = dir.path().join("docker.json");
    std::fs::write(
        &docker,
        json!({
            "runnerImage": image,
            "networkMode": "host",
            "extraLabels": { TEST_LABEL: run },
            "extraEnv": { "RARC_SET": "default" },
            "resyncIntervalMs": 1000,
            "scaleSets": [
                { "listenerConfig": "linux.json" },
                { "listenerConfig": "gpu.json", "extraEnv": { "RARC_SET": "gpu" } },
            ],
        })
        .to_string(),
    )
    .expect("write docker.json");

    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_rarc-listener"))
        .args(["--backend", "docker", "--docker-config"])
        .arg(&docker)
        .env_remove("LISTENER_CONFIG_PATH")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .expect("start rarc-listener");

    // gpu keeps its one idle runner (min_runners 1); linux starts at zero.
    let by_set = |id: i64| {
        let (run, set) = (
            format!("label={TEST_LABEL}={run}"),
            format!("label=rarc.runner.scale-set-id={id}"),
        );
        docker_ok(&["ps", "-aq", "--filter", &run, "--filter", &set])
            .split_whitespace()
            .map(str::to_owned)
            .collect::<Vec<_>>()
    };
    eventually("the gpu set's min runner", Duration::from_secs(30), || {
        by_set(gpu).len() == 1
    })
    .await;
    assert!(by_set(linux).is_empty(), "linux has min_runners 0");
    let idle = &by_set(gpu)[0];
    let env = docker_ok(&["inspect", "-f", "{{json .Config.Env}}", idle]);
    assert!(env.contains("\"RARC_SET=gpu\""), "the entry's extraEnv wins: {env}");

    let linux_jobs = queue(&s, 3, "sets-linux");
    let gpu_jobs = queue(&s, 2, "sets-gpu");
    eventually("all five jobs to succeed", Duration::from_secs(60), || {
        s.sim
            .with_state(|st| st.jobs())
            .iter()
            .all(|j| j.result.as_deref() == Some("succeeded"))
    })
    .await;
    let jobs = s.sim.with_state(|st| st.jobs());
    for j in &jobs {
        assert_eq!(j.runs, 1, "job {} ran once", j.runner_request_id);
        let (set, prefix) = if linux_jobs.contains(&j.runner_request_id) {
            (linux, "sets-linux-")
        } else {
            assert!(gpu_jobs.contains(&j.runner_request_id));
            (gpu, "sets-gpu-")
        };
        assert_eq!(
            j.scale_set_id,
            Some(set),
            "job {} went to its own set",
            j.runner_request_id
        );
        let runner = j.runner_name.as_deref().unwrap_or_default();
        assert!(runner.starts_with(prefix), "runner {runner} is of its set's containers");
    }
    assert_eq!(jobs.len(), 5);

    // Back to min runners, each set on its own; finished runners deregistered.
    eventually("linux back to 0, gpu back to 1", Duration::from_secs(30), || {
        by_set(linux).is_empty()
            && by_set(gpu).len() == 1
            && s.sim.with_state(|st| st.statistics(linux).total_registered_runners) == 0
            && s.sim.with_state(|st| st.statistics(gpu).total_registered_runners) == 1
    })
    .await;

    // One exposition for both sets on the shared address, and one /healthz.
    let body = reqwest::get(format!("http://{metrics}/metrics"))
        .await
        .expect("scrape")
        .text()
        .await
        .expect("body");
    assert_eq!(body.matches("# TYPE gha_desired_runners gauge").count(), 1, "{body}");
    assert!(body.contains("name=\"sets-linux\""), "{body}");
    assert!(body.contains("name=\"sets-gpu\""), "{body}");
    assert!(
        body.lines()
            .any(|l| l.starts_with("gha_min_runners{") && l.contains("name=\"sets-gpu\"") && l.ends_with(" 1")),
        "{body}"
    );
    let health = reqwest::get(format!("http://{metrics}/healthz"))
        .await
        .expect("healthz");
    assert_eq!(health.status(), 200);
    assert_eq!(s.sim.with_state(|st| st.sessions()).len(), 2, "one session per set");

    let pid = child.id().expect("pid").to_string();
    std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("kill");
    let status = tokio::time::timeout(Duration::from_secs(30), child.wait())
        .await
        .expect("exits within 30 s")
        .expect("wait");
    assert_eq!(status.code(), Some(0));
    assert!(s.sim.with_state(|st| st.sessions()).is_empty(), "both sessions deleted");

    // A bad entry is refused before anything starts, naming the file, the entry and the field.
    std::fs::write(
        &docker,
        json!({ "runnerImage": image, "scaleSets": [ { "listenerConfig": "linux.json" }, { "listenerConfig": "gpu.json", "memoryLimitBytes": "lots" } ] })
            .to_string(),
    )
    .expect("write");
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_rarc-listener"))
        .args(["--backend", "docker", "--docker-config"])
        .arg(&docker)
        .env_remove("LISTENER_CONFIG_PATH")
        .output()
        .await
        .expect("run");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("docker.json") && stderr.contains("scaleSets[1]") && stderr.contains("memoryLimitBytes"),
        "{stderr}"
    );
    assert!(s.sim.with_state(|st| st.sessions()).is_empty(), "nothing started");
}
