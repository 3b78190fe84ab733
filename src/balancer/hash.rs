//! Consistent hashing with bounded loads, for `source`, `uri`, `uri-query`, `header:NAME` and
//! `cookie:NAME`.
//!
//! A Ketama-style ring: each server owns `POINTS_PER_WEIGHT x weight` points (xxh3 of its name's
//! hash and the point number; at most [`MAX_POINTS`] in all); a key goes to the first server clockwise from its own hash. Adding or
//! removing one server of N moves only the keys of that server's arcs, about 1/N of them.
//!
//! `hash_balance_factor` (HAProxy's `hash-balance-factor`; Mirrokni, Thorup and Zadimoghaddam,
//! "Consistent Hashing with Bounded Loads", 2016): a server may take a request only if its load
//! after taking it stays within `factor x` the average load. Otherwise the walk goes on clockwise.
//! Keys then stay put while loads are even and spill over when one server is hot, and no server
//! exceeds the bound.
//!
//! A request with no key (no such header or cookie) falls back to round robin.

use super::{round_robin::RoundRobin, Balancer, Candidates, PickContext};
use xxhash_rust::xxh3::xxh3_64;

/// Points on the ring per unit of weight.
pub const POINTS_PER_WEIGHT: u32 = 100;

/// The most points a ring holds (16 bytes each: 2.5 MiB). Past it every server's share is
/// scaled down in proportion, at least one point each, so a pool of heavy weights (1 000 x 100
/// points per server) costs a bounded build: servers added one by one through the admin API
/// each rebuild the ring.
pub const MAX_POINTS: u64 = 160_000;

#[derive(Debug)]
pub struct Ring {
    /// (point, server index), sorted by point.
    points: Vec<(u64, u32)>,
    servers: usize,
    factor: Option<f64>,
    fallback: RoundRobin,
}

/// The hash of a key as the ring reads it.
pub fn key_hash(bytes: &[u8]) -> u64 {
    xxh3_64(bytes)
}

impl Ring {
    /// `servers`: (stable name, weight). `factor`: the load bound (> 1), or none.
    pub fn new(servers: &[(String, u32)], factor: Option<f64>) -> Ring {
        let share = |w: u32| u64::from(w.max(1)) * u64::from(POINTS_PER_WEIGHT);
        let total: u64 = servers.iter().map(|s| share(s.1)).sum();
        let mut points = Vec::with_capacity(total.min(MAX_POINTS) as usize + servers.len());
        for (i, (name, w)) in servers.iter().enumerate() {
            let n = if total > MAX_POINTS {
                (share(*w) * MAX_POINTS / total).max(1)
            } else {
                share(*w)
            };
            // Point k of a server: the hash of its name's hash and k (no string per point).
            let mut buf = [0u8; 16];
            buf[..8].copy_from_slice(&xxh3_64(name.as_bytes()).to_le_bytes());
            for k in 0..n {
                buf[8..].copy_from_slice(&k.to_le_bytes());
                points.push((xxh3_64(&buf), i as u32));
            }
        }
        points.sort_unstable();
        let weights: Vec<u32> = servers.iter().map(|s| s.1).collect();
        Ring {
            points,
            servers: servers.len(),
            factor: factor.filter(|f| *f > 1.0),
            fallback: RoundRobin::new(&weights),
        }
    }
}

impl Balancer for Ring {
    fn pick(&self, s: &dyn Candidates, ctx: &PickContext) -> Option<usize> {
        let Some(key) = ctx.hash else {
            return self.fallback.pick(s, ctx);
        };
        if self.points.is_empty() {
            return None;
        }
        // The bound: (in flight + 1) <= ceil(factor x (total + 1) / usable).
        let bound = self.factor.map(|f| {
            let (total, n) = (0..s.len())
                .filter(|&i| s.usable(i))
                .fold((0usize, 0usize), |(t, n), i| (t + s.in_flight(i), n + 1));
            (f * (total as f64 + 1.0) / n.max(1) as f64).ceil() as usize
        });
        let start = self.points.partition_point(|p| p.0 < key);
        let mut seen = super::Tried::default();
        let mut first_usable = None;
        let mut distinct = 0;
        for k in 0..self.points.len() {
            let i = self.points[(start + k) % self.points.len()].1 as usize;
            if seen.contains(i) {
                continue;
            }
            seen.insert(i);
            distinct += 1;
            if s.usable(i) {
                match bound {
                    Some(b) if s.in_flight(i) + 1 > b => {
                        first_usable.get_or_insert(i);
                    }
                    _ => return Some(i),
                }
            }
            if distinct == self.servers {
                break;
            }
        }
        first_usable
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::balancer::testing::Fake;

    fn servers(n: usize) -> Vec<(String, u32)> {
        (0..n).map(|i| (format!("10.0.0.{i}:80"), 1)).collect()
    }

    fn place(ring: &Ring, f: &Fake, key: u64) -> usize {
        ring.pick(
            f,
            &PickContext {
                client_hint: 0,
                hash: Some(key),
            },
        )
        .unwrap()
    }

    #[test]
    fn removing_one_of_ten_moves_few_keys() {
        let ten = servers(10);
        let nine: Vec<_> = ten[..9].to_vec();
        let (r10, r9) = (Ring::new(&ten, None), Ring::new(&nine, None));
        let (f10, f9) = (Fake::new(&[1; 10]), Fake::new(&[1; 9]));
        let moved = (0..10_000u64)
            .filter(|k| {
                let key = key_hash(&k.to_le_bytes());
                let a = place(&r10, &f10, key);
                let b = place(&r9, &f9, key);
                ten[a].0 != nine[b].0
            })
            .count();
        assert!(moved <= 1_500, "{moved} of 10000 keys moved");
        assert!(moved >= 500, "the removed server's keys must move: {moved}");
    }

    #[test]
    fn bounded_loads_cap_every_server() {
        let ring = Ring::new(&servers(10), Some(1.25));
        let mut f = Fake::new(&[1; 10]);
        // Each key stays as a request in flight: the load the bound is about.
        for k in 0..10_000u64 {
            let i = place(&ring, &f, key_hash(&k.to_le_bytes()));
            f.in_flight[i] += 1;
        }
        let mean = 10_000.0 / 10.0;
        let max = *f.in_flight.iter().max().unwrap() as f64;
        assert!(
            max <= 1.25 * mean + 1.0,
            "max {max} vs mean {mean}: {:?}",
            f.in_flight
        );
        // Unbounded, the same keys are visibly uneven.
        let free = Ring::new(&servers(10), None);
        let mut g = Fake::new(&[1; 10]);
        for k in 0..10_000u64 {
            let i = place(&free, &g, key_hash(&k.to_le_bytes()));
            g.in_flight[i] += 1;
        }
        assert!(
            *g.in_flight.iter().max().unwrap() as f64 > max,
            "{:?}",
            g.in_flight
        );
    }

    #[test]
    fn weights_and_down_servers() {
        let ring = Ring::new(&[("a".into(), 3), ("b".into(), 1)], None);
        let mut f = Fake::new(&[3, 1]);
        let on_a = (0..100_000u64)
            .filter(|k| place(&ring, &f, key_hash(&k.to_le_bytes())) == 0)
            .count();
        assert!((on_a as f64 / 100_000.0 - 0.75).abs() < 0.02, "{on_a}");
        f.down[0] = true;
        assert_eq!(place(&ring, &f, 12345), 1);
        f.down[1] = true;
        assert_eq!(
            ring.pick(
                &f,
                &PickContext {
                    client_hint: 0,
                    hash: Some(1)
                }
            ),
            None
        );
    }

    #[test]
    fn heavy_weights_are_scaled_to_the_bound() {
        // 50 servers of weight 1 000 would be 5 000 000 points.
        let heavy: Vec<_> = (0..50).map(|i| (format!("s{i}"), 1000)).collect();
        let ring = Ring::new(&heavy, None);
        assert!(
            ring.points.len() as u64 <= MAX_POINTS,
            "{}",
            ring.points.len()
        );
        // Proportions hold: one server of weight 3 000 among them gets about 3/53.
        let mut mixed = heavy.clone();
        mixed.push(("big".into(), 3000));
        let ring = Ring::new(&mixed, None);
        let f = Fake::new(&[1; 51]);
        let on_big = (0..100_000u64)
            .filter(|k| place(&ring, &f, key_hash(&k.to_le_bytes())) == 50)
            .count();
        assert!(
            (on_big as f64 / 100_000.0 - 3.0 / 53.0).abs() < 0.01,
            "{on_big}"
        );
        // A weight of 1 among heavy ones keeps a point.
        mixed.push(("light".into(), 1));
        let ring = Ring::new(&mixed, None);
        assert!(ring.points.iter().any(|p| p.1 == 51));
    }

    #[test]
    fn no_key_falls_back_to_round_robin() {
        let ring = Ring::new(&servers(3), None);
        let f = Fake::new(&[1; 3]);
        let picks: Vec<_> = (0..3)
            .map(|_| ring.pick(&f, &PickContext::default()).unwrap())
            .collect();
        assert_eq!(picks, vec![0, 1, 2]);
    }
}
