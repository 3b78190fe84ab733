//! The rules phase: what `[server]` and a route do besides choosing a target. On the way in,
//! in order: the request ID and the HTTPS redirect (`[server]`, before routing); after
//! routing, the rate limit (429), access (`deny`/`allow` → 403, `basic_auth` → 401), then
//! `redirect` or `respond`, then the path rewrite and the request header rules. On the way
//! back ([`finish`]): error pages, the response header rules, the request ID and HSTS.
//!
//! A route without rules and a `[server]` without them cost one branch each: nothing here runs.

use super::body::{ClientIn, ProxyBody};
use super::{error_response, ClientInfo, Runtime};
use crate::access_log::AccessLog;
use crate::config::route::{HeaderRules, LimitKey, Page, PathRewrite, RouteRules};
use crate::error::ErrorKind;
use crate::limits::cluster::Step;
use crate::limits::{Decision, FairKey, RateLimiter};
use crate::template::{Template, Var, Vars};
use http::header::{HeaderMap, HeaderName, HeaderValue, CONTENT_TYPE, HOST, LOCATION};
use http::{Request, Response, StatusCode, Uri};
use std::sync::Arc;

/// Marks a response langur made itself (an error answer), which `[server]`/route error pages
/// replace without `intercept_errors`.
#[derive(Clone, Copy)]
pub(crate) struct OwnAnswer;

/// What the way back needs from the way in. Empty (the common case): [`finish`] is skipped.
#[derive(Default)]
pub(super) struct Post<'a> {
    pub rules: Option<&'a RouteRules>,
    pub request_id: Option<HeaderValue>,
    /// Response header values, rendered while the request was at hand.
    pub response_headers: Vec<(HeaderName, HeaderValue, bool)>,
}

/// A request's values for templates.
struct Values<'a, B> {
    req: &'a Request<B>,
    client: &'a ClientInfo,
    request_id: Option<&'a HeaderValue>,
    upstream_host: Option<&'a HeaderValue>,
    /// The route's path groups, as text.
    groups: &'a [Option<String>],
}

impl<B> Vars for Values<'_, B> {
    fn var(&self, var: &Var, out: &mut String) {
        let uri = self.req.uri();
        fn text(v: Option<&HeaderValue>) -> &str {
            v.and_then(|v| v.to_str().ok()).unwrap_or("")
        }
        match var {
            Var::Host => {
                let h = crate::matching::request_host(uri, self.req.headers());
                out.push_str(h.as_deref().unwrap_or(""));
            }
            Var::Path => out.push_str(uri.path()),
            Var::Query => out.push_str(uri.query().unwrap_or("")),
            Var::PathAndQuery => out.push_str(uri.path_and_query().map_or("/", |p| p.as_str())),
            Var::Scheme => out.push_str(self.client.scheme),
            Var::ClientIp => out.push_str(&self.client.addr.ip().to_string()),
            Var::RequestId => out.push_str(text(self.request_id)),
            Var::UpstreamHost => out.push_str(text(self.upstream_host)),
            Var::Header(n) => out.push_str(text(self.req.headers().get(n))),
            Var::Group(n) => {
                let g = self.groups.get(usize::from(*n)).and_then(|g| g.as_deref());
                out.push_str(g.unwrap_or(""));
            }
        }
    }
}

/// A request ID as received is kept when it is 1 to 128 characters of letters, digits and
/// `-_.:+/=@` (what UUIDs, W3C trace IDs, AWS and Heroku request IDs use); anything else is
/// replaced, so a client cannot inject text into logs or headers.
fn well_formed_id(v: &HeaderValue) -> bool {
    let b = v.as_bytes();
    !b.is_empty()
        && b.len() <= 128
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || b"-_.:+/=@".contains(c))
}

/// `[server]` rules on the way in: the request ID (kept or made: a UUIDv7, RFC 9562 5.7) and
/// the redirect of plain HTTP to HTTPS (308, same host, path and query). `Some`: the answer.
pub(super) fn site_request(
    rt: &Runtime,
    req: &mut Request<ClientIn>,
    client: &ClientInfo,
    post: &mut Post<'_>,
    log: &mut Option<AccessLog>,
) -> Option<Response<ProxyBody>> {
    if let Some(name) = &rt.site.request_id {
        let id = match req.headers().get(name).filter(|v| well_formed_id(v)) {
            Some(v) => {
                // One value goes on: a second one (unchecked) must not ride along.
                let v = v.clone();
                req.headers_mut().insert(name.clone(), v.clone());
                v
            }
            None => {
                let id = uuid::Uuid::now_v7().hyphenated().to_string();
                let v = HeaderValue::from_str(&id).expect("a UUID is a header value");
                req.headers_mut().insert(name.clone(), v.clone());
                v
            }
        };
        if let Some(l) = log {
            l.request_id = Some(id.clone());
        }
        post.request_id = Some(id);
    }
    // ACME HTTP-01 challenges are answered over plain HTTP (RFC 8555 8.3): never redirected.
    // Only what a CA sends is exempt: GET or HEAD of one token (a base64url segment).
    let challenge = is_acme_challenge(req);
    if rt.site.redirect_http_to_https && client.scheme == "http" && !challenge {
        // Without a host there is no URL to send the client to; the request is not served in
        // plain HTTP either.
        let Some(host) = crate::matching::request_host(req.uri(), req.headers()) else {
            return Some(error_response(ErrorKind::BadRequest, log.take()));
        };
        let port = rt.https_port.map(|p| format!(":{p}")).unwrap_or_default();
        let pq = req.uri().path_and_query().map_or("/", |p| p.as_str());
        let to = format!("https://{host}{port}{pq}");
        return Some(redirect_to(&to, StatusCode::PERMANENT_REDIRECT, log.take()));
    }
    None
}

/// What the route's rules say before the request goes on.
pub(super) enum Verdict {
    /// On to the target.
    Go,
    /// Answered here.
    Answer(Response<ProxyBody>),
    /// Credentials to verify (slow: off the event loop) before [`after_auth`].
    Verify(Arc<crate::credentials::Users>, String, Vec<u8>),
}

/// The client's own `Host` (`None`: it named none), kept when a rule replaces it or the pool's
/// name is supplied for it, so that `X-Forwarded-Host` still names what the client asked for.
#[derive(Clone)]
pub(crate) struct OriginalHost(pub Option<HeaderValue>);

/// The route's rules start: the way back will apply its error pages and response header rules
/// (to every answer, the route's own 401, 403 and redirects included); the response header
/// values are rendered now, while the request is at hand.
pub(super) fn begin<'a>(
    route: &super::RouteRt,
    rules: &'a RouteRules,
    groups: &[Option<String>],
    req: &Request<ClientIn>,
    client: &ClientInfo,
    post: &mut Post<'a>,
) {
    post.rules = Some(rules);
    if rules.response_headers.is_empty() {
        return;
    }
    let request_id = post.request_id.as_ref();
    post.response_headers = render_rules(&rules.response_headers, |t| {
        t.render(&Values {
            req,
            client,
            request_id,
            upstream_host: route.upstream_host.as_ref(),
            groups,
        })
    });
}

/// The route's `rate_limit`, the first of its checks (a client over its limit costs no
/// password check): over the limit, 429 with `Retry-After` and the `RateLimit-Policy` and
/// `RateLimit` fields (draft-ietf-httpapi-ratelimit-headers-11), logged `rate_limited`.
/// A `header:` or `route` key goes with the request to a pool that queues fairly
/// ([`FairKey`]; the client's address is the fair queue's own default). A limit counted
/// across the fleet decides at once from the key's local allowance, or asks Redis
/// ([`Limit::Ask`], awaited by the pipeline within `[cluster] timeout`).
pub(super) fn rate_limit(
    rt: &Runtime,
    route: &super::RouteRt,
    limiter: &Arc<RateLimiter>,
    req: &mut Request<ClientIn>,
    client: &ClientInfo,
    log: &mut Option<AccessLog>,
) -> Limit {
    let Some(key) = limiter.key_of(req.headers(), client.addr.ip()) else {
        // The key field came more than once.
        return Limit::Answer(error_response(ErrorKind::BadRequest, log.take()));
    };
    if limiter.config().key != LimitKey::ClientIp
        && route.pool.is_some_and(|p| rt.pools[p].queue.config.fair)
    {
        req.extensions_mut().insert(FairKey(key));
    }
    let decision = match &limiter.cluster {
        None => limiter.check(key),
        Some(c) => match c.step(limiter, key) {
            Step::Decided(d) => d,
            Step::Ask => {
                let name = limiter.cluster_key(c, req.headers(), client.addr.ip());
                return Limit::Ask(Box::new(Ask {
                    limiter: limiter.clone(),
                    key,
                    name,
                }));
            }
        },
    };
    match decision {
        Decision::Allow => Limit::Go,
        Decision::Deny(wait) => Limit::Answer(too_many(limiter, wait, log.take())),
    }
}

/// What the rate limit says at once (returned, never stored: the answer is not boxed).
#[allow(clippy::large_enum_variant)]
pub(super) enum Limit {
    Go,
    Answer(Response<ProxyBody>),
    /// Redis must be asked (`scope = "cluster"`): see [`Ask::run`].
    Ask(Box<Ask>),
}

/// A round trip to the fleet's count for one request.
pub(super) struct Ask {
    limiter: Arc<RateLimiter>,
    key: u64,
    /// The key's name in Redis.
    name: String,
}

impl Ask {
    /// Asks Redis (within `[cluster] timeout`; the per-instance limit when it cannot):
    /// `None` to go on, or the 429.
    pub(super) async fn run(self, log: &mut Option<AccessLog>) -> Option<Response<ProxyBody>> {
        let c = self.limiter.cluster.as_ref()?;
        match c.ask(&self.limiter, self.key, &self.name).await {
            Decision::Allow => None,
            Decision::Deny(wait) => Some(too_many(&self.limiter, wait, log.take())),
        }
    }
}

/// 429 with the wait (RFC 6585 4, RFC 9110 10.2.3) and the limit's fields.
#[cold]
fn too_many(
    limiter: &RateLimiter,
    wait: std::time::Duration,
    log: Option<AccessLog>,
) -> Response<ProxyBody> {
    let mut resp = error_response(ErrorKind::RateLimited, log);
    let (state, secs) = RateLimiter::denied_fields(wait);
    let h = resp.headers_mut();
    h.insert(http::header::RETRY_AFTER, HeaderValue::from(secs));
    h.insert(RATELIMIT_POLICY, limiter.policy().clone());
    h.insert(RATELIMIT, state);
    resp
}

/// The fields of draft-ietf-httpapi-ratelimit-headers.
const RATELIMIT_POLICY: HeaderName = HeaderName::from_static("ratelimit-policy");
const RATELIMIT: HeaderName = HeaderName::from_static("ratelimit");

/// The rate limit ([`rate_limit`]), then the access rules ([`permission`]): `None` to go on, or
/// the answer (429, 403, 401). The slow steps (a round trip to the fleet's Redis, a password
/// hash) are boxed, so their futures are not part of every request's state.
pub(super) async fn admit(
    rt: &Runtime,
    route: &super::RouteRt,
    rules: &RouteRules,
    req: &mut Request<ClientIn>,
    client: &ClientInfo,
    log: &mut Option<AccessLog>,
) -> Option<Response<ProxyBody>> {
    if let Some(limiter) = &route.limiter {
        match rate_limit(rt, route, limiter, req, client, log) {
            Limit::Go => {}
            Limit::Answer(r) => return Some(r),
            Limit::Ask(ask) => {
                if let Some(r) = Box::pin(ask.run(log)).await {
                    return Some(r);
                }
            }
        }
    }
    match permission(rules, req, client, log) {
        Verdict::Go => None,
        Verdict::Answer(r) => Some(r),
        Verdict::Verify(users, user, password) => {
            let ok = Box::pin(users.verify_async(user, password)).await;
            (!ok).then(|| unauthorized(rules, log.take()))
        }
    }
}

/// `deny`/`allow` (403), then `basic_auth` (401 without credentials): [`admit`] after the
/// rate limit (which counts the request, so `langur explain` asks only this).
pub(super) fn permission(
    rules: &RouteRules,
    req: &Request<ClientIn>,
    client: &ClientInfo,
    log: &mut Option<AccessLog>,
) -> Verdict {
    if !rules.access.permits(client.addr.ip()) {
        return Verdict::Answer(error_response(ErrorKind::Forbidden, log.take()));
    }
    let Some(auth) = &rules.basic_auth else {
        return Verdict::Go;
    };
    let given = req
        .headers()
        .get(http::header::AUTHORIZATION)
        .and_then(crate::credentials::parse_authorization);
    match given {
        Some((user, password)) => Verdict::Verify(auth.users.clone(), user, password),
        None => Verdict::Answer(unauthorized(rules, log.take())),
    }
}

/// 401 with the route's challenge (RFC 7235 3.1, RFC 7617).
pub(super) fn unauthorized(rules: &RouteRules, log: Option<AccessLog>) -> Response<ProxyBody> {
    let mut resp = error_response(ErrorKind::Unauthorized, log);
    if let Some(auth) = &rules.basic_auth {
        resp.headers_mut()
            .insert(http::header::WWW_AUTHENTICATE, auth.challenge.clone());
    }
    resp
}

/// The rest of the route's rules once access is granted: `redirect` or `respond` answer;
/// otherwise the path is rewritten and the request header rules applied (`Authorization` is
/// removed on a `basic_auth` route unless `forward_auth_header`).
pub(super) fn after_auth<'a>(
    route: &super::RouteRt,
    rules: &'a RouteRules,
    groups: &[Option<String>],
    req: &mut Request<ClientIn>,
    client: &ClientInfo,
    post: &mut Post<'a>,
    log: &mut Option<AccessLog>,
) -> Option<Response<ProxyBody>> {
    if let Some(auth) = &rules.basic_auth {
        if !auth.forward {
            req.headers_mut().remove(http::header::AUTHORIZATION);
        }
    }
    let vars = |req: &Request<ClientIn>, t: &Template, request_id: Option<&HeaderValue>| {
        t.render(&Values {
            req,
            client,
            request_id,
            upstream_host: route.upstream_host.as_ref(),
            groups,
        })
    };
    if let Some(r) = &rules.redirect {
        let to = vars(req, &r.to, post.request_id.as_ref());
        return Some(redirect_to(&to, r.status, log.take()));
    }
    if let Some(r) = &rules.respond {
        let mut resp = Response::new(ProxyBody::full(r.body.clone(), answered(log, r.status)));
        *resp.status_mut() = r.status;
        resp.headers_mut()
            .insert(CONTENT_TYPE, r.content_type.clone());
        return Some(resp);
    }
    if let Some(rw) = &rules.rewrite {
        let path = rewritten(rw, req.uri().path(), |t, caps| {
            t.render(&Values {
                req,
                client,
                request_id: post.request_id.as_ref(),
                upstream_host: route.upstream_host.as_ref(),
                groups: caps,
            })
        });
        if let Some(path) = path {
            // What a rewrite makes (from the client's path or fields) is checked like a
            // client's target; one that is not a plain path is refused, never sent as it was.
            if !set_path(req, &path) {
                return Some(error_response(ErrorKind::BadRequest, log.take()));
            }
            if let Some(l) = log {
                l.rewritten = Some(req.uri().path().to_string());
            }
        }
    }
    if !rules.request_headers.is_empty() {
        let rendered = render_rules(&rules.request_headers, |t| {
            vars(req, t, post.request_id.as_ref())
        });
        if rules.request_headers.set.iter().any(|(n, _)| n == HOST) {
            host_is_set(req);
        }
        apply(&rules.request_headers.remove, rendered, req.headers_mut());
    }
    None
}

/// An ACME HTTP-01 validation request (RFC 8555 8.3): GET or HEAD of
/// `/.well-known/acme-challenge/TOKEN`, the token one base64url segment.
fn is_acme_challenge<B>(req: &Request<B>) -> bool {
    let get = matches!(*req.method(), http::Method::GET | http::Method::HEAD);
    let token = req
        .uri()
        .path()
        .strip_prefix("/.well-known/acme-challenge/");
    get && token.is_some_and(|t| {
        !t.is_empty()
            && t.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    })
}

/// A request whose `Host` a rule sets: the rule's `Host` is the one sent, so an absolute-form
/// target (whose authority would replace it on the way upstream) becomes origin-form, and the
/// client's own host (or that it sent none) is kept for `X-Forwarded-Host` ([`OriginalHost`]).
fn host_is_set(req: &mut Request<ClientIn>) {
    let pq = req.uri().path_and_query().map_or("/", |p| p.as_str());
    let original = match req.uri().authority() {
        Some(a) => HeaderValue::from_str(a.as_str()).ok(),
        None => req.headers().get(http::header::HOST).cloned(),
    };
    if req.uri().authority().is_some() {
        *req.uri_mut() = pq.parse().unwrap_or_else(|_| Uri::from_static("/"));
    }
    // The first one set is the client's (`None`: it sent none, nor does it name one now).
    if req.extensions().get::<OriginalHost>().is_none() {
        req.extensions_mut().insert(OriginalHost(original));
    }
}

/// The route's path groups as text (`$1`..), when its templates read them.
pub(super) fn groups(rt: &Runtime, route_index: usize, path: &str) -> Vec<Option<String>> {
    rt.router
        .captures(route_index, path)
        .map(|c| {
            c.iter()
                .map(|m| m.map(|m| m.as_str().to_string()))
                .collect()
        })
        .unwrap_or_default()
}

/// Set and add rules rendered: (name, value, replaces). A value that renders to something a
/// field cannot carry (a control character from a client's field) is left out.
fn render_rules(
    rules: &HeaderRules,
    mut render: impl FnMut(&Template) -> String,
) -> Vec<(HeaderName, HeaderValue, bool)> {
    let set = rules.set.iter().map(|r| (r, true));
    let add = rules.add.iter().map(|r| (r, false));
    set.chain(add)
        .filter_map(|((name, t), replaces)| {
            let v = match t.as_literal() {
                Some(lit) => HeaderValue::from_str(lit).ok()?,
                None => HeaderValue::from_str(&render(t)).ok()?,
            };
            Some((name.clone(), v, replaces))
        })
        .collect()
}

/// `remove` first, then `set` (replacing) and `add` (appending), in that order.
fn apply(
    remove: &[HeaderName],
    rendered: Vec<(HeaderName, HeaderValue, bool)>,
    headers: &mut HeaderMap,
) {
    for n in remove {
        headers.remove(n);
    }
    for (n, v, replaces) in rendered {
        if replaces {
            headers.insert(n, v);
        } else {
            headers.append(n, v);
        }
    }
}

/// The rewritten path, or `None` when the rule leaves it as it is. `strip_prefix` is
/// segment-aware (`/api` strips `/api/x` to `/x` and `/api` to `/`), `add_prefix` prepends;
/// `rewrite` replaces its regex's first match, `$1`.. being its groups.
fn rewritten(
    rw: &PathRewrite,
    path: &str,
    render: impl Fn(&Template, &[Option<String>]) -> String,
) -> Option<String> {
    if let Some((re, to)) = &rw.regex {
        let caps = re.captures(path)?;
        let groups: Vec<Option<String>> = caps
            .iter()
            .map(|m| m.map(|m| m.as_str().to_string()))
            .collect();
        let whole = caps.get(0).expect("group 0 is the match");
        let mut out = String::with_capacity(path.len() + 16);
        out.push_str(&path[..whole.start()]);
        out.push_str(&render(to, &groups));
        out.push_str(&path[whole.end()..]);
        return Some(if out.starts_with('/') {
            out
        } else {
            format!("/{out}")
        });
    }
    let mut rest = path;
    if let Some(p) = &rw.strip_prefix {
        if crate::matching::prefix_matches(p, path) {
            rest = &path[p.len()..];
        }
    }
    let rest = if rest.is_empty() { "/" } else { rest };
    let out = match &rw.add_prefix {
        Some(a) if rest == "/" && !a.is_empty() => a.clone(),
        Some(a) => format!("{a}{rest}"),
        None => rest.to_string(),
    };
    (out != path).then_some(out)
}

/// Replaces the request's path, keeping its query (and authority, if any). `false` (the
/// request untouched) when `path` is not an absolute path of URI characters (a `?` or `#`
/// from a field would start a query or fragment; `//` would read as an authority), holds a
/// dot-segment, or a refused target ([`super::target::normalize_path`]); the path is then
/// normalised like a client's.
fn set_path<B>(req: &mut Request<B>, path: &str) -> bool {
    if !path.starts_with('/') || path.starts_with("//") || path.contains(['?', '#']) {
        return false;
    }
    // A dot-segment made by a rewrite (`/files/$1` with `$1` = `../admin`) would take the
    // request out of the path the rule meant: refused, not resolved.
    let dots = path.split('/').any(|seg| {
        let seg = seg.to_ascii_lowercase().replace("%2e", ".");
        seg == "." || seg == ".."
    });
    if dots {
        return false;
    }
    let Ok(path) = super::target::normalize_path(path) else {
        return false;
    };
    let path = path.as_ref();
    let uri = req.uri();
    let pq = match uri.query() {
        Some(q) => format!("{path}?{q}"),
        None => path.to_string(),
    };
    let mut parts = uri.clone().into_parts();
    match pq.parse() {
        Ok(p) => parts.path_and_query = Some(p),
        Err(_) => return false,
    }
    match Uri::from_parts(parts) {
        Ok(u) => {
            *req.uri_mut() = u;
            true
        }
        Err(_) => false,
    }
}

fn answered(log: &mut Option<AccessLog>, status: StatusCode) -> Option<AccessLog> {
    let mut l = log.take();
    if let Some(l) = &mut l {
        l.status = status.as_u16();
    }
    l
}

/// A redirect answer: `status` with `Location: to` (RFC 9110 15.4).
fn redirect_to(to: &str, status: StatusCode, mut log: Option<AccessLog>) -> Response<ProxyBody> {
    let Ok(location) = HeaderValue::from_str(to) else {
        return error_response(ErrorKind::BadRequest, log);
    };
    let mut resp = Response::new(ProxyBody::full(
        bytes::Bytes::new(),
        answered(&mut log, status),
    ));
    *resp.status_mut() = status;
    resp.headers_mut().insert(LOCATION, location);
    resp
}

/// The way back: error pages (the route's, then `[server]`'s) for langur's own errors and,
/// with `intercept_errors`, for the server's; the response header rules; the request ID;
/// `Strict-Transport-Security` on TLS connections.
pub(super) fn finish(
    rt: &Runtime,
    post: Post<'_>,
    client: &ClientInfo,
    mut resp: Response<ProxyBody>,
) -> Response<ProxyBody> {
    let status = resp.status().as_u16();
    if status >= 400 {
        let own = resp.extensions().get::<OwnAnswer>().is_some();
        let intercept = post.rules.is_some_and(|r| r.intercept_errors);
        let page = post
            .rules
            .and_then(|r| r.error_pages.get(status))
            .or_else(|| rt.site.error_pages.get(status));
        if let Some(page) = page.filter(|_| own || intercept) {
            resp = with_page(resp, page);
        }
    }
    if let Some(rules) = post.rules {
        apply(
            &rules.response_headers.remove,
            post.response_headers,
            resp.headers_mut(),
        );
    }
    if let (Some(name), Some(id)) = (&rt.site.request_id, post.request_id) {
        resp.headers_mut().insert(name.clone(), id);
    }
    if let Some(hsts) = &rt.site.hsts {
        if client.scheme == "https" {
            resp.headers_mut()
                .entry(http::header::STRICT_TRANSPORT_SECURITY)
                .or_insert_with(|| hsts.clone());
        }
    }
    resp
}

/// The same status with the page as its body; fields about the old body are dropped, those
/// the client needs to act on kept (`Retry-After`, `WWW-Authenticate`, `Allow`, `Connection`,
/// `Cache-Status`).
fn with_page(mut resp: Response<ProxyBody>, page: &Page) -> Response<ProxyBody> {
    let log = resp.body_mut().take_log();
    let mut headers = HeaderMap::new();
    for name in [
        http::header::RETRY_AFTER,
        RATELIMIT_POLICY,
        RATELIMIT,
        http::header::WWW_AUTHENTICATE,
        http::header::ALLOW,
        http::header::CONNECTION,
        super::cached::CACHE_STATUS,
    ] {
        for v in resp.headers().get_all(&name) {
            headers.append(name.clone(), v.clone());
        }
    }
    headers.insert(CONTENT_TYPE, page.content_type.clone());
    let mut out = Response::new(ProxyBody::full(page.body.clone(), log));
    *out.status_mut() = resp.status();
    *out.headers_mut() = headers;
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::route::PathRewrite;

    fn rw(strip: Option<&str>, add: Option<&str>) -> PathRewrite {
        PathRewrite {
            strip_prefix: strip.map(Into::into),
            add_prefix: add.map(Into::into),
            regex: None,
        }
    }

    fn render(t: &Template, g: &[Option<String>]) -> String {
        struct G<'a>(&'a [Option<String>]);
        impl Vars for G<'_> {
            fn var(&self, v: &Var, out: &mut String) {
                if let Var::Group(n) = v {
                    out.push_str(self.0[usize::from(*n)].as_deref().unwrap_or(""));
                }
            }
        }
        t.render(&G(g))
    }

    #[test]
    fn prefixes_strip_and_add_by_segment() {
        let strip = rw(Some("/api"), None);
        assert_eq!(
            rewritten(&strip, "/api/users", render).as_deref(),
            Some("/users")
        );
        assert_eq!(rewritten(&strip, "/api", render).as_deref(), Some("/"));
        assert_eq!(rewritten(&strip, "/apix", render), None);
        let both = rw(Some("/api"), Some("/v2"));
        assert_eq!(
            rewritten(&both, "/api/users", render).as_deref(),
            Some("/v2/users")
        );
        assert_eq!(rewritten(&both, "/api", render).as_deref(), Some("/v2"));
        assert_eq!(
            rewritten(&rw(None, Some("/v2")), "/x", render).as_deref(),
            Some("/v2/x")
        );
    }

    #[test]
    fn regex_rewrites_use_their_groups() {
        let r = PathRewrite {
            regex: Some((
                regex::Regex::new("^/old/(.*)$").unwrap(),
                Template::parse("/new/$1").unwrap(),
            )),
            ..Default::default()
        };
        assert_eq!(
            rewritten(&r, "/old/a/b", render).as_deref(),
            Some("/new/a/b")
        );
        assert_eq!(rewritten(&r, "/other", render), None);
    }

    #[test]
    fn request_ids_are_checked() {
        assert!(well_formed_id(&HeaderValue::from_static(
            "0190a0b4-7c1e-7cc5-8d7a-2b3c4d5e6f70"
        )));
        assert!(!well_formed_id(&HeaderValue::from_static("a b")));
        assert!(!well_formed_id(&HeaderValue::from_static("")));
        assert!(!well_formed_id(
            &HeaderValue::from_str(&"a".repeat(129)).unwrap()
        ));
        assert!(!well_formed_id(&HeaderValue::from_static("x\"y")));
    }
}
