//! The response cache through real sockets: an origin whose answers are steered by the query
//! string, langur in front with `cache = true`.

use crate::common;

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
/// ago), `vary`, `cookie=1`, `status`, `delay` (ms), `size` (body bytes), `cross` (answer
/// 20 ms into the next second), `date_before` (`Date` one second back), `nostore_later`
/// (`no-store` from the path's second request on). The body is `PATH #N` where N counts
/// requests for that path, so tests can tell which answer they got. A matching
/// `If-None-Match` gets a 304, with `nodate304` without `Date`, `age304=N` with `Age`, and
/// `cc304` as its `Cache-Control`.
struct Origin {
    addr: SocketAddr,
    hits: Arc<AtomicUsize>,
    fail: Arc<AtomicBool>,
    last_inm: Arc<Mutex<Option<String>>>,
    /// Requests per path so far.
    per_path: Arc<Mutex<HashMap<String, usize>>>,
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
                    // `Date` is the answer's own (see `answer`), so a test can leave it out.
                    let _ = hyper::server::conn::http1::Builder::new()
                        .auto_date_header(false)
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
            per_path,
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
    if q.contains_key("cross") {
        // Answer 20 ms into the next second of the wall clock.
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH);
        let into = now.unwrap().subsec_millis();
        tokio::time::sleep(Duration::from_millis(u64::from(1020 - into))).await;
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
    // `Date` as a server sets it; `date_before`: made in the second before this one (with
    // `cross`: at its very end).
    let back = Duration::from_secs(q.contains_key("date_before") as u64);
    let date = httpdate::fmt_http_date(std::time::SystemTime::now() - back);
    b = b.header("date", date.as_str());
    if let Some(v) = q.get("vary") {
        b = b.header("vary", v.as_str());
    }
    if q.contains_key("cookie") {
        b = b.header("set-cookie", "session=secret");
    }
    if q.contains_key("nostore_later") && n > 1 {
        // From the second request of the path on, an answer that may not be kept.
        b.headers_mut()
            .unwrap()
            .insert("cache-control", http::HeaderValue::from_static("no-store"));
    }
    if let Some(ae) = req.headers().get("accept-encoding") {
        b = b.header("x-ae", ae.clone());
    }
    if let Some(age) = q.get("age") {
        for v in age.split('|') {
            b = b.header("age", v);
        }
    }
    if let Some(l) = q.get("loc") {
        b = b.header("location", l.as_str());
    }
    if let Some(l) = q.get("cloc") {
        b = b.header("content-location", l.as_str());
    }
    if let (Some(e), Some(i)) = (&etag, &inm) {
        if i == e {
            if q.contains_key("sc304") {
                b = b.header("set-cookie", "session=renewed");
            }
            if let Some(other) = q.get("etag304") {
                let v = http::HeaderValue::from_str(&format!("\"{other}\"")).unwrap();
                b.headers_mut().unwrap().insert("etag", v);
            }
            let h = b.headers_mut().unwrap();
            if q.contains_key("nodate304") {
                h.remove("date");
            }
            if let Some(a) = q.get("age304") {
                h.insert("age", http::HeaderValue::from_str(a).unwrap());
            }
            if let Some(cc) = q.get("cc304") {
                h.insert("cache-control", http::HeaderValue::from_str(cc).unwrap());
            }
            return b.status(304).body(Full::new(Bytes::new())).unwrap();
        }
    }
    let status: u16 = q.get("status").map_or(200, |s| s.parse().unwrap());
    let body = match (q.get("size"), q.get("echo")) {
        (Some(s), _) => Bytes::from(vec![b'x'; s.parse().unwrap()]),
        // `echo=NAME`: the body shows what the origin got in that request field.
        (None, Some(name)) => {
            let got: Vec<&str> = req
                .headers()
                .get_all(name.as_str())
                .iter()
                .map(|v| v.to_str().unwrap())
                .collect();
            Bytes::from(format!("{path} #{n} {name}={}", got.join("|")))
        }
        (None, None) => Bytes::from(format!("{path} #{n}")),
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

/// A `max-age=1` answer stays fresh for its second when its exchange crossed a second
/// boundary: the exchange is timed to the millisecond. One whose `Date` is the second before
/// its arrival is a second old (RFC 9111 4.2.3), so stale on arrival: without a validator it is
/// not stored.
#[tokio::test]
async fn a_max_age_1_answer_that_crossed_a_second_is_fresh_unless_its_date_says_otherwise() {
    let o = Origin::start().await;
    let l = proxy(&o, "", "").await;
    let a = l.listen_addrs()[0];
    let crossed = async {
        let p = "/x1?cc=max-age%3D1&cross=1";
        get(a, p).await;
        let again = get(a, p).await;
        assert!(
            status_of(&again).starts_with("langur; hit"),
            "{p}: {}",
            status_of(&again)
        );
    };
    let dated_before = async {
        let p = "/x2?cc=max-age%3D1&cross=1&date_before=1";
        let first = get(a, p).await;
        assert!(
            status_of(&first).contains("detail=no-freshness"),
            "{p}: {}",
            status_of(&first)
        );
    };
    tokio::join!(crossed, dated_before);
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
    assert!(status_of(&r).contains("detail=grace"), "{}", status_of(&r));
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

/// Sends raw bytes on a new connection and returns the response text.
async fn raw_get(a: SocketAddr, head: &str) -> String {
    raw(a, head.as_bytes(), Duration::from_secs(3)).await
}

#[tokio::test]
async fn the_key_is_the_forwarded_host_not_the_clients() {
    let o = Origin::start().await;
    let l = proxy(&o, "", "").await;
    let a = l.listen_addrs()[0];
    let p = "/home?cc=max-age%3D60&echo=host";
    // Absolute form: the server is asked for other.example's page (RFC 9112 3.2.2) ...
    let poisoned = raw_get(
        a,
        &format!("GET http://other.example{p} HTTP/1.1\r\nHost: site.example\r\nConnection: close\r\n\r\n"),
    )
    .await;
    assert!(poisoned.contains("host=other.example"), "{poisoned}");
    // ... and it is kept under other.example, so site.example's visitors never get it.
    let site = get_h(a, p, &[("host", "site.example")]).await;
    assert!(site.text().contains("host=site.example"), "{}", site.text());
    let other = get_h(a, p, &[("host", "other.example")]).await;
    assert!(
        other.text().contains("host=other.example"),
        "{}",
        other.text()
    );
    assert!(status_of(&other).contains("hit"), "{}", status_of(&other));
    // Userinfo in the authority is refused (RFC 9110 4.2.4).
    let userinfo = raw_get(
        a,
        &format!("GET http://site.example@other.example{p} HTTP/1.1\r\nHost: site.example\r\nConnection: close\r\n\r\n"),
    )
    .await;
    assert!(userinfo.starts_with("HTTP/1.1 400"), "{userinfo}");
}

#[tokio::test]
async fn connection_cannot_remove_what_the_key_and_vary_read() {
    let o = Origin::start().await;
    let l = proxy(&o, "", "").await;
    let a = l.listen_addrs()[0];
    // `Connection: close, Host`: the server still gets Host, and the answer is keyed by it.
    let p = "/h?cc=max-age%3D60&echo=host";
    let r = raw_get(
        a,
        &format!("GET {p} HTTP/1.1\r\nHost: site.example\r\nConnection: close, Host\r\n\r\n"),
    )
    .await;
    assert!(r.contains("host=site.example"), "{r}");
    // `Connection: Accept-Language` removes the field from what is forwarded; the answer is
    // then the server's answer to a request without it, and stored as that variant only.
    let v = "/v?cc=max-age%3D60&vary=accept-language&echo=accept-language";
    let first = get_h(
        a,
        v,
        &[("accept-language", "fr"), ("connection", "accept-language")],
    )
    .await;
    assert!(
        first.text().ends_with("accept-language="),
        "{}",
        first.text()
    );
    let fr = get_h(a, v, &[("accept-language", "fr")]).await;
    assert!(fr.text().ends_with("accept-language=fr"), "{}", fr.text());
    let none = get_h(a, v, &[]).await;
    assert_eq!(none.text(), first.text(), "the variant without the field");
    assert!(status_of(&none).contains("hit"));
}

#[tokio::test]
async fn method_overrides_and_url_rewrites_bypass_the_cache() {
    let o = Origin::start().await;
    let l = proxy(&o, "", "").await;
    let a = l.listen_addrs()[0];
    let p = "/item?cc=max-age%3D60&echo=x-http-method-override";
    let stored = get(a, p).await;
    for (name, value) in [
        ("x-http-method-override", "DELETE"),
        ("X-HTTP-Method", "PUT"),
        ("x-method-override", "PATCH"),
        ("x-original-url", "/admin"),
        ("x-rewrite-url", "/admin"),
    ] {
        let r = get_h(a, p, &[(name, value)]).await;
        assert!(
            status_of(&r).contains("fwd=bypass"),
            "{name}: {}",
            status_of(&r)
        );
        assert_ne!(r.text(), stored.text(), "{name}: not served from the cache");
    }
    // The forwarding fields frameworks build links from, and CGI-style spellings of them all.
    for (name, value) in [
        ("x-forwarded-port", "1337"),
        ("x-forwarded-server", "evil"),
        ("front-end-https", "on"),
        ("x_forwarded_prefix", "//evil.example"),
        ("x_http_method_override", "DELETE"),
        ("x-forwarded-hostname", "evil.example"),
    ] {
        let r = get_h(a, p, &[(name, value)]).await;
        assert!(
            status_of(&r).contains("fwd=bypass"),
            "{name}: {}",
            status_of(&r)
        );
    }
    // The underscore forms of the fields langur sets itself are removed from a client's
    // request (they never reach a server), so the stored answer is the right one for them.
    for (name, value) in [
        ("x_forwarded_host", "evil.example"),
        ("x_forwarded_proto", "http"),
    ] {
        let r = get_h(a, p, &[(name, value)]).await;
        assert!(status_of(&r).contains("hit"), "{name}: {}", status_of(&r));
        assert_eq!(r.text(), stored.text(), "{name}");
    }
    let after = get(a, p).await;
    assert_eq!(
        after.text(),
        stored.text(),
        "the override's answer was not stored"
    );
    // The list is configurable.
    let l2 = proxy(&o, "", "bypass_headers = ['x-tenant']").await;
    let a2 = l2.listen_addrs()[0];
    let r = get_h(a2, p, &[("x-tenant", "b")]).await;
    assert!(status_of(&r).contains("fwd=bypass; detail=x-tenant"));
    let r = get_h(
        a2,
        "/item2?cc=max-age%3D60",
        &[("x-http-method-override", "GET")],
    )
    .await;
    assert!(status_of(&r).contains("stored"), "{}", status_of(&r));
}

#[tokio::test]
async fn a_request_cookie_keeps_heuristic_answers_out_of_the_cache() {
    let o = Origin::start().await;
    let l = proxy(&o, "", "default_ttl = '60s'").await;
    let a = l.listen_addrs()[0];
    // Cache deception: the account page under a static-looking name, no freshness given.
    let r = get_h(a, "/account.php/x.css", &[("cookie", "session=alice")]).await;
    assert!(
        status_of(&r).contains("detail=request-cookie"),
        "{}",
        status_of(&r)
    );
    let other = get(a, "/account.php/x.css").await;
    assert_eq!(
        other.text(),
        "/account.php/x.css #2",
        "not served alice's page"
    );
    // Explicit freshness: kept even when the request had a cookie.
    let r = get_h(a, "/e?cc=max-age%3D60", &[("cookie", "session=alice")]).await;
    assert!(status_of(&r).contains("stored"), "{}", status_of(&r));
    // Varnish's rule on request: cookies bypass the cache.
    let l2 = proxy(&o, "", "request_cookie = 'pass'").await;
    let a2 = l2.listen_addrs()[0];
    get(a2, "/p?cc=max-age%3D60").await;
    let r = get_h(a2, "/p?cc=max-age%3D60", &[("cookie", "a=1")]).await;
    assert!(
        status_of(&r).contains("fwd=bypass; detail=cookie"),
        "{}",
        status_of(&r)
    );
}

#[tokio::test]
async fn a_304_is_merged_into_what_the_client_gets() {
    let o = Origin::start().await;
    let l = proxy(&o, "", "").await;
    let a = l.listen_addrs()[0];
    let p = "/r?cc=max-age%3D0&etag=v1&sc304=1";
    let first = get(a, p).await;
    assert_eq!(first.status, 200);
    let second = get(a, p).await;
    assert!(
        status_of(&second).contains("fwd-status=304"),
        "{}",
        status_of(&second)
    );
    assert_eq!(second.text(), first.text());
    assert_eq!(
        second
            .headers
            .get("set-cookie")
            .map(|v| v.to_str().unwrap()),
        Some("session=renewed"),
        "the 304's cookie reaches the client"
    );
    // The entry was refreshed, not dropped: fresh again, and the next stale use revalidates.
    // Its age is the 304's: 0, also when the exchange crossed a second boundary.
    assert_eq!(second.headers["age"], "0");
    assert!(
        status_of(&second).contains("stored"),
        "{}",
        status_of(&second)
    );
    // A conditional client gets the cookie on its 304 too.
    let cond = get_h(a, p, &[("if-none-match", "\"v1\"")]).await;
    assert_eq!(cond.status, 304);
    assert_eq!(cond.headers["set-cookie"], "session=renewed");
    let _ = o.last_inm.lock().unwrap().take();
    let again = get(a, p).await;
    assert!(
        status_of(&again).contains("fwd-status=304"),
        "{}",
        status_of(&again)
    );
    assert_eq!(
        o.last_inm.lock().unwrap().as_deref(),
        Some("\"v1\""),
        "revalidated, not refetched"
    );
    // The stored copy never replays it: a fresh entry answered from the cache has none.
    let q = "/r2?cc=max-age%3D60&etag=v1&sc304=1";
    get(a, q).await;
    let hit = get(a, q).await;
    assert!(status_of(&hit).contains("hit"));
    assert!(!hit.headers.contains_key("set-cookie"));
}

/// The entry a 304 refreshes is as old as the 304 says: dated when it arrived when it has no
/// `Date` (RFC 9110 6.6.1), and as old as its `Age` (RFC 9111 4.2.3).
#[tokio::test]
async fn a_304_dates_and_ages_the_entry_it_refreshes() {
    let o = Origin::start().await;
    let l = proxy(&o, "", "").await;
    let a = l.listen_addrs()[0];
    let undated = async {
        let p = "/d?cc=max-age%3D1&etag=v1&nodate304=1";
        get(a, p).await;
        tokio::time::sleep(Duration::from_millis(1100)).await;
        let r = get(a, p).await;
        assert!(
            status_of(&r).contains("fwd-status=304; stored"),
            "{}",
            status_of(&r)
        );
        let again = get(a, p).await;
        assert!(status_of(&again).contains("hit"), "{}", status_of(&again));
    };
    let aged = async {
        let p = "/e?cc=max-age%3D0&etag=v1&cc304=max-age%3D60&age304=30";
        get(a, p).await;
        let r = get(a, p).await;
        assert_eq!(
            status_of(&r),
            "langur; fwd=stale; fwd-status=304; stored; ttl=30"
        );
        assert_eq!(r.headers["age"], "30");
        let again = get(a, p).await;
        assert!(
            status_of(&again).contains("hit; ttl=30"),
            "{}",
            status_of(&again)
        );
    };
    tokio::join!(undated, aged);
}

#[tokio::test]
async fn rfc9111_storing_edges() {
    let o = Origin::start().await;
    let l = proxy(&o, "", "").await;
    let a = l.listen_addrs()[0];
    // Invalid Age values are ignored, never a reason not to store (5.1).
    // The client gets the age the cache computed, one field, in place of the server's.
    for (i, age) in ["abc", "-5", "5s", "7%2C%209", "3|4"].iter().enumerate() {
        let p = format!("/age{i}?cc=max-age%3D60&age={age}");
        let first = get(a, &p).await;
        let sent: Vec<_> = first.headers.get_all("age").iter().collect();
        assert_eq!(sent.len(), 1, "Age {age}: {sent:?}");
        let n: u64 = sent[0].to_str().unwrap().parse().unwrap();
        let least = [0, 0, 0, 7, 3][i];
        assert!((least..=least + 1).contains(&n), "Age {age}: {n}");
        let again = get(a, &p).await;
        assert!(
            status_of(&again).contains("hit"),
            "Age {age}: {}",
            status_of(&again)
        );
    }
    // no-cache="Set-Cookie": stored without the field (5.2.2.4).
    let p = "/nc?cc=max-age%3D60%2C%20no-cache%3D%22Set-Cookie%22&cookie=1";
    let first = get(a, p).await;
    assert!(first.headers.contains_key("set-cookie"));
    let hit = get(a, p).await;
    assert!(status_of(&hit).contains("hit"), "{}", status_of(&hit));
    assert!(!hit.headers.contains_key("set-cookie"));
    // Authorization with `public` or `s-maxage` may be shared (3.5).
    for (i, cc) in ["public%2C%20max-age%3D60", "s-maxage%3D60"]
        .iter()
        .enumerate()
    {
        let p = format!("/auth{i}?cc={cc}");
        let r = get_h(a, &p, &[("authorization", "Basic eDp5")]).await;
        assert!(status_of(&r).contains("stored"), "{cc}: {}", status_of(&r));
    }
    let r = get_h(
        a,
        "/auth9?cc=max-age%3D60",
        &[("authorization", "Basic eDp5")],
    )
    .await;
    assert!(status_of(&r).contains("detail=authorization"));
}

#[tokio::test]
async fn unsafe_methods_invalidate_location_and_content_location() {
    let o = Origin::start().await;
    let l = proxy(&o, "", "").await;
    let a = l.listen_addrs()[0];
    let t1 = "/t1?cc=max-age%3D60";
    let t2 = "/t2?cc=max-age%3D60";
    let t3 = "/t3?cc=max-age%3D60";
    for t in [t1, t2, t3] {
        get(a, t).await;
        assert!(status_of(&get(a, t).await).contains("hit"));
    }
    let loc = percent_encoding::utf8_percent_encode(t1, percent_encoding::NON_ALPHANUMERIC);
    let cloc = percent_encoding::utf8_percent_encode(
        &format!("http://{}{t2}", "site.example"),
        percent_encoding::NON_ALPHANUMERIC,
    )
    .to_string();
    let elsewhere = percent_encoding::utf8_percent_encode(
        &format!("http://{}{t3}", "elsewhere.example"),
        percent_encoding::NON_ALPHANUMERIC,
    )
    .to_string();
    let r = request(
        a,
        Method::POST,
        &format!("/form?loc={loc}&cloc={cloc}"),
        &[("host", "site.example")],
        body("x=1"),
    )
    .await;
    assert_eq!(r.status, 200);
    let _ = elsewhere;
    let h = [("host", "site.example")];
    // The POST's own URL, Location and Content-Location on the same host went ...
    assert!(!status_of(&get_h(a, t1, &h).await).contains("hit"));
    assert!(!status_of(&get_h(a, t2, &h).await).contains("hit"));
    // ... (a Location on another host invalidates nothing).
    let r = request(
        a,
        Method::POST,
        &format!("/form?loc={elsewhere}"),
        &h,
        body("x=1"),
    )
    .await;
    assert_eq!(r.status, 200);
    get_h(a, t3, &h).await;
    assert!(status_of(&get_h(a, t3, &h).await).contains("hit"));
}

#[tokio::test]
async fn a_chunked_answer_is_stored_without_transfer_encoding() {
    fn script(_path: &str) -> (Vec<Vec<u8>>, Duration, After) {
        let answer = b"HTTP/1.1 200 OK\r\nCache-Control: max-age=60\r\nTransfer-Encoding: chunked\r\nContent-Type: text/plain\r\n\r\n5\r\nhello\r\n0\r\n\r\n";
        (vec![answer.to_vec()], Duration::ZERO, After::Stay)
    }
    let (addr, seen, _) = raw_origin(script).await;
    let l = langur_toml(&format!(
        "[[route]]\nmatch = ['^/']\npool = 'o'\ncache = true\n[pools.o]\nservers = ['{addr}']\n"
    ))
    .await;
    let a = l.listen_addrs()[0];
    let first = get(a, "/c").await;
    assert_eq!(
        (first.status, first.text().as_str()),
        (StatusCode::OK, "hello")
    );
    let cs = status_of(&first);
    assert!(
        !cs.contains("stored"),
        "length unknown: not announced as stored: {cs}"
    );
    let second = get(a, "/c").await;
    assert_eq!(
        (second.status, second.text().as_str()),
        (StatusCode::OK, "hello")
    );
    assert!(status_of(&second).contains("hit"), "{}", status_of(&second));
    assert!(!second.headers.contains_key("transfer-encoding"));
    let asked: usize = seen.lock().unwrap().iter().map(Vec::len).sum();
    assert_eq!(asked, 1);
}

#[tokio::test]
async fn too_large_chunked_answers_are_never_said_stored() {
    let o = Origin::start().await;
    let l = proxy(&o, "", "max_size = '1 MiB'\nmax_object_size = '1 KiB'").await;
    let a = l.listen_addrs()[0];
    // Known length, and headers that push it over: refused up front.
    let long = "a".repeat(900);
    let r = get(a, &format!("/big?cc=max-age%3D60&size=1000&loc=/{long}")).await;
    let cs = status_of(&r);
    assert!(!cs.contains("stored"), "{cs}");
}

#[tokio::test]
async fn stale_answers_name_the_rule_that_served_them() {
    let o = Origin::start().await;
    let l = proxy(&o, "grace = '60s'", "").await;
    let a = l.listen_addrs()[0];
    get(a, "/g?cc=max-age%3D1").await;
    get(a, "/e?cc=max-age%3D1%2C%20stale-if-error%3D60").await;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let r = get(a, "/g?cc=max-age%3D1").await;
    assert!(status_of(&r).contains("detail=grace"), "{}", status_of(&r));
    // A refresh whose answer may not be kept supersedes the stale entry all the same.
    let ns = "/ns?cc=max-age%3D1&nostore_later=1";
    assert_eq!(get(a, ns).await.text(), "/ns #1");
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let r = get(a, ns).await;
    assert!(status_of(&r).contains("detail=grace"), "{}", status_of(&r));
    let t = std::time::Instant::now();
    while o.per_path.lock().unwrap().get("/ns") != Some(&2) {
        assert!(
            t.elapsed() < Duration::from_secs(5),
            "no background refresh"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    tokio::time::sleep(Duration::from_millis(50)).await;
    let r = get(a, ns).await;
    assert_eq!(r.text(), "/ns #3", "{}", status_of(&r));
    // The response's own windows are named by their directive; a failing server's stale
    // answer is the error rule's, not the refresh rule's.
    let plain = proxy(&o, "", "").await;
    let b = plain.listen_addrs()[0];
    let sie = "/e?cc=max-age%3D1%2C%20stale-if-error%3D60";
    let swr = "/w?cc=max-age%3D1%2C%20stale-while-revalidate%3D60";
    // `s-maxage` implies `proxy-revalidate`: never served stale, its own windows included
    // (RFC 9111 4.2.4, 5.2.2.10).
    let shared_swr = "/s1?cc=s-maxage%3D1%2C%20stale-while-revalidate%3D60";
    let shared_sie = "/s2?cc=s-maxage%3D1%2C%20stale-if-error%3D60";
    for p in [sie, swr, shared_swr, shared_sie] {
        get(b, p).await;
    }
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let r = get(b, swr).await;
    assert!(
        status_of(&r).contains("detail=stale-while-revalidate"),
        "{}",
        status_of(&r)
    );
    let r = get(b, shared_swr).await;
    assert_eq!(r.text(), "/s1 #2", "{}", status_of(&r));
    o.fail.store(true, Ordering::SeqCst);
    let r = get(b, sie).await;
    assert!(
        status_of(&r).contains("fwd-status=500"),
        "{}",
        status_of(&r)
    );
    assert!(
        status_of(&r).contains("detail=stale-if-error"),
        "{}",
        status_of(&r)
    );
    let r = get(b, shared_sie).await;
    assert_eq!(r.status, 500, "{}", status_of(&r));
}

/// Bytes live on this thread, as an allocator with jemalloc-like size classes would hold them
/// (counted only while `ON` is set, so other tests' threads do not disturb the measure).
mod counting {
    use std::alloc::{GlobalAlloc, Layout, System};
    use std::cell::Cell;

    thread_local! {
        pub static LIVE: Cell<i64> = const { Cell::new(0) };
        pub static ON: Cell<bool> = const { Cell::new(false) };
    }

    /// The size class a request of `n` bytes takes: multiples of 16 up to 128, then four
    /// classes per doubling.
    fn class(n: usize) -> i64 {
        let n = n.max(8);
        if n <= 128 {
            return n.div_ceil(16) as i64 * 16;
        }
        let p = usize::BITS - (n - 1).leading_zeros();
        let step = 1usize << (p - 3);
        (n.div_ceil(step) * step) as i64
    }

    fn count(d: i64) {
        let _ = ON.try_with(|on| {
            if on.get() {
                let _ = LIVE.try_with(|l| l.set(l.get() + d));
            }
        });
    }

    pub struct Counting;

    unsafe impl GlobalAlloc for Counting {
        unsafe fn alloc(&self, l: Layout) -> *mut u8 {
            count(class(l.size()));
            unsafe { System.alloc(l) }
        }
        unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
            count(-class(l.size()));
            unsafe { System.dealloc(p, l) }
        }
        unsafe fn realloc(&self, p: *mut u8, l: Layout, n: usize) -> *mut u8 {
            count(class(n) - class(l.size()));
            unsafe { System.realloc(p, l, n) }
        }
    }
}

#[global_allocator]
static ALLOC: counting::Counting = counting::Counting;

#[test]
fn what_the_cache_holds_stays_within_a_quarter_over_max_size() {
    use langur::cache::{policy, Cache, Fill, Object};
    let max_size = 4u64 << 20;
    let typical = "content-type: text/html; charset=utf-8\r\ncache-control: public, max-age=600\r\netag: \"5f1e-6a2b\"\r\nlast-modified: Mon, 30 Nov 2026 10:00:00 GMT\r\ndate: Mon, 30 Nov 2026 10:00:00 GMT\r\nserver: origin/1.0\r\nvary: Accept-Encoding\r\nx-request-id: 0f6b2d1c-9a3e-4c1b\r\ncontent-length: 512\r\n".to_string();
    let many: String = (0..16).map(|i| format!("x-f{i}: {i}\r\n")).collect();
    for (head_text, body_len) in [
        (typical.clone(), 16usize),
        (typical, 2000),
        ("cache-control: max-age=600\r\n".to_string(), 16),
        (format!("cache-control: max-age=600\r\n{many}"), 16),
    ] {
        // A parsed response head, its values slices of the connection's read buffer as the
        // upstream client makes them.
        let head = Bytes::from(head_text + &" ".repeat(16 << 10));
        let parsed = || {
            let mut h = http::HeaderMap::new();
            let text = std::str::from_utf8(&head[..]).unwrap();
            let mut at = 0;
            for line in text.split("\r\n").take_while(|l| l.contains(':')) {
                let (name, value) = line.split_once(": ").unwrap();
                let vs = at + name.len() + 2;
                h.append(
                    http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
                    http::HeaderValue::from_maybe_shared(head.slice(vs..vs + value.len())).unwrap(),
                );
                at += line.len() + 2;
            }
            h
        };
        counting::ON.with(|o| o.set(true));
        let before = counting::LIVE.with(|l| l.get());
        let cache = Cache::new(langur::config::CacheConfig {
            max_size,
            max_object_size: 1 << 20,
            ..Default::default()
        });
        let none = http::HeaderMap::new();
        let cc = policy::CacheControl::parse(&parsed());
        let n = 2 * max_size as usize / (body_len + 600);
        for i in 0..n {
            let meta = Object::new(
                StatusCode::OK,
                policy::stored_headers(&parsed(), &cc),
                Bytes::new(),
                0,
                600,
                0,
                0,
                false,
                false,
            );
            let mut fill = Fill::new(
                cache.clone(),
                format!("http://site.example/assets/item-{i}.html"),
                none.clone(),
                meta,
                None,
            );
            // The body arrives in read-buffer slices too.
            let buf = Bytes::from(vec![b'x'; body_len + 4096]);
            assert!(fill.push(&buf.slice(..body_len)));
            fill.finish();
        }
        let live = counting::LIVE.with(|l| l.get()) - before;
        counting::ON.with(|o| o.set(false));
        let ratio = live as f64 / max_size as f64;
        assert!(cache.bytes() <= max_size);
        assert!(
            cache.stats().evictions > 0,
            "the cache was filled past its budget"
        );
        assert!(
            ratio < 1.25,
            "{body_len}-byte bodies: {live} bytes live for max_size {max_size} ({ratio:.2}x)"
        );
        drop(cache);
    }
}

#[tokio::test]
async fn bytes_a_server_sends_on_an_idle_connection_never_answer_the_next_request() {
    // A server that answers HEAD with a body, and that body is itself a response: on a reused
    // connection it would be read as the next request's answer, and stored for everyone.
    fn script(path: &str) -> (Vec<Vec<u8>>, Duration, After) {
        if path.starts_with("/head") {
            let head = b"HTTP/1.1 200 OK\r\nContent-Length: 61\r\n\r\n".to_vec();
            let evil =
                b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\nCache-Control: max-age=999\r\n\r\nEVIL"
                    .to_vec();
            return (vec![head, evil], Duration::from_millis(5), After::Stay);
        }
        let ok = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nCache-Control: max-age=60\r\n\r\nok";
        if path.starts_with("/long") {
            // Longer than it says: the rest comes a little later, as a response.
            let evil =
                b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\nCache-Control: max-age=999\r\n\r\nEVIL"
                    .to_vec();
            return (
                vec![ok.to_vec(), evil],
                Duration::from_millis(5),
                After::Stay,
            );
        }
        (vec![ok.to_vec()], Duration::ZERO, After::Stay)
    }
    let (addr, _, _) = raw_origin(script).await;
    let l = langur_toml(&format!(
        "[[route]]\nmatch = ['^/']\npool = 'o'\ncache = true\n[pools.o]\nservers = ['{addr}']\n"
    ))
    .await;
    let a = l.listen_addrs()[0];
    for i in 0..5 {
        let h = request(a, Method::HEAD, "/head", &[], body("")).await;
        assert_eq!(h.status, 200);
        tokio::time::sleep(Duration::from_millis(30)).await;
        let path = format!("/home{i}");
        let r = get(a, &path).await;
        assert_eq!(
            r.text(),
            "ok",
            "round {i}: another response's bytes were served"
        );
        let again = get(a, &path).await;
        assert_eq!(again.text(), "ok", "round {i}: and stored");
        // The same with a GET whose response is longer than announced.
        assert_eq!(get(a, &format!("/long{i}")).await.text(), "ok");
        tokio::time::sleep(Duration::from_millis(30)).await;
        let path = format!("/after-long{i}");
        assert_eq!(
            get(a, &path).await.text(),
            "ok",
            "round {i}: stray bytes after a GET"
        );
    }
}

#[tokio::test]
async fn a_304_for_another_representation_updates_nothing() {
    let o = Origin::start().await;
    let l = proxy(&o, "", "").await;
    let a = l.listen_addrs()[0];
    // The stored response is "v1"; the server's 304 names "v2" (RFC 9111 4.3.4).
    let p = "/m?cc=max-age%3D0&etag=v1&etag304=v2";
    let first = get(a, p).await;
    let second = get(a, p).await;
    assert!(
        status_of(&second).contains("detail=validator-mismatch"),
        "{}",
        status_of(&second)
    );
    assert_eq!(
        second.headers["etag"], "\"v1\"",
        "served as stored, not relabelled"
    );
    assert_eq!(second.text(), first.text());
    // The entry is gone: the next request fetches anew instead of revalidating.
    let _ = o.last_inm.lock().unwrap().take();
    let third = get(a, p).await;
    assert!(
        status_of(&third).contains("fwd=miss"),
        "{}",
        status_of(&third)
    );
    assert_eq!(o.last_inm.lock().unwrap().as_deref(), None);
}

#[tokio::test]
async fn variants_follow_the_fields_they_vary_on() {
    let o = Origin::start().await;
    let l = proxy(&o, "", "").await;
    let a = l.listen_addrs()[0];
    let p = "/va?cc=max-age%3D60&vary=x-a&echo=x-a";
    let foo = get_h(a, p, &[("x-a", "foo")]).await;
    // An empty field is not an absent one.
    let empty = get_h(a, p, &[("x-a", "")]).await;
    let absent = get_h(a, p, &[]).await;
    assert!(
        !status_of(&absent).contains("hit"),
        "{}",
        status_of(&absent)
    );
    assert_ne!(absent.text(), empty.text());
    assert_eq!(get_h(a, p, &[("x-a", "foo")]).await.text(), foo.text());
}
