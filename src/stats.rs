//! Instance-wide traffic counters and the per-second history the dashboard draws; the
//! listeners' counters (kept in `session::counters`, where connections reach them), a route's
//! ([`route`]), and the histogram both routes and servers use ([`histogram`]).
//!
//! Counters are sharded by worker thread (each shard on its own cache line), so counting a
//! response is an uncontended atomic add on the worker's own line; readers sum the shards.

pub mod histogram;
pub mod route;

use crate::worker::worker_id;
use serde::Serialize;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Mutex;

const SHARDS: usize = 64;

/// Seconds of history kept (ten minutes).
pub const HISTORY: usize = 600;

#[derive(Debug, Default)]
#[repr(align(64))]
struct Shard {
    /// Responses by class: 1xx..5xx, then anything else.
    classes: [AtomicU64; 6],
}

#[derive(Debug)]
pub struct Traffic {
    shards: Box<[Shard]>,
    started_unix: u64,
    history: Mutex<VecDeque<Sample>>,
    /// Client connections closed by the PROXY protocol's rules, before any HTTP.
    pub proxy_refused: ProxyRefusals,
    /// TLS handshakes with clients that failed, by reason.
    pub tls_failures: TlsFailures,
    /// The listeners' counters (HAProxy's `FRONTEND` figures).
    pub listeners: crate::session::counters::Listeners,
}

/// Failed TLS handshakes with clients, by the reasons of
/// [`crate::tls::client_auth::FAILURE_REASONS`] (rare: a plain counter each, not sharded).
#[derive(Debug, Default)]
pub struct TlsFailures([AtomicU64; crate::tls::client_auth::FAILURE_REASONS.len()]);

impl TlsFailures {
    /// Counts one failure of `reason` (one of the reasons; another counts as `protocol`).
    pub fn count(&self, reason: &str) {
        let reasons = crate::tls::client_auth::FAILURE_REASONS;
        let i = reasons
            .iter()
            .position(|r| *r == reason)
            .unwrap_or(reasons.len() - 1);
        self.0[i].fetch_add(1, Relaxed);
    }

    /// Each reason with its count.
    pub fn counts(&self) -> impl Iterator<Item = (&'static str, u64)> + '_ {
        crate::tls::client_auth::FAILURE_REASONS
            .iter()
            .zip(&self.0)
            .map(|(r, c)| (*r, c.load(Relaxed)))
    }
}

impl Serialize for TlsFailures {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_map(self.counts())
    }
}

/// Client connections closed before any HTTP was read because of the PROXY protocol, by
/// reason (rare: a plain counter each, not sharded).
#[derive(Debug, Default, Serialize)]
pub struct ProxyRefusals {
    /// From a peer outside `proxy_protocol_from`.
    pub untrusted: AtomicU64,
    /// No PROXY header: other bytes first, or none before the client closed.
    pub missing: AtomicU64,
    /// A PROXY signature with a bad header after it (an address, a length, a version), or one
    /// longer than the bound.
    pub malformed: AtomicU64,
    /// No complete header within `proxy_protocol_timeout`.
    pub timeout: AtomicU64,
}

impl Default for Traffic {
    fn default() -> Self {
        Traffic {
            shards: (0..SHARDS).map(|_| Shard::default()).collect(),
            started_unix: crate::cache::policy::unix_now(),
            history: Mutex::new(VecDeque::with_capacity(HISTORY)),
            proxy_refused: ProxyRefusals::default(),
            tls_failures: TlsFailures::default(),
            listeners: Default::default(),
        }
    }
}

/// Totals since start.
#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq, Eq)]
pub struct Totals {
    pub requests: u64,
    #[serde(rename = "1xx")]
    pub c1xx: u64,
    #[serde(rename = "2xx")]
    pub c2xx: u64,
    #[serde(rename = "3xx")]
    pub c3xx: u64,
    #[serde(rename = "4xx")]
    pub c4xx: u64,
    #[serde(rename = "5xx")]
    pub c5xx: u64,
    pub other: u64,
}

/// One second of traffic (rates per second over the sampling interval).
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Sample {
    /// Seconds since the Unix epoch.
    pub t: u64,
    pub rps: f64,
    #[serde(rename = "2xx")]
    pub r2xx: f64,
    #[serde(rename = "3xx")]
    pub r3xx: f64,
    #[serde(rename = "4xx")]
    pub r4xx: f64,
    #[serde(rename = "5xx")]
    pub r5xx: f64,
    /// Cache hits and misses per second, and the hit ratio over the second (0..1; null when
    /// nothing was looked up).
    pub hits: f64,
    pub misses: f64,
    pub hit_ratio: Option<f64>,
    /// Bytes per second received from and sent to clients, over every listener.
    pub bytes_in: f64,
    pub bytes_out: f64,
}

impl Traffic {
    /// Counts one response sent to a client.
    pub fn count(&self, status: u16) {
        let class = crate::session::counters::class(status);
        self.shards[worker_id() % SHARDS].classes[class].fetch_add(1, Relaxed);
    }

    pub fn totals(&self) -> Totals {
        let mut c = [0u64; 6];
        for s in self.shards.iter() {
            for (i, v) in s.classes.iter().enumerate() {
                c[i] += v.load(Relaxed);
            }
        }
        Totals {
            requests: c.iter().sum(),
            c1xx: c[0],
            c2xx: c[1],
            c3xx: c[2],
            c4xx: c[3],
            c5xx: c[4],
            other: c[5],
        }
    }

    pub fn uptime_secs(&self) -> u64 {
        crate::cache::policy::unix_now().saturating_sub(self.started_unix)
    }

    /// Appends a sample computed from two readings `secs` apart, and measures the listeners'
    /// rates over the same time.
    pub fn record(&self, prev: (Totals, u64, u64), now: (Totals, u64, u64), secs: f64) {
        let (a, ah, am) = prev;
        let (b, bh, bm) = now;
        let per = |x: u64, y: u64| y.saturating_sub(x) as f64 / secs.max(1e-3);
        let (hits, misses) = (per(ah, bh), per(am, bm));
        let (mut bytes_in, mut bytes_out) = (0.0, 0.0);
        for l in self.listeners.all() {
            let r = l.sample(secs);
            bytes_in += r.bytes_in;
            bytes_out += r.bytes_out;
        }
        let sample = Sample {
            t: crate::cache::policy::unix_now(),
            rps: per(a.requests, b.requests),
            r2xx: per(a.c2xx, b.c2xx),
            r3xx: per(a.c3xx, b.c3xx),
            r4xx: per(a.c4xx, b.c4xx),
            r5xx: per(a.c5xx + a.other + a.c1xx, b.c5xx + b.other + b.c1xx),
            hits,
            misses,
            hit_ratio: (hits + misses > 0.0).then(|| hits / (hits + misses)),
            bytes_in,
            bytes_out,
        };
        let mut h = self.history.lock().unwrap_or_else(|p| p.into_inner());
        if h.len() == HISTORY {
            h.pop_front();
        }
        h.push_back(sample);
    }

    /// Oldest first.
    pub fn history(&self) -> Vec<Sample> {
        self.history
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .copied()
            .collect()
    }

    pub fn last(&self) -> Option<Sample> {
        self.history
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .back()
            .copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classes_and_rates() {
        let t = Traffic::default();
        let before = (t.totals(), 0, 0);
        for s in [200, 204, 404, 503, 101, 302, 700] {
            t.count(s);
        }
        let now = t.totals();
        assert_eq!(
            now,
            Totals {
                requests: 7,
                c1xx: 1,
                c2xx: 2,
                c3xx: 1,
                c4xx: 1,
                c5xx: 1,
                other: 1
            }
        );
        t.record(before, (now, 3, 1), 0.5);
        let s = t.last().unwrap();
        assert_eq!(s.rps, 14.0);
        assert_eq!(s.r2xx, 4.0);
        assert_eq!(s.hit_ratio, Some(0.75));
    }
}
