//! The TOML reader: walks a spanned TOML tree, so every unknown key and every mistyped value is
//! reported with its line, and all of them at once (serde's derive stops at the first).

use super::{
    line_of, parse_duration, At, Diag, RawCache, RawCertificate, RawCheck, RawConfig, RawPool,
    RawPoolSettings, RawQueue, RawRoute, RawServer, RawServerCheck,
};
use ::toml::de::{DeTable, DeValue};
use ::toml::Spanned;

mod acme;
mod clients;
mod cluster;
mod compress;
mod log;
mod route;
mod sticky;

type Val<'i> = Spanned<DeValue<'i>>;

const TOP_KEYS: &[&str] = &[
    "server", "admin", "defaults", "route", "pools", "cache", "tls", "log", "tracing", "cluster",
    "dns", "acme",
];
const DNS_KEYS: &[&str] = &["servers", "timeout", "family"];
const TLS_KEYS: &[&str] = &["listen", "certificates"];
const CERTIFICATE_KEYS: &[&str] = &["cert", "key", "client_ca", "client_auth", "client_crl"];
const CACHE_KEYS: &[&str] = &[
    "max_size",
    "max_object_size",
    "types",
    "default_ttl",
    "min_ttl",
    "max_ttl",
    "lock_timeout",
    "max_variants",
    "store_private",
    "store_set_cookie",
    "store_authorized",
    "bypass_headers",
    "request_cookie",
    "shared",
    "shared_max_object_size",
];
const SERVER_KEYS: &[&str] = &[
    "listen",
    "workers",
    "access_log",
    "name",
    "header_read_timeout",
    "keepalive_timeout",
    "body_timeout",
    "request_timeout",
    "shutdown_timeout",
    "max_header_size",
    "max_headers",
    "max_uri_length",
    "max_body_size",
    "max_connections",
    "request_buffer",
    "h2c",
    "h2_max_concurrent_streams",
    "h2_window",
    "reuse_port",
    "state_file",
    "redirect_http_to_https",
    "hsts",
    "error_pages",
    "request_id",
    "max_connections_per_client",
];
const ADMIN_KEYS: &[&str] = &["listen", "token", "hosts"];
const POOL_SETTING_KEYS: &[&str] = &[
    "balance",
    "dns_min_ttl",
    "dns_max_ttl",
    "dns_allow_empty",
    "slowstart",
    "overload_backoff",
    "hash_balance_factor",
    "retries",
    "retry_budget",
    "attempts",
    "offline_timeout",
    "connect_timeout",
    "response_timeout",
    "read_timeout",
    "protocol",
    "tls",
    "tls_ca",
    "tls_server_name",
    "tls_verify",
    "tls_cert",
    "tls_key",
    "send_proxy",
];
const POOL_KEYS: &[&str] = &[
    "balance",
    "sticky",
    "dns_min_ttl",
    "dns_max_ttl",
    "dns_allow_empty",
    "slowstart",
    "overload_backoff",
    "hash_balance_factor",
    "retries",
    "retry_budget",
    "attempts",
    "offline_timeout",
    "connect_timeout",
    "response_timeout",
    "read_timeout",
    "protocol",
    "tls",
    "tls_ca",
    "tls_server_name",
    "tls_verify",
    "tls_cert",
    "tls_key",
    "send_proxy",
    "servers",
    "server",
    "check",
    "observe",
    "error_limit",
    "on_error",
    "all_backups",
    "on_marked_down",
    "on_marked_up",
    "maxconn",
    "queue",
    "srv",
];
const QUEUE_KEYS: &[&str] = &[
    "max",
    "timeout",
    "full_status",
    "timeout_status",
    "retry_after",
    "fair",
];
const CHECK_KEYS: &[&str] = &[
    "type",
    "path",
    "interval",
    "fastinter",
    "downinter",
    "timeout",
    "rise",
    "fall",
    "expect_status",
    "expect_body",
    "disable_on_404",
];
const SERVER_ENTRY_KEYS: &[&str] = &["address", "name", "weight", "backup", "check", "maxconn"];

struct Reader<'s> {
    /// Where each line starts, so a value's line is a binary search, not a count from the
    /// start of the file (a file of 100 000 values would take minutes).
    lines: Vec<usize>,
    diag: &'s mut Diag,
}

/// Reads a TOML config: a syntax error stops it (one error, with its line); otherwise every
/// top-level table is walked and every problem in it reported.
pub(crate) fn read(text: &str, diag: &mut Diag) -> RawConfig {
    let mut raw = RawConfig::default();
    let root = match DeTable::parse(text) {
        Ok(t) => t,
        Err(e) => {
            let line = e.span().map(|s| line_of(text, s.start)).unwrap_or(1);
            let msg = e.message().trim().replace('\n', " ");
            diag.error(line, None, format!("TOML syntax error: {msg}"));
            return raw;
        }
    };
    let lines = std::iter::once(0)
        .chain(memchr::memchr_iter(b'\n', text.as_bytes()).map(|i| i + 1))
        .collect();
    let mut r = Reader { lines, diag };
    for (key, val) in root.get_ref().iter() {
        let line = r.line(key.span());
        match key.get_ref().as_ref() {
            "server" => r.table(val, "[server]", |r, k, v, line| {
                r.server(&mut raw, k, v, line)
            }),
            "tls" => r.tls(&mut raw, val),
            "admin" => r.table(val, "[admin]", |r, k, v, line| {
                r.admin(&mut raw, k, v, line)
            }),
            "defaults" => r.defaults(&mut raw, val),
            "route" => r.routes(&mut raw, val, line),
            "cache" => r.table(val, "[cache]", |r, k, v, line| {
                r.cache(&mut raw.cache, k, v, line)
            }),
            "pools" => r.pools(&mut raw, val, line),
            "log" => r.log(&mut raw, val),
            "tracing" => r.tracing(&mut raw, val),
            "cluster" => r.cluster(&mut raw, val, line),
            "acme" => r.acme(&mut raw, val, line),
            "dns" => r.table(val, "[dns]", |r, k, v, line| match k {
                "servers" => raw.dns.servers = r.str_list(k, v),
                "timeout" => raw.dns.timeout = r.duration(k, v),
                "family" => raw.dns.family = r.string(k, v),
                _ => r.diag.unknown_key(line, "[dns]", k, DNS_KEYS),
            }),
            other => r.diag.unknown_key(line, "the top level", other, TOP_KEYS),
        }
    }
    raw
}

impl Reader<'_> {
    /// The 1-based line of a byte offset.
    fn line(&self, span: std::ops::Range<usize>) -> usize {
        self.lines.partition_point(|&start| start <= span.start)
    }

    /// Calls `f` for every key of a table value; reports a non-table.
    fn table<'i>(
        &mut self,
        val: &Val<'i>,
        section: &str,
        mut f: impl FnMut(&mut Self, &str, &Val<'i>, usize),
    ) {
        match val.get_ref() {
            DeValue::Table(t) => {
                for (k, v) in t.iter() {
                    let line = self.line(k.span());
                    f(self, k.get_ref().as_ref(), v, line);
                }
            }
            _ => {
                let line = self.line(val.span());
                self.diag
                    .error(line, None, format!("{section} must be a table"));
            }
        }
    }

    fn server(&mut self, raw: &mut RawConfig, k: &str, v: &Val<'_>, line: usize) {
        if self.client_key(&mut raw.clients, k, v) {
            return;
        }
        match k {
            "listen" => raw.listen = self.str_list(k, v),
            "workers" => raw.workers = self.int(k, v),
            "access_log" => raw.access_log = self.bool(k, v),
            "name" => raw.name = self.string(k, v),
            "header_read_timeout" => raw.limits.header_read_timeout = self.duration(k, v),
            "keepalive_timeout" => raw.limits.keepalive_timeout = self.duration(k, v),
            "body_timeout" => raw.limits.body_timeout = self.duration(k, v),
            "request_timeout" => raw.limits.request_timeout = self.duration(k, v),
            "shutdown_timeout" => raw.limits.shutdown_timeout = self.duration(k, v),
            "max_header_size" => raw.limits.max_header_size = self.size(k, v),
            "max_headers" => raw.limits.max_headers = self.int(k, v),
            "max_uri_length" => raw.limits.max_uri_length = self.size(k, v),
            "max_body_size" => raw.limits.max_body_size = self.size(k, v),
            "max_connections" => raw.limits.max_connections = self.int(k, v),
            "request_buffer" => raw.limits.request_buffer = self.size(k, v),
            "max_connections_per_client" => raw.limits.max_connections_per_client = self.int(k, v),
            "h2c" => raw.h2c = self.bool(k, v),
            "h2_max_concurrent_streams" => raw.h2_max_concurrent_streams = self.int(k, v),
            "h2_window" => raw.h2_window = self.size(k, v),
            "reuse_port" => raw.reuse_port = self.bool(k, v),
            "state_file" => raw.state_file = self.string(k, v),
            "redirect_http_to_https" => raw.redirect_http_to_https = self.bool(k, v),
            "hsts" => raw.hsts = self.string(k, v),
            "error_pages" => raw.error_pages = self.str_map(k, v),
            "request_id" => raw.request_id = self.request_id(k, v),
            _ => {
                let known = [SERVER_KEYS, clients::CLIENT_KEYS].concat();
                self.diag.unknown_key(line, "[server]", k, &known)
            }
        }
    }

    fn admin(&mut self, raw: &mut RawConfig, k: &str, v: &Val<'_>, line: usize) {
        match k {
            "listen" => raw.admin_listen = self.string(k, v),
            "token" => raw.admin_token = self.string(k, v),
            "hosts" => raw.admin_hosts = self.str_list(k, v),
            _ => self.diag.unknown_key(line, "[admin]", k, ADMIN_KEYS),
        }
    }

    /// `[tls]`: its line (the section is there), listeners and certificates.
    fn tls(&mut self, raw: &mut RawConfig, val: &Val<'_>) {
        raw.tls_line = Some(self.line(val.span()));
        self.table(val, "[tls]", |r, k, v, line| match k {
            "listen" => raw.tls_listen = r.str_list(k, v),
            "certificates" => r.certificates(raw, k, v),
            _ => r.diag.unknown_key(line, "[tls]", k, TLS_KEYS),
        })
    }

    /// `[tls] certificates`: a list of `{ cert, key }` tables (PEM paths); one without both is
    /// reported.
    fn certificates(&mut self, raw: &mut RawConfig, k: &str, v: &Val<'_>) {
        let DeValue::Array(items) = v.get_ref() else {
            self.type_error(
                k,
                v,
                "a list of tables: [{ cert = \"a.pem\", key = \"a.key\" }]",
            );
            return;
        };
        for item in items.iter() {
            let (mut cert, mut key, mut ca, mut auth, mut crl) = (None, None, None, None, vec![]);
            self.table(item, "a certificate of [tls]", |r, k, v, kline| match k {
                "cert" => cert = r.string(k, v),
                "key" => key = r.string(k, v),
                "client_ca" => ca = r.string(k, v),
                "client_auth" => auth = r.string(k, v),
                "client_crl" => crl = r.str_list(k, v),
                _ => r
                    .diag
                    .unknown_key(kline, "a certificate of [tls]", k, CERTIFICATE_KEYS),
            });
            match (cert, key) {
                (Some(c), Some(k)) => raw.tls_certs.push(RawCertificate {
                    client_ca: ca,
                    client_auth: auth,
                    client_crl: crl,
                    ..RawCertificate::new(c, k)
                }),
                _ => {
                    let l = self.line(item.span());
                    self.diag.error(
                        l,
                        Some("certificates"),
                        "each certificate needs `cert` and `key` (PEM file paths)",
                    );
                }
            }
        }
    }

    /// `[defaults]`: the pool settings every pool takes unless it sets its own, and the
    /// `rate_limit` and `compress` of routes that set none.
    fn defaults(&mut self, raw: &mut RawConfig, val: &Val<'_>) {
        let mut d = RawPoolSettings::default();
        self.table(val, "[defaults]", |r, k, v, line| {
            if k == "rate_limit" {
                raw.default_rate_limit = r.rate_limit("[defaults]", k, v);
            } else if k == "compress" {
                raw.default_compress = r.compress("[defaults]", k, v);
            } else if !r.pool_setting(&mut d, k, v) {
                let mut known = POOL_SETTING_KEYS.to_vec();
                known.push("rate_limit");
                known.push("compress");
                r.diag.unknown_key(line, "[defaults]", k, &known);
            }
        });
        raw.defaults = d;
    }

    /// `[[route]]`: an array of tables, each a route in file order.
    fn routes(&mut self, raw: &mut RawConfig, val: &Val<'_>, line: usize) {
        match val.get_ref() {
            DeValue::Array(items) => {
                for item in items {
                    if let Some(route) = self.route(item) {
                        raw.routes.push(route);
                    }
                }
            }
            _ => self.diag.error(
                line,
                Some("route"),
                "`route` must be an array of tables: write [[route]]",
            ),
        }
    }

    /// A `[cache]` key: sizes (kept as text), content types, lifetimes, the lock wait, the
    /// variant bound, what may be stored, the bypass fields, what a request `Cookie` does.
    fn cache(&mut self, c: &mut RawCache, k: &str, v: &Val<'_>, line: usize) {
        match k {
            "max_size" => c.max_size = self.size(k, v),
            "max_object_size" => c.max_object_size = self.size(k, v),
            "types" => c.types = Some(self.str_list(k, v)),
            "default_ttl" => c.default_ttl = self.duration(k, v),
            "min_ttl" => c.min_ttl = self.duration(k, v),
            "max_ttl" => c.max_ttl = self.duration(k, v),
            "lock_timeout" => c.lock_timeout = self.duration(k, v),
            "max_variants" => c.max_variants = self.int(k, v),
            "store_private" => c.store_private = self.bool(k, v),
            "store_set_cookie" => c.store_set_cookie = self.bool(k, v),
            "store_authorized" => c.store_authorized = self.bool(k, v),
            "bypass_headers" => c.bypass_headers = Some(self.str_list(k, v)),
            "request_cookie" => c.request_cookie = self.string(k, v),
            "shared" => c.shared = self.bool(k, v).map(|b| At::new(b, line)),
            "shared_max_object_size" => c.shared_max_object_size = self.size(k, v),
            _ => self.diag.unknown_key(line, "[cache]", k, CACHE_KEYS),
        }
    }

    /// `[pools.NAME]`: a table of pools, in file order.
    fn pools(&mut self, raw: &mut RawConfig, val: &Val<'_>, line: usize) {
        match val.get_ref() {
            DeValue::Table(pools) => {
                for (name, pool) in pools.iter() {
                    let pline = self.line(name.span());
                    raw.pools
                        .push(self.pool(name.get_ref().as_ref(), pool, pline));
                }
            }
            _ => self.diag.error(
                line,
                Some("pools"),
                "`pools` must be a table: write [pools.NAME]",
            ),
        }
    }

    /// A key shared by `[defaults]` and `[pools.NAME]`; false when it is not one.
    fn pool_setting(&mut self, s: &mut RawPoolSettings, k: &str, v: &Val<'_>) -> bool {
        match k {
            "balance" => s.balance = self.string(k, v),
            "attempts" => s.attempts = self.int(k, v),
            "offline_timeout" => s.offline_timeout = self.duration(k, v),
            "connect_timeout" => s.connect_timeout = self.duration(k, v),
            "response_timeout" => s.response_timeout = self.duration(k, v),
            "read_timeout" => s.read_timeout = self.duration(k, v),
            "protocol" => s.protocol = self.string(k, v),
            "tls" => s.tls = self.bool(k, v),
            "tls_ca" => s.tls_ca = self.string(k, v),
            "tls_server_name" => s.tls_server_name = self.string(k, v),
            "tls_verify" => s.tls_verify = self.bool(k, v),
            "tls_cert" => s.tls_cert = self.string(k, v),
            "tls_key" => s.tls_key = self.string(k, v),
            "hash_balance_factor" => s.hash_balance_factor = self.float(k, v),
            "retries" => s.retries = self.int(k, v),
            "retry_budget" => s.retry_budget = self.float(k, v),
            "slowstart" => s.slowstart = self.duration(k, v),
            "overload_backoff" => s.overload_backoff = self.duration(k, v),
            "send_proxy" => s.send_proxy = self.string(k, v),
            "dns_min_ttl" => s.dns_min_ttl = self.duration(k, v),
            "dns_max_ttl" => s.dns_max_ttl = self.duration(k, v),
            "dns_allow_empty" => s.dns_allow_empty = self.bool(k, v),
            _ => return false,
        }
        true
    }

    fn pool(&mut self, name: &str, val: &Val<'_>, line: usize) -> RawPool {
        let mut pool = RawPool::new(name.to_string(), line);
        let section = format!("[pools.{name}]");
        self.table(val, &section, |r, k, v, kline| {
            if r.pool_setting(&mut pool.settings, k, v) {
                return;
            }
            match k {
                "servers" => {
                    for a in r.str_list(k, v) {
                        pool.servers.push(RawServer {
                            address: a,
                            name: None,
                            weight: None,
                            backup: None,
                            maxconn: None,
                            check: None,
                        });
                    }
                }
                "server" => match v.get_ref() {
                    DeValue::Array(items) => {
                        for item in items {
                            if let Some(s) = r.server_entry(item, &section) {
                                pool.servers.push(s);
                            }
                        }
                    }
                    _ => r.diag.error(
                        kline,
                        Some(k),
                        "`server` must be a list of tables: server = [{ address = \"host:port\" }]",
                    ),
                },
                "check" => pool.check = r.check(v, &format!("{section}.check")),
                "observe" => pool.observe = r.string(k, v),
                "error_limit" => pool.error_limit = r.int(k, v),
                "on_error" => pool.on_error = r.string(k, v),
                "all_backups" => pool.all_backups = r.bool(k, v),
                "on_marked_down" => pool.on_marked_down = r.string(k, v),
                "on_marked_up" => pool.on_marked_up = r.string(k, v),
                "maxconn" => pool.maxconn = r.int(k, v),
                "srv" => pool.srv = r.string(k, v),
                "queue" => pool.queue = Some(r.queue(v, &format!("{section}.queue"))),
                "sticky" => pool.sticky = r.sticky(&section, k, v),
                _ => r.diag.unknown_key(kline, &section, k, POOL_KEYS),
            }
        });
        pool
    }

    /// `[pools.NAME.queue]`.
    fn queue(&mut self, val: &Val<'_>, section: &str) -> RawQueue {
        let mut q = RawQueue::default();
        self.table(val, section, |r, k, v, kline| match k {
            "max" => q.max = r.int(k, v),
            "timeout" => q.timeout = r.duration(k, v),
            "full_status" => q.full_status = r.int(k, v),
            "timeout_status" => q.timeout_status = r.int(k, v),
            "retry_after" => q.retry_after = r.duration(k, v),
            "fair" => q.fair = r.bool(k, v),
            _ => r.diag.unknown_key(kline, section, k, QUEUE_KEYS),
        });
        q
    }

    fn check(&mut self, val: &Val<'_>, section: &str) -> Option<RawCheck> {
        let mut c = RawCheck {
            line: self.line(val.span()),
            ..RawCheck::default()
        };
        if !matches!(val.get_ref(), DeValue::Table(_)) {
            self.type_error("check", val, "a table");
            return None;
        }
        self.table(val, section, |r, key, v, kline| {
            // Named as `check.KEY` in messages: `path` alone reads as the route's.
            let qualified = format!("check.{key}");
            let k = qualified.as_str();
            match key {
                "type" => c.kind = r.string(k, v),
                "path" => c.path = r.string(k, v),
                "interval" => c.interval = r.duration(k, v),
                "fastinter" => c.fastinter = r.duration(k, v),
                "downinter" => c.downinter = r.duration(k, v),
                "timeout" => c.timeout = r.duration(k, v),
                "rise" => c.rise = r.int(k, v),
                "fall" => c.fall = r.int(k, v),
                "expect_status" => {
                    let list: Vec<At<String>> = match v.get_ref() {
                        DeValue::Integer(_) => r
                            .int(k, v)
                            .map(|i| At::new(i.value.to_string(), i.line))
                            .into_iter()
                            .collect(),
                        DeValue::Array(items) => items
                            .iter()
                            .filter_map(|i| match i.get_ref() {
                                DeValue::Integer(_) => {
                                    r.int(k, i).map(|n| At::new(n.value.to_string(), n.line))
                                }
                                _ => r.string(k, i),
                            })
                            .collect(),
                        _ => r.str_list(k, v),
                    };
                    c.expect_status = Some(list);
                }
                "expect_body" => c.expect_body = r.string(k, v),
                "disable_on_404" => c.disable_on_404 = r.bool(k, v),
                _ => r.diag.unknown_key(kline, section, key, CHECK_KEYS),
            }
        });
        Some(c)
    }

    fn server_entry(&mut self, item: &Val<'_>, section: &str) -> Option<RawServer> {
        let line = self.line(item.span());
        let mut address = None;
        let mut name = None;
        let mut weight = None;
        let mut backup = None;
        let mut maxconn = None;
        let mut check = None;
        let what = format!("a server of {section}");
        self.table(item, &what, |r, k, v, kline| match k {
            "address" => address = r.string(k, v),
            "name" => name = r.string(k, v),
            "weight" => weight = r.int(k, v),
            "backup" => backup = r.bool(k, v),
            "maxconn" => maxconn = r.int(k, v),
            "check" => match v.get_ref() {
                DeValue::Boolean(false) => check = Some(RawServerCheck::Off),
                DeValue::Boolean(true) => {}
                _ => {
                    check = r
                        .check(v, &format!("the check of {what}"))
                        .map(|c| RawServerCheck::Override(Box::new(c)))
                }
            },
            _ => r.diag.unknown_key(kline, &what, k, SERVER_ENTRY_KEYS),
        });
        match address {
            Some(address) => Some(RawServer {
                address,
                name,
                weight,
                backup,
                maxconn,
                check,
            }),
            None => {
                self.diag.error(
                    line,
                    Some("address"),
                    format!("{what} needs `address = \"host:port\"`"),
                );
                None
            }
        }
    }

    fn type_error(&mut self, k: &str, v: &Val<'_>, want: &str) {
        let line = self.line(v.span());
        self.diag.error(
            line,
            Some(k),
            format!("`{k}` must be {want}, not {}", kind(v.get_ref())),
        );
    }

    fn string(&mut self, k: &str, v: &Val<'_>) -> Option<At<String>> {
        match v.get_ref() {
            DeValue::String(s) => Some(At::new(s.to_string(), self.line(v.span()))),
            _ => {
                self.type_error(k, v, "a string");
                None
            }
        }
    }

    fn int(&mut self, k: &str, v: &Val<'_>) -> Option<At<i64>> {
        match v.get_ref() {
            DeValue::Integer(i) => match i64::from_str_radix(i.as_str(), i.radix()) {
                Ok(n) => Some(At::new(n, self.line(v.span()))),
                Err(_) => {
                    self.type_error(k, v, "an integer that fits in 64 bits");
                    None
                }
            },
            _ => {
                self.type_error(k, v, "an integer");
                None
            }
        }
    }

    fn float(&mut self, k: &str, v: &Val<'_>) -> Option<At<f64>> {
        let line = self.line(v.span());
        let parsed = match v.get_ref() {
            DeValue::Float(f) => f.as_str().replace('_', "").parse::<f64>().ok(),
            DeValue::Integer(i) => i64::from_str_radix(i.as_str(), i.radix())
                .ok()
                .map(|n| n as f64),
            _ => None,
        };
        match parsed {
            Some(x) if x.is_finite() => Some(At::new(x, line)),
            _ => {
                self.type_error(k, v, "a number");
                None
            }
        }
    }

    fn bool(&mut self, k: &str, v: &Val<'_>) -> Option<bool> {
        match v.get_ref() {
            DeValue::Boolean(b) => Some(*b),
            _ => {
                self.type_error(k, v, "true or false");
                None
            }
        }
    }

    /// A duration: a string with units (`"10s"`, `"500ms"`). A bare number (`2000`, `"2000"`,
    /// `1.5`) is an error saying to write the unit; only `0` needs none.
    fn duration(&mut self, k: &str, v: &Val<'_>) -> Option<At<std::time::Duration>> {
        let line = self.line(v.span());
        let parsed = match v.get_ref() {
            DeValue::String(s) => parse_duration(s),
            DeValue::Integer(i) if i.radix() == 10 => parse_duration(i.as_str()),
            DeValue::Float(f) => parse_duration(f.as_str()),
            _ => {
                self.type_error(k, v, "a duration such as \"10s\"");
                return None;
            }
        };
        match parsed {
            Ok(d) => Some(At::new(d, line)),
            Err(e) => {
                self.diag.error(line, Some(k), format!("`{k}`: {e}"));
                None
            }
        }
    }

    /// A byte size: an integer number of bytes or a string with units (checked later).
    fn size(&mut self, k: &str, v: &Val<'_>) -> Option<At<String>> {
        let line = self.line(v.span());
        match v.get_ref() {
            DeValue::String(s) => Some(At::new(s.to_string(), line)),
            // A bare number is bytes (as in nginx and HAProxy).
            DeValue::Integer(i) => {
                match u64::from_str_radix(&i.as_str().replace('_', ""), i.radix()) {
                    Ok(n) => Some(At::new(n.to_string(), line)),
                    Err(_) => {
                        let msg = format!("`{k}` must not be negative");
                        self.diag.error(line, Some(k), msg);
                        None
                    }
                }
            }
            _ => {
                self.type_error(k, v, "a size such as \"64 MiB\" or a number of bytes");
                None
            }
        }
    }

    /// A string or an array of strings.
    fn str_list(&mut self, k: &str, v: &Val<'_>) -> Vec<At<String>> {
        match v.get_ref() {
            DeValue::String(_) => self.string(k, v).into_iter().collect(),
            DeValue::Array(items) => items.iter().filter_map(|i| self.string(k, i)).collect(),
            _ => {
                self.type_error(k, v, "a string or a list of strings");
                Vec::new()
            }
        }
    }
}

fn kind(v: &DeValue<'_>) -> &'static str {
    match v {
        DeValue::String(_) => "a string",
        DeValue::Integer(_) => "an integer",
        DeValue::Float(_) => "a float",
        DeValue::Boolean(_) => "a boolean",
        DeValue::Datetime(_) => "a date",
        DeValue::Array(_) => "a list",
        DeValue::Table(_) => "a table",
    }
}
