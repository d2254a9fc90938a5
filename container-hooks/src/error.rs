//! The library's one error type. Every variant becomes one `::error::` line on stdout (the runner
//! turns it into an annotation) and the exit code from [`HookError::exit_code`].

use crate::exit::signal_exit_code;
use crate::mode::Mode;
use crate::protocol::Command;
use std::path::PathBuf;
use std::time::Duration;

/// Everything that makes a hook invocation fail before or around the step itself.
#[derive(Debug, thiserror::Error)]
pub enum HookError {
    #[error("no request on stdin: the runner writes the request as one line of JSON and closes stdin")]
    NoInput,
    #[error("stdin is a terminal: pipe the request JSON into the hook (see --help)")]
    StdinIsTerminal,
    #[error("no complete request on stdin within {}s (stdin was never closed)", .0.as_secs())]
    StdinTimeout(Duration),
    #[error("cannot read the request from stdin: {0}")]
    StdinRead(#[source] std::io::Error),
    #[error("the request on stdin is truncated: {0}")]
    TruncatedJson(String),
    #[error("the request on stdin is not valid JSON: {0}")]
    InvalidJson(String),
    #[error("Command not recognized: {0}")]
    UnknownCommand(String),
    #[error("invalid request: {field}: {detail}")]
    InvalidRequest { field: String, detail: String },
    /// Required environment variables that are not set (or empty); the texts are per variable.
    #[error("{}", .0.join("; "))]
    MissingEnv(Vec<String>),
    #[error("Missing file at path: {}", .0.display())]
    ResponseFileMissing(PathBuf),
    #[error("cannot write the response file '{}': {source}", path.display())]
    ResponseWrite {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A response the runner would reject (a bug in a mode, caught before the runner sees it).
    #[error("invalid prepare_job response: {0}")]
    InvalidResponse(String),
    #[error("the {mode} mode does not implement {command} yet (rarc-hooks {version}); use the reference hooks for this mode until it lands", version = env!("CARGO_PKG_VERSION"))]
    NotImplemented { mode: Mode, command: Command },
    #[error("cannot start '{program}': {source}")]
    Spawn {
        program: String,
        #[source]
        source: std::io::Error,
    },
    #[error("waiting for '{program}' failed: {source}")]
    Wait {
        program: String,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot install the signal handlers: {0}")]
    Signals(#[source] std::io::Error),
    #[error("cancelled by {name} (the job was cancelled)", name = crate::exit::signal_name(*.0))]
    Cancelled(i32),
    /// docker mode: the daemon cannot be reached (`DOCKER_HOST`, TLS settings).
    #[error("cannot connect to the Docker daemon at {host}: {detail}")]
    DockerConnect { host: String, detail: String },
    /// docker mode: an Engine API call failed; `action` says what the hook was doing.
    #[error("{action}: {source}")]
    Docker {
        action: String,
        #[source]
        source: bollard::errors::Error,
    },
    #[error("invalid createOptions: {0}")]
    CreateOptions(String),
    #[error("Exiting docker pull after {attempts} failed attempts: cannot pull '{image}': {detail}")]
    PullFailed {
        image: String,
        attempts: u32,
        detail: String,
    },
    #[error("registry login failed for '{image}' on '{server}' (check the registry credentials): {detail}")]
    RegistryAuth {
        image: String,
        server: String,
        detail: String,
    },
    #[error("building the container action from '{dockerfile}' failed: {detail}")]
    Build { dockerfile: String, detail: String },
    /// A service (or the job container) did not become healthy.
    #[error("Failed to initialize containers, Container '{name}' is unhealthy with status '{status}'{detail}")]
    Unhealthy {
        name: String,
        status: String,
        detail: String,
    },
    /// The request's `state` lacks what an earlier `prepare_job` should have put there.
    #[error("the request's state has no {0}: prepare_job must have created the job container first")]
    MissingState(&'static str),
}

impl HookError {
    /// The process exit code for this error: `128 + signal` when cancelled, 1 otherwise.
    pub fn exit_code(&self) -> u8 {
        match self {
            Self::Cancelled(signal) => signal_exit_code(*signal),
            _ => 1,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_codes() {
        assert_eq!(HookError::NoInput.exit_code(), 1);
        assert_eq!(HookError::UnknownCommand("x".into()).exit_code(), 1);
        assert_eq!(HookError::Cancelled(2).exit_code(), 130);
        assert_eq!(HookError::Cancelled(15).exit_code(), 143);
    }

    #[test]
    fn messages_name_what_is_wrong() {
        assert_eq!(
            HookError::UnknownCommand("run_it".into()).to_string(),
            "Command not recognized: run_it"
        );
        assert_eq!(
            HookError::MissingEnv(vec!["A is not set".into(), "B is not set".into()]).to_string(),
            "A is not set; B is not set"
        );
        assert_eq!(
            HookError::Cancelled(2).to_string(),
            "cancelled by SIGINT (the job was cancelled)"
        );
        let e = HookError::NotImplemented {
            mode: Mode::K8sNoVolume,
            command: Command::PrepareJob,
        }
        .to_string();
        assert!(
            e.starts_with("the k8s-novolume mode does not implement prepare_job yet"),
            "{e}"
        );
    }
}
