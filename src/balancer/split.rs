//! A route's traffic split across pools (`pools = [{ pool = "v1", weight = 95 }, ...]`): which
//! pool takes a request. The weights become one cycle of smooth weighted round robin (as the
//! `round-robin` balancer's), so over any full cycle each pool gets exactly its share (95:5
//! is 19:1, the one `v2` request spread among the `v1` ones), with one atomic increment per
//! request. A client whose sticky cookie names a server of one of the pools stays on that pool
//! (the caller finds it). Pure: no clock, no IO.

use super::smooth_schedule;
use std::sync::atomic::{AtomicUsize, Ordering};

#[derive(Debug)]
pub struct Split {
    /// The pools (indexes into the runtime's pools), in the order written.
    pub pools: Vec<usize>,
    /// One cycle of positions in `pools`.
    schedule: Vec<u32>,
    next: AtomicUsize,
}

impl Split {
    /// `split`: (pool index, weight) in the order written; weights 0 to 1000, not all 0.
    pub fn new(split: &[(usize, u32)]) -> Split {
        let weights: Vec<u32> = split.iter().map(|(_, w)| *w).collect();
        Split {
            pools: split.iter().map(|(p, _)| *p).collect(),
            schedule: smooth_schedule(&weights),
            next: AtomicUsize::new(0),
        }
    }

    /// The pool of this request: `stuck` (a pool of the split a cookie named) if given, else the
    /// next in the schedule.
    pub fn pick(&self, stuck: Option<usize>) -> usize {
        if let Some(p) = stuck.filter(|p| self.pools.contains(p)) {
            return p;
        }
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        match self.schedule.get(n % self.schedule.len().max(1)) {
            Some(at) => self.pools[*at as usize],
            None => self.pools[0],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shares_follow_the_weights_exactly() {
        let s = Split::new(&[(3, 95), (7, 5)]);
        let picks: Vec<usize> = (0..10_000).map(|_| s.pick(None)).collect();
        assert_eq!(picks.iter().filter(|p| **p == 7).count(), 500);
        // Spread: never two v2 requests within a cycle of 20.
        assert!(picks
            .windows(20)
            .all(|w| w.iter().filter(|p| **p == 7).count() <= 1));
        assert_eq!(s.pick(Some(7)), 7);
        assert_eq!(s.pick(Some(3)), 3);
        // A pool outside the split is not a choice.
        assert!(matches!(s.pick(Some(9)), 3 | 7));
        // A pool of weight 0 gets only its stuck clients.
        let s = Split::new(&[(0, 1), (1, 0)]);
        assert!((0..100).all(|_| s.pick(None) == 0));
        assert_eq!(s.pick(Some(1)), 1);
    }
}
