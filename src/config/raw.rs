//! The raw model: what a format reader (TOML or legacy) hands to validation, every value with
//! the line it was written on, nothing checked yet.

use super::*;

/// A value with the line it was written on, as the readers hand it to validation.
#[derive(Debug, Clone)]
pub(crate) struct At<T> {
    pub value: T,
    pub line: usize,
}

impl<T> At<T> {
    pub fn new(value: T, line: usize) -> Self {
        At { value, line }
    }
}

/// What a format reader produces: the file's words, unchecked, with lines.
#[derive(Debug, Default)]
pub(crate) struct RawConfig {
    pub listen: Vec<At<String>>,
    pub workers: Option<At<i64>>,
    pub access_log: Option<bool>,
    pub name: Option<At<String>>,
    pub admin_listen: Option<At<String>>,
    pub admin_token: Option<At<String>>,
    pub admin_hosts: Vec<At<String>>,
    pub reuse_port: Option<bool>,
    pub state_file: Option<At<String>>,
    pub defaults: RawPoolSettings,
    pub routes: Vec<RawRoute>,
    pub pools: Vec<RawPool>,
    pub cache: RawCache,
    pub limits: RawLimits,
    pub h2c: Option<bool>,
    pub h2_max_concurrent_streams: Option<At<i64>>,
    pub h2_window: Option<At<String>>,
    pub tls_listen: Vec<At<String>>,
    /// `[tls] certificates`, in file order.
    pub tls_certs: Vec<RawCertificate>,
    pub tls_line: Option<usize>,
    pub redirect_http_to_https: Option<bool>,
    pub hsts: Option<At<String>>,
    pub error_pages: Vec<(String, At<String>)>,
    pub request_id: Option<At<String>>,
    pub log: super::log::RawLog,
    pub tracing: Option<super::log::RawTracing>,
    /// `[defaults] compress`: the compression of routes that set none.
    pub default_compress: Option<super::compress::RawCompress>,
    /// `[defaults] rate_limit`: the routes' that set none.
    pub default_rate_limit: Option<RawRateLimit>,
    /// `[server]`'s client-identity keys.
    pub clients: RawClients,
    /// `[cluster]`, when the file has it.
    pub cluster: Option<super::cluster::RawCluster>,
    /// `[dns]`: how server names are resolved.
    pub dns: RawDns,
    /// `[acme]`, when the file has it.
    pub acme: Option<super::acme::RawAcme>,
}

/// `[dns]` as written.
#[derive(Debug, Default)]
pub(crate) struct RawDns {
    pub servers: Vec<At<String>>,
    pub timeout: Option<At<Duration>>,
    pub family: Option<At<String>>,
}

/// `[server]`'s keys about who the client is (PROXY protocol in, trusted proxies, the
/// forwarding fields sent upstream), as written.
#[derive(Debug, Default)]
pub(crate) struct RawClients {
    /// `proxy_protocol = true` (every client listener) or a list of listener addresses.
    pub proxy_protocol: Option<At<bool>>,
    pub proxy_protocol_listeners: Vec<At<String>>,
    pub proxy_protocol_from: Option<Vec<At<String>>>,
    pub proxy_protocol_timeout: Option<At<Duration>>,
    pub trusted_proxies: Vec<At<String>>,
    pub real_ip_header: Option<At<String>>,
    pub forwarded_headers: Option<At<String>>,
    pub forwarded: Option<At<String>>,
    pub x_real_ip: Option<bool>,
}

#[derive(Debug, Default, Clone)]
pub(crate) struct RawLimits {
    pub header_read_timeout: Option<At<Duration>>,
    pub keepalive_timeout: Option<At<Duration>>,
    pub body_timeout: Option<At<Duration>>,
    pub request_timeout: Option<At<Duration>>,
    pub shutdown_timeout: Option<At<Duration>>,
    pub max_header_size: Option<At<String>>,
    pub max_headers: Option<At<i64>>,
    pub max_uri_length: Option<At<String>>,
    pub max_body_size: Option<At<String>>,
    pub max_connections: Option<At<i64>>,
    pub request_buffer: Option<At<String>>,
    pub max_connections_per_client: Option<At<i64>>,
}

/// A certificate entry of `[tls]`: the certificate and key PEM paths, and who may connect to
/// the names it serves (client certificates).
#[derive(Debug)]
pub(crate) struct RawCertificate {
    pub cert: At<String>,
    pub key: At<String>,
    pub client_ca: Option<At<String>>,
    /// `"required"` or `"optional"`.
    pub client_auth: Option<At<String>>,
    pub client_crl: Vec<At<String>>,
}

impl RawCertificate {
    pub fn new(cert: At<String>, key: At<String>) -> RawCertificate {
        RawCertificate {
            cert,
            key,
            client_ca: None,
            client_auth: None,
            client_crl: Vec::new(),
        }
    }
}

#[derive(Debug, Default, Clone)]
pub(crate) struct RawPoolSettings {
    pub balance: Option<At<String>>,
    pub attempts: Option<At<i64>>,
    pub offline_timeout: Option<At<Duration>>,
    pub connect_timeout: Option<At<Duration>>,
    pub response_timeout: Option<At<Duration>>,
    pub read_timeout: Option<At<Duration>>,
    pub protocol: Option<At<String>>,
    pub tls: Option<bool>,
    pub tls_ca: Option<At<String>>,
    pub tls_server_name: Option<At<String>>,
    pub tls_verify: Option<bool>,
    /// The client certificate (PEM chain) and its key presented to the servers.
    pub tls_cert: Option<At<String>>,
    pub tls_key: Option<At<String>>,
    pub hash_balance_factor: Option<At<f64>>,
    pub retries: Option<At<i64>>,
    pub retry_budget: Option<At<f64>>,
    pub slowstart: Option<At<Duration>>,
    pub overload_backoff: Option<At<Duration>>,
    /// `send_proxy = "v1" | "v2"`.
    pub send_proxy: Option<At<String>>,
    pub dns_min_ttl: Option<At<Duration>>,
    pub dns_max_ttl: Option<At<Duration>>,
    pub dns_allow_empty: Option<bool>,
}

#[derive(Debug, Default)]
pub(crate) struct RawRoute {
    pub patterns: Vec<At<String>>,
    pub pool: Option<At<String>>,
    pub root: Option<At<String>>,
    pub cache: Option<bool>,
    pub grace: Option<At<Duration>>,
    pub purge: Vec<At<String>>,
    pub line: usize,
    // Matchers.
    pub hosts: Vec<At<String>>,
    pub path: Option<At<String>>,
    pub path_prefix: Option<At<String>>,
    pub methods: Vec<At<String>>,
    pub headers: Vec<(String, At<String>)>,
    pub query: Vec<(String, At<String>)>,
    pub source: Vec<At<String>>,
    /// `"verified"` or `"none"`.
    pub client_cert: Option<At<String>>,
    pub client_cert_subject: Option<At<String>>,
    // Actions.
    pub redirect: Option<RawRedirect>,
    pub respond: Option<RawRespond>,
    pub strip_prefix: Option<At<String>>,
    pub add_prefix: Option<At<String>>,
    pub rewrite: Option<RawRewrite>,
    pub request_headers: Option<RawHeaderRules>,
    pub response_headers: Option<RawHeaderRules>,
    pub allow: Vec<At<String>>,
    pub deny: Vec<At<String>>,
    pub basic_auth: Option<RawBasicAuth>,
    pub forward_auth_header: Option<bool>,
    pub error_pages: Vec<(String, At<String>)>,
    pub intercept_errors: Option<bool>,
    pub cache_ttl: Vec<(String, At<String>)>,
    pub cache_key: Option<RawCacheKey>,
    pub compress: Option<super::compress::RawCompress>,
    pub precompressed: Option<At<bool>>,
    pub rate_limit: Option<RawRateLimit>,
    /// `pools = [{ pool = "v1", weight = 95 }, ...]`: a traffic split, in place of `pool`.
    pub pools: Option<At<Vec<RawSplit>>>,
    /// `acme = true`: certificates for the route's `host` names from `[acme]`.
    pub acme: Option<At<bool>>,
}

/// One pool of a route's traffic split, as written.
#[derive(Debug, Clone, Default)]
pub(crate) struct RawSplit {
    pub line: usize,
    pub pool: Option<At<String>>,
    pub weight: Option<At<i64>>,
}

/// `rate_limit = { key = "client_ip", rate = "100/s", burst = 50, max_keys = 100000 }`, or
/// `rate_limit = false` (on a route: none, not even `[defaults]`').
#[derive(Debug, Clone)]
pub(crate) enum RawRateLimit {
    Off,
    On(RawRateLimitTable),
}

#[derive(Debug, Clone, Default)]
pub(crate) struct RawRateLimitTable {
    pub key: Option<At<String>>,
    pub rate: Option<At<String>>,
    pub burst: Option<At<i64>>,
    pub max_keys: Option<At<i64>>,
    pub scope: Option<At<String>>,
    pub line: usize,
}

/// `redirect = { to = "...", status = 308 }`.
#[derive(Debug, Default)]
pub(crate) struct RawRedirect {
    pub to: Option<At<String>>,
    pub status: Option<At<i64>>,
    pub line: usize,
}

/// `respond = { status = 200, body = "ok", content_type = "text/plain" }` (or `file`).
#[derive(Debug, Default)]
pub(crate) struct RawRespond {
    pub status: Option<At<i64>>,
    pub body: Option<At<String>>,
    pub file: Option<At<String>>,
    pub content_type: Option<At<String>>,
    pub line: usize,
}

/// `rewrite = { from = '^/old/(.*)$', to = '/new/$1' }`.
#[derive(Debug, Default)]
pub(crate) struct RawRewrite {
    pub from: Option<At<String>>,
    pub to: Option<At<String>>,
    pub line: usize,
}

/// `request_headers` / `response_headers = { set = {...}, add = {...}, remove = [...] }`.
#[derive(Debug, Default)]
pub(crate) struct RawHeaderRules {
    pub set: Vec<(String, At<String>)>,
    pub add: Vec<(String, At<String>)>,
    pub remove: Vec<At<String>>,
    pub line: usize,
}

/// `basic_auth = { realm = "staging", users_file = "htpasswd" }`.
#[derive(Debug, Default)]
pub(crate) struct RawBasicAuth {
    pub realm: Option<At<String>>,
    pub users_file: Option<At<String>>,
    pub line: usize,
}

/// `cache_key = { ignore_query = ["utm_*", "gclid"] }` (or `ignore_query = true`: the whole
/// query).
#[derive(Debug, Default)]
pub(crate) struct RawCacheKey {
    pub ignore_query: Vec<At<String>>,
    pub ignore_whole_query: Option<bool>,
    pub line: usize,
}

/// `[cache]` as written; sizes are kept as text (`"64 MiB"` or a number of bytes).
#[derive(Debug, Default)]
pub(crate) struct RawCache {
    pub max_size: Option<At<String>>,
    pub max_object_size: Option<At<String>>,
    pub types: Option<Vec<At<String>>>,
    pub default_ttl: Option<At<Duration>>,
    pub min_ttl: Option<At<Duration>>,
    pub max_ttl: Option<At<Duration>>,
    pub lock_timeout: Option<At<Duration>>,
    pub max_variants: Option<At<i64>>,
    pub store_private: Option<bool>,
    pub store_set_cookie: Option<bool>,
    pub store_authorized: Option<bool>,
    pub bypass_headers: Option<Vec<At<String>>>,
    pub request_cookie: Option<At<String>>,
    pub shared: Option<At<bool>>,
    pub shared_max_object_size: Option<At<String>>,
}

#[derive(Debug)]
pub(crate) struct RawPool {
    pub name: String,
    pub line: usize,
    pub settings: RawPoolSettings,
    pub servers: Vec<RawServer>,
    pub check: Option<RawCheck>,
    pub observe: Option<At<String>>,
    pub error_limit: Option<At<i64>>,
    pub on_error: Option<At<String>>,
    pub all_backups: Option<bool>,
    pub on_marked_down: Option<At<String>>,
    pub on_marked_up: Option<At<String>>,
    pub maxconn: Option<At<i64>>,
    pub queue: Option<RawQueue>,
    pub sticky: Option<super::sticky::RawSticky>,
    /// `srv = "_http._tcp.api.service.consul"`: servers from the name's SRV records.
    pub srv: Option<At<String>>,
}

/// `[pools.NAME.queue]` as written.
#[derive(Debug, Clone, Default)]
pub(crate) struct RawQueue {
    pub max: Option<At<i64>>,
    pub timeout: Option<At<Duration>>,
    pub full_status: Option<At<i64>>,
    pub timeout_status: Option<At<i64>>,
    pub retry_after: Option<At<Duration>>,
    pub fair: Option<bool>,
}

impl RawPool {
    pub fn new(name: String, line: usize) -> RawPool {
        RawPool {
            name,
            line,
            settings: RawPoolSettings::default(),
            servers: Vec::new(),
            check: None,
            observe: None,
            error_limit: None,
            on_error: None,
            all_backups: None,
            on_marked_down: None,
            on_marked_up: None,
            maxconn: None,
            queue: None,
            sticky: None,
            srv: None,
        }
    }
}

#[derive(Debug)]
pub(crate) struct RawServer {
    pub address: At<String>,
    /// `name` (long form only); the address as written names the server otherwise.
    pub name: Option<At<String>>,
    pub weight: Option<At<i64>>,
    pub backup: Option<bool>,
    pub maxconn: Option<At<i64>>,
    /// `check = false` disables the pool's check for this server; a table overrides keys.
    pub check: Option<RawServerCheck>,
}

#[derive(Debug, Clone)]
pub(crate) enum RawServerCheck {
    Off,
    Override(Box<RawCheck>),
}

/// A `check` table as written; every key optional (server overrides merge over the pool's).
#[derive(Debug, Clone, Default)]
pub(crate) struct RawCheck {
    pub line: usize,
    pub kind: Option<At<String>>,
    pub path: Option<At<String>>,
    pub interval: Option<At<Duration>>,
    pub fastinter: Option<At<Duration>>,
    pub downinter: Option<At<Duration>>,
    pub timeout: Option<At<Duration>>,
    pub rise: Option<At<i64>>,
    pub fall: Option<At<i64>>,
    pub expect_status: Option<Vec<At<String>>>,
    pub expect_body: Option<At<String>>,
    pub disable_on_404: Option<bool>,
}

impl RawCheck {
    /// `self` with `over`'s keys where it sets them.
    pub fn merged(&self, over: &RawCheck) -> RawCheck {
        RawCheck {
            line: over.line,
            kind: over.kind.clone().or_else(|| self.kind.clone()),
            path: over.path.clone().or_else(|| self.path.clone()),
            interval: over.interval.clone().or_else(|| self.interval.clone()),
            fastinter: over.fastinter.clone().or_else(|| self.fastinter.clone()),
            downinter: over.downinter.clone().or_else(|| self.downinter.clone()),
            timeout: over.timeout.clone().or_else(|| self.timeout.clone()),
            rise: over.rise.clone().or_else(|| self.rise.clone()),
            fall: over.fall.clone().or_else(|| self.fall.clone()),
            expect_status: over
                .expect_status
                .clone()
                .or_else(|| self.expect_status.clone()),
            expect_body: over
                .expect_body
                .clone()
                .or_else(|| self.expect_body.clone()),
            disable_on_404: over.disable_on_404.or(self.disable_on_404),
        }
    }
}
