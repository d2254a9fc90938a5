//! The real `rarc-listener` binary: process contract (§2.1), config validation (§15.2), SIGTERM
//! (§15.4 item 20), metrics endpoint (§15.12 item 68). Uses `--backend dry-run`, so no cluster.

#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

mod common;

use common::*;
use rarc_sim::SimServer;
use rarc_sim::config::SimSettings;
use serde_json::{Value, json};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_rarc-listener");

fn config(s: &SimServer, id: i64, extra: Value) -> Value {
    let mut c = json!({
        "configure_url": s.config_url("my-org"),
        "github_token": rarc_sim::auth::DEFAULT_PAT,
        "ephemeral_runner_set_namespace": "arc-runners",
        "ephemeral_runner_set_name": "set-abc",
        "max_runners": 5,
        "min_runners": 0,
        "runner_scale_set_id": id,
        "log_level": "debug",
        "log_format": "json",
        "metrics_addr": "",
        "metrics": null
    });
    for (k, v) in extra.as_object().unwrap() {
        c[k] = v.clone();
    }
    c
}

fn write(dir: &Path, value: &Value) -> std::path::PathBuf {
    let path = dir.join("config.json");
    std::fs::write(&path, value.to_string()).unwrap();
    path
}

fn command() -> Command {
    let mut cmd = Command::new(BIN);
    cmd.env_remove("LISTENER_CONFIG_PATH")
        .env_remove("RUST_LOG")
        .env("LISTENER_BACKEND", "dry-run")
        .stdin(Stdio::null());
    cmd
}

fn run_to_end(mut cmd: Command) -> Output {
    cmd.output().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s01_missing_config_path() {
    let s = sim().await;
    let out = run_to_end(command());
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        "Error: LISTENER_CONFIG_PATH environment variable is not set\n"
    );
    let mut empty = command();
    empty.env("LISTENER_CONFIG_PATH", "");
    assert_eq!(run_to_end(empty).status.code(), Some(1));
    assert!(s.sim.calls().is_empty(), "no HTTP call");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s02_bad_configs_exit_1_naming_the_field() {
    let s = sim().await;
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        (json!({"configure_url": ""}), "configure_url"),
        (
            json!({"ephemeral_runner_set_namespace": ""}),
            "ephemeral_runner_set_namespace",
        ),
        (json!({"ephemeral_runner_set_name": ""}), "ephemeral_runner_set_name"),
        (json!({"runner_scale_set_id": 0}), "runner_scale_set_id"),
        (json!({"min_runners": 3, "max_runners": 2}), "max_runners"),
        (
            json!({"github_app_id": "1", "github_app_installation_id": 2, "github_app_private_key": "k"}),
            "both PAT and GitHub App credentials provided",
        ),
        (json!({"github_token": ""}), "github_token"),
        (json!({"vault_type": "gcp", "vault_lookup_key": "k"}), "vault_type"),
        (json!({"vault_type": "azure_key_vault"}), "vault_lookup_key"),
        (
            json!({"github_token": "", "vault_type": "azure_key_vault", "vault_lookup_key": "k"}),
            "not supported",
        ),
        (json!({"max_runners": 3_000_000_000i64}), "max_runners"),
        (json!({"log_level": "loud"}), "log_level"),
        (json!({"log_format": "yaml"}), "log_format"),
        (json!({"runner_scale_set_id": "seven"}), "runner_scale_set_id"),
    ];
    for (extra, field) in cases {
        let path = write(dir.path(), &config(&s, 1, extra.clone()));
        let mut cmd = command();
        cmd.env("LISTENER_CONFIG_PATH", &path);
        let out = run_to_end(cmd);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{extra}: {stderr}");
        assert!(stderr.contains(field), "{extra}: expected {field:?} in {stderr:?}");
    }
    // Not JSON at all; and `--config` pointing at a missing file.
    std::fs::write(dir.path().join("bad.json"), "{nope").unwrap();
    let mut cmd = command();
    cmd.args(["--config".as_ref(), dir.path().join("bad.json").as_os_str()]);
    assert_eq!(run_to_end(cmd).status.code(), Some(1));
    let mut cmd = command();
    cmd.args(["--config", "/nonexistent/config.json"]);
    let out = run_to_end(cmd);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/config.json"));
    assert!(s.sim.calls().is_empty(), "no HTTP call for a bad config");
}

#[test]
fn help_and_version() {
    let out = Command::new(BIN).arg("--help").output().unwrap();
    assert!(out.status.success());
    let help = String::from_utf8_lossy(&out.stdout);
    assert!(
        help.contains("EXIT CODES") && help.contains("LISTENER_CONFIG_PATH"),
        "{help}"
    );
    let out = Command::new(BIN).arg("--version").output().unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("rarc-listener "));
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

async fn wait_exit(child: &mut Child, timeout: Duration) -> std::process::ExitStatus {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("listener did not exit within {timeout:?}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s20_s68_sigterm_during_long_poll_and_metrics() {
    let s = sim_with(SimSettings {
        long_poll_ms: 30_000,
        ..Default::default()
    })
    .await;
    let id = create_set(&pat_client(&s), "proc").await;
    queue(&s, 2, "proc");
    s.sim.clear_calls();
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let path = write(
        dir.path(),
        &config(
            &s,
            id,
            json!({"metrics_addr": format!("127.0.0.1:{port}"), "min_runners": 1}),
        ),
    );
    let mut cmd = command();
    cmd.env("LISTENER_CONFIG_PATH", &path)
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let mut child = cmd.spawn().unwrap();
    wait_for("session", Duration::from_secs(10), || {
        calls_to(&s, "/sessions").iter().any(|c| c.status == 200)
    })
    .await;
    // Metrics: all §10 defaults that have samples after start.
    let url = format!("http://127.0.0.1:{port}/metrics");
    let mut body = String::new();
    for _ in 0..50 {
        if let Ok(r) = reqwest::get(&url).await {
            body = r.text().await.unwrap();
            if body.contains("gha_desired_runners") {
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let labels = r#"{enterprise="",organization="my-org",repository="",name="set-abc",namespace="arc-runners"}"#;
    for line in [
        format!("gha_assigned_jobs{labels} 2"),
        format!("gha_min_runners{labels} 1"),
        format!("gha_max_runners{labels} 5"),
        format!("gha_desired_runners{labels} 3"),
        format!("gha_idle_runners{labels} 0"),
    ] {
        assert!(body.contains(&line), "{line} in {body}");
    }
    assert!(body.contains(
        "# HELP gha_assigned_jobs Number of jobs assigned to this scale set.\n# TYPE gha_assigned_jobs gauge\n"
    ));
    let health = reqwest::get(format!("http://127.0.0.1:{port}/healthz")).await.unwrap();
    assert_eq!(health.status(), 200);
    // SIGTERM while the 30 s long poll is open.
    tokio::time::sleep(Duration::from_millis(300)).await;
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(i32::try_from(child.id()).unwrap()),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let status = wait_exit(&mut child, Duration::from_secs(10)).await;
    assert_eq!(status.code(), Some(0), "exit 0 on SIGTERM");
    let deletes: Vec<u16> = calls_to(&s, "/sessions/")
        .iter()
        .filter(|c| c.method == "DELETE")
        .map(|c| c.status)
        .collect();
    assert_eq!(deletes, [204], "session deleted");
    assert!(
        reqwest::get(&url).await.is_err(),
        "metrics server stopped with the listener"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s18_scale_set_not_found_exits_1() {
    let s = sim().await;
    let dir = tempfile::tempdir().unwrap();
    let path = write(dir.path(), &config(&s, 999, json!({})));
    let mut cmd = command();
    cmd.env("LISTENER_CONFIG_PATH", &path);
    let out = run_to_end(cmd);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("runner scale set 999 does not exist"), "{stderr}");
}
