//! The request (`container-hooks.md` §1.3, §1.4): `{command, responseFile, args, state}`, with the
//! exact camelCase field names the runner writes.
//!
//! Parsing is lenient where the runner's own output varies and strict where a value is needed:
//! unknown fields are ignored, `null` stands for "empty" wherever a list, map or flag is expected,
//! `prependPath` may be an array or (runners ≤ 2.293) a `:`-joined string, and pretty-printed JSON
//! is accepted as well as the runner's single line. `command`, `responseFile`, the `args` of the
//! three commands that have them, `args.entryPoint` of `run_script_step` and
//! `targetVolumePath` of a mount are required.
//!
//! `Debug` never prints an environment value or a registry password.

use crate::error::HookError;
use serde::de::{DeserializeOwned, Deserializer};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::PathBuf;

/// The four commands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Command {
    PrepareJob,
    CleanupJob,
    RunScriptStep,
    RunContainerStep,
}

impl Command {
    pub const ALL: [Command; 4] = [
        Self::PrepareJob,
        Self::CleanupJob,
        Self::RunScriptStep,
        Self::RunContainerStep,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::PrepareJob => "prepare_job",
            Self::CleanupJob => "cleanup_job",
            Self::RunScriptStep => "run_script_step",
            Self::RunContainerStep => "run_container_step",
        }
    }

    /// The command with this wire name.
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|c| c.as_str() == name)
    }
}

impl std::fmt::Display for Command {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A parsed request.
#[derive(Debug, Clone, PartialEq)]
pub struct Request {
    /// Where the response goes; the runner has created it empty.
    pub response_file: PathBuf,
    /// The last `state` a hook returned (`None` for `prepare_job`, or when it was `null`).
    pub state: Option<Value>,
    pub args: RequestArgs,
}

/// The command and its `args`.
#[derive(Debug, Clone, PartialEq)]
pub enum RequestArgs {
    PrepareJob(PrepareJobArgs),
    RunScriptStep(ScriptStepArgs),
    RunContainerStep(HookContainer),
    /// `args` is `{}` and ignored.
    CleanupJob,
}

impl RequestArgs {
    pub fn command(&self) -> Command {
        match self {
            Self::PrepareJob(_) => Command::PrepareJob,
            Self::RunScriptStep(_) => Command::RunScriptStep,
            Self::RunContainerStep(_) => Command::RunContainerStep,
            Self::CleanupJob => Command::CleanupJob,
        }
    }
}

impl Request {
    pub fn command(&self) -> Command {
        self.args.command()
    }

    /// Parses what the runner wrote on stdin.
    ///
    /// The whole input is parsed as one JSON value first (the runner's single line, or
    /// pretty-printed JSON); if that fails, the last non-empty line is tried, as the reference hooks
    /// read only the last line.
    pub fn parse(input: &[u8]) -> Result<Self, HookError> {
        let text = String::from_utf8_lossy(input);
        let text = text.trim_start_matches('\u{feff}').trim();
        if text.is_empty() {
            return Err(HookError::NoInput);
        }
        let value: Value = match serde_json::from_str(text) {
            Ok(v) => v,
            Err(whole) => {
                let last = text.lines().rev().map(str::trim).find(|l| !l.is_empty());
                match last.filter(|l| l.len() < text.len()).map(serde_json::from_str) {
                    Some(Ok(v)) => v,
                    _ if whole.is_eof() => return Err(HookError::TruncatedJson(whole.to_string())),
                    _ => return Err(HookError::InvalidJson(whole.to_string())),
                }
            }
        };
        Self::from_value(value)
    }

    /// Interprets an already parsed request.
    pub fn from_value(value: Value) -> Result<Self, HookError> {
        if !value.is_object() {
            return Err(HookError::InvalidRequest {
                field: "(request)".into(),
                detail: format!("expected a JSON object, got {}", kind(&value)),
            });
        }
        let envelope: Envelope = typed(value, "")?;
        let command = Command::parse(&envelope.command).ok_or(HookError::UnknownCommand(envelope.command))?;
        if envelope.response_file.trim().is_empty() {
            return Err(HookError::InvalidRequest {
                field: "responseFile".into(),
                detail: "must not be empty".into(),
            });
        }
        let args = match command {
            Command::CleanupJob => RequestArgs::CleanupJob,
            other => {
                let Some(args) = envelope.args.filter(|a| !a.is_null()) else {
                    return Err(HookError::InvalidRequest {
                        field: "args".into(),
                        detail: format!("missing field `args` (required for {other})"),
                    });
                };
                match other {
                    Command::PrepareJob => RequestArgs::PrepareJob(typed(args, "args")?),
                    Command::RunScriptStep => RequestArgs::RunScriptStep(typed(args, "args")?),
                    _ => RequestArgs::RunContainerStep(typed(args, "args")?),
                }
            }
        };
        Ok(Self {
            response_file: PathBuf::from(envelope.response_file),
            state: envelope.state.filter(|s| !s.is_null()),
            args,
        })
    }
}

fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Deserialises `value`, naming the failing field by its path (`args.services[0].image`).
fn typed<T: DeserializeOwned>(value: Value, prefix: &str) -> Result<T, HookError> {
    serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        let field = match (prefix.is_empty(), path.as_str()) {
            (true, ".") => "(request)".to_owned(),
            (true, _) => path,
            (false, ".") => prefix.to_owned(),
            (false, _) => format!("{prefix}.{path}"),
        };
        HookError::InvalidRequest {
            field,
            detail: e.into_inner().to_string(),
        }
    })
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Envelope {
    command: String,
    response_file: String,
    #[serde(default)]
    args: Option<Value>,
    #[serde(default)]
    state: Option<Value>,
}

/// `null` or missing → the type's default.
fn nullable<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de> + Default,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

/// Environment variables (`environmentVariables`): names keep their case; a `null` value is empty.
/// `Debug` shows the names only: the values are the job's secrets.
#[derive(Clone, Default, PartialEq, Eq, Serialize)]
pub struct Env(pub BTreeMap<String, String>);

impl Env {
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0.get(name).map(String::as_str)
    }

    pub fn contains(&self, name: &str) -> bool {
        self.0.contains_key(name)
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl<'de> Deserialize<'de> for Env {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let map = Option::<BTreeMap<String, Option<String>>>::deserialize(d)?.unwrap_or_default();
        Ok(Self(map.into_iter().map(|(k, v)| (k, v.unwrap_or_default())).collect()))
    }
}

impl std::fmt::Debug for Env {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_set().entries(self.0.keys()).finish()
    }
}

/// `HookContainer` (§1.4.1): the job container, a service, or a container action.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HookContainer {
    #[serde(default)]
    pub image: Option<String>,
    /// Absolute host path of a Dockerfile (container actions built from source).
    #[serde(default)]
    pub dockerfile: Option<String>,
    #[serde(default)]
    pub entry_point: Option<String>,
    /// Pieces split on single spaces; re-join with spaces and shell-split to get the argv back.
    #[serde(default, deserialize_with = "nullable")]
    pub entry_point_args: Vec<String>,
    #[serde(default)]
    pub working_directory: Option<String>,
    /// The workflow `options:` string, verbatim.
    #[serde(default)]
    pub create_options: Option<String>,
    #[serde(default)]
    pub registry: Option<Registry>,
    #[serde(default)]
    pub environment_variables: Env,
    #[serde(default, deserialize_with = "nullable")]
    pub port_mappings: Vec<String>,
    #[serde(default, deserialize_with = "nullable")]
    pub system_mount_volumes: Vec<Mount>,
    #[serde(default, deserialize_with = "nullable")]
    pub user_mount_volumes: Vec<Mount>,
    /// The service's workflow key. The runner never sends it (actions/runner#2783); read in case a
    /// future one does.
    #[serde(default)]
    pub context_name: Option<String>,
}

/// Registry credentials. `Debug` redacts the password.
#[derive(Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Registry {
    #[serde(default)]
    pub username: Option<String>,
    #[serde(default)]
    pub password: Option<String>,
    /// `""` for Docker Hub.
    #[serde(default, deserialize_with = "nullable")]
    pub server_url: String,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry")
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "***"))
            .field("server_url", &self.server_url)
            .finish()
    }
}

/// A volume mount (§1.4.1).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Mount {
    /// The workflow's original `volumes:` string (user mounts only).
    #[serde(default)]
    pub user_provided_value: Option<String>,
    /// `None` for an anonymous volume.
    #[serde(default)]
    pub source_volume_path: Option<String>,
    pub target_volume_path: String,
    #[serde(default, deserialize_with = "nullable")]
    pub read_only: bool,
}

/// `prepare_job` args (§1.4.4).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PrepareJobArgs {
    #[serde(default)]
    pub container: Option<HookContainer>,
    /// In workflow order; the response's `context.services` must follow it.
    #[serde(default, deserialize_with = "nullable")]
    pub services: Vec<HookContainer>,
}

/// `run_script_step` args (§1.4.5).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ScriptStepArgs {
    pub entry_point: String,
    /// Split on single spaces, empties kept.
    #[serde(default, deserialize_with = "nullable")]
    pub entry_point_args: Vec<String>,
    #[serde(default)]
    pub environment_variables: Env,
    /// Most recent first; join with `:` and put in front of the container's `PATH`.
    #[serde(default, deserialize_with = "prepend_path")]
    pub prepend_path: Vec<String>,
    #[serde(default)]
    pub working_directory: Option<String>,
}

impl ScriptStepArgs {
    /// `prependPath` joined with `:` (`None` when empty).
    pub fn prepend_path_joined(&self) -> Option<String> {
        let parts: Vec<&str> = self
            .prepend_path
            .iter()
            .map(String::as_str)
            .filter(|p| !p.is_empty())
            .collect();
        (!parts.is_empty()).then(|| parts.join(":"))
    }
}

/// An array, `null`, or (old runners) one `:`-joined string, kept as a single entry.
fn prepend_path<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Either {
        List(Vec<String>),
        Joined(String),
    }
    Ok(match Option::<Either>::deserialize(d)? {
        None => Vec::new(),
        Some(Either::List(v)) => v,
        Some(Either::Joined(s)) if s.is_empty() => Vec::new(),
        Some(Either::Joined(s)) => vec![s],
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use serde_json::json;

    fn err(input: &str) -> String {
        Request::parse(input.as_bytes()).unwrap_err().to_string()
    }

    fn container_json() -> Value {
        json!({
            "image": "node:22", "dockerfile": null, "entryPointArgs": ["-f", "/dev/null"], "entryPoint": "tail",
            "workingDirectory": "/__w/r/r", "createOptions": "--cpus 1",
            "registry": {"username": "u", "password": "hunter2", "serverUrl": "ghcr.io"},
            "environmentVariables": {"HOME": "/github/home", "Secret_Token": "s3cr3t", "EMPTY": null},
            "portMappings": ["8080:80"],
            "systemMountVolumes": [{"userProvidedValue": null, "sourceVolumePath": "/home/runner/_work", "targetVolumePath": "/__w", "readOnly": false}],
            "userMountVolumes": [{"userProvidedValue": "/anon", "sourceVolumePath": null, "targetVolumePath": "/anon", "readOnly": null}],
            "someFutureField": {"x": 1}
        })
    }

    #[test]
    fn prepare_job_every_field() {
        let line = json!({
            "command": "prepare_job", "responseFile": "/t/r.json",
            "args": {"container": container_json(), "services": [{"image": "redis", "entryPointArgs": [], "entryPoint": null, "workingDirectory": null, "createOptions": null, "registry": null, "environmentVariables": {}, "portMappings": ["6379"], "systemMountVolumes": [], "userMountVolumes": [], "dockerfile": null}]},
            "state": null
        })
        .to_string();
        let req = Request::parse(format!("{line}\n").as_bytes()).unwrap();
        assert_eq!(req.command(), Command::PrepareJob);
        assert_eq!(req.response_file, PathBuf::from("/t/r.json"));
        assert_eq!(req.state, None);
        let RequestArgs::PrepareJob(args) = req.args else {
            panic!("wrong args")
        };
        let c = args.container.unwrap();
        assert_eq!(c.image.as_deref(), Some("node:22"));
        assert_eq!(c.entry_point.as_deref(), Some("tail"));
        assert_eq!(c.entry_point_args, ["-f", "/dev/null"]);
        assert_eq!(c.working_directory.as_deref(), Some("/__w/r/r"));
        assert_eq!(c.create_options.as_deref(), Some("--cpus 1"));
        let reg = c.registry.clone().unwrap();
        assert_eq!(
            (
                reg.username.as_deref(),
                reg.password.as_deref(),
                reg.server_url.as_str()
            ),
            (Some("u"), Some("hunter2"), "ghcr.io")
        );
        assert_eq!(c.environment_variables.get("Secret_Token"), Some("s3cr3t"));
        assert_eq!(c.environment_variables.get("EMPTY"), Some(""));
        assert_eq!(c.port_mappings, ["8080:80"]);
        assert_eq!(
            c.system_mount_volumes[0].source_volume_path.as_deref(),
            Some("/home/runner/_work")
        );
        let anon = &c.user_mount_volumes[0];
        assert_eq!((anon.source_volume_path.as_deref(), anon.read_only), (None, false));
        assert_eq!(args.services.len(), 1);
        assert_eq!(args.services[0].port_mappings, ["6379"]);
        assert_eq!(args.services[0].context_name, None);
    }

    #[test]
    fn debug_never_shows_secrets() {
        let c: HookContainer = serde_json::from_value(container_json()).unwrap();
        let shown = format!("{c:?}");
        assert!(!shown.contains("hunter2") && !shown.contains("s3cr3t"), "{shown}");
        assert!(shown.contains("Secret_Token") && shown.contains("***"), "{shown}");
    }

    #[test]
    fn script_step_and_prepend_path_forms() {
        let parse = |prepend: Value| {
            let line = json!({"command": "run_script_step", "responseFile": "/r", "state": {"jobPod": "p"},
                "args": {"entryPoint": "sh", "entryPointArgs": ["-e", "", "/__w/_temp/x.sh"], "environmentVariables": {"CI": "true"},
                         "prependPath": prepend, "workingDirectory": "/__w/r/r"}});
            let req = Request::parse(line.to_string().as_bytes()).unwrap();
            assert_eq!(req.state, Some(json!({"jobPod": "p"})));
            match req.args {
                RequestArgs::RunScriptStep(a) => a,
                other => panic!("{other:?}"),
            }
        };
        let a = parse(json!(["/b", "/a"]));
        assert_eq!(a.entry_point, "sh");
        assert_eq!(a.entry_point_args, ["-e", "", "/__w/_temp/x.sh"]);
        assert_eq!(a.working_directory.as_deref(), Some("/__w/r/r"));
        assert_eq!(a.prepend_path_joined().as_deref(), Some("/b:/a"));
        assert_eq!(parse(json!("/b:/a")).prepend_path_joined().as_deref(), Some("/b:/a"));
        assert_eq!(parse(json!("")).prepend_path_joined(), None);
        assert_eq!(parse(Value::Null).prepend_path_joined(), None);
        assert_eq!(parse(json!([])).prepend_path_joined(), None);
    }

    #[test]
    fn container_step_and_cleanup() {
        let line = json!({"command": "run_container_step", "responseFile": "/r", "state": {},
            "args": {"image": null, "dockerfile": "/a/Dockerfile", "entryPointArgs": ["\"a", "b\""], "portMappings": []}});
        let req = Request::parse(line.to_string().as_bytes()).unwrap();
        let RequestArgs::RunContainerStep(c) = req.args else {
            panic!()
        };
        assert_eq!(c.dockerfile.as_deref(), Some("/a/Dockerfile"));
        assert_eq!(c.entry_point_args, ["\"a", "b\""]);

        for args in ["{}", "null", "[]"] {
            let line = format!(r#"{{"command":"cleanup_job","responseFile":"/r","args":{args},"state":{{"x":1}}}}"#);
            let req = Request::parse(line.as_bytes()).unwrap();
            assert_eq!(req.args, RequestArgs::CleanupJob);
        }
        let req = Request::parse(br#"{"command":"cleanup_job","responseFile":"/r"}"#).unwrap();
        assert_eq!(req.state, None);
    }

    #[test]
    fn pretty_printed_and_last_line() {
        let pretty = serde_json::to_string_pretty(
            &json!({"command": "cleanup_job", "responseFile": "/r", "args": {}, "state": null}),
        )
        .unwrap();
        assert_eq!(
            Request::parse(pretty.as_bytes()).unwrap().command(),
            Command::CleanupJob
        );
        // The reference reads only the last line: anything before it is ignored.
        let noisy = "garbage\n{\"command\":\"cleanup_job\",\"responseFile\":\"/r\",\"args\":{}}\n\n";
        assert_eq!(Request::parse(noisy.as_bytes()).unwrap().command(), Command::CleanupJob);
        let bom = "\u{feff}{\"command\":\"cleanup_job\",\"responseFile\":\"/r\",\"args\":{}}";
        assert_eq!(Request::parse(bom.as_bytes()).unwrap().command(), Command::CleanupJob);
    }

    #[test]
    fn bad_input_names_what_is_wrong() {
        assert!(matches!(Request::parse(b""), Err(HookError::NoInput)));
        assert!(matches!(Request::parse(b" \n\n"), Err(HookError::NoInput)));
        let e = err(r#"{"command":"prepare_job","responseFile":"/r","args":{"contai"#);
        assert!(
            e.starts_with("the request on stdin is truncated: EOF while parsing"),
            "{e}"
        );
        let e = err("hello");
        assert!(e.starts_with("the request on stdin is not valid JSON"), "{e}");
        assert_eq!(
            err(r#"{"command":"run_it","responseFile":"/r","args":{}}"#),
            "Command not recognized: run_it"
        );
        assert_eq!(
            err(r#"{"responseFile":"/r","args":{}}"#),
            "invalid request: (request): missing field `command`"
        );
        assert_eq!(
            err(r#"{"command":"cleanup_job","args":{}}"#),
            "invalid request: (request): missing field `responseFile`"
        );
        assert_eq!(
            err(r#"{"command":"cleanup_job","responseFile":" ","args":{}}"#),
            "invalid request: responseFile: must not be empty"
        );
        assert_eq!(
            err(r#"{"command":"run_script_step","responseFile":"/r","state":null}"#),
            "invalid request: args: missing field `args` (required for run_script_step)"
        );
        assert_eq!(
            err(r#"{"command":"run_script_step","responseFile":"/r","args":{"entryPointArgs":[]}}"#),
            "invalid request: args: missing field `entryPoint`"
        );
        let e = err(r#"{"command":"prepare_job","responseFile":"/r","args":{"services":[{"image":"a"},{"image":5}]}}"#);
        assert!(
            e.starts_with("invalid request: args.services[1].image: invalid type: integer `5`"),
            "{e}"
        );
        let e = err(
            r#"{"command":"prepare_job","responseFile":"/r","args":{"container":{"userMountVolumes":[{"readOnly":true}]}}}"#,
        );
        assert_eq!(
            e,
            "invalid request: args.container.userMountVolumes[0]: missing field `targetVolumePath`"
        );
        assert_eq!(
            err("[1,2]"),
            "invalid request: (request): expected a JSON object, got an array"
        );
    }
}
