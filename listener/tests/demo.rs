//! `scripts/demo`, the README's `make demo`, end to end with a small job count: rarc-sim serve,
//! `rarc-sim scale-sets create`, `rarc-listener --backend docker` and the FROM-scratch runner image
//! on a real dockerd (started by `scripts/dockerd-up` when none runs; left running, like the other
//! Docker tests, for `scripts/test` to stop). The script's own checks decide its exit status; this
//! test also reads its summary and checks that it left no container or process behind.
//!
//! Needs root (dockerd), jq (`scripts/ensure-deps`) and a built `rarc-sim` binary next to this
//! test's target directory (`cargo build -p rarc-sim`; `RARC_SIM_BIN` overrides the path). The
//! workspace is not built again: the script runs with `RARC_DEMO_SKIP_BUILD=1`.

#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

const LISTENER: &str = env!("CARGO_BIN_EXE_rarc-listener");

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn sim_binary() -> PathBuf {
    if let Ok(p) = std::env::var("RARC_SIM_BIN") {
        return PathBuf::from(p);
    }
    let bin = Path::new(LISTENER).parent().unwrap().join("rarc-sim");
    assert!(
        bin.exists(),
        "{} is missing: run `cargo build -p rarc-sim` first (or set RARC_SIM_BIN)",
        bin.display()
    );
    bin
}

fn docker(host: &str, args: &[&str]) -> String {
    let bin = if Path::new("/usr/bin/docker").exists() {
        "/usr/bin/docker"
    } else {
        "docker"
    };
    let out = Command::new(bin).args(args).env("DOCKER_HOST", host).output().unwrap();
    assert!(
        out.status.success(),
        "docker {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn the_demo_script_runs_jobs_on_runner_containers_and_cleans_up() {
    // The PAT the script writes into config.json is the one `rarc-sim serve` accepts.
    let script = std::fs::read_to_string(repo_root().join("scripts/demo")).unwrap();
    assert!(
        script.contains(rarc_sim::auth::DEFAULT_PAT),
        "scripts/demo must use rarc_sim::auth::DEFAULT_PAT"
    );

    let tmp = tempfile::tempdir().unwrap();
    let out = Command::new(repo_root().join("scripts/demo"))
        .env("RARC_DEMO_SKIP_BUILD", "1")
        .env("RARC_DEMO_KEEP_DOCKERD", "1")
        .env("RARC_DEMO_JOBS", "4")
        .env("RARC_DEMO_JOB_MS", "300")
        .env("RARC_DEMO_MAX_RUNNERS", "3")
        .env("RARC_DEMO_TIMEOUT_SECS", "90")
        .env("RARC_SIM_BIN", sim_binary())
        .env("RARC_LISTENER_BIN", LISTENER)
        .env("TMPDIR", tmp.path())
        .env_remove("RARC_SIM_URL")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "scripts/demo failed\n{stdout}\n{stderr}");
    for line in [
        "jobs:                  4 queued, 4 completed, 4 succeeded; 4 ran exactly once, 0 more than once",
        "runners:               4 runner containers ran the jobs (one per job)",
        "(maxRunners 3)",
        "runner start latency:  p50 ",
        "total time:            ",
        "at the end:            1 runner container(s), 1 registered runner(s) (minRunners 1)",
        "listener SIGTERM:      exit 0, message session deleted (0 left)",
        "    step 1: hello from rarc-demo-",
        "    step 2: ",
        "demo: all checks passed",
    ] {
        assert!(stdout.contains(line), "the summary lacks {line:?}:\n{stdout}\n{stderr}");
    }

    // Nothing left: no container of the demo, no simulator or listener of this run.
    let host = stdout
        .lines()
        .find_map(|l| l.strip_prefix("demo: dockerd at "))
        .and_then(|l| l.split_whitespace().next())
        .expect("the demo names its DOCKER_HOST")
        .to_owned();
    let work = stdout
        .lines()
        .find_map(|l| l.strip_prefix("  logs:"))
        .and_then(|l| l.trim().split(',').next())
        .and_then(|p| Path::new(p.trim()).parent())
        .expect("the demo names its log directory")
        .to_owned();
    assert!(work.starts_with(tmp.path()), "{}", work.display());
    let run_label = format!(
        "label=rarc.demo.run={}",
        work.file_name()
            .unwrap()
            .to_string_lossy()
            .trim_start_matches("rarc-demo.")
    );
    let left = docker(
        &host,
        &[
            "ps",
            "-a",
            "--format",
            "{{.Names}} {{.Labels}}",
            "--filter",
            "label=rarc.demo.run",
        ],
    );
    assert!(
        !left.lines().any(|l| l.contains(run_label.trim_start_matches("label="))),
        "containers left behind: {left}"
    );
    let ps = Command::new("ps").args(["-eo", "args"]).output().unwrap();
    let ps = String::from_utf8_lossy(&ps.stdout);
    let work = work.to_string_lossy();
    assert!(
        !ps.lines().any(|l| l.contains(work.as_ref())),
        "a process of the demo is still running:\n{ps}"
    );
}
