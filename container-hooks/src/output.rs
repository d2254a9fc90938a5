//! Step output: the hook's stdout and stderr are the runner's step log, read line by line as they
//! come. Whatever a step prints must reach them at once (no line or block buffering that could hold
//! a partial line back or delay a log past the step's end), in order, byte for byte.

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// The chunk size of [`pump`]: whatever one `read` returns (at most this much) is written and
/// flushed before the next read.
pub const CHUNK: usize = 64 * 1024;

/// Copies `from` to `to` until end of stream, flushing after every chunk, and returns the number of
/// bytes copied. Nothing is held back between reads, so a partial line (a prompt, a progress bar)
/// shows up as soon as the step writes it.
///
/// A failed write (the runner stopped reading) ends the copy with that error; a failed read is the
/// end of the stream (the process or exec connection is gone).
pub async fn pump<R, W>(mut from: R, mut to: W) -> std::io::Result<u64>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut buf = vec![0u8; CHUNK];
    let mut total = 0u64;
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => {
                tracing::debug!(error = %e, "output stream ended with an error");
                break;
            }
        };
        to.write_all(&buf[..n]).await?;
        to.flush().await?;
        total += n as u64;
    }
    to.flush().await?;
    Ok(total)
}

/// Where a step's two streams go.
pub struct Sinks {
    pub stdout: Box<dyn AsyncWrite + Send + Unpin>,
    pub stderr: Box<dyn AsyncWrite + Send + Unpin>,
}

impl Sinks {
    /// The hook's own stdout and stderr: the runner's log.
    pub fn inherit() -> Self {
        Self {
            stdout: Box::new(tokio::io::stdout()),
            stderr: Box::new(tokio::io::stderr()),
        }
    }
}

/// An in-memory sink that can be cloned and read back: for capturing a command's output (a
/// container id) and for tests.
#[derive(Debug, Clone, Default)]
pub struct Capture(Arc<Mutex<Vec<u8>>>);

impl Capture {
    pub fn new() -> Self {
        Self::default()
    }

    /// Everything written so far.
    pub fn bytes(&self) -> Vec<u8> {
        self.0.lock().map(|b| b.clone()).unwrap_or_default()
    }

    /// Everything written so far, as (lossy) UTF-8.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.bytes()).into_owned()
    }
}

impl AsyncWrite for Capture {
    fn poll_write(self: Pin<&mut Self>, _: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        match self.0.lock() {
            Ok(mut b) => {
                b.extend_from_slice(buf);
                Poll::Ready(Ok(buf.len()))
            }
            Err(_) => Poll::Ready(Err(std::io::Error::other("capture buffer poisoned"))),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn copies_every_byte_in_order() {
        let data: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
        let out = Capture::new();
        let n = pump(&data[..], out.clone()).await.unwrap();
        assert_eq!(n, data.len() as u64);
        assert_eq!(out.bytes(), data);
    }

    #[tokio::test]
    async fn a_partial_line_is_passed_on_before_the_stream_ends() {
        let (mut writer, reader) = tokio::io::duplex(1024);
        let out = Capture::new();
        let task = tokio::spawn(pump(reader, out.clone()));
        writer.write_all(b"Password: ").await.unwrap();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while out.text() != "Password: " {
            assert!(tokio::time::Instant::now() < deadline, "partial line held back");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        writer.write_all(b"ok\n").await.unwrap();
        drop(writer);
        assert_eq!(task.await.unwrap().unwrap(), 13);
        assert_eq!(out.text(), "Password: ok\n");
    }

    #[tokio::test]
    async fn a_child_process_stream() {
        let mut child = tokio::process::Command::new("sh")
            .args(["-c", "i=0; while [ $i -lt 500 ]; do echo line $i; i=$((i+1)); done"])
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let out = Capture::new();
        pump(child.stdout.take().unwrap(), out.clone()).await.unwrap();
        assert!(child.wait().await.unwrap().success());
        let want: String = (0..500).map(|i| format!("line {i}\n")).collect();
        assert_eq!(out.text(), want);
    }
}
