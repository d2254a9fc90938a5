//! `createOptions` (the workflow's `options:`), parsed like `docker create` flags. The string is
//! shell-split once (quotes keep values with spaces together: `--label "a=b c"`,
//! `--health-cmd "redis-cli ping"`); each flag takes `--flag value` or `--flag=value`. An unknown
//! flag, a missing value or a stray argument is an error naming it. Pure: no I/O.

use crate::error::HookError;
use bollard::models::{DeviceMapping, DeviceRequest, ResourcesUlimits};

/// The health check flags.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Health {
    pub cmd: Option<String>,
    pub interval: Option<i64>,
    pub timeout: Option<i64>,
    pub retries: Option<i64>,
    pub start_period: Option<i64>,
    pub disabled: bool,
}

impl Health {
    pub fn is_set(&self) -> bool {
        *self != Self::default()
    }
}

/// What `createOptions` asks for. Values are kept as given; env values are never logged.
#[derive(Clone, Default, PartialEq)]
pub struct CreateOptions {
    pub env: Vec<(String, Option<String>)>,
    pub labels: Vec<(String, String)>,
    /// `-v src:dst[:opts]` (binds / named volumes).
    pub binds: Vec<String>,
    /// `-v /dst` (anonymous volumes).
    pub volumes: Vec<String>,
    pub publish: Vec<String>,
    pub expose: Vec<String>,
    pub nano_cpus: Option<i64>,
    pub cpu_shares: Option<i64>,
    pub cpuset_cpus: Option<String>,
    pub memory: Option<i64>,
    pub memory_swap: Option<i64>,
    pub memory_reservation: Option<i64>,
    pub shm_size: Option<i64>,
    pub pids_limit: Option<i64>,
    pub user: Option<String>,
    pub workdir: Option<String>,
    pub hostname: Option<String>,
    pub name: Option<String>,
    pub entrypoint: Option<String>,
    pub network: Option<String>,
    pub network_aliases: Vec<String>,
    pub add_hosts: Vec<String>,
    pub dns: Vec<String>,
    pub dns_search: Vec<String>,
    pub dns_options: Vec<String>,
    pub privileged: bool,
    pub init: bool,
    pub read_only: bool,
    pub cap_add: Vec<String>,
    pub cap_drop: Vec<String>,
    pub security_opt: Vec<String>,
    pub group_add: Vec<String>,
    pub tmpfs: Vec<(String, String)>,
    pub ulimits: Vec<ResourcesUlimits>,
    pub devices: Vec<DeviceMapping>,
    pub gpus: Option<DeviceRequest>,
    pub sysctls: Vec<(String, String)>,
    pub ipc: Option<String>,
    pub pid: Option<String>,
    pub stop_signal: Option<String>,
    pub stop_timeout: Option<i64>,
    pub health: Health,
}

impl std::fmt::Debug for CreateOptions {
    // Env values may be secrets: the derived form would print them.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CreateOptions")
            .field("env", &self.env.iter().map(|(k, _)| k).collect::<Vec<_>>())
            .field("labels", &self.labels)
            .field("binds", &self.binds)
            .field("network", &self.network)
            .finish_non_exhaustive()
    }
}

/// The flags understood, for the error message.
pub const SUPPORTED: &str = "--add-host, --cap-add, --cap-drop, --cpu-shares, --cpus, --cpuset-cpus, --device, \
--dns, --dns-option, --dns-search, --entrypoint, --env/-e, --expose, --gpus, --group-add, --health-cmd, \
--health-interval, --health-retries, --health-start-period, --health-timeout, --hostname/-h, --init, --ipc, \
--label/-l, --memory/-m, --memory-reservation, --memory-swap, --name, --network/--net, --network-alias/--net-alias, \
--no-healthcheck, --pid, --pids-limit, --privileged, --publish/-p, --read-only, --rm, --security-opt, --shm-size, \
--stop-signal, --stop-timeout, --sysctl, --tmpfs, --ulimit, --user/-u, --volume/-v, --workdir/-w";

fn err(detail: impl Into<String>) -> HookError {
    HookError::CreateOptions(detail.into())
}

/// Flags that take no value.
fn is_bool_flag(name: &str) -> bool {
    matches!(name, "privileged" | "init" | "read-only" | "no-healthcheck" | "rm")
}

/// Long name of a short flag.
fn long_name(short: &str) -> Option<&'static str> {
    Some(match short {
        "e" => "env",
        "v" => "volume",
        "u" => "user",
        "w" => "workdir",
        "h" => "hostname",
        "l" => "label",
        "m" => "memory",
        "p" => "publish",
        "c" => "cpu-shares",
        _ => return None,
    })
}

/// Parses a `createOptions` string (`None`, empty or blank: no options).
pub fn parse(options: Option<&str>) -> Result<CreateOptions, HookError> {
    let mut out = CreateOptions::default();
    let Some(text) = options.map(str::trim).filter(|s| !s.is_empty()) else {
        return Ok(out);
    };
    let tokens = shlex::split(text).ok_or_else(|| err("unbalanced quotes or a trailing backslash"))?;
    let mut it = tokens.into_iter();
    while let Some(token) = it.next() {
        let (name, inline) = if let Some(long) = token.strip_prefix("--") {
            match long.split_once('=') {
                Some((n, v)) => (n.to_owned(), Some(v.to_owned())),
                None => (long.to_owned(), None),
            }
        } else if let Some(short) = token.strip_prefix('-').filter(|s| !s.is_empty()) {
            let (flag, rest) = short.split_at(1);
            let Some(long) = long_name(flag) else {
                return Err(err(format!("unknown flag '{token}' (supported: {SUPPORTED})")));
            };
            let inline = match rest.strip_prefix('=') {
                Some(v) => Some(v.to_owned()),
                None if rest.is_empty() => None,
                None => Some(rest.to_owned()),
            };
            (long.to_owned(), inline)
        } else {
            return Err(err(format!(
                "unexpected argument '{token}': options must be flags (the image and command are set by the workflow)"
            )));
        };
        if is_bool_flag(&name) {
            let on = match inline.as_deref() {
                None | Some("true") | Some("1") => true,
                Some("false") | Some("0") => false,
                Some(v) => return Err(err(format!("--{name} takes no value or true/false, got '{v}'"))),
            };
            apply_bool(&mut out, &name, on)?;
            continue;
        }
        let value = match inline {
            Some(v) => v,
            None => it.next().ok_or_else(|| err(format!("flag '--{name}' needs a value")))?,
        };
        apply_value(&mut out, &name, value)?;
    }
    Ok(out)
}

fn apply_bool(out: &mut CreateOptions, name: &str, on: bool) -> Result<(), HookError> {
    match name {
        "privileged" => out.privileged = on,
        "init" => out.init = on,
        "read-only" => out.read_only = on,
        "no-healthcheck" => out.health.disabled = on,
        // The hook manages the containers' lifetime; accepted for compatibility, no effect.
        "rm" => {}
        other => return Err(err(format!("unknown flag '--{other}' (supported: {SUPPORTED})"))),
    }
    Ok(())
}

fn apply_value(out: &mut CreateOptions, name: &str, value: String) -> Result<(), HookError> {
    let flag = format!("--{name}");
    match name {
        "env" => match value.split_once('=') {
            Some((k, v)) => out.env.push((k.to_owned(), Some(v.to_owned()))),
            None => out.env.push((value, None)),
        },
        "label" => match value.split_once('=') {
            Some((k, v)) => out.labels.push((k.to_owned(), v.to_owned())),
            None => out.labels.push((value, String::new())),
        },
        "volume" => {
            if value.is_empty() {
                return Err(err("--volume needs a value"));
            }
            if value.contains(':') {
                out.binds.push(value);
            } else {
                out.volumes.push(value);
            }
        }
        "publish" => out.publish.push(value),
        "expose" => out.expose.push(value),
        "cpus" => out.nano_cpus = Some(parse_cpus(&value).ok_or_else(|| bad(&flag, &value))?),
        "cpu-shares" => out.cpu_shares = Some(value.parse().map_err(|_| bad(&flag, &value))?),
        "cpuset-cpus" => out.cpuset_cpus = Some(value),
        "memory" => out.memory = Some(parse_bytes(&value).ok_or_else(|| bad(&flag, &value))?),
        "memory-swap" => {
            out.memory_swap = Some(if value == "-1" {
                -1
            } else {
                parse_bytes(&value).ok_or_else(|| bad(&flag, &value))?
            });
        }
        "memory-reservation" => out.memory_reservation = Some(parse_bytes(&value).ok_or_else(|| bad(&flag, &value))?),
        "shm-size" => out.shm_size = Some(parse_bytes(&value).ok_or_else(|| bad(&flag, &value))?),
        "pids-limit" => out.pids_limit = Some(value.parse().map_err(|_| bad(&flag, &value))?),
        "user" => out.user = Some(value),
        "workdir" => out.workdir = Some(value),
        "hostname" => out.hostname = Some(value),
        "name" => out.name = Some(value),
        "entrypoint" => out.entrypoint = Some(value),
        "network" | "net" => out.network = Some(value),
        "network-alias" | "net-alias" => out.network_aliases.push(value),
        "add-host" => out.add_hosts.push(match value.split_once('=') {
            Some((h, ip)) => format!("{h}:{ip}"),
            None if value.contains(':') => value,
            None => return Err(bad(&flag, &value)),
        }),
        "dns" => out.dns.push(value),
        "dns-search" => out.dns_search.push(value),
        "dns-option" | "dns-opt" => out.dns_options.push(value),
        "cap-add" => out.cap_add.push(value),
        "cap-drop" => out.cap_drop.push(value),
        "security-opt" => out.security_opt.push(value),
        "group-add" => out.group_add.push(value),
        "tmpfs" => out.tmpfs.push(match value.split_once(':') {
            Some((p, o)) => (p.to_owned(), o.to_owned()),
            None => (value, String::new()),
        }),
        "ulimit" => out
            .ulimits
            .push(parse_ulimit(&value).ok_or_else(|| bad(&flag, &value))?),
        "device" => out.devices.push(parse_device(&value)),
        "gpus" => out.gpus = Some(parse_gpus(&value).ok_or_else(|| bad(&flag, &value))?),
        "sysctl" => match value.split_once('=') {
            Some((k, v)) => out.sysctls.push((k.to_owned(), v.to_owned())),
            None => return Err(bad(&flag, &value)),
        },
        "ipc" => out.ipc = Some(value),
        "pid" => out.pid = Some(value),
        "stop-signal" => out.stop_signal = Some(value),
        "stop-timeout" => out.stop_timeout = Some(value.parse().map_err(|_| bad(&flag, &value))?),
        "health-cmd" => out.health.cmd = Some(value),
        "health-interval" => out.health.interval = Some(parse_duration(&value).ok_or_else(|| bad(&flag, &value))?),
        "health-timeout" => out.health.timeout = Some(parse_duration(&value).ok_or_else(|| bad(&flag, &value))?),
        "health-start-period" => {
            out.health.start_period = Some(parse_duration(&value).ok_or_else(|| bad(&flag, &value))?);
        }
        "health-retries" => out.health.retries = Some(value.parse().map_err(|_| bad(&flag, &value))?),
        other => return Err(err(format!("unknown flag '--{other}' (supported: {SUPPORTED})"))),
    }
    Ok(())
}

fn bad(flag: &str, value: &str) -> HookError {
    err(format!("invalid value '{value}' for {flag}"))
}

/// `--cpus 1.5` → 1_500_000_000 nano CPUs.
pub fn parse_cpus(value: &str) -> Option<i64> {
    let cpus: f64 = value.parse().ok()?;
    (cpus.is_finite() && cpus > 0.0).then(|| (cpus * 1e9).round() as i64)
}

/// Docker's RAMInBytes: a number with an optional binary unit `b`, `k`, `m`, `g`, `t`, `p`
/// (optionally followed by `b`, any case): `512m`, `1GB`, `1024`.
pub fn parse_bytes(value: &str) -> Option<i64> {
    let v = value.trim().to_ascii_lowercase();
    let split = v.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(v.len());
    let (number, unit) = v.split_at(split);
    let number: f64 = number.parse().ok()?;
    let multiplier: f64 = match unit.trim() {
        "" | "b" => 1.0,
        "k" | "kb" | "kib" => 1024.0,
        "m" | "mb" | "mib" => 1024.0 * 1024.0,
        "g" | "gb" | "gib" => 1024.0 * 1024.0 * 1024.0,
        "t" | "tb" | "tib" => 1024f64.powi(4),
        "p" | "pb" | "pib" => 1024f64.powi(5),
        _ => return None,
    };
    let bytes = number * multiplier;
    (bytes.is_finite() && bytes >= 0.0 && bytes < i64::MAX as f64).then_some(bytes as i64)
}

/// A Go duration (`1m30s`, `500ms`, `2.5s`, `1h`) in nanoseconds.
pub fn parse_duration(value: &str) -> Option<i64> {
    let mut rest = value.trim();
    if rest.is_empty() {
        return None;
    }
    if rest == "0" {
        return Some(0);
    }
    let mut total = 0f64;
    while !rest.is_empty() {
        let n = rest.find(|c: char| !(c.is_ascii_digit() || c == '.'))?;
        let number: f64 = rest[..n].parse().ok()?;
        rest = &rest[n..];
        let u = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let nanos = match &rest[..u] {
            "ns" => 1.0,
            "us" | "µs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            _ => return None,
        };
        total += number * nanos;
        rest = &rest[u..];
    }
    (total < i64::MAX as f64).then_some(total as i64)
}

/// `nofile=1024[:2048]`.
fn parse_ulimit(value: &str) -> Option<ResourcesUlimits> {
    let (name, limits) = value.split_once('=')?;
    let (soft, hard) = match limits.split_once(':') {
        Some((s, h)) => (s.parse().ok()?, h.parse().ok()?),
        None => {
            let v: i64 = limits.parse().ok()?;
            (v, v)
        }
    };
    Some(ResourcesUlimits {
        name: Some(name.to_owned()),
        soft: Some(soft),
        hard: Some(hard),
    })
}

/// `/dev/x[:/dev/y[:rwm]]`.
fn parse_device(value: &str) -> DeviceMapping {
    let mut parts = value.splitn(3, ':');
    let host = parts.next().unwrap_or_default().to_owned();
    let container = parts.next().map_or_else(|| host.clone(), str::to_owned);
    let perms = parts.next().unwrap_or("rwm").to_owned();
    DeviceMapping {
        path_on_host: Some(host),
        path_in_container: Some(container),
        cgroup_permissions: Some(perms),
    }
}

/// `all`, a count, or `device=0,1`.
fn parse_gpus(value: &str) -> Option<DeviceRequest> {
    let gpu = Some(vec![vec!["gpu".to_owned()]]);
    let v = value.trim_matches('"');
    if v == "all" {
        return Some(DeviceRequest {
            count: Some(-1),
            capabilities: gpu,
            ..Default::default()
        });
    }
    if let Some(ids) = v.strip_prefix("device=") {
        return Some(DeviceRequest {
            device_ids: Some(ids.split(',').map(str::to_owned).collect()),
            capabilities: gpu,
            ..Default::default()
        });
    }
    let count: i64 = v.parse().ok().filter(|n| *n > 0)?;
    Some(DeviceRequest {
        count: Some(count),
        capabilities: gpu,
        ..Default::default()
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn ok(s: &str) -> CreateOptions {
        parse(Some(s)).unwrap()
    }

    fn fails(s: &str) -> String {
        parse(Some(s)).unwrap_err().to_string()
    }

    #[test]
    fn nothing() {
        assert_eq!(parse(None).unwrap(), CreateOptions::default());
        assert_eq!(parse(Some("  ")).unwrap(), CreateOptions::default());
    }

    #[test]
    fn values_with_spaces_stay_whole() {
        let o = ok(
            r#"--label "team=data platform" --health-cmd "redis-cli ping" -e 'GREETING=hello world' --workdir="/my dir""#,
        );
        assert_eq!(o.labels, [("team".to_owned(), "data platform".to_owned())]);
        assert_eq!(o.health.cmd.as_deref(), Some("redis-cli ping"));
        assert_eq!(o.env, [("GREETING".to_owned(), Some("hello world".to_owned()))]);
        assert_eq!(o.workdir.as_deref(), Some("/my dir"));
    }

    #[test]
    fn common_flags() {
        let o = ok(
            "--cpus 1.5 --memory=512m --shm-size 1g --user 1001:123 -w /w --hostname h1 \
            --add-host db:10.0.0.1 --add-host=x=1.2.3.4 -l a -v /src:/dst:ro -v /anon --privileged --cap-add NET_ADMIN \
            --cap-drop=MKNOD --security-opt seccomp=unconfined --network-alias web --init --entrypoint /bin/sh \
            --health-interval 1m30s --health-timeout 500ms --health-retries 3 --health-start-period 2s \
            --ulimit nofile=1024:2048 --tmpfs /run:rw,size=64m --gpus all -p 8080:80 --rm -m 1024 -uroot",
        );
        assert_eq!(o.nano_cpus, Some(1_500_000_000));
        assert_eq!(o.memory, Some(1024));
        assert_eq!(o.shm_size, Some(1 << 30));
        assert_eq!(o.user.as_deref(), Some("root"));
        assert_eq!(o.workdir.as_deref(), Some("/w"));
        assert_eq!(o.hostname.as_deref(), Some("h1"));
        assert_eq!(o.add_hosts, ["db:10.0.0.1", "x:1.2.3.4"]);
        assert_eq!(o.labels, [("a".to_owned(), String::new())]);
        assert_eq!(o.binds, ["/src:/dst:ro"]);
        assert_eq!(o.volumes, ["/anon"]);
        assert!(o.privileged && o.init);
        assert_eq!(o.cap_add, ["NET_ADMIN"]);
        assert_eq!(o.cap_drop, ["MKNOD"]);
        assert_eq!(o.security_opt, ["seccomp=unconfined"]);
        assert_eq!(o.network_aliases, ["web"]);
        assert_eq!(o.entrypoint.as_deref(), Some("/bin/sh"));
        assert_eq!(o.health.interval, Some(90_000_000_000));
        assert_eq!(o.health.timeout, Some(500_000_000));
        assert_eq!(o.health.retries, Some(3));
        assert_eq!(o.health.start_period, Some(2_000_000_000));
        assert_eq!(o.ulimits[0].soft, Some(1024));
        assert_eq!(o.ulimits[0].hard, Some(2048));
        assert_eq!(o.tmpfs, [("/run".to_owned(), "rw,size=64m".to_owned())]);
        assert_eq!(o.gpus.unwrap().count, Some(-1));
        assert_eq!(o.publish, ["8080:80"]);
        assert!(!ok("--privileged=false").privileged);
        assert!(ok("--no-healthcheck").health.disabled);
    }

    #[test]
    fn errors_name_the_flag() {
        let e = fails("--cpus 1 --frobnicate 3");
        assert!(
            e.starts_with("invalid createOptions: unknown flag '--frobnicate'"),
            "{e}"
        );
        let e = fails("-x");
        assert!(e.starts_with("invalid createOptions: unknown flag '-x'"), "{e}");
        assert_eq!(
            fails("--memory"),
            "invalid createOptions: flag '--memory' needs a value"
        );
        assert_eq!(
            fails("--memory lots"),
            "invalid createOptions: invalid value 'lots' for --memory"
        );
        assert_eq!(
            fails("--cpus=-1"),
            "invalid createOptions: invalid value '-1' for --cpus"
        );
        assert!(fails("--label 'unterminated").contains("unbalanced quotes"));
        assert!(fails("redis").contains("unexpected argument 'redis'"));
        assert!(fails("--init=maybe").contains("--init takes no value"));
    }

    #[test]
    fn env_values_are_not_in_debug() {
        let o = ok("-e TOKEN=s3cr3t");
        assert!(!format!("{o:?}").contains("s3cr3t"));
        assert!(format!("{o:?}").contains("TOKEN"));
    }

    #[test]
    fn units() {
        assert_eq!(parse_bytes("1k"), Some(1024));
        assert_eq!(parse_bytes("1.5KB"), Some(1536));
        assert_eq!(parse_bytes("2g"), Some(2 << 30));
        assert_eq!(parse_bytes("10"), Some(10));
        assert_eq!(parse_bytes("10x"), None);
        assert_eq!(parse_bytes(""), None);
        assert_eq!(parse_duration("10s"), Some(10_000_000_000));
        assert_eq!(parse_duration("1h1m"), Some(3_660_000_000_000));
        assert_eq!(parse_duration("0"), Some(0));
        assert_eq!(parse_duration("10"), None);
        assert_eq!(parse_duration("5d"), None);
        assert_eq!(parse_cpus("0.5"), Some(500_000_000));
        assert_eq!(parse_cpus("x"), None);
    }
}
