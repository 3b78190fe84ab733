//! Balancing: which server of a pool takes the next request.
//!
//! Balancers are pure: they see the pool through [`Candidates`] (weights, requests in flight,
//! whether a server may be picked now) and keep only their own rotation counter. No IO, no clock.
//! The proxy asks again after a failed connect; the server it tried is then no longer usable, so
//! a balancer never needs to know about retries.

mod first_alive;
pub mod hash;
mod least_conn;
mod naive;
pub mod random;
mod round_robin;
pub mod split;
pub mod sticky;

pub use first_alive::FirstAlive;
pub use least_conn::LeastConnections;
pub use naive::Naive;
pub use round_robin::{smooth_schedule, RoundRobin};

use crate::config::{BalanceMethod, HashOn};

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
    /// Smoothed (peak-EWMA) response time, any unit; only `peak-ewma` reads it.
    fn latency(&self, _i: usize) -> f64 {
        1.0
    }
}

/// What a balancer may know about the request.
#[derive(Debug, Clone, Copy, Default)]
pub struct PickContext {
    /// A number tied to the client connection (its source port), for [`Naive`].
    pub client_hint: u64,
    /// The request's key hash for the hashing methods (`None`: no key, e.g. no such cookie).
    pub hash: Option<u64>,
}

/// One balancing policy.
pub trait Balancer: Send + Sync + std::fmt::Debug {
    fn pick(&self, servers: &dyn Candidates, ctx: &PickContext) -> Option<usize>;
}

/// Builds the balancer for a method over servers `(stable name, weight)`. `seed` feeds the
/// random methods; `factor` is the hashing methods' load bound.
pub fn build(
    method: &BalanceMethod,
    servers: &[(String, u32)],
    seed: u64,
    factor: Option<f64>,
) -> Box<dyn Balancer> {
    let weights: Vec<u32> = servers.iter().map(|s| s.1).collect();
    match method {
        BalanceMethod::Naive => Box::new(Naive),
        BalanceMethod::FirstAlive => Box::new(FirstAlive),
        BalanceMethod::RoundRobin => Box::new(RoundRobin::new(&weights)),
        BalanceMethod::LeastConnections => Box::new(LeastConnections::new(&weights)),
        BalanceMethod::Random => Box::new(random::Random::new(seed, &weights)),
        BalanceMethod::P2c => Box::new(random::P2c::new(seed, random::Cost::InFlight, &weights)),
        BalanceMethod::PeakEwma => {
            Box::new(random::P2c::new(seed, random::Cost::PeakEwma, &weights))
        }
        BalanceMethod::Hash(_) => Box::new(hash::Ring::new(servers, factor)),
    }
}

/// The request key a hashing method reads, hashed; `None` when the request has none.
pub fn request_key(
    on: &HashOn,
    client_ip: std::net::IpAddr,
    uri: &http::Uri,
    headers: &http::HeaderMap,
) -> Option<u64> {
    match on {
        HashOn::Source => Some(match client_ip {
            std::net::IpAddr::V4(v4) => hash::key_hash(&v4.octets()),
            std::net::IpAddr::V6(v6) => hash::key_hash(&v6.octets()),
        }),
        HashOn::Uri => Some(hash::key_hash(uri.path().as_bytes())),
        HashOn::UriQuery => Some(hash::key_hash(
            uri.path_and_query()
                .map(|p| p.as_str())
                .unwrap_or("/")
                .as_bytes(),
        )),
        HashOn::Header(name) => headers
            .get(name.as_str())
            .map(|v| hash::key_hash(v.as_bytes())),
        HashOn::Cookie(name) => headers
            .get_all(http::header::COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(';'))
            .filter_map(|kv| kv.trim().split_once('='))
            .find(|(k, _)| *k == name)
            .map(|(_, v)| hash::key_hash(v.trim().as_bytes())),
    }
}

/// Test helper: a plain vector of servers.
/// Which servers one request has tried already (a bitset; no allocation up to 128 servers).
#[derive(Debug, Default)]
pub struct Tried {
    small: u128,
    large: Vec<bool>,
}

impl Tried {
    pub fn is_empty(&self) -> bool {
        self.small == 0 && !self.large.iter().any(|b| *b)
    }

    pub fn contains(&self, i: usize) -> bool {
        if i < 128 {
            self.small & (1u128 << i) != 0
        } else {
            self.large.get(i - 128).copied().unwrap_or(false)
        }
    }

    pub fn insert(&mut self, i: usize) {
        if i < 128 {
            self.small |= 1u128 << i;
        } else {
            let j = i - 128;
            if self.large.len() <= j {
                self.large.resize(j + 1, false);
            }
            self.large[j] = true;
        }
    }
}

#[cfg(test)]
pub(crate) mod testing {
    use super::Candidates;

    #[derive(Clone)]
    pub struct Fake {
        pub weights: Vec<u32>,
        pub in_flight: Vec<usize>,
        pub down: Vec<bool>,
        pub latency: Vec<f64>,
    }

    impl Fake {
        pub fn new(weights: &[u32]) -> Fake {
            Fake {
                weights: weights.to_vec(),
                in_flight: vec![0; weights.len()],
                down: vec![false; weights.len()],
                latency: vec![1.0; weights.len()],
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
        fn latency(&self, i: usize) -> f64 {
            self.latency[i]
        }
    }

    #[test]
    fn request_keys() {
        use super::request_key;
        use crate::config::HashOn;
        let ip: std::net::IpAddr = "192.0.2.1".parse().unwrap();
        let uri: http::Uri = "/a/b?x=1".parse().unwrap();
        let mut h = http::HeaderMap::new();
        h.insert("cookie", "theme=dark; session=abc123".parse().unwrap());
        h.insert("x-user", "42".parse().unwrap());
        let k = |on: &HashOn| request_key(on, ip, &uri, &h);
        assert_eq!(
            k(&HashOn::Cookie("session".into())),
            request_key(
                &HashOn::Cookie("session".into()),
                ip,
                &"/other".parse().unwrap(),
                &h
            )
        );
        assert_ne!(
            k(&HashOn::Cookie("session".into())),
            k(&HashOn::Cookie("theme".into()))
        );
        assert_eq!(k(&HashOn::Cookie("missing".into())), None);
        assert_eq!(
            k(&HashOn::Header("x-user".into())),
            Some(super::hash::key_hash(b"42"))
        );
        assert_eq!(k(&HashOn::Header("x-none".into())), None);
        assert_ne!(k(&HashOn::Uri), k(&HashOn::UriQuery));
        assert!(k(&HashOn::Source).is_some());
    }
}
