//! The control API and the service's own input checks, over real HTTP on loopback.

#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

use rarc_sim::{SimOptions, SimServer};
use serde_json::{Value, json};

async fn sim() -> SimServer {
    SimServer::start(SimOptions::default()).await.expect("start rarc-sim")
}

async fn post(url: &str, body: &str) -> (u16, Value) {
    let resp = reqwest::Client::new()
        .post(url)
        .header("content-type", "application/json")
        .body(body.to_owned())
        .send()
        .await
        .expect("send");
    let status = resp.status().as_u16();
    let text = resp.text().await.expect("body");
    (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
}

fn error(v: &Value) -> &str {
    v.get("error").and_then(Value::as_str).unwrap_or_default()
}

#[tokio::test]
async fn bad_control_requests_name_the_field() {
    let s = sim().await;
    let jobs = format!("{}/_sim/jobs", s.url);
    let cases = [
        ("", "request body"),
        ("{", "request body"),
        (r#"{"count":"five","labels":["x"]}"#, "field `count`"),
        (r#"{"count":0,"labels":["x"]}"#, "field `count`"),
        (r#"{"count":1}"#, "field `labels`"),
        (
            r#"{"count":1,"labels":["x"],"repository":"no-slash"}"#,
            "field `repository`",
        ),
        (
            r#"{"count":1,"labels":["x"],"spec":{"steps":[{"name":"both","run":"a","uses":"docker://b"}]}}"#,
            "field `spec.steps[0]`",
        ),
        (
            r#"{"count":1,"labels":["x"],"spec":{"steps":[{"uses":"actions/checkout@v4"}]}}"#,
            "field `spec.steps[0].uses`",
        ),
        (
            r#"{"count":1,"labels":["x"],"spec":{"services":[{"name":"r","ports":"80"}]}}"#,
            "field `spec.services[0]`: invalid type: string \"80\", expected a sequence",
        ),
    ];
    for (body, want) in cases {
        let (status, v) = post(&jobs, body).await;
        assert_eq!(status, 400, "{body}");
        assert!(error(&v).contains(want), "{body}: {v}");
    }
    let faults = format!("{}/_sim/faults", s.url);
    for (body, want) in [
        (
            r#"{"path":"/x","kind":"teleport"}"#,
            "unknown variant `teleport`, expected one of `status`",
        ),
        (r#"{"path":"","kind":"hang"}"#, "field `path`"),
        (r#"{"path":"/x","kind":"status","status":1000}"#, "field `status`"),
        (r#"{"path":"/x","kind":"hang","times":0}"#, "field `times`"),
    ] {
        let (status, v) = post(&faults, body).await;
        assert_eq!(status, 400, "{body}");
        assert!(error(&v).contains(want), "{body}: {v}");
    }
    let (status, v) = post(&format!("{}/_sim/tokens/expire", s.url), "{}").await;
    assert_eq!(status, 400);
    assert!(error(&v).contains("`admin`"), "{v}");
    let resp = reqwest::Client::new()
        .patch(format!("{}/_sim/settings", s.url))
        .body(r#"{"longPoll":5}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 400);
    assert!(resp.text().await.unwrap().contains("field `longPoll`: unknown setting"));
    let resp = reqwest::get(format!("{}/_sim/nope", s.url)).await.unwrap();
    assert_eq!(resp.status().as_u16(), 404);
    let resp = reqwest::get(format!("{}/_sim/jobs?state=flying", s.url)).await.unwrap();
    assert_eq!(resp.status().as_u16(), 400);
    // Nothing was queued by any of the refused requests.
    assert_eq!(s.sim.with_state(|st| st.jobs().len()), 0);
    s.stop().await;
}

#[tokio::test]
async fn queue_list_wait_and_settings_round_trip() {
    let s = sim().await;
    let (status, v) = post(
        &format!("{}/_sim/jobs", s.url),
        r#"{"count":3,"labels":["linux"],"durationMs":5}"#,
    )
    .await;
    assert_eq!(status, 201);
    assert_eq!(v["ids"], json!([1, 2, 3]));
    let jobs: Value = reqwest::get(format!("{}/_sim/jobs?state=queued", s.url))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(jobs.as_array().unwrap().len(), 3, "no scale set matches yet: queued");
    assert_eq!(jobs[0]["spec"]["durationMs"], 5);
    let resp = reqwest::get(format!("{}/_sim/jobs/wait?state=completed&count=1&timeoutMs=50", s.url))
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 408);
    let resp = reqwest::Client::new()
        .patch(format!("{}/_sim/settings", s.url))
        .body(r#"{"longPollMs":100,"mode":"offer"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    let settings: Value = resp.json().await.unwrap();
    assert_eq!(
        (settings["longPollMs"].as_u64(), settings["mode"].as_str()),
        (Some(100), Some("offer"))
    );
    s.stop().await;
}

#[tokio::test]
async fn service_rejects_what_the_real_service_rejects() {
    let s = sim().await;
    let c = reqwest::Client::new();
    // No token, a PAT where an admin token is needed, an unknown token: 401 with the exception JSON.
    let sets = format!(
        "{}/tenant/123/_apis/runtime/runnerscalesets?api-version=6.0-preview",
        s.url
    );
    for auth in [
        None,
        Some("Bearer ghp_rarcsimdefaulttoken0000000000000000"),
        Some("Bearer nope"),
    ] {
        let mut req = c.get(&sets);
        if let Some(a) = auth {
            req = req.header("authorization", a);
        }
        let resp = req.send().await.unwrap();
        assert_eq!(resp.status().as_u16(), 401, "{auth:?}");
        assert!(resp.headers().contains_key("activityid"));
        let body: Value = resp.json().await.unwrap();
        assert!(body["typeName"].as_str().unwrap().contains("VssUnauthorizedException"));
    }
    // Registration token with a wrong PAT: GitHub's error shape and request id.
    let resp = c
        .post(format!(
            "{}/api/v3/orgs/my-org/actions/runners/registration-token",
            s.url
        ))
        .header("authorization", "Bearer ghp_wrong")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 401);
    assert!(resp.headers().contains_key("x-github-request-id"));
    assert_eq!(resp.json::<Value>().await.unwrap()["message"], "Bad credentials");
    // runner-registration with an unknown registration token.
    let resp = c
        .post(format!("{}/api/v3/actions/runner-registration", s.url))
        .header("authorization", "RemoteAuth AAAA")
        .body(r#"{"url":"http://x/my-org","runner_event":"register"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 401);
    // Broker without a message-queue token.
    let resp = c
        .get(format!("{}/broker/scalesets/message", s.url))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 401);
    // Every refused call is in the call log, with its status.
    let calls = s.sim.calls();
    assert_eq!(calls.len(), 6);
    assert!(calls.iter().all(|c| c.status == 401));
    assert_eq!(calls[1].auth, "pat");
    assert_eq!(calls[1].header("authorization"), Some("Bearer ***"));
    s.stop().await;
}

/// Runs the PAT chain by hand; returns the admin token.
async fn admin_token(s: &SimServer) -> String {
    let c = reqwest::Client::new();
    let reg: Value = c
        .post(format!(
            "{}/api/v3/orgs/my-org/actions/runners/registration-token",
            s.url
        ))
        .header("authorization", format!("Bearer {}", rarc_sim::auth::DEFAULT_PAT))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let reg = reg["token"].as_str().unwrap().to_owned();
    let register = |url: String, event: &str| {
        c.post(format!("{}/api/v3/actions/runner-registration", s.url))
            .header("authorization", format!("RemoteAuth {reg}"))
            .body(json!({ "url": url, "runner_event": event }).to_string())
            .send()
    };
    // The token was issued for my-org: another scope or another event is refused.
    assert_eq!(
        register(format!("{}/other-org", s.url), "register")
            .await
            .unwrap()
            .status()
            .as_u16(),
        403
    );
    assert_eq!(
        register(format!("{}/my-org", s.url), "remove")
            .await
            .unwrap()
            .status()
            .as_u16(),
        422
    );
    let conn: Value = register(format!("{}/my-org", s.url), "register")
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(conn["url"], format!("{}/tenant/123/", s.url));
    conn["token"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn api_version_sessions_and_token_kinds_are_enforced() {
    let s = sim().await;
    let admin = admin_token(&s).await;
    let c = reqwest::Client::new();
    let a = format!("{}/tenant/123/_apis/runtime/runnerscalesets", s.url);
    let send = |method: reqwest::Method, url: String, token: &str, body: &str| {
        c.request(method, url)
            .header("authorization", format!("Bearer {token}"))
            .body(body.to_owned())
            .send()
    };
    let exception = |v: &Value| v["typeName"].as_str().unwrap_or_default().to_owned();
    let resp = send(reqwest::Method::GET, a.clone(), &admin, "").await.unwrap();
    assert_eq!(resp.status().as_u16(), 400);
    assert!(exception(&resp.json().await.unwrap()).contains("VssVersionNotSpecifiedException"));
    let resp = send(reqwest::Method::GET, format!("{a}?api-version=5.1"), &admin, "")
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 400);
    assert!(exception(&resp.json().await.unwrap()).contains("VssVersionOutOfRangeException"));
    let resp = send(
        reqwest::Method::POST,
        format!("{a}?api-version=6.0-preview"),
        &admin,
        r#"{"name":"x"}"#,
    )
    .await
    .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    let set: Value = resp.json().await.unwrap();
    let id = set["id"].as_i64().unwrap();
    assert_eq!(
        set["labels"],
        json!([{ "type": "System", "name": "x" }]),
        "the name is the default label"
    );
    // Session bodies: a bad session id or no owner is refused; classic body (no sessionId) accepted.
    let sessions = format!("{a}/{id}/sessions?api-version=6.0-preview");
    for body in [
        r#"{"sessionId":"nope","ownerName":"o"}"#,
        r#"{"sessionId":"00000000-0000-0000-0000-000000000000"}"#,
        "{",
    ] {
        let resp = send(reqwest::Method::POST, sessions.clone(), &admin, body)
            .await
            .unwrap();
        assert_eq!(resp.status().as_u16(), 400, "{body}");
    }
    let session: Value = send(
        reqwest::Method::POST,
        sessions.clone(),
        &admin,
        r#"{"ownerName":"classic"}"#,
    )
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    let mq = session["messageQueueAccessToken"].as_str().unwrap();
    // Unknown sessions: delete ⇒ 400 SessionExpired, refresh ⇒ 404 RunnerAdminException.
    let unknown = format!("{a}/{id}/sessions/6d1a2c1e-9a0b-4b8e-8a58-0c7c2f9f6a11?api-version=6.0-preview");
    let resp = send(reqwest::Method::DELETE, unknown.clone(), &admin, "")
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 400);
    assert!(exception(&resp.json().await.unwrap()).contains("RunnerScaleSetSessionExpiredException"));
    let resp = send(reqwest::Method::PATCH, unknown, &admin, "").await.unwrap();
    assert_eq!(resp.status().as_u16(), 404);
    assert!(exception(&resp.json().await.unwrap()).contains("RunnerAdminException"));
    // Token kinds: the admin token cannot poll or acquire; the MQ token cannot do admin calls.
    let broker = format!("{}/broker/scalesets/message", s.url);
    assert_eq!(
        send(reqwest::Method::GET, broker.clone(), &admin, "")
            .await
            .unwrap()
            .status()
            .as_u16(),
        401
    );
    let acquire = format!("{a}/{id}/acquirejobs?api-version=6.0-preview");
    assert_eq!(
        send(reqwest::Method::POST, acquire.clone(), &admin, "[1]")
            .await
            .unwrap()
            .status()
            .as_u16(),
        401
    );
    assert_eq!(
        send(reqwest::Method::POST, acquire, mq, "[1]")
            .await
            .unwrap()
            .status()
            .as_u16(),
        200
    );
    assert_eq!(
        send(reqwest::Method::GET, format!("{a}?api-version=6.0-preview"), mq, "")
            .await
            .unwrap()
            .status()
            .as_u16(),
        401
    );
    // A negative cursor or capacity is a 400 with a plain-text body.
    let resp = c
        .get(format!("{broker}?lastMessageId=-4"))
        .bearer_auth(mq)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 400);
    let resp = c
        .get(&broker)
        .bearer_auth(mq)
        .header("X-ScaleSetMaxCapacity", "-1")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 400);
    assert!(
        resp.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain")
    );
    // The classic client's `//_apis` path is normalised.
    let resp = send(
        reqwest::Method::GET,
        format!(
            "{}/tenant/123//_apis/runtime/runnerscalesets/{id}?api-version=6.0-preview",
            s.url
        ),
        &admin,
        "",
    )
    .await
    .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    s.stop().await;
}
