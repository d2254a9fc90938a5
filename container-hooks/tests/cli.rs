//! The `rarc-hooks` binary itself: help, bad input, required environment, every command reaching its mode,
//! cancellation, and no secrets in its output.
#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use nix::sys::signal::Signal;
use std::process::{Command, Stdio};
use std::time::Duration;

const LIMIT: Duration = Duration::from_secs(20);

fn hooks(mode: &str) -> Command {
    let mut cmd = Command::new(binary());
    runner_env(&mut cmd).arg(mode);
    cmd
}

/// Asserts a failure with exactly one line on stdout, an `::error::` containing `want`.
fn assert_error(outcome: &Outcome, want: &str) {
    assert_eq!(outcome.code, Some(1), "{outcome:?}");
    let lines: Vec<&str> = outcome.stdout.lines().collect();
    assert_eq!(lines.len(), 1, "{outcome:?}");
    assert!(lines[0].starts_with("::error::"), "{outcome:?}");
    assert!(lines[0].contains(want), "want {want:?} in {outcome:?}");
}

#[test]
fn help_and_version() {
    let out = Command::new(binary()).arg("--help").output().unwrap();
    assert!(out.status.success());
    let help = String::from_utf8(out.stdout).unwrap();
    for want in [
        "Exit codes:",
        "128+S",
        "NOT IMPLEMENTED YET",
        "docker",
        "k8s-novolume",
        "RARC_HOOKS_MODE",
    ] {
        assert!(help.contains(want), "{want} not in --help");
    }
    let out = Command::new(binary()).arg("--version").output().unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8(out.stdout).unwrap().starts_with("rarc-hooks "));
}

#[test]
fn a_bad_mode_is_an_error_line() {
    let out = run_with_input(&mut hooks("podman"), b"", LIMIT);
    assert_error(&out, "invalid value 'podman'");
    let mut no_mode = Command::new(binary());
    runner_env(&mut no_mode);
    assert_error(&run_with_input(&mut no_mode, b"", LIMIT), "MODE");
}

#[test]
fn bad_input_gives_one_clear_error() {
    let cases = [
        ("", "no request on stdin"),
        ("\n", "no request on stdin"),
        (
            r#"{"command":"prepare_job","responseFile":"/r","args":{"cont"#,
            "the request on stdin is truncated",
        ),
        ("not json", "not valid JSON"),
        (
            r#"{"command":"start_job","responseFile":"/r","args":{}}"#,
            "Command not recognized: start_job",
        ),
        (r#"{"command":"cleanup_job","args":{}}"#, "missing field `responseFile`"),
        (
            r#"{"command":"run_script_step","responseFile":"/r","args":{"entryPointArgs":[]}}"#,
            "args: missing field `entryPoint`",
        ),
    ];
    for mode in ["docker", "k8s", "k8s-novolume"] {
        for (input, want) in cases {
            assert_error(&run_with_input(&mut hooks(mode), input.as_bytes(), LIMIT), want);
        }
    }
    // No stdin at all.
    let out = hooks("docker").stdin(Stdio::null()).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        String::from_utf8(out.stdout).unwrap(),
        "::error::no request on stdin: the runner writes the request as one line of JSON and closes stdin\n"
    );
}

#[test]
fn missing_environment_is_named() {
    let line = request("cleanup_job", "/r", "{}");
    let mut cmd = hooks("docker");
    cmd.env_remove("GITHUB_WORKSPACE");
    assert_error(
        &run_with_input(&mut cmd, line.as_bytes(), LIMIT),
        "GITHUB_WORKSPACE is not set",
    );
    let mut cmd = hooks("docker");
    cmd.env_remove("RUNNER_NAME");
    assert_error(
        &run_with_input(&mut cmd, line.as_bytes(), LIMIT),
        "'RUNNER_NAME' env is required, please contact your self hosted runner administrator",
    );
    let mut cmd = hooks("docker");
    cmd.env("RUNNER_NAME", "").env_remove("GITHUB_WORKSPACE");
    assert_error(
        &run_with_input(&mut cmd, line.as_bytes(), LIMIT),
        "GITHUB_WORKSPACE is not set; 'RUNNER_NAME' env is required",
    );
    for mode in ["k8s", "k8s-novolume"] {
        let mut cmd = hooks(mode);
        cmd.env_remove("ACTIONS_RUNNER_POD_NAME");
        assert_error(
            &run_with_input(&mut cmd, line.as_bytes(), LIMIT),
            "'ACTIONS_RUNNER_POD_NAME' env is required",
        );
    }
}

#[test]
fn every_command_reaches_the_mode() {
    let dir = tempfile::tempdir().unwrap();
    let response = dir.path().join("r.json");
    std::fs::write(&response, "").unwrap();
    let response = response.to_str().unwrap();
    let requests = [
        ("prepare_job", r#"{"container":null,"services":[]}"#),
        (
            "run_script_step",
            r#"{"entryPoint":"sh","entryPointArgs":["-e","/x.sh"],"environmentVariables":{},"prependPath":[],"workingDirectory":"/__w"}"#,
        ),
        ("run_container_step", r#"{"image":"alpine","entryPointArgs":[]}"#),
        ("cleanup_job", "{}"),
    ];
    for mode in ["docker", "k8s", "k8s-novolume"] {
        for (command, args) in requests {
            let out = run_with_input(&mut hooks(mode), request(command, response, args).as_bytes(), LIMIT);
            assert_error(&out, reached_mode(mode, command).trim_start_matches("::error::"));
        }
    }
    // The alias of the k8s mode.
    let out = run_with_input(
        &mut hooks("k8s-volume"),
        request("cleanup_job", response, "{}").as_bytes(),
        LIMIT,
    );
    assert_error(&out, "the k8s mode does not implement cleanup_job yet");
    // Nothing was written to the response file.
    assert_eq!(std::fs::read_to_string(dir.path().join("r.json")).unwrap(), "");
}

#[test]
fn pretty_printed_requests_are_accepted() {
    let pretty =
        "{\n  \"command\": \"cleanup_job\",\n  \"responseFile\": \"/r\",\n  \"args\": {},\n  \"state\": null\n}\n";
    let out = run_with_input(&mut hooks("docker"), pretty.as_bytes(), LIMIT);
    assert_error(&out, "cannot connect to the Docker daemon");
}

#[test]
fn prepare_job_without_a_response_file_fails_first() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing.json");
    let line = request(
        "prepare_job",
        missing.to_str().unwrap(),
        r#"{"container":null,"services":[]}"#,
    );
    let out = run_with_input(&mut hooks("docker"), line.as_bytes(), LIMIT);
    assert_error(&out, &format!("Missing file at path: {}", missing.display()));
    assert!(!missing.exists());
}

#[test]
fn a_stdin_that_stays_open_times_out() {
    let mut child = hooks("docker")
        .args(["--stdin-timeout", "1"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let _stdin = child.stdin.take();
    let out = finish(child, Duration::from_secs(10));
    assert_error(&out, "no complete request on stdin within 1s");
}

#[test]
fn sigint_and_sigterm_cancel_promptly() {
    for (signal, code, name) in [(Signal::SIGINT, 130, "SIGINT"), (Signal::SIGTERM, 143, "SIGTERM")] {
        let mut child = hooks("docker")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let _stdin = child.stdin.take();
        // Give it time to install the handlers.
        std::thread::sleep(Duration::from_millis(300));
        send(&child, signal);
        let out = finish(child, Duration::from_secs(5));
        assert_eq!(out.code, Some(code), "{out:?}");
        assert_eq!(
            out.stdout,
            format!("::error::cancelled by {name} (the job was cancelled)\n")
        );
    }
}

#[test]
fn secrets_stay_out_of_the_output() {
    let dir = tempfile::tempdir().unwrap();
    let response = dir.path().join("r.json");
    std::fs::write(&response, "").unwrap();
    let args = r#"{"container":{"image":"ghcr.io/o/i","entryPointArgs":[],"environmentVariables":{"TOKEN":"s3cr3t-env"},
        "registry":{"username":"u","password":"s3cr3t-pass","serverUrl":"ghcr.io"},"portMappings":[],"systemMountVolumes":[],"userMountVolumes":[]},"services":[]}"#
        .replace('\n', "");
    let line = request("prepare_job", response.to_str().unwrap(), &args);
    let mut cmd = hooks("docker");
    cmd.env("RARC_HOOKS_LOG", "trace").env("RUNNER_SECRET", "s3cr3t-runner");
    let out = run_with_input(&mut cmd, line.as_bytes(), LIMIT);
    assert_eq!(out.code, Some(1));
    for secret in ["s3cr3t-env", "s3cr3t-pass", "s3cr3t-runner"] {
        assert!(!out.stdout.contains(secret) && !out.stderr.contains(secret), "{out:?}");
    }
    // Diagnostics go to stderr only; stdout has the one error line.
    assert!(out.stderr.contains("request"), "{out:?}");
    assert_eq!(out.stdout.lines().count(), 1);
}
