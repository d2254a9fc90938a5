//! The runner's work layout on the host, the `GITHUB_*` / `RUNNER_*` context variables, and the
//! translation of host paths to the paths a job container or a container action sees
//! (`container-hooks.md` §1.4.2, §1.4.3).

use crate::runner_api::{AssignedJob, RunnerSettings};
use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};

/// Container-side root of `_work` in the job container.
pub const CONTAINER_WORK: &str = "/__w";
/// Container-side root of `externals` in the job container.
pub const CONTAINER_EXTERNALS: &str = "/__e";
/// Container-side `HOME` (the runner's `_temp/_github_home`).
pub const CONTAINER_HOME: &str = "/github/home";
/// Container-side `_temp/_github_workflow` (holds `event.json`).
pub const CONTAINER_WORKFLOW: &str = "/github/workflow";
/// Container-side workspace of a container action.
pub const ACTION_WORKSPACE: &str = "/github/workspace";
/// Container-side `RUNNER_TEMP` of a container action.
pub const ACTION_RUNNER_TEMP: &str = "/github/runner_temp";
/// Container-side `_temp/_runner_file_commands` of a container action.
pub const ACTION_FILE_COMMANDS: &str = "/github/file_commands";
/// The docker socket, always the first system mount.
pub const DOCKER_SOCK: &str = "/var/run/docker.sock";

/// Every host directory of one job, as the real runner lays it out under its root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    /// The runner root (holds `_work` and `externals`).
    pub root: PathBuf,
    /// `<root>/_work` (or the JIT config's `workFolder`).
    pub work: PathBuf,
    /// `<root>/externals`.
    pub externals: PathBuf,
    /// The repository name (`<repo>` of `owner/<repo>`).
    pub repo_name: String,
    /// `_work/<repo>` (`RUNNER_WORKSPACE`).
    pub runner_workspace: PathBuf,
    /// `_work/<repo>/<repo>` (`GITHUB_WORKSPACE`).
    pub workspace: PathBuf,
    /// `_work/_temp` (`RUNNER_TEMP`).
    pub temp: PathBuf,
    pub actions: PathBuf,
    /// `_work/_tool` (`RUNNER_TOOL_CACHE`).
    pub tool: PathBuf,
    pub github_home: PathBuf,
    pub github_workflow: PathBuf,
    pub file_commands: PathBuf,
    pub hook_responses: PathBuf,
}

impl Layout {
    /// The layout for `job` under `root`; `work_folder` is the JIT config's `workFolder` (relative
    /// to `root` unless absolute; `_work` when empty).
    pub fn new(root: &Path, work_folder: &str, repository: &str) -> Self {
        let work = if work_folder.is_empty() {
            root.join("_work")
        } else {
            root.join(work_folder)
        };
        let repo_name = repo_name(repository);
        let runner_workspace = work.join(&repo_name);
        let workspace = runner_workspace.join(&repo_name);
        let temp = work.join("_temp");
        Self {
            root: root.to_path_buf(),
            externals: root.join("externals"),
            actions: work.join("_actions"),
            tool: work.join("_tool"),
            github_home: temp.join("_github_home"),
            github_workflow: temp.join("_github_workflow"),
            file_commands: temp.join("_runner_file_commands"),
            hook_responses: temp.join("_runner_hook_responses"),
            repo_name,
            runner_workspace,
            workspace,
            temp,
            work,
        }
    }

    /// Creates every directory and `event.json`. `_temp` is emptied first, as the runner does at
    /// the start of each job.
    pub fn create(&self, job: &AssignedJob) -> io::Result<()> {
        match std::fs::remove_dir_all(&self.temp) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        for dir in [
            &self.externals,
            &self.workspace,
            &self.temp,
            &self.actions,
            &self.tool,
            &self.github_home,
            &self.github_workflow,
            &self.file_commands,
            &self.hook_responses,
        ] {
            std::fs::create_dir_all(dir)?;
        }
        let (owner, _) = job.repository.split_once('/').unwrap_or(("", &job.repository));
        let event = serde_json::json!({
            "repository": {
                "full_name": job.repository,
                "name": self.repo_name,
                "owner": { "login": owner },
            },
            "workflow_run_id": job.workflow_run_id,
        });
        std::fs::write(self.event_path(), event.to_string())
    }

    pub fn event_path(&self) -> PathBuf {
        self.github_workflow.join("event.json")
    }

    /// `/__w/<repo>/<repo>`: the workspace inside the job container.
    pub fn container_workspace(&self) -> String {
        format!("{CONTAINER_WORK}/{0}/{0}", self.repo_name)
    }

    /// Translates a host path (or a value that is one) to the job container's view: `_github_home`
    /// → `/github/home`, `_github_workflow` → `/github/workflow`, `_work` → `/__w`, `externals` →
    /// `/__e`. Anything else is returned unchanged.
    pub fn to_job_container(&self, value: &str) -> String {
        let table: [(&Path, &str); 4] = [
            (&self.github_home, CONTAINER_HOME),
            (&self.github_workflow, CONTAINER_WORKFLOW),
            (&self.work, CONTAINER_WORK),
            (&self.externals, CONTAINER_EXTERNALS),
        ];
        translate(value, &table)
    }

    /// Translates a host path to a container action's view (the mounts of §1.4.3).
    pub fn to_action_container(&self, value: &str) -> String {
        let table: [(&Path, &str); 5] = [
            (&self.file_commands, ACTION_FILE_COMMANDS),
            (&self.github_home, CONTAINER_HOME),
            (&self.github_workflow, CONTAINER_WORKFLOW),
            (&self.temp, ACTION_RUNNER_TEMP),
            (&self.workspace, ACTION_WORKSPACE),
        ];
        translate(value, &table)
    }
}

/// Replaces the first matching host prefix (whole path components only).
fn translate(value: &str, table: &[(&Path, &str)]) -> String {
    for (host, container) in table {
        let Some(host) = host.to_str() else { continue };
        if value == host {
            return (*container).to_owned();
        }
        if let Some(rest) = value.strip_prefix(host)
            && rest.starts_with('/')
        {
            return format!("{container}{rest}");
        }
    }
    value.to_owned()
}

/// `owner/repo` → `repo`; an empty repository becomes `repo`.
pub fn repo_name(repository: &str) -> String {
    let name = repository.rsplit('/').next().unwrap_or_default().trim();
    if name.is_empty() {
        "repo".to_owned()
    } else {
        name.to_owned()
    }
}

/// The file-command files of one step (`GITHUB_ENV`, `GITHUB_OUTPUT`, …), created empty.
#[derive(Debug, Clone)]
pub struct FileCommands {
    pub files: Vec<(&'static str, PathBuf)>,
}

impl FileCommands {
    pub fn create(layout: &Layout) -> io::Result<Self> {
        let id = uuid::Uuid::new_v4();
        let mut files = Vec::new();
        for (var, prefix) in [
            ("GITHUB_ENV", "set_env"),
            ("GITHUB_PATH", "add_path"),
            ("GITHUB_OUTPUT", "set_output"),
            ("GITHUB_STATE", "save_state"),
            ("GITHUB_STEP_SUMMARY", "step_summary"),
        ] {
            let path = layout.file_commands.join(format!("{prefix}_{id}"));
            std::fs::write(&path, b"")?;
            files.push((var, path));
        }
        Ok(Self { files })
    }
}

/// The `github` and `runner` context variables the runner exports to steps and hooks (host paths).
pub fn context_env(
    layout: &Layout,
    job: &AssignedJob,
    settings: &RunnerSettings,
    runner_name: &str,
) -> BTreeMap<String, String> {
    let (server_url, api_url) = server_urls(&settings.git_hub_url);
    let owner = job.repository.split_once('/').map(|(o, _)| o).unwrap_or_default();
    let s = |p: &Path| p.to_string_lossy().into_owned();
    let mut env = BTreeMap::new();
    let mut set = |k: &str, v: String| {
        env.insert(k.to_owned(), v);
    };
    set("CI", "true".into());
    set("GITHUB_ACTIONS", "true".into());
    set("GITHUB_API_URL", api_url);
    set("GITHUB_EVENT_NAME", "workflow_dispatch".into());
    set("GITHUB_EVENT_PATH", s(&layout.event_path()));
    set("GITHUB_JOB", job.job_id.clone());
    set("GITHUB_REF", "refs/heads/main".into());
    set("GITHUB_REF_NAME", "main".into());
    set("GITHUB_REF_TYPE", "branch".into());
    set("GITHUB_REPOSITORY", job.repository.clone());
    set("GITHUB_REPOSITORY_OWNER", owner.to_owned());
    set("GITHUB_RUN_ATTEMPT", "1".into());
    set("GITHUB_RUN_ID", job.workflow_run_id.to_string());
    set("GITHUB_RUN_NUMBER", "1".into());
    set("GITHUB_SERVER_URL", server_url);
    set("GITHUB_SHA", "0".repeat(40));
    set("GITHUB_WORKFLOW", job.job_display_name.clone());
    set("GITHUB_WORKSPACE", s(&layout.workspace));
    set("RUNNER_ARCH", runner_arch().into());
    set("RUNNER_ENVIRONMENT", "self-hosted".into());
    set("RUNNER_NAME", runner_name.to_owned());
    set("RUNNER_OS", "Linux".into());
    set("RUNNER_TEMP", s(&layout.temp));
    set("RUNNER_TOOL_CACHE", s(&layout.tool));
    set("RUNNER_WORKSPACE", s(&layout.runner_workspace));
    env
}

fn runner_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "X64",
        "aarch64" => "ARM64",
        "arm" => "ARM",
        "x86" => "X86",
        other => other,
    }
}

/// `GITHUB_SERVER_URL` and `GITHUB_API_URL` from the runner's `gitHubUrl`.
fn server_urls(git_hub_url: &str) -> (String, String) {
    let Ok(url) = url::Url::parse(git_hub_url) else {
        return ("https://github.com".into(), "https://api.github.com".into());
    };
    let origin = url.origin().ascii_serialization();
    let host = url.host_str().unwrap_or_default();
    let api = if host == "github.com" || host == "www.github.com" {
        "https://api.github.com".to_owned()
    } else if host.ends_with(".ghe.com") {
        format!("{}://api.{host}", url.scheme())
    } else {
        format!("{origin}/api/v3")
    };
    let server = if host == "www.github.com" {
        "https://github.com".to_owned()
    } else {
        origin
    };
    (server, api)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn layout() -> Layout {
        Layout::new(Path::new("/home/runner"), "", "octo/hello")
    }

    #[test]
    fn layout_follows_the_runner() {
        let l = layout();
        assert_eq!(l.workspace, Path::new("/home/runner/_work/hello/hello"));
        assert_eq!(l.runner_workspace, Path::new("/home/runner/_work/hello"));
        assert_eq!(
            l.hook_responses,
            Path::new("/home/runner/_work/_temp/_runner_hook_responses")
        );
        assert_eq!(l.container_workspace(), "/__w/hello/hello");
        let abs = Layout::new(Path::new("/r"), "/data/work", "");
        assert_eq!(abs.workspace, Path::new("/data/work/repo/repo"));
    }

    #[test]
    fn job_container_translation() {
        let l = layout();
        for (host, want) in [
            ("/home/runner/_work/hello/hello", "/__w/hello/hello"),
            ("/home/runner/_work", "/__w"),
            ("/home/runner/_work/_temp/x.sh", "/__w/_temp/x.sh"),
            ("/home/runner/_work/_temp/_github_home", "/github/home"),
            (
                "/home/runner/_work/_temp/_github_workflow/event.json",
                "/github/workflow/event.json",
            ),
            ("/home/runner/externals/node20", "/__e/node20"),
            ("/home/runner/_workshop", "/home/runner/_workshop"),
            ("plain", "plain"),
        ] {
            assert_eq!(l.to_job_container(host), want, "{host}");
        }
    }

    #[test]
    fn action_container_translation() {
        let l = layout();
        for (host, want) in [
            ("/home/runner/_work/hello/hello", "/github/workspace"),
            ("/home/runner/_work/hello/hello/sub", "/github/workspace/sub"),
            ("/home/runner/_work/_temp", "/github/runner_temp"),
            (
                "/home/runner/_work/_temp/_runner_file_commands/set_env_1",
                "/github/file_commands/set_env_1",
            ),
            ("/home/runner/_work/_temp/_github_home", "/github/home"),
            ("/home/runner/_work/_tool", "/home/runner/_work/_tool"),
        ] {
            assert_eq!(l.to_action_container(host), want, "{host}");
        }
    }

    #[test]
    fn server_urls_by_host() {
        assert_eq!(server_urls("https://github.com/octo/hello").1, "https://api.github.com");
        assert_eq!(server_urls("https://acme.ghe.com/org").1, "https://api.acme.ghe.com");
        assert_eq!(
            server_urls("http://127.0.0.1:8080/org"),
            (
                "http://127.0.0.1:8080".to_owned(),
                "http://127.0.0.1:8080/api/v3".to_owned()
            )
        );
        assert_eq!(server_urls("").0, "https://github.com");
    }
}
