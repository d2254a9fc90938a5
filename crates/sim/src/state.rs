//! The simulated service's state machine: scale sets, sessions, message queues, jobs and runners.
//!
//! No HTTP here: handlers translate requests into these calls, so the rules (who may do what, which
//! message each transition emits, how statistics are counted) can be tested on their own.

use crate::config::{BrokerStyle, JobMode, SimSettings};
use crate::error::{ApiError, exc};
use crate::job::JobSpec;
use crate::runner_api::{AssignedJob, JitConfig, LogLine, RunnerSettings};
use axum::http::StatusCode;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rarc_actions::Secret;
use rarc_actions::types::{
    JitRunnerConfig, JobAssigned, JobAvailable, JobCompleted, JobMessage, JobMessageBase, JobStarted, Label,
    MESSAGE_TYPE_JOB_MESSAGES, RunnerGroup, RunnerReference, RunnerScaleSet, RunnerScaleSetMessage,
    RunnerScaleSetSession, Statistics,
};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use time::OffsetDateTime;
use tokio::sync::watch;
use tokio::time::{Duration, Instant};

/// At most this many job messages go into one message (spec §7.6).
pub const MAX_BATCH: usize = 50;
/// An assigned job is re-queued at most this many times before it is cancelled for good.
pub const MAX_REASSIGN: u32 = 3;

/// Where a job is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum JobState {
    /// Waiting for a matching scale set (or, in offer mode, offered and not yet acquired).
    Queued,
    /// Assigned to a scale set, waiting for one of its runners.
    Assigned,
    /// Running on a runner.
    Running,
    /// Finished (`result` says how).
    Completed,
    /// Its runner vanished while running it.
    Lost,
}

/// A job as the control API shows it.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct JobView {
    pub runner_request_id: i64,
    pub job_id: String,
    pub display_name: String,
    pub repository: String,
    pub labels: Vec<String>,
    pub state: JobState,
    pub result: Option<String>,
    pub scale_set_id: Option<i64>,
    pub runner_id: Option<i64>,
    pub runner_name: Option<String>,
    /// How many times the job was handed to a runner (more than 1 would be a bug).
    pub runs: u32,
    /// How many times the service cancelled an assignment that no runner took.
    pub reassignments: u32,
    #[serde(with = "time::serde::rfc3339")]
    pub queue_time: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339::option")]
    pub runner_assign_time: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub finish_time: Option<OffsetDateTime>,
    pub spec: JobSpec,
}

/// A runner as the control API shows it.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RunnerView {
    pub id: i64,
    pub name: String,
    pub scale_set_id: i64,
    pub online: bool,
    pub job: Option<i64>,
}

/// A session as the control API shows it.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SessionView {
    pub session_id: String,
    pub scale_set_id: i64,
    pub owner_name: String,
}

/// Counts for a quick look.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Summary {
    pub scale_sets: usize,
    pub sessions: usize,
    pub runners: usize,
    pub jobs: BTreeMap<String, usize>,
}

/// What the control API queues.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct QueueJobs {
    pub count: u32,
    pub labels: Vec<String>,
    pub display_name: String,
    /// `owner/repo`.
    pub repository: String,
    pub workflow_ref: String,
    pub event_name: String,
    /// Overrides `spec.durationMs` when set.
    pub duration_ms: Option<u64>,
    pub spec: JobSpec,
}

#[derive(Debug)]
struct Job {
    request_id: i64,
    job_id: String,
    display_name: String,
    owner: String,
    repo: String,
    workflow_ref: String,
    event_name: String,
    workflow_run_id: i64,
    labels: Vec<String>,
    spec: JobSpec,
    state: JobState,
    result: Option<String>,
    /// The scale set it is assigned to (or was, when finished).
    scale_set_id: Option<i64>,
    /// Offer mode: the scale sets it is offered to.
    offered_to: Vec<i64>,
    runner_id: Option<i64>,
    runner_name: Option<String>,
    runs: u32,
    reassignments: u32,
    assigned_at: Instant,
    queue_time: OffsetDateTime,
    scale_set_assign_time: Option<OffsetDateTime>,
    runner_assign_time: Option<OffsetDateTime>,
    finish_time: Option<OffsetDateTime>,
    log: Vec<LogLine>,
}

impl Job {
    fn base(&self) -> JobMessageBase {
        JobMessageBase {
            message_type: String::new(),
            runner_request_id: self.request_id,
            repository_name: self.repo.clone(),
            owner_name: self.owner.clone(),
            job_id: self.job_id.clone(),
            job_workflow_ref: self.workflow_ref.clone(),
            job_display_name: self.display_name.clone(),
            workflow_run_id: self.workflow_run_id,
            event_name: self.event_name.clone(),
            request_labels: self.labels.clone(),
            queue_time: Some(self.queue_time),
            scale_set_assign_time: self.scale_set_assign_time,
            runner_assign_time: self.runner_assign_time,
            finish_time: self.finish_time,
        }
    }

    fn view(&self) -> JobView {
        JobView {
            runner_request_id: self.request_id,
            job_id: self.job_id.clone(),
            display_name: self.display_name.clone(),
            repository: format!("{}/{}", self.owner, self.repo),
            labels: self.labels.clone(),
            state: self.state,
            result: self.result.clone(),
            scale_set_id: self.scale_set_id,
            runner_id: self.runner_id,
            runner_name: self.runner_name.clone(),
            runs: self.runs,
            reassignments: self.reassignments,
            queue_time: self.queue_time,
            runner_assign_time: self.runner_assign_time,
            finish_time: self.finish_time,
            spec: self.spec.clone(),
        }
    }
}

#[derive(Debug)]
struct QueuedMessage {
    jobs: Vec<JobMessage>,
    /// Once handed out a message is frozen: redeliveries carry the same job messages.
    delivered: bool,
}

#[derive(Debug)]
struct ScaleSet {
    set: RunnerScaleSet,
    messages: BTreeMap<i64, QueuedMessage>,
    next_message_id: i64,
    changes: watch::Sender<u64>,
}

#[derive(Debug)]
struct Session {
    id: String,
    scale_set_id: i64,
    owner: String,
    mq_token: String,
    mq_expires: Instant,
    last_seen: Instant,
}

#[derive(Debug)]
struct Runner {
    id: i64,
    name: String,
    scale_set_id: i64,
    token: String,
    online: bool,
    job: Option<i64>,
    last_seen: Instant,
}

/// Who a bearer token belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenOwner {
    Pat,
    Installation(i64),
    Registration,
    Admin,
    Mq { session_id: String, scale_set_id: i64 },
    Runner(i64),
    Unknown,
}

impl TokenOwner {
    pub fn kind(&self) -> &'static str {
        match self {
            TokenOwner::Pat => "pat",
            TokenOwner::Installation(_) => "installation",
            TokenOwner::Registration => "registration",
            TokenOwner::Admin => "admin",
            TokenOwner::Mq { .. } => "mq",
            TokenOwner::Runner(_) => "runner",
            TokenOwner::Unknown => "unknown",
        }
    }
}

/// The whole simulated world. Guarded by one mutex in [`crate::Sim`].
#[derive(Debug)]
pub struct State {
    pub settings: SimSettings,
    rng: StdRng,
    /// `http(s)://127.0.0.1:PORT`, known once the server is bound.
    pub base_url: String,
    /// `tenant/<n>`: the Actions service lives under `/{tenant}/`.
    pub tenant: String,
    pub pats: Vec<String>,
    pub apps: Vec<crate::auth::App>,
    installation_tokens: HashMap<String, (i64, Instant)>,
    registration_tokens: HashMap<String, (String, Instant)>,
    admin_tokens: HashMap<String, Instant>,
    pub runner_groups: Vec<RunnerGroup>,
    scale_sets: BTreeMap<i64, ScaleSet>,
    next_scale_set_id: i64,
    sessions: HashMap<String, Session>,
    runners: BTreeMap<i64, Runner>,
    next_runner_id: i64,
    jobs: BTreeMap<i64, Job>,
    next_request_id: i64,
    next_run_id: i64,
    /// Bumped whenever a job may have become available to a runner.
    pub runner_changes: watch::Sender<u64>,
}

fn now() -> OffsetDateTime {
    OffsetDateTime::now_utc()
}

fn bump(tx: &watch::Sender<u64>) {
    tx.send_modify(|v| *v = v.wrapping_add(1));
}

fn not_found_scale_set(id: i64) -> ApiError {
    ApiError::exception(
        StatusCode::NOT_FOUND,
        exc::SCALE_SET_NOT_FOUND,
        format!("The runner scale set with id {id} does not exist."),
    )
}

impl State {
    pub fn new(settings: SimSettings, seed: u64) -> Self {
        let (runner_changes, _) = watch::channel(0);
        Self {
            settings,
            rng: StdRng::seed_from_u64(seed),
            base_url: String::new(),
            tenant: "tenant/123".into(),
            pats: Vec::new(),
            apps: Vec::new(),
            installation_tokens: HashMap::new(),
            registration_tokens: HashMap::new(),
            admin_tokens: HashMap::new(),
            runner_groups: vec![RunnerGroup {
                id: 1,
                name: "Default".into(),
                size: 0,
                is_default_group: true,
            }],
            scale_sets: BTreeMap::new(),
            next_scale_set_id: 1,
            sessions: HashMap::new(),
            runners: BTreeMap::new(),
            next_runner_id: 1,
            jobs: BTreeMap::new(),
            next_request_id: 1,
            next_run_id: 9000,
            runner_changes,
        }
    }

    /// `{A}`: the Actions service base handed out by runner-registration.
    pub fn actions_base(&self) -> String {
        format!("{}/{}/", self.base_url, self.tenant)
    }

    // ---- tokens -------------------------------------------------------------------------------

    fn random_token(&mut self, prefix: &str, len: usize) -> String {
        const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
        let body: String = (0..len)
            .map(|_| ALPHABET[self.rng.random_range(0..ALPHABET.len())] as char)
            .collect();
        format!("{prefix}{body}")
    }

    /// A UUID drawn from the seeded generator, so runs with the same seed give the same ids.
    pub fn uuid(&mut self) -> String {
        let bytes: [u8; 16] = self.rng.random();
        uuid::Builder::from_random_bytes(bytes).into_uuid().to_string()
    }

    pub fn issue_installation_token(&mut self, installation_id: i64) -> (String, OffsetDateTime) {
        let token = self.random_token("ghs_", 36);
        self.installation_tokens.insert(
            token.clone(),
            (installation_id, Instant::now() + Duration::from_secs(3600)),
        );
        (token, now() + time::Duration::hours(1))
    }

    /// Registration tokens remember the scope path they were issued for (lower-case, e.g. `my-org`).
    pub fn issue_registration_token(&mut self, scope: &str) -> (String, OffsetDateTime) {
        let token = self.random_token("", 29).to_uppercase();
        self.registration_tokens.insert(
            token.clone(),
            (scope.to_lowercase(), Instant::now() + Duration::from_secs(3600)),
        );
        (token, now() + time::Duration::hours(1))
    }

    pub fn registration_scope(&self, token: &str) -> Option<String> {
        self.registration_tokens
            .get(token)
            .filter(|(_, exp)| *exp > Instant::now())
            .map(|(scope, _)| scope.clone())
    }

    pub fn remember_admin_token(&mut self, token: &str, expires: Instant) {
        self.admin_tokens.insert(token.to_owned(), expires);
    }

    /// Makes every admin token (or every message-queue token) invalid from now on.
    pub fn expire_tokens(&mut self, admin: bool, mq: bool) {
        let past = Instant::now() - Duration::from_millis(1);
        if admin {
            self.admin_tokens.values_mut().for_each(|e| *e = past);
        }
        if mq {
            self.sessions.values_mut().for_each(|s| s.mq_expires = past);
        }
    }

    /// Whose token this is (expired tokens are unknown).
    pub fn token_owner(&self, token: &str) -> TokenOwner {
        let now = Instant::now();
        if self.pats.iter().any(|p| p == token) {
            return TokenOwner::Pat;
        }
        if let Some((id, exp)) = self.installation_tokens.get(token) {
            return if *exp > now {
                TokenOwner::Installation(*id)
            } else {
                TokenOwner::Unknown
            };
        }
        if self.registration_tokens.get(token).is_some_and(|(_, exp)| *exp > now) {
            return TokenOwner::Registration;
        }
        if self.admin_tokens.get(token).is_some_and(|exp| *exp > now) {
            return TokenOwner::Admin;
        }
        if let Some(s) = self.sessions.values().find(|s| s.mq_token == token) {
            return if s.mq_expires > now {
                TokenOwner::Mq {
                    session_id: s.id.clone(),
                    scale_set_id: s.scale_set_id,
                }
            } else {
                TokenOwner::Unknown
            };
        }
        if let Some(r) = self.runners.values().find(|r| r.token == token) {
            return TokenOwner::Runner(r.id);
        }
        TokenOwner::Unknown
    }

    // ---- runner groups and scale sets -----------------------------------------------------------

    pub fn runner_group_by_name(&self, name: &str) -> Vec<RunnerGroup> {
        self.runner_groups
            .iter()
            .filter(|g| g.name.eq_ignore_ascii_case(name))
            .cloned()
            .collect()
    }

    pub fn add_runner_group(&mut self, name: &str) -> RunnerGroup {
        if let Some(g) = self.runner_groups.iter().find(|g| g.name.eq_ignore_ascii_case(name)) {
            return g.clone();
        }
        let id = self.runner_groups.iter().map(|g| g.id).max().unwrap_or(0) + 1;
        let group = RunnerGroup {
            id,
            name: name.to_owned(),
            size: 0,
            is_default_group: false,
        };
        self.runner_groups.push(group.clone());
        group
    }

    fn group_name(&self, id: i64) -> Option<String> {
        self.runner_groups.iter().find(|g| g.id == id).map(|g| g.name.clone())
    }

    fn with_stats(&self, set: &RunnerScaleSet) -> RunnerScaleSet {
        let mut out = set.clone();
        out.statistics = Some(self.statistics(set.id));
        out
    }

    pub fn scale_sets_by_name(&self, group_id: i64, name: &str) -> Vec<RunnerScaleSet> {
        self.scale_sets
            .values()
            .filter(|s| s.set.name == name && (group_id == 0 || s.set.runner_group_id == group_id))
            .map(|s| self.with_stats(&s.set))
            .collect()
    }

    pub fn scale_set(&self, id: i64) -> Result<RunnerScaleSet, ApiError> {
        let s = self.scale_sets.get(&id).ok_or_else(|| not_found_scale_set(id))?;
        Ok(self.with_stats(&s.set))
    }

    pub fn all_scale_sets(&self) -> Vec<RunnerScaleSet> {
        self.scale_sets.values().map(|s| self.with_stats(&s.set)).collect()
    }

    fn check_group(&self, id: i64) -> Result<String, ApiError> {
        self.group_name(id).ok_or_else(|| {
            ApiError::exception(
                StatusCode::NOT_FOUND,
                exc::RUNNER_GROUP_NOT_FOUND,
                format!("Runner group with id {id} was not found."),
            )
        })
    }

    fn normalise_labels(name: &str, labels: &[Label]) -> Vec<Label> {
        let mut out: Vec<Label> = Vec::new();
        for l in labels {
            if l.name.is_empty() || out.iter().any(|o| o.name.eq_ignore_ascii_case(&l.name)) {
                continue;
            }
            let kind = if l.kind.is_empty() {
                "System".to_owned()
            } else {
                l.kind.clone()
            };
            out.push(Label {
                kind,
                name: l.name.clone(),
            });
        }
        if out.is_empty() {
            out.push(Label::system(name));
        }
        out
    }

    pub fn create_scale_set(&mut self, req: RunnerScaleSet) -> Result<RunnerScaleSet, ApiError> {
        if req.name.trim().is_empty() {
            return Err(ApiError::exception(
                StatusCode::BAD_REQUEST,
                exc::ARGUMENT,
                "Value cannot be null. (Parameter 'name')",
            ));
        }
        let group_id = if req.runner_group_id == 0 {
            1
        } else {
            req.runner_group_id
        };
        let group_name = self.check_group(group_id)?;
        if self
            .scale_sets
            .values()
            .any(|s| s.set.name.eq_ignore_ascii_case(&req.name) && s.set.runner_group_id == group_id)
        {
            return Err(ApiError::exception(
                StatusCode::CONFLICT,
                exc::SCALE_SET_EXISTS,
                format!(
                    "A runner scale set named '{}' already exists in runner group {group_id}.",
                    req.name
                ),
            ));
        }
        let id = self.next_scale_set_id;
        self.next_scale_set_id += 1;
        let set = RunnerScaleSet {
            id,
            name: req.name.clone(),
            runner_group_id: group_id,
            runner_group_name: group_name,
            labels: Self::normalise_labels(&req.name, &req.labels),
            runner_setting: req.runner_setting.clone(),
            created_on: Some(now()),
            runner_jit_config_url: format!(
                "{}_apis/runtime/runnerscalesets/{id}/generatejitconfig",
                self.actions_base()
            ),
            statistics: None,
        };
        let (changes, _) = watch::channel(0);
        self.scale_sets.insert(
            id,
            ScaleSet {
                set: set.clone(),
                messages: BTreeMap::new(),
                next_message_id: self.settings.first_message_id,
                changes,
            },
        );
        self.place_queued_jobs();
        Ok(self.with_stats(&set))
    }

    pub fn update_scale_set(&mut self, id: i64, patch: RunnerScaleSet) -> Result<RunnerScaleSet, ApiError> {
        if patch.runner_group_id != 0 {
            let name = self.check_group(patch.runner_group_id)?;
            let s = self.scale_sets.get_mut(&id).ok_or_else(|| not_found_scale_set(id))?;
            s.set.runner_group_id = patch.runner_group_id;
            s.set.runner_group_name = name;
        }
        let s = self.scale_sets.get_mut(&id).ok_or_else(|| not_found_scale_set(id))?;
        if !patch.name.is_empty() {
            s.set.name = patch.name.clone();
        }
        if !patch.labels.is_empty() {
            s.set.labels = Self::normalise_labels(&s.set.name, &patch.labels);
        }
        if patch.runner_setting.disable_update.is_some() {
            s.set.runner_setting.disable_update = patch.runner_setting.disable_update;
        }
        let set = s.set.clone();
        self.place_queued_jobs();
        Ok(self.with_stats(&set))
    }

    /// Deletes a scale set. Refused while one of its runners runs a job; assigned jobs go back to
    /// the queue; its runners and sessions go away.
    pub fn delete_scale_set(&mut self, id: i64) -> Result<(), ApiError> {
        if !self.scale_sets.contains_key(&id) {
            return Err(not_found_scale_set(id));
        }
        if self
            .jobs
            .values()
            .any(|j| j.state == JobState::Running && j.scale_set_id == Some(id))
        {
            return Err(ApiError::exception(
                StatusCode::BAD_REQUEST,
                exc::SCALE_SET_IN_USE,
                format!("The runner scale set {id} has jobs running and cannot be deleted."),
            ));
        }
        self.scale_sets.remove(&id);
        self.sessions.retain(|_, s| s.scale_set_id != id);
        self.runners.retain(|_, r| r.scale_set_id != id);
        for job in self.jobs.values_mut() {
            job.offered_to.retain(|s| *s != id);
            if job.state == JobState::Assigned && job.scale_set_id == Some(id) {
                job.state = JobState::Queued;
                job.scale_set_id = None;
                job.scale_set_assign_time = None;
            }
        }
        self.place_queued_jobs();
        bump(&self.runner_changes);
        Ok(())
    }

    /// Statistics of a scale set, counted from job and runner state (spec §7.4).
    pub fn statistics(&self, id: i64) -> Statistics {
        let mut st = Statistics::default();
        for j in self.jobs.values() {
            match j.state {
                JobState::Queued if j.offered_to.contains(&id) => st.total_available_jobs += 1,
                JobState::Assigned if j.scale_set_id == Some(id) => st.total_assigned_jobs += 1,
                JobState::Running if j.scale_set_id == Some(id) => {
                    st.total_assigned_jobs += 1;
                    st.total_running_jobs += 1;
                }
                _ => {}
            }
        }
        for r in self.runners.values().filter(|r| r.scale_set_id == id) {
            st.total_registered_runners += 1;
            if r.job.is_some() {
                st.total_busy_runners += 1;
            }
        }
        st.total_idle_runners = st.total_registered_runners - st.total_busy_runners;
        st
    }

    // ---- messages -------------------------------------------------------------------------------

    fn push_message(&mut self, scale_set_id: i64, msg: JobMessage) {
        let Some(s) = self.scale_sets.get_mut(&scale_set_id) else {
            return;
        };
        let open = s
            .messages
            .iter_mut()
            .next_back()
            .filter(|(_, m)| !m.delivered && m.jobs.len() < MAX_BATCH);
        match open {
            Some((_, m)) => m.jobs.push(msg),
            None => {
                let id = s.next_message_id;
                s.next_message_id += 1;
                s.messages.insert(
                    id,
                    QueuedMessage {
                        jobs: vec![msg],
                        delivered: false,
                    },
                );
            }
        }
        bump(&s.changes);
    }

    /// A receiver that changes whenever the scale set's queue does.
    pub fn queue_changes(&self, scale_set_id: i64) -> Option<watch::Receiver<u64>> {
        self.scale_sets.get(&scale_set_id).map(|s| s.changes.subscribe())
    }

    /// The first undeleted message after `last_message_id`, if any, with current statistics.
    pub fn next_message(&mut self, scale_set_id: i64, last_message_id: i64) -> Option<RunnerScaleSetMessage> {
        let stats = self.statistics(scale_set_id);
        let s = self.scale_sets.get_mut(&scale_set_id)?;
        let (id, m) = s.messages.range_mut(last_message_id.saturating_add(1)..).next()?;
        m.delivered = true;
        Some(RunnerScaleSetMessage {
            message_id: *id,
            message_type: MESSAGE_TYPE_JOB_MESSAGES.into(),
            statistics: Some(stats),
            body: rarc_actions::types::encode_job_messages(&m.jobs),
        })
    }

    pub fn delete_message(&mut self, scale_set_id: i64, message_id: i64) -> Result<(), ApiError> {
        let s = self
            .scale_sets
            .get_mut(&scale_set_id)
            .ok_or_else(|| not_found_scale_set(scale_set_id))?;
        s.messages.remove(&message_id).map(|_| ()).ok_or_else(|| {
            ApiError::exception(
                StatusCode::NOT_FOUND,
                exc::MESSAGE_NOT_FOUND,
                format!("Message {message_id} was not found."),
            )
        })
    }

    // ---- sessions -------------------------------------------------------------------------------

    fn session_alive(&self, s: &Session, ttl: Duration) -> bool {
        s.last_seen + ttl > Instant::now()
    }

    fn queue_url(&self, scale_set_id: i64, session_id: &str) -> String {
        match self.settings.broker {
            BrokerStyle::Broker => format!("{}/broker/scalesets/message", self.base_url),
            BrokerStyle::Legacy => format!(
                "{}_apis/runtime/runnerscalesets/{scale_set_id}/messages?sessionId={session_id}",
                self.actions_base()
            ),
        }
    }

    fn session_view(&self, s: &Session) -> Result<RunnerScaleSetSession, ApiError> {
        Ok(RunnerScaleSetSession {
            session_id: s.id.clone(),
            owner_name: s.owner.clone(),
            runner_scale_set: Some(self.scale_set(s.scale_set_id)?),
            message_queue_url: self.queue_url(s.scale_set_id, &s.id),
            message_queue_access_token: Secret::new(s.mq_token.clone()),
            statistics: Some(self.statistics(s.scale_set_id)),
        })
    }

    /// Opens the one session of a scale set; 409 while another session is alive. A session nobody
    /// polled for `session_ttl` has expired and no longer conflicts.
    pub fn create_session(
        &mut self,
        scale_set_id: i64,
        owner: &str,
        session_ttl: Duration,
    ) -> Result<RunnerScaleSetSession, ApiError> {
        if !self.scale_sets.contains_key(&scale_set_id) {
            return Err(not_found_scale_set(scale_set_id));
        }
        let stale: Vec<String> = self
            .sessions
            .values()
            .filter(|s| s.scale_set_id == scale_set_id && !self.session_alive(s, session_ttl))
            .map(|s| s.id.clone())
            .collect();
        for id in stale {
            self.sessions.remove(&id);
        }
        if self.sessions.values().any(|s| s.scale_set_id == scale_set_id) {
            let name = self
                .scale_sets
                .get(&scale_set_id)
                .map(|s| s.set.name.clone())
                .unwrap_or_default();
            return Err(ApiError::exception(
                StatusCode::CONFLICT,
                exc::SESSION_CONFLICT,
                format!("The actions runner scaleset {name} already has an active session."),
            ));
        }
        let id = self.uuid();
        let mq_token = self.random_token("mq_", 40);
        let session = Session {
            id: id.clone(),
            scale_set_id,
            owner: owner.to_owned(),
            mq_token,
            mq_expires: Instant::now() + Duration::from_secs(self.settings.mq_token_ttl_secs),
            last_seen: Instant::now(),
        };
        let view = self.session_view(&session)?;
        self.sessions.insert(id, session);
        self.place_queued_jobs();
        Ok(view)
    }

    fn session_mut(&mut self, scale_set_id: i64, session_id: &str) -> Option<&mut Session> {
        self.sessions
            .get_mut(session_id)
            .filter(|s| s.scale_set_id == scale_set_id)
    }

    pub fn refresh_session(&mut self, scale_set_id: i64, session_id: &str) -> Result<RunnerScaleSetSession, ApiError> {
        let token = self.random_token("mq_", 40);
        let ttl = Duration::from_secs(self.settings.mq_token_ttl_secs);
        let s = self.session_mut(scale_set_id, session_id).ok_or_else(|| {
            ApiError::exception(
                StatusCode::NOT_FOUND,
                exc::RUNNER_ADMIN,
                "runner referenced a session ID that doesn't exist in redis",
            )
        })?;
        s.mq_token = token;
        s.mq_expires = Instant::now() + ttl;
        s.last_seen = Instant::now();
        let id = s.id.clone();
        let s = self.sessions.get(&id).ok_or_else(ApiError::unauthorized)?;
        self.session_view(s)
    }

    pub fn delete_session(&mut self, scale_set_id: i64, session_id: &str) -> Result<(), ApiError> {
        if self.session_mut(scale_set_id, session_id).is_none() {
            return Err(ApiError::exception(
                StatusCode::BAD_REQUEST,
                exc::SESSION_EXPIRED,
                format!("The session identifier '{session_id}' is not valid."),
            ));
        }
        self.sessions.remove(session_id);
        Ok(())
    }

    /// Drops a session server-side (as when it expires), without the owner knowing.
    pub fn drop_session(&mut self, session_id: &str) -> bool {
        self.sessions.remove(session_id).is_some()
    }

    pub fn touch_session(&mut self, session_id: &str) {
        if let Some(s) = self.sessions.get_mut(session_id) {
            s.last_seen = Instant::now();
        }
    }

    pub fn sessions(&self) -> Vec<SessionView> {
        let mut out: Vec<SessionView> = self
            .sessions
            .values()
            .map(|s| SessionView {
                session_id: s.id.clone(),
                scale_set_id: s.scale_set_id,
                owner_name: s.owner.clone(),
            })
            .collect();
        out.sort_by_key(|s| s.scale_set_id);
        out
    }

    // ---- jobs -----------------------------------------------------------------------------------

    pub fn queue_jobs(&mut self, req: &QueueJobs) -> Result<Vec<i64>, ApiError> {
        if req.count == 0 {
            return Err(ApiError::control("field `count`: must be at least 1"));
        }
        if req.count > 100_000 {
            return Err(ApiError::control("field `count`: at most 100000 jobs per request"));
        }
        if req.labels.is_empty() || req.labels.iter().any(|l| l.trim().is_empty()) {
            return Err(ApiError::control(
                "field `labels`: at least one non-empty runs-on label is required",
            ));
        }
        let repository = if req.repository.is_empty() {
            "my-org/my-repo"
        } else {
            req.repository.as_str()
        };
        let Some((owner, repo)) = repository
            .split_once('/')
            .filter(|(o, r)| !o.is_empty() && !r.is_empty() && !r.contains('/'))
        else {
            return Err(ApiError::control(format!(
                "field `repository`: expected `owner/repo`, got `{repository}`"
            )));
        };
        for (i, step) in req.spec.steps.iter().enumerate() {
            if step.run.is_some() == step.uses.is_some() {
                return Err(ApiError::control(format!(
                    "field `spec.steps[{i}]`: exactly one of `run` or `uses` is required"
                )));
            }
            if let Some(uses) = &step.uses
                && !uses.starts_with("docker://")
            {
                return Err(ApiError::control(format!(
                    "field `spec.steps[{i}].uses`: only `docker://image` actions are simulated"
                )));
            }
        }
        let mut spec = req.spec.clone();
        if let Some(ms) = req.duration_ms {
            spec.duration_ms = ms;
        }
        let run_id = self.next_run_id;
        self.next_run_id += 1;
        let mut ids = Vec::with_capacity(req.count as usize);
        for n in 0..req.count {
            let request_id = self.next_request_id;
            self.next_request_id += 1;
            let display_name = if req.display_name.is_empty() {
                format!("job-{request_id}")
            } else if req.count > 1 {
                format!("{} ({})", req.display_name, n + 1)
            } else {
                req.display_name.clone()
            };
            let job = Job {
                request_id,
                job_id: self.uuid(),
                display_name,
                owner: owner.to_owned(),
                repo: repo.to_owned(),
                workflow_ref: if req.workflow_ref.is_empty() {
                    format!("{owner}/{repo}/.github/workflows/ci.yml@refs/heads/main")
                } else {
                    req.workflow_ref.clone()
                },
                event_name: if req.event_name.is_empty() {
                    "push".into()
                } else {
                    req.event_name.clone()
                },
                workflow_run_id: run_id,
                labels: req.labels.clone(),
                spec: spec.clone(),
                state: JobState::Queued,
                result: None,
                scale_set_id: None,
                offered_to: Vec::new(),
                runner_id: None,
                runner_name: None,
                runs: 0,
                reassignments: 0,
                assigned_at: Instant::now(),
                queue_time: now(),
                scale_set_assign_time: None,
                runner_assign_time: None,
                finish_time: None,
                log: Vec::new(),
            };
            self.jobs.insert(request_id, job);
            ids.push(request_id);
        }
        self.place_queued_jobs();
        Ok(ids)
    }

    fn matching_scale_sets(&self, labels: &[String]) -> Vec<i64> {
        let mut ids: Vec<i64> = self
            .scale_sets
            .values()
            .filter(|s| {
                labels
                    .iter()
                    .all(|l| s.set.labels.iter().any(|sl| sl.name.eq_ignore_ascii_case(l)))
            })
            .map(|s| s.set.id)
            .collect();
        // Prefer scale sets whose listener is connected.
        ids.sort_by_key(|id| (!self.sessions.values().any(|s| s.scale_set_id == *id), *id));
        ids
    }

    /// Assigns (or, in offer mode, offers) every queued job to the scale sets that match it.
    fn place_queued_jobs(&mut self) {
        let queued: Vec<i64> = self
            .jobs
            .values()
            .filter(|j| j.state == JobState::Queued)
            .map(|j| j.request_id)
            .collect();
        for id in queued {
            let Some(labels) = self.jobs.get(&id).map(|j| j.labels.clone()) else {
                continue;
            };
            let matches = self.matching_scale_sets(&labels);
            match self.settings.mode {
                JobMode::Assign => {
                    if let Some(&set) = matches.first() {
                        self.assign(id, set);
                    }
                }
                JobMode::Offer => {
                    let base = self.actions_base();
                    let fresh: Vec<i64> = match self.jobs.get(&id) {
                        Some(j) => matches.iter().copied().filter(|s| !j.offered_to.contains(s)).collect(),
                        None => continue,
                    };
                    for set in fresh {
                        if let Some(job) = self.jobs.get_mut(&id) {
                            job.offered_to.push(set);
                            let msg = JobMessage::Available(JobAvailable {
                                base: job.base(),
                                acquire_job_url: format!("{base}_apis/runtime/runnerscalesets/{set}/acquirejobs"),
                            });
                            self.push_message(set, msg);
                        }
                    }
                }
            }
        }
    }

    fn assign(&mut self, request_id: i64, scale_set_id: i64) {
        let Some(job) = self.jobs.get_mut(&request_id) else {
            return;
        };
        job.state = JobState::Assigned;
        job.scale_set_id = Some(scale_set_id);
        job.offered_to.clear();
        job.assigned_at = Instant::now();
        job.scale_set_assign_time = Some(now());
        job.runner_assign_time = None;
        job.finish_time = None;
        let msg = JobMessage::Assigned(JobAssigned { base: job.base() });
        self.push_message(scale_set_id, msg);
        bump(&self.runner_changes);
    }

    /// acquirejobs: takes the offered jobs among `ids` for this scale set; returns those acquired.
    pub fn acquire_jobs(&mut self, scale_set_id: i64, ids: &[i64]) -> Vec<i64> {
        let mut acquired = Vec::new();
        for id in ids {
            let Some(job) = self.jobs.get(id) else { continue };
            match job.state {
                JobState::Queued if job.offered_to.contains(&scale_set_id) => {
                    self.assign(*id, scale_set_id);
                    acquired.push(*id);
                }
                JobState::Assigned | JobState::Running if job.scale_set_id == Some(scale_set_id) => acquired.push(*id),
                _ => {}
            }
        }
        acquired
    }

    pub fn acquirable_jobs(&self, scale_set_id: i64) -> Vec<i64> {
        self.jobs
            .values()
            .filter(|j| j.state == JobState::Queued && j.offered_to.contains(&scale_set_id))
            .map(|j| j.request_id)
            .collect()
    }

    pub fn jobs(&self) -> Vec<JobView> {
        self.jobs.values().map(Job::view).collect()
    }

    pub fn job(&self, id: i64) -> Option<JobView> {
        self.jobs.get(&id).map(Job::view)
    }

    pub fn job_log(&self, id: i64) -> Option<Vec<LogLine>> {
        self.jobs.get(&id).map(|j| j.log.clone())
    }

    pub fn summary(&self) -> Summary {
        let mut jobs = BTreeMap::new();
        for j in self.jobs.values() {
            let key = serde_json::to_value(j.state)
                .ok()
                .and_then(|v| v.as_str().map(str::to_owned))
                .unwrap_or_default();
            *jobs.entry(key).or_insert(0) += 1;
        }
        Summary {
            scale_sets: self.scale_sets.len(),
            sessions: self.sessions.len(),
            runners: self.runners.len(),
            jobs,
        }
    }

    /// Replaces the run-time settings; jobs waiting in the queue are placed again under them (a
    /// change of `mode` takes effect at once).
    pub fn set_settings(&mut self, settings: SimSettings) {
        self.settings = settings;
        self.place_queued_jobs();
    }

    /// Time-driven rules: re-assign jobs no runner took, mark jobs lost whose runner went silent.
    pub fn tick(&mut self) {
        let now_i = Instant::now();
        if self.settings.reassign_after_ms > 0 {
            let after = Duration::from_millis(self.settings.reassign_after_ms);
            let overdue: Vec<i64> = self
                .jobs
                .values()
                .filter(|j| j.state == JobState::Assigned && j.assigned_at + after * (j.reassignments + 1) <= now_i)
                .map(|j| j.request_id)
                .collect();
            let requeue = !overdue.is_empty();
            for id in overdue {
                let Some(job) = self.jobs.get_mut(&id) else { continue };
                let set = job.scale_set_id;
                job.reassignments += 1;
                let mut done = JobCompleted {
                    base: job.base(),
                    result: "canceled".into(),
                    runner_id: 0,
                    runner_name: String::new(),
                };
                done.base.runner_assign_time = None;
                done.base.finish_time = Some(now());
                if job.reassignments > MAX_REASSIGN {
                    job.state = JobState::Completed;
                    job.result = Some("canceled".into());
                    job.finish_time = done.base.finish_time;
                } else {
                    job.state = JobState::Queued;
                    job.scale_set_id = None;
                    job.assigned_at = now_i;
                }
                if let Some(set) = set {
                    self.push_message(set, JobMessage::Completed(done));
                }
            }
            if requeue {
                self.place_queued_jobs();
            }
        }
        if self.settings.lost_after_ms > 0 {
            let after = Duration::from_millis(self.settings.lost_after_ms);
            let silent: Vec<i64> = self
                .runners
                .values()
                .filter(|r| r.job.is_some() && r.last_seen + after <= now_i)
                .map(|r| r.id)
                .collect();
            for runner_id in silent {
                self.finish_job_of(runner_id, JobState::Lost, "failed");
                if let Some(r) = self.runners.get_mut(&runner_id) {
                    r.online = false;
                }
            }
        }
    }

    // ---- runners --------------------------------------------------------------------------------

    pub fn generate_jit_config(
        &mut self,
        scale_set_id: i64,
        name: &str,
        work_folder: &str,
    ) -> Result<JitRunnerConfig, ApiError> {
        if !self.scale_sets.contains_key(&scale_set_id) {
            return Err(not_found_scale_set(scale_set_id));
        }
        if name.trim().is_empty() {
            return Err(ApiError::exception(
                StatusCode::BAD_REQUEST,
                exc::ARGUMENT,
                "Value cannot be null. (Parameter 'name')",
            ));
        }
        if self.runners.values().any(|r| r.name.eq_ignore_ascii_case(name)) {
            return Err(ApiError::exception(
                StatusCode::CONFLICT,
                exc::AGENT_EXISTS,
                format!("A runner with the name '{name}' already exists in the runner pool."),
            ));
        }
        let id = self.next_runner_id;
        self.next_runner_id += 1;
        let token = self.random_token("rt_", 40);
        let cfg = JitConfig {
            settings: RunnerSettings {
                agent_id: id,
                agent_name: name.to_owned(),
                pool_id: 0,
                pool_name: String::new(),
                server_url: self.actions_base(),
                git_hub_url: self.base_url.clone(),
                work_folder: if work_folder.is_empty() {
                    "_work".into()
                } else {
                    work_folder.to_owned()
                },
                ephemeral: true,
                disable_update: true,
                runner_scale_set_id: scale_set_id,
            },
            token: Secret::new(token.clone()),
        };
        self.runners.insert(
            id,
            Runner {
                id,
                name: name.to_owned(),
                scale_set_id,
                token,
                online: false,
                job: None,
                last_seen: Instant::now(),
            },
        );
        Ok(JitRunnerConfig {
            runner: self.runner_ref(id)?,
            encoded_jit_config: cfg.encode(),
        })
    }

    fn runner_ref(&self, id: i64) -> Result<RunnerReference, ApiError> {
        let r = self.runners.get(&id).ok_or_else(|| {
            ApiError::exception(
                StatusCode::NOT_FOUND,
                exc::AGENT_NOT_FOUND,
                format!("Runner {id} was not found."),
            )
        })?;
        Ok(RunnerReference {
            id: r.id,
            name: r.name.clone(),
            runner_scale_set_id: r.scale_set_id,
            status: Some(if r.online { "online" } else { "offline" }.into()),
            busy: Some(r.job.is_some()),
        })
    }

    pub fn runner(&self, id: i64) -> Result<RunnerReference, ApiError> {
        self.runner_ref(id)
    }

    pub fn runners_by_name(&self, name: &str) -> Vec<RunnerReference> {
        self.runners
            .values()
            .filter(|r| r.name.eq_ignore_ascii_case(name))
            .filter_map(|r| self.runner_ref(r.id).ok())
            .collect()
    }

    pub fn runners(&self) -> Vec<RunnerView> {
        self.runners
            .values()
            .map(|r| RunnerView {
                id: r.id,
                name: r.name.clone(),
                scale_set_id: r.scale_set_id,
                online: r.online,
                job: r.job,
            })
            .collect()
    }

    pub fn remove_runner(&mut self, id: i64) -> Result<(), ApiError> {
        let r = self.runners.get(&id).ok_or_else(|| {
            ApiError::exception(
                StatusCode::NOT_FOUND,
                exc::AGENT_NOT_FOUND,
                format!("Runner {id} was not found."),
            )
        })?;
        if let Some(job) = r.job {
            return Err(ApiError::exception(
                StatusCode::BAD_REQUEST,
                exc::JOB_STILL_RUNNING,
                format!("Runner {id} is running job {job} and cannot be removed."),
            ));
        }
        self.runners.remove(&id);
        bump(&self.runner_changes);
        Ok(())
    }

    /// Checks a runner-token call: the runner must exist and the token must be its own.
    pub fn authorize_runner(&mut self, id: i64, token: &str) -> Result<(), ApiError> {
        match self.runners.get_mut(&id) {
            None => Err(ApiError::exception(
                StatusCode::NOT_FOUND,
                exc::AGENT_NOT_FOUND,
                format!("Runner {id} was not found."),
            )),
            Some(r) if r.token != token => Err(ApiError::unauthorized()),
            Some(r) => {
                r.last_seen = Instant::now();
                Ok(())
            }
        }
    }

    pub fn runner_online(&mut self, id: i64, online: bool) -> Result<RunnerReference, ApiError> {
        let r = self.runners.get_mut(&id).ok_or_else(ApiError::unauthorized)?;
        r.online = online;
        self.runner_ref(id)
    }

    /// The job for a runner: the one it already has, or the oldest assigned job of its scale set.
    /// Handing out a job starts it (`JobStarted`).
    pub fn take_job(&mut self, runner_id: i64) -> Result<Option<AssignedJob>, ApiError> {
        let r = self.runners.get(&runner_id).ok_or_else(|| {
            ApiError::exception(
                StatusCode::NOT_FOUND,
                exc::AGENT_NOT_FOUND,
                format!("Runner {runner_id} was not found."),
            )
        })?;
        if !r.online {
            return Err(ApiError::exception(
                StatusCode::BAD_REQUEST,
                exc::ARGUMENT,
                "The runner is not online.",
            ));
        }
        let (set, name) = (r.scale_set_id, r.name.clone());
        let job_id = match r.job {
            Some(j) => j,
            None => {
                let Some(j) = self
                    .jobs
                    .values()
                    .find(|j| j.state == JobState::Assigned && j.scale_set_id == Some(set))
                    .map(|j| j.request_id)
                else {
                    return Ok(None);
                };
                let job = self.jobs.get_mut(&j).ok_or_else(ApiError::unauthorized)?;
                job.state = JobState::Running;
                job.runner_id = Some(runner_id);
                job.runner_name = Some(name.clone());
                job.runs += 1;
                job.runner_assign_time = Some(now());
                let msg = JobMessage::Started(JobStarted {
                    base: job.base(),
                    runner_id,
                    runner_name: name,
                });
                if let Some(r) = self.runners.get_mut(&runner_id) {
                    r.job = Some(j);
                }
                self.push_message(set, msg);
                j
            }
        };
        let job = self.jobs.get(&job_id).ok_or_else(ApiError::unauthorized)?;
        Ok(Some(AssignedJob {
            runner_request_id: job.request_id,
            job_id: job.job_id.clone(),
            job_display_name: job.display_name.clone(),
            repository: format!("{}/{}", job.owner, job.repo),
            workflow_run_id: job.workflow_run_id,
            spec: job.spec.clone(),
        }))
    }

    fn runner_job(&self, runner_id: i64, request_id: i64) -> Result<(), ApiError> {
        match self.runners.get(&runner_id).and_then(|r| r.job) {
            Some(j) if j == request_id => Ok(()),
            _ => Err(ApiError::exception(
                StatusCode::NOT_FOUND,
                exc::ARGUMENT,
                format!("Job request {request_id} is not assigned to runner {runner_id}."),
            )),
        }
    }

    /// The runner renews its lock on the job: only checks that the job is its own (being heard
    /// from is recorded by [`State::authorize_runner`]).
    pub fn renew_job(&self, runner_id: i64, request_id: i64) -> Result<(), ApiError> {
        self.runner_job(runner_id, request_id)
    }

    pub fn append_log(&mut self, runner_id: i64, request_id: i64, lines: Vec<LogLine>) -> Result<(), ApiError> {
        self.runner_job(runner_id, request_id)?;
        if let Some(job) = self.jobs.get_mut(&request_id) {
            job.log.extend(lines);
        }
        Ok(())
    }

    pub fn complete_job(&mut self, runner_id: i64, request_id: i64, result: &str) -> Result<(), ApiError> {
        self.runner_job(runner_id, request_id)?;
        let result = match result {
            "succeeded" | "failed" | "canceled" | "skipped" => result,
            other => {
                return Err(ApiError::exception(
                    StatusCode::BAD_REQUEST,
                    exc::ARGUMENT,
                    format!("Unknown job result '{other}'."),
                ));
            }
        };
        self.finish_job_of(runner_id, JobState::Completed, result);
        // Ephemeral runners are removed by the service once their job is done.
        self.runners.remove(&runner_id);
        bump(&self.runner_changes);
        Ok(())
    }

    fn finish_job_of(&mut self, runner_id: i64, state: JobState, result: &str) {
        let Some(request_id) = self.runners.get_mut(&runner_id).and_then(|r| r.job.take()) else {
            return;
        };
        let Some(job) = self.jobs.get_mut(&request_id) else {
            return;
        };
        job.state = state;
        job.result = Some(result.to_owned());
        job.finish_time = Some(now());
        let msg = JobMessage::Completed(JobCompleted {
            base: job.base(),
            result: result.to_owned(),
            runner_id,
            runner_name: job.runner_name.clone().unwrap_or_default(),
        });
        if let Some(set) = job.scale_set_id {
            self.push_message(set, msg);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rarc_actions::types::decode_job_messages;

    fn state(mode: JobMode) -> State {
        let mut s = State::new(
            SimSettings {
                mode,
                ..Default::default()
            },
            7,
        );
        s.base_url = "http://127.0.0.1:1".into();
        s
    }

    fn set(s: &mut State, name: &str) -> i64 {
        s.create_scale_set(RunnerScaleSet {
            name: name.into(),
            ..Default::default()
        })
        .unwrap()
        .id
    }

    fn queue(s: &mut State, n: u32, label: &str) -> Vec<i64> {
        s.queue_jobs(&QueueJobs {
            count: n,
            labels: vec![label.into()],
            ..Default::default()
        })
        .unwrap()
    }

    fn kinds(s: &mut State, set: i64, last: i64) -> (i64, Vec<&'static str>) {
        let m = s.next_message(set, last).unwrap();
        let kinds = decode_job_messages(&m.body)
            .unwrap()
            .iter()
            .map(|j| match j {
                JobMessage::Available(_) => "available",
                JobMessage::Assigned(_) => "assigned",
                JobMessage::Started(_) => "started",
                JobMessage::Completed(_) => "completed",
                JobMessage::Unknown(_) => "unknown",
            })
            .collect();
        (m.message_id, kinds)
    }

    #[test]
    fn assign_mode_lifecycle_emits_messages_and_counts() {
        let mut s = state(JobMode::Assign);
        let id = set(&mut s, "linux");
        let jobs = queue(&mut s, 2, "linux");
        assert_eq!(s.statistics(id).total_assigned_jobs, 2);
        let (m1, k) = kinds(&mut s, id, 0);
        assert_eq!(m1, 100_000_001);
        assert_eq!(k, ["assigned", "assigned"]);
        // Redelivered until deleted; a delivered message is frozen.
        let jit = s.generate_jit_config(id, "r1", "").unwrap();
        s.runner_online(jit.runner.id, true).unwrap();
        let job = s.take_job(jit.runner.id).unwrap().unwrap();
        assert_eq!(job.runner_request_id, jobs[0]);
        assert_eq!(kinds(&mut s, id, 0).1, ["assigned", "assigned"]);
        s.delete_message(id, m1).unwrap();
        let (m2, k) = kinds(&mut s, id, m1);
        assert_eq!(k, ["started"]);
        let st = s.statistics(id);
        assert_eq!(
            (
                st.total_assigned_jobs,
                st.total_running_jobs,
                st.total_busy_runners,
                st.total_idle_runners
            ),
            (2, 1, 1, 0)
        );
        assert!(s.remove_runner(jit.runner.id).is_err(), "busy runner cannot be removed");
        s.complete_job(jit.runner.id, jobs[0], "succeeded").unwrap();
        let (_, k) = kinds(&mut s, id, m2);
        assert_eq!(k, ["completed"]);
        assert_eq!(s.statistics(id).total_assigned_jobs, 1);
        assert_eq!(s.statistics(id).total_registered_runners, 0, "ephemeral runner removed");
        assert_eq!(s.job(jobs[0]).unwrap().state, JobState::Completed);
    }

    #[test]
    fn offer_mode_first_acquirer_wins() {
        let mut s = state(JobMode::Offer);
        let a = set(&mut s, "a");
        let b = s
            .create_scale_set(RunnerScaleSet {
                name: "b".into(),
                labels: vec![Label::system("a")],
                ..Default::default()
            })
            .unwrap()
            .id;
        let jobs = queue(&mut s, 1, "a");
        assert_eq!(s.statistics(a).total_available_jobs, 1);
        assert_eq!(s.statistics(b).total_available_jobs, 1);
        assert_eq!(kinds(&mut s, a, 0).1, ["available"]);
        assert_eq!(s.acquire_jobs(b, &jobs), jobs);
        assert!(s.acquire_jobs(a, &jobs).is_empty());
        assert_eq!(s.statistics(a).total_available_jobs, 0);
        assert_eq!(s.statistics(b).total_assigned_jobs, 1);
    }

    #[test]
    fn second_session_conflicts_until_the_first_goes() {
        let mut s = state(JobMode::Assign);
        let id = set(&mut s, "x");
        let ttl = Duration::from_secs(60);
        let first = s.create_session(id, "a", ttl).unwrap();
        let err = s.create_session(id, "b", ttl).unwrap_err();
        assert_eq!(err.status(), StatusCode::CONFLICT);
        s.delete_session(id, &first.session_id).unwrap();
        assert_eq!(
            s.delete_session(id, &first.session_id).unwrap_err().status(),
            StatusCode::BAD_REQUEST
        );
        assert!(s.create_session(id, "b", ttl).is_ok());
        assert_eq!(
            s.create_session(99, "b", ttl).unwrap_err().status(),
            StatusCode::NOT_FOUND
        );
    }

    #[test]
    fn jit_names_are_unique_and_batches_hold_at_most_50() {
        let mut s = state(JobMode::Assign);
        let id = set(&mut s, "x");
        s.generate_jit_config(id, "r", "").unwrap();
        assert_eq!(
            s.generate_jit_config(id, "R", "").unwrap_err().status(),
            StatusCode::CONFLICT
        );
        queue(&mut s, 120, "x");
        let (m1, k1) = kinds(&mut s, id, 0);
        let (m2, k2) = kinds(&mut s, id, m1);
        let (_, k3) = kinds(&mut s, id, m2);
        assert_eq!((k1.len(), k2.len(), k3.len()), (50, 50, 20));
    }

    #[test]
    fn seeded_state_is_deterministic() {
        let run = || {
            let mut s = state(JobMode::Assign);
            let id = set(&mut s, "x");
            let sess = s.create_session(id, "o", Duration::from_secs(9)).unwrap();
            (
                sess.session_id,
                sess.message_queue_access_token.expose().to_owned(),
                s.uuid(),
            )
        };
        assert_eq!(run(), run());
    }

    #[test]
    fn control_queue_rejects_bad_input_naming_the_field() {
        let mut s = state(JobMode::Assign);
        let err = |q: QueueJobs| match State::queue_jobs(&mut state(JobMode::Assign), &q).unwrap_err() {
            ApiError::Control { message, .. } => message,
            other => panic!("{other:?}"),
        };
        assert!(
            err(QueueJobs {
                count: 0,
                labels: vec!["x".into()],
                ..Default::default()
            })
            .contains("`count`")
        );
        assert!(
            err(QueueJobs {
                count: 1,
                ..Default::default()
            })
            .contains("`labels`")
        );
        assert!(
            err(QueueJobs {
                count: 1,
                labels: vec!["x".into()],
                repository: "nope".into(),
                ..Default::default()
            })
            .contains("`repository`")
        );
        assert!(
            s.queue_jobs(&QueueJobs {
                count: 1,
                labels: vec!["x".into()],
                ..Default::default()
            })
            .is_ok()
        );
    }

    #[test]
    fn switching_to_assign_mode_assigns_the_offered_jobs() {
        let mut s = state(JobMode::Offer);
        let id = set(&mut s, "x");
        queue(&mut s, 2, "x");
        assert_eq!(s.statistics(id).total_available_jobs, 2);
        let settings = SimSettings {
            mode: JobMode::Assign,
            ..s.settings.clone()
        };
        s.set_settings(settings);
        assert_eq!(s.statistics(id).total_assigned_jobs, 2);
        assert_eq!(s.statistics(id).total_available_jobs, 0);
    }

    #[tokio::test(start_paused = true)]
    async fn unclaimed_assignment_is_cancelled_and_requeued() {
        let mut s = state(JobMode::Assign);
        s.settings.reassign_after_ms = 1000;
        let id = set(&mut s, "x");
        queue(&mut s, 1, "x");
        let (m1, _) = kinds(&mut s, id, 0);
        tokio::time::advance(Duration::from_millis(1001)).await;
        s.tick();
        let (_, k) = kinds(&mut s, id, m1);
        assert_eq!(k, ["completed", "assigned"]);
        assert_eq!(s.jobs()[0].reassignments, 1);
    }

    #[tokio::test(start_paused = true)]
    async fn silent_runner_loses_its_job() {
        let mut s = state(JobMode::Assign);
        s.settings.lost_after_ms = 1000;
        let id = set(&mut s, "x");
        let jobs = queue(&mut s, 1, "x");
        let jit = s.generate_jit_config(id, "r1", "").unwrap();
        s.runner_online(jit.runner.id, true).unwrap();
        s.take_job(jit.runner.id).unwrap();
        tokio::time::advance(Duration::from_millis(1001)).await;
        s.tick();
        assert_eq!(s.job(jobs[0]).unwrap().state, JobState::Lost);
    }
}
