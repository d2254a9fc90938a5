//! The Docker backend: one ephemeral runner container per desired runner on a single Docker host.
//!
//! [`DockerBackend::new`] connects to the daemon (API version negotiated) and starts two tasks:
//!
//! * the **reconciler**, the only code that creates or removes containers, so reconciles never
//!   overlap. It wakes on [`Backend::apply_desired`], on a container of ours dying (Docker events),
//!   on `JobCompleted`, and every `resyncIntervalMs`. Each pass reads the truth from the daemon
//!   (containers selected by the labels of [`labels`]), so a restarted listener adopts the
//!   containers it finds and never creates duplicates;
//! * the **event watcher**, which turns `die` events of our containers into wake-ups.
//!
//! A pass: (0) runners that a process stopped between registering them and creating their
//! container (a pending-runner marker volume without a container) are deregistered; (1) exited
//! runners are deregistered (`remove_runner`; 404 counts as done,
//! `JobStillRunning` is retried on a later pass) and their containers removed; (2) containers left
//! in `created` by an interrupted pass are started; (3) `target - live` runners are created, each
//! with its own JIT config in `ACTIONS_RUNNER_INPUT_JITCONFIG` (never in a label or a log line);
//! (4) with patch id 0, idle runners above the target are deregistered and then removed.

pub mod config;
pub mod scale_sets;

pub use config::{ContainerMode, DindConfig, DockerBackendConfig};

use crate::backend::{Backend, BackendError};
use bollard::Docker;
use bollard::models::VolumeCreateRequest;
use bollard::models::{ContainerCreateBody, ContainerSummary, ContainerSummaryStateEnum, HostConfig};
use bollard::query_parameters::{
    CreateContainerOptions, EventsOptions, InspectContainerOptions, ListContainersOptions, ListVolumesOptions,
    RemoveContainerOptions, RemoveVolumeOptions, StartContainerOptions,
};
use futures::StreamExt;
use rand::Rng;
use rarc_actions::types::{JitConfigRequest, JitRunnerConfig, JobCompleted, JobStarted};
use rarc_actions::{ActionsClient, Secret};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};
use tokio::sync::{Notify, watch};
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, debug, info, info_span, warn};

/// The environment variable that carries the JIT config into the runner container.
pub const JIT_CONFIG_ENV: &str = "ACTIONS_RUNNER_INPUT_JITCONFIG";

/// How often a runner name is redrawn when the service says it exists.
const NAME_ATTEMPTS: usize = 5;
/// How soon a pass that left work undone (busy runner, failed call) is retried.
const RETRY_SOON: Duration = Duration::from_secs(1);

/// Labels on every container the backend creates.
pub mod labels {
    /// Prefix of every label of ours; extra labels must not use it.
    pub const PREFIX: &str = "rarc.runner.";
    /// `rarc-listener`.
    pub const MANAGED_BY: &str = "rarc.runner.managed-by";
    pub const MANAGED_BY_VALUE: &str = "rarc-listener";
    /// The scale set's id.
    pub const SCALE_SET_ID: &str = "rarc.runner.scale-set-id";
    /// The scale set's name (informative; not part of the selector).
    pub const SCALE_SET_NAME: &str = "rarc.runner.scale-set-name";
    /// The GitHub configure URL: scale set ids are only unique per GitHub instance.
    pub const CONFIG_URL: &str = "rarc.runner.config-url";
    /// The runner's id at the Actions service.
    pub const RUNNER_ID: &str = "rarc.runner.id";
    /// The runner's name.
    pub const RUNNER_NAME: &str = "rarc.runner.name";
    /// `runner` or `dind`.
    pub const ROLE: &str = "rarc.runner.role";
    pub const ROLE_RUNNER: &str = "runner";
    pub const ROLE_DIND: &str = "dind";
    /// A volume marking a runner being registered (see [`super::pending_volume`]).
    pub const ROLE_PENDING: &str = "pending";
}

/// Failures of the Docker backend. Each variant names the operation that failed.
#[derive(Debug, thiserror::Error)]
pub enum DockerBackendError {
    #[error("invalid Docker backend config: {0}")]
    InvalidConfig(String),
    #[error("connecting to the Docker daemon at {host}")]
    Connect {
        host: String,
        #[source]
        source: bollard::errors::Error,
    },
    #[error("listing runner containers")]
    ListContainers(#[source] bollard::errors::Error),
    #[error("creating container {name}")]
    CreateContainer {
        name: String,
        #[source]
        source: bollard::errors::Error,
    },
    #[error("inspecting container {name}")]
    InspectContainer {
        name: String,
        #[source]
        source: bollard::errors::Error,
    },
    #[error("sidecar {name} has no volume at {path}")]
    SidecarVolume { name: String, path: String },
    #[error("starting container {name}")]
    StartContainer {
        name: String,
        #[source]
        source: bollard::errors::Error,
    },
    #[error("removing container {name}")]
    RemoveContainer {
        name: String,
        #[source]
        source: bollard::errors::Error,
    },
    #[error("generating a JIT config for runner {name}")]
    GenerateJitConfig {
        name: String,
        #[source]
        source: rarc_actions::Error,
    },
    #[error("no free runner name after {0} attempts")]
    NoFreeRunnerName(usize),
    #[error("removing runner {runner_id}")]
    RemoveRunner {
        runner_id: i64,
        #[source]
        source: rarc_actions::Error,
    },
    #[error("the reconciler of scale set {0} has stopped")]
    Stopped(i64),
    #[error("{operation} the pending-runner marker {name}")]
    Marker {
        operation: &'static str,
        name: String,
        #[source]
        source: bollard::errors::Error,
    },
    #[error("looking up runner {name}")]
    GetRunner {
        name: String,
        #[source]
        source: rarc_actions::Error,
    },
}

impl DockerBackendError {
    /// A short, stable name of the variant (metric labels, log fields).
    pub fn kind(&self) -> &'static str {
        match self {
            Self::InvalidConfig(_) => "InvalidConfig",
            Self::Connect { .. } => "Connect",
            Self::ListContainers(_) => "ListContainers",
            Self::CreateContainer { .. } => "CreateContainer",
            Self::StartContainer { .. } => "StartContainer",
            Self::RemoveContainer { .. } => "RemoveContainer",
            Self::GenerateJitConfig { .. } => "GenerateJitConfig",
            Self::NoFreeRunnerName(_) => "NoFreeRunnerName",
            Self::InspectContainer { .. } => "InspectContainer",
            Self::SidecarVolume { .. } => "SidecarVolume",
            Self::RemoveRunner { .. } => "RemoveRunner",
            Self::Stopped(_) => "Stopped",
            Self::Marker { .. } => "Marker",
            Self::GetRunner { .. } => "GetRunner",
        }
    }
}

impl From<DockerBackendError> for BackendError {
    fn from(e: DockerBackendError) -> Self {
        BackendError::Api {
            operation: e.kind(),
            message: error_chain(&e),
        }
    }
}

/// `error: cause: cause` (no secrets: errors hold names, ids and URLs only).
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

/// What a container of ours is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ContainerState {
    Created,
    Running,
    Exited,
    Removing,
    Other,
}

impl From<Option<&ContainerSummaryStateEnum>> for ContainerState {
    fn from(s: Option<&ContainerSummaryStateEnum>) -> Self {
        match s {
            Some(ContainerSummaryStateEnum::CREATED) => Self::Created,
            Some(
                ContainerSummaryStateEnum::RUNNING
                | ContainerSummaryStateEnum::RESTARTING
                | ContainerSummaryStateEnum::PAUSED
                | ContainerSummaryStateEnum::STOPPING,
            ) => Self::Running,
            Some(ContainerSummaryStateEnum::EXITED | ContainerSummaryStateEnum::DEAD) => Self::Exited,
            Some(ContainerSummaryStateEnum::REMOVING) => Self::Removing,
            _ => Self::Other,
        }
    }
}

/// One container of this scale set, as the daemon reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunnerContainer {
    pub container_id: String,
    /// Without the leading `/`.
    pub container_name: String,
    /// `None` for a container whose label is missing or malformed (it is removed, not counted).
    pub runner_id: Option<i64>,
    pub runner_name: String,
    pub state: ContainerState,
    /// [`labels::ROLE_RUNNER`] or [`labels::ROLE_DIND`].
    pub role: String,
}

impl RunnerContainer {
    fn from_summary(c: ContainerSummary) -> Option<Self> {
        let container_id = c.id?;
        let labels = c.labels.unwrap_or_default();
        let container_name = c
            .names
            .and_then(|n| n.into_iter().next())
            .map(|n| n.trim_start_matches('/').to_owned())
            .unwrap_or_else(|| container_id.clone());
        Some(Self {
            runner_id: labels.get(labels::RUNNER_ID).and_then(|v| v.parse().ok()),
            runner_name: labels.get(labels::RUNNER_NAME).cloned().unwrap_or_default(),
            role: labels.get(labels::ROLE).cloned().unwrap_or_default(),
            state: ContainerState::from(c.state.as_ref()),
            container_id,
            container_name,
        })
    }

    fn is_runner(&self) -> bool {
        self.role == labels::ROLE_RUNNER
    }
}

/// What one reconcile pass did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReconcileReport {
    /// The target in effect (`None` before the first `apply_desired`).
    pub target: Option<i64>,
    /// Runner containers alive after the pass.
    pub live: usize,
    pub created: usize,
    /// Exited runners deregistered and removed.
    pub cleaned_up: usize,
    /// Idle runners removed to meet a lower target (patch id 0).
    pub scaled_down: usize,
    /// Runners registered by a process stopped before their container existed, deregistered.
    pub orphans_deregistered: usize,
    /// Work left for a later pass (a busy runner, a failed call).
    pub pending: bool,
}

#[derive(Debug, Clone, Copy, Default)]
struct Desired {
    target: i64,
    patch_id: i64,
    set: bool,
}

/// The Docker backend of one scale set. Dropping it stops its tasks; containers stay (and are
/// adopted by the next instance).
pub struct DockerBackend {
    inner: Arc<Inner>,
    cancel: CancellationToken,
}

struct Inner {
    docker: Docker,
    actions: ActionsClient,
    config: DockerBackendConfig,
    /// Labels that select this scale set's containers (also put on every container).
    selector: BTreeMap<String, String>,
    desired: watch::Sender<Desired>,
    wake: Notify,
    /// Runner names with a job (JobStarted seen, JobCompleted not yet).
    busy: Mutex<HashSet<String>>,
    /// Serializes reconcile passes (the reconciler task and [`DockerBackend::reconcile_now`]).
    pass: tokio::sync::Mutex<()>,
    /// Cancelled on shutdown: a pass in progress creates nothing more.
    cancel: CancellationToken,
}

impl DockerBackend {
    /// Connects to `config.docker_host` (else `DOCKER_HOST`, else the default socket), negotiates
    /// the API version, checks the daemon answers, and starts the reconciler. Must be called
    /// inside a Tokio runtime.
    pub async fn new(config: DockerBackendConfig, actions: ActionsClient) -> Result<Self, DockerBackendError> {
        let docker = connect(config.docker_host.as_deref()).await?;
        Self::with_docker(config, actions, docker)
    }

    /// Like [`DockerBackend::new`] with an already connected client (one client can serve every
    /// scale set of the process).
    pub fn with_docker(
        config: DockerBackendConfig,
        actions: ActionsClient,
        docker: Docker,
    ) -> Result<Self, DockerBackendError> {
        config.validate().map_err(DockerBackendError::InvalidConfig)?;
        let mut selector = BTreeMap::from([
            (labels::MANAGED_BY.to_owned(), labels::MANAGED_BY_VALUE.to_owned()),
            (labels::SCALE_SET_ID.to_owned(), config.scale_set_id.to_string()),
            (
                labels::CONFIG_URL.to_owned(),
                actions.github_config().configure_url.clone(),
            ),
        ]);
        selector.extend(config.extra_labels.iter().map(|(k, v)| (k.clone(), v.clone())));
        let (desired, _) = watch::channel(Desired::default());
        let cancel = CancellationToken::new();
        let inner = Arc::new(Inner {
            docker,
            actions,
            config,
            selector,
            desired,
            wake: Notify::new(),
            busy: Mutex::new(HashSet::new()),
            pass: tokio::sync::Mutex::new(()),
            cancel: cancel.clone(),
        });
        let span = info_span!("docker_backend", scale_set_id = inner.config.scale_set_id);
        tokio::spawn(reconciler(inner.clone(), cancel.clone()).instrument(span.clone()));
        tokio::spawn(event_watcher(inner.clone(), cancel.clone()).instrument(span));
        Ok(Self { inner, cancel })
    }

    /// The Docker client in use.
    pub fn docker(&self) -> &Docker {
        &self.inner.docker
    }

    /// The labels selecting this scale set's containers.
    pub fn selector(&self) -> &BTreeMap<String, String> {
        &self.inner.selector
    }

    /// This scale set's containers (runners and sidecars), as the daemon reports them now.
    pub async fn containers(&self) -> Result<Vec<RunnerContainer>, DockerBackendError> {
        self.inner.list().await
    }

    /// Runs one reconcile pass now (after any pass in progress) and reports it.
    pub async fn reconcile_now(&self) -> Result<ReconcileReport, DockerBackendError> {
        let desired = *self.inner.desired.borrow();
        self.inner.reconcile(desired).await
    }

    /// Stops the reconciler and the event watcher and waits for a pass in progress to end (it
    /// creates nothing more once this is called). Containers are left running, for the next
    /// instance to adopt.
    pub async fn shutdown(&self) {
        self.cancel.cancel();
        drop(self.inner.pass.lock().await);
    }
}

impl Drop for DockerBackend {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

impl Backend for DockerBackend {
    async fn apply_desired(&self, target: i64, patch_id: i64) -> Result<(), BackendError> {
        if self.cancel.is_cancelled() {
            return Err(DockerBackendError::Stopped(self.inner.config.scale_set_id).into());
        }
        debug!(target, patch_id, "desired runners");
        self.inner.desired.send_replace(Desired {
            target,
            patch_id,
            set: true,
        });
        Ok(())
    }

    async fn job_started(&self, job: &JobStarted) -> Result<(), BackendError> {
        if !job.runner_name.is_empty() {
            self.inner.busy().insert(job.runner_name.clone());
        }
        Ok(())
    }

    async fn job_completed(&self, job: &JobCompleted) -> Result<(), BackendError> {
        self.inner.busy().remove(&job.runner_name);
        // The runner exits right after; its `die` event wakes the reconciler too.
        self.inner.wake.notify_one();
        Ok(())
    }

    /// [`DockerBackend::shutdown`]: a runner being created is finished (container started), so
    /// no registered runner is left without a container when the process exits.
    async fn shutdown(&self) {
        DockerBackend::shutdown(self).await;
    }
}

/// Connects and negotiates the API version (`host` as in `DOCKER_HOST`).
pub async fn connect(host: Option<&str>) -> Result<Docker, DockerBackendError> {
    let host = host
        .map(str::to_owned)
        .or_else(|| std::env::var("DOCKER_HOST").ok().filter(|h| !h.is_empty()))
        .unwrap_or_else(|| "unix:///var/run/docker.sock".to_owned());
    let err = |source| DockerBackendError::Connect {
        host: host.clone(),
        source,
    };
    // bollard speaks plain HTTP for tcp://; the scheme it expects for that is http://.
    let target = match host.strip_prefix("tcp://") {
        Some(rest) => format!("http://{rest}"),
        None => host.clone(),
    };
    let docker = Docker::connect_with_host(&target).map_err(err)?;
    let docker = docker.negotiate_version().await.map_err(err)?;
    docker.ping().await.map_err(err)?;
    Ok(docker)
}

async fn reconciler(inner: Arc<Inner>, cancel: CancellationToken) {
    let mut desired = inner.desired.subscribe();
    let resync = Duration::from_millis(inner.config.resync_interval_ms.max(100));
    let mut wait = Duration::ZERO; // the first pass adopts (and cleans up) right away
    loop {
        tokio::select! {
            () = cancel.cancelled() => return,
            changed = desired.changed() => if changed.is_err() { return },
            () = inner.wake.notified() => {}
            () = tokio::time::sleep(wait) => {}
        }
        let d = *desired.borrow_and_update();
        wait = match inner.reconcile(d).await {
            Ok(report) if report.pending => RETRY_SOON,
            Ok(_) => resync,
            Err(e) => {
                warn!(error = %error_chain(&e), kind = e.kind(), "reconcile failed");
                RETRY_SOON
            }
        };
    }
}

async fn event_watcher(inner: Arc<Inner>, cancel: CancellationToken) {
    let mut filters = HashMap::from([
        ("type".to_owned(), vec!["container".to_owned()]),
        ("event".to_owned(), vec!["die".to_owned()]),
    ]);
    filters.insert("label".to_owned(), inner.label_filters());
    loop {
        let mut events = inner.docker.events(Some(EventsOptions {
            filters: Some(filters.clone()),
            ..Default::default()
        }));
        loop {
            tokio::select! {
                () = cancel.cancelled() => return,
                event = events.next() => match event {
                    Some(Ok(_)) => inner.wake.notify_one(),
                    Some(Err(e)) => {
                        debug!(error = %e, "docker event stream failed; resubscribing");
                        break;
                    }
                    None => break,
                },
            }
        }
        tokio::select! {
            () = cancel.cancelled() => return,
            () = tokio::time::sleep(RETRY_SOON) => {}
        }
    }
}

impl Inner {
    fn busy(&self) -> std::sync::MutexGuard<'_, HashSet<String>> {
        self.busy.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn label_filters(&self) -> Vec<String> {
        self.selector.iter().map(|(k, v)| format!("{k}={v}")).collect()
    }

    async fn list(&self) -> Result<Vec<RunnerContainer>, DockerBackendError> {
        let filters = HashMap::from([("label".to_owned(), self.label_filters())]);
        let found = self
            .docker
            .list_containers(Some(ListContainersOptions {
                all: true,
                filters: Some(filters),
                ..Default::default()
            }))
            .await
            .map_err(DockerBackendError::ListContainers)?;
        Ok(found.into_iter().filter_map(RunnerContainer::from_summary).collect())
    }

    async fn reconcile(&self, desired: Desired) -> Result<ReconcileReport, DockerBackendError> {
        let _pass = self.pass.lock().await;
        let started = Instant::now();
        let all = self.list().await?;
        let mut report = ReconcileReport {
            target: desired
                .set
                .then(|| desired.target.clamp(self.config.min_runners, self.config.max_runners)),
            ..Default::default()
        };
        // (0) Runners a killed process registered but never gave a container.
        let names: HashSet<String> = all.iter().map(|c| c.runner_name.clone()).collect();
        match self.sweep_markers(&names).await {
            Ok(n) => report.orphans_deregistered = n,
            Err(e) => {
                warn!(error = %error_chain(&e), kind = e.kind(), "sweeping pending-runner markers");
                report.pending = true;
            }
        }
        let (runners, sidecars): (Vec<_>, Vec<_>) = all.into_iter().partition(RunnerContainer::is_runner);

        let mut live = Vec::new();
        let mut finished = Vec::new();
        let mut stale_created = Vec::new();
        for c in runners {
            match c.state {
                ContainerState::Running => live.push(c),
                ContainerState::Created => stale_created.push(c),
                ContainerState::Exited | ContainerState::Other => finished.push(c),
                ContainerState::Removing => {}
            }
        }

        // (1) Exited runners: deregister, then remove.
        let retired = futures::future::join_all(finished.iter().map(|c| self.retire(c, &sidecars))).await;
        for result in retired {
            match result {
                Ok(true) => report.cleaned_up += 1,
                Ok(false) => report.pending = true,
                Err(e) => {
                    warn!(error = %error_chain(&e), kind = e.kind(), "cleaning up an exited runner");
                    report.pending = true;
                }
            }
        }

        // (2) Containers an interrupted pass created but did not start.
        for c in stale_created {
            match self.start(&c.container_name).await {
                Ok(()) => {
                    info!(runner = %c.runner_name, "started a runner container left in created state");
                    live.push(c);
                }
                Err(e) => {
                    warn!(error = %error_chain(&e), runner = %c.runner_name, "starting a created runner container");
                    if let Err(e) = self.retire(&c, &sidecars).await {
                        warn!(error = %error_chain(&e), runner = %c.runner_name, "removing it");
                    }
                    report.pending = true;
                }
            }
        }

        // Sidecars whose runner is gone.
        let runner_names: HashSet<&str> = live.iter().map(|c| c.runner_name.as_str()).collect();
        let finished_names: HashSet<&str> = finished.iter().map(|c| c.runner_name.as_str()).collect();
        for s in sidecars.iter().filter(|s| {
            !runner_names.contains(s.runner_name.as_str()) && !finished_names.contains(s.runner_name.as_str())
        }) {
            if let Err(e) = self.remove_container(&s.container_name).await {
                warn!(error = %error_chain(&e), container = %s.container_name, "removing an orphaned sidecar");
            }
        }

        if let Some(target) = report.target {
            let have = i64::try_from(live.len()).unwrap_or(i64::MAX);
            if target > have && !self.cancel.is_cancelled() {
                // (3) Scale up.
                let missing = usize::try_from(target - have).unwrap_or(0);
                let results: Vec<_> = futures::stream::iter(0..missing)
                    .map(|_| self.create_runner())
                    .buffer_unordered(self.config.create_concurrency)
                    .collect()
                    .await;
                for r in results {
                    match r {
                        Ok(_) => report.created += 1,
                        Err(e) => {
                            warn!(error = %error_chain(&e), kind = e.kind(), "creating a runner");
                            report.pending = true;
                        }
                    }
                }
            } else if target < have && desired.patch_id == 0 {
                // (4) Scale down idle runners.
                let excess = usize::try_from(have - target).unwrap_or(0);
                let idle: Vec<RunnerContainer> = {
                    let busy = self.busy();
                    live.iter()
                        .filter(|c| !busy.contains(&c.runner_name))
                        .take(excess)
                        .cloned()
                        .collect()
                };
                let results = futures::future::join_all(idle.iter().map(|c| self.retire(c, &sidecars))).await;
                for (c, r) in idle.iter().zip(results) {
                    match r {
                        Ok(true) => report.scaled_down += 1,
                        Ok(false) => {
                            debug!(runner = %c.runner_name, "runner took a job; kept");
                            self.busy().insert(c.runner_name.clone());
                        }
                        Err(e) => {
                            warn!(error = %error_chain(&e), runner = %c.runner_name, "scaling down a runner");
                            report.pending = true;
                        }
                    }
                }
            }
            report.live = live.len() + report.created - report.scaled_down;
        } else {
            report.live = live.len();
        }
        // Names of runners that no longer exist leave the busy set.
        if report.cleaned_up > 0 || report.scaled_down > 0 {
            let alive: HashSet<&str> = live.iter().map(|c| c.runner_name.as_str()).collect();
            self.busy().retain(|n| alive.contains(n.as_str()));
        }
        if report.created + report.cleaned_up + report.scaled_down + report.orphans_deregistered > 0 || report.pending {
            info!(
                target = report.target,
                live = report.live,
                created = report.created,
                cleaned_up = report.cleaned_up,
                scaled_down = report.scaled_down,
                orphans_deregistered = report.orphans_deregistered,
                pending = report.pending,
                elapsed_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
                "reconciled"
            );
        }
        Ok(report)
    }

    /// Deregisters the runner, then removes its container and sidecar. `Ok(false)`: the runner
    /// is running a job (`JobStillRunning`), nothing was removed.
    async fn retire(&self, c: &RunnerContainer, sidecars: &[RunnerContainer]) -> Result<bool, DockerBackendError> {
        if let Some(runner_id) = c.runner_id {
            match self.actions.remove_runner(runner_id).await {
                Ok(()) => debug!(runner_id, runner = %c.runner_name, "runner deregistered"),
                Err(e) if e.is_not_found() || e.is_runner_not_found() => {}
                Err(e) if e.is_job_still_running() => return Ok(false),
                Err(source) => return Err(DockerBackendError::RemoveRunner { runner_id, source }),
            }
        }
        self.remove_container(&c.container_id).await?;
        for s in sidecars.iter().filter(|s| s.runner_name == c.runner_name) {
            self.remove_container(&s.container_id).await?;
        }
        debug!(runner = %c.runner_name, container = %c.container_name, "runner container removed");
        Ok(true)
    }

    async fn remove_container(&self, name: &str) -> Result<(), DockerBackendError> {
        match self
            .docker
            .remove_container(
                name,
                Some(RemoveContainerOptions {
                    force: true,
                    v: true,
                    ..Default::default()
                }),
            )
            .await
        {
            Ok(()) => Ok(()),
            Err(e) if docker_status(&e) == Some(404) => Ok(()),
            // 409: removal already in progress.
            Err(e) if docker_status(&e) == Some(409) => Ok(()),
            Err(source) => Err(DockerBackendError::RemoveContainer {
                name: name.to_owned(),
                source,
            }),
        }
    }

    async fn start(&self, name: &str) -> Result<(), DockerBackendError> {
        match self.docker.start_container(name, None::<StartContainerOptions>).await {
            Ok(()) => Ok(()),
            Err(e) if docker_status(&e) == Some(304) => Ok(()),
            Err(source) => Err(DockerBackendError::StartContainer {
                name: name.to_owned(),
                source,
            }),
        }
    }

    /// Registers a runner (JIT config) and starts its container(s). On failure after
    /// registration, the runner is deregistered and anything created is removed.
    ///
    /// A volume named after the runner marks it from before the JIT call until its container
    /// exists: a process killed in between leaves the marker, and the next pass (of this or a
    /// later process) deregisters the runner it names ([`Inner::sweep_markers`]).
    async fn create_runner(&self) -> Result<String, DockerBackendError> {
        if self.cancel.is_cancelled() {
            return Err(DockerBackendError::Stopped(self.config.scale_set_id));
        }
        let jit = self.generate_jit().await?;
        let name = jit.runner.name.clone();
        let runner_id = jit.runner.id;
        let result = match self.start_containers(&name, runner_id, &jit.encoded_jit_config).await {
            Ok(()) => {
                debug!(runner = %name, runner_id, "runner container started");
                Ok(name.clone())
            }
            Err(e) => {
                for n in [name.clone(), dind_name(&name)] {
                    if let Err(e) = self.remove_container(&n).await {
                        warn!(error = %error_chain(&e), container = %n, "removing after a failed create");
                    }
                }
                if let Err(e) = self.actions.remove_runner(runner_id).await
                    && !e.is_not_found()
                {
                    warn!(error = %e, runner_id, "deregistering after a failed create");
                }
                Err(e)
            }
        };
        self.remove_marker(&name).await;
        result
    }

    async fn generate_jit(&self) -> Result<JitRunnerConfig, DockerBackendError> {
        for _ in 0..NAME_ATTEMPTS {
            let name = format!("{}-{}", self.config.prefix(), random_suffix());
            self.create_marker(&name).await?;
            let request = JitConfigRequest {
                name: name.clone(),
                work_folder: self.config.work_folder.clone(),
            };
            match self
                .actions
                .generate_jit_runner_config(self.config.scale_set_id, &request)
                .await
            {
                Ok(jit) => return Ok(jit),
                Err(e) if e.is_runner_exists() => {
                    self.remove_marker(&name).await;
                    debug!(runner = %name, "runner name taken; drawing another");
                }
                Err(source) => {
                    // The call may still have registered the runner: the marker stays for the
                    // next pass to check.
                    return Err(DockerBackendError::GenerateJitConfig { name, source });
                }
            }
        }
        Err(DockerBackendError::NoFreeRunnerName(NAME_ATTEMPTS))
    }

    async fn create_marker(&self, runner: &str) -> Result<(), DockerBackendError> {
        let mut labels: HashMap<String, String> = self.selector.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        labels.insert(labels::RUNNER_NAME.into(), runner.to_owned());
        labels.insert(labels::ROLE.into(), labels::ROLE_PENDING.into());
        let name = pending_volume(runner);
        self.docker
            .create_volume(VolumeCreateRequest {
                name: Some(name.clone()),
                labels: Some(labels),
                ..Default::default()
            })
            .await
            .map(|_| ())
            .map_err(|source| DockerBackendError::Marker {
                operation: "creating",
                name,
                source,
            })
    }

    /// Best effort: a marker left behind only costs one runner lookup in a later pass.
    async fn remove_marker(&self, runner: &str) {
        let name = pending_volume(runner);
        match self.docker.remove_volume(&name, None::<RemoveVolumeOptions>).await {
            Ok(()) => {}
            Err(e) if docker_status(&e) == Some(404) => {}
            Err(source) => {
                let e = DockerBackendError::Marker {
                    operation: "removing",
                    name,
                    source,
                };
                warn!(error = %error_chain(&e), "pending-runner marker left for the next pass");
            }
        }
    }

    /// Markers whose runner has no container are what a killed process left between
    /// registering a runner and creating its container: each such runner is deregistered (if
    /// the service has it) and the marker removed. Passes never overlap and a pass removes the
    /// markers of the runners it creates, so every marker seen here without a container is an
    /// orphan. Returns how many runners were deregistered.
    async fn sweep_markers(&self, containers: &HashSet<String>) -> Result<usize, DockerBackendError> {
        let mut filters = self.label_filters();
        filters.push(format!("{}={}", labels::ROLE, labels::ROLE_PENDING));
        let found = self
            .docker
            .list_volumes(Some(ListVolumesOptions {
                filters: Some(HashMap::from([("label".to_owned(), filters)])),
            }))
            .await
            .map_err(|source| DockerBackendError::Marker {
                operation: "listing",
                name: "(all)".into(),
                source,
            })?;
        let mut deregistered = 0;
        for volume in found.volumes.unwrap_or_default() {
            let Some(runner) = volume.labels.get(labels::RUNNER_NAME).cloned() else {
                continue;
            };
            if containers.contains(&runner) {
                self.remove_marker(&runner).await;
                continue;
            }
            let found =
                self.actions
                    .get_runner_by_name(&runner)
                    .await
                    .map_err(|source| DockerBackendError::GetRunner {
                        name: runner.clone(),
                        source,
                    })?;
            if let Some(r) = found {
                match self.actions.remove_runner(r.id).await {
                    Ok(()) => {}
                    Err(e) if e.is_not_found() || e.is_runner_not_found() => {}
                    Err(source) => {
                        return Err(DockerBackendError::RemoveRunner {
                            runner_id: r.id,
                            source,
                        });
                    }
                }
                info!(runner = %runner, runner_id = r.id, "deregistered a runner registered without a container (process stopped mid-create)");
                deregistered += 1;
            }
            self.remove_marker(&runner).await;
        }
        Ok(deregistered)
    }

    fn labels_for(&self, name: &str, runner_id: i64, role: &str) -> HashMap<String, String> {
        let mut l: HashMap<String, String> = self.selector.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        l.insert(labels::SCALE_SET_NAME.into(), self.config.scale_set_name.clone());
        l.insert(labels::RUNNER_ID.into(), runner_id.to_string());
        l.insert(labels::RUNNER_NAME.into(), name.to_owned());
        l.insert(labels::ROLE.into(), role.to_owned());
        l
    }

    async fn start_containers(&self, name: &str, runner_id: i64, jit: &Secret) -> Result<(), DockerBackendError> {
        let mut runner_host = HostConfig {
            network_mode: self.config.network_mode.clone(),
            nano_cpus: self.config.cpu_limit.map(nano_cpus),
            memory: self.config.memory_limit_bytes,
            binds: (!self.config.extra_volumes.is_empty()).then(|| self.config.extra_volumes.clone()),
            init: self.config.init.then_some(true),
            ..Default::default()
        };
        let mut env: Vec<String> = self.config.extra_env.iter().map(|(k, v)| format!("{k}={v}")).collect();

        if let ContainerMode::Dind(dind) = &self.config.container_mode {
            let sidecar = dind_name(name);
            let host = HostConfig {
                network_mode: dind.network_mode.clone(),
                privileged: dind.privileged.then_some(true),
                cap_add: (!dind.privileged).then(|| vec!["ALL".to_owned()]),
                cap_drop: (!dind.privileged).then(|| vec!["SYS_RESOURCE".to_owned()]),
                security_opt: (!dind.privileged)
                    .then(|| vec!["seccomp=unconfined".to_owned(), "apparmor=unconfined".to_owned()]),
                binds: Some(vec!["/sys/fs/cgroup:/sys/fs/cgroup:rw".to_owned()]),
                ..Default::default()
            };
            let body = ContainerCreateBody {
                image: Some(dind.image.clone()),
                cmd: dind.command.clone(),
                labels: Some(self.labels_for(name, runner_id, labels::ROLE_DIND)),
                // Anonymous volumes the runner mounts by name (below); removed with the sidecar.
                volumes: Some(vec!["/var/run".to_owned(), dind.shared_work_dir.clone()]),
                host_config: Some(host),
                ..Default::default()
            };
            self.create(&sidecar, body).await?;
            self.start(&sidecar).await?;
            // The runner mounts the sidecar's two anonymous volumes by name: `volumes_from` would
            // also hand it the sidecar's read-write bind of the host's /sys/fs/cgroup.
            let shared = self
                .sidecar_volumes(&sidecar, &["/var/run", dind.shared_work_dir.as_str()])
                .await?;
            runner_host.binds.get_or_insert_with(Vec::new).extend(shared);
            env.push("DOCKER_HOST=unix:///var/run/docker.sock".to_owned());
        }
        env.push(format!("{JIT_CONFIG_ENV}={}", jit.expose()));

        let body = ContainerCreateBody {
            image: Some(self.config.runner_image.clone()),
            cmd: self.config.command.clone(),
            user: self.config.user.clone(),
            env: Some(env),
            labels: Some(self.labels_for(name, runner_id, labels::ROLE_RUNNER)),
            host_config: Some(runner_host),
            ..Default::default()
        };
        self.create(name, body).await?;
        self.start(name).await
    }

    /// `<volume>:<destination>` binds of the anonymous volumes `sidecar` mounts at `destinations`.
    async fn sidecar_volumes(&self, sidecar: &str, destinations: &[&str]) -> Result<Vec<String>, DockerBackendError> {
        let inspect = self
            .docker
            .inspect_container(sidecar, None::<InspectContainerOptions>)
            .await
            .map_err(|source| DockerBackendError::InspectContainer {
                name: sidecar.to_owned(),
                source,
            })?;
        let mounts = inspect.mounts.unwrap_or_default();
        destinations
            .iter()
            .map(|dst| {
                mounts
                    .iter()
                    .find(|m| m.destination.as_deref() == Some(*dst))
                    .and_then(|m| m.name.as_deref())
                    .map(|volume| format!("{volume}:{dst}"))
                    .ok_or_else(|| DockerBackendError::SidecarVolume {
                        name: sidecar.to_owned(),
                        path: (*dst).to_owned(),
                    })
            })
            .collect()
    }

    async fn create(&self, name: &str, body: ContainerCreateBody) -> Result<(), DockerBackendError> {
        self.docker
            .create_container(
                Some(CreateContainerOptions {
                    name: Some(name.to_owned()),
                    ..Default::default()
                }),
                body,
            )
            .await
            .map(drop)
            .map_err(|source| DockerBackendError::CreateContainer {
                name: name.to_owned(),
                source,
            })
    }
}

/// The name of the volume marking runner `runner` as being created.
pub fn pending_volume(runner: &str) -> String {
    format!("{runner}-pending")
}

fn dind_name(runner: &str) -> String {
    format!("{runner}-dind")
}

/// CPUs to Docker's nano-CPUs.
fn nano_cpus(cpus: f64) -> i64 {
    // Validated finite and positive; the cast saturates.
    (cpus * 1e9).round() as i64
}

/// Five random characters from `[a-z0-9]`.
fn random_suffix() -> String {
    const CHARS: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    let mut rng = rand::rng();
    (0..5)
        .map(|_| char::from(CHARS[rng.random_range(0..CHARS.len())]))
        .collect()
}

fn docker_status(e: &bollard::errors::Error) -> Option<u16> {
    match e {
        bollard::errors::Error::DockerResponseServerError { status_code, .. } => Some(*status_code),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suffixes_are_five_lowercase_alphanumerics() {
        for _ in 0..100 {
            let s = random_suffix();
            assert_eq!(s.len(), 5);
            assert!(s.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit()), "{s}");
        }
    }

    #[test]
    fn states_map_to_live_or_finished() {
        use ContainerSummaryStateEnum as S;
        let rows = [
            (Some(S::RUNNING), ContainerState::Running),
            (Some(S::PAUSED), ContainerState::Running),
            (Some(S::RESTARTING), ContainerState::Running),
            (Some(S::CREATED), ContainerState::Created),
            (Some(S::EXITED), ContainerState::Exited),
            (Some(S::DEAD), ContainerState::Exited),
            (Some(S::REMOVING), ContainerState::Removing),
            (None, ContainerState::Other),
        ];
        for (s, want) in rows {
            assert_eq!(ContainerState::from(s.as_ref()), want, "{s:?}");
        }
    }

    #[test]
    fn nano_cpus_and_error_kinds() {
        assert_eq!(nano_cpus(1.5), 1_500_000_000);
        assert_eq!(nano_cpus(0.25), 250_000_000);
        let e = DockerBackendError::NoFreeRunnerName(5);
        let b: BackendError = e.into();
        assert_eq!(
            b.to_string(),
            "NoFreeRunnerName failed: no free runner name after 5 attempts"
        );
    }

    #[test]
    fn summary_with_labels_becomes_a_runner_container() {
        let c = ContainerSummary {
            id: Some("abc".into()),
            names: Some(vec!["/set-x1y2z".into()]),
            labels: Some(HashMap::from([
                (labels::RUNNER_ID.to_owned(), "42".to_owned()),
                (labels::RUNNER_NAME.to_owned(), "set-x1y2z".to_owned()),
                (labels::ROLE.to_owned(), labels::ROLE_RUNNER.to_owned()),
            ])),
            state: Some(ContainerSummaryStateEnum::RUNNING),
            ..Default::default()
        };
        let r = RunnerContainer::from_summary(c).unwrap();
        assert_eq!(r.container_name, "set-x1y2z");
        assert_eq!(r.runner_id, Some(42));
        assert!(r.is_runner());
        assert_eq!(r.state, ContainerState::Running);
    }
}
