//! The token chain (spec §4.1, §4.3–§4.5): App JWT ⇒ installation token ⇒ registration token ⇒
//! runner-registration ⇒ `{A}` and the admin token. Nothing here is cached.

use super::admin_token::{self, AdminToken};
use super::app_jwt::AppJwtSigner;
use crate::actions_url;
use crate::config_url::GitHubConfig;
use crate::error::{Error, Result};
use crate::http::{HttpClient, Request, RetryMode};
use crate::secret::Secret;
use crate::types::{AdminConnection, GitHubToken};
use http::header::CONTENT_TYPE;
use http::{Method, StatusCode};

/// Validated credentials, ready to use.
#[derive(Debug, Clone)]
pub(crate) enum Auth {
    Pat(Secret),
    App { signer: AppJwtSigner, installation_id: i64 },
}

/// Runs the whole chain and returns a fresh admin token.
pub(crate) async fn fetch_admin_token(http: &HttpClient, github: &GitHubConfig, auth: &Auth) -> Result<AdminToken> {
    let github_token = match auth {
        Auth::Pat(pat) => pat.clone(),
        Auth::App {
            signer,
            installation_id,
        } => installation_token(http, github, signer, *installation_id).await?,
    };
    let registration = registration_token(http, github, &github_token).await?;
    admin_connection(http, github, &registration).await
}

/// G1: `POST {API}/app/installations/{id}/access_tokens` with the App JWT; 201.
async fn installation_token(
    http: &HttpClient,
    github: &GitHubConfig,
    signer: &AppJwtSigner,
    installation_id: i64,
) -> Result<Secret> {
    let url = github.api_url(&format!("/app/installations/{installation_id}/access_tokens"))?;
    let jwt = signer.sign()?;
    let request = Request::new(Method::POST, url)
        .authorization("Bearer", &jwt)?
        .header(CONTENT_TYPE, "application/vnd.github+json")
        .body(Vec::new());
    let response = http.send(&request).await?.expect(&[StatusCode::CREATED])?;
    let token: GitHubToken = response.json()?;
    if token.token.is_empty() {
        return Err(Error::protocol("the installation-token response has no token"));
    }
    tracing::debug!(installation_id, "fetched installation token");
    Ok(token.token)
}

/// G2: `POST {API}/<scope>/actions/runners/registration-token`, empty body; 201.
async fn registration_token(http: &HttpClient, github: &GitHubConfig, token: &Secret) -> Result<Secret> {
    let url = github.api_url(&github.registration_token_path())?;
    let request = Request::new(Method::POST, url)
        .authorization("Bearer", token)?
        .header(CONTENT_TYPE, "application/vnd.github.v3+json")
        .body(Vec::new());
    let response = http.send(&request).await?.expect(&[StatusCode::CREATED])?;
    let token: GitHubToken = response.json()?;
    if token.token.is_empty() {
        return Err(Error::protocol("the registration-token response has no token"));
    }
    Ok(token.token)
}

/// G3: `POST {API}/actions/runner-registration` with `RemoteAuth`; any 2xx; 401/403 retried.
async fn admin_connection(http: &HttpClient, github: &GitHubConfig, registration: &Secret) -> Result<AdminToken> {
    let url = github.api_url("/actions/runner-registration")?;
    let request = Request::new(Method::POST, url)
        .authorization("RemoteAuth", registration)?
        .header(CONTENT_TYPE, "application/json")
        .body(admin_token::registration_body(&github.configure_url))
        .mode(RetryMode::Registration);
    let response = http.send(&request).await?.expect_success()?;
    let connection: AdminConnection = response.json()?;
    if connection.url.is_empty() {
        return Err(Error::protocol("the runner-registration response has no url"));
    }
    if connection.token.is_empty() {
        return Err(Error::protocol("the runner-registration response has no token"));
    }
    let actions_url = actions_url::parse(&connection.url)?;
    let expires_at = admin_token::jwt_expiry(connection.token.expose())?;
    tracing::info!(actions_url = %actions_url, %expires_at, "fetched admin token");
    Ok(AdminToken {
        actions_url,
        token: connection.token,
        expires_at,
    })
}
