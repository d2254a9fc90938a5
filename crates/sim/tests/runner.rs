//! The simulated runner against a stub of the five runner endpoints, with fake container hooks.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use axum::Json;
use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use rarc_actions::Secret;
use rarc_sim::job::{ContainerSpec, Credentials, JobSpec, ServiceSpec, StepSpec};
use rarc_sim::runner::{
    Escalation, JobResult, RunnerArgs, RunnerError, RunnerOutcome, exit_code, hooks::HOOK_FAILED, run_until, run_with,
};
use rarc_sim::runner_api::{
    AssignedJob, CompleteRequest, JitConfig, LogLine, LogLines, OnlineResponse, RunnerSettings,
};
use serde_json::{Value, json};
use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

const TOKEN: &str = "runner-token-xyz";
const RUNNER_NAME: &str = "sim-runner-1";

// ---- the stub service ----------------------------------------------------------------------------

#[derive(Default)]
struct Stub {
    /// Handed out on the first wait call; later wait calls answer `after_job`.
    job: Mutex<Option<AssignedJob>>,
    /// Answer of wait calls once the job is gone: 404, or 202 after `waitMs`.
    after_job: Mutex<u16>,
    calls: Mutex<Vec<String>>,
    logs: Mutex<Vec<LogLine>>,
    complete: Mutex<Option<CompleteRequest>>,
}

impl Stub {
    fn calls(&self) -> Vec<String> {
        self.calls.lock().unwrap().clone()
    }
    fn logs(&self) -> Vec<LogLine> {
        self.logs.lock().unwrap().clone()
    }
    fn lines(&self) -> Vec<String> {
        self.logs().into_iter().map(|l| l.line).collect()
    }
    fn lines_of(&self, step: i64, stream: &str) -> Vec<String> {
        self.logs()
            .into_iter()
            .filter(|l| l.step == step && l.stream == stream)
            .map(|l| l.line)
            .collect()
    }
    fn complete(&self) -> CompleteRequest {
        self.complete
            .lock()
            .unwrap()
            .clone()
            .expect("the runner reported no completion")
    }
}

fn authorized(headers: &HeaderMap) -> bool {
    headers.get("authorization").and_then(|v| v.to_str().ok()) == Some(&format!("Bearer {TOKEN}"))
}

async fn online(State(s): State<Arc<Stub>>, headers: HeaderMap, Path(id): Path<i64>) -> Response {
    s.calls.lock().unwrap().push("online".into());
    if !authorized(&headers) {
        return StatusCode::UNAUTHORIZED.into_response();
    }
    Json(OnlineResponse {
        runner_id: id,
        name: RUNNER_NAME.into(),
        runner_scale_set_id: 1,
    })
    .into_response()
}

async fn wait_job(
    State(s): State<Arc<Stub>>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    s.calls.lock().unwrap().push("job".into());
    if !authorized(&headers) {
        return StatusCode::UNAUTHORIZED.into_response();
    }
    if let Some(job) = s.job.lock().unwrap().take() {
        return Json(job).into_response();
    }
    let after = *s.after_job.lock().unwrap();
    if after == 202 {
        let ms = q.get("waitMs").and_then(|v| v.parse().ok()).unwrap_or(1000);
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }
    StatusCode::from_u16(after)
        .unwrap_or(StatusCode::NOT_FOUND)
        .into_response()
}

async fn log(State(s): State<Arc<Stub>>, headers: HeaderMap, Json(body): Json<LogLines>) -> StatusCode {
    s.calls.lock().unwrap().push("log".into());
    if !authorized(&headers) {
        return StatusCode::UNAUTHORIZED;
    }
    s.logs.lock().unwrap().extend(body.lines);
    StatusCode::NO_CONTENT
}

async fn complete(State(s): State<Arc<Stub>>, headers: HeaderMap, Json(body): Json<CompleteRequest>) -> StatusCode {
    s.calls.lock().unwrap().push("complete".into());
    if !authorized(&headers) {
        return StatusCode::UNAUTHORIZED;
    }
    *s.complete.lock().unwrap() = Some(body);
    StatusCode::NO_CONTENT
}

async fn offline(State(s): State<Arc<Stub>>) -> StatusCode {
    s.calls.lock().unwrap().push("offline".into());
    StatusCode::NO_CONTENT
}

/// Starts the stub on 127.0.0.1:0 and returns it with the runner's `serverUrl` (`{A}`).
async fn start_stub(job: Option<AssignedJob>, after_job: u16) -> (Arc<Stub>, String) {
    let stub = Arc::new(Stub {
        job: Mutex::new(job),
        after_job: Mutex::new(after_job),
        ..Default::default()
    });
    let r = "/tenant/1/_apis/simrunner/runners/{id}";
    let app = Router::new()
        .route(&format!("{r}/online"), post(online))
        .route(&format!("{r}/job"), get(wait_job))
        .route(&format!("{r}/jobs/{{rid}}/log"), post(log))
        .route(&format!("{r}/jobs/{{rid}}/complete"), post(complete))
        .route(&format!("{r}/offline"), post(offline))
        .with_state(stub.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (stub, format!("http://{addr}/tenant/1/"))
}

fn jit(server_url: &str, token: &str) -> Secret {
    JitConfig {
        settings: RunnerSettings {
            agent_id: 7,
            agent_name: RUNNER_NAME.into(),
            pool_id: 1,
            pool_name: "Default".into(),
            server_url: server_url.into(),
            git_hub_url: "http://127.0.0.1:1/octo".into(),
            work_folder: "_work".into(),
            ephemeral: true,
            disable_update: true,
            runner_scale_set_id: 1,
        },
        token: Secret::new(token),
    }
    .encode()
}

fn assigned(spec: JobSpec) -> AssignedJob {
    AssignedJob {
        runner_request_id: 42,
        job_id: "job-1".into(),
        job_display_name: "build".into(),
        repository: "octo/hello".into(),
        workflow_run_id: 9,
        spec,
    }
}

fn args(server_url: &str, root: &std::path::Path, hook: Option<&std::path::Path>) -> RunnerArgs {
    RunnerArgs {
        jitconfig: Some(jit(server_url, TOKEN)),
        root: Some(root.to_path_buf()),
        container_hooks: hook.map(|h| h.to_string_lossy().into_owned()),
        wait_ms: 500,
        quiet: true,
        ..Default::default()
    }
}

fn run_step(run: &str) -> StepSpec {
    StepSpec {
        run: Some(run.into()),
        ..Default::default()
    }
}

fn completed(outcome: &Result<RunnerOutcome, RunnerError>) -> &rarc_sim::runner::CompletedJob {
    match outcome {
        Ok(RunnerOutcome::Completed(job)) => job,
        other => panic!("expected a completed job, got {other:?}"),
    }
}

fn step_results(c: &CompleteRequest) -> Vec<(String, i32)> {
    c.steps.iter().map(|s| (s.result.clone(), s.exit_code)).collect()
}

// ---- the fake hook -------------------------------------------------------------------------------

/// A bash hook that saves each raw stdin to `<dir>/calls/<n>.stdin`, records whether the response file
/// existed and was empty plus its environment in `<dir>/env.log`, prints a line on stdout and stderr,
/// writes canned responses, and runs `extra` (a `case "$cmd"` body fragment) for test-specific behaviour.
fn fake_hook(dir: &std::path::Path, extra: &str) -> PathBuf {
    std::fs::create_dir_all(dir.join("calls")).unwrap();
    let script = format!(
        r#"set -e
dir='{dir}'
n=$(ls "$dir/calls" | wc -l)
f="$dir/calls/$n.stdin"
cat > "$f"
input=$(cat "$f")
cmd=$(printf '%s' "$input" | sed -n 's/^{{"command":"\([a-z_]*\)".*/\1/p')
resp=$(printf '%s' "$input" | sed -n 's/^{{"command":"[a-z_]*","responseFile":"\([^"]*\)".*/\1/p')
if [ -f "$resp" ] && [ ! -s "$resp" ]; then rf=empty; else rf=not-empty-or-missing; fi
printf '%s|%s|%s|%s|%s|%s|%s\n' "$cmd" "$rf" "$GITHUB_WORKSPACE" "$RUNNER_WORKSPACE" "$RUNNER_TEMP" "$RUNNER_NAME" "$PWD" >> "$dir/env.log"
echo "hook $cmd running"
echo "hook $cmd stderr" >&2
case "$cmd" in
{extra}
  prepare_job)
    printf '%s' '{{"state":{{"jobPod":"pod-1"}},"isAlpine":false,"context":{{"container":{{"id":"c-1","network":"net-1"}},"services":[{{"id":"svc-redis","network":"net-1","ports":{{"6379":"31001"}}}},{{"id":"svc-pg","ports":{{"5432":"31002"}}}}]}}}}' > "$resp" ;;
  run_container_step)
    echo "::warning::container step note"
    printf '%s' '{{"State":{{"jobPod":"pod-2"}}}}' > "$resp" ;;
  *) ;;
esac
"#,
        dir = dir.display()
    );
    let path = dir.join("hook.sh");
    std::fs::write(&path, script).unwrap();
    path
}

/// The raw stdin of every hook call, in order.
fn hook_calls(dir: &std::path::Path) -> Vec<String> {
    let mut out = Vec::new();
    for n in 0.. {
        match std::fs::read_to_string(dir.join("calls").join(format!("{n}.stdin"))) {
            Ok(s) => out.push(s),
            Err(_) => break,
        }
    }
    out
}

fn commands(calls: &[String]) -> Vec<String> {
    calls
        .iter()
        .map(|c| {
            serde_json::from_str::<Value>(c).unwrap()["command"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect()
}

fn container_job() -> JobSpec {
    JobSpec {
        container: Some(ContainerSpec {
            image: "ghcr.io/octo/build:1".into(),
            options: Some("--cpus 1".into()),
            command: Some("sleep  infinity".into()),
            env: BTreeMap::from([("NODE_ENV".into(), "development".into())]),
            ports: vec!["8080:80".into()],
            volumes: vec!["cache:/cache".into(), "/data:ro".into()],
            credentials: Some(Credentials {
                username: "octo".into(),
                password: "pat".into(),
            }),
            ..Default::default()
        }),
        services: vec![
            ServiceSpec {
                name: "redis".into(),
                container: ContainerSpec {
                    image: "redis:7".into(),
                    ports: vec!["6379".into()],
                    ..Default::default()
                },
            },
            ServiceSpec {
                name: "postgres".into(),
                container: ContainerSpec {
                    image: "postgres:16".into(),
                    options: Some("--health-cmd pg_isready".into()),
                    env: BTreeMap::from([("POSTGRES_PASSWORD".into(), "pw".into())]),
                    ..Default::default()
                },
            },
        ],
        steps: vec![
            StepSpec {
                name: "script".into(),
                run: Some("echo in container".into()),
                env: BTreeMap::from([("STEP_VAR".into(), "s".into())]),
                ..Default::default()
            },
            StepSpec {
                name: "action".into(),
                uses: Some("docker://alpine:3.20".into()),
                args: Some("-c  echo hi".into()),
                entrypoint: Some("sh".into()),
                ..Default::default()
            },
        ],
        env: BTreeMap::from([("JOB_VAR".into(), "j".into())]),
        ..Default::default()
    }
}

async fn wait_for_file(path: &std::path::Path) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while !path.exists() {
        assert!(Instant::now() < deadline, "{} never appeared", path.display());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

// ---- tests ---------------------------------------------------------------------------------------

#[tokio::test]
async fn host_job_streams_output_in_order_and_succeeds() {
    let root = tempfile::tempdir().unwrap();
    let spec = JobSpec {
        steps: vec![
            StepSpec {
                name: "greet".into(),
                ..run_step("echo one\necho two\necho oops >&2\necho three")
            },
            StepSpec {
                env: BTreeMap::from([("STEP_VAR".into(), "s".into())]),
                ..run_step(
                    "echo \"ws=$GITHUB_WORKSPACE\"\necho \"name=$RUNNER_NAME\"\necho \"pwd=$(pwd)\"\necho \"vars=$JOB_VAR-$STEP_VAR\"",
                )
            },
        ],
        env: BTreeMap::from([("JOB_VAR".into(), "j".into())]),
        ..Default::default()
    };
    let (stub, url) = start_stub(Some(assigned(spec)), 404).await;
    let mut a = args(&url, root.path(), None);
    a.quiet = false;
    let outcome = run_until(a, CancellationToken::new()).await;
    assert_eq!(exit_code(&outcome), 0);
    let job = completed(&outcome);
    assert_eq!(job.result, JobResult::Succeeded);
    assert_eq!(job.runner_request_id, 42);

    let stdout0: Vec<String> = stub
        .lines_of(0, "stdout")
        .into_iter()
        .filter(|l| !l.starts_with("##[") && !l.starts_with("shell:"))
        .collect();
    let echoed: Vec<&String> = stdout0
        .iter()
        .filter(|l| ["one", "two", "three"].contains(&l.as_str()))
        .collect();
    assert_eq!(echoed, ["one", "two", "three"]);
    assert_eq!(stub.lines_of(0, "stderr"), ["oops"]);
    let ws = root.path().join("_work/hello/hello");
    let lines1 = stub.lines_of(1, "stdout");
    for want in [
        format!("ws={}", ws.display()),
        format!("name={RUNNER_NAME}"),
        format!("pwd={}", ws.display()),
        "vars=j-s".to_owned(),
    ] {
        assert!(lines1.contains(&want), "{want} not in {lines1:?}");
    }

    let c = stub.complete();
    assert_eq!(c.result, "succeeded");
    assert_eq!(step_results(&c), [("succeeded".into(), 0), ("succeeded".into(), 0)]);
    assert_eq!(c.steps[0].name, "greet");
    let calls = stub.calls();
    assert_eq!(calls.first().map(String::as_str), Some("online"));
    assert_eq!(calls[1], "job");
    assert_eq!(&calls[calls.len() - 2..], ["complete", "offline"]);
    assert!(calls.contains(&"log".to_owned()));

    for dir in [
        "_work/hello/hello",
        "_work/_temp/_github_home",
        "_work/_temp/_runner_file_commands",
        "_work/_temp/_runner_hook_responses",
        "_work/_actions",
        "_work/_tool",
        "externals",
    ] {
        assert!(root.path().join(dir).is_dir(), "{dir}");
    }
    assert!(root.path().join("_work/_temp/_github_workflow/event.json").is_file());
}

#[tokio::test]
async fn failing_step_fails_the_job_and_skips_the_rest() {
    let root = tempfile::tempdir().unwrap();
    let spec = JobSpec {
        steps: vec![
            StepSpec {
                continue_on_error: true,
                ..run_step("exit 4")
            },
            run_step("echo before\nexit 3\necho after"),
            run_step("echo never"),
        ],
        ..Default::default()
    };
    let (stub, url) = start_stub(Some(assigned(spec)), 404).await;
    let outcome = run_until(args(&url, root.path(), None), CancellationToken::new()).await;
    assert_eq!(exit_code(&outcome), 0, "a failed job is still a clean exit");
    assert_eq!(completed(&outcome).result, JobResult::Failed);
    let c = stub.complete();
    assert_eq!(c.result, "failed");
    assert_eq!(
        step_results(&c),
        [("failed".into(), 4), ("failed".into(), 3), ("skipped".into(), 0)]
    );
    let lines = stub.lines();
    assert!(
        lines.contains(&"##[error]Process completed with exit code 3.".to_owned()),
        "{lines:?}"
    );
    assert!(lines.contains(&"before".to_owned()));
    assert!(!lines.contains(&"after".to_owned()) && !lines.contains(&"never".to_owned()));
}

#[tokio::test]
async fn container_job_calls_the_hook_like_the_runner() {
    let root = tempfile::tempdir().unwrap();
    let hook_dir = tempfile::tempdir().unwrap();
    let hook = fake_hook(hook_dir.path(), "");
    let (stub, url) = start_stub(Some(assigned(container_job())), 404).await;
    let outcome = run_until(args(&url, root.path(), Some(&hook)), CancellationToken::new()).await;
    let job = completed(&outcome);
    assert_eq!(job.result, JobResult::Succeeded, "{:?}", stub.lines());

    let calls = hook_calls(hook_dir.path());
    assert_eq!(
        commands(&calls),
        ["prepare_job", "run_script_step", "run_container_step", "cleanup_job"]
    );
    for raw in &calls {
        assert!(
            raw.ends_with('\n') && raw.matches('\n').count() == 1,
            "one JSON line per call: {raw:?}"
        );
    }
    let req: Vec<Value> = calls.iter().map(|c| serde_json::from_str(c).unwrap()).collect();
    let work = root.path().join("_work");
    let ws = work.join("hello/hello");
    let responses = work.join("_temp/_runner_hook_responses");
    for r in &req {
        let file = PathBuf::from(r["responseFile"].as_str().unwrap());
        assert_eq!(file.parent(), Some(responses.as_path()));
        assert!(file.extension().is_some_and(|e| e == "json"));
    }
    assert_eq!(
        std::fs::read_dir(&responses).unwrap().count(),
        0,
        "response files are deleted after reading"
    );

    // prepare_job: every field present, nulls emitted.
    let p = &req[0];
    assert_eq!(p["state"], Value::Null);
    let c = &p["args"]["container"];
    assert_eq!(c["image"], "ghcr.io/octo/build:1");
    assert_eq!(c["dockerfile"], Value::Null);
    assert_eq!(c["entryPoint"], Value::Null);
    assert_eq!(c["entryPointArgs"], json!(["sleep", "infinity"]));
    assert_eq!(c["workingDirectory"], "/__w/hello/hello");
    assert_eq!(c["createOptions"], "--cpus 1");
    assert_eq!(
        c["registry"],
        json!({"username": "octo", "password": "pat", "serverUrl": "ghcr.io"})
    );
    assert_eq!(
        c["environmentVariables"],
        json!({"HOME": "/github/home", "NODE_ENV": "development"})
    );
    assert_eq!(c["portMappings"], json!(["8080:80"]));
    let targets: Vec<&str> = c["systemMountVolumes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["targetVolumePath"].as_str().unwrap())
        .collect();
    assert_eq!(
        targets,
        [
            "/var/run/docker.sock",
            "/__w",
            "/__e",
            "/__w/_temp",
            "/__w/_actions",
            "/__w/_tool",
            "/github/home",
            "/github/workflow"
        ]
    );
    assert_eq!(
        c["systemMountVolumes"][1]["sourceVolumePath"],
        work.to_string_lossy().as_ref()
    );
    assert_eq!(c["systemMountVolumes"][2]["readOnly"], true);
    assert_eq!(
        c["userMountVolumes"],
        json!([
            {"userProvidedValue": "cache:/cache", "sourceVolumePath": "cache", "targetVolumePath": "/cache", "readOnly": false},
            {"userProvidedValue": "/data:ro", "sourceVolumePath": null, "targetVolumePath": "/data", "readOnly": true}
        ])
    );
    let services = p["args"]["services"].as_array().unwrap();
    assert_eq!(services.len(), 2);
    assert_eq!(services[0]["image"], "redis:7");
    assert_eq!(services[1]["image"], "postgres:16");
    for s in services {
        assert_eq!(s["workingDirectory"], Value::Null);
        assert_eq!(s["registry"], Value::Null);
        assert_eq!(s["systemMountVolumes"], json!([]));
        assert!(s.get("contextName").is_none(), "the runner sends no service alias");
    }
    assert_eq!(services[1]["createOptions"], "--health-cmd pg_isready");
    assert_eq!(services[1]["environmentVariables"], json!({"POSTGRES_PASSWORD": "pw"}));

    // run_script_step: container paths, state from prepare_job.
    let s = &req[1];
    assert_eq!(s["state"], json!({"jobPod": "pod-1"}));
    assert_eq!(s["args"]["entryPoint"], "sh");
    let script = s["args"]["entryPointArgs"].as_array().unwrap();
    assert_eq!(script.len(), 2);
    assert_eq!(script[0], "-e");
    let script = script[1].as_str().unwrap();
    assert!(script.starts_with("/__w/_temp/") && script.ends_with(".sh"), "{script}");
    let host_script = work.join(script.trim_start_matches("/__w/"));
    assert_eq!(std::fs::read_to_string(host_script).unwrap(), "echo in container");
    let env = &s["args"]["environmentVariables"];
    assert_eq!(env["GITHUB_WORKSPACE"], "/__w/hello/hello");
    assert_eq!(env["RUNNER_TEMP"], "/__w/_temp");
    assert_eq!(env["GITHUB_EVENT_PATH"], "/github/workflow/event.json");
    assert_eq!(env["STEP_VAR"], "s");
    assert_eq!(env["JOB_VAR"], "j");
    assert!(
        env["GITHUB_ENV"]
            .as_str()
            .unwrap()
            .starts_with("/__w/_temp/_runner_file_commands/set_env_")
    );
    assert_eq!(s["args"]["prependPath"], json!([]));
    assert_eq!(s["args"]["workingDirectory"], "/__w/hello/hello");

    // run_container_step: the action's view.
    let a = &req[2];
    assert_eq!(a["state"], json!({"jobPod": "pod-1"}));
    let args = &a["args"];
    assert_eq!(args["image"], "alpine:3.20");
    assert_eq!(args["dockerfile"], Value::Null);
    assert_eq!(args["entryPoint"], "sh");
    assert_eq!(args["entryPointArgs"], json!(["-c", "echo", "hi"]));
    assert_eq!(args["workingDirectory"], "/github/workspace");
    assert_eq!(args["createOptions"], Value::Null);
    assert_eq!(args["registry"], Value::Null);
    assert_eq!(args["portMappings"], json!([]));
    assert_eq!(args["userMountVolumes"], json!([]));
    let targets: Vec<&str> = args["systemMountVolumes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["targetVolumePath"].as_str().unwrap())
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
    assert_eq!(
        args["systemMountVolumes"][5]["sourceVolumePath"],
        ws.to_string_lossy().as_ref()
    );
    let env = &args["environmentVariables"];
    assert_eq!(env["GITHUB_WORKSPACE"], "/github/workspace");
    assert_eq!(env["HOME"], "/github/home");
    assert_eq!(env["RUNNER_TEMP"], "/github/runner_temp");
    assert!(
        env["GITHUB_OUTPUT"]
            .as_str()
            .unwrap()
            .starts_with("/github/file_commands/set_output_")
    );

    // cleanup_job: `{}` and the state the container step returned (read case-insensitively).
    assert_eq!(req[3]["args"], json!({}));
    assert_eq!(req[3]["state"], json!({"jobPod": "pod-2"}));

    // The hook ran on the host, in the workspace, with the runner's variables; each response file
    // existed and was empty when it started.
    let env_log = std::fs::read_to_string(hook_dir.path().join("env.log")).unwrap();
    let rows: Vec<Vec<&str>> = env_log.lines().map(|l| l.split('|').collect()).collect();
    assert_eq!(rows.len(), 4);
    for row in &rows {
        assert_eq!(row[1], "empty", "{row:?}");
        assert_eq!(row[2], ws.to_string_lossy());
        assert_eq!(row[3], work.join("hello").to_string_lossy());
        assert_eq!(row[4], work.join("_temp").to_string_lossy());
        assert_eq!(row[5], RUNNER_NAME);
        assert_eq!(row[6], ws.to_string_lossy());
    }

    // Services are mapped to aliases by position; the job container's id and network are kept.
    assert_eq!(job.services["redis"].id.as_deref(), Some("svc-redis"));
    assert_eq!(job.services["redis"].ports["6379"], "31001");
    assert_eq!(job.services["postgres"].id.as_deref(), Some("svc-pg"));
    assert_eq!(job.services["postgres"].ports["5432"], "31002");
    let container = job.container.as_ref().unwrap();
    assert_eq!(
        (container.id.as_deref(), container.network.as_deref()),
        (Some("c-1"), Some("net-1"))
    );

    // Hook output is streamed under the step it belongs to; workflow commands become annotations.
    assert!(
        stub.lines_of(-1, "stdout")
            .contains(&"hook prepare_job running".to_owned())
    );
    assert!(
        stub.lines_of(-1, "stderr")
            .contains(&"hook prepare_job stderr".to_owned())
    );
    assert!(
        stub.lines_of(0, "stdout")
            .contains(&"hook run_script_step running".to_owned())
    );
    assert!(
        stub.lines_of(1, "stdout")
            .contains(&"##[warning]container step note".to_owned())
    );
    assert!(
        job.annotations
            .iter()
            .any(|a| a.level == "warning" && a.message == "container step note" && a.step == 1)
    );
    let c = stub.complete();
    assert_eq!(step_results(&c), [("succeeded".into(), 0), ("succeeded".into(), 0)]);
}

#[tokio::test]
async fn failing_hook_fails_the_job_and_cleanup_still_runs() {
    let root = tempfile::tempdir().unwrap();
    let hook_dir = tempfile::tempdir().unwrap();
    let extra = r#"  run_script_step)
    echo "::error::Error: failed to run script step: exit code 2"
    exit 1 ;;"#;
    let hook = fake_hook(hook_dir.path(), extra);
    let (stub, url) = start_stub(Some(assigned(container_job())), 404).await;
    let outcome = run_until(args(&url, root.path(), Some(&hook)), CancellationToken::new()).await;
    assert_eq!(exit_code(&outcome), 0);
    let job = completed(&outcome);
    assert_eq!(job.result, JobResult::Failed);
    assert_eq!(
        commands(&hook_calls(hook_dir.path())),
        ["prepare_job", "run_script_step", "cleanup_job"]
    );
    let c = stub.complete();
    assert_eq!(c.result, "failed");
    assert_eq!(step_results(&c), [("failed".into(), 1), ("skipped".into(), 0)]);
    let step0 = stub.lines_of(0, "stdout");
    assert!(
        step0.contains(&"##[error]Process completed with exit code 1.".to_owned()),
        "{step0:?}"
    );
    assert!(step0.contains(&format!("##[error]{HOOK_FAILED}")));
    assert!(step0.contains(&"##[error]Error: failed to run script step: exit code 2".to_owned()));
    assert!(job.annotations.iter().any(|a| a.level == "error" && a.step == 0));
}

#[tokio::test]
async fn failing_prepare_job_skips_the_steps_and_still_cleans_up() {
    let root = tempfile::tempdir().unwrap();
    let hook_dir = tempfile::tempdir().unwrap();
    let hook = fake_hook(hook_dir.path(), "  prepare_job) exit 1 ;;");
    let (stub, url) = start_stub(Some(assigned(container_job())), 404).await;
    let outcome = run_until(args(&url, root.path(), Some(&hook)), CancellationToken::new()).await;
    assert_eq!(completed(&outcome).result, JobResult::Failed);
    assert_eq!(commands(&hook_calls(hook_dir.path())), ["prepare_job", "cleanup_job"]);
    assert_eq!(
        step_results(&stub.complete()),
        [("skipped".into(), 0), ("skipped".into(), 0)]
    );
}

#[tokio::test]
async fn prepare_job_without_is_alpine_fails() {
    let root = tempfile::tempdir().unwrap();
    let hook_dir = tempfile::tempdir().unwrap();
    let extra = r#"  prepare_job) printf '%s' '{"state":{}}' > "$resp" ;;"#;
    let hook = fake_hook(hook_dir.path(), extra);
    let (stub, url) = start_stub(Some(assigned(container_job())), 404).await;
    let outcome = run_until(args(&url, root.path(), Some(&hook)), CancellationToken::new()).await;
    assert_eq!(completed(&outcome).result, JobResult::Failed);
    let lines = stub.lines();
    let want = "##[error]The property 'isAlpine' is required but was not found in the response file.";
    assert!(lines.iter().any(|l| l == want), "{lines:?}");
    assert_eq!(commands(&hook_calls(hook_dir.path())), ["prepare_job", "cleanup_job"]);
}

#[tokio::test]
async fn cancel_during_a_hook_step_interrupts_it_and_cleans_up() {
    let root = tempfile::tempdir().unwrap();
    let hook_dir = tempfile::tempdir().unwrap();
    let extra = format!(
        r#"  run_script_step)
    trap 'echo INT >> "{d}/signals"; exit 130' INT
    echo ready > "{d}/ready"
    sleep 30 &
    wait $! ;;"#,
        d = hook_dir.path().display()
    );
    let hook = fake_hook(hook_dir.path(), &extra);
    let (stub, url) = start_stub(Some(assigned(container_job())), 404).await;
    let shutdown = CancellationToken::new();
    let started = Instant::now();
    let runner = tokio::spawn(run_until(args(&url, root.path(), Some(&hook)), shutdown.clone()));
    wait_for_file(&hook_dir.path().join("ready")).await;
    shutdown.cancel();
    let outcome = runner.await.unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "SIGINT ended the hook at once"
    );
    assert_eq!(exit_code(&outcome), 0);
    assert_eq!(completed(&outcome).result, JobResult::Canceled);
    assert_eq!(
        std::fs::read_to_string(hook_dir.path().join("signals")).unwrap().trim(),
        "INT"
    );
    assert_eq!(
        commands(&hook_calls(hook_dir.path())),
        ["prepare_job", "run_script_step", "cleanup_job"]
    );
    let c = stub.complete();
    assert_eq!(c.result, "canceled");
    assert_eq!(step_results(&c), [("failed".into(), 130), ("skipped".into(), 0)]);
    assert_eq!(stub.calls().last().map(String::as_str), Some("offline"));
}

#[tokio::test]
async fn cancel_during_a_host_step_escalates_and_skips_the_rest() {
    let root = tempfile::tempdir().unwrap();
    let marker = root.path().join("started");
    let spec = JobSpec {
        steps: vec![
            run_step(&format!("touch '{}'\nsleep 30\necho after", marker.display())),
            run_step("echo never"),
        ],
        ..Default::default()
    };
    let (stub, url) = start_stub(Some(assigned(spec)), 404).await;
    let shutdown = CancellationToken::new();
    // sh defers SIGINT while it waits for `sleep`, so SIGTERM (here after 300 ms) ends it.
    let esc = Escalation {
        interrupt_grace: Duration::from_millis(300),
        terminate_grace: Duration::from_millis(300),
    };
    let runner = tokio::spawn(run_with(args(&url, root.path(), None), shutdown.clone(), esc));
    wait_for_file(&marker).await;
    shutdown.cancel();
    let outcome = runner.await.unwrap();
    assert_eq!(completed(&outcome).result, JobResult::Canceled);
    let c = stub.complete();
    assert_eq!(c.result, "canceled");
    assert_eq!(step_results(&c), [("failed".into(), 143), ("skipped".into(), 0)]);
    assert!(!stub.lines().contains(&"after".to_owned()));
}

#[tokio::test]
async fn bad_or_missing_jit_config_is_a_configuration_error() {
    let outcome = run_until(
        RunnerArgs {
            jitconfig: Some(Secret::new("not base64!!")),
            ..Default::default()
        },
        CancellationToken::new(),
    )
    .await;
    assert!(matches!(outcome, Err(RunnerError::InvalidJitConfig(_))), "{outcome:?}");
    assert_eq!(exit_code(&outcome), 1);
    let msg = outcome.unwrap_err().to_string();
    assert!(
        msg.contains("--jitconfig") && msg.contains("ACTIONS_RUNNER_INPUT_JITCONFIG"),
        "{msg}"
    );

    let outcome = run_until(RunnerArgs::default(), CancellationToken::new()).await;
    assert!(matches!(outcome, Err(RunnerError::MissingJitConfig)));
    assert_eq!(exit_code(&outcome), 1);
    let msg = outcome.unwrap_err().to_string();
    assert!(
        msg.contains("--jitconfig") && msg.contains("ACTIONS_RUNNER_INPUT_JITCONFIG"),
        "{msg}"
    );
}

#[tokio::test]
async fn missing_hook_file_fails_with_the_runner_message() {
    let root = tempfile::tempdir().unwrap();
    let missing = root.path().join("hooks/index.js");
    let (stub, url) = start_stub(Some(assigned(container_job())), 404).await;
    let outcome = run_until(args(&url, root.path(), Some(&missing)), CancellationToken::new()).await;
    assert_eq!(completed(&outcome).result, JobResult::Failed);
    let want = format!(
        "##[error]File not found at '{}'. Set ACTIONS_RUNNER_CONTAINER_HOOKS to the path of an existing file.",
        missing.display()
    );
    let lines = stub.lines();
    assert!(lines.contains(&want), "{lines:?}");
    assert!(lines.contains(&format!("##[error]{HOOK_FAILED}")));
    assert_eq!(
        step_results(&stub.complete()),
        [("skipped".into(), 0), ("skipped".into(), 0)]
    );
}

#[tokio::test]
async fn hook_with_a_wrong_extension_is_refused() {
    let root = tempfile::tempdir().unwrap();
    let hook = root.path().join("hook.py");
    std::fs::write(&hook, "").unwrap();
    let (stub, url) = start_stub(Some(assigned(container_job())), 404).await;
    let outcome = run_until(args(&url, root.path(), Some(&hook)), CancellationToken::new()).await;
    assert_eq!(completed(&outcome).result, JobResult::Failed);
    let want = format!(
        "##[error]Invalid file extension at '{}'. ACTIONS_RUNNER_CONTAINER_HOOKS must be a path to a file with one of the following extensions: .js, .sh, .ps1",
        hook.display()
    );
    assert!(stub.lines().contains(&want), "{:?}", stub.lines());
}

#[tokio::test]
async fn container_job_without_a_hook_or_required_container_fails_with_the_runner_messages() {
    let root = tempfile::tempdir().unwrap();
    let (stub, url) = start_stub(Some(assigned(container_job())), 404).await;
    let outcome = run_until(args(&url, root.path(), None), CancellationToken::new()).await;
    assert_eq!(completed(&outcome).result, JobResult::Failed);
    assert!(
        stub.lines()
            .contains(&format!("##[error]{}", rarc_sim::runner::NO_CONTAINER_SUPPORT_MSG))
    );

    let root = tempfile::tempdir().unwrap();
    let (stub, url) = start_stub(
        Some(assigned(JobSpec {
            steps: vec![run_step("echo hi")],
            ..Default::default()
        })),
        404,
    )
    .await;
    let mut a = args(&url, root.path(), None);
    a.require_job_container = Some("True".into());
    let outcome = run_until(a, CancellationToken::new()).await;
    assert_eq!(completed(&outcome).result, JobResult::Failed);
    assert!(
        stub.lines()
            .contains(&format!("##[error]{}", rarc_sim::runner::REQUIRE_JOB_CONTAINER_MSG))
    );
    assert_eq!(step_results(&stub.complete()), [("skipped".into(), 0)]);
}

#[tokio::test]
async fn js_hook_runs_with_node() {
    // `make test` installs node (scripts/ensure-deps); its absence is a failure, not a skip.
    assert!(
        rarc_sim_which("node").is_some(),
        "node must be on PATH for the .js hook test"
    );
    let root = tempfile::tempdir().unwrap();
    let hook_dir = tempfile::tempdir().unwrap();
    let hook = hook_dir.path().join("index.js");
    std::fs::write(
        &hook,
        r#"const fs = require('fs');
const input = JSON.parse(fs.readFileSync(0, 'utf8').trim().split('\n').pop());
console.log(`js hook ${input.command} cwd=${process.cwd()}`);
if (input.command === 'prepare_job') {
  fs.appendFileSync(input.responseFile, JSON.stringify({ state: { js: true }, context: { services: [{ ports: {} }] } }) + '\n');
}
"#,
    )
    .unwrap();
    let spec = JobSpec {
        services: vec![ServiceSpec {
            name: "redis".into(),
            container: ContainerSpec {
                image: "redis".into(),
                ..Default::default()
            },
        }],
        steps: vec![run_step("echo on host")],
        ..Default::default()
    };
    let (stub, url) = start_stub(Some(assigned(spec)), 404).await;
    let outcome = run_until(args(&url, root.path(), Some(&hook)), CancellationToken::new()).await;
    assert_eq!(completed(&outcome).result, JobResult::Succeeded, "{:?}", stub.lines());
    let ws = root.path().join("_work/hello/hello");
    let lines = stub.lines();
    assert!(
        lines.contains(&format!("js hook prepare_job cwd={}", ws.display())),
        "{lines:?}"
    );
    assert!(lines.contains(&format!("js hook cleanup_job cwd={}", ws.display())));
    assert!(lines.contains(&"echo on host".to_owned()) || lines.contains(&"on host".to_owned()));
    assert!(
        stub.lines_of(0, "stdout").contains(&"on host".to_owned()),
        "services only: steps run on the host"
    );
}

fn rarc_sim_which(name: &str) -> Option<PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

#[tokio::test]
async fn removed_runner_exits_cleanly_without_a_job() {
    let root = tempfile::tempdir().unwrap();
    let (stub, url) = start_stub(None, 404).await;
    let outcome = run_until(args(&url, root.path(), None), CancellationToken::new()).await;
    assert!(matches!(outcome, Ok(RunnerOutcome::Removed)), "{outcome:?}");
    assert_eq!(exit_code(&outcome), 0);
    assert_eq!(stub.calls(), ["online", "job"]);
}

#[tokio::test]
async fn shutdown_while_waiting_goes_offline() {
    let root = tempfile::tempdir().unwrap();
    let (stub, url) = start_stub(None, 202).await;
    let shutdown = CancellationToken::new();
    let runner = tokio::spawn(run_until(args(&url, root.path(), None), shutdown.clone()));
    tokio::time::sleep(Duration::from_millis(700)).await;
    shutdown.cancel();
    let outcome = runner.await.unwrap();
    assert!(matches!(outcome, Ok(RunnerOutcome::Stopped)), "{outcome:?}");
    assert_eq!(exit_code(&outcome), 0);
    let calls = stub.calls();
    assert_eq!(calls.last().map(String::as_str), Some("offline"));
    assert!(
        calls.iter().filter(|c| *c == "job").count() >= 2,
        "202 means poll again: {calls:?}"
    );
}

#[tokio::test]
async fn rejected_token_is_exit_1_and_unreachable_service_is_exit_2() {
    let root = tempfile::tempdir().unwrap();
    let (_stub, url) = start_stub(None, 404).await;
    let mut a = args(&url, root.path(), None);
    a.jitconfig = Some(jit(&url, "wrong-token"));
    let outcome = run_until(a, CancellationToken::new()).await;
    assert!(matches!(outcome, Err(RunnerError::Unauthorized { .. })), "{outcome:?}");
    assert_eq!(exit_code(&outcome), 1);
    assert!(!format!("{outcome:?}").contains("wrong-token"));

    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let url = format!("http://{closed}/tenant/1/");
    let outcome = run_until(args(&url, root.path(), None), CancellationToken::new()).await;
    assert!(matches!(outcome, Err(RunnerError::Unavailable { .. })), "{outcome:?}");
    assert_eq!(exit_code(&outcome), 2);
}
