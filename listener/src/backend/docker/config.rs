//! Configuration of the Docker backend: one value per scale set.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// How a runner container gets a Docker daemon for its jobs' containers.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", tag = "type")]
pub enum ContainerMode {
    /// No daemon: jobs run their steps inside the runner container.
    #[default]
    None,
    /// A Docker-in-Docker sidecar container per runner. The runner reaches it through
    /// `DOCKER_HOST=unix:///var/run/docker.sock` on a volume shared with the sidecar, and the work
    /// folder is shared too so job containers can mount it.
    Dind(DindConfig),
}

/// The Docker-in-Docker sidecar of a runner.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct DindConfig {
    /// Image holding dockerd (loaded locally; nothing is pulled).
    pub image: String,
    /// Overrides the image's command (e.g. `dockerd --host=unix:///var/run/docker.sock`).
    pub command: Option<Vec<String>>,
    /// `--privileged`. Off by default: on hosts whose bounding set lacks CAP_SYS_RESOURCE
    /// privileged containers fail, so the sidecar gets every capability but that one, and
    /// unconfined seccomp and AppArmor profiles instead.
    pub privileged: bool,
    /// The directory shared between runner and sidecar (the runner's work folder, absolute).
    pub shared_work_dir: String,
    /// The sidecar's network mode (`None`: the daemon's default bridge).
    pub network_mode: Option<String>,
}

impl Default for DindConfig {
    fn default() -> Self {
        Self {
            image: "docker:dind".into(),
            command: None,
            privileged: false,
            shared_work_dir: "/home/runner/_work".into(),
            network_mode: None,
        }
    }
}

/// Everything the Docker backend of one scale set needs, besides the Actions client.
///
/// Field names are camelCase in JSON, like the listener's `config.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default, deny_unknown_fields)]
pub struct DockerBackendConfig {
    /// The scale set's id at the Actions service.
    pub scale_set_id: i64,
    /// The scale set's name (also the default runner name prefix).
    pub scale_set_name: String,
    /// The runner image (must exist locally or be pullable by the daemon: it is not pulled here).
    pub runner_image: String,
    /// The daemon: `unix:///path` or `tcp://host:port`. `None`: `DOCKER_HOST`, else
    /// `unix:///var/run/docker.sock`.
    pub docker_host: Option<String>,
    pub container_mode: ContainerMode,
    /// CPU limit of a runner container, in CPUs (`1.5` = `--cpus 1.5`).
    pub cpu_limit: Option<f64>,
    /// Memory limit of a runner container, in bytes.
    pub memory_limit_bytes: Option<i64>,
    /// Extra environment of runner containers (`ACTIONS_RUNNER_INPUT_JITCONFIG` is always set by
    /// the backend and cannot be overridden here).
    pub extra_env: BTreeMap<String, String>,
    /// Extra bind mounts / volumes, Docker `--volume` syntax (`src:dst[:opts]`).
    pub extra_volumes: Vec<String>,
    /// Extra labels on every container of this scale set (they also select what it adopts).
    pub extra_labels: BTreeMap<String, String>,
    /// Runner name prefix; `None`: the scale set name. Names are `<prefix>-<5 random chars>`.
    pub name_prefix: Option<String>,
    pub min_runners: i64,
    pub max_runners: i64,
    /// `workFolder` of the JIT config request (`_work` when empty).
    pub work_folder: String,
    /// `--network` of runner containers (`host`, `bridge`, a network name; `None`: default).
    pub network_mode: Option<String>,
    /// Overrides the runner image's command.
    pub command: Option<Vec<String>>,
    /// `--user` of runner containers.
    pub user: Option<String>,
    /// `--init` (needs docker-init on the host).
    pub init: bool,
    /// How many containers are created (and JIT configs requested) concurrently.
    pub create_concurrency: usize,
    /// Full reconcile at least this often, in milliseconds (events wake it sooner).
    pub resync_interval_ms: u64,
}

impl Default for DockerBackendConfig {
    fn default() -> Self {
        Self {
            scale_set_id: 0,
            scale_set_name: String::new(),
            runner_image: String::new(),
            docker_host: None,
            container_mode: ContainerMode::None,
            cpu_limit: None,
            memory_limit_bytes: None,
            extra_env: BTreeMap::new(),
            extra_volumes: Vec::new(),
            extra_labels: BTreeMap::new(),
            name_prefix: None,
            min_runners: 0,
            max_runners: i64::from(i32::MAX),
            work_folder: "_work".into(),
            network_mode: None,
            command: None,
            user: None,
            init: false,
            create_concurrency: 32,
            resync_interval_ms: 15_000,
        }
    }
}

impl DockerBackendConfig {
    /// The runner name prefix in effect.
    pub fn prefix(&self) -> &str {
        self.name_prefix.as_deref().unwrap_or(&self.scale_set_name)
    }

    /// Checks what the daemon would only reject later.
    pub fn validate(&self) -> Result<(), String> {
        if self.scale_set_id <= 0 {
            return Err("scaleSetId must be positive".into());
        }
        if self.runner_image.trim().is_empty() {
            return Err("runnerImage is required".into());
        }
        let prefix = self.prefix();
        if prefix.is_empty()
            || !prefix
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.')
            || !prefix.starts_with(|c: char| c.is_ascii_alphanumeric())
        {
            return Err(format!(
                "runner name prefix {prefix:?} must start with a letter or digit and hold only [a-zA-Z0-9_.-]"
            ));
        }
        if self.min_runners < 0 || self.max_runners < self.min_runners {
            return Err(format!(
                "minRunners {} / maxRunners {} out of range",
                self.min_runners, self.max_runners
            ));
        }
        if let Some(cpu) = self.cpu_limit
            && !(cpu.is_finite() && cpu > 0.0)
        {
            return Err(format!("cpuLimit {cpu} must be a positive number"));
        }
        if self.memory_limit_bytes.is_some_and(|m| m <= 0) {
            return Err("memoryLimitBytes must be positive".into());
        }
        if self.extra_env.keys().any(|k| k.is_empty() || k.contains('=')) {
            return Err("extraEnv names must be non-empty and hold no '='".into());
        }
        if self.extra_env.contains_key(super::JIT_CONFIG_ENV) {
            return Err(format!("extraEnv must not set {}", super::JIT_CONFIG_ENV));
        }
        if self.extra_labels.keys().any(|k| k.starts_with(super::labels::PREFIX)) {
            return Err(format!(
                "extraLabels must not use the {:?} prefix",
                super::labels::PREFIX
            ));
        }
        if let ContainerMode::Dind(d) = &self.container_mode
            && (d.image.trim().is_empty() || !d.shared_work_dir.starts_with('/'))
        {
            return Err("dind needs an image and an absolute sharedWorkDir".into());
        }
        if self.create_concurrency == 0 {
            return Err("createConcurrency must be at least 1".into());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn valid() -> DockerBackendConfig {
        DockerBackendConfig {
            scale_set_id: 1,
            scale_set_name: "linux".into(),
            runner_image: "runner:latest".into(),
            ..Default::default()
        }
    }

    #[test]
    fn parses_camel_case_with_defaults() {
        let cfg: DockerBackendConfig = serde_json::from_str(
            r#"{"scaleSetId":7,"scaleSetName":"set","runnerImage":"img","containerMode":{"type":"dind","image":"dind:1"},
                "cpuLimit":1.5,"memoryLimitBytes":1073741824,"extraEnv":{"A":"b"},"extraVolumes":["/x:/y:ro"],"maxRunners":20}"#,
        )
        .unwrap();
        assert_eq!(cfg.scale_set_id, 7);
        assert_eq!(cfg.max_runners, 20);
        assert_eq!(cfg.work_folder, "_work");
        assert_eq!(cfg.prefix(), "set");
        match &cfg.container_mode {
            ContainerMode::Dind(d) => {
                assert_eq!(d.image, "dind:1");
                assert_eq!(d.shared_work_dir, "/home/runner/_work");
            }
            ContainerMode::None => panic!("dind expected"),
        }
        cfg.validate().unwrap();
        let none: DockerBackendConfig = serde_json::from_str(
            r#"{"scaleSetId":1,"runnerImage":"i","scaleSetName":"s","containerMode":{"type":"none"}}"#,
        )
        .unwrap();
        assert_eq!(none.container_mode, ContainerMode::None);
        assert!(serde_json::from_str::<DockerBackendConfig>(r#"{"minRunners":1,"bogus":2}"#).is_err());
    }

    #[test]
    fn validation_table() {
        type Edit = fn(&mut DockerBackendConfig);
        let bad: &[(&str, Edit)] = &[
            ("id", |c| c.scale_set_id = 0),
            ("image", |c| c.runner_image = " ".into()),
            ("prefix", |c| c.name_prefix = Some("-x".into())),
            ("prefix chars", |c| c.name_prefix = Some("a b".into())),
            ("min>max", |c| {
                c.min_runners = 3;
                c.max_runners = 2
            }),
            ("cpu", |c| c.cpu_limit = Some(0.0)),
            ("mem", |c| c.memory_limit_bytes = Some(-1)),
            ("jit env", |c| {
                c.extra_env
                    .insert(crate::backend::docker::JIT_CONFIG_ENV.into(), "x".into());
            }),
            ("label prefix", |c| {
                c.extra_labels.insert("rarc.runner.id".into(), "1".into());
            }),
            ("concurrency", |c| c.create_concurrency = 0),
        ];
        valid().validate().unwrap();
        for (name, edit) in bad {
            let mut c = valid();
            edit(&mut c);
            assert!(c.validate().is_err(), "{name} should be rejected");
        }
    }
}
