//! The runner stand-in endpoints (see [`crate::runner_api`]), authorised by the JIT runner token.

use super::{Sim, credential, parse_id, service_body};
use crate::error::ApiError;
use crate::runner_api::{CompleteRequest, LogLines, OnlineRequest, OnlineResponse, PREFIX};
use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use std::collections::HashMap;
use tokio::time::{Duration, Instant};

/// The longest job wait a runner may ask for.
const MAX_WAIT: Duration = Duration::from_secs(60);

pub fn routes(tenant: &str) -> Router<Sim> {
    let r = format!("/{tenant}/{PREFIX}/runners/{{runner}}");
    Router::new()
        .route(&format!("{r}/online"), post(online))
        .route(&format!("{r}/offline"), post(offline))
        .route(&format!("{r}/job"), get(wait_for_job))
        .route(&format!("{r}/jobs/{{job}}/log"), post(log))
        .route(&format!("{r}/jobs/{{job}}/renew"), post(renew))
        .route(&format!("{r}/jobs/{{job}}/complete"), post(complete))
}

fn runner(sim: &Sim, headers: &HeaderMap, id: &str) -> Result<i64, ApiError> {
    let id = parse_id("runner id", id)?;
    let token = credential(headers, &["Bearer"]).ok_or_else(ApiError::unauthorized)?;
    sim.with_state(|s| s.authorize_runner(id, token))?;
    Ok(id)
}

async fn online(
    State(sim): State<Sim>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let id = runner(&sim, &headers, &id)?;
    if !body.is_empty() {
        let _: OnlineRequest = service_body(&body)?;
    }
    let r = sim.with_state(|s| s.runner_online(id, true))?;
    Ok(Json(OnlineResponse {
        runner_id: r.id,
        name: r.name,
        runner_scale_set_id: r.runner_scale_set_id,
    })
    .into_response())
}

async fn offline(State(sim): State<Sim>, headers: HeaderMap, Path(id): Path<String>) -> Result<Response, ApiError> {
    let id = runner(&sim, &headers, &id)?;
    sim.with_state(|s| s.runner_online(id, false))?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn wait_for_job(
    State(sim): State<Sim>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    let id = runner(&sim, &headers, &id)?;
    let wait = match q.get("waitMs") {
        Some(v) => Duration::from_millis(
            v.parse::<u64>()
                .map_err(|_| ApiError::control("query `waitMs`: not a number"))?,
        ),
        None => Duration::from_secs(30),
    }
    .min(MAX_WAIT);
    let deadline = Instant::now() + wait;
    loop {
        let (job, mut changes) = sim.with_state(|s| (s.take_job(id), s.runner_changes.subscribe()));
        if let Some(job) = job? {
            return Ok(Json(job).into_response());
        }
        tokio::select! {
            _ = changes.changed() => {}
            _ = tokio::time::sleep_until(deadline) => return Ok(StatusCode::ACCEPTED.into_response()),
            _ = sim.shutdown().cancelled() => return Ok(StatusCode::ACCEPTED.into_response()),
        }
        // The runner is still waiting: that counts as being heard from.
        sim.with_state(|s| s.authorize_runner(id, credential(&headers, &["Bearer"]).unwrap_or_default()))?;
    }
}

async fn log(
    State(sim): State<Sim>,
    headers: HeaderMap,
    Path((id, job)): Path<(String, String)>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let id = runner(&sim, &headers, &id)?;
    let job = parse_id("job request id", &job)?;
    let lines: LogLines = service_body(&body)?;
    sim.with_state(|s| s.append_log(id, job, lines.lines))?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn renew(
    State(sim): State<Sim>,
    headers: HeaderMap,
    Path((id, job)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let id = runner(&sim, &headers, &id)?;
    let job = parse_id("job request id", &job)?;
    sim.with_state(|s| s.renew_job(id, job))?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn complete(
    State(sim): State<Sim>,
    headers: HeaderMap,
    Path((id, job)): Path<(String, String)>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let id = runner(&sim, &headers, &id)?;
    let job = parse_id("job request id", &job)?;
    let req: CompleteRequest = service_body(&body)?;
    sim.with_state(|s| s.complete_job(id, job, &req.result))?;
    Ok(StatusCode::NO_CONTENT.into_response())
}
