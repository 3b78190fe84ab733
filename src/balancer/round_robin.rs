//! Round robin, weighted and smooth, without a lock.
//!
//! The reference offered "lockless" (racy, unfair under load) and "locking" (exact, but a mutex)
//! round robin. Neither compromise is needed: the weights are turned once into a *schedule*, the
//! sequence nginx's smooth weighted round robin produces over one full cycle (each step adds every
//! server's weight to its running score, takes the highest, and subtracts the total from it), and
//! each pick takes the next slot with one atomic `fetch_add`. The result is exact (over any full
//! cycle each server gets precisely its weight), interleaved (3:1:2 gives `a c a b c a`, never
//! long runs), and lock-free. Both legacy names map here.
//!
//! A slot whose server cannot be used is skipped to the next slot of the schedule.

use super::{Balancer, Candidates, PickContext};
use std::sync::atomic::{AtomicUsize, Ordering};

/// Longest schedule kept; weights are scaled down (keeping their ratio roughly) beyond it.
const MAX_SCHEDULE: usize = 1 << 16;

#[derive(Debug)]
pub struct RoundRobin {
    schedule: Vec<u32>,
    next: AtomicUsize,
}

impl RoundRobin {
    pub fn new(weights: &[u32]) -> RoundRobin {
        RoundRobin {
            schedule: smooth_schedule(weights),
            next: AtomicUsize::new(0),
        }
    }
}

fn gcd(a: u32, b: u32) -> u32 {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

/// One full cycle of smooth weighted round robin: server indexes, each appearing `weight / g`
/// times (g = gcd of the weights).
pub fn smooth_schedule(weights: &[u32]) -> Vec<u32> {
    let g = weights
        .iter()
        .copied()
        .filter(|w| *w > 0)
        .fold(0, gcd)
        .max(1);
    let mut w: Vec<i64> = weights.iter().map(|x| i64::from(*x / g)).collect();
    let mut total: i64 = w.iter().sum();
    if total as usize > MAX_SCHEDULE {
        let scale = total as f64 / MAX_SCHEDULE as f64;
        for x in &mut w {
            if *x > 0 {
                *x = ((*x as f64 / scale).round() as i64).max(1);
            }
        }
        total = w.iter().sum();
    }
    let mut current = vec![0i64; w.len()];
    let mut out = Vec::with_capacity(total as usize);
    for _ in 0..total {
        let mut best = usize::MAX;
        for i in 0..w.len() {
            if w[i] == 0 {
                continue;
            }
            current[i] += w[i];
            if best == usize::MAX || current[i] > current[best] {
                best = i;
            }
        }
        if best == usize::MAX {
            break;
        }
        current[best] -= total;
        out.push(best as u32);
    }
    out
}

impl Balancer for RoundRobin {
    fn pick(&self, s: &dyn Candidates, _: &PickContext) -> Option<usize> {
        let len = self.schedule.len();
        if len == 0 {
            return None;
        }
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        for k in 0..len {
            let i = self.schedule[(start.wrapping_add(k)) % len] as usize;
            if i < s.len() && s.usable(i) {
                // The slots skipped are consumed for everyone, so the next request goes on
                // from here: an unusable server's turns are spread over the usable ones in
                // schedule order, instead of all going to the server after it (a backup, or a
                // down server, in a cycle of three gave its neighbour two thirds).
                if k > 0 {
                    self.next.fetch_add(k, Ordering::Relaxed);
                }
                return Some(i);
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::balancer::testing::Fake;

    fn run(weights: &[u32], n: usize) -> Vec<usize> {
        let rr = RoundRobin::new(weights);
        let f = Fake::new(weights);
        (0..n)
            .map(|_| rr.pick(&f, &PickContext::default()).unwrap())
            .collect()
    }

    #[test]
    fn plain_round_robin_is_exact() {
        let picks = run(&[1, 1, 1], 30);
        for s in 0..3 {
            assert_eq!(picks.iter().filter(|&&p| p == s).count(), 10);
        }
        assert_eq!(&picks[..6], &[0, 1, 2, 0, 1, 2]);
    }

    #[test]
    fn weighted_is_exact_and_smooth() {
        let picks = run(&[3, 1, 2], 60);
        let counts: Vec<usize> = (0..3)
            .map(|s| picks.iter().filter(|&&p| p == s).count())
            .collect();
        assert_eq!(counts, vec![30, 10, 20]);
        for w in picks.windows(3) {
            assert!(!(w[0] == w[1] && w[1] == w[2]), "three in a row: {picks:?}");
        }
        assert_eq!(smooth_schedule(&[3, 1, 2]), vec![0, 2, 0, 1, 2, 0]);
    }

    #[test]
    fn weights_are_reduced_by_gcd() {
        assert_eq!(smooth_schedule(&[30, 10, 20]), smooth_schedule(&[3, 1, 2]));
    }

    #[test]
    fn an_unusable_servers_turns_are_shared_evenly() {
        // Two primaries and a backup (unusable while they are up), and a down server among
        // four: every usable server keeps an equal share.
        for (weights, unusable) in [(&[1u32, 1, 1][..], 2usize), (&[1, 1, 1, 1][..], 1)] {
            let rr = RoundRobin::new(weights);
            let mut f = Fake::new(weights);
            f.down[unusable] = true;
            let mut counts = vec![0; weights.len()];
            let n = 60 * (weights.len() - 1);
            for _ in 0..n {
                counts[rr.pick(&f, &PickContext::default()).unwrap()] += 1;
            }
            for (i, c) in counts.iter().enumerate() {
                let want = if i == unusable { 0 } else { 60 };
                assert_eq!(*c, want, "{weights:?} {counts:?}");
            }
        }
    }

    #[test]
    fn skips_unusable_servers() {
        let rr = RoundRobin::new(&[1, 1, 1]);
        let mut f = Fake::new(&[1, 1, 1]);
        f.down[1] = true;
        let picks: Vec<usize> = (0..6)
            .map(|_| rr.pick(&f, &PickContext::default()).unwrap())
            .collect();
        assert!(!picks.contains(&1));
        f.down = vec![true; 3];
        assert_eq!(rr.pick(&f, &PickContext::default()), None);
    }

    #[test]
    fn huge_weights_stay_bounded() {
        let s = smooth_schedule(&[1000, 999, 997, 1000, 1000, 1000, 1000, 1000, 1000, 1000]);
        assert!(s.len() <= 10_000);
    }
}
