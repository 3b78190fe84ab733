//! `rate_limit.scope = "cluster"`: one GCRA per key for the whole fleet, kept in Redis and
//! run there by a script (one round trip: `EVALSHA`, the script loaded once), with a local
//! allowance per key so a hot key does not cost a round trip per request.
//!
//! **The allowance.** A key's first request (or one after its allowance expired unused) asks
//! Redis for one request. When a key used up its allowance before it expired, it is hot: its
//! next ask takes up to twice as many as the last, up to `batch` (a tenth of the burst, 1 to
//! 100). The requests are taken from the fleet's bucket when Redis grants them, and an
//! allowance expires `batch × interval` after it was granted.
//!
//! **One round trip per key at a time.** Requests that find a key's allowance empty while
//! another is asking wait for that answer (at most `[cluster] timeout` in all, then the
//! per-instance limit decides), and then use what it brought. A refusal is remembered until
//! the wait Redis gave ends: the key's requests meanwhile are refused here without a round
//! trip (other instances only take from the bucket, so none can be allowed sooner).
//!
//! **The bound.** Every request served was granted by the fleet's GCRA at most
//! `L = batch × interval + timeout` earlier, so over any window `W` the fleet serves at most
//! what the GCRA grants over `W + L`: `burst + (W + L) / interval`, that is at most
//! `batch + timeout / interval` requests above the exact limit, whatever the number of
//! instances. An allowance that expires unused was taken anyway: the error is on the safe side.
//!
//! **Redis unreachable** (down, or slower than `[cluster] timeout`): the route's limit is
//! applied per instance, as `scope = "instance"` would (fail open), counted in
//! `fallbacks`; the warning is the cluster's (one line per outage).

use super::rate::{Decision, RateLimiter};
use crate::cluster::Cluster;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, LazyLock};
use std::time::Duration;

/// GCRA for `want` requests at once: KEYS[1] the key's theoretical arrival time (µs, Redis's
/// clock); ARGV interval (µs), burst, want. Returns `{granted, wait_µs}`: up to `want`
/// requests granted, or none and the wait before one would be.
const GCRA_LUA: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local want = tonumber(ARGV[3])
local tat = tonumber(redis.call('GET', KEYS[1]) or '0') or 0
if tat < now then tat = now end
local room = math.floor((now + burst * interval - tat) / interval)
if room < 1 then
  return {0, tat + interval - burst * interval - now}
end
local granted = math.min(room, want)
tat = tat + granted * interval
redis.call('SET', KEYS[1], string.format('%.0f', tat), 'PX', math.floor((tat - now) / 1000) + 1)
return {granted, 0}
";

static GCRA: LazyLock<redis::Script> = LazyLock::new(|| redis::Script::new(GCRA_LUA));

/// A key's local allowance: requests granted by Redis and not used yet, until when.
#[derive(Debug, Default)]
struct Allowance {
    left: AtomicU32,
    until_ms: AtomicU64,
    /// What the last ask was granted.
    granted: AtomicU32,
    /// Refused until then (ms, [`crate::clock::now_ms`]'s clock): Redis said so.
    denied_until_ms: AtomicU64,
    /// Held while one request asks Redis for the key.
    asking: tokio::sync::Mutex<()>,
}

impl Allowance {
    /// Takes one request of the allowance, if one is left and it has not expired.
    #[inline]
    fn take(&self, now_ms: u64) -> bool {
        self.until_ms.load(Relaxed) > now_ms
            && self
                .left
                .fetch_update(Relaxed, Relaxed, |n| n.checked_sub(1))
                .is_ok()
    }

    /// The wait left of a refusal Redis gave, if it is not over.
    #[inline]
    fn denied(&self, now_ms: u64) -> Option<Duration> {
        let until = self.denied_until_ms.load(Relaxed);
        (until > now_ms).then(|| Duration::from_millis(until - now_ms))
    }

    /// Keeps `granted` requests (one used now) for `lease_ms`.
    fn grant(&self, granted: u32, now_ms: u64, lease_ms: u64) {
        self.granted.store(granted, Relaxed);
        self.left.store(granted - 1, Relaxed);
        self.until_ms.store(now_ms + lease_ms, Relaxed);
    }
}

/// The fleet-wide side of a route's limit.
#[derive(Debug)]
pub struct ClusterLimit {
    pub cluster: Arc<Cluster>,
    /// `PREFIX` `rl:` and the route's identity hashed: the start of its keys in Redis.
    base: String,
    /// Seeds the hash of key values, so keys are the same on every instance.
    seed: u64,
    interval_us: u64,
    burst: u32,
    /// The most one ask takes.
    pub batch: u32,
    /// How long an allowance lasts, in milliseconds.
    lease_ms: u64,
    allowances: quick_cache::sync::Cache<u64, Arc<Allowance>>,
    /// Round trips to Redis, ever.
    pub asked: AtomicU64,
    /// Decisions taken by the per-instance limit because Redis could not be reached.
    pub fallbacks: AtomicU64,
}

/// What the local side can say of a request at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    Decided(Decision),
    /// Redis must be asked.
    Ask,
}

/// The batch for a burst: a tenth of it, 1 to 100.
pub fn batch_for(burst: u32) -> u32 {
    (burst / 10).clamp(1, 100)
}

impl ClusterLimit {
    /// The fleet side of a limit of `burst` requests at once and one per `interval`;
    /// `identity` names the route and its limit, the same on every instance with the same
    /// configuration.
    pub fn new(
        cluster: Arc<Cluster>,
        identity: &str,
        interval: Duration,
        burst: u32,
        max_keys: usize,
    ) -> ClusterLimit {
        let route = xxhash_rust::xxh3::xxh3_64(identity.as_bytes());
        let batch = batch_for(burst);
        let interval_us = (interval.as_micros() as u64).max(1);
        ClusterLimit {
            base: cluster.key(&format!("rl:{route:016x}:")),
            cluster,
            seed: route,
            interval_us,
            burst: burst.max(1),
            batch,
            lease_ms: (interval_us.saturating_mul(u64::from(batch)) / 1000).max(1),
            allowances: quick_cache::sync::Cache::new(max_keys.clamp(16, 1 << 20)),
            asked: AtomicU64::new(0),
            fallbacks: AtomicU64::new(0),
        }
    }

    /// The key's name in Redis: the same value on every instance gives the same name.
    pub fn redis_key(&self, kind: u8, value: &[u8]) -> String {
        let mut buf = Vec::with_capacity(value.len() + 1);
        buf.push(kind);
        buf.extend_from_slice(value);
        let h = xxhash_rust::xxh3::xxh3_128_with_seed(&buf, self.seed);
        format!("{}{h:032x}", self.base)
    }

    /// The name of a client address's key (an IPv6 client by its /64).
    pub fn ip_key(&self, ip: IpAddr) -> String {
        match super::client_addr(ip) {
            IpAddr::V4(a) => self.redis_key(0, &a.octets()),
            IpAddr::V6(a) => self.redis_key(0, &a.octets()),
        }
    }

    /// At once: from the key's allowance, or by the per-instance limit while Redis is down.
    #[inline]
    pub fn step(&self, limiter: &Arc<RateLimiter>, key: u64) -> Step {
        if !self.cluster.is_up() {
            self.fallbacks.fetch_add(1, Relaxed);
            return Step::Decided(limiter.check(key));
        }
        let now = crate::clock::now_ms();
        let Some(a) = self.allowances.get(&key) else {
            return Step::Ask;
        };
        if a.take(now) {
            return Step::Decided(Decision::Allow);
        }
        match a.denied(now) {
            Some(wait) => {
                limiter.limited.fetch_add(1, Relaxed);
                Step::Decided(Decision::Deny(wait))
            }
            None => Step::Ask,
        }
    }

    /// The key's allowance, made empty when it has none.
    fn allowance(&self, key: u64) -> Arc<Allowance> {
        let made = self
            .allowances
            .get_or_insert_with(&key, || Ok::<_, ()>(Arc::default()));
        made.unwrap_or_default()
    }

    /// One round trip (within `[cluster] timeout`): some requests granted (one used now, the
    /// rest kept as the key's allowance), or the wait; the per-instance limit when Redis does
    /// not answer in time. While another request asks for the key, this one waits for that
    /// answer and uses it; the wait and its own round trip together stay within the timeout.
    pub async fn ask(&self, limiter: &Arc<RateLimiter>, key: u64, name: &str) -> Decision {
        let timeout = self.cluster.config.timeout;
        let started = tokio::time::Instant::now();
        let a = self.allowance(key);
        let Ok(_turn) = tokio::time::timeout(timeout, a.asking.lock()).await else {
            self.fallbacks.fetch_add(1, Relaxed);
            return limiter.check(key);
        };
        let now = crate::clock::now_ms();
        if a.take(now) {
            return Decision::Allow;
        }
        if let Some(wait) = a.denied(now) {
            limiter.limited.fetch_add(1, Relaxed);
            return Decision::Deny(wait);
        }
        // Used up before it expired: the key is hot.
        let want = if a.until_ms.load(Relaxed) > now {
            (a.granted.load(Relaxed).saturating_mul(2)).clamp(1, self.batch)
        } else {
            1
        };
        self.asked.fetch_add(1, Relaxed);
        let mut conn = self.cluster.conn();
        let call = async {
            GCRA.key(name)
                .arg(self.interval_us)
                .arg(self.burst)
                .arg(want)
                .invoke_async::<(i64, i64)>(&mut conn)
                .await
        };
        let left = timeout.saturating_sub(started.elapsed());
        match self.cluster.call_within(left, call).await {
            Some((granted, _)) if granted > 0 => {
                let granted = granted.min(i64::from(self.batch)) as u32;
                a.grant(granted, crate::clock::now_ms(), self.lease_ms);
                Decision::Allow
            }
            Some((_, wait_us)) => {
                let wait = Duration::from_micros(wait_us.max(0) as u64);
                let until = crate::clock::now_ms() + wait.as_millis() as u64;
                a.denied_until_ms.store(until, Relaxed);
                limiter.limited.fetch_add(1, Relaxed);
                Decision::Deny(wait)
            }
            None => {
                self.fallbacks.fetch_add(1, Relaxed);
                limiter.check(key)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_are_a_tenth_of_the_burst() {
        assert_eq!(batch_for(1), 1);
        assert_eq!(batch_for(50), 5);
        assert_eq!(batch_for(100_000), 100);
    }

    #[test]
    fn an_allowance_is_used_once_per_request_until_it_expires() {
        let a = Allowance {
            left: AtomicU32::new(2),
            until_ms: AtomicU64::new(100),
            granted: AtomicU32::new(3),
            ..Default::default()
        };
        assert!(a.take(10));
        assert!(a.take(10));
        assert!(!a.take(10));
        a.left.store(5, Relaxed);
        assert!(!a.take(100));
        a.denied_until_ms.store(50, Relaxed);
        assert_eq!(a.denied(20), Some(Duration::from_millis(30)));
        assert_eq!(a.denied(50), None);
    }
}
