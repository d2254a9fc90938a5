//! The Docker backend's `dind` container mode against a real dockerd (`scripts/dockerd-up`) and
//! rarc-sim in-process: each runner container gets a Docker-in-Docker sidecar (`rarc-test/dind:1`
//! from `scripts/dind-image`: the host's Debian dockerd and runtime `FROM scratch`, run unprivileged
//! with every capability but SYS_RESOURCE), reaches its daemon through the shared `/var/run` and
//! shares the work folder (`/home/runner/_work`, the simulated runner image's) with it.
//!
//! * A job's step waits for the sidecar's socket, talks to the inner daemon with the host's docker
//!   CLI (bind-mounted through `extraVolumes`), writes into the shared work folder (read back
//!   through `docker exec` in the sidecar, which answers in the same folder), and runs a container
//!   in the inner daemon that mounts that folder. The runner container and its sidecar (and the
//!   sidecar's volumes) are removed after the job, the runner deregistered; scaling an idle runner
//!   to 0 leaves nothing either.
//! * The full path: the host's `rarc-hooks` build and `images/hooks/index.sh` are bind-mounted at
//!   /home/runner/docker/ and named by `ACTIONS_RUNNER_CONTAINER_HOOKS`; a job with a job container
//!   gets it pulled (with credentials) by the sidecar's daemon from a real `docker-registry`
//!   (htpasswd) reached through the default bridge's gateway (`--insecure-registry`), and its step
//!   runs in it, inside the sidecar's daemon.
//!
//! Needs root (dockerd), built `rarc-sim` and `rarc-hooks` binaries next to this test's target
//! directory (`cargo build -p rarc-sim -p rarc-hooks`), and Debian's `docker-registry` and
//! `apache2-utils` (`scripts/ensure-deps`). Everything is labelled `rarc.test.dind=<uuid>` and
//! force-removed when the test's guard drops, also on failure.

use rarc_listener::backend::Backend;
use rarc_listener::backend::docker::{
    ContainerMode, ContainerState, DindConfig, DockerBackend, DockerBackendConfig, JIT_CONFIG_ENV, RunnerContainer,
};
use rarc_sim::job::{ContainerSpec, Credentials, JobSpec, StepSpec};
use rarc_sim::state::QueueJobs;
use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};
use support::docker::{containers_matching, dind_image, docker_cli, docker_ok, volumes_matching};
use tokio_util::sync::CancellationToken;

mod support;
use support::drive::{drive, eventually};
use support::world::World;

const TEST_LABEL: &str = "rarc.test.dind";
/// The runner's work folder: `RUNNER_ROOT=/home/runner` of the image plus `_work`, which is
/// `sharedWorkDir`'s default.
const WORK: &str = "/home/runner/_work";
/// Where the host's docker CLI is mounted in runner containers.
const RUNNER_DOCKER_CLI: &str = "/usr/local/bin/docker";

/// One test at a time per binary.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

async fn world() -> World {
    dind_image();
    World::new(TEST_LABEL).await
}

/// The dind runner's config.
fn config(w: &World, id: i64, name: &str) -> DockerBackendConfig {
    let cli = Path::new("/usr/bin/docker");
    assert!(
        cli.exists(),
        "{} is missing (Debian's docker.io provides it)",
        cli.display()
    );
    DockerBackendConfig {
        // The runners reach the in-process simulator on 127.0.0.1 (host network, the base
        // config's); the sidecars stay on the daemon's default bridge.
        container_mode: ContainerMode::Dind(DindConfig {
            image: dind_image().to_owned(),
            command: Some(
                ["dockerd", "--host=unix:///var/run/docker.sock", "--storage-driver=vfs"]
                    .map(str::to_owned)
                    .to_vec(),
            ),
            ..DindConfig::default()
        }),
        // The host's docker CLI (it needs only the libc the runner image has).
        extra_volumes: vec![format!("{}:{RUNNER_DOCKER_CLI}:ro", cli.display())],
        max_runners: 5,
        ..w.base_config(id, name)
    }
}

/// `docker inspect --format '{{json FIELD}}' ID`, parsed.
fn inspect(id: &str, field: &str) -> serde_json::Value {
    let out = docker_ok(&["inspect", "--format", &format!("{{{{json {field}}}}}"), id]);
    serde_json::from_str(out.trim()).unwrap_or_else(|e| panic!("inspect {field} of {id}: {e}: {out}"))
}

/// The environment of container `id`, as `NAME=value` entries.
fn env_of(id: &str) -> Vec<String> {
    serde_json::from_value(inspect(id, ".Config.Env")).expect("env list")
}

/// The names of the volumes container `id` mounts, by destination.
fn volumes_of(id: &str) -> BTreeMap<String, String> {
    inspect(id, ".Mounts")
        .as_array()
        .expect("mounts")
        .iter()
        .filter(|m| m["Type"] == "volume")
        .map(|m| {
            (
                m["Destination"].as_str().unwrap_or_default().to_owned(),
                m["Name"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect()
}

/// The destinations of the host paths container `id` binds.
fn binds_of(id: &str) -> Vec<String> {
    inspect(id, ".Mounts")
        .as_array()
        .expect("mounts")
        .iter()
        .filter(|m| m["Type"] == "bind")
        .map(|m| m["Destination"].as_str().unwrap_or_default().to_owned())
        .collect()
}

/// Whether any container or volume named here still exists on the host daemon.
fn exists(kind: &str, name: &str) -> bool {
    docker_cli()
        .args([kind, "inspect", name])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}

/// The runner container and the sidecar of one runner among `containers` (panics unless there are
/// exactly these two).
fn pair(containers: &[RunnerContainer]) -> (RunnerContainer, RunnerContainer) {
    assert_eq!(containers.len(), 2, "one runner and one sidecar: {containers:?}");
    let runner = containers
        .iter()
        .find(|c| c.role == "runner")
        .expect("a runner container");
    let sidecar = containers.iter().find(|c| c.role == "dind").expect("a dind sidecar");
    assert_eq!(runner.runner_name, sidecar.runner_name, "{containers:?}");
    assert_eq!(runner.runner_id, sidecar.runner_id, "{containers:?}");
    assert_eq!(sidecar.container_name, format!("{}-dind", runner.runner_name));
    (runner.clone(), sidecar.clone())
}

/// The step: wait for the sidecar's socket, then for its daemon; show where it is; write into the
/// shared work folder and wait for the sidecar's answer there; run a container in the inner daemon
/// that reads the shared folder.
const STEP: &str = r#"for i in $(seq 100); do [ -S /var/run/docker.sock ] && break; sleep 0.2; done
test -S /var/run/docker.sock
export HOME=/tmp
for i in $(seq 100); do docker version >/dev/null 2>&1 && break; sleep 0.2; done
echo "docker-host=$DOCKER_HOST"
echo "server=$(docker version --format '{{.Server.Os}}/{{.Server.Version}}')"
echo "from-the-runner" > /home/runner/_work/dind-proof.txt
for i in $(seq 300); do [ -s /home/runner/_work/dind-ack.txt ] && break; sleep 0.1; done
echo "ack=$(cat /home/runner/_work/dind-ack.txt)"
tar -C / -cf /tmp/bb.tar bin/busybox
docker import /tmp/bb.tar rarc-inner/busybox:1 >/dev/null
echo "inner=$(docker run --rm --network none -v /home/runner/_work:/w rarc-inner/busybox:1 /bin/busybox cat /w/dind-proof.txt)"
echo "inner-containers=$(docker ps -aq | wc -l)"
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn dind_runner_gets_a_sidecar_daemon_and_both_are_removed_after_the_job() {
    let _serial = SERIAL.lock().await;
    let t0 = Instant::now();
    let w = world().await;
    let name = "dind-jobs";
    let set = w.scale_set(name).await;
    let backend = Arc::new(
        DockerBackend::new(config(&w, set, name), w.client.clone())
            .await
            .expect("docker backend"),
    );
    let stop = CancellationToken::new();
    let driver = drive(backend.clone(), w.client.clone(), set, 5, "dind-test", stop.clone());

    let jobs = w
        .server
        .sim
        .with_state(|st| {
            st.queue_jobs(&QueueJobs {
                count: 1,
                labels: vec![name.into()],
                spec: JobSpec {
                    steps: vec![StepSpec {
                        name: "dind".into(),
                        run: Some(STEP.into()),
                        ..Default::default()
                    }],
                    ..Default::default()
                },
                ..Default::default()
            })
        })
        .expect("queue the job");
    let job = jobs[0];

    // One runner container and one sidecar, both running.
    eventually(
        "a runner container and its sidecar running",
        Duration::from_secs(30),
        || async {
            let cs = backend.containers().await.expect("list");
            cs.len() == 2 && cs.iter().all(|c| c.state == ContainerState::Running)
        },
    )
    .await;
    let (runner, sidecar) = pair(&backend.containers().await.expect("list"));
    let runner_labels: BTreeMap<String, String> =
        serde_json::from_value(inspect(&runner.container_id, ".Config.Labels")).unwrap();
    let sidecar_labels: BTreeMap<String, String> =
        serde_json::from_value(inspect(&sidecar.container_id, ".Config.Labels")).unwrap();
    assert_eq!(
        runner_labels.get("rarc.runner.role").map(String::as_str),
        Some("runner")
    );
    assert_eq!(sidecar_labels.get("rarc.runner.role").map(String::as_str), Some("dind"));
    assert_eq!(
        runner_labels.get("rarc.runner.name"),
        sidecar_labels.get("rarc.runner.name")
    );
    assert_eq!(runner_labels.get(TEST_LABEL), Some(&w.run));
    assert_eq!(sidecar_labels.get(TEST_LABEL), Some(&w.run));
    assert_eq!(inspect(&sidecar.container_id, ".Config.Image"), dind_image());

    // DOCKER_HOST and the JIT config in the runner; the JIT config nowhere in the sidecar.
    let runner_env = env_of(&runner.container_id);
    assert!(
        runner_env
            .iter()
            .any(|e| e == "DOCKER_HOST=unix:///var/run/docker.sock"),
        "{runner_env:?}"
    );
    let jit = runner_env
        .iter()
        .find_map(|e| e.strip_prefix(&format!("{JIT_CONFIG_ENV}=")))
        .expect("the JIT config in the runner's env")
        .to_owned();
    assert!(jit.len() > 20);
    let sidecar_env = env_of(&sidecar.container_id);
    assert!(
        sidecar_env
            .iter()
            .all(|e| !e.starts_with(JIT_CONFIG_ENV) && !e.contains(&jit)),
        "the sidecar has the JIT config: {sidecar_env:?}"
    );
    let sidecar_config = docker_ok(&["inspect", &sidecar.container_id]);
    assert!(
        !sidecar_config.contains(&jit),
        "the JIT config is in the sidecar's config"
    );

    // The runner shares the sidecar's /var/run and work folder volumes; only the sidecar is
    // granted the capabilities dockerd needs.
    let shared = volumes_of(&sidecar.container_id);
    assert_eq!(
        shared.keys().map(String::as_str).collect::<Vec<_>>(),
        vec![WORK, "/var/run"],
        "{shared:?}"
    );
    assert_eq!(
        volumes_of(&runner.container_id),
        shared,
        "the runner mounts the sidecar's volumes"
    );
    // ...and no host path but the ones asked for (not the sidecar's read-write /sys/fs/cgroup).
    assert_eq!(binds_of(&sidecar.container_id), vec!["/sys/fs/cgroup".to_owned()]);
    assert_eq!(binds_of(&runner.container_id), vec![RUNNER_DOCKER_CLI.to_owned()]);
    assert_eq!(
        inspect(&sidecar.container_id, ".HostConfig.CapAdd"),
        serde_json::json!(["ALL"])
    );
    assert_eq!(
        inspect(&sidecar.container_id, ".HostConfig.CapDrop"),
        serde_json::json!(["SYS_RESOURCE"])
    );
    assert_eq!(
        inspect(&runner.container_id, ".HostConfig.CapAdd"),
        serde_json::Value::Null
    );
    assert_eq!(inspect(&runner.container_id, ".HostConfig.Privileged"), false);

    // The step's file, seen from the sidecar; the sidecar's answer goes back the same way.
    let proof = format!("{WORK}/dind-proof.txt");
    eventually("the step's file in the sidecar", Duration::from_secs(40), || async {
        docker_cli()
            .args(["exec", &sidecar.container_id, "cat", &proof])
            .output()
            .map(|o| o.status.success() && String::from_utf8_lossy(&o.stdout) == "from-the-runner\n")
            .unwrap_or(false)
    })
    .await;
    let listing = docker_ok(&["exec", &sidecar.container_id, "ls", WORK]);
    assert!(listing.lines().any(|l| l == "dind-proof.txt"), "{listing}");
    docker_ok(&[
        "exec",
        &sidecar.container_id,
        "sh",
        "-c",
        &format!("echo from-the-sidecar > {WORK}/dind-ack.txt"),
    ]);

    let (done, log) = w.finished_job(job, Duration::from_secs(40)).await;
    assert_eq!(done.result.as_deref(), Some("succeeded"), "job log: {log:#?}");
    assert_eq!(done.runs, 1, "job log: {log:#?}");
    assert_eq!(done.runner_name.as_deref(), Some(runner.runner_name.as_str()));
    let has = |line: &str| log.iter().any(|l| l == line);
    assert!(has("docker-host=unix:///var/run/docker.sock"), "{log:#?}");
    let server = log
        .iter()
        .find_map(|l| l.strip_prefix("server="))
        .unwrap_or_else(|| panic!("no server line: {log:#?}"));
    assert!(
        server.starts_with("linux/") && server.len() > "linux/".len(),
        "{log:#?}"
    );
    assert!(has("ack=from-the-sidecar"), "{log:#?}");
    assert!(
        has("inner=from-the-runner"),
        "a container of the inner daemon read the shared folder: {log:#?}"
    );
    assert!(has("inner-containers=0"), "{log:#?}");
    // Nothing of the inner daemon leaked to the host daemon.
    assert!(
        !exists("image", "rarc-inner/busybox:1"),
        "the inner image is on the host daemon"
    );

    // Both containers go with the job, with the sidecar's volumes; the runner is deregistered.
    eventually(
        "the runner and its sidecar removed",
        Duration::from_secs(30),
        || async { backend.containers().await.expect("list").is_empty() },
    )
    .await;
    assert!(!exists("container", &runner.container_id));
    assert!(!exists("container", &sidecar.container_id));
    for volume in shared.values() {
        assert!(!exists("volume", volume), "volume {volume} left");
    }
    eventually("the runner deregistered", Duration::from_secs(10), || async {
        w.registered_runners(set) == 0
    })
    .await;
    stop.cancel();
    driver.await.expect("driver");

    // An idle runner scaled to 0 leaves nothing either: no container, no volume.
    backend.apply_desired(1, 1).await.expect("apply");
    eventually(
        "an idle runner and its sidecar running",
        Duration::from_secs(30),
        || async {
            let cs = backend.containers().await.expect("list");
            cs.len() == 2 && cs.iter().all(|c| c.state == ContainerState::Running) && w.registered_runners(set) == 1
        },
    )
    .await;
    let (_, idle_sidecar) = pair(&backend.containers().await.expect("list"));
    let idle_volumes = volumes_of(&idle_sidecar.container_id);
    assert_eq!(idle_volumes.len(), 2, "{idle_volumes:?}");
    backend.apply_desired(0, 0).await.expect("apply");
    eventually("nothing left after scaling to 0", Duration::from_secs(30), || async {
        backend.containers().await.expect("list").is_empty() && w.registered_runners(set) == 0
    })
    .await;
    let filter = format!("label={TEST_LABEL}={}", w.run);
    assert_eq!(containers_matching(&filter), Vec::<String>::new(), "containers left");
    assert_eq!(
        volumes_matching(&filter),
        Vec::<String>::new(),
        "volumes (markers) left"
    );
    for volume in idle_volumes.values() {
        assert!(!exists("volume", volume), "volume {volume} left");
    }
    backend.shutdown().await;
    println!("dind test took {:?}", t0.elapsed());
}

// ---- the full path: hooks in the runner, the job container in the sidecar's daemon --------------

/// Debian's `docker-registry` with htpasswd auth on `0.0.0.0:<free port>` (the host pushes through
/// 127.0.0.1, which Docker treats as insecure anyway; the sidecars' daemons pull through the
/// default bridge's gateway, given to them with `--insecure-registry`). Killed on drop.
struct Registry {
    child: std::process::Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Registry {
    fn start(user: &str, password: &str) -> Self {
        for tool in ["docker-registry", "htpasswd"] {
            assert!(
                Command::new("sh")
                    .args(["-c", &format!("command -v {tool}")])
                    .stdout(Stdio::null())
                    .status()
                    .is_ok_and(|s| s.success()),
                "{tool} is missing (scripts/ensure-deps installs docker-registry and apache2-utils)"
            );
        }
        let dir = tempfile::tempdir().expect("tempdir");
        let htpasswd = Command::new("htpasswd")
            .args(["-Bbn", user, password])
            .output()
            .expect("htpasswd");
        assert!(htpasswd.status.success());
        std::fs::write(dir.path().join("htpasswd"), &htpasswd.stdout).expect("write htpasswd");
        let port = std::net::TcpListener::bind("0.0.0.0:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let config = format!(
            "version: 0.1\nstorage:\n  filesystem:\n    rootdirectory: {root}\nhttp:\n  addr: 0.0.0.0:{port}\n\
             auth:\n  htpasswd:\n    realm: rarc-test\n    path: {auth}\n",
            root = dir.path().join("data").display(),
            auth = dir.path().join("htpasswd").display()
        );
        std::fs::write(dir.path().join("config.yml"), config).expect("write config");
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(dir.path().join("config.yml"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start docker-registry");
        let registry = Self { child, port, _dir: dir };
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "the registry did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        registry
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Builds a busybox image (applets linked, `/etc/rarc-job-image` holding `marker`) on the host
/// daemon as `reference`, pushes it with a throw-away CLI config, and removes it from the host.
fn push_job_image(reference: &str, marker: &str, user: &str, password: &str, registry: &str) {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path().join("rootfs");
    let build = Command::new("sh")
        .args([
            "-ec",
            r#"r=$1; mkdir -p "$r/bin" "$r/etc" "$r/tmp" "$r/root"; chmod 1777 "$r/tmp"
               cp /bin/busybox "$r/bin/busybox"
               for a in $(/bin/busybox --list); do [ -e "$r/bin/$a" ] || ln -s busybox "$r/bin/$a"; done
               echo 'root:x:0:0:root:/root:/bin/sh' > "$r/etc/passwd"; echo 'root:x:0:' > "$r/etc/group"
               printf '%s\n' "$2" > "$r/etc/rarc-job-image"
               tar -C "$r" -cf "$r.tar" ."#,
            "sh",
            root.to_str().expect("utf-8 path"),
            marker,
        ])
        .status()
        .expect("build the job image root");
    assert!(build.success(), "building the job image root failed");
    let tar = dir.path().join("rootfs.tar");
    docker_ok(&[
        "import",
        "--change",
        "ENV PATH=/usr/local/bin:/usr/bin:/bin",
        "--change",
        r#"CMD ["sh"]"#,
        tar.to_str().expect("utf-8 path"),
        reference,
    ]);
    let config = dir.path().join("docker-config");
    let cli = |args: &[&str], input: Option<&str>| {
        let mut cmd = docker_cli();
        cmd.env("DOCKER_CONFIG", &config)
            .args(args)
            .stdin(if input.is_some() { Stdio::piped() } else { Stdio::null() })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("docker");
        if let Some(text) = input {
            use std::io::Write;
            child
                .stdin
                .take()
                .expect("stdin")
                .write_all(text.as_bytes())
                .expect("write stdin");
        }
        let out = child.wait_with_output().expect("docker");
        assert!(
            out.status.success(),
            "docker {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    cli(&["login", registry, "-u", user, "--password-stdin"], Some(password));
    cli(&["push", reference], None);
    docker_ok(&["rmi", reference]);
}

/// The default bridge's gateway on the host daemon: where containers on it reach the host.
fn bridge_gateway() -> String {
    let out = docker_ok(&[
        "network",
        "inspect",
        "bridge",
        "--format",
        "{{range .IPAM.Config}}{{.Gateway}}{{end}}",
    ]);
    let ip = out.trim().to_owned();
    assert!(ip.parse::<std::net::Ipv4Addr>().is_ok(), "bridge gateway {ip:?}");
    ip
}

/// The job step of the full path: where it runs, then a wait for the test to look at the inner
/// daemon.
const JOB_STEP: &str = r#"echo "image=$(cat /etc/rarc-job-image)"
echo "pwd=$(pwd)"
echo "in-job-container" > /__w/job-proof.txt
for i in $(seq 300); do [ -s /__w/job-ack.txt ] && break; sleep 0.1; done
echo "ack=$(cat /__w/job-ack.txt)"
"#;

/// rarc-hooks (the host's build and `images/hooks/index.sh`, bind-mounted at
/// /home/runner/docker/) run by the simulated runner inside the runner container: the job
/// container is pulled (with credentials) from a registry by the sidecar's daemon and created
/// there; the step runs in it, sees the shared work folder, and nothing of it is on the host
/// daemon; the runner and sidecar go after the job.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_job_container_runs_in_the_sidecar_daemon_through_the_hooks() {
    let _serial = SERIAL.lock().await;
    let t0 = Instant::now();
    let w = world().await;
    // target/<profile>/deps/<test>-<hash> → target/<profile>/rarc-hooks
    let exe = std::env::current_exe().expect("current exe");
    let hooks = exe
        .parent()
        .and_then(Path::parent)
        .expect("target/<profile>")
        .join("rarc-hooks");
    let shim = support::docker::repo_root().join("images/hooks/index.sh");
    assert!(
        hooks.exists(),
        "{} is missing: run `cargo build -p rarc-hooks`",
        hooks.display()
    );
    let (user, password) = ("rarc", "dind-registry-pass");
    let registry = Registry::start(user, password);
    let gateway = bridge_gateway();
    let tag = format!("rarc-test/dind-job:{}", &w.run[..8]);
    let marker = format!("job-image-{}", w.run);
    push_job_image(
        &format!("127.0.0.1:{}/{tag}", registry.port),
        &marker,
        user,
        password,
        &format!("127.0.0.1:{}", registry.port),
    );
    let inner_registry = format!("{gateway}:{}", registry.port);
    let image = format!("{inner_registry}/{tag}");

    let name = "dind-hooks";
    let set = w.scale_set(name).await;
    let mut config = config(&w, set, name);
    if let ContainerMode::Dind(d) = &mut config.container_mode {
        d.command
            .get_or_insert_with(Vec::new)
            .push(format!("--insecure-registry={inner_registry}"));
    }
    config.extra_volumes.extend([
        format!("{}:/home/runner/docker/rarc-hooks:ro", hooks.display()),
        format!("{}:/home/runner/docker/index.sh:ro", shim.display()),
    ]);
    config.extra_env.insert(
        "ACTIONS_RUNNER_CONTAINER_HOOKS".into(),
        "/home/runner/docker/index.sh".into(),
    );
    let backend = Arc::new(
        DockerBackend::new(config, w.client.clone())
            .await
            .expect("docker backend"),
    );
    let stop = CancellationToken::new();
    let driver = drive(backend.clone(), w.client.clone(), set, 5, "dind-test", stop.clone());
    let job = w
        .server
        .sim
        .with_state(|st| {
            st.queue_jobs(&QueueJobs {
                count: 1,
                labels: vec![name.into()],
                spec: JobSpec {
                    container: Some(ContainerSpec {
                        image: image.clone(),
                        credentials: Some(Credentials {
                            username: user.into(),
                            password: password.into(),
                        }),
                        ..Default::default()
                    }),
                    steps: vec![StepSpec {
                        name: "in the job container".into(),
                        run: Some(JOB_STEP.into()),
                        ..Default::default()
                    }],
                    ..Default::default()
                },
                ..Default::default()
            })
        })
        .expect("queue the job")[0];

    eventually(
        "a runner container and its sidecar",
        Duration::from_secs(30),
        || async { backend.containers().await.expect("list").len() == 2 },
    )
    .await;
    let (runner, sidecar) = pair(&backend.containers().await.expect("list"));
    // The step is running: the job container is in the sidecar's daemon, not on the host's.
    eventually("the job container's step", Duration::from_secs(60), || async {
        docker_cli()
            .args(["exec", &sidecar.container_id, "cat", &format!("{WORK}/job-proof.txt")])
            .output()
            .is_ok_and(|o| o.status.success())
    })
    .await;
    let inner = docker_ok(&[
        "exec",
        "-e",
        "HOME=/tmp",
        &runner.container_id,
        "docker",
        "ps",
        "--format",
        "{{.Image}} {{.Command}}",
    ]);
    assert!(
        inner
            .lines()
            .any(|l| l.starts_with(&format!("{image} ")) && l.contains("tail -f /dev/null")),
        "the job container in the inner daemon: {inner}"
    );
    assert_eq!(
        containers_matching(&format!("ancestor={image}")),
        Vec::<String>::new(),
        "a job container on the host daemon"
    );
    docker_ok(&[
        "exec",
        &sidecar.container_id,
        "sh",
        "-c",
        &format!("echo from-the-sidecar > {WORK}/job-ack.txt"),
    ]);

    let (done, log) = w.finished_job(job, Duration::from_secs(40)).await;
    assert_eq!(done.result.as_deref(), Some("succeeded"), "job log: {log:#?}");
    assert_eq!(done.runs, 1, "job log: {log:#?}");
    let has = |line: &str| log.iter().any(|l| l == line);
    assert!(
        has(&format!("image={marker}")),
        "the step ran in the job container: {log:#?}"
    );
    assert!(has("ack=from-the-sidecar"), "{log:#?}");
    assert!(
        log.iter().any(|l| l.starts_with("pwd=/__w/")),
        "the step ran in the job container's workspace: {log:#?}"
    );
    assert!(
        !log.iter().any(|l| l.contains(password)),
        "the registry password in the log"
    );

    eventually(
        "the runner and its sidecar removed",
        Duration::from_secs(30),
        || async { backend.containers().await.expect("list").is_empty() && w.registered_runners(set) == 0 },
    )
    .await;
    stop.cancel();
    driver.await.expect("driver");
    backend.shutdown().await;
    let filter = format!("label={TEST_LABEL}={}", w.run);
    assert_eq!(containers_matching(&filter), Vec::<String>::new(), "containers left");
    assert_eq!(volumes_matching(&filter), Vec::<String>::new(), "volumes left");
    drop(registry);
    println!("dind hooks test took {:?}", t0.elapsed());
}
