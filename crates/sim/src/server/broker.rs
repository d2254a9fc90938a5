//! The message queue (spec §6.10, §6.11): a long poll that answers 202 when its window passes, and
//! DELETE as acknowledgement. Served at both URL styles a session may hand out.

use super::{Sim, parse_id, require_mq};
use crate::error::ApiError;
use axum::Json;
use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get};
use std::collections::HashMap;
use tokio::time::{Duration, Instant};

pub fn routes(tenant: &str) -> Router<Sim> {
    let legacy = format!("/{tenant}/_apis/runtime/runnerscalesets/{{id}}/messages");
    Router::new()
        .route("/broker/scalesets/message", get(get_message))
        .route("/broker/scalesets/message/{message}", delete(delete_message))
        .route(&legacy, get(get_legacy_message))
        .route(&format!("{legacy}/{{message}}"), delete(delete_legacy_message))
}

fn text(status: StatusCode, body: impl Into<String>) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        body.into(),
    )
        .into_response()
}

async fn get_legacy_message(
    State(sim): State<Sim>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    let (session, set) = require_mq(&sim, &headers)?;
    if parse_id("runner scale set id", &id)? != set || q.get("sessionId").is_some_and(|s| *s != session) {
        return Err(ApiError::unauthorized());
    }
    poll(sim, headers, q, session, set).await
}

async fn get_message(
    State(sim): State<Sim>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    let (session, set) = require_mq(&sim, &headers)?;
    poll(sim, headers, q, session, set).await
}

/// The long poll: the first undeleted message after `lastMessageId`, or 202 after the window.
async fn poll(
    sim: Sim,
    headers: HeaderMap,
    q: HashMap<String, String>,
    session: String,
    set: i64,
) -> Result<Response, ApiError> {
    let last = match q.get("lastMessageId") {
        Some(v) => match v.parse::<i64>() {
            Ok(n) if n >= 0 => n,
            _ => {
                return Ok(text(
                    StatusCode::BAD_REQUEST,
                    format!("lastMessageId '{v}' is not a valid message id"),
                ));
            }
        },
        None => 0,
    };
    if let Some(cap) = headers.get("x-scalesetmaxcapacity") {
        let ok = cap
            .to_str()
            .ok()
            .and_then(|c| c.trim().parse::<i64>().ok())
            .is_some_and(|c| c >= 0);
        if !ok {
            return Ok(text(
                StatusCode::BAD_REQUEST,
                "X-ScaleSetMaxCapacity must be a non-negative integer",
            ));
        }
    }
    let window = Duration::from_millis(sim.with_state(|s| s.settings.long_poll_ms));
    let deadline = Instant::now() + window;
    loop {
        let (msg, mut changes) = sim.with_state(|s| {
            s.touch_session(&session);
            (s.next_message(set, last), s.queue_changes(set))
        });
        if let Some(msg) = msg {
            return Ok(Json(msg).into_response());
        }
        let Some(changes) = changes.as_mut() else {
            return Err(ApiError::unauthorized());
        };
        // Re-check the session each round: a deleted session's token stops working.
        tokio::select! {
            r = changes.changed() => if r.is_err() { return Err(ApiError::unauthorized()) },
            _ = tokio::time::sleep_until(deadline) => return Ok(StatusCode::ACCEPTED.into_response()),
            _ = sim.shutdown().cancelled() => return Ok(StatusCode::ACCEPTED.into_response()),
        }
        require_mq(&sim, &headers)?;
    }
}

async fn delete_message(
    State(sim): State<Sim>,
    headers: HeaderMap,
    Path(message): Path<String>,
) -> Result<Response, ApiError> {
    let (session, set) = require_mq(&sim, &headers)?;
    ack(&sim, &session, set, &message)
}

async fn delete_legacy_message(
    State(sim): State<Sim>,
    headers: HeaderMap,
    Path((id, message)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let (session, set) = require_mq(&sim, &headers)?;
    if parse_id("runner scale set id", &id)? != set {
        return Err(ApiError::unauthorized());
    }
    ack(&sim, &session, set, &message)
}

fn ack(sim: &Sim, session: &str, set: i64, message: &str) -> Result<Response, ApiError> {
    let id = parse_id("message id", message)?;
    sim.with_state(|s| {
        s.touch_session(session);
        s.delete_message(set, id)
    })?;
    Ok(StatusCode::NO_CONTENT.into_response())
}
