//! The admin token (spec §4.5, §4.6): its expiry is read from the JWT without verification, and it
//! is refreshed when absent or when `now + 60 s` is past that expiry.

use crate::error::{Error, Result};
use crate::secret::Secret;
use crate::types::RunnerRegistrationRequest;
use base64::Engine;
use base64::engine::general_purpose::{URL_SAFE, URL_SAFE_NO_PAD};
use std::time::Duration;
use time::OffsetDateTime;
use url::Url;

/// Refresh this long before the admin token expires.
pub const REFRESH_MARGIN: Duration = Duration::from_secs(60);

/// The cached result of runner-registration: `{A}`, the admin JWT and its expiry.
#[derive(Debug, Clone, PartialEq)]
pub struct AdminToken {
    pub actions_url: Url,
    pub token: Secret,
    pub expires_at: OffsetDateTime,
}

impl AdminToken {
    /// Whether a request at `now` must first fetch a new token.
    pub fn needs_refresh(&self, now: OffsetDateTime) -> bool {
        now + REFRESH_MARGIN > self.expires_at
    }
}

/// Whether the chain must run before an admin call at `now` (no token yet, or about to expire).
pub fn needs_refresh(current: Option<&AdminToken>, now: OffsetDateTime) -> bool {
    current.is_none_or(|t| t.needs_refresh(now))
}

/// The `exp` claim of a JWT, read without verifying the signature.
pub fn jwt_expiry(token: &str) -> Result<OffsetDateTime> {
    let not_jwt = |why: &str| Error::protocol(format!("the admin token is not a JWT: {why}"));
    let parts: Vec<&str> = token.split('.').collect();
    if parts.len() != 3 {
        return Err(not_jwt("expected three dot-separated parts"));
    }
    let decode = |part: &str| URL_SAFE_NO_PAD.decode(part).or_else(|_| URL_SAFE.decode(part));
    let header = decode(parts[0]).map_err(|_| not_jwt("header is not base64url"))?;
    serde_json::from_slice::<serde_json::Map<String, serde_json::Value>>(&header)
        .map_err(|_| not_jwt("header is not a JSON object"))?;
    let claims = decode(parts[1]).map_err(|_| not_jwt("claims are not base64url"))?;
    let claims: serde_json::Map<String, serde_json::Value> =
        serde_json::from_slice(&claims).map_err(|_| not_jwt("claims are not a JSON object"))?;
    let exp = claims
        .get("exp")
        .and_then(serde_json::Value::as_f64)
        .ok_or_else(|| not_jwt("no numeric exp claim"))?;
    OffsetDateTime::from_unix_timestamp(exp.trunc() as i64).map_err(|_| not_jwt("exp out of range"))
}

/// The runner-registration body: `{"url":"…","runner_event":"register"}` plus a newline, HTML
/// characters unescaped, the URL as configured (slashes trimmed).
pub fn registration_body(configure_url: &str) -> Vec<u8> {
    let request = RunnerRegistrationRequest {
        url: configure_url.to_owned(),
        runner_event: "register".to_owned(),
    };
    let mut body = serde_json::to_vec(&request).unwrap_or_default();
    body.push(b'\n');
    body
}

#[cfg(test)]
mod tests {
    use super::*;

    fn jwt(claims: &str) -> String {
        format!(
            "{}.{}.sig",
            URL_SAFE_NO_PAD.encode(r#"{"alg":"RS256","typ":"JWT"}"#),
            URL_SAFE_NO_PAD.encode(claims)
        )
    }

    #[test]
    fn reads_exp_without_verification() {
        let t = jwt(r#"{"exp":1900000000,"aud":"x"}"#);
        assert_eq!(jwt_expiry(&t).unwrap().unix_timestamp(), 1_900_000_000);
        let t = jwt(r#"{"exp":1900000000.75}"#);
        assert_eq!(jwt_expiry(&t).unwrap().unix_timestamp(), 1_900_000_000);
    }

    #[test]
    fn non_jwts_are_rejected() {
        for bad in [
            "opaque-token".to_owned(),
            "a.b".to_owned(),
            "!!.!!.!!".to_owned(),
            jwt(r#"{"sub":"no exp"}"#),
            jwt(r#"{"exp":"tomorrow"}"#),
            jwt("[1,2]"),
        ] {
            let e = jwt_expiry(&bad).unwrap_err();
            assert!(matches!(e, Error::Protocol(_)), "{bad}");
            assert!(e.to_string().contains("not a JWT"));
        }
    }

    #[test]
    fn refresh_when_absent_or_within_a_minute_of_expiry() {
        let now = OffsetDateTime::from_unix_timestamp(1_000_000).unwrap();
        let token = |secs_left: i64| AdminToken {
            actions_url: Url::parse("http://a/").unwrap(),
            token: Secret::new("t"),
            expires_at: now + time::Duration::seconds(secs_left),
        };
        assert!(needs_refresh(None, now));
        assert!(needs_refresh(Some(&token(-5)), now));
        assert!(needs_refresh(Some(&token(30)), now));
        assert!(needs_refresh(Some(&token(59)), now));
        assert!(!needs_refresh(Some(&token(60)), now));
        assert!(!needs_refresh(Some(&token(3600)), now));
    }

    #[test]
    fn registration_body_is_exact() {
        assert_eq!(
            registration_body("https://ghes.corp/my-org?a=1&b=<2>"),
            b"{\"url\":\"https://ghes.corp/my-org?a=1&b=<2>\",\"runner_event\":\"register\"}\n".to_vec()
        );
    }
}
