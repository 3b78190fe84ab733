//! The request pipeline, the one module that knows every subsystem. Phases, in order:
//!
//! 1. **loop check**: a request whose `Via` already names this instance is answered 508;
//! 2. **route**: the first route whose pattern is found in the path picks the pool (else 404);
//! 3. **pick**: the pool's balancer picks a usable server (not offline, not yet tried);
//! 4. **connect**: reuse an idle connection or open one; a failed connect counts against the
//!    server (high availability) and goes back to step 3 with the same, untouched request;
//! 5. **exchange**: send the request, streaming its body, and wait for the response head;
//!    once any of the request was written it is never sent anywhere else;
//! 6. **respond**: stream the server's body to the client; the connection returns to the idle
//!    pool when the body has ended cleanly; the access-log line is written at the very end.

pub mod body;
pub mod cached;
pub mod files;
pub mod headers;
pub mod target;

use crate::access_log::AccessLog;
use crate::backend::monitor::{self, Seen};
use crate::backend::{ha::Availability, InFlight, Pool, PoolView, Server};
use crate::balancer::PickContext;
use crate::balancer::Tried;
use crate::cache::Cache;
use crate::clock;
use crate::error::ErrorKind;
use crate::router::Router;
use crate::session;
use crate::session::ClientInfo;
use crate::session::ConnState;
use crate::strict;
use crate::upstream::h1;
use crate::upstream::{connect, take_connection, to_h2, SendError, Sender, Target, UpstreamBody};
use body::{ClientIn, ProxyBody, Reusable, UpBody};
use http::header::{HeaderValue, CONTENT_TYPE, TE};
use http::{Request, Response, Uri, Version};
use hyper_util::rt::TokioIo;
use std::sync::Arc;
use tokio::time::Instant;

/// An immutable snapshot of everything the request path needs, swapped whole on reload.
#[derive(Debug)]
pub struct Runtime {
    pub router: Router,
    /// Routes in file order (the router's targets index this).
    pub routes: Vec<RouteRt>,
    pub pools: Vec<Arc<Pool>>,
    /// The shared cache (kept across reloads while its rules stay the same).
    pub cache: Arc<Cache>,
    /// Responses by status class (the same object across reloads), counted per response.
    pub traffic: Arc<crate::stats::Traffic>,
    /// This instance's `Via` entry (`1.1 NAME`).
    pub via: HeaderValue,
    /// NAME, as looked for in incoming `Via` headers.
    pub via_token: Arc<str>,
    pub access_log: bool,
    /// What clients may send and how long they may take.
    pub limits: crate::config::Limits,
    /// The TLS listeners' configuration (re-read on reload: new handshakes take the new one).
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// h2c with prior knowledge on plain listeners.
    pub h2c: bool,
    pub h2: crate::config::H2Settings,
}

impl Runtime {
    /// Whether some pool's balancer hashes on this request field (`header:NAME`, or the
    /// `cookie` field for `cookie:NAME`), so a `Connection` option must not remove it.
    pub fn hashes_on(&self, name: &http::header::HeaderName) -> bool {
        use crate::config::HashOn;
        self.pools.iter().any(|p| match &p.hash_on {
            Some(HashOn::Header(h)) => name.as_str().eq_ignore_ascii_case(h),
            Some(HashOn::Cookie(_)) => name == http::header::COOKIE,
            _ => false,
        })
    }
}

/// What every connection reads of the running instance: the current snapshot (swapped whole on
/// reload) and whether shutdown has begun.
#[derive(Debug)]
pub struct Live {
    pub runtime: arc_swap::ArcSwap<Runtime>,
    /// Set at shutdown: connections close after their current exchange.
    pub stopping: std::sync::atomic::AtomicBool,
}

/// A route as the request path sees it.
#[derive(Debug)]
pub struct RouteRt {
    /// Index into [`Runtime::pools`], or `None` for a file route.
    pub pool: Option<usize>,
    pub root: Option<Arc<std::path::Path>>,
    pub cache: bool,
    pub grace: Option<std::time::Duration>,
    pub purge: Vec<ipnet::IpNet>,
}

/// Handles one request. Never fails: every problem becomes a response with a status and reason.
pub async fn handle(
    rt: &Arc<Runtime>,
    mut req: Request<ClientIn>,
    client: &ClientInfo,
    conn: &Arc<ConnState>,
) -> Response<ProxyBody> {
    let mut log = rt
        .access_log
        .then(|| AccessLog::new(client.addr, req.method(), req.uri().path(), Instant::now()));

    if let Err(kind) = strict::check_request(
        req.method(),
        req.uri(),
        req.version(),
        req.headers(),
        &rt.limits,
    ) {
        return error_response(kind, log);
    }
    if let Err(kind) = target_phase(&mut req) {
        return error_response(kind, log);
    }
    if headers::via_contains(req.headers(), &rt.via_token) {
        return error_response(ErrorKind::Loop, log);
    }
    let Some((_, route_idx)) = rt.router.route(req.uri().path()) else {
        return error_response(ErrorKind::NoRoute, log);
    };
    let route = &rt.routes[route_idx];
    let Some(pool_idx) = route.pool else {
        return files::serve(rt, route, req, log).await;
    };
    let pool = &rt.pools[pool_idx];
    if let Some(l) = &mut log {
        l.pool = Some(pool.name.clone());
    }
    if let Some(protocol) = upgrade_protocol(&req) {
        return upgrade(rt, pool, req, protocol, client, conn, log).await;
    }
    if route.cache {
        return cached::handle(rt, route, pool, req, client, conn, log).await;
    }
    let req = match upstream_request(rt, req, client, conn).await {
        Ok(r) => r,
        Err(kind) => return error_response(kind, log),
    };
    forward(pool, req, client, log).await
}

/// The target phase: the one request that every later phase sees and that goes upstream.
/// The path is normalised (see [`target`]), an authority with userinfo is refused (RFC 9110
/// 4.2.4), and an HTTP/2 request is made ready for HTTP/1.1 ([`headers::h2_to_h1`]). So
/// routing, hashing, the cache key and the forwarded request all read the same target.
fn target_phase<B>(req: &mut Request<B>) -> Result<(), ErrorKind> {
    match target::normalize_uri(req.uri()) {
        Ok(Some(uri)) => *req.uri_mut() = uri,
        Ok(None) => {}
        Err(_) => return Err(ErrorKind::BadRequest),
    }
    if req
        .uri()
        .authority()
        .is_some_and(|a| a.as_str().contains('@'))
    {
        return Err(ErrorKind::BadRequest);
    }
    if req.version() == Version::HTTP_2 {
        let uri = req.uri().clone();
        headers::h2_to_h1(req.headers_mut(), &uri).map_err(|_| ErrorKind::BadRequest)?;
    }
    Ok(())
}

/// Upgrades a request may ask for and get tunnelled (RFC 9110 7.8). Others, such as `h2c`
/// (whose server would then answer paths no route allows), are dropped: the request is served
/// as a plain one.
const UPGRADES: &[&str] = &["websocket"];

/// The protocols an HTTP/1.1 request asks to switch to (`Connection: upgrade` and `Upgrade`)
/// that are allowed ([`UPGRADES`]), as the `Upgrade` value to forward.
fn upgrade_protocol(req: &Request<ClientIn>) -> Option<HeaderValue> {
    if req.version() != Version::HTTP_11 {
        return None;
    }
    let asks = req
        .headers()
        .get_all(http::header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case("upgrade"));
    if !asks {
        return None;
    }
    let value = req.headers().get(http::header::UPGRADE)?;
    allowed_upgrades(value)
}

/// The protocols of an `Upgrade` value that may be tunnelled (the value itself when all are).
fn allowed_upgrades(value: &HeaderValue) -> Option<HeaderValue> {
    let allowed = |p: &&str| {
        let name = p.split('/').next().unwrap_or("").trim();
        UPGRADES.iter().any(|u| name.eq_ignore_ascii_case(u))
    };
    let text = value.to_str().ok()?;
    let listed: Vec<&str> = text
        .split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .collect();
    let kept: Vec<&str> = listed.iter().copied().filter(allowed).collect();
    if kept.is_empty() {
        None
    } else if kept.len() == listed.len() {
        Some(value.clone())
    } else {
        HeaderValue::from_str(&kept.join(", ")).ok()
    }
}

/// The client's side of an upgrade: hyper's own (TLS connections) or handed over by the
/// connection loop once hyper let go of the socket (parked plain connections, see conn.rs).
pub enum ClientUpgrade {
    Native(hyper::upgrade::OnUpgrade),
    Manual(tokio::sync::oneshot::Receiver<Box<dyn session::Tunnel>>),
}

impl Clone for ClientUpgrade {
    /// Only so the request's extensions stay cloneable; never cloned in practice.
    fn clone(&self) -> Self {
        ClientUpgrade::Manual(tokio::sync::oneshot::channel().1)
    }
}

/// WebSocket and other upgrades: the request goes to a server with its `Connection: upgrade`
/// and `Upgrade`; on a 101 both sides are joined in a tunnel (see [`forward`]).
async fn upgrade(
    rt: &Runtime,
    pool: &Arc<Pool>,
    mut req: Request<ClientIn>,
    protocol: HeaderValue,
    client: &ClientInfo,
    conn: &Arc<ConnState>,
    log: Option<AccessLog>,
) -> Response<ProxyBody> {
    let side = match req.extensions_mut().remove::<hyper::upgrade::OnUpgrade>() {
        Some(on) if !conn.manual_upgrade() => ClientUpgrade::Native(on),
        _ => ClientUpgrade::Manual(conn.expect_upgrade()),
    };
    let mut up = match upstream_request(rt, req, client, conn).await {
        Ok(r) => r,
        Err(kind) => return error_response(kind, log),
    };
    up.headers_mut().insert(
        http::header::CONNECTION,
        HeaderValue::from_static("upgrade"),
    );
    up.headers_mut().insert(http::header::UPGRADE, protocol);
    up.extensions_mut().insert(side);
    let resp = forward(pool, up, client, log).await;
    if resp.status() == http::StatusCode::SWITCHING_PROTOCOLS {
        conn.mark_tunnel();
    }
    resp
}

/// Copies both ways until either side closes. Counted as a request in flight of its server
/// (least-connections sees it) and a session of it (`shutdown-sessions` ends it).
async fn tunnel(client: ClientUpgrade, server: h1::Upgraded, in_flight: InFlight) {
    let _in_flight = in_flight;
    let client: Box<dyn session::Tunnel> = match client {
        ClientUpgrade::Native(on) => match on.await {
            Ok(u) => Box::new(TokioIo::new(u)),
            Err(_) => return,
        },
        ClientUpgrade::Manual(rx) => match rx.await {
            Ok(io) => io,
            Err(_) => return,
        },
    };
    let mut client = client;
    let mut server = server;
    let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
}

/// A refusal on behalf of a pool: its `[queue]` statuses, with `Retry-After`.
pub(crate) fn refuse(pool: &Pool, kind: ErrorKind, log: Option<AccessLog>) -> Response<ProxyBody> {
    let q = &pool.queue.config;
    let code = match kind {
        ErrorKind::QueueTimeout => q.timeout_status,
        _ => q.full_status,
    };
    let mut resp = error_response(kind, log);
    if let Ok(status) = http::StatusCode::from_u16(code) {
        *resp.status_mut() = status;
        resp.body_mut().set_status(code);
    }
    let secs = q.retry_after.as_secs().max(1);
    resp.headers_mut()
        .insert(http::header::RETRY_AFTER, HeaderValue::from(secs));
    resp
}

pub(crate) fn error_response(kind: ErrorKind, mut log: Option<AccessLog>) -> Response<ProxyBody> {
    if let Some(l) = &mut log {
        l.status = kind.status().as_u16();
        l.reason = kind.reason();
    }
    let mut resp = Response::new(ProxyBody::full(kind.body(), log));
    *resp.status_mut() = kind.status();
    resp.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    if kind.closes() {
        resp.headers_mut()
            .insert(http::header::CONNECTION, HeaderValue::from_static("close"));
    }
    resp
}

/// Prepares the request for the upstream hop: origin-form URI, HTTP/1.1, hop-by-hop headers
/// removed, forwarding headers added.
///
/// A body is read ahead up to `request_buffer` first: a short body reaches a server whole or
/// not at all (a malformed chunk, a body over `max_body_size` or a client that stalls is
/// answered here), and a slow client does not hold a server's connection while it trickles.
///
/// The head is prepared when this is called; the future returned is [`upstream_body`]'s own
/// (not one wrapped around it, which would move the request once more per request).
pub(crate) fn upstream_request<'a>(
    rt: &'a Runtime,
    req: Request<ClientIn>,
    client: &ClientInfo,
    conn: &'a Arc<ConnState>,
) -> impl std::future::Future<Output = Result<Request<UpBody>, ErrorKind>> + 'a {
    let (mut parts, body) = req.into_parts();
    upstream_parts(rt, &mut parts, client);
    upstream_body(rt, parts, body, conn)
}

/// The upstream request from a head already prepared by [`upstream_parts`] and the client's
/// body (read ahead as [`upstream_request`] says).
pub(crate) async fn upstream_body(
    rt: &Runtime,
    parts: http::request::Parts,
    body: ClientIn,
    conn: &Arc<ConnState>,
) -> Result<Request<UpBody>, ErrorKind> {
    let body = match body {
        ClientIn::Hyper(b) if !hyper::body::Body::is_end_stream(&b) => b,
        _ => return Ok(Request::from_parts(parts, UpBody::Empty)),
    };
    let mut body = Box::new(body::ClientBody::new(body, conn.clone(), &rt.limits));
    // With `Expect: 100-continue` the server is asked first (RFC 9110 10.1.1): reading the
    // body would make hyper answer 100 itself. The body follows the server's 100 (`h1.rs`).
    if !h1::expects_continue(&parts.headers) {
        if let Err(e) = body.read_ahead(rt.limits.request_buffer).await {
            return Err(body_error_kind(&e));
        }
    }
    Ok(Request::from_parts(parts, UpBody::Client(body)))
}

/// What the client is told when its own body failed.
fn body_error_kind(e: &body::BodyError) -> ErrorKind {
    e.client_kind().unwrap_or(ErrorKind::BadRequest)
}

/// The head of a request as it goes upstream: origin-form URI, HTTP/1.1, hop-by-hop headers
/// removed, forwarding headers added.
pub(crate) fn upstream_parts(rt: &Runtime, parts: &mut http::request::Parts, client: &ClientInfo) {
    if parts.version == Version::HTTP_10 {
        // An HTTP/1.0 client's expectation is ignored (RFC 9110 10.1.1), not sent on in 1.1.
        parts.headers.remove(http::header::EXPECT);
    }
    let trailers = headers::te_trailers(&parts.headers);
    if parts.uri.scheme().is_some() || parts.uri.authority().is_some() {
        // absolute-form: the target's authority is the Host (RFC 9112 3.2.2), sent origin-form
        if let Some(a) = parts
            .uri
            .authority()
            .and_then(|a| HeaderValue::from_str(a.as_str()).ok())
        {
            parts.headers.insert(http::header::HOST, a);
        }
        let pq = parts
            .uri
            .path_and_query()
            .map(|p| p.as_str())
            .unwrap_or("/");
        parts.uri = pq.parse().unwrap_or_else(|_| Uri::from_static("/"));
    }
    // (HTTP/1.1 requests have exactly one Host: the strict checks refuse the others.)
    if parts.version != Version::HTTP_11 && !parts.headers.contains_key(http::header::HOST) {
        // HTTP/1.0 (or HTTP/2 without `:authority`): an HTTP/1.1 request always carries Host,
        // empty when the target has no authority (RFC 9112 3.2).
        parts
            .headers
            .insert(http::header::HOST, HeaderValue::from_static(""));
    }
    headers::strip_hop_by_hop(&mut parts.headers, |n| rt.hashes_on(n));
    if trailers {
        parts
            .headers
            .insert(TE, HeaderValue::from_static("trailers"));
    }
    headers::add_forwarding(
        &mut parts.headers,
        &client.ip_header,
        client.scheme,
        &rt.via,
    );
    parts.version = Version::HTTP_11;
}

/// A copy of the body of a request that may be sent again: an idempotent method (RFC 9110
/// 9.2.2) and a body known whole (none, or read ahead to its end). A POST is never replayed.
fn replay_body(req: &Request<UpBody>) -> Option<UpBody> {
    if !is_idempotent(req.method()) {
        return None;
    }
    req.body().replay()
}

/// RFC 9110 9.2.2.
fn is_idempotent(method: &http::Method) -> bool {
    use http::Method;
    matches!(
        *method,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::PUT | Method::DELETE | Method::TRACE
    )
}

/// The request's head again, with `body`.
fn copy_head(req: &Request<UpBody>, body: UpBody) -> Request<UpBody> {
    let mut again = Request::new(body);
    *again.method_mut() = req.method().clone();
    *again.uri_mut() = req.uri().clone();
    *again.version_mut() = req.version();
    *again.headers_mut() = req.headers().clone();
    again
}

/// Where the upstream side connects for this server of this pool.
fn target<'a>(pool: &'a Pool, server: &'a Server) -> Target<'a> {
    Target {
        addr: server.addr,
        name: &server.name,
        tls: pool.tls.as_ref(),
        protocol: pool.protocol,
        read_timeout: pool.read_timeout,
    }
}

/// The connect timeout, cut short by what is left of the request's time.
fn connect_budget(pool: &Pool, until: Instant) -> std::time::Duration {
    pool.connect_timeout
        .min(until.saturating_duration_since(Instant::now()))
        .max(std::time::Duration::from_millis(1))
}

/// Records a failed connect; a server that goes offline (the reference's `attempts`) is a
/// transition like any other: one warning line and one entry in the health log.
fn connect_failed(pool: &Pool, server: &Server, err: &std::io::Error) {
    let failures = server.connect_failed(clock::now_ms());
    if !pool.ha.offline_timeout.is_zero() && failures == pool.ha.attempts {
        monitor::availability_changed(
            pool,
            server,
            false,
            format!(
                "{failures} consecutive failed connects ({err}); not tried for {:?}",
                pool.ha.offline_timeout
            ),
        );
    } else {
        tracing::debug!(pool = %pool.name, server = %server.name, failures, error = %err, "connect failed");
    }
}

/// Sends a prepared request to the pool: pick, connect, retry, queue (steps 3 to 6 above).
pub(crate) async fn forward(
    pool: &Arc<Pool>,
    mut req: Request<UpBody>,
    client: &ClientInfo,
    mut log: Option<AccessLog>,
) -> Response<ProxyBody> {
    let hash = pool.hash_on.as_ref().and_then(|on| {
        crate::balancer::request_key(on, client.addr.ip(), req.uri(), req.headers())
    });
    let ctx = PickContext {
        client_hint: u64::from(client.addr.port()),
        hash,
    };
    let mut tried = Tried::default();
    let mut upgrade = req.extensions_mut().remove::<ClientUpgrade>();
    // What the client asked to switch to (the 101 must name one of them).
    let asked = upgrade
        .as_ref()
        .and_then(|_| req.headers().get(http::header::UPGRADE).cloned());
    let mut place = Place::default();
    // `request_timeout` bounds everything below: queue, connects, retries and the wait.
    let started = Instant::now();
    let until = started + pool.request_timeout;
    // Attempts on servers so far, and what the last failed one came to.
    let mut attempts = 0u32;
    let mut last_error = ErrorKind::NoServer;
    if let Some(b) = &pool.retry_budget {
        b.deposit();
    }
    'servers: loop {
        // Newcomers wait behind requests already queued; only the oldest waiter may take a slot.
        let must_wait = match &place.ticket {
            Some(t) => !t.is_first(),
            None => tried.is_empty() && !pool.queue.is_empty(),
        };
        let view = PoolView::new(pool, &tried);
        let picked = if must_wait {
            None
        } else {
            view.pick(&***pool.balancer.load(), &ctx)
        };
        let Some(i) = picked else {
            // Wait only if a server could serve once a slot frees: when every server is down,
            // newcomers and waiters alike are answered at once.
            if tried.is_empty() && pool.any_alive() && (must_wait || pool.only_overloaded(&tried)) {
                match place.wait(pool, until).await {
                    Ok(()) => continue 'servers,
                    Err(ErrorKind::RequestTimeout) => {
                        return error_response(ErrorKind::RequestTimeout, log)
                    }
                    Err(kind) => return refuse(pool, kind, log),
                }
            }
            return match last_error {
                ErrorKind::NoServer => refuse(pool, ErrorKind::NoServer, log),
                other => error_response(other, log),
            };
        };
        if let Some(t) = place.ticket.take() {
            t.used();
        }
        let server = &pool.servers[i];
        let availability = server.availability(pool.ha, &|| view.now());
        tried.insert(i);
        let _claim = match availability {
            Availability::Up => None,
            Availability::Offline => continue,
            Availability::RetryDue => match server.claim_retry() {
                Some(c) => Some(c),
                None => continue,
            },
        };
        attempts += 1;
        if attempts > 1 {
            if !retry_allowed(pool, attempts) {
                if let Some(l) = &mut log {
                    l.reason = "retries_exhausted";
                }
                return match last_error {
                    ErrorKind::NoServer => refuse(pool, ErrorKind::NoServer, log),
                    other => error_response(other, log),
                };
            }
            server
                .redispatched
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        let in_flight = InFlight::new(server.clone());
        if let Some(l) = &mut log {
            l.server = Some(server.name.clone());
        }
        // Idle connections first; a stale one hands the request back unsent and we try the next.
        loop {
            let Some((mut sender, reused)) = open(pool, i, until).await else {
                continue 'servers;
            };
            if !sender.ready().await {
                if reused {
                    continue;
                }
                connect_failed(
                    pool,
                    server,
                    &std::io::Error::other("connection closed at once"),
                );
                continue 'servers;
            }
            // Nothing waited (no queue): a request sent on a reused connection on its first
            // attempt was sent at `started`, which saves a clock read.
            let sent_at = if reused && attempts == 1 && !place.waited {
                started
            } else {
                Instant::now()
            };
            // An idempotent request whose body is known whole can be sent again if its response
            // never starts: the body is copied now; the head comes back from a failed HTTP/1.1
            // exchange, while HTTP/2 takes the request whole, so its head is copied first.
            let mut again_body = replay_body(&req);
            let h2 = matches!(sender, Sender::H2(_));
            let h2_copy = if h2 {
                again_body.take().map(|b| copy_head(&req, b))
            } else {
                None
            };
            let response_until = (sent_at + pool.response_timeout).min(until);
            if h2 && req.version() != Version::HTTP_2 {
                to_h2(&mut req, &target(pool, server));
            }
            let mut kept = None;
            let sent = tokio::time::timeout_at(response_until, sender.send(req, &mut kept)).await;
            let replay = match (h2_copy, kept, again_body) {
                (Some(copy), _, _) => Some(copy),
                (None, Some(parts), Some(body)) => Some(Request::from_parts(parts, body)),
                _ => None,
            };
            let resp = match judge(pool, i, reused, sent, replay, response_until == until) {
                Outcome::Response(resp) => resp,
                Outcome::SameServer(again) => {
                    req = again;
                    continue;
                }
                Outcome::NextServer(again, error) => {
                    req = again;
                    if let Some(e) = error {
                        last_error = e;
                    }
                    continue 'servers;
                }
                Outcome::Fail(kind) => return error_response(kind, log),
            };
            if resp.status() == http::StatusCode::SWITCHING_PROTOCOLS {
                let switch = Switch {
                    client_side: upgrade.take(),
                    asked: asked.as_ref(),
                    sent_at,
                    in_flight,
                };
                return switch_protocols(pool, i, resp, switch, log);
            }
            return respond(pool, i, resp, sent_at, in_flight, log);
        }
    }
}

/// A connection to server `i` of `pool`: an idle one (`true`: reused) or a new one. `None`:
/// the connect failed, which counts against the server (high availability, passive health,
/// `overload_backoff` on a timeout); the request is untouched and may go elsewhere.
async fn open(pool: &Pool, i: usize, until: Instant) -> Option<(Sender, bool)> {
    let server = &pool.servers[i];
    if let Some(s) = take_connection(pool.protocol, &server.peer) {
        return Some((s, true));
    }
    match connect(
        &target(pool, server),
        &server.peer,
        connect_budget(pool, until),
    )
    .await
    {
        Ok(s) => {
            let had = server.connect_succeeded();
            if !pool.ha.offline_timeout.is_zero() && had >= pool.ha.attempts {
                monitor::availability_changed(
                    pool,
                    server,
                    true,
                    "connect succeeded on retry".into(),
                );
            }
            Some((s, false))
        }
        Err(e) => {
            if e.kind() == std::io::ErrorKind::TimedOut {
                server.back_off(pool.overload_backoff);
            }
            connect_failed(pool, server, &e);
            monitor::observe(pool, i, Seen::L4Error);
            None
        }
    }
}

/// What an exchange came to, and where the request goes next.
enum Outcome {
    /// The server answered.
    Response(Response<UpstreamBody>),
    /// The same server again, on a fresh connection (a reused one turned out closed).
    SameServer(Request<UpBody>),
    /// The next server, with what the client is told if none is left.
    NextServer(Request<UpBody>, Option<ErrorKind>),
    /// The client is answered with this.
    Fail(ErrorKind),
}

/// Judges one exchange with server `i`: a request that was not written, or whose response
/// never started and that may be sent again (`replay`), moves on; anything else is answered.
/// `out_of_time`: the response wait was cut by the request's own `request_timeout`.
fn judge(
    pool: &Pool,
    i: usize,
    reused: bool,
    sent: Result<Result<Response<UpstreamBody>, SendError>, tokio::time::error::Elapsed>,
    replay: Option<Request<UpBody>>,
    out_of_time: bool,
) -> Outcome {
    let server = &pool.servers[i];
    match sent {
        Ok(Ok(resp)) => return Outcome::Response(resp),
        Err(_) if out_of_time => return Outcome::Fail(ErrorKind::RequestTimeout),
        Err(_) => {
            monitor::observe(pool, i, Seen::BadResponse);
            return Outcome::Fail(ErrorKind::UpstreamTimeout);
        }
        Ok(Err(SendError::Unsent(back, e))) => {
            // Nothing was written: the request is intact and may go elsewhere.
            if reused {
                return Outcome::SameServer(*back);
            }
            connect_failed(pool, server, &e);
            return Outcome::NextServer(*back, None);
        }
        Ok(Err(SendError::NoResponse(_))) if reused && replay.is_some() => {
            // The server closed the idle connection as the request went out: not the
            // server's failure; a fresh connection to it gets the request again.
            return Outcome::SameServer(replay.expect("checked in the guard"));
        }
        Ok(Err(SendError::Client(kind))) => return Outcome::Fail(kind),
        Ok(Err(SendError::Ambiguous(why))) => {
            // Framing a client could read differently: refused, and the connection is
            // dropped instead of reused.
            tracing::warn!(pool = %pool.name, server = %server.name, why, "ambiguous response refused");
        }
        Ok(Err(SendError::NoResponse(e) | SendError::Failed(e))) => {
            tracing::debug!(pool = %pool.name, server = %server.name, error = %e, "upstream exchange failed");
        }
    }
    monitor::observe(pool, i, Seen::BadResponse);
    match replay {
        Some(again) => Outcome::NextServer(again, Some(ErrorKind::BadUpstream)),
        None => Outcome::Fail(ErrorKind::BadUpstream),
    }
}

/// A request's place in its pool's backlog queue, kept across its waits.
#[derive(Default)]
struct Place {
    ticket: Option<crate::backend::queue::Ticket>,
    /// When the wait runs out (`[queue] timeout` from the first wait).
    deadline: Option<Instant>,
    waited: bool,
}

impl Place {
    /// Waits for a slot (entering the queue the first time). `Ok`: woken, pick again.
    /// Errors: `QueueFull` (no place), `QueueTimeout` (waited `[queue] timeout`),
    /// `RequestTimeout` (the request's own time ran out first).
    async fn wait(&mut self, pool: &Pool, until: Instant) -> Result<(), ErrorKind> {
        if self.ticket.is_none() {
            self.ticket = Some(pool.queue.enter().ok_or(ErrorKind::QueueFull)?);
        }
        let t = self.ticket.as_ref().expect("entered above");
        let queue_until = *self
            .deadline
            .get_or_insert_with(|| Instant::now() + pool.queue.config.timeout);
        self.waited = true;
        match tokio::time::timeout_at(queue_until.min(until), t.woken()).await {
            Ok(()) => {
                t.rewait();
                Ok(())
            }
            Err(_) if queue_until > until => Err(ErrorKind::RequestTimeout),
            Err(_) => {
                pool.queue
                    .timed_out
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                Err(ErrorKind::QueueTimeout)
            }
        }
    }
}

/// Whether attempt number `attempts` (above 1) may be made: the pool's `retries` and its
/// retry budget, the one place the retry rules live.
fn retry_allowed(pool: &Pool, attempts: u32) -> bool {
    let over_limit = pool.retries.is_some_and(|r| attempts > r + 1);
    !over_limit && pool.retry_budget.as_ref().map_or(true, |b| b.withdraw())
}

/// What a 101 from a server needs besides the response.
struct Switch<'a> {
    /// The client's side of the upgrade, if it asked for one.
    client_side: Option<ClientUpgrade>,
    /// The protocols the client asked for.
    asked: Option<&'a HeaderValue>,
    sent_at: Instant,
    in_flight: InFlight,
}

/// A server's 101: checked against what the client asked for, then both sides are joined in a
/// tunnel that belongs to the server's sessions. A switch nobody asked for is a 502.
#[cold]
fn switch_protocols(
    pool: &Pool,
    i: usize,
    resp: Response<UpstreamBody>,
    switch: Switch<'_>,
    mut log: Option<AccessLog>,
) -> Response<ProxyBody> {
    let server = &pool.servers[i];
    let (mut parts, body) = resp.into_parts();
    let server_side = match body {
        UpstreamBody::H1(b) => b.into_upgraded(),
        UpstreamBody::H2(..) => None,
    };
    // The server must switch to a protocol the client asked for (and was allowed).
    let named = parts
        .headers
        .get(http::header::UPGRADE)
        .and_then(allowed_upgrades)
        .zip(switch.asked)
        .is_some_and(|(got, asked)| {
            let asked = asked.to_str().unwrap_or("");
            got.to_str().unwrap_or("").split(',').all(|p| {
                asked
                    .split(',')
                    .any(|a| a.trim().eq_ignore_ascii_case(p.trim()))
            })
        });
    let (true, Some(client_side), Some(server_side)) = (named, switch.client_side, server_side)
    else {
        monitor::observe(pool, i, Seen::BadResponse);
        return error_response(ErrorKind::BadUpstream, log);
    };
    monitor::observe(pool, i, Seen::Status(101));
    let protocol = parts.headers.get(http::header::UPGRADE).cloned();
    headers::strip_hop_by_hop(&mut parts.headers, |_| false);
    parts.headers.insert(
        http::header::CONNECTION,
        HeaderValue::from_static("upgrade"),
    );
    if let Some(p) = protocol {
        parts.headers.insert(http::header::UPGRADE, p);
    }
    if let Some(l) = &mut log {
        l.status = 101;
        l.upstream_ms = Some(switch.sent_at.elapsed().as_secs_f64() * 1000.0);
    }
    // The connection now belongs to the tunnel: never back to the idle pool.
    server
        .peer
        .spawn_session(tunnel(client_side, server_side, switch.in_flight));
    Response::from_parts(parts, ProxyBody::full(bytes::Bytes::new(), log))
}

/// A server's response, on its way to the client: observed for health, its hop-by-hop fields
/// removed, its time recorded, and its body streamed with the connection to give back.
#[inline]
fn respond(
    pool: &Pool,
    i: usize,
    resp: Response<UpstreamBody>,
    sent_at: Instant,
    mut in_flight: InFlight,
    mut log: Option<AccessLog>,
) -> Response<ProxyBody> {
    let server = &pool.servers[i];
    monitor::observe(pool, i, Seen::Status(resp.status().as_u16()));
    if resp.status() == http::StatusCode::SERVICE_UNAVAILABLE {
        server.back_off(pool.overload_backoff);
        in_flight.keep_backoff();
    }
    let (mut parts, body) = resp.into_parts();
    if !matches!(&body, UpstreamBody::H1(b) if b.head_stripped()) {
        headers::strip_hop_by_hop(&mut parts.headers, |_| false);
    }
    let took = sent_at.elapsed();
    server.latency.observe(took);
    if pool.tracks_latency {
        server.observe_latency(took.as_secs_f64() * 1e6, clock::now_ms());
    }
    if let Some(l) = &mut log {
        l.status = parts.status.as_u16();
        l.upstream_ms = Some(took.as_secs_f64() * 1000.0);
    }
    let reuse = Reusable {
        peer: server.peer.clone(),
        max_idle: pool.max_idle_per_server,
    };
    Response::from_parts(parts, ProxyBody::upstream(body, in_flight, reuse, log))
}
