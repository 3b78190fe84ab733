//! Least connections: the usable server with the fewest requests in flight relative to its
//! weight (in_flight / weight, compared by cross-multiplication, no division). The scan starts
//! at the next slot of the weighted round-robin schedule and keeps the first of equals, so ties
//! (an idle pool) are shared by weight instead of always hitting the first server.

use super::round_robin::smooth_schedule;
use super::{Balancer, Candidates, PickContext};
use std::sync::atomic::{AtomicUsize, Ordering};

#[derive(Debug)]
pub struct LeastConnections {
    rotate: AtomicUsize,
    schedule: Vec<u32>,
}

impl Default for LeastConnections {
    fn default() -> Self {
        LeastConnections::new(&[])
    }
}

impl LeastConnections {
    pub fn new(weights: &[u32]) -> LeastConnections {
        LeastConnections {
            rotate: AtomicUsize::new(0),
            schedule: smooth_schedule(weights),
        }
    }
}

impl Balancer for LeastConnections {
    fn pick(&self, s: &dyn Candidates, _: &PickContext) -> Option<usize> {
        let n = s.len();
        if n == 0 {
            return None;
        }
        let turn = self.rotate.fetch_add(1, Ordering::Relaxed);
        let start = if self.schedule.is_empty() {
            turn % n
        } else {
            self.schedule[turn % self.schedule.len()] as usize % n
        };
        let mut best: Option<(usize, u64, u64)> = None; // (index, in_flight, weight)
        for k in 0..n {
            let i = (start + k) % n;
            if !s.usable(i) {
                continue;
            }
            let load = s.in_flight(i) as u64;
            let w = u64::from(s.weight(i).max(1));
            match best {
                Some((_, bl, bw)) if load * bw >= bl * w => {}
                _ => best = Some((i, load, w)),
            }
        }
        best.map(|b| b.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::balancer::testing::Fake;

    #[test]
    fn avoids_busy_servers() {
        let lc = LeastConnections::default();
        let mut f = Fake::new(&[1, 1, 1]);
        f.in_flight = vec![5, 0, 3];
        for _ in 0..5 {
            assert_eq!(lc.pick(&f, &PickContext::default()), Some(1));
        }
        f.down[1] = true;
        assert_eq!(lc.pick(&f, &PickContext::default()), Some(2));
    }

    #[test]
    fn idle_pool_rotates() {
        let lc = LeastConnections::default();
        let f = Fake::new(&[1, 1, 1]);
        let picks: Vec<usize> = (0..3)
            .map(|_| lc.pick(&f, &PickContext::default()).unwrap())
            .collect();
        let mut sorted = picks.clone();
        sorted.sort();
        assert_eq!(sorted, vec![0, 1, 2]);
    }

    #[test]
    fn idle_pool_follows_weights() {
        let lc = LeastConnections::new(&[5, 1, 3, 1]);
        let f = Fake::new(&[5, 1, 3, 1]);
        let mut c = [0usize; 4];
        for _ in 0..100_000 {
            c[lc.pick(&f, &PickContext::default()).unwrap()] += 1;
        }
        for (got, w) in c.iter().zip([5.0, 1.0, 3.0, 1.0]) {
            assert!((*got as f64 / 100_000.0 - w / 10.0).abs() < 0.02, "{c:?}");
        }
    }

    #[test]
    fn honours_weights() {
        let lc = LeastConnections::default();
        let mut f = Fake::new(&[3, 1]);
        f.in_flight = vec![2, 1]; // 2/3 < 1/1
        assert_eq!(lc.pick(&f, &PickContext::default()), Some(0));
    }
}
