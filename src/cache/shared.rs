//! The shared second-level cache (`[cache] shared = true`): what an instance stores in memory
//! is also kept in the fleet's Redis, so an object fetched through one instance is a hit on
//! the others. See docs/scale-out.md.
//!
//! **What is kept.** Only what the in-memory cache itself stored, at the moment it stores it
//! ([`super::Cache::insert`], a revalidation's [`super::Cache::replace`]): the shared cache
//! takes no storing decision of its own, so it never holds what the in-memory cache would
//! refuse (`no-store`, `private`, `Set-Cookie`, the request-cookie rule, the route's rules).
//! Up to `shared_max_object_size` (the record: head and body), while fresh: the key's time to
//! live (`PX`) is the response's remaining freshness.
//!
//! **Layout.** A URL is one hash, `PREFIX c:KEY` (`KEY` the cache's primary key): field `o` the
//! record of a response without `Vary`; for one with `Vary`, field `n` its varied names and a
//! field `v…` per variant (the variant part of the in-memory key). A purge of a URL deletes one
//! key. Records are [`super::record`]s; one that does not decode is a miss, and deleted.
//!
//! **Off the request path.** Writes go through a bounded queue to one writer task (a full
//! queue drops the write, counted); reads are made by the request under `[cluster] timeout`,
//! and Redis down, slow or answering nonsense sends the request to the origin, never to an
//! error.
//!
//! **One fetch for the fleet.** The in-memory leader of a miss asks Redis for the entry and,
//! in the same transaction, for a lock (`SET PREFIX lock:KEY ID NX PX lock_timeout`). The one
//! that gets it goes to the origin and releases it once it stored (or gave up); the others poll
//! for the entry until the lock is gone or `lock_timeout` passes, then go to the origin.

use super::{record, vary_names, Object};
use crate::clock;
use crate::cluster::{Cluster, Failed, Purge};
use http::header::{HeaderMap, HeaderName};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, LazyLock, Weak};
use std::time::Duration;

/// Stores a record: KEYS[1] the URL's hash; ARGV the field, the record, the varied names ('' for
/// none), the time to live (ms), the most fields a hash keeps (past it, the hash starts over).
const STORE_LUA: &str = r"
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 0 and redis.call('HLEN', KEYS[1]) >= tonumber(ARGV[5]) then
  redis.call('DEL', KEYS[1])
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
if ARGV[3] == '' then
  redis.call('HDEL', KEYS[1], 'n')
else
  redis.call('HSET', KEYS[1], 'n', ARGV[3])
  redis.call('HDEL', KEYS[1], 'o')
end
local ttl = tonumber(ARGV[4])
if redis.call('PTTL', KEYS[1]) < ttl then
  redis.call('PEXPIRE', KEYS[1], ttl)
end
return 1
";

/// Releases a lock: KEYS[1] the lock, ARGV[1] its holder's ID (another's lock stays).
const UNLOCK_LUA: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
";

static STORE: LazyLock<redis::Script> = LazyLock::new(|| redis::Script::new(STORE_LUA));
static UNLOCK: LazyLock<redis::Script> = LazyLock::new(|| redis::Script::new(UNLOCK_LUA));

/// Writes waiting for the writer task, at most.
const QUEUE: usize = 1024;
/// The first gap between two polls of a waiting instance; it doubles up to [`POLL_MAX`].
const POLL_FIRST: Duration = Duration::from_millis(5);
const POLL_MAX: Duration = Duration::from_millis(50);
/// How long a purge's scan of Redis (a prefix, a path on every host, everything) may take.
const SCAN_LIMIT: Duration = Duration::from_secs(10);

/// The shared cache's counters (Prometheus `langur_cache_shared_*`, `/api/stats`).
#[derive(Debug, Default)]
pub struct Counters {
    /// Answers from Redis (after an in-memory miss).
    pub hits: AtomicU64,
    /// Lookups Redis answered with nothing usable.
    pub misses: AtomicU64,
    /// Lookups and writes that failed: Redis down, slower than `timeout`, an error.
    pub errors: AtomicU64,
    /// Records that did not decode (deleted).
    pub corrupt: AtomicU64,
    /// Records written.
    pub stores: AtomicU64,
    /// Writes dropped: the queue was full, or Redis down.
    pub dropped: AtomicU64,
    /// Misses that waited for another instance's fetch, and those whose wait ran out.
    pub waits: AtomicU64,
    pub wait_timeouts: AtomicU64,
}

impl Counters {
    /// The counters as `/api/stats` shows them.
    pub fn json(&self) -> serde_json::Value {
        let n = |a: &AtomicU64| a.load(Relaxed);
        serde_json::json!({
            "hits": n(&self.hits),
            "misses": n(&self.misses),
            "errors": n(&self.errors),
            "corrupt": n(&self.corrupt),
            "stores": n(&self.stores),
            "dropped": n(&self.dropped),
            "waits": n(&self.waits),
            "wait_timeouts": n(&self.wait_timeouts),
        })
    }
}

/// A write for the writer task.
enum Write {
    Store {
        hash: String,
        field: String,
        names: String,
        obj: Arc<Object>,
    },
    Forget {
        hash: String,
        field: String,
    },
    Unlock(String),
    /// A key to delete whole.
    Drop(String),
    Purge(Purge),
}

/// The shared cache of one in-memory cache.
pub struct Shared {
    pub cluster: Arc<Cluster>,
    max_object_size: u64,
    lock_timeout: Duration,
    /// The most fields one URL's hash holds (its variants, the names, a plain record).
    max_fields: usize,
    queue: tokio::sync::mpsc::Sender<Write>,
    pub counters: Counters,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared")
            .field("cluster", &self.cluster)
            .finish()
    }
}

/// What Redis says of an in-memory miss.
pub enum Found {
    /// A fresh entry for this request's route and variant.
    Hit(Box<Object>),
    /// None, and this instance holds the fleet's lock: it fetches (the lock is released with
    /// the in-memory flight guard, [`super::FlightGuard::hold_shared`]).
    Lead(String),
    /// None, and another instance is fetching it: wait ([`Shared::wait`]).
    Wait,
    /// Redis cannot be asked (down, slow, an error): go to the origin.
    Unavailable,
}

impl Shared {
    /// The shared cache over `cluster`, with its writer task (needs a tokio runtime).
    pub fn start(cluster: Arc<Cluster>, rules: &crate::config::CacheConfig) -> Arc<Shared> {
        let (queue, rx) = tokio::sync::mpsc::channel(QUEUE);
        let shared = Arc::new(Shared {
            cluster,
            max_object_size: rules.shared_max_object_size,
            lock_timeout: rules.lock_timeout,
            max_fields: rules.max_variants + 2,
            queue,
            counters: Counters::default(),
        });
        tokio::spawn(writer(Arc::downgrade(&shared), rx));
        shared
    }

    fn hash(&self, primary: &str) -> String {
        self.cluster.key(&format!("c:{primary}"))
    }

    fn lock(&self, primary: &str) -> String {
        self.cluster.key(&format!("lock:{primary}"))
    }

    /// Keeps an object the in-memory cache stored under `key` (a primary key, or a variant key:
    /// primary, NUL, the variant part), off the request path.
    pub fn store(&self, key: &str, obj: &Arc<Object>) {
        if obj.body.len() as u64 + super::headers_size(&obj.headers) > self.max_object_size
            || !obj.fresh(clock::now_ms())
        {
            return;
        }
        if !self.cluster.is_up() {
            self.counters.dropped.fetch_add(1, Relaxed);
            return;
        }
        let (primary, field) = split_key(key);
        let mut names = vary_names(&obj.headers);
        if obj.negotiated {
            names.retain(|n| n != http::header::ACCEPT_ENCODING);
        }
        let names: Vec<&str> = names.iter().map(|n| n.as_str()).collect();
        let w = Write::Store {
            hash: self.hash(primary),
            field,
            names: names.join(","),
            obj: obj.clone(),
        };
        self.send(w);
    }

    /// Releases the fleet's lock on a URL (after what was stored is queued).
    pub fn unlock(&self, lock: String) {
        self.send(Write::Unlock(lock));
    }

    /// A purge applied here: removed from Redis, then published to the fleet (in that order,
    /// so no instance refills its memory from Redis with what was purged). With the queue
    /// full, published only.
    pub fn purge(&self, p: Purge) {
        if let Err(e) = self.queue.try_send(Write::Purge(p)) {
            self.counters.dropped.fetch_add(1, Relaxed);
            if let Write::Purge(p) = e.into_inner() {
                self.cluster.publish(p);
            }
        }
    }

    fn send(&self, w: Write) {
        if self.queue.try_send(w).is_err() {
            self.counters.dropped.fetch_add(1, Relaxed);
        }
    }

    /// Asks Redis for the entry of an in-memory miss and, in the same transaction, for the
    /// fleet's lock on the URL (see the module's rules).
    pub async fn find(&self, primary: &str, req: &HeaderMap, route: u32) -> Found {
        if !self.cluster.is_up() {
            self.counters.errors.fetch_add(1, Relaxed);
            return Found::Unavailable;
        }
        let (hash, lock) = (self.hash(primary), self.lock(primary));
        let mut conn = self.cluster.conn();
        let ms = self.lock_timeout.as_millis().max(1) as u64;
        let mut pipe = redis::pipe();
        pipe.atomic()
            .cmd("HMGET")
            .arg(&hash)
            .arg("o")
            .arg("n")
            .cmd("SET")
            .arg(&lock)
            .arg(&self.cluster.id)
            .arg("NX")
            .arg("PX")
            .arg(ms);
        let ask = async move {
            pipe.query_async::<(Vec<Option<Vec<u8>>>, Option<String>)>(&mut conn)
                .await
        };
        let (fields, locked) = match self.cluster.try_call(ask).await {
            Ok(v) => v,
            Err(failed) => {
                self.counters.errors.fetch_add(1, Relaxed);
                if failed == Failed::WrongType {
                    // Not ours (the cache keeps hashes): deleted, with the lock the same
                    // transaction may have taken.
                    self.drop_key(&hash);
                    self.unlock(lock);
                }
                return Found::Unavailable;
            }
        };
        let found = self.entry(&hash, fields, req, route).await;
        match (found, locked.is_some()) {
            (Ok(Some(obj)), mine) => {
                if mine {
                    self.unlock(lock);
                }
                self.counters.hits.fetch_add(1, Relaxed);
                Found::Hit(Box::new(obj))
            }
            (Err(()), true) => Found::Lead(lock),
            (Err(()), false) => Found::Unavailable,
            (Ok(None), true) => {
                self.counters.misses.fetch_add(1, Relaxed);
                Found::Lead(lock)
            }
            (Ok(None), false) => Found::Wait,
        }
    }

    /// Waits for the entry another instance is fetching: polls until it is there, the lock is
    /// gone (the fetch stored nothing) or `limit` passes. `None`: go to the origin.
    pub async fn wait(
        &self,
        primary: &str,
        req: &HeaderMap,
        route: u32,
        limit: Duration,
    ) -> Option<Object> {
        self.counters.waits.fetch_add(1, Relaxed);
        let (hash, lock) = (self.hash(primary), self.lock(primary));
        let deadline = tokio::time::Instant::now() + limit;
        let mut gap = POLL_FIRST;
        loop {
            if tokio::time::Instant::now() + gap >= deadline {
                self.counters.wait_timeouts.fetch_add(1, Relaxed);
                return None;
            }
            tokio::time::sleep(gap).await;
            gap = (gap * 2).min(POLL_MAX);
            let mut conn = self.cluster.conn();
            let mut pipe = redis::pipe();
            // The lock first: once it is gone, what its holder stored is there.
            pipe.cmd("EXISTS")
                .arg(&lock)
                .cmd("HMGET")
                .arg(&hash)
                .arg("o")
                .arg("n");
            let ask = async move {
                pipe.query_async::<(bool, Vec<Option<Vec<u8>>>)>(&mut conn)
                    .await
            };
            let (held, fields) = match self.cluster.try_call(ask).await {
                Ok(v) => v,
                Err(failed) => {
                    self.counters.errors.fetch_add(1, Relaxed);
                    if failed == Failed::WrongType {
                        self.drop_key(&hash);
                    }
                    return None;
                }
            };
            match self.entry(&hash, fields, req, route).await {
                Ok(Some(obj)) => {
                    self.counters.hits.fetch_add(1, Relaxed);
                    return Some(obj);
                }
                Ok(None) if held => {}
                Ok(None) | Err(()) => return None,
            }
        }
    }

    /// The entry a request selects from a hash's `o` and `n` fields: the plain record, or the
    /// variant its `Vary` values select (one more call). `Ok(None)`: nothing usable (absent,
    /// stale, another route's, corrupt: then deleted); `Err`: Redis failed on the way.
    async fn entry(
        &self,
        hash: &str,
        fields: Vec<Option<Vec<u8>>>,
        req: &HeaderMap,
        route: u32,
    ) -> Result<Option<Object>, ()> {
        let mut it = fields.into_iter();
        let (plain, names) = (it.next().flatten(), it.next().flatten());
        let (field, rec) = match (plain, names) {
            (Some(rec), _) => ("o".to_string(), rec),
            (None, Some(names)) => {
                let Some(names) = read_names(&names) else {
                    self.forget(hash, "n");
                    return Ok(None);
                };
                let field = variant_field(&names, req);
                let mut conn = self.cluster.conn();
                let (h, f) = (hash.to_string(), field.clone());
                let ask = async move {
                    redis::cmd("HGET")
                        .arg(h)
                        .arg(f)
                        .query_async::<Option<Vec<u8>>>(&mut conn)
                        .await
                };
                match self.cluster.call(ask).await {
                    None => {
                        self.counters.errors.fetch_add(1, Relaxed);
                        return Err(());
                    }
                    Some(None) => return Ok(None),
                    Some(Some(rec)) => (field, rec),
                }
            }
            (None, None) => return Ok(None),
        };
        let Some(obj) = record::decode_now(&rec) else {
            self.forget(hash, &field);
            return Ok(None);
        };
        Ok((obj.route == route && obj.fresh(clock::now_ms())).then_some(obj))
    }

    /// Deletes a key that holds something else than a cache hash (counted as corrupt).
    fn drop_key(&self, hash: &str) {
        self.counters.corrupt.fetch_add(1, Relaxed);
        self.send(Write::Drop(hash.to_string()));
    }

    /// Deletes a field that did not decode.
    fn forget(&self, hash: &str, field: &str) {
        self.counters.corrupt.fetch_add(1, Relaxed);
        self.send(Write::Forget {
            hash: hash.to_string(),
            field: field.to_string(),
        });
    }
}

/// A hash's field for an in-memory key: `o` for a primary key, `v` and the variant part for a
/// variant key; and the primary key.
fn split_key(key: &str) -> (&str, String) {
    match key.split_once('\0') {
        None => (key, "o".to_string()),
        Some((primary, variant)) => (primary, format!("v{variant}")),
    }
}

/// The field of the variant `req` selects among `names` (as the in-memory cache keys it).
fn variant_field(names: &[HeaderName], req: &HeaderMap) -> String {
    let key = super::variant_key("", names, req);
    format!("v{}", &key[1..])
}

/// The `n` field: names joined by commas; `None` when one is not a field name.
fn read_names(v: &[u8]) -> Option<Vec<HeaderName>> {
    v.split(|b| *b == b',')
        .map(|n| HeaderName::from_bytes(n).ok())
        .collect()
}

/// Empties the queue while the shared cache lives, one write at a time (so a lock is released
/// after what its holder stored), each within `[cluster] connect_timeout`.
async fn writer(me: Weak<Shared>, mut rx: tokio::sync::mpsc::Receiver<Write>) {
    while let Some(w) = rx.recv().await {
        let Some(s) = me.upgrade() else { return };
        let c = &s.cluster;
        let limit = c.config.connect_timeout;
        let mut conn = c.conn();
        let ok = match w {
            Write::Store {
                hash,
                field,
                names,
                obj,
            } => {
                let now = clock::now_ms();
                let ttl = obj.ttl_ms(now).max(0) as u64;
                let Some(rec) = record::encode(&obj, now, super::policy::unix_now_ms()) else {
                    continue;
                };
                if ttl == 0 || rec.len() as u64 > s.max_object_size {
                    continue;
                }
                let mut call = STORE.key(hash);
                call.arg(field)
                    .arg(rec)
                    .arg(names)
                    .arg(ttl)
                    .arg(s.max_fields);
                let run = async move { call.invoke_async::<i64>(&mut conn).await };
                let ok = c.call_within(limit, run).await.is_some();
                if ok {
                    s.counters.stores.fetch_add(1, Relaxed);
                }
                ok
            }
            Write::Forget { hash, field } => {
                let run = async move {
                    redis::cmd("HDEL")
                        .arg(hash)
                        .arg(field)
                        .query_async::<i64>(&mut conn)
                        .await
                };
                c.call_within(limit, run).await.is_some()
            }
            Write::Drop(hash) => {
                let run = async move {
                    redis::cmd("UNLINK")
                        .arg(hash)
                        .query_async::<i64>(&mut conn)
                        .await
                };
                c.call_within(limit, run).await.is_some()
            }
            Write::Unlock(lock) => {
                let mut call = UNLOCK.key(lock);
                call.arg(&c.id);
                let run = async move { call.invoke_async::<i64>(&mut conn).await };
                c.call_within(limit, run).await.is_some()
            }
            Write::Purge(p) => {
                purge(&s, p).await;
                true
            }
        };
        if !ok {
            s.counters.errors.fetch_add(1, Relaxed);
        }
    }
}

/// Removes a purge's keys from Redis, then publishes it. One URL is one `DEL`; a prefix, a
/// path on every host or everything is a `SCAN` of the cache's keys, in a task of its own
/// (within [`SCAN_LIMIT`]), published when it is done.
async fn purge(s: &Arc<Shared>, p: Purge) {
    let c = s.cluster.clone();
    match &p {
        Purge::Key(k) | Purge::Url(k) if !k.starts_with('/') => {
            let mut conn = c.conn();
            let key = s.hash(k);
            let run = async move {
                redis::cmd("UNLINK")
                    .arg(key)
                    .query_async::<i64>(&mut conn)
                    .await
            };
            if c.call_within(c.config.connect_timeout, run).await.is_none() {
                s.counters.errors.fetch_add(1, Relaxed);
            }
            c.publish(p);
        }
        Purge::Gap => {}
        _ => {
            let base = c.key("c:");
            tokio::spawn(async move {
                let _ = tokio::time::timeout(SCAN_LIMIT, scan_delete(&c, &base, &p)).await;
                c.publish(p);
            });
        }
    }
}

/// Deletes the cache's keys under `base` whose primary key the purge names.
async fn scan_delete(c: &Cluster, base: &str, p: &Purge) {
    let pattern = match p {
        Purge::Prefix(k) if !k.starts_with('/') => format!("{}{}*", glob(base), glob(k)),
        _ => format!("{}*", glob(base)),
    };
    let hit = |primary: &str| match p {
        Purge::Url(path) => super::key_path(primary) == path,
        Purge::Prefix(k) if k.starts_with('/') => super::key_path(primary).starts_with(k.as_str()),
        Purge::Prefix(k) => primary.starts_with(k.as_str()),
        _ => true,
    };
    let mut cursor = 0u64;
    loop {
        let mut conn = c.conn();
        let pat = pattern.clone();
        let scan = async move {
            redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(pat)
                .arg("COUNT")
                .arg(1000)
                .query_async::<(u64, Vec<String>)>(&mut conn)
                .await
        };
        let Some((next, keys)) = c.call_within(c.config.connect_timeout, scan).await else {
            return;
        };
        let gone: Vec<String> = keys
            .into_iter()
            .filter(|k| k.strip_prefix(base).is_some_and(&hit))
            .collect();
        if !gone.is_empty() {
            let mut conn = c.conn();
            let run = async move {
                redis::cmd("UNLINK")
                    .arg(gone)
                    .query_async::<i64>(&mut conn)
                    .await
            };
            c.call_within(c.config.connect_timeout, run).await;
        }
        if next == 0 {
            return;
        }
        cursor = next;
    }
}

/// `s` as a `SCAN` pattern that matches it literally.
fn glob(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for ch in s.chars() {
        if matches!(ch, '*' | '?' | '[' | ']' | '\\') {
            out.push('\\');
        }
        out.push(ch);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::header::HeaderValue;

    #[test]
    fn fields_follow_the_in_memory_keys() {
        assert_eq!(split_key("http://h/p"), ("http://h/p", "o".to_string()));
        let names = vec![HeaderName::from_static("x-lang")];
        let mut req = HeaderMap::new();
        req.insert("x-lang", HeaderValue::from_static("fr"));
        let key = super::super::variant_key("http://h/p", &names, &req);
        let (primary, field) = split_key(&key);
        assert_eq!(primary, "http://h/p");
        assert_eq!(field, variant_field(&names, &req));
        req.insert("x-lang", HeaderValue::from_static("de"));
        assert_ne!(field, variant_field(&names, &req), "another variant");
        assert_eq!(read_names(b"x-lang,accept").unwrap().len(), 2);
        assert!(read_names(b"x lang").is_none());
    }

    #[test]
    fn scan_patterns_match_literally() {
        assert_eq!(glob("a*b?[c]\\"), "a\\*b\\?\\[c\\]\\\\");
    }
}
