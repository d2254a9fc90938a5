//! Helpers shared by the listener's integration tests (rarc-sim in-process).
#![allow(dead_code, clippy::unwrap_used)]

use rarc_actions::types::{Label, RunnerScaleSet, RunnerSetting};
use rarc_actions::{ActionsClient, ClientConfig, Credentials, ProxyEnv, RetryPolicy, Secret};
use rarc_sim::auth::DEFAULT_PAT;
use rarc_sim::calllog::CallRecord;
use rarc_sim::config::SimSettings;
use rarc_sim::faults::FaultRule;
use rarc_sim::{SimOptions, SimServer};
use std::time::{Duration, Instant};

/// §5.1 scaled down 100×.
pub fn fast_retry() -> RetryPolicy {
    RetryPolicy {
        max_retries: 4,
        wait_min: Duration::from_millis(10),
        wait_max: Duration::from_millis(300),
    }
}

pub async fn sim_with(settings: SimSettings) -> SimServer {
    SimServer::start(SimOptions {
        settings,
        ..SimOptions::default()
    })
    .await
    .expect("start rarc-sim")
}

/// A simulator with a 200 ms long poll.
pub async fn sim() -> SimServer {
    sim_with(SimSettings {
        long_poll_ms: 200,
        ..SimSettings::default()
    })
    .await
}

pub fn pat_client(s: &SimServer) -> ActionsClient {
    let mut cfg = ClientConfig::new(s.config_url("my-org"), Credentials::Pat(Secret::new(DEFAULT_PAT)));
    cfg.retry = fast_retry();
    cfg.proxy = ProxyEnv::default();
    cfg.http_timeout = Duration::from_secs(10);
    ActionsClient::new(cfg).expect("client")
}

/// Creates a scale set whose only label is `name`; returns its id.
pub async fn create_set(client: &ActionsClient, name: &str) -> i64 {
    client
        .create_runner_scale_set(&RunnerScaleSet {
            name: name.into(),
            runner_group_id: 1,
            labels: vec![Label::system(name)],
            runner_setting: RunnerSetting {
                disable_update: Some(true),
                ..Default::default()
            },
            ..Default::default()
        })
        .await
        .expect("create scale set")
        .id
}

pub fn fault(s: &SimServer, json: &str) {
    let rule: FaultRule = serde_json::from_str(json).expect("fault JSON");
    s.sim.add_fault(rule).expect("add fault");
}

pub fn calls_to(s: &SimServer, needle: &str) -> Vec<CallRecord> {
    s.sim.calls().into_iter().filter(|c| c.path.contains(needle)).collect()
}

pub fn queue(s: &SimServer, count: u32, label: &str) -> Vec<i64> {
    let req = rarc_sim::state::QueueJobs {
        count,
        labels: vec![label.into()],
        ..Default::default()
    };
    s.sim.with_state(|st| st.queue_jobs(&req)).expect("queue jobs")
}

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
