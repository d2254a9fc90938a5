//! The listener's Prometheus metrics (spec §10): exact names, help texts, label sets and buckets,
//! selected by the `metrics` config object, rendered in the Prometheus text format 0.0.4.
//!
//! A small hand-written registry: the label sets are chosen at run time from the config, and
//! only these twelve families exist (no process collectors), as in ARC's dedicated registry.

use crate::config::{Config, MetricSpec, MetricsConfig};
use rarc_actions::GitHubConfig;
use rarc_actions::config_url::Scope;
use rarc_actions::types::{JobCompleted, JobMessageBase, JobStarted, Statistics};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;

/// Labels of the scale-set metrics (S).
pub const SCALE_SET_LABELS: [&str; 5] = ["enterprise", "organization", "repository", "name", "namespace"];
/// Labels of the job metrics (J).
pub const JOB_LABELS: [&str; 5] = ["enterprise", "organization", "repository", "job_name", "event_name"];
/// J + `job_result`, for completed-job metrics.
pub const COMPLETED_JOB_LABELS: [&str; 6] = [
    "enterprise",
    "organization",
    "repository",
    "job_name",
    "event_name",
    "job_result",
];

/// Default histogram buckets (seconds).
pub const DEFAULT_BUCKETS: [f64; 45] = [
    0.01, 0.05, 0.1, 0.5, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0, 10.0, 12.0, 15.0, 18.0, 20.0, 25.0, 30.0, 40.0,
    50.0, 60.0, 70.0, 80.0, 90.0, 100.0, 110.0, 120.0, 150.0, 180.0, 210.0, 240.0, 300.0, 360.0, 420.0, 480.0, 540.0,
    600.0, 900.0, 1200.0, 1800.0, 2400.0, 3000.0, 3600.0,
];

pub const ASSIGNED_JOBS: &str = "gha_assigned_jobs";
pub const RUNNING_JOBS: &str = "gha_running_jobs";
pub const REGISTERED_RUNNERS: &str = "gha_registered_runners";
pub const BUSY_RUNNERS: &str = "gha_busy_runners";
pub const IDLE_RUNNERS: &str = "gha_idle_runners";
pub const MIN_RUNNERS: &str = "gha_min_runners";
pub const MAX_RUNNERS: &str = "gha_max_runners";
pub const DESIRED_RUNNERS: &str = "gha_desired_runners";
pub const STARTED_JOBS_TOTAL: &str = "gha_started_jobs_total";
pub const COMPLETED_JOBS_TOTAL: &str = "gha_completed_jobs_total";
pub const JOB_STARTUP_DURATION: &str = "gha_job_startup_duration_seconds";
pub const JOB_EXECUTION_DURATION: &str = "gha_job_execution_duration_seconds";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Counter,
    Gauge,
    Histogram,
}

impl Kind {
    fn as_str(self) -> &'static str {
        match self {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
            Kind::Histogram => "histogram",
        }
    }
}

/// One known metric of §10.
#[derive(Debug, Clone, Copy)]
pub struct Known {
    pub name: &'static str,
    pub help: &'static str,
    pub kind: Kind,
    pub default_labels: &'static [&'static str],
}

/// Every metric the listener knows, in exposition order.
pub const KNOWN: [Known; 12] = [
    Known {
        name: ASSIGNED_JOBS,
        help: "Number of jobs assigned to this scale set.",
        kind: Kind::Gauge,
        default_labels: &SCALE_SET_LABELS,
    },
    Known {
        name: RUNNING_JOBS,
        help: "Number of jobs running (or about to be run).",
        kind: Kind::Gauge,
        default_labels: &SCALE_SET_LABELS,
    },
    Known {
        name: REGISTERED_RUNNERS,
        help: "Number of runners registered by the scale set.",
        kind: Kind::Gauge,
        default_labels: &SCALE_SET_LABELS,
    },
    Known {
        name: BUSY_RUNNERS,
        help: "Number of registered runners running a job.",
        kind: Kind::Gauge,
        default_labels: &SCALE_SET_LABELS,
    },
    Known {
        name: IDLE_RUNNERS,
        help: "Number of registered runners not running a job.",
        kind: Kind::Gauge,
        default_labels: &SCALE_SET_LABELS,
    },
    Known {
        name: MIN_RUNNERS,
        help: "Minimum number of runners.",
        kind: Kind::Gauge,
        default_labels: &SCALE_SET_LABELS,
    },
    Known {
        name: MAX_RUNNERS,
        help: "Maximum number of runners.",
        kind: Kind::Gauge,
        default_labels: &SCALE_SET_LABELS,
    },
    Known {
        name: DESIRED_RUNNERS,
        help: "Number of runners desired by the scale set.",
        kind: Kind::Gauge,
        default_labels: &SCALE_SET_LABELS,
    },
    Known {
        name: STARTED_JOBS_TOTAL,
        help: "Total number of jobs started.",
        kind: Kind::Counter,
        default_labels: &JOB_LABELS,
    },
    Known {
        name: COMPLETED_JOBS_TOTAL,
        help: "Total number of jobs completed.",
        kind: Kind::Counter,
        default_labels: &COMPLETED_JOB_LABELS,
    },
    Known {
        name: JOB_STARTUP_DURATION,
        help: "Time spent waiting for workflow job to get started on the runner owned by the scale set (in seconds).",
        kind: Kind::Histogram,
        default_labels: &JOB_LABELS,
    },
    Known {
        name: JOB_EXECUTION_DURATION,
        help: "Time spent executing workflow jobs by the scale set (in seconds).",
        kind: Kind::Histogram,
        default_labels: &COMPLETED_JOB_LABELS,
    },
];

/// The scale-set label values, from the config (§10 "S").
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BaseLabels {
    pub enterprise: String,
    pub organization: String,
    pub repository: String,
    pub name: String,
    pub namespace: String,
}

impl BaseLabels {
    /// enterprise/organization/repository from `configure_url`; name/namespace of the ERS (the
    /// Docker backend has none: `name` is then the scale set name).
    pub fn from_config(config: &Config) -> Self {
        // The Docker backend has no EphemeralRunnerSet: the scale set's name tells sets apart.
        let name = if config.ephemeral_runner_set_name.is_empty() {
            config.runner_scale_set_name.clone()
        } else {
            config.ephemeral_runner_set_name.clone()
        };
        let mut labels = Self {
            name,
            namespace: config.ephemeral_runner_set_namespace.clone(),
            ..Self::default()
        };
        if let Ok(github) = GitHubConfig::parse(&config.configure_url) {
            match github.scope {
                Scope::Enterprise { enterprise } => labels.enterprise = enterprise,
                Scope::Organization { org } => labels.organization = org,
                Scope::Repository { owner, repo } => {
                    labels.organization = owner;
                    labels.repository = repo;
                }
            }
        }
        labels
    }
}

/// `job_workflow_name` and `job_workflow_target` of a `jobWorkflowRef` (§10): both empty unless
/// the ref has exactly one `@`.
pub fn parse_workflow_ref(workflow_ref: &str) -> (String, String) {
    let mut parts = workflow_ref.split('@');
    let (Some(path), Some(git_ref), None) = (parts.next(), parts.next(), parts.next()) else {
        return (String::new(), String::new());
    };
    let file = path.rsplit('/').next().unwrap_or_default();
    let name = file
        .strip_suffix(".yml")
        .or_else(|| file.strip_suffix(".yaml"))
        .unwrap_or(file)
        .to_owned();
    let target = if let Some(branch) = git_ref.strip_prefix("refs/heads/") {
        format!("heads/{branch}")
    } else if let Some(tag) = git_ref.strip_prefix("refs/tags/") {
        format!("tags/{tag}")
    } else if let Some(pull) = git_ref.strip_prefix("refs/pull/") {
        format!("pull/{}", pull.split('/').next().unwrap_or_default())
    } else {
        String::new()
    };
    (name, target)
}

#[derive(Debug, Clone)]
enum Series {
    Value(f64),
    Histogram { counts: Vec<u64>, sum: f64, count: u64 },
}

#[derive(Debug)]
struct Family {
    known: Known,
    labels: Vec<String>,
    buckets: Vec<f64>,
    series: BTreeMap<Vec<String>, Series>,
}

/// The listener's metrics. Recording into a metric that is not enabled does nothing.
#[derive(Debug)]
pub struct Metrics {
    base: BaseLabels,
    families: Mutex<Vec<Family>>,
}

enum Job<'a> {
    Started(&'a JobMessageBase),
    Completed(&'a JobMessageBase, &'a str),
}

impl Metrics {
    /// The metrics selected by `config` (§10): `None` ⇒ all with default labels; an empty object
    /// ⇒ none. Unknown metric names are logged and skipped.
    pub fn new(config: Option<&MetricsConfig>, base: BaseLabels) -> Self {
        let families = match config {
            None => KNOWN
                .iter()
                .map(|k| Family {
                    known: *k,
                    labels: k.default_labels.iter().map(|l| (*l).to_owned()).collect(),
                    buckets: DEFAULT_BUCKETS.to_vec(),
                    series: BTreeMap::new(),
                })
                .collect(),
            Some(cfg) => {
                let mut selected: Vec<Family> = Vec::new();
                for (kind, specs) in [
                    (Kind::Counter, &cfg.counters),
                    (Kind::Gauge, &cfg.gauges),
                    (Kind::Histogram, &cfg.histograms),
                ] {
                    for (name, spec) in specs {
                        match KNOWN.iter().find(|k| k.name == name && k.kind == kind) {
                            Some(k) => selected.push(family(k, spec)),
                            None => {
                                tracing::warn!(metric = %name, kind = kind.as_str(), "unknown metric in config; skipped")
                            }
                        }
                    }
                }
                selected.sort_by_key(|f| KNOWN.iter().position(|k| k.name == f.known.name));
                selected
            }
        };
        Self {
            base,
            families: Mutex::new(families),
        }
    }

    /// No metrics at all (metrics server disabled).
    pub fn disabled() -> Self {
        Self::new(Some(&MetricsConfig::default()), BaseLabels::default())
    }

    /// Names of the enabled metrics.
    pub fn enabled(&self) -> Vec<&'static str> {
        self.lock().iter().map(|f| f.known.name).collect()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Family>> {
        // A poisoned lock only means a panic elsewhere; the data is still usable.
        self.families.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Records the statistics gauges.
    pub fn set_statistics(&self, stats: &Statistics) {
        self.set_gauge(ASSIGNED_JOBS, stats.total_assigned_jobs);
        self.set_gauge(RUNNING_JOBS, stats.total_running_jobs);
        self.set_gauge(REGISTERED_RUNNERS, stats.total_registered_runners);
        self.set_gauge(BUSY_RUNNERS, stats.total_busy_runners);
        self.set_gauge(IDLE_RUNNERS, stats.total_idle_runners);
    }

    /// `gha_min_runners` / `gha_max_runners`, once at start.
    pub fn set_min_max(&self, min_runners: i64, max_runners: i64) {
        self.set_gauge(MIN_RUNNERS, min_runners);
        self.set_gauge(MAX_RUNNERS, max_runners);
    }

    /// `gha_desired_runners` (start and after each message; not on empty polls).
    pub fn set_desired(&self, target: i64) {
        self.set_gauge(DESIRED_RUNNERS, target);
    }

    /// +1 started; startup duration when both times are known.
    pub fn job_started(&self, job: &JobStarted) {
        let j = Job::Started(&job.base);
        self.update(STARTED_JOBS_TOTAL, &j, |s| add(s, 1.0));
        if let (Some(runner), Some(scale_set)) = (job.base.runner_assign_time, job.base.scale_set_assign_time) {
            let secs = (runner.unix_timestamp() - scale_set.unix_timestamp()) as f64;
            self.observe(JOB_STARTUP_DURATION, &j, secs);
        }
    }

    /// +1 completed and the execution duration; a job without `runnerAssignTime` is skipped
    /// entirely (0.14.2, #4472).
    pub fn job_completed(&self, job: &JobCompleted) {
        let Some(runner) = job.base.runner_assign_time else {
            return;
        };
        let j = Job::Completed(&job.base, &job.result);
        self.update(COMPLETED_JOBS_TOTAL, &j, |s| add(s, 1.0));
        if let Some(finish) = job.base.finish_time {
            let secs = (finish.unix_timestamp() - runner.unix_timestamp()) as f64;
            self.observe(JOB_EXECUTION_DURATION, &j, secs);
        }
    }

    fn set_gauge(&self, name: &str, value: i64) {
        let mut families = self.lock();
        if let Some(f) = families.iter_mut().find(|f| f.known.name == name) {
            let key = f.labels.iter().map(|l| self.label_value(l, None)).collect();
            f.series.insert(key, Series::Value(value as f64));
        }
    }

    fn update(&self, name: &str, job: &Job<'_>, apply: impl FnOnce(&mut Series)) {
        let mut families = self.lock();
        if let Some(f) = families.iter_mut().find(|f| f.known.name == name) {
            let key = f.labels.iter().map(|l| self.label_value(l, Some(job))).collect();
            apply(f.series.entry(key).or_insert(Series::Value(0.0)));
        }
    }

    fn observe(&self, name: &str, job: &Job<'_>, value: f64) {
        let mut families = self.lock();
        if let Some(f) = families.iter_mut().find(|f| f.known.name == name) {
            let key = f.labels.iter().map(|l| self.label_value(l, Some(job))).collect();
            let buckets = f.buckets.clone();
            let series = f.series.entry(key).or_insert_with(|| Series::Histogram {
                counts: vec![0; buckets.len()],
                sum: 0.0,
                count: 0,
            });
            if let Series::Histogram { counts, sum, count } = series {
                if let Some(i) = buckets.iter().position(|b| value <= *b) {
                    counts[i] += 1;
                }
                *sum += value;
                *count += 1;
            }
        }
    }

    /// The value of label `label`: job fields for job metrics, config values otherwise, empty for
    /// unknown labels.
    fn label_value(&self, label: &str, job: Option<&Job<'_>>) -> String {
        let (base, result) = match job {
            Some(Job::Started(b)) => (Some(*b), None),
            Some(Job::Completed(b, r)) => (Some(*b), Some(*r)),
            None => (None, None),
        };
        match (label, base) {
            ("enterprise", _) => self.base.enterprise.clone(),
            ("organization", Some(b)) => b.owner_name.clone(),
            ("organization", None) => self.base.organization.clone(),
            ("repository", Some(b)) => b.repository_name.clone(),
            ("repository", None) => self.base.repository.clone(),
            ("name", _) => self.base.name.clone(),
            ("namespace", _) => self.base.namespace.clone(),
            ("job_name", Some(b)) => b.job_display_name.clone(),
            ("event_name", Some(b)) => b.event_name.clone(),
            ("job_workflow_ref", Some(b)) => b.job_workflow_ref.clone(),
            ("job_workflow_name", Some(b)) => parse_workflow_ref(&b.job_workflow_ref).0,
            ("job_workflow_target", Some(b)) => parse_workflow_ref(&b.job_workflow_ref).1,
            ("job_result", _) => result.unwrap_or_default().to_owned(),
            _ => String::new(),
        }
    }

    /// The Prometheus text exposition (format 0.0.4). Families without samples are omitted.
    pub fn render(&self) -> String {
        render_all(&[self])
    }
}

/// The exposition of several scale sets' metrics on one endpoint (Docker backend, one process
/// serving several sets): each family's `HELP`/`TYPE` once, then the series of every set, told
/// apart by their `name` label.
pub fn render_all(sets: &[&Metrics]) -> String {
    let guards: Vec<_> = sets.iter().map(|m| m.lock()).collect();
    let mut names: Vec<&'static str> = Vec::new();
    for families in &guards {
        for f in families.iter() {
            if !names.contains(&f.known.name) {
                names.push(f.known.name);
            }
        }
    }
    let mut out = String::new();
    for name in names {
        let mut header = false;
        for f in guards
            .iter()
            .flat_map(|families| families.iter())
            .filter(|f| f.known.name == name && !f.series.is_empty())
        {
            if !header {
                let _ = writeln!(out, "# HELP {name} {}", escape_help(f.known.help));
                let _ = writeln!(out, "# TYPE {name} {}", f.known.kind.as_str());
                header = true;
            }
            render_family(&mut out, f);
        }
    }
    out
}

fn render_family(out: &mut String, f: &Family) {
    let name = f.known.name;
    for (values, series) in &f.series {
        let labels = render_labels(&f.labels, values, None);
        match series {
            Series::Value(v) => {
                let _ = writeln!(out, "{name}{labels} {}", fmt_f64(*v));
            }
            Series::Histogram { counts, sum, count } => {
                let mut cumulative = 0u64;
                for (bound, c) in f.buckets.iter().zip(counts) {
                    cumulative += c;
                    let l = render_labels(&f.labels, values, Some(&fmt_f64(*bound)));
                    let _ = writeln!(out, "{name}_bucket{l} {cumulative}");
                }
                let l = render_labels(&f.labels, values, Some("+Inf"));
                let _ = writeln!(out, "{name}_bucket{l} {count}");
                let _ = writeln!(out, "{name}_sum{labels} {}", fmt_f64(*sum));
                let _ = writeln!(out, "{name}_count{labels} {count}");
            }
        }
    }
}

fn family(known: &Known, spec: &MetricSpec) -> Family {
    Family {
        known: *known,
        labels: spec.labels.clone(),
        buckets: if spec.buckets.is_empty() {
            DEFAULT_BUCKETS.to_vec()
        } else {
            spec.buckets.clone()
        },
        series: BTreeMap::new(),
    }
}

fn add(series: &mut Series, by: f64) {
    if let Series::Value(v) = series {
        *v += by;
    }
}

fn render_labels(names: &[String], values: &[String], le: Option<&str>) -> String {
    let mut pairs: Vec<String> = names
        .iter()
        .zip(values)
        .map(|(n, v)| format!("{n}=\"{}\"", escape_label(v)))
        .collect();
    if let Some(le) = le {
        pairs.push(format!("le=\"{le}\""));
    }
    if pairs.is_empty() {
        String::new()
    } else {
        format!("{{{}}}", pairs.join(","))
    }
}

fn escape_label(v: &str) -> String {
    v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

fn escape_help(v: &str) -> String {
    v.replace('\\', "\\\\").replace('\n', "\\n")
}

fn fmt_f64(v: f64) -> String {
    if v.is_infinite() {
        if v > 0.0 { "+Inf".into() } else { "-Inf".into() }
    } else if v.is_nan() {
        "NaN".into()
    } else {
        format!("{v}")
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::config::MetricSpec;
    use time::macros::datetime;

    /// §15.12 item 71.
    #[test]
    fn workflow_ref_parsing() {
        let cases = [
            ("o/r/.github/workflows/ci.yml@refs/heads/main", "ci", "heads/main"),
            (
                "o/r/.github/workflows/ci.yaml@refs/heads/feature/x/y",
                "ci",
                "heads/feature/x/y",
            ),
            (
                "o/r/.github/workflows/release.yml@refs/tags/v1.2.3",
                "release",
                "tags/v1.2.3",
            ),
            ("o/r/.github/workflows/pr.yml@refs/pull/42/merge", "pr", "pull/42"),
            ("o/r/.github/workflows/x.yml@abcdef", "x", ""),
            ("o/r/.github/workflows/ci.yml", "", ""),
            ("o/r/.github/workflows/ci.yml@refs/heads/a@b", "", ""),
            ("", "", ""),
        ];
        for (input, name, target) in cases {
            assert_eq!(
                parse_workflow_ref(input),
                (name.to_owned(), target.to_owned()),
                "{input}"
            );
        }
    }

    fn base() -> BaseLabels {
        BaseLabels {
            organization: "my-org".into(),
            name: "set-abc".into(),
            namespace: "arc".into(),
            ..Default::default()
        }
    }

    fn started() -> JobStarted {
        JobStarted {
            base: JobMessageBase {
                owner_name: "octo".into(),
                repository_name: "repo".into(),
                job_display_name: "build \"x\"".into(),
                event_name: "push".into(),
                job_workflow_ref: "octo/repo/.github/workflows/ci.yml@refs/heads/main".into(),
                scale_set_assign_time: Some(datetime!(2024-01-01 0:00:00 UTC)),
                runner_assign_time: Some(datetime!(2024-01-01 0:00:07 UTC)),
                finish_time: Some(datetime!(2024-01-01 0:01:07 UTC)),
                ..Default::default()
            },
            runner_name: "r1".into(),
            ..Default::default()
        }
    }

    #[test]
    fn defaults_render_all_families() {
        let m = Metrics::new(None, base());
        m.set_statistics(&Statistics {
            total_assigned_jobs: 3,
            ..Default::default()
        });
        m.set_min_max(1, 10);
        m.set_desired(4);
        m.job_started(&started());
        let s = started();
        m.job_completed(&JobCompleted {
            base: s.base.clone(),
            result: "succeeded".into(),
            ..Default::default()
        });
        // Cancelled before reaching a runner: skipped entirely.
        m.job_completed(&JobCompleted {
            base: JobMessageBase {
                runner_assign_time: None,
                ..s.base.clone()
            },
            result: "canceled".into(),
            ..Default::default()
        });
        let text = m.render();
        for k in KNOWN {
            assert!(text.contains(&format!("# HELP {} {}\n", k.name, k.help)), "{}", k.name);
            assert!(text.contains(&format!("# TYPE {} {}\n", k.name, k.kind.as_str())));
        }
        assert!(text.contains(
            "gha_assigned_jobs{enterprise=\"\",organization=\"my-org\",repository=\"\",name=\"set-abc\",namespace=\"arc\"} 3\n"
        ));
        assert!(text.contains("gha_started_jobs_total{enterprise=\"\",organization=\"octo\",repository=\"repo\",job_name=\"build \\\"x\\\"\",event_name=\"push\"} 1\n"));
        assert!(text.contains("job_result=\"succeeded\"} 1\n"));
        assert!(!text.contains("canceled"));
        assert!(text.contains("gha_job_startup_duration_seconds_bucket{enterprise=\"\",organization=\"octo\",repository=\"repo\",job_name=\"build \\\"x\\\"\",event_name=\"push\",le=\"7\"} 1\n"));
        assert!(text.contains("gha_job_startup_duration_seconds_bucket{enterprise=\"\",organization=\"octo\",repository=\"repo\",job_name=\"build \\\"x\\\"\",event_name=\"push\",le=\"6\"} 0\n"));
        assert!(text.contains("gha_job_execution_duration_seconds_sum{enterprise=\"\",organization=\"octo\",repository=\"repo\",job_name=\"build \\\"x\\\"\",event_name=\"push\",job_result=\"succeeded\"} 60\n"));
    }

    #[test]
    fn several_sets_share_one_exposition() {
        let a = Metrics::new(None, base());
        let b = Metrics::new(
            None,
            BaseLabels {
                name: "gpu".into(),
                ..base()
            },
        );
        a.set_desired(2);
        b.set_desired(5);
        b.job_started(&started());
        let text = render_all(&[&a, &b]);
        assert_eq!(text.matches("# TYPE gha_desired_runners gauge\n").count(), 1, "{text}");
        assert!(text.contains("name=\"set-abc\",namespace=\"arc\"} 2\n"), "{text}");
        assert!(text.contains("name=\"gpu\",namespace=\"arc\"} 5\n"), "{text}");
        assert_eq!(text.matches("# HELP gha_started_jobs_total ").count(), 1);
        let a_line = text.find("name=\"set-abc\"").unwrap();
        let b_line = text.find("name=\"gpu\"").unwrap();
        assert!(a_line < b_line, "series follow their family header in set order");
        assert_eq!(render_all(&[&a]), a.render());
    }

    #[test]
    fn selection_labels_and_buckets() {
        let mut cfg = MetricsConfig::default();
        cfg.counters.insert(
            STARTED_JOBS_TOTAL.into(),
            MetricSpec {
                labels: vec![
                    "job_workflow_name".into(),
                    "job_workflow_target".into(),
                    "job_workflow_ref".into(),
                    "bogus".into(),
                ],
                buckets: vec![],
            },
        );
        cfg.counters.insert("gha_nope_total".into(), MetricSpec::default());
        // A gauge listed under counters is unknown there.
        cfg.counters.insert(DESIRED_RUNNERS.into(), MetricSpec::default());
        cfg.histograms.insert(
            JOB_STARTUP_DURATION.into(),
            MetricSpec {
                labels: vec![],
                buckets: vec![5.0, 10.0],
            },
        );
        let m = Metrics::new(Some(&cfg), base());
        assert_eq!(m.enabled(), [STARTED_JOBS_TOTAL, JOB_STARTUP_DURATION]);
        m.set_desired(3);
        m.job_started(&started());
        let text = m.render();
        assert!(text.contains("gha_started_jobs_total{job_workflow_name=\"ci\",job_workflow_target=\"heads/main\",job_workflow_ref=\"octo/repo/.github/workflows/ci.yml@refs/heads/main\",bogus=\"\"} 1\n"), "{text}");
        assert!(text.contains("gha_job_startup_duration_seconds_bucket{le=\"5\"} 0\n"));
        assert!(text.contains("gha_job_startup_duration_seconds_bucket{le=\"10\"} 1\n"));
        assert!(text.contains("gha_job_startup_duration_seconds_bucket{le=\"+Inf\"} 1\n"));
        assert!(!text.contains(DESIRED_RUNNERS));
        let none = Metrics::new(Some(&MetricsConfig::default()), base());
        none.set_desired(1);
        assert_eq!(none.render(), "");
    }
}
