//! Open connections per client address (`[server] max_connections_per_client`), counted
//! across every listener and worker.
//!
//! The workers are threads, each accepting from its own socket of a shared port, so a count
//! per worker would not be a count per client: the counts are one sharded map (`dashmap`;
//! one shard's lock per connection opened or closed, never a global one), holding only the
//! addresses with a connection open, so its memory follows the open connections and an
//! entry goes when its count reaches zero.

use crate::session::counters::{Front, Open};
use dashmap::mapref::entry::Entry;
use dashmap::DashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use tokio::sync::OwnedSemaphorePermit;

/// The live connection counts by client ([`super::client_addr`]).
#[derive(Debug, Default)]
pub struct ClientConns {
    open: DashMap<IpAddr, u32>,
    /// Connections closed at accept because their client had `max` open, ever.
    pub refused: AtomicU64,
}

impl ClientConns {
    /// A connection from `ip` was accepted: its place, or `None` when the client already has
    /// `max` open (the connection is then to be closed, and is counted in `refused`).
    pub fn open(self: &Arc<Self>, ip: IpAddr, max: usize) -> Option<ClientSlot> {
        let client = super::client_addr(ip);
        let mut n = self.open.entry(client).or_insert(0);
        if *n as usize >= max {
            drop(n);
            self.refused.fetch_add(1, Relaxed);
            return None;
        }
        *n += 1;
        drop(n);
        Some(ClientSlot {
            conns: self.clone(),
            client,
        })
    }

    /// Connections open now from `ip`'s client.
    pub fn count(&self, ip: IpAddr) -> usize {
        let client = super::client_addr(ip);
        self.open.get(&client).map_or(0, |n| *n as usize)
    }

    /// Clients with a connection open.
    pub fn clients(&self) -> usize {
        self.open.len()
    }
}

/// One open connection's place in its client's count, given back when it closes.
#[derive(Debug)]
pub struct ClientSlot {
    conns: Arc<ClientConns>,
    client: IpAddr,
}

impl Drop for ClientSlot {
    fn drop(&mut self) {
        if let Entry::Occupied(mut e) = self.conns.open.entry(self.client) {
            *e.get_mut() -= 1;
            if *e.get() == 0 {
                e.remove();
            }
        }
    }
}

/// What an open client connection holds while it is open (parked too): its place under the
/// listener's `max_connections`, and under `max_connections_per_client` when that is set
/// (boxed: a parked connection stays small when the limit is off), and its count among the
/// listener's open connections.
#[derive(Debug)]
pub struct ConnPermit {
    _slot: OwnedSemaphorePermit,
    _client: Option<Box<ClientSlot>>,
    open: Open,
}

impl ConnPermit {
    pub fn new(slot: OwnedSemaphorePermit, client: Option<ClientSlot>, open: Open) -> ConnPermit {
        ConnPermit {
            _slot: slot,
            _client: client.map(Box::new),
            open,
        }
    }

    /// Holds `client`'s place too (the client a PROXY header announced, counted once read).
    pub fn hold(&mut self, client: ClientSlot) {
        self._client = Some(Box::new(client));
    }

    /// The listener's counters.
    pub fn front(&self) -> &Front {
        self.open.front()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_per_client_and_forgets_closed_ones() {
        let c = Arc::new(ClientConns::default());
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        let s1 = c.open(a, 2).unwrap();
        let s2 = c.open(a, 2).unwrap();
        assert!(c.open(a, 2).is_none(), "the third from a is refused");
        assert_eq!(c.refused.load(Relaxed), 1);
        let other = c.open(b, 2).expect("b is not affected");
        assert_eq!((c.count(a), c.count(b)), (2, 1));
        drop(s1);
        let s3 = c.open(a, 2).expect("a place came free");
        drop((s2, s3, other));
        assert_eq!(c.clients(), 0, "no entry is left for closed clients");
    }

    #[test]
    fn an_ipv6_client_is_its_slash_64() {
        let c = Arc::new(ClientConns::default());
        let x: IpAddr = "2001:db8::1".parse().unwrap();
        let y: IpAddr = "2001:db8::2".parse().unwrap();
        let _s = c.open(x, 1).unwrap();
        assert!(c.open(y, 1).is_none());
    }
}
