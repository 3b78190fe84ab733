//! Hit ratio of the cache's store (quick_cache, a CLOCK-PRO-like policy with a ghost list)
//! against plain LRU on Zipf-distributed requests, with a one-hit-wonder scan mixed in.
//! Run: `cd bench/micro && cargo run --release --example zipf_hit_ratio`.

use std::num::NonZeroUsize;

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> f64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        ((z ^ (z >> 31)) >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// Cumulative Zipf weights over `n` keys with exponent `s`.
fn zipf(n: usize, s: f64) -> Vec<f64> {
    let mut acc = 0.0;
    let mut out = Vec::with_capacity(n);
    for k in 1..=n {
        acc += 1.0 / (k as f64).powf(s);
        out.push(acc);
    }
    let total = acc;
    out.iter_mut().for_each(|x| *x /= total);
    out
}

fn main() {
    let keys = 100_000;
    let requests = 2_000_000;
    println!("keys={keys} requests={requests}; capacity as a share of the key space");
    println!(
        "{:>6} {:>6} {:>8} {:>12} {:>8}",
        "s", "cap%", "scan%", "quick_cache", "lru"
    );
    for &s in &[0.7, 0.9, 1.1] {
        let cdf = zipf(keys, s);
        for &cap_pct in &[1usize, 5, 10] {
            for &scan_pct in &[0u64, 30] {
                let cap = keys * cap_pct / 100;
                let qc = quick_cache::sync::Cache::<u64, ()>::new(cap);
                let mut lru = lru::LruCache::<u64, ()>::new(NonZeroUsize::new(cap).unwrap());
                let (mut qh, mut lh) = (0u64, 0u64);
                let mut rng = Rng(7);
                let mut wonder = keys as u64;
                for _ in 0..requests {
                    let key = if (rng.next() * 100.0) < scan_pct as f64 {
                        wonder += 1; // a key requested once, never again
                        wonder
                    } else {
                        let u = rng.next();
                        cdf.partition_point(|&c| c < u) as u64
                    };
                    if qc.get(&key).is_some() {
                        qh += 1;
                    } else {
                        qc.insert(key, ());
                    }
                    if lru.get(&key).is_some() {
                        lh += 1;
                    } else {
                        lru.put(key, ());
                    }
                }
                let r = |h: u64| 100.0 * h as f64 / requests as f64;
                println!(
                    "{s:>6} {cap_pct:>6} {scan_pct:>8} {:>11.1}% {:>7.1}%",
                    r(qh),
                    r(lh)
                );
            }
        }
    }
}
