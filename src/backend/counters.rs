//! A server's response-time histogram (the one of [`crate::stats::histogram`]) and a pool's
//! retry budget: atomics only.

use std::sync::atomic::Ordering;

pub use crate::stats::histogram::{Latency, LATENCY_BUCKETS};

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
