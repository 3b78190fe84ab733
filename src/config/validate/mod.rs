//! Checks shared by both formats: addresses resolve, regexes compile, routes name real pools,
//! numbers are in range; `[defaults]` is merged into pools here.

use super::*;
use std::net::ToSocketAddrs;

const METHODS: &[&str] = &[
    "naive",
    "first-alive",
    "round-robin",
    "lockless-round-robin",
    "locking-round-robin",
    "weighted-round-robin",
    "least-connections",
    "random",
    "p2c",
    "peak-ewma",
    "source",
    "uri",
    "uri-query",
    "header:NAME",
    "cookie:NAME",
];

/// Reads a balancing method name leniently: case, `-`, `_` and spaces are ignored
/// (`Round-Robin`, `RoundRobin`, `round_robin` are one name).
pub fn parse_balance(name: &str) -> Option<BalanceMethod> {
    // `header:NAME` and `cookie:NAME` keep their argument as written (header names lowercased).
    if let Some((kind, arg)) = name.split_once(':') {
        let arg = arg.trim();
        if arg.is_empty() {
            return None;
        }
        return match kind.trim().to_ascii_lowercase().as_str() {
            "header" | "hdr" => http::HeaderName::from_bytes(arg.as_bytes())
                .ok()
                .map(|h| BalanceMethod::Hash(HashOn::Header(h.as_str().to_string()))),
            "cookie" => Some(BalanceMethod::Hash(HashOn::Cookie(arg.to_string()))),
            _ => None,
        };
    }
    let n: String = name
        .chars()
        .filter(|c| !matches!(c, '-' | '_' | ' '))
        .flat_map(char::to_lowercase)
        .collect();
    Some(match n.as_str() {
        "naive" => BalanceMethod::Naive,
        "firstalive" | "first" => BalanceMethod::FirstAlive,
        "roundrobin" | "rr" | "locklessroundrobin" | "lockingroundrobin" | "weightedroundrobin"
        | "wrr" => BalanceMethod::RoundRobin,
        "leastconnections" | "leastconnection" | "leastconn" | "leastconns" => {
            BalanceMethod::LeastConnections
        }
        "random" => BalanceMethod::Random,
        "p2c" | "poweroftwochoices" | "poweroftwo" => BalanceMethod::P2c,
        "peakewma" | "ewma" => BalanceMethod::PeakEwma,
        "source" | "sourceip" | "ip" => BalanceMethod::Hash(HashOn::Source),
        "uri" | "path" => BalanceMethod::Hash(HashOn::Uri),
        "uriquery" | "uriwithquery" => BalanceMethod::Hash(HashOn::UriQuery),
        _ => return None,
    })
}

/// An integer key within `lo..=hi`: its value, or (out of range) an error naming the key and
/// its line, and `None`. Absent keys are `None` without an error.
fn ranged(diag: &mut Diag, v: Option<&At<i64>>, key: &str, lo: i64, hi: i64) -> Option<i64> {
    let v = v?;
    if (lo..=hi).contains(&v.value) {
        return Some(v.value);
    }
    diag.error(
        v.line,
        Some(key),
        format!("`{key}` must be between {lo} and {hi}, not {}", v.value),
    );
    None
}

/// A listening address, the line that asks for it (none for a default), and what it is.
type Bound = (SocketAddr, Option<usize>, &'static str);

/// Two listeners that would take the same connections are an error: the same address twice
/// (in one list or across client, TLS and admin listeners), or a wildcard address and another
/// on the same port. Port 0 (any free port) overlaps nothing.
fn overlaps(bound: &[Bound], diag: &mut Diag) {
    for (j, (b, bline, bwhat)) in bound.iter().enumerate() {
        let Some((a, aline, awhat)) = bound[..j].iter().find(|(a, ..)| overlap(*a, *b)) else {
            continue;
        };
        let (line, what, other, other_line, other_what, this) = match (bline, aline) {
            (Some(l), _) => (*l, *bwhat, *a, *aline, *awhat, *b),
            (None, Some(l)) => (*l, *awhat, *b, *bline, *bwhat, *a),
            (None, None) => continue, // two defaults never overlap
        };
        let at = other_line
            .map(|l| format!(" on line {l}"))
            .unwrap_or_default();
        let why = if this == other {
            format!("{this} is also {other_what}{at}")
        } else {
            format!("{this} overlaps {other}, {other_what}{at} (a wildcard address takes every address of its port)")
        };
        diag.error(
            line,
            Some("listen"),
            format!("`listen`: {why}; {what} must have an address of its own"),
        );
    }
}

/// Whether two listening addresses would take the same connections (see [`overlaps`]). An
/// IPv6 wildcard (`[::]`) takes IPv4 connections too (dual stack, Linux's default).
pub fn overlap(a: SocketAddr, b: SocketAddr) -> bool {
    use std::net::IpAddr;
    if a.port() == 0 || b.port() == 0 || a.port() != b.port() {
        return false;
    }
    let canon = |ip: IpAddr| match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    };
    let (x, y) = (canon(a.ip()), canon(b.ip()));
    match (x, y) {
        _ if x == y => true,
        (IpAddr::V4(_), IpAddr::V4(_)) | (IpAddr::V6(_), IpAddr::V6(_)) => {
            x.is_unspecified() || y.is_unspecified()
        }
        (IpAddr::V6(v6), IpAddr::V4(_)) | (IpAddr::V4(_), IpAddr::V6(v6)) => v6.is_unspecified(),
    }
}

/// An `[admin] hosts` entry: a host name or an IP address (brackets optional for IPv6),
/// lowercased; `None` when it is something else (a URL, a port, a path).
fn admin_host(text: &str) -> Option<String> {
    let t = text.trim().trim_end_matches('.').to_ascii_lowercase();
    let inner = t
        .strip_prefix('[')
        .and_then(|r| r.strip_suffix(']'))
        .unwrap_or(&t);
    if inner.parse::<std::net::IpAddr>().is_ok() {
        return Some(inner.to_string());
    }
    let name_ok = !t.is_empty()
        && t.len() <= 253
        && t.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        });
    name_ok.then_some(t)
}

/// Resolves `host:port` to one socket address (the first the resolver gives).
fn resolve(text: &str) -> Result<SocketAddr, String> {
    if let Ok(a) = text.parse::<SocketAddr>() {
        return Ok(a);
    }
    if !text.contains(':') {
        return Err(format!("address `{text}` has no port: write host:port"));
    }
    // Fuzzing must not wait on a resolver: only `localhost` names are looked up.
    if cfg!(fuzzing) && !text.starts_with("localhost:") {
        return Err(format!("cannot resolve `{text}` while fuzzing"));
    }
    match text.to_socket_addrs() {
        Ok(mut it) => it
            .next()
            .ok_or_else(|| format!("host name in `{text}` resolves to no address")),
        Err(e) => Err(format!("cannot resolve `{text}`: {e}")),
    }
}

pub(crate) fn validate(raw: RawConfig, diag: &mut Diag) -> Option<Config> {
    let mut listen = Vec::new();
    // Every listening address with its line (none for a default), for the overlap check.
    let mut bound: Vec<Bound> = Vec::new();
    for a in &raw.listen {
        match resolve(&a.value) {
            Ok(addr) => {
                listen.push(addr);
                bound.push((addr, Some(a.line), "a client listener"));
            }
            Err(e) => diag.error(a.line, Some("listen"), format!("bad listen address: {e}")),
        }
    }
    if listen.is_empty() && raw.listen.is_empty() {
        let addr = DEFAULT_LISTEN.parse().expect("valid default");
        listen.push(addr);
        bound.push((addr, None, "the default client listener"));
    }
    let workers = ranged(diag, raw.workers.as_ref(), "workers", 1, 1024).map(|n| n as usize);
    let admin_listen = match &raw.admin_listen {
        Some(a) => match resolve(&a.value) {
            Ok(addr) => {
                bound.push((addr, Some(a.line), "the admin listener"));
                let token = raw
                    .admin_token
                    .as_ref()
                    .is_some_and(|t| !t.value.is_empty());
                if !addr.ip().is_loopback() && !token {
                    diag.error(
                        a.line,
                        Some("listen"),
                        format!("the admin listener {addr} is not on loopback: set [admin] token (every request must then carry it)"),
                    );
                }
                addr
            }
            Err(e) => {
                diag.error(
                    a.line,
                    Some("listen"),
                    format!("bad admin listen address: {e}"),
                );
                DEFAULT_ADMIN_LISTEN.parse().expect("valid default")
            }
        },
        None => {
            let addr = DEFAULT_ADMIN_LISTEN.parse().expect("valid default");
            bound.push((addr, None, "the default admin listener"));
            addr
        }
    };
    let mut admin_hosts = Vec::new();
    for h in &raw.admin_hosts {
        match admin_host(&h.value) {
            Some(name) => admin_hosts.push(name),
            None => diag.error(
                h.line,
                Some("hosts"),
                format!(
                    "`hosts`: `{}` is not a host name (write admin.example.com or 10.0.0.5, without scheme, port or path)",
                    h.value
                ),
            ),
        }
    }

    let mut pools = Vec::new();
    for p in &raw.pools {
        pools.push(pool(p, &raw.defaults, diag));
    }
    let pool_names: Vec<&str> = raw.pools.iter().map(|p| p.name.as_str()).collect();

    let mut routes = Vec::new();
    for r in &raw.routes {
        for pat in &r.patterns {
            if let Err(e) = regex::Regex::new(&pat.value) {
                let first = e
                    .to_string()
                    .lines()
                    .last()
                    .unwrap_or("")
                    .trim()
                    .to_string();
                diag.error(
                    pat.line,
                    Some("match"),
                    format!("bad regular expression `{}`: {first}", pat.value),
                );
            }
        }
        let pool = match (&r.pool, &r.root) {
            (Some(_), Some(root)) => {
                diag.error(
                    root.line,
                    Some("root"),
                    "a route serves either a pool or a `root` directory, not both",
                );
                continue;
            }
            (None, None) => {
                diag.error(
                    r.line,
                    Some("pool"),
                    "a route needs `pool = \"NAME\"` or `root = \"/a/directory\"`",
                );
                continue;
            }
            (None, Some(_)) => None,
            (Some(name), None) => match pool_names.iter().position(|n| *n == name.value) {
                Some(i) => Some(i),
                None => {
                    let hint = suggest(&name.value, &pool_names)
                        .map(|s| format!(" (did you mean `{s}`?)"))
                        .unwrap_or_default();
                    diag.error(
                        name.line,
                        Some("pool"),
                        format!(
                            "route names pool `{}`, which is not defined{hint}",
                            name.value
                        ),
                    );
                    continue;
                }
            },
        };
        let root = r
            .root
            .as_ref()
            .and_then(|root| match std::fs::canonicalize(&root.value) {
                Ok(p) if p.is_dir() => Some(p),
                Ok(_) => {
                    diag.error(
                        root.line,
                        Some("root"),
                        format!("`{}` is not a directory", root.value),
                    );
                    None
                }
                Err(e) => {
                    diag.error(root.line, Some("root"), format!("`{}`: {e}", root.value));
                    None
                }
            });
        let mut purge = Vec::new();
        for a in &r.purge {
            let parsed = a
                .value
                .parse::<ipnet::IpNet>()
                .or_else(|_| a.value.parse::<std::net::IpAddr>().map(ipnet::IpNet::from));
            match parsed {
                Ok(n) => purge.push(n),
                Err(_) => diag.error(
                    a.line,
                    Some("purge"),
                    format!(
                        "`{}` is not an address or network (write 127.0.0.1 or 10.0.0.0/8)",
                        a.value
                    ),
                ),
            }
        }
        routes.push(RouteConfig {
            patterns: r.patterns.iter().map(|p| p.value.clone()).collect(),
            pool,
            root,
            cache: r.cache.unwrap_or(false),
            grace: r.grace.as_ref().map(|g| g.value),
            purge,
            line: r.line,
        });
    }
    for (i, p) in raw.pools.iter().enumerate() {
        if !routes.iter().any(|r| r.pool == Some(i))
            && !raw
                .routes
                .iter()
                .any(|r| r.pool.as_ref().is_some_and(|n| n.value == p.name))
        {
            diag.warn(
                p.line,
                None,
                format!("pool `{}` is not used by any route", p.name),
            );
        }
    }
    if raw.routes.is_empty() && diag.errors.is_empty() {
        diag.warn(1, None, "no routes: every request will be answered 404");
    }

    let cache = cache(&raw.cache, diag);
    let limits = limits(&raw.limits, diag);
    let h2 = H2Settings {
        max_concurrent_streams: ranged(
            diag,
            raw.h2_max_concurrent_streams.as_ref(),
            "h2_max_concurrent_streams",
            1,
            10_000,
        )
        .map_or(H2Settings::default().max_concurrent_streams, |n| n as u32),
        window: size_in(
            diag,
            raw.h2_window.as_ref(),
            "h2_window",
            1 << 20,
            65_535..=(1 << 30),
        ) as u32,
    };
    let tls = tls_listen(&raw, diag, &mut bound);
    overlaps(&bound, diag);

    if !diag.errors.is_empty() {
        return None;
    }
    Some(Config {
        cache,
        source: diag.file.clone(),
        server: ServerSettings {
            listen,
            workers,
            access_log: raw.access_log.unwrap_or(true),
            name: raw.name.map(|n| n.value),
            limits,
            h2c: raw.h2c.unwrap_or(false),
            h2,
            tls,
            reuse_port: raw.reuse_port.unwrap_or(false),
        },
        admin: AdminSettings {
            listen: admin_listen,
            token: raw.admin_token.map(|t| t.value),
            hosts: admin_hosts,
        },
        routes,
        pools: pools.into_iter().flatten().collect(),
        warnings: Vec::new(),
    })
}

mod pools;
mod sections;
#[cfg(test)]
mod tests;

use pools::pool;
use sections::{cache, config_path, limits, size_in, tls_listen};
