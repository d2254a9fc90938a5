//! Live step output: every line goes, in order, to the runner's own stdout and, in small batches, to
//! the service's `log` endpoint. `::error::`, `::warning::`, `::notice::` and `::debug::` workflow
//! commands are turned into the runner's `##[error]` … log form; the first three are also kept as
//! annotations.

use super::LogFormat;
use super::client::SimClient;
use crate::runner_api::{LogLine, LogLines};
use serde::Serialize;
use std::io::Write;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// Step index of the runner's own lines (set-up, hooks outside steps, clean-up).
pub const RUNNER_STEP: i64 = -1;
/// A batch is sent when it has this many lines …
const BATCH_LINES: usize = 100;
/// … or when its first line is this old.
const BATCH_AGE: Duration = Duration::from_millis(100);

/// An annotation raised by a workflow command (`::error::…`) in step or hook output.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Annotation {
    /// `error`, `warning` or `notice`.
    pub level: String,
    pub message: String,
    /// The step it belongs to; `-1` for the runner's own phases (prepare/cleanup hooks).
    pub step: i64,
}

/// Where lines go. Cheap to clone; dropping every clone ends the writer.
#[derive(Clone)]
pub(crate) struct LogSink {
    tx: mpsc::UnboundedSender<LogLine>,
}

impl LogSink {
    pub fn line(&self, step: i64, stream: &str, line: impl Into<String>) {
        // A closed channel only happens after the job is over; nothing to do then.
        let _ = self.tx.send(LogLine {
            step,
            stream: stream.to_owned(),
            line: line.into(),
        });
    }

    /// A runner-written line.
    pub fn info(&self, step: i64, line: impl Into<String>) {
        self.line(step, "stdout", line);
    }

    /// A runner-written `##[error]` line.
    pub fn error(&self, step: i64, message: impl std::fmt::Display) {
        self.line(step, "stdout", format!("##[error]{message}"));
    }
}

#[cfg(test)]
impl LogSink {
    /// A sink whose lines land in the returned receiver, untranslated.
    pub fn for_test() -> (LogSink, mpsc::UnboundedReceiver<LogLine>) {
        let (tx, rx) = mpsc::unbounded_channel();
        (LogSink { tx }, rx)
    }
}

/// Owns the receiving end: echoes, translates, batches and uploads.
pub(crate) struct LogWriter {
    handle: JoinHandle<Vec<Annotation>>,
}

impl LogWriter {
    pub fn start(client: Arc<SimClient>, request_id: i64, format: LogFormat, echo: bool) -> (LogSink, LogWriter) {
        let (tx, rx) = mpsc::unbounded_channel();
        let handle = tokio::spawn(write_loop(rx, client, request_id, format, echo));
        (LogSink { tx }, LogWriter { handle })
    }

    /// Waits until every line sent before the last [`LogSink`] was dropped is uploaded.
    pub async fn finish(self) -> Vec<Annotation> {
        self.handle.await.unwrap_or_default()
    }
}

async fn write_loop(
    mut rx: mpsc::UnboundedReceiver<LogLine>,
    client: Arc<SimClient>,
    request_id: i64,
    format: LogFormat,
    echo: bool,
) -> Vec<Annotation> {
    let mut annotations = Vec::new();
    let mut batch: Vec<LogLine> = Vec::new();
    let mut deadline = tokio::time::Instant::now();
    loop {
        tokio::select! {
            msg = rx.recv() => {
                let Some(mut line) = msg else { break };
                if let Some((level, text)) = workflow_command(&line.line) {
                    if level != "debug" {
                        annotations.push(Annotation { level: level.to_owned(), message: text.clone(), step: line.step });
                    }
                    line.line = format!("##[{level}]{text}");
                }
                if echo {
                    print_line(&line, format);
                }
                if batch.is_empty() {
                    deadline = tokio::time::Instant::now() + BATCH_AGE;
                }
                batch.push(line);
                if batch.len() >= BATCH_LINES {
                    upload(&client, request_id, &mut batch).await;
                }
            }
            () = tokio::time::sleep_until(deadline), if !batch.is_empty() => {
                upload(&client, request_id, &mut batch).await;
            }
        }
    }
    if !batch.is_empty() {
        upload(&client, request_id, &mut batch).await;
    }
    annotations
}

async fn upload(client: &SimClient, request_id: i64, batch: &mut Vec<LogLine>) {
    let lines = LogLines {
        lines: std::mem::take(batch),
    };
    if let Err(e) = client.post_log(request_id, &lines).await {
        tracing::warn!(request_id, lines = lines.lines.len(), error = %e, "dropping log lines the service did not take");
    }
}

fn print_line(line: &LogLine, format: LogFormat) {
    let text = match format {
        LogFormat::Json => serde_json::to_string(line).unwrap_or_default(),
        LogFormat::Text => {
            let who = if line.step == RUNNER_STEP {
                "runner".to_owned()
            } else {
                format!("step {}", line.step)
            };
            let err = if line.stream == "stderr" { " err" } else { "" };
            format!("[{who}{err}] {}", line.line)
        }
    };
    let mut out = std::io::stdout().lock();
    // The log endpoint is the record; a closed stdout must not stop the job.
    let _ = writeln!(out, "{text}");
    let _ = out.flush();
}

/// Parses `::error::msg`, `::warning file=a,line=1::msg`, `::notice::msg`, `::debug::msg` and
/// decodes the message (`%25` `%0D` `%0A`). Other workflow commands are left alone.
pub(crate) fn workflow_command(line: &str) -> Option<(&'static str, String)> {
    let rest = line.trim_start().strip_prefix("::")?;
    let (head, message) = rest.split_once("::")?;
    let name = head.split_once(' ').map_or(head, |(n, _)| n);
    let level = match name {
        "error" => "error",
        "warning" => "warning",
        "notice" => "notice",
        "debug" => "debug",
        _ => return None,
    };
    let text = message.replace("%0D", "\r").replace("%0A", "\n").replace("%25", "%");
    Some((level, text))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn workflow_commands() {
        for (line, want) in [
            ("::error::boom", Some(("error", "boom"))),
            (
                "::error file=a.rs,line=3::Error: failed%0Aagain 100%25",
                Some(("error", "Error: failed\nagain 100%")),
            ),
            ("::warning::careful", Some(("warning", "careful"))),
            ("::notice::fyi", Some(("notice", "fyi"))),
            ("::debug::noise", Some(("debug", "noise"))),
            ("::set-output name=x::1", None),
            ("::errorless", None),
            ("plain line", None),
        ] {
            let got = workflow_command(line);
            assert_eq!(got.as_ref().map(|(l, t)| (*l, t.as_str())), want, "{line}");
        }
    }
}
