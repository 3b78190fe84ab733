//! First-Alive: the first usable server in list order. Almost no overhead; not fair by design
//! (the first server takes everything while it is alive).

use super::{Balancer, Candidates, PickContext};

#[derive(Debug, Default)]
pub struct FirstAlive;

impl Balancer for FirstAlive {
    fn pick(&self, s: &dyn Candidates, _: &PickContext) -> Option<usize> {
        (0..s.len()).find(|&i| s.usable(i))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::balancer::testing::Fake;

    #[test]
    fn takes_the_first_usable() {
        let mut f = Fake::new(&[1, 1, 1]);
        assert_eq!(FirstAlive.pick(&f, &PickContext::default()), Some(0));
        f.down[0] = true;
        assert_eq!(FirstAlive.pick(&f, &PickContext::default()), Some(1));
        f.down = vec![true; 3];
        assert_eq!(FirstAlive.pick(&f, &PickContext::default()), None);
    }
}
