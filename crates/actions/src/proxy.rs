//! Proxy selection from the environment with Go's `httpproxy.FromEnvironment` semantics (§2.3).
//!
//! `HTTPS_PROXY`/`https_proxy` serve https targets, `HTTP_PROXY`/`http_proxy` http targets (the
//! upper-case name wins when both are non-empty). `NO_PROXY`/`no_proxy` is a comma list of
//! domains (suffix match; `.example.com` and `*.example.com` match only sub-domains), IPs, CIDRs
//! and any of those with `:port`; `*` disables the proxy. `localhost` and loopback addresses never
//! use a proxy. A proxy value without a scheme gets `http://`. Userinfo in the proxy URL becomes a
//! basic `Proxy-Authorization` header (reqwest does that from the URL we return).

use std::net::IpAddr;
use url::{Host, Url};

/// The raw proxy variables.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProxyEnv {
    pub http_proxy: Option<String>,
    pub https_proxy: Option<String>,
    pub no_proxy: Option<String>,
}

impl ProxyEnv {
    /// Reads the process environment.
    pub fn from_env() -> Self {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Reads variables through `lookup`; for each pair the first non-empty value wins.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Self {
        let any = |names: [&str; 2]| names.into_iter().find_map(|n| lookup(n).filter(|v| !v.is_empty()));
        Self {
            http_proxy: any(["HTTP_PROXY", "http_proxy"]),
            https_proxy: any(["HTTPS_PROXY", "https_proxy"]),
            no_proxy: any(["NO_PROXY", "no_proxy"]),
        }
    }
}

/// One `NO_PROXY` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Exclusion {
    All,
    Cidr {
        network: IpAddr,
        prefix: u8,
    },
    Ip {
        ip: IpAddr,
        port: Option<String>,
    },
    /// `host` always starts with `.`; `match_host` also matches the bare domain.
    Domain {
        host: String,
        port: Option<String>,
        match_host: bool,
    },
}

/// Parsed proxy configuration.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProxyConfig {
    http: Option<Url>,
    https: Option<Url>,
    exclusions: Vec<Exclusion>,
}

impl ProxyConfig {
    pub fn new(env: &ProxyEnv) -> Self {
        Self {
            http: env.http_proxy.as_deref().and_then(parse_proxy),
            https: env.https_proxy.as_deref().and_then(parse_proxy),
            exclusions: env.no_proxy.as_deref().map(parse_no_proxy).unwrap_or_default(),
        }
    }

    /// True when no proxy is configured at all.
    pub fn is_empty(&self) -> bool {
        self.http.is_none() && self.https.is_none()
    }

    /// The proxy for `target`, if any.
    pub fn proxy_for(&self, target: &Url) -> Option<Url> {
        let proxy = match target.scheme() {
            "https" => self.https.as_ref(),
            "http" => self.http.as_ref(),
            _ => None,
        }?;
        self.use_proxy(target).then(|| proxy.clone())
    }

    fn use_proxy(&self, target: &Url) -> bool {
        let port = target
            .port_or_known_default()
            .map(|p| p.to_string())
            .unwrap_or_default();
        let (host, ip) = match target.host() {
            Some(Host::Domain(d)) => (d.to_ascii_lowercase(), None),
            Some(Host::Ipv4(ip)) => (ip.to_string(), Some(IpAddr::V4(ip))),
            Some(Host::Ipv6(ip)) => (ip.to_string(), Some(IpAddr::V6(ip))),
            None => return false,
        };
        if host == "localhost" || ip.is_some_and(is_loopback) {
            return false;
        }
        !self.exclusions.iter().any(|e| excludes(e, &host, &port, ip))
    }
}

/// The proxy for `target` under `env` (Go `httpproxy` semantics).
pub fn proxy_for(target: &Url, env: &ProxyEnv) -> Option<Url> {
    ProxyConfig::new(env).proxy_for(target)
}

fn is_loopback(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4.is_loopback(),
        IpAddr::V6(v6) => v6.is_loopback() || v6.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback()),
    }
}

fn excludes(exclusion: &Exclusion, host: &str, port: &str, ip: Option<IpAddr>) -> bool {
    let port_ok = |p: &Option<String>| p.as_deref().is_none_or(|p| p == port);
    match exclusion {
        Exclusion::All => true,
        Exclusion::Cidr { network, prefix } => ip.is_some_and(|ip| cidr_contains(*network, *prefix, ip)),
        Exclusion::Ip { ip: want, port: p } => ip.is_some_and(|ip| canonical(ip) == canonical(*want)) && port_ok(p),
        Exclusion::Domain {
            host: suffix,
            port: p,
            match_host,
        } => (host.ends_with(suffix.as_str()) || (*match_host && host == &suffix[1..])) && port_ok(p),
    }
}

/// IPv4-mapped IPv6 addresses compare equal to their IPv4 form, as in Go.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

fn cidr_contains(network: IpAddr, prefix: u8, ip: IpAddr) -> bool {
    match (network, canonical(ip)) {
        (IpAddr::V4(n), IpAddr::V4(i)) => mask_eq(&n.octets(), &i.octets(), prefix),
        (IpAddr::V6(n), IpAddr::V6(i)) => mask_eq(&n.octets(), &i.octets(), prefix),
        (IpAddr::V6(n), IpAddr::V4(i)) => mask_eq(&n.octets(), &i.to_ipv6_mapped().octets(), prefix),
        _ => false,
    }
}

fn mask_eq(a: &[u8], b: &[u8], prefix: u8) -> bool {
    let mut bits = usize::from(prefix);
    for (x, y) in a.iter().zip(b) {
        if bits == 0 {
            return true;
        }
        let take = bits.min(8);
        let mask = if take == 8 { 0xff } else { !(0xffu8 >> take) };
        if x & mask != y & mask {
            return false;
        }
        bits -= take;
    }
    true
}

/// Parses a proxy value; one without a scheme (or host) is retried with `http://` in front.
fn parse_proxy(value: &str) -> Option<Url> {
    let value = value.trim();
    if value.is_empty() {
        return None;
    }
    match Url::parse(value) {
        Ok(url) if url.host_str().is_some_and(|h| !h.is_empty()) => Some(url),
        _ => Url::parse(&format!("http://{value}"))
            .ok()
            .filter(|u| u.host_str().is_some_and(|h| !h.is_empty())),
    }
}

fn parse_no_proxy(list: &str) -> Vec<Exclusion> {
    let mut out = Vec::new();
    for entry in list.split(',') {
        let entry = entry.trim().to_ascii_lowercase();
        if entry.is_empty() {
            continue;
        }
        if entry == "*" {
            return vec![Exclusion::All];
        }
        if let Some(cidr) = parse_cidr(&entry) {
            out.push(cidr);
            continue;
        }
        let (host, port) = match split_host_port(&entry) {
            Some((h, p)) => (h.to_owned(), Some(p.to_owned()).filter(|p| !p.is_empty())),
            None => (entry.trim_start_matches('[').trim_end_matches(']').to_owned(), None),
        };
        if host.is_empty() {
            continue;
        }
        if let Ok(ip) = host.parse::<IpAddr>() {
            out.push(Exclusion::Ip { ip, port });
            continue;
        }
        let mut host = host.strip_prefix("*.").map(|h| format!(".{h}")).unwrap_or(host);
        let match_host = !host.starts_with('.');
        if match_host {
            host.insert(0, '.');
        }
        if let Ok(Host::Domain(ascii)) = Host::parse(&host[1..]) {
            host = format!(".{ascii}");
        }
        out.push(Exclusion::Domain { host, port, match_host });
    }
    out
}

fn parse_cidr(entry: &str) -> Option<Exclusion> {
    let (addr, prefix) = entry.split_once('/')?;
    let ip: IpAddr = addr.parse().ok()?;
    let prefix: u8 = prefix.parse().ok()?;
    let max = if ip.is_ipv4() { 32 } else { 128 };
    (prefix <= max).then_some(Exclusion::Cidr { network: ip, prefix })
}

/// Go's `net.SplitHostPort`: `host:port` or `[v6]:port`; `None` when there is no port part.
fn split_host_port(entry: &str) -> Option<(&str, &str)> {
    if let Some(rest) = entry.strip_prefix('[') {
        let (host, after) = rest.split_once(']')?;
        let port = after.strip_prefix(':')?;
        return Some((host, port));
    }
    let (host, port) = entry.split_once(':')?;
    (!port.contains(':')).then_some((host, port))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(http: Option<&str>, https: Option<&str>, no: Option<&str>) -> ProxyEnv {
        ProxyEnv {
            http_proxy: http.map(str::to_owned),
            https_proxy: https.map(str::to_owned),
            no_proxy: no.map(str::to_owned),
        }
    }

    #[test]
    fn proxy_table() {
        const H: Option<&str> = Some("http://hproxy:3128");
        const S: Option<&str> = Some("http://sproxy:3128");
        // (http_proxy, https_proxy, no_proxy, target, expected proxy)
        type Row<'a> = (
            Option<&'a str>,
            Option<&'a str>,
            Option<&'a str>,
            &'a str,
            Option<&'a str>,
        );
        let rows: &[Row] = &[
            (H, S, None, "https://api.github.com/x", Some("http://sproxy:3128/")),
            (H, S, None, "http://ghes.corp/x", Some("http://hproxy:3128/")),
            (H, None, None, "https://api.github.com/", None),
            (None, S, None, "http://ghes.corp/", None),
            (None, None, None, "https://api.github.com/", None),
            // localhost and loopback never proxied.
            (H, S, None, "http://localhost:8080/", None),
            (H, S, None, "https://127.0.0.1/", None),
            (H, S, None, "http://127.8.9.10:99/", None),
            (H, S, None, "http://[::1]:8080/", None),
            (H, S, None, "http://[::ffff:127.0.0.1]/", None),
            // Domain suffixes.
            (H, S, Some("github.com"), "https://api.github.com/", None),
            (H, S, Some("github.com"), "https://github.com/", None),
            (
                H,
                S,
                Some("github.com"),
                "https://notgithub.com/",
                Some("http://sproxy:3128/"),
            ),
            (
                H,
                S,
                Some(".github.com"),
                "https://github.com/",
                Some("http://sproxy:3128/"),
            ),
            (H, S, Some(".github.com"), "https://api.github.com/", None),
            (
                H,
                S,
                Some("*.github.com"),
                "https://github.com/",
                Some("http://sproxy:3128/"),
            ),
            (H, S, Some("*.github.com"), "https://a.b.github.com/", None),
            (H, S, Some(" foo.com , GitHub.COM "), "https://API.github.com/", None),
            // Ports.
            (H, S, Some("ghes.corp:8443"), "https://ghes.corp:8443/", None),
            (
                H,
                S,
                Some("ghes.corp:8443"),
                "https://ghes.corp/",
                Some("http://sproxy:3128/"),
            ),
            (H, S, Some("ghes.corp:443"), "https://ghes.corp/", None),
            (H, S, Some("ghes.corp:80"), "http://ghes.corp/", None),
            // IPs and CIDRs.
            (H, S, Some("10.1.2.3"), "http://10.1.2.3:9000/", None),
            (H, S, Some("10.1.2.3:9000"), "http://10.1.2.3:9000/", None),
            (
                H,
                S,
                Some("10.1.2.3:9001"),
                "http://10.1.2.3:9000/",
                Some("http://hproxy:3128/"),
            ),
            (H, S, Some("10.0.0.0/8"), "https://10.200.0.1/", None),
            (
                H,
                S,
                Some("10.0.0.0/8"),
                "https://11.0.0.1/",
                Some("http://sproxy:3128/"),
            ),
            (H, S, Some("192.168.0.0/16,fd00::/8"), "https://[fd12::1]/", None),
            (
                H,
                S,
                Some("fd00::/8"),
                "https://[fe80::1]/",
                Some("http://sproxy:3128/"),
            ),
            (H, S, Some("2001:db8::1"), "https://[2001:db8::1]/", None),
            (H, S, Some("[2001:db8::1]:443"), "https://[2001:db8::1]/", None),
            (
                H,
                S,
                Some("[2001:db8::1]:80"),
                "https://[2001:db8::1]/",
                Some("http://sproxy:3128/"),
            ),
            // A domain exclusion does not match an IP literal and vice versa.
            (
                H,
                S,
                Some("10.1.2.3"),
                "https://host.10.1.2.3.example/",
                Some("http://sproxy:3128/"),
            ),
            // Wildcard.
            (H, S, Some("*"), "https://api.github.com/", None),
            (H, S, Some("foo,*"), "http://x/", None),
            // Malformed entries are ignored.
            (
                H,
                S,
                Some(":80,,"),
                "https://api.github.com/",
                Some("http://sproxy:3128/"),
            ),
            // Scheme-less proxy values get http://; userinfo kept.
            (
                None,
                Some("proxy.corp:3128"),
                None,
                "https://x.example/",
                Some("http://proxy.corp:3128/"),
            ),
            (
                None,
                Some("10.0.0.1:3128"),
                None,
                "https://x.example/",
                Some("http://10.0.0.1:3128/"),
            ),
            (
                None,
                Some("user:p%40ss@proxy.corp:3128"),
                None,
                "https://x.example/",
                Some("http://user:p%40ss@proxy.corp:3128/"),
            ),
            (
                None,
                Some("https://proxy.corp"),
                None,
                "https://x.example/",
                Some("https://proxy.corp/"),
            ),
        ];
        for (http, https, no, target, want) in rows {
            let target = Url::parse(target).unwrap();
            let got = proxy_for(&target, &env(*http, *https, *no));
            assert_eq!(
                got.as_ref().map(Url::as_str),
                *want,
                "target={target} http={http:?} https={https:?} no_proxy={no:?}"
            );
        }
    }

    #[test]
    fn upper_case_wins_and_empty_values_fall_through() {
        let vars = [
            ("HTTPS_PROXY", ""),
            ("https_proxy", "http://lower:1"),
            ("HTTP_PROXY", "http://upper:2"),
            ("http_proxy", "http://lower:2"),
        ];
        let e = ProxyEnv::from_lookup(|n| vars.iter().find(|(k, _)| *k == n).map(|(_, v)| v.to_string()));
        assert_eq!(e.https_proxy.as_deref(), Some("http://lower:1"));
        assert_eq!(e.http_proxy.as_deref(), Some("http://upper:2"));
        assert_eq!(e.no_proxy, None);
    }

    #[test]
    fn cidr_masks() {
        let v4 = |s: &str| s.parse::<IpAddr>().unwrap();
        assert!(cidr_contains(v4("10.0.0.0"), 8, v4("10.255.1.1")));
        assert!(!cidr_contains(v4("10.0.0.0"), 9, v4("10.255.1.1")));
        assert!(cidr_contains(v4("0.0.0.0"), 0, v4("8.8.8.8")));
        assert!(cidr_contains(v4("192.168.1.7"), 32, v4("192.168.1.7")));
        assert!(!cidr_contains(v4("192.168.1.7"), 32, v4("192.168.1.8")));
        assert!(cidr_contains(v4("fd00::"), 8, v4("fdff::1")));
        assert!(!cidr_contains(v4("10.0.0.0"), 8, v4("fd00::1")));
        assert_eq!(parse_cidr("10.0.0.0/33"), None);
    }
}
