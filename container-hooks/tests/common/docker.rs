//! The Docker side of the docker-mode tests: the test daemon (`scripts/dockerd-up`), the docker
//! CLI against it (or another daemon), and the `FROM scratch` busybox test images, built once and
//! reused by every test binary and the step-overhead bench.

use super::repo;
use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::OnceLock;

/// Debian's busybox-static as a job image (`sh`, coreutils, `wget`, `httpd`).
pub const BUSYBOX: &str = "rarc-test/hooks-busybox:1";
/// The busybox image with `ID=alpine` in /etc/os-release.
pub const ALPINE: &str = "rarc-test/hooks-alpine:1";
/// A busybox httpd on port 80 with a HEALTHCHECK.
pub const HTTPD: &str = "rarc-test/hooks-httpd:1";

pub fn docker_host() -> &'static str {
    static HOST: OnceLock<String> = OnceLock::new();
    HOST.get_or_init(|| {
        let out = Command::new(repo().join("scripts/dockerd-up"))
            .stderr(Stdio::inherit())
            .output()
            .expect("run scripts/dockerd-up");
        assert!(out.status.success(), "scripts/dockerd-up failed");
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .last()
            .expect("dockerd-up prints DOCKER_HOST")
            .trim()
            .to_owned()
    })
}

/// The docker CLI talking to `host`.
pub fn docker_at(host: &str) -> Command {
    let bin = if Path::new("/usr/bin/docker").exists() {
        "/usr/bin/docker"
    } else {
        "docker"
    };
    let mut c = Command::new(bin);
    c.env("DOCKER_HOST", host).env("DOCKER_BUILDKIT", "0");
    c
}

/// `docker ARGS` against `host` (must succeed); its stdout.
pub fn docker_ok_at(host: &str, args: &[&str]) -> String {
    let out = docker_at(host).args(args).output().expect("run docker");
    assert!(
        out.status.success(),
        "docker -H {host} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub fn docker_ok(args: &[&str]) -> String {
    docker_ok_at(docker_host(), args)
}

pub fn exists_at(host: &str, args: &[&str]) -> bool {
    docker_at(host)
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap()
        .success()
}

/// `FROM scratch` + a root filesystem directory, as `tag`.
pub fn import(root: &Path, tag: &str, changes: &[&str]) {
    let tar = root.with_extension("tar");
    let ok = Command::new("tar")
        .args(["-C", root.to_str().unwrap(), "-cf", tar.to_str().unwrap(), "."])
        .status()
        .unwrap()
        .success();
    assert!(ok, "tar of {}", root.display());
    let mut args = vec!["import"];
    for c in changes {
        args.extend(["--change", c]);
    }
    args.extend([tar.to_str().unwrap(), tag]);
    docker_ok(&args);
}

/// Debian's busybox-static as `/bin/busybox` with its applets linked under `root/bin`.
pub fn busybox_into(root: &Path) {
    let busybox = Path::new("/bin/busybox");
    if !busybox.exists() {
        let ok = Command::new("sh")
            .args([
                "-c",
                "apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq busybox-static",
            ])
            .status()
            .unwrap()
            .success();
        assert!(ok && busybox.exists(), "busybox-static is needed");
    }
    std::fs::create_dir_all(root.join("bin")).unwrap();
    std::fs::copy(busybox, root.join("bin/busybox")).unwrap();
    let list = Command::new(busybox).arg("--list").output().unwrap();
    for applet in String::from_utf8_lossy(&list.stdout).lines() {
        let link = root.join("bin").join(applet);
        if applet != "busybox" && std::fs::symlink_metadata(&link).is_err() {
            std::os::unix::fs::symlink("busybox", &link).unwrap();
        }
    }
}

pub fn sticky_tmp(root: &Path) {
    let tmp = root.join("tmp");
    std::fs::create_dir_all(&tmp).unwrap();
    let mut perms = std::fs::metadata(&tmp).unwrap().permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut perms, 0o1777);
    std::fs::set_permissions(&tmp, perms).unwrap();
}

/// The docker CLI against the test daemon.
pub fn docker() -> Command {
    docker_at(docker_host())
}

pub fn docker_input(args: &[&str], input: &str) -> String {
    let mut child = docker()
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(input.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "docker {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub fn image_exists(image: &str) -> bool {
    docker()
        .args(["image", "inspect", image])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap()
        .success()
}

/// Builds (once; reused when present) the busybox image, an "Alpine" one (`ID=alpine` in
/// /etc/os-release) and an httpd one with a HEALTHCHECK.
pub fn images() {
    static DONE: OnceLock<()> = OnceLock::new();
    DONE.get_or_init(|| {
        if !image_exists(BUSYBOX) {
            let ctx = tempfile::tempdir().unwrap();
            let root = ctx.path().join("rootfs");
            for d in ["etc", "root", "usr/bin"] {
                std::fs::create_dir_all(root.join(d)).unwrap();
            }
            busybox_into(&root);
            sticky_tmp(&root);
            std::fs::write(root.join("etc/os-release"), "ID=busybox\nNAME=BusyBox\n").unwrap();
            std::fs::write(root.join("etc/passwd"), "root:x:0:0:root:/root:/bin/sh\n").unwrap();
            std::fs::write(root.join("etc/group"), "root:x:0:\n").unwrap();
            import(&root, BUSYBOX, &["ENV PATH=/usr/local/bin:/usr/bin:/bin", "CMD [\"sh\"]"]);
        }
        if !image_exists(ALPINE) {
            let dockerfile = format!("FROM {BUSYBOX}\nLABEL rarc.test.hooks=1\nRUN echo ID=alpine > /etc/os-release\n");
            docker_input(&["build", "-q", "-t", ALPINE, "-"], &dockerfile);
        }
        if !image_exists(HTTPD) {
            let dockerfile = format!(
                "FROM {BUSYBOX}\nLABEL rarc.test.hooks=1\nRUN mkdir -p /www && echo hello-from-web > /www/index.html\n\
                 EXPOSE 80\nHEALTHCHECK --interval=1s --timeout=3s --retries=30 CMD wget -q -O /dev/null http://127.0.0.1:80/ || exit 1\n\
                 CMD [\"httpd\", \"-f\", \"-p\", \"80\", \"-h\", \"/www\"]\n"
            );
            docker_input(&["build", "-q", "-t", HTTPD, "-"], &dockerfile);
        }
    });
}
