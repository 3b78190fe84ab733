//! A fixed-bucket histogram of durations in atomics: a server's response time, a route's
//! request duration as its clients see it.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Upper bounds (seconds) of the histogram's buckets.
pub const LATENCY_BUCKETS: [f64; 12] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0,
];

/// [`LATENCY_BUCKETS`] in microseconds, for the request path's integer comparison.
const BOUNDS_US: [u64; 12] = [
    1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000, 1_000_000, 2_500_000,
    10_000_000,
];

/// A fixed-bucket histogram of durations: two relaxed atomic adds per sample.
#[derive(Debug, Default)]
pub struct Latency {
    /// One per bound, then one for everything above the last.
    buckets: [AtomicU64; 13],
    sum_us: AtomicU64,
}

impl Latency {
    #[inline]
    pub fn observe(&self, d: Duration) {
        let us = d.as_micros().min(u128::from(u64::MAX)) as u64;
        let i = BOUNDS_US
            .iter()
            .position(|b| us <= *b)
            .unwrap_or(BOUNDS_US.len());
        self.buckets[i].fetch_add(1, Ordering::Relaxed);
        self.sum_us.fetch_add(us, Ordering::Relaxed);
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounds_are_inclusive_and_cumulative() {
        let h = Latency::default();
        for ms in [0, 1, 2, 30, 20_000] {
            h.observe(Duration::from_millis(ms));
        }
        let (sum, count, b) = h.snapshot();
        assert_eq!(count, 5);
        assert!((sum - 20.033).abs() < 1e-9, "{sum}");
        assert_eq!(b[0], (0.001, 2));
        assert_eq!(b[1], (0.0025, 3));
        assert_eq!(b[5], (0.05, 4));
        assert_eq!(b[12], (f64::INFINITY, 5));
        for (us, s) in BOUNDS_US.iter().zip(LATENCY_BUCKETS) {
            assert_eq!(*us as f64 / 1e6, s);
        }
    }
}
