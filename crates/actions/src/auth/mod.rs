//! Authentication (spec §4): credentials, the GitHub App JWT, the token chain and the admin token.

pub mod admin_token;
pub mod app_jwt;
pub(crate) mod chain;

use crate::error::{Error, Result};
use crate::secret::Secret;

pub use admin_token::AdminToken;
pub use app_jwt::AppJwtSigner;

/// How the client authenticates to the GitHub API. `Debug` never shows the secrets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Credentials {
    /// A personal access token.
    Pat(Secret),
    /// A GitHub App installation.
    App {
        /// App ID or Client ID, used verbatim as the JWT `iss`.
        app_id: String,
        installation_id: i64,
        /// PEM, PKCS#1 or PKCS#8 RSA private key.
        private_key: Secret,
    },
}

impl Credentials {
    /// Checks the credentials without any network call; for an App this parses the key.
    pub fn validate(&self) -> Result<()> {
        match self {
            Credentials::Pat(token) if token.expose().trim().is_empty() => {
                Err(Error::InvalidCredentials("the personal access token is empty".into()))
            }
            Credentials::Pat(_) => Ok(()),
            Credentials::App { .. } => self.app_signer().map(|_| ()),
        }
    }

    /// The JWT signer of an App (validated), `None` for a PAT.
    pub(crate) fn app_signer(&self) -> Result<Option<(AppJwtSigner, i64)>> {
        match self {
            Credentials::Pat(_) => Ok(None),
            Credentials::App {
                app_id,
                installation_id,
                private_key,
            } => {
                if app_id.trim().is_empty() {
                    return Err(Error::InvalidCredentials(
                        "the GitHub App ID (or Client ID) is empty".into(),
                    ));
                }
                if *installation_id <= 0 {
                    return Err(Error::InvalidCredentials(format!(
                        "the GitHub App installation id must be positive, got {installation_id}"
                    )));
                }
                if private_key.expose().trim().is_empty() {
                    return Err(Error::InvalidCredentials("the GitHub App private key is empty".into()));
                }
                Ok(Some((AppJwtSigner::new(app_id, private_key)?, *installation_id)))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = include_str!("../../testdata/app-key-pkcs1.pem");

    fn app(app_id: &str, installation_id: i64, key: &str) -> Credentials {
        Credentials::App {
            app_id: app_id.into(),
            installation_id,
            private_key: Secret::new(key),
        }
    }

    #[test]
    fn validation() {
        assert!(Credentials::Pat(Secret::new("ghp_x")).validate().is_ok());
        assert!(matches!(
            Credentials::Pat(Secret::new(" ")).validate(),
            Err(Error::InvalidCredentials(_))
        ));
        assert!(app("123", 1, KEY).validate().is_ok());
        assert!(app("Iv1.abcdef", 99, KEY).validate().is_ok());
        assert!(matches!(app("", 1, KEY).validate(), Err(Error::InvalidCredentials(_))));
        assert!(matches!(app("1", 0, KEY).validate(), Err(Error::InvalidCredentials(_))));
        assert!(matches!(
            app("1", -4, KEY).validate(),
            Err(Error::InvalidCredentials(_))
        ));
        assert!(matches!(app("1", 1, "").validate(), Err(Error::InvalidCredentials(_))));
        assert!(matches!(
            app("1", 1, "garbage").validate(),
            Err(Error::InvalidPrivateKey(_))
        ));
    }

    #[test]
    fn debug_hides_secrets() {
        let text = format!(
            "{:?} {:?}",
            Credentials::Pat(Secret::new("ghp_secret")),
            app("1", 2, KEY)
        );
        assert!(!text.contains("ghp_secret"));
        assert!(!text.contains("PRIVATE KEY"));
    }
}
