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
    /// `redis://[user:password@]host[:port][/db]`, `rediss://...` (TLS),
    /// `redis+unix:///path` / `unix:///path`, or a Sentinel URL ([`SentinelUrl`]).
    pub redis: String,
    /// `redis` read, when it is a Sentinel URL.
    pub sentinel: Option<SentinelUrl>,
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
    let sentinel = match redis_url(&url.value) {
        Ok(s) => s,
        Err(e) => {
            diag.error(url.line, Some("redis"), format!("`redis`: {e}"));
            None
        }
    };
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
        sentinel,
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

/// A Redis URL the client crate accepts (`redis`, `rediss`, `redis+unix`, `unix`), or a
/// Sentinel URL (then read).
fn redis_url(url: &str) -> Result<Option<SentinelUrl>, String> {
    let scheme = url.split_once("://").map(|(s, _)| s.to_ascii_lowercase());
    match scheme.as_deref() {
        Some("redis" | "rediss" | "redis+unix" | "unix") => {}
        Some("redis+sentinel" | "rediss+sentinel") => return SentinelUrl::parse(url).map(Some),
        _ => {
            return Err(format!(
            "`{url}` is not a Redis URL (redis://, rediss://, redis+unix:// or redis+sentinel://)"
        ))
        }
    }
    redis::Client::open(url).map_err(|e| e.to_string())?;
    // The database: what `SELECT` takes (Redis refuses more at run time, as an outage).
    if matches!(scheme.as_deref(), Some("redis" | "rediss")) {
        let rest = url.split_once("://").map_or("", |(_, r)| r);
        let path = rest.split(['?', '#']).next().unwrap_or("");
        if let Some((_, db)) = path.split_once('/').filter(|(_, d)| !d.is_empty()) {
            let ok = db
                .parse::<i64>()
                .is_ok_and(|d| (0..=i64::from(i32::MAX)).contains(&d));
            if !ok {
                return Err(format!("`{db}` is not a database number (0 to 2147483647)"));
            }
        }
    }
    Ok(None)
}

/// The port a sentinel listens on when its address gives none.
pub const SENTINEL_PORT: u16 = 26379;
/// The most sentinels one URL may name.
const MAX_SENTINELS: usize = 16;

/// A Redis Sentinel URL, read:
/// `redis+sentinel://[[USER]:PASSWORD@]HOST[:PORT][,HOST[:PORT]...]/MASTER[/DB][?sentinel_password=PASSWORD]`
/// (`rediss+sentinel://`: TLS to the sentinels and the master). The form other clients
/// take (Lettuce's `redis-sentinel://`, Celery's and Sidekiq's `redis+sentinel://`); the
/// sentinels are asked which server is the master named `MASTER` (its `sentinel monitor`
/// name), and the user and password are the master's; the sentinels take
/// `sentinel_password` (Sentinel's own `requirepass`), or nothing.
#[derive(Clone, PartialEq, Eq)]
pub struct SentinelUrl {
    pub tls: bool,
    /// The sentinels' addresses (host, port), in the URL's order.
    pub sentinels: Vec<(String, u16)>,
    /// The master's name, as the sentinels know it.
    pub master: String,
    /// The database on the master (`SELECT`).
    pub db: i64,
    pub username: Option<String>,
    pub password: Option<String>,
    pub sentinel_password: Option<String>,
}

impl std::fmt::Debug for SentinelUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SentinelUrl")
            .field("tls", &self.tls)
            .field("sentinels", &self.sentinels)
            .field("master", &self.master)
            .field("db", &self.db)
            .finish_non_exhaustive()
    }
}

impl SentinelUrl {
    /// Reads one; the error says what is wrong (no master name, no sentinel, a bad port...).
    pub fn parse(url: &str) -> Result<SentinelUrl, String> {
        let (scheme, rest) = url.split_once("://").unwrap_or(("", url));
        let tls = match scheme.to_ascii_lowercase().as_str() {
            "redis+sentinel" => false,
            "rediss+sentinel" => true,
            _ => return Err("a Sentinel URL starts with redis+sentinel://".into()),
        };
        if rest.contains('#') {
            return Err("a Sentinel URL has no `#` fragment".into());
        }
        let (rest, query) = rest.split_once('?').unwrap_or((rest, ""));
        let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
        let (userinfo, hosts) = match authority.rsplit_once('@') {
            Some((u, h)) => (Some(u), h),
            None => (None, authority),
        };
        let (mut username, mut password) = (None, None);
        if let Some(u) = userinfo {
            let (user, pass) = u.split_once(':').unwrap_or((u, ""));
            username = Some(decoded(user)?).filter(|u| !u.is_empty());
            password = Some(decoded(pass)?).filter(|p| !p.is_empty());
        }
        let sentinels = hosts
            .split(',')
            .map(sentinel_addr)
            .collect::<Result<Vec<_>, _>>()?;
        if sentinels.len() > MAX_SENTINELS {
            return Err(format!("at most {MAX_SENTINELS} sentinels"));
        }
        let mut segments = path.split('/');
        let master = segments.next().unwrap_or("");
        if master.is_empty() {
            return Err("no master name: `redis+sentinel://HOST:PORT/MASTER_NAME[/DB]`".into());
        }
        // As the sentinels know it: no escapes (`%20` would not be decoded into a name).
        if !master.bytes().all(|b| b.is_ascii_graphic() && b != b'%') || master.len() > 64 {
            return Err(format!(
                "`{master}` is not a master name (1 to 64 printable characters)"
            ));
        }
        let db = match segments.next() {
            None | Some("") => 0,
            Some(d) => d
                .parse::<i64>()
                .ok()
                .filter(|d| (0..=i64::from(i32::MAX)).contains(d))
                .ok_or_else(|| format!("`{d}` is not a database number (0 to 2147483647)"))?,
        };
        if segments.next().is_some() {
            return Err("the path is `/MASTER_NAME` or `/MASTER_NAME/DB`".into());
        }
        let sentinel_password = sentinel_password(query)?;
        Ok(SentinelUrl {
            tls,
            sentinels,
            master: master.to_string(),
            db,
            username,
            password,
            sentinel_password,
        })
    }
}

/// The query of a Sentinel URL: `sentinel_password=PASSWORD` at most once, nothing else. A
/// value is never repeated in an error (it may be a password).
fn sentinel_password(query: &str) -> Result<Option<String>, String> {
    let mut sentinel_password = None;
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        // A value is never repeated in an error: it may be a password.
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        match name {
            "sentinel_password" if sentinel_password.is_some() => {
                return Err("`sentinel_password` given twice".into())
            }
            "sentinel_password" if value.is_empty() => {
                return Err("`sentinel_password` is empty".into())
            }
            "sentinel_password" => sentinel_password = Some(decoded(value)?),
            _ => {
                let shown: String = name.chars().take(40).collect();
                return Err(format!(
                    "unknown parameter `{shown}` (only sentinel_password)"
                ));
            }
        }
    }
    Ok(sentinel_password)
}

/// One `HOST[:PORT]` of a Sentinel URL (an IPv6 address in brackets).
fn sentinel_addr(a: &str) -> Result<(String, u16), String> {
    let (host, port) = match a.strip_prefix('[') {
        Some(v6) => {
            let (h, after) = v6
                .split_once(']')
                .ok_or_else(|| format!("`{a}`: no `]` after the IPv6 address"))?;
            h.parse::<std::net::Ipv6Addr>()
                .map_err(|_| format!("`{h}` is not an IPv6 address"))?;
            match after {
                "" => (h, None),
                p => (h, Some(p.strip_prefix(':').unwrap_or(p))),
            }
        }
        None => match a.split_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (a, None),
        },
    };
    let name_ok = |h: &str| {
        !h.is_empty()
            && h.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-._:".contains(&b))
    };
    if !name_ok(host) {
        return Err(if a.is_empty() {
            "no sentinel address: `redis+sentinel://HOST:PORT[,HOST:PORT...]/MASTER_NAME`".into()
        } else {
            format!("`{a}` is not a sentinel address (HOST[:PORT])")
        });
    }
    let port = match port {
        None => SENTINEL_PORT,
        Some(p) => p
            .parse::<u16>()
            .ok()
            .filter(|p| *p != 0)
            .ok_or_else(|| format!("`{p}` is not a port (1 to 65535) in `{a}`"))?,
    };
    Ok((host.to_string(), port))
}

/// A percent-encoded part of a URL, decoded.
fn decoded(s: &str) -> Result<String, String> {
    percent_encoding::percent_decode_str(s)
        .decode_utf8()
        .map(|d| d.into_owned())
        .map_err(|_| "a user or password that is not UTF-8 once decoded".to_string())
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

    #[test]
    fn sentinel_urls_name_their_sentinels_master_and_db() {
        let s = redis_url("redis+sentinel://:p%40ss@10.0.0.1:26380,sent-2,[::1]:5000/mymaster/2")
            .unwrap()
            .unwrap();
        assert!(!s.tls);
        assert_eq!(
            s.sentinels,
            [
                ("10.0.0.1".to_string(), 26380),
                ("sent-2".to_string(), SENTINEL_PORT),
                ("::1".to_string(), 5000)
            ]
        );
        assert_eq!((s.master.as_str(), s.db), ("mymaster", 2));
        assert_eq!((s.username, s.password.as_deref()), (None, Some("p@ss")));
        assert_eq!(s.sentinel_password, None);
        let s = SentinelUrl::parse("rediss+sentinel://u:p@h/m?sentinel_password=x").unwrap();
        assert!(s.tls);
        assert_eq!((s.username.as_deref(), s.db), (Some("u"), 0));
        assert_eq!(s.sentinel_password.as_deref(), Some("x"));
        assert!(!format!("{s:?}").contains('p'), "no password in Debug");
        for (bad, says) in [
            ("redis+sentinel://h:26379", "no master name"),
            ("redis+sentinel://h:26379/", "no master name"),
            ("redis+sentinel:///m", "no sentinel address"),
            ("redis+sentinel://h1,,h2/m", "no sentinel address"),
            ("redis+sentinel://h:0/m", "not a port"),
            ("redis+sentinel://h:99999/m", "not a port"),
            ("redis+sentinel://h:x/m", "not a port"),
            ("redis+sentinel://[::1/m", "no `]`"),
            ("redis+sentinel://h/m/x", "database number"),
            ("redis+sentinel://h/m/1/2", "the path"),
            ("redis+sentinel://h/m?db=1", "unknown parameter"),
            ("redis+sentinel://h w/m", "not a sentinel address"),
            ("redis+sentinel://h/m/99999999999", "database number"),
            ("redis://h:6379/99999999999", "database number"),
            ("redis+sentinel://h/m%20x", "not a master name"),
            ("redis+sentinel://h/m#frag", "fragment"),
            ("redis+sentinel://h/m?sentinel_password=", "is empty"),
            (
                "redis+sentinel://h/m?sentinel_password=a&sentinel_password=b",
                "given twice",
            ),
        ] {
            let e = redis_url(bad).unwrap_err();
            assert!(e.contains(says), "{bad}: {e}");
        }
        // A misspelled password parameter is named, its value never shown.
        let e = redis_url("redis+sentinel://h/m?sentinel_pasword=SECRET").unwrap_err();
        assert!(
            e.contains("sentinel_pasword") && !e.contains("SECRET"),
            "{e}"
        );
    }
}
