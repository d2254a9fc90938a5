//! Command line and environment (arc-controller.md §9): ARC's flag names and defaults, so the
//! `gha-runner-scale-set-controller` chart's Deployment runs us unchanged.

use std::time::Duration;

use clap::{Parser, ValueEnum};

/// Log output format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// `rarc-controller`: reconciles AutoscalingRunnerSets, EphemeralRunnerSets, EphemeralRunners
/// and AutoscalingListeners (`actions.github.com/v1alpha1`) like ARC's controller in
/// `--auto-scaling-runner-set-only` mode.
///
/// Exit codes: 0 after SIGTERM/SIGINT (graceful), 1 on a fatal error (bad flags or environment,
/// no API server, lost leadership), 2 on a command-line usage error.
#[derive(Parser, Debug, Clone)]
#[command(name = "rarc-controller", version)]
pub struct Settings {
    /// Accepted for compatibility with ARC's chart; rarc only has this mode.
    #[arg(long, default_value_t = false)]
    pub auto_scaling_runner_set_only: bool,

    /// Metrics (`/metrics`) bind address; `0` disables the server and the gha_controller_* gauges.
    #[arg(long, default_value = ":8080")]
    pub metrics_addr: String,

    /// Written into each listener's config.json; `0` disables listener metrics.
    #[arg(long, default_value = ":8080")]
    pub listener_metrics_addr: String,

    /// Written into each listener's config.json.
    #[arg(long, default_value = "/metrics")]
    pub listener_metrics_endpoint: String,

    /// `/healthz` and `/readyz` bind address (off when empty).
    #[arg(long, default_value = "")]
    pub health_probe_bind_address: String,

    /// Accepted for compatibility; rarc serves no pprof.
    #[arg(long, default_value = "")]
    pub pprof_addr: String,

    /// Only the holder of the Lease reconciles.
    #[arg(long, default_value_t = false)]
    pub enable_leader_election: bool,

    /// The Lease's name (in the controller namespace).
    #[arg(long, default_value = "actions-runner-controller")]
    pub leader_election_id: String,

    /// debug, info, warn or error; also the listeners' level.
    #[arg(long, default_value = "debug")]
    pub log_level: String,

    /// text or json; also the listeners' format.
    #[arg(long, value_enum, default_value = "text")]
    pub log_format: LogFormat,

    /// Only this namespace's scale sets (plus listener objects in the controller namespace).
    #[arg(long, default_value = "")]
    pub watch_single_namespace: String,

    /// Legacy: treated like --watch-single-namespace.
    #[arg(long, default_value = "")]
    pub watch_namespace: String,

    /// EphemeralRunner workers.
    #[arg(long, default_value_t = 2)]
    pub runner_max_concurrent_reconciles: u16,

    /// Label key prefixes not copied onto child objects (repeatable).
    #[arg(long = "exclude-label-propagation-prefix")]
    pub exclude_label_propagation_prefixes: Vec<String>,

    /// imagePullSecrets of listener pods (repeatable).
    #[arg(long = "auto-scaler-image-pull-secrets")]
    pub auto_scaler_image_pull_secrets: Vec<String>,

    /// Kubernetes client throttle (accepted; the client is not throttled client-side).
    #[arg(long, default_value_t = 20.0)]
    pub k8s_client_rate_limiter_qps: f64,

    /// Kubernetes client burst (accepted).
    #[arg(long, default_value_t = 30)]
    pub k8s_client_rate_limiter_burst: u32,

    /// Accepted for compatibility: `""`, `bucket_rate_limiter` or `typed_rate_limiter`.
    #[arg(long, default_value = "", value_parser = ["", "bucket_rate_limiter", "typed_rate_limiter"])]
    pub workqueue_rate_limiter: String,

    /// Accepted for compatibility (resyncs never trigger reconciles).
    #[arg(long, default_value = "1m")]
    pub sync_period: String,

    /// Accepted for compatibility; rarc always updates the runner set in place (docs/compat.md).
    #[arg(long, default_value = "immediate")]
    pub update_strategy: String,

    /// Accepted for compatibility (no webhooks).
    #[arg(long, default_value_t = 9443)]
    pub port: u16,

    /// The controller's namespace: AutoscalingListeners and listener pods live here.
    #[arg(long, env = "CONTROLLER_MANAGER_POD_NAMESPACE")]
    pub controller_namespace: String,

    /// The listener pods' image.
    #[arg(long, env = "CONTROLLER_MANAGER_CONTAINER_IMAGE")]
    pub listener_image: String,

    /// The listener pods' command (ARC's image: `/ghalistener`).
    #[arg(long, env = "LISTENER_ENTRYPOINT", default_value = "/rarc-listener")]
    pub listener_entrypoint: String,

    /// rarc: deadline of each GitHub/Actions call, in seconds (ARC has none).
    #[arg(long, env = "RARC_GITHUB_CALL_TIMEOUT_SECS", default_value_t = 30)]
    pub github_call_timeout_secs: u64,

    /// rarc: a runner pod still Pending after this many seconds is replaced (0 = never, as ARC).
    #[arg(long, env = "RARC_PENDING_POD_TIMEOUT_SECS", default_value_t = 900)]
    pub pending_pod_timeout_secs: u64,

    /// rarc: a Failed EphemeralRunner (invalid pod) is deleted after this many seconds, freeing its
    /// capacity (0 = keep it, as ARC).
    #[arg(long, env = "RARC_FAILED_RUNNER_TTL_SECS", default_value_t = 600)]
    pub failed_runner_ttl_secs: u64,

    /// rarc: what happens to an AutoscalingRunnerSet whose version label does not match the
    /// controller's: `refuse` (status condition, nothing reconciled) or `delete` (ARC).
    #[arg(long, env = "RARC_VERSION_MISMATCH_POLICY", default_value = "refuse", value_parser = ["refuse", "delete", "ignore"])]
    pub version_mismatch_policy: String,
}

impl Settings {
    /// The namespace to watch, if restricted.
    pub fn single_namespace(&self) -> Option<&str> {
        [&self.watch_single_namespace, &self.watch_namespace]
            .into_iter()
            .map(String::as_str)
            .find(|s| !s.is_empty())
    }

    /// The per-call deadline for GitHub.
    pub fn github_call_timeout(&self) -> Duration {
        Duration::from_secs(self.github_call_timeout_secs.max(1))
    }

    /// `--metrics-addr` as a socket address, `None` when `0` or empty.
    pub fn metrics_bind(&self) -> Option<String> {
        bind_addr(&self.metrics_addr)
    }

    /// `--health-probe-bind-address`, `None` when empty or `0`.
    pub fn health_bind(&self) -> Option<String> {
        bind_addr(&self.health_probe_bind_address)
    }

    /// The listener log level written into config.json: the controller's if valid, else `debug`.
    pub fn listener_log_level(&self) -> &str {
        match self.log_level.as_str() {
            l @ ("debug" | "info" | "warn" | "error") => l,
            _ => "debug",
        }
    }

    /// The listener log format written into config.json.
    pub fn listener_log_format(&self) -> &str {
        match self.log_format {
            LogFormat::Text => "text",
            LogFormat::Json => "json",
        }
    }

    /// Settings for tests: ARC's defaults, metrics and health off.
    pub fn for_tests(controller_namespace: &str, listener_image: &str) -> Self {
        Self::parse_from([
            "rarc-controller",
            "--metrics-addr=0",
            "--controller-namespace",
            controller_namespace,
            "--listener-image",
            listener_image,
        ])
    }
}

/// Go's `:8080` form (all interfaces) or `host:port`; `0` or empty means off.
pub fn bind_addr(addr: &str) -> Option<String> {
    match addr.trim() {
        "" | "0" => None,
        a if a.starts_with(':') => Some(format!("0.0.0.0{a}")),
        a => Some(a.to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arc_chart_arguments_parse() {
        let s = Settings::try_parse_from([
            "rarc-controller",
            "--auto-scaling-runner-set-only",
            "--log-level=info",
            "--log-format=json",
            "--exclude-label-propagation-prefix=argocd.argoproj.io/",
            "--exclude-label-propagation-prefix=x/",
            "--auto-scaler-image-pull-secrets=pull",
            "--listener-metrics-addr=0",
            "--listener-metrics-endpoint=",
            "--metrics-addr=0",
            "--runner-max-concurrent-reconciles=4",
            "--update-strategy=eventual",
            "--controller-namespace=arc-systems",
            "--listener-image=img",
        ])
        .expect("parses");
        assert_eq!(s.exclude_label_propagation_prefixes, ["argocd.argoproj.io/", "x/"]);
        assert_eq!(s.metrics_bind(), None);
        assert_eq!(s.runner_max_concurrent_reconciles, 4);
        assert_eq!(s.listener_log_format(), "json");
    }

    #[test]
    fn bind_addresses() {
        assert_eq!(bind_addr(":8080").as_deref(), Some("0.0.0.0:8080"));
        assert_eq!(bind_addr("127.0.0.1:9"), Some("127.0.0.1:9".into()));
        assert_eq!(bind_addr("0"), None);
    }

    #[test]
    fn unknown_rate_limiter_is_refused() {
        let err = Settings::try_parse_from([
            "rarc-controller",
            "--workqueue-rate-limiter=x",
            "--controller-namespace=a",
            "--listener-image=b",
        ])
        .expect_err("refused");
        assert!(err.to_string().contains("workqueue-rate-limiter"), "{err}");
    }
}
