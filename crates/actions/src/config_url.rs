//! GitHub configure-URL parsing, hosted detection and the REST API base (spec §3).

use crate::error::{Error, Result};
use percent_encoding::{AsciiSet, CONTROLS, percent_decode_str, utf8_percent_encode};
use url::Url;

/// When this environment variable is present (any value), no URL counts as hosted.
pub const FORCE_GHES_ENV: &str = "GITHUB_ACTIONS_FORCE_GHES";

/// Characters escaped inside one path segment.
const SEGMENT: &AsciiSet = &CONTROLS
    .add(b' ')
    .add(b'"')
    .add(b'#')
    .add(b'<')
    .add(b'>')
    .add(b'?')
    .add(b'`')
    .add(b'{')
    .add(b'}')
    .add(b'/')
    .add(b'%');

/// What a configure URL points at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    Organization { org: String },
    Enterprise { enterprise: String },
    Repository { owner: String, repo: String },
}

/// A parsed `configure_url`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GitHubConfig {
    /// The configure URL as given, with leading and trailing `/` removed. This exact text is sent
    /// as `url` to runner-registration (§4.5).
    pub configure_url: String,
    /// The parsed URL.
    pub url: Url,
    pub scope: Scope,
    /// github.com, GHE.com or github.localhost (never when `GITHUB_ACTIONS_FORCE_GHES` is set).
    pub is_hosted: bool,
}

impl GitHubConfig {
    /// Parses `configure_url`, reading `GITHUB_ACTIONS_FORCE_GHES` from the environment.
    pub fn parse(configure_url: &str) -> Result<Self> {
        Self::parse_with(configure_url, std::env::var_os(FORCE_GHES_ENV).is_some())
    }

    /// Parses `configure_url`; `force_ghes` stands for the presence of `GITHUB_ACTIONS_FORCE_GHES`.
    pub fn parse_with(configure_url: &str, force_ghes: bool) -> Result<Self> {
        let invalid = |reason: Option<String>| Error::InvalidConfigUrl {
            url: configure_url.to_owned(),
            reason,
        };
        let trimmed = configure_url.trim_matches('/');
        let url = Url::parse(trimmed).map_err(|e| invalid(Some(e.to_string())))?;
        let host = url
            .host_str()
            .filter(|h| !h.is_empty())
            .ok_or_else(|| invalid(Some("no host".into())))?;
        let host = host.to_owned();

        let path = url.path().trim_matches('/');
        let segments: Vec<String> = path
            .split('/')
            .map(|s| percent_decode_str(s).decode_utf8_lossy().into_owned())
            .collect();
        let scope = match segments.as_slice() {
            [org] if !org.is_empty() => Scope::Organization { org: org.clone() },
            [first, enterprise] if first.eq_ignore_ascii_case("enterprises") && !enterprise.is_empty() => {
                Scope::Enterprise {
                    enterprise: enterprise.clone(),
                }
            }
            [owner, repo] if !owner.is_empty() && !repo.is_empty() => Scope::Repository {
                owner: owner.clone(),
                repo: repo.clone(),
            },
            _ => return Err(invalid(None)),
        };

        let is_hosted = !force_ghes && url.port().is_none() && is_hosted_host(&host);
        Ok(Self {
            configure_url: trimmed.to_owned(),
            url,
            scope,
            is_hosted,
        })
    }

    /// The GitHub REST API base `{API}` (§3 table).
    pub fn api_base(&self) -> Url {
        let mut base = self.url.clone();
        base.set_query(None);
        base.set_fragment(None);
        let _ = base.set_username("");
        let _ = base.set_password(None);
        let host = self.url.host_str().unwrap_or_default().to_ascii_lowercase();
        if self.is_hosted {
            let api_host = match host.as_str() {
                "github.com" | "www.github.com" => "api.github.com".to_owned(),
                other => format!("api.{other}"),
            };
            // Setting a DNS name on a URL that already has one cannot fail.
            let _ = base.set_host(Some(&api_host));
            base.set_path("");
        } else {
            base.set_path("/api/v3");
        }
        base
    }

    /// `{API}` with `path` appended verbatim to the base path.
    pub fn api_url(&self, path: &str) -> Result<Url> {
        let base = self.api_base();
        let joined = format!("{}{}", base.as_str().trim_end_matches('/'), path);
        Url::parse(&joined).map_err(|source| Error::InvalidUrl { url: joined, source })
    }

    /// Path of the registration-token call for this scope (§3).
    pub fn registration_token_path(&self) -> String {
        let seg = |s: &str| utf8_percent_encode(s, SEGMENT).to_string();
        match &self.scope {
            Scope::Organization { org } => format!("/orgs/{}/actions/runners/registration-token", seg(org)),
            Scope::Enterprise { enterprise } => {
                format!("/enterprises/{}/actions/runners/registration-token", seg(enterprise))
            }
            Scope::Repository { owner, repo } => {
                format!("/repos/{}/{}/actions/runners/registration-token", seg(owner), seg(repo))
            }
        }
    }
}

/// github.com, www.github.com, github.localhost or `*.ghe.com`, case-insensitively.
pub fn is_hosted_host(host: &str) -> bool {
    let host = host.to_ascii_lowercase();
    matches!(host.as_str(), "github.com" | "www.github.com" | "github.localhost") || host.ends_with(".ghe.com")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn org(o: &str) -> Scope {
        Scope::Organization { org: o.into() }
    }
    fn ent(e: &str) -> Scope {
        Scope::Enterprise { enterprise: e.into() }
    }
    fn repo(o: &str, r: &str) -> Scope {
        Scope::Repository {
            owner: o.into(),
            repo: r.into(),
        }
    }

    #[test]
    fn parses_every_row_of_section_3() {
        // (configure_url, force_ghes, scope, hosted, {API}, registration-token URL)
        let rows: Vec<(&str, bool, Scope, bool, &str, &str)> = vec![
            (
                "https://github.com/my-org",
                false,
                org("my-org"),
                true,
                "https://api.github.com/",
                "https://api.github.com/orgs/my-org/actions/runners/registration-token",
            ),
            (
                "https://github.com/my-org/",
                false,
                org("my-org"),
                true,
                "https://api.github.com/",
                "https://api.github.com/orgs/my-org/actions/runners/registration-token",
            ),
            (
                "/https://github.com/owner/repo///",
                false,
                repo("owner", "repo"),
                true,
                "https://api.github.com/",
                "https://api.github.com/repos/owner/repo/actions/runners/registration-token",
            ),
            (
                "https://github.com/enterprises/my-ent",
                false,
                ent("my-ent"),
                true,
                "https://api.github.com/",
                "https://api.github.com/enterprises/my-ent/actions/runners/registration-token",
            ),
            (
                "https://github.com/Enterprises/my-ent",
                false,
                ent("my-ent"),
                true,
                "https://api.github.com/",
                "https://api.github.com/enterprises/my-ent/actions/runners/registration-token",
            ),
            (
                "https://www.github.com/my-org",
                false,
                org("my-org"),
                true,
                "https://api.github.com/",
                "https://api.github.com/orgs/my-org/actions/runners/registration-token",
            ),
            (
                "https://WWW.GitHub.com/my-org",
                false,
                org("my-org"),
                true,
                "https://api.github.com/",
                "https://api.github.com/orgs/my-org/actions/runners/registration-token",
            ),
            (
                "https://tenant.ghe.com/my-org/my-repo",
                false,
                repo("my-org", "my-repo"),
                true,
                "https://api.tenant.ghe.com/",
                "https://api.tenant.ghe.com/repos/my-org/my-repo/actions/runners/registration-token",
            ),
            (
                "https://Tenant.GHE.com/my-org",
                false,
                org("my-org"),
                true,
                "https://api.tenant.ghe.com/",
                "https://api.tenant.ghe.com/orgs/my-org/actions/runners/registration-token",
            ),
            (
                "https://github.localhost/my-org",
                false,
                org("my-org"),
                true,
                "https://api.github.localhost/",
                "https://api.github.localhost/orgs/my-org/actions/runners/registration-token",
            ),
            (
                "https://ghes.corp:8443/org",
                false,
                org("org"),
                false,
                "https://ghes.corp:8443/api/v3",
                "https://ghes.corp:8443/api/v3/orgs/org/actions/runners/registration-token",
            ),
            (
                "https://ghes.corp/enterprises/e",
                false,
                ent("e"),
                false,
                "https://ghes.corp/api/v3",
                "https://ghes.corp/api/v3/enterprises/e/actions/runners/registration-token",
            ),
            (
                "http://127.0.0.1:8080/my-org",
                false,
                org("my-org"),
                false,
                "http://127.0.0.1:8080/api/v3",
                "http://127.0.0.1:8080/api/v3/orgs/my-org/actions/runners/registration-token",
            ),
            // A port makes even github.com non-hosted.
            (
                "https://github.com:8443/my-org",
                false,
                org("my-org"),
                false,
                "https://github.com:8443/api/v3",
                "https://github.com:8443/api/v3/orgs/my-org/actions/runners/registration-token",
            ),
            (
                "https://tenant.ghe.com:444/my-org",
                false,
                org("my-org"),
                false,
                "https://tenant.ghe.com:444/api/v3",
                "https://tenant.ghe.com:444/api/v3/orgs/my-org/actions/runners/registration-token",
            ),
            // GITHUB_ACTIONS_FORCE_GHES present.
            (
                "https://github.com/my-org",
                true,
                org("my-org"),
                false,
                "https://github.com/api/v3",
                "https://github.com/api/v3/orgs/my-org/actions/runners/registration-token",
            ),
            (
                "https://tenant.ghe.com/my-org",
                true,
                org("my-org"),
                false,
                "https://tenant.ghe.com/api/v3",
                "https://tenant.ghe.com/api/v3/orgs/my-org/actions/runners/registration-token",
            ),
            // Not hosted: look-alikes.
            (
                "https://notgithub.com/o",
                false,
                org("o"),
                false,
                "https://notgithub.com/api/v3",
                "https://notgithub.com/api/v3/orgs/o/actions/runners/registration-token",
            ),
            (
                "https://ghe.com/o",
                false,
                org("o"),
                false,
                "https://ghe.com/api/v3",
                "https://ghe.com/api/v3/orgs/o/actions/runners/registration-token",
            ),
        ];
        for (input, force, scope, hosted, api, reg) in rows {
            let c = GitHubConfig::parse_with(input, force).unwrap_or_else(|e| panic!("{input}: {e}"));
            assert_eq!(c.scope, scope, "{input}");
            assert_eq!(c.is_hosted, hosted, "{input}");
            assert_eq!(c.api_base().as_str(), api, "{input}");
            assert_eq!(
                c.api_url(&c.registration_token_path()).unwrap().as_str(),
                reg,
                "{input}"
            );
            assert_eq!(c.configure_url, input.trim_matches('/'), "{input}");
        }
    }

    #[test]
    fn rejects_zero_or_more_than_two_segments() {
        for input in [
            "https://github.com",
            "https://github.com/",
            "https://github.com/a/b/c",
            "https://ghes.corp/enterprises/e/extra",
            "https://github.com/a//b",
        ] {
            let e = GitHubConfig::parse_with(input, false).unwrap_err();
            assert!(
                e.to_string()
                    .contains("invalid config URL, should point to an enterprise, org, or repository"),
                "{input}: {e}"
            );
        }
    }

    #[test]
    fn rejects_unparseable_urls() {
        for input in ["", "github.com/org", "not a url"] {
            assert!(
                matches!(
                    GitHubConfig::parse_with(input, false),
                    Err(Error::InvalidConfigUrl { .. })
                ),
                "{input}"
            );
        }
    }

    #[test]
    fn api_url_appends_verbatim() {
        let c = GitHubConfig::parse_with("http://127.0.0.1:1/o", false).unwrap();
        assert_eq!(
            c.api_url("/app/installations/42/access_tokens").unwrap().as_str(),
            "http://127.0.0.1:1/api/v3/app/installations/42/access_tokens"
        );
        let c = GitHubConfig::parse_with("https://github.com/o", false).unwrap();
        assert_eq!(
            c.api_url("/actions/runner-registration").unwrap().as_str(),
            "https://api.github.com/actions/runner-registration"
        );
    }

    #[test]
    fn names_are_escaped_in_the_registration_path() {
        let c = GitHubConfig::parse_with("https://ghes.corp/my%20org", false).unwrap();
        assert_eq!(c.scope, org("my org"));
        assert_eq!(
            c.registration_token_path(),
            "/orgs/my%20org/actions/runners/registration-token"
        );
    }
}
