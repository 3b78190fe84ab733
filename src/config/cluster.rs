//! `[cluster]`: many instances as one fleet over Redis (or Valkey), as written
//! ([`RawCluster`]) and validated ([`ClusterConfig`]). See docs/scale-out.md.

use super::raw::At;
use super::Diag;
use std::time::Duration;

/// `[cluster]` as read (unchecked).
#[derive(Debug, Default)]
pub(crate) struct RawCluster {
    pub redis: Option<At<String>>,
    pub name: Option<At<String>>,
    pub prefix: Option<At<String>>,
    pub timeout: Option<At<Duration>>,
    pub connect_timeout: Option<At<Duration>>,
    pub heartbeat: Option<At<Duration>>,
    /// The section's own line.
    pub line: usize,
}

pub(crate) const CLUSTER_KEYS: &[&str] = &[
    "redis",
    "name",
    "prefix",
    "timeout",
    "connect_timeout",
    "heartbeat",
];

/// Longest wait for one Redis call on a request's way: past it the request goes on without
/// Redis (a local limit, an L1 miss to the origin).
pub const DEFAULT_CLUSTER_TIMEOUT: Duration = Duration::from_millis(5);
/// Longest wait for a new connection to Redis (off the request path).
pub const DEFAULT_CLUSTER_CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
/// How often an instance writes its heartbeat and checks a Redis it found down.
pub const DEFAULT_CLUSTER_HEARTBEAT: Duration = Duration::from_secs(1);

/// `[cluster]` validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterConfig {
    /// `redis://[user:password@]host[:port][/db]`, `rediss://...` (TLS) or
    /// `redis+unix:///path` / `unix:///path`.
    pub redis: String,
    /// This instance in the fleet; `None`: the instance's `Via` name.
    pub name: Option<String>,
    /// Prepended to every key and channel name (`langur:`).
    pub prefix: String,
    /// Per call on a request's way (see [`DEFAULT_CLUSTER_TIMEOUT`]).
    pub timeout: Duration,
    pub connect_timeout: Duration,
    pub heartbeat: Duration,
}

/// Checks `[cluster]`: the URL as the client crate reads it, the name and prefix as plain
/// printable text, timeouts above zero.
pub(crate) fn cluster(raw: Option<&RawCluster>, diag: &mut Diag) -> Option<ClusterConfig> {
    let raw = raw?;
    let Some(url) = &raw.redis else {
        diag.error(
            raw.line,
            Some("redis"),
            "[cluster] needs `redis = \"redis://HOST:PORT/DB\"`",
        );
        return None;
    };
    if let Err(e) = redis_url(&url.value) {
        diag.error(url.line, Some("redis"), format!("`redis`: {e}"));
    }
    let name = raw.name.as_ref().and_then(|n| match plain(&n.value) {
        true => Some(n.value.clone()),
        false => {
            let msg = "`name` must be 1 to 64 printable ASCII characters without spaces";
            diag.error(n.line, Some("name"), msg);
            None
        }
    });
    let prefix = match &raw.prefix {
        None => "langur:".to_string(),
        Some(p) if p.value.is_empty() || plain(&p.value) => p.value.clone(),
        Some(p) => {
            let msg = "`prefix` must be at most 64 printable ASCII characters without spaces";
            diag.error(p.line, Some("prefix"), msg);
            String::new()
        }
    };
    let positive = |d: Option<&At<Duration>>, key: &str, default: Duration, diag: &mut Diag| match d
    {
        None => default,
        Some(d) if !d.value.is_zero() && d.value <= Duration::from_secs(60) => d.value,
        Some(d) => {
            let msg = format!("`{key}` must be above 0 and at most 60s");
            diag.error(d.line, Some(key), msg);
            default
        }
    };
    Some(ClusterConfig {
        redis: url.value.clone(),
        name,
        prefix,
        timeout: positive(
            raw.timeout.as_ref(),
            "timeout",
            DEFAULT_CLUSTER_TIMEOUT,
            diag,
        ),
        connect_timeout: positive(
            raw.connect_timeout.as_ref(),
            "connect_timeout",
            DEFAULT_CLUSTER_CONNECT_TIMEOUT,
            diag,
        ),
        heartbeat: positive(
            raw.heartbeat.as_ref(),
            "heartbeat",
            DEFAULT_CLUSTER_HEARTBEAT,
            diag,
        ),
    })
}

/// 1 to 64 printable ASCII characters, no space.
fn plain(s: &str) -> bool {
    (1..=64).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_graphic())
}

/// A Redis URL the client crate accepts (`redis`, `rediss`, `redis+unix`, `unix`).
fn redis_url(url: &str) -> Result<(), String> {
    let scheme = url.split_once("://").map(|(s, _)| s.to_ascii_lowercase());
    match scheme.as_deref() {
        Some("redis" | "rediss" | "redis+unix" | "unix") => {}
        _ => {
            return Err(format!(
                "`{url}` is not a Redis URL (redis://, rediss:// or redis+unix://)"
            ))
        }
    }
    redis::Client::open(url)
        .map(drop)
        .map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_read_as_the_client_reads_them() {
        assert!(redis_url("redis://127.0.0.1:6379/0").is_ok());
        assert!(redis_url("rediss://cache.example:6380").is_ok());
        assert!(redis_url("redis+unix:///run/redis.sock").is_ok());
        assert!(redis_url("http://127.0.0.1:6379").is_err());
        assert!(redis_url("127.0.0.1:6379").is_err());
        assert!(redis_url("redis://127.0.0.1:6379/notadb").is_err());
    }
}
