//! The request pipeline, the one module that knows every subsystem. Phases, in order (see
//! [`handle`]):
//!
//! 1. **strict checks** and the **target**: a malformed request is answered 4xx here; the path
//!    is normalised once, so every later phase reads the same target;
//! 2. **loop check**: a request whose `Via` already names this instance is answered 508;
//! 3. **`[server]` rules** ([`rules`]): the request ID, the redirect of plain HTTP to HTTPS;
//! 4. **route**: the first route whose matchers all match (host, path, method, ...; else 404);
//! 5. **the route's rules**: access (`deny`/`allow`, `basic_auth`), `redirect` or `respond`,
//!    the path rewrite and the request header rules;
//! 6. **files, upgrade or cache**, else **forward** ([`forward`]): pick a usable server (or wait
//!    in the pool's queue), reuse an idle connection or open one (a failed connect counts
//!    against the server and the same, untouched request goes to the next), send the request,
//!    streaming its body, and wait for the response head; once any of the request was written
//!    it is never sent anywhere else;
//! 7. **respond**: on the way back the route's error pages and response header rules, the
//!    request ID and HSTS ([`rules::finish`]); the server's body streams to the client, the
//!    connection returns to the idle pool when the body has ended cleanly, and the access-log
//!    line is written at the very end;
//! 8. **compress** ([`compress`], routes with `compress`): the response is encoded in the
//!    coding the request chose, as it streams.

mod acme;
pub mod body;
pub mod cached;
mod compress;
pub mod explain;
pub mod files;
mod forward;
pub mod headers;
mod rules;
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
pub(crate) use forward::forward;
use http::header::{HeaderValue, CONTENT_TYPE, TE};
use http::{Request, Response, Uri, Version};
use hyper_util::rt::TokioIo;
use std::sync::Arc;
use tokio::time::Instant;

/// An immutable snapshot of everything the request path needs, swapped whole on reload (and
/// when a pool's servers change at run time: a copy with that pool replaced).
#[derive(Debug, Clone)]
pub struct Runtime {
    pub router: Router,
    /// Routes in file order (the router's targets index this).
    pub routes: Vec<RouteRt>,
    pub pools: Vec<Arc<Pool>>,
    /// The `Host` sent for a request that came without one, per pool (indexed as `pools`):
    /// its TLS server name, else its first server as written (see `default_host`).
    pub pool_hosts: Vec<Option<HeaderValue>>,
    /// The shared cache (kept across reloads while its rules stay the same).
    pub cache: Arc<Cache>,
    /// Responses by status class (the same object across reloads), counted per response.
    pub traffic: Arc<crate::stats::Traffic>,
    /// This instance's `Via` entry (`1.1 NAME`).
    pub via: HeaderValue,
    /// NAME, as looked for in incoming `Via` headers.
    pub via_token: Arc<str>,
    /// Where access-log lines (and spans) go; `None` when neither is on (one branch).
    pub log: Option<Arc<crate::access_log::Sink>>,
    /// `[tracing]`: trace context continued or started on every request.
    pub tracing: Option<crate::access_log::trace::Propagation>,
    /// What clients may send and how long they may take.
    pub limits: crate::config::Limits,
    /// The TLS listeners' configuration (re-read on reload: new handshakes take the new one).
    pub tls: Option<Arc<crate::tls::Listener>>,
    /// h2c with prior knowledge on plain listeners.
    pub h2c: bool,
    pub h2: crate::config::H2Settings,
    /// `[server]` rules for every request.
    pub site: crate::config::route::SiteRules,
    /// Whether some `[server]` rule is on (else the request path skips them).
    pub site_active: bool,
    /// The port HTTPS redirects name (`None`: 443, left out).
    pub https_port: Option<u16>,
    /// Who the client is (PROXY protocol, trusted proxies) and what servers are told of it.
    pub clients: crate::config::ClientSettings,
    /// Some pool sends PROXY headers: connections note the address their client reached.
    pub send_proxy: bool,
    /// `[cluster]`: the fleet's Redis (kept across reloads while `[cluster]` is unchanged);
    /// `None`: nothing is shared, and nothing on the request path looks for it.
    pub cluster: Option<Arc<crate::cluster::Cluster>>,
    /// `[acme]`: the certificates obtained and the challenge answers (the same store across
    /// reloads); `None`: ACME is off and no request looks for a challenge.
    pub acme: Option<Arc<crate::tls::acme::Issued>>,
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
    /// Open connections per client (`max_connections_per_client`), kept across reloads.
    pub clients: Arc<crate::limits::ClientConns>,
}

/// A route as the request path sees it.
#[derive(Debug, Clone)]
pub struct RouteRt {
    /// Its place in [`Runtime::routes`] (the cache serves a route only what it stored).
    pub index: u32,
    /// Where it is in the configuration file (`langur explain` names routes by it).
    pub line: u32,
    /// Index into [`Runtime::pools`], or `None` for a file route.
    pub pool: Option<usize>,
    /// A traffic split across pools (`pools`), which then chooses the pool instead of `pool`.
    pub split: Option<Arc<crate::balancer::split::Split>>,
    /// `root`: the directory a file route serves.
    pub root: Option<Arc<files::root::Root>>,
    pub cache: bool,
    pub grace: Option<std::time::Duration>,
    pub purge: Vec<ipnet::IpNet>,
    /// The route's actions; `None` when it has none (the rules phase is then skipped).
    pub rules: Option<Arc<crate::config::route::RouteRules>>,
    /// `{upstream_host}`: the pool's TLS server name, else its first server as written.
    pub upstream_host: Option<HeaderValue>,
    /// The state of the route's `rate_limit` (kept across reloads while the route and its
    /// limit stay the same); `None`: no limit.
    pub limiter: Option<Arc<crate::limits::RateLimiter>>,
    /// `compress` and `precompressed`.
    pub encoding: crate::config::compress::Compression,
    /// Its counters (kept across reloads while the route in its place is the same).
    pub stats: Arc<crate::stats::route::RouteStats>,
}

/// Handles one request. Never fails: every problem becomes a response with a status and reason.
/// The phases in order: strict checks, target, loop check, ACME challenges, `[server]` rules,
/// route, the route's rules, then files, upgrade, cache or forward; on the way back
/// [`rules::finish`] when a rule asked for it.
pub async fn handle(
    rt: &Arc<Runtime>,
    mut req: Request<ClientIn>,
    client: &ClientInfo,
    conn: &Arc<ConnState>,
) -> Response<ProxyBody> {
    let behind = behind_proxies(rt, client, req.headers());
    let client = behind.as_deref().unwrap_or(client);
    let mut log = AccessLog::start(rt.log.as_ref(), &req, client, conn);
    let start = crate::clock::now_us();
    let mut routed: Option<&RouteRt> = None;
    // What the way back needs; boxed (and made only when a rule runs) so that requests without
    // rules do not carry it in their state.
    let mut post: Option<Box<rules::Post>> = None;
    let mut back = Back::of(&req);
    let resp = 'answer: {
        if let Err(kind) = check_phase(rt, &mut req) {
            break 'answer error_response(kind, log);
        }
        if let Some(tracing) = &rt.tracing {
            trace_phase(tracing, &mut req, &mut log);
        }
        if let Some(issued) = &rt.acme {
            if let Some(r) = acme::answer(issued, &req, client, &mut log) {
                break 'answer r;
            }
        }
        if rt.site_active {
            let p = post.get_or_insert_with(Default::default);
            if let Some(r) = rules::site_request(rt, &mut req, client, p, &mut log) {
                break 'answer r;
            }
        }
        let Some((route_index, route_idx)) = route_phase(rt, &req, client, &mut log) else {
            break 'answer error_response(ErrorKind::NoRoute, log);
        };
        let route = &rt.routes[route_idx];
        routed = Some(route);
        back.negotiate(route, &mut req);
        if let Some(rules) = &route.rules {
            let groups = match rules.uses_groups {
                true => rules::groups(rt, route_index, req.uri().path()),
                false => Vec::new(),
            };
            let post = post.get_or_insert_with(Default::default);
            rules::begin(route, rules, &groups, &req, client, post);
            if let Some(r) = rules::admit(rt, route, rules, &mut req, client, &mut log).await {
                break 'answer r;
            }
            if let Some(r) =
                rules::after_auth(route, rules, &groups, &mut req, client, post, &mut log)
            {
                break 'answer r;
            }
        }
        let Some(pool_idx) = pool_of(rt, route, &req) else {
            if route.root.is_none() {
                break 'answer error_response(ErrorKind::NoRoute, log);
            }
            break 'answer files::serve(rt, route, req, log).await;
        };
        let pool = &rt.pools[pool_idx];
        if let Some(l) = &mut log {
            l.pool = Some(pool.name.clone());
        }
        default_host(&mut req, rt.pool_hosts[pool_idx].as_ref());
        if let Some(protocol) = upgrade_protocol(&req) {
            break 'answer upgrade(rt, pool, req, protocol, client, conn, log).await;
        }
        if route.cache {
            break 'answer cached::handle(rt, route, pool, req, client, conn, log).await;
        }
        let req = match upstream_request(rt, req, client, conn).await {
            Ok(r) => r,
            Err(kind) => break 'answer error_response(kind, log),
        };
        forward(pool, req, client, log).await
    };
    way_back(rt, post, client, back, routed.map(|r| (r, start)), resp)
}

/// The route's pool: its own, or its split's choice; `None` for a file route.
fn pool_of<B>(rt: &Runtime, route: &RouteRt, req: &Request<B>) -> Option<usize> {
    match &route.split {
        None => route.pool,
        Some(split) => Some(split_pool(rt, split, req)),
    }
}

/// The pool of a split route: the one whose sticky cookie the client has (so a client stays on
/// its side of the split), else the split's next.
fn split_pool<B>(rt: &Runtime, split: &crate::balancer::split::Split, req: &Request<B>) -> usize {
    let stuck = split.pools.iter().copied().find(|p| {
        rt.pools[*p]
            .sticky
            .as_ref()
            .is_some_and(|s| s.named(req.headers()).is_some())
    });
    split.pick(stuck)
}

/// What the way back needs besides the rules' part: whether the request is a HEAD, and on a
/// route with `compress` the route's settings and what the request takes.
struct Back<'r> {
    head: bool,
    coded: Option<(&'r crate::config::compress::Compress, compress::Want)>,
}

impl<'r> Back<'r> {
    #[inline]
    fn of<B>(req: &Request<B>) -> Self {
        Back {
            head: req.method() == http::Method::HEAD,
            coded: None,
        }
    }

    /// On a route with `compress`, what the request takes ([`compress::request`]); one branch
    /// on other routes.
    #[inline(always)]
    fn negotiate<B>(&mut self, route: &'r RouteRt, req: &mut Request<B>) {
        if let Some(c) = route.encoding.compress.as_deref() {
            self.coded = Some((c, compress::request(c, req)));
        }
    }
}

/// The way back: the rules' part ([`rules::finish`]) when a rule ran or `[server]` has some;
/// a HEAD answered from memory (langur's own answers, the cache) keeps its `Content-Length`
/// and loses its body ([`ProxyBody::drop_for_head`]); then, on a route with `compress`, the
/// coding the request chose (`coded`: the route's settings and what the request takes). The
/// response of a request that matched a route (`routed`: it, and when the request began) is
/// counted in the route's counters and holds them until its body ends, for the duration.
#[inline]
fn way_back(
    rt: &Runtime,
    post: Option<Box<rules::Post>>,
    client: &ClientInfo,
    back: Back<'_>,
    routed: Option<(&RouteRt, u64)>,
    resp: Response<ProxyBody>,
) -> Response<ProxyBody> {
    let mut resp = match post {
        None if !rt.site_active => resp,
        post => rules::finish(rt, post.map(|p| *p).unwrap_or_default(), client, resp),
    };
    if back.head {
        if let Some(len) = resp.body_mut().drop_for_head() {
            resp.headers_mut()
                .entry(http::header::CONTENT_LENGTH)
                .or_insert_with(|| HeaderValue::from(len));
        }
    }
    if let Some((route, start_us)) = routed {
        let denied = resp.body().verdict() == crate::session::counters::Verdict::Denied;
        route.stats.answered(resp.status().as_u16(), denied);
        let stats = route.stats.clone();
        resp.body_mut().tally(body::Tally { stats, start_us });
    }
    match back.coded {
        None => resp,
        Some((c, want)) => compress::apply(c, want, resp),
    }
}

/// Behind a trusted proxy, the client its forwarding field names (see
/// [`ClientInfo::behind_proxies`]); one branch when no proxy is trusted. Boxed, so that other
/// requests do not carry it in their state.
#[inline]
pub(crate) fn behind_proxies(
    rt: &Runtime,
    client: &ClientInfo,
    headers: &http::HeaderMap,
) -> Option<Box<ClientInfo>> {
    if rt.clients.trusted.is_empty() {
        return None;
    }
    let c = &rt.clients;
    client
        .behind_proxies(&c.trusted, c.real_ip_from, headers)
        .map(Box::new)
}

/// The trace phase (`[tracing]` on): the request continues its caller's trace or starts one,
/// with a span of this hop's own (see [`crate::access_log::trace`]).
#[cold]
fn trace_phase<B>(
    tracing: &crate::access_log::trace::Propagation,
    req: &mut Request<B>,
    log: &mut Option<AccessLog>,
) {
    let trace = tracing.apply(req.headers_mut());
    if let Some(l) = log {
        l.trace = Some(trace);
    }
}

/// The route phase: the first route whose matchers all match (only the path is read when
/// no route matches on more), noted in the access log.
#[inline]
fn route_phase<B>(
    rt: &Runtime,
    req: &Request<B>,
    client: &ClientInfo,
    log: &mut Option<AccessLog>,
) -> Option<(usize, usize)> {
    let found = match rt.router.needs_request() {
        false => rt.router.route(req.uri().path()),
        true => route_request(rt, req, client),
    };
    if let (Some((_, i)), Some(l)) = (found, log) {
        l.route = Some(i);
    }
    found
}

/// [`route_phase`] when some route matches on more than the path.
fn route_request<B>(rt: &Runtime, req: &Request<B>, client: &ClientInfo) -> Option<(usize, usize)> {
    with_input(req, client, |input| rt.router.route_request(input))
}

/// What the matchers read of a request ([`crate::matching::Input`]), handed to `f`.
#[inline]
fn with_input<B, R>(
    req: &Request<B>,
    client: &ClientInfo,
    f: impl FnOnce(&crate::matching::Input<'_>) -> R,
) -> R {
    let host = crate::matching::request_host(req.uri(), req.headers());
    f(&crate::matching::Input {
        host: host.as_deref().unwrap_or(""),
        path: req.uri().path(),
        query: req.uri().query(),
        method: req.method(),
        headers: req.headers(),
        source: client.addr.ip(),
        client_cert: client.cert.as_deref(),
    })
}

/// The phases before anything reads the request: strict checks ([`strict::check_request`]),
/// the target ([`target_phase`]) and the loop check (this proxy's own `Via` token already in
/// the request: 508 Loop Detected). `Err`: the answer's kind.
#[inline]
fn check_phase<B>(rt: &Runtime, req: &mut Request<B>) -> Result<(), ErrorKind> {
    let (m, u, v, h) = (req.method(), req.uri(), req.version(), req.headers());
    strict::check_request(m, u, v, h, &rt.limits)?;
    target_phase(req)?;
    if headers::via_contains(req.headers(), &rt.via_token) {
        return Err(ErrorKind::Loop);
    }
    Ok(())
}

/// The target phase: the one request that every later phase sees and that goes upstream.
/// The path is normalised (see [`target`]) and an HTTP/2 request is made ready for HTTP/1.1
/// ([`headers::h2_to_h1`]). So routing, hashing, the cache key and the forwarded request all
/// read the same target. (The authority's rules, userinfo and HTTP/2 `host` against
/// `:authority`, are the strict checks', which run first.)
fn target_phase<B>(req: &mut Request<B>) -> Result<(), ErrorKind> {
    match target::normalize_uri(req.uri()) {
        Ok(Some(uri)) => *req.uri_mut() = uri,
        Ok(None) => {}
        Err(_) => return Err(ErrorKind::BadRequest),
    }
    if req.version() == Version::HTTP_2 {
        headers::h2_to_h1(req.headers_mut()).map_err(|_| ErrorKind::BadRequest)?;
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
    resp.body_mut().set_verdict(verdict(kind));
    *resp.status_mut() = kind.status();
    resp.extensions_mut().insert(rules::OwnAnswer);
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

/// What langur's own answer of `kind` says of the request, for the listener's counters: a
/// request malformed, too large or too slow (HAProxy's `ereq`), or refused by a rule (`dreq`).
fn verdict(kind: ErrorKind) -> crate::session::counters::Verdict {
    use crate::session::counters::Verdict;
    match kind {
        ErrorKind::BadRequest
        | ErrorKind::UriTooLong
        | ErrorKind::HeadersTooLarge
        | ErrorKind::BodyTooLarge
        | ErrorKind::ClientTimeout
        | ErrorKind::MethodNotAllowed
        | ErrorKind::NotImplemented => Verdict::BadRequest,
        ErrorKind::Forbidden => Verdict::Denied,
        ErrorKind::RateLimited => Verdict::RateLimited,
        _ => Verdict::None,
    }
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

/// An HTTP/1.0 request without `Host` (or an HTTP/2 one without `:authority`) goes to the
/// pool's server with the pool's name for it (`host`: its TLS server name, else its first
/// server as written), as nginx sends `$proxy_host`: it names no authority, and servers
/// refuse an HTTP/1.1 request with an empty `Host` (RFC 9112 3.2 allows it; nginx answers
/// 400). RFC 9112 3.3 has a server supply its own default name in that case.
fn default_host<B>(req: &mut Request<B>, host: Option<&HeaderValue>) {
    // (HTTP/1.1 requests have exactly one Host: the strict checks refuse the others.)
    if req.version() == Version::HTTP_11 {
        return;
    }
    if let Some(host) = host {
        if req.uri().authority().is_none() && !req.headers().contains_key(http::header::HOST) {
            req.headers_mut().insert(http::header::HOST, host.clone());
            // The client named no host: `X-Forwarded-Host` and `Forwarded` say none.
            req.extensions_mut().insert(rules::OriginalHost(None));
        }
    }
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
    // A route's rule may have replaced `Host`: the forwarded host is still the client's.
    let host = match parts.extensions.remove() {
        Some(rules::OriginalHost(h)) => h,
        None => parts.headers.get(http::header::HOST).cloned(),
    };
    headers::add_forwarding(
        &mut parts.headers,
        client,
        &rt.clients.forwarding,
        rt.clients.real_ip_from,
        host.as_ref(),
        &rt.via,
    );
    // Only when some certificate entry asks clients for certificates: the `X-Client-Cert-*`
    // fields a client sends are removed, and a verified client's are sent.
    if rt.tls.as_ref().is_some_and(|t| t.asks_for_client_certs()) {
        headers::client_cert_fields(&mut parts.headers, client.cert.as_deref());
    }
    parts.version = Version::HTTP_11;
}
