//! Helpers for tests that run a client against rarc-sim: a fast retry policy, a PAT client that
//! ignores the environment's proxies, scale sets, jobs, faults and call-log filters. Shared by the
//! test suites of every crate, so each does not grow its own copy.

use crate::auth::DEFAULT_PAT;
use crate::calllog::CallRecord;
use crate::config::SimSettings;
use crate::faults::FaultRule;
use crate::job::{JobSpec, StepSpec};
use crate::state::QueueJobs;
use crate::{SimOptions, SimServer};
use rarc_actions::types::{Label, RunnerScaleSet, RunnerSetting};
use rarc_actions::{ActionsClient, ClientConfig, Credentials, ProxyEnv, RetryPolicy, Secret};
use std::time::Duration;

/// The §5.1 retry policy scaled down 100× (10, 20, 40, 80 ms between 5 attempts).
pub fn fast_retry() -> RetryPolicy {
    RetryPolicy {
        max_retries: 4,
        wait_min: Duration::from_millis(10),
        wait_max: Duration::from_millis(300),
    }
}

/// Starts a simulator with these settings. Panics if it cannot (tests only).
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

/// A client config for `url` with the built-in PAT, [`fast_retry`], no proxy and a 10 s timeout.
pub fn pat_config(url: &str) -> ClientConfig {
    let mut cfg = ClientConfig::new(url, Credentials::Pat(Secret::new(DEFAULT_PAT)));
    cfg.retry = fast_retry();
    cfg.proxy = ProxyEnv::default();
    cfg.http_timeout = Duration::from_secs(10);
    cfg
}

/// A [`pat_config`] client for organization `my-org` of this simulator.
pub fn pat_client(s: &SimServer) -> ActionsClient {
    ActionsClient::new(pat_config(&s.config_url("my-org"))).expect("client")
}

/// The create-scale-set body ARC sends: the name as its only label, runner group 1, no updates.
pub fn scale_set_body(name: &str) -> RunnerScaleSet {
    RunnerScaleSet {
        name: name.into(),
        runner_group_id: 1,
        labels: vec![Label::system(name)],
        runner_setting: RunnerSetting {
            disable_update: Some(true),
            ..Default::default()
        },
        ..Default::default()
    }
}

/// Creates a scale set named `name` through the client; returns its id.
pub async fn create_set(client: &ActionsClient, name: &str) -> i64 {
    client
        .create_runner_scale_set(&scale_set_body(name))
        .await
        .expect("create scale set")
        .id
}

/// Adds a fault rule given as JSON (see [`FaultRule`]).
pub fn fault(s: &SimServer, json: &str) {
    let rule: FaultRule = serde_json::from_str(json).expect("fault JSON");
    s.sim.add_fault(rule).expect("add fault");
}

/// Calls whose path contains `needle`.
pub fn calls_to(s: &SimServer, needle: &str) -> Vec<CallRecord> {
    s.sim.calls().into_iter().filter(|c| c.path.contains(needle)).collect()
}

/// Queues `count` jobs with the single runs-on label `label`; returns their request ids.
pub fn queue(s: &SimServer, count: u32, label: &str) -> Vec<i64> {
    let req = QueueJobs {
        count,
        labels: vec![label.into()],
        ..Default::default()
    };
    s.sim.with_state(|st| st.queue_jobs(&req)).expect("queue jobs")
}

/// Queues `count` jobs with the runs-on label `label`, each `duration_ms` of work and one `run:`
/// step (`echo hello`, which the simulated runner's shell executes); returns their request ids.
pub fn queue_steps(s: &SimServer, count: u32, label: &str, duration_ms: u64) -> Vec<i64> {
    let req = QueueJobs {
        count,
        labels: vec![label.into()],
        duration_ms: Some(duration_ms),
        spec: JobSpec {
            steps: vec![StepSpec {
                name: "hello".into(),
                run: Some("echo hello".into()),
                ..Default::default()
            }],
            ..Default::default()
        },
        ..Default::default()
    };
    s.sim.with_state(|st| st.queue_jobs(&req)).expect("queue jobs")
}
