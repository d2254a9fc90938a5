//! Running a command in a container and collecting its output and exit code.

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Status;
use kube::{Api, api::AttachParams};
use tokio::io::{AsyncRead, AsyncReadExt as _};

use crate::Error;

/// What a command run with [`exec`] printed, and how it ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecOutput {
    /// Everything written to stdout (invalid UTF-8 replaced).
    pub stdout: String,
    /// Everything written to stderr (invalid UTF-8 replaced).
    pub stderr: String,
    /// The command's exit code: 0 on success.
    pub exit_code: i32,
}

/// Runs `command` (no shell: pass `["/bin/sh", "-c", "..."]` for one) in `container` of `pod`
/// (`None` for a pod's only container), without stdin or tty, and returns its output and exit code.
///
/// The exit code comes from the final Status the API server sends on the exec stream: `Success`
/// is 0; a non-zero code arrives as a `Failure` with reason `NonZeroExitCode` and a cause with
/// reason `ExitCode`. Any other failure (no such executable, container not running) is an
/// [`Error::ExecStatus`].
pub async fn exec<I, S>(api: &Api<Pod>, pod: &str, container: Option<&str>, command: I) -> Result<ExecOutput, Error>
where
    I: IntoIterator<Item = S>,
    S: Into<String>,
{
    let command: Vec<String> = command.into_iter().map(Into::into).collect();
    let mut params = AttachParams::default()
        .stdin(false)
        .stdout(true)
        .stderr(true)
        .tty(false);
    if let Some(container) = container {
        params = params.container(container);
    }
    tracing::debug!(pod, ?container, ?command, "exec");
    let mut process = api.exec(pod, command, &params).await.map_err(|source| Error::Exec {
        pod: pod.to_owned(),
        source,
    })?;
    let status = process.take_status();
    let (stdout, stderr) = tokio::join!(read_all(process.stdout()), read_all(process.stderr()));
    let read_error = |source| Error::ExecOutput {
        pod: pod.to_owned(),
        source,
    };
    let (stdout, stderr) = (stdout.map_err(read_error)?, stderr.map_err(read_error)?);
    let status = match status {
        Some(status) => status.await,
        None => None,
    };
    process.join().await.map_err(|source| Error::ExecStream {
        pod: pod.to_owned(),
        source: Box::new(source),
    })?;
    let exit_code = exit_code(status.as_ref()).map_err(|message| Error::ExecStatus {
        pod: pod.to_owned(),
        message,
    })?;
    Ok(ExecOutput {
        stdout: String::from_utf8_lossy(&stdout).into_owned(),
        stderr: String::from_utf8_lossy(&stderr).into_owned(),
        exit_code,
    })
}

/// Reads a stream of the exec to its end (nothing when it was not requested).
async fn read_all(reader: Option<impl AsyncRead + Unpin>) -> std::io::Result<Vec<u8>> {
    let mut buf = Vec::new();
    if let Some(mut reader) = reader {
        reader.read_to_end(&mut buf).await?;
    }
    Ok(buf)
}

/// The exit code an exec stream's final Status reports, or why there is none.
fn exit_code(status: Option<&Status>) -> Result<i32, String> {
    let status = status.ok_or_else(|| "the stream ended without a status".to_owned())?;
    let reason = status.reason.as_deref().unwrap_or_default();
    let message = status.message.as_deref().unwrap_or_default();
    match status.status.as_deref() {
        Some("Success") => return Ok(0),
        Some("Failure") if reason == "NonZeroExitCode" => {}
        _ => return Err(format!("{message} (reason {reason:?})")),
    }
    status
        .details
        .iter()
        .flat_map(|details| details.causes.iter().flatten())
        .find(|cause| cause.reason.as_deref() == Some("ExitCode"))
        .and_then(|cause| cause.message.as_deref()?.trim().parse().ok())
        .ok_or_else(|| format!("{message} (no ExitCode cause)"))
}

#[cfg(test)]
mod tests {
    use super::exit_code;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Status;

    fn status(json: serde_json::Value) -> Status {
        serde_json::from_value(json).unwrap()
    }

    #[test]
    fn success_is_zero() {
        assert_eq!(
            exit_code(Some(&status(serde_json::json!({"metadata": {}, "status": "Success"})))),
            Ok(0)
        );
    }

    #[test]
    fn non_zero_exit_code_comes_from_the_exit_code_cause() {
        let failure = status(serde_json::json!({
            "metadata": {},
            "status": "Failure",
            "message": "command terminated with non-zero exit code: error executing command [sh -c exit 3], exit code 3",
            "reason": "NonZeroExitCode",
            "details": {"causes": [{"reason": "ExitCode", "message": "3"}]}
        }));
        assert_eq!(exit_code(Some(&failure)), Ok(3));
    }

    #[test]
    fn other_failures_and_missing_status_are_errors() {
        let failure = status(serde_json::json!({
            "status": "Failure",
            "message": "exec: \"nope\": executable file not found in $PATH",
            "reason": "InternalError",
            "code": 500
        }));
        assert!(
            exit_code(Some(&failure))
                .unwrap_err()
                .contains("executable file not found")
        );
        assert!(exit_code(None).is_err());
    }
}
