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
//! Every answer says what happened in `Cache-Status` (RFC 9211).

use super::body::{ClientIn, ProxyBody, UpBody};
use super::{forward, upstream_parts, upstream_request, ClientInfo, RouteRt, Runtime};
use crate::access_log::AccessLog;
use crate::backend::Pool;
use crate::cache::policy::{self, CacheControl, NotStored, RangeAnswer};
use crate::cache::{self, Cache, Fill, FlightGuard, Join, Object};
use crate::clock;
use crate::conn::ConnState;
use bytes::Bytes;
use http::header::{
    HeaderMap, HeaderName, HeaderValue, AGE, CONTENT_LENGTH, CONTENT_RANGE, CONTENT_TYPE, HOST,
    IF_MODIFIED_SINCE, IF_NONE_MATCH, RANGE, SET_COOKIE,
};
use http::{Method, Request, Response, StatusCode};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;

/// This cache's name in `Cache-Status`.
const NAME: &str = "langur";
pub const CACHE_STATUS: HeaderName = HeaderName::from_static("cache-status");

/// The primary cache key of a request: scheme, host and path with query.
pub fn key_of<B>(req: &Request<B>) -> String {
    let host = req
        .headers()
        .get(HOST)
        .and_then(|h| h.to_str().ok())
        .or_else(|| req.uri().authority().map(|a| a.as_str()))
        .unwrap_or("");
    let pq = req.uri().path_and_query().map_or("/", |p| p.as_str());
    cache::primary_key("http", host, pq)
}

pub async fn handle(
    rt: &Arc<Runtime>,
    route: &RouteRt,
    pool: &Arc<Pool>,
    req: Request<ClientIn>,
    client: &ClientInfo,
    conn: &Arc<ConnState>,
    log: Option<AccessLog>,
) -> Response<ProxyBody> {
    let cache = &rt.cache;
    let primary = key_of(&req);
    let method = req.method().clone();
    if method.as_str() == "PURGE" && !route.purge.is_empty() {
        return purge(cache, route, &primary, client, log);
    }
    let has_body = !req.body().is_end_stream();
    if (method != Method::GET && method != Method::HEAD) || has_body {
        let invalidates = !matches!(
            method,
            Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE
        );
        let up = match upstream_request(rt, req, client, conn).await {
            Ok(r) => r,
            Err(kind) => return super::error_response(kind, log),
        };
        let mut resp = forward(pool, up, client, log).await;
        let s = resp.status();
        if invalidates && (s.is_success() || s.is_redirection()) {
            cache.invalidate(&primary);
        }
        mark(&mut resp, format!("{NAME}; fwd=method"), "bypass");
        return resp;
    }

    let now = clock::now_ms();
    let found = cache.lookup(&primary, req.headers());
    if let Some((key, obj)) = &found {
        if obj.fresh(now) {
            cache.counters.hits.fetch_add(1, Relaxed);
            let status = format!("{NAME}; hit; ttl={}", obj.ttl(now));
            return serve(obj, &method, req.headers(), status, "hit", log);
        }
        if obj.within(now, obj.swr) {
            cache.counters.stale.fetch_add(1, Relaxed);
            let status = format!(
                "{NAME}; hit; ttl={}; detail=stale-while-revalidate",
                obj.ttl(now)
            );
            let (parts, _) = req.into_parts();
            let resp = serve(obj, &method, &parts.headers, status, "stale", log);
            if let Join::Leader(guard) = cache.join(&primary) {
                let stale = Some((key.to_string(), obj.clone()));
                let job = Job {
                    cache: cache.clone(),
                    pool: pool.clone(),
                    grace: route.grace,
                    client: client.clone(),
                    primary,
                    method: Method::GET,
                    req_headers: parts.headers.clone(),
                    stale,
                    guard: Some(guard),
                };
                let mut up = parts;
                up.method = Method::GET;
                upstream_parts(rt, &mut up, client);
                let up = Request::from_parts(up, UpBody::Empty);
                tokio::spawn(async move {
                    let resp = fetch(job, up, None).await;
                    let _ = http_body_util::BodyExt::collect(resp.into_body()).await;
                });
            }
            return resp;
        }
    }

    // Ranges and HEAD on what the cache cannot answer go upstream as they are, unstored.
    if method == Method::HEAD || req.headers().contains_key(RANGE) {
        cache.counters.misses.fetch_add(1, Relaxed);
        let up = match upstream_request(rt, req, client, conn).await {
            Ok(r) => r,
            Err(kind) => return super::error_response(kind, log),
        };
        let mut resp = forward(pool, up, client, log).await;
        mark(&mut resp, format!("{NAME}; fwd=miss"), "miss");
        return resp;
    }

    let mut guard = None;
    match cache.join(&primary) {
        Join::Leader(g) => guard = Some(g),
        Join::Wait(rx) => {
            cache.counters.coalesced.fetch_add(1, Relaxed);
            if cache::wait(rx, cache.rules.lock_timeout).await {
                if let Some((_, obj)) = cache.lookup(&primary, req.headers()) {
                    let now = clock::now_ms();
                    if obj.fresh(now) {
                        cache.counters.hits.fetch_add(1, Relaxed);
                        let status = format!("{NAME}; hit; ttl={}; detail=coalesced", obj.ttl(now));
                        return serve(&obj, &method, req.headers(), status, "hit", log);
                    }
                }
            }
            // The fetch we waited for was not storable, failed, or took too long: go ourselves.
        }
    }
    if found.is_none() {
        cache.counters.misses.fetch_add(1, Relaxed);
    }
    let found = found.map(|(k, o)| (k.into_owned(), o));
    let job = Job {
        cache: cache.clone(),
        pool: pool.clone(),
        grace: route.grace,
        client: client.clone(),
        primary,
        method,
        req_headers: req.headers().clone(),
        stale: found,
        guard,
    };
    let up = match upstream_request(rt, req, client, conn).await {
        Ok(r) => r,
        Err(kind) => return super::error_response(kind, log),
    };
    fetch(job, up, log).await
}

/// One upstream fetch on behalf of the cache (in the request, or in the background).
struct Job {
    cache: Arc<Cache>,
    pool: Arc<Pool>,
    grace: Option<Duration>,
    client: ClientInfo,
    primary: String,
    method: Method,
    /// The client's request headers (conditionals, `Vary` selection).
    req_headers: HeaderMap,
    /// The entry found stale, with the key it is stored under.
    stale: Option<(String, Arc<Object>)>,
    /// Held while this is the fetch others wait for.
    guard: Option<FlightGuard>,
}

async fn fetch(job: Job, mut up: Request<UpBody>, log: Option<AccessLog>) -> Response<ProxyBody> {
    let cache = &job.cache;
    let validating = job.stale.as_ref().is_some_and(|(_, o)| o.has_validator());
    if let Some((_, o)) = job.stale.as_ref().filter(|_| validating) {
        let h = up.headers_mut();
        h.remove(IF_NONE_MATCH);
        h.remove(IF_MODIFIED_SINCE);
        h.remove(http::header::IF_MATCH);
        h.remove(http::header::IF_UNMODIFIED_SINCE);
        if let Some(e) = &o.etag {
            h.insert(IF_NONE_MATCH, e.clone());
        }
        if let Some(lm) = &o.last_modified {
            h.insert(IF_MODIFIED_SINCE, lm.clone());
        }
        cache.counters.revalidations.fetch_add(1, Relaxed);
    }
    let request_time = policy::unix_now();
    let mut resp = forward(&job.pool, up, &job.client, log).await;
    let status = resp.status();
    let now = clock::now_ms();

    if let Some((key, obj)) = &job.stale {
        if validating && status == StatusCode::NOT_MODIFIED {
            let mut headers = obj.headers.clone();
            policy::merge_304(&mut headers, resp.headers());
            let mut fresh = Response::new(());
            *fresh.status_mut() = obj.status;
            *fresh.headers_mut() = headers;
            let log = resp.body_mut().take_log();
            drop(resp);
            let renewed = describe(
                cache,
                job.grace,
                &job.method,
                &job.req_headers,
                &fresh,
                request_time,
            )
            .map(|meta| meta.copy_with(meta.headers.clone(), obj.body.clone()));
            let served = match renewed {
                Ok(o) => {
                    let o = Arc::new(o);
                    cache.replace(key, o.copy_with(o.headers.clone(), o.body.clone()));
                    o
                }
                Err(_) => {
                    cache.invalidate(&job.primary);
                    obj.clone()
                }
            };
            drop(job.guard);
            let status = format!(
                "{NAME}; fwd=stale; fwd-status=304; stored; ttl={}",
                served.ttl(clock::now_ms())
            );
            return serve(
                &served,
                &job.method,
                &job.req_headers,
                status,
                "revalidated",
                log,
            );
        }
        if status.is_server_error() && obj.within(now, obj.sie) {
            cache.counters.stale.fetch_add(1, Relaxed);
            let log = resp.body_mut().take_log();
            drop(resp);
            drop(job.guard);
            let s = format!(
                "{NAME}; fwd=stale; fwd-status={}; ttl={}; detail=stale-if-error",
                status.as_u16(),
                obj.ttl(now)
            );
            return serve(obj, &job.method, &job.req_headers, s, "stale", log);
        }
    }

    let fwd = if job.stale.is_some() { "stale" } else { "miss" };
    match describe(
        cache,
        job.grace,
        &job.method,
        &job.req_headers,
        &resp,
        request_time,
    ) {
        Ok(meta) => {
            let ttl = meta.lifetime as i64 - meta.initial_age as i64;
            let names = cache::vary_names(&meta.headers);
            let mut req_vary = HeaderMap::new();
            for n in &names {
                for v in job.req_headers.get_all(n) {
                    req_vary.append(n.clone(), v.clone());
                }
            }
            resp.body_mut().fill(Fill {
                cache: cache.clone(),
                primary: job.primary,
                req_vary,
                meta,
                chunks: Vec::new(),
                size: 0,
                guard: job.guard,
            });
            mark(
                &mut resp,
                format!("{NAME}; fwd={fwd}; stored; ttl={ttl}"),
                fwd,
            );
        }
        Err(why) => {
            drop(job.guard);
            let s = format!("{NAME}; fwd={fwd}; detail={}", why.as_str());
            mark(&mut resp, s, fwd);
        }
    }
    resp
}

/// Decides whether a response is stored and with what freshness; the result carries no body
/// yet.
fn describe<B>(
    cache: &Cache,
    grace: Option<Duration>,
    method: &Method,
    req_headers: &HeaderMap,
    resp: &Response<B>,
    request_time: u64,
) -> Result<Object, NotStored> {
    let rules = &cache.rules;
    let cc = CacheControl::parse(resp.headers());
    let status = resp.status();
    policy::storable(method, req_headers, status, resp.headers(), &cc, rules)?;
    let response_time = policy::unix_now();
    let lifetime =
        match policy::freshness_lifetime(status, resp.headers(), &cc, rules, response_time) {
            Some(l) => l,
            None if cc.no_cache => 0,
            None => return Err(NotStored::NoFreshness),
        };
    let too_big = resp
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
        .is_some_and(|n| n > rules.max_object_size);
    if too_big {
        return Err(NotStored::TooLarge);
    }
    // Stale answers: the response's own windows, else the route's grace, never when the
    // response forbids serving it stale (`must-revalidate`, `proxy-revalidate`; `s-maxage`
    // only turns the route's grace off).
    let hard = cc.must_revalidate || cc.proxy_revalidate;
    let grace = (!cc.forbids_stale())
        .then_some(grace)
        .flatten()
        .map(|g| g.as_secs());
    let window = |explicit: Option<u64>| {
        if hard {
            0
        } else {
            explicit.or(grace).unwrap_or(0)
        }
    };
    let (swr, sie) = (window(cc.stale_while_revalidate), window(cc.stale_if_error));
    let has_validator = resp.headers().contains_key(http::header::ETAG)
        || resp.headers().contains_key(http::header::LAST_MODIFIED);
    if lifetime == 0 && !has_validator && swr == 0 && sie == 0 {
        return Err(NotStored::NoFreshness);
    }
    let initial_age = policy::initial_age(resp.headers(), request_time, response_time);
    let mut headers = resp.headers().clone();
    // Reached only when a rule allows storing such responses: cookies are never replayed.
    headers.remove(SET_COOKIE);
    headers.remove(AGE);
    Ok(Object::new(
        status,
        headers,
        Bytes::new(),
        initial_age,
        lifetime,
        swr,
        sie,
        cc.no_cache,
        hard,
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

/// Answers a request from a stored object: 304 for a matching conditional, 206/416 for a
/// range, else the whole response (HEAD gets the same head; hyper sends no body for it).
pub(crate) fn serve(
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
        if ok && policy::not_modified(req, obj.etag.as_ref(), obj.last_modified.as_ref()) {
            let mut h = HeaderMap::new();
            for name in policy::NOT_MODIFIED_HEADERS {
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
    headers.insert(AGE, HeaderValue::from(obj.age(clock::now_ms())));
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
    cache: &Cache,
    route: &RouteRt,
    primary: &str,
    client: &ClientInfo,
    mut log: Option<AccessLog>,
) -> Response<ProxyBody> {
    let ip = client.addr.ip();
    let allowed = route.purge.iter().any(|n| n.contains(&ip));
    let (status, body) = if allowed {
        let n = cache.invalidate(primary);
        cache.counters.purged.fetch_add(n, Relaxed);
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
