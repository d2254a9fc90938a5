//! The response file (`container-hooks.md` §1.5). Only `prepare_job` writes one; the runner reads
//! it case-insensitively after the hook exits. The runner creates the file (empty) before starting
//! the hook; like the reference hooks, this appends to it and fails if it does not exist.

use crate::error::HookError;
use crate::protocol::request::PrepareJobArgs;
use serde::Serialize;
use serde_json::Value;
use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;

/// The `prepare_job` response.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PrepareJobResponse {
    /// Replaces the runner's stored state; sent back verbatim in every later request.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub state: Option<Value>,
    pub context: ResponseContext,
    /// Required by the runner whenever the request had a job container.
    pub is_alpine: bool,
}

/// `context` of the response.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ResponseContext {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub container: Option<ContainerInfo>,
    /// Position `i` is the request's `services[i]`.
    pub services: Vec<ContainerInfo>,
}

/// One container of `context`. `id` and `network` become `job.container.*` /
/// `job.services.<alias>.*` in the workflow: leave them out unless they are real.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ContainerInfo {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub network: Option<String>,
    /// Container port → host port; always written (the runner dereferences it for services).
    pub ports: BTreeMap<String, String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub context_name: Option<String>,
}

impl PrepareJobResponse {
    /// Checks the response against the request the way the runner will, so that a mistake shows as
    /// a clear error instead of the runner's NullReferenceException or index error.
    pub fn validate(&self, args: &PrepareJobArgs) -> Result<(), HookError> {
        if self.context.services.len() > args.services.len() {
            return Err(HookError::InvalidResponse(format!(
                "context.services has {} entries but the request had {} services",
                self.context.services.len(),
                args.services.len()
            )));
        }
        if let Some(state) = &self.state
            && !state.is_object()
        {
            return Err(HookError::InvalidResponse(format!(
                "state must be a JSON object, got {state}"
            )));
        }
        Ok(())
    }

    /// The file content: one line of JSON.
    pub fn to_line(&self) -> String {
        // Serialising plain data to a string cannot fail.
        let mut line = serde_json::to_string(self).unwrap_or_else(|_| "{}".to_owned());
        line.push('\n');
        line
    }

    /// Appends the response to `path`, which must exist.
    pub fn write_to(&self, path: &Path) -> Result<(), HookError> {
        let mut file = std::fs::OpenOptions::new()
            .append(true)
            .open(path)
            .map_err(|source| match source.kind() {
                std::io::ErrorKind::NotFound => HookError::ResponseFileMissing(path.to_owned()),
                _ => HookError::ResponseWrite {
                    path: path.to_owned(),
                    source,
                },
            })?;
        file.write_all(self.to_line().as_bytes())
            .and_then(|()| file.flush())
            .map_err(|source| HookError::ResponseWrite {
                path: path.to_owned(),
                source,
            })
    }
}

/// Fails unless the response file exists (checked before `prepare_job` starts anything).
pub fn require_response_file(path: &Path) -> Result<(), HookError> {
    if path.is_file() {
        Ok(())
    } else {
        Err(HookError::ResponseFileMissing(path.to_owned()))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::protocol::request::HookContainer;
    use serde_json::json;

    fn sample() -> PrepareJobResponse {
        PrepareJobResponse {
            state: Some(json!({"network": "n", "container": "c"})),
            context: ResponseContext {
                container: Some(ContainerInfo {
                    id: Some("c".into()),
                    image: Some("node:22".into()),
                    network: Some("n".into()),
                    ..Default::default()
                }),
                services: vec![ContainerInfo {
                    id: Some("s".into()),
                    ports: BTreeMap::from([("80".into(), "8080".into())]),
                    ..Default::default()
                }],
            },
            is_alpine: false,
        }
    }

    #[test]
    fn wire_shape() {
        assert_eq!(
            serde_json::to_value(sample()).unwrap(),
            json!({
                "state": {"network": "n", "container": "c"},
                "context": {
                    "container": {"id": "c", "image": "node:22", "network": "n", "ports": {}},
                    "services": [{"id": "s", "ports": {"80": "8080"}}]
                },
                "isAlpine": false
            })
        );
        let empty = PrepareJobResponse::default();
        assert_eq!(empty.to_line(), "{\"context\":{\"services\":[]},\"isAlpine\":false}\n");
    }

    #[test]
    fn validation() {
        let one = PrepareJobArgs {
            container: None,
            services: vec![HookContainer::default()],
        };
        sample().validate(&one).unwrap();
        let err = sample().validate(&PrepareJobArgs::default()).unwrap_err().to_string();
        assert_eq!(
            err,
            "invalid prepare_job response: context.services has 1 entries but the request had 0 services"
        );
        let mut bad_state = sample();
        bad_state.state = Some(json!("x"));
        assert!(bad_state.validate(&one).is_err());
    }

    #[test]
    fn appends_to_an_existing_file_only() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.json");
        let err = sample().write_to(&path).unwrap_err();
        assert_eq!(err.to_string(), format!("Missing file at path: {}", path.display()));
        assert!(require_response_file(&path).is_err());
        std::fs::write(&path, "").unwrap();
        require_response_file(&path).unwrap();
        sample().write_to(&path).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text.lines().count(), 1);
        let back: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(back["isAlpine"], false);
    }
}
