//! Helpers shared by the listener's integration tests (rarc-sim in-process).
#![allow(dead_code, clippy::unwrap_used)]

use rarc_sim::SimServer;
use rarc_sim::calllog::CallRecord;
use std::time::{Duration, Instant};

pub use rarc_sim::testing::*;

/// Polls `check` every 20 ms until it is true; panics with `what` after `timeout`.
pub async fn wait_for(what: &str, timeout: Duration, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// GET message calls (either queue URL style).
pub fn polls(s: &SimServer) -> Vec<CallRecord> {
    s.sim
        .calls()
        .into_iter()
        .filter(|c| {
            c.method == "GET" && (c.path.contains("/broker/scalesets/message") || c.path.ends_with("/messages"))
        })
        .collect()
}
