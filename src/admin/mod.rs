//! The admin listener: the dashboard, stats (JSON, HAProxy-style CSV, Prometheus), the health
//! log, and operator actions.
//!
//! Security: it listens on loopback unless told otherwise, and then a token is required at
//! start. With a token, every request must carry it, as `Authorization: Bearer TOKEN` or as
//! the password of HTTP Basic (so a browser can open the dashboard; the user name is ignored).
//! Without a token, only loopback needs protecting, from the browsers on the same machine: a
//! page of another site that makes its own name resolve to 127.0.0.1 (DNS rebinding) is
//! same-origin for the browser, so the `Host` it sends is what tells it apart. Such requests
//! are answered 403 unless `Host` names loopback (`localhost`, `*.localhost`, 127.0.0.0/8,
//! `[::1]`), the listener's own address, or one of `[admin] hosts`.
//! Mutations are POST (and, on a pool's server, PATCH and DELETE), and one whose `Origin` is
//! not this API's own origin (or one of `[admin] hosts`) is refused, so a page elsewhere cannot
//! drive a logged-in browser. GET never changes anything.

mod explain;
mod export;
mod servers;

use crate::backend::{Operator, Pool, Server};

use bytes::Bytes;
use http::header::{HeaderValue, AUTHORIZATION, CACHE_CONTROL, CONTENT_TYPE, WWW_AUTHENTICATE};
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use std::net::SocketAddr;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::watch;

const DASHBOARD: &str = include_str!("dashboard.html");
/// The largest POST body accepted.
const MAX_BODY: usize = 64 * 1024;

/// What the admin API needs of the running instance. The admin API sits above the pipeline
/// and below start-up (`server`), which implements this for its shared state; so the API
/// imports nothing from above it.
pub trait Instance: Send + Sync + std::fmt::Debug + 'static {
    /// The snapshot and the stopping flag, as connections read them.
    fn live(&self) -> &crate::proxy::Live;
    /// Responses by status class and their per-second history.
    fn traffic(&self) -> &Arc<crate::stats::Traffic>;
    /// Health transitions of every pool.
    fn events(&self) -> &crate::backend::events::EventLog;
    /// Who may use the admin API now.
    fn access(&self) -> Arc<Access>;
    /// This instance's name (`Via`, stats).
    fn name(&self) -> Arc<str>;
    /// Re-reads the config file; the summary, or why nothing changed.
    fn reload(self: Arc<Self>) -> anyhow::Result<String>;
    /// The certificates the TLS listeners serve: files, then `[acme]`'s.
    fn certificates(&self) -> Vec<crate::acme::CertificateInfo>;
    /// Changes a pool's servers at once, without a reload: `f` gets the pool and gives its
    /// new list (`None`: no change). The new pool, or `None` (no such pool, or no change).
    fn change_servers(
        &self,
        pool: &str,
        f: &mut dyn FnMut(&Pool) -> Option<Vec<Arc<Server>>>,
    ) -> Option<Arc<Pool>>;
}

/// The instance, as the handlers below take it.
type Shared = dyn Instance;

/// Who may use the admin API (`[admin] token` and `hosts`); swapped whole on reload.
#[derive(Debug, Clone, Default)]
pub struct Access {
    pub token: Option<String>,
    /// Lowercase host names (or IP addresses) accepted in `Host` and `Origin` besides loopback.
    pub hosts: Vec<String>,
}

impl Access {
    pub fn from_config(c: &crate::config::AdminSettings) -> Access {
        Access {
            token: c.token.clone().filter(|t| !t.is_empty()),
            hosts: c.hosts.clone(),
        }
    }

    /// Whether a `Host` (or an origin's host and port) names this API: a loopback name or
    /// address, the listener's own address, or a configured host.
    pub fn host_allowed(&self, authority: &str, local: SocketAddr) -> bool {
        let Some(host) = host_of(authority) else {
            return false;
        };
        if host == "localhost" || host.ends_with(".localhost") {
            return true;
        }
        if let Ok(ip) = host.parse::<std::net::IpAddr>() {
            let ip = match ip {
                std::net::IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, std::net::IpAddr::V4),
                v4 => v4,
            };
            if ip.is_loopback() || ip == local.ip() {
                return true;
            }
        }
        self.hosts.contains(&host)
    }
}

/// The host of a `host[:port]` authority, lowercased, without brackets or a final dot;
/// `None` when it is not one.
fn host_of(authority: &str) -> Option<String> {
    let a = authority.trim();
    let host = if let Some(rest) = a.strip_prefix('[') {
        let (inner, after) = rest.split_once(']')?;
        if !(after.is_empty() || after.strip_prefix(':').is_some_and(is_port)) {
            return None;
        }
        inner
    } else {
        match a.rsplit_once(':') {
            Some((h, port)) if is_port(port) => h,
            Some(_) => return None,
            None => a,
        }
    };
    let host = host.trim_end_matches('.').to_ascii_lowercase();
    let ok = !host.is_empty()
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b':'));
    ok.then_some(host)
}

fn is_port(p: &str) -> bool {
    !p.is_empty() && p.len() <= 5 && p.bytes().all(|b| b.is_ascii_digit())
}

/// Refuses to expose the admin API without a token.
pub fn check_exposure(addr: SocketAddr, token: Option<&str>) -> anyhow::Result<()> {
    if !addr.ip().is_loopback() && token.map_or(true, str::is_empty) {
        anyhow::bail!(
            "the admin listener {addr} is not on loopback: set [admin] token (every request must then carry it)"
        );
    }
    Ok(())
}

pub async fn serve(
    listener: TcpListener,
    shared: Arc<Shared>,
    mut shutdown: watch::Receiver<bool>,
) {
    let sampler = tokio::spawn(sample(shared.clone()));
    let Ok(local) = listener.local_addr() else {
        return;
    };
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((stream, _)) = accepted else { continue };
                let shared = shared.clone();
                tokio::spawn(async move {
                    let svc = service_fn(move |req| {
                        let shared = shared.clone();
                        async move { Ok::<_, std::convert::Infallible>(handle(&shared, local, req).await) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .header_read_timeout(Duration::from_secs(10))
                        .timer(hyper_util::rt::TokioTimer::new())
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
            _ = shutdown.changed() => break,
        }
    }
    sampler.abort();
}

/// Records one traffic sample a second for the dashboard's graphs.
async fn sample(shared: Arc<Shared>) {
    let reading = |s: &Shared| {
        let c = s.live().runtime.load().cache.stats();
        (s.traffic().totals(), c.hits, c.misses)
    };
    let mut prev = reading(&*shared);
    let mut at = tokio::time::Instant::now();
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    loop {
        tick.tick().await;
        let now = reading(&*shared);
        let secs = at.elapsed().as_secs_f64();
        at = tokio::time::Instant::now();
        shared.traffic().record(prev, now, secs);
        prev = now;
    }
}

type Resp = Response<Full<Bytes>>;

fn reply(status: StatusCode, content_type: &'static str, body: impl Into<Bytes>) -> Resp {
    let mut r = Response::new(Full::new(body.into()));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    r.headers_mut()
        .insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

fn json(status: StatusCode, v: &serde_json::Value) -> Resp {
    let mut body = serde_json::to_vec_pretty(v).unwrap_or_default();
    body.push(b'\n');
    reply(status, "application/json", body)
}

fn error(status: StatusCode, msg: impl Into<String>) -> Resp {
    json(status, &serde_json::json!({ "error": msg.into() }))
}

/// Whether the request carries the token (when one is configured).
fn authorized(access: &Access, req: &Request<Incoming>) -> bool {
    let Some(token) = access.token.as_deref() else {
        return true;
    };
    let Some(v) = req
        .headers()
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    // The scheme is case-insensitive (RFC 9110 11.1).
    let (scheme, credentials) = v.trim().split_once(' ').unwrap_or((v, ""));
    let given = if scheme.eq_ignore_ascii_case("bearer") {
        credentials.trim().to_string()
    } else if scheme.eq_ignore_ascii_case("basic") {
        let b = credentials;
        use base64::Engine;
        let Ok(raw) = base64::engine::general_purpose::STANDARD.decode(b.trim()) else {
            return false;
        };
        let text = String::from_utf8_lossy(&raw).to_string();
        text.split_once(':')
            .map(|(_, p)| p.to_string())
            .unwrap_or_default()
    } else {
        return false;
    };
    constant_time_eq(given.as_bytes(), token.as_bytes())
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The authorities a request names: its `Host` fields and the authority of an absolute-form
/// target. Browsers always send `Host`; a request without any names nothing to check.
fn authorities(req: &Request<Incoming>) -> Vec<&str> {
    let mut out: Vec<&str> = req
        .headers()
        .get_all(http::header::HOST)
        .iter()
        .map(|v| v.to_str().unwrap_or("\u{0}"))
        .collect();
    if let Some(a) = req.uri().authority() {
        out.push(a.as_str());
    }
    out
}

/// A state-changing request from a page of another origin is refused: its `Origin`, when
/// present, must be this API's own (same scheme-less authority as `Host`) or name one of
/// `[admin] hosts`, and, without a token, also pass the `Host` rule. `Origin: null` is refused.
fn origin_allowed(access: &Access, local: SocketAddr, req: &Request<Incoming>) -> bool {
    let mut origins = req.headers().get_all(http::header::ORIGIN).iter();
    let Some(origin) = origins.next() else {
        return true;
    };
    if origins.next().is_some() {
        return false;
    }
    let Some(authority) = origin
        .to_str()
        .ok()
        .and_then(|o| o.split_once("://"))
        .map(|(_, rest)| rest.trim_end_matches('/'))
    else {
        return false;
    };
    if authority.contains(['/', '@', '?', '#']) {
        return false;
    }
    let same = req
        .headers()
        .get(http::header::HOST)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|h| h.eq_ignore_ascii_case(authority));
    let named = host_of(authority).is_some_and(|h| access.hosts.contains(&h));
    let reachable = access.token.is_some() || access.host_allowed(authority, local);
    (same || named) && reachable
}

/// Answers one admin request: the access rules first, then the path routed to a mutation
/// (POST only) or to a read-only endpoint (GET or HEAD).
async fn handle(shared: &Arc<Shared>, local: SocketAddr, req: Request<Incoming>) -> Resp {
    let access = shared.access();
    if let Some(refusal) = refuse(&access, local, &req) {
        return refusal;
    }
    let path = req.uri().path().to_string();
    let decoded = decode_segments(&path);
    let segments: Vec<&str> = decoded.iter().map(String::as_str).collect();
    if is_mutation(&segments) {
        return post(shared, &access, local, req, &segments).await;
    }
    if !is_read(&segments) {
        return error(StatusCode::NOT_FOUND, format!("no such endpoint: {path}"));
    }
    if !matches!(*req.method(), Method::GET | Method::HEAD) {
        return not_allowed("read-only endpoint: use GET", "GET, HEAD");
    }
    if segments == ["api", "cluster"] {
        return cluster(shared).await;
    }
    read(shared, &segments, &req, &path)
}

/// `/api/cluster`: the fleet as Redis lists it (see [`crate::cluster::fleet`]); 404 without
/// `[cluster]`.
async fn cluster(shared: &Arc<Shared>) -> Resp {
    let cluster = shared.live().runtime.load().cluster.clone();
    match cluster {
        Some(c) => json(StatusCode::OK, &c.fleet().await),
        None => error(StatusCode::NOT_FOUND, "no [cluster] in the configuration"),
    }
}

/// The refusal of a request that may not use the API: 403 for a `Host` that does not name it
/// (without a token: DNS rebinding), 401 with a Basic challenge for a missing or wrong token.
/// `None`: the request may go on.
fn refuse(access: &Access, local: SocketAddr, req: &Request<Incoming>) -> Option<Resp> {
    if access.token.is_none() {
        if let Some(bad) = authorities(req)
            .into_iter()
            .find(|a| !access.host_allowed(a, local))
        {
            return Some(error(
                StatusCode::FORBIDDEN,
                format!(
                    "Host `{}` is not a name of this admin API: use localhost or {local}, add the name to [admin] hosts, or set [admin] token",
                    bad.escape_debug()
                ),
            ));
        }
    }
    if !authorized(access, req) {
        let mut r = error(StatusCode::UNAUTHORIZED, "this admin API needs its token");
        r.headers_mut().insert(
            WWW_AUTHENTICATE,
            HeaderValue::from_static("Basic realm=\"langur admin\", charset=\"UTF-8\""),
        );
        return Some(r);
    }
    None
}

/// The path's segments between slashes (leading and trailing ones ignored), each
/// percent-decoded (invalid UTF-8 replaced); `/` is one empty segment.
fn decode_segments(path: &str) -> Vec<String> {
    path.trim_matches('/')
        .split('/')
        .map(|s| {
            percent_encoding::percent_decode_str(s)
                .decode_utf8_lossy()
                .to_string()
        })
        .collect()
}

/// Whether the path is one of the endpoints that change something (POST only).
fn is_mutation(segments: &[&str]) -> bool {
    matches!(
        segments,
        ["api", "servers", _, _, "state" | "weight"]
            | ["api", "pools", _, "servers"]
            | ["api", "pools", _, "servers", _]
            | ["api", "cache", "purge"]
            | ["api", "reload"]
    )
}

/// Whether the path is one of the read-only endpoints (GET and HEAD only). Any other path that
/// is not a mutation is 404 whatever the method, so a wrong method on a wrong path does not
/// suggest the path exists.
fn is_read(segments: &[&str]) -> bool {
    matches!(
        segments,
        [""] | ["healthz"]
            | [
                "api",
                "stats" | "history" | "events" | "certificates" | "explain" | "cluster"
            ]
            | ["stats.csv"]
            | ["metrics"]
    )
}

/// 405 with the methods the endpoint takes in `Allow`.
fn not_allowed(msg: &'static str, allow: &'static str) -> Resp {
    let mut r = error(StatusCode::METHOD_NOT_ALLOWED, msg);
    r.headers_mut()
        .insert(http::header::ALLOW, HeaderValue::from_static(allow));
    r
}

/// A mutation: POST (PATCH or DELETE on a pool's server), from this API's own origin (see
/// [`origin_allowed`]), with a body of at most [`MAX_BODY`] bytes (else 413).
async fn post(
    shared: &Arc<Shared>,
    access: &Access,
    local: SocketAddr,
    req: Request<Incoming>,
    segments: &[&str],
) -> Resp {
    let method = req.method().clone();
    if let ["api", "pools", _, "servers", _] = segments {
        if method != Method::PATCH && method != Method::DELETE {
            return not_allowed("use PATCH or DELETE", "PATCH, DELETE");
        }
    } else if method != Method::POST {
        return not_allowed("use POST", "POST");
    }
    if !origin_allowed(access, local, &req) {
        return error(StatusCode::FORBIDDEN, "cross-origin request refused");
    }
    let body = match Limited::new(req.into_body(), MAX_BODY).collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => return error(StatusCode::PAYLOAD_TOO_LARGE, "body too large"),
    };
    match (segments, method) {
        (["api", "pools", pool, "servers"], _) => servers::add(&**shared, pool, &body),
        (["api", "pools", pool, "servers", name], Method::DELETE) => {
            servers::remove(shared, pool, name)
        }
        (["api", "pools", pool, "servers", name], _) => {
            servers::patch(&**shared, pool, name, &body)
        }
        _ => mutate(shared, segments, &body),
    }
}

/// The read-only endpoints: the dashboard, liveness (503 while draining), stats as JSON and
/// CSV, the traffic history, the health log, and the metrics in the format `Accept` prefers.
fn read(shared: &Arc<Shared>, segments: &[&str], req: &Request<Incoming>, path: &str) -> Resp {
    match segments {
        [""] => reply(StatusCode::OK, "text/html; charset=utf-8", DASHBOARD),
        ["healthz"] => {
            if shared.live().stopping.load(Relaxed) {
                reply(StatusCode::SERVICE_UNAVAILABLE, "text/plain", "draining\n")
            } else {
                reply(StatusCode::OK, "text/plain", "ok\n")
            }
        }
        ["api", "stats"] => json(StatusCode::OK, &export::stats_json(&**shared)),
        ["api", "history"] => json(
            StatusCode::OK,
            &serde_json::to_value(shared.traffic().history()).unwrap_or_default(),
        ),
        ["api", "events"] => json(StatusCode::OK, &export::events_json(&**shared)),
        ["api", "certificates"] => json(StatusCode::OK, &export::certificates_json(&**shared)),
        ["api", "explain"] => explain::explain(&**shared, req.uri().query()),
        ["stats.csv"] => reply(
            StatusCode::OK,
            "text/csv; charset=utf-8",
            export::csv(&**shared),
        ),
        ["metrics"] => {
            let format = export::Format::negotiate(
                req.headers()
                    .get(http::header::ACCEPT)
                    .and_then(|v| v.to_str().ok()),
            );
            let mut r = reply(
                StatusCode::OK,
                format.content_type(),
                export::prometheus(shared, format),
            );
            r.headers_mut()
                .insert(http::header::VARY, HeaderValue::from_static("accept"));
            r
        }
        _ => error(StatusCode::NOT_FOUND, format!("no such endpoint: {path}")),
    }
}

fn find(shared: &Shared, pool: &str, server: &str) -> Option<(Arc<Pool>, usize)> {
    let rt = shared.live().runtime.load();
    let p = rt.pools.iter().find(|p| &*p.name == pool)?;
    let i = p
        .servers
        .iter()
        .position(|s: &Arc<Server>| &*s.name == server)
        .or_else(|| {
            p.servers
                .iter()
                .position(|s| &*s.address == server || s.addr.to_string() == server)
        })?;
    Some((p.clone(), i))
}

/// A JSON object body, or a bare word (`drain`, `5`) for curl users.
fn field(body: &[u8], key: &str) -> Option<serde_json::Value> {
    let text = std::str::from_utf8(body).ok()?.trim();
    if text.starts_with('{') {
        let v: serde_json::Value = serde_json::from_str(text).ok()?;
        return v.get(key).cloned();
    }
    if text.is_empty() {
        return None;
    }
    Some(match text.parse::<u64>() {
        Ok(n) => serde_json::Value::from(n),
        Err(_) => serde_json::Value::from(text),
    })
}

/// The mutations, by path: a server's operator state or weight, a cache purge, a reload.
fn mutate(shared: &Arc<Shared>, segments: &[&str], body: &[u8]) -> Resp {
    match segments {
        ["api", "servers", pool, server, what] => {
            let Some((p, i)) = find(&**shared, pool, server) else {
                return error(
                    StatusCode::NOT_FOUND,
                    format!("no server {server} in pool {pool}"),
                );
            };
            if *what == "state" {
                set_state(&p, i, body)
            } else {
                set_weight(&p, i, body)
            }
        }
        ["api", "cache", "purge"] => purge(shared, body),
        ["api", "reload"] => reload(shared),
        _ => error(StatusCode::NOT_FOUND, "no such endpoint"),
    }
}

/// Sets server `i`'s operator state from the body's `state` (`ready`, `drain` or `maint`;
/// else 400). Entering maintenance ends the server's sessions.
fn set_state(p: &Pool, i: usize, body: &[u8]) -> Resp {
    let s = &p.servers[i];
    let state = field(body, "state");
    let o = match state.as_ref().and_then(|v| v.as_str()) {
        Some("ready") => Operator::Ready,
        Some("drain") => Operator::Drain,
        Some("maint") => Operator::Maint,
        _ => {
            return error(
                StatusCode::BAD_REQUEST,
                "state must be \"ready\", \"drain\" or \"maint\"",
            )
        }
    };
    let before = s.operator();
    p.set_operator(i, o);
    if o == Operator::Maint && before != Operator::Maint {
        // Maintenance ends what the server is doing, like HAProxy's MAINT.
        s.kill_sessions();
    }
    tracing::warn!(pool = %p.name, server = %s.name, from = before.as_str(), to = o.as_str(), "operator state changed");
    json(
        StatusCode::OK,
        &serde_json::json!({"pool": &*p.name, "server": &*s.name, "state": o.as_str()}),
    )
}

/// Sets server `i`'s balancing weight from the body's `weight` (an integer from 0 to 1000, the range of
/// the file's weights and `PATCH /api/pools/...`; else 400).
fn set_weight(p: &Pool, i: usize, body: &[u8]) -> Resp {
    let s = &p.servers[i];
    let Some(w) = field(body, "weight")
        .and_then(|v| v.as_u64())
        .filter(|w| *w <= 1000)
    else {
        return error(
            StatusCode::BAD_REQUEST,
            "weight must be an integer from 0 to 1000",
        );
    };
    p.set_weight(i, w as u32);
    tracing::warn!(pool = %p.name, server = %s.name, weight = w, "weight changed");
    json(
        StatusCode::OK,
        &serde_json::json!({"pool": &*p.name, "server": &*s.name, "weight": w}),
    )
}

/// Purges the cache: `{"url": ...}` one URL's entries, `{"prefix": ...}` those under a prefix,
/// `{}` (or no body) everything; anything else is a 400. Answers how many entries went.
fn purge(shared: &Arc<Shared>, body: &[u8]) -> Resp {
    let rt = shared.live().runtime.load();
    let cache = &rt.cache;
    let fleet = |p| cache.publish_purge(rt.cluster.as_ref(), p);
    let text = std::str::from_utf8(body).unwrap_or("").trim();
    let v: serde_json::Value = if text.is_empty() {
        serde_json::json!({})
    } else {
        match serde_json::from_str(text) {
            Ok(v) => v,
            Err(e) => return error(StatusCode::BAD_REQUEST, format!("bad JSON: {e}")),
        }
    };
    if let Some(k) = v
        .as_object()
        .and_then(|o| o.keys().find(|k| *k != "url" && *k != "prefix"))
    {
        return error(
            StatusCode::BAD_REQUEST,
            format!("unknown key `{k}`: send {{\"url\": ...}}, {{\"prefix\": ...}} or {{}}"),
        );
    }
    let purged = if let Some(url) = v.get("url").and_then(|u| u.as_str()) {
        match purge_key(url) {
            Ok(key) => {
                fleet(crate::cluster::Purge::Url(key.clone()));
                cache.purge_url(&key)
            }
            Err(e) => return error(StatusCode::BAD_REQUEST, e),
        }
    } else if let Some(prefix) = v.get("prefix").and_then(|u| u.as_str()) {
        match purge_key(prefix) {
            Ok(key) => {
                fleet(crate::cluster::Purge::Prefix(key.clone()));
                cache.purge_prefix(&key)
            }
            Err(e) => return error(StatusCode::BAD_REQUEST, e),
        }
    } else if v.as_object().is_some_and(|o| o.is_empty()) {
        fleet(crate::cluster::Purge::All);
        cache.purge_all()
    } else {
        return error(
            StatusCode::BAD_REQUEST,
            "send {\"url\": ...}, {\"prefix\": ...} or {} for everything",
        );
    };
    json(StatusCode::OK, &serde_json::json!({ "purged": purged }))
}

/// Re-reads the config file: 200 with the summary, or 422 with the errors, a line each.
fn reload(shared: &Arc<Shared>) -> Resp {
    match shared.clone().reload() {
        Ok(summary) => json(
            StatusCode::OK,
            &serde_json::json!({ "reloaded": true, "summary": summary }),
        ),
        Err(e) => json(
            StatusCode::UNPROCESSABLE_ENTITY,
            &serde_json::json!({ "reloaded": false, "errors": e.to_string().lines().collect::<Vec<_>>() }),
        ),
    }
}

/// A purge target in the form the cache keys requests: a path (`/a/b?q`, any host and
/// scheme) normalised as request paths are, or an absolute `http`/`https` URL with its scheme
/// and host lower-cased and its path normalised. Errors: a target that is neither.
fn purge_key(target: &str) -> Result<String, String> {
    let bad = || format!("`{target}` is not a path or an http(s) URL");
    let uri: http::Uri = target.parse().map_err(|_| bad())?;
    let uri = crate::proxy::target::normalize_uri(&uri)
        .map_err(|_| bad())?
        .unwrap_or(uri);
    let pq = uri.path_and_query().map_or("/", |p| p.as_str());
    match (uri.scheme_str(), uri.authority()) {
        (None, None) if target.starts_with('/') => Ok(pq.to_string()),
        (Some(scheme), Some(a))
            if scheme.eq_ignore_ascii_case("http") || scheme.eq_ignore_ascii_case("https") =>
        {
            Ok(crate::cache::primary_key(
                &scheme.to_ascii_lowercase(),
                a.as_str(),
                pq,
            ))
        }
        _ => Err(bad()),
    }
}

#[cfg(test)]
mod tests {
    use super::purge_key;

    #[test]
    fn purge_targets_are_keyed_as_requests_are() {
        assert_eq!(purge_key("/max60/%7Eu").unwrap(), "/max60/~u");
        assert_eq!(purge_key("/max60/x/../v/w?q=1").unwrap(), "/max60/v/w?q=1");
        assert_eq!(
            purge_key("HTTP://A.Example:8080/max60/x/../t").unwrap(),
            "http://a.example:8080/max60/t"
        );
        assert_eq!(
            purge_key("https://a.example").unwrap(),
            "https://a.example/"
        );
        assert!(purge_key("ftp://a.example/x").is_err());
        assert!(purge_key("max60/relative").is_err());
        assert!(purge_key("/a/..;/b").is_err());
    }
}
