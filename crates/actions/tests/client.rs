//! The token chain and the admin-token calls against a scripted server on 127.0.0.1.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{Mock, PAT, REG_TOKEN, Reply, admin_jwt, now_secs};
use rarc_actions::types::{JitConfigRequest, Label, RunnerScaleSet};
use rarc_actions::{ActionsClient, Credentials, Error, Secret};
use std::time::Duration;

const HOUR: Duration = Duration::from_secs(3600);
const SCALE_SETS: &str = "/tenant/123/_apis/runtime/runnerscalesets";

fn scale_set(id: i64, name: &str) -> serde_json::Value {
    serde_json::json!({"id": id, "name": name, "runnerGroupId": 1, "runnerGroupName": "Default",
        "labels": [{"type": "System", "name": name}], "RunnerSetting": {"disableUpdate": true}})
}

#[tokio::test]
async fn pat_chain_then_admin_call_with_exact_headers() {
    let mock = Mock::start().await;
    mock.chain(HOUR);
    mock.on(
        "GET",
        SCALE_SETS,
        vec![Reply::json(
            200,
            serde_json::json!({"count": 1, "value": [scale_set(5, "my set")]}),
        )],
    );
    let client = ActionsClient::new(mock.config()).unwrap();
    assert_eq!(client.cached_actions_url().await, None);

    let found = client.get_runner_scale_set(1, "my set").await.unwrap().unwrap();
    assert_eq!(found.id, 5);
    assert_eq!(found.runner_setting.disable_update, Some(true));
    assert_eq!(client.cached_actions_url().await.unwrap().as_str(), mock.actions_base());

    let log = mock.requests();
    assert_eq!(log.len(), 3, "{log:#?}");
    let (reg, registration, get) = (&log[0], &log[1], &log[2]);

    assert!(
        mock.requests_to("POST", "/api/v3/app/installations/42/access_tokens")
            .is_empty()
    );
    assert_eq!(reg.path, "/api/v3/orgs/my-org/actions/runners/registration-token");
    assert_eq!(reg.header("authorization"), Some(format!("Bearer {PAT}").as_str()));
    assert_eq!(reg.header("content-type"), Some("application/vnd.github.v3+json"));
    assert_eq!(reg.header("content-length"), Some("0"));
    assert!(reg.body.is_empty());

    assert_eq!(
        registration.header("authorization"),
        Some(format!("RemoteAuth {REG_TOKEN}").as_str())
    );
    assert_eq!(registration.header("content-type"), Some("application/json"));
    assert_eq!(
        String::from_utf8(registration.body.clone()).unwrap(),
        format!("{{\"url\":\"{}/my-org\",\"runner_event\":\"register\"}}\n", mock.base)
    );

    assert_eq!(
        get.query.as_deref(),
        Some("api-version=6.0-preview&name=my%20set&runnerGroupId=1")
    );
    assert!(get.header("authorization").unwrap().starts_with("Bearer eyJ"));
    assert_eq!(get.header("content-type"), Some("application/json"));

    for r in &log {
        let ua: serde_json::Value = serde_json::from_str(r.header("user-agent").unwrap()).unwrap();
        assert_eq!(ua["system"], "rarc");
        assert_eq!(ua["subsystem"], "test");
        assert_eq!(ua["scale_set_id"], 5);
        assert_eq!(ua["kind"], "scaleset");
    }
}

#[tokio::test]
async fn app_chain_signs_a_jwt_and_uses_the_installation_token() {
    let mock = Mock::start().await;
    mock.chain(HOUR);
    mock.on(
        "POST",
        "/api/v3/app/installations/42/access_tokens",
        vec![Reply::json(
            201,
            serde_json::json!({"token": "ghs_inst", "expires_at": "2099-01-01T00:00:00Z"}),
        )],
    );
    mock.on("DELETE", &format!("{SCALE_SETS}/5"), vec![Reply::empty(204)]);
    let mut config = mock.config();
    config.credentials = Credentials::App {
        app_id: "Iv1.client-id".into(),
        installation_id: 42,
        private_key: Secret::new(include_str!("../testdata/app-key-pkcs8.pem")),
    };
    let client = ActionsClient::new(config).unwrap();
    client.delete_runner_scale_set(5).await.unwrap();

    let install = &mock.requests_to("POST", "/api/v3/app/installations/42/access_tokens")[0];
    assert_eq!(install.header("content-type"), Some("application/vnd.github+json"));
    assert_eq!(
        install.header("accept"),
        Some("*/*"),
        "reqwest's default; Go sends none"
    );
    let jwt = install
        .header("authorization")
        .unwrap()
        .strip_prefix("Bearer ")
        .unwrap();
    let key = jsonwebtoken::DecodingKey::from_rsa_pem(include_bytes!("../testdata/app-key-public.pem")).unwrap();
    let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::RS256);
    validation.required_spec_claims.clear();
    let claims = jsonwebtoken::decode::<serde_json::Value>(jwt, &key, &validation)
        .unwrap()
        .claims;
    assert_eq!(claims["iss"], "Iv1.client-id");
    let iat = claims["iat"].as_i64().unwrap();
    assert!((now_secs() - 60 - iat).abs() < 5);
    assert_eq!(claims["exp"].as_i64().unwrap() - iat, 540);

    let reg = &mock.requests_to("POST", "/api/v3/orgs/my-org/actions/runners/registration-token")[0];
    assert_eq!(reg.header("authorization"), Some("Bearer ghs_inst"));
}

#[tokio::test]
async fn installation_token_failure_includes_status_and_body() {
    let mock = Mock::start().await;
    mock.on(
        "POST",
        "/api/v3/app/installations/42/access_tokens",
        vec![
            Reply::json(
                404,
                serde_json::json!({"message": "Not Found", "documentation_url": "https://docs"}),
            )
            .header("x-github-request-id", "REQ:1"),
        ],
    );
    let mut config = mock.config();
    config.credentials = Credentials::App {
        app_id: "1".into(),
        installation_id: 42,
        private_key: Secret::new(include_str!("../testdata/app-key-pkcs1.pem")),
    };
    let client = ActionsClient::new(config).unwrap();
    let err = client.ensure_admin_token().await.unwrap_err();
    assert_eq!(err.status().map(|s| s.as_u16()), Some(404));
    let text = err.to_string();
    assert!(
        text.contains("404") && text.contains("Not Found") && text.contains("REQ:1"),
        "{text}"
    );
    assert_eq!(mock.requests().len(), 1, "4xx is not retried");
}

#[tokio::test]
async fn expiring_admin_token_reruns_the_chain_before_each_call() {
    let mock = Mock::start().await;
    mock.chain(Duration::from_secs(30));
    mock.on(
        "GET",
        &format!("{SCALE_SETS}/5"),
        vec![Reply::json(200, scale_set(5, "s"))],
    );
    let client = ActionsClient::new(mock.config()).unwrap();
    client.get_runner_scale_set_by_id(5).await.unwrap();
    client.get_runner_scale_set_by_id(5).await.unwrap();
    assert_eq!(mock.requests_to("POST", "/api/v3/actions/runner-registration").len(), 2);

    let mock = Mock::start().await;
    mock.chain(HOUR);
    mock.on(
        "GET",
        &format!("{SCALE_SETS}/5"),
        vec![Reply::json(200, scale_set(5, "s"))],
    );
    let client = ActionsClient::new(mock.config()).unwrap();
    let clone = client.clone();
    client.get_runner_scale_set_by_id(5).await.unwrap();
    clone.get_runner_scale_set_by_id(5).await.unwrap();
    assert_eq!(
        mock.requests_to("POST", "/api/v3/actions/runner-registration").len(),
        1,
        "clones share the cache"
    );
    assert_eq!(mock.requests().len(), 4);
}

#[tokio::test]
async fn runner_registration_retries_401_and_403() {
    let mock = Mock::start().await;
    mock.chain(HOUR);
    let ok = Reply::json(
        201,
        serde_json::json!({"url": mock.actions_base(), "token": admin_jwt(HOUR)}),
    );
    mock.on(
        "POST",
        "/api/v3/actions/runner-registration",
        vec![
            Reply::empty(401),
            Reply::empty(403),
            Reply::empty(401),
            Reply::empty(403),
            ok.clone(),
        ],
    );
    let client = ActionsClient::new(mock.config()).unwrap();
    client.ensure_admin_token().await.unwrap();
    let attempts = mock.requests_to("POST", "/api/v3/actions/runner-registration");
    assert_eq!(attempts.len(), 5);
    assert!(
        attempts
            .iter()
            .all(|r| r.body == attempts[0].body && !r.body.is_empty()),
        "body re-sent every attempt"
    );

    // Five failures: the last response is surfaced.
    mock.on(
        "POST",
        "/api/v3/actions/runner-registration",
        vec![Reply::text(401, "bad registration token")],
    );
    let client = ActionsClient::new(mock.config()).unwrap();
    let err = client.ensure_admin_token().await.unwrap_err();
    assert!(err.is_unauthorized(), "{err}");
    assert!(err.to_string().contains("bad registration token"));
    assert_eq!(
        mock.requests_to("POST", "/api/v3/actions/runner-registration").len(),
        10
    );
}

#[tokio::test]
async fn runner_registration_response_is_validated() {
    for (body, needle) in [
        (serde_json::json!({"token": admin_jwt(HOUR)}), "no url"),
        (serde_json::json!({"url": "http://x/"}), "no token"),
        (serde_json::json!({"url": "http://x/", "token": "opaque"}), "not a JWT"),
    ] {
        let mock = Mock::start().await;
        mock.chain(HOUR);
        mock.on(
            "POST",
            "/api/v3/actions/runner-registration",
            vec![Reply::json(200, body)],
        );
        let client = ActionsClient::new(mock.config()).unwrap();
        let err = client.ensure_admin_token().await.unwrap_err();
        assert!(matches!(&err, Error::Protocol(m) if m.contains(needle)), "{err}");
    }
}

#[tokio::test]
async fn retries_5xx_and_429_but_not_501_or_4xx() {
    let mock = Mock::start().await;
    mock.chain(HOUR);
    let path = format!("{SCALE_SETS}/5/sessions");
    mock.on("POST", &path, vec![Reply::empty(503).header("activityid", "act-9")]);
    let client = ActionsClient::new(mock.config()).unwrap();
    let err = client.create_message_session(5, "pod").await.unwrap_err();
    assert!(err.is_retries_exhausted(), "{err}");
    assert!(err.to_string().contains("giving up after 5 attempt(s)"), "{err}");
    assert_eq!(err.activity_id(), Some("act-9"));
    let sent = mock.requests_to("POST", &path);
    assert_eq!(sent.len(), 5);
    assert!(sent.iter().all(|r| r.body == sent[0].body));

    mock.clear_log();
    mock.on("POST", &path, vec![Reply::empty(501)]);
    let err = client.create_message_session(5, "pod").await.unwrap_err();
    assert_eq!(err.status().map(|s| s.as_u16()), Some(501));
    assert_eq!(err.to_string().matches("unknown error").count(), 1);
    assert_eq!(mock.requests_to("POST", &path).len(), 1);

    mock.clear_log();
    let session = common::session_json(&mock, "s-1", "/broker/message", "mq");
    mock.on(
        "POST",
        &path,
        vec![
            Reply::empty(429).header("retry-after", "0"),
            Reply::empty(500),
            Reply::json(200, session),
        ],
    );
    let s = client.create_message_session(5, "pod").await.unwrap();
    assert_eq!(s.session_id, "s-1");
    assert_eq!(mock.requests_to("POST", &path).len(), 3);
    let body: serde_json::Value = serde_json::from_slice(&mock.requests_to("POST", &path)[0].body).unwrap();
    assert_eq!(
        body,
        serde_json::json!({"sessionId": "00000000-0000-0000-0000-000000000000", "ownerName": "pod"})
    );

    mock.clear_log();
    mock.on(
        "POST",
        &path,
        vec![Reply::exception(
            409,
            "GitHub.Actions.Runtime.WebApi.RunnerScaleSetSessionConflictException",
            "already has an active session",
        )],
    );
    let err = client.create_message_session(5, "pod").await.unwrap_err();
    assert!(err.is_session_conflict());
    assert_eq!(mock.requests_to("POST", &path).len(), 1);
}

#[tokio::test]
async fn admin_calls_use_the_documented_paths_and_statuses() {
    let mock = Mock::start().await;
    mock.chain(HOUR);
    let client = ActionsClient::new(mock.config()).unwrap();

    mock.on("POST", SCALE_SETS, vec![Reply::json(200, scale_set(7, "new"))]);
    let created = client
        .create_runner_scale_set(&RunnerScaleSet {
            name: "new".into(),
            runner_group_id: 1,
            labels: vec![Label::system("new")],
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(created.id, 7);
    let body = String::from_utf8(mock.requests_to("POST", SCALE_SETS)[0].body.clone()).unwrap();
    assert!(body.contains(r#""createdOn":"0001-01-01T00:00:00Z""#), "{body}");

    mock.on(
        "PATCH",
        &format!("{SCALE_SETS}/7"),
        vec![Reply::json(200, scale_set(7, "renamed"))],
    );
    let updated = client
        .update_runner_scale_set(
            7,
            &RunnerScaleSet {
                name: "renamed".into(),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(updated.name, "renamed");

    mock.on("DELETE", &format!("{SCALE_SETS}/7"), vec![Reply::empty(200)]);
    assert_eq!(
        client
            .delete_runner_scale_set(7)
            .await
            .unwrap_err()
            .status()
            .map(|s| s.as_u16()),
        Some(200),
        "only 204 is success"
    );

    mock.on(
        "GET",
        SCALE_SETS,
        vec![Reply::json(200, serde_json::json!({"count": 0, "value": []}))],
    );
    assert_eq!(client.get_runner_scale_set(1, "nope").await.unwrap(), None);
    mock.on(
        "GET",
        SCALE_SETS,
        vec![Reply::json(
            200,
            serde_json::json!({"count": 2, "value": [scale_set(1, "a"), scale_set(2, "a")]}),
        )],
    );
    assert!(
        matches!(client.get_runner_scale_set(1, "a").await, Err(Error::Protocol(m)) if m.contains("multiple runner scale sets"))
    );

    let groups = "/tenant/123/_apis/runtime/runnergroups/";
    mock.on("GET", groups, vec![Reply::json(200, serde_json::json!({"count": 1, "value": [{"id": 2, "name": "my group", "size": 0, "isDefaultGroup": false}]}))]);
    assert_eq!(client.get_runner_group_by_name("my group").await.unwrap().id, 2);
    assert_eq!(
        mock.requests_to("GET", groups)[0].query.as_deref(),
        Some("api-version=6.0-preview&groupName=my%20group")
    );
    mock.on(
        "GET",
        groups,
        vec![Reply::json(200, serde_json::json!({"count": 0, "value": []}))],
    );
    assert!(
        matches!(client.get_runner_group_by_name("x").await, Err(Error::Protocol(m)) if m.contains("no runner group found"))
    );

    let jit = format!("{SCALE_SETS}/5/generatejitconfig");
    mock.on("POST", &jit, vec![Reply::json(200, serde_json::json!({"runner": {"id": 11, "name": "r1", "runnerScaleSetId": 5}, "encodedJITConfig": "c2VjcmV0"}))]);
    let config = client
        .generate_jit_runner_config(
            5,
            &JitConfigRequest {
                name: "r1".into(),
                work_folder: String::new(),
            },
        )
        .await
        .unwrap();
    assert_eq!(config.runner.id, 11);
    assert_eq!(config.encoded_jit_config.expose(), "c2VjcmV0");
    assert_eq!(
        mock.requests_to("POST", &jit)[0].body,
        br#"{"name":"r1","workFolder":""}"#
    );
    mock.on(
        "POST",
        &jit,
        vec![Reply::exception(
            409,
            "GitHub.DistributedTask.WebApi.AgentExistsException",
            "exists",
        )],
    );
    let err = client
        .generate_jit_runner_config(
            5,
            &JitConfigRequest {
                name: "r1".into(),
                work_folder: String::new(),
            },
        )
        .await
        .unwrap_err();
    assert!(err.is_runner_exists() && !err.is_session_conflict());

    let agents = "/tenant/123/_apis/distributedtask/pools/0/agents";
    mock.on(
        "GET",
        agents,
        vec![Reply::json(200, serde_json::json!({"count": 0, "value": []}))],
    );
    assert_eq!(client.get_runner_by_name("r 1&2").await.unwrap(), None);
    assert_eq!(
        mock.requests_to("GET", agents)[0].query.as_deref(),
        Some("agentName=r%201%262&api-version=6.0-preview")
    );
    mock.on(
        "GET",
        &format!("{agents}/11"),
        vec![Reply::json(
            200,
            serde_json::json!({"id": 11, "name": "r1", "runnerScaleSetId": 5}),
        )],
    );
    assert_eq!(client.get_runner(11).await.unwrap().runner_scale_set_id, 5);
    mock.on(
        "DELETE",
        &format!("{agents}/11"),
        vec![Reply::exception(
            400,
            "GitHub.DistributedTask.WebApi.JobStillRunningException",
            "busy",
        )],
    );
    assert!(client.remove_runner(11).await.unwrap_err().is_job_still_running());
    mock.on(
        "DELETE",
        &format!("{agents}/11"),
        vec![Reply::exception(404, "AgentNotFoundException", "gone")],
    );
    assert!(client.remove_runner(11).await.unwrap_err().is_runner_not_found());
    mock.on("DELETE", &format!("{agents}/11"), vec![Reply::empty(204)]);
    client.remove_runner(11).await.unwrap();

    let acquirable = format!("{SCALE_SETS}/5/acquirablejobs");
    mock.on("GET", &acquirable, vec![Reply::empty(204)]);
    assert_eq!(client.get_acquirable_jobs(5).await.unwrap().count, 0);

    let refresh = format!("{SCALE_SETS}/5/sessions/s-1");
    mock.on(
        "PATCH",
        &refresh,
        vec![Reply::json(
            200,
            common::session_json(&mock, "s-1", "/broker/message", "mq2"),
        )],
    );
    client.refresh_message_session(5, "s-1").await.unwrap();
    let sent = &mock.requests_to("PATCH", &refresh)[0];
    assert!(sent.body.is_empty());
    assert_eq!(sent.header("content-type"), Some("application/json"));
    mock.on(
        "DELETE",
        &refresh,
        vec![Reply::exception(
            400,
            "GitHub.Actions.Runtime.WebApi.RunnerScaleSetSessionExpiredException",
            "not valid",
        )],
    );
    assert_eq!(
        client
            .delete_message_session(5, "s-1")
            .await
            .unwrap_err()
            .status()
            .map(|s| s.as_u16()),
        Some(400)
    );

    for r in mock.requests().iter().filter(|r| r.path.starts_with("/tenant/")) {
        assert_eq!(
            r.header("content-type"),
            Some("application/json"),
            "{} {}",
            r.method,
            r.path
        );
        assert!(
            r.query
                .as_deref()
                .unwrap_or_default()
                .contains("api-version=6.0-preview"),
            "{} {}",
            r.method,
            r.path
        );
    }
}

#[tokio::test]
async fn actions_base_without_trailing_slash_and_bom_bodies() {
    let mock = Mock::start().await;
    mock.chain_with_base(HOUR, &format!("{}/tenant/123", mock.base));
    let mut reply = Reply::json(200, scale_set(5, "s"));
    reply.body.splice(0..0, b"\xEF\xBB\xBF".iter().copied());
    mock.on("GET", &format!("{SCALE_SETS}/5"), vec![reply]);
    let client = ActionsClient::new(mock.config()).unwrap();
    assert_eq!(client.get_runner_scale_set_by_id(5).await.unwrap().name, "s");
}
