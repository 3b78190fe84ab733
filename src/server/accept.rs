//! One worker's accept loop for one listener: new connections under `max_connections`, parked
//! ones handed back to a task when their client sends again, and the drain of a listener a
//! reload removed.

use super::*;
use crate::conn::{Ctx, Parked};
use crate::limits::ConnPermit;
use crate::park::Lot;
use crate::session::counters::{Front, Listener, Refusal};
use crate::session::stream::ClientStream;
use std::pin::Pin;
use tokio::sync::OwnedSemaphorePermit;
use tokio::time::Sleep;

/// Accepts the connections of one worker's socket until shutdown, or until `stop` (a reload
/// removed the listener): then no new connections are taken, idle ones are closed, and busy
/// ones are closed once idle, within `shutdown_timeout`. `configured`: the listener as
/// configured; `counters`: its counters.
pub(super) async fn accept_loop(
    listener: Acceptor,
    shared: Arc<Shared>,
    mut shutdown: watch::Receiver<bool>,
    mut stop: watch::Receiver<bool>,
    tls: bool,
    // `max_connections` of this socket.
    slots: Arc<Slots>,
    (configured, counters): (crate::config::ListenAddr, Arc<Listener>),
) {
    let active = Arc::new(crate::conn::Active::default());
    let (ticks, clock) = crate::conn::park_clock();
    let mut conns = Conns::new();
    let ctx = Ctx {
        shared: shared.live.clone(),
        active: active.clone(),
        ticks,
        lot: conns.lot.clone(),
        listener: Arc::new(configured),
    };
    let front = Front::new(counters, crate::worker::worker_id());
    let removed = {
        // Made once for the loop, not per connection: each of these registers a waiter, and
        // registering and dropping three per accepted connection cost more than the accept.
        let mut ending = std::pin::pin!(ending(&mut shutdown, &mut stop));
        let mut limit_changed = std::pin::pin!(slots.changed.notified());
        loop {
            conns.reap();
            // At the limit, stop accepting (the kernel's backlog holds newcomers) until one
            // closes.
            let permit = match slots.sem.clone().try_acquire_owned() {
                Ok(p) => p,
                Err(tokio::sync::TryAcquireError::Closed) => break false,
                Err(tokio::sync::TryAcquireError::NoPermits) => tokio::select! {
                    p = slots.sem.clone().acquire_owned() => match p {
                        Ok(p) => p,
                        Err(_) => break false,
                    },
                    Some(_) = conns.tasks.join_next(), if !conns.tasks.is_empty() => continue,
                    back = unparked(&conns.lot, conns.lot_timer.as_mut()) => {
                        conns.resume(back, &ctx);
                        continue;
                    }
                    removed = &mut ending => break removed,
                },
            };
            let Some(permit) = slots.pay(permit) else {
                continue; // the limit was lowered
            };
            tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok((stream, peer)) => match per_client(&shared, &ctx, &front, peer, permit) {
                        Some(permit) => conns.start(stream, peer, permit, tls, &ctx),
                        // Over `max_connections_per_client`: closed at once (counted), with a
                        // 503 on a plain listener.
                        None => crate::conn::refuse_busy(stream, tls),
                    },
                    Err(e) => {
                        // EMFILE and friends: back off instead of spinning.
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                },
                back = unparked(&conns.lot, conns.lot_timer.as_mut()) => conns.resume(back, &ctx),
                // The limit changed: the permit held for the next accept may be owed.
                _ = &mut limit_changed => {
                    let _ = slots.pay(permit);
                    limit_changed.set(slots.changed.notified());
                }
                removed = &mut ending => break removed,
            }
        }
    };
    drop(listener);
    conns.wind_down(removed, ctx, &shared, &mut shutdown).await;
    clock.abort();
    active.drained().await;
}

/// The end of an accept loop: `false` at shutdown, `true` when a reload removed the listener
/// (`stop`).
async fn ending(shutdown: &mut watch::Receiver<bool>, stop: &mut watch::Receiver<bool>) -> bool {
    tokio::select! {
        _ = shutdown.changed() => false,
        _ = stop.changed() => true,
    }
}

/// One listener's connections on one worker.
struct Conns {
    /// Their tasks: when the accept loop ends (or is aborted at the shutdown timeout), they end
    /// with it.
    tasks: JoinSet<()>,
    /// Idle keep-alive connections, and the one timer that closes them (see `park.rs`).
    lot: Lot,
    lot_timer: Pin<Box<Sleep>>,
}

impl Conns {
    fn new() -> Conns {
        Conns {
            tasks: JoinSet::new(),
            lot: Lot::new(),
            lot_timer: Box::pin(tokio::time::sleep(Duration::from_secs(3600))),
        }
    }

    /// Serves a connection just accepted, holding its `max_connections` permit: a TLS one in
    /// a task of its own until it closes, a plain one from the lane (see `conn.rs`).
    fn start(
        &mut self,
        stream: ClientStream,
        peer: SocketAddr,
        permit: ConnPermit,
        tls: bool,
        ctx: &Ctx,
    ) {
        if let ClientStream::Tcp(s) = &stream {
            let _ = s.set_nodelay(true);
        }
        match stream {
            ClientStream::Tcp(stream) if tls => {
                let (live, active, ticks) =
                    (ctx.shared.clone(), ctx.active.clone(), ctx.ticks.clone());
                let listener = ctx.listener.clone();
                let front = permit.front().clone();
                self.tasks.spawn(async move {
                    crate::conn::serve_tls(stream, peer, live, active, ticks, listener, front)
                        .await;
                    drop(permit);
                });
            }
            stream => {
                let conn = Parked {
                    stream,
                    peer,
                    permit: Some(permit),
                    origin: None,
                };
                self.tasks
                    .spawn(crate::conn::serve(conn, ctx.clone(), true));
            }
        }
    }

    /// Forgets the tasks of connections that ended. Done at each turn of the accept loop, not
    /// by a branch of its select: a connection's end then costs the loop no wake-up (ends are
    /// as frequent as starts: 2 300 instructions each). Those not reaped yet are at most the
    /// connections there were.
    fn reap(&mut self) {
        while self.tasks.try_join_next().is_some() {}
    }

    /// Serves a parked connection whose client sent again.
    fn resume(&mut self, back: Parked, ctx: &Ctx) {
        self.tasks
            .spawn(crate::conn::serve(back, ctx.clone(), false));
    }

    /// After a reload removed the listener (its port is released already): requests on open
    /// connections are answered, and a connection is closed as soon as it is idle (the lot is
    /// emptied every 100 ms), until none is left, the worker shuts down, or `limit`
    /// (`shutdown_timeout`) passes, which aborts the rest.
    /// The end of the loop: a listener a reload removed first lets its busy connections
    /// finish within `shutdown_timeout`; then idle connections close, and the ones in an
    /// exchange finish it first (the tasks stay in `self` until the caller drops it).
    async fn wind_down(
        &mut self,
        removed: bool,
        ctx: Ctx,
        shared: &Shared,
        shutdown: &mut watch::Receiver<bool>,
    ) {
        if removed && !*shutdown.borrow() {
            let limit = shared.runtime.load().limits.shutdown_timeout;
            self.close_when_idle(&ctx, shutdown, limit).await;
        }
        drop(ctx);
        self.lot.close_all();
        if *shutdown.borrow() {
            shared
                .stopping
                .store(true, std::sync::atomic::Ordering::Relaxed);
        }
    }

    async fn close_when_idle(
        &mut self,
        ctx: &Ctx,
        shutdown: &mut watch::Receiver<bool>,
        limit: Duration,
    ) {
        self.lot.close_all();
        let deadline = tokio::time::sleep(limit);
        tokio::pin!(deadline);
        let mut tick = tokio::time::interval(Duration::from_millis(100));
        while !(self.tasks.is_empty() && self.lot.is_empty()) {
            tokio::select! {
                Some(_) = self.tasks.join_next(), if !self.tasks.is_empty() => {}
                back = unparked(&self.lot, self.lot_timer.as_mut()) => self.resume(back, ctx),
                _ = tick.tick() => self.lot.close_all(),
                _ = shutdown.changed() => break,
                _ = &mut deadline => {
                    self.tasks.abort_all();
                    break;
                }
            }
        }
    }
}

/// The connection's permit, with its place under `max_connections_per_client` when that is
/// set (by the peer's address, across listeners and workers); `None`: its client has that
/// many open already. A Unix-domain socket's peers have no address to count by, a peer in
/// `trusted_proxies` is a balancer speaking for many clients, and on a listener
/// `proxy_protocol` covers the peer is the balancer too (the client its header announces is
/// counted once read, see `conn.rs`): none of them is counted here. The connection is counted
/// among the listener's, open while the permit lives.
fn per_client(
    shared: &Shared,
    ctx: &Ctx,
    front: &Front,
    peer: SocketAddr,
    slot: OwnedSemaphorePermit,
) -> Option<ConnPermit> {
    let open = front.open();
    let rt = shared.runtime.load();
    let max = rt.limits.max_connections_per_client;
    let behind_balancer = || {
        let pp = rt.clients.proxy_protocol.as_ref();
        pp.is_some_and(|pp| pp.covers(&ctx.listener))
    };
    if max == 0
        || peer == crate::session::UNIX_PEER
        || behind_balancer()
        || rt.clients.trusted.contains(peer.ip())
    {
        return Some(ConnPermit::new(slot, None, open));
    }
    let Some(client) = shared.clients.open(peer.ip(), max) else {
        front.refused(Refusal::Limit);
        return None;
    };
    Some(ConnPermit::new(slot, Some(client), open))
}

/// A listening socket of one worker: TCP, or a Unix-domain socket.
pub(super) enum Acceptor {
    Tcp(TcpListener),
    Unix(tokio::net::UnixListener),
}

impl Acceptor {
    /// The next connection and its peer ([`crate::session::UNIX_PEER`] on a Unix-domain
    /// socket, whose peers have no address).
    async fn accept(&self) -> std::io::Result<(ClientStream, SocketAddr)> {
        match self {
            // `::ffff:192.0.2.1` on a `[::]` listener is the IPv4 client it maps.
            Acceptor::Tcp(l) => l
                .accept()
                .await
                .map(|(s, p)| (s.into(), crate::client_identity::canonical_addr(p))),
            Acceptor::Unix(l) => l
                .accept()
                .await
                .map(|(s, _)| (s.into(), crate::session::UNIX_PEER)),
        }
    }
}

/// The next parked connection whose client sent something; meanwhile, the lot's `timer`
/// closes the ones whose `keepalive_timeout` ran out (see [`Lot::poll_next`]).
fn unparked<'a>(
    lot: &'a Lot,
    mut timer: Pin<&'a mut Sleep>,
) -> impl std::future::Future<Output = Parked> + 'a {
    std::future::poll_fn(move |cx| lot.poll_next(cx, timer.as_mut()))
}
