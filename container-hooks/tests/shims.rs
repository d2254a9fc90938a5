//! The shims the runner calls, `images/hooks/index.js` (run by node) and `images/hooks/index.sh`
//! (run by `bash -e`, or `sh -e` without bash): binary and mode selection, stdin passed through, stdout in order and live,
//! exit codes (including 128+signal), and SIGINT/SIGTERM forwarding. Each behaviour is checked with
//! a stand-in binary (`RARC_HOOKS_BIN`) that makes it observable, and end to end with the real one.
#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use nix::sys::signal::Signal;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

const LIMIT: Duration = Duration::from_secs(30);

/// A stand-in for rarc-hooks: reads stdin, prints `mode=<arg>` and `stdin=<input>`, then acts on
/// the input.
const FAKE: &str = r#"#!/bin/sh
input=$(cat)
echo "mode=$1"
echo "stdin=$input"
case $input in
    exit:*) exit "${input#exit:}" ;;
    order)
        i=0
        while [ $i -lt 2000 ]; do echo "line $i"; echo "err $i" >&2; i=$((i+1)); done ;;
    wait)
        trap 'echo "got INT"; exit 42' INT
        trap 'echo "got TERM"; exit 43' TERM
        printf 'partial'
        sleep 0.2
        echo " ready"
        while :; do sleep 0.05; done ;;
    killed) kill -KILL $$ ;;
esac
"#;

fn fake_binary(dir: &Path) -> PathBuf {
    let path = dir.join("fake-hooks");
    std::fs::write(&path, FAKE).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path
}

#[derive(Clone, Copy, Debug)]
enum Shim {
    /// `node` on PATH (Debian's / NodeSource's node 20 here).
    Node,
    /// Node 24, from npm (`scripts/ensure-deps` installs it under ~/.cache/rarc/node24).
    Node24,
    Bash,
    /// The runner's fallback when bash is not on PATH.
    Sh,
}

const SHIMS: [Shim; 4] = [Shim::Node, Shim::Node24, Shim::Bash, Shim::Sh];

impl Shim {
    fn file(self) -> &'static str {
        match self {
            Self::Node | Self::Node24 => "index.js",
            Self::Bash | Self::Sh => "index.sh",
        }
    }

    /// The command the runner would run for a shim at `path`.
    fn command(self, path: &Path) -> Command {
        let mut cmd = match self {
            Self::Node => Command::new("node"),
            Self::Node24 => Command::new(node24()),
            Self::Bash | Self::Sh => {
                let mut c = Command::new(if matches!(self, Self::Bash) { "bash" } else { "sh" });
                c.arg("-e");
                c
            }
        };
        runner_env(&mut cmd).arg(path);
        cmd
    }
}

/// The node 24 binary `scripts/ensure-deps` installs (`RARC_NODE24` overrides); checked to be 24.
fn node24() -> PathBuf {
    let path = std::env::var_os("RARC_NODE24").map(PathBuf::from).unwrap_or_else(|| {
        let home = std::env::var_os("HOME")
            .map(PathBuf::from)
            .unwrap_or_else(|| "/root".into());
        home.join(".cache/rarc/node24/node_modules/node/bin/node")
    });
    let version = Command::new(&path)
        .arg("--version")
        .output()
        .unwrap_or_else(|e| panic!("node 24 at {} ({e}); run scripts/ensure-deps", path.display()));
    let version = String::from_utf8_lossy(&version.stdout);
    assert!(version.starts_with("v24."), "{} is node {version}", path.display());
    path
}

/// The shim run from images/hooks with a given binary and mode.
fn with_binary(shim: Shim, binary: &Path, mode: &str) -> Command {
    let mut cmd = shim.command(&shim_path(shim));
    cmd.env("RARC_HOOKS_BIN", binary).env("RARC_HOOKS_MODE", mode);
    cmd
}

/// Runs `cmd` with `input` and returns how it ended.
fn run_status(cmd: &mut Command, input: &[u8]) -> std::process::ExitStatus {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    std::io::Write::write_all(&mut child.stdin.take().unwrap(), input).unwrap();
    child.wait().unwrap()
}

fn shim_path(which: Shim) -> PathBuf {
    common::shim(which.file())
}

fn arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "x86_64",
        "aarch64" => "aarch64",
        other => panic!("unsupported test architecture {other}"),
    }
}

#[test]
fn stdin_mode_and_exit_codes_pass_through() {
    let dir = tempfile::tempdir().unwrap();
    let fake = fake_binary(dir.path());
    for shim in SHIMS {
        for code in [0, 1, 3, 255] {
            let out = run_with_input(
                &mut with_binary(shim, &fake, "k8s"),
                format!("exit:{code}").as_bytes(),
                LIMIT,
            );
            assert_eq!(out.code, Some(code), "{shim:?} {out:?}");
            assert_eq!(out.stdout, format!("mode=k8s\nstdin=exit:{code}\n"), "{shim:?}");
        }
        // Killed by a signal: 128 + 9.
        // index.js exits with 128 + 9; index.sh has become the binary, so it dies of the signal
        // itself (which the runner reports as 137 too).
        let mut cmd = with_binary(shim, &fake, "docker");
        let status = run_status(&mut cmd, b"killed");
        match shim {
            Shim::Node | Shim::Node24 => assert_eq!(status.code(), Some(137), "{status:?}"),
            Shim::Bash | Shim::Sh => assert_eq!(status.signal(), Some(9), "{status:?}"),
        }
        // The first argument wins over RARC_HOOKS_MODE (manual use).
        let out = run_with_input(with_binary(shim, &fake, "docker").arg("k8s-novolume"), b"exit:0", LIMIT);
        assert_eq!(out.stdout.lines().next(), Some("mode=k8s-novolume"), "{shim:?}");
    }
}

#[test]
fn stdout_and_stderr_keep_their_order() {
    let dir = tempfile::tempdir().unwrap();
    let fake = fake_binary(dir.path());
    for shim in SHIMS {
        let out = run_with_input(&mut with_binary(shim, &fake, "docker"), b"order", LIMIT);
        assert_eq!(out.code, Some(0), "{shim:?}");
        let want: String = (0..2000).map(|i| format!("line {i}\n")).collect();
        assert_eq!(out.stdout, format!("mode=docker\nstdin=order\n{want}"), "{shim:?}");
        let want_err: String = (0..2000).map(|i| format!("err {i}\n")).collect();
        assert_eq!(out.stderr, want_err, "{shim:?}");
    }
}

#[test]
fn output_is_live_and_signals_are_forwarded() {
    let dir = tempfile::tempdir().unwrap();
    let fake = fake_binary(dir.path());
    for shim in SHIMS {
        for (signal, code, got) in [(Signal::SIGINT, 42, "got INT"), (Signal::SIGTERM, 43, "got TERM")] {
            let mut child = with_binary(shim, &fake, "docker")
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::null())
                .spawn()
                .unwrap();
            let mut stdin = child.stdin.take().unwrap();
            std::io::Write::write_all(&mut stdin, b"wait").unwrap();
            drop(stdin);
            let mut lines = LineReader::new(child.stdout.take().unwrap());
            // Seen while the process still runs: nothing is buffered until exit.
            lines.wait_for("partial ready", LIMIT);
            send(&child, signal);
            let (status, took) = wait_exit(&mut child, Duration::from_secs(10));
            assert_eq!(status, Some(code), "{shim:?} {signal}");
            assert!(took < Duration::from_secs(5), "{shim:?} took {took:?}");
            assert_eq!(lines.rest().last().map(String::as_str), Some(got), "{shim:?}");
        }
    }
}

#[test]
fn the_real_binary_end_to_end() {
    for shim in SHIMS {
        // stdin reaches the binary: it names the command it read.
        let out = run_with_input(
            &mut with_binary(shim, &binary(), "k8s-novolume"),
            request("cleanup_job", "/r", "{}").as_bytes(),
            LIMIT,
        );
        assert_eq!(out.code, Some(1), "{shim:?} {out:?}");
        assert!(
            out.stdout
                .starts_with("::error::the k8s-novolume mode does not implement cleanup_job yet"),
            "{shim:?} {out:?}"
        );
        // A cancellation reaches it through the shim and its code comes back.
        for (signal, code) in [(Signal::SIGINT, 130), (Signal::SIGTERM, 143)] {
            let mut child = with_binary(shim, &binary(), "docker")
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::null())
                .spawn()
                .unwrap();
            let _stdin = child.stdin.take();
            std::thread::sleep(Duration::from_millis(500));
            send(&child, signal);
            let out = finish(child, Duration::from_secs(10));
            assert_eq!(out.code, Some(code), "{shim:?} {out:?}");
            assert!(out.stdout.starts_with("::error::cancelled by "), "{shim:?} {out:?}");
        }
    }
}

/// The release layout: the shim and `rarc-hooks-<arch>` side by side in a directory named after
/// the mode, as unzipped into /home/runner/k8s, /home/runner/k8s-novolume or a docker directory.
#[test]
fn mode_and_binary_from_the_layout() {
    let root = tempfile::tempdir().unwrap();
    for shim in SHIMS {
        for mode in ["docker", "k8s", "k8s-novolume"] {
            let dir = root.path().join(format!("{shim:?}")).join(mode);
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::copy(shim_path(shim), dir.join(shim.file())).unwrap();
            std::os::unix::fs::symlink(binary(), dir.join(format!("rarc-hooks-{}", arch()))).unwrap();
            let out = run_with_input(
                &mut shim.command(&dir.join(shim.file())),
                request("cleanup_job", "/r", "{}").as_bytes(),
                LIMIT,
            );
            assert_eq!(out.code, Some(1), "{shim:?} {out:?}");
            assert!(
                out.stdout.starts_with(&reached_mode(mode, "cleanup_job")),
                "{shim:?} {mode} {out:?}"
            );
        }

        // A plain `rarc-hooks` is the fallback, and a symlinked shim takes its mode from where the
        // runner points (the link), finding the binary next to the link.
        let dir = root.path().join(format!("{shim:?}-link")).join("k8s");
        std::fs::create_dir_all(&dir).unwrap();
        std::os::unix::fs::symlink(shim_path(shim), dir.join(shim.file())).unwrap();
        std::os::unix::fs::symlink(binary(), dir.join("rarc-hooks")).unwrap();
        let out = run_with_input(
            &mut shim.command(&dir.join(shim.file())),
            request("cleanup_job", "/r", "{}").as_bytes(),
            LIMIT,
        );
        assert!(
            out.stdout
                .starts_with("::error::the k8s mode does not implement cleanup_job yet"),
            "{shim:?} {out:?}"
        );

        // A directory that names no mode, and a missing binary: one clear error each.
        let dir = root.path().join(format!("{shim:?}-other")).join("hooks");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::copy(shim_path(shim), dir.join(shim.file())).unwrap();
        let out = run_with_input(&mut shim.command(&dir.join(shim.file())), b"", LIMIT);
        assert_eq!(out.code, Some(1), "{shim:?} {out:?}");
        assert!(
            out.stdout
                .starts_with("::error::rarc-hooks shim: no rarc-hooks binary for "),
            "{shim:?} {out:?}"
        );
        std::os::unix::fs::symlink(binary(), dir.join(format!("rarc-hooks-{}", arch()))).unwrap();
        let out = run_with_input(&mut shim.command(&dir.join(shim.file())), b"", LIMIT);
        assert_eq!(out.code, Some(1), "{shim:?} {out:?}");
        assert!(
            out.stdout
                .starts_with("::error::rarc-hooks shim: cannot tell the mode from the directory"),
            "{shim:?} {out:?}"
        );
        let mut cmd = shim.command(&dir.join(shim.file()));
        cmd.env("RARC_HOOKS_BIN", dir.join("nope"));
        let out = run_with_input(&mut cmd, b"", LIMIT);
        assert_eq!(out.code, Some(1), "{shim:?} {out:?}");
        assert!(
            out.stdout.starts_with("::error::rarc-hooks shim: cannot start "),
            "{shim:?} {out:?}"
        );
    }
}
