//! A listener's counters, HAProxy's `FRONTEND` figures: connections open, accepted and refused
//! (by reason), bytes received from and sent to clients, responses by status class, requests
//! answered as malformed (`ereq`) or refused by a rule (`dreq`).
//!
//! Each listener's counters are sharded per worker thread, a shard on its own cache lines: a
//! connection is served by the worker that accepted it and holds a [`Front`] (the listener and
//! that worker's shard), so counting is an uncontended relaxed atomic add, with no lookup and
//! no lock. Readers (the admin API) sum the shards. The registry of listeners is read at
//! scrape time only.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, Weak};

/// Shards per listener: one per worker thread (workers past this share the last ones).
const SHARDS: usize = 64;

/// Why a connection was closed before any HTTP, as the `reason` label says it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// `max_connections_per_client`: its client had that many open.
    Limit = 0,
    /// No good PROXY header (untrusted peer, missing, malformed, late).
    ProxyProtocol = 1,
    /// The TLS handshake failed or timed out.
    TlsHandshake = 2,
}

/// The `reason` labels of [`Refusal`], in its order.
pub const REFUSALS: [&str; 3] = ["limit", "proxy_protocol", "tls_handshake"];

/// What a response says of its request besides its status, for `ereq` and `dreq`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Verdict {
    /// Served, or answered for a reason of the server's or the pool's.
    #[default]
    None,
    /// Answered by langur as malformed, too large or too slow (HAProxy's `ereq`).
    BadRequest,
    /// Refused by the route's `deny`/`allow` (HAProxy's `dreq`).
    Denied,
    /// Refused by the route's `rate_limit` (429; HAProxy's `dreq` too).
    RateLimited,
}

/// One worker's share of a listener's counters.
#[derive(Debug, Default)]
#[repr(align(64))]
struct Shard {
    /// Connections open now (a shard's count may go below zero; the sum does not).
    open: AtomicI64,
    /// Connections taken from the listener, refused ones included.
    accepted: AtomicU64,
    bytes_in: AtomicU64,
    bytes_out: AtomicU64,
    /// Responses by class: 1xx..5xx, then anything else.
    classes: [AtomicU64; 6],
    bad_requests: AtomicU64,
    denied: AtomicU64,
    rate_limited: AtomicU64,
    refused: [AtomicU64; 3],
}

/// One listener's counters (see the module documentation).
#[derive(Debug)]
pub struct Listener {
    /// Its address as bound (`127.0.0.1:8080`, `unix:/run/langur.sock`).
    pub name: Arc<str>,
    /// Whether it is a TLS listener.
    pub tls: bool,
    shards: Box<[Shard]>,
    /// The last second's rates, set by the admin API's sampler.
    pub rates: Mutex<Rates>,
}

/// Per-second rates of a listener over the last sampled second, and the highest seen.
#[derive(Debug, Clone, Copy, Default)]
pub struct Rates {
    /// Connections accepted per second (HAProxy's `rate`, `conn_rate`).
    pub conn: f64,
    pub conn_max: f64,
    /// Responses per second (HAProxy's `req_rate`).
    pub req: f64,
    pub req_max: f64,
    /// Bytes per second received and sent.
    pub bytes_in: f64,
    pub bytes_out: f64,
    /// The most connections seen open at once by these once-a-second readings (HAProxy's
    /// `smax`, sampled: counting it exactly would need one counter shared by every worker).
    pub open_max: u64,
    /// The totals they were measured from: (accepted, requests, bytes in, bytes out).
    last: (u64, u64, u64, u64),
}

/// A listener's counters summed over its shards.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Totals {
    pub open: u64,
    pub accepted: u64,
    pub bytes_in: u64,
    pub bytes_out: u64,
    /// 1xx..5xx, then anything else.
    pub classes: [u64; 6],
    pub bad_requests: u64,
    pub denied: u64,
    pub rate_limited: u64,
    /// By [`Refusal`].
    pub refused: [u64; 3],
}

impl Totals {
    pub fn requests(&self) -> u64 {
        self.classes.iter().sum()
    }

    pub fn refused_total(&self) -> u64 {
        self.refused.iter().sum()
    }
}

impl Listener {
    pub fn new(name: &str, tls: bool) -> Listener {
        Listener {
            name: name.into(),
            tls,
            shards: (0..SHARDS).map(|_| Shard::default()).collect(),
            rates: Mutex::default(),
        }
    }

    pub fn totals(&self) -> Totals {
        let mut t = Totals::default();
        let mut open = 0i64;
        for s in self.shards.iter() {
            open += s.open.load(Relaxed);
            t.accepted += s.accepted.load(Relaxed);
            t.bytes_in += s.bytes_in.load(Relaxed);
            t.bytes_out += s.bytes_out.load(Relaxed);
            for (sum, c) in t.classes.iter_mut().zip(&s.classes) {
                *sum += c.load(Relaxed);
            }
            t.bad_requests += s.bad_requests.load(Relaxed);
            t.denied += s.denied.load(Relaxed);
            t.rate_limited += s.rate_limited.load(Relaxed);
            for (sum, c) in t.refused.iter_mut().zip(&s.refused) {
                *sum += c.load(Relaxed);
            }
        }
        t.open = open.max(0) as u64;
        t
    }

    /// Measures the rates from the totals now, `secs` after the last measure.
    pub fn sample(&self, secs: f64) -> Rates {
        let t = self.totals();
        let now = (t.accepted, t.requests(), t.bytes_in, t.bytes_out);
        let mut r = self.rates.lock().unwrap_or_else(|p| p.into_inner());
        let per = |a: u64, b: u64| b.saturating_sub(a) as f64 / secs.max(1e-3);
        let was = r.last;
        r.conn = per(was.0, now.0);
        r.req = per(was.1, now.1);
        r.bytes_in = per(was.2, now.2);
        r.bytes_out = per(was.3, now.3);
        r.conn_max = r.conn_max.max(r.conn);
        r.req_max = r.req_max.max(r.req);
        r.open_max = r.open_max.max(t.open);
        r.last = now;
        *r
    }

    pub fn rates(&self) -> Rates {
        *self.rates.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// A listener's counters as a worker's connections reach them: the listener and the shard of
/// the worker that accepted the connection (cheap to clone: one reference count).
#[derive(Debug, Clone)]
pub struct Front {
    listener: Arc<Listener>,
    shard: usize,
}

impl Front {
    /// The counters of `listener` for worker `worker`.
    pub fn new(listener: Arc<Listener>, worker: usize) -> Front {
        Front {
            listener,
            shard: worker.min(SHARDS - 1),
        }
    }

    #[inline(always)]
    fn shard(&self) -> &Shard {
        &self.listener.shards[self.shard]
    }

    /// A connection was accepted: counted, and open until the guard is dropped.
    pub fn open(&self) -> Open {
        let s = self.shard();
        s.accepted.fetch_add(1, Relaxed);
        s.open.fetch_add(1, Relaxed);
        Open(self.clone())
    }

    /// A connection was closed before any HTTP, for `why`.
    pub fn refused(&self, why: Refusal) {
        self.shard().refused[why as usize].fetch_add(1, Relaxed);
    }

    #[inline]
    pub fn bytes_in(&self, n: usize) {
        self.shard().bytes_in.fetch_add(n as u64, Relaxed);
    }

    #[inline]
    pub fn bytes_out(&self, n: usize) {
        self.shard().bytes_out.fetch_add(n as u64, Relaxed);
    }

    /// A response with `status` was sent, for a request judged `verdict`.
    #[inline]
    pub fn response(&self, status: u16, verdict: Verdict) {
        let s = self.shard();
        s.classes[class(status)].fetch_add(1, Relaxed);
        match verdict {
            Verdict::None => {}
            Verdict::BadRequest => {
                s.bad_requests.fetch_add(1, Relaxed);
            }
            Verdict::Denied => {
                s.denied.fetch_add(1, Relaxed);
            }
            Verdict::RateLimited => {
                s.rate_limited.fetch_add(1, Relaxed);
            }
        }
    }

    /// A request hyper refused before langur saw it (a malformed or late head).
    pub fn bad_request(&self) {
        self.shard().bad_requests.fetch_add(1, Relaxed);
    }
}

/// The index of a status class: 1xx..5xx as 0..4, anything else 5.
#[inline(always)]
pub fn class(status: u16) -> usize {
    match status {
        100..=599 => usize::from(status / 100) - 1,
        _ => 5,
    }
}

/// An open connection of a listener (counted in `open` until dropped).
#[derive(Debug)]
pub struct Open(Front);

impl Open {
    pub fn front(&self) -> &Front {
        &self.0
    }
}

impl Drop for Open {
    fn drop(&mut self) {
        self.0.shard().open.fetch_sub(1, Relaxed);
    }
}

/// The listeners with connections or accept loops (a listener a reload removed goes once its
/// last connection closed).
#[derive(Debug, Default)]
pub struct Listeners(Mutex<Vec<Weak<Listener>>>);

impl Listeners {
    /// The counters of the listener bound at `name`: its existing ones while they live (a
    /// listener kept across a reload keeps them), else new ones.
    pub fn register(&self, name: &str, tls: bool) -> Arc<Listener> {
        let mut all = self.0.lock().unwrap_or_else(|p| p.into_inner());
        all.retain(|w| w.strong_count() > 0);
        if let Some(l) = all
            .iter()
            .filter_map(Weak::upgrade)
            .find(|l| &*l.name == name)
        {
            return l;
        }
        let l = Arc::new(Listener::new(name, tls));
        all.push(Arc::downgrade(&l));
        l
    }

    /// The live listeners, in the order they were first bound.
    pub fn all(&self) -> Vec<Arc<Listener>> {
        let all = self.0.lock().unwrap_or_else(|p| p.into_inner());
        all.iter().filter_map(Weak::upgrade).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shards_add_up_and_open_follows_guards() {
        let l = Arc::new(Listener::new("127.0.0.1:80", false));
        let (a, b) = (Front::new(l.clone(), 0), Front::new(l.clone(), 1000));
        let g1 = a.open();
        let g2 = b.open();
        b.refused(Refusal::TlsHandshake);
        a.bytes_in(10);
        b.bytes_out(7);
        a.response(200, Verdict::None);
        b.response(403, Verdict::Denied);
        a.response(429, Verdict::RateLimited);
        b.response(400, Verdict::BadRequest);
        a.response(999, Verdict::None);
        drop(g1);
        let t = l.totals();
        assert_eq!((t.open, t.accepted), (1, 2));
        assert_eq!((t.bytes_in, t.bytes_out), (10, 7));
        assert_eq!(t.classes, [0, 1, 0, 3, 0, 1]);
        assert_eq!((t.bad_requests, t.denied, t.rate_limited), (1, 1, 1));
        assert_eq!(t.refused, [0, 0, 1]);
        drop(g2);
        let r = l.sample(0.5);
        assert_eq!((r.conn, r.req, r.bytes_in), (4.0, 10.0, 20.0));
        let r = l.sample(1.0);
        assert_eq!((r.conn, r.conn_max), (0.0, 4.0));
    }

    #[test]
    fn a_listener_kept_keeps_its_counters_and_a_gone_one_goes() {
        let ls = Listeners::default();
        let a = ls.register("127.0.0.1:80", false);
        Front::new(a.clone(), 0).bytes_in(5);
        let again = ls.register("127.0.0.1:80", false);
        assert!(Arc::ptr_eq(&a, &again));
        let b = ls.register("unix:/run/x.sock", false);
        assert_eq!(ls.all().len(), 2);
        drop((a, again));
        assert_eq!(ls.all().len(), 1);
        assert_eq!(&*ls.all()[0].name, "unix:/run/x.sock");
        drop(b);
    }
}
