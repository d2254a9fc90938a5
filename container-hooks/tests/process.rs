//! The step runner and output pump with real processes: live ordered output, the real exit code, a
//! silent step, signal deaths, cancellation (forwarded signal, SIGKILL after the grace period or on
//! a second signal), and nothing left running afterwards.
#![allow(clippy::unwrap_used)]

use rarc_hooks::exit::Termination;
use rarc_hooks::output::{Capture, Sinks};
use rarc_hooks::process::{Input, RunOptions, run};
use rarc_hooks::signals::Cancellation;
use std::time::{Duration, Instant};
use tokio::process::Command;

fn sh(script: &str) -> Command {
    let mut cmd = Command::new("sh");
    cmd.args(["-c", script]);
    cmd
}

fn capture() -> (Sinks, Capture, Capture) {
    let (out, err) = (Capture::new(), Capture::new());
    let sinks = Sinks {
        stdout: Box::new(out.clone()),
        stderr: Box::new(err.clone()),
    };
    (sinks, out, err)
}

fn quick(grace_ms: u64) -> RunOptions {
    RunOptions {
        kill_grace: Duration::from_millis(grace_ms),
        ..RunOptions::default()
    }
}

/// Waits until `capture` contains `want`.
async fn until(capture: &Capture, want: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !capture.text().contains(want) {
        assert!(
            Instant::now() < deadline,
            "{want:?} never came; got {:?}",
            capture.text()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn output_in_order_and_the_real_exit_code() {
    let (sinks, out, err) = capture();
    let script = "i=0; while [ $i -lt 3000 ]; do echo out $i; echo err $i >&2; i=$((i+1)); done; exit 3";
    let exit = run(sh(script), sinks, &Cancellation::new(), RunOptions::default())
        .await
        .unwrap();
    assert_eq!(exit.termination, Termination::Exited(3));
    assert_eq!(exit.cancelled, None);
    assert_eq!(exit.hook_code(), 3);
    let want: String = (0..3000).map(|i| format!("out {i}\n")).collect();
    assert_eq!(out.text(), want);
    let want: String = (0..3000).map(|i| format!("err {i}\n")).collect();
    assert_eq!(err.text(), want);
}

#[tokio::test]
async fn output_arrives_while_the_step_runs() {
    let (sinks, out, _) = capture();
    let cancel = Cancellation::new();
    let task = tokio::spawn(async move {
        run(
            sh("printf 'no newline yet'; sleep 1; echo; exit 0"),
            sinks,
            &cancel,
            RunOptions::default(),
        )
        .await
    });
    until(&out, "no newline yet").await;
    assert!(!task.is_finished());
    assert!(task.await.unwrap().unwrap().termination.success());
}

#[tokio::test]
async fn a_silent_step_is_waited_for_and_fails_when_it_fails() {
    for (script, code) in [("sleep 3; exit 0", 0), ("sleep 3; exit 1", 1)] {
        let (sinks, out, err) = capture();
        let started = Instant::now();
        let exit = run(sh(script), sinks, &Cancellation::new(), RunOptions::default())
            .await
            .unwrap();
        assert!(started.elapsed() >= Duration::from_secs(3));
        assert_eq!(exit.hook_code(), code);
        assert_eq!((out.text(), err.text()), (String::new(), String::new()));
    }
}

#[tokio::test]
async fn a_step_killed_by_a_signal_fails() {
    for (signal, code) in [("KILL", 137), ("TERM", 143), ("SEGV", 139)] {
        let (sinks, _, _) = capture();
        let exit = run(
            sh(&format!("kill -{signal} $$")),
            sinks,
            &Cancellation::new(),
            RunOptions::default(),
        )
        .await
        .unwrap();
        assert!(matches!(exit.termination, Termination::Signaled(_)), "{exit:?}");
        assert_eq!(exit.hook_code(), code);
    }
}

#[tokio::test]
async fn stdin_bytes_reach_the_process() {
    let (sinks, out, _) = capture();
    let options = RunOptions {
        input: Input::Bytes(b"hello\nworld".to_vec()),
        ..RunOptions::default()
    };
    let exit = run(Command::new("cat"), sinks, &Cancellation::new(), options)
        .await
        .unwrap();
    assert!(exit.termination.success());
    assert_eq!(out.text(), "hello\nworld");
    // No input: /dev/null, not the hook's own stdin.
    let (sinks, out, _) = capture();
    run(Command::new("cat"), sinks, &Cancellation::new(), RunOptions::default())
        .await
        .unwrap();
    assert_eq!(out.text(), "");
}

#[tokio::test]
async fn cancellation_forwards_the_signal_to_the_step() {
    let (sinks, out, _) = capture();
    let cancel = Cancellation::new();
    let c = cancel.clone();
    let script = "trap 'echo interrupted; exit 5' INT; echo ready; while :; do sleep 0.1; done";
    let task = tokio::spawn(async move { run(sh(script), sinks, &c, quick(10_000)).await });
    until(&out, "ready").await;
    let started = Instant::now();
    cancel.cancel(2);
    let exit = task.await.unwrap().unwrap();
    assert!(started.elapsed() < Duration::from_secs(3), "{:?}", started.elapsed());
    assert_eq!(exit.termination, Termination::Exited(5));
    assert_eq!(exit.cancelled, Some(2));
    assert_eq!(exit.hook_code(), 5);
    assert_eq!(out.text(), "ready\ninterrupted\n");
}

#[tokio::test]
async fn a_step_that_ignores_the_signal_is_killed_after_the_grace() {
    let (sinks, out, _) = capture();
    let cancel = Cancellation::new();
    let c = cancel.clone();
    let script = "trap '' INT TERM; echo ready; while :; do sleep 0.1; done";
    let task = tokio::spawn(async move { run(sh(script), sinks, &c, quick(500)).await });
    until(&out, "ready").await;
    let started = Instant::now();
    cancel.cancel(15);
    let exit = task.await.unwrap().unwrap();
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(450) && took < Duration::from_secs(4),
        "{took:?}"
    );
    assert_eq!(exit.termination, Termination::Signaled(9));
    assert_eq!(exit.hook_code(), 137);
}

#[tokio::test]
async fn a_second_signal_kills_at_once() {
    let (sinks, out, _) = capture();
    let cancel = Cancellation::new();
    let c = cancel.clone();
    let script = "trap '' INT TERM; echo ready; while :; do sleep 0.1; done";
    let task = tokio::spawn(async move { run(sh(script), sinks, &c, quick(60_000)).await });
    until(&out, "ready").await;
    let started = Instant::now();
    cancel.cancel(2);
    tokio::time::sleep(Duration::from_millis(200)).await;
    cancel.cancel(15);
    let exit = task.await.unwrap().unwrap();
    assert!(started.elapsed() < Duration::from_secs(4));
    assert_eq!(exit.termination, Termination::Signaled(9));
    // The first signal is the cancellation's.
    assert_eq!(exit.cancelled, Some(2));
}

#[tokio::test]
async fn already_cancelled_starts_nothing() {
    let (sinks, _, _) = capture();
    let cancel = Cancellation::new();
    cancel.cancel(2);
    let dir = tempfile::tempdir().unwrap();
    let marker = dir.path().join("ran");
    let err = run(
        sh(&format!("touch {}", marker.display())),
        sinks,
        &cancel,
        RunOptions::default(),
    )
    .await
    .unwrap_err();
    assert_eq!(err.exit_code(), 130);
    assert!(!marker.exists());
}

/// Whether process `pid` still exists (and is not a zombie waiting to be reaped).
fn alive(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| {
            let state = s.rsplit(')').next().unwrap_or("").trim_start();
            !state.starts_with('Z')
        })
        .unwrap_or(false)
}

#[tokio::test]
async fn nothing_the_step_started_outlives_it() {
    let dir = tempfile::tempdir().unwrap();
    let pidfile = dir.path().join("pid");
    let (sinks, out, _) = capture();
    // A background child keeps stdout open after the step's shell exits.
    let script = format!("sleep 60 & echo $! > {}; echo done", pidfile.display());
    let started = Instant::now();
    let exit = run(sh(&script), sinks, &Cancellation::new(), RunOptions::default())
        .await
        .unwrap();
    assert!(exit.termination.success());
    assert!(started.elapsed() < Duration::from_secs(10), "{:?}", started.elapsed());
    assert_eq!(out.text(), "done\n");
    let pid: i32 = std::fs::read_to_string(&pidfile).unwrap().trim().parse().unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    while alive(pid) {
        assert!(Instant::now() < deadline, "background process {pid} survived the step");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn a_missing_program_is_a_hook_error() {
    let (sinks, _, _) = capture();
    let err = run(
        Command::new("/nonexistent/program"),
        sinks,
        &Cancellation::new(),
        RunOptions::default(),
    )
    .await
    .unwrap_err();
    assert!(
        err.to_string().starts_with("cannot start '/nonexistent/program'"),
        "{err}"
    );
    assert_eq!(err.exit_code(), 1);
}
