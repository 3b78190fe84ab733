//! A server's response-time histogram and a pool's retry budget: atomics only.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Upper bounds (seconds) of the response-time histogram's buckets.
pub const LATENCY_BUCKETS: [f64; 12] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0,
];

/// A fixed-bucket histogram of response times: two relaxed atomic adds per sample.
#[derive(Debug, Default)]
pub struct Latency {
    /// One per bound, then one for everything above the last.
    buckets: [AtomicU64; 13],
    sum_us: AtomicU64,
}

impl Latency {
    pub fn observe(&self, d: Duration) {
        let secs = d.as_secs_f64();
        let i = LATENCY_BUCKETS
            .iter()
            .position(|b| secs <= *b)
            .unwrap_or(LATENCY_BUCKETS.len());
        self.buckets[i].fetch_add(1, Ordering::Relaxed);
        self.sum_us
            .fetch_add(d.as_micros() as u64, Ordering::Relaxed);
    }

    pub fn copy_from(&self, other: &Latency) {
        for (a, b) in self.buckets.iter().zip(&other.buckets) {
            a.store(b.load(Ordering::Relaxed), Ordering::Relaxed);
        }
        self.sum_us
            .store(other.sum_us.load(Ordering::Relaxed), Ordering::Relaxed);
    }

    /// (sum in seconds, count, cumulative (bound, count) pairs ending with +Inf).
    pub fn snapshot(&self) -> (f64, u64, Vec<(f64, u64)>) {
        let mut acc = 0;
        let mut out = Vec::with_capacity(self.buckets.len());
        for (i, b) in self.buckets.iter().enumerate() {
            acc += b.load(Ordering::Relaxed);
            out.push((
                LATENCY_BUCKETS.get(i).copied().unwrap_or(f64::INFINITY),
                acc,
            ));
        }
        (self.sum_us.load(Ordering::Relaxed) as f64 / 1e6, acc, out)
    }
}

/// A retry budget as a token bucket (as in Finagle and linkerd): every request deposits `ratio`
/// of a token, every retry withdraws one. So retries stay within `ratio` of the traffic, however
/// many servers fail, and a dying pool is not hit by a retry storm. A small reserve lets a quiet
/// pool still retry. Tokens are kept in thousandths, in one atomic.
#[derive(Debug)]
pub struct RetryBudget {
    milli: std::sync::atomic::AtomicI64,
    deposit: i64,
}

impl RetryBudget {
    /// Tokens a pool starts with, and the most it keeps beyond what its traffic earned.
    pub const RESERVE: i64 = 10;
    /// The most tokens the bucket holds.
    pub const CAP: i64 = 1000;

    pub fn new(ratio: f64) -> RetryBudget {
        RetryBudget {
            milli: std::sync::atomic::AtomicI64::new(Self::RESERVE * 1000),
            deposit: (ratio * 1000.0).round() as i64,
        }
    }

    /// A request came: deposit its share.
    pub fn deposit(&self) {
        let v = self.milli.fetch_add(self.deposit, Ordering::Relaxed) + self.deposit;
        if v > Self::CAP * 1000 {
            self.milli.store(Self::CAP * 1000, Ordering::Relaxed);
        }
    }

    /// May a retry happen? Takes a token if so.
    pub fn withdraw(&self) -> bool {
        if self.milli.fetch_sub(1000, Ordering::Relaxed) >= 1000 {
            true
        } else {
            self.milli.fetch_add(1000, Ordering::Relaxed);
            false
        }
    }
}
