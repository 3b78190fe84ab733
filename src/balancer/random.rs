//! Random choices: weighted `random`, and power of two choices (`p2c`) on requests in flight or
//! on peak-EWMA latency.
//!
//! **Power of two choices** (Mitzenmacher, "The Power of Two Choices in Randomized Load
//! Balancing", 2001): draw two distinct servers at random (weighted) and send the request to the
//! less loaded one. It avoids both round robin's blindness to load and least-connections' herd
//! behaviour (every balancer instance sending the next burst to the same momentarily idle
//! server), at the cost of two random draws. We recommend it as the default for pools whose
//! servers or requests differ (see the README).
//!
//! **Peak EWMA** (Finagle's `PeakEwma`, also tower's `tower::load::PeakEwma`): each server's cost
//! is its smoothed response time times (requests in flight + 1). The smoothing is *peak*
//! sensitive: a slower sample replaces the average at once, while faster samples pull it down
//! exponentially with time constant `tau`. So a server that slows down loses traffic immediately
//! and regains it gradually. Choices are made by p2c over that cost.
//!
//! Randomness comes from [`Rng`], a counter-based generator (SplitMix64 over a seed and an atomic
//! counter): lock-free like round robin's counter, and reproducible from its seed in tests.

use super::{Balancer, Candidates, PickContext};
use std::sync::atomic::{AtomicU64, Ordering};

/// A lock-free, seedable random source: `splitmix64(seed + n * golden)` for n = 0, 1, 2, ...
#[derive(Debug)]
pub struct Rng {
    seed: u64,
    n: AtomicU64,
}

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng {
            seed,
            n: AtomicU64::new(0),
        }
    }

    pub fn next_u64(&self) -> u64 {
        let n = self.n.fetch_add(1, Ordering::Relaxed);
        splitmix64(
            self.seed
                .wrapping_add(n.wrapping_mul(0x9E37_79B9_7F4A_7C15)),
        )
    }

    /// Uniform in `0..bound` (bound > 0), without modulo bias worth measuring (128-bit multiply).
    pub fn below(&self, bound: u64) -> u64 {
        ((u128::from(self.next_u64()) * u128::from(bound)) >> 64) as u64
    }
}

pub fn splitmix64(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Prefix sums of the configured weights, for O(log n) weighted draws.
#[derive(Debug)]
struct Cumulative(Vec<u64>);

impl Cumulative {
    fn new(weights: &[u32]) -> Cumulative {
        let mut acc = 0u64;
        Cumulative(
            weights
                .iter()
                .map(|w| {
                    acc += u64::from((*w).max(1));
                    acc
                })
                .collect(),
        )
    }

    /// A weighted draw among usable servers other than `except`: a few tries by binary search
    /// over the configured weights (most servers are usable), then an exact scan.
    fn draw(&self, rng: &Rng, s: &dyn Candidates, except: Option<usize>) -> Option<usize> {
        if let Some(&total) = self.0.last() {
            if self.0.len() == s.len() {
                for _ in 0..4 {
                    let r = rng.below(total);
                    let i = self.0.partition_point(|&c| c <= r);
                    if Some(i) != except && s.usable(i) {
                        return Some(i);
                    }
                }
            }
        }
        weighted_draw(rng, s, except)
    }
}

/// One weighted random draw among usable servers, skipping `except` (an exact scan).
fn weighted_draw(rng: &Rng, s: &dyn Candidates, except: Option<usize>) -> Option<usize> {
    let total: u64 = (0..s.len())
        .filter(|&i| Some(i) != except && s.usable(i))
        .map(|i| u64::from(s.weight(i).max(1)))
        .sum();
    if total == 0 {
        return None;
    }
    let mut r = rng.below(total);
    for i in 0..s.len() {
        if Some(i) == except || !s.usable(i) {
            continue;
        }
        let w = u64::from(s.weight(i).max(1));
        if r < w {
            return Some(i);
        }
        r -= w;
    }
    None
}

/// Weighted random.
#[derive(Debug)]
pub struct Random {
    rng: Rng,
    weights: Cumulative,
}

impl Random {
    pub fn new(seed: u64, weights: &[u32]) -> Random {
        Random {
            rng: Rng::new(seed),
            weights: Cumulative::new(weights),
        }
    }
}

impl Balancer for Random {
    fn pick(&self, s: &dyn Candidates, _: &PickContext) -> Option<usize> {
        self.weights.draw(&self.rng, s, None)
    }
}

/// What p2c compares. Weights act through the draws (a server of weight 3 is drawn three times
/// as often); costs that tie, as they all do in an idle pool, go to the first draw, so an idle
/// pool is shared exactly by weight.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cost {
    /// Requests in flight per unit of weight.
    InFlight,
    /// Peak-EWMA latency times (in flight + 1), as in Finagle and tower.
    PeakEwma,
}

/// Power of two choices.
#[derive(Debug)]
pub struct P2c {
    rng: Rng,
    cost: Cost,
    weights: Cumulative,
}

impl P2c {
    pub fn new(seed: u64, cost: Cost, weights: &[u32]) -> P2c {
        P2c {
            rng: Rng::new(seed),
            cost,
            weights: Cumulative::new(weights),
        }
    }

    /// The two candidates of one draw: distinct, weighted; the second is `None` when only one
    /// server is usable.
    pub fn draw_two(&self, s: &dyn Candidates) -> Option<(usize, Option<usize>)> {
        let a = self.weights.draw(&self.rng, s, None)?;
        Some((a, self.weights.draw(&self.rng, s, Some(a))))
    }

    fn cost_of(&self, s: &dyn Candidates, i: usize) -> f64 {
        let in_flight = s.in_flight(i) as f64;
        match self.cost {
            Cost::InFlight => in_flight / f64::from(s.weight(i).max(1)),
            Cost::PeakEwma => s.latency(i) * (in_flight + 1.0),
        }
    }
}

impl Balancer for P2c {
    fn pick(&self, s: &dyn Candidates, _: &PickContext) -> Option<usize> {
        match self.draw_two(s)? {
            (a, None) => Some(a),
            // Ties go to the first draw, so an idle pool is shared by weight.
            (a, Some(b)) => Some(if self.cost_of(s, b) < self.cost_of(s, a) {
                b
            } else {
                a
            }),
        }
    }
}

/// Peak-EWMA update of a latency average (any unit): a slower sample is taken at once; a faster
/// one pulls the average down with weight `exp(-elapsed / tau)` on the old value.
pub fn peak_ewma(prev: f64, elapsed_ms: f64, sample: f64, tau_ms: f64) -> f64 {
    if prev <= 0.0 || sample >= prev {
        return sample;
    }
    let keep = (-elapsed_ms.max(0.0) / tau_ms).exp();
    prev * keep + sample * (1.0 - keep)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::balancer::testing::Fake;

    fn shares(b: &dyn Balancer, f: &Fake, n: usize) -> Vec<f64> {
        let mut c = vec![0usize; f.weights.len()];
        for _ in 0..n {
            c[b.pick(f, &PickContext::default()).unwrap()] += 1;
        }
        c.iter().map(|&x| x as f64 / n as f64).collect()
    }

    fn assert_shares(got: &[f64], weights: &[u32]) {
        let total: u32 = weights.iter().sum();
        for (g, w) in got.iter().zip(weights) {
            let want = f64::from(*w) / f64::from(total);
            assert!(
                (g - want).abs() < 0.02,
                "share {g:.4} vs weight share {want:.4}: {got:?}"
            );
        }
    }

    #[test]
    fn random_and_p2c_follow_weights_over_100k_picks() {
        let weights = [5, 1, 3, 1];
        let f = Fake::new(&weights);
        assert_shares(&shares(&Random::new(7, &weights), &f, 100_000), &weights);
        assert_shares(
            &shares(&P2c::new(7, Cost::InFlight, &weights), &f, 100_000),
            &weights,
        );
        assert_shares(
            &shares(&P2c::new(9, Cost::PeakEwma, &weights), &f, 100_000),
            &weights,
        );
        // With one server unusable, the others keep their relative shares.
        let mut g = Fake::new(&weights);
        g.down[0] = true;
        let got = shares(&P2c::new(5, Cost::InFlight, &weights), &g, 100_000);
        assert_eq!(got[0], 0.0);
        assert_shares(&got[1..], &weights[1..]);
    }

    #[test]
    fn p2c_draws_two_distinct_servers() {
        let p = P2c::new(1, Cost::InFlight, &[1, 2, 3]);
        let mut f = Fake::new(&[1, 2, 3]);
        for _ in 0..10_000 {
            let (a, b) = p.draw_two(&f).unwrap();
            assert_ne!(Some(a), b);
            assert!(b.is_some());
        }
        f.down = vec![true, false, true];
        assert_eq!(p.draw_two(&f), Some((1, None)));
        f.down = vec![true; 3];
        assert_eq!(p.draw_two(&f), None);
    }

    #[test]
    fn p2c_prefers_the_less_loaded() {
        let p = P2c::new(3, Cost::InFlight, &[1, 1]);
        let mut f = Fake::new(&[1, 1]);
        f.in_flight = vec![9, 0];
        for _ in 0..100 {
            assert_eq!(p.pick(&f, &PickContext::default()), Some(1));
        }
    }

    #[test]
    fn seeded_runs_repeat() {
        let f = Fake::new(&[1, 1, 1, 1]);
        let r = Random::new(42, &[1; 4]);
        let b: Vec<_> = (0..50)
            .map(|_| r.pick(&f, &PickContext::default()))
            .collect();
        let r2 = Random::new(42, &[1; 4]);
        let c: Vec<_> = (0..50)
            .map(|_| r2.pick(&f, &PickContext::default()))
            .collect();
        assert_eq!(b, c);
    }

    #[test]
    fn peak_ewma_jumps_up_and_decays_down() {
        assert_eq!(peak_ewma(0.0, 0.0, 5.0, 10_000.0), 5.0);
        assert_eq!(
            peak_ewma(1.0, 100.0, 50.0, 10_000.0),
            50.0,
            "a slower sample is taken at once"
        );
        let after = peak_ewma(50.0, 10_000.0, 1.0, 10_000.0);
        assert!((after - (50.0 * (-1f64).exp() + 1.0 * (1.0 - (-1f64).exp()))).abs() < 1e-9);
        assert!(
            peak_ewma(50.0, 0.0, 1.0, 10_000.0) > 49.9,
            "no time passed: no decay"
        );
    }

    /// A small queueing simulation: three servers, one 10x slower. Each step a request arrives
    /// and is placed by the balancer; it finishes after its server's latency in steps. After a
    /// warm-up, the slow server must get under 10% of new requests.
    #[test]
    fn peak_ewma_starves_a_slow_server() {
        let latency = [1.0f64, 1.0, 10.0];
        let p = P2c::new(11, Cost::PeakEwma, &[1, 1, 1]);
        let mut f = Fake::new(&[1, 1, 1]);
        let mut ewma = [0.0f64; 3];
        let mut running: Vec<(usize, usize)> = Vec::new(); // (server, finishes at step)
        let mut picks_after_warmup = [0usize; 3];
        for step in 0..20_000usize {
            running.retain(|&(srv, end)| {
                if end <= step {
                    f.in_flight[srv] -= 1;
                    false
                } else {
                    true
                }
            });
            f.latency = ewma
                .iter()
                .map(|&e| if e == 0.0 { 1.0 } else { e })
                .collect();
            let i = p.pick(&f, &PickContext::default()).unwrap();
            f.in_flight[i] += 1;
            // latency grows with queueing: the server's base latency times its load
            let took = latency[i] * f.in_flight[i] as f64;
            running.push((i, step + took.ceil() as usize));
            ewma[i] = peak_ewma(ewma[i], 1.0, took, 50.0);
            if step >= 2_000 {
                picks_after_warmup[i] += 1;
            }
        }
        let total: usize = picks_after_warmup.iter().sum();
        let slow = picks_after_warmup[2] as f64 / total as f64;
        assert!(
            slow < 0.10,
            "slow server got {:.1}% ({picks_after_warmup:?})",
            slow * 100.0
        );
    }
}
