//! The docker mode end to end: the built `rarc-hooks docker` binary, fed request lines as the runner
//! writes them, against the real Docker daemon (`scripts/dockerd-up`), with test images built
//! `FROM scratch` from Debian's busybox-static (`rarc-test/hooks-*`, reused when present) and a real
//! registry (Debian's `docker-registry`) for logins.
//!
//! Every test uses a runner name of its own, so its instance label (the hex of the name) marks only
//! what that test's hook created; after each test nothing with that label is left (containers,
//! networks, images). A guard removes leftovers by label if a test fails halfway.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::docker::{ALPINE, BUSYBOX, HTTPD, docker, docker_host, docker_input, docker_ok, image_exists, images};
use common::runner::{RunnerDir, free_port, mount, read_response, request_line, unique};
use common::{Outcome, binary, finish, send};
use nix::sys::signal::Signal;
use serde_json::{Value, json};
use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const LIMIT: Duration = Duration::from_secs(180);

// ---------------------------------------------------------------------------------------------
// The daemon and the test images

// ---------------------------------------------------------------------------------------------
// A fake runner: its layout, its environment, and the hook invocations

/// The fake runner of one test, and what its hooks create on the daemon.
struct Runner {
    dir: RunnerDir,
    extra_env: Vec<(String, String)>,
}

impl std::ops::Deref for Runner {
    type Target = RunnerDir;
    fn deref(&self) -> &RunnerDir {
        &self.dir
    }
}

impl Runner {
    fn new(test: &str) -> Self {
        images();
        Self {
            dir: RunnerDir::new(test).unwrap(),
            extra_env: Vec::new(),
        }
    }

    /// A container action's system mounts (§1.4.3, without the docker socket).
    fn step_mounts(&self) -> Value {
        let r = &self.root;
        json!([
            mount(&r.join("_work/_temp"), "/github/runner_temp", false),
            mount(&r.join("_work/_temp/_github_home"), "/github/home", false),
            mount(&r.join("_work/_temp/_github_workflow"), "/github/workflow", false),
            mount(
                &r.join("_work/_temp/_runner_file_commands"),
                "/github/file_commands",
                false
            ),
            mount(&self.workspace(), "/github/workspace", false),
        ])
    }

    fn service(image: &str, name: Option<&str>) -> Value {
        let mut s = json!({
            "image": image, "dockerfile": null, "entryPoint": null, "entryPointArgs": [],
            "workingDirectory": null, "createOptions": null, "registry": null,
            "environmentVariables": {}, "portMappings": [], "systemMountVolumes": [], "userMountVolumes": []
        });
        if let Some(n) = name {
            s["contextName"] = json!(n);
        }
        s
    }

    fn command(&self) -> Command {
        let mut cmd = Command::new(binary());
        cmd.arg("docker");
        self.hook_env(&mut cmd)
            .env("DOCKER_HOST", docker_host())
            .env("RARC_HOOKS_KILL_GRACE", "2")
            .envs(self.extra_env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        cmd
    }

    /// One request line (with a fresh, empty response file).
    fn line(&self, command: &str, args: &Value, state: Option<&Value>) -> (String, PathBuf) {
        let response = self.response_file().unwrap();
        (request_line(command, &response, args, state), response)
    }

    fn spawn(&self, command: &str, args: &Value, state: Option<&Value>) -> Child {
        let (line, _) = self.line(command, args, state);
        let mut child = self.command().spawn().unwrap();
        child.stdin.take().unwrap().write_all(line.as_bytes()).unwrap();
        child
    }

    fn run(&self, command: &str, args: &Value, state: Option<&Value>) -> Outcome {
        finish(self.spawn(command, args, state), LIMIT)
    }

    /// prepare_job; returns the outcome and the response (Null when none was written).
    fn prepare(&self, args: &Value) -> (Outcome, Value) {
        let (line, response) = self.line("prepare_job", args, None);
        let mut child = self.command().spawn().unwrap();
        child.stdin.take().unwrap().write_all(line.as_bytes()).unwrap();
        let out = finish(child, LIMIT);
        (out, read_response(&response))
    }

    fn prepare_ok(&self, args: &Value) -> Value {
        let (out, response) = self.prepare(args);
        assert_eq!(out.code, Some(0), "{out:?}");
        assert_eq!(out.stdout.matches("::error::").count(), 0, "{out:?}");
        response
    }

    fn script(&self, state: &Value, script: &str) -> Outcome {
        let file = format!("{}.sh", unique());
        std::fs::write(self.temp().join(&file), script).unwrap();
        let args = json!({"entryPoint": "sh", "entryPointArgs": ["-e", format!("/__w/_temp/{file}")],
            "environmentVariables": {"CI": "true"}, "prependPath": [], "workingDirectory": "/__w/repo/repo"});
        self.run("run_script_step", &args, Some(state))
    }

    /// Everything on the daemon carrying this runner's label.
    fn leftovers(&self) -> Vec<String> {
        let filter = format!("label={}", self.label);
        let mut found = Vec::new();
        for (kind, args) in [
            ("container", vec!["ps", "-aq", "--filter", &filter]),
            ("network", vec!["network", "ls", "-q", "--filter", &filter]),
            ("image", vec!["images", "-q", "--filter", &filter]),
        ] {
            for id in docker_ok(&args).split_whitespace() {
                found.push(format!("{kind} {id}"));
            }
        }
        found
    }

    fn cleanup_ok(&self) {
        let out = self.run("cleanup_job", &json!({}), None);
        assert_eq!(out.code, Some(0), "{out:?}");
        assert_eq!(self.leftovers(), Vec::<String>::new(), "left after cleanup_job");
    }
}

impl Drop for Runner {
    fn drop(&mut self) {
        // Only after a failure: what this test's hook created, by its label.
        let filter = format!("label={}", self.label);
        let ids = docker_ok(&["ps", "-aq", "--filter", &filter]);
        let ids: Vec<&str> = ids.split_whitespace().collect();
        if !ids.is_empty() {
            let _ = docker().args(["rm", "-f", "-v"]).args(&ids).output();
        }
        for net in docker_ok(&["network", "ls", "-q", "--filter", &filter]).split_whitespace() {
            let _ = docker().args(["network", "rm", net]).output();
        }
        for image in docker_ok(&["images", "-q", "--filter", &filter]).split_whitespace() {
            let _ = docker().args(["rmi", "-f", image]).output();
        }
    }
}

fn inspect(id: &str, format: &str) -> String {
    docker_ok(&["inspect", "--format", format, id]).trim().to_owned()
}

fn is_hex64(s: &str) -> bool {
    s.len() == 64 && s.chars().all(|c| c.is_ascii_hexdigit())
}

fn error_line(out: &Outcome) -> String {
    out.stdout
        .lines()
        .find(|l| l.starts_with("::error::"))
        .unwrap_or_default()
        .to_owned()
}

// ---------------------------------------------------------------------------------------------
// Scenarios

/// §7 8, 11, 17, 22–26, 29, 30, 43: a job container alone; script steps with env, prepend path,
/// split args, working directory, user volumes, workspace persistence; secrets never logged.
#[test]
fn job_container_and_script_steps() {
    let r = Runner::new("job");
    std::fs::create_dir_all(r.workspace().join("data")).unwrap();
    std::fs::write(r.workspace().join("data/file.txt"), "hello").unwrap();
    let mut job = r.job_container(BUSYBOX);
    job["environmentVariables"] = json!({"HOME": "/github/home", "JOB_SECRET": "s3cr3t-job-value", "CI": "false"});
    job["userMountVolumes"] = json!([mount(&r.workspace().join("data"), "/data", true)]);
    job["createOptions"] = json!("--label 'rarc.test.note=with spaces' --cpus 0.5 --hostname job-host");
    let (out, response) = r.prepare(&json!({"container": job, "services": []}));
    assert_eq!(out.code, Some(0), "{out:?}");
    for text in [&out.stdout, &out.stderr] {
        assert!(!text.contains("s3cr3t"), "a secret was logged: {out:?}");
    }
    assert_eq!(response["isAlpine"], false);
    let id = response["context"]["container"]["id"].as_str().unwrap().to_owned();
    assert!(is_hex64(&id), "{response}");
    let network = response["context"]["container"]["network"].as_str().unwrap().to_owned();
    assert!(network.starts_with("github_network_"), "{response}");
    assert_eq!(response["context"]["container"]["ports"], json!({}));
    assert_eq!(response["context"]["services"], json!([]));
    let state = response["state"].clone();
    assert_eq!(state["container"], json!(id));
    assert_eq!(state["network"], json!(network));

    // What was created: label, network, entrypoint, env, options with spaces, mounts.
    assert_eq!(
        inspect(&id, &format!("{{{{index .Config.Labels \"{}\"}}}}", r.label)),
        ""
    );
    assert_eq!(
        inspect(&id, "{{index .Config.Labels \"rarc.test.note\"}}"),
        "with spaces"
    );
    assert_eq!(
        inspect(&id, "{{json .Config.Entrypoint}} {{json .Config.Cmd}}"),
        r#"["tail"] ["-f","/dev/null"]"#
    );
    assert_eq!(
        inspect(&id, "{{.HostConfig.NanoCpus}} {{.Config.Hostname}}"),
        "500000000 job-host"
    );
    assert_eq!(inspect(&id, "{{.HostConfig.NetworkMode}}"), network);
    let env = inspect(&id, "{{json .Config.Env}}");
    assert!(
        env.contains("\"GITHUB_ACTIONS=true\"") && env.contains("\"CI=false\""),
        "{env}"
    );
    assert!(!env.contains("CI=true"), "{env}");
    assert_eq!(inspect(&network, &format!("{{{{index .Labels \"{}\"}}}}", r.label)), "");

    // A script step: env, args re-joined and shell-split, output order, PATH, working directory.
    let step = r#"echo "out 1"
echo "err 1" >&2
echo "out 2"
[ "$STEP_SECRET" = 's3cr3t-step-$HOME`x`"\' ] && echo secret-ok
echo "pwd=$(pwd)"
echo "path=$PATH"
echo "gha=$GITHUB_ACTIONS ci=$CI job=${JOB_SECRET:+set}"
cat /data/file.txt; echo
cat /github/workflow/event.json; echo
echo persisted > a.txt
"#;
    std::fs::write(r.temp().join("step.sh"), step).unwrap();
    let args = json!({"entryPoint": "sh", "entryPointArgs": ["-e", "/__w/_temp/step.sh"],
        "environmentVariables": {"STEP_SECRET": "s3cr3t-step-$HOME`x`\"\\", "CI": "true"},
        "prependPath": ["/opt/a", "/opt/b"], "workingDirectory": "/__w/repo/repo"});
    let out = r.run("run_script_step", &args, Some(&state));
    assert_eq!(out.code, Some(0), "{out:?}");
    assert_eq!(
        out.stdout,
        "out 1\nout 2\nsecret-ok\npwd=/__w/repo/repo\npath=/opt/a:/opt/b:/usr/local/bin:/usr/bin:/bin\n\
         gha=true ci=true job=set\nhello\n{\"x\":1}\n"
    );
    assert!(out.stderr.contains("err 1\n"), "{out:?}");
    assert!(!out.stderr.contains("s3cr3t"), "{out:?}");
    assert_eq!(
        std::fs::read_to_string(r.workspace().join("a.txt")).unwrap(),
        "persisted\n"
    );

    // prependPath as an old-style string; split args; the next step sees the workspace file.
    let args = json!({"entryPoint": "sh", "entryPointArgs": ["-c", "'echo", "$PATH;", "cat", "a.txt;", "printf", "%s,", "\"$0\"", "\"$@\"'", "\"Mona", "the", "Octocat\"", "x"],
        "environmentVariables": {}, "prependPath": "/old:/style", "workingDirectory": "/__w/repo/repo"});
    let out = r.run("run_script_step", &args, Some(&state));
    assert_eq!(out.code, Some(0), "{out:?}");
    assert_eq!(
        out.stdout,
        "/old:/style:/usr/local/bin:/usr/bin:/bin\npersisted\nMona the Octocat,x,"
    );

    // A working directory that does not exist fails the step.
    let args = json!({"entryPoint": "sh", "entryPointArgs": ["-c", "'echo never'"],
        "environmentVariables": {}, "prependPath": [], "workingDirectory": "/__w/nope/nope"});
    let out = r.run("run_script_step", &args, Some(&state));
    assert_ne!(out.code, Some(0), "{out:?}");
    assert!(!out.stdout.contains("never"), "{out:?}");

    r.cleanup_ok();
    // Idempotent: again with nothing left.
    r.cleanup_ok();
}

/// §7 27: the step's real exit code (0, 1, 3, and 137 for a step killed by SIGKILL).
#[test]
fn script_step_exit_codes() {
    let r = Runner::new("codes");
    let response = r.prepare_ok(&json!({"container": r.job_container(BUSYBOX), "services": []}));
    let state = &response["state"];
    for (script, code) in [("exit 0", 0), ("echo x; exit 1", 1), ("exit 3", 3), ("kill -9 $$", 137)] {
        let out = r.script(state, script);
        assert_eq!(out.code, Some(code), "{script}: {out:?}");
    }
    r.cleanup_ok();
}

/// §7 32 (shortened): a step silent for 25 s through the real exec path ends with its own status,
/// neither hanging nor passing falsely; the two run side by side.
#[test]
fn long_silent_steps() {
    let r = Runner::new("silent");
    let response = r.prepare_ok(&json!({"container": r.job_container(BUSYBOX), "services": []}));
    let state = response["state"].clone();
    let start = Instant::now();
    let children: Vec<(Child, i32)> = [("sleep 25; echo woke", 0), ("sleep 25; exit 1", 1)]
        .into_iter()
        .map(|(script, code)| {
            let file = format!("{}.sh", unique());
            std::fs::write(r.temp().join(&file), script).unwrap();
            let args = json!({"entryPoint": "sh", "entryPointArgs": ["-e", format!("/__w/_temp/{file}")],
                "environmentVariables": {}, "prependPath": [], "workingDirectory": "/__w/repo/repo"});
            (r.spawn("run_script_step", &args, Some(&state)), code)
        })
        .collect();
    for (child, code) in children {
        let out = finish(child, Duration::from_secs(120));
        assert_eq!(out.code, Some(code), "{out:?}");
        if code == 0 {
            assert_eq!(out.stdout, "woke\n");
        }
    }
    let took = start.elapsed();
    assert!(took >= Duration::from_secs(25), "ended early: {took:?}");
    assert!(took < Duration::from_secs(40), "took {took:?}");
    r.cleanup_ok();
}

/// §7 9, 10, 20, 14: services with ports and a health check, reachable by their workflow name and
/// their image name from the job container; Alpine detected.
#[test]
fn services_with_health_checks_ports_and_names() {
    let r = Runner::new("services");
    let (p1, p2) = (free_port(), free_port());
    let mut web = Runner::service(HTTPD, Some("web"));
    web["portMappings"] = json!([format!("{p1}:80"), format!("{p2}:8080")]);
    let mut plain = Runner::service(BUSYBOX, None);
    plain["entryPoint"] = json!("sleep");
    plain["entryPointArgs"] = json!(["1000"]);
    plain["portMappings"] = json!(["80"]);
    let response = r.prepare_ok(&json!({"container": r.job_container(ALPINE), "services": [web, plain]}));
    assert_eq!(response["isAlpine"], true, "{response}");
    let services = response["context"]["services"].as_array().unwrap();
    assert_eq!(services.len(), 2);
    assert_eq!(
        services[0]["ports"],
        json!({"80": p1.to_string(), "8080": p2.to_string()})
    );
    let random = services[1]["ports"]["80"].as_str().unwrap();
    assert!(random.parse::<u16>().unwrap() > 0);
    let web_id = services[0]["id"].as_str().unwrap();
    assert!(is_hex64(web_id));
    assert_eq!(response["state"]["services"].as_array().unwrap().len(), 2);
    // prepare_job waited for the health check.
    assert_eq!(inspect(web_id, "{{.State.Health.Status}}"), "healthy");

    // By name from the job container, on the job network.
    let out = r.script(
        &response["state"],
        "wget -q -O- http://web/; wget -q -O- http://hooks-httpd/; nslookup hooks-busybox >/dev/null 2>&1 || echo no-alias-for-shared",
    );
    assert_eq!(out.code, Some(0), "{out:?}");
    assert!(out.stdout.starts_with("hello-from-web\nhello-from-web\n"), "{out:?}");
    // From the host, through the published port.
    let mut conn = std::net::TcpStream::connect(("127.0.0.1", p1)).unwrap();
    conn.write_all(b"GET / HTTP/1.0\r\n\r\n").unwrap();
    let mut body = String::new();
    std::io::Read::read_to_string(&mut conn, &mut body).unwrap();
    assert!(body.ends_with("hello-from-web\n"), "{body}");
    r.cleanup_ok();
}

/// §7 12, 20: services only; an unhealthy service fails prepare_job naming it (create options
/// with spaces in values), and cleanup_job still removes everything.
#[test]
fn unhealthy_service_fails_prepare() {
    let r = Runner::new("unhealthy");
    let mut db = Runner::service(BUSYBOX, Some("db"));
    db["entryPoint"] = json!("sleep");
    db["entryPointArgs"] = json!(["1000"]);
    db["createOptions"] =
        json!("--health-cmd \"test -f /nope || exit 1\" --health-interval 1s --health-retries 2 --label 'x=a b'");
    let (out, response) = r.prepare(&json!({"container": null, "services": [db]}));
    assert_eq!(out.code, Some(1), "{out:?}");
    assert_eq!(response, Value::Null);
    let e = error_line(&out);
    assert!(
        e.starts_with("::error::Failed to initialize containers, Container 'db' is unhealthy with status 'unhealthy'"),
        "{out:?}"
    );
    assert!(!r.leftovers().is_empty());
    r.cleanup_ok();

    // Services only, healthy: works without a job container.
    let response = r.prepare_ok(&json!({"container": null, "services": [Runner::service(HTTPD, Some("web"))]}));
    assert_eq!(response["isAlpine"], false);
    assert!(response["context"].get("container").is_none(), "{response}");
    assert_eq!(response["context"]["services"][0]["ports"], json!({}));
    r.cleanup_ok();
}

/// §7 34–36, 38, 40, 42: container steps from an image (explicit entrypoint, args with spaces and
/// quotes, CI/GITHUB_ACTIONS, workspace and RUNNER_TEMP mounts, the real exit code) and from a
/// Dockerfile (built, run, and its image removed by cleanup_job).
#[test]
fn container_steps_from_an_image_and_a_dockerfile() {
    let r = Runner::new("container-step");
    let response = r
        .prepare_ok(&json!({"container": r.job_container(BUSYBOX), "services": [Runner::service(HTTPD, Some("web"))]}));
    let state = response["state"].clone();
    std::fs::write(
        r.workspace().join("action.sh"),
        "echo \"argc=$# 1=$1 2=$2\"; echo \"ci=$CI gha=$GITHUB_ACTIONS node=$NODE_ENV pwd=$(pwd) home=$HOME\"\n\
         cat /github/workflow/event.json; echo; test -d /github/runner_temp && echo temp-ok\n\
         wget -q -O- http://web/; echo out > /github/workspace/out.txt; echo to-stderr >&2; exit 7\n",
    )
    .unwrap();
    let step = json!({
        "image": BUSYBOX, "dockerfile": null, "entryPoint": "sh", "entryPointArgs": ["-e", "/github/workspace/action.sh", "\"hello", "world\"", "\"\\\"q\\\"\""],
        "workingDirectory": "/github/workspace", "createOptions": null, "registry": null,
        "environmentVariables": {"NODE_ENV": "development", "HOME": "/github/home"}, "portMappings": [],
        "systemMountVolumes": r.step_mounts(), "userMountVolumes": []
    });
    let out = r.run("run_container_step", &step, Some(&state));
    assert_eq!(out.code, Some(7), "{out:?}");
    assert_eq!(
        out.stdout
            .lines()
            .filter(|l| !l.starts_with("Pulling"))
            .collect::<Vec<_>>(),
        [
            "argc=2 1=hello world 2=\"q\"",
            "ci=true gha=true node=development pwd=/github/workspace home=/github/home",
            "{\"x\":1}",
            "temp-ok",
            "hello-from-web",
        ]
    );
    assert!(out.stderr.contains("to-stderr"), "{out:?}");
    assert_eq!(std::fs::read_to_string(r.workspace().join("out.txt")).unwrap(), "out\n");
    // The step container is gone; the job's remain.
    let filter = format!("label={}", r.label);
    assert_eq!(docker_ok(&["ps", "-aq", "--filter", &filter]).lines().count(), 2);

    // CI already set is kept; an image's own entrypoint is used when none is given.
    let mut step2 = step.clone();
    step2["entryPoint"] = json!(null);
    step2["entryPointArgs"] = json!(["sh", "-c", "'echo ci=$CI'"]);
    step2["environmentVariables"] = json!({"CI": "custom"});
    let out = r.run("run_container_step", &step2, Some(&state));
    assert_eq!(out.code, Some(0), "{out:?}");
    assert!(out.stdout.ends_with("ci=custom\n"), "{out:?}");

    // A Dockerfile action under _actions.
    let action = r.root.join("_work/_actions/o/r/v1");
    std::fs::create_dir_all(&action).unwrap();
    std::fs::write(
        action.join("Dockerfile"),
        format!("FROM {BUSYBOX}\nCOPY entry.sh /entry.sh\nENTRYPOINT [\"sh\", \"/entry.sh\"]\n"),
    )
    .unwrap();
    std::fs::write(action.join("entry.sh"), "echo \"built-action $1 $#\"\n").unwrap();
    let mut built = step.clone();
    built["image"] = json!(null);
    built["dockerfile"] = json!(action.join("Dockerfile"));
    built["entryPoint"] = json!(null);
    built["entryPointArgs"] = json!(["\"x", "y\""]);
    let out = r.run("run_container_step", &built, Some(&state));
    assert_eq!(out.code, Some(0), "{out:?}");
    assert!(out.stdout.contains("built-action x y 1\n"), "{out:?}");
    let images = docker_ok(&["images", "-q", "--filter", &filter]);
    assert_eq!(images.lines().count(), 1, "the built image is labelled");

    // Neither image nor dockerfile.
    let mut neither = step.clone();
    neither["image"] = json!(null);
    let out = r.run("run_container_step", &neither, Some(&state));
    assert_eq!(out.code, Some(1));
    assert!(
        error_line(&out).contains("run container step should have image or dockerfile fields specified"),
        "{out:?}"
    );
    r.cleanup_ok();
}

/// §7 7: SIGTERM/SIGINT to the hook mid-step stops the step promptly (inside the container too),
/// exits non-zero, and cleanup_job then removes everything.
#[test]
fn cancellation_stops_steps_and_cleanup_follows() {
    let r = Runner::new("cancel");
    let response = r.prepare_ok(&json!({"container": r.job_container(BUSYBOX), "services": []}));
    let state = response["state"].clone();

    // A script step: its whole process tree inside the job container goes.
    std::fs::write(
        r.temp().join("long.sh"),
        "sleep 300 &\necho started\nsleep 301\necho never\n",
    )
    .unwrap();
    let args = json!({"entryPoint": "sh", "entryPointArgs": ["-e", "/__w/_temp/long.sh"],
        "environmentVariables": {}, "prependPath": [], "workingDirectory": "/__w/repo/repo"});
    let mut child = r.spawn("run_script_step", &args, Some(&state));
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    assert_eq!(lines.next().unwrap().unwrap(), "started");
    let start = Instant::now();
    send(&child, Signal::SIGTERM);
    let status = child.wait().unwrap();
    let took = start.elapsed();
    assert_eq!(status.code(), Some(143));
    assert!(took < Duration::from_secs(8), "took {took:?}");
    assert!(lines.map_while(Result::ok).all(|l| l != "never"));
    let out = r.script(
        &state,
        "if ps | grep -v grep | grep -q 'sleep 30[01]'; then ps; exit 1; fi; echo clean",
    );
    assert_eq!((out.code, out.stdout.as_str()), (Some(0), "clean\n"), "{out:?}");

    // A container step: the container is stopped and removed.
    let step = json!({
        "image": BUSYBOX, "dockerfile": null, "entryPoint": "sh", "entryPointArgs": ["-c", "'echo started; sleep 300'"],
        "workingDirectory": "/github/workspace", "createOptions": null, "registry": null,
        "environmentVariables": {}, "portMappings": [], "systemMountVolumes": r.step_mounts(), "userMountVolumes": []
    });
    let mut child = r.spawn("run_container_step", &step, Some(&state));
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    assert!(lines.by_ref().map_while(Result::ok).any(|l| l == "started"));
    let start = Instant::now();
    send(&child, Signal::SIGINT);
    let status = child.wait().unwrap();
    assert_ne!(status.code(), Some(0));
    assert!(start.elapsed() < Duration::from_secs(10), "took {:?}", start.elapsed());
    let filter = format!("label={}", r.label);
    assert_eq!(docker_ok(&["ps", "-aq", "--filter", &filter]).lines().count(), 1);

    r.cleanup_ok();
}

/// §7 21: a second prepare_job on the same runner name removes the first job's containers and
/// network.
#[test]
fn a_second_prepare_cleans_leftovers() {
    let r = Runner::new("leftovers");
    let first = r.prepare_ok(
        &json!({"container": r.job_container(BUSYBOX), "services": [Runner::service(BUSYBOX, Some("svc"))]}),
    );
    let second = r.prepare_ok(&json!({"container": r.job_container(BUSYBOX), "services": []}));
    let (old_id, old_net) = (
        first["context"]["container"]["id"].as_str().unwrap(),
        first["context"]["container"]["network"].as_str().unwrap(),
    );
    for gone in [old_id, old_net, first["context"]["services"][0]["id"].as_str().unwrap()] {
        let found = docker().args(["inspect", gone]).output().unwrap();
        assert!(!found.status.success(), "{gone} survived the second prepare_job");
    }
    let new_id = second["context"]["container"]["id"].as_str().unwrap();
    assert_eq!(inspect(new_id, "{{.State.Running}}"), "true");
    assert_eq!(r.leftovers().len(), 2, "{:?}", r.leftovers());
    r.cleanup_ok();
}

/// The network comes from ACTIONS_RUNNER_NETWORK_DRIVER when set (nothing is created).
#[test]
fn network_from_the_environment() {
    let mut r = Runner::new("netdriver");
    r.extra_env
        .push(("ACTIONS_RUNNER_NETWORK_DRIVER".into(), "bridge".into()));
    let response = r
        .prepare_ok(&json!({"container": r.job_container(BUSYBOX), "services": [Runner::service(HTTPD, Some("web"))]}));
    assert_eq!(response["context"]["container"]["network"], "bridge");
    assert_eq!(response["state"]["network"], "bridge");
    let filter = format!("label={}", r.label);
    assert_eq!(docker_ok(&["network", "ls", "-q", "--filter", &filter]).trim(), "");
    r.cleanup_ok();
}

/// Runs `docker-registry` with htpasswd auth on a free loopback port (installing the Debian
/// packages when missing); killed on drop.
struct Registry {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Registry {
    fn start(user: &str, password: &str) -> Self {
        if Command::new("sh")
            .args(["-c", "command -v docker-registry && command -v htpasswd"])
            .stdout(Stdio::null())
            .status()
            .map(|s| !s.success())
            .unwrap_or(true)
        {
            let ok = Command::new("sh")
                .args(["-c", "apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq docker-registry apache2-utils"])
                .status()
                .unwrap()
                .success();
            assert!(ok, "installing docker-registry and apache2-utils failed");
        }
        let dir = tempfile::tempdir().unwrap();
        let htpasswd = Command::new("htpasswd")
            .args(["-Bbn", user, password])
            .output()
            .unwrap();
        assert!(htpasswd.status.success());
        std::fs::write(dir.path().join("htpasswd"), &htpasswd.stdout).unwrap();
        let port = free_port();
        let config = format!(
            "version: 0.1\nstorage:\n  filesystem:\n    rootdirectory: {root}\nhttp:\n  addr: 127.0.0.1:{port}\n\
             auth:\n  htpasswd:\n    realm: rarc-test\n    path: {auth}\n",
            root = dir.path().join("data").display(),
            auth = dir.path().join("htpasswd").display()
        );
        std::fs::write(dir.path().join("config.yml"), config).unwrap();
        let child = Command::new("docker-registry")
            .args(["serve", dir.path().join("config.yml").to_str().unwrap()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "the registry did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        Self { child, port, _dir: dir }
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// §7 15: a private registry: a wrong password fails clearly (and is never shown), the right one
/// pulls the image with the request's credentials.
#[test]
fn private_registry_login_and_pull() {
    let r = Runner::new("registry");
    let reg = Registry::start("rarc", "s3cr3t-registry-pass");
    let server = format!("127.0.0.1:{}", reg.port);
    let image = format!("{server}/rarc-test/hooks-private:{}", std::process::id());
    let config = tempfile::tempdir().unwrap();
    let cfg = config.path().to_str().unwrap();
    docker_input(
        &["--config", cfg, "login", "-u", "rarc", "--password-stdin", &server],
        "s3cr3t-registry-pass",
    );
    docker_ok(&["tag", BUSYBOX, &image]);
    docker_ok(&["--config", cfg, "push", &image]);
    docker_ok(&["rmi", &image]);
    assert!(!image_exists(&image));

    let mut job = r.job_container(&image);
    job["registry"] = json!({"username": "rarc", "password": "wrong-pass-value", "serverUrl": server});
    let (out, _) = r.prepare(&json!({"container": job.clone(), "services": []}));
    assert_eq!(out.code, Some(1), "{out:?}");
    let e = error_line(&out);
    assert!(
        e.starts_with(&format!("::error::registry login failed for '{image}' on '{server}'")),
        "{out:?}"
    );
    assert!(
        !out.stdout.contains("wrong-pass") && !out.stderr.contains("wrong-pass"),
        "{out:?}"
    );
    r.cleanup_ok();

    // Without credentials the pull is refused too.
    let mut anonymous = job.clone();
    anonymous["registry"] = Value::Null;
    let (out, _) = r.prepare(&json!({"container": anonymous, "services": []}));
    assert_eq!(out.code, Some(1), "{out:?}");
    assert!(
        error_line(&out).contains("Exiting docker pull after 3 failed attempts"),
        "{out:?}"
    );
    r.cleanup_ok();

    job["registry"]["password"] = json!("s3cr3t-registry-pass");
    let (out, response) = r.prepare(&json!({"container": job, "services": []}));
    assert_eq!(out.code, Some(0), "{out:?}");
    assert!(
        !out.stdout.contains("s3cr3t") && !out.stderr.contains("s3cr3t"),
        "{out:?}"
    );
    assert!(image_exists(&image));
    assert!(is_hex64(response["context"]["container"]["id"].as_str().unwrap()));
    r.cleanup_ok();
    docker_ok(&["rmi", &image]);
}

/// §7 6, 16 and bad input: a missing image, bad createOptions, missing fields and state; each a
/// clear error and nothing left behind.
#[test]
fn bad_inputs() {
    let r = Runner::new("bad");
    let (out, _) =
        r.prepare(&json!({"container": r.job_container("rarc-test/hooks-does-not-exist:1"), "services": []}));
    assert_eq!(out.code, Some(1), "{out:?}");
    let e = error_line(&out);
    assert!(
        e.starts_with(
            "::error::Exiting docker pull after 3 failed attempts: cannot pull 'rarc-test/hooks-does-not-exist:1'"
        ),
        "{out:?}"
    );
    r.cleanup_ok();

    let mut job = r.job_container(BUSYBOX);
    job["createOptions"] = json!("--cpus 1 --frobnicate yes");
    let (out, _) = r.prepare(&json!({"container": job, "services": []}));
    assert_eq!(out.code, Some(1), "{out:?}");
    assert!(
        error_line(&out).starts_with("::error::invalid createOptions: unknown flag '--frobnicate'"),
        "{out:?}"
    );
    assert_eq!(r.leftovers(), Vec::<String>::new(), "created something before failing");

    let mut svc = Runner::service(BUSYBOX, None);
    svc["portMappings"] = json!(["99999:80"]);
    let (out, _) = r.prepare(&json!({"container": null, "services": [svc]}));
    assert!(error_line(&out).contains("portMappings: '99999:80'"), "{out:?}");
    let (out, _) = r.prepare(&json!({"container": {"image": null}, "services": []}));
    assert_eq!(
        error_line(&out),
        "::error::invalid request: args.container.image: the job container needs an image"
    );
    assert_eq!(r.leftovers(), Vec::<String>::new());

    let out = r.run(
        "run_script_step",
        &json!({"entryPoint": "sh", "entryPointArgs": [], "environmentVariables": {}, "prependPath": [], "workingDirectory": "/"}),
        None,
    );
    assert_eq!(out.code, Some(1));
    assert!(
        error_line(&out).contains("the request's state has no job container"),
        "{out:?}"
    );

    let mut cmd = r.command();
    cmd.env("DOCKER_HOST", "unix:///nonexistent/docker.sock");
    let (line, _) = r.line("cleanup_job", &json!({}), None);
    let out = common::run_with_input(&mut cmd, line.as_bytes(), LIMIT);
    assert_eq!(out.code, Some(1));
    assert!(
        error_line(&out).starts_with("::error::cannot connect to the Docker daemon at unix:///nonexistent/docker.sock"),
        "{out:?}"
    );
    r.cleanup_ok();
}
