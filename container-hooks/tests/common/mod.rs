//! Helpers shared by the integration tests: running a program with piped stdio and reading its
//! output while it runs.
#![allow(dead_code, clippy::unwrap_used)]

pub mod docker;
pub mod runner;

use std::io::{BufRead, BufReader, Read, Write};
use std::path::PathBuf;
use std::process::{Child, ChildStdout, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// The built binary.
pub fn binary() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_rarc-hooks"))
}

/// The repository root.
pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// `images/hooks/<name>`.
pub fn shim(name: &str) -> PathBuf {
    repo().join("images/hooks").join(name)
}

/// A Docker daemon that does not exist: the docker mode fails at once, and predictably, where it
/// would connect (tests of the real daemon are in `docker_mode.rs`).
pub const NO_DOCKER_HOST: &str = "unix:///nonexistent/rarc-hooks-test.sock";

/// The `::error::` line that shows a command reached `mode` (and was parsed): docker cannot reach
/// [`NO_DOCKER_HOST`], the k8s modes are not implemented yet.
pub fn reached_mode(mode: &str, command: &str) -> String {
    match mode {
        "docker" => format!("::error::cannot connect to the Docker daemon at {NO_DOCKER_HOST}"),
        "k8s-volume" => format!("::error::the k8s mode does not implement {command} yet"),
        _ => format!("::error::the {mode} mode does not implement {command} yet"),
    }
}

/// The environment every mode requires, and nothing else from the test's environment but PATH
/// (and a [`NO_DOCKER_HOST`]).
pub fn runner_env(cmd: &mut Command) -> &mut Command {
    cmd.env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("DOCKER_HOST", NO_DOCKER_HOST)
        .env("GITHUB_WORKSPACE", "/tmp")
        .env("RUNNER_NAME", "runner-1")
        .env("ACTIONS_RUNNER_POD_NAME", "runner-pod-1")
}

/// What a finished run printed and returned.
#[derive(Debug)]
pub struct Outcome {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

/// Runs `cmd` with `input` on stdin (then closed) and waits, at most `limit`.
pub fn run_with_input(cmd: &mut Command, input: &[u8], limit: Duration) -> Outcome {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    // The hook may exit before reading (a missing env var): a broken pipe is fine.
    let _ = stdin.write_all(input);
    drop(stdin);
    finish(child, limit)
}

/// Waits for `child` (at most `limit`, then kills it and panics) and collects its output.
pub fn finish(mut child: Child, limit: Duration) -> Outcome {
    let mut out = child.stdout.take().unwrap();
    let err = child.stderr.take();
    let reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = out.read_to_string(&mut s);
        s
    });
    let err_reader = std::thread::spawn(move || {
        let mut s = String::new();
        if let Some(mut err) = err {
            let _ = err.read_to_string(&mut s);
        }
        s
    });
    let start = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            panic!("still running after {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    Outcome {
        code: status.code(),
        stdout: reader.join().unwrap(),
        stderr: err_reader.join().unwrap(),
    }
}

/// Reads stdout lines of a running child in the background.
pub struct LineReader {
    rx: mpsc::Receiver<String>,
    pub seen: Vec<String>,
}

impl LineReader {
    pub fn new(stdout: ChildStdout) -> Self {
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Self { rx, seen: Vec::new() }
    }

    /// Waits until a line equal to `want` arrives (panics after `limit`).
    pub fn wait_for(&mut self, want: &str, limit: Duration) {
        let deadline = Instant::now() + limit;
        while !self.seen.iter().any(|l| l == want) {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.rx.recv_timeout(left) {
                Ok(line) => self.seen.push(line),
                Err(_) => panic!("no line {want:?} within {limit:?}; saw {:?}", self.seen),
            }
        }
    }

    /// Everything up to the end of the stream.
    pub fn rest(&mut self) -> Vec<String> {
        while let Ok(line) = self.rx.recv_timeout(Duration::from_secs(10)) {
            self.seen.push(line);
        }
        self.seen.clone()
    }
}

/// Waits for a child to exit, at most `limit`; returns the exit code and signal.
pub fn wait_exit(child: &mut Child, limit: Duration) -> (Option<i32>, Duration) {
    use std::os::unix::process::ExitStatusExt;
    let start = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            assert_eq!(status.signal(), None, "killed by a signal instead of exiting");
            return (status.code(), start.elapsed());
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            panic!("still running after {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Sends `signal` to the process `pid`.
pub fn send(child: &Child, signal: nix::sys::signal::Signal) {
    let pid = nix::unistd::Pid::from_raw(i32::try_from(child.id()).unwrap());
    nix::sys::signal::kill(pid, signal).unwrap();
}

/// A request line.
pub fn request(command: &str, response_file: &str, args: &str) -> String {
    format!(r#"{{"command":"{command}","responseFile":"{response_file}","args":{args},"state":null}}"#) + "\n"
}
