//! Balancing: which server of a pool takes the next request.
//!
//! Balancers are pure: they see the pool through [`Candidates`] (weights, requests in flight,
//! whether a server may be picked now) and keep only their own rotation counter. No IO, no clock.
//! The proxy asks again after a failed connect; the server it tried is then no longer usable, so
//! a balancer never needs to know about retries.

mod first_alive;
mod least_conn;
mod naive;
mod round_robin;

pub use first_alive::FirstAlive;
pub use least_conn::LeastConnections;
pub use naive::Naive;
pub use round_robin::{smooth_schedule, RoundRobin};

use crate::config::BalanceMethod;

/// The pool as a balancer sees it at one moment.
pub trait Candidates {
    fn len(&self) -> usize;
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Static weight (>= 1).
    fn weight(&self, i: usize) -> u32;
    /// Requests in flight right now.
    fn in_flight(&self, i: usize) -> usize;
    /// May this server be picked for this request (alive, not yet tried, ...)?
    fn usable(&self, i: usize) -> bool;
}

/// What a balancer may know about the request.
#[derive(Debug, Clone, Copy, Default)]
pub struct PickContext {
    /// A number tied to the client connection (its source port), for [`Naive`].
    pub client_hint: u64,
}

/// One balancing policy.
pub trait Balancer: Send + Sync + std::fmt::Debug {
    fn pick(&self, servers: &dyn Candidates, ctx: &PickContext) -> Option<usize>;
}

/// Builds the balancer for a method over servers with these weights.
pub fn build(method: BalanceMethod, weights: &[u32]) -> Box<dyn Balancer> {
    match method {
        BalanceMethod::Naive => Box::new(Naive),
        BalanceMethod::FirstAlive => Box::new(FirstAlive),
        BalanceMethod::RoundRobin => Box::new(RoundRobin::new(weights)),
        BalanceMethod::LeastConnections => Box::new(LeastConnections::default()),
    }
}

/// Test helper: a plain vector of servers.
#[cfg(test)]
pub(crate) mod testing {
    use super::Candidates;

    #[derive(Clone)]
    pub struct Fake {
        pub weights: Vec<u32>,
        pub in_flight: Vec<usize>,
        pub down: Vec<bool>,
    }

    impl Fake {
        pub fn new(weights: &[u32]) -> Fake {
            Fake {
                weights: weights.to_vec(),
                in_flight: vec![0; weights.len()],
                down: vec![false; weights.len()],
            }
        }
    }

    impl Candidates for Fake {
        fn len(&self) -> usize {
            self.weights.len()
        }
        fn weight(&self, i: usize) -> u32 {
            self.weights[i]
        }
        fn in_flight(&self, i: usize) -> usize {
            self.in_flight[i]
        }
        fn usable(&self, i: usize) -> bool {
            !self.down[i]
        }
    }
}
