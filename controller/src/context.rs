//! What every reconciler gets: the Kubernetes client, the settings, GitHub clients, metrics and
//! an event recorder.

use std::sync::Arc;

use kube::Client;
use kube::Resource;
use kube::runtime::events::{Event, EventType, Recorder, Reporter};

use crate::config::Settings;
use crate::github::GitHub;
use crate::metrics::Metrics;

/// Shared by all reconcilers.
pub struct Context {
    pub client: Client,
    pub settings: Arc<Settings>,
    pub github: GitHub,
    pub metrics: Metrics,
    recorder: Recorder,
}

impl Context {
    /// A context for `settings`.
    pub fn new(client: Client, settings: Settings) -> Self {
        let github = GitHub::new(settings.github_call_timeout());
        Self::with_github(client, settings, github)
    }

    /// A context with a given GitHub client cache (tests shorten its retries).
    pub fn with_github(client: Client, settings: Settings, github: GitHub) -> Self {
        let reporter = Reporter {
            controller: "rarc-controller".into(),
            instance: std::env::var("HOSTNAME").ok(),
        };
        Self {
            recorder: Recorder::new(client.clone(), reporter),
            client,
            settings: Arc::new(settings),
            github,
            metrics: Metrics::default(),
        }
    }

    /// The controller namespace (AutoscalingListeners, listener pods).
    pub fn controller_namespace(&self) -> &str {
        &self.settings.controller_namespace
    }

    /// The label prefixes not to propagate.
    pub fn excluded_prefixes(&self) -> &[String] {
        &self.settings.exclude_label_propagation_prefixes
    }

    /// Publishes a Kubernetes Event on `obj` (best effort: a failure is only logged).
    pub async fn event<K>(&self, obj: &K, warning: bool, reason: &str, action: &str, note: String)
    where
        K: Resource<DynamicType = ()>,
    {
        let event = Event {
            type_: if warning { EventType::Warning } else { EventType::Normal },
            reason: reason.into(),
            note: Some(note),
            action: action.into(),
            secondary: None,
        };
        if let Err(e) = self.recorder.publish(&event, &obj.object_ref(&())).await {
            tracing::debug!(error = %e, reason, "could not publish event");
        }
    }
}
