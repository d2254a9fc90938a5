//! A fake runner as the hooks see it: its directory layout, the job container the runner asks
//! for, its environment and the request lines. Shared by the docker-mode tests and the step bench
//! (which includes this file by path), so it depends on nothing else in `common`.
#![allow(dead_code)]

use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};

/// The directories a runner has under its root before a job.
const DIRS: [&str; 8] = [
    "_work/repo/repo",
    "_work/_temp/_github_home",
    "_work/_temp/_github_workflow",
    "_work/_temp/_runner_file_commands",
    "_work/_temp/_runner_hook_responses",
    "_work/_actions",
    "_work/_tool",
    "externals",
];

/// A runner root in a temporary directory, named after the test; removed on drop.
pub struct RunnerDir {
    _dir: tempfile::TempDir,
    pub root: PathBuf,
    /// `RUNNER_NAME`.
    pub name: String,
    /// The label the hooks put on what they create (the hex of the runner name).
    pub label: String,
}

impl RunnerDir {
    pub fn new(test: &str) -> std::io::Result<Self> {
        let dir = tempfile::tempdir()?;
        let root = dir.path().join("runner");
        for d in DIRS {
            std::fs::create_dir_all(root.join(d))?;
        }
        std::fs::write(root.join("_work/_temp/_github_workflow/event.json"), "{\"x\":1}")?;
        let name = format!("rarc hooks {test} {}", std::process::id());
        let label = hex(&name);
        Ok(Self {
            _dir: dir,
            root,
            name,
            label,
        })
    }

    pub fn workspace(&self) -> PathBuf {
        self.root.join("_work/repo/repo")
    }

    pub fn temp(&self) -> PathBuf {
        self.root.join("_work/_temp")
    }

    /// The job container's system mounts (§1.4.2, without the docker socket).
    pub fn job_mounts(&self) -> Value {
        let r = &self.root;
        json!([
            mount(&r.join("_work"), "/__w", false),
            mount(&r.join("externals"), "/__e", true),
            mount(&r.join("_work/_temp"), "/__w/_temp", false),
            mount(&r.join("_work/_actions"), "/__w/_actions", false),
            mount(&r.join("_work/_tool"), "/__w/_tool", false),
            mount(&r.join("_work/_temp/_github_home"), "/github/home", false),
            mount(&r.join("_work/_temp/_github_workflow"), "/github/workflow", false),
        ])
    }

    /// The job container of `image` as the runner describes it in prepare_job.
    pub fn job_container(&self, image: &str) -> Value {
        json!({
            "image": image, "dockerfile": null, "entryPoint": null, "entryPointArgs": [],
            "workingDirectory": "/__w/repo/repo", "createOptions": null, "registry": null,
            "environmentVariables": {"HOME": "/github/home"}, "portMappings": [],
            "systemMountVolumes": self.job_mounts(), "userMountVolumes": []
        })
    }

    /// The runner's environment for a hook: nothing of ours but PATH (no daemon settings).
    pub fn hook_env<'a>(&self, cmd: &'a mut Command) -> &'a mut Command {
        cmd.env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("GITHUB_WORKSPACE", self.workspace())
            .env("RUNNER_TEMP", self.temp())
            .env("RUNNER_NAME", &self.name)
    }

    /// A fresh, empty response file under `_runner_hook_responses`.
    pub fn response_file(&self) -> std::io::Result<PathBuf> {
        let path = self
            .temp()
            .join("_runner_hook_responses")
            .join(format!("{}.json", unique()));
        std::fs::write(&path, "")?;
        Ok(path)
    }
}

/// One entry of `systemMountVolumes`.
pub fn mount(src: &Path, dst: &str, ro: bool) -> Value {
    json!({"userProvidedValue": null, "sourceVolumePath": src, "targetVolumePath": dst, "readOnly": ro})
}

/// The request line the runner writes to the hook's stdin.
pub fn request_line(command: &str, response: &Path, args: &Value, state: Option<&Value>) -> String {
    let line = json!({"command": command, "responseFile": response, "args": args, "state": state});
    format!("{line}\n")
}

/// The response file's JSON; `Null` when the hook wrote none.
pub fn read_response(path: &Path) -> Value {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    if text.trim().is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("response {}: {e}: {text}", path.display()))
    }
}

pub fn hex(s: &str) -> String {
    s.bytes().map(|b| format!("{b:02x}")).collect()
}

/// A name no other call in this process returns.
pub fn unique() -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    format!("{}-{}", std::process::id(), N.fetch_add(1, Ordering::Relaxed))
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or_else(|e| panic!("no free port: {e}"))
}
