//! Running one host process (a step's shell or a hook) with its output streamed line by line, and
//! cancelling it the way the runner's process invoker does: SIGINT to the process, 7.5 s, SIGTERM,
//! 2.5 s, then SIGKILL to the whole process tree.
//!
//! Each process gets its own process group so that "the tree" is well defined and a terminal's
//! Ctrl-C reaches only the runner, which then cancels the job by the protocol. SIGINT and SIGTERM go
//! to the direct child only, as with the real runner: a hook shim must forward them itself.

use super::log::LogSink;
use nix::sys::signal::{Signal, kill, killpg};
use nix::unistd::Pid;
use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::process::{ExitStatus, Stdio};
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWriteExt, BufReader};
use tokio::process::Command;
use tokio_util::sync::CancellationToken;

/// How long a cancelled process gets after SIGINT, and then after SIGTERM, before the tree is killed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Escalation {
    pub interrupt_grace: Duration,
    pub terminate_grace: Duration,
}

impl Default for Escalation {
    fn default() -> Self {
        Self {
            interrupt_grace: Duration::from_millis(7500),
            terminate_grace: Duration::from_millis(2500),
        }
    }
}

/// How long output readers may lag behind the exit of the process (a background grandchild can
/// hold the pipes open forever).
const DRAIN_GRACE: Duration = Duration::from_secs(1);

/// What to run.
#[derive(Debug, Clone, Default)]
pub(crate) struct ProcSpec {
    pub program: String,
    pub args: Vec<String>,
    pub cwd: PathBuf,
    /// Added to (and overriding) the runner's own environment.
    pub env: Vec<(String, String)>,
    /// Written to stdin, which is then closed; `None` gives the process no stdin.
    pub stdin: Option<Vec<u8>>,
}

/// How a process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ProcExit {
    /// The exit code; `128 + signal` when it died of a signal.
    pub code: i32,
    /// Whether it ended because the job was cancelled.
    pub canceled: bool,
}

/// Runs `spec`, sending each output line to `log` under `step`.
pub(crate) async fn run(
    spec: &ProcSpec,
    log: &LogSink,
    step: i64,
    cancel: &CancellationToken,
    escalation: Escalation,
) -> std::io::Result<ProcExit> {
    let mut cmd = Command::new(&spec.program);
    cmd.args(&spec.args)
        .current_dir(&spec.cwd)
        .envs(spec.env.iter().map(|(k, v)| (k, v)))
        .stdin(if spec.stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    let mut child = cmd.spawn()?;
    let pid = child.id().and_then(|id| i32::try_from(id).ok()).map(Pid::from_raw);

    if let (Some(mut stdin), Some(bytes)) = (child.stdin.take(), spec.stdin.clone()) {
        tokio::spawn(async move {
            // A process that does not read its stdin is not an error.
            let _ = stdin.write_all(&bytes).await;
            let _ = stdin.shutdown().await;
        });
    }
    let mut readers = Vec::new();
    if let Some(out) = child.stdout.take() {
        readers.push(tokio::spawn(pump(out, log.clone(), step, "stdout")));
    }
    if let Some(err) = child.stderr.take() {
        readers.push(tokio::spawn(pump(err, log.clone(), step, "stderr")));
    }

    let (status, canceled) = tokio::select! {
        status = child.wait() => (status?, false),
        () = cancel.cancelled() => (escalate(&mut child, pid, escalation).await?, true),
    };
    if canceled && let Some(pid) = pid {
        // The tree goes with a cancelled process (the runner's orphan clean-up).
        let _ = killpg(pid, Signal::SIGKILL);
    }
    let drain = async {
        for r in &mut readers {
            let _ = r.await;
        }
    };
    if tokio::time::timeout(DRAIN_GRACE, drain).await.is_err() {
        for r in &readers {
            r.abort();
        }
    }
    Ok(ProcExit {
        code: exit_code(status),
        canceled,
    })
}

async fn escalate(
    child: &mut tokio::process::Child,
    pid: Option<Pid>,
    escalation: Escalation,
) -> std::io::Result<ExitStatus> {
    let Some(pid) = pid else { return child.wait().await };
    let _ = kill(pid, Signal::SIGINT);
    if let Ok(status) = tokio::time::timeout(escalation.interrupt_grace, child.wait()).await {
        return status;
    }
    let _ = kill(pid, Signal::SIGTERM);
    if let Ok(status) = tokio::time::timeout(escalation.terminate_grace, child.wait()).await {
        return status;
    }
    let _ = killpg(pid, Signal::SIGKILL);
    child.wait().await
}

fn exit_code(status: ExitStatus) -> i32 {
    status.code().or_else(|| status.signal().map(|s| 128 + s)).unwrap_or(-1)
}

async fn pump(stream: impl AsyncRead + Unpin, log: LogSink, step: i64, name: &'static str) {
    let mut reader = BufReader::new(stream);
    let mut buf = Vec::new();
    loop {
        buf.clear();
        match reader.read_until(b'\n', &mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(_) => {
                while matches!(buf.last(), Some(b'\n' | b'\r')) {
                    buf.pop();
                }
                log.line(step, name, String::from_utf8_lossy(&buf).into_owned());
            }
        }
    }
}

/// Finds `name` on `PATH` (an executable regular file), like `which`.
pub(crate) fn which(name: &str) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    if name.contains('/') {
        return Some(PathBuf::from(name));
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).map(|dir| dir.join(name)).find(|p| {
        std::fs::metadata(p)
            .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
            .unwrap_or(false)
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::runner::log::LogSink;
    use crate::runner_api::LogLine;
    use tokio::sync::mpsc;

    fn sink() -> (LogSink, mpsc::UnboundedReceiver<LogLine>) {
        LogSink::for_test()
    }

    fn sh(script: &str) -> ProcSpec {
        ProcSpec {
            program: "sh".into(),
            args: vec!["-c".into(), script.into()],
            cwd: std::env::temp_dir(),
            ..Default::default()
        }
    }

    #[tokio::test]
    async fn streams_lines_and_exit_code() {
        let (log, mut rx) = sink();
        let mut spec = sh("read x; echo \"got $x\"; echo oops >&2; printf 'no newline'; exit 3");
        spec.stdin = Some(b"hello\n".to_vec());
        let exit = run(&spec, &log, 2, &CancellationToken::new(), Escalation::default())
            .await
            .unwrap();
        assert_eq!(
            exit,
            ProcExit {
                code: 3,
                canceled: false
            }
        );
        drop(log);
        let mut lines = Vec::new();
        while let Some(l) = rx.recv().await {
            lines.push((l.step, l.stream, l.line));
        }
        assert!(lines.contains(&(2, "stdout".into(), "got hello".into())), "{lines:?}");
        assert!(lines.contains(&(2, "stderr".into(), "oops".into())), "{lines:?}");
        assert!(lines.contains(&(2, "stdout".into(), "no newline".into())), "{lines:?}");
    }

    #[tokio::test]
    async fn cancel_escalates_to_sigterm_when_sigint_is_ignored() {
        let (log, _rx) = sink();
        let cancel = CancellationToken::new();
        let spec = sh("trap '' INT; echo ready; while :; do sleep 0.05; done");
        let esc = Escalation {
            interrupt_grace: Duration::from_millis(200),
            terminate_grace: Duration::from_secs(5),
        };
        let c = cancel.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(200)).await;
            c.cancel();
        });
        let started = std::time::Instant::now();
        let exit = run(&spec, &log, 0, &cancel, esc).await.unwrap();
        assert!(exit.canceled);
        assert_eq!(exit.code, 128 + 15);
        assert!(started.elapsed() < Duration::from_secs(3));
    }

    #[tokio::test]
    async fn cancel_kills_the_tree_when_everything_is_ignored() {
        let (log, _rx) = sink();
        let cancel = CancellationToken::new();
        let spec = sh("trap '' INT TERM; sleep 30 & wait");
        let esc = Escalation {
            interrupt_grace: Duration::from_millis(100),
            terminate_grace: Duration::from_millis(100),
        };
        let c = cancel.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(100)).await;
            c.cancel();
        });
        let started = std::time::Instant::now();
        let exit = run(&spec, &log, 0, &cancel, esc).await.unwrap();
        assert!(exit.canceled);
        assert_eq!(exit.code, 128 + 9);
        assert!(started.elapsed() < Duration::from_secs(3));
    }

    #[test]
    fn which_finds_sh() {
        assert!(which("sh").is_some());
        assert!(which("definitely-not-a-program-rarc").is_none());
    }
}
