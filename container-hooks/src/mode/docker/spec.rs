//! From a `HookContainer` to the Engine API's container-create body (`container-hooks.md` §3.2
//! step 6, §3.4 step 3): env, mounts, ports, entrypoint and command, labels, network and aliases,
//! and `createOptions`. Pure: no I/O.

use super::create_options::{self, CreateOptions};
use crate::error::HookError;
use crate::protocol::{Env, HookContainer, Mount};
use bollard::models::{ContainerCreateBody, EndpointSettings, HealthConfig, HostConfig, NetworkingConfig, PortBinding};
use std::collections::{BTreeMap, HashMap};

/// Which container is being created.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// The job container: `tail -f /dev/null` when there is no entrypoint.
    Job,
    /// A service container.
    Service,
    /// A container action (`run_container_step`): runs in `workingDirectory`.
    Step,
}

/// What the hook decides besides the request.
#[derive(Debug, Clone)]
pub struct Placement<'a> {
    pub label: &'a str,
    /// The job network (`None`: the daemon's default).
    pub network: Option<&'a str>,
    /// Network aliases on that network (services: the workflow name and the image name).
    pub aliases: Vec<String>,
    pub role: Role,
}

/// The `PATH` of a container whose image sets none (Docker's default).
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Networks that take no aliases (not user-defined).
pub fn is_user_defined_network(network: &str) -> bool {
    !matches!(network, "host" | "bridge" | "none" | "default") && !network.starts_with("container:")
}

/// The name and create body for `container`, which runs `image`.
pub fn container_body(
    container: &HookContainer,
    image: &str,
    placement: &Placement<'_>,
) -> Result<(Option<String>, ContainerCreateBody), HookError> {
    let opts = create_options::parse(container.create_options.as_deref())?;
    let (entrypoint, cmd) = entrypoint_and_cmd(container, &opts, placement.role)?;

    let mut labels: HashMap<String, String> = HashMap::from([(placement.label.to_owned(), String::new())]);
    labels.extend(opts.labels.iter().cloned());

    let (mut binds, mut volumes) = mounts(&container.user_mount_volumes, &container.system_mount_volumes);
    binds.extend(opts.binds.iter().cloned());
    volumes.extend(opts.volumes.iter().cloned());

    let mut exposed: Vec<String> = Vec::new();
    let mut bindings: HashMap<String, Option<Vec<PortBinding>>> = HashMap::new();
    for spec in container.port_mappings.iter().chain(&opts.publish) {
        let p = parse_port_mapping(spec)?;
        if !exposed.contains(&p.container) {
            exposed.push(p.container.clone());
        }
        bindings
            .entry(p.container)
            .or_insert_with(|| Some(Vec::new()))
            .get_or_insert_with(Vec::new)
            .push(PortBinding {
                host_ip: p.host_ip,
                host_port: p.host_port,
            });
    }
    for e in &opts.expose {
        let key = if e.contains('/') { e.clone() } else { format!("{e}/tcp") };
        if !exposed.contains(&key) {
            exposed.push(key);
        }
    }

    let network = opts.network.as_deref().or(placement.network);
    let mut aliases = placement.aliases.clone();
    aliases.extend(opts.network_aliases.iter().cloned());
    aliases.dedup();
    let networking_config = match network {
        Some(net) if is_user_defined_network(net) && !aliases.is_empty() => Some(NetworkingConfig {
            endpoints_config: Some(HashMap::from([(
                net.to_owned(),
                EndpointSettings {
                    aliases: Some(aliases),
                    ..Default::default()
                },
            )])),
        }),
        _ => None,
    };

    let working_dir = match placement.role {
        Role::Step => opts.workdir.clone().or_else(|| container.working_directory.clone()),
        Role::Job | Role::Service => opts.workdir.clone(),
    }
    .filter(|w| !w.is_empty());

    let host_config = HostConfig {
        binds: non_empty(binds),
        port_bindings: (!bindings.is_empty()).then_some(bindings),
        network_mode: network.map(str::to_owned),
        privileged: opts.privileged.then_some(true),
        init: opts.init.then_some(true),
        readonly_rootfs: opts.read_only.then_some(true),
        nano_cpus: opts.nano_cpus,
        cpu_shares: opts.cpu_shares,
        cpuset_cpus: opts.cpuset_cpus.clone(),
        memory: opts.memory,
        memory_swap: opts.memory_swap,
        memory_reservation: opts.memory_reservation,
        shm_size: opts.shm_size,
        pids_limit: opts.pids_limit,
        extra_hosts: non_empty(opts.add_hosts.clone()),
        dns: non_empty(opts.dns.clone()),
        dns_search: non_empty(opts.dns_search.clone()),
        dns_options: non_empty(opts.dns_options.clone()),
        cap_add: non_empty(opts.cap_add.clone()),
        cap_drop: non_empty(opts.cap_drop.clone()),
        security_opt: non_empty(opts.security_opt.clone()),
        group_add: non_empty(opts.group_add.clone()),
        tmpfs: (!opts.tmpfs.is_empty()).then(|| opts.tmpfs.iter().cloned().collect()),
        ulimits: non_empty(opts.ulimits.clone()),
        devices: non_empty(opts.devices.clone()),
        device_requests: opts.gpus.clone().map(|g| vec![g]),
        sysctls: (!opts.sysctls.is_empty()).then(|| opts.sysctls.iter().cloned().collect()),
        ipc_mode: opts.ipc.clone(),
        pid_mode: opts.pid.clone(),
        ..Default::default()
    };

    let body = ContainerCreateBody {
        image: Some(image.to_owned()),
        env: Some(container_env(&opts, &container.environment_variables)),
        labels: Some(labels),
        entrypoint,
        cmd,
        working_dir,
        user: opts.user.clone(),
        hostname: opts.hostname.clone(),
        exposed_ports: non_empty(exposed),
        volumes: non_empty(volumes),
        healthcheck: health(&opts),
        stop_signal: opts.stop_signal.clone(),
        stop_timeout: opts.stop_timeout,
        attach_stdout: Some(placement.role == Role::Step),
        attach_stderr: Some(placement.role == Role::Step),
        host_config: Some(host_config),
        networking_config,
        ..Default::default()
    };
    Ok((opts.name.clone(), body))
}

fn non_empty<T>(v: Vec<T>) -> Option<Vec<T>> {
    (!v.is_empty()).then_some(v)
}

fn health(opts: &CreateOptions) -> Option<HealthConfig> {
    let h = &opts.health;
    if !h.is_set() {
        return None;
    }
    let test = if h.disabled {
        Some(vec!["NONE".to_owned()])
    } else {
        h.cmd.as_ref().map(|c| vec!["CMD-SHELL".to_owned(), c.clone()])
    };
    Some(HealthConfig {
        test,
        interval: h.interval,
        timeout: h.timeout,
        retries: h.retries,
        start_period: h.start_period,
        ..Default::default()
    })
}

/// An optional argv (entrypoint or command; `None`: the image's).
type Argv = Option<Vec<String>>;

/// Entrypoint and command. The request's `entryPoint` wins, then `--entrypoint` from
/// `createOptions`, then (job container only) `tail -f /dev/null`. The entrypoint is shell-split
/// (`bash -e` → `["bash", "-e"]`) and so are the re-joined `entryPointArgs` (§1.4.1).
fn entrypoint_and_cmd(container: &HookContainer, opts: &CreateOptions, role: Role) -> Result<(Argv, Argv), HookError> {
    let requested = container.entry_point.as_deref().filter(|e| !e.trim().is_empty());
    let entry = requested.or(opts.entrypoint.as_deref().filter(|e| !e.trim().is_empty()));
    let (entry, args) = match (entry, role) {
        (Some(e), _) => (Some(e), rejoin_args(&container.entry_point_args, "entryPointArgs")?),
        (None, Role::Job) => (Some("tail"), vec!["-f".to_owned(), "/dev/null".to_owned()]),
        (None, _) => (None, rejoin_args(&container.entry_point_args, "entryPointArgs")?),
    };
    let entrypoint = match entry {
        Some(e) => Some(
            shlex::split(e)
                .filter(|w| !w.is_empty())
                .ok_or_else(|| HookError::InvalidRequest {
                    field: "entryPoint".into(),
                    detail: "unbalanced quotes".into(),
                })?,
        ),
        None => None,
    };
    Ok((entrypoint, (!args.is_empty()).then_some(args)))
}

/// The argv the runner meant: the pieces re-joined with single spaces and shell-split (§1.4.1), so
/// `["\"a", "b\"", "c"]` → `["a b", "c"]`.
pub fn rejoin_args(pieces: &[String], field: &str) -> Result<Vec<String>, HookError> {
    let joined = pieces
        .iter()
        .map(String::as_str)
        .filter(|p| !p.is_empty())
        .collect::<Vec<_>>()
        .join(" ");
    shlex::split(&joined).ok_or_else(|| HookError::InvalidRequest {
        field: field.to_owned(),
        detail: "unbalanced quotes after re-joining the pieces with spaces".into(),
    })
}

/// The container's environment: `createOptions` `--env` first, then the request's variables
/// (which win), then `GITHUB_ACTIONS=true` and `CI=true` unless `CI` is already set.
pub fn container_env(opts: &CreateOptions, env: &Env) -> Vec<String> {
    fn set(vars: &mut Vec<(String, String)>, k: &str, v: &str) {
        match vars.iter_mut().find(|(name, _)| name == k) {
            Some(slot) => slot.1 = v.to_owned(),
            None => vars.push((k.to_owned(), v.to_owned())),
        }
    }
    let mut vars: Vec<(String, String)> = Vec::new();
    for (k, v) in &opts.env {
        match (v, env.get(k)) {
            (Some(v), _) => set(&mut vars, k, v),
            (None, Some(from_job)) => set(&mut vars, k, from_job),
            (None, None) => {}
        }
    }
    for (k, v) in env.iter() {
        set(&mut vars, k, v);
    }
    set(&mut vars, "GITHUB_ACTIONS", "true");
    if !vars.iter().any(|(k, _)| k == "CI") {
        set(&mut vars, "CI", "true");
    }
    vars.into_iter().map(|(k, v)| format!("{k}={v}")).collect()
}

/// The environment of a script step's exec: the step's variables, and `PATH` = `prependPath`
/// joined with `:` in front of the step's own `PATH`, else the container's configured one.
pub fn exec_env(env: &Env, prepend: Option<&str>, container_path: Option<&str>) -> Vec<String> {
    let mut vars: Vec<String> = env
        .iter()
        .filter(|(k, _)| prepend.is_none() || *k != "PATH")
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    if let Some(prepend) = prepend {
        let base = env.get("PATH").or(container_path).unwrap_or(DEFAULT_PATH);
        vars.push(format!("PATH={prepend}:{base}"));
    }
    vars
}

/// `PATH` from a container's configured environment (`KEY=VALUE` entries).
pub fn path_of(config_env: &[String]) -> Option<&str> {
    config_env.iter().find_map(|e| e.strip_prefix("PATH="))
}

/// Binds (`src:dst[:ro]`) and anonymous volumes (`dst`): user mounts first, then system mounts.
pub fn mounts(user: &[Mount], system: &[Mount]) -> (Vec<String>, Vec<String>) {
    let mut binds = Vec::new();
    let mut volumes = Vec::new();
    for m in user.iter().chain(system) {
        match m.source_volume_path.as_deref().filter(|s| !s.is_empty()) {
            Some(src) => binds.push(format!(
                "{src}:{}{}",
                m.target_volume_path,
                if m.read_only { ":ro" } else { "" }
            )),
            None => volumes.push(m.target_volume_path.clone()),
        }
    }
    (binds, volumes)
}

/// One `portMappings` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortMapping {
    /// `80/tcp`.
    pub container: String,
    pub host_ip: Option<String>,
    /// `None`: a random host port.
    pub host_port: Option<String>,
}

/// Parses `[ip:][hostPort:]containerPort[/proto]` (`80`, `8080:80`, `8080:80/udp`,
/// `127.0.0.1:8080:80`, `127.0.0.1::80`, `[::1]:8080:80`).
pub fn parse_port_mapping(spec: &str) -> Result<PortMapping, HookError> {
    let bad = |detail: &str| HookError::InvalidRequest {
        field: "portMappings".into(),
        detail: format!("'{spec}': {detail}"),
    };
    let (rest, proto) = match spec.rsplit_once('/') {
        Some((r, p)) => (r, p.to_ascii_lowercase()),
        None => (spec, "tcp".to_owned()),
    };
    if !matches!(proto.as_str(), "tcp" | "udp" | "sctp") {
        return Err(bad("the protocol must be tcp, udp or sctp"));
    }
    let (ip, rest) = if let Some(v6) = rest.strip_prefix('[') {
        let (ip, after) = v6.split_once(']').ok_or_else(|| bad("unclosed '['"))?;
        let after = after
            .strip_prefix(':')
            .ok_or_else(|| bad("expected ':' after the address"))?;
        (Some(ip.to_owned()), after)
    } else {
        (None, rest)
    };
    let parts: Vec<&str> = rest.split(':').collect();
    let (ip, host, container) = match (ip, parts.as_slice()) {
        (None, [c]) => (None, None, *c),
        (None, [h, c]) => (None, Some(*h), *c),
        (None, [ip, h, c]) => (Some((*ip).to_owned()), Some(*h), *c),
        (Some(ip), [h, c]) => (Some(ip), Some(*h), *c),
        _ => return Err(bad("expected [ip:][hostPort:]containerPort[/protocol]")),
    };
    let port = |p: &str| -> Result<u16, HookError> {
        if p.contains('-') {
            return Err(bad("port ranges are not supported"));
        }
        p.parse::<u16>()
            .ok()
            .filter(|n| *n > 0)
            .ok_or_else(|| bad(&format!("invalid port '{p}' (1-65535)")))
    };
    let container = port(container)?;
    let host_port = match host.filter(|h| !h.is_empty()) {
        Some(h) => Some(port(h)?.to_string()),
        None => None,
    };
    Ok(PortMapping {
        container: format!("{container}/{proto}"),
        host_ip: ip.filter(|i| !i.is_empty()),
        host_port,
    })
}

/// `context.*.ports` from an inspected container's port map: containerPort → hostPort, for the
/// ports published on the host (IPv4 and IPv6 bindings collapse onto one key).
pub fn published_ports(ports: Option<&HashMap<String, Option<Vec<PortBinding>>>>) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for (key, bindings) in ports.into_iter().flatten() {
        let container = key.split('/').next().unwrap_or(key);
        if let Some(host) = bindings
            .iter()
            .flatten()
            .find_map(|b| b.host_port.as_deref().filter(|p| !p.is_empty()))
        {
            out.insert(container.to_owned(), host.to_owned());
        }
    }
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::protocol::Env;

    fn env(pairs: &[(&str, &str)]) -> Env {
        Env(pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect())
    }

    fn placement(role: Role) -> Placement<'static> {
        Placement {
            label: "74657374",
            network: Some("github_network_x"),
            aliases: vec!["redis".into()],
            role,
        }
    }

    fn mount(src: Option<&str>, dst: &str, ro: bool) -> Mount {
        Mount {
            user_provided_value: None,
            source_volume_path: src.map(str::to_owned),
            target_volume_path: dst.into(),
            read_only: ro,
        }
    }

    #[test]
    fn ports() {
        let p = parse_port_mapping("8080:80").unwrap();
        assert_eq!((p.container.as_str(), p.host_port.as_deref()), ("80/tcp", Some("8080")));
        let p = parse_port_mapping("80").unwrap();
        assert_eq!((p.container.as_str(), p.host_port), ("80/tcp", None));
        let p = parse_port_mapping("127.0.0.1:5353:53/UDP").unwrap();
        assert_eq!(p.container, "53/udp");
        assert_eq!(p.host_ip.as_deref(), Some("127.0.0.1"));
        let p = parse_port_mapping("127.0.0.1::80").unwrap();
        assert_eq!((p.host_ip.as_deref(), p.host_port), (Some("127.0.0.1"), None));
        let p = parse_port_mapping("[::1]:8080:80").unwrap();
        assert_eq!(p.host_ip.as_deref(), Some("::1"));
        for bad in ["0", "70000", "a:b", "80/icmp", "1:2:3:4", "8000-8010:80", ""] {
            let e = parse_port_mapping(bad).unwrap_err().to_string();
            assert!(e.starts_with("invalid request: portMappings: '"), "{bad}: {e}");
        }
    }

    #[test]
    fn published() {
        let map = HashMap::from([
            (
                "80/tcp".to_owned(),
                Some(vec![
                    PortBinding {
                        host_ip: Some("0.0.0.0".into()),
                        host_port: Some("8080".into()),
                    },
                    PortBinding {
                        host_ip: Some("::".into()),
                        host_port: Some("8080".into()),
                    },
                ]),
            ),
            (
                "8080/tcp".to_owned(),
                Some(vec![PortBinding {
                    host_ip: None,
                    host_port: Some("8088".into()),
                }]),
            ),
            ("6379/tcp".to_owned(), None),
        ]);
        let got = published_ports(Some(&map));
        assert_eq!(
            got,
            BTreeMap::from([("80".into(), "8080".into()), ("8080".into(), "8088".into())])
        );
        assert!(published_ports(None).is_empty());
    }

    #[test]
    fn args_are_rejoined_and_shell_split() {
        let v = |s: &[&str]| s.iter().map(|x| (*x).to_owned()).collect::<Vec<_>>();
        assert_eq!(
            rejoin_args(&v(&["\"Mona", "the", "Octocat\""]), "a").unwrap(),
            ["Mona the Octocat"]
        );
        assert_eq!(
            rejoin_args(&v(&["-c", "'if [[ -z $X ]]; then exit 1; fi'"]), "a").unwrap(),
            ["-c", "if [[ -z $X ]]; then exit 1; fi"]
        );
        assert_eq!(rejoin_args(&v(&["\"\"", "", "x"]), "a").unwrap(), ["", "x"]);
        assert!(rejoin_args(&v(&["\"a"]), "a").is_err());
    }

    #[test]
    fn env_order_and_ci() {
        let opts = create_options::parse(Some("-e A=from-options -e B=opt -e FROM_JOB")).unwrap();
        let vars = container_env(
            &opts,
            &env(&[("A", "from-job"), ("FROM_JOB", "x"), ("GITHUB_ACTIONS", "no")]),
        );
        assert_eq!(
            vars,
            ["A=from-job", "B=opt", "FROM_JOB=x", "GITHUB_ACTIONS=true", "CI=true"]
        );
        let vars = container_env(&CreateOptions::default(), &env(&[("CI", "false"), ("EMPTY", "")]));
        assert_eq!(vars, ["CI=false", "EMPTY=", "GITHUB_ACTIONS=true"]);
    }

    #[test]
    fn exec_path() {
        let e = env(&[("A", "1")]);
        assert_eq!(exec_env(&e, None, Some("/x")), ["A=1"]);
        assert_eq!(
            exec_env(&e, Some("/p1:/p2"), Some("/bin")),
            ["A=1", "PATH=/p1:/p2:/bin"]
        );
        assert_eq!(
            exec_env(&e, Some("/p"), None),
            ["A=1".to_owned(), format!("PATH=/p:{DEFAULT_PATH}")]
        );
        let e = env(&[("PATH", "/mine")]);
        assert_eq!(exec_env(&e, Some("/p"), Some("/bin")), ["PATH=/p:/mine"]);
        assert_eq!(exec_env(&e, None, Some("/bin")), ["PATH=/mine"]);
        assert_eq!(path_of(&["A=1".into(), "PATH=/a:/b".into()]), Some("/a:/b"));
    }

    #[test]
    fn mounts_user_first_and_anonymous() {
        let (binds, volumes) = mounts(
            &[mount(Some("/data dir"), "/data", false), mount(None, "/anon", false)],
            &[mount(Some("/ext"), "/__e", true)],
        );
        assert_eq!(binds, ["/data dir:/data", "/ext:/__e:ro"]);
        assert_eq!(volumes, ["/anon"]);
    }

    #[test]
    fn job_container_defaults() {
        let c = HookContainer {
            image: Some("node:22".into()),
            port_mappings: vec!["8080:80".into()],
            create_options: Some("--cpus 1 --label 'x=a b'".into()),
            environment_variables: env(&[("SECRET", "s3cr3t")]),
            ..Default::default()
        };
        let (name, body) = container_body(&c, "node:22", &placement(Role::Job)).unwrap();
        assert_eq!(name, None);
        assert_eq!(body.entrypoint, Some(vec!["tail".to_owned()]));
        assert_eq!(body.cmd, Some(vec!["-f".to_owned(), "/dev/null".to_owned()]));
        let labels = body.labels.unwrap();
        assert_eq!(labels.get("74657374").map(String::as_str), Some(""));
        assert_eq!(labels.get("x").map(String::as_str), Some("a b"));
        let hc = body.host_config.unwrap();
        assert_eq!(hc.nano_cpus, Some(1_000_000_000));
        assert_eq!(hc.network_mode.as_deref(), Some("github_network_x"));
        assert!(hc.port_bindings.unwrap().contains_key("80/tcp"));
        let aliases = body.networking_config.unwrap().endpoints_config.unwrap()["github_network_x"]
            .aliases
            .clone();
        assert_eq!(aliases, Some(vec!["redis".to_owned()]));
        assert_eq!(body.exposed_ports, Some(vec!["80/tcp".to_owned()]));
        assert!(body.env.unwrap().contains(&"SECRET=s3cr3t".to_owned()));
        assert_eq!(body.working_dir, None);
    }

    #[test]
    fn entrypoints() {
        let mut c = HookContainer {
            entry_point: Some("bash -e".into()),
            entry_point_args: vec!["/x.sh".into()],
            working_directory: Some("/github/workspace".into()),
            ..Default::default()
        };
        let (_, body) = container_body(&c, "i", &placement(Role::Step)).unwrap();
        assert_eq!(body.entrypoint, Some(vec!["bash".to_owned(), "-e".to_owned()]));
        assert_eq!(body.cmd, Some(vec!["/x.sh".to_owned()]));
        assert_eq!(body.working_dir.as_deref(), Some("/github/workspace"));
        // Service / step without entrypoint: the image's.
        c.entry_point = None;
        c.entry_point_args = vec![];
        let (_, body) = container_body(&c, "i", &placement(Role::Service)).unwrap();
        assert_eq!((body.entrypoint, body.cmd, body.working_dir), (None, None, None));
        // createOptions --entrypoint when the request has none; --name overrides the name.
        c.create_options = Some("--entrypoint /bin/sh --name my-svc --network host".into());
        let (name, body) = container_body(&c, "i", &placement(Role::Job)).unwrap();
        assert_eq!(body.entrypoint, Some(vec!["/bin/sh".to_owned()]));
        assert_eq!(name.as_deref(), Some("my-svc"));
        assert_eq!(body.host_config.unwrap().network_mode.as_deref(), Some("host"));
        // No aliases on a network that is not user-defined.
        assert!(body.networking_config.is_none());
    }

    #[test]
    fn health_flags() {
        let c = HookContainer {
            create_options: Some(
                "--health-cmd 'wget -q -O- http://localhost' --health-interval 1s --health-retries 5".into(),
            ),
            ..Default::default()
        };
        let (_, body) = container_body(&c, "i", &placement(Role::Service)).unwrap();
        let h = body.healthcheck.unwrap();
        assert_eq!(
            h.test,
            Some(vec!["CMD-SHELL".to_owned(), "wget -q -O- http://localhost".to_owned()])
        );
        assert_eq!((h.interval, h.retries), (Some(1_000_000_000), Some(5)));
        let c = HookContainer {
            create_options: Some("--no-healthcheck".into()),
            ..Default::default()
        };
        let (_, body) = container_body(&c, "i", &placement(Role::Service)).unwrap();
        assert_eq!(body.healthcheck.unwrap().test, Some(vec!["NONE".to_owned()]));
    }
}
