//! Request rates per key (`rate_limit`): GCRA, the generic cell rate algorithm, as the
//! `governor` crate runs it, over a keyed store whose memory is bounded.
//!
//! The store keeps one 8-byte state (the key's theoretical arrival time) per 64-bit key in a
//! sharded map (`dashmap`): a known key is one shard read lock and one compare-and-swap. Two
//! rules bound it:
//!
//! - **Idle keys expire.** A key whose arrival time has passed is indistinguishable from a
//!   key never seen (its bucket is full again), so forgetting it changes no decision. A sweep
//!   removes such keys; it runs off the event loop (the blocking pool), at most once per
//!   refill time of the bucket (between 1 s and 60 s), when new keys arrive.
//! - **A cap on keys** (`max_keys`). At the cap, a key not stored yet is not added: every such
//!   key shares one overflow bucket with the route's rate and burst, until a sweep frees
//!   room. Clients already known keep their own bucket, so an address-spray attack costs the
//!   attacker's new addresses (and any newcomer meanwhile) one shared budget, and memory stays
//!   at `max_keys` states.

use crate::config::route::{LimitKey, RateLimit};
use dashmap::mapref::entry::Entry;
use dashmap::DashMap;
use governor::clock::Clock;
use governor::middleware::NoOpMiddleware;
use governor::nanos::Nanos;
use governor::state::keyed::ShrinkableKeyedStateStore;
use governor::state::{InMemoryState, NotKeyed, StateStore};
use governor::Quota;
use http::{HeaderMap, HeaderValue};
use std::hash::{BuildHasherDefault, Hasher};
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

/// Tokio's clock as governor reads it, so tests with paused time move it.
#[derive(Debug, Clone, Copy, Default)]
pub struct TokioClock;

impl Clock for TokioClock {
    type Instant = std::time::Instant;

    fn now(&self) -> std::time::Instant {
        tokio::time::Instant::now().into_std()
    }
}

/// The map's hasher: keys are already keyed 64-bit hashes ([`super::ip_key`]), used as they are.
#[derive(Debug, Default, Clone, Copy)]
struct Passthrough(u64);

impl Hasher for Passthrough {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(*b);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

type Map = DashMap<u64, InMemoryState, BuildHasherDefault<Passthrough>>;

/// Shards of the map: a sweep holds one shard's lock at a time.
const SHARDS: usize = 64;

/// The keyed store (see the module's rules).
#[derive(Debug)]
struct Store {
    map: Map,
    /// Keys stored: taken before an insert (so the cap is exact), given back by sweeps.
    len: AtomicUsize,
    cap: usize,
    /// The bucket shared by new keys while the store is full.
    overflow: InMemoryState,
    /// Requests measured against `overflow`, ever.
    overflowed: AtomicU64,
    /// When a sweep may run next (`clock::now_ms`), and whether one is due.
    next_sweep_ms: AtomicU64,
    sweep_due: AtomicBool,
}

impl Store {
    fn new(cap: usize) -> Store {
        Store {
            map: DashMap::with_hasher_and_shard_amount(BuildHasherDefault::default(), SHARDS),
            len: AtomicUsize::new(0),
            cap,
            overflow: InMemoryState::default(),
            overflowed: AtomicU64::new(0),
            next_sweep_ms: AtomicU64::new(0),
            sweep_due: AtomicBool::new(false),
        }
    }

    /// A key not stored yet: a sweep may be due.
    fn noticed_new_key(&self) {
        if !self.sweep_due.load(Relaxed)
            && crate::clock::now_ms() >= self.next_sweep_ms.load(Relaxed)
        {
            self.sweep_due.store(true, Relaxed);
        }
    }
}

/// Whether a state's arrival time is at or before `drop_below` (a fresh key's state).
fn is_idle(state: &InMemoryState, drop_below: Nanos) -> bool {
    // Measuring with a decision that always refuses reads the state and changes nothing.
    let read = state.measure_and_replace(&NotKeyed::NonKey, Err::<((), Nanos), _>);
    match read {
        Err(Some(tat)) => tat <= drop_below,
        _ => true,
    }
}

/// The store as governor holds it (the limiter keeps another handle for stats and sweeps).
#[derive(Debug, Clone)]
struct Shared(Arc<Store>);

impl StateStore for Shared {
    type Key = u64;

    fn measure_and_replace<T, F, E>(&self, key: &u64, f: F) -> Result<T, E>
    where
        F: Fn(Option<Nanos>) -> Result<(T, Nanos), E>,
    {
        let s = &self.0;
        if let Some(state) = s.map.get(key) {
            return state.measure_and_replace(&NotKeyed::NonKey, f);
        }
        s.noticed_new_key();
        if s.len.fetch_add(1, Relaxed) >= s.cap {
            s.len.fetch_sub(1, Relaxed);
            s.overflowed.fetch_add(1, Relaxed);
            return s.overflow.measure_and_replace(&NotKeyed::NonKey, f);
        }
        match s.map.entry(*key) {
            Entry::Occupied(e) => {
                // Another request stored it meanwhile.
                s.len.fetch_sub(1, Relaxed);
                e.get().measure_and_replace(&NotKeyed::NonKey, f)
            }
            Entry::Vacant(v) => v
                .insert(InMemoryState::default())
                .measure_and_replace(&NotKeyed::NonKey, f),
        }
    }
}

impl ShrinkableKeyedStateStore<u64> for Shared {
    fn retain_recent(&self, drop_below: Nanos) {
        let mut removed = 0;
        self.0.map.retain(|_, state| {
            let idle = is_idle(state, drop_below);
            removed += usize::from(idle);
            !idle
        });
        self.0.len.fetch_sub(removed, Relaxed);
    }

    fn shrink_to_fit(&self) {
        self.0.map.shrink_to_fit();
    }

    fn len(&self) -> usize {
        self.0.len.load(Relaxed)
    }

    fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

type Gcra = governor::RateLimiter<u64, Shared, TokioClock, NoOpMiddleware<std::time::Instant>>;

/// A route's rate limit: its GCRA over the keyed store, and its counters.
#[derive(Debug)]
pub struct RateLimiter {
    gcra: Gcra,
    store: Arc<Store>,
    config: RateLimit,
    /// What the route is and its limit: a reload hands this limiter (its keys' states) to the
    /// new route with the same identity.
    pub identity: String,
    /// The key of `key = "route"`.
    route_key: u64,
    /// How often a sweep may run, in milliseconds.
    sweep_every_ms: u64,
    sweeping: AtomicBool,
    /// `RateLimit-Policy` (constant).
    policy: HeaderValue,
    /// Requests answered 429, ever.
    pub limited: AtomicU64,
    /// `scope = "cluster"`: the fleet's count in Redis (this limiter is then the per-instance
    /// fallback).
    pub cluster: Option<super::cluster::ClusterLimit>,
}

/// What the limit says of one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Allow,
    /// Over the limit: the earliest a request of this key would be allowed.
    Deny(Duration),
}

impl RateLimiter {
    /// A limiter for `config` (validated: a count of at least 1, a burst of at least 1).
    pub fn new(config: &RateLimit, identity: String) -> RateLimiter {
        let burst = NonZeroU32::new(config.burst).unwrap_or(NonZeroU32::MIN);
        let quota = Quota::with_period(config.interval())
            .expect("the interval is at least 1 ns")
            .allow_burst(burst);
        let refill = quota.burst_size_replenished_in();
        let store = Arc::new(Store::new(config.max_keys));
        let policy = format!(
            "\"default\";q={};w={};langur-burst={}",
            config.count,
            config.period.as_secs().max(1),
            config.burst
        );
        RateLimiter {
            gcra: governor::RateLimiter::new(quota, Shared(store.clone()), TokioClock),
            store,
            config: config.clone(),
            route_key: super::value_key(identity.as_bytes()),
            identity,
            sweep_every_ms: refill.as_millis().clamp(1_000, 60_000) as u64,
            sweeping: AtomicBool::new(false),
            policy: HeaderValue::from_str(&policy).expect("digits and ASCII"),
            limited: AtomicU64::new(0),
            cluster: None,
        }
    }

    /// This limit counted across the fleet through `cluster` (`scope = "cluster"`).
    pub fn with_cluster(mut self, cluster: Arc<crate::cluster::Cluster>) -> RateLimiter {
        let c = &self.config;
        self.cluster = Some(super::cluster::ClusterLimit::new(
            cluster,
            &self.identity,
            c.interval(),
            c.burst,
            c.max_keys,
        ));
        self
    }

    /// The request's key in Redis (`scope = "cluster"`): the same client or field value has
    /// the same name on every instance.
    pub fn cluster_key(
        &self,
        c: &super::cluster::ClusterLimit,
        headers: &HeaderMap,
        ip: IpAddr,
    ) -> String {
        match &self.config.key {
            LimitKey::ClientIp => c.ip_key(ip),
            LimitKey::Route => c.redis_key(2, b""),
            LimitKey::Header(h) => match headers.get(h) {
                Some(v) => c.redis_key(1, v.as_bytes()),
                None => c.ip_key(ip),
            },
        }
    }

    pub fn config(&self) -> &RateLimit {
        &self.config
    }

    /// The request's key: its client's address, a field's value (the client's address when
    /// the field is absent), or the route's one key. `None`: the key field came more than once
    /// (`X-Api-Key: junk` and `X-Api-Key: victim`), which the caller refuses (400): a server
    /// reading one of the lines must not be given a request counted under another.
    #[inline]
    pub fn key_of(&self, headers: &HeaderMap, ip: IpAddr) -> Option<u64> {
        Some(match &self.config.key {
            LimitKey::ClientIp => super::ip_key(ip),
            LimitKey::Route => self.route_key,
            LimitKey::Header(h) => {
                let mut lines = headers.get_all(h).iter();
                match (lines.next(), lines.next()) {
                    (Some(v), None) => super::value_key(v.as_bytes()),
                    (None, _) => super::ip_key(ip),
                    (Some(_), Some(_)) => return None,
                }
            }
        })
    }

    /// One request of `key`: allowed (its share taken), or denied with the wait. A sweep of
    /// idle keys that is due starts here, off the event loop.
    #[inline]
    pub fn check(self: &Arc<Self>, key: u64) -> Decision {
        let decision = match self.gcra.check_key(&key) {
            Ok(()) => Decision::Allow,
            Err(not_until) => {
                self.limited.fetch_add(1, Relaxed);
                Decision::Deny(not_until.wait_time_from(TokioClock.now()))
            }
        };
        if self.store.sweep_due.load(Relaxed) {
            self.start_sweep();
        }
        decision
    }

    #[cold]
    fn start_sweep(self: &Arc<Self>) {
        if !self.store.sweep_due.swap(false, Relaxed) || self.sweeping.swap(true, Relaxed) {
            return;
        }
        let next = crate::clock::now_ms() + self.sweep_every_ms;
        self.store.next_sweep_ms.store(next, Relaxed);
        let me = self.clone();
        match tokio::runtime::Handle::try_current() {
            Ok(rt) => drop(rt.spawn_blocking(move || me.sweep())),
            Err(_) => me.sweep(),
        }
    }

    /// Forgets the idle keys (see the module's rules) and gives memory back when the map
    /// holds far fewer keys than it has room for.
    pub fn sweep(&self) {
        self.gcra.retain_recent();
        let len = self.keys();
        if len.saturating_mul(4) < self.store.map.capacity() {
            self.gcra.shrink_to_fit();
        }
        self.sweeping.store(false, Relaxed);
    }

    /// Keys stored now.
    pub fn keys(&self) -> usize {
        self.store.len.load(Relaxed)
    }

    /// Requests of new keys measured against the shared overflow bucket (the store was full).
    pub fn overflowed(&self) -> u64 {
        self.store.overflowed.load(Relaxed)
    }

    /// `RateLimit-Policy` (draft-ietf-httpapi-ratelimit-headers-11, 3): the quota `q` per
    /// window `w` seconds, and the burst as `langur-burst`.
    pub fn policy(&self) -> &HeaderValue {
        &self.policy
    }

    /// `RateLimit` for a denied request (draft-ietf-httpapi-ratelimit-headers-11, 4): no
    /// quota left (`r=0`) for `t` seconds, and the same seconds for `Retry-After`.
    pub fn denied_fields(wait: Duration) -> (HeaderValue, u64) {
        let secs = retry_secs(wait);
        let v = format!("\"default\";r=0;t={secs}");
        (HeaderValue::from_str(&v).expect("digits"), secs)
    }
}

/// Whole seconds to wait, rounded up, at least 1 (`Retry-After` is delay-seconds).
fn retry_secs(wait: Duration) -> u64 {
    let s = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    s.max(1)
}

#[cfg(test)]
mod tests;
