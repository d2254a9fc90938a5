//! One Docker test's world: rarc-sim in-process, an Actions client, and a label value that marks
//! every container and volume of the test. Dropping it force-removes them (also on a panic).

use rarc_actions::ActionsClient;
use rarc_listener::backend::docker::DockerBackendConfig;
use rarc_sim::config::SimSettings;
use rarc_sim::state::JobView;
use rarc_sim::{SimServer, testing};
use std::collections::BTreeMap;
use std::time::Duration;

use super::docker::{docker_host, runner_image, sweep, sweep_all};
use super::drive::eventually;

pub struct World {
    pub server: SimServer,
    pub client: ActionsClient,
    /// This test's value of the label `key`.
    pub run: String,
    key: &'static str,
}

impl Drop for World {
    fn drop(&mut self) {
        sweep(self.key, &self.run);
    }
}

impl World {
    /// A simulator with a 300 ms long poll. Tests of a binary run one at a time (the caller holds
    /// its lock), so whatever an earlier, crashed run left under `key` goes first.
    pub async fn new(key: &'static str) -> Self {
        docker_host();
        runner_image();
        sweep_all(key);
        let server = testing::sim_with(SimSettings {
            long_poll_ms: 300,
            ..SimSettings::default()
        })
        .await;
        let client = testing::pat_client(&server);
        Self {
            server,
            client,
            run: uuid::Uuid::new_v4().to_string(),
            key,
        }
    }

    pub async fn scale_set(&self, name: &str) -> i64 {
        testing::create_set(&self.client, name).await
    }

    /// A backend config for scale set `id`: the test runner image, the test daemon, host
    /// networking (runners reach the in-process simulator on 127.0.0.1) and this test's label.
    pub fn base_config(&self, id: i64, name: &str) -> DockerBackendConfig {
        DockerBackendConfig {
            scale_set_id: id,
            scale_set_name: name.into(),
            runner_image: runner_image().to_owned(),
            docker_host: Some(docker_host().to_owned()),
            network_mode: Some("host".into()),
            extra_labels: BTreeMap::from([(self.key.to_owned(), self.run.clone())]),
            ..Default::default()
        }
    }

    /// Runners the simulator has registered in scale set `set`.
    pub fn registered_runners(&self, set: i64) -> usize {
        self.runners_where(|r| r.scale_set_id == set)
    }

    /// Of those, the ones online.
    pub fn online_runners(&self, set: i64) -> usize {
        self.runners_where(|r| r.scale_set_id == set && r.online)
    }

    fn runners_where(&self, keep: impl Fn(&rarc_sim::state::RunnerView) -> bool) -> usize {
        self.server
            .sim
            .with_state(|s| s.runners())
            .iter()
            .filter(|r| keep(r))
            .count()
    }

    /// Waits until job `job` has a result; returns its view and its log lines.
    pub async fn finished_job(&self, job: i64, timeout: Duration) -> (JobView, Vec<String>) {
        let sim = &self.server.sim;
        eventually("the job to complete", timeout, || async {
            sim.with_state(|s| s.job(job)).is_some_and(|j| j.result.is_some())
        })
        .await;
        let done = sim.with_state(|s| s.job(job)).expect("the job");
        let log = sim
            .with_state(|s| s.job_log(job))
            .unwrap_or_default()
            .into_iter()
            .map(|l| l.line)
            .collect();
        (done, log)
    }

    pub fn queue(&self, count: u32, label: &str, duration_ms: u64) -> Vec<i64> {
        testing::queue_steps(&self.server, count, label, duration_ms)
    }
}
