//! Reading the request from stdin. The runner writes one line of JSON and closes stdin; the whole
//! of stdin is read (so pretty-printed JSON works too), with a time limit so that a stdin that is
//! never closed cannot hang the hook, and cancellation so that a cancelled job does not either.

use crate::error::HookError;
use crate::signals::Cancellation;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt};

/// The default for `--stdin-timeout`.
pub const DEFAULT_STDIN_TIMEOUT: Duration = Duration::from_secs(60);

/// Reads `reader` to its end.
pub async fn read_all<R: AsyncRead + Unpin>(
    mut reader: R,
    timeout: Duration,
    cancel: &Cancellation,
) -> Result<Vec<u8>, HookError> {
    let mut bytes = Vec::new();
    tokio::select! {
        read = tokio::time::timeout(timeout, reader.read_to_end(&mut bytes)) => match read {
            Ok(Ok(_)) => Ok(bytes),
            Ok(Err(e)) => Err(HookError::StdinRead(e)),
            Err(_) => Err(HookError::StdinTimeout(timeout)),
        },
        () = cancel.cancelled() => Err(HookError::Cancelled(cancel.signal().unwrap_or(2))),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;

    #[tokio::test]
    async fn reads_to_the_end() {
        let got = read_all(&b"{\"a\":1}\n"[..], DEFAULT_STDIN_TIMEOUT, &Cancellation::new())
            .await
            .unwrap();
        assert_eq!(got, b"{\"a\":1}\n");
    }

    #[tokio::test]
    async fn a_stdin_that_is_never_closed_times_out() {
        let (mut w, r) = tokio::io::duplex(64);
        w.write_all(b"{\"command\":").await.unwrap();
        let err = read_all(r, Duration::from_millis(100), &Cancellation::new())
            .await
            .unwrap_err();
        assert!(matches!(err, HookError::StdinTimeout(_)), "{err}");
        drop(w);
    }

    #[tokio::test]
    async fn cancellation_stops_the_read() {
        let (_w, r) = tokio::io::duplex(64);
        let cancel = Cancellation::new();
        let c = cancel.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(50)).await;
            c.cancel(15);
        });
        let err = read_all(r, DEFAULT_STDIN_TIMEOUT, &cancel).await.unwrap_err();
        assert!(matches!(err, HookError::Cancelled(15)), "{err}");
        assert_eq!(err.exit_code(), 143);
    }
}
