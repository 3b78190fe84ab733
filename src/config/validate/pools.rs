//! `[pools.NAME]` and their checks.

use super::*;

pub(super) fn pool(p: &RawPool, defaults: &RawPoolSettings, diag: &mut Diag) -> Option<PoolConfig> {
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
pub(super) fn check(c: &RawCheck, diag: &mut Diag) -> Option<CheckConfig> {
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
