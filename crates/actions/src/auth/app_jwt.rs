//! The GitHub App JWT (spec §4.2): RS256, `iat` = now − 60 s, `exp` = `iat` + 9 min, `iss` = the
//! configured App ID or Client ID.

use crate::error::{Error, Result};
use crate::secret::Secret;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, EncodingKey};
use serde::Serialize;
use std::fmt;
use std::time::{SystemTime, UNIX_EPOCH};

/// Clock-skew allowance subtracted from `iat`.
pub const CLOCK_SKEW_SECS: i64 = 60;
/// Lifetime from `iat` to `exp`.
pub const LIFETIME_SECS: i64 = 9 * 60;

/// The exact header Go's jwt library writes.
const HEADER: &str = r#"{"alg":"RS256","typ":"JWT"}"#;

#[derive(Serialize)]
struct Claims<'a> {
    iss: &'a str,
    exp: i64,
    iat: i64,
}

/// Signs App JWTs with a parsed key.
#[derive(Clone)]
pub struct AppJwtSigner {
    app_id: String,
    key: EncodingKey,
}

impl fmt::Debug for AppJwtSigner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AppJwtSigner")
            .field("app_id", &self.app_id)
            .field("key", &"***")
            .finish()
    }
}

impl AppJwtSigner {
    /// Parses a PEM RSA private key (PKCS#1 or PKCS#8) and checks that it can sign.
    pub fn new(app_id: &str, private_key_pem: &Secret) -> Result<Self> {
        let key =
            EncodingKey::from_rsa_pem(private_key_pem.expose().trim().as_bytes()).map_err(Error::InvalidPrivateKey)?;
        let signer = Self {
            app_id: app_id.to_owned(),
            key,
        };
        jsonwebtoken::crypto::sign(b"probe", &signer.key, Algorithm::RS256).map_err(Error::InvalidPrivateKey)?;
        Ok(signer)
    }

    /// The `iss` claim.
    pub fn app_id(&self) -> &str {
        &self.app_id
    }

    /// A JWT issued now.
    pub fn sign(&self) -> Result<Secret> {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or_default();
        self.sign_at(now)
    }

    /// A JWT issued at unix time `now`.
    pub fn sign_at(&self, now: i64) -> Result<Secret> {
        let iat = now - CLOCK_SKEW_SECS;
        let claims = Claims {
            iss: &self.app_id,
            exp: iat + LIFETIME_SECS,
            iat,
        };
        let claims = serde_json::to_vec(&claims).map_err(|e| Error::Protocol(format!("encoding JWT claims: {e}")))?;
        let message = format!("{}.{}", URL_SAFE_NO_PAD.encode(HEADER), URL_SAFE_NO_PAD.encode(claims));
        let signature =
            jsonwebtoken::crypto::sign(message.as_bytes(), &self.key, Algorithm::RS256).map_err(Error::Jwt)?;
        Ok(Secret::new(format!("{message}.{signature}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::{DecodingKey, Validation};
    use serde_json::Value;

    const PKCS1: &str = include_str!("../../testdata/app-key-pkcs1.pem");
    const PKCS8: &str = include_str!("../../testdata/app-key-pkcs8.pem");
    const PUBLIC: &str = include_str!("../../testdata/app-key-public.pem");

    fn verify(token: &str) -> (Value, Value) {
        let key = DecodingKey::from_rsa_pem(PUBLIC.as_bytes()).unwrap();
        let mut validation = Validation::new(Algorithm::RS256);
        validation.validate_exp = false;
        validation.required_spec_claims.clear();
        let data = jsonwebtoken::decode::<Value>(token, &key, &validation).unwrap();
        let header_part = token.split('.').next().unwrap();
        let header: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(header_part).unwrap()).unwrap();
        (header, data.claims)
    }

    #[test]
    fn signs_with_pkcs1_and_pkcs8_keys() {
        for (pem, app_id) in [(PKCS1, "123456"), (PKCS8, "Iv1.0123456789abcdef")] {
            let signer = AppJwtSigner::new(app_id, &Secret::new(pem)).unwrap();
            let token = signer.sign_at(1_700_000_000).unwrap();
            let (header, claims) = verify(token.expose());
            assert_eq!(header, serde_json::json!({"alg": "RS256", "typ": "JWT"}));
            assert_eq!(claims["iss"], app_id, "iss is the configured string, verbatim");
            assert_eq!(claims["iat"], 1_700_000_000 - 60);
            assert_eq!(claims["exp"], 1_700_000_000 - 60 + 540);
        }
    }

    #[test]
    fn both_key_formats_give_the_same_signature() {
        let a = AppJwtSigner::new("1", &Secret::new(PKCS1)).unwrap().sign_at(1).unwrap();
        let b = AppJwtSigner::new("1", &Secret::new(PKCS8)).unwrap().sign_at(1).unwrap();
        assert_eq!(a, b, "RS256 (PKCS#1 v1.5) is deterministic");
    }

    #[test]
    fn sign_uses_the_current_time() {
        let token = AppJwtSigner::new("1", &Secret::new(PKCS1)).unwrap().sign().unwrap();
        let (_, claims) = verify(token.expose());
        let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs() as i64;
        let iat = claims["iat"].as_i64().unwrap();
        assert!((now - 60 - iat).abs() <= 5, "iat {iat} now {now}");
    }

    #[test]
    fn rejects_garbage_and_non_rsa_keys() {
        for bad in [
            "garbage",
            "-----BEGIN RSA PRIVATE KEY-----\nAAAA\n-----END RSA PRIVATE KEY-----\n",
            PUBLIC,
        ] {
            let err = AppJwtSigner::new("1", &Secret::new(bad)).unwrap_err();
            assert!(matches!(err, Error::InvalidPrivateKey(_)), "{bad}: {err:?}");
            assert!(err.to_string().contains("invalid GitHub App private key"));
        }
    }

    #[test]
    fn debug_redacts_the_key() {
        let signer = AppJwtSigner::new("1", &Secret::new(PKCS1)).unwrap();
        assert_eq!(format!("{signer:?}"), r#"AppJwtSigner { app_id: "1", key: "***" }"#);
    }
}
