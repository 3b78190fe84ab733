//! Naive: a number tied to the client connection (its source port) picks the server to start
//! from, then the first usable one from there. Near-zero overhead; connections spread by port.

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
        (0..n).map(|k| (start + k) % n).find(|&i| s.usable(i))
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
        assert_eq!(Naive.pick(&f, &ctx(5)), Some(0));
    }
}
