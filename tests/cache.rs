//! The response cache through real sockets: an origin whose answers are steered by the query
//! string, langur in front with `cache = true`.

mod common;

use bytes::Bytes;
use common::*;
use http::{Method, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::net::TcpListener;

/// An origin steered by the query: `cc` (Cache-Control), `etag`, `lm` (Last-Modified, seconds
/// ago), `vary`, `cookie=1`, `status`, `delay` (ms), `size` (body bytes). The body is
/// `PATH #N` where N counts requests for that path, so tests can tell which answer they got.
/// A matching `If-None-Match` gets a 304.
struct Origin {
    addr: SocketAddr,
    hits: Arc<AtomicUsize>,
    fail: Arc<AtomicBool>,
    last_inm: Arc<Mutex<Option<String>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Origin {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn query(uri: &http::Uri) -> HashMap<String, String> {
    uri.query()
        .unwrap_or("")
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| {
            let v = percent_encoding::percent_decode_str(v)
                .decode_utf8_lossy()
                .to_string();
            (k.to_string(), v)
        })
        .collect()
}

impl Origin {
    async fn start() -> Origin {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let hits = Arc::new(AtomicUsize::new(0));
        let per_path = Arc::new(Mutex::new(HashMap::new()));
        let fail = Arc::new(AtomicBool::new(false));
        let last_inm = Arc::new(Mutex::new(None));
        let (h, p, f, l) = (
            hits.clone(),
            per_path.clone(),
            fail.clone(),
            last_inm.clone(),
        );
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let (h, p, f, l) = (h.clone(), p.clone(), f.clone(), l.clone());
                tokio::spawn(async move {
                    let svc = service_fn(move |req: Request<Incoming>| {
                        let (h, p, f, l) = (h.clone(), p.clone(), f.clone(), l.clone());
                        async move { Ok::<_, Infallible>(answer(req, &h, &p, &f, &l).await) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        Origin {
            addr,
            hits,
            fail,
            last_inm,
            task,
        }
    }

    fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }
}

async fn answer(
    req: Request<Incoming>,
    hits: &AtomicUsize,
    per_path: &Mutex<HashMap<String, usize>>,
    fail: &AtomicBool,
    last_inm: &Mutex<Option<String>>,
) -> Response<Full<Bytes>> {
    hits.fetch_add(1, Ordering::SeqCst);
    let q = query(req.uri());
    let path = req.uri().path().to_string();
    let n = {
        let mut m = per_path.lock().unwrap();
        let e = m.entry(path.clone()).or_insert(0);
        *e += 1;
        *e
    };
    let inm = req
        .headers()
        .get("if-none-match")
        .map(|v| v.to_str().unwrap().to_string());
    *last_inm.lock().unwrap() = inm.clone();
    if let Some(ms) = q.get("delay") {
        tokio::time::sleep(Duration::from_millis(ms.parse().unwrap())).await;
    }
    let mut b = Response::builder();
    if fail.load(Ordering::SeqCst) {
        return b
            .status(500)
            .body(Full::new(Bytes::from("broken")))
            .unwrap();
    }
    if let Some(cc) = q.get("cc") {
        b = b.header("cache-control", cc.as_str());
    }
    let etag = q.get("etag").map(|e| format!("\"{e}\""));
    if let Some(e) = &etag {
        b = b.header("etag", e.as_str());
    }
    if let Some(lm) = q.get("lm") {
        let secs: u64 = lm.parse().unwrap();
        let t = std::time::SystemTime::now() - Duration::from_secs(secs);
        b = b.header("last-modified", httpdate::fmt_http_date(t));
    }
    if let Some(v) = q.get("vary") {
        b = b.header("vary", v.as_str());
    }
    if q.contains_key("cookie") {
        b = b.header("set-cookie", "session=secret");
    }
    if let Some(ae) = req.headers().get("accept-encoding") {
        b = b.header("x-ae", ae.clone());
    }
    if let (Some(e), Some(i)) = (&etag, &inm) {
        if i == e {
            return b.status(304).body(Full::new(Bytes::new())).unwrap();
        }
    }
    let status: u16 = q.get("status").map_or(200, |s| s.parse().unwrap());
    let body = match q.get("size") {
        Some(s) => Bytes::from(vec![b'x'; s.parse().unwrap()]),
        None => Bytes::from(format!("{path} #{n}")),
    };
    b.header(
        "content-type",
        q.get("type").map_or("text/plain", |t| t.as_str()),
    )
    .status(status)
    .body(Full::new(body))
    .unwrap()
}

async fn proxy(origin: &Origin, extra_route: &str, cache: &str) -> langur::Langur {
    langur_toml(&format!(
        "[[route]]\nmatch = ['^/']\npool = 'o'\ncache = true\n{extra_route}\n[pools.o]\nservers = ['{}']\n[cache]\n{cache}\n",
        origin.addr
    ))
    .await
}

fn status_of(r: &Resp) -> String {
    r.headers
        .get("cache-status")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default()
}

async fn get_h(addr: SocketAddr, path: &str, headers: &[(&str, &str)]) -> Resp {
    request(addr, Method::GET, path, headers, body("")).await
}

#[tokio::test]
async fn max_age_hit_then_expiry() {
    let o = Origin::start().await;
    let l = proxy(&o, "", "").await;
    let a = l.listen_addrs()[0];
    let first = get(a, "/a?cc=max-age%3D1").await;
    assert_eq!(first.status, 200);
    assert!(
        status_of(&first).contains("fwd=miss; stored"),
        "{}",
        status_of(&first)
    );
    let second = get(a, "/a?cc=max-age%3D1").await;
    assert_eq!(second.text(), "/a #1");
    assert!(
        status_of(&second).starts_with("langur; hit"),
        "{}",
        status_of(&second)
    );
    assert!(second.headers.contains_key("age"));
    assert_eq!(o.hits(), 1);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let third = get(a, "/a?cc=max-age%3D1").await;
    assert_eq!(third.text(), "/a #2", "expired: fetched again");
    assert_eq!(o.hits(), 2);
}

#[tokio::test]
async fn s_maxage_wins_over_max_age() {
    let o = Origin::start().await;
    let l = proxy(&o, "", "").await;
    let a = l.listen_addrs()[0];
    let p = "/s?cc=max-age%3D0%2C%20s-maxage%3D60";
    get(a, p).await;
    let again = get(a, p).await;
    assert_eq!(again.text(), "/s #1");
    assert_eq!(o.hits(), 1);
}

#[tokio::test]
async fn unsafe_to_share_is_never_stored() {
    let o = Origin::start().await;
    let l = proxy(&o, "", "").await;
    let a = l.listen_addrs()[0];
    for (path, headers, detail) in [
        ("/ns?cc=no-store", &[][..], "no-store"),
        ("/pr?cc=private%2C%20max-age%3D60", &[][..], "private"),
        ("/ck?cc=max-age%3D60&cookie=1", &[][..], "set-cookie"),
        (
            "/au?cc=max-age%3D60",
            &[("authorization", "Bearer t")][..],
            "authorization",
        ),
        ("/nf", &[][..], "no-freshness"),
    ] {
        let before = o.hits();
        let r1 = get_h(a, path, headers).await;
        let r2 = get_h(a, path, headers).await;
        assert_eq!(
            o.hits() - before,
            2,
            "{path} must not be served from the cache"
        );
        assert!(
            status_of(&r1).contains(detail),
            "{path}: {}",
            status_of(&r1)
        );
        assert!(status_of(&r2).contains("fwd=miss"), "{path}");
    }
}

#[tokio::test]
async fn vary_keeps_variants_apart() {
    let o = Origin::start().await;
    let l = proxy(&o, "", "").await;
    let a = l.listen_addrs()[0];
    let p = "/v?cc=max-age%3D60&vary=Accept-Encoding";
    let gz = get_h(a, p, &[("accept-encoding", "gzip")]).await;
    let br = get_h(a, p, &[("accept-encoding", "br")]).await;
    assert_eq!(o.hits(), 2);
    let gz2 = get_h(a, p, &[("accept-encoding", "gzip")]).await;
    let br2 = get_h(a, p, &[("accept-encoding", "br")]).await;
    assert_eq!(o.hits(), 2, "both variants served from the cache");
    assert_eq!(gz2.text(), gz.text());
    assert_eq!(br2.text(), br.text());
    assert_ne!(gz.text(), br.text());
    assert_eq!(gz2.headers["x-ae"], "gzip");
    assert_eq!(br2.headers["x-ae"], "br");
}

#[tokio::test]
async fn conditional_requests_answered_from_the_cache() {
    let o = Origin::start().await;
    let l = proxy(&o, "", "").await;
    let a = l.listen_addrs()[0];
    let p = "/e?cc=max-age%3D60&etag=v1&lm=3600";
    get(a, p).await;
    let r = get_h(a, p, &[("if-none-match", "\"v1\"")]).await;
    assert_eq!(r.status, StatusCode::NOT_MODIFIED);
    assert!(r.body.is_empty());
    assert_eq!(r.headers["etag"], "\"v1\"");
    let since = httpdate::fmt_http_date(std::time::SystemTime::now());
    let r = get_h(a, p, &[("if-modified-since", &since)]).await;
    assert_eq!(r.status, StatusCode::NOT_MODIFIED);
    let r = get_h(a, p, &[("if-none-match", "\"v0\"")]).await;
    assert_eq!(r.status, StatusCode::OK);
    let r = get_h(a, p, &[("range", "bytes=1-2")]).await;
    assert_eq!(r.status, StatusCode::PARTIAL_CONTENT);
    assert_eq!(r.text(), "e ");
    assert_eq!(o.hits(), 1);
}

#[tokio::test]
async fn stale_entry_is_revalidated_and_refreshed_by_304() {
    let o = Origin::start().await;
    let l = proxy(&o, "", "").await;
    let a = l.listen_addrs()[0];
    let p = "/r?cc=max-age%3D1&etag=v1";
    get(a, p).await;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let r = get(a, p).await;
    assert_eq!(o.hits(), 2);
    assert_eq!(o.last_inm.lock().unwrap().as_deref(), Some("\"v1\""));
    assert_eq!(r.status, 200);
    assert_eq!(r.text(), "/r #1", "the stored body, refreshed");
    assert!(
        status_of(&r).contains("fwd=stale; fwd-status=304"),
        "{}",
        status_of(&r)
    );
    let again = get(a, p).await;
    assert!(status_of(&again).contains("hit"));
    assert_eq!(o.hits(), 2, "fresh again after the 304");
}

#[tokio::test]
async fn concurrent_misses_make_one_upstream_request() {
    let o = Origin::start().await;
    let l = proxy(&o, "", "").await;
    let a = l.listen_addrs()[0];
    let mut tasks = Vec::new();
    for _ in 0..200 {
        tasks.push(tokio::spawn(get(a, "/hot?cc=max-age%3D60&delay=300")));
    }
    for t in tasks {
        let r = t.await.unwrap();
        assert_eq!(r.status, 200);
        assert_eq!(r.text(), "/hot #1");
    }
    assert_eq!(o.hits(), 1);
    let c = l.shared().runtime.load().cache.stats();
    assert_eq!(c.misses, 1);
    assert!(c.coalesced > 0, "{c:?}");
    assert_eq!(
        c.hits, 199,
        "every other request was answered from the cache: {c:?}"
    );
}

#[tokio::test]
async fn an_uncacheable_answer_releases_waiters_at_once() {
    let o = Origin::start().await;
    let l = proxy(&o, "", "lock_timeout = '10s'").await;
    let a = l.listen_addrs()[0];
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..20 {
        tasks.push(tokio::spawn(get(a, "/priv?cc=private&delay=200")));
    }
    for t in tasks {
        assert_eq!(t.await.unwrap().status, 200);
    }
    assert_eq!(o.hits(), 20, "each waiter went upstream itself");
    assert!(
        start.elapsed() < Duration::from_secs(3),
        "{:?}",
        start.elapsed()
    );
}

#[tokio::test]
async fn stale_while_revalidate_answers_at_once_and_refreshes_once() {
    let o = Origin::start().await;
    let l = proxy(&o, "", "").await;
    let a = l.listen_addrs()[0];
    let p = "/swr?cc=max-age%3D1%2C%20stale-while-revalidate%3D30&delay=400";
    get(a, p).await;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..10 {
        tasks.push(tokio::spawn(get(a, p)));
    }
    for t in tasks {
        let r = t.await.unwrap();
        assert_eq!(r.text(), "/swr #1");
        assert!(
            status_of(&r).contains("stale-while-revalidate"),
            "{}",
            status_of(&r)
        );
    }
    assert!(
        start.elapsed() < Duration::from_millis(350),
        "answered from stale at once"
    );
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert_eq!(o.hits(), 2, "one background refresh");
    let r = get(a, p).await;
    assert_eq!(r.text(), "/swr #2");
    assert!(status_of(&r).contains("hit"));
}

#[tokio::test]
async fn stale_if_error_answers_when_every_server_is_dead() {
    let o = Origin::start().await;
    let l = proxy(&o, "", "").await;
    let a = l.listen_addrs()[0];
    let p = "/sie?cc=max-age%3D1%2C%20stale-if-error%3D60";
    get(a, p).await;
    o.fail.store(true, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let r = get(a, p).await;
    assert_eq!(r.status, 200, "a 500 from the origin is hidden");
    assert_eq!(r.text(), "/sie #1");
    assert!(
        status_of(&r).contains("fwd-status=500; "),
        "{}",
        status_of(&r)
    );
    drop(o);
    tokio::time::sleep(Duration::from_millis(50)).await;
    let r = get(a, p).await;
    assert_eq!(r.status, 200, "no server at all");
    assert_eq!(r.text(), "/sie #1");
    assert!(
        status_of(&r).contains("stale-if-error"),
        "{}",
        status_of(&r)
    );
}

#[tokio::test]
async fn route_grace_stands_in_for_missing_directives() {
    let o = Origin::start().await;
    let l = proxy(&o, "grace = '30s'", "").await;
    let a = l.listen_addrs()[0];
    let p = "/g?cc=max-age%3D1";
    get(a, p).await;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let r = get(a, p).await;
    assert!(
        status_of(&r).contains("stale-while-revalidate"),
        "{}",
        status_of(&r)
    );
    let p = "/mr?cc=max-age%3D1%2C%20must-revalidate";
    get(a, p).await;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let r = get(a, p).await;
    assert_eq!(r.text(), "/mr #2", "must-revalidate is never served stale");
}

#[tokio::test]
async fn virtual_hosts_never_share_entries() {
    let o = Origin::start().await;
    let l = proxy(&o, "", "").await;
    let a = l.listen_addrs()[0];
    let p = "/vh?cc=max-age%3D60";
    let one = get_h(a, p, &[("host", "one.example")]).await;
    let two = get_h(a, p, &[("host", "two.example")]).await;
    assert_ne!(one.text(), two.text());
    let one_again = get_h(a, p, &[("host", "ONE.example")]).await;
    assert_eq!(one_again.text(), one.text());
    assert_eq!(o.hits(), 2);
}

#[tokio::test]
async fn unsafe_methods_invalidate_and_purge_removes() {
    let o = Origin::start().await;
    let l = proxy(&o, "purge = ['127.0.0.1']", "").await;
    let a = l.listen_addrs()[0];
    let p = "/u?cc=max-age%3D60";
    get(a, p).await;
    request(a, Method::POST, p, &[], body("x")).await;
    assert_eq!(
        get(a, p).await.text(),
        "/u #3",
        "POST invalidated the entry"
    );
    assert_eq!(get(a, p).await.text(), "/u #3");
    let r = request(a, Method::from_bytes(b"PURGE").unwrap(), p, &[], body("")).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.text().trim(), "{\"purged\":1}");
    assert_eq!(get(a, p).await.text(), "/u #4");
}

#[tokio::test]
async fn purge_from_elsewhere_is_refused() {
    let o = Origin::start().await;
    let l = proxy(&o, "purge = ['10.0.0.0/8']", "").await;
    let a = l.listen_addrs()[0];
    get(a, "/p?cc=max-age%3D60").await;
    let r = request(
        a,
        Method::from_bytes(b"PURGE").unwrap(),
        "/p?cc=max-age%3D60",
        &[],
        body(""),
    )
    .await;
    assert_eq!(r.status, 403);
    assert_eq!(get(a, "/p?cc=max-age%3D60").await.text(), "/p #1");
}

#[tokio::test]
async fn bytes_in_use_never_exceed_max_size_under_random_load() {
    let o = Origin::start().await;
    let l = proxy(&o, "", "max_size = 300000\nmax_object_size = 40000").await;
    let a = l.listen_addrs()[0];
    let cache = l.shared().runtime.load().cache.clone();
    let mut seed = 42u64;
    let mut stored = 0;
    for _ in 0..400 {
        seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1);
        let size = (seed >> 40) % 45_000;
        let key = (seed >> 20) % 60;
        let r = get(a, &format!("/z{key}?cc=max-age%3D60&size={size}")).await;
        assert_eq!(r.body.len() as u64, size);
        stored += usize::from(status_of(&r).contains("stored"));
        assert!(cache.bytes() <= 300_000, "{} bytes in use", cache.bytes());
    }
    let s = cache.stats();
    assert!(stored > 50 && s.evictions > 0, "{s:?}");
}

#[tokio::test]
async fn types_and_object_size_rules() {
    let o = Origin::start().await;
    let l = proxy(&o, "", "types = ['text/*']\nmax_object_size = 1000").await;
    let a = l.listen_addrs()[0];
    let r = get(a, "/img?cc=max-age%3D60&type=image/png").await;
    assert!(
        status_of(&r).contains("detail=content-type"),
        "{}",
        status_of(&r)
    );
    let r = get(a, "/big?cc=max-age%3D60&size=5000").await;
    assert!(
        status_of(&r).contains("detail=too-large"),
        "{}",
        status_of(&r)
    );
    let r = get(a, "/ok?cc=max-age%3D60&type=text/html").await;
    assert!(status_of(&r).contains("stored"));
}

#[tokio::test]
async fn legacy_cache_on() {
    let o = Origin::start().await;
    let l = langur_legacy(&format!(
        "[PROXY_ENTRY]\n  ServerList {}\n  Match ^/\n  Cache On\n[CACHE]\n  MaxSize 1MiB\n",
        o.addr
    ))
    .await;
    let a = l.listen_addrs()[0];
    get(a, "/l?cc=max-age%3D60").await;
    assert_eq!(get(a, "/l?cc=max-age%3D60").await.text(), "/l #1");
    assert_eq!(o.hits(), 1);
}

#[tokio::test]
async fn routes_without_cache_pass_everything() {
    let o = Origin::start().await;
    let l = langur_toml(&format!(
        "[[route]]\nmatch = ['^/']\npool = 'o'\n[pools.o]\nservers = ['{}']\n",
        o.addr
    ))
    .await;
    let a = l.listen_addrs()[0];
    get(a, "/n?cc=max-age%3D60").await;
    let r = get(a, "/n?cc=max-age%3D60").await;
    assert_eq!(r.text(), "/n #2");
    assert!(!r.headers.contains_key("cache-status"));
}
