//! The legacy format of Monkey's proxy_reverse plugin, exactly as its documentation writes it:
//!
//! ```text
//! [PROXY_DEFAULTS]
//! LoadBalance First-Alive
//!
//! [PROXY_ENTRY]
//! ServerList Host4:80 Host5:8080
//! Match /*.php
//! ```
//!
//! Section and key names are case-insensitive; indentation is free; `#` at the start of a word
//! begins a comment. Values in `[PROXY_DEFAULTS]` are copied into every `[PROXY_ENTRY]` that does
//! not set them. Each entry becomes one route and one pool named `entryN` (N counts from 1).
//! Optional `[SERVER]` (`Listen`, `Workers`, `AccessLog`, `Name`, `ReusePort`, the limits) and
//! `[ADMIN]` (`Listen`, `Token`, `Hosts`) sections cover what the TOML format's `[server]` and
//! `[admin]` say.
//!
//! Durations take a unit (`5s`, `500ms`), as in TOML; the one exception is the reference's own
//! `OfflineTimeOut`, documented in seconds, where a bare number stays seconds. Sizes without a
//! unit are bytes.

use super::{
    parse_duration, parse_duration_secs, At, Diag, RawCache, RawCertificate, RawConfig, RawPool,
    RawPoolSettings, RawRoute, RawServer,
};

const SECTIONS: &[&str] = &[
    "PROXY_DEFAULTS",
    "PROXY_ENTRY",
    "SERVER",
    "ADMIN",
    "CACHE",
    "TLS",
];
const TLS_KEYS: &[&str] = &["Listen", "Certificate"];
const CACHE_KEYS: &[&str] = &[
    "MaxSize",
    "MaxObjectSize",
    "Types",
    "DefaultTTL",
    "MinTTL",
    "MaxTTL",
    "LockTimeout",
];
const ENTRY_KEYS: &[&str] = &[
    "ServerList",
    "LoadBalance",
    "LoadBalancer",
    "Match",
    "AttemptsCount",
    "OfflineTimeOut",
    "ConnectTimeout",
    "ResponseTimeout",
    "ReadTimeout",
    "Protocol",
    "TLS",
    "TLSCA",
    "TLSServerName",
    "TLSVerify",
    "TLSCert",
    "TLSKey",
    "Cache",
    "Grace",
    "Purge",
    "DocumentRoot",
];
const SERVER_KEYS: &[&str] = &[
    "Listen",
    "Workers",
    "AccessLog",
    "Name",
    "HeaderReadTimeout",
    "KeepAliveTimeout",
    "BodyTimeout",
    "RequestTimeout",
    "ShutdownTimeout",
    "MaxHeaderSize",
    "MaxHeaders",
    "MaxUriLength",
    "MaxBodySize",
    "MaxConnections",
    "RequestBuffer",
    "H2c",
    "ReusePort",
];
const ADMIN_KEYS: &[&str] = &["Listen", "Token", "Hosts"];

#[derive(Default, Clone)]
struct Entry {
    line: usize,
    servers: Vec<At<String>>,
    matches: Vec<At<String>>,
    settings: RawPoolSettings,
    cache: Option<bool>,
    grace: Option<At<std::time::Duration>>,
    purge: Vec<At<String>>,
    root: Option<At<String>>,
}

enum Section {
    None,
    Defaults,
    Entry(usize),
    Server,
    Admin,
    Cache,
    Tls,
    Unknown,
}

/// Reads the legacy format: sections and their keys line by line, then each `[PROXY_ENTRY]`
/// (with what it does not set taken from `[PROXY_DEFAULTS]`) becomes a route and a pool.
pub(crate) fn read(text: &str, diag: &mut Diag) -> RawConfig {
    let mut raw = RawConfig::default();
    let mut defaults = Entry::default();
    let mut entries: Vec<Entry> = Vec::new();
    let mut section = Section::None;

    for (idx, full_line) in text.lines().enumerate() {
        let line = idx + 1;
        let content = strip_comment(full_line).trim();
        if content.is_empty() {
            continue;
        }
        if content.starts_with('[') {
            section = open_section(content, line, &mut raw, &mut entries, diag);
            continue;
        }
        let (key, value) = match content.split_once(char::is_whitespace) {
            Some((k, v)) => (k, v.trim()),
            None => (content, ""),
        };
        if value.is_empty() {
            diag.error(line, Some(key), format!("`{key}` needs a value"));
            continue;
        }
        diag.written.insert(line, key.to_string());
        match section {
            Section::None => diag.error(
                line,
                Some(key),
                format!("`{key}` is outside any section; start one with [PROXY_ENTRY]"),
            ),
            Section::Unknown => {}
            Section::Defaults => {
                entry_key(&mut defaults, key, value, line, diag, "[PROXY_DEFAULTS]")
            }
            Section::Entry(i) => {
                entry_key(&mut entries[i], key, value, line, diag, "[PROXY_ENTRY]")
            }
            Section::Server => server_key(&mut raw, key, value, line, diag),
            Section::Cache => cache_key(&mut raw.cache, key, value, line, diag),
            Section::Tls => tls_key(&mut raw, key, value, line, diag),
            Section::Admin => admin_key(&mut raw, key, value, line, diag),
        }
    }

    raw.defaults = defaults.settings.clone();
    for (i, e) in entries.into_iter().enumerate() {
        push_entry(
            &mut raw,
            e.inherit(&defaults),
            format!("entry{}", i + 1),
            diag,
        );
    }
    raw
}

/// The section a `[NAME]` line opens (names in any case). `[PROXY_ENTRY]` starts a new entry
/// and `[TLS]` records its line; a malformed header or an unknown name is reported (with the
/// closest section suggested) and its keys are skipped.
fn open_section(
    content: &str,
    line: usize,
    raw: &mut RawConfig,
    entries: &mut Vec<Entry>,
    diag: &mut Diag,
) -> Section {
    let Some(name) = content[1..].strip_suffix(']') else {
        diag.error(
            line,
            None,
            format!("malformed section header `{content}`: expected [NAME]"),
        );
        return Section::Unknown;
    };
    let name = name.trim();
    match name.to_ascii_uppercase().as_str() {
        "PROXY_DEFAULTS" => Section::Defaults,
        "PROXY_ENTRY" => {
            entries.push(Entry {
                line,
                ..Entry::default()
            });
            Section::Entry(entries.len() - 1)
        }
        "SERVER" => Section::Server,
        "ADMIN" => Section::Admin,
        "TLS" => {
            raw.tls_line = Some(line);
            Section::Tls
        }
        "CACHE" => Section::Cache,
        _ => {
            let hint = super::suggest(name, SECTIONS)
                .map(|s| format!(" (did you mean [{s}]?)"))
                .unwrap_or_default();
            diag.error(line, Some(name), format!("unknown section [{name}]{hint}"));
            Section::Unknown
        }
    }
}

/// A `[SERVER]` key: listeners, workers, logging, the name, the client limits, h2c, port
/// sharing.
fn server_key(raw: &mut RawConfig, key: &str, value: &str, line: usize, diag: &mut Diag) {
    let text = || Some(At::new(value.to_string(), line));
    match key.to_ascii_lowercase().as_str() {
        "listen" => raw.listen.extend(words(value, line)),
        "workers" => raw.workers = int(key, value, line, diag),
        "accesslog" => raw.access_log = on_off(key, value, line, diag),
        "name" => raw.name = text(),
        "headerreadtimeout" => raw.limits.header_read_timeout = duration(key, value, line, diag),
        "keepalivetimeout" => raw.limits.keepalive_timeout = duration(key, value, line, diag),
        "bodytimeout" => raw.limits.body_timeout = duration(key, value, line, diag),
        "requesttimeout" => raw.limits.request_timeout = duration(key, value, line, diag),
        "shutdowntimeout" => raw.limits.shutdown_timeout = duration(key, value, line, diag),
        "maxheadersize" => raw.limits.max_header_size = text(),
        "maxheaders" => raw.limits.max_headers = int(key, value, line, diag),
        "maxurilength" => raw.limits.max_uri_length = text(),
        "maxbodysize" => raw.limits.max_body_size = text(),
        "maxconnections" => raw.limits.max_connections = int(key, value, line, diag),
        "requestbuffer" => raw.limits.request_buffer = text(),
        "h2c" => raw.h2c = on_off(key, value, line, diag),
        "reuseport" => raw.reuse_port = on_off(key, value, line, diag),
        _ => diag.unknown_key(line, "[SERVER]", key, SERVER_KEYS),
    }
}

/// A `[CACHE]` key: sizes (kept as text), content types, lifetimes, the lock wait.
fn cache_key(c: &mut RawCache, key: &str, value: &str, line: usize, diag: &mut Diag) {
    let text = || Some(At::new(value.to_string(), line));
    match key.to_ascii_lowercase().as_str() {
        "maxsize" => c.max_size = text(),
        "maxobjectsize" => c.max_object_size = text(),
        "types" => c.types = Some(words(value, line)),
        "defaultttl" => c.default_ttl = duration(key, value, line, diag),
        "minttl" => c.min_ttl = duration(key, value, line, diag),
        "maxttl" => c.max_ttl = duration(key, value, line, diag),
        "locktimeout" => c.lock_timeout = duration(key, value, line, diag),
        _ => diag.unknown_key(line, "[CACHE]", key, CACHE_KEYS),
    }
}

/// A `[TLS]` key: listeners, or a `Certificate` line (a certificate path and its key path).
fn tls_key(raw: &mut RawConfig, key: &str, value: &str, line: usize, diag: &mut Diag) {
    match key.to_ascii_lowercase().as_str() {
        "listen" => raw.tls_listen.extend(words(value, line)),
        "certificate" => {
            let w = words(value, line);
            match <[At<String>; 2]>::try_from(w) {
                Ok([c, k]) => raw.tls_certs.push(RawCertificate::new(c, k)),
                Err(_) => diag.error(
                    line,
                    Some(key),
                    "`Certificate` takes two paths: the certificate (PEM) and its key",
                ),
            }
        }
        _ => diag.unknown_key(line, "[TLS]", key, TLS_KEYS),
    }
}

/// An `[ADMIN]` key: the listener, the token, extra host names.
fn admin_key(raw: &mut RawConfig, key: &str, value: &str, line: usize, diag: &mut Diag) {
    match key.to_ascii_lowercase().as_str() {
        "listen" => raw.admin_listen = Some(At::new(value.to_string(), line)),
        "token" => raw.admin_token = Some(At::new(value.to_string(), line)),
        "hosts" => raw.admin_hosts.extend(words(value, line)),
        _ => diag.unknown_key(line, "[ADMIN]", key, ADMIN_KEYS),
    }
}

impl Entry {
    /// The entry with what it does not set taken from `[PROXY_DEFAULTS]`: servers (unless it
    /// serves a `DocumentRoot`), else the default root; patterns, caching, grace and purge
    /// networks. Pool settings are merged later, in validation.
    fn inherit(mut self, defaults: &Entry) -> Entry {
        if self.root.is_none() && self.servers.is_empty() {
            self.servers = defaults.servers.clone();
        }
        if self.root.is_none() && self.servers.is_empty() {
            self.root = defaults.root.clone();
        }
        if self.matches.is_empty() {
            self.matches = defaults.matches.clone();
        }
        self.cache = self.cache.or(defaults.cache);
        self.grace = self.grace.or(defaults.grace.clone());
        if self.purge.is_empty() {
            self.purge = defaults.purge.clone();
        }
        self
    }
}

/// One entry as a route, and (unless it only serves files from its root) a pool called
/// `name`. An entry needs a `ServerList` (or a root) and a `Match`.
fn push_entry(raw: &mut RawConfig, e: Entry, name: String, diag: &mut Diag) {
    if e.servers.is_empty() && e.root.is_none() {
        diag.error(
            e.line,
            Some("ServerList"),
            format!("[PROXY_ENTRY] `{name}` has no ServerList"),
        );
    }
    if e.matches.is_empty() {
        diag.error(
            e.line,
            Some("Match"),
            format!("[PROXY_ENTRY] `{name}` has no Match line"),
        );
    }
    let serves_files = e.root.is_some() && e.servers.is_empty();
    raw.routes.push(RawRoute {
        patterns: e.matches,
        pool: (!serves_files).then(|| At::new(name.clone(), e.line)),
        root: e.root.filter(|_| serves_files),
        cache: e.cache,
        grace: e.grace,
        purge: e.purge,
        line: e.line,
        ..RawRoute::default()
    });
    if serves_files {
        return;
    }
    let mut pool = RawPool::new(name, e.line);
    pool.settings = e.settings;
    pool.servers = e
        .servers
        .into_iter()
        .map(|address| RawServer {
            address,
            name: None,
            weight: None,
            backup: None,
            maxconn: None,
            check: None,
        })
        .collect();
    raw.pools.push(pool);
}

/// A `[PROXY_ENTRY]` or `[PROXY_DEFAULTS]` key: servers, patterns, the pool's settings, the
/// route's caching and purge networks, a document root.
fn entry_key(e: &mut Entry, key: &str, value: &str, line: usize, diag: &mut Diag, section: &str) {
    let s = &mut e.settings;
    match key.to_ascii_lowercase().as_str() {
        "serverlist" => e.servers.extend(words(value, line)),
        "match" => e.matches.push(At::new(value.to_string(), line)),
        "loadbalance" | "loadbalancer" => s.balance = Some(At::new(value.to_string(), line)),
        "attemptscount" => s.attempts = int(key, value, line, diag),
        // The reference documents it in seconds: a bare number stays seconds here (only here).
        "offlinetimeout" => {
            s.offline_timeout = match parse_duration_secs(value) {
                Ok(d) => Some(At::new(d, line)),
                Err(e) => {
                    diag.error(line, Some(key), format!("`{key}`: {e}"));
                    None
                }
            }
        }
        "connecttimeout" => s.connect_timeout = duration(key, value, line, diag),
        "responsetimeout" => s.response_timeout = duration(key, value, line, diag),
        "readtimeout" => s.read_timeout = duration(key, value, line, diag),
        "protocol" => s.protocol = Some(At::new(value.to_string(), line)),
        "tls" => s.tls = on_off(key, value, line, diag),
        "tlsca" => s.tls_ca = Some(At::new(value.to_string(), line)),
        "tlsservername" => s.tls_server_name = Some(At::new(value.to_string(), line)),
        "tlsverify" => s.tls_verify = on_off(key, value, line, diag),
        "tlscert" => s.tls_cert = Some(At::new(value.to_string(), line)),
        "tlskey" => s.tls_key = Some(At::new(value.to_string(), line)),
        "cache" => e.cache = on_off(key, value, line, diag),
        "grace" => e.grace = duration(key, value, line, diag),
        "purge" => e.purge.extend(words(value, line)),
        "documentroot" => e.root = Some(At::new(value.to_string(), line)),
        _ => diag.unknown_key(line, section, key, ENTRY_KEYS),
    }
}

/// Cuts a comment: `#` at the start of the line or after whitespace.
fn strip_comment(line: &str) -> &str {
    let bytes = line.as_bytes();
    for (i, &b) in bytes.iter().enumerate() {
        if b == b'#' && (i == 0 || bytes[i - 1].is_ascii_whitespace()) {
            return &line[..i];
        }
    }
    line
}

fn words(value: &str, line: usize) -> Vec<At<String>> {
    value
        .split_whitespace()
        .map(|w| At::new(w.to_string(), line))
        .collect()
}

fn int(key: &str, value: &str, line: usize, diag: &mut Diag) -> Option<At<i64>> {
    match value.parse::<i64>() {
        Ok(n) => Some(At::new(n, line)),
        Err(_) => {
            diag.error(
                line,
                Some(key),
                format!("`{key}` must be a whole number, not `{value}`"),
            );
            None
        }
    }
}

fn duration(
    key: &str,
    value: &str,
    line: usize,
    diag: &mut Diag,
) -> Option<At<std::time::Duration>> {
    match parse_duration(value) {
        Ok(d) => Some(At::new(d, line)),
        Err(e) => {
            diag.error(line, Some(key), format!("`{key}`: {e}"));
            None
        }
    }
}

fn on_off(key: &str, value: &str, line: usize, diag: &mut Diag) -> Option<bool> {
    match value.to_ascii_lowercase().as_str() {
        "on" | "true" | "yes" | "1" => Some(true),
        "off" | "false" | "no" | "0" => Some(false),
        _ => {
            diag.error(
                line,
                Some(key),
                format!("`{key}` must be On or Off, not `{value}`"),
            );
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn comments() {
        assert_eq!(strip_comment("# all"), "");
        assert_eq!(strip_comment("Match /a # note"), "Match /a ");
        assert_eq!(strip_comment("Match /a#b"), "Match /a#b");
    }

    #[test]
    fn reference_example_reads() {
        let text = "##\n## Proxy-Reverse configuration.\n[PROXY_DEFAULTS]\nLoadBalance First-Alive\n\n[PROXY_ENTRY]\nServerList Host4:80 Host5:8080\nMatch /*.php\n\n[PROXY_ENTRY]\nServerList Host1:80 Host2:80 Host3:80\nLoadBalance Round-Robin\nMatch /*.jpg\nMatch /*.png\n";
        let mut diag = Diag::new("t");
        let raw = read(text, &mut diag);
        assert!(diag.errors.is_empty(), "{:?}", diag.errors);
        assert_eq!(raw.pools.len(), 2);
        assert_eq!(raw.pools[0].servers.len(), 2);
        assert_eq!(raw.routes[1].patterns.len(), 2);
        assert_eq!(raw.defaults.balance.as_ref().unwrap().value, "First-Alive");
        assert_eq!(
            raw.pools[1].settings.balance.as_ref().unwrap().value,
            "Round-Robin"
        );
        assert!(raw.pools[0].settings.balance.is_none());
    }

    #[test]
    fn case_insensitive_and_indented() {
        let text =
            "  [proxy_entry]\n\tserverlist 127.0.0.1:1\n   MATCH ^/.*\n loadbalancer RoundRobin\n";
        let mut diag = Diag::new("t");
        let raw = read(text, &mut diag);
        assert!(diag.errors.is_empty(), "{:?}", diag.errors);
        assert_eq!(
            raw.pools[0].settings.balance.as_ref().unwrap().value,
            "RoundRobin"
        );
    }

    #[test]
    fn errors_name_line_and_key() {
        let text =
            "[PROXY_ENTRY]\nServerList 127.0.0.1:1\nMatch /\nAtemptsCount 3\n[PROXY_ENTRYS]\n";
        let mut diag = Diag::new("f.conf");
        read(text, &mut diag);
        assert_eq!(diag.errors.len(), 2);
        assert_eq!(diag.errors[0].line, 4);
        assert!(
            diag.errors[0].message.contains("AttemptsCount"),
            "{}",
            diag.errors[0].message
        );
        assert_eq!(diag.errors[1].line, 5);
        assert!(diag.errors[1].message.contains("PROXY_ENTRY"));
    }
}
