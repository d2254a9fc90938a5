//! The GitHub REST API part (spec §4.3–§4.5, calls G1–G3), under `/api/v3` as on GHES.

use super::{Sim, credential, service_body};
use crate::auth::verify_app_jwt;
use crate::error::ApiError;
use crate::state::TokenOwner;
use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use rarc_actions::Secret;
use rarc_actions::types::{AdminConnection, GitHubToken, RunnerRegistrationRequest};
use time::OffsetDateTime;
use tokio::time::{Duration, Instant};

pub fn routes() -> Router<Sim> {
    Router::new()
        .route(
            "/api/v3/app/installations/{installation}/access_tokens",
            post(installation_token),
        )
        .route(
            "/api/v3/orgs/{org}/actions/runners/registration-token",
            post(org_registration_token),
        )
        .route(
            "/api/v3/enterprises/{enterprise}/actions/runners/registration-token",
            post(enterprise_registration_token),
        )
        .route(
            "/api/v3/repos/{owner}/{repo}/actions/runners/registration-token",
            post(repo_registration_token),
        )
        .route("/api/v3/actions/runner-registration", post(runner_registration))
}

fn bad_credentials() -> ApiError {
    ApiError::github(StatusCode::UNAUTHORIZED, "Bad credentials")
}

/// G1: an installation access token for an app JWT.
async fn installation_token(
    State(sim): State<Sim>,
    Path(installation): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let jwt = credential(&headers, &["Bearer"])
        .ok_or_else(|| ApiError::github(StatusCode::UNAUTHORIZED, "A JSON web token could not be decoded"))?;
    let installation: i64 = installation
        .parse()
        .map_err(|_| ApiError::github(StatusCode::NOT_FOUND, "Not Found"))?;
    let now = OffsetDateTime::now_utc().unix_timestamp();
    let token = sim.with_state(|s| {
        let app =
            verify_app_jwt(jwt, &s.apps, now).map_err(|e| ApiError::github(StatusCode::UNAUTHORIZED, e.to_string()))?;
        if app.installation_id != installation {
            return Err(ApiError::github(StatusCode::NOT_FOUND, "Not Found"));
        }
        Ok(s.issue_installation_token(installation))
    })?;
    let body = GitHubToken {
        token: Secret::new(token.0),
        expires_at: Some(token.1),
    };
    Ok((StatusCode::CREATED, Json(body)).into_response())
}

async fn org_registration_token(
    State(sim): State<Sim>,
    Path(org): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    registration_token(&sim, &headers, &org, false)
}

async fn enterprise_registration_token(
    State(sim): State<Sim>,
    Path(enterprise): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    registration_token(&sim, &headers, &format!("enterprises/{enterprise}"), true)
}

async fn repo_registration_token(
    State(sim): State<Sim>,
    Path((owner, repo)): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    registration_token(&sim, &headers, &format!("{owner}/{repo}"), false)
}

/// G2: a registration token for a PAT or an installation token. Apps cannot register enterprise
/// runners (spec §4.8).
fn registration_token(sim: &Sim, headers: &HeaderMap, scope: &str, enterprise: bool) -> Result<Response, ApiError> {
    let token = credential(headers, &["Bearer", "token"])
        .ok_or_else(|| ApiError::github(StatusCode::UNAUTHORIZED, "Requires authentication"))?;
    let issued = sim.with_state(|s| match s.token_owner(token) {
        TokenOwner::Pat => Ok(s.issue_registration_token(scope)),
        TokenOwner::Installation(_) if enterprise => Err(ApiError::github(
            StatusCode::FORBIDDEN,
            "Resource not accessible by integration",
        )),
        TokenOwner::Installation(_) => Ok(s.issue_registration_token(scope)),
        _ => Err(bad_credentials()),
    })?;
    let body = GitHubToken {
        token: Secret::new(issued.0),
        expires_at: Some(issued.1),
    };
    Ok((StatusCode::CREATED, Json(body)).into_response())
}

/// G3: exchanges a registration token for the Actions service URL and an admin token.
async fn runner_registration(State(sim): State<Sim>, headers: HeaderMap, body: Bytes) -> Result<Response, ApiError> {
    let token = credential(&headers, &["RemoteAuth"]).ok_or_else(bad_credentials)?;
    let req: RunnerRegistrationRequest = service_body(&body)?;
    if req.runner_event != "register" {
        return Err(ApiError::github(
            StatusCode::UNPROCESSABLE_ENTITY,
            "runner_event must be 'register'",
        ));
    }
    let conn = sim.with_state(|s| {
        let scope = s.registration_scope(token).ok_or_else(bad_credentials)?;
        let url = url::Url::parse(&req.url)
            .map_err(|_| ApiError::github(StatusCode::UNPROCESSABLE_ENTITY, "url is not a valid URL"))?;
        let path = url.path().trim_matches('/').to_lowercase();
        if path != scope {
            return Err(ApiError::github(
                StatusCode::FORBIDDEN,
                format!("The registration token was issued for '{scope}', not for '{path}'."),
            ));
        }
        let ttl = s.settings.admin_token_ttl_secs;
        let token = admin_jwt(s, &scope, ttl);
        s.remember_admin_token(&token, Instant::now() + Duration::from_secs(ttl));
        Ok(AdminConnection {
            url: s.actions_base(),
            token: Secret::new(token),
            token_schema: Some("OAuthAccessToken".into()),
        })
    })?;
    Ok((StatusCode::OK, Json(conn)).into_response())
}

/// An admin token is a JWT (clients read its `exp`); the simulator knows its tokens by value.
fn admin_jwt(s: &mut crate::state::State, scope: &str, ttl_secs: u64) -> String {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let now = OffsetDateTime::now_utc().unix_timestamp();
    let header = b64.encode(r#"{"typ":"JWT","alg":"RS256","x5t":"rarc-sim"}"#);
    let claims = serde_json::json!({
        "sub": scope,
        "iss": "rarc-sim",
        "aud": "vstoken.actions.githubusercontent.com",
        "nbf": now - 5,
        "iat": now,
        "exp": now + ttl_secs as i64,
        "jti": s.uuid(),
    });
    let sig = b64.encode(s.uuid().as_bytes());
    format!("{header}.{}.{sig}", b64.encode(claims.to_string()))
}
