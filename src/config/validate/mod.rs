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

/// `[server] state_file`: a path (relative to the configuration file's directory); an empty
/// one, or one ending in `/`, is an error.
fn state_file(v: Option<&At<String>>, diag: &mut Diag) -> Option<std::path::PathBuf> {
    let v = v?;
    if v.value.is_empty() || v.value.ends_with('/') {
        diag.error(
            v.line,
            Some("state_file"),
            format!("`state_file` must name a file, not `{}`", v.value),
        );
        return None;
    }
    Some(routes::base_dir(&diag.file).join(&v.value))
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

/// Validates what a reader produced: every problem goes to `diag`; the config only when there
/// are none. Sections are checked in this order whatever the file's (listeners, admin, pools,
/// routes, cache, limits, HTTP/2, TLS, then listener overlaps); errors are sorted by line
/// afterwards, warnings keep this order.
pub(crate) fn validate(raw: RawConfig, diag: &mut Diag) -> Option<Config> {
    // Every listening address with its line (none for a default), for the overlap check.
    let mut bound: Vec<Bound> = Vec::new();
    let (listen, listen_unix) = client_listen(&raw.listen, diag, &mut bound);
    let workers = ranged(diag, raw.workers.as_ref(), "workers", 1, 1024).map(|n| n as usize);
    let admin = admin(&raw, diag, &mut bound);
    let pools: Vec<Option<PoolConfig>> = raw
        .pools
        .iter()
        .map(|p| pool(p, &raw.defaults, diag))
        .collect();
    let routes = routes(&raw, diag);
    route_warnings(&raw, &routes, diag);
    let cache = cache(&raw.cache, raw.cluster.is_some(), diag);
    let limits = limits(&raw.limits, diag);
    let h2 = h2(&raw, diag);
    let site = rules::site(&raw, &routes::base_dir(&diag.file), diag);
    let tls = tls_listen(&raw, diag, &mut bound);
    let acme = crate::config::acme::acme(
        &raw,
        raw.tls_line.is_some(),
        &routes::base_dir(&diag.file),
        diag,
    );
    let log = crate::config::log::log(&raw.log, &routes::base_dir(&diag.file), diag);
    let tracing = crate::config::log::tracing(raw.tracing.as_ref(), diag);
    let cluster = crate::config::cluster::cluster(raw.cluster.as_ref(), diag);
    let listeners = listeners_of(&listen, &listen_unix, tls.as_ref());
    let clients = clients::clients(&raw, &listeners, diag);
    let state_file = state_file(raw.state_file.as_ref(), diag);
    overlaps(&bound, diag);

    if !diag.errors.is_empty() {
        return None;
    }
    Some(Config {
        cache,
        source: diag.file.clone(),
        server: ServerSettings {
            listen,
            listen_unix,
            workers,
            access_log: raw.access_log.unwrap_or(true),
            name: raw.name.map(|n| n.value),
            limits,
            h2c: raw.h2c.unwrap_or(false),
            h2,
            tls,
            reuse_port: raw.reuse_port.unwrap_or(false),
            state_file,
            clients,
        },
        admin,
        routes,
        site,
        log,
        tracing,
        cluster,
        pools: pools.into_iter().flatten().collect(),
        dns: crate::config::dns::settings(&raw.dns, diag),
        acme,
        warnings: Vec::new(),
    })
}

/// The client listeners: the addresses that resolve (the others are reported) and the
/// Unix-domain sockets (`unix:PATH`, each path once), or [`DEFAULT_LISTEN`] when the file names
/// none. Each TCP one is added to `bound`.
fn client_listen(
    list: &[At<String>],
    diag: &mut Diag,
    bound: &mut Vec<Bound>,
) -> (Vec<SocketAddr>, Vec<std::path::PathBuf>) {
    let mut listen = Vec::new();
    let mut unix: Vec<std::path::PathBuf> = Vec::new();
    for a in list {
        match clients::listen_addr(&a.value) {
            Ok(ListenAddr::Tcp(addr)) => {
                listen.push(addr);
                bound.push((addr, Some(a.line), "a client listener"));
            }
            Ok(ListenAddr::Unix(path)) if unix.contains(&path) => diag.error(
                a.line,
                Some("listen"),
                format!("`listen`: {} is named twice", a.value),
            ),
            Ok(ListenAddr::Unix(path)) => unix.push(path),
            Err(e) => diag.error(a.line, Some("listen"), format!("bad listen address: {e}")),
        }
    }
    if listen.is_empty() && list.is_empty() {
        let addr = DEFAULT_LISTEN.parse().expect("valid default");
        listen.push(addr);
        bound.push((addr, None, "the default client listener"));
    }
    (listen, unix)
}

/// The client and TLS listeners, as configured.
fn listeners_of(
    listen: &[SocketAddr],
    unix: &[std::path::PathBuf],
    tls: Option<&TlsListen>,
) -> Vec<ListenAddr> {
    let tls = tls.map(|t| &t.listen[..]).unwrap_or_default();
    let unix = unix.iter().map(|p| ListenAddr::Unix(p.clone()));
    listen
        .iter()
        .chain(tls)
        .map(|a| ListenAddr::Tcp(*a))
        .chain(unix)
        .collect()
}

/// `[admin]` (`[ADMIN]`): its listener, token and extra host names.
fn admin(raw: &RawConfig, diag: &mut Diag, bound: &mut Vec<Bound>) -> AdminSettings {
    let listen = admin_listen(raw, diag, bound);
    let mut hosts = Vec::new();
    for h in &raw.admin_hosts {
        match admin_host(&h.value) {
            Some(name) => hosts.push(name),
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
    AdminSettings {
        listen,
        token: raw.admin_token.as_ref().map(|t| t.value.clone()),
        hosts,
    }
}

/// The admin listener: [`DEFAULT_ADMIN_LISTEN`] when unset (or, reported, when it does not
/// resolve). One off loopback needs a non-empty token. A listener that resolves, or the
/// default when unset, is added to `bound`.
fn admin_listen(raw: &RawConfig, diag: &mut Diag, bound: &mut Vec<Bound>) -> SocketAddr {
    let Some(a) = &raw.admin_listen else {
        let addr = DEFAULT_ADMIN_LISTEN.parse().expect("valid default");
        bound.push((addr, None, "the default admin listener"));
        return addr;
    };
    match resolve(&a.value) {
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
    }
}

/// The client side's HTTP/2 limits: concurrent streams (1 to 10 000) and the flow-control
/// window (65 535 bytes to 1 GiB; 1 MiB when unset).
fn h2(raw: &RawConfig, diag: &mut Diag) -> H2Settings {
    H2Settings {
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
    }
}

/// Reports a regular expression that does not compile, with the last line of the regex
/// crate's message (the one that says what is wrong).
fn check_regex(pat: &At<String>, key: &str, diag: &mut Diag) {
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
            Some(key),
            format!("bad regular expression `{}`: {first}", pat.value),
        );
    }
}

/// A duration that must be more than zero: its value, `default` when unset, and (zero) an
/// error naming the key, and `default`.
fn nonzero(diag: &mut Diag, v: Option<&At<Duration>>, key: &str, default: Duration) -> Duration {
    match v {
        None => default,
        Some(t) if t.value.is_zero() => {
            diag.error(t.line, Some(key), format!("`{key}` must be more than zero"));
            default
        }
        Some(t) => t.value,
    }
}

mod clients;
mod pools;
mod routes;
mod rules;
mod sections;
#[cfg(test)]
mod tests;

use pools::pool;
use routes::{route_warnings, routes};
use sections::{cache, config_path, hsts_max_age, limits, size_in, tls_listen};
