//! The runner's environment as the hook sees it (`container-hooks.md` §1.1): host paths such as
//! `GITHUB_WORKSPACE` and `RUNNER_TEMP`, `RUNNER_NAME`, and what the runner pod sets
//! (`ACTIONS_RUNNER_POD_NAME`, …). Each mode names the variables it cannot work without; they are
//! checked before the command runs, and all missing ones are reported in one error line.

use crate::error::HookError;
use std::collections::BTreeMap;

/// A variable a mode requires, with the message shown when it is missing or empty.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Required {
    pub name: &'static str,
    pub message: &'static str,
}

/// `GITHUB_WORKSPACE` (the docker hook's text).
pub const GITHUB_WORKSPACE: Required = Required {
    name: "GITHUB_WORKSPACE",
    message: "GITHUB_WORKSPACE is not set",
};
/// `RUNNER_NAME` (the docker hook's text).
pub const RUNNER_NAME: Required = Required {
    name: "RUNNER_NAME",
    message: "'RUNNER_NAME' env is required, please contact your self hosted runner administrator",
};
/// `ACTIONS_RUNNER_POD_NAME` (the k8s hooks' text).
pub const ACTIONS_RUNNER_POD_NAME: Required = Required {
    name: "ACTIONS_RUNNER_POD_NAME",
    message: "'ACTIONS_RUNNER_POD_NAME' env is required, please contact your self hosted runner administrator",
};

/// A snapshot of the hook's environment. Only names are ever logged.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct RunnerEnv(BTreeMap<String, String>);

impl RunnerEnv {
    /// The process environment (names and values that are not UTF-8 are skipped).
    pub fn from_process() -> Self {
        Self::from_vars(std::env::vars_os().filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?))))
    }

    pub fn from_vars<I, K, V>(vars: I) -> Self
    where
        I: IntoIterator<Item = (K, V)>,
        K: Into<String>,
        V: Into<String>,
    {
        Self(vars.into_iter().map(|(k, v)| (k.into(), v.into())).collect())
    }

    /// The value of `name`, if set and not empty.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0.get(name).map(String::as_str).filter(|v| !v.is_empty())
    }

    /// Fails with every missing variable's message, in the order given.
    pub fn require(&self, required: &[Required]) -> Result<(), HookError> {
        let missing: Vec<String> = required
            .iter()
            .filter(|r| self.get(r.name).is_none())
            .map(|r| r.message.to_owned())
            .collect();
        if missing.is_empty() {
            Ok(())
        } else {
            Err(HookError::MissingEnv(missing))
        }
    }
}

impl std::fmt::Debug for RunnerEnv {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_set().entries(self.0.keys()).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn required_variables() {
        let env = RunnerEnv::from_vars([("GITHUB_WORKSPACE", "/w"), ("RUNNER_NAME", "")]);
        assert_eq!(env.get("GITHUB_WORKSPACE"), Some("/w"));
        assert_eq!(env.get("RUNNER_NAME"), None);
        env.require(&[GITHUB_WORKSPACE]).unwrap_or_else(|e| panic!("{e}"));
        let err = env
            .require(&[GITHUB_WORKSPACE, RUNNER_NAME])
            .err()
            .map(|e| e.to_string());
        assert_eq!(err.as_deref(), Some(RUNNER_NAME.message));
        let err = RunnerEnv::default()
            .require(&[GITHUB_WORKSPACE, RUNNER_NAME])
            .err()
            .map(|e| e.to_string());
        assert_eq!(
            err.as_deref(),
            Some(
                "GITHUB_WORKSPACE is not set; 'RUNNER_NAME' env is required, please contact your self hosted runner administrator"
            )
        );
    }

    #[test]
    fn debug_shows_names_only() {
        let env = RunnerEnv::from_vars([("ACTIONS_ID_TOKEN_REQUEST_TOKEN", "tok3n")]);
        let shown = format!("{env:?}");
        assert!(shown.contains("ACTIONS_ID_TOKEN_REQUEST_TOKEN") && !shown.contains("tok3n"));
    }
}
