//! `[pools.NAME]` and their checks.

use super::*;

/// A pool setting's value: the pool's own key, else `[defaults]` (`[PROXY_DEFAULTS]`).
fn setting<'a, T>(own: &'a Option<T>, defaults: &'a Option<T>) -> Option<&'a T> {
    own.as_ref().or(defaults.as_ref())
}

/// One pool, its settings merged over `[defaults]`. `None` when it has no servers (reported;
/// the keys after the servers are then not checked). Other errors are reported and leave a
/// pool with defaults in their place (the load fails anyway).
pub(super) fn pool(p: &RawPool, defaults: &RawPoolSettings, diag: &mut Diag) -> Option<PoolConfig> {
    let s = &p.settings;
    let balance = balance(setting(&s.balance, &defaults.balance), diag);
    let attempts = setting(&s.attempts, &defaults.attempts);
    let attempts =
        ranged(diag, attempts, "attempts", 1, 1000).map_or(DEFAULT_ATTEMPTS, |n| n as u32);
    let hash_balance_factor = hash_balance_factor(
        setting(&s.hash_balance_factor, &defaults.hash_balance_factor),
        diag,
    );
    let protocol = protocol(setting(&s.protocol, &defaults.protocol), diag);
    let tls = upstream_tls(p, defaults, protocol, diag);
    // Zero turns high availability off.
    let offline_timeout = setting(&s.offline_timeout, &defaults.offline_timeout)
        .map_or(DEFAULT_OFFLINE_TIMEOUT, |d| d.value);
    let [connect_timeout, response_timeout, read_timeout] = timeouts(s, defaults, diag);
    let servers = servers(p, diag)?;
    let observe = observe(p, diag);
    let retries = ranged(
        diag,
        setting(&s.retries, &defaults.retries),
        "retries",
        0,
        100,
    )
    .map(|n| n as u32);
    let retry_budget = retry_budget(setting(&s.retry_budget, &defaults.retry_budget), diag);
    let queue = queue(p.queue.as_ref(), diag);
    let send_proxy =
        super::clients::send_proxy(setting(&s.send_proxy, &defaults.send_proxy), protocol, diag);
    if tls.is_some() {
        no_tls_to_unix(p, &servers, diag);
    }
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
        shutdown_sessions_on_down: action(
            &p.on_marked_down,
            "on_marked_down",
            "shutdown-sessions",
            diag,
        ),
        shutdown_backup_sessions_on_up: action(
            &p.on_marked_up,
            "on_marked_up",
            "shutdown-backup-sessions",
            diag,
        ),
        queue,
        retries,
        retry_budget,
        slowstart: setting(&s.slowstart, &defaults.slowstart)
            .map(|d| d.value)
            .unwrap_or_default(),
        overload_backoff: setting(&s.overload_backoff, &defaults.overload_backoff)
            .map(|d| d.value)
            .unwrap_or_default(),
        send_proxy,
        sticky: p
            .sticky
            .as_ref()
            .and_then(|s| crate::config::sticky::sticky(s, diag)),
        dns: crate::config::dns::policy(s, defaults, diag),
    })
}

/// A pool with `tls` may not hold a server on a Unix-domain socket (reported at the pool).
fn no_tls_to_unix(p: &RawPool, servers: &[ServerConfig], diag: &mut Diag) {
    if let Some(u) = servers.iter().find(|s| s.unix.is_some()) {
        diag.error(p.line, Some("tls"), format!(
            "pool `{}`: TLS to a server on a Unix-domain socket ({}) is not supported; leave `tls` off for it",
            p.name, u.name
        ));
    }
}

/// The balancing method: round robin when unset; an unknown name is reported with the
/// closest known one (or the list of them).
fn balance(b: Option<&At<String>>, diag: &mut Diag) -> BalanceMethod {
    let Some(b) = b else {
        return BalanceMethod::RoundRobin;
    };
    if let Some(m) = parse_balance(&b.value) {
        return m;
    }
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

/// The hashing methods' load bound: more than 1 and at most 100; 0 or unset means none.
fn hash_balance_factor(f: Option<&At<f64>>, diag: &mut Diag) -> Option<f64> {
    match f {
        None => None,
        Some(f) if f.value == 0.0 => None,
        Some(f) if f.value > 1.0 && f.value <= 100.0 => Some(f.value),
        Some(f) => {
            diag.error(f.line, Some("hash_balance_factor"), format!("`hash_balance_factor` must be more than 1 (e.g. 1.25), or 0 for no bound, not {}", f.value));
            None
        }
    }
}

/// What the servers speak: HTTP/1.1 unless `h2` (`h2c`, `http2`) is asked for.
fn protocol(p: Option<&At<String>>, diag: &mut Diag) -> Protocol {
    let Some(p) = p else { return Protocol::H1 };
    match p.value.to_ascii_lowercase().as_str() {
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
    }
}

/// TLS to the servers when `tls` is on: the CA file (else the system's roots), whether the
/// certificate is verified, the name sent and checked (else the server's host), and ALPN
/// offering only the pool's protocol. A configuration that cannot be built is reported on the
/// `tls_ca` line (the pool's line without one).
fn upstream_tls(
    p: &RawPool,
    defaults: &RawPoolSettings,
    protocol: Protocol,
    diag: &mut Diag,
) -> Option<crate::tls::Upstream> {
    let s = &p.settings;
    if !s.tls.or(defaults.tls).unwrap_or(false) {
        if let Some(c) = s.tls_cert.as_ref().or(s.tls_key.as_ref()) {
            diag.error(
                c.line,
                Some("tls_cert"),
                "a client certificate needs `tls = true`",
            );
        }
        return None;
    }
    let ca = setting(&s.tls_ca, &defaults.tls_ca);
    let verify = s.tls_verify.or(defaults.tls_verify).unwrap_or(true);
    let alpn: &[&[u8]] = match protocol {
        Protocol::H2 => &[b"h2"],
        Protocol::H1 => &[b"http/1.1"],
    };
    let path = ca.map(|c| config_path(diag, &c.value));
    let identity = client_identity(p, defaults, diag);
    match crate::tls::client_config(path.as_deref(), verify, alpn, identity.as_ref()) {
        Ok(config) => Some(crate::tls::Upstream {
            config,
            server_name: setting(&s.tls_server_name, &defaults.tls_server_name)
                .map(|n| n.value.clone()),
        }),
        Err(e) => {
            diag.error(ca.map_or(p.line, |c| c.line), Some("tls_ca"), e);
            None
        }
    }
}

/// The client certificate presented to the servers (`tls_cert` with `tls_key`, each the pool's
/// or `[defaults]`'s): both or neither; a file that does not load is reported on its line.
fn client_identity(
    p: &RawPool,
    defaults: &RawPoolSettings,
    diag: &mut Diag,
) -> Option<crate::tls::Identity> {
    let s = &p.settings;
    let cert = setting(&s.tls_cert, &defaults.tls_cert);
    let key = setting(&s.tls_key, &defaults.tls_key);
    match (cert, key) {
        (None, None) => None,
        (Some(c), None) => {
            diag.error(c.line, Some("tls_cert"), "`tls_cert` needs `tls_key`");
            None
        }
        (None, Some(k)) => {
            diag.error(k.line, Some("tls_key"), "`tls_key` needs `tls_cert`");
            None
        }
        (Some(c), Some(k)) => {
            let (cp, kp) = (config_path(diag, &c.value), config_path(diag, &k.value));
            crate::tls::load_identity(&cp, &kp)
                .map_err(|e| diag.error(c.line, Some("tls_cert"), e))
                .ok()
        }
    }
}

/// The connect, response and read timeouts, in that order: each the pool's own key, else
/// `[defaults]`, else its `DEFAULT_*`; each must be more than zero.
fn timeouts(s: &RawPoolSettings, defaults: &RawPoolSettings, diag: &mut Diag) -> [Duration; 3] {
    [
        (
            &s.connect_timeout,
            &defaults.connect_timeout,
            "connect_timeout",
            DEFAULT_CONNECT_TIMEOUT,
        ),
        (
            &s.response_timeout,
            &defaults.response_timeout,
            "response_timeout",
            DEFAULT_RESPONSE_TIMEOUT,
        ),
        (
            &s.read_timeout,
            &defaults.read_timeout,
            "read_timeout",
            DEFAULT_READ_TIMEOUT,
        ),
    ]
    .map(|(own, def, key, default)| nonzero(diag, setting(own, def), key, default))
}

/// A pool's servers in list order; `None` (reported) when the pool lists none. A server whose
/// address does not resolve is reported and left out. An address listed twice under one name
/// (or none) is one server with the weights added: the reference's "weighted round robin by
/// repeating a server"; under two names it is an error, as is a name used twice.
fn servers(p: &RawPool, diag: &mut Diag) -> Option<Vec<ServerConfig>> {
    let pool_maxconn = maxconn(&p.maxconn, diag).unwrap_or(0);
    let mut servers: Vec<ServerConfig> = Vec::new();
    for rs in &p.servers {
        let check = server_check(rs, p.check.as_ref(), diag);
        let weight = ranged(diag, rs.weight.as_ref(), "weight", 1, 1000).map_or(1, |n| n as u32);
        let name = server_name(rs, diag);
        if let Some(host) = crate::config::dns::dns_name(&rs.address.value) {
            // A name listed twice is one entry with the weights added, as an address is.
            match servers.iter_mut().find(|x| x.dns.as_ref() == Some(&host)) {
                Some(existing) => existing.weight += weight,
                None => servers.push(ServerConfig {
                    name,
                    address: rs.address.value.clone(),
                    addr: SocketAddr::new(std::net::Ipv4Addr::UNSPECIFIED.into(), host.port),
                    unix: None,
                    weight,
                    backup: rs.backup.unwrap_or(false),
                    check,
                    maxconn: maxconn(&rs.maxconn, diag).unwrap_or(pool_maxconn),
                    dns: Some(host),
                }),
            }
            continue;
        }
        let (addr, unix) = match super::clients::listen_addr(&rs.address.value) {
            Ok(ListenAddr::Tcp(a)) => (a, None),
            Ok(ListenAddr::Unix(p)) => (UNIX_SERVER, Some(p)),
            Err(e) => {
                let msg = format!("bad server address in pool `{}`: {e}", p.name);
                diag.error(rs.address.line, Some("address"), msg);
                continue;
            }
        };
        let entry = (name.as_str(), addr, &unix, weight);
        if listed_before(&mut servers, p, rs, entry, diag) {
            continue;
        }
        servers.push(ServerConfig {
            name,
            address: rs.address.value.clone(),
            addr,
            unix,
            weight,
            backup: rs.backup.unwrap_or(false),
            check,
            maxconn: maxconn(&rs.maxconn, diag).unwrap_or(pool_maxconn),
            dns: None,
        });
    }
    if let Some(srv) = srv_server(p, pool_maxconn, diag) {
        servers.push(srv);
    }
    if p.servers.is_empty() && p.srv.is_none() {
        diag.error(
            p.line,
            Some("servers"),
            format!("pool `{}` has no servers", p.name),
        );
        return None;
    }
    Some(servers)
}

/// Whether a server entry `(name, addr, unix, weight)` adds nothing new: the same address under
/// the same name adds its weight to the first (as a name listed twice does); the same address
/// under another name, or the same name at another address, is reported.
fn listed_before(
    servers: &mut [ServerConfig],
    p: &RawPool,
    rs: &RawServer,
    (name, addr, unix, weight): (&str, SocketAddr, &Option<std::path::PathBuf>, u32),
    diag: &mut Diag,
) -> bool {
    let line = rs.name.as_ref().map_or(rs.address.line, |n| n.line);
    if let Some(existing) = servers
        .iter_mut()
        .find(|x| x.dns.is_none() && x.addr == addr && x.unix == *unix)
    {
        if existing.name == name {
            existing.weight += weight;
        } else {
            diag.error(line, Some("name"), format!(
                "`name`: server `{name}` of pool `{}` has the address of server `{}` ({}); list one server with a `weight` instead",
                p.name, existing.name, rs.address.value
            ));
        }
        return true;
    }
    if servers.iter().any(|x| x.name == name) {
        diag.error(line, Some("name"), format!(
            "`name`: pool `{}` has two servers named `{name}`; a server's name must be unique in its pool",
            p.name
        ));
        return true;
    }
    false
}

/// The server a pool's `srv` stands for (its SRV records become servers at run time); `None`
/// (reported) when `srv` is not a DNS name.
fn srv_server(p: &RawPool, pool_maxconn: usize, diag: &mut Diag) -> Option<ServerConfig> {
    let srv = p.srv.as_ref()?;
    let Some(name) = crate::config::dns::srv_name(&srv.value) else {
        diag.error(
            srv.line,
            Some("srv"),
            format!(
                "`srv` of pool `{}`: `{}` is not a DNS name",
                p.name, srv.value
            ),
        );
        return None;
    };
    Some(ServerConfig {
        name: srv.value.clone(),
        address: srv.value.clone(),
        addr: SocketAddr::new(std::net::Ipv4Addr::UNSPECIFIED.into(), 0),
        unix: None,
        weight: 1,
        backup: false,
        check: p.check.as_ref().and_then(|c| check(c, diag)),
        maxconn: pool_maxconn,
        dns: Some(name),
    })
}

/// A server's name: its `name` (1 to 64 letters, digits, `-`, `_`, `.` or `:`, HAProxy's
/// identifier characters, so it can stand in a URL path and a metrics label as it is), else
/// its address as written.
fn server_name(rs: &RawServer, diag: &mut Diag) -> String {
    let Some(n) = &rs.name else {
        return rs.address.value.clone();
    };
    if !crate::config::valid_server_name(&n.value) {
        diag.error(
            n.line,
            Some("name"),
            format!(
                "`name` must be 1 to 64 letters, digits, `-`, `_`, `.` or `:`, not `{}`",
                n.value
            ),
        );
    }
    n.value.clone()
}

/// Requests in flight a server takes at most (0 to 1 000 000; 0: no limit).
fn maxconn(v: &Option<At<i64>>, diag: &mut Diag) -> Option<usize> {
    ranged(diag, v.as_ref(), "maxconn", 0, 1_000_000).map(|n| n as usize)
}

/// A server's active check: none when it turns the check off or neither it nor the pool has
/// one; else the pool's check with the server's keys over it.
fn server_check(
    rs: &RawServer,
    pool_check: Option<&RawCheck>,
    diag: &mut Diag,
) -> Option<CheckConfig> {
    match (&rs.check, pool_check) {
        (Some(RawServerCheck::Off), _) => None,
        (Some(RawServerCheck::Override(o)), Some(pc)) => check(&pc.merged(o), diag),
        (Some(RawServerCheck::Override(o)), None) => check(o, diag),
        (None, Some(pc)) => check(pc, diag),
        (None, None) => None,
    }
}

/// Passive observation of live traffic: none when `observe` is unset, `none` or `off`; else
/// its layer, the consecutive errors that act (1 to 10 000) and what they do.
fn observe(p: &RawPool, diag: &mut Diag) -> Option<ObserveConfig> {
    let o = p.observe.as_ref()?;
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
    let on_error = on_error(p.on_error.as_ref(), diag);
    mode.map(|mode| ObserveConfig {
        mode,
        error_limit,
        on_error,
    })
}

/// What observed errors do (`on_error`): check sooner when unset.
fn on_error(v: Option<&At<String>>, diag: &mut Diag) -> OnError {
    let Some(v) = v else {
        return OnError::Fastinter;
    };
    match v.value.to_ascii_lowercase().as_str() {
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
                v.line,
                Some("on_error"),
                format!("unknown `on_error` action `{other}`{hint}"),
            );
            OnError::Fastinter
        }
    }
}

/// An `on_marked_down`/`on_marked_up` action: whether it is `want`; `none` or unset is off.
fn action(v: &Option<At<String>>, key: &str, want: &str, diag: &mut Diag) -> bool {
    match v {
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
    }
}

/// Retries on top of requests, as a ratio between 0 and 10; unset means no budget.
fn retry_budget(b: Option<&At<f64>>, diag: &mut Diag) -> Option<f64> {
    match b {
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
    }
}

/// The backlog queue (`[pools.NAME.queue]`): how many may wait (0 to 1 000 000), how long,
/// and the answers (statuses 400 to 599, `Retry-After`); each unset key takes its default.
fn queue(q: Option<&RawQueue>, diag: &mut Diag) -> QueueConfig {
    let q = q.cloned().unwrap_or_default();
    let status = |v: &Option<At<i64>>, key: &str, default: u16, diag: &mut Diag| {
        ranged(diag, v.as_ref(), key, 400, 599).map_or(default, |n| n as u16)
    };
    QueueConfig {
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
        fair: q.fair.unwrap_or(false),
    }
}

/// Builds a check from its (merged) raw keys, with HAProxy's defaults.
pub(super) fn check(c: &RawCheck, diag: &mut Diag) -> Option<CheckConfig> {
    let kind = check_kind(c.kind.as_ref(), diag);
    let count = |v: &Option<At<i64>>, key: &str, default: u32, diag: &mut Diag| {
        ranged(diag, v.as_ref(), key, 1, 1000).map_or(default, |n| n as u32)
    };
    let rise = count(&c.rise, "rise", DEFAULT_CHECK_RISE, diag);
    let fall = count(&c.fall, "fall", DEFAULT_CHECK_FALL, diag);
    // Unset, the faster and slower intervals and the timeout follow `interval`.
    let interval = nonzero(
        diag,
        c.interval.as_ref(),
        "interval",
        DEFAULT_CHECK_INTERVAL,
    );
    let fastinter = nonzero(
        diag,
        c.fastinter.as_ref(),
        "fastinter",
        DEFAULT_CHECK_FASTINTER.min(interval),
    );
    let downinter = nonzero(
        diag,
        c.downinter.as_ref(),
        "downinter",
        DEFAULT_CHECK_DOWNINTER.max(interval),
    );
    let timeout = nonzero(
        diag,
        c.timeout.as_ref(),
        "timeout",
        DEFAULT_CHECK_TIMEOUT.min(interval),
    );
    let expect_status = expect_status(c.expect_status.as_deref(), diag);
    if let Some(b) = &c.expect_body {
        check_regex(b, "expect_body", diag);
    }
    let path = check_path(c, diag);
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

/// A check's `type`: a TCP connect unless `http`.
fn check_kind(k: Option<&At<String>>, diag: &mut Diag) -> CheckKind {
    let Some(k) = k else { return CheckKind::Tcp };
    match k.value.to_ascii_lowercase().as_str() {
        "tcp" => CheckKind::Tcp,
        "http" => CheckKind::Http,
        other => {
            diag.error(
                k.line,
                Some("type"),
                format!("check `type` must be \"tcp\" or \"http\", not `{other}`"),
            );
            CheckKind::Tcp // reported; the rest of the table is still checked
        }
    }
}

/// The statuses a check accepts: classes (`2xx`, 1 to 5) and codes (100 to 599); 2xx and
/// 3xx when none is valid or given.
fn expect_status(list: Option<&[At<String>]>, diag: &mut Diag) -> Vec<StatusMatch> {
    let mut expect_status = Vec::new();
    for e in list.into_iter().flatten() {
        match status_match(&e.value) {
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
    expect_status
}

/// One `expect_status` entry: `Nxx` with N from 1 to 5, or a code from 100 to 599.
fn status_match(text: &str) -> Option<StatusMatch> {
    let v = text.trim().to_ascii_lowercase();
    if let Some(class) = v.strip_suffix("xx") {
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
    }
}

/// The path an HTTP check asks for: `/` when unset; it must start with `/` and hold no
/// spaces or control characters (reported on its line, else the check's).
fn check_path(c: &RawCheck, diag: &mut Diag) -> String {
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
    path
}
