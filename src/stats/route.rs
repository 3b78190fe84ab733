//! A route's counters: its responses by status class, the requests its `deny`/`allow`
//! refused, and the request duration as its clients see it (from the request head to the end
//! of the response body, or the client leaving).
//!
//! The request path reaches them through its snapshot's route (`RouteRt::stats`): the status
//! class is counted as the response leaves the pipeline, and the response body holds them until
//! it ends for the duration. A reference count, two clock reads and three relaxed atomic adds
//! per request, no lock.

use super::histogram::Latency;
use crate::session::counters::class;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

#[derive(Debug, Default)]
pub struct RouteStats {
    /// What the route matches on, so a reload keeps the counters of a route only when the
    /// route in its place is the same.
    pub identity: String,
    /// Responses by class: 1xx..5xx, then anything else.
    classes: [AtomicU64; 6],
    /// Requests refused by the route's `deny`/`allow` (403).
    pub denied: AtomicU64,
    /// Seconds from the request head to the end of the response body.
    pub duration: Latency,
}

impl RouteStats {
    pub fn new(identity: String) -> RouteStats {
        RouteStats {
            identity,
            ..RouteStats::default()
        }
    }

    /// A request of the route is answered with `status`; `denied`: by the route's
    /// `deny`/`allow`. (Its duration goes to [`RouteStats::duration`] when the body ends.)
    #[inline]
    pub fn answered(&self, status: u16, denied: bool) {
        self.classes[class(status)].fetch_add(1, Relaxed);
        if denied {
            self.denied.fetch_add(1, Relaxed);
        }
    }

    /// Responses by class: 1xx..5xx, then anything else.
    pub fn classes(&self) -> [u64; 6] {
        let mut out = [0; 6];
        for (o, c) in out.iter_mut().zip(&self.classes) {
            *o = c.load(Relaxed);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn counts_by_class_and_times() {
        let r = RouteStats::new("x".into());
        for (status, took, denied) in [(200, 3_000, false), (403, 10, true), (0, 20_000_000, false)]
        {
            r.answered(status, denied);
            r.duration.observe(Duration::from_micros(took));
        }
        assert_eq!(r.classes(), [0, 1, 0, 1, 0, 1]);
        assert_eq!(r.denied.load(Relaxed), 1);
        let (_, count, buckets) = r.duration.snapshot();
        assert_eq!((count, buckets[2].1), (3, 2));
    }
}
