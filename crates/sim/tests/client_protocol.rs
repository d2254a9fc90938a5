//! The Actions client against rarc-sim over real HTTP on loopback.
//!
//! Each test is named after the scenario of `shared/spec/actions-protocol.md` §15 it covers
//! (`sNN_…`). Scenarios that belong to the listener process (exit codes, ERS patches, metrics:
//! 1–7, 20–21, 47–59, 68–73) are tested with the listener; those that apply to the client are here,
//! and each asserts the wire format on the simulator's call log.

#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

mod common;

use common::*;
use rarc_actions::types::{JitConfigRequest, JobMessage, RunnerScaleSet, ZERO_SESSION_ID};
use rarc_actions::{ActionsClient, ClientConfig, Credentials, MessageSession, ProxyEnv, RetryPolicy, Secret};
use rarc_sim::auth::{
    DEFAULT_APP_ID, DEFAULT_APP_PRIVATE_KEY, DEFAULT_CLIENT_ID, DEFAULT_INSTALLATION_ID, DEFAULT_PAT,
};
use rarc_sim::config::{BrokerStyle, JobMode, SimSettings};
use serde_json::Value;
use std::time::{Duration, Instant};

const PKCS8_KEY: &str = include_str!("../testdata/app-key.pkcs8.pem");

fn app_client(s: &rarc_sim::SimServer, app_id: &str, key: &str, url: &str) -> ActionsClient {
    let creds = Credentials::App {
        app_id: app_id.into(),
        installation_id: DEFAULT_INSTALLATION_ID,
        private_key: Secret::new(key),
    };
    let mut cfg = pat_config(url);
    cfg.credentials = creds;
    let _ = s;
    ActionsClient::new(cfg).expect("client")
}

// ---- §15.3 authentication -------------------------------------------------------------------------

#[tokio::test]
async fn s08_pat_chain_wire_format() {
    let s = sim().await;
    let client = pat_client(&s);
    create_set(&client, "pat-set").await;
    let calls = s.sim.calls();
    let paths: Vec<&str> = calls.iter().map(|c| c.path.as_str()).collect();
    assert_eq!(
        paths,
        [
            "/api/v3/orgs/my-org/actions/runners/registration-token",
            "/api/v3/actions/runner-registration",
            "/tenant/123/_apis/runtime/runnerscalesets"
        ],
        "no installation call with a PAT"
    );
    let reg = &calls[0];
    assert_eq!(
        (reg.method.as_str(), reg.auth.as_str(), reg.status),
        ("POST", "pat", 201)
    );
    assert_eq!(reg.header("authorization"), Some("Bearer ***"));
    assert_eq!(reg.header("content-type"), Some("application/vnd.github.v3+json"));
    assert_eq!(reg.body, "");
    let ua: Value = serde_json::from_str(reg.header("user-agent").unwrap()).expect("JSON user agent");
    assert_eq!(ua["system"], "rarc");
    assert_eq!(ua["kind"], "scaleset");
    // The create call: admin token, JSON content type, api-version, the Go client's body.
    let create = &calls[2];
    assert_eq!((create.auth.as_str(), create.status), ("admin", 200));
    assert_eq!(create.header("content-type"), Some("application/json"));
    assert_eq!(create.query, "api-version=6.0-preview");
    assert_eq!(
        create.body,
        r#"{"name":"pat-set","runnerGroupId":1,"labels":[{"type":"System","name":"pat-set"}],"RunnerSetting":{"disableUpdate":true},"createdOn":"0001-01-01T00:00:00Z"}"#
    );
    // Go sends no Accept; reqwest always sends `*/*`, which means the same (docs/compat.md).
    assert_eq!(
        create.header("accept"),
        Some("*/*"),
        "admin calls send no Accept of their own"
    );
}

#[tokio::test]
async fn s09_app_jwt_with_pkcs1_pkcs8_and_client_id() {
    let s = sim().await;
    for (app_id, key) in [
        (DEFAULT_APP_ID, DEFAULT_APP_PRIVATE_KEY),
        (DEFAULT_CLIENT_ID, PKCS8_KEY),
    ] {
        s.sim.clear_calls();
        let client = app_client(&s, app_id, key, &s.config_url("my-org"));
        client.get_runner_scale_set(1, "absent").await.expect("app chain works");
        let calls = s.sim.calls();
        let inst = &calls[0];
        assert_eq!(
            inst.path,
            format!("/api/v3/app/installations/{DEFAULT_INSTALLATION_ID}/access_tokens")
        );
        assert_eq!(
            (inst.auth.as_str(), inst.status),
            ("app-jwt", 201),
            "sim verified the RS256 signature"
        );
        assert_eq!(inst.header("content-type"), Some("application/vnd.github+json"));
        assert_eq!(inst.header("accept"), Some("*/*"));
        assert!(inst.header("x-github-api-version").is_none());
        assert_eq!((calls[1].auth.as_str(), calls[1].status), ("installation", 201));
    }
    // A key the app does not own: 401 from G1, surfaced with status and body.
    let other = String::from_utf8(
        std::process::Command::new("openssl")
            .args(["genrsa", "-traditional", "2048"])
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap();
    let err = app_client(&s, DEFAULT_APP_ID, &other, &s.config_url("my-org"))
        .get_runner_scale_set(1, "x")
        .await
        .unwrap_err();
    assert_eq!(err.status().map(|s| s.as_u16()), Some(401), "{err}");
    assert!(err.to_string().contains("signature"), "{err}");
}

#[tokio::test]
async fn s10_registration_token_scope_paths() {
    let s = sim().await;
    for (scope, path) in [
        ("my-org", "/api/v3/orgs/my-org/actions/runners/registration-token"),
        (
            "my-org/my-repo",
            "/api/v3/repos/my-org/my-repo/actions/runners/registration-token",
        ),
        (
            "enterprises/my-ent",
            "/api/v3/enterprises/my-ent/actions/runners/registration-token",
        ),
        (
            "Enterprises/my-ent",
            "/api/v3/enterprises/my-ent/actions/runners/registration-token",
        ),
    ] {
        s.sim.clear_calls();
        let client = ActionsClient::new(pat_config(&s.config_url(scope))).unwrap();
        client
            .get_runner_scale_set(1, "x")
            .await
            .unwrap_or_else(|e| panic!("{scope}: {e}"));
        assert_eq!(s.sim.calls()[0].path, path, "{scope}");
    }
    // Apps cannot register enterprise runners: the 403 is an error naming the status.
    let err = app_client(
        &s,
        DEFAULT_APP_ID,
        DEFAULT_APP_PRIVATE_KEY,
        &s.config_url("enterprises/e"),
    )
    .get_runner_scale_set(1, "x")
    .await
    .unwrap_err();
    assert_eq!(err.status().map(|s| s.as_u16()), Some(403), "{err}");
}

#[tokio::test]
async fn s11_runner_registration_body_and_remote_auth() {
    let s = sim().await;
    let url = format!("{}/", s.config_url("my-org"));
    let client = ActionsClient::new(pat_config(&format!("{url}/"))).unwrap();
    client.get_runner_scale_set(1, "x").await.unwrap();
    let reg = &calls_to(&s, "/runner-registration")[0];
    assert_eq!(reg.header("authorization"), Some("RemoteAuth ***"));
    assert_eq!(reg.auth, "registration");
    assert_eq!(reg.header("content-type"), Some("application/json"));
    assert_eq!(
        reg.body,
        format!(
            "{{\"url\":\"{}\",\"runner_event\":\"register\"}}\n",
            s.config_url("my-org")
        )
    );
    // 201 is accepted as well as 200.
    s.sim.clear_calls();
    fault(
        &s,
        &format!(
            r#"{{"path":"/runner-registration","kind":"status","status":201,"contentType":"application/json","body":"{{\"url\":\"{}/tenant/123/\",\"token\":\"{}\"}}","times":1}}"#,
            s.url,
            fake_jwt(3600)
        ),
    );
    let fresh = pat_client(&s);
    // The fake token is unknown to the sim, so the admin call is refused: the 201 itself was
    // taken. The refused token is dropped and the chain runs once more (a real token this time).
    assert_eq!(fresh.get_runner_scale_set(1, "x").await.unwrap(), None);
    let statuses: Vec<u16> = calls_to(&s, "/runnerscalesets").iter().map(|c| c.status).collect();
    assert_eq!(statuses, [401, 200], "refused with the 201's token, then served");
    assert_eq!(calls_to(&s, "/runner-registration").len(), 2);
}

fn fake_jwt(ttl: i64) -> String {
    use base64::Engine;
    let b = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let exp = time::OffsetDateTime::now_utc().unix_timestamp() + ttl;
    format!(
        "{}.{}.sig",
        b.encode(r#"{"alg":"RS256"}"#),
        b.encode(format!(r#"{{"exp":{exp}}}"#))
    )
}

#[tokio::test]
async fn s12_registration_retries_401_403() {
    let s = sim().await;
    fault(
        &s,
        r#"{"path":"/runner-registration","kind":"status","status":401,"times":2}"#,
    );
    fault(
        &s,
        r#"{"path":"/runner-registration","kind":"status","status":403,"times":2}"#,
    );
    pat_client(&s)
        .get_runner_scale_set(1, "x")
        .await
        .expect("fifth attempt succeeds");
    let regs = calls_to(&s, "/runner-registration");
    assert_eq!(
        regs.iter().map(|c| c.status).collect::<Vec<_>>(),
        [401, 401, 403, 403, 200]
    );
    assert!(
        regs.iter().all(|c| c.body.contains("\"runner_event\":\"register\"")),
        "body re-sent on every attempt"
    );
    s.sim.clear_calls();
    fault(
        &s,
        r#"{"path":"/runner-registration","kind":"status","status":401,"times":5}"#,
    );
    let err = pat_client(&s).get_runner_scale_set(1, "x").await.unwrap_err();
    assert_eq!(calls_to(&s, "/runner-registration").len(), 5, "{err}");
    assert_eq!(
        err.status().map(|s| s.as_u16()),
        Some(401),
        "the last response is surfaced: {err}"
    );
}

#[tokio::test]
async fn s13_registration_response_without_url_or_jwt() {
    let s = sim().await;
    for body in [
        r#"{\"token\":\"x\"}"#,
        r#"{\"url\":\"http://x/\",\"token\":\"\"}"#,
        r#"{\"url\":\"http://x/\",\"token\":\"not-a-jwt\"}"#,
    ] {
        fault(
            &s,
            &format!(
                r#"{{"path":"/runner-registration","kind":"status","status":200,"contentType":"application/json","body":"{body}","times":1}}"#
            ),
        );
        let err = pat_client(&s).get_runner_scale_set(1, "x").await.unwrap_err();
        assert!(!err.to_string().is_empty(), "{body}");
    }
    assert!(
        calls_to(&s, "/_apis/").is_empty(),
        "no Actions call without a valid admin connection"
    );
}

#[tokio::test]
async fn s14_admin_token_refreshed_only_when_near_expiry() {
    // Valid for an hour: one chain for many calls.
    let s = sim().await;
    let client = pat_client(&s);
    for _ in 0..3 {
        client.get_runner_scale_set(1, "x").await.unwrap();
    }
    assert_eq!(calls_to(&s, "/runner-registration").len(), 1);
    // Expiring within 60 s: every admin call runs the chain first.
    let s = sim_with(SimSettings {
        admin_token_ttl_secs: 30,
        ..Default::default()
    })
    .await;
    let client = pat_client(&s);
    for _ in 0..3 {
        client.get_runner_scale_set(1, "x").await.unwrap();
    }
    assert_eq!(calls_to(&s, "/runner-registration").len(), 3);
    let paths: Vec<String> = s.sim.calls().iter().map(|c| c.path.clone()).collect();
    assert!(
        paths[2].ends_with("runnerscalesets") && paths[3].ends_with("registration-token"),
        "{paths:?}"
    );
}

#[tokio::test]
async fn s15_installation_token_errors_carry_status_and_body() {
    let s = sim().await;
    fault(
        &s,
        r#"{"path":"/access_tokens","kind":"status","status":404,"contentType":"application/json","body":"{\"message\":\"Not Found\"}","times":1}"#,
    );
    let err = app_client(&s, DEFAULT_APP_ID, DEFAULT_APP_PRIVATE_KEY, &s.config_url("my-org"))
        .get_runner_scale_set(1, "x")
        .await
        .unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("404") && text.contains("Not Found") && text.contains("X-GitHub-Request-Id"),
        "{text}"
    );
}

// ---- §15.4 session lifecycle ----------------------------------------------------------------------

#[tokio::test]
async fn s16_s17_session_create_body_and_conflict() {
    let s = sim().await;
    let client = pat_client(&s);
    let id = create_set(&client, "sess").await;
    let first = MessageSession::open(client.clone(), id, "listener-pod-1")
        .await
        .unwrap();
    let create = calls_to(&s, "/sessions").pop().unwrap();
    let body: Value = serde_json::from_str(&create.body).unwrap();
    assert_eq!(body["ownerName"], "listener-pod-1");
    assert_eq!(body["sessionId"], ZERO_SESSION_ID);
    assert_eq!(create.query, "api-version=6.0-preview");
    assert!(first.statistics().is_some());
    assert_eq!(first.session().runner_scale_set.as_ref().map(|s| s.id), Some(id));
    let err = MessageSession::open(client.clone(), id, "listener-pod-2")
        .await
        .unwrap_err();
    assert!(err.is_session_conflict(), "{err}");
    assert_eq!(calls_to(&s, "/sessions").len(), 2, "409 is not retried");
    first.close().await.unwrap();
    let del = calls_to(&s, "/sessions/").pop().unwrap();
    assert_eq!((del.method.as_str(), del.status), ("DELETE", 204));
    MessageSession::open(client, id, "listener-pod-2")
        .await
        .expect("free again after close");
}

#[tokio::test]
async fn s18_s19_s22_session_errors() {
    let s = sim().await;
    let client = pat_client(&s);
    let err = MessageSession::open(client.clone(), 4242, "o").await.unwrap_err();
    assert!(err.is_scale_set_not_found(), "{err}");
    let id = create_set(&client, "errs").await;
    s.sim.clear_calls();
    fault(&s, r#"{"path":"/sessions","kind":"status","status":503,"times":5}"#);
    let err = MessageSession::open(client.clone(), id, "o").await.unwrap_err();
    assert_eq!(calls_to(&s, "/sessions").len(), 5, "5 attempts: {err}");
    assert!(err.is_retries_exhausted(), "{err}");
    // Deleting a session the service already dropped: 400 SessionExpired, an error the caller logs.
    let session = MessageSession::open(client.clone(), id, "o").await.unwrap();
    let sid = session.session().session_id.clone();
    s.sim.with_state(|st| st.drop_session(&sid));
    let err = session.close().await.unwrap_err();
    assert_eq!(err.status().map(|s| s.as_u16()), Some(400));
    assert!(
        err.exception_type()
            .unwrap_or_default()
            .contains("RunnerScaleSetSessionExpiredException"),
        "{err}"
    );
}

// ---- §15.5 polling and messages -------------------------------------------------------------------

#[tokio::test]
async fn s23_s24_s25_poll_headers_cursor_and_capacity() {
    let s = sim().await;
    let client = pat_client(&s);
    let id = create_set(&client, "poll").await;
    let mut session = MessageSession::open(client, id, "o").await.unwrap();
    assert!(
        session.get_message(0, i32::MAX as i64).await.unwrap().is_none(),
        "202 ⇒ None"
    );
    queue(&s, 2, "poll");
    let msg = session.get_message(0, 0).await.unwrap().expect("a message");
    assert_eq!(msg.statistics.unwrap().total_assigned_jobs, 2);
    let jobs = msg.job_messages().unwrap();
    assert!(jobs.iter().all(|j| matches!(j, JobMessage::Assigned(_))));
    session.delete_message(msg.message_id).await.unwrap();
    assert!(session.get_message(msg.message_id, 5).await.unwrap().is_none());
    let polls = calls_to(&s, "/broker/scalesets/message");
    let gets: Vec<_> = polls.iter().filter(|c| c.method == "GET").collect();
    assert_eq!(
        gets[0].query, "",
        "no lastMessageId while the cursor is 0, no api-version"
    );
    assert_eq!(gets[0].header("x-scalesetmaxcapacity"), Some("2147483647"));
    assert_eq!(gets[1].header("x-scalesetmaxcapacity"), Some("0"));
    assert_eq!(gets[2].query_param("lastMessageId"), Some(msg.message_id.to_string()));
    for g in &gets {
        assert_eq!(g.header("accept"), Some("application/json; api-version=6.0-preview"));
        assert_eq!(g.auth, "mq");
        assert!(g.header("content-type").is_none());
        assert!(g.header("user-agent").is_some());
    }
    assert_eq!((gets[0].status, gets[1].status), (202, 200));
    let del = polls.iter().find(|c| c.method == "DELETE").unwrap();
    assert_eq!(del.path, format!("/broker/scalesets/message/{}", msg.message_id));
    assert_eq!((del.auth.as_str(), del.status), ("mq", 204));
    assert_eq!(del.header("content-type"), Some("application/json"));
    let err = session.get_message(0, -1).await.unwrap_err();
    assert!(err.to_string().contains("negative"), "{err}");
}

fn envelope(message_type: &str, statistics: &str, body: &str) -> String {
    let inner = format!(r#"{{"messageId":7,"messageType":"{message_type}","statistics":{statistics},"body":{body}}}"#);
    serde_json::to_string(&inner).unwrap()
}

async fn session_with_fault(s: &rarc_sim::SimServer, name: &str, response: &str) -> MessageSession {
    let client = pat_client(s);
    let id = create_set(&client, name).await;
    let session = MessageSession::open(client, id, "o").await.unwrap();
    fault(
        s,
        &format!(
            r#"{{"path":"/broker/scalesets/message","method":"GET","kind":"status","status":200,"contentType":"application/json","body":{response},"times":1}}"#
        ),
    );
    session
}

#[tokio::test]
async fn s26_s28_s29_s30_message_envelope_rules() {
    let s = sim().await;
    let stats = r#"{"totalAssignedJobs":3}"#;
    // 26: empty or absent body ⇒ statistics only.
    let mut sess = session_with_fault(&s, "m26", &envelope("RunnerScaleSetJobMessages", stats, "\"\"")).await;
    let msg = sess.get_message(0, 10).await.unwrap().unwrap();
    assert_eq!(msg.statistics.unwrap().total_assigned_jobs, 3);
    assert!(msg.job_messages().unwrap().is_empty());
    // 28: another envelope type is a protocol error.
    let mut sess = session_with_fault(&s, "m28", &envelope("SomethingElse", stats, "\"[]\"")).await;
    assert!(sess.get_message(0, 10).await.is_err());
    // 29: a body that is not a JSON array of job messages.
    let mut sess = session_with_fault(
        &s,
        "m29",
        &envelope("RunnerScaleSetJobMessages", stats, "\"[{\\\"messageType\\\":\""),
    )
    .await;
    let msg = sess.get_message(0, 10).await.unwrap().unwrap();
    assert!(msg.job_messages().is_err());
    // 30: statistics null ⇒ protocol error, no panic.
    let mut sess = session_with_fault(&s, "m30", &envelope("RunnerScaleSetJobMessages", "null", "\"\"")).await;
    let err = sess.get_message(0, 10).await.unwrap_err();
    assert!(err.to_string().contains("statistics"), "{err}");
}

#[tokio::test]
async fn s31_empty_200_is_no_message() {
    let s = sim().await;
    let client = pat_client(&s);
    let id = create_set(&client, "empty").await;
    let mut session = MessageSession::open(client, id, "o").await.unwrap();
    fault(
        &s,
        r#"{"path":"/broker/scalesets/message","method":"GET","kind":"emptyBody","times":3}"#,
    );
    for _ in 0..3 {
        assert!(
            session.get_message(0, 1).await.unwrap().is_none(),
            "improved: empty 200 ⇒ no message"
        );
    }
    queue(&s, 1, "empty");
    assert!(
        session.get_message(0, 1).await.unwrap().is_some(),
        "and the next real message still arrives"
    );
}

#[tokio::test]
async fn s32_bom_prefixed_bodies_parse() {
    let s = sim().await;
    fault(&s, r#"{"path":"/","kind":"bom"}"#);
    let client = pat_client(&s);
    let id = create_set(&client, "bom").await;
    let mut session = MessageSession::open(client.clone(), id, "o").await.unwrap();
    queue(&s, 1, "bom");
    let msg = session
        .get_message(0, 1)
        .await
        .unwrap()
        .expect("BOM-prefixed message parses");
    assert_eq!(msg.job_messages().unwrap().len(), 1);
    assert!(client.get_runner_scale_set(1, "bom").await.unwrap().is_some());
    assert!(
        s.sim
            .calls()
            .iter()
            .filter(|c| c.status == 200)
            .all(|c| c.fault.as_deref() == Some("bom"))
    );
}

#[tokio::test]
async fn s33_delete_keeps_query_and_404_is_an_error() {
    let s = sim_with(SimSettings {
        long_poll_ms: 100,
        broker: BrokerStyle::Legacy,
        ..Default::default()
    })
    .await;
    let client = pat_client(&s);
    let id = create_set(&client, "legacy").await;
    let mut session = MessageSession::open(client, id, "o").await.unwrap();
    let sid = session.session().session_id.clone();
    queue(&s, 1, "legacy");
    let msg = session.get_message(0, 1).await.unwrap().unwrap();
    session.delete_message(msg.message_id).await.unwrap();
    let calls = calls_to(&s, "/messages");
    assert_eq!(
        calls[0].query_param("sessionId"),
        Some(sid.clone()),
        "existing MQ query kept on GET"
    );
    assert!(calls[0].query_param("api-version").is_none());
    let del = calls.iter().find(|c| c.method == "DELETE").unwrap();
    assert_eq!(
        del.path,
        format!(
            "/tenant/123/_apis/runtime/runnerscalesets/{id}/messages/{}",
            msg.message_id
        )
    );
    assert_eq!(del.query_param("sessionId"), Some(sid));
    assert_eq!(del.status, 204);
    let err = session.delete_message(msg.message_id).await.unwrap_err();
    assert_eq!(err.status().map(|s| s.as_u16()), Some(404), "{err}");
}

#[tokio::test]
async fn s34_s35_redelivery_and_large_ids() {
    let s = sim_with(SimSettings {
        long_poll_ms: 100,
        first_message_id: 3_000_000_000,
        ..Default::default()
    })
    .await;
    let client = pat_client(&s);
    let id = create_set(&client, "redeliver").await;
    let mut session = MessageSession::open(client.clone(), id, "o").await.unwrap();
    queue(&s, 1, "redeliver");
    let first = session.get_message(0, 1).await.unwrap().unwrap();
    assert_eq!(first.message_id, 3_000_000_000, "ids beyond 2^31 round-trip");
    // The listener dies before acking: the next session, polling from 0, gets it again.
    drop(session);
    let sid = s.sim.with_state(|st| st.sessions()[0].session_id.clone());
    s.sim.with_state(|st| st.drop_session(&sid));
    let mut again = MessageSession::open(client, id, "o").await.unwrap();
    let second = again.get_message(0, 1).await.unwrap().unwrap();
    assert_eq!(second.message_id, first.message_id);
    assert_eq!(second.body, first.body);
}

// ---- §15.6 acquisition ----------------------------------------------------------------------------

#[tokio::test]
async fn s36_s37_offer_mode_acquire_with_mq_token() {
    let s = sim_with(SimSettings {
        long_poll_ms: 200,
        mode: JobMode::Offer,
        ..Default::default()
    })
    .await;
    let client = pat_client(&s);
    let id = create_set(&client, "ghes").await;
    let mut session = MessageSession::open(client, id, "o").await.unwrap();
    let jobs = queue(&s, 2, "ghes");
    let msg = session.get_message(0, 10).await.unwrap().unwrap();
    assert_eq!(msg.statistics.unwrap().total_available_jobs, 2);
    let offered: Vec<i64> = msg
        .job_messages()
        .unwrap()
        .iter()
        .filter_map(|j| match j {
            JobMessage::Available(a) => Some(a.base.runner_request_id),
            _ => None,
        })
        .collect();
    assert_eq!(offered, jobs);
    session.delete_message(msg.message_id).await.unwrap();
    // Someone else took the second job first: the answer is partial and accepted.
    s.sim.with_state(|st| st.acquire_jobs(id, &jobs[1..]));
    let acquired = session.acquire_jobs(&offered).await.unwrap();
    assert_eq!(acquired, jobs, "already ours counts as acquired");
    let call = calls_to(&s, "/acquirejobs").pop().unwrap();
    assert_eq!(call.body, format!("[{},{}]", jobs[0], jobs[1]), "a bare JSON array");
    assert_eq!(
        (call.auth.as_str(), call.status, call.query.as_str()),
        ("mq", 200, "api-version=6.0-preview")
    );
    assert_eq!(call.header("content-type"), Some("application/json"));
    let next = session.get_message(msg.message_id, 10).await.unwrap().unwrap();
    assert_eq!(next.statistics.unwrap().total_assigned_jobs, 2);
    assert!(
        next.job_messages()
            .unwrap()
            .iter()
            .all(|j| matches!(j, JobMessage::Assigned(_)))
    );
}

#[tokio::test]
async fn s39_s40_acquire_refresh_and_retry_limits() {
    let s = sim().await;
    let client = pat_client(&s);
    let id = create_set(&client, "acq").await;
    let mut session = MessageSession::open(client, id, "o").await.unwrap();
    let old_token = session.session().message_queue_access_token.clone();
    fault(&s, r#"{"path":"/acquirejobs","kind":"status","status":401,"times":1}"#);
    session.acquire_jobs(&[1]).await.expect("refresh then one retry");
    assert_ne!(session.session().message_queue_access_token, old_token, "new MQ token");
    let refresh = calls_to(&s, "/sessions/").pop().unwrap();
    assert_eq!(
        (refresh.method.as_str(), refresh.body.as_str(), refresh.auth.as_str()),
        ("PATCH", "", "admin")
    );
    assert_eq!(refresh.header("content-type"), Some("application/json"));
    assert_eq!(
        calls_to(&s, "/acquirejobs")
            .iter()
            .map(|c| c.status)
            .collect::<Vec<_>>(),
        [401, 200]
    );
    // Two 401s in a row: an error after exactly one refresh.
    s.sim.clear_calls();
    fault(&s, r#"{"path":"/acquirejobs","kind":"status","status":401,"times":2}"#);
    let err = session.acquire_jobs(&[1]).await.unwrap_err();
    assert!(err.is_unauthorized(), "{err}");
    assert_eq!(calls_to(&s, "/sessions/").len(), 1);
    // 500: five attempts, then an error.
    s.sim.clear_calls();
    fault(&s, r#"{"path":"/acquirejobs","kind":"status","status":500,"times":5}"#);
    let err = session.acquire_jobs(&[1]).await.unwrap_err();
    assert_eq!(calls_to(&s, "/acquirejobs").len(), 5, "{err}");
}

// ---- §15.7 token expiry and refresh ---------------------------------------------------------------

#[tokio::test]
async fn s41_s42_expired_mq_token_refreshes_and_follows_new_url() {
    let s = sim().await;
    let client = pat_client(&s);
    let id = create_set(&client, "exp").await;
    let mut session = MessageSession::open(client, id, "o").await.unwrap();
    queue(&s, 1, "exp");
    let msg = session.get_message(0, 1).await.unwrap().unwrap();
    // The service expires the MQ token and now hands out legacy queue URLs.
    s.sim.with_state(|st| {
        st.expire_tokens(false, true);
        st.settings.broker = BrokerStyle::Legacy;
    });
    s.sim.clear_calls();
    queue(&s, 1, "exp");
    let next = session.get_message(msg.message_id, 1).await.unwrap().unwrap();
    assert!(next.message_id > msg.message_id);
    let calls = s.sim.calls();
    let seq: Vec<(String, u16)> = calls.iter().map(|c| (c.method.clone(), c.status)).collect();
    assert_eq!(seq, [("GET".into(), 401), ("PATCH".into(), 200), ("GET".into(), 200)]);
    assert!(calls[0].path.starts_with("/broker/"));
    assert!(
        calls[2].path.ends_with("/messages"),
        "refresh's new messageQueueUrl is used"
    );
    assert_eq!(
        calls[2].query_param("lastMessageId"),
        Some(msg.message_id.to_string()),
        "same cursor on the retry"
    );
    // 44: DELETE message 401 ⇒ refresh + retry once.
    s.sim.with_state(|st| st.expire_tokens(false, true));
    s.sim.clear_calls();
    session.delete_message(next.message_id).await.unwrap();
    let seq: Vec<(String, u16)> = s.sim.calls().iter().map(|c| (c.method.clone(), c.status)).collect();
    assert_eq!(
        seq,
        [("DELETE".into(), 401), ("PATCH".into(), 200), ("DELETE".into(), 204)]
    );
}

#[tokio::test]
async fn s43_s45_refresh_404_and_double_401() {
    let s = sim().await;
    let client = pat_client(&s);
    let id = create_set(&client, "r404").await;
    let mut session = MessageSession::open(client, id, "o").await.unwrap();
    // 45: 401 on the poll and again after the refresh ⇒ error.
    fault(
        &s,
        r#"{"path":"/broker/scalesets/message","kind":"status","status":401,"times":2}"#,
    );
    let err = session.get_message(0, 1).await.unwrap_err();
    assert!(err.is_unauthorized(), "{err}");
    // 43: the service forgot the session; refresh answers 404 RunnerAdminException.
    let sid = session.session().session_id.clone();
    s.sim.with_state(|st| st.drop_session(&sid));
    let err = session.refresh().await.unwrap_err();
    assert!(err.is_not_found(), "{err}");
    assert!(
        err.exception_type()
            .unwrap_or_default()
            .contains("RunnerAdminException")
    );
    // The improved listener re-creates the session and carries on.
    session.recreate().await.unwrap();
    assert_ne!(session.session().session_id, sid);
    assert!(session.get_message(0, 1).await.unwrap().is_none());
}

#[tokio::test]
async fn s46_admin_expiry_runs_the_chain_before_refresh_only() {
    let s = sim().await;
    let client = pat_client(&s);
    let id = create_set(&client, "adm").await;
    let mut session = MessageSession::open(client, id, "o").await.unwrap();
    s.sim.with_state(|st| st.expire_tokens(true, false));
    s.sim.clear_calls();
    session.get_message(0, 1).await.unwrap();
    assert!(calls_to(&s, "/api/v3").is_empty(), "GET message never runs the chain");
    // Admin token rejected by the service before its expiry: ARC's client only learns when its
    // expiry comes, so the session refresh an MQ 401 triggers fails with 401 and the listener
    // dies. Ours drops the refused admin token, runs the chain once and carries on.
    s.sim.with_state(|st| st.expire_tokens(false, true));
    s.sim.clear_calls();
    assert!(session.get_message(0, 1).await.unwrap().is_none());
    let refused: Vec<u16> = s
        .sim
        .calls()
        .iter()
        .filter(|c| c.path.contains("/sessions/"))
        .map(|c| c.status)
        .collect();
    assert_eq!(
        refused,
        [401, 200],
        "refresh refused with the stale token, then done with a new one"
    );
    assert_eq!(
        calls_to(&s, "/actions/runner-registration").len(),
        1,
        "the chain ran exactly once"
    );
}

// ---- §15.10 HTTP behaviour ------------------------------------------------------------------------

#[tokio::test]
async fn s60_which_statuses_retry_and_retry_after() {
    let s = sim().await;
    let client = pat_client(&s);
    client.get_runner_scale_set(1, "warm").await.unwrap();
    for (status, attempts) in [
        (429u16, 2usize),
        (500, 2),
        (502, 2),
        (503, 2),
        (501, 1),
        (400, 1),
        (404, 1),
        (409, 1),
    ] {
        s.sim.clear_calls();
        fault(
            &s,
            &format!(r#"{{"path":"/runnerscalesets","kind":"status","status":{status},"times":1}}"#),
        );
        let _ = client.get_runner_scale_set(1, "x").await;
        assert_eq!(calls_to(&s, "/runnerscalesets").len(), attempts, "status {status}");
    }
    // Retry-After overrides the 10 ms backoff on 429 and 503.
    for status in [429, 503] {
        fault(
            &s,
            &format!(r#"{{"path":"/runnerscalesets","kind":"status","status":{status},"retryAfter":"1","times":1}}"#),
        );
        let start = Instant::now();
        client.get_runner_scale_set(1, "x").await.unwrap();
        assert!(
            start.elapsed() >= Duration::from_millis(950),
            "{status}: {:?}",
            start.elapsed()
        );
    }
}

#[tokio::test]
async fn s61_errors_keep_request_ids_and_bodies() {
    let s = sim().await;
    let client = pat_client(&s);
    let id = create_set(&client, "ids").await;
    let err = client.get_runner_scale_set_by_id(id + 100).await.unwrap_err();
    let text = err.to_string();
    assert!(err.activity_id().is_some(), "{text}");
    assert!(
        text.contains("ActivityId") && text.contains("RunnerScaleSetNotFoundException"),
        "{text}"
    );
    fault(
        &s,
        r#"{"path":"/runnerscalesets","kind":"status","status":400,"body":"capacity exceeded","times":1}"#,
    );
    let err = client.get_runner_scale_set(1, "x").await.unwrap_err();
    assert!(err.to_string().contains("capacity exceeded"), "{err}");
    fault(
        &s,
        r#"{"path":"/runnerscalesets","kind":"status","status":400,"times":1}"#,
    );
    let err = client.get_runner_scale_set(1, "x").await.unwrap_err();
    assert!(err.to_string().contains("unknown error"), "{err}");
    let err = ActionsClient::new(pat_config(&s.config_url("my-org")))
        .map(|c| {
            let mut cfg = pat_config(&s.config_url("my-org"));
            cfg.credentials = Credentials::Pat(Secret::new("ghp_wrong_and_secret"));
            drop(c);
            ActionsClient::new(cfg).unwrap()
        })
        .unwrap()
        .get_runner_scale_set(1, "x")
        .await
        .unwrap_err();
    let text = format!("{err} {err:?}");
    assert!(
        err.github_request_id().is_some() && text.contains("Bad credentials"),
        "{text}"
    );
    assert!(
        !text.contains("ghp_wrong_and_secret"),
        "token never in an error: {text}"
    );
}

#[tokio::test]
async fn s62_s63_user_agent_everywhere_and_query_encoding() {
    let s = sim().await;
    let client = pat_client(&s);
    let name = "odd name&with+chars";
    let created = client.create_runner_scale_set(&scale_set_body(name)).await.unwrap();
    let found = client
        .get_runner_scale_set(1, name)
        .await
        .unwrap()
        .expect("found by its odd name");
    assert_eq!(found.id, created.id);
    let lookup = calls_to(&s, "/runnerscalesets").pop().unwrap();
    assert_eq!(
        lookup.query, "api-version=6.0-preview&name=odd%20name%26with%2Bchars&runnerGroupId=1",
        "keys sorted, %20"
    );
    client.get_runner_group_by_name("Default").await.unwrap();
    let group = calls_to(&s, "/runnergroups").pop().unwrap();
    assert_eq!(group.path, "/tenant/123/_apis/runtime/runnergroups/");
    assert!(
        s.sim
            .calls()
            .iter()
            .all(|c| c.header("user-agent").is_some_and(|u| u.starts_with('{')))
    );
    assert!(
        s.sim
            .calls()
            .iter()
            .filter(|c| c.path.contains("/_apis/"))
            .all(|c| c.query.contains("api-version=6.0-preview"))
    );
}

#[tokio::test]
async fn s64_a_hung_connection_is_abandoned() {
    let s = sim().await;
    let mut cfg = pat_config(&s.config_url("my-org"));
    cfg.http_timeout = Duration::from_millis(300);
    cfg.retry = RetryPolicy {
        max_retries: 1,
        wait_min: Duration::from_millis(10),
        wait_max: Duration::from_millis(10),
    };
    let client = ActionsClient::new(cfg).unwrap();
    client.get_runner_scale_set(1, "warm").await.unwrap();
    fault(&s, r#"{"path":"/runnerscalesets","kind":"hang","times":1}"#);
    let start = Instant::now();
    client
        .get_runner_scale_set(1, "x")
        .await
        .expect("second attempt after the timeout");
    assert!(start.elapsed() >= Duration::from_millis(300) && start.elapsed() < Duration::from_secs(5));
    s.stop().await;
}

// ---- controller-side calls (§6.1–§6.6, §6.14–§6.17) -----------------------------------------------

#[tokio::test]
async fn scale_set_crud_groups_jit_and_runner_removal() {
    let s = sim().await;
    let client = pat_client(&s);
    s.sim.with_state(|st| st.add_runner_group("my-group"));
    let group = client.get_runner_group_by_name("my-group").await.unwrap();
    assert_eq!(group.id, 2);
    assert!(client.get_runner_group_by_name("absent").await.is_err());
    let mut body = scale_set_body("crud");
    body.runner_group_id = group.id;
    let set = client.create_runner_scale_set(&body).await.unwrap();
    assert_eq!(
        (set.runner_group_name.as_str(), set.runner_setting.disable_update),
        ("my-group", Some(true))
    );
    assert!(set.statistics.is_some());
    assert!(client.get_runner_scale_set(group.id, "crud").await.unwrap().is_some());
    assert!(client.get_runner_scale_set(group.id, "nope").await.unwrap().is_none());
    let renamed = client
        .update_runner_scale_set(
            set.id,
            &RunnerScaleSet {
                name: "crud2".into(),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(renamed.name, "crud2");
    let patch = calls_to(&s, "/runnerscalesets/").pop().unwrap();
    assert_eq!(
        patch.body,
        r#"{"name":"crud2","RunnerSetting":{},"createdOn":"0001-01-01T00:00:00Z"}"#
    );
    assert_eq!(client.get_runner_scale_set_by_id(set.id).await.unwrap().name, "crud2");

    let jit = client
        .generate_jit_runner_config(
            set.id,
            &JitConfigRequest {
                name: "runner-a".into(),
                work_folder: String::new(),
            },
        )
        .await
        .unwrap();
    assert!(
        !format!("{jit:?}").contains(jit.encoded_jit_config.expose()),
        "JIT config redacted in Debug"
    );
    let decoded = rarc_sim::runner_api::JitConfig::decode(jit.encoded_jit_config.expose()).unwrap();
    assert_eq!(decoded.settings.agent_name, "runner-a");
    let jit_call = calls_to(&s, "/generatejitconfig").pop().unwrap();
    assert_eq!(
        jit_call.body, r#"{"name":"runner-a","workFolder":""}"#,
        "workFolder always sent"
    );
    let dup = client
        .generate_jit_runner_config(
            set.id,
            &JitConfigRequest {
                name: "runner-a".into(),
                work_folder: String::new(),
            },
        )
        .await
        .unwrap_err();
    assert!(dup.is_runner_exists(), "{dup}");
    let r = client.get_runner_by_name("runner-a").await.unwrap().expect("by name");
    assert_eq!((r.id, r.runner_scale_set_id), (jit.runner.id, set.id));
    assert_eq!(client.get_runner(r.id).await.unwrap().name, "runner-a");
    assert!(client.get_runner_by_name("ghost").await.unwrap().is_none());
    // A busy runner cannot be removed; an idle one can; a gone one is AgentNotFound.
    queue(&s, 1, "crud");
    s.sim.with_state(|st| {
        st.runner_online(r.id, true).unwrap();
        st.take_job(r.id).unwrap();
    });
    assert!(client.remove_runner(r.id).await.unwrap_err().is_job_still_running());
    let idle = client
        .generate_jit_runner_config(
            set.id,
            &JitConfigRequest {
                name: "runner-b".into(),
                work_folder: "_w".into(),
            },
        )
        .await
        .unwrap();
    client.remove_runner(idle.runner.id).await.unwrap();
    assert!(
        client
            .remove_runner(idle.runner.id)
            .await
            .unwrap_err()
            .is_runner_not_found()
    );
    let del = calls_to(&s, "/agents/").pop().unwrap();
    assert_eq!(
        del.path,
        format!("/tenant/123/_apis/distributedtask/pools/0/agents/{}", idle.runner.id)
    );
    // Deleting the scale set is refused while a job runs on it.
    assert!(client.delete_runner_scale_set(set.id).await.is_err());
}

#[tokio::test]
async fn s80_scale_set_deleted_server_side() {
    let s = sim().await;
    let client = pat_client(&s);
    let id = create_set(&client, "gone").await;
    client.delete_runner_scale_set(id).await.unwrap();
    assert_eq!(calls_to(&s, "/runnerscalesets/").pop().unwrap().status, 204);
    let err = MessageSession::open(client.clone(), id, "o").await.unwrap_err();
    assert!(err.is_scale_set_not_found(), "{err}");
    assert!(
        client
            .get_runner_scale_set_by_id(id)
            .await
            .unwrap_err()
            .is_scale_set_not_found()
    );
}

// ---- §15.11 proxy and TLS -------------------------------------------------------------------------

#[tokio::test]
async fn s65_s67_https_through_a_proxy_with_a_private_ca() {
    let s = rarc_sim::SimServer::start(rarc_sim::SimOptions {
        tls: true,
        public_host: Some("rarc-sim.test".into()),
        settings: SimSettings {
            long_poll_ms: 100,
            ..Default::default()
        },
        ..Default::default()
    })
    .await
    .unwrap();
    let ca = s.ca_pem.clone().unwrap();
    let proxy = rarc_sim::proxy::RecordingProxy::start(Some("Basic dXNlcjpwYXNz".into()))
        .await
        .unwrap();
    let mut cfg = pat_config(&s.config_url("my-org"));
    cfg.root_ca_pem = Some(ca);
    cfg.proxy = ProxyEnv {
        https_proxy: Some(format!("user:pass@{}", proxy.addr)),
        http_proxy: None,
        no_proxy: Some("example.com,.corp".into()),
    };
    let client = ActionsClient::new(cfg).unwrap();
    let id = create_set(&client, "tls").await;
    let mut session = MessageSession::open(client, id, "o").await.unwrap();
    assert!(session.get_message(0, 1).await.unwrap().is_none());
    let seen = proxy.requests();
    assert!(!seen.is_empty());
    assert!(
        seen.iter().all(|r| r
            .request_line
            .starts_with(&format!("CONNECT rarc-sim.test:{}", s.addr.port()))),
        "{seen:?}"
    );
    assert!(
        seen.iter()
            .all(|r| r.proxy_authorization.as_deref() == Some("Basic dXNlcjpwYXNz")),
        "userinfo ⇒ Proxy-Authorization"
    );
    // Without the CA: certificate verification fails, and it is not retried.
    let mut no_ca = pat_config(&s.config_url("my-org"));
    no_ca.proxy = ProxyEnv {
        https_proxy: Some(format!("user:pass@{}", proxy.addr)),
        ..Default::default()
    };
    no_ca.retry = RetryPolicy {
        max_retries: 4,
        wait_min: Duration::from_millis(500),
        wait_max: Duration::from_secs(1),
    };
    let before = proxy.requests().len();
    let start = Instant::now();
    let err = ActionsClient::new(no_ca)
        .unwrap()
        .get_runner_scale_set(1, "x")
        .await
        .unwrap_err();
    assert!(
        start.elapsed() < Duration::from_millis(500),
        "no retry on a certificate error: {err}"
    );
    assert_eq!(proxy.requests().len(), before + 1);
    // An invalid PEM is refused when the client is built.
    let mut bad = pat_config(&s.config_url("my-org"));
    bad.root_ca_pem = Some("-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n".into());
    assert!(ActionsClient::new(bad).is_err());
    s.stop().await;
}

#[tokio::test]
async fn s66_http_proxy_for_plain_http() {
    let s = rarc_sim::SimServer::start(rarc_sim::SimOptions {
        public_host: Some("rarc-sim.test".into()),
        ..Default::default()
    })
    .await
    .unwrap();
    let proxy = rarc_sim::proxy::RecordingProxy::start(None).await.unwrap();
    let mut cfg: ClientConfig = pat_config(&s.config_url("my-org"));
    cfg.proxy = ProxyEnv {
        http_proxy: Some(proxy.url()),
        ..Default::default()
    };
    ActionsClient::new(cfg)
        .unwrap()
        .get_runner_scale_set(1, "x")
        .await
        .unwrap();
    let seen = proxy.requests();
    assert_eq!(seen.len(), 3, "{seen:?}");
    assert!(seen[0].request_line.starts_with(&format!(
        "POST http://rarc-sim.test:{}/api/v3/orgs/my-org/",
        s.addr.port()
    )));
    assert_eq!(s.sim.calls().len(), 3);
    // Loopback is never proxied.
    let direct = rarc_sim::SimServer::start(rarc_sim::SimOptions::default())
        .await
        .unwrap();
    let mut cfg = pat_config(&direct.config_url("my-org"));
    cfg.proxy = ProxyEnv {
        http_proxy: Some(proxy.url()),
        ..Default::default()
    };
    ActionsClient::new(cfg)
        .unwrap()
        .get_runner_scale_set(1, "x")
        .await
        .unwrap();
    assert_eq!(proxy.requests().len(), 3);
    let _ = DEFAULT_PAT;
}

#[tokio::test]
async fn s79_unclaimed_job_is_cancelled_and_reassigned() {
    let s = sim_with(SimSettings {
        long_poll_ms: 300,
        reassign_after_ms: 150,
        ..Default::default()
    })
    .await;
    let client = pat_client(&s);
    let id = create_set(&client, "reassign").await;
    let mut session = MessageSession::open(client, id, "o").await.unwrap();
    let job = queue(&s, 1, "reassign")[0];
    let mut kinds = Vec::new();
    let mut last = 0;
    let deadline = Instant::now() + Duration::from_secs(5);
    while kinds.len() < 3 && Instant::now() < deadline {
        if let Some(msg) = session.get_message(last, 1).await.unwrap() {
            last = msg.message_id;
            session.delete_message(last).await.unwrap();
            for j in msg.job_messages().unwrap() {
                match j {
                    JobMessage::Assigned(a) => kinds.push(("assigned", a.base.runner_request_id, None)),
                    JobMessage::Completed(c) => kinds.push((
                        "completed",
                        c.base.runner_request_id,
                        Some((c.result, c.base.runner_assign_time)),
                    )),
                    _ => {}
                }
            }
        }
    }
    assert_eq!(kinds.len(), 3, "{kinds:?}");
    assert_eq!((kinds[0].0, kinds[0].1), ("assigned", job));
    assert_eq!((kinds[1].0, kinds[1].1), ("completed", job));
    assert_eq!(
        kinds[1].2,
        Some(("canceled".to_owned(), None)),
        "cancelled without runnerAssignTime"
    );
    assert_eq!(
        (kinds[2].0, kinds[2].1),
        ("assigned", job),
        "the same job is assigned again"
    );
    assert_eq!(s.sim.with_state(|st| st.job(job).unwrap().reassignments), 1);
}

#[tokio::test]
async fn faults_latency_and_malformed_bodies() {
    let s = sim().await;
    let client = pat_client(&s);
    let id = create_set(&client, "lat").await;
    let mut session = MessageSession::open(client.clone(), id, "o").await.unwrap();
    // Latency: the call still succeeds, it just takes longer.
    fault(
        &s,
        r#"{"path":"/runnerscalesets","method":"GET","kind":"latency","ms":400,"times":1}"#,
    );
    let start = Instant::now();
    assert!(client.get_runner_scale_set(1, "lat").await.unwrap().is_some());
    assert!(start.elapsed() >= Duration::from_millis(400), "{:?}", start.elapsed());
    // A malformed 200 on the poll is a decode error (not retried, not a crash), and the session
    // keeps working afterwards.
    fault(
        &s,
        r#"{"path":"/broker/scalesets/message","method":"GET","kind":"malformed","times":1}"#,
    );
    queue(&s, 1, "lat");
    let err = session.get_message(0, 1).await.unwrap_err();
    assert!(err.to_string().contains("decod"), "{err}");
    assert_eq!(
        calls_to(&s, "/broker/scalesets/message").len(),
        1,
        "a malformed body is not retried"
    );
    assert!(session.get_message(0, 1).await.unwrap().is_some());
    // A malformed admin answer is a decode error too.
    fault(
        &s,
        r#"{"path":"/runnerscalesets","method":"GET","kind":"malformed","body":"{\"count\":\"many\"}","times":1}"#,
    );
    assert!(client.get_runner_scale_set(1, "lat").await.is_err());
}
