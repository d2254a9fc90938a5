//! The `rarc-sim` binary as a user runs it: help, bad flags, bad control input, serve + SIGTERM,
//! the runner subcommand against a live simulator, and the demo.
#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

use rarc_actions::types::{JitConfigRequest, JitRunnerConfig};
use std::io::{BufRead, BufReader};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_rarc-sim");

fn run(args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .env_remove("RARC_SIM_URL")
        .output()
        .unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn help_and_version_explain_themselves() {
    let out = run(&["--help"]);
    assert!(out.status.success());
    let help = text(&out.stdout);
    for word in [
        "simulator",
        "serve",
        "runner",
        "jobs",
        "calls",
        "faults",
        "expire-tokens",
        "demo",
        "scale-sets",
        "GitHub Enterprise",
    ] {
        assert!(help.contains(word), "--help lacks {word}:\n{help}");
    }
    let out = run(&["serve", "--help"]);
    let help = text(&out.stdout);
    for flag in [
        "--addr",
        "--seed",
        "--tls",
        "--long-poll-ms",
        "--mode",
        "--mq-token-ttl-secs",
        "--reassign-after-ms",
    ] {
        assert!(help.contains(flag), "serve --help lacks {flag}");
    }
    let help = text(&run(&["runner", "--help"]).stdout);
    assert!(help.contains("ACTIONS_RUNNER_INPUT_JITCONFIG") && help.contains("ACTIONS_RUNNER_CONTAINER_HOOKS"));
    let out = run(&["--version"]);
    assert_eq!(
        text(&out.stdout).trim(),
        format!("rarc-sim {}", env!("CARGO_PKG_VERSION"))
    );
}

#[test]
fn bad_flags_exit_2_naming_the_flag() {
    for (args, needle) in [
        (&["serve", "--mode", "sideways"][..], "sideways"),
        (&["serve", "--addr", "not-an-address"][..], "--addr"),
        (&["serve", "--bogus"][..], "--bogus"),
        (&["jobs", "queue"][..], "--labels"),
        (&["scale-sets", "create"][..], "--name"),
        (&["frobnicate"][..], "frobnicate"),
    ] {
        let out = run(args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert!(text(&out.stderr).contains(needle), "{args:?}: {}", text(&out.stderr));
    }
}

#[test]
fn runner_without_a_jit_config_names_both_inputs() {
    let out = Command::new(BIN)
        .arg("runner")
        .env_remove("ACTIONS_RUNNER_INPUT_JITCONFIG")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(
        err.contains("--jitconfig") && err.contains("ACTIONS_RUNNER_INPUT_JITCONFIG"),
        "{err}"
    );
    let out = Command::new(BIN)
        .args(["runner", "--jitconfig", "garbage!"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(!text(&out.stderr).is_empty());
}

/// Starts `rarc-sim serve` on a free port; returns the child and its URL.
/// A JIT config for runner `name` in scale set `set`.
async fn jit_config(client: &rarc_actions::ActionsClient, set: i64, name: &str) -> JitRunnerConfig {
    client
        .generate_jit_runner_config(
            set,
            &JitConfigRequest {
                name: name.into(),
                work_folder: String::new(),
            },
        )
        .await
        .unwrap()
}

/// `rarc-sim runner` with `jit` and `RUNNER_ROOT=root`, to its end.
async fn run_runner(jit: &JitRunnerConfig, root: &std::path::Path) -> Output {
    tokio::process::Command::new(BIN)
        .arg("runner")
        .env("ACTIONS_RUNNER_INPUT_JITCONFIG", jit.encoded_jit_config.expose())
        .env("RUNNER_ROOT", root)
        .output()
        .await
        .unwrap()
}

fn serve(extra: &[&str]) -> (std::process::Child, String) {
    let mut child = Command::new(BIN)
        .args(["serve", "--addr", "127.0.0.1:0", "--long-poll-ms", "200"])
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.as_mut().unwrap())
        .read_line(&mut line)
        .unwrap();
    let url = line.trim().rsplit(' ').next().unwrap().to_owned();
    assert!(url.starts_with("http://127.0.0.1:"), "{line}");
    (child, url)
}

fn sigterm(child: &std::process::Child) {
    Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
}

#[test]
fn serve_control_commands_and_sigterm() {
    let (mut child, url) = serve(&[]);
    let ctl = |args: &[&str]| Command::new(BIN).args(args).env("RARC_SIM_URL", &url).output().unwrap();
    let out = ctl(&[
        "jobs",
        "queue",
        "--labels",
        "a,b",
        "--count",
        "2",
        "--duration-ms",
        "5",
        "--run",
        "echo hi",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("\"ids\""));
    let out = ctl(&["jobs", "list", "--state", "queued"]);
    let jobs: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(jobs.as_array().unwrap().len(), 2);
    assert_eq!(jobs[0]["spec"]["steps"][0]["run"], "echo hi");
    // Bad control input: exit 1 and the field named.
    let out = ctl(&["jobs", "list", "--state", "flying"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("query `state`"), "{}", text(&out.stderr));
    let out = ctl(&["faults", "add", r#"{"path":"/x","kind":"status","status":9000}"#]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("field `status`"));
    let out = ctl(&[
        "faults",
        "add",
        r#"{"path":"/acquirejobs","kind":"status","status":503,"times":2}"#,
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let out = ctl(&[
        "jobs",
        "wait",
        "--state",
        "completed",
        "--count",
        "1",
        "--timeout-ms",
        "100",
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("timed out"));
    let out = ctl(&["calls"]);
    assert!(text(&out.stdout).lines().count() >= 5);
    // Unreachable simulator: exit 1 with the URL.
    let out = Command::new(BIN)
        .args(["state", "--url", "http://127.0.0.1:1"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("cannot reach http://127.0.0.1:1"));
    sigterm(&child);
    let start = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "serve did not stop on SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(status.code(), Some(0));
}

#[tokio::test]
async fn runner_process_runs_one_job_against_the_simulator() {
    let (mut child, url) = serve(&[]);
    let mut cfg = rarc_actions::ClientConfig::new(
        format!("{url}/my-org"),
        rarc_actions::Credentials::Pat(rarc_actions::Secret::new(rarc_sim::auth::DEFAULT_PAT)),
    );
    cfg.proxy = rarc_actions::ProxyEnv::default();
    let client = rarc_actions::ActionsClient::new(cfg).unwrap();
    let set = client
        .create_runner_scale_set(&rarc_actions::types::RunnerScaleSet {
            name: "cli-set".into(),
            labels: vec![rarc_actions::types::Label::system("cli-set")],
            ..Default::default()
        })
        .await
        .unwrap();
    let queued: serde_json::Value = reqwest::Client::new()
        .post(format!("{url}/_sim/jobs"))
        .body(r#"{"count":1,"labels":["cli-set"],"spec":{"steps":[{"name":"greet","run":"echo hello from $RUNNER_NAME"},{"name":"fail","run":"exit 3","continueOnError":true}]}}"#)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = queued["ids"][0].as_i64().unwrap();
    let jit = jit_config(&client, set.id, "cli-runner-1").await;
    let root = tempfile::tempdir().unwrap();
    let out = run_runner(&jit, root.path()).await;
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{stderr}");
    assert!(stdout.contains("hello from cli-runner-1"), "{stdout}");
    assert!(!stdout.contains(jit.encoded_jit_config.expose()) && !stderr.contains(jit.encoded_jit_config.expose()));
    let job: serde_json::Value = reqwest::get(format!("{url}/_sim/jobs/{id}"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        (job["state"].as_str(), job["result"].as_str(), job["runs"].as_i64()),
        (Some("completed"), Some("succeeded"), Some(1))
    );
    let log: serde_json::Value = reqwest::get(format!("{url}/_sim/jobs/{id}/log"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(
        log.as_array()
            .unwrap()
            .iter()
            .any(|l| l["line"].as_str() == Some("hello from cli-runner-1") && l["step"] == 0)
    );
    // Ephemeral: the service removed the runner after its job.
    assert!(client.get_runner_by_name("cli-runner-1").await.unwrap().is_none());

    // A runner with no job to take stops on SIGTERM, goes offline and exits 0.
    let jit = jit_config(&client, set.id, "cli-runner-2").await;
    let mut idle = Command::new(BIN)
        .arg("runner")
        .env("ACTIONS_RUNNER_INPUT_JITCONFIG", jit.encoded_jit_config.expose())
        .env("RUNNER_ROOT", root.path())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while client.get_runner(jit.runner.id).await.unwrap().status.as_deref() != Some("online") {
        assert!(Instant::now() < deadline, "runner never came online");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    sigterm(&idle);
    let status = tokio::task::spawn_blocking(move || idle.wait().unwrap()).await.unwrap();
    assert_eq!(status.code(), Some(0));
    assert_eq!(
        client.get_runner(jit.runner.id).await.unwrap().status.as_deref(),
        Some("offline")
    );
    sigterm(&child);
    child.wait().unwrap();
}

#[test]
fn demo_runs_and_summarises() {
    let out = run(&["demo", "--jobs", "4", "--duration-ms", "50", "--max-runners", "2"]);
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", text(&out.stderr));
    assert!(
        stdout.contains("4 queued, 4 succeeded, 0 run more than once"),
        "{stdout}"
    );
    assert!(stdout.contains("peak 2 at once"), "{stdout}");
    assert!(stdout.contains("0 registered runners"), "{stdout}");
    let out = run(&["demo", "--jobs", "0"]);
    assert_eq!(out.status.code(), Some(1));
}

#[tokio::test]
async fn scale_sets_create_and_list_and_jobs_stats() {
    let (mut child, url) = serve(&[]);
    let ctl = |args: &[&str]| Command::new(BIN).args(args).env("RARC_SIM_URL", &url).output().unwrap();
    // Created through the Actions API: the id alone on stdout, for scripts.
    let out = ctl(&["scale-sets", "create", "--name", "cli-a", "--labels", "linux, x64"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let id: i64 = text(&out.stdout).trim().parse().unwrap();
    let out = ctl(&[
        "scale-sets",
        "create",
        "--name",
        "cli-b",
        "--runner-group",
        "DEFAULT",
        "--json",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let b: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_ne!(b["id"].as_i64(), Some(id));
    assert_eq!(b["labels"][0]["name"], "cli-b", "the name is the default label");
    assert_eq!(b["RunnerSetting"]["disableUpdate"], true);
    // Refusals name their cause.
    let out = ctl(&["scale-sets", "create", "--name", "cli-a"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("already exists"), "{}", text(&out.stderr));
    let out = ctl(&["scale-sets", "create", "--name", "cli-c", "--runner-group", "nope"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("runner group `nope`"),
        "{}",
        text(&out.stderr)
    );
    let out = ctl(&["scale-sets", "create", "--name", "cli-d", "--token", "ghp_wrong"]);
    assert_eq!(out.status.code(), Some(1));
    let out = ctl(&["scale-sets", "create", "--name", " "]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("--name"), "{}", text(&out.stderr));
    // Listed with their statistics.
    let out = ctl(&["scale-sets", "list"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let sets: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let sets = sets.as_array().unwrap();
    assert_eq!(sets.len(), 2);
    let a = sets.iter().find(|s| s["id"].as_i64() == Some(id)).unwrap();
    let labels: Vec<&str> = a["labels"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["name"].as_str().unwrap())
        .collect();
    assert_eq!(labels, ["linux", "x64"]);
    assert_eq!(a["statistics"]["totalRegisteredRunners"], 0);

    // Job figures: before a runner took the job, no latency yet.
    let out = ctl(&[
        "jobs",
        "queue",
        "--labels",
        "linux",
        "--duration-ms",
        "5",
        "--run",
        "echo hi",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stats = |ctl: &dyn Fn(&[&str]) -> Output| -> serde_json::Value {
        let out = ctl(&["jobs", "stats"]);
        assert!(out.status.success(), "{}", text(&out.stderr));
        serde_json::from_slice(&out.stdout).unwrap()
    };
    let s = stats(&ctl);
    assert_eq!((s["jobs"].as_i64(), s["started"].as_i64()), (Some(1), Some(0)));
    assert_eq!(s["byState"]["assigned"], 1);
    assert!(s["startLatencyMs"].is_null() && s["makespanMs"].is_null());
    assert_eq!(s["allSucceededOnce"], false);
    // A runner of that scale set takes and runs it.
    let mut cfg = rarc_actions::ClientConfig::new(
        format!("{url}/my-org"),
        rarc_actions::Credentials::Pat(rarc_actions::Secret::new(rarc_sim::auth::DEFAULT_PAT)),
    );
    cfg.proxy = rarc_actions::ProxyEnv::default();
    let client = rarc_actions::ActionsClient::new(cfg).unwrap();
    let jit = jit_config(&client, id, "stats-runner").await;
    let root = tempfile::tempdir().unwrap();
    let out = run_runner(&jit, root.path()).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let s = stats(&ctl);
    assert_eq!(
        (
            s["succeeded"].as_i64(),
            s["failed"].as_i64(),
            s["ranMoreThanOnce"].as_i64()
        ),
        (Some(1), Some(0), Some(0))
    );
    assert_eq!(s["byState"]["completed"], 1);
    assert_eq!(s["allSucceededOnce"], true);
    let lat = &s["startLatencyMs"];
    for k in ["min", "p50", "p90", "p99", "max"] {
        assert!(lat[k].as_f64().unwrap() >= 0.0, "{k}: {lat}");
    }
    assert!(s["makespanMs"].as_f64().unwrap() >= lat["max"].as_f64().unwrap());
    // Its log, as the runner streamed it.
    let queued = ctl(&["jobs", "list"]);
    let jobs: serde_json::Value = serde_json::from_slice(&queued.stdout).unwrap();
    let job = jobs[0]["runnerRequestId"].as_i64().unwrap().to_string();
    let out = ctl(&["jobs", "log", &job]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).lines().any(|l| l == "hi"), "{}", text(&out.stdout));
    let out = ctl(&["jobs", "log", &job, "--json"]);
    let log: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(
        log.as_array()
            .unwrap()
            .iter()
            .any(|l| l["line"] == "hi" && l["step"] == 0)
    );
    let out = ctl(&["jobs", "log", "999"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("no job 999"), "{}", text(&out.stderr));
    // Unreachable simulator: exit 1 with the URL.
    let out = Command::new(BIN)
        .args(["jobs", "stats", "--url", "http://127.0.0.1:1"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("cannot reach http://127.0.0.1:1"));
    sigterm(&child);
    child.wait().unwrap();
}
