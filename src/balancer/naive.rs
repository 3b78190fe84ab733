//! Naive: a number tied to the client connection (its source port) picks the server: the
//! server at that position when every server is usable, else that position among the usable
//! ones, so a down server's (or a waiting backup's) connections spread evenly instead of all
//! going to the server after it. Near-zero overhead; connections spread by port.

use super::{Balancer, Candidates, PickContext};

#[derive(Debug, Default)]
pub struct Naive;

impl Balancer for Naive {
    fn pick(&self, s: &dyn Candidates, ctx: &PickContext) -> Option<usize> {
        let n = s.len();
        if n == 0 {
            return None;
        }
        let start = (ctx.client_hint % n as u64) as usize;
        if s.usable(start) {
            return Some(start);
        }
        let usable = (0..n).filter(|&i| s.usable(i)).count();
        if usable == 0 {
            return None;
        }
        let k = (ctx.client_hint % usable as u64) as usize;
        (0..n).filter(|&i| s.usable(i)).nth(k)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::balancer::testing::Fake;

    #[test]
    fn starts_from_the_hint_and_skips_dead() {
        let mut f = Fake::new(&[1, 1, 1]);
        let ctx = |h| PickContext {
            client_hint: h,
            hash: None,
        };
        assert_eq!(Naive.pick(&f, &ctx(4)), Some(1));
        assert_eq!(Naive.pick(&f, &ctx(5)), Some(2));
        f.down[2] = true;
        assert_eq!(Naive.pick(&f, &ctx(5)), Some(1));
    }

    #[test]
    fn an_unusable_servers_share_is_spread_evenly() {
        let mut f = Fake::new(&[1, 1, 1]);
        f.down[2] = true;
        let mut counts = [0; 3];
        for port in 0..600u64 {
            let ctx = PickContext {
                client_hint: port,
                hash: None,
            };
            counts[Naive.pick(&f, &ctx).unwrap()] += 1;
        }
        assert_eq!(counts, [300, 300, 0]);
    }
}
