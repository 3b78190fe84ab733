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
use super::{forward, upstream_body, upstream_parts, ClientInfo, RouteRt, Runtime};
use crate::access_log::AccessLog;
use crate::backend::Pool;
use crate::cache::policy::{self, CacheControl, NotStored, RangeAnswer};
use crate::cache::{self, Cache, Fill, FlightGuard, Join, Object};
use crate::clock;
use crate::session::ConnState;
use bytes::Bytes;
use http::header::{
    HeaderMap, HeaderName, HeaderValue, AGE, CONTENT_LENGTH, CONTENT_RANGE, CONTENT_TYPE, COOKIE,
    HOST, IF_MODIFIED_SINCE, IF_NONE_MATCH, RANGE, SET_COOKIE,
};
use http::{Method, Request, Response, StatusCode};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;

/// This cache's name in `Cache-Status`.
const NAME: &str = "langur";
pub const CACHE_STATUS: HeaderName = HeaderName::from_static("cache-status");

/// The primary cache key of a request head as it goes upstream (after [`upstream_parts`]):
/// scheme, the `Host` it carries (which is the absolute-form or HTTP/2 authority when there was
/// one), and the normalised path with query. So the key names exactly what the server was
/// asked for.
pub fn key_of(parts: &http::request::Parts, scheme: &str) -> String {
    let host = parts
        .headers
        .get(HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("");
    let pq = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    cache::primary_key(scheme, host, pq)
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
    // Everything below reads the head as it goes upstream, never the client's own: the key's
    // host and path, the `Vary` values, the conditionals.
    let (mut parts, body) = req.into_parts();
    upstream_parts(rt, &mut parts, client);
    let primary = key_of(&parts, client.scheme);
    let method = parts.method.clone();
    if method.as_str() == "PURGE" && !route.purge.is_empty() {
        return purge(cache, route, &primary, client, log);
    }
    let has_body = !body.is_end_stream();
    if (method != Method::GET && method != Method::HEAD) || has_body {
        let invalidates = !matches!(
            method,
            Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE
        );
        let host = parts.headers.get(HOST).cloned();
        let up = match upstream_body(rt, parts, body, conn).await {
            Ok(r) => r,
            Err(kind) => return super::error_response(kind, log),
        };
        let mut resp = forward(pool, up, client, log).await;
        let s = resp.status();
        if invalidates && (s.is_success() || s.is_redirection()) {
            cache.invalidate(&primary);
            // RFC 9111 4.4: the URIs in `Location` and `Content-Location` too, same host only.
            for name in [http::header::LOCATION, http::header::CONTENT_LOCATION] {
                if let Some(k) = resp
                    .headers()
                    .get(&name)
                    .and_then(|v| related_key(v, client.scheme, host.as_ref()))
                {
                    cache.invalidate(&k);
                }
            }
        }
        mark(&mut resp, format!("{NAME}; fwd=method"), "bypass");
        return resp;
    }
    if let Some(why) = bypass_reason(&cache.rules, &parts.headers) {
        let up = match upstream_body(rt, parts, body, conn).await {
            Ok(r) => r,
            Err(kind) => return super::error_response(kind, log),
        };
        let mut resp = forward(pool, up, client, log).await;
        mark(
            &mut resp,
            format!("{NAME}; fwd=bypass; detail={why}"),
            "bypass",
        );
        return resp;
    }

    let now = clock::now_ms();
    let found = cache.lookup(&primary, &parts.headers);
    if let Some((key, obj)) = &found {
        if obj.fresh(now) {
            cache.counters.hits.fetch_add(1, Relaxed);
            let status = format!("{NAME}; hit; ttl={}", obj.ttl(now));
            return serve(obj, &method, &parts.headers, status, "hit", log);
        }
        // No server can answer: the stale answer is the error rule's (if its window allows),
        // and no background refresh is started for nothing.
        if !pool.any_alive() && obj.within(now, obj.sie) {
            cache.counters.stale.fetch_add(1, Relaxed);
            let status = format!(
                "{NAME}; fwd=stale; fwd-status=503; ttl={}; detail={}",
                obj.ttl(now),
                obj.sie_rule()
            );
            return serve(obj, &method, &parts.headers, status, "stale", log);
        }
        if obj.within(now, obj.swr) {
            cache.counters.stale.fetch_add(1, Relaxed);
            let status = format!(
                "{NAME}; hit; ttl={}; detail={}",
                obj.ttl(now),
                obj.swr_rule()
            );
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
    if method == Method::HEAD || parts.headers.contains_key(RANGE) {
        cache.counters.misses.fetch_add(1, Relaxed);
        let up = match upstream_body(rt, parts, body, conn).await {
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
                if let Some((_, obj)) = cache.lookup(&primary, &parts.headers) {
                    let now = clock::now_ms();
                    if obj.fresh(now) {
                        cache.counters.hits.fetch_add(1, Relaxed);
                        let status = format!("{NAME}; hit; ttl={}; detail=coalesced", obj.ttl(now));
                        return serve(&obj, &method, &parts.headers, status, "hit", log);
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
        req_headers: parts.headers.clone(),
        stale: found,
        guard,
    };
    let up = match upstream_body(rt, parts, body, conn).await {
        Ok(r) => r,
        Err(kind) => return super::error_response(kind, log),
    };
    fetch(job, up, log).await
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
        // RFC 9111 4.3.4: a 304 whose strong validator is not the stored one's updates
        // nothing. The entry is dropped (the next request fetches anew), and this client gets
        // what was stored, as it was.
        if validating && status == StatusCode::NOT_MODIFIED && !same_validator(obj, resp.headers())
        {
            let log = resp.body_mut().take_log();
            drop(resp);
            cache.invalidate(&job.primary);
            drop(job.guard);
            let status = format!("{NAME}; fwd=stale; fwd-status=304; detail=validator-mismatch");
            return serve(obj, &job.method, &job.req_headers, status, "stale", log);
        }
        if validating && status == StatusCode::NOT_MODIFIED {
            // RFC 9111 4.3.4: the stored head is updated with the 304's fields and the client
            // gets the updated head (with the 304's `Set-Cookie`); the storing rules apply only
            // to the copy kept.
            let mut headers = obj.headers.clone();
            policy::merge_304(&mut headers, resp.headers());
            let mut fresh = Response::new(());
            *fresh.status_mut() = obj.status;
            *fresh.headers_mut() = headers;
            let log = resp.body_mut().take_log();
            drop(resp);
            // The 304's `Set-Cookie` is for this client: it is answered, never stored, and
            // does not make the refreshed entry unstorable.
            let mut kept = Response::new(());
            *kept.status_mut() = obj.status;
            *kept.headers_mut() = fresh.headers().clone();
            kept.headers_mut().remove(SET_COOKIE);
            let renewed = describe(
                cache,
                job.grace,
                &job.method,
                &job.req_headers,
                &kept,
                request_time,
            );
            let (status, answer) = match renewed {
                Ok(meta) => {
                    let kept = meta.copy_with(meta.headers.clone(), obj.body.clone());
                    let ttl = kept.ttl(clock::now_ms());
                    cache.replace(key, kept);
                    let answer = meta.copy_with(fresh.headers().clone(), obj.body.clone());
                    (
                        format!("{NAME}; fwd=stale; fwd-status=304; stored; ttl={ttl}"),
                        answer,
                    )
                }
                Err(why) => {
                    cache.invalidate(&job.primary);
                    let answer = obj.copy_with(fresh.headers().clone(), obj.body.clone());
                    (
                        format!("{NAME}; fwd=stale; fwd-status=304; detail={}", why.as_str()),
                        answer,
                    )
                }
            };
            drop(job.guard);
            return serve(
                &answer,
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
                "{NAME}; fwd=stale; fwd-status={}; ttl={}; detail={}",
                status.as_u16(),
                obj.ttl(now),
                obj.sie_rule()
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
            // `stored` is said only when the length is known and fits (checked in `describe`);
            // a body of unknown length may still turn out too large, or be cut.
            let stored = if resp.headers().contains_key(CONTENT_LENGTH) {
                "; stored"
            } else {
                ""
            };
            resp.body_mut().fill(Fill::new(
                cache.clone(),
                job.primary,
                req_vary,
                meta,
                job.guard,
            ));
            mark(
                &mut resp,
                format!("{NAME}; fwd={fwd}{stored}; ttl={ttl}"),
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

/// Whether a 304 may update a stored response: when it carries a strong `ETag`, the stored one
/// must be that same strong tag (RFC 9111 4.3.4); without one it selects the stored response.
fn same_validator(obj: &Object, fresh: &HeaderMap) -> bool {
    let Some(tag) = fresh.get(http::header::ETAG) else {
        return true;
    };
    if tag.as_bytes().starts_with(b"W/") {
        // A weak tag identifies the stored response only if it is that tag, weak or not.
        return obj.etag.as_ref().is_some_and(|e| {
            e.as_bytes().strip_prefix(b"W/").unwrap_or(e.as_bytes()) == &tag.as_bytes()[2..]
        });
    }
    obj.etag.as_ref() == Some(tag)
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
    // A request with `Cookie` may be personal (cache deception: `/account.php/x.css`): its
    // answer is kept only when the response itself allows shared caching.
    if rules.request_cookie == crate::config::RequestCookie::Explicit
        && req_headers.contains_key(COOKIE)
        && !policy::explicitly_shared(resp.headers(), &cc)
    {
        return Err(NotStored::Cookie);
    }
    let headers = policy::stored_headers(resp.headers(), &cc);
    // What the store will weigh: it refuses more than `max_object_size` with its overhead, so
    // a response that cannot fit is never announced as stored.
    let too_big = resp
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
        .is_some_and(|n| !cache.fits(n, &headers));
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
            (0, false)
        } else {
            match explicit {
                Some(w) => (w, false),
                None => (grace.unwrap_or(0), grace.is_some()),
            }
        }
    };
    let ((swr, swr_grace), (sie, sie_grace)) =
        (window(cc.stale_while_revalidate), window(cc.stale_if_error));
    let has_validator = resp.headers().contains_key(http::header::ETAG)
        || resp.headers().contains_key(http::header::LAST_MODIFIED);
    if lifetime == 0 && !has_validator && swr == 0 && sie == 0 {
        return Err(NotStored::NoFreshness);
    }
    let initial_age = policy::initial_age(resp.headers(), request_time, response_time);
    let mut obj = Object::new(
        status,
        headers,
        Bytes::new(),
        initial_age,
        lifetime,
        swr,
        sie,
        cc.no_cache,
        hard,
    );
    obj.from_grace = (swr_grace, sie_grace);
    Ok(obj)
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
        assert_eq!(key_of(&p, "https"), "https://site.example:8443/a?b=1");
        assert_ne!(key_of(&p, "https"), key_of(&p, "http"));
        assert_ne!(
            key_of(&parts("/a", "one.example"), "http"),
            key_of(&parts("/a", "two.example"), "http")
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
