//! The protocol core with a stand-in mode that runs script steps as local processes: the
//! response file, state, step exit codes, cancellation, and checks that run before the mode is
//! called.
#![allow(clippy::unwrap_used)]

use rarc_hooks::env::RunnerEnv;
use rarc_hooks::exit::StepExit;
use rarc_hooks::output::{Capture, Sinks};
use rarc_hooks::process::{RunOptions, run};
use rarc_hooks::protocol::{
    ContainerInfo, HookContainer, PrepareJobArgs, PrepareJobResponse, Request, ResponseContext, ScriptStepArgs,
};
use rarc_hooks::signals::Cancellation;
use rarc_hooks::{Hook, HookError, Invocation, Mode, execute};
use serde_json::{Value, json};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

/// Runs `entryPoint entryPointArgs…` on the host; prepare_job answers one entry per service.
#[derive(Default)]
struct HostHook {
    calls: AtomicUsize,
    output: Capture,
    extra_service: bool,
}

impl Hook for HostHook {
    async fn prepare_job(&self, _: &Invocation, args: &PrepareJobArgs) -> Result<PrepareJobResponse, HookError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        let mut services: Vec<ContainerInfo> = args.services.iter().map(|_| ContainerInfo::default()).collect();
        if self.extra_service {
            services.push(ContainerInfo::default());
        }
        Ok(PrepareJobResponse {
            state: Some(json!({"container": "c1"})),
            context: ResponseContext {
                container: Some(ContainerInfo {
                    id: Some("c1".into()),
                    ..Default::default()
                }),
                services,
            },
            is_alpine: false,
        })
    }

    async fn run_script_step(&self, inv: &Invocation, args: &ScriptStepArgs) -> Result<StepExit, HookError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        assert_eq!(inv.state, Some(json!({"container": "c1"})));
        let mut cmd = tokio::process::Command::new(&args.entry_point);
        cmd.args(&args.entry_point_args).envs(args.environment_variables.iter());
        let sinks = Sinks {
            stdout: Box::new(self.output.clone()),
            stderr: Box::new(self.output.clone()),
        };
        let options = RunOptions {
            kill_grace: inv.kill_grace,
            ..RunOptions::default()
        };
        run(cmd, sinks, &inv.cancel, options).await
    }

    async fn run_container_step(&self, _: &Invocation, _: &HookContainer) -> Result<StepExit, HookError> {
        unreachable!()
    }

    async fn cleanup_job(&self, _: &Invocation) -> Result<(), HookError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }
}

fn invocation(state: Option<Value>, cancel: Cancellation) -> Invocation {
    Invocation {
        mode: Mode::Docker,
        env: RunnerEnv::default(),
        state,
        cancel,
        kill_grace: Duration::from_secs(1),
    }
}

fn request(value: Value) -> Request {
    Request::parse(value.to_string().as_bytes()).unwrap()
}

#[tokio::test]
async fn prepare_job_writes_one_response_line_and_state_round_trips() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("r.json");
    std::fs::write(&file, "").unwrap();
    let hook = HostHook::default();
    let req = request(json!({"command": "prepare_job", "responseFile": file, "state": null,
        "args": {"container": {"image": "node:22"}, "services": [{"image": "redis"}, {"image": "pg"}]}}));
    assert_eq!(
        execute(&hook, &invocation(None, Cancellation::new()), &req)
            .await
            .unwrap(),
        0
    );
    let text = std::fs::read_to_string(&file).unwrap();
    assert_eq!(text.lines().count(), 1);
    let response: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(response["isAlpine"], false);
    assert_eq!(response["context"]["container"]["id"], "c1");
    assert_eq!(response["context"]["services"], json!([{"ports": {}}, {"ports": {}}]));

    // The state goes back verbatim in the next request.
    let state = response["state"].clone();
    let req = request(
        json!({"command": "run_script_step", "responseFile": file, "state": state,
        "args": {"entryPoint": "sh", "entryPointArgs": ["-c", "echo \"$GREETING\"; exit 3"],
                 "environmentVariables": {"GREETING": "hi"}, "prependPath": [], "workingDirectory": "/"}}),
    );
    let code = execute(&hook, &invocation(req.state.clone(), Cancellation::new()), &req)
        .await
        .unwrap();
    assert_eq!(code, 3);
    assert_eq!(hook.output.text(), "hi\n");
    let req = request(json!({"command": "cleanup_job", "responseFile": file, "args": {}, "state": state}));
    assert_eq!(
        execute(&hook, &invocation(req.state.clone(), Cancellation::new()), &req)
            .await
            .unwrap(),
        0
    );
    assert_eq!(hook.calls.load(Ordering::SeqCst), 3);
}

#[tokio::test]
async fn a_missing_response_file_fails_before_the_mode_runs() {
    let dir = tempfile::tempdir().unwrap();
    let hook = HostHook::default();
    let req = request(
        json!({"command": "prepare_job", "responseFile": dir.path().join("gone.json"),
        "args": {"container": null, "services": []}, "state": null}),
    );
    let err = execute(&hook, &invocation(None, Cancellation::new()), &req)
        .await
        .unwrap_err();
    assert!(matches!(err, HookError::ResponseFileMissing(_)), "{err}");
    assert_eq!(hook.calls.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn a_response_the_runner_would_reject_is_not_written() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("r.json");
    std::fs::write(&file, "").unwrap();
    let hook = HostHook {
        extra_service: true,
        ..HostHook::default()
    };
    let req = request(json!({"command": "prepare_job", "responseFile": file,
        "args": {"container": null, "services": [{"image": "redis"}]}, "state": null}));
    let err = execute(&hook, &invocation(None, Cancellation::new()), &req)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("context.services has 2 entries"), "{err}");
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "");
}

#[tokio::test]
async fn a_cancelled_step_stops_promptly_and_fails() {
    let hook = HostHook::default();
    let cancel = Cancellation::new();
    let req = request(
        json!({"command": "run_script_step", "responseFile": "/r", "state": {"container": "c1"},
        "args": {"entryPoint": "sh", "entryPointArgs": ["-c", "echo started; sleep 60"]}}),
    );
    let inv = invocation(req.state.clone(), cancel.clone());
    let started = std::time::Instant::now();
    let step = execute(&hook, &inv, &req);
    let canceller = async {
        while !hook.output.text().contains("started") {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        cancel.cancel(2);
    };
    let (code, ()) = tokio::join!(step, canceller);
    // sh dies of the forwarded SIGINT: 128 + 2.
    assert_eq!(code.unwrap(), 130);
    assert!(started.elapsed() < Duration::from_secs(5));
    // The next command (cleanup_job) is a new invocation and runs normally.
    let req = request(json!({"command": "cleanup_job", "responseFile": "/r", "args": {}, "state": null}));
    assert_eq!(
        execute(&hook, &invocation(None, Cancellation::new()), &req)
            .await
            .unwrap(),
        0
    );
}
