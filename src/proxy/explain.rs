//! `langur explain` and the admin API's `/api/explain`: what the pipeline would do with one
//! request, phase by phase, told by the same functions the request path runs: the strict
//! checks and the target phase, the client's identity behind trusted proxies
//! ([`super::behind_proxies`]), the `[server]` rules, the router (and
//! [`crate::router::Router::miss`] for the routes before the match), the route's access rules,
//! rewrite and header rules ([`rules`]), the head as it goes upstream ([`upstream_parts`]), the
//! cache key, bypass and storability ([`cached::key_of`], [`cached::pass_reason`],
//! [`cached::judge`]) and the pool's view of its servers ([`PoolView::refusal`]).
//!
//! Nothing is sent and nothing is counted: no server is connected to, no rate limit is
//! charged, no password is verified, no cache entry is made.

mod text;

use super::body::{ClientIn, ProxyBody};
use super::{cached, rules, upstream_parts, ClientInfo, RouteRt, Runtime};
use crate::backend::{Pool, PoolView};
use crate::balancer::Tried;
use crate::session::Origin;
use http::header::{HeaderMap, HeaderName, HeaderValue, HOST, LOCATION};
use http::{Method, Request, Response, StatusCode, Uri};
use serde::Serialize;
use std::net::SocketAddr;
use std::sync::Arc;

pub use text::ask_from;

/// One request to explain, and a response to judge for the cache.
#[derive(Debug, Clone)]
pub struct Ask {
    pub method: Method,
    /// The target in origin form (`/api/x?q`).
    pub target: Uri,
    /// The request's fields, `Host` included (from the URL's authority when not given).
    pub headers: HeaderMap,
    /// `http` or `https`: the scheme of the listener it arrives on.
    pub scheme: &'static str,
    /// The socket's peer.
    pub peer: SocketAddr,
    /// The source a PROXY header announced on the connection, if it sent one.
    pub proxy_source: Option<SocketAddr>,
    /// A sample response's status and fields, for the cache's storability.
    pub status: StatusCode,
    pub response_headers: HeaderMap,
}

/// What the pipeline would do, phase by phase (JSON for `/api/explain` and `--json`; text by
/// its `Display`).
#[derive(Debug, Default, Serialize)]
pub struct Explanation {
    /// The request line as the phases read it (after the target phase's normalisation).
    pub request: String,
    pub client: Client,
    /// Routes in file order up to the one that matched (all of them when none does).
    pub routes_tried: Vec<RouteTry>,
    /// The route that serves the request: its number, from 1 in file order (as the access
    /// log, the metrics and `/api/stats` number routes).
    pub route: Option<usize>,
    /// Later routes that match the request too (shadowed by the chosen one).
    pub also_matching: Vec<RouteTry>,
    /// `[server]` and route rules, in the order they apply.
    pub rules: Vec<String>,
    /// What the client gets, or where the request goes.
    pub answer: String,
    /// The request as sent to a server: target and fields.
    pub upstream: Option<Upstream>,
    pub cache: Option<CacheReport>,
    pub pool: Option<PoolReport>,
}

/// Who the client is, and how that was worked out.
#[derive(Debug, Default, Serialize)]
pub struct Client {
    /// The address every decision sees (access rules, `source`, rate limits, logs).
    pub address: String,
    pub peer: String,
    pub scheme: &'static str,
    pub derived: String,
    /// The previous hop is in `trusted_proxies` (its forwarding fields are kept).
    pub trusted: bool,
}

/// One route as the router tried it.
#[derive(Debug, Serialize)]
pub struct RouteTry {
    /// The route's number, from 1 in file order.
    pub route: usize,
    pub line: u32,
    /// The pool it sends to, or `root` for files.
    pub target: String,
    /// The matcher that failed (`host`, `match`, `path_prefix`, `headers.NAME`, ...);
    /// `None`: the route matches.
    pub miss: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct Upstream {
    pub target: String,
    pub headers: Vec<(String, String)>,
}

/// The cache phase's view of the request and of the sample response.
#[derive(Debug, Default, Serialize)]
pub struct CacheReport {
    pub key: String,
    /// The request does not use the cache (its `Cache-Status`), if so.
    pub bypass: Option<String>,
    /// An entry for this request is stored now: `fresh` or `stale`.
    pub stored_now: Option<&'static str>,
    /// The sample response (its status and `--response-header` fields) would be stored.
    pub storable: bool,
    /// Why not (`Cache-Status` `detail`: `set-cookie`, `private`, `no-freshness`, ...), or
    /// for how long it stays fresh.
    pub why: String,
}

#[derive(Debug, Default, Serialize)]
pub struct PoolReport {
    pub name: String,
    pub balance: String,
    pub servers: Vec<ServerReport>,
}

#[derive(Debug, Serialize)]
pub struct ServerReport {
    pub name: String,
    /// `alive`, `maint`, `drain`, `down`, `down-retry`, `overloaded`.
    pub state: &'static str,
    pub usable: bool,
    pub why_not: Option<String>,
}

/// Explains `ask` against the snapshot `rt` (its servers' state as it is now).
pub fn explain(rt: &Runtime, ask: &Ask) -> Explanation {
    let mut out = Explanation::default();
    let mut req = Request::new(ClientIn::Empty);
    *req.method_mut() = ask.method.clone();
    *req.uri_mut() = ask.target.clone();
    *req.headers_mut() = ask.headers.clone();
    let client = client_of(rt, ask, &mut out.client);
    if let Err(answer) = front(rt, &mut req, &client, &mut out) {
        out.answer = answer;
        return out;
    }
    let Some(route) = routes(rt, &req, &client, &mut out) else {
        out.answer = answer_of(crate::error::ErrorKind::NoRoute);
        return out;
    };
    if let Some(r) = &route.rules {
        if let Err(answer) = route_rules(rt, route, r, &mut req, &client, &mut out) {
            out.answer = answer;
            return out;
        }
    }
    let Some(index) = route.pool else {
        out.answer = match &route.root {
            Some(root) => format!("files from {}", root.path().display()),
            None => answer_of(crate::error::ErrorKind::NoRoute),
        };
        return out;
    };
    let pool = &rt.pools[index];
    super::default_host(&mut req, rt.pool_hosts[index].as_ref());
    if let Some(p) = super::upgrade_protocol(&req) {
        out.rules.push(format!(
            "upgrade to {}: tunnelled after a 101",
            p.to_str().unwrap_or("?")
        ));
    }
    let (mut parts, _) = req.into_parts();
    upstream_parts(rt, &mut parts, &client);
    if route.cache {
        out.cache = Some(cache(rt, route, &parts, &client, ask));
    }
    out.answer = format!("forwarded to pool `{}`", pool.name);
    out.upstream = Some(Upstream {
        target: format!("{} {}", parts.method, parts.uri),
        headers: fields(&parts.headers),
    });
    out.pool = Some(pool_report(pool));
    out
}

/// The client as the request path sees it: the PROXY header's source or the socket's peer,
/// then the address a trusted proxy's forwarding field names ([`super::behind_proxies`]).
fn client_of(rt: &Runtime, ask: &Ask, out: &mut Client) -> ClientInfo {
    let origin = ask.proxy_source.map(|s| {
        Arc::new(Origin {
            source: Some(s),
            ..Default::default()
        })
    });
    let mut conn = ClientInfo::connected(Some(ask.peer), origin);
    conn.scheme = ask.scheme;
    let hop = conn.addr.ip();
    let mut derived = match ask.proxy_source {
        Some(s) => format!("a PROXY header from {} announced {s}", ask.peer.ip()),
        None => format!("the socket's peer {}", ask.peer.ip()),
    };
    if ask.proxy_source.is_some() {
        let refused = match &rt.clients.proxy_protocol {
            None => Some("no listener takes PROXY headers"),
            Some(p) if !p.from.contains(ask.peer.ip()) => {
                Some("the peer is not in proxy_protocol_from")
            }
            Some(_) => None,
        };
        if let Some(why) = refused {
            derived.push_str(&format!(" (such a connection is refused: {why})"));
        }
    }
    let client = match super::behind_proxies(rt, &conn, &ask.headers) {
        Some(c) => {
            let field = rt.clients.real_ip_from.field();
            match c.addr.ip() == hop {
                true => derived.push_str(&format!(
                    "; {hop} is in trusted_proxies and {field} names no client behind it"
                )),
                false => derived.push_str(&format!(
                    "; {hop} is in trusted_proxies, and {field} read right to left names {} \
                     as the first address not trusted",
                    c.addr.ip()
                )),
            }
            *c
        }
        None if !rt.clients.trusted.is_empty() => {
            derived.push_str(&format!(
                "; {hop} is not in trusted_proxies: its forwarding fields are not believed"
            ));
            conn
        }
        None => conn,
    };
    *out = Client {
        address: client.addr.ip().to_string(),
        peer: ask.peer.to_string(),
        scheme: client.scheme,
        derived,
        trusted: client.trusted,
    };
    client
}

/// The phases before routing: strict checks, target, loop check, `[server]` rules. `Err`: the
/// answer they give.
fn front(
    rt: &Runtime,
    req: &mut Request<ClientIn>,
    client: &ClientInfo,
    out: &mut Explanation,
) -> Result<(), String> {
    // The connection refuses a head over `max_header_size` before any phase sees it.
    if head_size(req) > rt.limits.max_header_size {
        return Err(answer_of(crate::error::ErrorKind::HeadersTooLarge));
    }
    super::check_phase(rt, req).map_err(answer_of)?;
    if let Some(tracing) = &rt.tracing {
        // The trace phase as the request path runs it: the server gets this hop's span.
        let how = match tracing.apply(req.headers_mut()).parent {
            Some(_) => "continued",
            None => "started (no valid traceparent came)",
        };
        let sent = req.headers().get("traceparent");
        let sent = sent.and_then(|v| v.to_str().ok()).unwrap_or("");
        out.rules.push(format!(
            "[tracing] trace {how}: traceparent {sent} (a new span ID each request)"
        ));
    }
    let host = crate::matching::request_host(req.uri(), req.headers());
    out.request = match host {
        Some(h) => format!("{} {}://{h}{}", req.method(), client.scheme, req.uri()),
        None => format!("{} {}", req.method(), req.uri()),
    };
    if super::headers::via_contains(req.headers(), &rt.via_token) {
        return Err(answer_of(crate::error::ErrorKind::Loop));
    }
    if rt.site_active {
        let mut post = rules::Post::default();
        if let Some(r) = rules::site_request(rt, req, client, &mut post, &mut None) {
            return Err(answer_from(&r));
        }
        if let (Some(name), Some(id)) = (&rt.site.request_id, &post.request_id) {
            let id = id.to_str().unwrap_or("");
            out.rules
                .push(format!("[server] request_id: {name}: {id} (kept or made)"));
        }
    }
    Ok(())
}

/// The size of the head as an HTTP/1.1 client sends it: the request line, each field's line,
/// and the empty line.
fn head_size(req: &Request<ClientIn>) -> usize {
    let line = req.method().as_str().len() + req.uri().to_string().len() + 12;
    let fields: usize = req
        .headers()
        .iter()
        .map(|(n, v)| n.as_str().len() + v.len() + 4)
        .sum();
    line + fields + 2
}

/// The route phase: the router's choice, the routes tried before it and why each missed, and
/// the later routes that match too.
fn routes<'r>(
    rt: &'r Runtime,
    req: &Request<ClientIn>,
    client: &ClientInfo,
    out: &mut Explanation,
) -> Option<&'r RouteRt> {
    let found = super::route_phase(rt, req, client, &mut None);
    let chosen = found.map(|(_, i)| i);
    super::with_input(req, client, |input| {
        for (i, route) in rt.routes.iter().enumerate() {
            let miss = rt.router.miss(i, input).map(|m| m.to_string());
            let t = RouteTry {
                route: i + 1,
                line: route.line,
                target: route_target(rt, route),
                miss,
            };
            match chosen {
                Some(c) if i > c => {
                    if t.miss.is_none() {
                        out.also_matching.push(t);
                    }
                }
                _ => out.routes_tried.push(t),
            }
        }
    });
    out.route = chosen.map(|c| c + 1);
    chosen.map(|i| &rt.routes[i])
}

fn route_target(rt: &Runtime, route: &RouteRt) -> String {
    match route.pool {
        Some(p) => rt.pools[p].name.to_string(),
        None => "root".into(),
    }
}

/// The route's rules: the rate limit (named, not charged), access, basic auth (not verified),
/// then redirect or respond, the rewrite and the request header rules as `after_auth` applies
/// them to the request. `Err`: the answer they give.
fn route_rules(
    rt: &Runtime,
    route: &RouteRt,
    r: &crate::config::route::RouteRules,
    req: &mut Request<ClientIn>,
    client: &ClientInfo,
    out: &mut Explanation,
) -> Result<(), String> {
    let groups = match r.uses_groups {
        true => rules::groups(rt, route.index as usize, req.uri().path()),
        false => Vec::new(),
    };
    let mut post = rules::Post::default();
    if let Some(limiter) = &route.limiter {
        let l = limiter.config();
        out.rules.push(format!(
            "rate_limit: {} per {:?}, burst {}, by {:?} (not counted here)",
            l.count, l.period, l.burst, l.key
        ));
    }
    match rules::permission(r, req, client, &mut None) {
        rules::Verdict::Go => {}
        rules::Verdict::Answer(resp) => return Err(answer_from(&resp)),
        rules::Verdict::Verify(_, user, _) => out.rules.push(format!(
            "basic_auth: the password of `{user}` would be checked (not here)"
        )),
    }
    if !r.access.is_empty() {
        out.rules.push(format!(
            "allow/deny: {} may use the route",
            client.addr.ip()
        ));
    }
    let before = (req.uri().clone(), req.headers().clone());
    if let Some(resp) = rules::after_auth(route, r, &groups, req, client, &mut post, &mut None) {
        return Err(answer_from(&resp));
    }
    if req.uri().path() != before.0.path() {
        out.rules.push(format!(
            "rewrite: {} -> {}",
            before.0.path(),
            req.uri().path()
        ));
    }
    out.rules.extend(header_changes(&before.1, req.headers()));
    Ok(())
}

/// The request header rules' effect, field by field: `set`, `add` and `remove` as seen.
fn header_changes(before: &HeaderMap, after: &HeaderMap) -> Vec<String> {
    let mut names: Vec<&HeaderName> = before.keys().chain(after.keys()).collect();
    names.sort_by_key(|n| n.as_str());
    names.dedup();
    let values = |h: &HeaderMap, n: &HeaderName| -> Vec<String> {
        h.get_all(n)
            .iter()
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
            .collect()
    };
    let mut out = Vec::new();
    for n in names {
        let (b, a) = (values(before, n), values(after, n));
        match (b.is_empty(), a.is_empty()) {
            _ if a == b => {}
            (false, true) => out.push(format!("request header removed: {n}")),
            (true, false) => out.push(format!("request header set: {n}: {}", a.join(", "))),
            _ => out.push(format!(
                "request header changed: {n}: {} -> {}",
                b.join(", "),
                a.join(", ")
            )),
        }
    }
    out
}

/// The cache phase: the key, a bypass, what is stored now, and whether the sample response
/// would be stored ([`cached::judge`], the fetch's own decision).
fn cache(
    rt: &Runtime,
    route: &RouteRt,
    parts: &http::request::Parts,
    client: &ClientInfo,
    ask: &Ask,
) -> CacheReport {
    let rules = route.rules.as_deref();
    let key = cached::key_of(parts, client.scheme, rules);
    let bypass = cached::pass_reason(&rt.cache.rules, parts, false).map(|(status, _)| status);
    let stored_now = rt
        .cache
        .lookup(&key, &parts.headers)
        .filter(|(_, o)| o.route == route.index)
        .map(|(_, o)| match o.fresh(crate::clock::now_ms()) {
            true => "fresh",
            false => "stale",
        });
    let on = cached::Storing {
        cache: &rt.cache,
        rules,
        grace: route.grace,
        negotiated: route.encoding.compress.is_some(),
        route: route.index,
        method: &parts.method,
        req_headers: &parts.headers,
    };
    let now_ms = crate::cache::policy::unix_now_ms();
    let judged = cached::judge(&on, ask.status, &ask.response_headers, now_ms);
    let (storable, why) = match judged {
        Ok(o) => (
            true,
            format!("stored, fresh for {} s", o.ttl(o.stored_ms).max(0)),
        ),
        Err(n) => (false, n.as_str().to_string()),
    };
    CacheReport {
        key,
        bypass,
        stored_now,
        storable,
        why,
    }
}

/// The pool's servers as a pick would see them now ([`PoolView::refusal`]).
fn pool_report(pool: &Pool) -> PoolReport {
    let tried = Tried::default();
    let view = PoolView::new(pool, &tried);
    let servers = pool
        .servers
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let refusal = view.refusal(i);
            let state = s.state_word(pool.ha);
            ServerReport {
                name: s.name.to_string(),
                state,
                usable: refusal.is_none(),
                why_not: refusal.map(|r| match r {
                    crate::backend::Refusal::NotAlive => state.to_string(),
                    r => r.as_str().to_string(),
                }),
            }
        })
        .collect();
    PoolReport {
        name: pool.name.to_string(),
        balance: pool.balance.name(),
        servers,
    }
}

fn fields(h: &HeaderMap) -> Vec<(String, String)> {
    h.iter()
        .map(|(n, v)| {
            let v = String::from_utf8_lossy(v.as_bytes()).into_owned();
            (n.to_string(), v)
        })
        .collect()
}

/// An error answer in words: status, reason.
fn answer_of(kind: crate::error::ErrorKind) -> String {
    format!("{} ({})", kind.status(), kind.reason())
}

/// An answer made by a rule: its status, and where a redirect sends the client.
fn answer_from(resp: &Response<ProxyBody>) -> String {
    let status = resp.status();
    match resp.headers().get(LOCATION) {
        Some(l) => format!("{status} to {}", l.to_str().unwrap_or("?")),
        None => format!("{status}"),
    }
}

/// The `Host` a request built from a URL carries.
fn host_value(authority: &str) -> Result<HeaderValue, String> {
    HeaderValue::from_str(authority).map_err(|_| format!("bad host `{authority}`"))
}

/// Adds `Host` from the URL's authority when the fields have none.
fn ensure_host(headers: &mut HeaderMap, authority: Option<&str>) -> Result<(), String> {
    if let (false, Some(a)) = (headers.contains_key(HOST), authority) {
        headers.insert(HOST, host_value(a)?);
    }
    Ok(())
}
