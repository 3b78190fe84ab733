//! The defaults of every setting the file may leave out, in one place (precedence of a pool
//! setting: the pool's own key, then `[defaults]` (`[PROXY_DEFAULTS]`), then these), and the
//! placeholder address a server on a Unix-domain socket is given.

use std::net::SocketAddr;
use std::time::Duration;

/// The address a server on a Unix-domain socket is given (it has none): where an address is
/// shown, its name (`unix:PATH`) is.
pub const UNIX_SERVER: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED), 0);

/// Client listener when neither the file nor `--listen` names one: loopback, so a fresh install
/// exposes nothing.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";
/// Admin listener default (loopback only).
pub const DEFAULT_ADMIN_LISTEN: &str = "127.0.0.1:9090";
/// Consecutive failed connects before a server is considered offline (`AttemptsCount`).
pub const DEFAULT_ATTEMPTS: u32 = 3;
/// How long an offline server is left alone before one request tries it (`OfflineTimeOut`).
pub const DEFAULT_OFFLINE_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest wait for a TCP connect to a server.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// Longest wait from the request being sent to the response head arriving (then 504).
pub const DEFAULT_RESPONSE_TIMEOUT: Duration = Duration::from_secs(60);
/// Idle upstream connections kept per server for reuse.
pub const DEFAULT_MAX_IDLE_PER_SERVER: usize = 256;
/// How long an idle upstream connection is kept before it is closed.
pub const DEFAULT_UPSTREAM_IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// Active check defaults (HAProxy's `inter`, `fastinter`, `downinter`, `timeout check`, `rise`,
/// `fall`).
pub const DEFAULT_CHECK_INTERVAL: Duration = Duration::from_secs(2);
pub const DEFAULT_CHECK_FASTINTER: Duration = Duration::from_millis(500);
pub const DEFAULT_CHECK_DOWNINTER: Duration = Duration::from_secs(5);
pub const DEFAULT_CHECK_TIMEOUT: Duration = Duration::from_secs(1);
pub const DEFAULT_CHECK_RISE: u32 = 2;
pub const DEFAULT_CHECK_FALL: u32 = 3;
/// The backlog queue: requests that may wait, longest wait, answers, Retry-After.
pub const DEFAULT_QUEUE_MAX: usize = 1000;
pub const DEFAULT_QUEUE_TIMEOUT: Duration = Duration::from_secs(5);
pub const DEFAULT_QUEUE_FULL_STATUS: u16 = 503;
pub const DEFAULT_QUEUE_TIMEOUT_STATUS: u16 = 504;
pub const DEFAULT_RETRY_AFTER: Duration = Duration::from_secs(1);
/// Passive observation: consecutive errors before `on_error` acts.
pub const DEFAULT_ERROR_LIMIT: u32 = 10;
/// `[cache]` defaults: the byte budget, the largest object kept, and how long a miss waits for
/// another request already fetching the same key.
pub const DEFAULT_CACHE_MAX_SIZE: u64 = 128 << 20;
pub const DEFAULT_CACHE_MAX_OBJECT_SIZE: u64 = 8 << 20;
pub const DEFAULT_CACHE_LOCK_TIMEOUT: Duration = Duration::from_secs(5);
pub const DEFAULT_CACHE_MAX_VARIANTS: usize = 16;
/// The largest record the shared cache keeps in Redis, unless `max_object_size` is smaller.
pub const DEFAULT_CACHE_SHARED_MAX_OBJECT_SIZE: u64 = 1 << 20;

/// Client-side limits and timeouts (`[server]`; see docs/limits.md for the reasoning).
pub const DEFAULT_HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
pub const DEFAULT_KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(60);
pub const DEFAULT_BODY_TIMEOUT: Duration = Duration::from_secs(30);
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(300);
pub const DEFAULT_SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(30);
pub const DEFAULT_MAX_HEADER_SIZE: usize = 32 << 10;
pub const DEFAULT_MAX_HEADERS: usize = 100;
pub const DEFAULT_MAX_URI_LENGTH: usize = 8 << 10;
pub const DEFAULT_MAX_BODY_SIZE: u64 = 100 << 20;
pub const DEFAULT_MAX_CONNECTIONS: usize = 20_000;
pub const DEFAULT_REQUEST_BUFFER: usize = 64 << 10;
/// Keys a route's `rate_limit` remembers at most (about 2 MiB of state; see docs/limits.md).
pub const DEFAULT_RATE_LIMIT_KEYS: usize = 100_000;
/// Upstream: longest silence between two parts of a server's response body.
pub const DEFAULT_READ_TIMEOUT: Duration = Duration::from_secs(60);
