//! The shared response cache: stored objects in a weighted `quick_cache` store (its CLOCK-PRO
//! style policy keeps one-hit wonders from pushing out hot entries; see docs/cache.md for the
//! hit ratios measured against plain LRU), request coalescing, counters and purge.
//!
//! The byte budget counts each entry's key, headers and body, and the store is sized so the
//! sum over its shards can never pass `max_size`. Freshness decisions live in [`policy`]; the
//! pipeline that uses them is `proxy::cached`.

mod fill;
mod key;
mod object;
pub mod policy;
pub mod record;
pub mod shared;

pub use fill::{Fill, FormFill};
pub use key::*;
pub use object::*;

use crate::clock;
use crate::coding::Coding;
use crate::config::route::IgnoreQuery;
use crate::config::CacheConfig;
use bytes::Bytes;
use http::header::{HeaderMap, HeaderName};
use std::borrow::Cow;
use std::collections::{HashMap, VecDeque};
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use tokio::sync::watch;

/// What a key holds: a response, or (for a response with `Vary`) the list of header names that
/// select among its variants and the variants' keys.
#[derive(Debug, Clone)]
pub enum Slot {
    Object(Arc<Object>),
    Vary(Arc<VaryIndex>),
}

#[derive(Debug)]
pub struct VaryIndex {
    pub names: Vec<HeaderName>,
    keys: Mutex<VecDeque<String>>,
}

#[derive(Clone)]
struct Weigher;

impl quick_cache::Weighter<String, Slot> for Weigher {
    fn weight(&self, key: &String, val: &Slot) -> u64 {
        key.len() as u64
            + match val {
                Slot::Object(o) => o.weight,
                Slot::Vary(v) => {
                    ENTRY_OVERHEAD
                        + v.names
                            .iter()
                            .map(|n| n.as_str().len() as u64 + 24)
                            .sum::<u64>()
                }
            }
    }
}

/// Counts evictions (the store's own decisions, not purges or replacements), and hands back
/// the evicted objects that have forms, to be put back without them ([`Cache::put`]).
#[derive(Clone)]
struct Evictions(Arc<AtomicU64>);

/// Objects evicted with forms, by key.
type Demoted = Vec<(String, Arc<Object>)>;

impl quick_cache::Lifecycle<String, Slot> for Evictions {
    type RequestState = Demoted;
    fn begin_request(&self) -> Self::RequestState {
        Vec::new()
    }
    fn on_evict(&self, demoted: &mut Demoted, key: String, val: Slot) {
        self.0.fetch_add(1, Relaxed);
        if let Slot::Object(o) = val {
            if !o.forms.is_empty() {
                demoted.push((key, o));
            }
        }
    }
}

type Store =
    quick_cache::sync::Cache<String, Slot, Weigher, quick_cache::DefaultHashBuilder, Evictions>;

/// The cache's counters, read by the admin API.
#[derive(Debug, Default)]
pub struct Counters {
    pub hits: AtomicU64,
    pub misses: AtomicU64,
    pub stale: AtomicU64,
    pub revalidations: AtomicU64,
    pub stores: AtomicU64,
    pub coalesced: AtomicU64,
    pub purged: AtomicU64,
}

const FLIGHT_SHARDS: usize = 16;

/// One upstream fetch in progress for a key; waiters hold a receiver.
type Flights = Mutex<HashMap<String, Arc<watch::Sender<bool>>>>;

pub struct Cache {
    store: Store,
    pub rules: CacheConfig,
    pub counters: Counters,
    evictions: Arc<AtomicU64>,
    /// Bytes held by fills in progress (see [`Cache::fill_budget`]).
    filling: AtomicU64,
    flights: Box<[Flights]>,
    hasher: std::collections::hash_map::RandomState,
    /// `[cache] shared`: the fleet's second level in Redis (`None`: not configured, and then
    /// nothing on the request path looks for it).
    pub shared: Option<Arc<shared::Shared>>,
}

impl std::fmt::Debug for Cache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cache")
            .field("entries", &self.store.len())
            .field("bytes", &self.store.weight())
            .finish()
    }
}

/// A snapshot of the counters and occupancy.
#[derive(Debug, Clone, Copy, Default, serde::Serialize)]
pub struct Stats {
    pub hits: u64,
    pub misses: u64,
    pub stale: u64,
    pub revalidations: u64,
    pub stores: u64,
    pub evictions: u64,
    pub coalesced: u64,
    pub purged: u64,
    pub entries: u64,
    pub bytes: u64,
    pub max_size: u64,
}

/// The result of joining the fetch for a key.
pub enum Join {
    /// This request fetches; others wait until the guard is dropped.
    Leader(FlightGuard),
    /// Another request is fetching: wait for it (see [`wait`]).
    Wait(watch::Receiver<bool>),
}

/// Held by the request that fetches a key; dropping it wakes every waiter.
pub struct FlightGuard {
    cache: Arc<Cache>,
    key: String,
    tx: Arc<watch::Sender<bool>>,
    /// The fleet's lock on the key, released with this guard (see [`shared`]).
    shared_lock: Option<String>,
}

impl FlightGuard {
    /// Holds the fleet's lock on the key until this guard is dropped: after the fill it
    /// guards has queued its write to the shared cache.
    pub fn hold_shared(&mut self, lock: String) {
        self.shared_lock = Some(lock);
    }
}

impl std::fmt::Debug for FlightGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FlightGuard")
            .field("key", &self.key)
            .finish()
    }
}

impl Drop for FlightGuard {
    fn drop(&mut self) {
        let shard = &self.cache.flights[self.cache.flight_shard(&self.key)];
        let mut map = shard.lock().unwrap_or_else(|p| p.into_inner());
        if map.get(&self.key).is_some_and(|t| Arc::ptr_eq(t, &self.tx)) {
            map.remove(&self.key);
        }
        drop(map);
        self.tx.send_replace(true);
        if let (Some(lock), Some(s)) = (self.shared_lock.take(), &self.cache.shared) {
            s.unlock(lock);
        }
    }
}

/// Waits until the fetch a [`Join::Wait`] refers to is over (stored, found uncacheable, or
/// abandoned), or `limit` passes. True when it ended in time.
pub async fn wait(mut rx: watch::Receiver<bool>, limit: std::time::Duration) -> bool {
    tokio::time::timeout(limit, rx.wait_for(|done| *done))
        .await
        .is_ok()
}

impl Cache {
    pub fn new(rules: CacheConfig) -> Arc<Cache> {
        Cache::with_fleet(rules, None)
    }

    /// A cache whose second level is the fleet's Redis when `rules.shared` and a cluster link
    /// is given (needs a tokio runtime then, for the writer task).
    pub fn with_fleet(
        rules: CacheConfig,
        cluster: Option<&Arc<crate::cluster::Cluster>>,
    ) -> Arc<Cache> {
        // Each shard gets an equal share of the budget; fewer shards when objects are large, so
        // that the largest allowed object fits in one shard with room to spare.
        let mut shards = 16u64;
        while shards > 1 && rules.max_size / shards < rules.max_object_size.saturating_mul(2) {
            shards /= 2;
        }
        // A multiple of 16, so every power-of-two shard count divides it exactly and the
        // shards' capacities add up to at most `max_size`.
        let capacity = (rules.max_size & !15).max(16);
        let evictions = Arc::new(AtomicU64::new(0));
        let options = quick_cache::OptionsBuilder::new()
            .shards(shards as usize)
            .estimated_items_capacity((rules.max_size / 4096).clamp(64, 1 << 22) as usize)
            .weight_capacity(capacity)
            .build()
            .expect("valid cache options");
        let store = Store::with_options(
            options,
            Weigher,
            quick_cache::DefaultHashBuilder::default(),
            Evictions(evictions.clone()),
        );
        Arc::new(Cache {
            store,
            counters: Counters::default(),
            evictions,
            filling: AtomicU64::new(0),
            flights: (0..FLIGHT_SHARDS)
                .map(|_| Mutex::new(HashMap::new()))
                .collect(),
            hasher: Default::default(),
            shared: cluster
                .filter(|_| rules.shared)
                .map(|c| shared::Shared::start(c.clone(), &rules)),
            rules,
        })
    }

    /// The cluster link the shared cache uses, if it is on.
    pub fn fleet(&self) -> Option<&Arc<crate::cluster::Cluster>> {
        self.shared.as_ref().map(|s| &s.cluster)
    }

    /// Tells the fleet of a purge applied here: through the shared cache when it is on (its
    /// keys are removed from Redis first), else published as it is.
    pub fn publish_purge(
        &self,
        cluster: Option<&Arc<crate::cluster::Cluster>>,
        p: crate::cluster::Purge,
    ) {
        match (&self.shared, cluster) {
            (Some(s), _) => s.purge(p),
            (None, Some(c)) => c.publish(p),
            (None, None) => {}
        }
    }

    fn flight_shard(&self, key: &str) -> usize {
        self.hasher.hash_one(key) as usize % FLIGHT_SHARDS
    }

    /// Becomes the fetcher of `key`, or gets a receiver to wait on the current one.
    pub fn join(self: &Arc<Self>, key: &str) -> Join {
        let shard = &self.flights[self.flight_shard(key)];
        let mut map = shard.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(tx) = map.get(key) {
            return Join::Wait(tx.subscribe());
        }
        let tx = Arc::new(watch::channel(false).0);
        map.insert(key.to_string(), tx.clone());
        Join::Leader(FlightGuard {
            cache: self.clone(),
            key: key.to_string(),
            tx,
            shared_lock: None,
        })
    }

    /// Whether a fetch for `key` is running.
    pub fn in_flight(&self, key: &str) -> bool {
        let shard = &self.flights[self.flight_shard(key)];
        shard
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains_key(key)
    }

    /// Finds the object for a request: the primary key, then (if it varies) the variant chosen
    /// by the request's headers. Objects of no further use are dropped on the way.
    /// The key comes back borrowed when it is the primary key (no allocation on a plain hit).
    pub fn lookup<'k>(
        &self,
        primary: &'k str,
        req: &HeaderMap,
    ) -> Option<(std::borrow::Cow<'k, str>, Arc<Object>)> {
        let (key, obj) = match self.store.get(primary)? {
            Slot::Object(o) => (std::borrow::Cow::Borrowed(primary), o),
            Slot::Vary(v) => {
                let key = variant_key(primary, &v.names, req);
                match self.store.get(key.as_str())? {
                    Slot::Object(o) => (std::borrow::Cow::Owned(key), o),
                    Slot::Vary(_) => return None,
                }
            }
        };
        if !obj.useful(clock::now_ms()) {
            self.store.remove(&*key);
            return None;
        }
        Some((key, obj))
    }

    /// Whether a response with a body of `body_len` bytes and these stored headers can be kept
    /// (the same bound [`Cache::insert`] applies).
    pub fn fits(&self, body_len: u64, headers: &HeaderMap) -> bool {
        self.keeps(
            ENTRY_OVERHEAD
                .saturating_add(headers_size(headers))
                .saturating_add(body_len),
        )
    }

    /// The one bound on an entry: `max_object_size`, with room for its bookkeeping.
    fn keeps(&self, weight: u64) -> bool {
        weight
            <= self
                .rules
                .max_object_size
                .saturating_add(ENTRY_OVERHEAD * 4)
    }

    /// Bytes held by bodies being filled right now (not yet in the store).
    pub fn filling(&self) -> u64 {
        self.filling.load(Relaxed)
    }

    /// The most that fills in progress may hold together: a quarter of `max_size`. Past it a
    /// fill is abandoned (the response still streams to its client, unstored), so slow
    /// clients of many different misses cannot hold memory outside the budget.
    pub fn fill_budget(&self) -> u64 {
        self.rules.max_size / 4
    }

    /// Stores a response under `primary` (and, when it varies, under the variant its request
    /// selects). Returns false when it was too big to keep.
    pub fn insert(&self, primary: &str, req: &HeaderMap, obj: Object) -> bool {
        self.insert_as(primary, req, obj, true)
    }

    /// [`Cache::insert`] of an object the shared cache answered: kept here, not written back.
    pub fn insert_from_fleet(&self, primary: &str, req: &HeaderMap, obj: Object) -> bool {
        self.insert_as(primary, req, obj, false)
    }

    /// Stores here, and in the shared cache when `share` and it is on.
    fn insert_as(&self, primary: &str, req: &HeaderMap, obj: Object, share: bool) -> bool {
        if !self.keeps(obj.weight + primary.len() as u64) {
            return false;
        }
        let mut names = vary_names(&obj.headers);
        if obj.negotiated {
            names.retain(|n| n != http::header::ACCEPT_ENCODING);
        }
        let obj = Arc::new(obj);
        self.counters.stores.fetch_add(1, Relaxed);
        let shared = self.shared.as_ref().filter(|_| share);
        if names.is_empty() {
            if let Some(s) = shared {
                s.store(primary, &obj);
            }
            self.put(primary.to_string(), Slot::Object(obj));
            return true;
        }
        let key = variant_key(primary, &names, req);
        if let Some(s) = shared {
            s.store(&key, &obj);
        }
        let index = match self.store.get(primary) {
            Some(Slot::Vary(v)) if v.names == names => v,
            old => {
                // The response now varies on other fields: the old variants go, or they would
                // stay behind, out of reach of purges.
                if let Some(Slot::Vary(old)) = old {
                    let keys =
                        std::mem::take(&mut *old.keys.lock().unwrap_or_else(|p| p.into_inner()));
                    for k in keys {
                        self.store.remove(k.as_str());
                    }
                }
                let v = Arc::new(VaryIndex {
                    names,
                    keys: Mutex::new(VecDeque::new()),
                });
                self.put(primary.to_string(), Slot::Vary(v.clone()));
                v
            }
        };
        let evict = {
            let mut keys = index.keys.lock().unwrap_or_else(|p| p.into_inner());
            if !keys.contains(&key) {
                keys.push_back(key.clone());
            }
            if keys.len() > self.rules.max_variants {
                keys.pop_front()
            } else {
                None
            }
        };
        if let Some(old) = evict {
            self.store.remove(old.as_str());
        }
        self.put(key, Slot::Object(obj));
        true
    }

    /// Stores a slot. An object the store evicts for it that has forms is put back without
    /// them, if its key is still free: forms go before the bodies they were made from.
    fn put(&self, key: String, slot: Slot) {
        let demoted = self.store.insert_with_lifecycle(key, slot);
        for (key, obj) in demoted {
            if self.store.peek(key.as_str()).is_none() {
                // Its own evictions are not demoted again: a form-less object is final.
                self.store
                    .insert(key, Slot::Object(Arc::new(obj.without_forms())));
            }
        }
    }

    /// Keeps form `c` of the object stored under `key`, if that object is still `obj` and the
    /// form fits `max_object_size` along with it. True when it was kept.
    pub fn add_form(&self, key: &str, obj: &Arc<Object>, c: Coding, body: Bytes) -> bool {
        let current = match self.store.peek(key) {
            Some(Slot::Object(o)) if Arc::ptr_eq(&o, obj) => o,
            _ => return false,
        };
        let grown = current.with_form(c, body);
        if !self.keeps(grown.weight + key.len() as u64) {
            return false;
        }
        self.put(key.to_string(), Slot::Object(Arc::new(grown)));
        true
    }

    /// Removes one URL and its variants (after an unsafe method, or an exact purge).
    pub fn invalidate(&self, primary: &str) -> u64 {
        let mut n = 0;
        if let Some((_, slot)) = self.store.remove(primary) {
            n += 1;
            if let Slot::Vary(v) = slot {
                let keys = std::mem::take(&mut *v.keys.lock().unwrap_or_else(|p| p.into_inner()));
                for k in keys {
                    n += u64::from(self.store.remove(k.as_str()).is_some());
                }
            }
        }
        n
    }

    /// Replaces an object in place (after a revalidation).
    pub fn replace(&self, key: &str, obj: Object) {
        self.counters.stores.fetch_add(1, Relaxed);
        let obj = Arc::new(obj);
        if let Some(s) = &self.shared {
            s.store(key, &obj);
        }
        self.put(key.to_string(), Slot::Object(obj));
    }

    /// Removes a URL and all its variants. `url` is a full key (`http://host/path?q`) or a
    /// path (`/path?q`, any host). Returns how many entries went.
    pub fn purge_url(&self, url: &str) -> u64 {
        let n = if url.starts_with('/') {
            self.remove_where(|k| key_path(k) == url)
        } else {
            self.invalidate(url)
        };
        self.counters.purged.fetch_add(n, Relaxed);
        n
    }

    /// Removes every URL starting with `prefix` (a full URL prefix or a path prefix).
    pub fn purge_prefix(&self, prefix: &str) -> u64 {
        let n = if prefix.starts_with('/') {
            self.remove_where(|k| key_path(k).starts_with(prefix))
        } else {
            self.remove_where(|k| k.starts_with(prefix))
        };
        self.counters.purged.fetch_add(n, Relaxed);
        n
    }

    /// Empties the cache.
    pub fn purge_all(&self) -> u64 {
        let n = self.store.len() as u64;
        self.store.clear();
        self.counters.purged.fetch_add(n, Relaxed);
        n
    }

    /// Removes entries whose primary URL (the key without its variant part) matches.
    fn remove_where(&self, matches: impl Fn(&str) -> bool) -> u64 {
        let n = AtomicU64::new(0);
        self.store.retain(|k, _| {
            let primary = k.split('\0').next().unwrap_or(k);
            if matches(primary) {
                n.fetch_add(1, Relaxed);
                false
            } else {
                true
            }
        });
        n.into_inner()
    }

    pub fn stats(&self) -> Stats {
        let c = &self.counters;
        Stats {
            hits: c.hits.load(Relaxed),
            misses: c.misses.load(Relaxed),
            stale: c.stale.load(Relaxed),
            revalidations: c.revalidations.load(Relaxed),
            stores: c.stores.load(Relaxed),
            evictions: self.evictions.load(Relaxed),
            coalesced: c.coalesced.load(Relaxed),
            purged: c.purged.load(Relaxed),
            entries: self.store.len() as u64,
            bytes: self.store.weight(),
            max_size: self.rules.max_size,
        }
    }

    /// Bytes in use (keys, headers and bodies).
    pub fn bytes(&self) -> u64 {
        self.store.weight()
    }
}

#[cfg(test)]
mod tests;
