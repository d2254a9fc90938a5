//! The `--docker-config` file: the Docker settings of one scale set, or of several served by one
//! process.
//!
//! One scale set: the file holds [`DockerBackendConfig`] fields and `--config` (or
//! `LISTENER_CONFIG_PATH`) names its config.json, as with the Kubernetes backend.
//!
//! Several scale sets: the file's top-level fields are defaults and `scaleSets` lists one entry
//! per scale set, each naming its config.json in `listenerConfig` (relative paths are relative
//! to the Docker config file) and overriding any default field:
//!
//! ```json
//! {
//!   "runnerImage": "runner:2.330", "networkMode": "host",
//!   "scaleSets": [
//!     { "listenerConfig": "linux.json" },
//!     { "listenerConfig": "gpu.json", "runnerImage": "gpu-runner:2.330", "extraEnv": { "GPU": "1" } }
//!   ]
//! }
//! ```
//!
//! In both forms config.json is the authority on the scale set's id, name and min/max runners.

use super::DockerBackendConfig;
use crate::config::{Config, ConfigError};
use serde_json::{Map, Value};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// The key of the scale set list.
pub const SCALE_SETS: &str = "scaleSets";
/// The key, in a `scaleSets` entry, of the path of its config.json.
pub const LISTENER_CONFIG: &str = "listenerConfig";

/// One scale set of the Docker backend: its config.json and its Docker settings.
#[derive(Debug, Clone)]
pub struct DockerScaleSet {
    /// Where `listener` came from.
    pub listener_path: PathBuf,
    pub listener: Config,
    pub docker: DockerBackendConfig,
}

/// Why the Docker config cannot be used. Each message names the file and the field.
#[derive(Debug, thiserror::Error)]
pub enum DockerConfigError {
    #[error("reading the Docker config {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("Docker config {path}: {at}: {reason}")]
    Invalid { path: PathBuf, at: String, reason: String },
    #[error("Docker config {path}: {at}: listener config {listener}")]
    Listener {
        path: PathBuf,
        at: String,
        listener: PathBuf,
        #[source]
        source: Box<ConfigError>,
    },
}

/// Reads the Docker config at `path`; `listener_config` is `--config`, required without
/// `scaleSets` and refused with it.
pub fn load(path: &Path, listener_config: Option<&Path>) -> Result<Vec<DockerScaleSet>, DockerConfigError> {
    let bytes = std::fs::read(path).map_err(|source| DockerConfigError::Read {
        path: path.to_owned(),
        source,
    })?;
    from_slice(path, &bytes, listener_config)
}

/// [`load`] on bytes already read (`path` is used in messages and to resolve relative paths).
pub fn from_slice(
    path: &Path,
    bytes: &[u8],
    listener_config: Option<&Path>,
) -> Result<Vec<DockerScaleSet>, DockerConfigError> {
    let invalid = |at: &str, reason: String| DockerConfigError::Invalid {
        path: path.to_owned(),
        at: at.to_owned(),
        reason,
    };
    let value: Value = serde_json::from_slice(bytes).map_err(|e| invalid("(document)", e.to_string()))?;
    let Value::Object(mut defaults) = value else {
        return Err(invalid("(document)", "must hold one JSON object".into()));
    };
    let entries = match defaults.remove(SCALE_SETS) {
        None | Some(Value::Null) => None,
        Some(Value::Array(entries)) if entries.is_empty() => {
            return Err(invalid(SCALE_SETS, "must list at least one scale set".into()));
        }
        Some(Value::Array(entries)) => Some(entries),
        Some(_) => return Err(invalid(SCALE_SETS, "must be an array of objects".into())),
    };
    let base = path.parent().unwrap_or(Path::new("."));
    let mut sets = Vec::new();
    match (entries, listener_config) {
        (None, None) => {
            return Err(invalid(
                "(document)",
                format!("no scale set: give --config (LISTENER_CONFIG_PATH) or list them in `{SCALE_SETS}`"),
            ));
        }
        (Some(_), Some(config)) => {
            return Err(invalid(
                SCALE_SETS,
                format!(
                    "--config ({}) and `{SCALE_SETS}` both name scale sets; use one of them",
                    config.display()
                ),
            ));
        }
        (None, Some(config)) => {
            sets.push(entry(path, "(document)", config.to_owned(), defaults)?);
        }
        (Some(entries), None) => {
            for (i, e) in entries.into_iter().enumerate() {
                let at = format!("{SCALE_SETS}[{i}]");
                let Value::Object(mut fields) = e else {
                    return Err(invalid(&at, "must be an object".into()));
                };
                let listener = match fields.remove(LISTENER_CONFIG) {
                    Some(Value::String(p)) if !p.trim().is_empty() => base.join(p),
                    _ => {
                        return Err(invalid(
                            &format!("{at}.{LISTENER_CONFIG}"),
                            "is required: the path of this scale set's config.json".into(),
                        ));
                    }
                };
                let mut merged = defaults.clone();
                merged.extend(fields);
                sets.push(entry(path, &at, listener, merged)?);
            }
        }
    }
    check_distinct(path, &sets)?;
    Ok(sets)
}

/// One scale set: decodes its Docker fields, reads its config.json, and lets the latter decide
/// id, name and min/max runners.
fn entry(
    path: &Path,
    at: &str,
    listener_path: PathBuf,
    fields: Map<String, Value>,
) -> Result<DockerScaleSet, DockerConfigError> {
    let json = Value::Object(fields).to_string();
    let de = &mut serde_json::Deserializer::from_str(&json);
    let mut docker: DockerBackendConfig =
        serde_path_to_error::deserialize(de).map_err(|e| DockerConfigError::Invalid {
            path: path.to_owned(),
            at: format!("{at}: field `{}`", e.path()),
            reason: e.inner().to_string(),
        })?;
    let listener = Config::load_for(&listener_path, false).map_err(|source| DockerConfigError::Listener {
        path: path.to_owned(),
        at: at.to_owned(),
        listener: listener_path.clone(),
        source: Box::new(source),
    })?;
    docker.scale_set_id = listener.runner_scale_set_id;
    if docker.scale_set_name.is_empty() {
        docker.scale_set_name = if listener.runner_scale_set_name.is_empty() {
            format!("scale-set-{}", listener.runner_scale_set_id)
        } else {
            listener.runner_scale_set_name.clone()
        };
    }
    docker.min_runners = listener.min_runners;
    docker.max_runners = listener.max_runners;
    docker.validate().map_err(|reason| DockerConfigError::Invalid {
        path: path.to_owned(),
        at: at.to_owned(),
        reason,
    })?;
    Ok(DockerScaleSet {
        listener_path,
        listener,
        docker,
    })
}

/// Two entries for the same scale set would fight over its containers and its session.
fn check_distinct(path: &Path, sets: &[DockerScaleSet]) -> Result<(), DockerConfigError> {
    let mut seen: HashMap<(String, i64), usize> = HashMap::new();
    for (i, s) in sets.iter().enumerate() {
        let key = (
            s.listener.configure_url.trim_end_matches('/').to_owned(),
            s.listener.runner_scale_set_id,
        );
        if let Some(first) = seen.insert(key, i) {
            return Err(DockerConfigError::Invalid {
                path: path.to_owned(),
                at: format!("{SCALE_SETS}[{i}]"),
                reason: format!(
                    "runner_scale_set_id {} of {} is already served by {SCALE_SETS}[{first}]",
                    s.listener.runner_scale_set_id, s.listener.configure_url
                ),
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use serde_json::json;

    struct Dir(tempfile::TempDir);

    impl Dir {
        fn new() -> Self {
            Self(tempfile::tempdir().unwrap())
        }

        fn listener(&self, file: &str, id: i64, name: &str) -> PathBuf {
            let p = self.0.path().join(file);
            let v = json!({
                "configure_url": "https://github.com/acme",
                "github_token": "ghp_x",
                "runner_scale_set_id": id,
                "runner_scale_set_name": name,
                "min_runners": 1,
                "max_runners": 5,
            });
            std::fs::write(&p, v.to_string()).unwrap();
            p
        }

        fn load(&self, docker: Value, config: Option<&Path>) -> Result<Vec<DockerScaleSet>, DockerConfigError> {
            let p = self.0.path().join("docker.json");
            std::fs::write(&p, docker.to_string()).unwrap();
            load(&p, config)
        }
    }

    #[test]
    fn one_set_with_config() {
        let d = Dir::new();
        let l = d.listener("a.json", 7, "linux");
        let sets = d.load(json!({"runnerImage": "r:1"}), Some(&l)).unwrap();
        assert_eq!(sets.len(), 1);
        let s = &sets[0].docker;
        assert_eq!((s.scale_set_id, s.scale_set_name.as_str()), (7, "linux"));
        assert_eq!((s.min_runners, s.max_runners), (1, 5));
        assert_eq!(s.runner_image, "r:1");
    }

    #[test]
    fn several_sets_inherit_and_override_defaults() {
        let d = Dir::new();
        d.listener("a.json", 1, "linux");
        d.listener("b.json", 2, "gpu");
        let sets = d
            .load(
                json!({
                    "runnerImage": "r:1", "networkMode": "host", "extraEnv": {"A": "1"},
                    "scaleSets": [
                        {"listenerConfig": "a.json"},
                        {"listenerConfig": "b.json", "runnerImage": "gpu:1", "extraEnv": {"G": "1"}}
                    ]
                }),
                None,
            )
            .unwrap();
        assert_eq!(sets.len(), 2);
        let (a, b) = (&sets[0].docker, &sets[1].docker);
        assert_eq!((a.scale_set_id, a.runner_image.as_str()), (1, "r:1"));
        assert_eq!((b.scale_set_id, b.runner_image.as_str()), (2, "gpu:1"));
        assert_eq!(b.network_mode.as_deref(), Some("host"), "inherited");
        assert_eq!(
            b.extra_env.keys().collect::<Vec<_>>(),
            ["G"],
            "an entry's field replaces the default"
        );
        assert_eq!(a.extra_env.keys().collect::<Vec<_>>(), ["A"]);
    }

    #[test]
    fn errors_name_the_file_entry_and_field() {
        let d = Dir::new();
        let l = d.listener("a.json", 1, "linux");
        d.listener("dup.json", 1, "again");
        let cases: Vec<(Value, Option<&Path>, &str)> = vec![
            (json!({"runnerImage": "r"}), None, "give --config"),
            (
                json!({"runnerImage": "r", "scaleSets": [{"listenerConfig": "a.json"}]}),
                Some(&l),
                "both name",
            ),
            (
                json!({"runnerImage": "r", "scaleSets": []}),
                None,
                "scaleSets: must list at least one",
            ),
            (
                json!({"runnerImage": "r", "scaleSets": {}}),
                None,
                "scaleSets: must be an array",
            ),
            (
                json!({"runnerImage": "r", "scaleSets": [7]}),
                None,
                "scaleSets[0]: must be an object",
            ),
            (
                json!({"runnerImage": "r", "scaleSets": [{}]}),
                None,
                "scaleSets[0].listenerConfig: is required",
            ),
            (
                json!({"runnerImage": "r", "scaleSets": [{"listenerConfig": "a.json", "cpuLimit": "two"}]}),
                None,
                "scaleSets[0]: field `cpuLimit`",
            ),
            (
                json!({"runnerImage": "r", "scaleSets": [{"listenerConfig": "a.json"}, {"listenerConfig": "dup.json"}]}),
                None,
                "scaleSets[1]: runner_scale_set_id 1 of https://github.com/acme is already served by scaleSets[0]",
            ),
            (
                json!({"scaleSets": [{"listenerConfig": "a.json"}]}),
                None,
                "scaleSets[0]: runnerImage is required",
            ),
            (json!({"runnerImage": "r", "tyop": 1}), Some(&l), "field `tyop`"),
            (json!([1]), Some(&l), "must hold one JSON object"),
        ];
        for (docker, config, want) in cases {
            let err = d.load(docker.clone(), config).expect_err(&docker.to_string());
            let text = err.to_string();
            assert!(text.contains(want), "{docker}: {text:?} lacks {want:?}");
            assert!(text.contains("docker.json"), "{text:?} names the file");
        }
        let err = d
            .load(
                json!({"runnerImage": "r", "scaleSets": [{"listenerConfig": "missing.json"}]}),
                None,
            )
            .unwrap_err();
        assert!(
            matches!(&err, DockerConfigError::Listener { listener, .. } if listener.ends_with("missing.json")),
            "{err:?}"
        );
    }
}
