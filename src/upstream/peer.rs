//! The connections to one server, as the upstream side keeps them: idle HTTP/1.1 connections
//! (one list per worker thread, so a connection is only reused by the worker that drives it),
//! the shared HTTP/2 connection, and the sessions that `shutdown-sessions` ends at once.
//! `backend::Server` holds one; this layer needs nothing of the server's state.

use super::h1::{Conn, Kill};
use super::H2;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

type H1 = Box<Conn>;

#[derive(Debug)]
pub struct Peer {
    /// Idle upstream connections, one slot per worker thread: a connection is driven by the
    /// worker that opened it, so it is only ever reused there (no cross-thread wakeups).
    idle: Box<[Mutex<IdleList>]>,
    /// HTTP/2 pools: the one multiplexed connection, shared by every request.
    pub h2: Mutex<Option<H2>>,
    /// The tasks and connections to this server, to end them all at once
    /// (`shutdown-sessions`). Touched once per connection, never per request.
    sessions: Mutex<std::collections::HashMap<u64, Session>>,
    next_session: AtomicU64,
}

impl Peer {
    /// `slots`: the number of worker threads (one idle-connection list each).
    pub fn new(slots: usize) -> Peer {
        Peer {
            idle: (0..slots.max(1)).map(|_| Mutex::default()).collect(),
            h2: Mutex::new(None),
            sessions: Mutex::new(std::collections::HashMap::new()),
            next_session: AtomicU64::new(0),
        }
    }

    /// Registers a session (see [`Peer::kill_all`]); [`Peer::end_session`] forgets it.
    pub fn add_session(&self, session: Session) -> u64 {
        let id = self.next_session.fetch_add(1, Ordering::Relaxed);
        self.sessions
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(id, session);
        id
    }

    pub fn end_session(&self, id: u64) {
        self.sessions
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&id);
    }

    /// Runs an upstream connection's task so that [`Peer::kill_all`] can end it.
    pub fn spawn_session<F>(self: &Arc<Self>, conn: F)
    where
        F: std::future::Future<Output = ()> + Send + 'static,
    {
        let id = self.next_session.fetch_add(1, Ordering::Relaxed);
        let me = self.clone();
        let task = tokio::spawn(async move {
            conn.await;
            me.sessions
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(&id);
        });
        let mut sessions = self.sessions.lock().unwrap_or_else(|e| e.into_inner());
        if !task.is_finished() {
            sessions.insert(id, Session::Task(task.abort_handle()));
        }
    }

    /// Ends every connection (in flight and idle): requests in flight fail at once.
    pub fn kill_all(&self) {
        let victims: Vec<_> = self
            .sessions
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .drain()
            .map(|(_, h)| h)
            .collect();
        for v in victims {
            match v {
                Session::Task(h) => h.abort(),
                Session::Conn(k) => k.kill(),
            }
        }
        for slot in self.idle.iter() {
            slot.lock().unwrap_or_else(|e| e.into_inner()).conns.clear();
        }
    }

    /// The shared HTTP/2 connection, if it is still open.
    pub fn h2_sender(&self) -> Option<H2> {
        let mut slot = self.h2.lock().unwrap_or_else(|e| e.into_inner());
        match &*slot {
            Some(s) if !s.sender.is_closed() => Some(s.clone()),
            Some(_) => {
                *slot = None;
                None
            }
            None => None,
        }
    }

    /// An idle upstream connection, if one is ready (closed ones are dropped).
    pub fn take_idle(&self) -> Option<H1> {
        let mut idle = self.slot().lock().unwrap_or_else(|e| e.into_inner());
        while let Some(mut c) = idle.conns.pop() {
            if c.is_reusable() {
                return Some(c);
            }
        }
        None
    }

    /// An idle upstream connection whose PROXY header announced `source` (`send_proxy`), if
    /// one is ready; the others stay idle for their own clients.
    pub fn take_idle_for(&self, source: std::net::SocketAddr) -> Option<H1> {
        let mut idle = self.slot().lock().unwrap_or_else(|e| e.into_inner());
        loop {
            let i = idle.conns.iter().rposition(|c| c.proxied == Some(source))?;
            let mut c = idle.conns.remove(i);
            if c.is_reusable() {
                return Some(c);
            }
        }
    }

    /// Returns a connection whose last exchange finished cleanly. Every 16th time the oldest
    /// idle connection is looked at too, and dropped if its server closed it (idle connections
    /// are not watched otherwise), so closed ones do not linger at the bottom of the list.
    ///
    /// A worker keeps up to `max_idle` idle connections to the server, or as many as its share
    /// of the most requests in flight there (`in_flight`: all workers', now) in the last
    /// [`PEAK_HOLD_MS`], whichever is more: a load of 1 000 requests at a time on three servers
    /// would otherwise close and reopen connections all along, at the end of every burst
    /// (HAProxy keeps every idle connection by default). When the load falls, each connection
    /// given back past the limit takes the oldest idle one with it. The clock is read only
    /// at a new high or while the peak is above `max_idle`.
    pub fn put_idle(&self, sender: H1, max_idle: usize, in_flight: usize) {
        let share = in_flight.div_ceil(self.idle.len());
        let mut idle = self.slot().lock().unwrap_or_else(|e| e.into_inner());
        if share > idle.peak {
            (idle.peak, idle.peak_at_ms) = (share, crate::clock::now_ms());
        } else if idle.peak > max_idle {
            let now = crate::clock::now_ms();
            if now.saturating_sub(idle.peak_at_ms) > PEAK_HOLD_MS {
                (idle.peak, idle.peak_at_ms) = (share, now);
            }
        }
        let limit = max_idle.max(idle.peak);
        idle.puts = idle.puts.wrapping_add(1);
        if idle.puts % 16 == 0 && idle.conns.first_mut().is_some_and(|c| !c.is_reusable()) {
            idle.conns.remove(0);
        }
        if idle.conns.len() < limit {
            idle.conns.push(sender);
        } else if idle.conns.len() > limit {
            idle.conns.remove(0);
        }
    }

    fn slot(&self) -> &Mutex<IdleList> {
        &self.idle[crate::worker::worker_id() % self.idle.len()]
    }
}

/// A worker's idle HTTP/1.1 connections to one server, most recently used last.
#[derive(Debug, Default)]
struct IdleList {
    conns: Vec<H1>,
    /// Connections given back so far (paces the look at the oldest one).
    puts: u8,
    /// The most requests in flight on the server (this worker's share) seen lately, and
    /// when (milliseconds, [`crate::clock::now_ms`]).
    peak: usize,
    peak_at_ms: u64,
}

/// How long a peak of requests in flight keeps idle connections past the usual limit.
pub const PEAK_HOLD_MS: u64 = 10_000;

/// Something [`Peer::kill_all`] can end: a task (tunnels, HTTP/2 connections) or an
/// HTTP/1.1 connection, which is not a task (the request's task drives it).
#[derive(Debug)]
pub enum Session {
    Task(tokio::task::AbortHandle),
    Conn(Arc<Kill>),
}
