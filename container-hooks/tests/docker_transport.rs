//! The docker mode over the transports a runner meets, with real components and the built
//! `rarc-hooks docker` binary:
//!
//! * **TCP + TLS**: a real TLS endpoint that verifies client certificates (Debian's `stunnel4`,
//!   `requireCert`, `verifyChain`) in front of the test dockerd's unix socket (`scripts/dockerd-up`);
//!   the hook gets only `DOCKER_HOST=tcp://127.0.0.1:PORT`, `DOCKER_TLS_VERIFY=1` and
//!   `DOCKER_CERT_PATH` (certificates made with rcgen for the test).
//! * **Docker-in-Docker**: a dind sidecar run the way the listener's `dind` container mode runs it
//!   (cap-add ALL minus SYS_RESOURCE, seccomp and apparmor unconfined, `/sys/fs/cgroup` bound, a
//!   `/var/run` shared for the socket, the runner's work directory shared at the same path), from an
//!   image built `FROM scratch` out of the host's Debian dockerd, containerd, runc, docker-init,
//!   iptables and their libraries (`rarc-test/dind:1` from `scripts/dind-image`, reused when
//!   present). The job container runs inside it.
//!
//! Every test asserts that nothing it created is left: containers and networks (by the runner's
//! instance label), the stunnel process, the dind container.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::docker::{BUSYBOX, docker_at, docker_host, docker_ok, docker_ok_at, exists_at, images};
use common::runner::{RunnerDir, free_port, read_response, request_line, unique};
use common::{Outcome, binary, finish, repo};
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose,
    SanType,
};
use serde_json::{Value, json};
use std::io::Write;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

const LIMIT: Duration = Duration::from_secs(120);
const DIND: &str = "rarc-test/dind:1";

// ---------------------------------------------------------------------------------------------
// The host daemon and the docker CLI

// ---------------------------------------------------------------------------------------------
// A fake runner and the hook invocations

/// The fake runner of one test and the daemon its hooks talk to.
struct Runner {
    dir: RunnerDir,
    /// The daemon environment the hook gets (DOCKER_HOST and friends).
    daemon_env: Vec<(String, String)>,
}

impl std::ops::Deref for Runner {
    type Target = RunnerDir;
    fn deref(&self) -> &RunnerDir {
        &self.dir
    }
}

impl Runner {
    fn new(test: &str, daemon_env: &[(&str, &str)]) -> Self {
        Self {
            dir: RunnerDir::new(test).unwrap(),
            daemon_env: daemon_env
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
        }
    }

    /// Runs one hook command with `env` (on top of the runner's and the daemon's) and waits.
    fn run_with(&self, env: &[(&str, &str)], command: &str, args: &Value, state: Option<&Value>) -> (Outcome, Value) {
        let response = self.response_file().unwrap();
        let mut cmd = Command::new(binary());
        cmd.arg("docker");
        let mut child = self
            .hook_env(&mut cmd)
            .env("RARC_HOOKS_KILL_GRACE", "2")
            .envs(self.daemon_env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .envs(env.iter().copied())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(request_line(command, &response, args, state).as_bytes())
            .unwrap();
        let out = finish(child, LIMIT);
        (out, read_response(&response))
    }

    fn run(&self, command: &str, args: &Value, state: Option<&Value>) -> (Outcome, Value) {
        self.run_with(&[], command, args, state)
    }

    /// prepare_job with the job container only; its response.
    fn prepare_ok(&self) -> Value {
        let (out, response) = self.run(
            "prepare_job",
            &json!({"container": self.job_container(BUSYBOX), "services": []}),
            None,
        );
        assert_eq!(out.code, Some(0), "{out:?}");
        assert_eq!(error_line(&out), "", "{out:?}");
        response
    }

    fn script(&self, state: &Value, script: &str) -> Outcome {
        let file = format!("{}.sh", unique());
        std::fs::write(self.temp().join(&file), script).unwrap();
        let args = json!({"entryPoint": "sh", "entryPointArgs": ["-e", format!("/__w/_temp/{file}")],
            "environmentVariables": {"STEP_VAR": "step-value"}, "prependPath": [], "workingDirectory": "/__w/repo/repo"});
        self.run("run_script_step", &args, Some(state)).0
    }

    fn cleanup(&self) -> Outcome {
        self.run("cleanup_job", &json!({}), None).0
    }

    /// Containers and networks on the daemon at `host` carrying this runner's label.
    fn leftovers_at(&self, host: &str) -> Vec<String> {
        let filter = format!("label={}", self.label);
        let mut found = Vec::new();
        for (kind, args) in [
            ("container", vec!["ps", "-aq", "--filter", &filter]),
            ("network", vec!["network", "ls", "-q", "--filter", &filter]),
        ] {
            for id in docker_ok_at(host, &args).split_whitespace() {
                found.push(format!("{kind} {id}"));
            }
        }
        found
    }

    /// Removes (after a failure) what this runner's hook created on `host`.
    fn remove_at(&self, host: &str) {
        let filter = format!("label={}", self.label);
        let Ok(out) = docker_at(host).args(["ps", "-aq", "--filter", &filter]).output() else {
            return;
        };
        let ids = String::from_utf8_lossy(&out.stdout).into_owned();
        let ids: Vec<&str> = ids.split_whitespace().collect();
        if !ids.is_empty() {
            let _ = docker_at(host).args(["rm", "-f", "-v"]).args(&ids).output();
        }
        if let Ok(out) = docker_at(host)
            .args(["network", "ls", "-q", "--filter", &filter])
            .output()
        {
            for net in String::from_utf8_lossy(&out.stdout).split_whitespace() {
                let _ = docker_at(host).args(["network", "rm", net]).output();
            }
        }
    }
}

impl Drop for Runner {
    fn drop(&mut self) {
        // Only after a failure: whatever this runner's hook created on the host daemon.
        self.remove_at(docker_host());
    }
}

fn error_line(out: &Outcome) -> String {
    out.stdout
        .lines()
        .find(|l| l.starts_with("::error::"))
        .unwrap_or_default()
        .to_owned()
}

/// prepare_job → run_script_step (output and exit code 3) → cleanup_job; `daemon` is where the job
/// container must be (checked with the docker CLI at that host), `check` looks at the job
/// container and network after prepare_job. Returns the job container's id.
fn job_round_trip(r: &Runner, daemon: &str, check: impl Fn(&str, &str)) -> String {
    std::fs::write(r.workspace().join("marker.txt"), "from-the-workspace").unwrap();
    let response = r.prepare_ok();
    let id = response["context"]["container"]["id"].as_str().unwrap().to_owned();
    let network = response["context"]["container"]["network"].as_str().unwrap().to_owned();
    assert!(network.starts_with("github_network_"), "{response}");
    assert_eq!(
        docker_ok_at(
            daemon,
            &[
                "inspect",
                "--format",
                "{{.State.Running}} {{.HostConfig.NetworkMode}}",
                &id
            ]
        )
        .trim(),
        format!("true {network}")
    );
    check(&id, &network);
    let state = response["state"].clone();

    let out = r.script(
        &state,
        "echo \"step says $STEP_VAR\"\necho to-stderr >&2\ncat marker.txt; echo\necho written > out.txt\nexit 3\n",
    );
    assert_eq!(out.code, Some(3), "{out:?}");
    assert_eq!(out.stdout, "step says step-value\nfrom-the-workspace\n", "{out:?}");
    assert!(out.stderr.contains("to-stderr"), "{out:?}");
    assert_eq!(
        std::fs::read_to_string(r.workspace().join("out.txt")).unwrap(),
        "written\n"
    );

    let out = r.cleanup();
    assert_eq!(out.code, Some(0), "{out:?}");
    assert_eq!(r.leftovers_at(daemon), Vec::<String>::new(), "left after cleanup_job");
    id
}

// ---------------------------------------------------------------------------------------------
// TLS: certificates and a stunnel endpoint

/// A CA (its certificate PEM and an issuer to sign with).
fn ca(name: &str) -> (String, Issuer<'static, KeyPair>) {
    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.distinguished_name.push(DnType::CommonName, name);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let cert = params.self_signed(&key).unwrap();
    (cert.pem(), Issuer::new(params, key))
}

/// A leaf certificate signed by `issuer`: (certificate PEM, key PEM).
fn leaf(issuer: &Issuer<'static, KeyPair>, name: &str, server: bool) -> (String, String) {
    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.distinguished_name.push(DnType::CommonName, name);
    if server {
        params
            .subject_alt_names
            .push(SanType::IpAddress(std::net::Ipv4Addr::LOCALHOST.into()));
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    } else {
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    }
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    let cert = params.signed_by(&key, issuer).unwrap();
    (cert.pem(), key.serialize_pem())
}

/// `dir/{ca,cert,key}.pem`, a `DOCKER_CERT_PATH`.
fn cert_dir(dir: &Path, ca: &str, (cert, key): &(String, String)) -> PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join("ca.pem"), ca).unwrap();
    std::fs::write(dir.join("cert.pem"), cert).unwrap();
    std::fs::write(dir.join("key.pem"), key).unwrap();
    dir.to_owned()
}

/// The processes (not zombies) of process group `pgid`, from /proc.
fn group_members(pgid: i32) -> Vec<String> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        // pid (comm) state ppid pgrp …; comm may hold spaces, so split after the last ')'.
        let Some((head, rest)) = stat.rsplit_once(')') else {
            continue;
        };
        let fields: Vec<&str> = rest.split_whitespace().collect();
        if fields.len() > 2 && fields[2] == pgid.to_string() && fields[0] != "Z" {
            found.push(format!("{head}) {}", fields[0]));
        }
    }
    found
}

/// Debian's stunnel4 in front of the daemon's socket: TLS on 127.0.0.1:`port` with the server
/// certificate, and client certificates required and verified against `ca` (`requireCert`,
/// `verifyChain`). In its own process group, which the guard ends on drop.
///
/// (`socat openssl-listen:…,fork,verify=1` cannot serve here: it fails every resumed TLS session,
/// `SSL_accept(): session id context uninitialized`, and clients resume from their second
/// connection on.)
struct TlsProxy {
    child: Child,
    port: u16,
    log: PathBuf,
}

impl TlsProxy {
    fn start(dir: &Path, ca: &Path, cert: &Path, key: &Path, socket: &str) -> Self {
        if Command::new("stunnel4").arg("-version").output().is_err() {
            let ok = Command::new("sh")
                .args([
                    "-c",
                    "apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq stunnel4",
                ])
                .status()
                .unwrap()
                .success();
            assert!(ok, "installing stunnel4 failed");
        }
        let port = free_port();
        let log = dir.join("stunnel.log");
        let config = dir.join("stunnel.conf");
        std::fs::write(
            &config,
            format!(
                "foreground = yes\npid =\ndebug = 5\noutput = {log}\n[docker]\naccept = 127.0.0.1:{port}\n\
                 connect = {socket}\ncert = {cert}\nkey = {key}\nCAfile = {ca}\nrequireCert = yes\nverifyChain = yes\n",
                log = log.display(),
                cert = cert.display(),
                key = key.display(),
                ca = ca.display()
            ),
        )
        .unwrap();
        let child = Command::new("stunnel4")
            .arg(&config)
            .process_group(0)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("run stunnel4");
        let mut proxy = Self { child, port, log };
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            let exited = proxy.child.try_wait().unwrap();
            assert!(
                exited.is_none() && Instant::now() < deadline,
                "stunnel4 did not listen ({exited:?}): {}",
                proxy.log_text()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        proxy
    }

    fn pgid(&self) -> i32 {
        i32::try_from(self.child.id()).unwrap()
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Connections stunnel passed on to the daemon's socket.
    fn forwarded(&self) -> usize {
        self.log_text().matches("connected remote server").count()
    }
}

impl Drop for TlsProxy {
    fn drop(&mut self) {
        let _ = killpg(Pid::from_raw(self.pgid()), Signal::SIGTERM);
        let _ = self.child.wait();
        let deadline = Instant::now() + Duration::from_secs(5);
        while !group_members(self.pgid()).is_empty() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = killpg(Pid::from_raw(self.pgid()), Signal::SIGKILL);
    }
}

/// A real TLS endpoint with client-certificate verification in front of the daemon: a job round
/// trip with only `DOCKER_HOST=tcp://…`, `DOCKER_TLS_VERIFY`, `DOCKER_CERT_PATH`; a client
/// certificate of another CA, a server of another CA and a missing certificate directory each fail
/// with one clear `::error::` line and exit 1; the proxy leaves no process behind.
#[test]
fn tls_daemon_with_client_certificates() {
    images();
    let socket = docker_host()
        .strip_prefix("unix://")
        .expect("the test daemon listens on a unix socket")
        .to_owned();
    let dir = tempfile::tempdir().unwrap();
    let (ca_pem, issuer) = ca("rarc-hooks test CA");
    let (rogue_pem, rogue) = ca("rarc-hooks rogue CA");
    let server = leaf(&issuer, "rarc-hooks test daemon", true);
    std::fs::write(dir.path().join("server.pem"), &server.0).unwrap();
    std::fs::write(dir.path().join("server-key.pem"), &server.1).unwrap();
    std::fs::write(dir.path().join("server-ca.pem"), &ca_pem).unwrap();
    let client = leaf(&issuer, "rarc-hooks client", false);
    let good = cert_dir(&dir.path().join("good"), &ca_pem, &client);
    // A client certificate the daemon's CA did not sign.
    let foreign = cert_dir(&dir.path().join("foreign"), &ca_pem, &leaf(&rogue, "intruder", false));
    // A daemon the client's CA did not sign (the client's own certificate is fine).
    let untrusted = cert_dir(&dir.path().join("untrusted"), &rogue_pem, &client);

    let proxy = TlsProxy::start(
        dir.path(),
        &dir.path().join("server-ca.pem"),
        &dir.path().join("server.pem"),
        &dir.path().join("server-key.pem"),
        &socket,
    );
    let host = format!("tcp://127.0.0.1:{}", proxy.port);
    let good_path = good.to_str().unwrap().to_owned();
    let r = Runner::new(
        "tls",
        &[
            ("DOCKER_HOST", host.as_str()),
            ("DOCKER_TLS_VERIFY", "1"),
            ("DOCKER_CERT_PATH", good_path.as_str()),
        ],
    );

    job_round_trip(&r, docker_host(), |_, _| {});
    let forwarded = proxy.forwarded();
    assert!(
        forwarded >= 6,
        "the hook's requests did not go through the TLS proxy ({forwarded} connections): {}",
        proxy.log_text()
    );

    let expect_connect_error = |out: &Outcome, what: &str| {
        assert_eq!(out.code, Some(1), "{what}: {out:?}");
        let e = error_line(out);
        assert!(
            e.starts_with(&format!("::error::cannot connect to the Docker daemon at {host}: ")),
            "{what}: {out:?}"
        );
        assert_eq!(out.stdout.lines().count(), 1, "{what}: {out:?}");
        e
    };

    // The daemon refuses a client certificate of another CA: nothing is created.
    let (out, response) = r.run_with(
        &[("DOCKER_CERT_PATH", foreign.to_str().unwrap())],
        "prepare_job",
        &json!({"container": r.job_container(BUSYBOX), "services": []}),
        None,
    );
    let e = expect_connect_error(&out, "foreign client certificate");
    assert!(e.ends_with("received fatal alert: UnknownCA"), "{out:?}");
    assert_eq!(response, Value::Null);
    assert_eq!(r.leftovers_at(docker_host()), Vec::<String>::new());
    let log = proxy.log_text();
    assert!(
        log.contains("Rejected by CERT"),
        "stunnel did not reject the foreign client certificate ({e}): {log}"
    );

    // The client refuses a daemon certificate of another CA.
    let (out, _) = r.run_with(
        &[("DOCKER_CERT_PATH", untrusted.to_str().unwrap())],
        "cleanup_job",
        &json!({}),
        None,
    );
    let e = expect_connect_error(&out, "untrusted daemon");
    assert!(e.ends_with("invalid peer certificate: UnknownIssuer"), "{out:?}");

    // TLS asked for, certificates missing: the missing file is named.
    let missing = dir.path().join("missing");
    let (out, _) = r.run_with(
        &[("DOCKER_CERT_PATH", missing.to_str().unwrap())],
        "cleanup_job",
        &json!({}),
        None,
    );
    let e = expect_connect_error(&out, "missing certificates");
    assert!(
        e.ends_with(&format!(
            "DOCKER_TLS_VERIFY is set but {}/ca.pem does not exist (set DOCKER_CERT_PATH)",
            missing.display()
        )),
        "{out:?}"
    );

    // The proxy goes, with every per-connection child; the hook then cannot reach the daemon
    // (so the round trip above went through it and nowhere else).
    let pgid = proxy.pgid();
    drop(proxy);
    assert_eq!(group_members(pgid), Vec::<String>::new(), "stunnel processes left");
    let out = r.cleanup();
    let e = expect_connect_error(&out, "no proxy");
    assert!(e.ends_with("Connection refused (os error 111)"), "{out:?}");
}

// ---------------------------------------------------------------------------------------------
// Docker-in-Docker

/// The dind image (`scripts/dind-image`: the host's Debian docker.io daemon, its runtime and
/// iptables, with their libraries and busybox, `FROM scratch`; built once, reused when present).
/// Returns its reference.
fn dind_image() -> &'static str {
    static IMAGE: OnceLock<String> = OnceLock::new();
    IMAGE.get_or_init(|| {
        let out = Command::new(repo().join("scripts/dind-image"))
            .env("DOCKER_HOST", docker_host())
            .stderr(Stdio::inherit())
            .output()
            .expect("run scripts/dind-image");
        assert!(out.status.success(), "scripts/dind-image failed (its stderr is above)");
        let image = String::from_utf8_lossy(&out.stdout)
            .lines()
            .last()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .expect("scripts/dind-image prints the image reference last")
            .to_owned();
        assert_eq!(image, DIND, "scripts/dind-image built another tag");
        image
    })
}

/// A dind sidecar on the host daemon; removed (with everything inside it) on drop.
struct Dind {
    name: String,
    /// The inner daemon's socket, as a DOCKER_HOST.
    host: String,
    _run: tempfile::TempDir,
}

impl Dind {
    /// Runs the sidecar the way the listener's `dind` mode does (unprivileged variant), sharing
    /// `/var/run` through a host directory and `work` at the same path; waits for its daemon.
    fn start(work: &Path) -> Self {
        let image = dind_image();
        let run = tempfile::tempdir().unwrap();
        let name = format!("rarc-test-dind-{}", unique());
        let dind = Self {
            name: name.clone(),
            host: format!("unix://{}/docker.sock", run.path().display()),
            _run: run,
        };
        let run_bind = format!("{}:/var/run", dind._run.path().display());
        let work_bind = format!("{}:{}", work.display(), work.display());
        docker_ok(&[
            "run",
            "-d",
            "--name",
            &name,
            "--label",
            "rarc.test=dind",
            "--cap-add",
            "ALL",
            "--cap-drop",
            "SYS_RESOURCE",
            "--security-opt",
            "seccomp=unconfined",
            "--security-opt",
            "apparmor=unconfined",
            "-v",
            "/sys/fs/cgroup:/sys/fs/cgroup:rw",
            "-v",
            &run_bind,
            "-v",
            &work_bind,
            image,
            "dockerd",
            "--storage-driver=vfs",
        ]);
        let deadline = Instant::now() + Duration::from_secs(30);
        while !exists_at(&dind.host, &["version"]) {
            if Instant::now() > deadline {
                let logs = docker_at(docker_host())
                    .args(["logs", "--tail", "30", &name])
                    .output()
                    .unwrap();
                panic!(
                    "the dind daemon did not answer on {} within 30 s: {}{}",
                    dind.host,
                    String::from_utf8_lossy(&logs.stdout),
                    String::from_utf8_lossy(&logs.stderr)
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        dind
    }

    /// `docker save IMAGE | docker -H <inner> load`.
    fn load(&self, image: &str) {
        let mut save = docker_at(docker_host())
            .args(["save", image])
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let out = docker_at(&self.host)
            .arg("load")
            .stdin(save.stdout.take().unwrap())
            .output()
            .unwrap();
        assert!(save.wait().unwrap().success(), "docker save {image}");
        assert!(
            out.status.success(),
            "docker load into dind: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    fn exists(&self) -> bool {
        exists_at(docker_host(), &["container", "inspect", &self.name])
    }
}

impl Drop for Dind {
    fn drop(&mut self) {
        let _ = docker_at(docker_host()).args(["rm", "-f", "-v", &self.name]).output();
    }
}

/// The listener's `dind` container mode: the hook reaches the sidecar's daemon through the shared
/// socket, the job container runs inside it (on a job network created there) and not on the host,
/// the shared work directory reaches the step, and everything is removed at the end.
#[test]
fn docker_in_docker_sidecar() {
    images();
    // The runner's directory is what the sidecar shares (`sharedWorkDir`): made first, bound at
    // the same path.
    let mut r = Runner::new("dind", &[]);
    let dind = Dind::start(&r.root);
    dind.load(BUSYBOX);
    r.daemon_env = vec![("DOCKER_HOST".into(), dind.host.clone())];

    let id = job_round_trip(&r, &dind.host, |id, network| {
        assert!(dind.exists());
        assert!(
            !exists_at(docker_host(), &["container", "inspect", id]),
            "the job container is on the host daemon"
        );
        assert!(
            !exists_at(docker_host(), &["network", "inspect", network]),
            "the job network is on the host daemon"
        );
        assert_eq!(r.leftovers_at(docker_host()), Vec::<String>::new());
        assert_eq!(r.leftovers_at(&dind.host).len(), 2, "{:?}", r.leftovers_at(&dind.host));
    });

    // Nothing of the job anywhere; then the sidecar goes too.
    assert!(!exists_at(&dind.host, &["container", "inspect", &id]));
    assert_eq!(r.leftovers_at(docker_host()), Vec::<String>::new());
    let name = dind.name.clone();
    drop(dind);
    assert!(
        !exists_at(docker_host(), &["container", "inspect", &name]),
        "the dind sidecar survived its guard"
    );
}
