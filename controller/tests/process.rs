//! The binary's contract: `--help`, `--version`, exit codes, bad flags and environment, and a
//! graceful stop on SIGTERM against the real test cluster.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_rarc-controller");

fn run(args: &[&str], env: &[(&str, &str)]) -> std::process::Output {
    let mut cmd = Command::new(BIN);
    cmd.args(args)
        .env_remove("CONTROLLER_MANAGER_POD_NAMESPACE")
        .env_remove("CONTROLLER_MANAGER_CONTAINER_IMAGE");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("run rarc-controller")
}

#[test]
fn help_explains_flags_environment_and_exit_codes() {
    let out = run(&["--help"], &[]);
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    for needle in [
        "--watch-single-namespace",
        "--enable-leader-election",
        "--exclude-label-propagation-prefix",
        "CONTROLLER_MANAGER_POD_NAMESPACE",
        "CONTROLLER_MANAGER_CONTAINER_IMAGE",
        "LISTENER_ENTRYPOINT",
        "Exit codes",
    ] {
        assert!(text.contains(needle), "--help lacks {needle}:\n{text}");
    }
}

#[test]
fn version_prints_the_crate_version() {
    let out = run(&["--version"], &[]);
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains(env!("CARGO_PKG_VERSION")));
}

#[test]
fn unknown_flag_and_bad_values_exit_2_naming_them() {
    let out = run(&["--no-such-flag"], &[]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--no-such-flag"));
    let out = run(&["--workqueue-rate-limiter=fast"], &[]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("workqueue-rate-limiter"));
    let out = run(&["--runner-max-concurrent-reconciles=many"], &[]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("runner-max-concurrent-reconciles"));
}

#[test]
fn missing_environment_exits_1_naming_the_variable() {
    let out = run(&[], &[]);
    assert_eq!(
        out.status.code(),
        Some(2),
        "clap reports a missing required value as a usage error"
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("controller-namespace"),
        "{out:?}"
    );
    let out = run(
        &[],
        &[
            ("CONTROLLER_MANAGER_POD_NAMESPACE", "arc-systems"),
            ("CONTROLLER_MANAGER_CONTAINER_IMAGE", ""),
        ],
    );
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("CONTROLLER_MANAGER_CONTAINER_IMAGE"),
        "{out:?}"
    );
}

#[test]
fn unreachable_api_server_exits_1() {
    let dir = tempfile::tempdir().expect("tempdir");
    let kubeconfig = dir.path().join("kubeconfig");
    std::fs::write(
        &kubeconfig,
        "apiVersion: v1\nkind: Config\nclusters: [{name: c, cluster: {server: 'https://127.0.0.1:1'}}]\n\
         users: [{name: u, user: {token: t}}]\ncontexts: [{name: x, context: {cluster: c, user: u}}]\ncurrent-context: x\n",
    )
    .expect("write kubeconfig");
    let out = run(
        &[],
        &[
            ("KUBECONFIG", kubeconfig.to_str().expect("utf-8 path")),
            ("CONTROLLER_MANAGER_POD_NAMESPACE", "arc-systems"),
            ("CONTROLLER_MANAGER_CONTAINER_IMAGE", "img"),
        ],
    );
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("CRD") || err.contains("connect"), "{err}");
    assert!(
        !err.contains(" t\n") && !err.contains("token: t"),
        "no credential in the error: {err}"
    );
}

/// Against the real cluster: serves /healthz, /readyz and /metrics, and exits 0 on SIGTERM.
#[tokio::test]
async fn sigterm_stops_gracefully_with_exit_0() {
    let kubeconfig = rarc_kube_test::kubeconfig_location();
    let client = rarc_kube_test::client().await.expect("client");
    let manifests = rarc_crd::crds_yaml().into_iter().map(|(_, yaml)| yaml);
    rarc_kube_test::install_crds(&client, manifests, &rarc_crd::CRD_NAMES, Duration::from_secs(60))
        .await
        .expect("install the CRDs");
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("port");
    let metrics_port = listener.local_addr().expect("addr").port();
    let listener2 = std::net::TcpListener::bind("127.0.0.1:0").expect("port");
    let health_port = listener2.local_addr().expect("addr").port();
    drop((listener, listener2));
    let mut child = Command::new(BIN)
        .args([
            format!("--metrics-addr=127.0.0.1:{metrics_port}"),
            format!("--health-probe-bind-address=127.0.0.1:{health_port}"),
            "--watch-single-namespace=rarc-process-test-none".into(),
            "--log-level=info".into(),
        ])
        .env("KUBECONFIG", &kubeconfig)
        .env("CONTROLLER_MANAGER_POD_NAMESPACE", "rarc-process-test-none")
        .env("CONTROLLER_MANAGER_CONTAINER_IMAGE", "img")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let http = reqwest::Client::new();
    let start = Instant::now();
    let ready = loop {
        if let Ok(r) = http.get(format!("http://127.0.0.1:{health_port}/readyz")).send().await
            && r.status().is_success()
        {
            break true;
        }
        if start.elapsed() > Duration::from_secs(30) {
            break false;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let healthz = http
        .get(format!("http://127.0.0.1:{health_port}/healthz"))
        .send()
        .await
        .map(|r| r.status().as_u16());
    let metrics = http
        .get(format!("http://127.0.0.1:{metrics_port}/metrics"))
        .send()
        .await
        .map(|r| r.status().as_u16());
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .expect("SIGTERM");
    let stopped = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().expect("wait") {
            break Some(s);
        }
        if stopped.elapsed() > Duration::from_secs(15) {
            let _ = child.kill();
            break None;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let mut err = String::new();
    if let Some(mut e) = child.stderr.take() {
        use std::io::Read;
        let _ = e.read_to_string(&mut err);
    }
    assert!(ready, "/readyz never answered 200: {err}");
    assert_eq!(healthz.ok(), Some(200));
    assert_eq!(metrics.ok(), Some(200));
    let status = status.unwrap_or_else(|| panic!("no exit within 15 s of SIGTERM: {err}"));
    assert_eq!(status.code(), Some(0), "{err}");
    assert!(err.contains("signal received"), "{err}");
}
