//! Driving an in-process `DockerBackend` the way the listener does, and waiting for conditions.

use rarc_actions::scaling::PatchIdState;
use rarc_actions::types::JobMessage;
use rarc_actions::{ActionsClient, MessageSession};
use rarc_listener::backend::Backend;
use rarc_listener::backend::docker::DockerBackend;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

/// Polls `check` every 50 ms until it holds; panics naming `what` after `timeout`.
pub async fn eventually<F, Fut>(what: &str, timeout: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + timeout;
    while !check().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The listener loop in miniature: poll messages, forward JobStarted/JobCompleted, apply
/// `min(min + assigned, max)` with ARC's patch ids, also on empty polls. Session owner `owner`.
pub fn drive(
    backend: Arc<DockerBackend>,
    client: ActionsClient,
    set: i64,
    max_runners: i64,
    owner: &'static str,
    stop: CancellationToken,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut session = MessageSession::open(client, set, owner).await.expect("session");
        let mut patch = PatchIdState::new(0, max_runners);
        let mut last = 0;
        let mut assigned = session.statistics().map_or(0, |s| s.total_assigned_jobs);
        while !stop.is_cancelled() {
            let msg = tokio::select! {
                () = stop.cancelled() => break,
                m = session.get_message(last, max_runners) => m.expect("get message"),
            };
            if let Some(msg) = msg {
                last = msg.message_id;
                for j in msg.job_messages().expect("job messages") {
                    match j {
                        JobMessage::Started(s) => {
                            patch.job_started();
                            backend.job_started(&s).await.expect("job_started");
                        }
                        JobMessage::Completed(c) => {
                            patch.job_completed();
                            backend.job_completed(&c).await.expect("job_completed");
                        }
                        _ => {}
                    }
                }
                if let Some(stats) = msg.statistics {
                    assigned = stats.total_assigned_jobs;
                }
                session.delete_message(last).await.expect("delete message");
            }
            let (target, patch_id) = patch.next(assigned);
            backend.apply_desired(target, patch_id).await.expect("apply_desired");
        }
        let _ = session.close().await;
    })
}
