//! The parking lot: idle keep-alive client connections of one listener on one worker, held
//! without a task each.
//!
//! A task per idle connection costs about a kilobyte (the task, its future, its readiness wait
//! and its keep-alive timer). Here an idle connection is a slot in a vector: the socket, the
//! client's address and the connection's `max_connections` permit. Its socket's readiness
//! calls a small per-slot waker that queues the slot; the listener's accept loop takes queued
//! slots and spawns a task to serve them. One timer for the whole lot closes the connections
//! whose `keepalive_timeout` ran out, in parking order.

use crate::session::stream::ClientStream;
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::task::{Context, Poll, Wake, Waker};
use std::time::Duration;
use tokio::time::{Instant, Sleep};

/// A client connection between requests: what is needed to serve it again.
#[derive(Debug)]
pub struct Parked {
    pub stream: ClientStream,
    /// The socket's peer ([`crate::session::UNIX_PEER`] on a Unix-domain socket).
    pub peer: SocketAddr,
    /// The connection's place under `max_connections` and `max_connections_per_client` (held
    /// while parked too).
    pub permit: Option<crate::limits::ConnPermit>,
    /// What a PROXY header said (or the connection's own address, for `send_proxy`): kept
    /// for the connection's later requests.
    pub origin: Option<std::sync::Arc<crate::session::Origin>>,
}

/// One listener's parking lot on one worker (cheap to clone).
#[derive(Clone, Default)]
pub struct Lot(Arc<Shared>);

#[derive(Default)]
struct Shared {
    state: Mutex<State>,
    /// The accept loop, woken when a parked socket turns readable or the first deadline is set.
    waker: atomic_waker::AtomicWaker,
}

#[derive(Default)]
struct State {
    slots: Vec<Slot>,
    free: Vec<u32>,
    /// Slots whose socket turned readable, with the generation that was parked.
    ready: Vec<(u32, u32)>,
    /// When each parked connection is closed if its client sends nothing, in parking order.
    expiry: VecDeque<(Instant, u32, u32)>,
    parked: usize,
}

#[derive(Default)]
struct Slot {
    /// Bumped at every parking, so a late wake-up for an earlier occupant is ignored.
    generation: u32,
    conn: Option<Parked>,
}

/// Queues its slot when the socket turns readable.
struct SlotWaker {
    lot: Weak<Shared>,
    key: u32,
    generation: u32,
}

impl Wake for SlotWaker {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        if let Some(lot) = self.lot.upgrade() {
            lot.lock().ready.push((self.key, self.generation));
            lot.waker.wake();
        }
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl State {
    fn holds(&self, key: u32, generation: u32) -> bool {
        self.slots
            .get(key as usize)
            .is_some_and(|s| s.generation == generation && s.conn.is_some())
    }

    fn take(&mut self, key: u32) -> Option<Parked> {
        let conn = self.slots.get_mut(key as usize)?.conn.take()?;
        self.free.push(key);
        self.parked -= 1;
        Some(conn)
    }
}

impl Lot {
    pub fn new() -> Lot {
        Lot::default()
    }

    /// Connections parked now.
    pub fn len(&self) -> usize {
        self.0.lock().parked
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Closes every parked connection (the worker is stopping).
    pub fn close_all(&self) {
        let closed: Vec<Parked> = {
            let mut st = self.0.lock();
            st.expiry.clear();
            st.ready.clear();
            st.parked = 0;
            st.slots.iter_mut().filter_map(|s| s.conn.take()).collect()
        };
        drop(closed);
    }

    /// Parks an idle connection until its client sends again (or closes), or `keepalive`
    /// passes. Gives the connection back if the client sent something already (and drops it
    /// if the client closed it). The connection comes back by value: that is the rare path,
    /// and boxing it would cost an allocation per parking.
    #[allow(clippy::result_large_err)]
    pub fn park(&self, conn: Parked, keepalive: Duration) -> Result<(), Parked> {
        let (key, generation) = {
            let mut st = self.0.lock();
            let key = match st.free.pop() {
                Some(k) => k,
                None => {
                    st.slots.push(Slot::default());
                    (st.slots.len() - 1) as u32
                }
            };
            let slot = &mut st.slots[key as usize];
            slot.generation = slot.generation.wrapping_add(1);
            (key, slot.generation)
        };
        let waker = Waker::from(Arc::new(SlotWaker {
            lot: Arc::downgrade(&self.0),
            key,
            generation,
        }));
        // Registers the waker with the socket's readiness. A peek, not a readiness check: a
        // socket tokio has not yet seen blocking counts as ready, and the peek settles it
        // (one system call per parking at most) without taking the client's bytes.
        let mut byte = [0u8; 1];
        let peeked = conn
            .stream
            .poll_peek(&mut Context::from_waker(&waker), &mut byte);
        let mut st = self.0.lock();
        match peeked {
            Poll::Pending => {}
            // Bytes (or, on a Unix-domain socket, readiness that a read will explain).
            Poll::Ready(Ok(n)) if n != Some(0) => {
                st.free.push(key);
                return Err(conn);
            }
            // The client closed (or the socket failed): nothing to keep.
            Poll::Ready(_) => {
                st.free.push(key);
                return Ok(());
            }
        }
        st.slots[key as usize].conn = Some(conn);
        st.parked += 1;
        let first = st.expiry.is_empty();
        st.expiry
            .push_back((Instant::now() + keepalive, key, generation));
        drop(st);
        if first {
            // The accept loop sets its timer.
            self.0.waker.wake();
        }
        Ok(())
    }

    /// The next parked connection whose client sent something; closes the ones whose time ran
    /// out meanwhile. `timer` is the lot's one timer, owned by the caller.
    pub fn poll_next(&self, cx: &mut Context<'_>, mut timer: Pin<&mut Sleep>) -> Poll<Parked> {
        self.0.waker.register(cx.waker());
        let mut st = self.0.lock();
        while let Some((key, generation)) = st.ready.pop() {
            if st.holds(key, generation) {
                if let Some(conn) = st.take(key) {
                    return Poll::Ready(conn);
                }
            }
        }
        loop {
            let Some(&(at, key, generation)) = st.expiry.front() else {
                return Poll::Pending;
            };
            if !st.holds(key, generation) {
                // It left the lot already.
                st.expiry.pop_front();
                continue;
            }
            if timer.deadline() != at {
                timer.as_mut().reset(at);
            }
            if std::future::Future::poll(timer.as_mut(), cx).is_pending() {
                return Poll::Pending;
            }
            st.expiry.pop_front();
            // Dropped: the socket closes and its permit is released.
            drop(st.take(key));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpStream;

    async fn pair() -> (TcpStream, TcpStream, SocketAddr) {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let c = TcpStream::connect(l.local_addr().unwrap()).await.unwrap();
        let (s, peer) = l.accept().await.unwrap();
        (c, s, peer)
    }

    #[tokio::test]
    async fn a_parked_connection_comes_back_when_its_client_sends() {
        let lot = Lot::new();
        let mut timer = Box::pin(tokio::time::sleep(Duration::from_secs(3600)));
        let (mut client, server, peer) = pair().await;
        let parked = Parked {
            stream: server.into(),
            peer,
            permit: None,
            origin: None,
        };
        assert!(lot.park(parked, Duration::from_secs(60)).is_ok());
        assert_eq!(lot.len(), 1);
        client.write_all(b"GET / HTTP/1.1\r\n").await.unwrap();
        let back = tokio::time::timeout(
            Duration::from_secs(5),
            std::future::poll_fn(|cx| lot.poll_next(cx, timer.as_mut())),
        )
        .await
        .expect("woken by the client's bytes");
        assert_eq!(back.peer, peer);
        assert!(lot.is_empty());
        let mut buf = [0u8; 16];
        let n = back.stream.as_tcp().unwrap().try_read(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"GET / HTTP/1.1\r\n");
    }

    #[tokio::test]
    async fn a_client_that_sent_already_is_not_parked() {
        let lot = Lot::new();
        let (mut client, server, peer) = pair().await;
        client.write_all(b"x").await.unwrap();
        server.readable().await.unwrap();
        let parked = Parked {
            stream: server.into(),
            peer,
            permit: None,
            origin: None,
        };
        assert!(lot.park(parked, Duration::from_secs(60)).is_err());
        assert!(lot.is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn idle_connections_are_closed_after_keepalive_in_parking_order() {
        let lot = Lot::new();
        let mut timer = Box::pin(tokio::time::sleep(Duration::from_secs(3600)));
        let mut clients = Vec::new();
        for _ in 0..3 {
            let (client, server, peer) = pair().await;
            let parked = Parked {
                stream: server.into(),
                peer,
                permit: None,
                origin: None,
            };
            lot.park(parked, Duration::from_secs(10)).unwrap();
            clients.push(client);
            tokio::time::sleep(Duration::from_secs(2)).await;
        }
        // Nothing comes back: the lot's future only closes expired connections.
        let drive = std::future::poll_fn(|cx| lot.poll_next(cx, timer.as_mut()));
        assert!(tokio::time::timeout(Duration::from_secs(5), drive)
            .await
            .is_err());
        // 11 s after the first parking: the first is closed, the others not yet.
        assert_eq!(lot.len(), 2);
        let mut buf = [0u8; 1];
        assert_eq!(clients[0].read(&mut buf).await.unwrap(), 0);
        let drive = std::future::poll_fn(|cx| lot.poll_next(cx, timer.as_mut()));
        assert!(tokio::time::timeout(Duration::from_secs(10), drive)
            .await
            .is_err());
        assert!(lot.is_empty());
    }
}
