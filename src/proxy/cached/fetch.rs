//! The cache's fetch from the pool (step 4 of the phase): conditional when a stale entry has
//! validators, and what the answer means for the entry: a 304 refreshes it (RFC 9111 4.3.4), a
//! 5xx within `stale-if-error` serves it, a storable response is copied into the cache as it
//! streams to the client.

use super::{mark, serve, Reply, NAME};
use crate::access_log::AccessLog;
use crate::backend::Pool;
use crate::cache::policy::{self, CacheControl, NotStored};
use crate::cache::{self, Cache, Fill, FlightGuard, Object};
use crate::clock;
use crate::config::route::RouteRules;
use crate::proxy::body::{ProxyBody, UpBody};
use crate::proxy::{forward, ClientInfo};
use bytes::Bytes;
use http::header::{
    HeaderMap, HeaderValue, AGE, CONTENT_LENGTH, COOKIE, DATE, IF_MODIFIED_SINCE, IF_NONE_MATCH,
    SET_COOKIE,
};
use http::{Method, Request, Response, StatusCode};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;

/// One upstream fetch on behalf of the cache (in the request, or in the background).
pub(super) struct Job {
    pub(super) cache: Arc<Cache>,
    pub(super) pool: Arc<Pool>,
    pub(super) grace: Option<Duration>,
    /// The route's rules (`cache_ttl`), `None` when it has none.
    pub(super) rules: Option<Arc<RouteRules>>,
    /// The route's compression: the entry answers every coding.
    pub(super) compress: Option<Arc<crate::config::compress::Compress>>,
    pub(super) client: ClientInfo,
    pub(super) primary: String,
    pub(super) method: Method,
    /// The client's request headers (conditionals, `Vary` selection).
    pub(super) req_headers: HeaderMap,
    /// The entry found stale, with the key it is stored under.
    pub(super) stale: Option<(String, Arc<Object>)>,
    /// Held while this is the fetch others wait for.
    pub(super) guard: Option<FlightGuard>,
    /// The route's index: what it stores is served on it only ([`Object::route`]).
    pub(super) route: u32,
}

/// The fetch: conditional when the stale entry has validators; then what the answer means
/// for the entry ([`revalidated`], [`stale_on_error`], [`store`]).
pub(super) async fn fetch(
    mut job: Job,
    mut up: Request<UpBody>,
    log: Option<AccessLog>,
) -> Response<ProxyBody> {
    let stale = job.stale.take();
    let validating = stale.as_ref().is_some_and(|(_, o)| o.has_validator());
    if let Some((_, o)) = stale.as_ref().filter(|_| validating) {
        ask_conditionally(up.headers_mut(), o);
        job.cache.counters.revalidations.fetch_add(1, Relaxed);
    }
    let request_ms = policy::unix_now_ms();
    let resp = forward(&job.pool, up, &job.client, log).await;
    let status = resp.status();
    let now = clock::now_ms();
    if let Some((key, obj)) = &stale {
        if validating && status == StatusCode::NOT_MODIFIED {
            return revalidated(job, resp, key, obj, request_ms);
        }
        if status.is_server_error() && obj.within(now, obj.sie) {
            return stale_on_error(job, resp, (key, obj), now);
        }
    }
    store(job, resp, stale.is_some(), request_ms)
}

/// Makes the fetch conditional on the stored entry's validators, replacing the client's own
/// conditionals (RFC 9111 4.3.1).
fn ask_conditionally(h: &mut HeaderMap, obj: &Object) {
    h.remove(IF_NONE_MATCH);
    h.remove(IF_MODIFIED_SINCE);
    h.remove(http::header::IF_MATCH);
    h.remove(http::header::IF_UNMODIFIED_SINCE);
    if let Some(e) = &obj.etag {
        h.insert(IF_NONE_MATCH, e.clone());
    }
    if let Some(lm) = &obj.last_modified {
        h.insert(IF_MODIFIED_SINCE, lm.clone());
    }
}

/// A 304 to a revalidation (RFC 9111 4.3.4). When its strong validator is not the stored
/// one's it updates nothing: the entry is dropped (the next request fetches anew) and this
/// client gets what was stored, as it was. Otherwise the stored head is updated with the 304's
/// fields and the client gets the updated head (with the 304's `Set-Cookie`); the storing rules
/// apply only to the copy kept.
fn revalidated(
    mut job: Job,
    mut resp: Response<ProxyBody>,
    key: &str,
    obj: &Arc<Object>,
    request_ms: u64,
) -> Response<ProxyBody> {
    let cache = &job.cache;
    let log = resp.body_mut().take_log();
    if !same_validator(obj, resp.headers()) {
        drop(resp);
        cache.invalidate(&job.primary);
        job.guard = None;
        let status = format!("{NAME}; fwd=stale; fwd-status=304; detail=validator-mismatch");
        return serve(obj, &job.reply(None), status, "stale", log);
    }
    let mut headers = obj.headers.clone();
    policy::merge_304(&mut headers, resp.headers());
    if !resp.headers().contains_key(DATE) {
        // A 304 without `Date` is dated when it arrived (RFC 9110 6.6.1), not by the stored
        // response's `Date`, which would make the entry as old as before.
        if let Some(now) = policy::http_date_value(policy::unix_now()) {
            headers.insert(DATE, now);
        }
    }
    // The 304's `Set-Cookie` is for this client: it is answered, never stored, and does not
    // make the refreshed entry unstorable. Its `Age` counts in the refreshed entry's age
    // (RFC 9111 4.2.3), as the `Age` of any response does; it is not stored.
    let mut kept = Response::new(());
    *kept.status_mut() = obj.status;
    *kept.headers_mut() = headers.clone();
    kept.headers_mut().remove(SET_COOKIE);
    if let Some(age) = resp.headers().get(AGE) {
        kept.headers_mut().insert(AGE, age.clone());
    }
    drop(resp);
    let renewed = describe(&job, &kept, request_ms);
    let (status, answer) = match renewed {
        Ok(meta) => {
            let kept = meta.copy_with(meta.headers.clone(), obj.body.clone());
            let ttl = kept.ttl(clock::now_ms());
            cache.replace(key, kept);
            let answer = meta.copy_with(headers, obj.body.clone());
            (
                format!("{NAME}; fwd=stale; fwd-status=304; stored; ttl={ttl}"),
                answer,
            )
        }
        Err(why) => {
            cache.invalidate(&job.primary);
            let answer = obj.copy_with(headers, obj.body.clone());
            let why = why.as_str();
            (
                format!("{NAME}; fwd=stale; fwd-status=304; detail={why}"),
                answer,
            )
        }
    };
    job.guard = None;
    serve(
        &Arc::new(answer),
        &job.reply(None),
        status,
        "revalidated",
        log,
    )
}

impl Job {
    /// How this job's client is answered from a stored object (`home`: where it is stored).
    fn reply<'a>(&'a self, home: Option<&'a str>) -> Reply<'a> {
        Reply {
            method: &self.method,
            req: &self.req_headers,
            compress: self.compress.as_deref(),
            home: home.map(|k| (&self.cache, k)),
        }
    }
}

/// A 5xx within the stale entry's `stale-if-error` window (or the route's grace): the stale
/// entry answers instead.
fn stale_on_error(
    mut job: Job,
    mut resp: Response<ProxyBody>,
    (key, obj): (&str, &Arc<Object>),
    now: u64,
) -> Response<ProxyBody> {
    job.cache.counters.stale.fetch_add(1, Relaxed);
    let status = resp.status().as_u16();
    let log = resp.body_mut().take_log();
    drop(resp);
    job.guard = None;
    let s = format!(
        "{NAME}; fwd=stale; fwd-status={status}; ttl={}; detail={}",
        obj.ttl(now),
        obj.sie_rule()
    );
    serve(obj, &job.reply(Some(key)), s, "stale", log)
}

/// The server's answer goes to the client; when storable ([`describe`]) it is copied into the
/// cache as it streams, under the `Vary` values of this request.
fn store(
    job: Job,
    mut resp: Response<ProxyBody>,
    was_stale: bool,
    request_ms: u64,
) -> Response<ProxyBody> {
    let cache = &job.cache;
    let fwd = if was_stale { "stale" } else { "miss" };
    let meta = match describe(&job, &resp, request_ms) {
        Ok(meta) => meta,
        Err(why) => {
            if was_stale && !resp.status().is_server_error() {
                // The server's new answer supersedes the stale entry (RFC 9111 4.3.3), even
                // one that may not be kept: the stale one is served no more.
                cache.invalidate(&job.primary);
            }
            drop(job.guard);
            let s = format!("{NAME}; fwd={fwd}; detail={}", why.as_str());
            mark(&mut resp, s, fwd);
            return resp;
        }
    };
    let ttl = meta.ttl(meta.stored_ms);
    // The client gets the age the cache computed, as from a hit (RFC 9111 5.1), in place of
    // the server's field as it came (which may be invalid, or absent from an old response).
    let had_age = resp.headers_mut().remove(AGE).is_some();
    let age = meta.age(meta.stored_ms);
    if had_age || age > 0 {
        resp.headers_mut().insert(AGE, HeaderValue::from(age));
    }
    let mut req_vary = HeaderMap::new();
    for n in &cache::vary_names(&meta.headers) {
        for v in job.req_headers.get_all(n) {
            req_vary.append(n.clone(), v.clone());
        }
    }
    // `stored` is said only when the length is known and fits (checked in `describe`); a body
    // of unknown length may still turn out too large, or be cut.
    let stored = if resp.headers().contains_key(CONTENT_LENGTH) {
        "; stored"
    } else {
        ""
    };
    let fill = Fill::new(cache.clone(), job.primary, req_vary, meta, job.guard);
    resp.body_mut().fill(fill);
    mark(
        &mut resp,
        format!("{NAME}; fwd={fwd}{stored}; ttl={ttl}"),
        fwd,
    );
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

/// The stale windows of a stored response, `stale-while-revalidate` then `stale-if-error`,
/// each (seconds, taken from the route's grace): the response's own windows, else the route's
/// grace, never when the response forbids serving it stale (`must-revalidate`,
/// `proxy-revalidate`, or `s-maxage`, which implies the latter: RFC 9111 4.2.4, 5.2.2.10).
fn stale_windows(cc: &CacheControl, grace: Option<Duration>) -> ((u64, bool), (u64, bool)) {
    let hard = cc.forbids_stale();
    let grace = grace.map(|g| g.as_secs());
    let window = |explicit: Option<u64>| match (hard, explicit) {
        (true, _) => (0, false),
        (false, Some(w)) => (w, false),
        (false, None) => (grace.unwrap_or(0), grace.is_some()),
    };
    (window(cc.stale_while_revalidate), window(cc.stale_if_error))
}

/// Decides whether a response is stored and with what freshness; the result carries no body
/// yet.
///
/// A route's `cache_ttl` that lists the status ([`policy::route_ttl`]) works as nginx's
/// `proxy_cache_valid`: it makes any status but 206 and 304 storable, and is the lifetime when
/// the response states none of its own (`s-maxage`, `max-age`, `Expires` win, `max-age=0`
/// included), in place of `default_ttl` ([`policy::route_lifetime`]). It overrides no refusal:
/// `no-store`, `private`, `Set-Cookie`, `Authorization`, `Vary: *`, the content type, the
/// request-cookie rule and the size limits stand, and `no-cache` still revalidates every use.
fn describe<B>(job: &Job, resp: &Response<B>, request_ms: u64) -> Result<Object, NotStored> {
    let on = Storing {
        cache: &job.cache,
        rules: job.rules.as_deref(),
        grace: job.grace,
        negotiated: job.compress.is_some(),
        route: job.route,
        method: &job.method,
        req_headers: &job.req_headers,
    };
    judge(&on, resp.status(), resp.headers(), request_ms)
}

/// What a response's storing depends on besides the response: the store and its rules, the
/// route's rules and grace, and the request.
pub(crate) struct Storing<'a> {
    pub(crate) cache: &'a Cache,
    pub(crate) rules: Option<&'a RouteRules>,
    pub(crate) grace: Option<Duration>,
    /// The route compresses: the entry answers every coding.
    pub(crate) negotiated: bool,
    pub(crate) route: u32,
    pub(crate) method: &'a Method,
    pub(crate) req_headers: &'a HeaderMap,
}

/// The head kept for a response that arrived at `response_time` (Unix seconds):
/// [`policy::stored_headers`], dated when it arrived if it has no `Date` (RFC 9110 6.6.1: so
/// every answer from it says the same time). `TooLarge` when its announced length cannot fit:
/// the store refuses more than `max_object_size` with its overhead, so a response that cannot
/// fit is never announced as stored.
fn stored_head(
    cache: &Cache,
    resp_headers: &HeaderMap,
    cc: &CacheControl,
    response_time: u64,
) -> Result<HeaderMap, NotStored> {
    let mut headers = policy::stored_headers(resp_headers, cc);
    if !headers.contains_key(DATE) {
        if let Some(arrived) = policy::http_date_value(response_time) {
            headers.insert(DATE, arrived);
        }
    }
    let length = resp_headers.get(CONTENT_LENGTH);
    let too_big = length
        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok())
        .is_some_and(|n| !cache.fits(n, &headers));
    match too_big {
        true => Err(NotStored::TooLarge),
        false => Ok(headers),
    }
}

/// [`describe`] as a pure function of the response's status and fields (and the time the
/// request was sent, in Unix milliseconds): the object to store, without its body, or why not.
pub(crate) fn judge(
    on: &Storing<'_>,
    status: StatusCode,
    resp_headers: &HeaderMap,
    request_ms: u64,
) -> Result<Object, NotStored> {
    let (cache, req_headers) = (on.cache, on.req_headers);
    let rules = &cache.rules;
    let cc = CacheControl::parse(resp_headers);
    let route_ttl = match on.rules {
        None => None,
        Some(r) => policy::route_ttl(&r.cache_ttl, status),
    };
    let listed = route_ttl.is_some();
    policy::storable_on_route(
        on.method,
        req_headers,
        status,
        resp_headers,
        &cc,
        rules,
        listed,
    )?;
    let response_ms = policy::unix_now_ms();
    let response_time = response_ms / 1000;
    let initial_age_ms = policy::initial_age_ms(resp_headers, request_ms, response_ms);
    let lifetime = match policy::route_lifetime(
        status,
        resp_headers,
        &cc,
        route_ttl,
        rules,
        response_time,
        initial_age_ms / 1000,
    ) {
        Some(l) => l,
        None if cc.no_cache => 0,
        None => return Err(NotStored::NoFreshness),
    };
    // A request with `Cookie` may be personal (cache deception: `/account.php/x.css`): its
    // answer is kept only when the response itself allows shared caching.
    if rules.request_cookie == crate::config::RequestCookie::Explicit
        && req_headers.contains_key(COOKIE)
        && !policy::explicitly_shared(resp_headers, &cc)
    {
        return Err(NotStored::Cookie);
    }
    let headers = stored_head(cache, resp_headers, &cc, response_time)?;
    let hard = cc.forbids_stale();
    let ((swr, swr_grace), (sie, sie_grace)) = stale_windows(&cc, on.grace);
    let mut obj = Object::new(
        status,
        headers,
        Bytes::new(),
        initial_age_ms,
        lifetime,
        swr,
        sie,
        cc.no_cache,
        hard,
    );
    obj.route = on.route;
    obj.from_grace = (swr_grace, sie_grace);
    obj.negotiated = on.negotiated;
    // Of no use already: stale on arrival, past its stale windows, and with nothing to
    // revalidate it by.
    if !obj.useful(obj.stored_ms) {
        return Err(NotStored::NoFreshness);
    }
    Ok(obj)
}
