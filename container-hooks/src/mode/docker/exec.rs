//! Exec helpers: streaming a container's multiplexed output to the hook's stdout/stderr in order,
//! short captured execs (the alpine check, the kill helper), and the tiny shell wrapper that lets a
//! cancelled script step be stopped inside the container.

use super::docker_err;
use crate::error::HookError;
use bollard::Docker;
use bollard::container::LogOutput;
use bollard::exec::{StartExecOptions, StartExecResults};
use bollard::models::ExecConfig;
use futures::StreamExt;
use std::time::Duration;
use tokio::io::{AsyncWrite, AsyncWriteExt};

/// Run as `sh -c WRAPPER <pidfile> <cmd> <args…>`: records the shell's pid (which `exec` hands to
/// the step's program) and becomes the step. A missing `/tmp` only loses the pidfile.
pub const WRAPPER: &str = r#"{ echo $$ >"$0"; } 2>/dev/null; exec "$@""#;

/// Run as `sh -c KILL_TREE <pidfile> <SIGNAL>`: sends SIGNAL to the recorded process and all its
/// descendants (found through `/proc/*/stat`, shell builtins only), so that nothing the step
/// started keeps its output open.
pub const KILL_TREE: &str = r#"read -r top <"$0" 2>/dev/null || exit 0
all=" $top "
changed=1
while [ -n "$changed" ]; do
  changed=
  for s in /proc/[0-9]*/stat; do
    { read -r p c st pp rest <"$s"; } 2>/dev/null || continue
    case "$all" in *" $pp "*) case "$all" in *" $p "*) ;; *) all="$all$p "; changed=1 ;; esac ;; esac
  done
done
kill -s "$1" $all 2>/dev/null
[ "$1" = KILL ] && rm -f "$0"
exit 0"#;

/// Writes one chunk of container output to the matching stream and flushes it.
pub async fn write_chunk<O, E>(chunk: LogOutput, out: &mut O, err: &mut E) -> std::io::Result<()>
where
    O: AsyncWrite + Unpin + ?Sized,
    E: AsyncWrite + Unpin + ?Sized,
{
    match chunk {
        LogOutput::StdErr { message } => {
            err.write_all(&message).await?;
            err.flush().await
        }
        LogOutput::StdOut { message } | LogOutput::Console { message } => {
            out.write_all(&message).await?;
            out.flush().await
        }
        LogOutput::StdIn { .. } => Ok(()),
    }
}

/// Passes one item of a step's output stream to the hook's stdout/stderr. False when the stream
/// is over (ended, or failed: `what` names it in the debug line).
pub async fn forward<O, E>(
    item: Option<Result<LogOutput, bollard::errors::Error>>,
    out: &mut O,
    err: &mut E,
    what: &str,
) -> bool
where
    O: AsyncWrite + Unpin + ?Sized,
    E: AsyncWrite + Unpin + ?Sized,
{
    match item {
        None => false,
        Some(Ok(chunk)) => {
            if let Err(e) = write_chunk(chunk, out, err).await {
                tracing::debug!(error = %e, "writing step output failed");
            }
            true
        }
        Some(Err(e)) => {
            tracing::debug!(error = %e, "{what} ended with an error");
            false
        }
    }
}

/// Runs `cmd` in `container`, capturing its output; returns the exit code (if the daemon reported
/// one) and stdout+stderr. Gives up after `limit`.
pub async fn capture(
    docker: &Docker,
    container: &str,
    cmd: Vec<String>,
    limit: Duration,
) -> Result<(Option<i64>, String), HookError> {
    let work = async {
        let exec = docker
            .create_exec(
                container,
                ExecConfig {
                    attach_stdout: Some(true),
                    attach_stderr: Some(true),
                    cmd: Some(cmd),
                    ..Default::default()
                },
            )
            .await
            .map_err(docker_err("creating an exec"))?;
        let started = docker
            .start_exec(&exec.id, Some(StartExecOptions::default()))
            .await
            .map_err(docker_err("starting an exec"))?;
        let mut text = Vec::new();
        if let StartExecResults::Attached { mut output, .. } = started {
            while let Some(Ok(chunk)) = output.next().await {
                text.extend_from_slice(&chunk.into_bytes());
            }
        }
        let code = exit_code(docker, &exec.id).await;
        Ok((code, String::from_utf8_lossy(&text).into_owned()))
    };
    tokio::time::timeout(limit, work)
        .await
        .unwrap_or_else(|_| Ok((None, String::new())))
}

/// The exit code of a finished exec (waits briefly for the daemon to record it).
pub async fn exit_code(docker: &Docker, exec_id: &str) -> Option<i64> {
    for _ in 0..50 {
        match docker.inspect_exec(exec_id).await {
            Ok(i) if i.running != Some(true) && i.exit_code.is_some() => return i.exit_code,
            Ok(_) => tokio::time::sleep(Duration::from_millis(20)).await,
            Err(e) => {
                tracing::debug!(error = %e, "inspecting an exec failed");
                return None;
            }
        }
    }
    None
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::output::Capture;

    #[tokio::test]
    async fn chunks_go_to_their_stream_in_order() {
        let (mut out, mut err) = (Capture::new(), Capture::new());
        for chunk in [
            LogOutput::StdOut { message: "a".into() },
            LogOutput::StdErr { message: "b".into() },
            LogOutput::Console { message: "c".into() },
            LogOutput::StdIn { message: "x".into() },
        ] {
            write_chunk(chunk, &mut out, &mut err).await.unwrap();
        }
        assert_eq!((out.text(), err.text()), ("ac".into(), "b".into()));
    }

    /// The wrapper and the kill helper with a local sh: the pidfile names the step's process, and
    /// the whole tree dies.
    #[test]
    fn wrapper_and_kill_tree_with_a_local_shell() {
        use std::os::unix::process::ExitStatusExt;
        let dir = tempfile::tempdir().unwrap();
        let pidfile = dir.path().join("pid");
        let childfile = dir.path().join("child");
        let script = format!("sleep 60 & echo $! > {}; sleep 60; exit 0", childfile.display());
        let mut step = std::process::Command::new("sh")
            .args(["-c", WRAPPER, pidfile.to_str().unwrap(), "sh", "-c", &script])
            .spawn()
            .unwrap();
        let read = |p: &std::path::Path| std::fs::read_to_string(p).unwrap_or_default().trim().to_owned();
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while read(&pidfile).is_empty() || read(&childfile).is_empty() {
            assert!(std::time::Instant::now() < deadline, "no pidfile");
            std::thread::sleep(Duration::from_millis(20));
        }
        let pid: u32 = read(&pidfile).parse().unwrap();
        assert_eq!(pid, step.id());
        let child = read(&childfile);
        let status = std::process::Command::new("sh")
            .args(["-c", KILL_TREE, pidfile.to_str().unwrap(), "KILL"])
            .status()
            .unwrap();
        assert!(status.success());
        assert_eq!(step.wait().unwrap().signal(), Some(9));
        assert!(!pidfile.exists());
        // The background child is gone too (or a zombie waiting for its new parent).
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        loop {
            let stat = std::fs::read_to_string(format!("/proc/{child}/stat")).unwrap_or_default();
            let state = stat.rsplit(") ").next().and_then(|r| r.split(' ').next()).unwrap_or("");
            if stat.is_empty() || state == "Z" {
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "child {child} still running: {stat}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}
