//! The JSON User-Agent sent on every request (spec §5.4).

use serde::Serialize;

/// Who is calling. The crate adds `build_version`, `build_commit_sha` and `kind`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserAgentInfo {
    /// The product, `rarc`.
    pub system: String,
    /// Version of the calling binary (`NA` when unknown).
    pub version: String,
    /// Commit of the calling binary (`NA` when unknown).
    pub commit_sha: String,
    /// The scale set being served; 0 until it exists.
    pub scale_set_id: i64,
    /// `ghalistener`, `gha-scale-set-controller`, ...
    pub subsystem: String,
}

impl Default for UserAgentInfo {
    fn default() -> Self {
        Self {
            system: "rarc".into(),
            version: "NA".into(),
            commit_sha: "NA".into(),
            scale_set_id: 0,
            subsystem: String::new(),
        }
    }
}

/// Version of this library, reported as `build_version`.
pub const BUILD_VERSION: &str = env!("CARGO_PKG_VERSION");

/// Commit of this library (set `RARC_COMMIT_SHA` at build time), else the version, as the Go
/// library reports its version in both fields.
pub const BUILD_COMMIT_SHA: &str = match option_env!("RARC_COMMIT_SHA") {
    Some(sha) => sha,
    None => BUILD_VERSION,
};

#[derive(Serialize)]
struct Wire<'a> {
    system: &'a str,
    version: &'a str,
    commit_sha: &'a str,
    scale_set_id: i64,
    subsystem: &'a str,
    build_version: &'a str,
    build_commit_sha: &'a str,
    kind: &'a str,
}

impl UserAgentInfo {
    /// The header value: a JSON document with the fields in the order of §5.4.
    pub fn header_value(&self) -> String {
        let wire = Wire {
            system: &self.system,
            version: &self.version,
            commit_sha: &self.commit_sha,
            scale_set_id: self.scale_set_id,
            subsystem: &self.subsystem,
            build_version: BUILD_VERSION,
            build_commit_sha: BUILD_COMMIT_SHA,
            kind: "scaleset",
        };
        // Serialising plain strings and integers cannot fail.
        serde_json::to_string(&wire).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_fields_in_order() {
        let ua = UserAgentInfo {
            system: "rarc".into(),
            version: "0.1.0".into(),
            commit_sha: "abc123".into(),
            scale_set_id: 5,
            subsystem: "ghalistener".into(),
        };
        let expected = format!(
            r#"{{"system":"rarc","version":"0.1.0","commit_sha":"abc123","scale_set_id":5,"subsystem":"ghalistener","build_version":"{BUILD_VERSION}","build_commit_sha":"{BUILD_COMMIT_SHA}","kind":"scaleset"}}"#
        );
        assert_eq!(ua.header_value(), expected);
        assert!(http::HeaderValue::from_str(&ua.header_value()).is_ok());
    }
}
