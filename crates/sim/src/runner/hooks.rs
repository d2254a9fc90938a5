//! Calling the container hook named by `ACTIONS_RUNNER_CONTAINER_HOOKS` exactly as the runner does
//! (`container-hooks.md` §1): path checks, the interpreter by extension, the host-side environment
//! and working directory, one line of JSON on stdin, an empty response file created before each call
//! and read case-insensitively afterwards, `isAlpine`, state carried between calls, services mapped
//! by position, and the runner's error texts.
//!
//! The request types are public so that other tests can build byte-identical runner requests.

use super::log::LogSink;
use super::process::{self, Escalation, ProcSpec};
use super::workdir::{
    ACTION_FILE_COMMANDS, ACTION_RUNNER_TEMP, ACTION_WORKSPACE, CONTAINER_EXTERNALS, CONTAINER_HOME, CONTAINER_WORK,
    CONTAINER_WORKFLOW, DOCKER_SOCK, Layout,
};
use crate::job::{ContainerSpec, StepSpec};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::collections::BTreeMap;
use std::path::Path;
use tokio_util::sync::CancellationToken;

/// The environment variable naming the hook.
pub const HOOKS_ENV: &str = "ACTIONS_RUNNER_CONTAINER_HOOKS";
/// What the runner says when any hook call fails (the step's error line).
pub const HOOK_FAILED: &str =
    "Executing the custom container implementation failed. Please contact your self hosted runner administrator.";

/// A hook command (`command` of the request).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HookCommand {
    PrepareJob,
    CleanupJob,
    RunScriptStep,
    RunContainerStep,
}

impl HookCommand {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::PrepareJob => "prepare_job",
            Self::CleanupJob => "cleanup_job",
            Self::RunScriptStep => "run_script_step",
            Self::RunContainerStep => "run_container_step",
        }
    }
}

impl std::fmt::Display for HookCommand {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The request written to the hook's stdin. Nulls are emitted.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HookRequest {
    pub command: HookCommand,
    pub response_file: String,
    pub args: Value,
    pub state: Option<Value>,
}

/// `HookContainer` (§1.4.1): every field is always present.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HookContainer {
    pub image: Option<String>,
    pub dockerfile: Option<String>,
    pub entry_point_args: Vec<String>,
    pub entry_point: Option<String>,
    pub working_directory: Option<String>,
    pub create_options: Option<String>,
    pub registry: Option<Registry>,
    pub environment_variables: BTreeMap<String, String>,
    pub port_mappings: Vec<String>,
    pub system_mount_volumes: Vec<Mount>,
    pub user_mount_volumes: Vec<Mount>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Registry {
    pub username: String,
    pub password: String,
    pub server_url: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Mount {
    pub user_provided_value: Option<String>,
    pub source_volume_path: Option<String>,
    pub target_volume_path: String,
    pub read_only: bool,
}

impl Mount {
    fn system(source: &Path, target: &str, read_only: bool) -> Self {
        Self {
            user_provided_value: None,
            source_volume_path: Some(source.to_string_lossy().into_owned()),
            target_volume_path: target.to_owned(),
            read_only,
        }
    }
}

/// `prepare_job` args (§1.4.4).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PrepareJobArgs {
    pub container: Option<HookContainer>,
    pub services: Vec<HookContainer>,
}

/// `run_script_step` args (§1.4.5).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ScriptStepArgs {
    pub entry_point_args: Vec<String>,
    pub entry_point: String,
    pub environment_variables: BTreeMap<String, String>,
    pub prepend_path: Vec<String>,
    pub working_directory: String,
}

/// The registry host of an image: the first path segment when there are more than two, or when there
/// are two and the first has a `.` or `:`; otherwise `""` (Docker Hub).
pub fn registry_server(image: &str) -> String {
    let segments: Vec<&str> = image.split('/').collect();
    match segments.as_slice() {
        [first, _, _, ..] => (*first).to_owned(),
        [first, _] if first.contains('.') || first.contains(':') => (*first).to_owned(),
        _ => String::new(),
    }
}

/// Splits on single spaces, trims each piece and drops empty pieces (job/service `command`,
/// `docker://` `args`).
pub fn split_container_args(s: Option<&str>) -> Vec<String> {
    s.unwrap_or_default()
        .split(' ')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(str::to_owned)
        .collect()
}

/// Splits on single spaces and trims each piece, keeping empty pieces (`run_script_step`).
pub fn split_script_args(s: &str) -> Vec<String> {
    s.split(' ').map(|p| p.trim().to_owned()).collect()
}

/// Parses a workflow `volumes:` entry: `source:target[:ro]`, `target:ro` or `target`.
pub fn parse_user_volume(value: &str) -> Mount {
    let parts: Vec<&str> = value.split(':').collect();
    let ro = |s: &str| s.eq_ignore_ascii_case("ro");
    let (source, target, read_only) = match parts.as_slice() {
        [source, target, mode] => (Some(*source), *target, ro(mode)),
        [target, mode] if ro(mode) => (None, *target, true),
        [source, target] => (Some(*source), *target, false),
        _ => (None, value, false),
    };
    Mount {
        user_provided_value: Some(value.to_owned()),
        source_volume_path: source.map(str::to_owned),
        target_volume_path: target.to_owned(),
        read_only,
    }
}

fn registry(spec: &ContainerSpec) -> Option<Registry> {
    let creds = spec.credentials.as_ref().filter(|c| !c.username.is_empty())?;
    Some(Registry {
        username: creds.username.clone(),
        password: creds.password.clone(),
        server_url: registry_server(&spec.image),
    })
}

/// The system mounts of the job container, in the runner's order (§1.4.2).
pub fn job_system_mounts(layout: &Layout) -> Vec<Mount> {
    vec![
        Mount::system(Path::new(DOCKER_SOCK), DOCKER_SOCK, false),
        Mount::system(&layout.work, CONTAINER_WORK, false),
        Mount::system(&layout.externals, CONTAINER_EXTERNALS, true),
        Mount::system(&layout.temp, &format!("{CONTAINER_WORK}/_temp"), false),
        Mount::system(&layout.actions, &format!("{CONTAINER_WORK}/_actions"), false),
        Mount::system(
            &layout.tool,
            &layout.to_job_container(&layout.tool.to_string_lossy()),
            false,
        ),
        Mount::system(&layout.github_home, CONTAINER_HOME, false),
        Mount::system(&layout.github_workflow, CONTAINER_WORKFLOW, false),
    ]
}

/// The system mounts of a container action, in the runner's order (§1.4.3).
pub fn action_system_mounts(layout: &Layout) -> Vec<Mount> {
    vec![
        Mount::system(Path::new(DOCKER_SOCK), DOCKER_SOCK, false),
        Mount::system(&layout.temp, ACTION_RUNNER_TEMP, false),
        Mount::system(&layout.github_home, CONTAINER_HOME, false),
        Mount::system(&layout.github_workflow, CONTAINER_WORKFLOW, false),
        Mount::system(&layout.file_commands, ACTION_FILE_COMMANDS, false),
        Mount::system(&layout.workspace, ACTION_WORKSPACE, false),
    ]
}

/// The job container as the runner sends it in `prepare_job`.
pub fn job_container(spec: &ContainerSpec, layout: &Layout) -> HookContainer {
    let mut env = spec.env.clone();
    env.entry("HOME".to_owned())
        .or_insert_with(|| CONTAINER_HOME.to_owned());
    HookContainer {
        working_directory: Some(layout.container_workspace()),
        environment_variables: env,
        system_mount_volumes: job_system_mounts(layout),
        ..service_container(spec)
    }
}

/// A service container as the runner sends it in `prepare_job`.
pub fn service_container(spec: &ContainerSpec) -> HookContainer {
    HookContainer {
        image: Some(spec.image.clone()),
        dockerfile: None,
        entry_point_args: split_container_args(spec.command.as_deref()),
        entry_point: spec.entrypoint.clone(),
        working_directory: None,
        create_options: spec.options.clone(),
        registry: registry(spec),
        environment_variables: spec.env.clone(),
        port_mappings: spec.ports.clone(),
        system_mount_volumes: Vec::new(),
        user_mount_volumes: spec.volumes.iter().map(|v| parse_user_volume(v)).collect(),
    }
}

/// A `uses: docker://image` step as the runner sends it in `run_container_step`; `env` is the full
/// step environment, already translated to the action's paths.
pub fn action_container(image: &str, step: &StepSpec, env: BTreeMap<String, String>, layout: &Layout) -> HookContainer {
    HookContainer {
        image: Some(image.to_owned()),
        dockerfile: None,
        entry_point_args: split_container_args(step.args.as_deref()),
        entry_point: step.entrypoint.clone(),
        working_directory: Some(ACTION_WORKSPACE.to_owned()),
        create_options: None,
        registry: None,
        environment_variables: env,
        port_mappings: Vec::new(),
        system_mount_volumes: action_system_mounts(layout),
        user_mount_volumes: Vec::new(),
    }
}

/// `context.container` of a prepare_job response, as the runner keeps it (`job.container`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ContainerContext {
    pub id: Option<String>,
    pub network: Option<String>,
}

/// One `context.services[i]` entry, keyed by the i-th service's alias (`job.services.<alias>`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ServiceContext {
    pub id: Option<String>,
    pub network: Option<String>,
    pub ports: BTreeMap<String, String>,
}

/// A hook response, read with case-insensitive property names.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct HookResponse {
    pub state: Option<Value>,
    pub is_alpine: Option<bool>,
    pub context: Option<ResponseContext>,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct ResponseContext {
    pub container: Option<ResponseContainer>,
    /// `None` when the key is present but `null`.
    pub services: Option<Vec<ResponseContainer>>,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct ResponseContainer {
    pub id: Option<String>,
    pub network: Option<String>,
    pub ports: Option<BTreeMap<String, String>>,
}

/// Everything that can go wrong with one hook call. The texts are the runner's where it has one.
#[derive(Debug, thiserror::Error)]
pub enum HookError {
    #[error("File not found at '{0}'. Set {HOOKS_ENV} to the path of an existing file.")]
    NotFound(String),
    #[error(
        "Invalid file extension at '{0}'. {HOOKS_ENV} must be a path to a file with one of the following extensions: .js, .sh, .ps1"
    )]
    BadExtension(String),
    #[error("An error occurred trying to start process '{program}' with working directory '{cwd}'. {source}")]
    Spawn {
        program: String,
        cwd: String,
        #[source]
        source: std::io::Error,
    },
    #[error("Cannot create the response file '{path}': {source}")]
    ResponseFile {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("The hook script at '{path}' running command '{command}' did not execute successfully")]
    Failed {
        path: String,
        command: HookCommand,
        code: i32,
    },
    #[error("The hook script at '{path}' running command '{command}' was canceled")]
    Canceled {
        path: String,
        command: HookCommand,
        code: i32,
    },
    #[error("Response file is required but not found for the hook script at '{path}' running command '{command}'")]
    ResponseMissing { path: String, command: HookCommand },
    #[error("Response file could not be read at '{path}' running command '{command}'")]
    ResponseEmpty { path: String, command: HookCommand },
    #[error("Response file for the hook script at '{path}' running command '{command}' is not valid: {detail}")]
    ResponseInvalid {
        path: String,
        command: HookCommand,
        detail: String,
    },
    #[error("The property 'isAlpine' is required but was not found in the response file.")]
    IsAlpineMissing,
    #[error(
        "Object reference not set to an instance of an object. (the prepare_job response has no {0}; the runner dereferences it)"
    )]
    PrepareResponseMissing(&'static str),
    #[error(
        "Index was out of range. (the prepare_job response has {got} entries in context.services but the job has {want} services)"
    )]
    TooManyServices { got: usize, want: usize },
}

impl HookError {
    /// The exit code to report for the step: the hook's own, or 1 when it did not get to run.
    pub fn exit_code(&self) -> i32 {
        match self {
            Self::Failed { code, .. } | Self::Canceled { code, .. } => *code,
            _ => 1,
        }
    }

    pub fn is_canceled(&self) -> bool {
        matches!(self, Self::Canceled { .. })
    }
}

/// Validates the hook path as the runner does on every call.
pub fn validate_hook_path(path: &str) -> Result<(), HookError> {
    if !Path::new(path).is_file() {
        return Err(HookError::NotFound(path.to_owned()));
    }
    if ![".js", ".sh", ".ps1"].iter().any(|ext| path.ends_with(ext)) {
        return Err(HookError::BadExtension(path.to_owned()));
    }
    Ok(())
}

/// The program and arguments that run the hook, and the runner's `shell:` display line.
fn hook_shell(path: &str, layout: &Layout) -> (String, Vec<String>, String) {
    let show = |p: &str| p.to_owned();
    if path.ends_with(".js") {
        let bundled = layout.externals.join("node20/bin/node");
        let node = if bundled.is_file() {
            bundled.to_string_lossy().into_owned()
        } else {
            process::which("node").map_or_else(|| "node".to_owned(), |p| p.to_string_lossy().into_owned())
        };
        let display = format!("{node} {{0}}");
        (show(&node), vec![path.to_owned()], display)
    } else if path.ends_with(".ps1") {
        let pwsh = process::which("pwsh")
            .or_else(|| process::which("powershell"))
            .map_or_else(|| "pwsh".to_owned(), |p| p.to_string_lossy().into_owned());
        let display = format!("{pwsh} -command \". '{{0}}'\"");
        (pwsh, vec!["-command".to_owned(), format!(". '{path}'")], display)
    } else {
        let shell = process::which("bash")
            .or_else(|| process::which("sh"))
            .map_or_else(|| "sh".to_owned(), |p| p.to_string_lossy().into_owned());
        let display = format!("{shell} -e {{0}}");
        (shell, vec!["-e".to_owned(), path.to_owned()], display)
    }
}

/// Calls the hook and carries the state between calls.
pub(crate) struct HookInvoker {
    pub path: Option<String>,
    layout: Layout,
    /// The `GITHUB_*` / `RUNNER_*` variables (host paths) added to the runner's environment.
    env: Vec<(String, String)>,
    /// The last `state` a hook returned.
    pub state: Option<Value>,
    escalation: Escalation,
}

impl HookInvoker {
    pub fn new(path: Option<String>, layout: Layout, env: &BTreeMap<String, String>, escalation: Escalation) -> Self {
        let env = env.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        Self {
            path: path.filter(|p| !p.is_empty()),
            layout,
            env,
            state: None,
            escalation,
        }
    }

    /// Runs one command. Output lines go to `log` under `step`.
    pub async fn invoke(
        &mut self,
        command: HookCommand,
        args: Value,
        step: i64,
        log: &LogSink,
        cancel: &CancellationToken,
    ) -> Result<Option<HookResponse>, HookError> {
        let path = self.path.clone().unwrap_or_default();
        validate_hook_path(&path)?;
        let requires_alpine = command == HookCommand::PrepareJob && args.get("container").is_some_and(|c| !c.is_null());

        let response_file = self
            .layout
            .hook_responses
            .join(format!("{}.json", uuid::Uuid::new_v4()));
        let response_str = response_file.to_string_lossy().into_owned();
        std::fs::create_dir_all(&self.layout.hook_responses)
            .and_then(|()| std::fs::write(&response_file, b""))
            .map_err(|source| HookError::ResponseFile {
                path: response_str.clone(),
                source,
            })?;

        let request = HookRequest {
            command,
            response_file: response_str.clone(),
            args,
            state: if command == HookCommand::PrepareJob {
                None
            } else {
                self.state.clone()
            },
        };
        let mut stdin = serde_json::to_vec(&request).map_err(|e| HookError::ResponseInvalid {
            path: path.clone(),
            command,
            detail: e.to_string(),
        })?;
        stdin.push(b'\n');

        let (program, argv, display) = hook_shell(&path, &self.layout);
        log.info(step, format!("##[group]Run '{path}'"));
        log.info(step, format!("shell: {display}"));
        log.info(step, "##[endgroup]");
        let spec = ProcSpec {
            program: program.clone(),
            args: argv,
            cwd: self.layout.workspace.clone(),
            env: self.env.clone(),
            stdin: Some(stdin),
        };
        let exit = process::run(&spec, log, step, cancel, self.escalation)
            .await
            .map_err(|source| HookError::Spawn {
                program,
                cwd: self.layout.workspace.to_string_lossy().into_owned(),
                source,
            })?;
        if exit.canceled {
            log.error(step, format!("The operation was canceled (exit code {}).", exit.code));
            let _ = std::fs::remove_file(&response_file);
            return Err(HookError::Canceled {
                path,
                command,
                code: exit.code,
            });
        }
        if exit.code != 0 {
            log.error(step, format!("Process completed with exit code {}.", exit.code));
            let _ = std::fs::remove_file(&response_file);
            return Err(HookError::Failed {
                path,
                command,
                code: exit.code,
            });
        }

        let value = match std::fs::read(&response_file) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                if requires_alpine {
                    return Err(HookError::ResponseMissing { path, command });
                }
                return Ok(None);
            }
            Err(e) => {
                return Err(HookError::ResponseInvalid {
                    path,
                    command,
                    detail: e.to_string(),
                });
            }
            Ok(bytes) => {
                let text = String::from_utf8_lossy(&bytes);
                let text = text.trim_start_matches('\u{feff}');
                let value = if text.trim().is_empty() {
                    Value::Null
                } else {
                    serde_json::from_str(text).map_err(|e| HookError::ResponseInvalid {
                        path: path.clone(),
                        command,
                        detail: e.to_string(),
                    })?
                };
                let _ = std::fs::remove_file(&response_file);
                value
            }
        };
        if value.is_null() {
            if requires_alpine {
                return Err(HookError::ResponseEmpty { path, command });
            }
            return Ok(None);
        }
        let response = parse_response(&value).map_err(|detail| HookError::ResponseInvalid {
            path: path.clone(),
            command,
            detail,
        })?;
        if requires_alpine && response.is_alpine.is_none() {
            return Err(HookError::IsAlpineMissing);
        }
        if let Some(state) = &response.state {
            self.state = Some(state.clone());
        }
        Ok(Some(response))
    }
}

/// Finds a property by case-insensitive name (an exact match wins).
fn ci<'a>(obj: &'a Map<String, Value>, name: &str) -> Option<&'a Value> {
    obj.get(name)
        .or_else(|| obj.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v))
}

fn opt_string(v: Option<&Value>, what: &str) -> Result<Option<String>, String> {
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(Value::Number(n)) => Ok(Some(n.to_string())),
        Some(Value::Bool(b)) => Ok(Some(b.to_string())),
        Some(other) => Err(format!("'{what}' must be a string, got {other}")),
    }
}

/// Reads a response object the way the runner's deserializer does: case-insensitive names, unknown
/// properties ignored, lenient scalars.
pub fn parse_response(value: &Value) -> Result<HookResponse, String> {
    let obj = value
        .as_object()
        .ok_or_else(|| format!("expected a JSON object, got {value}"))?;
    let state = match ci(obj, "state") {
        None | Some(Value::Null) => None,
        Some(s @ Value::Object(_)) => Some(s.clone()),
        Some(other) => return Err(format!("'state' must be an object, got {other}")),
    };
    let is_alpine = match ci(obj, "isAlpine") {
        None | Some(Value::Null) => None,
        Some(Value::Bool(b)) => Some(*b),
        Some(Value::String(s)) if s.eq_ignore_ascii_case("true") => Some(true),
        Some(Value::String(s)) if s.eq_ignore_ascii_case("false") => Some(false),
        Some(other) => return Err(format!("'isAlpine' must be a boolean, got {other}")),
    };
    let context = match ci(obj, "context") {
        None | Some(Value::Null) => None,
        Some(Value::Object(ctx)) => {
            let container = match ci(ctx, "container") {
                None | Some(Value::Null) => None,
                Some(c) => Some(parse_container(c, "context.container")?),
            };
            let services = match ci(ctx, "services") {
                None => Some(Vec::new()),
                Some(Value::Null) => None,
                Some(Value::Array(items)) => Some(
                    items
                        .iter()
                        .enumerate()
                        .map(|(i, s)| parse_container(s, &format!("context.services[{i}]")))
                        .collect::<Result<_, _>>()?,
                ),
                Some(other) => return Err(format!("'context.services' must be an array, got {other}")),
            };
            Some(ResponseContext { container, services })
        }
        Some(other) => return Err(format!("'context' must be an object, got {other}")),
    };
    Ok(HookResponse {
        state,
        is_alpine,
        context,
    })
}

fn parse_container(v: &Value, what: &str) -> Result<ResponseContainer, String> {
    let obj = v
        .as_object()
        .ok_or_else(|| format!("'{what}' must be an object, got {v}"))?;
    let ports = match ci(obj, "ports") {
        None | Some(Value::Null) => None,
        Some(Value::Object(map)) => Some(
            map.iter()
                .map(|(k, v)| {
                    Ok((
                        k.clone(),
                        opt_string(Some(v), &format!("{what}.ports"))?.unwrap_or_default(),
                    ))
                })
                .collect::<Result<_, String>>()?,
        ),
        Some(other) => return Err(format!("'{what}.ports' must be an object, got {other}")),
    };
    Ok(ResponseContainer {
        id: opt_string(ci(obj, "id"), &format!("{what}.id"))?,
        network: opt_string(ci(obj, "network"), &format!("{what}.network"))?,
        ports,
    })
}

/// Applies a prepare_job response to the job context as the runner does: the job container's id and
/// network, and `context.services[i]` to the i-th service alias. The runner fails (with a
/// NullReferenceException or an index error) where this returns an error.
pub fn job_context(
    response: Option<&HookResponse>,
    has_job_container: bool,
    service_aliases: &[String],
) -> Result<(Option<ContainerContext>, BTreeMap<String, ServiceContext>), HookError> {
    let response = response.ok_or(HookError::PrepareResponseMissing("response object"))?;
    let mut services = BTreeMap::new();
    let Some(ctx) = &response.context else {
        return Ok((None, services));
    };
    let container = match &ctx.container {
        Some(c) if c.id.is_some() || c.network.is_some() => {
            if !has_job_container {
                return Err(HookError::PrepareResponseMissing("job container for context.container"));
            }
            Some(ContainerContext {
                id: c.id.clone(),
                network: c.network.clone(),
            })
        }
        _ => None,
    };
    let entries = ctx
        .services
        .as_ref()
        .ok_or(HookError::PrepareResponseMissing("context.services (null)"))?;
    if entries.len() > service_aliases.len() {
        return Err(HookError::TooManyServices {
            got: entries.len(),
            want: service_aliases.len(),
        });
    }
    for (entry, alias) in entries.iter().zip(service_aliases) {
        let ports = entry
            .ports
            .clone()
            .ok_or(HookError::PrepareResponseMissing("ports in a context.services entry"))?;
        services.insert(
            alias.clone(),
            ServiceContext {
                id: entry.id.clone(),
                network: entry.network.clone(),
                ports,
            },
        );
    }
    Ok((container, services))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::job::Credentials;
    use serde_json::json;

    fn layout() -> Layout {
        Layout::new(Path::new("/home/runner"), "", "octo/hello")
    }

    #[test]
    fn registry_server_rule() {
        for (image, want) in [
            ("node:22", ""),
            ("library/node:22", ""),
            ("ghcr.io/octo/img:1", "ghcr.io"),
            ("ghcr.io/img", "ghcr.io"),
            ("localhost:5000/img", "localhost:5000"),
            ("octo/img", ""),
            ("a/b/c", "a"),
        ] {
            assert_eq!(registry_server(image), want, "{image}");
        }
    }

    #[test]
    fn user_volumes() {
        let m = parse_user_volume("/src:/dst:ro");
        assert_eq!(
            (
                m.source_volume_path.as_deref(),
                m.target_volume_path.as_str(),
                m.read_only
            ),
            (Some("/src"), "/dst", true)
        );
        let m = parse_user_volume("/dst:ro");
        assert_eq!(
            (
                m.source_volume_path.as_deref(),
                m.target_volume_path.as_str(),
                m.read_only
            ),
            (None, "/dst", true)
        );
        let m = parse_user_volume("my_docker_volume:/volume_mount");
        assert_eq!(
            (
                m.source_volume_path.as_deref(),
                m.target_volume_path.as_str(),
                m.read_only
            ),
            (Some("my_docker_volume"), "/volume_mount", false)
        );
        let m = parse_user_volume("/anon");
        assert_eq!(
            (m.source_volume_path.as_deref(), m.target_volume_path.as_str()),
            (None, "/anon")
        );
        assert_eq!(m.user_provided_value.as_deref(), Some("/anon"));
    }

    #[test]
    fn arg_splitting() {
        assert_eq!(
            split_container_args(Some("  redis-server  --port 6379 ")),
            ["redis-server", "--port", "6379"]
        );
        assert!(split_container_args(None).is_empty());
        assert_eq!(split_script_args("-e  /x.sh"), ["-e", "", "/x.sh"]);
    }

    #[test]
    fn job_container_has_every_field_and_the_runner_mounts() {
        let spec = ContainerSpec {
            image: "ghcr.io/octo/build:1".into(),
            options: Some("--cpus 1".into()),
            command: Some("sleep  infinity".into()),
            env: BTreeMap::from([("NODE_ENV".into(), "development".into())]),
            ports: vec!["80:8080".into()],
            volumes: vec!["my_docker_volume:/volume_mount".into()],
            credentials: Some(Credentials {
                username: "u".into(),
                password: "p".into(),
            }),
            ..Default::default()
        };
        let c = serde_json::to_value(job_container(&spec, &layout())).unwrap();
        assert_eq!(c["dockerfile"], Value::Null);
        assert_eq!(c["entryPoint"], Value::Null);
        assert_eq!(c["entryPointArgs"], json!(["sleep", "infinity"]));
        assert_eq!(c["workingDirectory"], "/__w/hello/hello");
        assert_eq!(c["createOptions"], "--cpus 1");
        assert_eq!(
            c["registry"],
            json!({"username": "u", "password": "p", "serverUrl": "ghcr.io"})
        );
        assert_eq!(
            c["environmentVariables"],
            json!({"HOME": "/github/home", "NODE_ENV": "development"})
        );
        assert_eq!(c["portMappings"], json!(["80:8080"]));
        let mounts: Vec<(String, String, bool)> = c["systemMountVolumes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| {
                assert_eq!(m["userProvidedValue"], Value::Null);
                (
                    m["sourceVolumePath"].as_str().unwrap().to_owned(),
                    m["targetVolumePath"].as_str().unwrap().to_owned(),
                    m["readOnly"].as_bool().unwrap(),
                )
            })
            .collect();
        let want = [
            ("/var/run/docker.sock", "/var/run/docker.sock", false),
            ("/home/runner/_work", "/__w", false),
            ("/home/runner/externals", "/__e", true),
            ("/home/runner/_work/_temp", "/__w/_temp", false),
            ("/home/runner/_work/_actions", "/__w/_actions", false),
            ("/home/runner/_work/_tool", "/__w/_tool", false),
            ("/home/runner/_work/_temp/_github_home", "/github/home", false),
            ("/home/runner/_work/_temp/_github_workflow", "/github/workflow", false),
        ]
        .map(|(a, b, c)| (a.to_owned(), b.to_owned(), c));
        assert_eq!(mounts, want);
        assert_eq!(
            c["userMountVolumes"],
            json!([{"userProvidedValue": "my_docker_volume:/volume_mount", "sourceVolumePath": "my_docker_volume", "targetVolumePath": "/volume_mount", "readOnly": false}])
        );

        let s = serde_json::to_value(service_container(&ContainerSpec {
            image: "redis".into(),
            ..Default::default()
        }))
        .unwrap();
        assert_eq!(s["workingDirectory"], Value::Null);
        assert_eq!(s["registry"], Value::Null);
        assert_eq!(s["systemMountVolumes"], json!([]));
        assert_eq!(s["environmentVariables"], json!({}));
    }

    #[test]
    fn action_container_mounts() {
        let step = StepSpec {
            args: Some("-c echo".into()),
            entrypoint: Some("sh".into()),
            ..Default::default()
        };
        let c = action_container("alpine:3", &step, BTreeMap::new(), &layout());
        let targets: Vec<&str> = c
            .system_mount_volumes
            .iter()
            .map(|m| m.target_volume_path.as_str())
            .collect();
        assert_eq!(
            targets,
            [
                "/var/run/docker.sock",
                "/github/runner_temp",
                "/github/home",
                "/github/workflow",
                "/github/file_commands",
                "/github/workspace"
            ]
        );
        assert_eq!(c.entry_point_args, ["-c", "echo"]);
        assert_eq!(c.working_directory.as_deref(), Some("/github/workspace"));
        assert!(c.create_options.is_none() && c.port_mappings.is_empty());
    }

    #[test]
    fn responses_are_read_case_insensitively() {
        let r = parse_response(&json!({
            "State": {"jobPod": "p"},
            "ISALPINE": true,
            "Context": {"Container": {"ID": "c1"}, "services": [{"id": "s1", "Ports": {"6379": 30001}}]},
            "extra": 1
        }))
        .unwrap();
        assert_eq!(r.state, Some(json!({"jobPod": "p"})));
        assert_eq!(r.is_alpine, Some(true));
        let ctx = r.context.clone().unwrap();
        assert_eq!(ctx.container.unwrap().id.as_deref(), Some("c1"));
        let aliases = ["redis".to_owned(), "pg".to_owned()];
        let (container, services) = job_context(Some(&r), true, &aliases).unwrap();
        assert_eq!(container.unwrap().id.as_deref(), Some("c1"));
        assert_eq!(services["redis"].ports["6379"], "30001");
        assert!(!services.contains_key("pg"));
        assert!(parse_response(&json!({"state": "x"})).is_err());
        assert!(parse_response(&json!([1])).is_err());
    }

    #[test]
    fn job_context_constraints() {
        let aliases = ["redis".to_owned()];
        let too_many =
            parse_response(&json!({"isAlpine": false, "context": {"services": [{"ports": {}}, {"ports": {}}]}}))
                .unwrap();
        assert!(matches!(
            job_context(Some(&too_many), true, &aliases),
            Err(HookError::TooManyServices { got: 2, want: 1 })
        ));
        let no_ports = parse_response(&json!({"isAlpine": false, "context": {"services": [{"id": "x"}]}})).unwrap();
        assert!(job_context(Some(&no_ports), true, &aliases).is_err());
        let null_services = parse_response(&json!({"isAlpine": false, "context": {"services": null}})).unwrap();
        assert!(job_context(Some(&null_services), true, &aliases).is_err());
        let no_context = parse_response(&json!({"isAlpine": false})).unwrap();
        assert!(job_context(Some(&no_context), true, &aliases).unwrap().1.is_empty());
        assert!(job_context(None, false, &aliases).is_err());
    }

    #[test]
    fn request_envelope_is_one_line_with_nulls() {
        let req = HookRequest {
            command: HookCommand::PrepareJob,
            response_file: "/t/r.json".into(),
            args: serde_json::to_value(PrepareJobArgs::default()).unwrap(),
            state: None,
        };
        assert_eq!(
            serde_json::to_string(&req).unwrap(),
            r#"{"command":"prepare_job","responseFile":"/t/r.json","args":{"container":null,"services":[]},"state":null}"#
        );
    }

    #[test]
    fn hook_path_checks_use_the_runner_texts() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("nope.sh").to_string_lossy().into_owned();
        assert_eq!(
            validate_hook_path(&missing).unwrap_err().to_string(),
            format!(
                "File not found at '{missing}'. Set ACTIONS_RUNNER_CONTAINER_HOOKS to the path of an existing file."
            )
        );
        let bad = dir.path().join("hook.py");
        std::fs::write(&bad, "").unwrap();
        let err = validate_hook_path(&bad.to_string_lossy()).unwrap_err().to_string();
        assert!(err.starts_with("Invalid file extension at '"), "{err}");
        assert!(
            err.ends_with("one of the following extensions: .js, .sh, .ps1"),
            "{err}"
        );
    }
}
