//! The fleet's shared state in Redis (or Valkey): one connection manager per instance (the
//! `redis` crate's, which reconnects by itself; with Sentinel, the named master's, swapped on
//! failover: see [`link`]), every call bounded by `[cluster] timeout`, and whether Redis is
//! reachable as one atomic flag the request path reads.
//!
//! Redis is never needed: while it is down every user of this module goes on alone (limits
//! per instance, no shared purge). A heartbeat task checks it every `heartbeat`, so a Redis
//! that comes back is found without a request paying for the check. See docs/scale-out.md.

pub mod fleet;
pub mod link;
pub mod purge;

pub use purge::Purge;

use crate::config::cluster::ClusterConfig;
use link::Link;
use redis::sentinel::SentinelClient;
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::Duration;

/// Why a call failed (see [`Cluster::try_call`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failed {
    /// A key the call read holds another type of value (Redis's `WRONGTYPE`).
    WrongType,
    /// Redis could not be reached, was too slow, or refused the call.
    Redis,
}

/// One instance's link to the fleet.
pub struct Cluster {
    pub config: ClusterConfig,
    /// This instance's name in the fleet.
    pub name: String,
    /// The name and a random suffix: who sent a message (two instances given one name by
    /// mistake still tell their messages apart).
    pub id: String,
    /// Where calls go: one server, or the master the sentinels name.
    link: Link,
    /// Purges waiting to be published.
    outbox: tokio::sync::mpsc::Sender<String>,
    /// What applies another instance's purge here (set once by the server).
    on_purge: OnceLock<Box<dyn Fn(Purge) + Send + Sync>>,
    /// Purges published, not published (Redis down, queue full), received from others, and
    /// messages on the channel that were not purges.
    pub purges_sent: AtomicU64,
    pub purges_unsent: AtomicU64,
    pub purges_received: AtomicU64,
    pub purges_ignored: AtomicU64,
    /// Whether the purge channel's subscription is on now.
    pub subscribed: AtomicBool,
    /// What the heartbeat says of this instance (set once by the server).
    status: OnceLock<Box<dyn Fn() -> serde_json::Value + Send + Sync>>,
    /// The served configuration's checksum (see `fleet`).
    config_sum: AtomicU64,
    /// Whether the last call (or heartbeat) reached Redis.
    up: AtomicBool,
    /// Calls that failed or passed their deadline, ever.
    pub errors: AtomicU64,
    /// Times Redis was found down after being up (or at start).
    pub outages: AtomicU64,
    /// Why the last call failed.
    last_error: Mutex<String>,
    /// The background tasks (heartbeat), ended with this value.
    tasks: Mutex<Vec<tokio::task::AbortHandle>>,
}

impl std::fmt::Debug for Cluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cluster")
            .field("name", &self.name)
            .field("prefix", &self.config.prefix)
            .field("up", &self.is_up())
            .finish()
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for t in self
            .tasks
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .drain(..)
        {
            t.abort();
        }
    }
}

impl Cluster {
    /// Opens the link (lazily: nothing waits for Redis here) and starts the heartbeat, which
    /// makes the first contact at once. A Redis that cannot be reached is a warning, never a
    /// failed start. Must run inside a tokio runtime.
    pub fn start(config: &ClusterConfig, default_name: &str) -> anyhow::Result<Arc<Cluster>> {
        let (link, sentinels) = Link::open(config)?;
        let (outbox, rx) = tokio::sync::mpsc::channel(1024);
        let name = config
            .name
            .clone()
            .unwrap_or_else(|| default_name.to_string());
        let mut salt = [0u8; 4];
        let _ = getrandom::fill(&mut salt);
        let cluster = Arc::new(Cluster {
            id: format!("{name}:{:08x}", u32::from_le_bytes(salt)),
            name,
            config: config.clone(),
            link,
            outbox,
            on_purge: OnceLock::new(),
            purges_sent: AtomicU64::new(0),
            purges_unsent: AtomicU64::new(0),
            purges_received: AtomicU64::new(0),
            purges_ignored: AtomicU64::new(0),
            subscribed: AtomicBool::new(false),
            status: OnceLock::new(),
            config_sum: AtomicU64::new(0),
            up: AtomicBool::new(false),
            errors: AtomicU64::new(0),
            outages: AtomicU64::new(0),
            last_error: Mutex::new(String::new()),
            tasks: Mutex::new(Vec::new()),
        });
        let me = Arc::downgrade(&cluster);
        for t in [
            tokio::spawn(heartbeat(me.clone(), sentinels)),
            tokio::spawn(purge::publisher(me.clone(), rx)),
            tokio::spawn(purge::subscriber(me)),
        ] {
            cluster.add_task(t.abort_handle());
        }
        Ok(cluster)
    }

    /// Sets what applies purges from the fleet here (once; later calls change nothing).
    pub fn on_purge(&self, f: impl Fn(Purge) + Send + Sync + 'static) {
        let _ = self.on_purge.set(Box::new(f));
    }

    /// Applies a purge from the fleet (or a gap) here.
    fn deliver(&self, p: Purge) {
        if let Some(f) = self.on_purge.get() {
            f(p);
        }
    }

    /// Keeps a task that ends with this value.
    pub fn add_task(&self, t: tokio::task::AbortHandle) {
        self.tasks.lock().unwrap_or_else(|e| e.into_inner()).push(t);
    }

    /// Whether Redis answered last time (one relaxed load).
    #[inline]
    pub fn is_up(&self) -> bool {
        self.up.load(Relaxed)
    }

    /// With a Sentinel URL, the master calls go to (`HOST:PORT`), once the sentinels named
    /// one; `None` otherwise.
    pub fn master(&self) -> Option<String> {
        self.link.master()
    }

    /// A key or channel name under the prefix.
    pub fn key(&self, rest: &str) -> String {
        let mut k = String::with_capacity(self.config.prefix.len() + rest.len());
        k.push_str(&self.config.prefix);
        k.push_str(rest);
        k
    }

    /// A connection handle for one call (a clone of the manager: an `Arc`).
    #[inline]
    pub fn conn(&self) -> link::Conn {
        self.link.conn()
    }

    /// Runs one call within `[cluster] timeout`: `None` when Redis failed or was too slow
    /// (then it is marked down until the heartbeat reaches it again).
    pub async fn call<T>(&self, f: impl Future<Output = redis::RedisResult<T>>) -> Option<T> {
        self.call_within(self.config.timeout, f).await
    }

    /// [`Cluster::call`] with another deadline (work off the request path).
    pub async fn call_within<T>(
        &self,
        limit: Duration,
        f: impl Future<Output = redis::RedisResult<T>>,
    ) -> Option<T> {
        self.try_call_within(limit, f).await.ok()
    }

    /// [`Cluster::call`], telling why it failed: `Err(Failed::WrongType)` when a key the
    /// call reads holds another type of value (written by something else: the caller deletes
    /// it), `Err(Failed::Redis)` for anything else.
    pub async fn try_call<T>(
        &self,
        f: impl Future<Output = redis::RedisResult<T>>,
    ) -> Result<T, Failed> {
        self.try_call_within(self.config.timeout, f).await
    }

    /// [`Cluster::try_call`] with another deadline.
    pub async fn try_call_within<T>(
        &self,
        limit: Duration,
        f: impl Future<Output = redis::RedisResult<T>>,
    ) -> Result<T, Failed> {
        let (why, failed) = match tokio::time::timeout(limit, f).await {
            Ok(Ok(v)) => {
                self.mark(true, None);
                return Ok(v);
            }
            Ok(Err(e)) => {
                let usable = about_one_key(&e);
                self.mark(usable, Some(&e.to_string()));
                let failed = match wrong_type(&e) {
                    true => Failed::WrongType,
                    false => Failed::Redis,
                };
                (e.to_string(), failed)
            }
            Err(_) => {
                self.mark(false, Some("timed out"));
                ("timed out".to_string(), Failed::Redis)
            }
        };
        self.errors.fetch_add(1, Relaxed);
        *self.last_error.lock().unwrap_or_else(|e| e.into_inner()) = why;
        Err(failed)
    }

    /// Records whether Redis was reached; a change is one log line.
    fn mark(&self, reached: bool, why: Option<&str>) {
        if self.up.swap(reached, Relaxed) == reached {
            return;
        }
        if reached && self.outages.load(Relaxed) == 0 {
            tracing::info!(redis = %redacted(&self.config.redis), "cluster: Redis reachable; state shared");
        } else if reached {
            tracing::info!(redis = %redacted(&self.config.redis), "cluster: Redis reachable; state shared again");
        } else {
            self.outages.fetch_add(1, Relaxed);
            tracing::warn!(
                redis = %redacted(&self.config.redis),
                error = why.unwrap_or(""),
                "cluster: Redis unreachable; rate limits per instance and purges local until it is back"
            );
        }
    }
}

/// Whether an error from Redis is about one key's value (a key of another type, a reply that
/// does not decode), so Redis itself is up and usable. Any other error means it is not: it
/// cannot be reached or is too slow, refuses the password (`NOAUTH`, `WRONGPASS`), the
/// database does not exist, it is out of memory (`OOM`), a read-only replica (`READONLY`),
/// loading (`LOADING`), or refusing the commands (`NOPERM`).
fn about_one_key(e: &redis::RedisError) -> bool {
    matches!(e.kind(), redis::ErrorKind::UnexpectedReturnType) || wrong_type(e)
}

/// Whether Redis said `WRONGTYPE`, alone or for one command of a pipeline.
fn wrong_type(e: &redis::RedisError) -> bool {
    e.code() == Some("WRONGTYPE")
        || e.clone()
            .into_server_errors()
            .is_some_and(|all| all.iter().any(|(_, s)| s.code() == "WRONGTYPE"))
}

/// Checks Redis at once and every `heartbeat` after (within `connect_timeout`), while the
/// cluster lives. The first failure is the start-up warning. With Sentinel, a master that
/// does not answer as a master is looked up again (see `link`).
async fn heartbeat(me: Weak<Cluster>, mut sentinels: Option<SentinelClient>) {
    let mut first = true;
    loop {
        let Some(c) = me.upgrade() else { return };
        let every = c.config.heartbeat;
        let ok = match sentinels.as_mut() {
            None => c.ping().await,
            Some(s) => c.follow(s).await,
        };
        if first && !ok && !c.is_up() {
            // `mark` logs changes only; at start "down" is no change, so say it here.
            c.outages.fetch_add(1, Relaxed);
            let why = c
                .last_error
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clone();
            tracing::warn!(
                redis = %redacted(&c.config.redis),
                error = %why,
                "cluster: Redis unreachable at start; running degraded (rate limits per instance, purges local) until it answers"
            );
        }
        first = false;
        if ok {
            c.beat().await;
        }
        drop(c);
        tokio::time::sleep(every).await;
    }
}

impl Cluster {
    /// `PING`, within `connect_timeout`.
    async fn ping(&self) -> bool {
        let mut conn = self.conn();
        let ping = async move { redis::cmd("PING").query_async::<String>(&mut conn).await };
        let limit = self.config.connect_timeout;
        self.call_within(limit, ping).await.is_some()
    }

    /// Whether the linked server answers `ROLE` as a master; if not, asks the sentinels and
    /// links to the master they name. Each step within `connect_timeout`.
    async fn follow(&self, sentinels: &mut SentinelClient) -> bool {
        let limit = self.config.connect_timeout;
        if self.link.generation().is_some() {
            let mut conn = self.conn();
            let role = async move {
                match redis::cmd("ROLE")
                    .query_async::<redis::Role>(&mut conn)
                    .await
                {
                    Ok(r) => Ok(Some(r)),
                    // An ACL without `ROLE`: `PING` says whether it is usable.
                    Err(e) if e.code() == Some("NOPERM") => Ok(None),
                    Err(e) => Err(e),
                }
            };
            match self.call_within(limit, role).await {
                Some(Some(redis::Role::Primary { .. })) => return true,
                Some(None) => return self.ping().await,
                Some(Some(_)) | None => {}
            }
        }
        match self.link.follow(sentinels, &self.config, limit).await {
            Ok(Some(addr)) => {
                tracing::info!(master = %addr, "cluster: the sentinels name a new master; calls go there");
                self.ping().await
            }
            // The sentinels still name a server that does not answer as a master.
            Ok(None) => {
                self.failed("the master named by the sentinels does not answer as a master".into());
                false
            }
            Err(e) => {
                self.failed(e);
                false
            }
        }
    }
}

impl Cluster {
    /// Records a failure found outside a call (the sentinels'): counted, kept as the last
    /// error, Redis marked down.
    fn failed(&self, why: String) {
        self.errors.fetch_add(1, Relaxed);
        self.mark(false, Some(&why));
        *self.last_error.lock().unwrap_or_else(|e| e.into_inner()) = why;
    }
}

/// The URL without its passwords, for logs.
pub fn redacted(url: &str) -> String {
    let url = match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => format!("{}://***@{}", &url[..s], &url[at + 1..]),
        _ => url.to_string(),
    };
    // Every value of the parameter (a configuration refuses a second one; a log never shows
    // one either way).
    let mut out = String::with_capacity(url.len());
    let mut rest = url.as_str();
    while let Some((head, tail)) = rest.split_once("sentinel_password=") {
        out.push_str(head);
        out.push_str("sentinel_password=***");
        rest = tail.find('&').map_or("", |i| &tail[i..]);
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn passwords_stay_out_of_logs() {
        assert_eq!(
            super::redacted("redis://user:secret@10.0.0.1:6379/0"),
            "redis://***@10.0.0.1:6379/0"
        );
        assert_eq!(super::redacted("redis://h:1/0"), "redis://h:1/0");
        assert_eq!(
            super::redacted("redis+sentinel://:pw@h1,h2/m?sentinel_password=s&x"),
            "redis+sentinel://***@h1,h2/m?sentinel_password=***&x"
        );
        assert_eq!(
            super::redacted("redis+sentinel://h/m?sentinel_password=a&sentinel_password=b"),
            "redis+sentinel://h/m?sentinel_password=***&sentinel_password=***"
        );
    }
}
