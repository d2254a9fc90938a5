//! Cancellation: the runner cancels a job by sending SIGINT to the hook, then SIGTERM 7.5 s later,
//! then killing the process tree 2.5 s after that (the shims forward both signals).
//!
//! [`Cancellation::install`] turns the first SIGINT/SIGTERM into a cancelled token (stop the step
//! promptly, clean up what this invocation started, exit with `128 + signal`) and the second into an
//! urgent one (stop waiting for anything). Installing the handlers also replaces the default
//! "die at once" disposition, so the hook always gets to finish its own clean-up.

use nix::sys::signal::Signal;
use std::sync::Arc;
use std::sync::atomic::{AtomicI32, Ordering};
use tokio_util::sync::CancellationToken;

/// A cancellation token wired to SIGINT/SIGTERM, cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct Cancellation {
    first: CancellationToken,
    urgent: CancellationToken,
    /// The first signal received (0: none).
    signal: Arc<AtomicI32>,
}

impl Cancellation {
    /// A token that is only cancelled through [`Cancellation::cancel`].
    pub fn new() -> Self {
        Self::default()
    }

    /// Installs SIGINT and SIGTERM handlers (must run inside a tokio runtime) and returns the token
    /// they cancel.
    pub fn install() -> std::io::Result<Self> {
        use tokio::signal::unix::{SignalKind, signal};
        let this = Self::new();
        let mut interrupt = signal(SignalKind::interrupt())?;
        let mut terminate = signal(SignalKind::terminate())?;
        let handle = this.clone();
        tokio::spawn(async move {
            loop {
                let received = tokio::select! {
                    Some(()) = interrupt.recv() => Signal::SIGINT,
                    Some(()) = terminate.recv() => Signal::SIGTERM,
                    else => break,
                };
                tracing::debug!(signal = received.as_str(), "signal received");
                handle.cancel(received as i32);
            }
        });
        Ok(this)
    }

    /// Records `signal`: the first call cancels, any later one makes the cancellation urgent.
    pub fn cancel(&self, signal: i32) {
        if self
            .signal
            .compare_exchange(0, signal, Ordering::SeqCst, Ordering::SeqCst)
            .is_ok()
        {
            self.first.cancel();
        } else {
            self.urgent.cancel();
        }
    }

    pub fn is_cancelled(&self) -> bool {
        self.first.is_cancelled()
    }

    /// The first signal received, if any.
    pub fn signal(&self) -> Option<i32> {
        match self.signal.load(Ordering::SeqCst) {
            0 => None,
            s => Some(s),
        }
    }

    /// Resolves when the hook is cancelled.
    pub async fn cancelled(&self) {
        self.first.cancelled().await;
    }

    /// Resolves when a second signal arrived: stop waiting for graceful ends.
    pub async fn urgent(&self) {
        self.urgent.cancelled().await;
    }

    /// The underlying token, for APIs that take a [`CancellationToken`].
    pub fn token(&self) -> &CancellationToken {
        &self.first
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn first_signal_cancels_second_is_urgent() {
        let c = Cancellation::new();
        assert!(!c.is_cancelled());
        assert_eq!(c.signal(), None);
        c.cancel(2);
        assert!(c.is_cancelled());
        assert_eq!(c.signal(), Some(2));
        assert!(!c.urgent.is_cancelled());
        c.cancelled().await;
        let clone = c.clone();
        clone.cancel(15);
        // The first signal is the one reported.
        assert_eq!(c.signal(), Some(2));
        c.urgent().await;
    }
}
