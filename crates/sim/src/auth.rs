//! GitHub App JWT verification (spec §4.2, §15.1 G1) and header parsing.

use jsonwebtoken::{Algorithm, DecodingKey, Validation, decode, decode_header};
use serde::{Deserialize, Serialize};

/// The default simulated app: ids and the public half of the committed test key.
pub const DEFAULT_APP_ID: &str = "123456";
pub const DEFAULT_CLIENT_ID: &str = "Iv1.rarcsimtestapp";
pub const DEFAULT_INSTALLATION_ID: i64 = 424242;
pub const DEFAULT_APP_PUBLIC_KEY: &str = include_str!("../testdata/app-key.pub.pem");
/// The private half, for tests and the demo only (it is a published test key).
pub const DEFAULT_APP_PRIVATE_KEY: &str = include_str!("../testdata/app-key.pem");
/// The PAT rarc-sim accepts unless told otherwise.
pub const DEFAULT_PAT: &str = "ghp_rarcsimdefaulttoken0000000000000000";

/// A GitHub App known to the simulator.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct App {
    pub app_id: String,
    #[serde(default)]
    pub client_id: String,
    pub installation_id: i64,
    pub public_key_pem: String,
}

impl App {
    pub fn default_app() -> Self {
        Self {
            app_id: DEFAULT_APP_ID.into(),
            client_id: DEFAULT_CLIENT_ID.into(),
            installation_id: DEFAULT_INSTALLATION_ID,
            public_key_pem: DEFAULT_APP_PUBLIC_KEY.into(),
        }
    }
}

#[derive(Debug, Deserialize)]
struct Claims {
    iss: serde_json::Value,
    iat: i64,
    exp: i64,
}

/// Why an app JWT was refused (becomes the 401 message, as GitHub words it).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum JwtError {
    #[error("A JSON web token could not be decoded")]
    Malformed,
    #[error("'alg' must be RS256")]
    Algorithm,
    #[error("'Issuer' claim ('iss') must be an Integer or the app's client ID")]
    UnknownIssuer,
    #[error("'Issued at' claim ('iat') must be an Integer representing a time in the past")]
    IssuedInFuture,
    #[error("'Expiration time' claim ('exp') is too far in the future")]
    TooLong,
    #[error(
        "'Expiration time' claim ('exp') must be a numeric value representing the future time at which the assertion expires"
    )]
    Expired,
    #[error("A JSON web token could not be verified: signature mismatch")]
    Signature,
}

/// Verifies an app JWT against the known apps; returns the app on success.
pub fn verify_app_jwt<'a>(token: &str, apps: &'a [App], now_unix: i64) -> Result<&'a App, JwtError> {
    let header = decode_header(token).map_err(|_| JwtError::Malformed)?;
    if header.alg != Algorithm::RS256 {
        return Err(JwtError::Algorithm);
    }
    // Read the claims without verification first to find the app (as GitHub must).
    let payload = token.split('.').nth(1).ok_or(JwtError::Malformed)?;
    use base64::Engine;
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .map_err(|_| JwtError::Malformed)?;
    let claims: Claims = serde_json::from_slice(&raw).map_err(|_| JwtError::Malformed)?;
    let iss = match &claims.iss {
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Number(n) => n.to_string(),
        _ => return Err(JwtError::UnknownIssuer),
    };
    let app = apps
        .iter()
        .find(|a| a.app_id == iss || (!a.client_id.is_empty() && a.client_id == iss))
        .ok_or(JwtError::UnknownIssuer)?;
    if claims.iat > now_unix + 60 {
        return Err(JwtError::IssuedInFuture);
    }
    if claims.exp - claims.iat > 600 {
        return Err(JwtError::TooLong);
    }
    if claims.exp <= now_unix {
        return Err(JwtError::Expired);
    }
    let key = DecodingKey::from_rsa_pem(app.public_key_pem.as_bytes()).map_err(|_| JwtError::Signature)?;
    let mut validation = Validation::new(Algorithm::RS256);
    validation.validate_exp = false;
    validation.required_spec_claims.clear();
    decode::<serde_json::Value>(token, &key, &validation).map_err(|_| JwtError::Signature)?;
    Ok(app)
}

/// Splits an `Authorization` value into scheme and credential.
pub fn split_authorization(value: &str) -> Option<(&str, &str)> {
    let (scheme, cred) = value.trim().split_once(' ')?;
    Some((scheme, cred.trim()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::{EncodingKey, Header, encode};

    fn jwt(iss: &str, iat: i64, exp: i64, key: &str) -> String {
        let claims = serde_json::json!({ "iss": iss, "iat": iat, "exp": exp });
        encode(
            &Header::new(Algorithm::RS256),
            &claims,
            &EncodingKey::from_rsa_pem(key.as_bytes()).unwrap(),
        )
        .unwrap()
    }

    #[test]
    fn verifies_signature_issuer_and_times() {
        let apps = vec![App::default_app()];
        let now = 1_800_000_000;
        let ok = jwt(DEFAULT_APP_ID, now - 60, now + 480, DEFAULT_APP_PRIVATE_KEY);
        assert_eq!(
            verify_app_jwt(&ok, &apps, now).unwrap().installation_id,
            DEFAULT_INSTALLATION_ID
        );
        let by_client = jwt(DEFAULT_CLIENT_ID, now - 60, now + 480, DEFAULT_APP_PRIVATE_KEY);
        assert!(verify_app_jwt(&by_client, &apps, now).is_ok());
        assert_eq!(
            verify_app_jwt(&jwt("999", now, now + 60, DEFAULT_APP_PRIVATE_KEY), &apps, now),
            Err(JwtError::UnknownIssuer)
        );
        assert_eq!(
            verify_app_jwt(
                &jwt(DEFAULT_APP_ID, now - 60, now + 900, DEFAULT_APP_PRIVATE_KEY),
                &apps,
                now
            ),
            Err(JwtError::TooLong)
        );
        assert_eq!(
            verify_app_jwt(
                &jwt(DEFAULT_APP_ID, now - 700, now - 100, DEFAULT_APP_PRIVATE_KEY),
                &apps,
                now
            ),
            Err(JwtError::Expired)
        );
        assert_eq!(
            verify_app_jwt(
                &jwt(DEFAULT_APP_ID, now + 300, now + 500, DEFAULT_APP_PRIVATE_KEY),
                &apps,
                now
            ),
            Err(JwtError::IssuedInFuture)
        );
        assert_eq!(verify_app_jwt("not.a.jwt", &apps, now), Err(JwtError::Malformed));
        // Signed with another key.
        let other = std::process::Command::new("openssl")
            .args(["genrsa", "-traditional", "2048"])
            .output()
            .unwrap();
        let forged = jwt(
            DEFAULT_APP_ID,
            now - 60,
            now + 480,
            std::str::from_utf8(&other.stdout).unwrap(),
        );
        assert_eq!(verify_app_jwt(&forged, &apps, now), Err(JwtError::Signature));
    }
}
