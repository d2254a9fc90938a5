//! Running one job: set-up, the simulated work, `prepare_job`, the steps (on the host, or through
//! `run_script_step` / `run_container_step`), and `cleanup_job`.

use super::JobResult;
use super::hooks::{
    self, ContainerContext, HOOK_FAILED, HookCommand, HookError, HookInvoker, PrepareJobArgs, ScriptStepArgs,
    ServiceContext,
};
use super::log::{LogSink, RUNNER_STEP};
use super::process::{self, Escalation, ProcSpec};
use super::workdir::{CONTAINER_HOME, FileCommands, Layout};
use crate::job::StepSpec;
use crate::runner_api::{AssignedJob, StepResult};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// The runner's message when `ACTIONS_RUNNER_REQUIRE_JOB_CONTAINER` is set and the job has no container.
pub const REQUIRE_JOB_CONTAINER_MSG: &str = "Jobs without a job container are forbidden on this runner, please add a 'container:' to your job or contact your self-hosted runner administrator.";
/// The runner's message when it must run containers itself (no hook) while running in a container,
/// which is where rarc's runners live; the simulated runner has no docker code of its own.
pub const NO_CONTAINER_SUPPORT_MSG: &str =
    "Container feature is not supported when runner is already running inside container.";

/// What a job produced.
#[derive(Debug, Clone, Default)]
pub(crate) struct JobReport {
    pub result: JobResult,
    pub steps: Vec<StepResult>,
    pub container: Option<ContainerContext>,
    pub services: BTreeMap<String, ServiceContext>,
}

pub(crate) struct Executor<'a> {
    pub job: &'a AssignedJob,
    pub layout: Layout,
    /// `GITHUB_*` / `RUNNER_*` with host paths.
    pub context_env: BTreeMap<String, String>,
    pub log: LogSink,
    pub hooks: HookInvoker,
    pub cancel: CancellationToken,
    pub escalation: Escalation,
    pub require_job_container: bool,
}

struct StepOutcome {
    ok: bool,
    exit_code: i32,
    canceled: bool,
}

impl StepOutcome {
    fn failed(exit_code: i32) -> Self {
        Self {
            ok: false,
            exit_code,
            canceled: false,
        }
    }
}

impl Executor<'_> {
    pub async fn execute(mut self) -> JobReport {
        let spec = &self.job.spec;
        let log = self.log.clone();
        let mut report = JobReport::default();
        let mut failed = false;
        let mut canceled = false;

        log.info(RUNNER_STEP, "##[group]Set up job");
        log.info(
            RUNNER_STEP,
            format!("Current runner version: '{}'", super::RUNNER_VERSION),
        );
        log.info(
            RUNNER_STEP,
            format!(
                "Runner name: '{}'",
                self.context_env.get("RUNNER_NAME").cloned().unwrap_or_default()
            ),
        );
        log.info(
            RUNNER_STEP,
            format!("Job: '{}' ({})", self.job.job_display_name, self.job.job_id),
        );
        log.info(RUNNER_STEP, "##[endgroup]");
        if let Err(e) = self.layout.create(self.job) {
            log.error(
                RUNNER_STEP,
                format!(
                    "Cannot create the work folder under '{}': {e}",
                    self.layout.work.display()
                ),
            );
            failed = true;
        }
        if !failed && self.require_job_container && spec.container.is_none() {
            log.error(RUNNER_STEP, REQUIRE_JOB_CONTAINER_MSG);
            failed = true;
        }
        if !failed && spec.duration_ms > 0 {
            tokio::select! {
                () = tokio::time::sleep(Duration::from_millis(spec.duration_ms)) => {}
                () = self.cancel.cancelled() => canceled = true,
            }
        }

        canceled |= self.cancel.is_cancelled();
        let mut prepare_attempted = false;
        if !failed && !canceled && spec.needs_prepare() {
            if self.hooks.path.is_none() {
                log.error(RUNNER_STEP, NO_CONTAINER_SUPPORT_MSG);
                failed = true;
            } else {
                prepare_attempted = true;
                match self.prepare().await {
                    Ok((container, services)) => {
                        report.container = container;
                        report.services = services;
                    }
                    Err(e) => {
                        canceled = e.is_canceled();
                        failed = !canceled;
                        hook_error(&log, RUNNER_STEP, &e);
                    }
                }
            }
        }

        let mut run_counter = 0;
        for (i, step) in spec.steps.iter().enumerate() {
            let name = step_name(step);
            if failed || canceled || self.cancel.is_cancelled() {
                canceled |= self.cancel.is_cancelled();
                report.steps.push(StepResult {
                    name,
                    result: "skipped".into(),
                    exit_code: 0,
                });
                continue;
            }
            let index = i64::try_from(i).unwrap_or(i64::MAX);
            if step.run.is_some() {
                run_counter += 1;
            }
            let outcome = self.run_step(index, step, run_counter).await;
            if outcome.canceled {
                canceled = true;
            } else if !outcome.ok && !step.continue_on_error {
                failed = true;
            }
            let result = if outcome.ok { "succeeded" } else { "failed" };
            report.steps.push(StepResult {
                name,
                result: result.into(),
                exit_code: outcome.exit_code,
            });
        }

        if prepare_attempted {
            log.info(RUNNER_STEP, "Stop containers");
            // Clean-up runs to completion even when the job was cancelled.
            let never = CancellationToken::new();
            let args = serde_json::json!({});
            if let Err(e) = self
                .hooks
                .invoke(HookCommand::CleanupJob, args, RUNNER_STEP, &log, &never)
                .await
            {
                hook_error(&log, RUNNER_STEP, &e);
                failed = true;
            }
        }

        report.result = if canceled {
            JobResult::Canceled
        } else if failed {
            JobResult::Failed
        } else {
            JobResult::Succeeded
        };
        log.info(
            RUNNER_STEP,
            format!(
                "Job {} completed with result: {}",
                self.job.job_display_name, report.result
            ),
        );
        report
    }

    async fn prepare(&mut self) -> Result<(Option<ContainerContext>, BTreeMap<String, ServiceContext>), HookError> {
        let spec = &self.job.spec;
        self.log.info(RUNNER_STEP, "Initialize containers");
        let args = PrepareJobArgs {
            container: spec.container.as_ref().map(|c| hooks::job_container(c, &self.layout)),
            services: spec
                .services
                .iter()
                .map(|s| hooks::service_container(&s.container))
                .collect(),
        };
        let args = serde_json::to_value(&args).unwrap_or_default();
        let response = self
            .hooks
            .invoke(HookCommand::PrepareJob, args, RUNNER_STEP, &self.log, &self.cancel)
            .await?;
        let aliases: Vec<String> = spec.services.iter().map(|s| s.name.clone()).collect();
        let (container, services) = hooks::job_context(response.as_ref(), spec.container.is_some(), &aliases)?;
        if let Some(c) = &container {
            self.log.info(
                RUNNER_STEP,
                format!(
                    "Job container: id={} network={}",
                    c.id.as_deref().unwrap_or(""),
                    c.network.as_deref().unwrap_or("")
                ),
            );
        }
        for (alias, s) in &services {
            let ports: Vec<String> = s.ports.iter().map(|(c, h)| format!("{c}->{h}")).collect();
            self.log.info(
                RUNNER_STEP,
                format!(
                    "Service '{alias}': id={} ports=[{}]",
                    s.id.as_deref().unwrap_or(""),
                    ports.join(", ")
                ),
            );
        }
        Ok((container, services))
    }

    async fn run_step(&mut self, index: i64, step: &StepSpec, run_counter: usize) -> StepOutcome {
        let log = self.log.clone();
        let files = match FileCommands::create(&self.layout) {
            Ok(f) => f,
            Err(e) => {
                log.error(index, format!("Cannot create the file-command files: {e}"));
                return StepOutcome::failed(1);
            }
        };
        let mut env: BTreeMap<String, String> = self.job.spec.env.clone();
        env.extend(step.env.clone());
        env.extend(self.context_env.clone());
        let action_id = if run_counter > 1 {
            format!("__run_{run_counter}")
        } else {
            "__run".to_owned()
        };
        env.insert(
            "GITHUB_ACTION".into(),
            if step.run.is_some() {
                action_id
            } else {
                "__docker".into()
            },
        );
        for (var, path) in &files.files {
            env.insert((*var).to_owned(), path.to_string_lossy().into_owned());
        }

        match (&step.run, &step.uses) {
            (Some(script), None) => {
                log.info(
                    index,
                    format!("##[group]Run {}", script.lines().next().unwrap_or_default()),
                );
                for line in script.lines() {
                    log.info(index, line);
                }
                if self.job.spec.container.is_some() {
                    self.container_script(index, step, script, env).await
                } else {
                    self.host_script(index, step, script, env).await
                }
            }
            (None, Some(uses)) => match uses.strip_prefix("docker://") {
                Some(image) => {
                    log.info(index, format!("##[group]Run {uses}"));
                    log.info(index, "##[endgroup]");
                    self.container_action(index, image, step, env).await
                }
                None => {
                    log.error(
                        index,
                        format!("The simulated runner only runs `docker://` container actions, not '{uses}'."),
                    );
                    StepOutcome::failed(1)
                }
            },
            _ => {
                log.error(index, "A step needs exactly one of `run` or `uses`.");
                StepOutcome::failed(1)
            }
        }
    }

    fn write_script(&self, index: i64, script: &str) -> Option<PathBuf> {
        let path = self.layout.temp.join(format!("{}.sh", uuid::Uuid::new_v4()));
        match std::fs::write(&path, script) {
            Ok(()) => Some(path),
            Err(e) => {
                self.log
                    .error(index, format!("Cannot write the script file '{}': {e}", path.display()));
                None
            }
        }
    }

    async fn host_script(
        &mut self,
        index: i64,
        step: &StepSpec,
        script: &str,
        env: BTreeMap<String, String>,
    ) -> StepOutcome {
        let log = self.log.clone();
        let Some(file) = self.write_script(index, script) else {
            return StepOutcome::failed(1);
        };
        let file = file.to_string_lossy().into_owned();
        let (program, format) = shell_format(step.shell.as_deref());
        let program_path =
            process::which(&program).map_or_else(|| program.clone(), |p| p.to_string_lossy().into_owned());
        log.info(index, format!("shell: {program_path} {format}"));
        log.info(index, "##[endgroup]");
        let cwd = match &step.working_directory {
            Some(wd) => self.layout.workspace.join(wd),
            None => self.layout.workspace.clone(),
        };
        let args = format.split_whitespace().map(|a| a.replace("{0}", &file)).collect();
        let spec = ProcSpec {
            program: program_path.clone(),
            args,
            cwd: cwd.clone(),
            env: env.into_iter().collect(),
            stdin: None,
        };
        match process::run(&spec, &log, index, &self.cancel, self.escalation).await {
            Ok(exit) if exit.canceled => {
                log.error(index, "The operation was canceled.");
                StepOutcome {
                    ok: false,
                    exit_code: exit.code,
                    canceled: true,
                }
            }
            Ok(exit) if exit.code != 0 => {
                log.error(index, format!("Process completed with exit code {}.", exit.code));
                StepOutcome::failed(exit.code)
            }
            Ok(exit) => StepOutcome {
                ok: true,
                exit_code: exit.code,
                canceled: false,
            },
            Err(e) => {
                log.error(
                    index,
                    format!(
                        "An error occurred trying to start process '{program_path}' with working directory '{}'. {e}",
                        cwd.display()
                    ),
                );
                StepOutcome::failed(1)
            }
        }
    }

    async fn container_script(
        &mut self,
        index: i64,
        step: &StepSpec,
        script: &str,
        env: BTreeMap<String, String>,
    ) -> StepOutcome {
        let Some(file) = self.write_script(index, script) else {
            return StepOutcome::failed(1);
        };
        let container_file = self.layout.to_job_container(&file.to_string_lossy());
        let (program, format) = shell_format(step.shell.as_deref());
        self.log.info(index, format!("shell: {program} {format}"));
        self.log.info(index, "##[endgroup]");
        let working_directory = match &step.working_directory {
            Some(wd) if Path::new(wd).is_absolute() => self.layout.to_job_container(wd),
            Some(wd) => format!("{}/{wd}", self.layout.container_workspace()),
            None => self.layout.container_workspace(),
        };
        let args = ScriptStepArgs {
            entry_point_args: hooks::split_script_args(&format.replace("{0}", &container_file)),
            entry_point: program,
            environment_variables: env
                .into_iter()
                .map(|(k, v)| (k, self.layout.to_job_container(&v)))
                .collect(),
            prepend_path: Vec::new(),
            working_directory,
        };
        let args = serde_json::to_value(&args).unwrap_or_default();
        self.hook_step(index, HookCommand::RunScriptStep, args).await
    }

    async fn container_action(
        &mut self,
        index: i64,
        image: &str,
        step: &StepSpec,
        env: BTreeMap<String, String>,
    ) -> StepOutcome {
        let mut env: BTreeMap<String, String> = env
            .into_iter()
            .map(|(k, v)| (k, self.layout.to_action_container(&v)))
            .collect();
        env.insert("HOME".into(), CONTAINER_HOME.into());
        if self.hooks.path.is_none() {
            self.log.error(index, NO_CONTAINER_SUPPORT_MSG);
            return StepOutcome::failed(1);
        }
        let container = hooks::action_container(image, step, env, &self.layout);
        let args = serde_json::to_value(&container).unwrap_or_default();
        self.hook_step(index, HookCommand::RunContainerStep, args).await
    }

    async fn hook_step(&mut self, index: i64, command: HookCommand, args: serde_json::Value) -> StepOutcome {
        match self.hooks.invoke(command, args, index, &self.log, &self.cancel).await {
            Ok(_) => StepOutcome {
                ok: true,
                exit_code: 0,
                canceled: false,
            },
            Err(e) => {
                hook_error(&self.log, index, &e);
                StepOutcome {
                    ok: false,
                    exit_code: e.exit_code(),
                    canceled: e.is_canceled(),
                }
            }
        }
    }
}

/// Logs a hook failure as the runner shows it, followed by the cause (which the real runner keeps
/// in its diagnostic log; the simulator shows it so tests can see it).
fn hook_error(log: &LogSink, step: i64, e: &HookError) {
    log.error(step, HOOK_FAILED);
    log.error(step, e);
}

/// The program and the argument format (`{0}` = the script file) of a `shell:`.
fn shell_format(shell: Option<&str>) -> (String, String) {
    match shell.map(str::trim) {
        None | Some("") | Some("sh") => ("sh".into(), "-e {0}".into()),
        Some("bash") => ("bash".into(), "--noprofile --norc -e -o pipefail {0}".into()),
        Some(custom) => {
            let (program, rest) = custom.split_once(char::is_whitespace).unwrap_or((custom, ""));
            let rest = rest.trim();
            let format = if rest.contains("{0}") {
                rest.to_owned()
            } else if rest.is_empty() {
                "{0}".to_owned()
            } else {
                format!("{rest} {{0}}")
            };
            (program.to_owned(), format)
        }
    }
}

/// The display name of a step: its `name`, or `Run <first line>` / `Run docker://…`.
pub(crate) fn step_name(step: &StepSpec) -> String {
    if !step.name.is_empty() {
        return step.name.clone();
    }
    match (&step.run, &step.uses) {
        (Some(run), _) => format!("Run {}", run.lines().next().unwrap_or_default().trim()),
        (None, Some(uses)) => format!("Run {uses}"),
        _ => "Run".to_owned(),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn shells() {
        assert_eq!(shell_format(None), ("sh".to_owned(), "-e {0}".to_owned()));
        assert_eq!(shell_format(Some("bash")).1, "--noprofile --norc -e -o pipefail {0}");
        assert_eq!(
            shell_format(Some("python3 -u {0}")),
            ("python3".to_owned(), "-u {0}".to_owned())
        );
        assert_eq!(shell_format(Some("perl")), ("perl".to_owned(), "{0}".to_owned()));
    }

    #[test]
    fn step_names() {
        let s = StepSpec {
            run: Some("echo hi\necho there".into()),
            ..Default::default()
        };
        assert_eq!(step_name(&s), "Run echo hi");
        let s = StepSpec {
            uses: Some("docker://alpine".into()),
            ..Default::default()
        };
        assert_eq!(step_name(&s), "Run docker://alpine");
    }
}
