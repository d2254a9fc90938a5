//! The control API under `/_sim`: queue jobs, read state and the call log, inject faults.
//!
//! | call | what it does |
//! | --- | --- |
//! | `GET /_sim/ping` | 204, nothing else (a benchmark floor) |
//! | `GET /_sim/state` | counts of scale sets, sessions, runners, jobs by state |
//! | `POST /_sim/jobs` | queue jobs: `{"count":N,"labels":[..],"durationMs":..,"spec":{..}}` ⇒ `{"ids":[..]}` |
//! | `GET /_sim/jobs[?state=S]` | jobs and their state (`queued`, `assigned`, `running`, `completed`, `lost`) |
//! | `GET /_sim/jobs/{id}`, `GET /_sim/jobs/{id}/log` | one job, its streamed output |
//! | `GET /_sim/jobs/wait?state=S&count=N&timeoutMs=T` | wait until N jobs are in state S (408 on timeout) |
//! | `GET /_sim/calls[?since=SEQ]`, `DELETE /_sim/calls` | the call log |
//! | `GET/POST/DELETE /_sim/faults`, `DELETE /_sim/faults/{id}` | fault rules ([`crate::faults::FaultRule`]) |
//! | `POST /_sim/tokens/expire` | `{"admin":true,"mq":true}`: make current tokens invalid |
//! | `GET/PATCH /_sim/settings` | run-time settings ([`crate::config::SimSettings`]) |
//! | `GET /_sim/scalesets`, `DELETE /_sim/scalesets/{id}` | scale sets; delete one server-side |
//! | `GET /_sim/runners`, `GET /_sim/sessions`, `DELETE /_sim/sessions/{id}` | runners, sessions; expire a session |
//! | `POST /_sim/pats`, `POST /_sim/apps`, `POST /_sim/runner-groups` | add a PAT, an app, a runner group |

use super::{Sim, control_body};
use crate::auth::App;
use crate::config::SimSettings;
use crate::error::ApiError;
use crate::faults::FaultRule;
use crate::state::{JobState, QueueJobs};
use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use serde::Deserialize;
use std::collections::HashMap;
use tokio::time::{Duration, Instant};

pub fn routes() -> Router<Sim> {
    Router::new()
        .route("/_sim/ping", get(ping))
        .route("/_sim/state", get(state))
        .route("/_sim/jobs", get(list_jobs).post(queue_jobs))
        .route("/_sim/jobs/wait", get(wait_jobs))
        .route("/_sim/jobs/{id}", get(get_job))
        .route("/_sim/jobs/{id}/log", get(job_log))
        .route("/_sim/calls", get(calls).delete(clear_calls))
        .route("/_sim/faults", get(list_faults).post(add_fault).delete(clear_faults))
        .route("/_sim/faults/{id}", delete(remove_fault))
        .route("/_sim/tokens/expire", post(expire_tokens))
        .route("/_sim/settings", get(get_settings).patch(patch_settings))
        .route("/_sim/scalesets", get(scale_sets))
        .route("/_sim/scalesets/{id}", delete(delete_scale_set))
        .route("/_sim/runners", get(runners))
        .route("/_sim/sessions", get(sessions))
        .route("/_sim/sessions/{id}", delete(drop_session))
        .route("/_sim/pats", post(add_pat))
        .route("/_sim/apps", post(add_app))
        .route("/_sim/runner-groups", post(add_runner_group))
        .route("/_sim", get(index))
        .route("/_sim/{*rest}", axum::routing::any(unknown))
}

fn id(text: &str) -> Result<i64, ApiError> {
    text.parse()
        .map_err(|_| ApiError::control(format!("path: `{text}` is not a numeric id")))
}

async fn index() -> Response {
    Json(serde_json::json!({
        "endpoints": ["/_sim/state", "/_sim/jobs", "/_sim/jobs/wait", "/_sim/calls", "/_sim/faults",
                      "/_sim/tokens/expire", "/_sim/settings", "/_sim/scalesets", "/_sim/runners",
                      "/_sim/sessions", "/_sim/pats", "/_sim/apps", "/_sim/runner-groups"]
    }))
    .into_response()
}

async fn unknown(uri: axum::http::Uri) -> ApiError {
    ApiError::control_not_found(format!("no control endpoint {}; GET /_sim lists them", uri.path()))
}

/// The cheapest call there is: benchmarks use it as their floor.
async fn ping() -> StatusCode {
    StatusCode::NO_CONTENT
}

async fn state(State(sim): State<Sim>) -> Response {
    Json(sim.with_state(|s| s.summary())).into_response()
}

async fn queue_jobs(State(sim): State<Sim>, body: Bytes) -> Result<Response, ApiError> {
    let req: QueueJobs = control_body(&body)?;
    let ids = sim.with_state(|s| s.queue_jobs(&req))?;
    Ok((StatusCode::CREATED, Json(serde_json::json!({ "ids": ids }))).into_response())
}

fn parse_state(text: &str) -> Result<JobState, ApiError> {
    serde_json::from_value(serde_json::Value::String(text.to_owned())).map_err(|_| {
        ApiError::control(format!(
            "query `state`: `{text}` is not one of queued, assigned, running, completed, lost"
        ))
    })
}

async fn list_jobs(State(sim): State<Sim>, Query(q): Query<HashMap<String, String>>) -> Result<Response, ApiError> {
    let filter = q.get("state").map(|s| parse_state(s)).transpose()?;
    let jobs: Vec<_> = sim
        .with_state(|s| s.jobs())
        .into_iter()
        .filter(|j| filter.is_none_or(|f| j.state == f))
        .collect();
    Ok(Json(jobs).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct WaitQuery {
    state: String,
    count: Option<usize>,
    timeout_ms: Option<u64>,
}

async fn wait_jobs(
    State(sim): State<Sim>,
    q: Result<Query<WaitQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(q) = q.map_err(|e| ApiError::control(format!("query: {}", e.body_text())))?;
    let want = parse_state(&q.state)?;
    let deadline = Instant::now() + Duration::from_millis(q.timeout_ms.unwrap_or(30_000));
    loop {
        let jobs = sim.with_state(|s| s.jobs());
        let target = q.count.unwrap_or(jobs.len());
        let matching: Vec<_> = jobs.into_iter().filter(|j| j.state == want).collect();
        if matching.len() >= target {
            return Ok(Json(matching).into_response());
        }
        if Instant::now() >= deadline {
            return Err(ApiError::Control {
                status: StatusCode::REQUEST_TIMEOUT,
                message: format!("timed out: {} of {target} jobs are {}", matching.len(), q.state),
            });
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn get_job(State(sim): State<Sim>, Path(job): Path<String>) -> Result<Response, ApiError> {
    let job = id(&job)?;
    let view = sim
        .with_state(|s| s.job(job))
        .ok_or_else(|| ApiError::control_not_found(format!("no job {job}")))?;
    Ok(Json(view).into_response())
}

async fn job_log(State(sim): State<Sim>, Path(job): Path<String>) -> Result<Response, ApiError> {
    let job = id(&job)?;
    let log = sim
        .with_state(|s| s.job_log(job))
        .ok_or_else(|| ApiError::control_not_found(format!("no job {job}")))?;
    Ok(Json(log).into_response())
}

async fn calls(State(sim): State<Sim>, Query(q): Query<HashMap<String, String>>) -> Result<Response, ApiError> {
    let since = match q.get("since") {
        Some(s) => s
            .parse()
            .map_err(|_| ApiError::control(format!("query `since`: `{s}` is not a sequence number")))?,
        None => 0,
    };
    Ok(Json(sim.calls_since(since)).into_response())
}

async fn clear_calls(State(sim): State<Sim>) -> Response {
    sim.clear_calls();
    StatusCode::NO_CONTENT.into_response()
}

async fn list_faults(State(sim): State<Sim>) -> Response {
    Json(sim.faults()).into_response()
}

async fn add_fault(State(sim): State<Sim>, body: Bytes) -> Result<Response, ApiError> {
    let rule: FaultRule = control_body(&body)?;
    let rule = sim.add_fault(rule).map_err(ApiError::control)?;
    Ok((StatusCode::CREATED, Json(rule)).into_response())
}

async fn clear_faults(State(sim): State<Sim>) -> Response {
    sim.clear_faults();
    StatusCode::NO_CONTENT.into_response()
}

async fn remove_fault(State(sim): State<Sim>, Path(fid): Path<String>) -> Result<Response, ApiError> {
    let fid = id(&fid)? as u64;
    if sim.remove_fault(fid) {
        Ok(StatusCode::NO_CONTENT.into_response())
    } else {
        Err(ApiError::control_not_found(format!("no fault {fid}")))
    }
}

#[derive(Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
struct Expire {
    admin: bool,
    mq: bool,
}

async fn expire_tokens(State(sim): State<Sim>, body: Bytes) -> Result<Response, ApiError> {
    let req: Expire = control_body(&body)?;
    if !req.admin && !req.mq {
        return Err(ApiError::control("request body: set `admin` and/or `mq` to true"));
    }
    sim.with_state(|s| s.expire_tokens(req.admin, req.mq));
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn get_settings(State(sim): State<Sim>) -> Response {
    Json(sim.with_state(|s| s.settings.clone())).into_response()
}

async fn patch_settings(State(sim): State<Sim>, body: Bytes) -> Result<Response, ApiError> {
    let patch: serde_json::Map<String, serde_json::Value> = control_body(&body)?;
    let current = sim.with_state(|s| s.settings.clone());
    let mut merged = serde_json::to_value(&current).map_err(|e| ApiError::control(e.to_string()))?;
    let known: Vec<String> = merged
        .as_object()
        .map(|o| o.keys().cloned().collect())
        .unwrap_or_default();
    for (k, v) in patch {
        if !known.contains(&k) {
            return Err(ApiError::control(format!(
                "field `{k}`: unknown setting; known: {}",
                known.join(", ")
            )));
        }
        if let Some(obj) = merged.as_object_mut() {
            obj.insert(k, v);
        }
    }
    let new: SimSettings = control_body(&Bytes::from(merged.to_string()))?;
    sim.with_state(|s| s.set_settings(new.clone()));
    Ok(Json(new).into_response())
}

async fn scale_sets(State(sim): State<Sim>) -> Response {
    Json(sim.with_state(|s| s.all_scale_sets())).into_response()
}

async fn delete_scale_set(State(sim): State<Sim>, Path(set): Path<String>) -> Result<Response, ApiError> {
    let set = id(&set)?;
    sim.with_state(|s| s.delete_scale_set(set))?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn runners(State(sim): State<Sim>) -> Response {
    Json(sim.with_state(|s| s.runners())).into_response()
}

async fn sessions(State(sim): State<Sim>) -> Response {
    Json(sim.with_state(|s| s.sessions())).into_response()
}

async fn drop_session(State(sim): State<Sim>, Path(session): Path<String>) -> Result<Response, ApiError> {
    if sim.with_state(|s| s.drop_session(&session)) {
        Ok(StatusCode::NO_CONTENT.into_response())
    } else {
        Err(ApiError::control_not_found(format!("no session {session}")))
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Pat {
    token: String,
}

async fn add_pat(State(sim): State<Sim>, body: Bytes) -> Result<Response, ApiError> {
    let pat: Pat = control_body(&body)?;
    if pat.token.trim().is_empty() {
        return Err(ApiError::control("field `token`: must not be empty"));
    }
    sim.with_state(|s| s.pats.push(pat.token));
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn add_app(State(sim): State<Sim>, body: Bytes) -> Result<Response, ApiError> {
    let app: App = control_body(&body)?;
    if jsonwebtoken::DecodingKey::from_rsa_pem(app.public_key_pem.as_bytes()).is_err() {
        return Err(ApiError::control("field `publicKeyPem`: not an RSA public key in PEM"));
    }
    if app.installation_id <= 0 {
        return Err(ApiError::control("field `installationId`: must be positive"));
    }
    sim.with_state(|s| s.apps.push(app));
    Ok(StatusCode::NO_CONTENT.into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Group {
    name: String,
}

async fn add_runner_group(State(sim): State<Sim>, body: Bytes) -> Result<Response, ApiError> {
    let g: Group = control_body(&body)?;
    if g.name.trim().is_empty() {
        return Err(ApiError::control("field `name`: must not be empty"));
    }
    Ok((
        StatusCode::CREATED,
        Json(sim.with_state(|s| s.add_runner_group(&g.name))),
    )
        .into_response())
}
