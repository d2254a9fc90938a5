//! Exit codes: how a step's end (an exit code, or a signal) becomes the hook's own exit code.
//!
//! The runner only distinguishes zero from non-zero, but it logs the code ("Process completed with
//! exit code N."), so the hook passes the step's real code through: `N` for a step that exited with
//! `N`, `128 + s` for a step killed by signal `s` (the shell convention), and never 0 for a step that
//! did not succeed.

use nix::sys::signal::Signal;
use std::os::unix::process::ExitStatusExt;
use std::process::ExitStatus;

/// How a step (a local process, or a remote one reported by an exec API) ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Termination {
    /// It exited with this code (any integer an API may report).
    Exited(i64),
    /// It was killed by this signal.
    Signaled(i32),
}

impl Termination {
    /// Reads a local process's wait status.
    pub fn from_status(status: ExitStatus) -> Self {
        match (status.code(), status.signal()) {
            (Some(code), _) => Self::Exited(i64::from(code)),
            (None, Some(signal)) => Self::Signaled(signal),
            // Neither (stopped/continued statuses are never returned by wait): not a success.
            (None, None) => Self::Exited(-1),
        }
    }

    pub fn success(self) -> bool {
        self == Self::Exited(0)
    }
}

/// How a step ended, and whether the hook had been cancelled (by this signal) while it ran.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StepExit {
    pub termination: Termination,
    pub cancelled: Option<i32>,
}

impl StepExit {
    /// The hook's exit code for this step.
    ///
    /// A cancelled step never reports success, whatever it did with the signal: it exits with
    /// `128 + the signal the hook received`, like a shell killed by it.
    pub fn hook_code(self) -> u8 {
        match (self.cancelled, self.termination) {
            (Some(signal), Termination::Exited(0)) => signal_exit_code(signal),
            (_, Termination::Exited(code)) => exit_code(code),
            (_, Termination::Signaled(signal)) => signal_exit_code(signal),
        }
    }
}

/// A reported exit code as a process exit code: 0..=255 as is, anything else (negative, or above
/// 255, which a shell would wrap to a possibly-zero value) as 1, so that a failure never becomes 0.
pub fn exit_code(code: i64) -> u8 {
    u8::try_from(code).unwrap_or(1)
}

/// `128 + signal`, the shell's code for a process killed by `signal` (1 for nonsense signals).
pub fn signal_exit_code(signal: i32) -> u8 {
    match u8::try_from(signal) {
        Ok(s) if (1..128).contains(&s) => 128 + s,
        _ => 1,
    }
}

/// `SIGINT` for 2, `signal 99` for something unknown.
pub fn signal_name(signal: i32) -> String {
    Signal::try_from(signal).map_or_else(|_| format!("signal {signal}"), |s| s.as_str().to_owned())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn codes_pass_through_and_failures_stay_failures() {
        assert_eq!(exit_code(0), 0);
        assert_eq!(exit_code(3), 3);
        assert_eq!(exit_code(255), 255);
        assert_eq!(exit_code(256), 1);
        assert_eq!(exit_code(-1), 1);
        assert_eq!(signal_exit_code(9), 137);
        assert_eq!(signal_exit_code(15), 143);
        assert_eq!(signal_exit_code(0), 1);
        assert_eq!(signal_exit_code(-3), 1);
        assert_eq!(signal_exit_code(200), 1);
    }

    #[test]
    fn step_exit_codes() {
        let exit = |termination, cancelled| StepExit { termination, cancelled };
        assert_eq!(exit(Termination::Exited(0), None).hook_code(), 0);
        assert_eq!(exit(Termination::Exited(7), None).hook_code(), 7);
        assert_eq!(exit(Termination::Signaled(9), None).hook_code(), 137);
        // A step that swallowed the cancel signal and exited 0 still fails.
        assert_eq!(exit(Termination::Exited(0), Some(2)).hook_code(), 130);
        assert_eq!(exit(Termination::Exited(1), Some(2)).hook_code(), 1);
        assert_eq!(exit(Termination::Signaled(15), Some(2)).hook_code(), 143);
    }

    #[test]
    fn from_real_statuses() {
        let status = |script: &str| std::process::Command::new("sh").args(["-c", script]).status().unwrap();
        assert_eq!(Termination::from_status(status("exit 0")), Termination::Exited(0));
        assert!(Termination::from_status(status("exit 0")).success());
        assert_eq!(Termination::from_status(status("exit 42")), Termination::Exited(42));
        assert_eq!(
            Termination::from_status(status("kill -KILL $$")),
            Termination::Signaled(9)
        );
        assert_eq!(
            Termination::from_status(status("kill -TERM $$")),
            Termination::Signaled(15)
        );
    }

    #[test]
    fn names() {
        assert_eq!(signal_name(2), "SIGINT");
        assert_eq!(signal_name(15), "SIGTERM");
        assert_eq!(signal_name(99), "signal 99");
    }
}
