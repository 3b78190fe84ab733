//! Servers and pools: the live state the request path reads and updates.
//!
//! A [`Server`] is shared by every request that may go to it: its counters are atomics and its
//! idle upstream connections sit in a short-held mutex (never held across an `.await`). A
//! [`Pool`] is immutable once built: servers, balancer, policies.

mod counters;
pub mod dns;
pub mod events;
pub mod ha;
pub mod health;
pub mod monitor;
pub mod probe;
pub mod queue;
pub mod state;
mod view;

pub use counters::{Latency, RetryBudget, LATENCY_BUCKETS};

pub use view::{PoolView, Refusal};

use crate::balancer::{self, Balancer, Tried};
use crate::config::{CheckConfig, ObserveConfig, PoolConfig};
use crate::upstream::peer::Peer;
use ha::{availability, Availability, HaPolicy};
use health::{Health, HealthMachine, Thresholds};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// One upstream server.
#[derive(Debug)]
pub struct Server {
    /// Its name, unique in the pool: `name` in the config, else the address as written.
    pub name: Arc<str>,
    /// The address as written (`host:port`): the `Host` of checks, the default TLS name.
    pub address: Arc<str>,
    /// For a server from DNS, the name in the config it is one of the addresses of (a host
    /// name, or a pool's `srv`).
    pub dns_entry: Option<Arc<str>>,
    pub addr: SocketAddr,
    /// A server on a Unix-domain socket: its path (`addr` is then a placeholder).
    pub unix: Option<Arc<std::path::Path>>,
    /// Changed at run time through the admin API (the balancer is rebuilt).
    pub weight: std::sync::atomic::AtomicU32,
    pub in_flight: AtomicUsize,
    /// Requests sent to this server.
    pub requests: AtomicU64,
    /// Most requests in flight at once (HAProxy's `smax`).
    pub max_in_flight: AtomicUsize,
    /// Responses by status class, 1xx to 5xx.
    pub responses: [AtomicU64; 5],
    /// Failed exchanges: connect failures, broken or late responses.
    pub errors: AtomicU64,
    /// Requests that came here after failing on another server (HAProxy's `wredis`).
    pub redispatched: AtomicU64,
    /// Response-head times.
    pub latency: Latency,
    /// Failed connect attempts, ever.
    pub connect_failures_total: AtomicU64,
    /// Consecutive failed connects (the reference's attempts count).
    failures: AtomicU32,
    /// When the last connect failed, in [`clock::now_ms`] units.
    last_failure_ms: AtomicU64,
    /// One request is trying an offline server whose retry time came.
    probing: AtomicBool,
    /// The connections to this server: idle HTTP/1.1 ones, the shared HTTP/2 one, and every
    /// session `shutdown-sessions` can end.
    pub peer: Arc<Peer>,
    /// Used only when no non-backup server of the pool is usable.
    pub backup: bool,
    /// Requests in flight at most (0: no limit); at the limit the server is overloaded.
    /// Changed at run time through the admin API.
    pub maxconn: AtomicUsize,
    /// The weight and `maxconn` the configuration gave it (or the admin API, for a server it
    /// added): a value set at run time outlives a reload while these stay the same.
    pub file_weight: u32,
    pub file_maxconn: usize,
    /// Added through the admin API: a reload keeps it unless the file names a server with its
    /// name or address.
    pub added: bool,
    /// The pool's backlog queue, woken when a request to this server finishes.
    pub queue: Option<Arc<queue::Queue>>,
    /// The active check, if any.
    pub check: Option<CheckConfig>,
    /// Health as the request path reads it ([`Health`] as a number); written on transitions.
    health: AtomicU8,
    /// What the operator said: ready, drain or maint ([`Operator`] as a number).
    operator: AtomicU8,
    /// The health state machine (checks and passive observation feed it; short-held).
    pub machine: Mutex<HealthMachine>,
    /// Consecutive errors seen in live traffic (passive observation).
    passive_errors: AtomicU32,
    /// Wakes the checker early (passive `fastinter`).
    pub hurry: tokio::sync::Notify,
    /// Failed checks, ever (HAProxy's `chkfail`).
    pub check_failures: AtomicU64,
    /// Transitions to down (HAProxy's `chkdown`).
    pub downs: AtomicU64,
    /// When health last changed, in [`crate::clock::now_ms`] units.
    pub last_change_ms: AtomicU64,
    /// When the server last came up, for slow start ([`crate::clock::now_ms`]; 0: not ramping).
    up_since_ms: AtomicU64,
    /// Overloaded (backing off) until then ([`crate::clock::now_ms`]; 0: not backing off).
    backoff_until_ms: AtomicU64,
    /// Peak-EWMA response time in microseconds (f64 bits; 0 = no sample yet).
    ewma_us: AtomicU64,
    /// When `ewma_us` was last updated, in [`crate::clock::now_ms`] units.
    ewma_at_ms: AtomicU64,
}

/// The peak-EWMA time constant (tower's default).
pub const EWMA_TAU_MS: f64 = 10_000.0;
/// What a server without a latency sample is assumed to take, in microseconds.
pub const DEFAULT_RTT_US: f64 = 1_000.0;

/// What the operator asked of a server, kept apart from its health: draining never fakes health.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operator {
    Ready,
    /// Finish what it has, take nothing new.
    Drain,
    /// Out of service.
    Maint,
}

impl Operator {
    pub fn as_str(self) -> &'static str {
        match self {
            Operator::Ready => "ready",
            Operator::Drain => "drain",
            Operator::Maint => "maint",
        }
    }
}

fn health_from(n: u8) -> Health {
    match n {
        0 => Health::Up,
        1 => Health::Drain,
        _ => Health::Down,
    }
}

fn health_to(h: Health) -> u8 {
    match h {
        Health::Up => 0,
        Health::Drain => 1,
        Health::Down => 2,
    }
}

impl Server {
    /// `slots`: the number of worker threads (one idle-connection slot each).
    pub fn new(name: &str, addr: SocketAddr, weight: u32, slots: usize) -> Server {
        let thresholds = Thresholds {
            rise: crate::config::DEFAULT_CHECK_RISE,
            fall: crate::config::DEFAULT_CHECK_FALL,
        };
        Server {
            backup: false,
            maxconn: AtomicUsize::new(0),
            file_weight: weight,
            file_maxconn: 0,
            added: false,
            queue: None,
            check: None,
            health: AtomicU8::new(0),
            operator: AtomicU8::new(0),
            machine: Mutex::new(HealthMachine::new(thresholds)),
            passive_errors: AtomicU32::new(0),
            hurry: tokio::sync::Notify::new(),
            check_failures: AtomicU64::new(0),
            downs: AtomicU64::new(0),
            last_change_ms: AtomicU64::new(0),
            up_since_ms: AtomicU64::new(0),
            backoff_until_ms: AtomicU64::new(0),
            ewma_us: AtomicU64::new(0),
            ewma_at_ms: AtomicU64::new(0),
            name: Arc::from(name),
            address: Arc::from(name),
            dns_entry: None,
            addr,
            unix: None,
            weight: std::sync::atomic::AtomicU32::new(weight),
            max_in_flight: AtomicUsize::new(0),
            responses: Default::default(),
            errors: AtomicU64::new(0),
            redispatched: AtomicU64::new(0),
            latency: Latency::default(),
            in_flight: AtomicUsize::new(0),
            requests: AtomicU64::new(0),
            connect_failures_total: AtomicU64::new(0),
            failures: AtomicU32::new(0),
            last_failure_ms: AtomicU64::new(0),
            probing: AtomicBool::new(false),
            peer: Arc::new(Peer::new(slots)),
        }
    }

    pub fn health(&self) -> Health {
        health_from(self.health.load(Ordering::Relaxed))
    }

    pub fn set_health(&self, h: Health) {
        self.health.store(health_to(h), Ordering::Relaxed);
    }

    pub fn operator(&self) -> Operator {
        match self.operator.load(Ordering::Relaxed) {
            0 => Operator::Ready,
            1 => Operator::Drain,
            _ => Operator::Maint,
        }
    }

    pub fn set_operator(&self, o: Operator) {
        let n = match o {
            Operator::Ready => 0,
            Operator::Drain => 1,
            Operator::Maint => 2,
        };
        self.operator.store(n, Ordering::Relaxed);
    }

    /// At its `maxconn`, or backing off after a 503 or a connect timeout (lighttpd2's
    /// "overloaded")? One atomic load each in the common case.
    pub fn overloaded(&self) -> bool {
        let maxconn = self.maxconn.load(Ordering::Relaxed);
        if maxconn != 0 && self.in_flight.load(Ordering::Relaxed) >= maxconn {
            return true;
        }
        let until = self.backoff_until_ms.load(Ordering::Relaxed);
        until != 0 && crate::clock::now_ms() < until
    }

    /// The server said it is overloaded (503, or a connect timeout): leave it alone for
    /// `backoff`, or until one of its requests completes.
    pub fn back_off(&self, backoff: Duration) {
        if !backoff.is_zero() {
            let until = crate::clock::now_ms() + backoff.as_millis() as u64;
            self.backoff_until_ms.store(until.max(1), Ordering::Relaxed);
        }
    }

    /// The server came up: slow start begins now.
    pub fn came_up(&self) {
        self.up_since_ms
            .store(crate::clock::now_ms().max(1), Ordering::Relaxed);
    }

    /// Its share of new requests now, from 0 to 1, under slow start over `ramp`.
    pub fn ramp(&self, ramp: Duration, now: &dyn Fn() -> u64) -> f64 {
        let since = self.up_since_ms.load(Ordering::Relaxed);
        if since == 0 || ramp.is_zero() {
            return 1.0;
        }
        let f = slowstart_factor(Duration::from_millis(now().saturating_sub(since)), ramp);
        if f >= 1.0 {
            self.up_since_ms.store(0, Ordering::Relaxed);
        }
        f
    }

    /// May new requests go here (operator ready, health up)? One load each.
    pub fn takes_new_requests(&self) -> bool {
        self.operator.load(Ordering::Relaxed) == 0 && self.health.load(Ordering::Relaxed) == 0
    }

    /// Peak-EWMA response time in microseconds (a default until the first sample).
    pub fn latency_us(&self) -> f64 {
        let v = f64::from_bits(self.ewma_us.load(Ordering::Relaxed));
        if v > 0.0 {
            v
        } else {
            DEFAULT_RTT_US
        }
    }

    /// Records one response time (microseconds).
    pub fn observe_latency(&self, sample_us: f64, now_ms: u64) {
        let prev = f64::from_bits(self.ewma_us.load(Ordering::Relaxed));
        let elapsed = now_ms.saturating_sub(self.ewma_at_ms.load(Ordering::Relaxed)) as f64;
        let next = crate::balancer::random::peak_ewma(prev, elapsed, sample_us, EWMA_TAU_MS);
        self.ewma_us.store(next.to_bits(), Ordering::Relaxed);
        self.ewma_at_ms.store(now_ms, Ordering::Relaxed);
    }

    /// Ends every connection to this server now (in flight and idle): requests in flight fail
    /// and their clients are told at once instead of hanging on a dead server.
    pub fn kill_sessions(&self) {
        self.peer.kill_all();
    }

    /// Live traffic went well: the passive error run is over.
    pub fn passive_ok(&self) {
        if self.passive_errors.load(Ordering::Relaxed) != 0 {
            self.passive_errors.store(0, Ordering::Relaxed);
        }
    }

    /// Live traffic failed; true when the run of errors reached `limit` (and restarts it).
    pub fn passive_error(&self, limit: u32) -> bool {
        let n = self.passive_errors.fetch_add(1, Ordering::Relaxed) + 1;
        if n >= limit {
            self.passive_errors.store(0, Ordering::Relaxed);
            true
        } else {
            false
        }
    }

    /// The server's state in one word, for people: the operator's word if not `ready`, else the
    /// health, with lighttpd2's words for the reference's high availability (`down` while
    /// offline after failed connects, `down-retry` once its retry is due) and `alive` for up.
    pub fn state_word(&self, policy: HaPolicy) -> &'static str {
        match self.operator() {
            Operator::Drain => return "drain",
            Operator::Maint => return "maint",
            Operator::Ready => {}
        }
        match self.health() {
            Health::Down => "down",
            Health::Drain => "drain",
            Health::Up => match self.availability(policy, &crate::clock::now_ms) {
                Availability::Up if self.overloaded() => "overloaded",
                Availability::Up => "alive",
                Availability::Offline => "down",
                Availability::RetryDue => "down-retry",
            },
        }
    }

    /// Availability now under `policy`. The common case (no failures) reads one atomic and
    /// does not read the clock.
    pub fn availability(&self, policy: HaPolicy, now_ms: &dyn Fn() -> u64) -> Availability {
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

    /// A connect succeeded: the consecutive count restarts. Returns the count it had.
    pub fn connect_succeeded(&self) -> u32 {
        let had = self.failures.load(Ordering::Relaxed);
        if had != 0 {
            self.failures.store(0, Ordering::Relaxed);
        }
        had
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
    /// Swapped whole when a weight changes at run time.
    pub balancer: arc_swap::ArcSwap<Box<dyn Balancer>>,
    /// What the balancer is built from (for rebuilding it).
    pub balance: crate::config::BalanceMethod,
    pub hash_balance_factor: Option<f64>,
    pub ha: HaPolicy,
    pub connect_timeout: Duration,
    pub response_timeout: Duration,
    /// Longest silence between two parts of a response body.
    pub read_timeout: Duration,
    pub protocol: crate::config::Protocol,
    pub tls: Option<crate::tls::Upstream>,
    /// From the request head to the response head, everything included (`[server]`).
    pub request_timeout: Duration,
    pub max_idle_per_server: usize,
    pub observe: Option<ObserveConfig>,
    /// Does the pool have backup servers? (Known once, so a pick never scans for them.)
    pub has_backups: bool,
    pub all_backups: bool,
    pub shutdown_sessions_on_down: bool,
    pub shutdown_backup_sessions_on_up: bool,
    /// Where health transitions are recorded (shared by all pools of an instance).
    pub events: Arc<events::EventLog>,
    /// The backlog queue.
    pub queue: Arc<queue::Queue>,
    /// Extra attempts on other servers; `None`: every server once.
    pub retries: Option<u32>,
    /// The pool-wide retry budget, if any.
    pub retry_budget: Option<Arc<RetryBudget>>,
    /// Slow-start ramp (zero: none).
    pub slowstart: Duration,
    /// How long a server answering 503 (or timing out connecting) is left alone.
    pub overload_backoff: Duration,
    /// A PROXY header first on every new connection to the servers and on their checks.
    pub send_proxy: Option<crate::config::SendProxy>,
    /// Chance for slow start (lock-free, see `balancer::random::Rng`).
    pub dice: crate::balancer::random::Rng,
    /// The request key of a hashing method.
    pub hash_on: Option<crate::config::HashOn>,
    /// Response times feed the servers' peak-EWMA (only `peak-ewma` pools pay for it).
    pub tracks_latency: bool,
    /// Cookie persistence (`sticky`), if on.
    pub sticky: Option<Box<crate::balancer::sticky::Sticky>>,
    /// What `sticky` is built from (again when the servers change).
    pub sticky_config: Option<crate::config::sticky::StickyConfig>,
    /// Worker threads (a new server's idle-connection slots).
    pub slots: usize,
    /// Its lookups of server names (shared with the pool's later versions).
    pub discovery: Arc<dns::Discovery>,
}

/// Slow start: the share of a server `elapsed` after it came up, rising linearly from 5% to
/// 100% over `ramp` (HAProxy's `slowstart`).
pub fn slowstart_factor(elapsed: Duration, ramp: Duration) -> f64 {
    if ramp.is_zero() {
        return 1.0;
    }
    (elapsed.as_secs_f64() / ramp.as_secs_f64()).clamp(0.05, 1.0)
}

/// A pool's cookie persistence: its servers' values keyed with the configured secret (hashed
/// to 32 bytes), else with a random key drawn once per process (so a reload keeps them).
fn sticky(
    c: &crate::config::sticky::StickyConfig,
    pool: &str,
    servers: &[Arc<Server>],
) -> crate::balancer::sticky::Sticky {
    use blake2::Digest;
    static PROCESS_KEY: std::sync::OnceLock<[u8; 32]> = std::sync::OnceLock::new();
    let key = match &c.secret {
        Some(s) => blake2::Blake2b::<blake2::digest::consts::U32>::digest(s.as_bytes()).into(),
        None => *PROCESS_KEY.get_or_init(|| {
            let mut k = [0u8; 32];
            if getrandom::fill(&mut k).is_err() {
                for (i, chunk) in k.chunks_mut(8).enumerate() {
                    chunk.copy_from_slice(&(seed_from_clock() ^ i as u64).to_le_bytes());
                }
            }
            k
        }),
    };
    let names: Vec<&str> = servers.iter().map(|s| &*s.name).collect();
    crate::balancer::sticky::Sticky::new(c, &key, pool, &names)
}

/// A seed for the random balancers: differs per process and per pool.
fn seed_from_clock() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0),
    );
    h.finish()
}

impl Pool {
    /// `slots`: the number of worker threads. Servers named by DNS are left out (see
    /// [`Pool::from_config_resolved`]).
    pub fn from_config(c: &PoolConfig, slots: usize, events: Arc<events::EventLog>) -> Pool {
        Pool::from_config_resolved(c, slots, events, &|_| Vec::new())
    }

    /// A server of this pool from its entry in the config, at `addr` (the entry's own, or one
    /// of its name's addresses).
    pub fn server_from(&self, s: &crate::config::ServerConfig, f: &dns::Found) -> Arc<Server> {
        server_from(s, f, self.slots, &self.queue)
    }

    /// As [`Pool::from_config`], with the addresses of the servers named by DNS (`resolved`
    /// gives them per entry): each is a server.
    pub fn from_config_resolved(
        c: &PoolConfig,
        slots: usize,
        events: Arc<events::EventLog>,
        resolved: &dyn Fn(&crate::config::ServerConfig) -> Vec<dns::Found>,
    ) -> Pool {
        let queue = Arc::new(queue::Queue::new(c.queue));
        let servers: Vec<Arc<Server>> = c
            .servers
            .iter()
            .flat_map(|s| match s.dns {
                None => vec![server_from(s, &dns::Found::at(s.addr), slots, &queue)],
                Some(_) => resolved(s)
                    .iter()
                    .map(|f| server_from(s, f, slots, &queue))
                    .collect(),
            })
            .collect();
        Pool {
            name: Arc::from(c.name.as_str()),
            balancer: arc_swap::ArcSwap::from_pointee(build_balancer(
                &c.balance,
                &servers,
                c.hash_balance_factor,
            )),
            balance: c.balance.clone(),
            hash_balance_factor: c.hash_balance_factor,
            queue,
            retries: c.retries,
            retry_budget: c.retry_budget.map(|r| Arc::new(RetryBudget::new(r))),
            slowstart: c.slowstart,
            overload_backoff: c.overload_backoff,
            send_proxy: c.send_proxy,
            dice: crate::balancer::random::Rng::new(seed_from_clock()),
            hash_on: match &c.balance {
                crate::config::BalanceMethod::Hash(on) => Some(on.clone()),
                _ => None,
            },
            tracks_latency: c.balance == crate::config::BalanceMethod::PeakEwma,
            sticky: c
                .sticky
                .as_ref()
                .map(|s| Box::new(sticky(s, &c.name, &servers))),
            sticky_config: c.sticky.clone(),
            servers,
            ha: HaPolicy {
                attempts: c.attempts,
                offline_timeout: c.offline_timeout,
            },
            connect_timeout: c.connect_timeout,
            response_timeout: c.response_timeout,
            read_timeout: c.read_timeout,
            protocol: c.protocol,
            tls: c.tls.clone(),
            request_timeout: crate::config::DEFAULT_REQUEST_TIMEOUT,
            max_idle_per_server: crate::config::DEFAULT_MAX_IDLE_PER_SERVER,
            observe: c.observe,
            has_backups: c.servers.iter().any(|s| s.backup),
            all_backups: c.all_backups,
            shutdown_sessions_on_down: c.shutdown_sessions_on_down,
            shutdown_backup_sessions_on_up: c.shutdown_backup_sessions_on_up,
            events,
            slots,
            discovery: Default::default(),
        }
    }

    /// This pool with other servers, changed at run time: the same queue, retry budget,
    /// policies and lookups' counters, a balancer built for the new list. Servers kept are the
    /// same objects, so their state and connections go on.
    pub fn with_servers(&self, servers: Vec<Arc<Server>>) -> Pool {
        Pool {
            name: self.name.clone(),
            balancer: arc_swap::ArcSwap::from_pointee(build_balancer(
                &self.balance,
                &servers,
                self.hash_balance_factor,
            )),
            balance: self.balance.clone(),
            hash_balance_factor: self.hash_balance_factor,
            ha: self.ha,
            connect_timeout: self.connect_timeout,
            response_timeout: self.response_timeout,
            read_timeout: self.read_timeout,
            protocol: self.protocol,
            tls: self.tls.clone(),
            request_timeout: self.request_timeout,
            max_idle_per_server: self.max_idle_per_server,
            observe: self.observe,
            has_backups: servers.iter().any(|s| s.backup),
            all_backups: self.all_backups,
            shutdown_sessions_on_down: self.shutdown_sessions_on_down,
            shutdown_backup_sessions_on_up: self.shutdown_backup_sessions_on_up,
            events: self.events.clone(),
            queue: self.queue.clone(),
            retries: self.retries,
            retry_budget: self.retry_budget.clone(),
            slowstart: self.slowstart,
            overload_backoff: self.overload_backoff,
            send_proxy: self.send_proxy,
            dice: crate::balancer::random::Rng::new(seed_from_clock()),
            hash_on: self.hash_on.clone(),
            tracks_latency: self.tracks_latency,
            sticky: self
                .sticky_config
                .as_ref()
                .map(|c| Box::new(sticky(c, &self.name, &servers))),
            sticky_config: self.sticky_config.clone(),
            slots: self.slots,
            discovery: self.discovery.clone(),
            servers,
        }
    }

    /// Alive for new requests (operator ready, health up, not offline), full or not.
    pub fn alive(&self, s: &Server, now: &dyn Fn() -> u64) -> bool {
        s.takes_new_requests() && s.availability(self.ha, now) != Availability::Offline
    }

    /// Sets a server's operator state; the queue looks again (the pool may have lost its last
    /// server, or gained one).
    pub fn set_operator(&self, i: usize, o: Operator) {
        let s = &self.servers[i];
        let was = s.operator();
        s.set_operator(o);
        if was == Operator::Maint && o != Operator::Maint {
            // Its checks paused in maintenance: one now tells whether it is up.
            s.hurry.notify_one();
        }
        self.queue.wake_all();
    }

    /// Sets a server's weight and rebuilds the balancer with the pool's current weights.
    pub fn set_weight(&self, i: usize, weight: u32) {
        self.servers[i].weight.store(weight, Ordering::Relaxed);
        self.rebalance();
    }

    /// Rebuilds the balancer with the servers' current weights (swapped whole).
    pub fn rebalance(&self) {
        self.balancer.store(Arc::new(build_balancer(
            &self.balance,
            &self.servers,
            self.hash_balance_factor,
        )));
    }

    /// Is any server alive (full or not, backups included)?
    pub fn any_alive(&self) -> bool {
        let now = crate::clock::now_ms;
        self.servers.iter().any(|s| self.alive(s, &now))
    }

    /// Is some server that could take this request only at its `maxconn` (so waiting helps)?
    pub fn only_overloaded(&self, tried: &Tried) -> bool {
        let now = crate::clock::now_ms;
        self.servers
            .iter()
            .enumerate()
            .any(|(i, s)| !tried.contains(i) && s.overloaded() && self.alive(s, &now))
    }
}

/// A balancer for `servers` with their current weights.
fn build_balancer(
    method: &crate::config::BalanceMethod,
    servers: &[Arc<Server>],
    hash_balance_factor: Option<f64>,
) -> Box<dyn Balancer> {
    let named: Vec<(String, u32)> = servers
        .iter()
        .map(|s| (s.name.to_string(), s.weight.load(Ordering::Relaxed)))
        .collect();
    balancer::build(method, &named, seed_from_clock(), hash_balance_factor)
}

/// A server from its entry in the config, at `f` (the entry's own address, or one its name
/// resolved to; an SRV record's weight, priority and target over the entry's); one from DNS is
/// named after its address.
fn server_from(
    s: &crate::config::ServerConfig,
    f: &dns::Found,
    slots: usize,
    queue: &Arc<queue::Queue>,
) -> Arc<Server> {
    let name = match s.dns {
        Some(_) => dns::server_name(&s.name, f),
        None => s.name.clone(),
    };
    let mut server = Server::new(&name, f.addr, f.weight.unwrap_or(s.weight), slots);
    server.address = Arc::from(f.target.as_deref().unwrap_or(&s.address));
    server.dns_entry = s.dns.as_ref().map(|_| Arc::from(s.name.as_str()));
    server.unix = s.unix.as_deref().map(Arc::from);
    server.backup = s.backup || f.backup;
    server.maxconn = AtomicUsize::new(s.maxconn);
    server.file_maxconn = s.maxconn;
    server.queue = Some(queue.clone());
    if let Some(ch) = &s.check {
        server.machine = Mutex::new(HealthMachine::new(Thresholds {
            rise: ch.rise,
            fall: ch.fall,
        }));
    }
    server.check = s.check.clone();
    Arc::new(server)
}

/// Counts a request in flight on a server for as long as it lives.
#[derive(Debug)]
pub struct InFlight(pub Arc<Server>, bool);

impl InFlight {
    /// A request in flight on `server`, whatever its `maxconn` (see [`InFlight::claim`]).
    #[cfg(test)]
    pub fn new(server: Arc<Server>) -> InFlight {
        server.in_flight.fetch_add(1, Ordering::Relaxed);
        let mut f = InFlight(server, false);
        f.carries_request();
        f
    }

    /// Takes one of the server's `maxconn` slots (any number of them when `maxconn` is 0) in
    /// one compare-and-swap, so that two workers never both take its last one (HAProxy's
    /// `maxconn` is as strict). `None`: every slot is taken. A slot that carries no request
    /// (dropped before [`InFlight::carries_request`]) gives its place back and nothing else.
    pub fn claim(server: &Arc<Server>) -> Option<InFlight> {
        let maxconn = server.maxconn.load(Ordering::Relaxed);
        let mut now = server.in_flight.load(Ordering::Relaxed);
        loop {
            if maxconn != 0 && now >= maxconn {
                return None;
            }
            match server.in_flight.compare_exchange_weak(
                now,
                now + 1,
                Ordering::Relaxed,
                Ordering::Relaxed,
            ) {
                Ok(_) => break,
                Err(seen) => now = seen,
            }
        }
        if now + 1 > server.max_in_flight.load(Ordering::Relaxed) {
            server.max_in_flight.fetch_max(now + 1, Ordering::Relaxed);
        }
        Some(InFlight(server.clone(), false))
    }

    /// The slot carries a request to the server: it counts in the server's requests, and its
    /// completion ends an overload backoff (lighttpd2's rule).
    pub fn carries_request(&mut self) {
        self.0.requests.fetch_add(1, Ordering::Relaxed);
        self.1 = true;
    }

    /// Requests in flight on the server now, this one included (every worker's).
    pub fn now(&self) -> usize {
        self.0.in_flight.load(Ordering::Relaxed)
    }

    /// This request is the one that made the server back off: its own completion does not end
    /// the backoff (another request's does).
    pub fn keep_backoff(&mut self) {
        self.1 = false;
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
        // A request completed: an overloaded server is tried again (lighttpd2's rule).
        if self.1 && self.0.backoff_until_ms.load(Ordering::Relaxed) != 0 {
            self.0.backoff_until_ms.store(0, Ordering::Relaxed);
        }
        if let Some(q) = &self.0.queue {
            q.wake_one();
        }
    }
}

#[cfg(test)]
pub(crate) mod tests;
