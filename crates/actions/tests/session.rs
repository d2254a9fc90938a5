//! Message-session calls against a scripted server on 127.0.0.1.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{Mock, Reply, session_json, stats};
use rarc_actions::{ActionsClient, Error, MessageSession};
use std::time::Duration;

const HOUR: Duration = Duration::from_secs(3600);
const SESSIONS: &str = "/tenant/123/_apis/runtime/runnerscalesets/5/sessions";
const MQ: &str = "/broker/scalesets/message";

fn message(id: i64, kind: &str, with_stats: bool) -> serde_json::Value {
    let mut m = serde_json::json!({"messageId": id, "messageType": kind, "body": "[{\"messageType\":\"JobAvailable\",\"runnerRequestId\":101}]"});
    if with_stats {
        m["statistics"] = stats(1);
    }
    m
}

async fn open(mock: &Mock, mq_path: &str) -> MessageSession {
    mock.chain(HOUR);
    mock.on(
        "POST",
        SESSIONS,
        vec![Reply::json(200, session_json(mock, "s-1", mq_path, "mq-1"))],
    );
    let client = ActionsClient::new(mock.config()).unwrap();
    let session = MessageSession::open(client, 5, "listener-pod").await.unwrap();
    mock.clear_log();
    session
}

#[tokio::test]
async fn polls_with_the_documented_url_and_headers() {
    let mock = Mock::start().await;
    let mut session = open(&mock, &format!("{MQ}?sessionId=s-1&lastMessageId=9")).await;
    assert_eq!(session.statistics().unwrap().total_assigned_jobs, 2);
    mock.on(
        "GET",
        MQ,
        vec![
            Reply::empty(202),
            Reply::json(200, message(2_147_483_648, "RunnerScaleSetJobMessages", true)),
        ],
    );

    assert_eq!(session.get_message(0, i32::MAX as i64).await.unwrap(), None);
    let msg = session.get_message(2_147_483_647, 0).await.unwrap().unwrap();
    assert_eq!(msg.message_id, 2_147_483_648);
    assert_eq!(msg.statistics.unwrap().total_assigned_jobs, 1);
    assert_eq!(msg.job_messages().unwrap().len(), 1);

    let polls = mock.requests_to("GET", MQ);
    assert_eq!(
        polls[0].query.as_deref(),
        Some("sessionId=s-1&lastMessageId=9"),
        "cursor 0 leaves the URL as is"
    );
    assert_eq!(
        polls[1].query.as_deref(),
        Some("sessionId=s-1&lastMessageId=2147483647")
    );
    for (poll, capacity) in polls.iter().zip(["2147483647", "0"]) {
        assert_eq!(poll.header("authorization"), Some("Bearer mq-1"));
        assert_eq!(poll.header("accept"), Some("application/json; api-version=6.0-preview"));
        assert_eq!(poll.header("x-scalesetmaxcapacity"), Some(capacity));
        assert_eq!(poll.header("content-type"), None);
        assert!(poll.header("user-agent").is_some());
    }
    assert!(
        mock.requests_to("POST", "/api/v3/actions/runner-registration")
            .is_empty(),
        "polls never refresh the admin token"
    );
    assert!(matches!(
        session.get_message(0, -1).await,
        Err(Error::InvalidArgument(_))
    ));
}

#[tokio::test]
async fn empty_200_is_no_message_and_bad_envelopes_are_protocol_errors() {
    let mock = Mock::start().await;
    let mut session = open(&mock, MQ).await;
    mock.on("GET", MQ, vec![Reply::empty(200)]);
    assert_eq!(session.get_message(0, 3).await.unwrap(), None);

    mock.on(
        "GET",
        MQ,
        vec![Reply::json(200, message(1, "RunnerScaleSetCapacityMessages", true))],
    );
    assert!(
        matches!(session.get_message(0, 3).await, Err(Error::Protocol(m)) if m.contains("RunnerScaleSetCapacityMessages"))
    );
    mock.on(
        "GET",
        MQ,
        vec![Reply::json(200, message(1, "RunnerScaleSetJobMessages", false))],
    );
    assert!(matches!(session.get_message(0, 3).await, Err(Error::Protocol(m)) if m.contains("no statistics")));
    mock.on("GET", MQ, vec![Reply::text(400, "max capacity exceeded")]);
    let err = session.get_message(0, 3).await.unwrap_err();
    assert!(err.to_string().ends_with("max capacity exceeded"), "{err}");
    mock.on("GET", MQ, vec![Reply::empty(502)]);
    assert!(session.get_message(0, 3).await.unwrap_err().is_retries_exhausted());
}

#[tokio::test]
async fn a_401_refreshes_the_session_once_and_retries_with_the_new_url_and_token() {
    let mock = Mock::start().await;
    let mut session = open(&mock, MQ).await;
    let new_mq = "/broker2/scalesets/message";
    mock.on("GET", MQ, vec![Reply::empty(401)]);
    mock.on(
        "PATCH",
        &format!("{SESSIONS}/s-1"),
        vec![Reply::json(
            200,
            session_json(&mock, "s-1", &format!("{new_mq}?x=1"), "mq-2"),
        )],
    );
    mock.on(
        "GET",
        new_mq,
        vec![Reply::json(200, message(7, "RunnerScaleSetJobMessages", true))],
    );

    let msg = session.get_message(6, 10).await.unwrap().unwrap();
    assert_eq!(msg.message_id, 7);
    let log = mock.requests();
    let summary: Vec<(String, String)> = log.iter().map(|r| (r.method.clone(), r.path.clone())).collect();
    assert_eq!(
        summary,
        vec![
            ("GET".into(), MQ.into()),
            ("PATCH".into(), format!("{SESSIONS}/s-1")),
            ("GET".into(), new_mq.into()),
        ]
    );
    assert!(log[1].body.is_empty());
    assert_eq!(log[2].header("authorization"), Some("Bearer mq-2"));
    assert_eq!(log[2].query.as_deref(), Some("x=1&lastMessageId=6"));
    assert_eq!(
        session.session().message_queue_url,
        format!("{}{new_mq}?x=1", mock.base)
    );

    // Delete and acquire go to the new queue / token too.
    mock.on("DELETE", &format!("{new_mq}/7"), vec![Reply::empty(204)]);
    session.delete_message(7).await.unwrap();
    let delete = &mock.requests_to("DELETE", &format!("{new_mq}/7"))[0];
    assert_eq!(delete.query.as_deref(), Some("x=1"));
    assert_eq!(delete.header("authorization"), Some("Bearer mq-2"));
    assert_eq!(delete.header("content-type"), Some("application/json"));

    // Two 401s in a row: refresh once, then the error.
    mock.clear_log();
    mock.on("GET", new_mq, vec![Reply::empty(401)]);
    let err = session.get_message(7, 10).await.unwrap_err();
    assert!(err.is_unauthorized());
    assert_eq!(mock.requests_to("GET", new_mq).len(), 2);
    assert_eq!(mock.requests_to("PATCH", &format!("{SESSIONS}/s-1")).len(), 1);
}

#[tokio::test]
async fn refresh_404_can_be_followed_by_recreate() {
    let mock = Mock::start().await;
    let mut session = open(&mock, MQ).await;
    mock.on("GET", MQ, vec![Reply::empty(401)]);
    mock.on(
        "PATCH",
        &format!("{SESSIONS}/s-1"),
        vec![Reply::exception(
            404,
            "RunnerAdminException",
            "session ID doesn't exist",
        )],
    );
    let err = session.get_message(0, 1).await.unwrap_err();
    assert!(err.is_not_found(), "{err}");

    mock.on(
        "POST",
        SESSIONS,
        vec![Reply::json(200, session_json(&mock, "s-2", MQ, "mq-3"))],
    );
    session.recreate().await.unwrap();
    assert_eq!(session.session().session_id, "s-2");
    mock.on("GET", MQ, vec![Reply::empty(202)]);
    assert_eq!(session.get_message(0, 1).await.unwrap(), None);
    assert_eq!(
        mock.requests_to("GET", MQ).last().unwrap().header("authorization"),
        Some("Bearer mq-3")
    );

    mock.on("DELETE", &format!("{SESSIONS}/s-2"), vec![Reply::empty(204)]);
    session.close().await.unwrap();
    assert_eq!(mock.requests_to("DELETE", &format!("{SESSIONS}/s-2")).len(), 1);
}

#[tokio::test]
async fn acquire_jobs_posts_a_bare_array_with_the_mq_token() {
    let mock = Mock::start().await;
    let mut session = open(&mock, MQ).await;
    let acquire = "/tenant/123/_apis/runtime/runnerscalesets/5/acquirejobs";
    mock.on(
        "POST",
        acquire,
        vec![
            Reply::empty(401),
            Reply::json(200, serde_json::json!({"count": 1, "value": [101]})),
        ],
    );
    mock.on(
        "PATCH",
        &format!("{SESSIONS}/s-1"),
        vec![Reply::json(200, session_json(&mock, "s-1", MQ, "mq-2"))],
    );

    assert_eq!(session.acquire_jobs(&[101, 102]).await.unwrap(), vec![101]);
    let sent = mock.requests_to("POST", acquire);
    assert_eq!(sent.len(), 2);
    assert_eq!(sent[0].body, b"[101,102]");
    assert_eq!(sent[0].header("authorization"), Some("Bearer mq-1"));
    assert_eq!(sent[1].header("authorization"), Some("Bearer mq-2"));
    assert_eq!(sent[1].query.as_deref(), Some("api-version=6.0-preview"));
    assert_eq!(sent[1].header("content-type"), Some("application/json"));

    mock.clear_log();
    assert!(session.acquire_jobs(&[]).await.unwrap().is_empty());
    assert!(mock.requests().is_empty());

    mock.on("POST", acquire, vec![Reply::empty(500)]);
    assert!(session.acquire_jobs(&[1]).await.unwrap_err().is_retries_exhausted());
    assert_eq!(mock.requests_to("POST", acquire).len(), 5);
}

#[tokio::test]
async fn delete_message_expects_204() {
    let mock = Mock::start().await;
    let mut session = open(&mock, MQ).await;
    mock.on("DELETE", &format!("{MQ}/100000171"), vec![Reply::empty(204)]);
    session.delete_message(100000171).await.unwrap();
    mock.on("DELETE", &format!("{MQ}/5"), vec![Reply::empty(404)]);
    assert!(session.delete_message(5).await.unwrap_err().is_not_found());
}
