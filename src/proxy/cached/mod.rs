//! The cache phase, for routes with `cache = true`. In order:
//!
//! 1. `PURGE` from an allowed network removes the URL; other methods than GET/HEAD (and
//!    requests with a body) go straight to the pool, and an unsafe method that succeeds
//!    invalidates the URL (RFC 9111 4.4);
//! 2. a fresh entry is served (304, ranges and HEAD answered from it);
//! 3. a stale entry within its `stale-while-revalidate` window (or the route's `grace`) is
//!    served at once while one background request refreshes it;
//! 4. otherwise one request per key goes upstream (the others wait for it, woken when it is
//!    done, up to `lock_timeout`), conditional when the stale entry has validators; a 304
//!    refreshes the entry, a 5xx or a failure within `stale-if-error` serves the stale one, and
//!    a storable response is copied into the cache as it streams to the client.
//!
//! Every answer says what happened in `Cache-Status` (RFC 9211). With `compress` on the route,
//! one entry per URL answers every coding ([`forms`]), and the server is asked for identity.

mod fetch;
mod forms;
mod shared;

use super::body::{ClientIn, ProxyBody, UpBody};
use super::{forward, upstream_body, upstream_parts, ClientInfo, RouteRt, Runtime};
use crate::access_log::AccessLog;
use crate::backend::Pool;
use crate::cache::policy::{self, RangeAnswer};
use crate::cache::{self, Cache, FlightGuard, FormFill, Join, Object};
use crate::clock;
use crate::coding::Transcoder;
use crate::config::compress::Compress;
use crate::config::route::RouteRules;
use crate::session::ConnState;
use bytes::Bytes;
use fetch::{fetch, Job};
pub(super) use fetch::{judge, Storing};
use http::header::{
    HeaderMap, HeaderName, HeaderValue, ACCEPT_ENCODING, AGE, CONTENT_LENGTH, CONTENT_RANGE,
    CONTENT_TYPE, COOKIE, HOST, RANGE, SET_COOKIE,
};
use http::{Method, Request, Response, StatusCode};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

/// This cache's name in `Cache-Status`.
const NAME: &str = "langur";
pub const CACHE_STATUS: HeaderName = HeaderName::from_static("cache-status");

/// The primary cache key of a request head as it goes upstream (after [`upstream_parts`]):
/// scheme, the `Host` it carries (which is the absolute-form or HTTP/2 authority when there was
/// one), and the normalised path with query. So the key names exactly what the server was
/// asked for, except the query parameters the route's `cache_key.ignore_query` leaves out
/// ([`cache::key_target`]; the server still gets them). Lookups, stores, `PURGE` and the
/// invalidation by unsafe methods all key a request with this one function.
///
/// When the route's rules replace `Host`, the key takes the client's host (which langur sends
/// as `X-Forwarded-Host`): the server can tell the sites apart by it, so the cache must too.
pub fn key_of(parts: &http::request::Parts, scheme: &str, rules: Option<&RouteRules>) -> String {
    let field = match rules {
        Some(r) if r.request_headers.set.iter().any(|(n, _)| n == HOST) => {
            HeaderName::from_static("x-forwarded-host")
        }
        _ => HOST,
    };
    let host = parts
        .headers
        .get(field)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("");
    let pq = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    match rules {
        None => cache::primary_key(scheme, host, pq),
        Some(r) => cache::primary_key(scheme, host, &cache::key_target(pq, &r.ignore_query)),
    }
}

/// Why a request does not use the cache at all, as `Cache-Status` `detail`: it carries a field
/// that changes how a server reads it (`[cache] bypass_headers`), or a `Cookie` under
/// `request_cookie = "pass"`.
fn bypass_reason(rules: &crate::config::CacheConfig, h: &HeaderMap) -> Option<String> {
    if let Some(n) = rules.bypass_headers.iter().find(|n| h.contains_key(*n)) {
        return Some(n.as_str().to_string());
    }
    // CGI, WSGI and Rack servers read `X_Forwarded_Prefix` as `X-Forwarded-Prefix`; that goes
    // for the forwarding fields langur sets itself too (`X_Forwarded_Host` would stand beside
    // langur's `X-Forwarded-Host`, and some servers take the first).
    for name in h.keys().map(|n| n.as_str()).filter(|n| n.contains('_')) {
        let dashed = name.replace('_', "-");
        if dashed.starts_with("x-forwarded-")
            || dashed == "x-real-ip"
            || rules.bypass_headers.iter().any(|n| n.as_str() == dashed)
        {
            return Some(name.to_string());
        }
    }
    if rules.request_cookie == crate::config::RequestCookie::Pass && h.contains_key(COOKIE) {
        return Some("cookie".into());
    }
    None
}

/// The cache phase of one request (the steps above, in order).
pub async fn handle(
    rt: &Arc<Runtime>,
    route: &RouteRt,
    pool: &Arc<Pool>,
    req: Request<ClientIn>,
    client: &ClientInfo,
    conn: &Arc<ConnState>,
    mut log: Option<AccessLog>,
) -> Response<ProxyBody> {
    let cache = &rt.cache;
    // Everything below reads the head as it goes upstream, never the client's own: the key's
    // host and path, the `Vary` values, the conditionals.
    let (mut parts, body) = req.into_parts();
    upstream_parts(rt, &mut parts, client);
    let rules = route.rules.as_deref();
    let primary = key_of(&parts, client.scheme, rules);
    let method = parts.method.clone();
    if method.as_str() == "PURGE" && !route.purge.is_empty() {
        return purge(rt, route, &primary, client, log);
    }
    let pass = pass_reason(&cache.rules, &parts, !body.is_end_stream());
    let here = Here {
        rt,
        pool,
        client,
        conn,
        rules,
    };
    if let Some((status, what)) = pass {
        return here.pass(parts, body, &primary, (status, what), log).await;
    }
    // Another route's entry for the same URL is not this route's to serve (it may come from
    // other servers, behind other credentials): a miss, replaced when this one stores.
    let found = cache
        .lookup(&primary, &parts.headers)
        .filter(|(_, o)| o.route == route.index);
    if let Some((key, obj)) = &found {
        let stored = Stored {
            key,
            obj,
            primary: &primary,
        };
        if let Some(resp) = answer_stored(cache, route, pool, client, &parts, stored, &mut log) {
            return resp;
        }
    }
    // Ranges and HEAD on what the cache cannot answer go upstream as they are, unstored.
    if method == Method::HEAD || parts.headers.contains_key(RANGE) {
        cache.counters.misses.fetch_add(1, Relaxed);
        let status = (format!("{NAME}; fwd=miss"), "miss");
        return here.pass(parts, body, &primary, status, log).await;
    }

    let guard = match lead_or_wait(cache, route, &primary, &parts, &mut log).await {
        Ok(guard) => guard,
        Err(answered) => return answered,
    };
    if found.is_none() {
        cache.counters.misses.fetch_add(1, Relaxed);
    }
    let stale = found.map(|(k, o)| (k.into_owned(), o));
    let job = here.job(route, stale, primary, method, parts.headers.clone(), guard);
    ask_identity(route, &mut parts.headers);
    let up = match upstream_body(rt, parts, body, conn).await {
        Ok(r) => r,
        Err(kind) => return super::error_response(kind, log),
    };
    fetch(job, up, log).await
}

/// One request per key goes on (with the fleet's lock when the shared cache is on and this
/// instance got it); the others wait for it, in memory, up to `lock_timeout`. `Err`: answered
/// (from the shared cache, or what the request waited for stored); `Ok`: go upstream, with the
/// flight guard when this request leads.
async fn lead_or_wait(
    cache: &Arc<Cache>,
    route: &RouteRt,
    primary: &str,
    parts: &http::request::Parts,
    log: &mut Option<AccessLog>,
) -> Result<Option<FlightGuard>, Response<ProxyBody>> {
    match cache.join(primary) {
        Join::Leader(mut g) => {
            if let Some(l2) = &cache.shared {
                let ask = shared::Ask {
                    cache,
                    l2,
                    route,
                    primary,
                    parts,
                };
                // Boxed: its state is not carried in every cached request's future.
                if let Some(resp) = Box::pin(ask.fleet(&mut g, log)).await {
                    return Err(resp);
                }
            }
            Ok(Some(g))
        }
        Join::Wait(rx) => {
            cache.counters.coalesced.fetch_add(1, Relaxed);
            if cache::wait(rx, cache.rules.lock_timeout).await {
                if let Some(resp) = coalesced_hit(cache, route, primary, parts, log) {
                    return Err(resp);
                }
            }
            // The fetch we waited for was not storable, failed, or took too long: go ourselves.
            Ok(None)
        }
    }
}

/// On a route with `compress` the entry is filled with what the server sends for identity:
/// langur makes the other codings once, from it.
fn ask_identity(route: &RouteRt, h: &mut HeaderMap) {
    if route.encoding.compress.is_some() {
        h.insert(ACCEPT_ENCODING, HeaderValue::from_static("identity"));
    }
}

/// Why a request goes upstream without the cache (its `Cache-Status` and access-log word):
/// a method other than GET and HEAD, a request body, or a [`bypass_reason`].
pub(super) fn pass_reason(
    rules: &crate::config::CacheConfig,
    parts: &http::request::Parts,
    has_body: bool,
) -> Option<(String, &'static str)> {
    if (parts.method != Method::GET && parts.method != Method::HEAD) || has_body {
        return Some((format!("{NAME}; fwd=method"), "bypass"));
    }
    let why = bypass_reason(rules, &parts.headers)?;
    Some((format!("{NAME}; fwd=bypass; detail={why}"), "bypass"))
}

/// What a request's way upstream needs besides the request.
struct Here<'a> {
    rt: &'a Arc<Runtime>,
    pool: &'a Arc<Pool>,
    client: &'a ClientInfo,
    conn: &'a Arc<ConnState>,
    /// The route's rules (its `cache_key` keys related URLs too).
    rules: Option<&'a RouteRules>,
}

impl Here<'_> {
    /// What the fetch of a miss carries: the route's storing rules, the stale entry found (with
    /// its key), the request's primary key, method and fields, and the coalescing guard.
    fn job(
        &self,
        route: &RouteRt,
        stale: Option<(String, Arc<Object>)>,
        primary: String,
        method: Method,
        req_headers: HeaderMap,
        guard: Option<FlightGuard>,
    ) -> Job {
        Job {
            cache: self.rt.cache.clone(),
            pool: self.pool.clone(),
            grace: route.grace,
            rules: route.rules.clone(),
            compress: route.encoding.compress.clone(),
            client: self.client.clone(),
            stale,
            primary,
            method,
            req_headers,
            guard,
            route: route.index,
        }
    }

    /// The request goes upstream as it is and its answer is not stored (`Cache-Status`
    /// `status`, access log `what`); an unsafe method that succeeds invalidates.
    async fn pass(
        &self,
        parts: http::request::Parts,
        body: ClientIn,
        primary: &str,
        (status, what): (String, &'static str),
        log: Option<AccessLog>,
    ) -> Response<ProxyBody> {
        let invalidates = !matches!(
            parts.method,
            Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE
        );
        let host = parts.headers.get(HOST).cloned();
        let up = match upstream_body(self.rt, parts, body, self.conn).await {
            Ok(r) => r,
            Err(kind) => return super::error_response(kind, log),
        };
        let mut resp = forward(self.pool, up, self.client, log).await;
        if invalidates {
            let related = Related {
                scheme: self.client.scheme,
                host: host.as_ref(),
                rules: self.rules,
            };
            invalidate_after(self.rt, &resp, primary, related);
        }
        mark(&mut resp, status, what);
        resp
    }
}

/// What keys the URLs an unsafe method's response names: the request's scheme and `Host`, and
/// its route's rules.
struct Related<'a> {
    scheme: &'a str,
    host: Option<&'a HeaderValue>,
    rules: Option<&'a RouteRules>,
}

/// RFC 9111 4.4: an unsafe method that succeeded invalidates its URL (`primary`, keyed by
/// [`key_of`]), and the URLs in `Location` and `Content-Location` when they are on the same
/// host: keyed as written, and also as the request's route keys them when its `cache_key`
/// leaves some of their query out (the URL may belong to another route, whose key keeps it).
fn invalidate_after(rt: &Runtime, resp: &Response<ProxyBody>, primary: &str, related: Related) {
    let s = resp.status();
    if !(s.is_success() || s.is_redirection()) {
        return;
    }
    let cache = Invalidate(rt);
    cache.invalidate(primary);
    for name in [http::header::LOCATION, http::header::CONTENT_LOCATION] {
        let Some(k) = resp
            .headers()
            .get(&name)
            .and_then(|v| related_key(v, related.scheme, related.host))
        else {
            continue;
        };
        cache.invalidate(&k);
        if let Some(r) = related.rules {
            let keyed = cache::key_target(&k, &r.ignore_query);
            if keyed != k {
                cache.invalidate(&keyed);
            }
        }
    }
}

/// The cache's invalidation, published to the fleet under `[cluster]` (see
/// [`crate::cluster::purge`]).
struct Invalidate<'a>(&'a Runtime);

impl Invalidate<'_> {
    fn invalidate(&self, key: &str) -> u64 {
        let n = self.0.cache.invalidate(key);
        let p = crate::cluster::Purge::Key(key.to_string());
        self.0.cache.publish_purge(self.0.cluster.as_ref(), p);
        n
    }
}

/// An entry found for a request: the key it is stored under, and the request's primary key.
#[derive(Clone, Copy)]
struct Stored<'a> {
    key: &'a str,
    obj: &'a Arc<Object>,
    primary: &'a str,
}

/// Answers from a stored entry when its freshness allows (`log` is taken then): fresh; stale
/// when no server can answer and its `stale-if-error` window allows (no refresh is started
/// for nothing); stale within `stale-while-revalidate`, starting one background refresh.
/// `None`: the request goes upstream.
fn answer_stored(
    cache: &Arc<Cache>,
    route: &RouteRt,
    pool: &Arc<Pool>,
    client: &ClientInfo,
    parts: &http::request::Parts,
    stored: Stored<'_>,
    log: &mut Option<AccessLog>,
) -> Option<Response<ProxyBody>> {
    let (obj, now) = (stored.obj, clock::now_ms());
    let (status, what) = if obj.fresh(now) {
        cache.counters.hits.fetch_add(1, Relaxed);
        (format!("{NAME}; hit; ttl={}", obj.ttl(now)), "hit")
    } else if !pool.any_alive() && obj.within(now, obj.sie) {
        cache.counters.stale.fetch_add(1, Relaxed);
        let (ttl, rule) = (obj.ttl(now), obj.sie_rule());
        let s = format!("{NAME}; fwd=stale; fwd-status=503; ttl={ttl}; detail={rule}");
        (s, "stale")
    } else if obj.within(now, obj.swr) {
        cache.counters.stale.fetch_add(1, Relaxed);
        refresh_in_background(cache, route, pool, client, parts, stored);
        let (ttl, rule) = (obj.ttl(now), obj.swr_rule());
        (format!("{NAME}; hit; ttl={ttl}; detail={rule}"), "stale")
    } else {
        return None;
    };
    let how = Reply {
        method: &parts.method,
        req: &parts.headers,
        compress: route.encoding.compress.as_deref(),
        home: Some((cache, stored.key)),
    };
    Some(serve(obj, &how, status, what, log.take()))
}

/// `stale-while-revalidate`: one GET refreshes the entry in the background, unless another
/// request already fetches it.
fn refresh_in_background(
    cache: &Arc<Cache>,
    route: &RouteRt,
    pool: &Arc<Pool>,
    client: &ClientInfo,
    parts: &http::request::Parts,
    stored: Stored<'_>,
) {
    let Join::Leader(guard) = cache.join(stored.primary) else {
        return;
    };
    let job = Job {
        cache: cache.clone(),
        pool: pool.clone(),
        grace: route.grace,
        rules: route.rules.clone(),
        compress: route.encoding.compress.clone(),
        client: client.clone(),
        primary: stored.primary.to_string(),
        method: Method::GET,
        req_headers: parts.headers.clone(),
        stale: Some((stored.key.to_string(), stored.obj.clone())),
        guard: Some(guard),
        route: route.index,
    };
    let mut up = Request::new(UpBody::Empty);
    *up.uri_mut() = parts.uri.clone();
    *up.version_mut() = parts.version;
    *up.headers_mut() = parts.headers.clone();
    ask_identity(route, up.headers_mut());
    tokio::spawn(async move {
        let resp = fetch(job, up, None).await;
        let _ = http_body_util::BodyExt::collect(resp.into_body()).await;
    });
}

/// After waiting for another request's fetch of the same key: its stored answer, if fresh.
fn coalesced_hit(
    cache: &Arc<Cache>,
    route: &RouteRt,
    primary: &str,
    parts: &http::request::Parts,
    log: &mut Option<AccessLog>,
) -> Option<Response<ProxyBody>> {
    let (key, obj) = cache.lookup(primary, &parts.headers)?;
    let now = clock::now_ms();
    if !obj.fresh(now) || obj.route != route.index {
        return None;
    }
    cache.counters.hits.fetch_add(1, Relaxed);
    let status = format!("{NAME}; hit; ttl={}; detail=coalesced", obj.ttl(now));
    let how = Reply {
        method: &parts.method,
        req: &parts.headers,
        compress: route.encoding.compress.as_deref(),
        home: Some((cache, &key)),
    };
    Some(serve(&obj, &how, status, "hit", log.take()))
}

/// The primary key of a `Location`/`Content-Location` reference, resolved against the
/// request, when it names the same host (RFC 9111 4.4 invalidates nothing elsewhere).
fn related_key(v: &HeaderValue, scheme: &str, host: Option<&HeaderValue>) -> Option<String> {
    let text = v.to_str().ok()?.trim();
    let host = host.and_then(|h| h.to_str().ok())?;
    if text.starts_with('/') && !text.starts_with("//") {
        let uri: http::Uri = text.parse().ok()?;
        let path = super::target::normalize_uri(&uri).ok()?.unwrap_or(uri);
        return Some(cache::primary_key(
            scheme,
            host,
            path.path_and_query()?.as_str(),
        ));
    }
    let uri: http::Uri = text.parse().ok()?;
    let authority = uri.authority()?;
    if !authority.as_str().eq_ignore_ascii_case(host) {
        return None;
    }
    let path = super::target::normalize_uri(&uri).ok()?.unwrap_or(uri);
    Some(cache::primary_key(
        path.scheme_str().unwrap_or(scheme),
        host,
        path.path_and_query().map_or("/", |p| p.as_str()),
    ))
}

/// Adds our `Cache-Status` entry (after any from caches nearer the origin) and notes the
/// outcome in the access log.
fn mark(resp: &mut Response<ProxyBody>, status: String, what: &'static str) {
    if let Ok(v) = HeaderValue::from_str(&status) {
        resp.headers_mut().append(CACHE_STATUS, v);
    }
    if let Some(l) = resp.body_mut().log_mut() {
        l.cache = what;
    }
}

/// What a request asks of a stored object, and where the object lives.
pub(crate) struct Reply<'a> {
    pub method: &'a Method,
    pub req: &'a HeaderMap,
    /// The route's compression: the object is sent in the coding the request prefers.
    /// `None`: as stored, decoded for a client that cannot read the stored coding.
    pub compress: Option<&'a Compress>,
    /// The cache and key the object is stored under, so that a form made for this request is
    /// kept with it (`None`: an object not in the store).
    pub home: Option<(&'a Arc<Cache>, &'a str)>,
}

/// Answers a request from a stored object, in the coding [`forms::plan`] chooses: 304 for a
/// matching conditional, 206/416 for a range, else the whole response (HEAD gets the same
/// head; hyper sends no body for it).
pub(crate) fn serve(
    obj: &Arc<Object>,
    how: &Reply<'_>,
    cache_status: String,
    what: &'static str,
    log: Option<AccessLog>,
) -> Response<ProxyBody> {
    let (method, req) = (how.method, how.req);
    let mut resp = match forms::plan(obj, how) {
        forms::Plan::AsStored { vary: false } if how.compress.is_none() => {
            return serve_object(obj, method, req, cache_status, what, log);
        }
        forms::Plan::AsStored { vary } => {
            let mut r = serve_object(obj, method, req, cache_status, what, log);
            if vary {
                super::compress::add_vary(r.headers_mut());
            }
            r
        }
        forms::Plan::Stored(c, form) => {
            let view = obj.copy_with(forms::head(obj, c), form);
            serve_object(&view, method, req, cache_status, what, log)
        }
        forms::Plan::Make { from, src, to } => {
            let view = obj.copy_with(forms::head(obj, to), src);
            let whole = forms::without_range(req);
            let mut r = serve_object(&view, method, &whole, cache_status, what, log);
            make_on_the_way(&mut r, obj, how, (from, to));
            r
        }
    };
    resp.extensions_mut().insert(super::compress::Negotiated);
    resp
}

/// A form not stored yet is made as the response streams (and kept, when this request is the
/// one making it): the length is not known before.
fn make_on_the_way(
    resp: &mut Response<ProxyBody>,
    obj: &Arc<Object>,
    how: &Reply<'_>,
    (from, to): (crate::coding::Coding, crate::coding::Coding),
) {
    if resp.status() == StatusCode::NOT_MODIFIED || resp.status() == StatusCode::PRECONDITION_FAILED
    {
        return;
    }
    resp.headers_mut().remove(CONTENT_LENGTH);
    let level = how.compress.map(|c| c.level).unwrap_or_default();
    let Ok(Some(tx)) = Transcoder::new(from, to, level) else {
        return;
    };
    // A HEAD's body is dropped on the way back, which sees that it was to be made on the
    // way: its head gets no length, as its GET's (`ProxyBody::drop_for_head`).
    let keep = match how.method == Method::HEAD {
        true => None,
        false => how
            .home
            .and_then(|(cache, key)| FormFill::claim(cache, key, obj, to)),
    };
    resp.body_mut().encode(tx, keep);
}

/// Answers from a stored object as it is (see [`serve`]).
fn serve_object(
    obj: &Object,
    method: &Method,
    req: &HeaderMap,
    cache_status: String,
    what: &'static str,
    mut log: Option<AccessLog>,
) -> Response<ProxyBody> {
    let len = obj.body.len() as u64;
    let ok = obj.status == StatusCode::OK;
    let (status, mut headers, body) =
        if ok && policy::precondition_failed(req, obj.etag.as_ref(), obj.last_modified.as_ref()) {
            (
                StatusCode::PRECONDITION_FAILED,
                HeaderMap::new(),
                Bytes::new(),
            )
        } else if ok && policy::not_modified(req, obj.etag.as_ref(), obj.last_modified.as_ref()) {
            let mut h = HeaderMap::new();
            // `Set-Cookie` is never stored; it is here only when a revalidation's 304 just
            // brought one for this client.
            for name in policy::NOT_MODIFIED_HEADERS.iter().chain([&SET_COOKIE]) {
                for v in obj.headers.get_all(name) {
                    h.append(name.clone(), v.clone());
                }
            }
            (StatusCode::NOT_MODIFIED, h, Bytes::new())
        } else {
            let answer = if ok && method == Method::GET {
                policy::range(req, len, obj.etag.as_ref(), obj.last_modified.as_ref())
            } else {
                RangeAnswer::Full
            };
            let mut h = obj.headers.clone();
            match answer {
                RangeAnswer::Full => {
                    h.insert(CONTENT_LENGTH, HeaderValue::from(len));
                    (obj.status, h, obj.body.clone())
                }
                RangeAnswer::Partial(a, b) => {
                    h.insert(CONTENT_LENGTH, HeaderValue::from(b - a + 1));
                    if let Ok(v) = HeaderValue::from_str(&format!("bytes {a}-{b}/{len}")) {
                        h.insert(CONTENT_RANGE, v);
                    }
                    let body = obj.body.slice(a as usize..=b as usize);
                    (StatusCode::PARTIAL_CONTENT, h, body)
                }
                RangeAnswer::Unsatisfiable => {
                    let mut h = HeaderMap::new();
                    if let Ok(v) = HeaderValue::from_str(&format!("bytes */{len}")) {
                        h.insert(CONTENT_RANGE, v);
                    }
                    h.insert(
                        CONTENT_TYPE,
                        HeaderValue::from_static("text/plain; charset=utf-8"),
                    );
                    (StatusCode::RANGE_NOT_SATISFIABLE, h, Bytes::new())
                }
            }
        };
    if !obj.is_file() {
        headers.insert(AGE, HeaderValue::from(obj.age(clock::now_ms())));
    }
    if let Ok(v) = HeaderValue::from_str(&cache_status) {
        headers.append(CACHE_STATUS, v);
    }
    if let Some(l) = &mut log {
        l.status = status.as_u16();
        l.cache = what;
    }
    let mut resp = Response::new(ProxyBody::full(body, log));
    *resp.status_mut() = status;
    *resp.headers_mut() = headers;
    resp
}

/// `PURGE` of one URL (all its variants) from an allowed client network.
fn purge(
    rt: &Runtime,
    route: &RouteRt,
    primary: &str,
    client: &ClientInfo,
    mut log: Option<AccessLog>,
) -> Response<ProxyBody> {
    let ip = client.addr.ip();
    let allowed = route.purge.iter().any(|n| n.contains(&ip));
    let (status, body) = if allowed {
        let n = Invalidate(rt).invalidate(primary);
        rt.cache.counters.purged.fetch_add(n, Relaxed);
        (StatusCode::OK, format!("{{\"purged\":{n}}}\n"))
    } else {
        (
            StatusCode::FORBIDDEN,
            "{\"error\":\"PURGE is not allowed from this address\"}\n".to_string(),
        )
    };
    if let Some(l) = &mut log {
        l.status = status.as_u16();
        l.cache = "purge";
    }
    let mut resp = Response::new(ProxyBody::full(body, log));
    *resp.status_mut() = status;
    resp.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(uri: &str, host: &str) -> http::request::Parts {
        let mut p = Request::builder().uri(uri).body(()).unwrap().into_parts().0;
        p.headers.insert(HOST, HeaderValue::from_str(host).unwrap());
        p
    }

    #[test]
    fn the_key_holds_scheme_host_and_target() {
        let p = parts("/a?b=1", "Site.Example:8443");
        assert_eq!(key_of(&p, "https", None), "https://site.example:8443/a?b=1");
        assert_ne!(key_of(&p, "https", None), key_of(&p, "http", None));
        assert_ne!(
            key_of(&parts("/a", "one.example"), "http", None),
            key_of(&parts("/a", "two.example"), "http", None)
        );
    }

    #[test]
    fn a_routes_cache_key_leaves_ignored_parameters_out() {
        use crate::config::route::IgnoreQuery;
        let rules = |ignore| RouteRules {
            ignore_query: ignore,
            ..RouteRules::default()
        };
        let utm = rules(IgnoreQuery::Names(vec!["utm_*".into(), "gclid".into()]));
        let k = |uri, r: &RouteRules| key_of(&parts(uri, "site.example"), "http", Some(r));
        let shared = "http://site.example/p?id=1";
        assert_eq!(k("/p?utm_source=a&id=1", &utm), shared);
        assert_eq!(k("/p?id=1&utm_source=b", &utm), shared);
        assert_eq!(k("/p?id=1&gclid=x&utm_medium=y", &utm), shared);
        assert_eq!(
            k("/p?id=1", &utm),
            shared,
            "a PURGE of the plain URL names it"
        );
        assert_eq!(
            k("/p?id=2&utm_source=b", &utm),
            "http://site.example/p?id=2"
        );
        assert_eq!(k("/p?utm_source=b", &utm), "http://site.example/p");
        let all = rules(IgnoreQuery::All);
        assert_eq!(k("/p?id=1&b=2", &all), "http://site.example/p");
        assert_eq!(k("/p", &all), "http://site.example/p");
        // A route with other rules only keys as a route without rules does.
        let other = rules(IgnoreQuery::None);
        let p = parts("/p?utm_source=a&id=1", "site.example");
        assert_eq!(key_of(&p, "http", Some(&other)), key_of(&p, "http", None));
        assert_eq!(
            key_of(&p, "http", None),
            "http://site.example/p?utm_source=a&id=1"
        );
    }

    #[test]
    fn related_keys_stay_on_the_same_host() {
        let host = HeaderValue::from_static("site.example");
        let k = |v: &'static str| related_key(&HeaderValue::from_static(v), "https", Some(&host));
        assert_eq!(k("/x/../y?q").as_deref(), Some("https://site.example/y?q"));
        assert_eq!(
            k("https://SITE.example/z").as_deref(),
            Some("https://site.example/z")
        );
        assert_eq!(k("https://other.example/z"), None);
        assert_eq!(k("//other.example/z"), None);
        assert_eq!(k("relative/path"), None);
    }
}
