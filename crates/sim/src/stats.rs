//! Figures over the jobs of a run, as `rarc-sim jobs stats` prints them: how many jobs there are and
//! in which state, how they ended, whether any ran twice, and the runner start latency (from
//! `queueTime` to `runnerAssignTime`, the moment a runner took the job and `JobStarted` was sent).

use crate::state::{JobState, JobView};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Nearest-rank percentile `p` (0–100) of `sorted` (ascending); `None` when it is empty.
pub fn percentile(sorted: &[f64], p: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = ((p.clamp(0.0, 100.0) / 100.0) * sorted.len() as f64).ceil() as usize;
    Some(sorted[rank.clamp(1, sorted.len()) - 1])
}

/// Distribution of a latency, in milliseconds (rounded to 0.1 ms).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Percentiles {
    pub min: f64,
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub max: f64,
}

impl Percentiles {
    /// The distribution of `samples` (any order); `None` when there are none.
    pub fn of(mut samples: Vec<f64>) -> Option<Self> {
        samples.retain(|s| s.is_finite());
        samples.sort_by(f64::total_cmp);
        let at = |p| percentile(&samples, p).map(round_tenth);
        Some(Self {
            min: at(0.0)?,
            p50: at(50.0)?,
            p90: at(90.0)?,
            p99: at(99.0)?,
            max: at(100.0)?,
        })
    }
}

fn round_tenth(ms: f64) -> f64 {
    (ms * 10.0).round() / 10.0
}

/// What `rarc-sim jobs stats` prints (JSON, camelCase).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct JobStats {
    /// Jobs queued so far.
    pub jobs: usize,
    /// Jobs per state (`queued`, `assigned`, `running`, `completed`, `lost`); absent states are 0.
    pub by_state: BTreeMap<String, usize>,
    /// Completed with result `succeeded`.
    pub succeeded: usize,
    /// Finished (completed or lost) with any other result.
    pub failed: usize,
    /// Handed to a runner at least once.
    pub started: usize,
    /// Handed to a runner more than once (a bug in whatever drives the runners).
    pub ran_more_than_once: usize,
    /// Every job finished, each exactly once, and every one succeeded.
    pub all_succeeded_once: bool,
    /// Queue time → a runner took the job, over the jobs a runner took; `null` before any was.
    pub start_latency_ms: Option<Percentiles>,
    /// Queue time → finish time, over the finished jobs.
    pub queue_to_finish_ms: Option<Percentiles>,
    /// First queue time → last finish time, once every job has finished.
    pub makespan_ms: Option<f64>,
}

fn ms(d: time::Duration) -> f64 {
    d.as_seconds_f64() * 1000.0
}

fn state_name(s: JobState) -> String {
    serde_json::to_value(s)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default()
}

impl JobStats {
    /// The figures of `jobs` (as `GET /_sim/jobs` lists them).
    pub fn of(jobs: &[JobView]) -> Self {
        let mut by_state: BTreeMap<String, usize> = [
            JobState::Queued,
            JobState::Assigned,
            JobState::Running,
            JobState::Completed,
            JobState::Lost,
        ]
        .into_iter()
        .map(|s| (state_name(s), 0))
        .collect();
        for j in jobs {
            *by_state.entry(state_name(j.state)).or_insert(0) += 1;
        }
        let finished = |j: &&JobView| matches!(j.state, JobState::Completed | JobState::Lost);
        let succeeded = jobs
            .iter()
            .filter(|j| j.state == JobState::Completed && j.result.as_deref() == Some("succeeded"))
            .count();
        let done = jobs.iter().filter(finished).count();
        let ran_more_than_once = jobs.iter().filter(|j| j.runs > 1).count();
        let start_latency_ms = Percentiles::of(
            jobs.iter()
                .filter_map(|j| j.runner_assign_time.map(|t| ms(t - j.queue_time)))
                .collect(),
        );
        let queue_to_finish_ms = Percentiles::of(
            jobs.iter()
                .filter(finished)
                .filter_map(|j| j.finish_time.map(|t| ms(t - j.queue_time)))
                .collect(),
        );
        let makespan_ms = if !jobs.is_empty() && done == jobs.len() {
            let first = jobs.iter().map(|j| j.queue_time).min();
            let last = jobs.iter().filter_map(|j| j.finish_time).max();
            first.zip(last).map(|(f, l)| round_tenth(ms(l - f)))
        } else {
            None
        };
        Self {
            jobs: jobs.len(),
            by_state,
            succeeded,
            failed: done - succeeded,
            started: jobs.iter().filter(|j| j.runs > 0).count(),
            ran_more_than_once,
            all_succeeded_once: !jobs.is_empty() && succeeded == jobs.len() && jobs.iter().all(|j| j.runs == 1),
            start_latency_ms,
            queue_to_finish_ms,
            makespan_ms,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::job::JobSpec;
    use time::OffsetDateTime;
    use time::macros::datetime;

    const T0: OffsetDateTime = datetime!(2025-01-01 00:00:00 UTC);

    fn job(id: i64, state: JobState, runs: u32, start_ms: Option<i64>, finish_ms: Option<i64>) -> JobView {
        JobView {
            runner_request_id: id,
            job_id: format!("job-{id}"),
            display_name: "build".into(),
            repository: "my-org/my-repo".into(),
            labels: vec!["x".into()],
            state,
            result: (state == JobState::Completed).then(|| "succeeded".into()),
            scale_set_id: Some(1),
            runner_id: None,
            runner_name: None,
            runs,
            reassignments: 0,
            queue_time: T0,
            runner_assign_time: start_ms.map(|m| T0 + time::Duration::milliseconds(m)),
            finish_time: finish_ms.map(|m| T0 + time::Duration::milliseconds(m)),
            spec: JobSpec::default(),
        }
    }

    #[test]
    fn percentiles_use_the_nearest_rank() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&v, 50.0), Some(50.0));
        assert_eq!(percentile(&v, 99.0), Some(99.0));
        assert_eq!(percentile(&v, 100.0), Some(100.0));
        assert_eq!(percentile(&v, 0.0), Some(1.0));
        assert_eq!(percentile(&[7.0], 99.0), Some(7.0));
        assert_eq!(percentile(&[], 50.0), None);
        let p = Percentiles::of(vec![3.0, 1.0, 2.0, f64::NAN]).unwrap();
        assert_eq!((p.min, p.p50, p.max), (1.0, 2.0, 3.0));
        assert!(Percentiles::of(Vec::new()).is_none());
    }

    #[test]
    fn stats_of_a_finished_run() {
        let jobs: Vec<JobView> = (1..=10)
            .map(|i| job(i, JobState::Completed, 1, Some(i * 100), Some(i * 100 + 1000)))
            .collect();
        let s = JobStats::of(&jobs);
        assert_eq!((s.jobs, s.succeeded, s.failed, s.started), (10, 10, 0, 10));
        assert_eq!(s.by_state["completed"], 10);
        assert_eq!(s.by_state["queued"], 0);
        assert!(s.all_succeeded_once);
        let lat = s.start_latency_ms.unwrap();
        assert_eq!((lat.min, lat.p50, lat.p99, lat.max), (100.0, 500.0, 1000.0, 1000.0));
        assert_eq!(s.makespan_ms, Some(2000.0));
        assert_eq!(s.queue_to_finish_ms.unwrap().p50, 1500.0);
    }

    #[test]
    fn stats_of_a_run_in_progress_or_gone_wrong() {
        let mut twice = job(3, JobState::Completed, 2, Some(50), Some(60));
        twice.result = Some("succeeded".into());
        let mut failed = job(4, JobState::Completed, 1, Some(10), Some(20));
        failed.result = Some("failed".into());
        let jobs = vec![
            job(1, JobState::Queued, 0, None, None),
            job(2, JobState::Running, 1, Some(25), None),
            twice,
            failed,
        ];
        let s = JobStats::of(&jobs);
        assert_eq!(
            (s.jobs, s.succeeded, s.failed, s.started, s.ran_more_than_once),
            (4, 1, 1, 3, 1)
        );
        assert!(!s.all_succeeded_once);
        assert_eq!(s.makespan_ms, None);
        assert_eq!(s.start_latency_ms.unwrap().p50, 25.0);
        let json = serde_json::to_value(&s).unwrap();
        assert_eq!(json["byState"]["running"], 1);
        assert_eq!(json["ranMoreThanOnce"], 1);
        assert!(json["makespanMs"].is_null());
        let empty = JobStats::of(&[]);
        assert!(!empty.all_succeeded_once && empty.start_latency_ms.is_none());
    }
}
