//! Client connections: the lane for plain bodiless requests, hyper for the rest, and idle
//! keep-alive connections *parked* outside both.
//!
//! A plain connection starts in the lane (`lane.rs`), which serves bodiless HTTP/1.1 requests
//! itself. The first request it does not take (a body, an upgrade, HTTP/1.0, anything odd) goes
//! to a fresh hyper connection with every byte read so far, and hyper serves from there until it
//! is idle; then the connection is back in the lane. TLS and h2c connections are hyper's only.
//!
//! hyper keeps an 8 KiB read buffer and an 8 KiB write buffer for as long as a connection lives,
//! so 10 000 idle keep-alive clients would cost 160 MiB. Here a hyper connection lives only while
//! requests are being served: as soon as it is idle, it is taken apart (`into_parts`) and the
//! socket, with any bytes hyper had read ahead, goes back to the lane, and from there, once
//! idle, to the listener's parking lot (`park.rs`), holding no buffers.
//!
//! hyper does not say when it is idle, so this module decides it from what it observes, and only
//! when all of it holds: every request hyper handed to the service has a response whose body
//! ended cleanly; the current request body was read to its end; hyper's last I/O was a completed
//! flush of the socket (hyper flushes the socket only once its own buffer is fully written); and
//! hyper's connection returned `Pending` (it is waiting for the next request). Anything else, such
//! as a client that asked to close or a body that did not end cleanly, is left to hyper, which
//! then closes the connection itself.

use crate::proxy;
use crate::proxy::body::{ClientIn, IdleTimer};
use crate::proxy::Live as Shared;
use crate::session::counters::{Front, Refusal};
use crate::session::stream::ClientStream;
use crate::session::ClientInfo;
use crate::session::ConnState;
use bytes::{Buf, Bytes};
use http::{Request, Response};
use hyper::body::Incoming;
use hyper::rt::{Read, ReadBufCursor, Write};
use hyper_util::rt::TokioIo;
pub use per_client::refuse_busy;
use per_client::{announced_client_slot, refuse_busy_stream};
use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::net::TcpStream;
use tokio::sync::Notify;

use crate::lane::Outcome;
mod first;
mod held;
mod per_client;
pub mod proxy_protocol;
mod scan;
mod settings;
mod watch;

use scan::*;
use settings::*;
use watch::*;

pub use crate::park::Parked;

/// The park clock: a connection whose hyper state has been idle for two ticks (250 to 500 ms)
/// is parked. One ticker per worker, so no connection needs a timer of its own.
pub const PARK_TICK: Duration = Duration::from_millis(250);

/// Starts a worker's park clock. Dropping the returned guard stops it.
pub fn park_clock() -> (
    tokio::sync::watch::Receiver<u64>,
    tokio::task::JoinHandle<()>,
) {
    let (tx, rx) = tokio::sync::watch::channel(0u64);
    let task = tokio::spawn(async move {
        let mut every = tokio::time::interval(PARK_TICK);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            every.tick().await;
            tx.send_modify(|t| *t += 1);
        }
    });
    (rx, task)
}

/// Counts the exchanges in progress on one worker's listener, so shutdown can wait for them.
/// Parked (idle) connections are not counted: they are closed when the worker stops.
#[derive(Debug, Default)]
pub struct Active {
    count: std::sync::atomic::AtomicUsize,
    idle: Notify,
}

impl Active {
    fn enter(self: &Arc<Self>) -> ActiveGuard {
        self.count.fetch_add(1, Ordering::AcqRel);
        ActiveGuard(self.clone())
    }

    /// Resolves when no exchange is in progress.
    pub async fn drained(&self) {
        loop {
            let notified = self.idle.notified();
            if self.count.load(Ordering::Acquire) == 0 {
                return;
            }
            notified.await;
        }
    }
}

struct ActiveGuard(Arc<Active>);

impl Drop for ActiveGuard {
    fn drop(&mut self) {
        if self.0.count.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.0.idle.notify_waiters();
        }
    }
}

/// The per-connection service handed to hyper.
#[derive(Clone)]
struct ProxyService {
    shared: Arc<Shared>,
    conn: Arc<ConnState>,
}

impl ProxyService {
    /// The service of a plain connection: the lane and hyper take turns on it, so its
    /// exchanges are counted by hand (`manual`).
    fn plain(shared: Arc<Shared>, conn: &Parked) -> ProxyService {
        let peer = conn.stream.as_tcp().map(|_| conn.peer);
        let mut state = ConnState::new(ClientInfo::connected(peer, conn.origin.clone()));
        state.manual = true;
        state.front = conn.permit.as_ref().map(|p| p.front().clone());
        ProxyService {
            shared,
            conn: Arc::new(state),
        }
    }
}

type BoxFuture =
    Pin<Box<dyn Future<Output = Result<Response<proxy::body::ProxyBody>, Infallible>> + Send>>;

impl hyper::service::Service<Request<Incoming>> for ProxyService {
    type Response = Response<proxy::body::ProxyBody>;
    type Error = Infallible;
    type Future = BoxFuture;

    fn call(&self, req: Request<Incoming>) -> BoxFuture {
        let state = self.conn.clone();
        let index = state.started.fetch_add(1, Ordering::Relaxed);
        if !hyper::body::Body::is_end_stream(req.body()) {
            state.body_pending.store(true, Ordering::Relaxed);
        }
        let rt = self.shared.runtime.load_full();
        let ambiguous = index >= state.ambiguous_at.load(Ordering::Relaxed);
        Box::pin(async move {
            // Counts the exchange as finished if this future is dropped before it answers
            // (an HTTP/2 stream reset by its client); after, the response body does.
            let exchange = Unanswered(Some(state));
            let state = exchange.0.as_ref().expect("set above");
            let mut resp = if ambiguous {
                // Both Content-Length and Transfer-Encoding, or Content-Length twice. Logged
                // with the client behind any trusted proxy, as every other answer.
                let behind = proxy::behind_proxies(&rt, &state.client, req.headers());
                let client = behind.as_deref().unwrap_or(&state.client);
                let log = crate::access_log::AccessLog::start(rt.log.as_ref(), &req, client, state);
                proxy::error_response(crate::error::ErrorKind::BadRequest, log)
            } else {
                proxy::handle(&rt, req.map(ClientIn::Hyper), &state.client, state).await
            };
            rt.traffic.count(resp.status().as_u16());
            if let Some(f) = &state.front {
                f.response(resp.status().as_u16(), resp.body().verdict());
            }
            resp.body_mut().attach(exchange.answered());
            Ok(resp)
        })
    }
}

/// An exchange of hyper's that has not answered yet (see [`ProxyService::call`]).
struct Unanswered(Option<Arc<ConnState>>);

impl Unanswered {
    /// The response is ready: its body counts the exchange from here.
    fn answered(mut self) -> Arc<ConnState> {
        self.0.take().expect("answered once")
    }
}

impl Drop for Unanswered {
    fn drop(&mut self) {
        if let Some(state) = &self.0 {
            state.finished.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// What every connection of a listener shares on its worker.
#[derive(Clone)]
pub struct Ctx {
    pub shared: Arc<Shared>,
    pub active: Arc<Active>,
    pub ticks: tokio::sync::watch::Receiver<u64>,
    /// Where idle keep-alive connections wait (see `park.rs`).
    pub lot: crate::park::Lot,
    /// The listener, as configured (whether `proxy_protocol` covers it).
    pub listener: Arc<crate::config::ListenAddr>,
}

/// Serves one client connection until it closes, times out idle, or its worker stops (an
/// exchange in progress is finished first). Once idle, the connection goes to the listener's
/// parking lot and this task ends; the lot hands it to a new task when the client sends again
/// (`fresh` is false then: it is readable already, and cannot be h2c).
pub async fn serve(mut conn: Parked, ctx: Ctx, fresh: bool) {
    let Ctx {
        shared,
        active,
        mut ticks,
        lot,
        listener,
    } = ctx;
    let mut pending = Bytes::new();
    let fresh = fresh.then(|| Fresh::now(&shared, &ticks));
    if fresh.as_ref().is_some_and(|f| f.origin) {
        // Boxed: a connection's future keeps no room for the PROXY header's reading.
        match Box::pin(note_origin(&mut conn, &shared, &listener)).await {
            Some(read) => pending = read,
            None => return,
        }
    }
    let svc = ProxyService::plain(shared, &conn);
    if let Some(f) = fresh {
        // Boxed: the first bytes' buffer and timer stay out of the connection's future.
        match Box::pin(first::h2_or_not(&mut conn, &mut pending, &f)).await {
            None => return,
            Some(false) => {}
            Some(true) => {
                let io = Prefixed::h2c(conn.stream, pending, &svc.conn, f.stall);
                let _active = active.enter();
                // Boxed: the HTTP/2 connection's state stays out of the parked future.
                Box::pin(serve_h2(io, svc, ticks, f.born)).await;
                return;
            }
        }
    }
    loop {
        {
            let _active = active.enter();
            // Boxed: a waiting connection's task keeps no room for an exchange's state.
            let (outcome, back, unparsed) = Box::pin(crate::lane::serve(
                conn.stream,
                pending,
                &svc.shared,
                &svc.conn,
                &mut ticks,
            ))
            .await;
            conn.stream = back;
            pending = unparsed;
            match outcome {
                Outcome::Close => return,
                Outcome::Idle => {}
                Outcome::Hyper => {
                    // hyper's turn, from the first byte of the request the lane left.
                    let unparsed = std::mem::take(&mut pending);
                    let turn = hyper_turn(conn.stream, unparsed, &svc, &mut ticks);
                    // Boxed: a lane connection's future keeps no room for hyper's state.
                    let Some((stream, unparsed)) = Box::pin(turn).await else {
                        return;
                    };
                    (conn.stream, pending) = (stream, unparsed);
                }
            }
        }
        if !pending.is_empty() {
            // The client sent its next request already.
            continue;
        }
        // Idle: to the lot, unless the client sent something meanwhile.
        let keepalive = svc.shared.runtime.load().limits.keepalive_timeout;
        match lot.park(conn, keepalive) {
            Ok(()) => return,
            Err(back) => conn = back,
        }
    }
}

/// What a new connection's start reads of the runtime.
struct Fresh {
    /// The park clock's tick at the start.
    born: u64,
    /// `header_read_timeout`: for its first bytes, then again for a whole head (hyper's
    /// timer).
    wait: Duration,
    /// `body_timeout`.
    stall: Duration,
    h2c: bool,
    /// The PROXY protocol or `send_proxy` is on: the connection's origin is noted.
    origin: bool,
}

impl Fresh {
    fn now(shared: &Shared, ticks: &tokio::sync::watch::Receiver<u64>) -> Fresh {
        let rt = shared.runtime.load();
        Fresh {
            born: *ticks.borrow(),
            wait: rt.limits.header_read_timeout,
            stall: rt.limits.body_timeout,
            h2c: rt.h2c,
            origin: rt.clients.proxy_protocol.is_some() || rt.send_proxy,
        }
    }
}

/// Notes a new plain connection's origin (see [`origin_of`]). Gives the bytes read after a
/// PROXY header (Unix-domain sockets only); `None`: the connection was refused (closed and
/// counted).
async fn note_origin(
    conn: &mut Parked,
    shared: &Shared,
    listener: &crate::config::ListenAddr,
) -> Option<Bytes> {
    let rt = shared.runtime.load_full();
    let peer = conn.stream.as_tcp().map(|_| conn.peer);
    let front = conn.permit.as_ref().map(|p| p.front().clone());
    let refused = |why| front.as_ref().inspect(|f| f.refused(why));
    let Some((origin, read)) = origin_of(&mut conn.stream, peer, &rt, listener).await else {
        refused(Refusal::ProxyProtocol);
        return None;
    };
    match announced_client_slot(shared, &rt, &origin) {
        Ok(None) => {}
        Ok(Some(slot)) => {
            if let Some(p) = conn.permit.as_mut() {
                p.hold(slot);
            }
        }
        Err(()) => {
            refused(Refusal::Limit);
            refuse_busy_stream(&conn.stream);
            return None;
        }
    }
    conn.origin = Some(Arc::new(origin));
    Some(read)
}

/// What a new connection's origin is, when the PROXY protocol or `send_proxy` asks: the PROXY
/// header (if `proxy_protocol` covers `listener`: from a `proxy_protocol_from` peer, complete
/// within `proxy_protocol_timeout`), and for `send_proxy` the address the client reached. With
/// the bytes read after the header; `None`: refused (counted).
async fn origin_of(
    stream: &mut ClientStream,
    peer: Option<SocketAddr>,
    rt: &proxy::Runtime,
    listener: &crate::config::ListenAddr,
) -> Option<(crate::session::Origin, Bytes)> {
    let mut read = Bytes::new();
    let mut origin = match rt.clients.proxy_protocol.as_ref() {
        Some(pp) if pp.covers(listener) => {
            let counters = &rt.traffic.proxy_refused;
            if !pp.from.admits(peer.map(|p| p.ip())) {
                proxy_protocol::untrusted(peer, counters, listener);
                return None;
            }
            let deadline = tokio::time::Instant::now() + pp.timeout;
            let (origin, rest) = proxy_protocol::read(stream, peer, deadline, counters, listener)
                .await
                .ok()?;
            read = rest;
            origin
        }
        _ => crate::session::Origin::default(),
    };
    if rt.send_proxy && origin.destination.is_none() {
        origin.destination = stream.as_tcp().and_then(|s| s.local_addr().ok());
    }
    Some((origin, read))
}

/// Serves an h2c connection (prior knowledge) until it ends, times out, or the worker stops.
async fn serve_h2(
    io: Prefixed,
    svc: ProxyService,
    mut ticks: tokio::sync::watch::Receiver<u64>,
    born: u64,
) {
    let rt = svc.shared.runtime.load_full();
    let shared = svc.shared.clone();
    let state = svc.conn.clone();
    let watch = Watchdog {
        state: &state,
        h2: true,
        born,
    };
    drive_h2(io, svc, &rt, &shared, &mut ticks, watch).await;
}

/// Serves one TLS client connection: the handshake (within `header_read_timeout`), then
/// HTTP/2 or HTTP/1.1 as ALPN chose (HTTP/1.1 without ALPN), and only that protocol. Not
/// parked: TLS state holds buffers anyway.
pub async fn serve_tls(
    stream: TcpStream,
    peer: SocketAddr,
    shared: Arc<Shared>,
    active: Arc<Active>,
    mut ticks: tokio::sync::watch::Receiver<u64>,
    listener: Arc<crate::config::ListenAddr>,
    front: Front,
) {
    let born = *ticks.borrow();
    let rt = shared.runtime.load_full();
    let Some(tls_listener) = rt.tls.clone() else {
        return;
    };
    // The PROXY header comes before the TLS handshake.
    let mut _announced = None;
    let (stream, origin) = match rt.clients.proxy_protocol.is_some() || rt.send_proxy {
        false => (stream, None),
        true => {
            let mut s = ClientStream::Tcp(stream);
            let Some((origin, _)) = origin_of(&mut s, Some(peer), &rt, &listener).await else {
                return front.refused(Refusal::ProxyProtocol);
            };
            // Over `max_connections_per_client`: closed (nothing can be said before TLS).
            let Ok(slot) = announced_client_slot(&shared, &rt, &origin) else {
                return front.refused(Refusal::Limit);
            };
            _announced = slot;
            let ClientStream::Tcp(stream) = s else { return };
            (stream, Some(Arc::new(origin)))
        }
    };
    let Some(tls) = handshake(stream, peer, &tls_listener, &rt).await else {
        return front.refused(Refusal::TlsHandshake);
    };
    let _active = active.enter();
    let mut client = ClientInfo::connected(Some(peer), origin);
    client.scheme = "https";
    if let Some(certs) = tls.get_ref().1.peer_certificates() {
        client.cert = certs
            .first()
            .and_then(|c| crate::tls::ClientCert::of(c))
            .map(Arc::new);
    }
    client.hop_scheme = "https";
    let mut state = ConnState::new(client);
    state.tls = Some(crate::session::TlsInfo::of(tls.get_ref().1));
    state.front = Some(front);
    let state = Arc::new(state);
    let svc = ProxyService {
        shared: shared.clone(),
        conn: state.clone(),
    };
    let h2 = tls.get_ref().1.alpn_protocol() == Some(b"h2");
    let io = ScannedTls {
        io: tls,
        scan: if h2 {
            Scan::H2(Default::default())
        } else {
            Scan::H1(Default::default())
        },
        failed: false,
        state: state.clone(),
        stall: IdleTimer::new(rt.limits.body_timeout),
    };
    let watch = Watchdog {
        state: &state,
        h2,
        born,
    };
    if h2 {
        drive_h2(io, svc, &rt, &shared, &mut ticks, watch).await;
    } else {
        let conn = h1_builder(&rt).serve_connection(io, svc).with_upgrades();
        drive_until_stopped(conn, &shared, &mut ticks, watch, |c| c.graceful_shutdown()).await;
    }
}

/// The TLS handshake within `header_read_timeout`, under the configuration the ClientHello's
/// SNI name chooses (its certificate entry's client authentication). A failure is counted by
/// reason; one over a client certificate is logged at `info` (the others, common from
/// scanners, at `debug`).
async fn handshake(
    stream: TcpStream,
    peer: SocketAddr,
    listener: &crate::tls::Listener,
    rt: &proxy::Runtime,
) -> Option<tokio_rustls::server::TlsStream<TcpStream>> {
    let accept = async {
        let start =
            tokio_rustls::LazyConfigAcceptor::new(rustls::server::Acceptor::default(), stream)
                .await?;
        let config = listener.config_for(start.client_hello().server_name());
        start.into_stream(config).await
    };
    let reason = match tokio::time::timeout(rt.limits.header_read_timeout, accept).await {
        // A TLS-ALPN-01 validation (RFC 8737 3) ends with its handshake.
        Ok(Ok(s)) => return crate::tls::acme::not_a_validation(s),
        Ok(Err(e)) => {
            let reason = crate::tls::client_auth::failure_reason(&e);
            match reason {
                "protocol" => {
                    tracing::debug!(client = %peer, error = %e, "TLS handshake failed")
                }
                _ => tracing::info!(client = %peer, reason, error = %e, "TLS handshake failed"),
            }
            reason
        }
        Err(_) => "timeout",
    };
    rt.traffic.tls_failures.count(reason);
    None
}

/// What driving hyper came to.
enum Step {
    Done(hyper::Result<()>),
    Idle,
    UnreadBody,
}

impl Step {
    /// What hyper's poll means while it serves requests: `Done` when it finished the
    /// connection; when it waits (`Pending`) and every request this hyper connection took
    /// (at least one: `started` passed `before`) has its response sent, `Idle`, or `UnreadBody`
    /// if a request body was left unread; else keep driving.
    #[inline]
    fn of_busy(polled: Poll<hyper::Result<()>>, state: &ConnState, before: u64) -> Poll<Step> {
        match polled {
            Poll::Ready(r) => Poll::Ready(Step::Done(r)),
            // Only once this hyper connection served a request.
            Poll::Pending
                if state.started.load(Ordering::Relaxed) > before && state.responses_done() =>
            {
                if state.body_pending.load(Ordering::Relaxed) {
                    Poll::Ready(Step::UnreadBody)
                } else {
                    Poll::Ready(Step::Idle)
                }
            }
            Poll::Pending => Poll::Pending,
        }
    }
}

/// Where an idle hyper connection started waiting: the requests begun and the park clock's
/// tick then.
struct IdleSince {
    started: u64,
    tick: u64,
}

/// What a tick of the park clock means for an idle hyper connection.
enum Tick {
    /// The client sent a request meanwhile: drive hyper as busy again.
    Busy,
    /// Take the socket back from hyper: the worker is stopping (or its clock stopped), or the
    /// connection stayed idle across two ticks.
    Park,
    /// Keep waiting.
    Wait,
}

impl IdleSince {
    fn now(state: &ConnState, ticks: &mut tokio::sync::watch::Receiver<u64>) -> IdleSince {
        IdleSince {
            started: state.started.load(Ordering::Relaxed),
            tick: *ticks.borrow_and_update(),
        }
    }

    /// Judges a tick (`changed`: the clock's news, an error once it stopped).
    #[inline]
    fn tick(
        &self,
        changed: Result<(), tokio::sync::watch::error::RecvError>,
        ticks: &tokio::sync::watch::Receiver<u64>,
        state: &ConnState,
        shared: &Shared,
    ) -> Tick {
        if state.started.load(Ordering::Relaxed) != self.started {
            Tick::Busy
        } else if changed.is_err()
            || shared.stopping.load(Ordering::Relaxed)
            || (*ticks.borrow() >= self.tick + 2 && state.idle())
        {
            Tick::Park
        } else {
            Tick::Wait
        }
    }
}

/// hyper's turn on a plain connection the lane handed over ([`drive`]): the socket and the
/// bytes read ahead when hyper gives it back idle; `None` when the connection ended (or was
/// shut down because the proxy is stopping).
async fn hyper_turn(
    stream: ClientStream,
    unparsed: Bytes,
    svc: &ProxyService,
    ticks: &mut tokio::sync::watch::Receiver<u64>,
) -> Option<(ClientStream, Bytes)> {
    let stall = svc.shared.runtime.load().limits.body_timeout;
    let io = Prefixed::h1(stream, unparsed, &svc.conn, stall);
    let mut back = drive(io, svc.clone(), ticks).await?;
    if svc.shared.stopping.load(Ordering::Relaxed) {
        let _ = std::future::poll_fn(|cx| Pin::new(&mut back).poll_shutdown(cx)).await;
        return None;
    }
    Some((back.io.into_inner(), back.prefix))
}

/// Serves requests with a fresh hyper connection until hyper finishes the connection (`None`)
/// or has stayed idle for two park-clock ticks (`Some`: the socket, with read-ahead bytes first).
async fn drive(
    io: Prefixed,
    svc: ProxyService,
    ticks: &mut tokio::sync::watch::Receiver<u64>,
) -> Option<Prefixed> {
    let state = svc.conn.clone();
    let shared = svc.shared.clone();
    state.flushed.store(false, Ordering::Relaxed);
    let before = state.started.load(Ordering::Relaxed);
    let mut conn = h1_plain_builder(&shared.runtime.load()).serve_connection(io, svc);
    let finished: Option<hyper::Result<()>> = 'drive: loop {
        // Busy: drive hyper until it is done or idle. The park clock's ticks also bring news of
        // a shutdown, so hyper can be told to finish after the exchange in progress.
        let step = loop {
            tokio::select! {
                biased;
                step = std::future::poll_fn(|cx| {
                    Step::of_busy(conn.poll_without_shutdown(cx), &state, before)
                }) => break step,
                _ = ticks.changed() => {
                    if shared.stopping.load(Ordering::Relaxed) {
                        Pin::new(&mut conn).graceful_shutdown();
                    }
                }
            }
        };
        match step {
            Step::Done(r) => break Some(r),
            Step::UnreadBody => {
                // Answered without reading the request body (an error page): the rest of the
                // body can never be told from a next request, so the connection ends here.
                let mut parts = conn.into_parts();
                let _ = std::future::poll_fn(|cx| Pin::new(&mut parts.io).poll_shutdown(cx)).await;
                return None;
            }
            Step::Idle => {}
        }
        // Idle: keep driving hyper (the client may send its next request any moment) and
        // park once it stayed idle across two ticks of the worker's park clock.
        let since = IdleSince::now(&state, ticks);
        loop {
            tokio::select! {
                biased;
                r = std::future::poll_fn(|cx| conn.poll_without_shutdown(cx)) => break 'drive Some(r),
                changed = ticks.changed() => match since.tick(changed, ticks, &state, &shared) {
                    Tick::Busy => continue 'drive,
                    Tick::Park => break 'drive None,
                    Tick::Wait => {}
                },
            }
        }
    };
    match finished {
        // hyper finished the connection itself: an upgrade, or the client closed or asked to.
        Some(Ok(())) => {
            let parts = conn.into_parts();
            finished_by_hyper(parts.io, &parts.read_buf, &state).await;
            None
        }
        Some(Err(e)) => {
            ended_with(&state, &e, &shared.runtime.load());
            None
        }
        None => {
            let mut parts = conn.into_parts();
            unread(&mut parts.io, &parts.read_buf);
            Some(parts.io)
        }
    }
}

/// A client connection hyper ended with an error: logged (at debug), and counted among its
/// listener's request errors (HAProxy's `ereq`) when hyper refused a malformed, too large or
/// late head itself; a head it answered (400, 431) has an access-log line (`<BADREQ>`).
pub(super) fn ended_with(state: &ConnState, e: &hyper::Error, rt: &proxy::Runtime) {
    tracing::debug!(client = %state.client.addr, error = %e, "client connection ended with an error");
    if e.is_parse() || e.is_parse_too_large() || e.is_timeout() {
        state.front.as_ref().inspect(|f| f.bad_request());
    }
    let answered = match () {
        () if e.is_parse_too_large() => Some((431, "headers_too_large")),
        () if e.is_parse() => Some((400, "bad_request")),
        () => None,
    };
    if let (Some((status, reason)), Some(sink)) = (answered, &rt.log) {
        crate::access_log::AccessLog::refused_head(sink, &state.client, state, status, reason);
    }
}

/// A connection hyper finished itself: handed to the tunnel of an upgrade the server
/// accepted, else closed.
async fn finished_by_hyper(mut io: Prefixed, read_buf: &Bytes, state: &ConnState) {
    if let Some(tx) = state.take_upgrade() {
        io.scan.stop();
        unread(&mut io, read_buf);
        // No tunnel waits (the server did not switch): close as usual.
        if let Err(mut back) = tx.send(Box::new(TokioIo::new(io))) {
            let _ = tokio::io::AsyncWriteExt::shutdown(&mut back).await;
        }
        return;
    }
    let _ = std::future::poll_fn(|cx| Pin::new(&mut io).poll_shutdown(cx)).await;
}

/// Puts the bytes hyper read ahead (`read_buf`) back in front of what is left of `io`'s
/// prefix, which hyper did not read. Copied out: even an empty view would keep hyper's read
/// buffer alive.
fn unread(io: &mut Prefixed, read_buf: &Bytes) {
    if read_buf.is_empty() {
        return;
    }
    io.prefix = if io.prefix.is_empty() {
        Bytes::copy_from_slice(read_buf)
    } else {
        [read_buf.as_ref(), io.prefix.as_ref()].concat().into()
    };
}

#[cfg(test)]
mod tests;
