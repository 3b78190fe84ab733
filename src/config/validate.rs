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

fn pool(p: &RawPool, defaults: &RawPoolSettings, diag: &mut Diag) -> Option<PoolConfig> {
    let s = &p.settings;
    let balance = match s.balance.as_ref().or(defaults.balance.as_ref()) {
        None => BalanceMethod::RoundRobin,
        Some(b) => match parse_balance(&b.value) {
            Some(m) => m,
            None => {
                let hint = suggest(&b.value.to_ascii_lowercase(), METHODS)
                    .map(|s| format!(" (did you mean `{s}`?)"))
                    .unwrap_or_else(|| format!(" (known: {})", METHODS.join(", ")));
                diag.error(
                    b.line,
                    Some("balance"),
                    format!("unknown balancing method `{}`{hint}", b.value),
                );
                BalanceMethod::RoundRobin
            }
        },
    };
    let attempts = ranged(
        diag,
        s.attempts.as_ref().or(defaults.attempts.as_ref()),
        "attempts",
        1,
        1000,
    )
    .map_or(DEFAULT_ATTEMPTS, |n| n as u32);
    let hash_balance_factor = match s
        .hash_balance_factor
        .as_ref()
        .or(defaults.hash_balance_factor.as_ref())
    {
        None => None,
        Some(f) if f.value == 0.0 => None,
        Some(f) if f.value > 1.0 && f.value <= 100.0 => Some(f.value),
        Some(f) => {
            diag.error(f.line, Some("hash_balance_factor"), format!("`hash_balance_factor` must be more than 1 (e.g. 1.25), or 0 for no bound, not {}", f.value));
            None
        }
    };
    let pick = |own: &Option<At<Duration>>, def: &Option<At<Duration>>, fallback: Duration| {
        own.as_ref()
            .or(def.as_ref())
            .map(|d| d.value)
            .unwrap_or(fallback)
    };
    let offline_timeout = pick(
        &s.offline_timeout,
        &defaults.offline_timeout,
        DEFAULT_OFFLINE_TIMEOUT,
    );
    let connect_timeout = pick(
        &s.connect_timeout,
        &defaults.connect_timeout,
        DEFAULT_CONNECT_TIMEOUT,
    );
    let response_timeout = pick(
        &s.response_timeout,
        &defaults.response_timeout,
        DEFAULT_RESPONSE_TIMEOUT,
    );
    let read_timeout = pick(
        &s.read_timeout,
        &defaults.read_timeout,
        DEFAULT_READ_TIMEOUT,
    );
    let protocol = match s.protocol.as_ref().or(defaults.protocol.as_ref()) {
        None => Protocol::H1,
        Some(p) => match p.value.to_ascii_lowercase().as_str() {
            "h1" | "http/1.1" | "http1" => Protocol::H1,
            "h2" | "h2c" | "http2" => Protocol::H2,
            other => {
                diag.error(
                    p.line,
                    Some("protocol"),
                    format!("`protocol` must be \"h1\" or \"h2\", not `{other}`"),
                );
                Protocol::H1
            }
        },
    };
    let tls = if s.tls.or(defaults.tls).unwrap_or(false) {
        let ca = s.tls_ca.as_ref().or(defaults.tls_ca.as_ref());
        let verify = s.tls_verify.or(defaults.tls_verify).unwrap_or(true);
        let alpn: &[&[u8]] = match protocol {
            Protocol::H2 => &[b"h2"],
            Protocol::H1 => &[b"http/1.1"],
        };
        let path = ca.map(|c| config_path(diag, &c.value));
        match crate::tls::client_config(path.as_deref(), verify, alpn) {
            Ok(config) => Some(crate::tls::Upstream {
                config,
                server_name: s
                    .tls_server_name
                    .as_ref()
                    .or(defaults.tls_server_name.as_ref())
                    .map(|n| n.value.clone()),
            }),
            Err(e) => {
                diag.error(ca.map_or(p.line, |c| c.line), Some("tls_ca"), e);
                None
            }
        }
    } else {
        None
    };
    for (d, key) in [
        (&s.connect_timeout, "connect_timeout"),
        (&s.response_timeout, "response_timeout"),
        (&s.read_timeout, "read_timeout"),
    ] {
        if let Some(d) = d.as_ref().or(match key {
            "connect_timeout" => defaults.connect_timeout.as_ref(),
            "read_timeout" => defaults.read_timeout.as_ref(),
            _ => defaults.response_timeout.as_ref(),
        }) {
            if d.value.is_zero() {
                diag.error(d.line, Some(key), format!("`{key}` must be more than zero"));
            }
        }
    }

    let limit = |v: &Option<At<i64>>, key: &str, diag: &mut Diag| {
        ranged(diag, v.as_ref(), key, 0, 1_000_000).map(|n| n as usize)
    };
    let pool_maxconn = limit(&p.maxconn, "maxconn", diag).unwrap_or(0);
    let mut servers: Vec<ServerConfig> = Vec::new();
    let pool_check = p.check.as_ref();
    for rs in &p.servers {
        let check = match (&rs.check, pool_check) {
            (Some(RawServerCheck::Off), _) => None,
            (Some(RawServerCheck::Override(o)), Some(pc)) => check(&pc.merged(o), diag),
            (Some(RawServerCheck::Override(o)), None) => check(o, diag),
            (None, Some(pc)) => check(pc, diag),
            (None, None) => None,
        };
        let weight = ranged(diag, rs.weight.as_ref(), "weight", 1, 1000).map_or(1, |n| n as u32);
        match resolve(&rs.address.value) {
            Ok(addr) => {
                // A server listed twice is one server with the weights added: the reference's
                // "weighted round robin by repeating a server".
                if let Some(existing) = servers.iter_mut().find(|x| x.addr == addr) {
                    existing.weight += weight;
                } else {
                    servers.push(ServerConfig {
                        name: rs.address.value.clone(),
                        addr,
                        weight,
                        backup: rs.backup.unwrap_or(false),
                        check,
                        maxconn: limit(&rs.maxconn, "maxconn", diag).unwrap_or(pool_maxconn),
                    });
                }
            }
            Err(e) => diag.error(
                rs.address.line,
                Some("address"),
                format!("bad server address in pool `{}`: {e}", p.name),
            ),
        }
    }
    if p.servers.is_empty() {
        diag.error(
            p.line,
            Some("servers"),
            format!("pool `{}` has no servers", p.name),
        );
        return None;
    }
    let observe = p.observe.as_ref().and_then(|o| {
        let mode = match o.value.to_ascii_lowercase().as_str() {
            "layer4" => Some(ObserveMode::Layer4),
            "layer7" => Some(ObserveMode::Layer7),
            "none" | "off" => return None,
            other => {
                diag.error(
                    o.line,
                    Some("observe"),
                    format!("`observe` must be \"layer4\" or \"layer7\", not `{other}`"),
                );
                None // reported; error_limit and on_error are still checked
            }
        };
        let error_limit = ranged(diag, p.error_limit.as_ref(), "error_limit", 1, 10_000)
            .map_or(DEFAULT_ERROR_LIMIT, |n| n as u32);
        let on_error = match p
            .on_error
            .as_ref()
            .map(|e| (e.value.to_ascii_lowercase(), e.line))
        {
            None => OnError::Fastinter,
            Some((v, line)) => match v.as_str() {
                "fastinter" => OnError::Fastinter,
                "fail-check" => OnError::FailCheck,
                "sudden-death" => OnError::SuddenDeath,
                "mark-down" => OnError::MarkDown,
                other => {
                    let known = ["fastinter", "fail-check", "sudden-death", "mark-down"];
                    let hint = suggest(other, &known)
                        .map(|s| format!(" (did you mean `{s}`?)"))
                        .unwrap_or_default();
                    diag.error(
                        line,
                        Some("on_error"),
                        format!("unknown `on_error` action `{other}`{hint}"),
                    );
                    OnError::Fastinter
                }
            },
        };
        mode.map(|mode| ObserveConfig {
            mode,
            error_limit,
            on_error,
        })
    });
    let flag = |v: &Option<At<String>>, key: &str, want: &str, diag: &mut Diag| match v {
        None => false,
        Some(x) if x.value.eq_ignore_ascii_case(want) => true,
        Some(x) if x.value.eq_ignore_ascii_case("none") => false,
        Some(x) => {
            diag.error(
                x.line,
                Some(key),
                format!(
                    "`{key}` must be \"{want}\" (or \"none\"), not `{}`",
                    x.value
                ),
            );
            false
        }
    };
    let retries = ranged(
        diag,
        s.retries.as_ref().or(defaults.retries.as_ref()),
        "retries",
        0,
        100,
    )
    .map(|n| n as u32);
    let retry_budget = match s.retry_budget.as_ref().or(defaults.retry_budget.as_ref()) {
        None => None,
        Some(b) if (0.0..=10.0).contains(&b.value) => Some(b.value),
        Some(b) => {
            diag.error(
                b.line,
                Some("retry_budget"),
                format!(
                    "`retry_budget` must be a ratio between 0 and 10 (0.2 = 20%), not {}",
                    b.value
                ),
            );
            None
        }
    };
    let q = p.queue.clone().unwrap_or_default();
    let status = |v: &Option<At<i64>>, key: &str, default: u16, diag: &mut Diag| {
        ranged(diag, v.as_ref(), key, 400, 599).map_or(default, |n| n as u16)
    };
    let queue = crate::config::QueueConfig {
        max: ranged(diag, q.max.as_ref(), "max", 0, 1_000_000)
            .map_or(DEFAULT_QUEUE_MAX, |n| n as usize),
        timeout: q
            .timeout
            .as_ref()
            .map(|t| t.value)
            .unwrap_or(DEFAULT_QUEUE_TIMEOUT),
        full_status: status(
            &q.full_status,
            "full_status",
            DEFAULT_QUEUE_FULL_STATUS,
            diag,
        ),
        timeout_status: status(
            &q.timeout_status,
            "timeout_status",
            DEFAULT_QUEUE_TIMEOUT_STATUS,
            diag,
        ),
        retry_after: q
            .retry_after
            .as_ref()
            .map(|t| t.value)
            .unwrap_or(DEFAULT_RETRY_AFTER),
    };
    let shutdown_sessions_on_down = flag(
        &p.on_marked_down,
        "on_marked_down",
        "shutdown-sessions",
        diag,
    );
    let shutdown_backup_sessions_on_up = flag(
        &p.on_marked_up,
        "on_marked_up",
        "shutdown-backup-sessions",
        diag,
    );
    Some(PoolConfig {
        name: p.name.clone(),
        balance,
        hash_balance_factor,
        attempts,
        offline_timeout,
        connect_timeout,
        response_timeout,
        read_timeout,
        protocol,
        tls,
        servers,
        observe,
        all_backups: p.all_backups.unwrap_or(false),
        shutdown_sessions_on_down,
        shutdown_backup_sessions_on_up,
        queue,
        retries,
        retry_budget,
        slowstart: s
            .slowstart
            .as_ref()
            .or(defaults.slowstart.as_ref())
            .map(|d| d.value)
            .unwrap_or_default(),
        overload_backoff: s
            .overload_backoff
            .as_ref()
            .or(defaults.overload_backoff.as_ref())
            .map(|d| d.value)
            .unwrap_or_default(),
    })
}

/// Builds a check from its (merged) raw keys, with HAProxy's defaults.
fn check(c: &RawCheck, diag: &mut Diag) -> Option<CheckConfig> {
    let kind = match c
        .kind
        .as_ref()
        .map(|k| (k.value.to_ascii_lowercase(), k.line))
    {
        None => CheckKind::Tcp,
        Some((k, line)) => match k.as_str() {
            "tcp" => CheckKind::Tcp,
            "http" => CheckKind::Http,
            other => {
                diag.error(
                    line,
                    Some("type"),
                    format!("check `type` must be \"tcp\" or \"http\", not `{other}`"),
                );
                CheckKind::Tcp // reported; the rest of the table is still checked
            }
        },
    };
    let count = |v: &Option<At<i64>>, key: &str, default: u32, diag: &mut Diag| {
        ranged(diag, v.as_ref(), key, 1, 1000).map_or(default, |n| n as u32)
    };
    let rise = count(&c.rise, "rise", DEFAULT_CHECK_RISE, diag);
    let fall = count(&c.fall, "fall", DEFAULT_CHECK_FALL, diag);
    let dur = |v: &Option<At<Duration>>, key: &str, default: Duration, diag: &mut Diag| match v {
        None => default,
        Some(x) if x.value.is_zero() => {
            diag.error(x.line, Some(key), format!("`{key}` must be more than zero"));
            default
        }
        Some(x) => x.value,
    };
    let interval = dur(&c.interval, "interval", DEFAULT_CHECK_INTERVAL, diag);
    let fastinter = dur(
        &c.fastinter,
        "fastinter",
        DEFAULT_CHECK_FASTINTER.min(interval),
        diag,
    );
    let downinter = dur(
        &c.downinter,
        "downinter",
        DEFAULT_CHECK_DOWNINTER.max(interval),
        diag,
    );
    let timeout = dur(
        &c.timeout,
        "timeout",
        DEFAULT_CHECK_TIMEOUT.min(interval),
        diag,
    );
    let mut expect_status = Vec::new();
    for e in c.expect_status.iter().flatten() {
        let v = e.value.trim().to_ascii_lowercase();
        let parsed = if let Some(class) = v.strip_suffix("xx") {
            class
                .parse::<u16>()
                .ok()
                .filter(|c| (1..=5).contains(c))
                .map(StatusMatch::Class)
        } else {
            v.parse::<u16>()
                .ok()
                .filter(|c| (100..=599).contains(c))
                .map(StatusMatch::Code)
        };
        match parsed {
            Some(m) => expect_status.push(m),
            None => diag.error(
                e.line,
                Some("expect_status"),
                format!(
                    "`expect_status` entries are classes like \"2xx\" or codes like 200, not `{}`",
                    e.value
                ),
            ),
        }
    }
    if expect_status.is_empty() {
        expect_status = vec![StatusMatch::Class(2), StatusMatch::Class(3)];
    }
    if let Some(b) = &c.expect_body {
        if let Err(e) = regex::Regex::new(&b.value) {
            let first = e
                .to_string()
                .lines()
                .last()
                .unwrap_or("")
                .trim()
                .to_string();
            diag.error(
                b.line,
                Some("expect_body"),
                format!("bad regular expression `{}`: {first}", b.value),
            );
        }
    }
    let path = c
        .path
        .as_ref()
        .map(|p| p.value.clone())
        .unwrap_or_else(|| "/".to_string());
    if !path.starts_with('/') || path.chars().any(|ch| ch.is_control() || ch == ' ') {
        diag.error(
            c.path.as_ref().map(|p| p.line).unwrap_or(c.line),
            Some("path"),
            format!("check `path` must start with / and have no spaces, not `{path}`"),
        );
    }
    Some(CheckConfig {
        kind,
        path,
        interval,
        fastinter,
        downinter,
        timeout,
        rise,
        fall,
        expect_status,
        expect_body: c.expect_body.as_ref().map(|b| b.value.clone()),
        disable_on_404: c.disable_on_404.unwrap_or(false),
    })
}

/// A byte size: a number of bytes or a string with units (`"64 MiB"`, `"512k"`).
fn size(diag: &mut Diag, v: Option<&At<String>>, key: &str, default: u64) -> u64 {
    let Some(v) = v else { return default };
    match v.value.trim().parse::<bytesize::ByteSize>() {
        Ok(b) => b.as_u64(),
        Err(_) => {
            diag.error(
                v.line,
                Some(key),
                format!(
                    "`{key}`: `{}` is not a size (write 64 MiB, 512k or a number of bytes)",
                    v.value
                ),
            );
            default
        }
    }
}

/// A path from the config, relative to the config file's directory.
fn config_path(diag: &Diag, p: &str) -> std::path::PathBuf {
    let path = std::path::Path::new(p);
    if path.is_absolute() {
        return path.to_path_buf();
    }
    match std::path::Path::new(&diag.file).parent() {
        Some(dir) if std::path::Path::new(&diag.file).is_file() => dir.join(path),
        _ => path.to_path_buf(),
    }
}

fn tls_listen(raw: &RawConfig, diag: &mut Diag, bound: &mut Vec<Bound>) -> Option<TlsListen> {
    let line = raw.tls_line?;
    let mut listen = Vec::new();
    for a in &raw.tls_listen {
        match resolve(&a.value) {
            Ok(addr) => {
                listen.push(addr);
                bound.push((addr, Some(a.line), "a TLS listener"));
            }
            Err(e) => diag.error(a.line, Some("listen"), e),
        }
    }
    if listen.is_empty() {
        diag.error(line, Some("listen"), "[tls] needs `listen` addresses");
    }
    let mut identities = Vec::new();
    for (cert, key) in &raw.tls_certs {
        let (c, k) = (
            config_path(diag, &cert.value),
            config_path(diag, &key.value),
        );
        match crate::tls::load_identity(&c, &k) {
            Ok(id) => identities.push(id),
            Err(e) => diag.error(cert.line, Some("certificates"), e),
        }
    }
    if raw.tls_certs.is_empty() {
        diag.error(
            line,
            Some("certificates"),
            "[tls] needs at least one certificate and key",
        );
    }
    if identities.is_empty() {
        return None;
    }
    match crate::tls::server_config(identities, true) {
        Ok(config) => Some(TlsListen { listen, config }),
        Err(e) => {
            diag.error(line, None, e);
            None
        }
    }
}

fn limits(l: &RawLimits, diag: &mut Diag) -> Limits {
    let d = Limits::default();
    let time = |diag: &mut Diag, v: &Option<At<Duration>>, key: &str, default: Duration| match v {
        Some(t) if t.value.is_zero() => {
            diag.error(t.line, Some(key), format!("`{key}` must be more than zero"));
            default
        }
        Some(t) => t.value,
        None => default,
    };
    // hyper's read buffer cannot be smaller than 8 KiB.
    let max_header_size = size_in(
        diag,
        l.max_header_size.as_ref(),
        "max_header_size",
        d.max_header_size as u64,
        8192..=(1 << 20),
    );
    let max_uri_length = size_in(
        diag,
        l.max_uri_length.as_ref(),
        "max_uri_length",
        d.max_uri_length as u64,
        16..=max_header_size,
    );
    let request_buffer = size_in(
        diag,
        l.request_buffer.as_ref(),
        "request_buffer",
        d.request_buffer as u64,
        0..=(64 << 20),
    );
    Limits {
        header_read_timeout: time(
            diag,
            &l.header_read_timeout,
            "header_read_timeout",
            d.header_read_timeout,
        ),
        keepalive_timeout: time(
            diag,
            &l.keepalive_timeout,
            "keepalive_timeout",
            d.keepalive_timeout,
        ),
        body_timeout: time(diag, &l.body_timeout, "body_timeout", d.body_timeout),
        request_timeout: time(
            diag,
            &l.request_timeout,
            "request_timeout",
            d.request_timeout,
        ),
        shutdown_timeout: time(
            diag,
            &l.shutdown_timeout,
            "shutdown_timeout",
            d.shutdown_timeout,
        ),
        max_header_size: max_header_size as usize,
        max_headers: ranged(diag, l.max_headers.as_ref(), "max_headers", 1, 1000)
            .map_or(d.max_headers, |n| n as usize),
        max_uri_length: max_uri_length as usize,
        max_body_size: size(
            diag,
            l.max_body_size.as_ref(),
            "max_body_size",
            d.max_body_size,
        ),
        max_connections: ranged(
            diag,
            l.max_connections.as_ref(),
            "max_connections",
            1,
            10_000_000,
        )
        .map_or(d.max_connections, |n| n as usize),
        request_buffer: request_buffer as usize,
    }
}

/// A size within `range`; out of it is an error naming the key, and the value is clamped.
fn size_in(
    diag: &mut Diag,
    v: Option<&At<String>>,
    key: &str,
    default: u64,
    range: std::ops::RangeInclusive<u64>,
) -> u64 {
    let n = size(diag, v, key, default);
    if !range.contains(&n) {
        if let Some(at) = v {
            diag.error(
                at.line,
                Some(key),
                format!(
                    "`{key}` must be between {} and {} bytes, not {n}",
                    range.start(),
                    range.end()
                ),
            );
        }
    }
    n.clamp(*range.start(), *range.end())
}

fn cache(c: &RawCache, diag: &mut Diag) -> CacheConfig {
    let d = CacheConfig::default();
    let max_size = size(diag, c.max_size.as_ref(), "max_size", d.max_size);
    // Unset, the largest object is at most a quarter of the budget.
    let max_object_size = size(
        diag,
        c.max_object_size.as_ref(),
        "max_object_size",
        d.max_object_size.min(max_size / 4),
    );
    if max_object_size > max_size {
        if let Some(at) = c.max_object_size.as_ref() {
            diag.error(
                at.line,
                Some("max_object_size"),
                format!("`max_object_size` ({max_object_size} bytes) is larger than `max_size` ({max_size} bytes)"),
            );
        }
    }
    let mut types = d.types.clone();
    if let Some(list) = &c.types {
        types.clear();
        for t in list {
            let v = t.value.trim().to_ascii_lowercase();
            let ok = v == "*"
                || v.split_once('/').is_some_and(|(a, b)| {
                    !a.is_empty()
                        && !b.is_empty()
                        && !a.contains('*')
                        && (b == "*" || !b.contains('*'))
                });
            if ok {
                types.push(v);
            } else {
                diag.error(
                    t.line,
                    Some("types"),
                    format!(
                        "`{}` is not a content type pattern (write text/html, image/* or *)",
                        t.value
                    ),
                );
            }
        }
    }
    let min_ttl = c.min_ttl.as_ref().map_or(d.min_ttl, |v| v.value);
    let max_ttl = c.max_ttl.as_ref().map(|v| v.value).filter(|t| !t.is_zero());
    if let (Some(max), Some(at)) = (max_ttl, c.max_ttl.as_ref()) {
        if max < min_ttl {
            diag.error(
                at.line,
                Some("max_ttl"),
                "`max_ttl` is shorter than `min_ttl`",
            );
        }
    }
    CacheConfig {
        max_size,
        max_object_size,
        types,
        default_ttl: c.default_ttl.as_ref().map_or(d.default_ttl, |v| v.value),
        min_ttl,
        max_ttl,
        lock_timeout: c.lock_timeout.as_ref().map_or(d.lock_timeout, |v| v.value),
        max_variants: ranged(diag, c.max_variants.as_ref(), "max_variants", 1, 1024)
            .map_or(d.max_variants, |n| n as usize),
        store_private: c.store_private.unwrap_or(false),
        store_set_cookie: c.store_set_cookie.unwrap_or(false),
        store_authorized: c.store_authorized.unwrap_or(false),
        bypass_headers: match &c.bypass_headers {
            None => d.bypass_headers,
            Some(list) => list
                .iter()
                .filter_map(
                    |n| match http::HeaderName::from_bytes(n.value.trim().as_bytes()) {
                        Ok(h) => Some(h),
                        Err(_) => {
                            diag.error(
                                n.line,
                                Some("bypass_headers"),
                                format!("`{}` is not a header field name", n.value),
                            );
                            None
                        }
                    },
                )
                .collect(),
        },
        request_cookie: match c.request_cookie.as_ref() {
            None => d.request_cookie,
            Some(v) => match v.value.to_ascii_lowercase().as_str() {
                "explicit" => crate::config::RequestCookie::Explicit,
                "pass" => crate::config::RequestCookie::Pass,
                "ignore" => crate::config::RequestCookie::Ignore,
                other => {
                    diag.error(
                        v.line,
                        Some("request_cookie"),
                        format!(
                            "`request_cookie = \"{other}\"`: expected \"explicit\", \"pass\" or \"ignore\""
                        ),
                    );
                    d.request_cookie
                }
            },
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn method_names_are_lenient() {
        for n in [
            "Round-Robin",
            "RoundRobin",
            "round_robin",
            "lockless-round-robin",
            "Locking Round Robin",
        ] {
            assert_eq!(parse_balance(n), Some(BalanceMethod::RoundRobin), "{n}");
        }
        assert_eq!(
            parse_balance("First-Alive"),
            Some(BalanceMethod::FirstAlive)
        );
        assert_eq!(
            parse_balance("Least-Connections"),
            Some(BalanceMethod::LeastConnections)
        );
        assert_eq!(parse_balance("Naïve"), None);
        assert_eq!(parse_balance("NAIVE"), Some(BalanceMethod::Naive));
        assert_eq!(parse_balance("fastest"), None);
    }

    #[test]
    fn repeated_server_adds_weight() {
        let text = "[PROXY_ENTRY]\nServerList 127.0.0.1:80 127.0.0.1:81 127.0.0.1:80 127.0.0.1:82 127.0.0.1:80 127.0.0.1:81\nLoadBalancer RoundRobin\nMatch ^/.*\n";
        let c = parse_str("t", text, false).unwrap();
        let w: Vec<(u16, u32)> = c.pools[0]
            .servers
            .iter()
            .map(|s| (s.addr.port(), s.weight))
            .collect();
        assert_eq!(w, vec![(80, 3), (81, 2), (82, 1)]);
    }

    #[test]
    fn toml_reports_every_error_with_lines() {
        let text = "[server]\nlisten = [\"127.0.0.1:8080\"]\nworkrs = 2\n\n[[route]]\nmatch = ['(']\npool = \"web\"\n\n[pools.web]\nservers = [\"127.0.0.1:notaport\"]\nbalance = \"round-robbin\"\n";
        let errs = parse_str("t.toml", text, true).unwrap_err().0;
        let lines: Vec<usize> = errs.iter().map(|e| e.line).collect();
        assert_eq!(lines, vec![3, 6, 10, 11], "{errs:?}");
        assert!(
            errs[0].message.contains("did you mean `workers`"),
            "{}",
            errs[0].message
        );
        assert!(
            errs[3].message.contains("round-robin"),
            "{}",
            errs[3].message
        );
    }

    #[test]
    fn defaults_are_copied_into_pools() {
        let text = "[defaults]\nbalance = \"least-connections\"\nattempts = 5\noffline_timeout = \"0s\"\n[[route]]\nmatch = ['.']\npool = \"a\"\n[pools.a]\nservers = [\"127.0.0.1:1\"]\n[pools.b]\nbalance = \"first-alive\"\nservers = [\"127.0.0.1:2\"]\n";
        let c = parse_str("t.toml", text, true).unwrap();
        assert_eq!(c.pools[0].balance, BalanceMethod::LeastConnections);
        assert_eq!(c.pools[0].attempts, 5);
        assert_eq!(c.pools[0].offline_timeout, Duration::ZERO);
        assert_eq!(c.pools[1].balance, BalanceMethod::FirstAlive);
        assert_eq!(c.warnings.len(), 1, "pool b is unused: {:?}", c.warnings);
    }

    #[test]
    fn unknown_pool_is_named() {
        let text = "[[route]]\nmatch = ['.']\npool = \"statc\"\n[pools.static]\nservers = [\"127.0.0.1:1\"]\n";
        let errs = parse_str("t.toml", text, true).unwrap_err().0;
        assert_eq!(errs.len(), 1);
        assert_eq!(errs[0].line, 3);
        assert!(errs[0].message.contains("did you mean `static`"));
    }

    #[test]
    fn checks_merge_per_server_and_report_bad_values() {
        let text = r#"
[[route]]
match = ['^/']
pool = "p"
[pools.p]
observe = "layer7"
error_limit = 3
on_error = "mark-down"
on_marked_down = "shutdown-sessions"
server = [
  { address = "127.0.0.1:1" },
  { address = "127.0.0.1:2", check = false },
  { address = "127.0.0.1:3", backup = true, check = { path = "/deep", rise = 5 } },
]
[pools.p.check]
type = "http"
path = "/health"
interval = "1s"
expect_status = ["2xx", 301]
disable_on_404 = true
"#;
        let c = parse_str("t.toml", text, true).unwrap();
        let p = &c.pools[0];
        let s0 = p.servers[0].check.as_ref().unwrap();
        assert_eq!(
            (s0.kind, s0.path.as_str(), s0.rise, s0.fall),
            (CheckKind::Http, "/health", 2, 3)
        );
        assert_eq!(
            s0.expect_status,
            vec![StatusMatch::Class(2), StatusMatch::Code(301)]
        );
        assert_eq!(s0.fastinter, Duration::from_millis(500));
        assert!(s0.disable_on_404);
        assert!(p.servers[1].check.is_none(), "check = false");
        let s2 = p.servers[2].check.as_ref().unwrap();
        assert_eq!(
            (s2.path.as_str(), s2.rise, s2.interval),
            ("/deep", 5, Duration::from_secs(1))
        );
        assert!(p.servers[2].backup);
        assert_eq!(p.observe.unwrap().on_error, OnError::MarkDown);
        assert!(p.shutdown_sessions_on_down && !p.shutdown_backup_sessions_on_up);

        let bad = "[[route]]\nmatch = ['^/']\npool = \"p\"\n[pools.p]\nservers = [\"127.0.0.1:1\"]\nobserve = \"layer9\"\non_error = \"mark-dwn\"\n[pools.p.check]\ntype = \"icmp\"\nrise = 0\nexpect_status = [\"7xx\"]\nintreval = \"1s\"\n";
        let errs = parse_str("t.toml", bad, true).unwrap_err().0;
        let text: Vec<String> = errs.iter().map(|e| e.to_string()).collect();
        assert!(
            text.iter()
                .any(|e| e.contains(":12: unknown key `intreval`") && e.contains("interval")),
            "{text:?}"
        );
        assert!(text.iter().any(|e| e.contains(":6: `observe`")), "{text:?}");
        assert!(
            text.iter().any(|e| e.contains(":9: check `type`")),
            "{text:?}"
        );
        assert!(text.iter().any(|e| e.contains(":10: `rise`")), "{text:?}");
        assert!(
            text.iter().any(|e| e.contains(":11: `expect_status`")),
            "{text:?}"
        );
    }

    fn errors(file: &str, text: &str) -> Vec<String> {
        let toml = file.ends_with(".toml");
        match parse_str(file, text, toml) {
            Ok(_) => Vec::new(),
            Err(e) => e.0.iter().map(|e| e.to_string()).collect(),
        }
    }

    const ROUTE: &str =
        "[[route]]\nmatch = ['^/']\npool = 'p'\n[pools.p]\nservers = ['127.0.0.1:1']\n";

    #[test]
    fn listeners_that_take_the_same_connections_are_errors() {
        let cases: &[(&str, &str)] = &[
            // The same address twice in one list.
            ("[server]\nlisten = ['127.0.0.1:8080', '127.0.0.1:8080']\n", ":2: `listen`: 127.0.0.1:8080 is also a client listener on line 2"),
            ("[server]\nlisten = [\n  '127.0.0.1:8080',\n  '127.0.0.1:8080',\n]\n", ":4: `listen`: 127.0.0.1:8080 is also a client listener on line 3"),
            // A wildcard and a specific address on one port, either order, either family.
            ("[server]\nlisten = ['0.0.0.0:8080', '127.0.0.1:8080']\n", "127.0.0.1:8080 overlaps 0.0.0.0:8080"),
            ("[server]\nlisten = ['127.0.0.1:8080', '0.0.0.0:8080']\n", "0.0.0.0:8080 overlaps 127.0.0.1:8080"),
            ("[server]\nlisten = ['[::]:8080', '127.0.0.1:8080']\n", "127.0.0.1:8080 overlaps [::]:8080"),
            ("[server]\nlisten = ['[::1]:8080', '[::]:8080']\n", "[::]:8080 overlaps [::1]:8080"),
            // Across client, TLS and admin listeners.
            ("[server]\nlisten = ['127.0.0.1:8080']\n[admin]\nlisten = '127.0.0.1:8080'\n", ":4: `listen`: 127.0.0.1:8080 is also a client listener on line 2; the admin listener"),
            ("[server]\nlisten = ['127.0.0.1:9090']\n", ":2: `listen`: 127.0.0.1:9090 is also the default admin listener"),
            ("[admin]\nlisten = '127.0.0.1:8080'\n", ":2: `listen`: 127.0.0.1:8080 is also the default client listener"),
            ("[admin]\nlisten = '0.0.0.0:9999'\n", ":2: the admin listener 0.0.0.0:9999 is not on loopback"),
            ("[admin]\nlisten = '[::]:9999'\ntoken = ''\n", ":2: the admin listener [::]:9999 is not on loopback"),
            ("[admin]\nlisten = '0.0.0.0:8080'\ntoken = 't'\n", "0.0.0.0:8080 overlaps 127.0.0.1:8080, the default client listener"),
        ];
        for (text, want) in cases {
            let e = errors("t.toml", &format!("{text}{ROUTE}"));
            assert!(
                e.iter()
                    .any(|e| e.contains(want) && e.starts_with("t.toml:")),
                "{text}\nwant {want}\ngot {e:?}"
            );
        }
        // TLS listeners are checked before their certificates are read.
        let e = errors("t.toml", &format!("[server]\nlisten = ['127.0.0.1:8443']\n[tls]\nlisten = ['127.0.0.1:8443']\ncertificates = [{{ cert = 'none.pem', key = 'none.key' }}]\n{ROUTE}"));
        assert!(
            e.iter().any(|e| e.contains(
                ":4: `listen`: 127.0.0.1:8443 is also a client listener on line 2; a TLS listener"
            )),
            "{e:?}"
        );
        // The legacy format names its lines too.
        let e = errors("t.conf", "[SERVER]\nListen 127.0.0.1:8080\nListen 127.0.0.1:8080\n[PROXY_ENTRY]\nServerList 127.0.0.1:1\nMatch /\n");
        assert!(
            e.iter().any(|e| e.starts_with(
                "t.conf:3: `listen`: 127.0.0.1:8080 is also a client listener on line 2"
            )),
            "{e:?}"
        );
        // Not overlapping: other ports, other addresses, other families, port 0.
        for ok in [
            "[server]\nlisten = ['127.0.0.1:8080', '127.0.0.1:8081']\n",
            "[server]\nlisten = ['127.0.0.1:8080', '127.0.0.2:8080']\n",
            "[server]\nlisten = ['127.0.0.1:8080', '[::1]:8080']\n",
            "[server]\nlisten = ['0.0.0.0:8080', '[::1]:8080']\n",
            "[server]\nlisten = ['127.0.0.1:0', '127.0.0.1:0']\n[admin]\nlisten = '127.0.0.1:0'\n",
        ] {
            let e = errors("t.toml", &format!("{ok}{ROUTE}"));
            assert!(e.is_empty(), "{ok}: {e:?}");
        }
    }

    /// Every key that takes a duration, in both formats, refuses a bare number and says to
    /// write the unit; `0` needs none; the reference's `OfflineTimeOut` stays in seconds.
    #[test]
    fn durations_need_a_unit_everywhere() {
        let toml_keys: &[(&str, &str)] = &[
            ("[server]", "header_read_timeout"),
            ("[server]", "keepalive_timeout"),
            ("[server]", "body_timeout"),
            ("[server]", "request_timeout"),
            ("[server]", "shutdown_timeout"),
            ("[defaults]", "offline_timeout"),
            ("[defaults]", "connect_timeout"),
            ("[defaults]", "response_timeout"),
            ("[defaults]", "read_timeout"),
            ("[defaults]", "slowstart"),
            ("[defaults]", "overload_backoff"),
            ("[pools.p]", "offline_timeout"),
            ("[pools.p]", "slowstart"),
            ("[pools.p.queue]", "timeout"),
            ("[pools.p.queue]", "retry_after"),
            ("[pools.p.check]", "interval"),
            ("[pools.p.check]", "fastinter"),
            ("[pools.p.check]", "downinter"),
            ("[pools.p.check]", "timeout"),
            ("[cache]", "default_ttl"),
            ("[cache]", "min_ttl"),
            ("[cache]", "max_ttl"),
            ("[cache]", "lock_timeout"),
        ];
        let pool = "[[route]]\nmatch = ['^/']\npool = 'p'\ngrace = '1s'\n";
        for (section, key) in toml_keys {
            for value in ["2000", "'2000'", "1.5", "2_000"] {
                let servers = if section.starts_with("[pools.p") && *section != "[pools.p]" {
                    "[pools.p]\nservers = ['127.0.0.1:1']\n"
                } else if *section == "[pools.p]" {
                    ""
                } else {
                    "[pools.p]\nservers = ['127.0.0.1:1']\n"
                };
                let own = if *section == "[pools.p]" {
                    "servers = ['127.0.0.1:1']\n"
                } else {
                    ""
                };
                let text = format!("{pool}{servers}{section}\n{own}{key} = {value}\n");
                let line = text
                    .lines()
                    .position(|l| l.starts_with(&format!("{key} =")))
                    .unwrap()
                    + 1;
                let e = errors("t.toml", &text);
                let digits = value.trim_matches('\'').replace('_', "");
                let want = format!("t.toml:{line}: `{key}`: `");
                assert!(
                    e.iter().any(|e| e.starts_with(&want)
                        && e.contains(&format!("write \"{digits}ms\" or \"{digits}s\""))),
                    "{section} {key} = {value}: {e:?}"
                );
            }
            let zero =
                format!("{pool}[pools.p]\nservers = ['127.0.0.1:1']\n{section}\n{key} = 0\n")
                    .replace(
                        "[pools.p]\nservers = ['127.0.0.1:1']\n[pools.p]\n",
                        "[pools.p]\nservers = ['127.0.0.1:1']\n",
                    );
            let e = errors("t.toml", &zero);
            assert!(
                e.iter().all(|e| !e.contains("no unit")),
                "{section} {key} = 0: {e:?}"
            );
        }
        let e = errors("t.toml", "[[route]]\nmatch = ['^/']\npool = 'p'\ngrace = 30\n[pools.p]\nservers = ['127.0.0.1:1']\n");
        assert!(
            e.iter()
                .any(|e| e.starts_with("t.toml:4: `grace`: `30` has no unit")),
            "{e:?}"
        );
        let ok = parse_str("t.toml", "[[route]]\nmatch = ['^/']\npool = 'p'\n[pools.p]\nservers = ['127.0.0.1:1']\n[pools.p.check]\ninterval = '2000ms'\n", true).unwrap();
        assert_eq!(
            ok.pools[0].servers[0].check.as_ref().unwrap().interval,
            Duration::from_secs(2)
        );

        // Legacy: every duration key but OfflineTimeOut.
        let entry = "[PROXY_ENTRY]\nServerList 127.0.0.1:1\nMatch /\n";
        for (section, key) in [
            ("[SERVER]", "HeaderReadTimeout"),
            ("[SERVER]", "KeepAliveTimeout"),
            ("[SERVER]", "BodyTimeout"),
            ("[SERVER]", "RequestTimeout"),
            ("[SERVER]", "ShutdownTimeout"),
            ("[PROXY_ENTRY]", "ConnectTimeout"),
            ("[PROXY_ENTRY]", "ResponseTimeout"),
            ("[PROXY_ENTRY]", "ReadTimeout"),
            ("[PROXY_ENTRY]", "Grace"),
            ("[PROXY_DEFAULTS]", "ConnectTimeout"),
            ("[CACHE]", "DefaultTTL"),
            ("[CACHE]", "MinTTL"),
            ("[CACHE]", "MaxTTL"),
            ("[CACHE]", "LockTimeout"),
        ] {
            let text = if section == "[PROXY_ENTRY]" {
                format!("{entry}{key} 2000\n")
            } else {
                format!("{section}\n{key} 2000\n{entry}")
            };
            let line = text.lines().position(|l| l.starts_with(key)).unwrap() + 1;
            let e = errors("t.conf", &text);
            assert!(
                e.iter()
                    .any(|e| e.starts_with(&format!("t.conf:{line}: `{key}`: `2000` has no unit"))),
                "{section} {key}: {e:?}"
            );
        }
        let c = parse_str(
            "t.conf",
            &format!("{entry}OfflineTimeOut 5\nConnectTimeout 1500ms\n"),
            false,
        )
        .unwrap();
        assert_eq!(c.pools[0].offline_timeout, Duration::from_secs(5));
        assert_eq!(c.pools[0].connect_timeout, Duration::from_millis(1500));
    }

    /// A size without a unit is bytes, in both formats.
    #[test]
    fn a_bare_size_is_bytes() {
        let c = parse_str("t.toml", &format!("[server]\nmax_body_size = 1048576\nrequest_buffer = '4096'\nh2_window = 0x20000\n[cache]\nmax_size = 4_194_304\n{ROUTE}"), true).unwrap();
        assert_eq!(c.server.limits.max_body_size, 1 << 20);
        assert_eq!(c.server.limits.request_buffer, 4096);
        assert_eq!(c.server.h2.window, 0x20000);
        assert_eq!(c.cache.max_size, 4 << 20);
        let c = parse_str("t.conf", "[SERVER]\nMaxBodySize 2048\n[CACHE]\nMaxSize 8388608\n[PROXY_ENTRY]\nServerList 127.0.0.1:1\nMatch /\n", false).unwrap();
        assert_eq!(c.server.limits.max_body_size, 2048);
        assert_eq!(c.cache.max_size, 8 << 20);
    }

    #[test]
    fn admin_hosts_and_reuse_port() {
        let c = parse_str("t.toml", &format!("[server]\nreuse_port = true\n[admin]\nhosts = ['Admin.Example.com.', '10.0.0.5', '[::1]']\n{ROUTE}"), true).unwrap();
        assert!(c.server.reuse_port);
        assert_eq!(c.admin.hosts, vec!["admin.example.com", "10.0.0.5", "::1"]);
        let e = errors("t.toml", &format!("[admin]\nhosts = ['http://admin.example.com', 'a.example:9090', 'a/b', '']\n{ROUTE}"));
        assert_eq!(
            e.iter()
                .filter(|e| e.starts_with("t.toml:2: `hosts`:"))
                .count(),
            4,
            "{e:?}"
        );
        let c = parse_str("t.conf", "[SERVER]\nReusePort On\n[ADMIN]\nHosts a.example b.example\n[PROXY_ENTRY]\nServerList 127.0.0.1:1\nMatch /\n", false).unwrap();
        assert!(c.server.reuse_port);
        assert_eq!(c.admin.hosts, vec!["a.example", "b.example"]);
    }

    #[test]
    fn toml_syntax_error_has_a_line() {
        let errs = parse_str("t.toml", "[server]\nlisten = [\n", true)
            .unwrap_err()
            .0;
        assert_eq!(errs.len(), 1);
        assert!(errs[0].line >= 2, "{errs:?}");
    }
}
