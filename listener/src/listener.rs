//! The listener loop (spec §9): one message session, long polls, message handling in the exact
//! order of §9.3, the scaling decision of §9.4 handed to a [`Backend`], and shutdown (§9.9).
//!
//! Deliberate improvements over ARC (docs/compat.md, "Listener"): a 409 on session creation is
//! retried with jittered backoff for a bounded time; a session refresh that returns 404 creates a
//! new session and the loop carries on; the session delete on exit is bounded; a signal-initiated
//! shutdown is a success. Every other error ends [`Listener::run`] with an error (exit 1: the pod
//! restart is the recovery, as in ARC).

use crate::backend::{Backend, BackendError};
use crate::health::Health;
use crate::metrics::Metrics;
use rand::Rng;
use rarc_actions::scaling::PatchIdState;
use rarc_actions::types::{JobMessage, RunnerScaleSetMessage, Statistics};
use rarc_actions::{ActionsClient, MessageSession};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

/// Backoff of the session-creation retry on 409 (a stale session of a previous pod).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConflictRetry {
    /// First wait; doubles up to `max`. Each wait is jittered by ±20 %.
    pub initial: Duration,
    pub max: Duration,
    /// Give up (exit 1) once this much time has passed since the first 409.
    pub total: Duration,
}

impl Default for ConflictRetry {
    fn default() -> Self {
        Self {
            initial: Duration::from_secs(5),
            max: Duration::from_secs(30),
            total: Duration::from_secs(5 * 60),
        }
    }
}

impl ConflictRetry {
    /// The un-jittered wait before retry `n` (0-based).
    pub fn backoff(&self, n: u32) -> Duration {
        self.initial
            .checked_mul(2u32.saturating_pow(n.min(16)))
            .unwrap_or(self.max)
            .min(self.max)
    }
}

/// What the loop needs besides the client and the backend.
#[derive(Debug, Clone)]
pub struct ListenerSettings {
    pub scale_set_id: i64,
    pub min_runners: i64,
    pub max_runners: i64,
    /// Session owner (the host name, which is the pod name).
    pub owner: String,
    pub conflict_retry: ConflictRetry,
    /// Upper bound of the session delete on exit.
    pub close_timeout: Duration,
}

impl ListenerSettings {
    pub fn new(scale_set_id: i64, min_runners: i64, max_runners: i64, owner: impl Into<String>) -> Self {
        Self {
            scale_set_id,
            min_runners,
            max_runners,
            owner: owner.into(),
            conflict_retry: ConflictRetry::default(),
            close_timeout: Duration::from_secs(30),
        }
    }
}

/// Why the loop stopped with an error. Each variant names the operation that failed.
#[derive(Debug, thiserror::Error)]
pub enum ListenerError {
    #[error(
        "runner scale set {scale_set_id} does not exist in the Actions service (deleted server-side?); the controller must re-register it"
    )]
    ScaleSetNotFound {
        scale_set_id: i64,
        #[source]
        source: rarc_actions::Error,
    },
    #[error("create message session: another session of this scale set still exists after {waited:?} of retries")]
    SessionConflict {
        waited: Duration,
        #[source]
        source: rarc_actions::Error,
    },
    #[error("create message session")]
    CreateSession {
        #[source]
        source: rarc_actions::Error,
    },
    #[error("the message session has no statistics")]
    SessionWithoutStatistics,
    #[error("get message")]
    GetMessage {
        #[source]
        source: rarc_actions::Error,
    },
    #[error("re-create the message session after its refresh returned 404")]
    RecreateSession {
        #[source]
        source: rarc_actions::Error,
    },
    #[error("message {message_id} has no statistics")]
    MessageWithoutStatistics { message_id: i64 },
    #[error("decode the body of message {message_id}")]
    DecodeMessage {
        message_id: i64,
        #[source]
        source: serde_json::Error,
    },
    #[error("delete message {message_id}")]
    DeleteMessage {
        message_id: i64,
        #[source]
        source: rarc_actions::Error,
    },
    #[error("acquire jobs {ids:?}")]
    AcquireJobs {
        ids: Vec<i64>,
        #[source]
        source: rarc_actions::Error,
    },
    #[error("{operation}")]
    Backend {
        operation: &'static str,
        #[source]
        source: BackendError,
    },
}

/// How [`Listener::run`] ended without an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stopped {
    /// The shutdown token was cancelled (SIGTERM/SIGINT).
    Shutdown,
}

/// The listener of one scale set.
pub struct Listener<B> {
    client: ActionsClient,
    backend: B,
    settings: ListenerSettings,
    metrics: Arc<Metrics>,
    health: Health,
    shutdown: CancellationToken,
}

impl<B: Backend> Listener<B> {
    /// A listener without metrics, with a fresh shutdown token and a default heartbeat.
    pub fn new(client: ActionsClient, backend: B, settings: ListenerSettings) -> Self {
        Self {
            client,
            backend,
            settings,
            metrics: Arc::new(Metrics::disabled()),
            health: Health::default(),
            shutdown: CancellationToken::new(),
        }
    }

    pub fn with_metrics(mut self, metrics: Arc<Metrics>) -> Self {
        self.metrics = metrics;
        self
    }

    pub fn with_health(mut self, health: Health) -> Self {
        self.health = health;
        self
    }

    /// Cancelling `token` stops the loop: an in-flight long poll is aborted, a message being
    /// handled is finished first.
    pub fn with_shutdown(mut self, token: CancellationToken) -> Self {
        self.shutdown = token;
        self
    }

    /// Runs until shutdown (`Ok`) or the first fatal error. The session, once created, is deleted
    /// on the way out (bounded by `close_timeout`; a failure is only logged).
    pub async fn run(self) -> Result<Stopped, ListenerError> {
        let span = tracing::info_span!("listener", scale_set = self.settings.scale_set_id);
        self.run_inner().instrument(span).await
    }

    async fn run_inner(self) -> Result<Stopped, ListenerError> {
        let Some(mut session) = self.open_session().await? else {
            return Ok(Stopped::Shutdown);
        };
        self.metrics
            .set_min_max(self.settings.min_runners, self.settings.max_runners);
        let result = Serve {
            listener: &self,
            scaler: PatchIdState::new(self.settings.min_runners, self.settings.max_runners),
            latest: Statistics::default(),
            last_message_id: 0,
        }
        .serve(&mut session)
        .await;
        if let Err(e) = &result {
            log_error(e);
        }
        self.close(session).await;
        // Runners being created when the loop stopped are finished (bounded like the close), so
        // the process does not exit between registering a runner and starting it.
        if tokio::time::timeout(self.settings.close_timeout, self.backend.shutdown())
            .await
            .is_err()
        {
            tracing::warn!("the backend did not finish its work in progress in time");
        }
        result
    }

    /// Creates the session, retrying 409 with backoff. `None` when shutdown came first.
    async fn open_session(&self) -> Result<Option<MessageSession>, ListenerError> {
        let retry = self.settings.conflict_retry;
        let mut first_conflict: Option<Instant> = None;
        let mut attempt = 0u32;
        loop {
            self.health.beat();
            let opened = tokio::select! {
                biased;
                _ = self.shutdown.cancelled() => return Ok(None),
                r = MessageSession::open(self.client.clone(), self.settings.scale_set_id, self.settings.owner.clone()) => r,
            };
            let source = match opened {
                Ok(session) => return Ok(Some(session)),
                Err(e) => e,
            };
            log_actions_error("create message session failed", &source);
            if source.is_scale_set_not_found() {
                return Err(ListenerError::ScaleSetNotFound {
                    scale_set_id: self.settings.scale_set_id,
                    source,
                });
            }
            if !source.is_session_conflict() {
                return Err(ListenerError::CreateSession { source });
            }
            let since = *first_conflict.get_or_insert_with(Instant::now);
            let waited = since.elapsed();
            if waited >= retry.total {
                return Err(ListenerError::SessionConflict { waited, source });
            }
            let wait = jitter(retry.backoff(attempt)).min(retry.total.saturating_sub(waited));
            attempt += 1;
            tracing::warn!(
                owner = %self.settings.owner,
                attempt,
                retry_in_ms = u64::try_from(wait.as_millis()).unwrap_or(u64::MAX),
                "another message session of this scale set exists (409); retrying until it is released or expires"
            );
            tokio::select! {
                biased;
                _ = self.shutdown.cancelled() => return Ok(None),
                _ = tokio::time::sleep(wait) => {}
            }
        }
    }

    async fn close(&self, session: MessageSession) {
        let session_id = session.session().session_id.clone();
        match tokio::time::timeout(self.settings.close_timeout, session.close()).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => log_actions_error("delete message session failed", &e),
            Err(_) => tracing::warn!(
                session_id = %session_id,
                timeout_s = self.settings.close_timeout.as_secs(),
                "delete message session timed out; the service expires it"
            ),
        }
    }
}

/// State of one served session.
struct Serve<'a, B> {
    listener: &'a Listener<B>,
    scaler: PatchIdState,
    latest: Statistics,
    last_message_id: i64,
}

impl<B: Backend> Serve<'_, B> {
    async fn serve(mut self, session: &mut MessageSession) -> Result<Stopped, ListenerError> {
        let l = self.listener;
        let stats = session.statistics().ok_or(ListenerError::SessionWithoutStatistics)?;
        self.latest = stats;
        l.metrics.set_statistics(&stats);
        if stats.total_available_jobs > 0 {
            self.acquire_offered(session).await;
        }
        let target = self.apply(stats.total_assigned_jobs).await?;
        l.metrics.set_desired(target);
        l.health.beat();
        loop {
            if l.shutdown.is_cancelled() {
                return Ok(Stopped::Shutdown);
            }
            let polled = tokio::select! {
                biased;
                _ = l.shutdown.cancelled() => return Ok(Stopped::Shutdown),
                r = session.get_message(self.last_message_id, l.settings.max_runners) => r,
            };
            match polled {
                Ok(None) => {
                    // §9.2: the latest statistics; gha_desired_runners is not updated here.
                    self.apply(self.latest.total_assigned_jobs).await?;
                }
                Ok(Some(message)) => {
                    self.last_message_id = message.message_id;
                    // Not interrupted by shutdown: the loop checks the token afterwards.
                    self.handle(session, message).await?;
                }
                Err(e) if is_refresh_not_found(&e) => {
                    tracing::warn!(
                        error = %e,
                        activity_id = e.activity_id().unwrap_or_default(),
                        "the service no longer knows the message session (refresh returned 404); creating a new one"
                    );
                    session
                        .recreate()
                        .await
                        .map_err(|source| ListenerError::RecreateSession { source })?;
                    // The cursor belongs to the old session; undeleted messages come again.
                    self.last_message_id = 0;
                    if let Some(stats) = session.statistics() {
                        self.latest = stats;
                        l.metrics.set_statistics(&stats);
                    }
                }
                Err(source) => return Err(ListenerError::GetMessage { source }),
            }
            l.health.beat();
        }
    }

    /// Jobs offered to the scale set whose `JobAvailable` message is gone (acknowledged by a
    /// previous process that then failed or was killed before its acquirejobs succeeded) are
    /// never offered again: they are acquired here, at session start, when the statistics show
    /// available jobs, through GET acquirablejobs (§6.13, as ARC's listener did before 0.8.2).
    /// Best effort: a failure is logged, the next start tries again.
    async fn acquire_offered(&self, session: &mut MessageSession) {
        let set = self.listener.settings.scale_set_id;
        let offered: Vec<i64> = match session.client().get_acquirable_jobs(set).await {
            Ok(list) => list.value.iter().map(|j| j.runner_request_id).collect(),
            Err(e) => {
                log_actions_error("get acquirable jobs failed", &e);
                return;
            }
        };
        if offered.is_empty() {
            return;
        }
        match session.acquire_jobs(&offered).await {
            Ok(acquired) => {
                tracing::info!(offered = ?offered, acquired = ?acquired, "jobs offered before this session acquired")
            }
            Err(e) => log_actions_error("acquire jobs offered before this session failed", &e),
        }
    }

    /// §9.3, in this exact order.
    async fn handle(
        &mut self,
        session: &mut MessageSession,
        message: RunnerScaleSetMessage,
    ) -> Result<(), ListenerError> {
        let l = self.listener;
        let message_id = message.message_id;
        let stats = message
            .statistics
            .ok_or(ListenerError::MessageWithoutStatistics { message_id })?;
        let jobs = message
            .job_messages()
            .map_err(|source| ListenerError::DecodeMessage { message_id, source })?;
        tracing::info!(
            message_id,
            jobs = jobs.len(),
            assigned = stats.total_assigned_jobs,
            available = stats.total_available_jobs,
            running = stats.total_running_jobs,
            "message received"
        );
        // 1. statistics
        self.latest = stats;
        l.metrics.set_statistics(&stats);
        // 2. acknowledge
        session
            .delete_message(message_id)
            .await
            .map_err(|source| ListenerError::DeleteMessage { message_id, source })?;
        // 3. acquire every offered job, in one call
        let offered: Vec<i64> = jobs
            .iter()
            .filter_map(|j| match j {
                JobMessage::Available(a) => Some(a.base.runner_request_id),
                _ => None,
            })
            .collect();
        if !offered.is_empty() {
            let acquired = session
                .acquire_jobs(&offered)
                .await
                .map_err(|source| ListenerError::AcquireJobs {
                    ids: offered.clone(),
                    source,
                })?;
            tracing::info!(offered = ?offered, acquired = ?acquired, "jobs acquired");
        }
        // 4. started
        for job in &jobs {
            if let JobMessage::Started(started) = job {
                tracing::info!(
                    job_id = %started.base.job_id,
                    runner = %started.runner_name,
                    request_id = started.base.runner_request_id,
                    "job started"
                );
                self.scaler.job_started();
                l.metrics.job_started(started);
                l.backend
                    .job_started(started)
                    .await
                    .map_err(|source| ListenerError::Backend {
                        operation: "mark runner busy (job started)",
                        source,
                    })?;
            }
        }
        // 5. completed
        for job in &jobs {
            if let JobMessage::Completed(completed) = job {
                tracing::info!(
                    job_id = %completed.base.job_id,
                    runner = %completed.runner_name,
                    result = %completed.result,
                    "job completed"
                );
                self.scaler.job_completed();
                l.metrics.job_completed(completed);
                l.backend
                    .job_completed(completed)
                    .await
                    .map_err(|source| ListenerError::Backend {
                        operation: "handle job completed",
                        source,
                    })?;
            }
        }
        for job in &jobs {
            match job {
                JobMessage::Assigned(a) => {
                    tracing::debug!(job_id = %a.base.job_id, request_id = a.base.runner_request_id, "job assigned");
                }
                JobMessage::Unknown(kind) => tracing::debug!(kind = %kind, "unknown job message ignored"),
                _ => {}
            }
        }
        // 6. scale
        let target = self.apply(stats.total_assigned_jobs).await?;
        l.metrics.set_desired(target);
        Ok(())
    }

    async fn apply(&mut self, assigned_jobs: i64) -> Result<i64, ListenerError> {
        let (target, patch_id) = self.scaler.next(assigned_jobs);
        tracing::debug!(assigned_jobs, target, patch_id, "desired runners");
        self.listener
            .backend
            .apply_desired(target, patch_id)
            .await
            .map_err(|source| ListenerError::Backend {
                operation: "apply desired runners",
                source,
            })?;
        Ok(target)
    }
}

/// A session refresh (PATCH) that answered 404: the service forgot the session (§13.4).
fn is_refresh_not_found(e: &rarc_actions::Error) -> bool {
    e.is_not_found() && e.unexpected_status().is_some_and(|u| u.method.as_str() == "PATCH")
}

fn jitter(d: Duration) -> Duration {
    let factor = rand::rng().random_range(0.8..=1.2);
    d.mul_f64(factor)
}

fn log_actions_error(what: &str, e: &rarc_actions::Error) {
    tracing::error!(
        error = %e,
        kind = e.kind(),
        status = e.status().map(|s| s.as_u16()),
        exception = e.exception_type().unwrap_or_default(),
        activity_id = e.activity_id().unwrap_or_default(),
        github_request_id = e.github_request_id().unwrap_or_default(),
        "{what}"
    );
}

fn log_error(e: &ListenerError) {
    let actions = match e {
        ListenerError::ScaleSetNotFound { source, .. }
        | ListenerError::SessionConflict { source, .. }
        | ListenerError::CreateSession { source }
        | ListenerError::GetMessage { source }
        | ListenerError::RecreateSession { source }
        | ListenerError::DeleteMessage { source, .. }
        | ListenerError::AcquireJobs { source, .. } => Some(source),
        _ => None,
    };
    match actions {
        Some(source) => log_actions_error(&e.to_string(), source),
        None => tracing::error!(error = %error_chain(e), "listener failed"),
    }
}

/// `error: cause: cause` of an error and its sources.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conflict_backoff_doubles_and_caps() {
        let r = ConflictRetry {
            initial: Duration::from_secs(5),
            max: Duration::from_secs(30),
            total: Duration::from_secs(300),
        };
        let waits: Vec<u64> = (0..6).map(|n| r.backoff(n).as_secs()).collect();
        assert_eq!(waits, [5, 10, 20, 30, 30, 30]);
        for _ in 0..100 {
            let j = jitter(Duration::from_secs(10));
            assert!(j >= Duration::from_secs(8) && j <= Duration::from_secs(12));
        }
    }
}
