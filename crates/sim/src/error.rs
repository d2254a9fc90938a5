//! Error answers in the shapes the real services use (spec §5.3).

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use rarc_actions::types::ExceptionBody;

/// An error answer of the simulator.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApiError {
    /// An Actions-service .NET exception: `{"typeName":…,"message":…}`.
    #[error("{status} {type_name}: {message}")]
    Exception {
        status: StatusCode,
        type_name: String,
        message: String,
    },
    /// A GitHub REST API error: `{"message":…,"documentation_url":…}`.
    #[error("{status}: {message}")]
    GitHub { status: StatusCode, message: String },
    /// A control-API error: `{"error":…}` naming the field at fault.
    #[error("{status}: {message}")]
    Control { status: StatusCode, message: String },
}

impl ApiError {
    pub fn exception(status: StatusCode, type_name: &str, message: impl Into<String>) -> Self {
        Self::Exception {
            status,
            type_name: type_name.to_owned(),
            message: message.into(),
        }
    }

    pub fn github(status: StatusCode, message: impl Into<String>) -> Self {
        Self::GitHub {
            status,
            message: message.into(),
        }
    }

    pub fn control(message: impl Into<String>) -> Self {
        Self::Control {
            status: StatusCode::BAD_REQUEST,
            message: message.into(),
        }
    }

    pub fn control_not_found(message: impl Into<String>) -> Self {
        Self::Control {
            status: StatusCode::NOT_FOUND,
            message: message.into(),
        }
    }

    /// 401 of the Actions service for a missing, unknown or expired token.
    pub fn unauthorized() -> Self {
        Self::exception(
            StatusCode::UNAUTHORIZED,
            "GitHub.Services.Common.VssUnauthorizedException",
            "TF400813: The user is not authorized to access this resource.",
        )
    }

    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::Exception { status, .. } | ApiError::GitHub { status, .. } | ApiError::Control { status, .. } => {
                *status
            }
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        match self {
            ApiError::Exception {
                status,
                type_name,
                message,
            } => {
                let mut resp = (status, Json(ExceptionBody::new(&type_name, message))).into_response();
                resp.headers_mut().insert(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("application/json; charset=utf-8"),
                );
                resp
            }
            ApiError::GitHub { status, message } => (
                status,
                Json(serde_json::json!({
                    "message": message,
                    "documentation_url": "https://docs.github.com/rest",
                    "status": status.as_u16().to_string(),
                })),
            )
                .into_response(),
            ApiError::Control { status, message } => {
                (status, Json(serde_json::json!({ "error": message }))).into_response()
            }
        }
    }
}

/// Exception type names used by the service.
pub mod exc {
    pub const SESSION_CONFLICT: &str = "GitHub.Actions.Runtime.WebApi.RunnerScaleSetSessionConflictException";
    pub const SESSION_EXPIRED: &str = "GitHub.Actions.Runtime.WebApi.RunnerScaleSetSessionExpiredException";
    pub const SCALE_SET_NOT_FOUND: &str = "GitHub.Actions.Runtime.WebApi.RunnerScaleSetNotFoundException";
    pub const SCALE_SET_EXISTS: &str = "GitHub.Actions.Runtime.WebApi.RunnerScaleSetExistsException";
    pub const SCALE_SET_IN_USE: &str = "GitHub.Actions.Runtime.WebApi.RunnerScaleSetInUseException";
    pub const RUNNER_ADMIN: &str = "GitHub.Actions.Runtime.WebApi.RunnerAdminException";
    pub const AGENT_EXISTS: &str = "GitHub.DistributedTask.WebApi.AgentExistsException";
    pub const AGENT_NOT_FOUND: &str = "GitHub.DistributedTask.WebApi.AgentNotFoundException";
    pub const JOB_STILL_RUNNING: &str = "GitHub.DistributedTask.WebApi.JobStillRunningException";
    pub const MESSAGE_NOT_FOUND: &str = "GitHub.Actions.Runtime.WebApi.RunnerScaleSetMessageNotFoundException";
    pub const RUNNER_GROUP_NOT_FOUND: &str = "GitHub.DistributedTask.WebApi.RunnerGroupNotFoundException";
    pub const ARGUMENT: &str = "System.ArgumentException";
    pub const VERSION_NOT_SPECIFIED: &str = "GitHub.Services.WebApi.VssVersionNotSpecifiedException";
    pub const VERSION_OUT_OF_RANGE: &str = "GitHub.Services.WebApi.VssVersionOutOfRangeException";
}
