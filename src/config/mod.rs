//! Configuration: one internal model ([`Config`]) built from either file format.
//!
//! The pipeline is `file text -> format reader (toml.rs | legacy.rs) -> RawConfig -> validate/ ->
//! Config`. Readers only know syntax and key names; everything that is checked the same way in both
//! formats (addresses, regexes, pool references, method names) lives in `validate/`, so both
//! formats report the same errors with the same words. Every error carries the file, the line and
//! the key, and all errors of a file are reported at once (error.rs).
//!
//! Precedence of a pool setting: the pool's own key, then `[defaults]` (`[PROXY_DEFAULTS]`), then
//! the `DEFAULT_*` constants below.

pub mod acme;
mod clients;
pub mod cluster;
pub mod compress;
mod defaults;
pub mod dns;
mod error;
mod legacy;
pub mod log;
mod raw;
pub mod route;
pub mod sticky;
mod toml;

pub(crate) use raw::*;
mod validate;

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

pub use clients::*;
pub use defaults::*;
pub(crate) use error::{suggest, Diag};
pub use error::{ConfigError, ConfigErrors};
pub use validate::{overlap, parse_balance};

/// What a client may send and how long it may take (`[server]`).
#[derive(Debug, Clone, PartialEq)]
pub struct Limits {
    /// From a connection's first byte (or a kept-alive connection's next byte) to a complete
    /// request head; the slowloris guard.
    pub header_read_timeout: Duration,
    /// How long an idle keep-alive connection waits for its next request.
    pub keepalive_timeout: Duration,
    /// Longest silence between two parts of a request body (then 408).
    pub body_timeout: Duration,
    /// From the request head to the response head: queue, connects, retries and the server's
    /// wait together (then 504).
    pub request_timeout: Duration,
    /// How long SIGTERM waits for requests in flight.
    pub shutdown_timeout: Duration,
    /// Request line and headers together, in bytes (then 431).
    pub max_header_size: usize,
    /// Header fields in a request (then 431).
    pub max_headers: usize,
    /// Request-target length (then 414).
    pub max_uri_length: usize,
    /// Request body size; 0: no limit (then 413).
    pub max_body_size: u64,
    /// Open client connections per listener; at the limit, accepting waits.
    pub max_connections: usize,
    /// How much of a request body is read before a server is picked (a body that ends within
    /// it reaches the server whole, or not at all).
    pub request_buffer: usize,
    /// Open connections from one client address (an IPv6 client: its /64), across the
    /// listeners and workers; beyond it a new one is closed at accept. 0: no limit.
    pub max_connections_per_client: usize,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            header_read_timeout: DEFAULT_HEADER_READ_TIMEOUT,
            keepalive_timeout: DEFAULT_KEEPALIVE_TIMEOUT,
            body_timeout: DEFAULT_BODY_TIMEOUT,
            request_timeout: DEFAULT_REQUEST_TIMEOUT,
            shutdown_timeout: DEFAULT_SHUTDOWN_TIMEOUT,
            max_header_size: DEFAULT_MAX_HEADER_SIZE,
            max_headers: DEFAULT_MAX_HEADERS,
            max_uri_length: DEFAULT_MAX_URI_LENGTH,
            max_body_size: DEFAULT_MAX_BODY_SIZE,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            request_buffer: DEFAULT_REQUEST_BUFFER,
            max_connections_per_client: 0,
        }
    }
}

/// What a hashing method hashes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HashOn {
    /// The client's address.
    Source,
    /// The path.
    Uri,
    /// The path and the query.
    UriQuery,
    /// A request header (lowercase name).
    Header(String),
    /// A cookie's value.
    Cookie(String),
}

/// A balancing method. Weighted round robin is [`BalanceMethod::RoundRobin`] with weights.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BalanceMethod {
    /// A hash of the client connection (its source port) picks where to start; then first alive.
    Naive,
    /// The first usable server in list order.
    FirstAlive,
    /// Smooth weighted round robin over an atomic counter (exact, lock-free).
    RoundRobin,
    /// Fewest requests in flight relative to weight.
    LeastConnections,
    /// Weighted random.
    Random,
    /// Power of two choices on requests in flight.
    P2c,
    /// Power of two choices on peak-EWMA latency x load.
    PeakEwma,
    /// Consistent hashing on a request key.
    Hash(HashOn),
}

impl BalanceMethod {
    /// The method in HAProxy's `balance` words (its stats' `algo`): `roundrobin`, `leastconn`,
    /// `first`, `random`, `random(2)` for p2c, `source`, `uri`, `uri whole` (with the query),
    /// `hdr(NAME)`, `hash req.cook(NAME)`; langur's own name for what HAProxy lacks
    /// (`peak-ewma`, `naive`).
    pub fn haproxy_name(&self) -> String {
        match self {
            BalanceMethod::RoundRobin => "roundrobin".into(),
            BalanceMethod::LeastConnections => "leastconn".into(),
            BalanceMethod::FirstAlive => "first".into(),
            BalanceMethod::Random => "random".into(),
            BalanceMethod::P2c => "random(2)".into(),
            BalanceMethod::Hash(HashOn::Source) => "source".into(),
            BalanceMethod::Hash(HashOn::Uri) => "uri".into(),
            BalanceMethod::Hash(HashOn::UriQuery) => "uri whole".into(),
            BalanceMethod::Hash(HashOn::Header(h)) => format!("hdr({h})"),
            BalanceMethod::Hash(HashOn::Cookie(c)) => format!("hash req.cook({c})"),
            BalanceMethod::PeakEwma | BalanceMethod::Naive => self.name(),
        }
    }

    /// The method as the configuration writes it.
    pub fn name(&self) -> String {
        match self {
            BalanceMethod::Naive => "naive".into(),
            BalanceMethod::FirstAlive => "first-alive".into(),
            BalanceMethod::RoundRobin => "round-robin".into(),
            BalanceMethod::LeastConnections => "least-connections".into(),
            BalanceMethod::Random => "random".into(),
            BalanceMethod::P2c => "p2c".into(),
            BalanceMethod::PeakEwma => "peak-ewma".into(),
            BalanceMethod::Hash(HashOn::Source) => "source".into(),
            BalanceMethod::Hash(HashOn::Uri) => "uri".into(),
            BalanceMethod::Hash(HashOn::UriQuery) => "uri-query".into(),
            BalanceMethod::Hash(HashOn::Header(h)) => format!("header:{h}"),
            BalanceMethod::Hash(HashOn::Cookie(c)) => format!("cookie:{c}"),
        }
    }
}

/// The validated configuration. Built once per load; the request path never reads it.
#[derive(Debug, Clone)]
pub struct Config {
    /// The file it came from, as given.
    pub source: String,
    pub server: ServerSettings,
    pub admin: AdminSettings,
    /// Routes in file order; the first whose pattern matches wins.
    pub routes: Vec<RouteConfig>,
    /// `[server]` rules for every request (HTTPS redirect, HSTS, error pages, request IDs).
    pub site: route::SiteRules,
    pub pools: Vec<PoolConfig>,
    pub cache: CacheConfig,
    /// `[log]`: the access log's format and destination.
    pub log: log::LogSettings,
    /// `[tracing]`: W3C trace context and span export; `None` when the section is absent.
    pub tracing: Option<log::TracingSettings>,
    /// `[cluster]`: the fleet's Redis; `None` when the section is absent (nothing is shared).
    pub cluster: Option<cluster::ClusterConfig>,
    /// `[dns]`: where server names are resolved.
    pub dns: dns::DnsSettings,
    /// `[acme]`: certificates obtained automatically; `None` when the section is absent.
    pub acme: Option<acme::AcmeConfig>,
    /// Things that are legal but probably wrong (`check` prints them).
    pub warnings: Vec<ConfigError>,
}

#[derive(Debug, Clone)]
pub struct ServerSettings {
    pub listen: Vec<SocketAddr>,
    /// Unix-domain socket listeners (`listen = ["unix:/run/langur.sock"]`); `--listen`
    /// replaces only the TCP ones.
    pub listen_unix: Vec<std::path::PathBuf>,
    /// Worker threads; `None` means one per core.
    pub workers: Option<usize>,
    pub access_log: bool,
    /// Name used in the `Via` header; a random one per process when unset.
    pub name: Option<String>,
    pub limits: Limits,
    /// HTTP/2 with prior knowledge (h2c) on the plain listeners.
    pub h2c: bool,
    pub h2: H2Settings,
    /// TLS listeners, if any.
    pub tls: Option<TlsListen>,
    /// Share the listening ports with another process that also asks for it (SO_REUSEPORT);
    /// without it, a port another process already serves is an error. langur's own workers
    /// always share their listeners.
    pub reuse_port: bool,
    /// `state_file`: where the servers' state is kept across restarts (relative to the
    /// configuration file's directory when written relative).
    pub state_file: Option<std::path::PathBuf>,
    /// Who the client is (PROXY protocol, trusted proxies) and what servers are told of it.
    pub clients: ClientSettings,
}

/// HTTP/2 limits, client side.
#[derive(Debug, Clone, PartialEq)]
pub struct H2Settings {
    pub max_concurrent_streams: u32,
    /// Initial stream and connection flow-control window.
    pub window: u32,
}

impl Default for H2Settings {
    fn default() -> H2Settings {
        H2Settings {
            max_concurrent_streams: 100,
            window: 1 << 20,
        }
    }
}

/// `[tls]`: listeners and the certificates they offer, chosen by SNI.
#[derive(Debug, Clone)]
pub struct TlsListen {
    pub listen: Vec<SocketAddr>,
    pub config: std::sync::Arc<crate::tls::Listener>,
}

/// What a pool's servers speak.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    H1,
    /// HTTP/2: over TLS (ALPN h2) or in clear with prior knowledge (h2c); one multiplexed
    /// connection per server.
    H2,
}

#[derive(Debug, Clone)]
pub struct AdminSettings {
    pub listen: SocketAddr,
    pub token: Option<String>,
    /// Host names the admin API answers to besides loopback ones (`localhost`, 127.0.0.0/8,
    /// `[::1]`) and its own address; without a token, any other `Host` is refused (DNS
    /// rebinding).
    pub hosts: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct RouteConfig {
    /// Regular expressions, searched (not anchored) in the request path.
    pub patterns: Vec<String>,
    /// Index into [`Config::pools`]; `None` when the route serves files from `root`. With a
    /// traffic split, the split's first pool.
    pub pool: Option<usize>,
    /// A traffic split (`pools`): (index into [`Config::pools`], weight) in the order written;
    /// empty without one.
    pub split: Vec<(usize, u32)>,
    /// A directory served instead of a pool.
    pub root: Option<std::path::PathBuf>,
    /// Responses (or files) go through the shared cache.
    pub cache: bool,
    /// How long a stale entry may still be served while it is refreshed or when the pool fails,
    /// when the response does not say (`stale-while-revalidate`, `stale-if-error`).
    pub grace: Option<Duration>,
    /// Client networks allowed to send `PURGE` for this route's URLs.
    pub purge: Vec<ipnet::IpNet>,
    pub line: usize,
    /// The matchers besides `patterns` (`host`, `path`, `path_prefix`, ...).
    pub matcher: crate::matching::RequestMatch,
    /// What the route does besides choosing its target.
    pub rules: route::RouteRules,
    /// `compress` and `precompressed`.
    pub encoding: compress::Compression,
}

/// The shared cache's rules (`[cache]`).
#[derive(Debug, Clone, PartialEq)]
pub struct CacheConfig {
    /// The byte budget: bodies, headers and keys together never exceed it.
    pub max_size: u64,
    pub max_object_size: u64,
    /// Content types kept (`text/*`, `image/png`, `*`).
    pub types: Vec<String>,
    /// Lifetime of a response without freshness information; zero means do not store it.
    pub default_ttl: Duration,
    pub min_ttl: Duration,
    pub max_ttl: Option<Duration>,
    /// How long a miss waits for another request fetching the same key.
    pub lock_timeout: Duration,
    pub max_variants: usize,
    pub store_private: bool,
    pub store_set_cookie: bool,
    pub store_authorized: bool,
    /// Request fields that change how a server reads the request (method overrides, original-URL
    /// rewrites): a request carrying any of them neither uses nor fills the cache.
    pub bypass_headers: Vec<http::HeaderName>,
    /// What a request `Cookie` does to caching.
    pub request_cookie: RequestCookie,
    /// `shared`: what is stored is also kept in the fleet's Redis (needs `[cluster]`).
    pub shared: bool,
    /// The largest stored response (head and body, bytes) the shared cache keeps.
    pub shared_max_object_size: u64,
}

/// What a request with `Cookie` may do with the shared cache (`[cache] request_cookie`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestCookie {
    /// The default: served from the cache, but its answer is stored only when the response
    /// explicitly allows shared caching (`public`, `s-maxage`, `max-age` or `Expires`); the
    /// route's `default_ttl` (heuristic freshness) never applies to it.
    Explicit,
    /// Varnish's default: such requests bypass the cache entirely.
    Pass,
    /// Cookies do not matter (the response's `Set-Cookie`, `private` and `Vary` still do).
    Ignore,
}

/// Request fields that make a request bypass the cache unless configured otherwise: method
/// overrides (Rails, Symfony, Google APIs, ASP.NET), original-URL rewrites (IIS, Symfony), and
/// the forwarding fields frameworks build absolute URLs from that langur does not set itself
/// (Rack's `X-Forwarded-Scheme` and `X-Forwarded-Ssl`, Spring's `X-Forwarded-Prefix`, the
/// `X-Forwarded-Port`/`-Server`/`-Path`/`-Uri`/`-Protocol` family, `X-Url-Scheme`, `Front-End-Https`,
/// `X-Host`, `X-Original-Host`, RFC 7239 `Forwarded`): unkeyed inputs a client could use to
/// poison a shared answer. `X-Forwarded-Host` and `X-Forwarded-Proto` are not listed: langur
/// overwrites them.
pub const DEFAULT_CACHE_BYPASS_HEADERS: [&str; 24] = [
    "x-http-method-override",
    "x-http-method",
    "x-method-override",
    "x-original-url",
    "x-rewrite-url",
    "x-original-method",
    "x-forwarded-scheme",
    "x-forwarded-ssl",
    "x-forwarded-prefix",
    "x-forwarded-port",
    "x-forwarded-server",
    "x-forwarded-path",
    "x-forwarded-uri",
    "x-forwarded-protocol",
    "x-url-scheme",
    "x-scheme",
    "x-original-scheme",
    "x-forwarded-hostname",
    "x-original-uri",
    "x-arr-ssl",
    "front-end-https",
    "x-host",
    "x-original-host",
    "forwarded",
];

impl Default for CacheConfig {
    fn default() -> Self {
        CacheConfig {
            max_size: DEFAULT_CACHE_MAX_SIZE,
            max_object_size: DEFAULT_CACHE_MAX_OBJECT_SIZE,
            types: vec!["*".into()],
            default_ttl: Duration::ZERO,
            min_ttl: Duration::ZERO,
            max_ttl: None,
            lock_timeout: DEFAULT_CACHE_LOCK_TIMEOUT,
            max_variants: DEFAULT_CACHE_MAX_VARIANTS,
            store_private: false,
            store_set_cookie: false,
            store_authorized: false,
            bypass_headers: DEFAULT_CACHE_BYPASS_HEADERS
                .iter()
                .map(|n| http::HeaderName::from_static(n))
                .collect(),
            request_cookie: RequestCookie::Explicit,
            shared: false,
            shared_max_object_size: DEFAULT_CACHE_SHARED_MAX_OBJECT_SIZE,
        }
    }
}

#[derive(Debug, Clone)]
pub struct PoolConfig {
    pub name: String,
    pub balance: BalanceMethod,
    /// The hashing methods' load bound (`hash_balance_factor`), if any.
    pub hash_balance_factor: Option<f64>,
    pub attempts: u32,
    /// Zero turns high availability off.
    pub offline_timeout: Duration,
    pub connect_timeout: Duration,
    pub response_timeout: Duration,
    /// Longest silence between two parts of a response body.
    pub read_timeout: Duration,
    pub protocol: Protocol,
    /// TLS to the servers, if on.
    pub tls: Option<crate::tls::Upstream>,
    pub servers: Vec<ServerConfig>,
    /// Passive observation of live traffic, if on.
    pub observe: Option<ObserveConfig>,
    /// All backups share the load (else the first usable backup takes it).
    pub all_backups: bool,
    /// `on_marked_down = "shutdown-sessions"`.
    pub shutdown_sessions_on_down: bool,
    /// `on_marked_up = "shutdown-backup-sessions"`.
    pub shutdown_backup_sessions_on_up: bool,
    /// The backlog queue.
    pub queue: QueueConfig,
    /// Extra attempts on other servers; `None`: every server once (the reference's behaviour).
    pub retries: Option<u32>,
    /// Retries allowed on top of requests, as a ratio (`0.2`: 20%); `None`: no budget.
    pub retry_budget: Option<f64>,
    /// Ramp time of a server that comes up (zero: none).
    pub slowstart: Duration,
    /// How long a server that answered 503 or timed out connecting counts as overloaded (zero:
    /// never).
    pub overload_backoff: Duration,
    /// A PROXY header first on every new connection to the servers, and on their checks.
    pub send_proxy: Option<SendProxy>,
    /// Cookie persistence (`sticky`), if on.
    pub sticky: Option<sticky::StickyConfig>,
    /// `dns_min_ttl`, `dns_max_ttl`, `dns_allow_empty`: its servers named by DNS.
    pub dns: dns::DnsPolicy,
}

#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// The server's name, unique in its pool: `name`, else the address as written. The
    /// dashboard, the CSV (`svname`), metrics labels, the access log and the admin API's paths
    /// use it.
    pub name: String,
    /// The address as written (`host:port`, `unix:PATH`): the `Host` of checks and the TLS
    /// server name unless the pool sets one.
    pub address: String,
    /// The resolved address ([`UNIX_SERVER`] for a Unix-domain socket).
    pub addr: SocketAddr,
    /// `unix:PATH`: the server listens on this Unix-domain socket.
    pub unix: Option<std::path::PathBuf>,
    pub weight: u32,
    /// Used only when no non-backup server of the pool is usable.
    pub backup: bool,
    /// The active check for this server (the pool's, with the server's overrides), if any.
    pub check: Option<CheckConfig>,
    /// Requests in flight at most (0: no limit); at the limit the server is overloaded.
    pub maxconn: usize,
    /// A host name to resolve (`addr` is then a placeholder): every address it has becomes a
    /// server, re-resolved in the background.
    pub dns: Option<dns::DnsName>,
}

/// A server's `name`: 1 to 64 letters, digits, `-`, `_`, `.` or `:` (an address as written
/// is one).
pub fn valid_server_name(n: &str) -> bool {
    (1..=64).contains(&n.len())
        && n.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CheckKind {
    /// Connect only.
    Tcp,
    /// A GET of `path`; the status (and optionally the body) decide.
    Http,
}

/// An expected status: a class (`2xx`) or an exact code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatusMatch {
    Class(u16),
    Code(u16),
}

impl StatusMatch {
    pub fn matches(self, code: u16) -> bool {
        match self {
            StatusMatch::Class(c) => code / 100 == c,
            StatusMatch::Code(c) => code == c,
        }
    }
}

#[derive(Debug, Clone)]
pub struct CheckConfig {
    pub kind: CheckKind,
    pub path: String,
    pub interval: Duration,
    pub fastinter: Duration,
    pub downinter: Duration,
    pub timeout: Duration,
    pub rise: u32,
    pub fall: u32,
    pub expect_status: Vec<StatusMatch>,
    /// A regex searched in the first bytes of the body.
    pub expect_body: Option<String>,
    pub disable_on_404: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ObserveMode {
    /// Connect errors and resets.
    Layer4,
    /// Also 5xx and invalid responses.
    Layer7,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnError {
    /// Check sooner.
    Fastinter,
    /// Count as one failed check.
    FailCheck,
    /// As if the last allowed check failed.
    SuddenDeath,
    /// Down at once.
    MarkDown,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ObserveConfig {
    pub mode: ObserveMode,
    pub error_limit: u32,
    pub on_error: OnError,
}

/// Parses a duration: `500ms`, `10s`, `2m`, `1h`, `1.5s`, combinations like `1m30s`. A bare
/// number other than `0` is an error: HAProxy reads `2000` as milliseconds, other tools as
/// seconds, so the unit must be written.
pub(crate) fn parse_duration(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    if t.is_empty() {
        return Err("empty duration".into());
    }
    if let Some(e) = bare_number(t) {
        return Err(e);
    }
    let d = humantime::parse_duration(t)
        .map_err(|e| format!("invalid duration `{t}` ({e}); use units like 500ms, 10s, 2m"))?;
    within_max(t, d)
}

/// The longest duration a configuration may give: 10 years. Every time langur keeps is well
/// within it, and no sum or conversion to milliseconds of one can overflow.
pub const MAX_DURATION: Duration = Duration::from_secs(10 * 365 * 24 * 3600);

/// The largest size a configuration may give: 1 PiB. Every size langur keeps is far within
/// it, and no sum with its bookkeeping can overflow.
pub const MAX_SIZE: u64 = 1 << 50;

/// A byte size: a number of bytes or a string with units (`"64 MiB"`, `"512k"`), at most
/// [`MAX_SIZE`]. The error says what to write.
pub(crate) fn parse_size(text: &str) -> Result<u64, String> {
    let b = text
        .trim()
        .parse::<bytesize::ByteSize>()
        .map_err(|_| format!("`{text}` is not a size (write 64 MiB, 512k or a number of bytes)"))?;
    match b.as_u64() > MAX_SIZE {
        true => Err(format!(
            "`{text}` is more than 1 PiB, the largest size langur takes"
        )),
        false => Ok(b.as_u64()),
    }
}

/// At most [`MAX_DURATION`], and whole milliseconds: every time langur keeps is counted in
/// milliseconds, where `500us` would be 0 (a heartbeat of 0 ms, a backoff of none).
fn within_max(text: &str, d: Duration) -> Result<Duration, String> {
    if d.subsec_nanos() % 1_000_000 != 0 {
        return Err(format!(
            "`{text}` is not whole milliseconds, the finest duration langur takes"
        ));
    }
    let too_long = || format!("`{text}` is more than 10 years, the longest duration langur takes");
    (d <= MAX_DURATION).then_some(d).ok_or_else(too_long)
}

/// The error for a duration written as a bare number (`None`: it is not one, or it is zero).
pub(crate) fn bare_number(t: &str) -> Option<String> {
    let digits = t.replace('_', "");
    let n: f64 = digits.parse().ok()?;
    if n == 0.0 || !digits.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
        return None;
    }
    Some(format!(
        "`{t}` has no unit: write \"{digits}ms\" or \"{digits}s\" (a bare number is refused: HAProxy reads it as milliseconds, other tools as seconds)"
    ))
}

/// The reference format's `OfflineTimeOut`, documented in seconds: a bare number is seconds;
/// units are accepted too.
pub(crate) fn parse_duration_secs(text: &str) -> Result<Duration, String> {
    match text.trim().parse::<u64>() {
        Ok(secs) => within_max(text.trim(), Duration::from_secs(secs)),
        Err(_) => parse_duration(text),
    }
}

/// Line number (1-based) of a byte offset.
pub(crate) fn line_of(src: &str, offset: usize) -> usize {
    let end = offset.min(src.len());
    src.as_bytes()[..end]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}

/// The largest configuration file read, in bytes (a 1 000-site file is well under 1 MiB).
pub const MAX_CONFIG_FILE: u64 = 16 << 20;

/// Reads and validates a config file (a regular file of at most [`MAX_CONFIG_FILE`] bytes). The format is chosen by the name: `*.toml` is TOML,
/// anything else the legacy (Monkey proxy_reverse) format.
pub fn load(path: &Path) -> Result<Config, ConfigErrors> {
    let file = path.display().to_string();
    let text = match crate::regular_file::read_string(path, MAX_CONFIG_FILE) {
        Ok(t) => t,
        Err(e) => {
            return Err(ConfigErrors(vec![ConfigError {
                file,
                line: 0,
                key: None,
                message: format!("cannot read the file: {e}"),
            }]))
        }
    };
    let is_toml = path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("toml"));
    parse_str(&file, &text, is_toml)
}

/// Parses config text; `file` is only used in messages.
pub fn parse_str(file: &str, text: &str, is_toml: bool) -> Result<Config, ConfigErrors> {
    let mut diag = Diag::new(file);
    let raw = if is_toml {
        toml::read(text, &mut diag)
    } else {
        legacy::read(text, &mut diag)
    };
    let config = validate::validate(raw, &mut diag);
    if diag.errors.is_empty() {
        let mut config = config.expect("validation without errors yields a config");
        config.warnings = diag.warnings;
        Ok(config)
    } else {
        diag.errors.sort_by_key(|e| e.line);
        Err(ConfigErrors(diag.errors))
    }
}

impl Config {
    /// Warnings that need the final listener list (after `--listen`): a server that is one of
    /// langur's own listeners would loop.
    pub fn self_loop_warnings(&self) -> Vec<String> {
        let mut out = Vec::new();
        for pool in &self.pools {
            for s in &pool.servers {
                let hit = s.unix.is_none()
                    && self.server.listen.iter().any(|l| {
                        l.port() == s.addr.port()
                            && (l.ip() == s.addr.ip()
                                || (l.ip().is_unspecified()
                                    && (s.addr.ip().is_loopback() || s.addr.ip().is_unspecified())))
                    });
                if hit {
                    out.push(format!(
                        "{}: warning: server {} of pool `{}` is one of langur's own listeners; requests to it would loop (they are answered 508)",
                        self.source, s.name, pool.name
                    ));
                }
            }
        }
        out
    }

    /// One-line summary for `langur check`.
    pub fn summary(&self) -> String {
        let servers: usize = self.pools.iter().map(|p| p.servers.len()).sum();
        format!(
            "{}: ok: {} route(s), {} pool(s), {} server(s), listening on {}",
            self.source,
            self.routes.len(),
            self.pools.len(),
            servers,
            self.server
                .listen
                .iter()
                .map(|a| a.to_string())
                .chain(
                    self.server
                        .listen_unix
                        .iter()
                        .map(|p| format!("unix:{}", p.display()))
                )
                .chain(
                    self.server
                        .tls
                        .iter()
                        .flat_map(|t| t.listen.iter().map(|a| format!("{a} (TLS)")))
                )
                .collect::<Vec<_>>()
                .join(", ")
        )
    }
}

/// `[pools.NAME.queue]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueueConfig {
    /// Requests that may wait; 0 means no queue (refuse when every server is full).
    pub max: usize,
    /// Longest wait for a slot.
    pub timeout: Duration,
    /// Answer when the queue is full or no server can ever serve.
    pub full_status: u16,
    /// Answer when the wait ran out.
    pub timeout_status: u16,
    /// `Retry-After` on those answers.
    pub retry_after: Duration,
    /// Waiters are served round robin across clients (by the route's rate-limit key, else the
    /// client's address) instead of in arrival order.
    pub fair: bool,
}

#[cfg(test)]
mod tests;
