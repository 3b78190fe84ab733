//! The shared response cache: stored objects in a weighted `quick_cache` store (its CLOCK-PRO
//! style policy keeps one-hit wonders from pushing out hot entries; see docs/cache.md for the
//! hit ratios measured against plain LRU), request coalescing, counters and purge.
//!
//! The byte budget counts each entry's key, headers and body, and the store is sized so the
//! sum over its shards can never pass `max_size`. Freshness decisions live in [`policy`]; the
//! pipeline that uses them is `proxy::cached`.

pub mod policy;

use crate::clock;
use crate::coding::Coding;
use crate::config::route::IgnoreQuery;
use crate::config::CacheConfig;
use bytes::Bytes;
use http::header::{HeaderMap, HeaderName, HeaderValue};
use http::StatusCode;
use std::borrow::Cow;
use std::collections::{HashMap, VecDeque};
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use tokio::sync::watch;

/// Fixed cost of one entry on top of its key, headers and body: the object itself behind its
/// `Arc`, and the store's node for the key (measured with jemalloc's size classes; see the
/// `what_the_cache_holds` test, which keeps the real total within a quarter of `max_size`).
const ENTRY_OVERHEAD: u64 = std::mem::size_of::<Object>() as u64 + 16 + 160;

/// What one slot of a stored header map costs beyond its name and value bytes: the bucket
/// (name, value, hash and links, about a hundred bytes), its index, and the value's own
/// allocation. Counted per slot of the map's capacity, not per field.
const FIELD_OVERHEAD: u64 = 136;

/// A stored response.
#[derive(Debug)]
pub struct Object {
    pub status: StatusCode,
    /// End-to-end headers as received (hop-by-hop and `Set-Cookie` removed).
    pub headers: HeaderMap,
    pub body: Bytes,
    /// When it was stored, on [`clock::now_ms`].
    pub stored_ms: u64,
    /// Its age in seconds when stored.
    pub initial_age: u64,
    /// Freshness lifetime in seconds.
    pub lifetime: u64,
    /// Seconds past expiry it may be served while a refresh runs / when the origin fails.
    pub swr: u64,
    pub sie: u64,
    /// `no-cache`: every use must be revalidated first.
    pub no_cache: bool,
    /// `must-revalidate` and kin: never served stale.
    pub forbids_stale: bool,
    pub etag: Option<HeaderValue>,
    pub last_modified: Option<HeaderValue>,
    /// Whether the stale windows (`swr`, `sie`) are the route's `grace` rather than the
    /// response's own directives (for `Cache-Status`).
    pub from_grace: (bool, bool),
    /// The route that stored it (its index in the snapshot): an entry is served only on its
    /// own route, since routes that share a URL may reach different servers or check
    /// different credentials. `u32::MAX`: any route (static files, keyed by their path).
    pub route: u32,
    /// The content coding of `body` (from `Content-Encoding`); `None`: one langur cannot read.
    pub coding: Option<Coding>,
    /// Stored for a route with `compress`: this one entry answers every coding (its forms), so
    /// `Vary: Accept-Encoding` does not make variants of it.
    pub negotiated: bool,
    /// The same body in other codings, made on first demand; each counted in the weight, and
    /// dropped before the body itself when the store needs room.
    forms: Vec<(Coding, Bytes)>,
    /// Forms some request is making right now (a bit per coding), so each is made once.
    making: AtomicU8,
    /// Stored once per object for the weigher.
    weight: u64,
}

impl Object {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        status: StatusCode,
        headers: HeaderMap,
        body: Bytes,
        initial_age: u64,
        lifetime: u64,
        swr: u64,
        sie: u64,
        no_cache: bool,
        forbids_stale: bool,
    ) -> Object {
        let etag = headers.get(http::header::ETAG).cloned();
        let last_modified = headers.get(http::header::LAST_MODIFIED).cloned();
        let weight = ENTRY_OVERHEAD + headers_size(&headers) + body.len() as u64;
        let coding = Coding::of(&headers);
        Object {
            status,
            headers,
            body,
            stored_ms: clock::now_ms(),
            initial_age,
            lifetime,
            swr,
            sie,
            no_cache,
            forbids_stale,
            etag,
            last_modified,
            from_grace: (false, false),
            route: u32::MAX,
            coding,
            negotiated: false,
            forms: Vec::new(),
            making: AtomicU8::new(0),
            weight,
        }
    }

    /// The body in coding `c`: the body itself, or a form made before.
    pub fn form(&self, c: Coding) -> Option<&Bytes> {
        if self.coding == Some(c) {
            return Some(&self.body);
        }
        self.forms.iter().find(|(f, _)| *f == c).map(|(_, b)| b)
    }

    /// Claims the making of form `c` for one request: false when another is making it.
    pub fn claim(&self, c: Coding) -> bool {
        let bit = 1u8 << (c as u8);
        self.making.fetch_or(bit, Relaxed) & bit == 0
    }

    /// Gives up a claim (the form was not finished).
    pub fn release(&self, c: Coding) {
        self.making.fetch_and(!(1u8 << (c as u8)), Relaxed);
    }

    /// Bytes held by the forms.
    pub fn forms_size(&self) -> u64 {
        self.forms.iter().map(|(_, b)| b.len() as u64).sum()
    }

    /// This object with one more form (replacing one of the same coding).
    fn with_form(&self, c: Coding, body: Bytes) -> Object {
        let mut o = self.copy_with(self.headers.clone(), self.body.clone());
        o.weight -= o.forms_size();
        o.forms.retain(|(f, _)| *f != c);
        o.forms.push((c, body));
        o.weight += o.forms_size();
        o
    }

    /// This object without its forms (room is needed; the body stays).
    fn without_forms(&self) -> Object {
        let mut o = self.copy_with(self.headers.clone(), self.body.clone());
        o.weight -= o.forms_size();
        o.forms.clear();
        o
    }

    /// The rule that lets this object be served stale while it is refreshed, as
    /// `Cache-Status` says it.
    pub fn swr_rule(&self) -> &'static str {
        if self.from_grace.0 {
            "grace"
        } else {
            "stale-while-revalidate"
        }
    }

    /// The rule that lets this object be served stale when its servers fail.
    pub fn sie_rule(&self) -> &'static str {
        if self.from_grace.1 {
            "grace"
        } else {
            "stale-if-error"
        }
    }

    /// The same response facts (time stored, age, lifetime, windows) with other headers and
    /// body. The forms come along when the body and its coding are the same (a revalidation
    /// updates the head only).
    pub fn copy_with(&self, headers: HeaderMap, body: Bytes) -> Object {
        let same_body = body.as_ptr() == self.body.as_ptr() && body.len() == self.body.len();
        let mut o = Object::new(
            self.status,
            headers,
            body,
            self.initial_age,
            self.lifetime,
            self.swr,
            self.sie,
            self.no_cache,
            self.forbids_stale,
        );
        o.stored_ms = self.stored_ms;
        o.from_grace = self.from_grace;
        o.route = self.route;
        o.negotiated = self.negotiated;
        if same_body && o.coding == self.coding {
            o.forms = self.forms.clone();
            o.weight += o.forms_size();
        }
        o
    }

    /// Current age in seconds.
    pub fn age(&self, now_ms: u64) -> u64 {
        self.initial_age + now_ms.saturating_sub(self.stored_ms) / 1000
    }

    /// Seconds of freshness left (negative once stale).
    pub fn ttl(&self, now_ms: u64) -> i64 {
        self.lifetime as i64 - self.age(now_ms) as i64
    }

    /// May be served without asking the origin.
    pub fn fresh(&self, now_ms: u64) -> bool {
        !self.no_cache && self.ttl(now_ms) > 0
    }

    /// Stale, but within `window` seconds past expiry, and allowed to be served stale.
    pub fn within(&self, now_ms: u64, window: u64) -> bool {
        !self.forbids_stale && !self.no_cache && -self.ttl(now_ms) < window as i64
    }

    pub fn has_validator(&self) -> bool {
        self.etag.is_some() || self.last_modified.is_some()
    }

    /// Whether this object can still be of any use: fresh, servable stale, or revalidatable.
    fn useful(&self, now_ms: u64) -> bool {
        self.fresh(now_ms) || self.has_validator() || self.within(now_ms, self.swr.max(self.sie))
    }
}

/// The bytes a stored header map holds: names and values, plus [`FIELD_OVERHEAD`] per slot of
/// its capacity.
pub fn headers_size(h: &HeaderMap) -> u64 {
    let text: u64 = h
        .iter()
        .map(|(k, v)| (k.as_str().len() + v.len()) as u64)
        .sum();
    text + h.capacity().max(h.len()) as u64 * FIELD_OVERHEAD
}

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
            rules,
            counters: Counters::default(),
            evictions,
            filling: AtomicU64::new(0),
            flights: (0..FLIGHT_SHARDS)
                .map(|_| Mutex::new(HashMap::new()))
                .collect(),
            hasher: Default::default(),
        })
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
        self.keeps(ENTRY_OVERHEAD + headers_size(headers) + body_len)
    }

    /// The one bound on an entry: `max_object_size`, with room for its bookkeeping.
    fn keeps(&self, weight: u64) -> bool {
        weight <= self.rules.max_object_size + ENTRY_OVERHEAD * 4
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
        if !self.keeps(obj.weight + primary.len() as u64) {
            return false;
        }
        let mut names = vary_names(&obj.headers);
        if obj.negotiated {
            names.retain(|n| n != http::header::ACCEPT_ENCODING);
        }
        let obj = Arc::new(obj);
        self.counters.stores.fetch_add(1, Relaxed);
        if names.is_empty() {
            self.put(primary.to_string(), Slot::Object(obj));
            return true;
        }
        let key = variant_key(primary, &names, req);
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
        self.put(key.to_string(), Slot::Object(Arc::new(obj)));
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

/// How a response will be stored once its body has streamed through (see
/// `ProxyBody::fill`). Dropping it unfinished stores nothing and wakes the waiters.
///
/// The body is copied into one buffer as it passes (so the entry pins none of the connection's
/// read buffers), and what it holds is counted against [`Cache::fill_budget`].
pub struct Fill {
    pub cache: Arc<Cache>,
    pub primary: String,
    /// The request's values of the headers the response varies on.
    pub req_vary: HeaderMap,
    pub meta: Object,
    body: bytes::BytesMut,
    pub guard: Option<FlightGuard>,
}

impl std::fmt::Debug for Fill {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Fill")
            .field("primary", &self.primary)
            .field("size", &self.body.len())
            .finish()
    }
}

impl Fill {
    pub fn new(
        cache: Arc<Cache>,
        primary: String,
        req_vary: HeaderMap,
        meta: Object,
        guard: Option<FlightGuard>,
    ) -> Fill {
        Fill {
            cache,
            primary,
            req_vary,
            meta,
            body: bytes::BytesMut::new(),
            guard,
        }
    }

    /// Takes the next piece of the body; false once it is over `max_object_size`, or when
    /// the fills in progress together would pass their budget (then the fill is abandoned).
    pub fn push(&mut self, data: &Bytes) -> bool {
        let n = data.len() as u64;
        let size = self.body.len() as u64 + n;
        // The object's weight so far is its fixed cost and head: the same bound as `fits`.
        if !self.cache.keeps(self.meta.weight + size) {
            return false;
        }
        let before = self.cache.filling.fetch_add(n, Relaxed);
        if before + n > self.cache.fill_budget() {
            self.cache.filling.fetch_sub(n, Relaxed);
            return false;
        }
        self.body.extend_from_slice(data);
        true
    }

    /// The body is complete: store it, then wake the waiters.
    pub fn finish(mut self) {
        let body = std::mem::take(&mut self.body).freeze();
        self.cache.filling.fetch_sub(body.len() as u64, Relaxed);
        let obj = self.meta.copy_with(self.meta.headers.clone(), body);
        self.cache.insert(&self.primary, &self.req_vary, obj);
    }
}

impl Drop for Fill {
    fn drop(&mut self) {
        // Abandoned (or finished: then the buffer was taken and this is zero).
        self.cache
            .filling
            .fetch_sub(self.body.len() as u64, Relaxed);
    }
}

/// Another coding of a stored object, made while it streams to the client that asked for it
/// first, and kept with the object when complete ([`Cache::add_form`]). Only one request makes
/// a given form at a time ([`Object::claim`]); what it holds counts against
/// [`Cache::fill_budget`], like a [`Fill`]. Dropped unfinished, it keeps nothing.
pub struct FormFill {
    cache: Arc<Cache>,
    key: String,
    obj: Arc<Object>,
    coding: Coding,
    body: bytes::BytesMut,
    /// Past a bound: nothing is kept, the response still streams.
    abandoned: bool,
}

impl std::fmt::Debug for FormFill {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FormFill")
            .field("key", &self.key)
            .field("coding", &self.coding)
            .field("size", &self.body.len())
            .finish()
    }
}

impl FormFill {
    /// Claims the making of form `coding` of `obj`, stored under `key`; `None` when another
    /// request is making it.
    pub fn claim(cache: &Arc<Cache>, key: &str, obj: &Arc<Object>, coding: Coding) -> Option<Self> {
        obj.claim(coding).then(|| FormFill {
            cache: cache.clone(),
            key: key.to_string(),
            obj: obj.clone(),
            coding,
            body: bytes::BytesMut::new(),
            abandoned: false,
        })
    }

    /// Takes the next piece of the form.
    pub fn push(&mut self, data: &[u8]) {
        if self.abandoned {
            return;
        }
        let n = data.len() as u64;
        let size = self.obj.weight + self.body.len() as u64 + n;
        let before = self.cache.filling.fetch_add(n, Relaxed);
        if !self.cache.keeps(size) || before + n > self.cache.fill_budget() {
            self.cache.filling.fetch_sub(n, Relaxed);
            self.abandon();
            return;
        }
        self.body.extend_from_slice(data);
    }

    fn abandon(&mut self) {
        self.abandoned = true;
        let held = std::mem::take(&mut self.body);
        self.cache.filling.fetch_sub(held.len() as u64, Relaxed);
    }

    /// The form is complete: kept with its object.
    pub fn finish(mut self) {
        if self.abandoned {
            return;
        }
        let body = std::mem::take(&mut self.body).freeze();
        self.cache.filling.fetch_sub(body.len() as u64, Relaxed);
        self.cache.add_form(&self.key, &self.obj, self.coding, body);
    }
}

impl Drop for FormFill {
    fn drop(&mut self) {
        self.cache
            .filling
            .fetch_sub(self.body.len() as u64, Relaxed);
        self.obj.release(self.coding);
    }
}

/// The path-and-query part of a key (`http://host/p?q` -> `/p?q`).
fn key_path(key: &str) -> &str {
    let rest = key.split_once("://").map_or(key, |(_, r)| r);
    rest.find('/').map_or("/", |i| &rest[i..])
}

/// The primary key of a request: scheme, host (lower-cased) and path with query.
pub fn primary_key(scheme: &str, host: &str, path_and_query: &str) -> String {
    let mut k = String::with_capacity(scheme.len() + host.len() + path_and_query.len() + 3);
    k.push_str(scheme);
    k.push_str("://");
    for c in host.chars() {
        k.push(c.to_ascii_lowercase());
    }
    k.push_str(path_and_query);
    k
}

/// A key's target on a route with `cache_key.ignore_query`: the query parameters it names are
/// left out (the whole query with `ignore_query = true`); the others stay in the order sent,
/// byte for byte (empty ones from `&&` included), and a query left empty is no query, so
/// `/p?id=1&utm_source=b` and `/p?utm_source=a&id=1` are both `/p?id=1`, and `/p?utm_source=a`
/// is `/p`. A parameter's name is what precedes its first `=`, compared as sent (case and
/// percent-encoding included: `utm%5Fsource` is another name). Without a query, or with nothing
/// to leave out, the target is returned as it is, unallocated.
///
/// `target` is a path and query (`/p?q`), or a whole key (`https://host/p?q`): a scheme and a
/// host hold no `?`. Only the key changes; the server is still sent the whole target.
pub fn key_target<'t>(target: &'t str, ignore: &IgnoreQuery) -> Cow<'t, str> {
    let Some((path, query)) = target.split_once('?') else {
        return Cow::Borrowed(target);
    };
    let name = |param: &'t str| param.split_once('=').map_or(param, |(n, _)| n);
    match ignore {
        IgnoreQuery::None => return Cow::Borrowed(target),
        IgnoreQuery::All => return Cow::Borrowed(path),
        IgnoreQuery::Names(_) if query.is_empty() => return Cow::Borrowed(path),
        IgnoreQuery::Names(_) => {}
    }
    if !query.split('&').any(|p| ignore.ignores(name(p))) {
        return Cow::Borrowed(target);
    }
    let mut out = String::with_capacity(target.len());
    out.push_str(path);
    let mut sep = '?';
    for param in query.split('&').filter(|p| !ignore.ignores(name(p))) {
        out.push(sep);
        out.push_str(param);
        sep = '&';
    }
    Cow::Owned(out)
}

/// The header names a response varies on, lower-cased, in order.
pub fn vary_names(h: &HeaderMap) -> Vec<HeaderName> {
    let mut out: Vec<HeaderName> = Vec::new();
    for v in h.get_all(http::header::VARY) {
        let Ok(s) = v.to_str() else { continue };
        for name in s.split(',') {
            if let Ok(n) = HeaderName::from_bytes(name.trim().as_bytes()) {
                if !out.contains(&n) {
                    out.push(n);
                }
            }
        }
    }
    out
}

/// The key of the variant a request selects: the primary key, NUL, then for each varied
/// header its name, `:`, and its values as the request sent them (several fields joined with
/// `,`, whitespace around commas removed), or 0x03 when the request has none, each followed by
/// 0x01. Values are kept byte for byte (bytes outside printable ASCII, and `%`, as `%XX`), so
/// two requests share a variant only when they sent the same values, an absent field is not an
/// empty one, and a variant of `Vary: X-A` is never one of `Vary: X-B`.
///
/// `Accept-Encoding` is the exception: it is keyed by the coding the request would be sent
/// among zstd, br and gzip (or identity, [`crate::coding::Accept::choose`]), so the many
/// spellings browsers send make at most four variants. A variant found may still hold a coding
/// this request does not accept (a server chose otherwise); the cache phase decodes it then.
pub fn variant_key(primary: &str, names: &[HeaderName], req: &HeaderMap) -> String {
    use std::fmt::Write;
    let mut k = String::with_capacity(primary.len() + 32);
    k.push_str(primary);
    k.push('\0');
    for n in names {
        k.push_str(n.as_str());
        k.push(':');
        if n == http::header::ACCEPT_ENCODING {
            let accept = crate::coding::Accept::parse(req);
            k.push_str(accept.choose(&crate::coding::DEFAULT_ORDER).token());
            k.push('\u{1}');
            continue;
        }
        let mut values = req.get_all(n).iter().peekable();
        if values.peek().is_none() {
            k.push('\u{3}');
        }
        let mut first = true;
        for v in values {
            if !first {
                k.push(',');
            }
            first = false;
            for (i, part) in v.as_bytes().split(|b| *b == b',').enumerate() {
                if i > 0 {
                    k.push(',');
                }
                for &b in part.trim_ascii() {
                    if (0x20..0x7f).contains(&b) && b != b'%' {
                        k.push(char::from(b));
                    } else {
                        let _ = write!(k, "%{b:02X}");
                    }
                }
            }
        }
        k.push('\u{1}');
    }
    k
}

#[cfg(test)]
mod tests;
