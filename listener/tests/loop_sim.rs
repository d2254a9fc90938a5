//! The listener loop against rarc-sim (in-process) with an in-memory recording backend.
//!
//! Each test is named after the scenarios of `shared/spec/actions-protocol.md` §15 it covers.

#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

mod common;

use common::*;
use rarc_actions::MessageSession;
use rarc_actions::types::{JobCompleted, JobStarted};
use rarc_listener::backend::recording::{Call, RecordingBackend};
use rarc_listener::backend::{Backend, BackendError};
use rarc_listener::health::Health;
use rarc_listener::listener::{ConflictRetry, Listener, ListenerError, ListenerSettings, Stopped};
use rarc_listener::metrics::{BaseLabels, Metrics};
use rarc_sim::SimServer;
use rarc_sim::config::{JobMode, SimSettings};
use serde_json::Value;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

const UNBOUNDED: i64 = i32::MAX as i64;

fn settings(id: i64, min: i64, max: i64) -> ListenerSettings {
    let mut s = ListenerSettings::new(id, min, max, "listener-pod-0");
    s.conflict_retry = ConflictRetry {
        initial: Duration::from_millis(50),
        max: Duration::from_millis(200),
        total: Duration::from_secs(10),
    };
    s.close_timeout = Duration::from_secs(5);
    s
}

struct Running {
    stop: CancellationToken,
    task: JoinHandle<Result<Stopped, ListenerError>>,
    metrics: Arc<Metrics>,
}

impl Running {
    async fn stop(self) -> Result<Stopped, ListenerError> {
        self.stop.cancel();
        tokio::time::timeout(Duration::from_secs(10), self.task)
            .await
            .expect("listener stops within 10 s")
            .unwrap()
    }
}

fn start<B: Backend>(s: &SimServer, backend: B, settings: ListenerSettings) -> Running {
    let stop = CancellationToken::new();
    let metrics = Arc::new(Metrics::new(
        None,
        BaseLabels {
            organization: "my-org".into(),
            name: "ers".into(),
            namespace: "ns".into(),
            ..Default::default()
        },
    ));
    let listener = Listener::new(pat_client(s), backend, settings)
        .with_metrics(metrics.clone())
        .with_shutdown(stop.clone())
        .with_health(Health::new(Duration::from_secs(5)));
    Running {
        stop,
        task: tokio::spawn(listener.run()),
        metrics,
    }
}

async fn set(s: &SimServer, name: &str) -> i64 {
    create_set(&pat_client(s), name).await
}

fn session_deletes(s: &SimServer) -> Vec<u16> {
    s.sim
        .calls()
        .into_iter()
        .filter(|c| c.method == "DELETE" && c.path.contains("/sessions/"))
        .map(|c| c.status)
        .collect()
}

#[tokio::test]
async fn s06_s16_startup_order_and_initial_patch() {
    let s = sim().await;
    let id = set(&s, "start").await;
    queue(&s, 3, "start");
    s.sim.clear_calls();
    let backend = RecordingBackend::new();
    let run = start(&s, backend.clone(), settings(id, 1, 3));
    wait_for("first poll", Duration::from_secs(5), || !polls(&s).is_empty()).await;
    // The initial patch comes from the session statistics, before the first poll: (min(1+3, 3), 0).
    assert_eq!(backend.desired()[0], (3, 0));
    let calls = s.sim.calls();
    let order: Vec<&str> = calls.iter().map(|c| c.path.as_str()).collect();
    assert_eq!(order[0], "/api/v3/orgs/my-org/actions/runners/registration-token");
    assert_eq!(order[1], "/api/v3/actions/runner-registration");
    assert!(
        order[2].ends_with(&format!("/runnerscalesets/{id}/sessions")),
        "{order:?}"
    );
    let create: Value = serde_json::from_str(&calls[2].body).unwrap();
    assert_eq!(create["ownerName"], "listener-pod-0");
    let first_poll = polls(&s).remove(0);
    assert_eq!(first_poll.query_param("lastMessageId"), None, "first GET has no cursor");
    assert_eq!(first_poll.header("x-scalesetmaxcapacity"), Some("3"));
    let text = run.metrics.render();
    assert!(text.contains("gha_desired_runners{"), "{text}");
    assert!(text.contains(
        "gha_min_runners{enterprise=\"\",organization=\"my-org\",repository=\"\",name=\"ers\",namespace=\"ns\"} 1\n"
    ));
    assert!(text.contains(
        "gha_max_runners{enterprise=\"\",organization=\"my-org\",repository=\"\",name=\"ers\",namespace=\"ns\"} 3\n"
    ));
    assert_eq!(run.stop().await.unwrap(), Stopped::Shutdown);
    assert_eq!(session_deletes(&s), [204]);
}

#[tokio::test]
async fn s07_session_without_statistics_is_deleted_then_fatal() {
    let s = sim().await;
    let id = set(&s, "nostats").await;
    let body = format!(
        r#"{{"sessionId":"11111111-1111-1111-1111-111111111111","ownerName":"x","messageQueueUrl":"{}/broker/scalesets/message","messageQueueAccessToken":"t"}}"#,
        s.url
    );
    fault(
        &s,
        &serde_json::json!({"path": "/sessions", "method": "POST", "kind": "status", "status": 200,
            "contentType": "application/json", "body": body, "times": 1})
        .to_string(),
    );
    let backend = RecordingBackend::new();
    let run = start(&s, backend.clone(), settings(id, 0, UNBOUNDED));
    let err = run.task.await.unwrap().unwrap_err();
    assert!(matches!(err, ListenerError::SessionWithoutStatistics), "{err}");
    assert!(backend.calls().is_empty());
    assert_eq!(session_deletes(&s).len(), 1, "the session is deleted before exiting");
}

#[tokio::test]
async fn s17_s74_conflict_is_retried_until_released() {
    let s = sim().await;
    let id = set(&s, "conflict").await;
    // A previous pod's session that was never deleted.
    let stale = MessageSession::open(pat_client(&s), id, "old-pod").await.unwrap();
    let stale_id = stale.session().session_id.clone();
    let backend = RecordingBackend::new();
    let run = start(&s, backend.clone(), settings(id, 0, UNBOUNDED));
    wait_for("two 409s", Duration::from_secs(5), || {
        calls_to(&s, "/sessions").iter().filter(|c| c.status == 409).count() >= 2
    })
    .await;
    assert!(backend.calls().is_empty(), "nothing happens before the session exists");
    s.sim.with_state(|st| st.drop_session(&stale_id));
    wait_for("first poll", Duration::from_secs(5), || !polls(&s).is_empty()).await;
    let creates: Vec<u16> = calls_to(&s, "/sessions")
        .iter()
        .filter(|c| c.method == "POST")
        .skip(1) // the stale session's own creation
        .map(|c| c.status)
        .collect();
    assert_eq!(creates.last(), Some(&200));
    assert!(creates[..creates.len() - 1].iter().all(|c| *c == 409), "{creates:?}");
    assert_eq!(backend.desired()[0], (0, 0));
    run.stop().await.unwrap();
}

#[tokio::test]
async fn s17_conflict_gives_up_after_the_total_time() {
    let s = sim().await;
    let id = set(&s, "conflict2").await;
    let _stale = MessageSession::open(pat_client(&s), id, "old-pod").await.unwrap();
    let mut st = settings(id, 0, UNBOUNDED);
    st.conflict_retry.total = Duration::from_millis(400);
    let run = start(&s, RecordingBackend::new(), st);
    let err = tokio::time::timeout(Duration::from_secs(5), run.task)
        .await
        .unwrap()
        .unwrap()
        .unwrap_err();
    assert!(matches!(err, ListenerError::SessionConflict { .. }), "{err}");
    assert!(session_deletes(&s).is_empty(), "no session of ours to delete");
}

#[tokio::test]
async fn s18_unknown_scale_set_is_a_clear_fatal_error() {
    let s = sim().await;
    let run = start(&s, RecordingBackend::new(), settings(4242, 0, UNBOUNDED));
    let err = run.task.await.unwrap().unwrap_err();
    assert!(
        matches!(err, ListenerError::ScaleSetNotFound { scale_set_id: 4242, .. }),
        "{err}"
    );
    assert!(err.to_string().contains("4242"), "{err}");
    assert_eq!(calls_to(&s, "/sessions").len(), 1, "404 is not retried");
}

#[tokio::test]
async fn s20_shutdown_during_long_poll() {
    let s = sim_with(SimSettings {
        long_poll_ms: 30_000,
        ..Default::default()
    })
    .await;
    let id = set(&s, "term").await;
    let run = start(&s, RecordingBackend::new(), settings(id, 0, UNBOUNDED));
    // The GET is recorded when it is answered; wait until the session exists and give the poll time.
    wait_for("session", Duration::from_secs(5), || {
        calls_to(&s, "/sessions").iter().any(|c| c.status == 200)
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let t = Instant::now();
    assert_eq!(run.stop().await.unwrap(), Stopped::Shutdown);
    assert!(
        t.elapsed() < Duration::from_secs(5),
        "the poll is aborted, not waited out"
    );
    assert_eq!(session_deletes(&s), [204]);
    let polls_after = polls(&s).len();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(polls(&s).len(), polls_after, "no further polls");
}

#[tokio::test]
async fn s21_shutdown_while_handling_finishes_the_message() {
    let s = sim().await;
    let id = set(&s, "busy").await;
    let backend = RecordingBackend::new();
    let run = start(&s, backend.clone(), settings(id, 0, UNBOUNDED));
    wait_for("first poll", Duration::from_secs(5), || !polls(&s).is_empty()).await;
    // The acknowledgement takes 800 ms; SIGTERM arrives in the middle of it.
    fault(
        &s,
        r#"{"path":"/broker/scalesets/message","method":"DELETE","kind":"latency","ms":800,"times":1}"#,
    );
    queue(&s, 2, "busy");
    wait_for("the message", Duration::from_secs(5), || {
        polls(&s).iter().any(|c| c.status == 200)
    })
    .await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(run.stop().await.unwrap(), Stopped::Shutdown);
    let deletes: Vec<u16> = calls_to(&s, "/broker/scalesets/message")
        .iter()
        .filter(|c| c.method == "DELETE")
        .map(|c| c.status)
        .collect();
    assert_eq!(deletes, [204], "the ack completed");
    assert_eq!(
        backend.desired().last().map(|d| d.0),
        Some(2),
        "the scale-up patch was sent"
    );
    assert_eq!(session_deletes(&s), [204]);
}

#[tokio::test]
async fn s23_s54_empty_polls_patch_with_latest_statistics() {
    let s = sim().await;
    let id = set(&s, "empty").await;
    let backend = RecordingBackend::new();
    let run = start(&s, backend.clone(), settings(id, 1, UNBOUNDED));
    wait_for("first poll", Duration::from_secs(5), || !polls(&s).is_empty()).await;
    queue(&s, 1, "empty");
    wait_for(
        "the message and 2 empty polls after it",
        Duration::from_secs(10),
        || backend.desired().iter().filter(|d| d.0 == 2).count() >= 3,
    )
    .await;
    let desired = backend.desired();
    // Start at the floor (1, 0); the message (assigned 1) ⇒ (2, 1); every empty poll patches again
    // with the latest statistics and an increasing id.
    assert_eq!(desired[0], (1, 0));
    let msg_at = desired.iter().position(|d| d.0 == 2).unwrap();
    assert!(desired[msg_at..].iter().all(|d| d.0 == 2), "{desired:?}");
    let ids: Vec<i64> = desired[msg_at..].iter().map(|d| d.1).collect();
    assert!(ids.windows(2).all(|w| w[1] == w[0] + 1), "{ids:?}");
    assert!(ids.len() >= 3, "a patch on every empty poll: {desired:?}");
    // The cursor stays on the last message.
    let msg_id = polls(&s).iter().find(|c| c.status == 200).unwrap().seq;
    let later: Vec<_> = polls(&s).into_iter().filter(|c| c.seq > msg_id).collect();
    let cursor = later[0].query_param("lastMessageId").unwrap();
    assert!(
        later
            .iter()
            .all(|c| c.query_param("lastMessageId").as_deref() == Some(&cursor))
    );
    // gha_desired_runners is the last message's target, not touched by empty polls.
    assert!(run.metrics.render().contains(
        "gha_desired_runners{enterprise=\"\",organization=\"my-org\",repository=\"\",name=\"ers\",namespace=\"ns\"} 2\n"
    ));
    run.stop().await.unwrap();
}

/// §9.4 worked example, steps 5–8, through the loop: at the floor an empty poll forces patchID 0.
#[tokio::test]
async fn s50_patch_ids_through_the_loop() {
    let s = sim().await;
    let id = set(&s, "ids").await;
    let backend = RecordingBackend::new();
    let run = start(&s, backend.clone(), settings(id, 1, 3));
    wait_for("two empty polls", Duration::from_secs(5), || {
        polls(&s).iter().filter(|c| c.status == 202).count() >= 2
    })
    .await;
    assert_eq!(&backend.desired()[..3], [(1, 0), (1, 0), (1, 0)], "forced at the floor");
    let before = backend.desired().len();
    queue(&s, 1, "ids");
    wait_for("an empty poll after the message", Duration::from_secs(5), || {
        backend.desired().len() >= before + 2
    })
    .await;
    let d = backend.desired();
    let seq = before as i64; // patchSeq counts every call from 0
    assert_eq!(d[before], (2, seq), "JobAssigned with a new target");
    assert_eq!(d[before + 1], (2, seq + 1), "= old but ≠ min");
    run.stop().await.unwrap();
}

/// Records the sim's call-log length at each backend call, to order backend calls against HTTP calls.
#[derive(Clone)]
struct Ordered {
    sim: rarc_sim::Sim,
    marks: Arc<Mutex<Vec<(&'static str, u64)>>>,
}

impl Ordered {
    fn mark(&self, what: &'static str) {
        let seq = self.sim.calls().last().map(|c| c.seq).unwrap_or(0);
        self.marks.lock().unwrap().push((what, seq));
    }
}

impl Backend for Ordered {
    async fn apply_desired(&self, _target: i64, _patch_id: i64) -> Result<(), BackendError> {
        self.mark("patch");
        Ok(())
    }
    async fn job_started(&self, _job: &JobStarted) -> Result<(), BackendError> {
        self.mark("started");
        Ok(())
    }
    async fn job_completed(&self, _job: &JobCompleted) -> Result<(), BackendError> {
        self.mark("completed");
        Ok(())
    }
}

#[tokio::test]
async fn s27_batch_is_handled_in_spec_order() {
    let s = sim().await;
    let id = set(&s, "order").await;
    let backend = Ordered {
        sim: s.sim.clone(),
        marks: Arc::default(),
    };
    let run = start(&s, backend.clone(), settings(id, 0, UNBOUNDED));
    wait_for("first poll", Duration::from_secs(5), || !polls(&s).is_empty()).await;
    let jobs = serde_json::json!([
        {"messageType": "JobCompleted", "runnerRequestId": 4, "result": "succeeded", "runnerName": "r4",
         "runnerAssignTime": "2024-01-01T00:00:00Z", "finishTime": "2024-01-01T00:01:00Z"},
        {"messageType": "JobStarted", "runnerRequestId": 3, "runnerName": "r3", "ownerName": "o", "repositoryName": "r"},
        {"messageType": "JobAvailable", "runnerRequestId": 1},
        {"messageType": "JobAssigned", "runnerRequestId": 2},
        {"messageType": "SomethingNew", "runnerRequestId": 9}
    ])
    .to_string();
    let message = serde_json::json!({
        "messageId": 7, "messageType": "RunnerScaleSetJobMessages", "body": jobs,
        "statistics": {"totalAssignedJobs": 2, "totalRunningJobs": 1}
    })
    .to_string();
    fault(
        &s,
        &serde_json::json!({"path": "/broker/scalesets/message", "method": "GET", "kind": "status",
            "status": 200, "contentType": "application/json", "body": message, "times": 1})
        .to_string(),
    );
    // Message 7 exists only in the fault, so the sim's DELETE would 404: answer it too.
    fault(
        &s,
        r#"{"path":"/broker/scalesets/message/7","method":"DELETE","kind":"status","status":204,"times":1}"#,
    );
    wait_for("the batch's patch", Duration::from_secs(5), || {
        backend.marks.lock().unwrap().iter().any(|m| m.0 == "completed")
            && backend.marks.lock().unwrap().iter().filter(|m| m.0 == "patch").count() >= 2
    })
    .await;
    run.stop().await.unwrap();
    let calls = s.sim.calls();
    let seq_of = |pred: &dyn Fn(&rarc_sim::calllog::CallRecord) -> bool| calls.iter().find(|c| pred(c)).unwrap().seq;
    let delete = seq_of(&|c| c.method == "DELETE" && c.path.ends_with("/message/7"));
    let acquire = seq_of(&|c| c.path.contains("/acquirejobs"));
    assert!(delete < acquire, "delete before acquire");
    let acq = calls.iter().find(|c| c.path.contains("/acquirejobs")).unwrap();
    assert_eq!(acq.body, "[1]", "only JobAvailable ids, one call");
    let marks = backend.marks.lock().unwrap().clone();
    let first_started = marks.iter().position(|m| m.0 == "started").unwrap();
    let after_msg: Vec<(&str, u64)> = marks[first_started..].to_vec();
    let names: Vec<&str> = after_msg.iter().map(|m| m.0).collect();
    assert_eq!(&names[..3], ["started", "completed", "patch"], "{after_msg:?}");
    assert!(after_msg[0].1 >= acquire, "started after the acquire call");
    assert_eq!(
        (after_msg[1].1, after_msg[2].1),
        (after_msg[0].1, after_msg[0].1),
        "no HTTP call between started, completed and the patch (the next poll comes after)"
    );
}

#[tokio::test]
async fn s31_s75_empty_200_storm_keeps_the_listener_up() {
    let s = sim().await;
    let id = set(&s, "storm").await;
    fault(
        &s,
        r#"{"path":"/broker/scalesets/message","method":"GET","kind":"emptyBody","times":25}"#,
    );
    let backend = RecordingBackend::new();
    let run = start(&s, backend.clone(), settings(id, 0, UNBOUNDED));
    wait_for("the storm", Duration::from_secs(5), || {
        polls(&s).iter().filter(|c| c.fault.is_some()).count() >= 25
    })
    .await;
    assert!(!run.task.is_finished(), "still running");
    assert!(backend.desired().len() >= 26, "each empty 200 counts as an empty poll");
    queue(&s, 1, "storm");
    wait_for("scale up", Duration::from_secs(5), || {
        backend.desired().last() == Some(&(1, backend.desired().len() as i64 - 1))
    })
    .await;
    run.stop().await.unwrap();
}

#[tokio::test]
async fn s37_s77_offer_mode_acquires_and_scales() {
    let s = sim_with(SimSettings {
        long_poll_ms: 200,
        mode: JobMode::Offer,
        ..Default::default()
    })
    .await;
    let id = set(&s, "ghes").await;
    let backend = RecordingBackend::new();
    let run = start(&s, backend.clone(), settings(id, 0, UNBOUNDED));
    wait_for("first poll", Duration::from_secs(5), || !polls(&s).is_empty()).await;
    let jobs = queue(&s, 2, "ghes");
    wait_for("scaled to 2", Duration::from_secs(5), || {
        backend.desired().iter().any(|d| d.0 == 2)
    })
    .await;
    let acquire = calls_to(&s, "/acquirejobs");
    assert_eq!(acquire.len(), 1);
    assert_eq!(acquire[0].body, format!("[{},{}]", jobs[0], jobs[1]));
    assert_eq!(acquire[0].auth, "mq");
    assert!(
        s.sim.with_state(|st| st.acquirable_jobs(id)).is_empty(),
        "nothing left on offer"
    );
    run.stop().await.unwrap();
}

#[tokio::test]
async fn s41_expired_mq_token_refreshes_and_continues() {
    let s = sim().await;
    let id = set(&s, "expire").await;
    let backend = RecordingBackend::new();
    let run = start(&s, backend.clone(), settings(id, 0, UNBOUNDED));
    wait_for("first poll", Duration::from_secs(5), || !polls(&s).is_empty()).await;
    s.sim.with_state(|st| st.expire_tokens(false, true));
    wait_for("a refresh", Duration::from_secs(5), || {
        calls_to(&s, "/sessions/")
            .iter()
            .any(|c| c.method == "PATCH" && c.status == 200)
    })
    .await;
    queue(&s, 1, "expire");
    wait_for("scale up", Duration::from_secs(5), || {
        backend.desired().iter().any(|d| d.0 == 1)
    })
    .await;
    assert!(!run.task.is_finished());
    run.stop().await.unwrap();
}

#[tokio::test]
async fn s43_s76_refresh_404_recreates_the_session() {
    let s = sim().await;
    let id = set(&s, "r404").await;
    let backend = RecordingBackend::new();
    let run = start(&s, backend.clone(), settings(id, 0, UNBOUNDED));
    wait_for("first poll", Duration::from_secs(5), || !polls(&s).is_empty()).await;
    let sid = s.sim.with_state(|st| st.sessions()[0].session_id.clone());
    s.sim.with_state(|st| st.drop_session(&sid));
    wait_for("a new session", Duration::from_secs(5), || {
        calls_to(&s, "/sessions")
            .iter()
            .filter(|c| c.method == "POST" && c.status == 200)
            .count()
            == 2
    })
    .await;
    let refresh = calls_to(&s, "/sessions/")
        .into_iter()
        .find(|c| c.method == "PATCH")
        .unwrap();
    assert_eq!(refresh.status, 404);
    queue(&s, 1, "r404");
    wait_for("scale up", Duration::from_secs(5), || {
        backend.desired().iter().any(|d| d.0 == 1)
    })
    .await;
    assert!(!run.task.is_finished());
    run.stop().await.unwrap();
    let new_sid = s.sim.with_state(|st| st.sessions()).len();
    assert_eq!(new_sid, 0, "the new session was deleted on exit");
}

#[tokio::test]
async fn s79_reassignment_counts_follow_statistics() {
    let s = sim_with(SimSettings {
        long_poll_ms: 200,
        reassign_after_ms: 300,
        ..Default::default()
    })
    .await;
    let id = set(&s, "reassign").await;
    let backend = RecordingBackend::new();
    let run = start(&s, backend.clone(), settings(id, 0, UNBOUNDED));
    wait_for("first poll", Duration::from_secs(5), || !polls(&s).is_empty()).await;
    queue(&s, 1, "reassign");
    wait_for("a cancelled attempt", Duration::from_secs(10), || {
        backend
            .calls()
            .iter()
            .any(|c| matches!(c, Call::Completed(j) if j.result == "canceled"))
    })
    .await;
    let cancelled = backend
        .calls()
        .into_iter()
        .find_map(|c| match c {
            Call::Completed(j) => Some(j),
            _ => None,
        })
        .unwrap();
    assert!(cancelled.base.runner_assign_time.is_none());
    // Re-assigned: the target still follows totalAssignedJobs (1).
    wait_for("target back at 1", Duration::from_secs(5), || {
        backend.desired().last().map(|d| d.0) == Some(1)
    })
    .await;
    let text = run.metrics.render();
    assert!(
        !text.contains("gha_completed_jobs_total"),
        "cancelled attempt not counted: {text}"
    );
    assert!(!text.contains("gha_job_execution_duration_seconds"));
    run.stop().await.unwrap();
}

#[tokio::test]
async fn s55_backend_failure_is_fatal_and_the_session_is_deleted() {
    let s = sim().await;
    let id = set(&s, "fail").await;
    let backend = RecordingBackend::new();
    backend.fail_next_desired(BackendError::NotFound {
        what: "EphemeralRunnerSet ns/ers".into(),
    });
    let run = start(&s, backend, settings(id, 0, UNBOUNDED));
    let err = run.task.await.unwrap().unwrap_err();
    assert!(matches!(err, ListenerError::Backend { .. }), "{err}");
    assert_eq!(session_deletes(&s), [204]);
}
