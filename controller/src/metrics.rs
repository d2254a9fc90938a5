//! Prometheus metrics: ARC's `gha_controller_*` gauges (arc-controller.md §6) and reconcile
//! counters, rendered in the text exposition format on `--metrics-addr` `/metrics`.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;

/// Gauge names.
pub const PENDING_EPHEMERAL_RUNNERS: &str = "gha_controller_pending_ephemeral_runners";
pub const RUNNING_EPHEMERAL_RUNNERS: &str = "gha_controller_running_ephemeral_runners";
pub const FAILED_EPHEMERAL_RUNNERS: &str = "gha_controller_failed_ephemeral_runners";
pub const RUNNING_LISTENERS: &str = "gha_controller_running_listeners";
/// Counters (rarc; controller-runtime's names).
pub const RECONCILE_TOTAL: &str = "controller_runtime_reconcile_total";
pub const RECONCILE_ERRORS_TOTAL: &str = "controller_runtime_reconcile_errors_total";

const HELP: &[(&str, &str, &str)] = &[
    (
        PENDING_EPHEMERAL_RUNNERS,
        "gauge",
        "Number of ephemeral runners in a pending state.",
    ),
    (
        RUNNING_EPHEMERAL_RUNNERS,
        "gauge",
        "Number of ephemeral runners in a running state.",
    ),
    (
        FAILED_EPHEMERAL_RUNNERS,
        "gauge",
        "Number of ephemeral runners in a failed state.",
    ),
    (RUNNING_LISTENERS, "gauge", "Number of listeners in a running state."),
    (
        RECONCILE_TOTAL,
        "counter",
        "Total number of reconciliations per controller.",
    ),
    (
        RECONCILE_ERRORS_TOTAL,
        "counter",
        "Total number of reconciliation errors per controller.",
    ),
];

/// Label pairs, in order.
pub type LabelSet = Vec<(&'static str, String)>;

/// All series, by metric name then rendered label set.
#[derive(Default)]
pub struct Metrics {
    series: Mutex<BTreeMap<&'static str, BTreeMap<String, f64>>>,
}

fn render_labels(labels: &LabelSet) -> String {
    let body: Vec<String> = labels
        .iter()
        .map(|(k, v)| {
            format!(
                "{k}=\"{}\"",
                v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
            )
        })
        .collect();
    body.join(",")
}

impl Metrics {
    /// Sets a gauge.
    pub fn set(&self, name: &'static str, labels: &LabelSet, value: f64) {
        self.series
            .lock()
            .expect("metrics")
            .entry(name)
            .or_default()
            .insert(render_labels(labels), value);
    }

    /// Adds to a counter.
    pub fn inc(&self, name: &'static str, labels: &LabelSet) {
        *self
            .series
            .lock()
            .expect("metrics")
            .entry(name)
            .or_default()
            .entry(render_labels(labels))
            .or_default() += 1.0;
    }

    /// Drops a series (a deleted scale set's gauges; ARC keeps them forever).
    pub fn remove(&self, name: &'static str, labels: &LabelSet) {
        if let Some(s) = self.series.lock().expect("metrics").get_mut(name) {
            s.remove(&render_labels(labels));
        }
    }

    /// The value of a series, if set.
    pub fn get(&self, name: &'static str, labels: &LabelSet) -> Option<f64> {
        self.series
            .lock()
            .expect("metrics")
            .get(name)
            .and_then(|s| s.get(&render_labels(labels)).copied())
    }

    /// The text exposition.
    pub fn render(&self) -> String {
        let series = self.series.lock().expect("metrics");
        let mut out = String::new();
        for (name, kind, help) in HELP {
            let Some(s) = series.get(name).filter(|s| !s.is_empty()) else {
                continue;
            };
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
            for (labels, value) in s {
                let _ = writeln!(out, "{name}{{{labels}}} {value}");
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_gauges_with_escaped_labels() {
        let m = Metrics::default();
        let labels: LabelSet = vec![("name", "set".into()), ("namespace", "a\"b".into())];
        m.set(PENDING_EPHEMERAL_RUNNERS, &labels, 3.0);
        m.inc(RECONCILE_TOTAL, &vec![("controller", "x".into())]);
        m.inc(RECONCILE_TOTAL, &vec![("controller", "x".into())]);
        let text = m.render();
        assert!(
            text.contains("gha_controller_pending_ephemeral_runners{name=\"set\",namespace=\"a\\\"b\"} 3"),
            "{text}"
        );
        assert!(
            text.contains("controller_runtime_reconcile_total{controller=\"x\"} 2"),
            "{text}"
        );
        m.remove(PENDING_EPHEMERAL_RUNNERS, &labels);
        assert!(!m.render().contains(PENDING_EPHEMERAL_RUNNERS));
    }
}
