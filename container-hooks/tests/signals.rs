//! The real signal handlers: SIGINT and SIGTERM delivered to this process cancel the token and do
//! not kill the process (its own test binary, as handlers are process-wide).
#![allow(clippy::unwrap_used)]

use nix::sys::signal::{Signal, raise};
use rarc_hooks::signals::Cancellation;
use std::time::Duration;

#[tokio::test]
async fn sigint_cancels_and_sigterm_makes_it_urgent() {
    let cancel = Cancellation::install().unwrap();
    assert!(!cancel.is_cancelled());
    raise(Signal::SIGINT).unwrap();
    tokio::time::timeout(Duration::from_secs(5), cancel.cancelled())
        .await
        .unwrap();
    assert_eq!(cancel.signal(), Some(2));
    raise(Signal::SIGTERM).unwrap();
    tokio::time::timeout(Duration::from_secs(5), cancel.urgent())
        .await
        .unwrap();
    assert_eq!(cancel.signal(), Some(2));
}
