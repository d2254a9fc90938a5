//! The controller's one error type.

/// What can go wrong while reconciling.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("kubernetes API: {context}: {source}")]
    Kube {
        context: String,
        #[source]
        source: kube::Error,
    },
    #[error("GitHub/Actions: {context}: {source}")]
    Actions {
        context: String,
        #[source]
        source: rarc_actions::Error,
    },
    /// A GitHub call did not finish within the controller's deadline.
    #[error("GitHub/Actions: {context}: no answer within {seconds} s")]
    Timeout { context: String, seconds: u64 },
    /// The credentials Secret named by `githubConfigSecret` does not exist.
    #[error("githubConfigSecret: Secret {namespace}/{name} not found")]
    MissingSecret { namespace: String, name: String },
    /// The credentials Secret exists but does not hold usable credentials.
    #[error("githubConfigSecret: Secret {namespace}/{name}: {reason}")]
    InvalidSecret {
        namespace: String,
        name: String,
        reason: String,
    },
    /// A field of a resource is missing or invalid.
    #[error("{kind} {namespace}/{name}: {field}: {reason}")]
    InvalidSpec {
        kind: &'static str,
        namespace: String,
        name: String,
        field: String,
        reason: String,
    },
    /// Anything else that stops a reconcile, with a message that says why.
    #[error("{0}")]
    Other(String),
}

impl Error {
    /// Wraps a Kubernetes API error with what was being done.
    pub fn kube(context: impl Into<String>) -> impl FnOnce(kube::Error) -> Self {
        let context = context.into();
        move |source| Self::Kube { context, source }
    }

    /// Wraps an Actions service error with what was being done.
    pub fn actions(context: impl Into<String>) -> impl FnOnce(rarc_actions::Error) -> Self {
        let context = context.into();
        move |source| Self::Actions { context, source }
    }

    /// The Actions error inside, if this is one.
    pub fn as_actions(&self) -> Option<&rarc_actions::Error> {
        match self {
            Self::Actions { source, .. } => Some(source),
            _ => None,
        }
    }

    /// A short machine-readable reason for conditions and events.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Kube { .. } => "KubernetesAPIError",
            Self::Actions { .. } => "GitHubAPIError",
            Self::Timeout { .. } => "GitHubAPITimeout",
            Self::MissingSecret { .. } => "CredentialsSecretNotFound",
            Self::InvalidSecret { .. } => "InvalidCredentials",
            Self::InvalidSpec { .. } => "InvalidSpec",
            Self::Other(_) => "ReconcileError",
        }
    }
}

/// The controller's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// `Ok(None)` for a 404 from the API server.
pub fn not_found_as_none<T>(r: Result<T, kube::Error>) -> Result<Option<T>, kube::Error> {
    match r {
        Ok(v) => Ok(Some(v)),
        Err(kube::Error::Api(e)) if e.code == 404 => Ok(None),
        Err(e) => Err(e),
    }
}

/// True for a 404 from the API server.
pub fn is_not_found(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 404)
}

/// True for a 409 AlreadyExists from the API server.
pub fn is_already_exists(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 409 && s.reason == "AlreadyExists")
}
