//! Servers and pools: the live state the request path reads and updates.
//!
//! A [`Server`] is shared by every request that may go to it: its counters are atomics and its
//! idle upstream connections sit in a short-held mutex (never held across an `.await`). A
//! [`Pool`] is immutable once built: servers, balancer, policies.

pub mod ha;

use crate::balancer::{self, Balancer, Candidates};
use crate::config::PoolConfig;
use crate::proxy::body::UpBody;
use ha::{availability, Availability, HaPolicy};
use hyper::client::conn::http1::SendRequest;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// One upstream server.
#[derive(Debug)]
pub struct Server {
    /// As written in the config (`host:port`).
    pub name: Arc<str>,
    pub addr: SocketAddr,
    pub weight: u32,
    pub in_flight: AtomicUsize,
    /// Requests sent to this server.
    pub requests: AtomicU64,
    /// Failed connect attempts, ever.
    pub connect_failures_total: AtomicU64,
    /// Consecutive failed connects (the reference's attempts count).
    failures: AtomicU32,
    /// When the last connect failed, in [`clock::now_ms`] units.
    last_failure_ms: AtomicU64,
    /// One request is trying an offline server whose retry time came.
    probing: AtomicBool,
    /// Idle upstream connections, one slot per worker thread: a connection is driven by the
    /// worker that opened it, so it is only ever reused there (no cross-thread wakeups).
    idle: Box<[Mutex<Vec<SendRequest<UpBody>>>]>,
}

impl Server {
    /// `slots`: the number of worker threads (one idle-connection slot each).
    pub fn new(name: &str, addr: SocketAddr, weight: u32, slots: usize) -> Server {
        Server {
            name: Arc::from(name),
            addr,
            weight,
            in_flight: AtomicUsize::new(0),
            requests: AtomicU64::new(0),
            connect_failures_total: AtomicU64::new(0),
            failures: AtomicU32::new(0),
            last_failure_ms: AtomicU64::new(0),
            probing: AtomicBool::new(false),
            idle: (0..slots.max(1)).map(|_| Mutex::new(Vec::new())).collect(),
        }
    }

    /// Availability now under `policy`. The common case (no failures) reads one atomic and
    /// does not read the clock.
    pub fn availability(&self, policy: HaPolicy, now_ms: impl FnOnce() -> u64) -> Availability {
        let failures = self.failures.load(Ordering::Relaxed);
        if failures == 0 {
            return Availability::Up;
        }
        let since = now_ms().saturating_sub(self.last_failure_ms.load(Ordering::Relaxed));
        match availability(policy, failures, Duration::from_millis(since)) {
            Availability::RetryDue if self.probing.load(Ordering::Relaxed) => Availability::Offline,
            a => a,
        }
    }

    /// Claims the single retry of an offline server. The returned guard releases the claim when
    /// dropped, so a request that is cancelled mid-connect does not leave the server stuck.
    pub fn claim_retry(self: &Arc<Self>) -> Option<RetryClaim> {
        self.probing
            .compare_exchange(false, true, Ordering::AcqRel, Ordering::Relaxed)
            .ok()
            .map(|_| RetryClaim(self.clone()))
    }

    /// A connect succeeded: the server is up again.
    pub fn connect_succeeded(&self) {
        if self.failures.load(Ordering::Relaxed) != 0 {
            self.failures.store(0, Ordering::Relaxed);
            tracing::info!(server = %self.name, "server is reachable again");
        }
    }

    /// A connect failed: count it and stamp the time. Returns the new consecutive count.
    pub fn connect_failed(&self, now_ms: u64) -> u32 {
        self.connect_failures_total.fetch_add(1, Ordering::Relaxed);
        self.last_failure_ms.store(now_ms, Ordering::Relaxed);
        self.failures.fetch_add(1, Ordering::Relaxed) + 1
    }

    pub fn consecutive_failures(&self) -> u32 {
        self.failures.load(Ordering::Relaxed)
    }

    /// An idle upstream connection, if one is ready (closed ones are dropped).
    pub fn take_idle(&self) -> Option<SendRequest<UpBody>> {
        let mut idle = self.slot().lock().unwrap_or_else(|e| e.into_inner());
        while let Some(s) = idle.pop() {
            if !s.is_closed() {
                return Some(s);
            }
        }
        None
    }

    /// Returns a connection whose last exchange finished cleanly.
    pub fn put_idle(&self, sender: SendRequest<UpBody>, max_idle: usize) {
        if sender.is_closed() {
            return;
        }
        let mut idle = self.slot().lock().unwrap_or_else(|e| e.into_inner());
        if idle.len() < max_idle {
            idle.push(sender);
        }
    }

    fn slot(&self) -> &Mutex<Vec<SendRequest<UpBody>>> {
        &self.idle[crate::server::worker_id() % self.idle.len()]
    }

    /// Idle upstream connections over all workers.
    pub fn idle_count(&self) -> usize {
        self.idle
            .iter()
            .map(|s| s.lock().map(|i| i.len()).unwrap_or(0))
            .sum()
    }
}

/// Holds the single retry of an offline server; releases it on drop.
#[derive(Debug)]
pub struct RetryClaim(Arc<Server>);

impl Drop for RetryClaim {
    fn drop(&mut self) {
        self.0.probing.store(false, Ordering::Release);
    }
}

/// A pool of servers with its balancer and policies. Immutable; shared by requests.
#[derive(Debug)]
pub struct Pool {
    pub name: Arc<str>,
    pub servers: Vec<Arc<Server>>,
    pub balancer: Box<dyn Balancer>,
    pub ha: HaPolicy,
    pub connect_timeout: Duration,
    pub response_timeout: Duration,
    pub max_idle_per_server: usize,
}

impl Pool {
    /// `slots`: the number of worker threads.
    pub fn from_config(c: &PoolConfig, slots: usize) -> Pool {
        let servers: Vec<Arc<Server>> = c
            .servers
            .iter()
            .map(|s| Arc::new(Server::new(&s.name, s.addr, s.weight, slots)))
            .collect();
        let weights: Vec<u32> = servers.iter().map(|s| s.weight).collect();
        Pool {
            name: Arc::from(c.name.as_str()),
            balancer: balancer::build(c.balance, &weights),
            servers,
            ha: HaPolicy {
                attempts: c.attempts,
                offline_timeout: c.offline_timeout,
            },
            connect_timeout: c.connect_timeout,
            response_timeout: c.response_timeout,
            max_idle_per_server: crate::config::DEFAULT_MAX_IDLE_PER_SERVER,
        }
    }
}

/// Which servers one request has tried already (a bitset; no allocation up to 128 servers).
#[derive(Debug, Default)]
pub struct Tried {
    small: u128,
    large: Vec<bool>,
}

impl Tried {
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

/// The pool as the balancer sees it for one request at one moment.
pub struct PoolView<'a> {
    pub pool: &'a Pool,
    pub tried: &'a Tried,
    /// The clock, read at most once and only if a server has failures.
    pub now_ms: std::cell::OnceCell<u64>,
}

impl PoolView<'_> {
    pub fn now(&self) -> u64 {
        *self.now_ms.get_or_init(crate::clock::now_ms)
    }
}

impl Candidates for PoolView<'_> {
    fn len(&self) -> usize {
        self.pool.servers.len()
    }
    fn weight(&self, i: usize) -> u32 {
        self.pool.servers[i].weight
    }
    fn in_flight(&self, i: usize) -> usize {
        self.pool.servers[i].in_flight.load(Ordering::Relaxed)
    }
    fn usable(&self, i: usize) -> bool {
        !self.tried.contains(i)
            && self.pool.servers[i].availability(self.pool.ha, || self.now())
                != Availability::Offline
    }
}

/// Counts a request in flight on a server for as long as it lives.
#[derive(Debug)]
pub struct InFlight(pub Arc<Server>);

impl InFlight {
    pub fn new(server: Arc<Server>) -> InFlight {
        server.in_flight.fetch_add(1, Ordering::Relaxed);
        server.requests.fetch_add(1, Ordering::Relaxed);
        InFlight(server)
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tried_set() {
        let mut t = Tried::default();
        t.insert(3);
        t.insert(200);
        assert!(t.contains(3) && t.contains(200));
        assert!(!t.contains(4) && !t.contains(199) && !t.contains(1000));
    }

    #[test]
    fn server_goes_offline_and_one_retry_is_claimed() {
        let s = Arc::new(Server::new("a", "127.0.0.1:1".parse().unwrap(), 1, 1));
        let p = HaPolicy {
            attempts: 2,
            offline_timeout: Duration::from_secs(5),
        };
        assert_eq!(s.availability(p, || 0), Availability::Up);
        s.connect_failed(1000);
        assert_eq!(s.availability(p, || 1000), Availability::Up);
        s.connect_failed(1000);
        assert_eq!(s.availability(p, || 1001), Availability::Offline);
        assert_eq!(s.availability(p, || 6000), Availability::RetryDue);
        let claim = s.claim_retry().expect("first claim");
        assert!(s.claim_retry().is_none(), "only one request retries");
        assert_eq!(s.availability(p, || 6000), Availability::Offline);
        drop(claim);
        assert_eq!(s.availability(p, || 6000), Availability::RetryDue);
        s.connect_succeeded();
        assert_eq!(s.availability(p, || 6000), Availability::Up);
    }
}
