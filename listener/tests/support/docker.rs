//! The Docker test harness: the daemon (`scripts/dockerd-up`, once per process), the docker CLI,
//! the simulated-runner image (`scripts/runner-image`), the Docker-in-Docker image
//! (`scripts/dind-image`) and sweeping containers by label.
//!
//! Runner containers run `rarc-sim runner` from an image built `FROM scratch` (the binary, the
//! libraries `ldd` lists, busybox as `/bin/sh`), on the host network so they reach an in-process
//! simulator on 127.0.0.1. Needs root (dockerd) and a built `rarc-sim` binary next to the test's
//! target directory (`cargo build -p rarc-sim`; `RARC_SIM_BIN` overrides the path).
//!
//! Every test binary marks its containers with a label of its own (`rarc.test.run=<uuid>`,
//! `rarc.test.reliability=<uuid>`, ...) and sweeps only those: other test runs share the daemon.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;

/// The repository root.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Runs `scripts/<name>` with `env` (its stderr shown), asserts it succeeded and returns the last
/// line it printed: the contract of `dockerd-up`, `runner-image` and `dind-image`.
fn script_result(name: &str, env: &[(&str, &std::ffi::OsStr)]) -> String {
    let out = Command::new(repo_root().join("scripts").join(name))
        .envs(env.iter().copied())
        .stderr(Stdio::inherit())
        .output()
        .unwrap_or_else(|e| panic!("run scripts/{name}: {e}"));
    assert!(out.status.success(), "scripts/{name} failed (its stderr is above)");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .last()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .unwrap_or_else(|| panic!("scripts/{name} prints its result on its last line"))
        .to_owned()
}

/// `DOCKER_HOST` of the test daemon (started once per process by `scripts/dockerd-up`).
pub fn docker_host() -> &'static str {
    static HOST: OnceLock<String> = OnceLock::new();
    HOST.get_or_init(|| script_result("dockerd-up", &[]))
}

/// The docker CLI (Debian's, matching the daemon, when installed), talking to [`docker_host`].
pub fn docker_cli() -> Command {
    let bin = if Path::new("/usr/bin/docker").exists() {
        "/usr/bin/docker"
    } else {
        "docker"
    };
    let mut c = Command::new(bin);
    c.env("DOCKER_HOST", docker_host());
    c
}

/// Runs `docker ARGS`; panics with its stderr unless it succeeds. Returns stdout.
pub fn docker_ok(args: &[&str]) -> String {
    let out = docker_cli().args(args).output().expect("run docker");
    assert!(
        out.status.success(),
        "docker {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The `rarc-sim` binary the runner image is built from: `RARC_SIM_BIN`, else `rarc-sim` in the
/// target directory of this test binary.
pub fn sim_binary() -> PathBuf {
    if let Ok(p) = std::env::var("RARC_SIM_BIN") {
        return PathBuf::from(p);
    }
    // target/<profile>/deps/<test>-<hash> → target/<profile>/rarc-sim
    let exe = std::env::current_exe().expect("current exe");
    let profile_dir = exe.parent().and_then(Path::parent).expect("target/<profile>");
    let bin = profile_dir.join("rarc-sim");
    assert!(
        bin.exists(),
        "{} is missing: run `cargo build -p rarc-sim` first (or set RARC_SIM_BIN)",
        bin.display()
    );
    bin
}

/// The simulated-runner image (built by `scripts/runner-image` once per binary version, reused
/// after); returns its reference.
pub fn runner_image() -> &'static str {
    static IMAGE: OnceLock<String> = OnceLock::new();
    IMAGE.get_or_init(|| {
        let sim = sim_binary();
        script_result(
            "runner-image",
            &[
                ("DOCKER_HOST", docker_host().as_ref()),
                ("RARC_SIM_BIN", sim.as_os_str()),
            ],
        )
    })
}

/// Force-removes (with volumes) every container carrying label `key`, whatever its value.
pub fn sweep_all(key: &str) {
    remove_matching(&format!("label={key}"));
}

/// Force-removes every container labelled `key=value` (one test run's containers).
pub fn sweep(key: &str, value: &str) {
    remove_matching(&format!("label={key}={value}"));
}

/// Ids of the containers (any state) matching a `docker ps --filter`.
pub fn containers_matching(filter: &str) -> Vec<String> {
    words(&["ps", "-aq", "--filter", filter])
}

/// Names of the volumes matching a `docker volume ls --filter` (e.g. the Docker backend's
/// pending-runner markers).
pub fn volumes_matching(filter: &str) -> Vec<String> {
    words(&["volume", "ls", "-q", "--filter", filter])
}

/// The whitespace-separated words a docker command prints (none when it fails).
fn words(args: &[&str]) -> Vec<String> {
    docker_cli()
        .args(args)
        .output()
        .map(|out| {
            String::from_utf8_lossy(&out.stdout)
                .split_whitespace()
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default()
}

/// Force-removes the containers matching a `docker ps --filter`, then the volumes matching it;
/// returns how many containers there were.
pub fn remove_matching(filter: &str) -> usize {
    let ids = containers_matching(filter);
    if !ids.is_empty() {
        let _ = docker_cli().args(["rm", "-f", "-v"]).args(&ids).output();
    }
    let volumes = volumes_matching(filter);
    if !volumes.is_empty() {
        let _ = docker_cli().args(["volume", "rm", "-f"]).args(&volumes).output();
    }
    ids.len()
}

/// The Docker-in-Docker image (built by `scripts/dind-image` from the host's Debian docker.io
/// files, reused after); returns its reference.
pub fn dind_image() -> &'static str {
    static IMAGE: OnceLock<String> = OnceLock::new();
    IMAGE.get_or_init(|| script_result("dind-image", &[("DOCKER_HOST", docker_host().as_ref())]))
}
