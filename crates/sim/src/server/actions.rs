//! The Actions service under `{A}` (spec §6.1–§6.17), admin-token and api-version checked.

use super::{Sim, parse_id, require_admin, require_api_version, require_mq, service_body};
use crate::error::{ApiError, exc};
use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{FromRequestParts, Path, Query, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use rarc_actions::types::{JitConfigRequest, ListResponse, RunnerScaleSet, SessionCreateRequest};
use std::collections::HashMap;

type Q = Query<HashMap<String, String>>;

pub fn routes(tenant: &str) -> Router<Sim> {
    let a = format!("/{tenant}/_apis");
    Router::new()
        .route(
            &format!("{a}/runtime/runnerscalesets"),
            get(list_scale_sets).post(create_scale_set),
        )
        .route(
            &format!("{a}/runtime/runnerscalesets/{{id}}"),
            get(get_scale_set).patch(update_scale_set).delete(delete_scale_set),
        )
        .route(
            &format!("{a}/runtime/runnerscalesets/{{id}}/sessions"),
            post(create_session),
        )
        .route(
            &format!("{a}/runtime/runnerscalesets/{{id}}/sessions/{{session}}"),
            axum::routing::patch(refresh_session).delete(delete_session),
        )
        .route(
            &format!("{a}/runtime/runnerscalesets/{{id}}/acquirejobs"),
            post(acquire_jobs),
        )
        .route(
            &format!("{a}/runtime/runnerscalesets/{{id}}/acquirablejobs"),
            get(acquirable_jobs),
        )
        .route(
            &format!("{a}/runtime/runnerscalesets/{{id}}/generatejitconfig"),
            post(generate_jit_config),
        )
        .route(&format!("{a}/runtime/runnergroups"), get(runner_groups))
        .route(&format!("{a}/runtime/runnergroups/"), get(runner_groups))
        .route(&format!("{a}/distributedtask/pools/{{pool}}/agents"), get(list_runners))
        .route(
            &format!("{a}/distributedtask/pools/{{pool}}/agents/{{id}}"),
            get(get_runner).delete(remove_runner),
        )
}

/// An admin-token call. Extracting it checks the admin token, then the api-version (the order the
/// service checks them in), and yields the decoded query.
struct Admin(HashMap<String, String>);

impl FromRequestParts<Sim> for Admin {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, sim: &Sim) -> Result<Self, ApiError> {
        require_admin(sim, &parts.headers)?;
        let query: HashMap<String, String> = parts
            .uri
            .query()
            .map(|q| url::form_urlencoded::parse(q.as_bytes()).into_owned().collect())
            .unwrap_or_default();
        require_api_version(&parts.method, &query)?;
        Ok(Admin(query))
    }
}

async fn list_scale_sets(Admin(q): Admin, State(sim): State<Sim>) -> Result<Response, ApiError> {
    let group = match q.get("runnerGroupId") {
        Some(g) if !g.is_empty() => parse_id("runnerGroupId", g)?,
        _ => 0,
    };
    let sets = sim.with_state(|s| match q.get("name") {
        Some(name) => s.scale_sets_by_name(group, name),
        None => s.all_scale_sets(),
    });
    Ok(Json(ListResponse::new(sets)).into_response())
}

async fn create_scale_set(_: Admin, State(sim): State<Sim>, body: Bytes) -> Result<Response, ApiError> {
    let req: RunnerScaleSet = service_body(&body)?;
    let set = sim.with_state(|s| s.create_scale_set(req))?;
    Ok(Json(set).into_response())
}

async fn get_scale_set(_: Admin, State(sim): State<Sim>, Path(id): Path<String>) -> Result<Response, ApiError> {
    let id = parse_id("runner scale set id", &id)?;
    Ok(Json(sim.with_state(|s| s.scale_set(id))?).into_response())
}

async fn update_scale_set(
    _: Admin,
    State(sim): State<Sim>,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let id = parse_id("runner scale set id", &id)?;
    let patch: RunnerScaleSet = service_body(&body)?;
    Ok(Json(sim.with_state(|s| s.update_scale_set(id, patch))?).into_response())
}

async fn delete_scale_set(_: Admin, State(sim): State<Sim>, Path(id): Path<String>) -> Result<Response, ApiError> {
    let id = parse_id("runner scale set id", &id)?;
    sim.with_state(|s| s.delete_scale_set(id))?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn create_session(
    _: Admin,
    State(sim): State<Sim>,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let id = parse_id("runner scale set id", &id)?;
    let req: SessionCreateRequest = service_body(&body)?;
    if req.owner_name.trim().is_empty() {
        return Err(ApiError::exception(
            StatusCode::BAD_REQUEST,
            exc::ARGUMENT,
            "Value cannot be null. (Parameter 'ownerName')",
        ));
    }
    if let Some(sid) = &req.session_id
        && uuid::Uuid::parse_str(sid).is_err()
    {
        return Err(ApiError::exception(
            StatusCode::BAD_REQUEST,
            exc::ARGUMENT,
            format!("'{sid}' is not a valid session id."),
        ));
    }
    let ttl = sim.session_ttl();
    let session = sim.with_state(|s| s.create_session(id, &req.owner_name, ttl))?;
    Ok(Json(session).into_response())
}

async fn refresh_session(
    _: Admin,
    State(sim): State<Sim>,
    Path((id, session)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let id = parse_id("runner scale set id", &id)?;
    Ok(Json(sim.with_state(|s| s.refresh_session(id, &session))?).into_response())
}

async fn delete_session(
    _: Admin,
    State(sim): State<Sim>,
    Path((id, session)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let id = parse_id("runner scale set id", &id)?;
    sim.with_state(|s| s.delete_session(id, &session))?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// acquirejobs takes the message-queue token of a session of this scale set, not the admin token.
async fn acquire_jobs(
    State(sim): State<Sim>,
    method: Method,
    headers: HeaderMap,
    Query(q): Q,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let (session, set) = require_mq(&sim, &headers)?;
    require_api_version(&method, &q)?;
    let id = parse_id("runner scale set id", &id)?;
    if set != id {
        return Err(ApiError::unauthorized());
    }
    let ids: Vec<i64> = service_body(&body)?;
    let acquired = sim.with_state(|s| {
        s.touch_session(&session);
        s.acquire_jobs(id, &ids)
    });
    Ok(Json(ListResponse::new(acquired)).into_response())
}

async fn acquirable_jobs(_: Admin, State(sim): State<Sim>, Path(id): Path<String>) -> Result<Response, ApiError> {
    let id = parse_id("runner scale set id", &id)?;
    let ids = sim.with_state(|s| s.scale_set(id).map(|_| s.acquirable_jobs(id)))?;
    if ids.is_empty() {
        return Ok(StatusCode::NO_CONTENT.into_response());
    }
    let jobs: Vec<serde_json::Value> = ids
        .iter()
        .map(|j| serde_json::json!({ "messageType": "JobAvailable", "runnerRequestId": j }))
        .collect();
    Ok(Json(serde_json::json!({ "count": jobs.len(), "value": jobs })).into_response())
}

async fn generate_jit_config(
    _: Admin,
    State(sim): State<Sim>,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let id = parse_id("runner scale set id", &id)?;
    let req: JitConfigRequest = service_body(&body)?;
    Ok(Json(sim.with_state(|s| s.generate_jit_config(id, &req.name, &req.work_folder))?).into_response())
}

async fn runner_groups(Admin(q): Admin, State(sim): State<Sim>) -> Result<Response, ApiError> {
    let groups = sim.with_state(|s| match q.get("groupName") {
        Some(name) => s.runner_group_by_name(name),
        None => s.runner_groups.clone(),
    });
    Ok(Json(ListResponse::new(groups)).into_response())
}

async fn list_runners(Admin(q): Admin, State(sim): State<Sim>) -> Result<Response, ApiError> {
    let runners = sim.with_state(|s| match q.get("agentName") {
        Some(name) => s.runners_by_name(name),
        None => s.runners().iter().filter_map(|r| s.runner(r.id).ok()).collect(),
    });
    Ok(Json(ListResponse::new(runners)).into_response())
}

async fn get_runner(
    _: Admin,
    State(sim): State<Sim>,
    Path((_pool, id)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let id = parse_id("runner id", &id)?;
    Ok(Json(sim.with_state(|s| s.runner(id))?).into_response())
}

async fn remove_runner(
    _: Admin,
    State(sim): State<Sim>,
    Path((_pool, id)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let id = parse_id("runner id", &id)?;
    sim.with_state(|s| s.remove_runner(id))?;
    Ok(StatusCode::NO_CONTENT.into_response())
}
