//! A route's cache rules through real sockets: `cache_ttl` (freshness by status, under the
//! origin's own) and `cache_key.ignore_query` (query parameters left out of the key, never out
//! of the request).

use crate::common;

use bytes::Bytes;
use common::*;
use http::{Method, Request, Response};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::TcpListener;

/// An origin steered by the path, never by the query: `/status/NNN` answers NNN,
/// `/cc/VALUE` answers 200 with `Cache-Control: VALUE`, anything else 200; no answer carries
/// freshness of its own otherwise. The body is `TARGET #N`, N counting the requests for the
/// path, and every target received is kept as sent.
struct Origin {
    addr: SocketAddr,
    seen: Arc<Mutex<Vec<String>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Origin {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Origin {
    async fn start() -> Origin {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let per_path = Arc::new(Mutex::new(HashMap::new()));
        let (s, p) = (seen.clone(), per_path.clone());
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let (s, p) = (s.clone(), p.clone());
                tokio::spawn(async move {
                    let svc = service_fn(move |req: Request<Incoming>| {
                        let answer = answer(&req, &s, &p);
                        async move { Ok::<_, Infallible>(answer) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        Origin { addr, seen, task }
    }

    fn hits(&self) -> usize {
        self.seen.lock().unwrap().len()
    }

    fn seen(&self) -> Vec<String> {
        self.seen.lock().unwrap().clone()
    }
}

fn answer(
    req: &Request<Incoming>,
    seen: &Mutex<Vec<String>>,
    per_path: &Mutex<HashMap<String, usize>>,
) -> Response<Full<Bytes>> {
    let target = req.uri().path_and_query().unwrap().as_str().to_string();
    seen.lock().unwrap().push(target.clone());
    let path = req.uri().path().to_string();
    let n = {
        let mut m = per_path.lock().unwrap();
        let e = m.entry(path.clone()).or_insert(0);
        *e += 1;
        *e
    };
    let mut b = Response::builder().header("content-type", "text/plain");
    if let Some(code) = path.strip_prefix("/status/") {
        b = b.status(code.parse::<u16>().unwrap());
    }
    if let Some(cc) = path.strip_prefix("/cc/") {
        b = b.header("cache-control", cc);
    }
    b.body(Full::new(Bytes::from(format!("{target} #{n}"))))
        .unwrap()
}

/// langur in front of `origin`: one caching route with `rules`.
async fn proxy(origin: &Origin, rules: &str) -> langur::Langur {
    langur_toml(&format!(
        "[[route]]\nmatch = ['^/']\npool = 'o'\ncache = true\npurge = ['127.0.0.1']\n{rules}\n\
         [pools.o]\nservers = ['{}']\n",
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

/// The `ttl` parameter of `Cache-Status`.
fn ttl_of(r: &Resp) -> i64 {
    let s = status_of(r);
    let at = s.find("ttl=").unwrap_or_else(|| panic!("no ttl: {s}"));
    let digits: String = s[at + 4..]
        .chars()
        .take_while(|c| *c == '-' || c.is_ascii_digit())
        .collect();
    digits.parse().unwrap()
}

async fn purge(a: SocketAddr, target: &str) -> Resp {
    request(
        a,
        Method::from_bytes(b"PURGE").unwrap(),
        target,
        &[],
        body(""),
    )
    .await
}

#[tokio::test]
async fn cache_ttl_stores_a_404_and_a_500_for_their_time() {
    let o = Origin::start().await;
    let l = proxy(
        &o,
        "cache_ttl = { '404' = '1s', '5xx' = '1s', '200' = '1m' }",
    )
    .await;
    let a = l.listen_addrs()[0];
    for p in ["/status/404", "/status/500"] {
        let before = o.hits();
        let first = get(a, p).await;
        assert!(
            status_of(&first).contains("fwd=miss; stored; ttl=1"),
            "{p}: {}",
            status_of(&first)
        );
        let second = get(a, p).await;
        assert_eq!(second.status, first.status);
        assert_eq!(second.text(), format!("{p} #1"));
        assert!(
            status_of(&second).starts_with("langur; hit"),
            "{p}: {}",
            status_of(&second)
        );
        assert_eq!(o.hits() - before, 1, "{p}: one request reached the origin");
    }
    tokio::time::sleep(Duration::from_millis(1100)).await;
    for p in ["/status/404", "/status/500"] {
        let r = get(a, p).await;
        assert_eq!(r.text(), format!("{p} #2"), "{p}: expired, fetched again");
        assert!(status_of(&r).contains("stored"), "{}", status_of(&r));
    }
    assert_eq!(o.hits(), 4);
    // The route's time, not `default_ttl` (0 here: a 200 without freshness is otherwise not
    // stored); a status the route does not list stays unstored.
    let ok = get(a, "/status/200").await;
    assert!(
        status_of(&ok).contains("stored; ttl=60"),
        "{}",
        status_of(&ok)
    );
    let forbidden = get(a, "/status/403").await;
    assert!(
        status_of(&forbidden).contains("detail=status"),
        "{}",
        status_of(&forbidden)
    );
    get(a, "/status/403").await;
    assert_eq!(o.hits(), 7);
}

#[tokio::test]
async fn the_origins_freshness_wins_and_its_refusals_stand() {
    let o = Origin::start().await;
    let l = proxy(&o, "cache_ttl = { any = '1h' }").await;
    let a = l.listen_addrs()[0];
    // `max-age` is the origin's word: 1 s, not the route's hour.
    let p = "/cc/max-age=1";
    let first = get(a, p).await;
    assert!(
        ttl_of(&first) <= 1 && status_of(&first).contains("stored"),
        "{}",
        status_of(&first)
    );
    assert_eq!(get(a, p).await.text(), "/cc/max-age=1 #1");
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(get(a, p).await.text(), "/cc/max-age=1 #2");
    // Without freshness of its own, the route's hour.
    let status = status_of(&get(a, "/status/404").await);
    assert!(status.contains("stored; ttl=3600"), "{status}");
    let before = o.hits();
    for (p, detail) in [
        ("/cc/no-store", "detail=no-store"),
        ("/cc/private", "detail=private"),
        ("/cc/max-age=0", "detail=no-freshness"),
    ] {
        let r1 = get(a, p).await;
        let r2 = get(a, p).await;
        assert!(status_of(&r1).contains(detail), "{p}: {}", status_of(&r1));
        assert!(
            status_of(&r2).contains("fwd=miss"),
            "{p}: {}",
            status_of(&r2)
        );
        assert_eq!(r2.text(), format!("{p} #2"), "{p} is never served stored");
    }
    // `no-cache` is stored but every use asks the origin.
    get(a, "/cc/no-cache").await;
    assert_eq!(get(a, "/cc/no-cache").await.text(), "/cc/no-cache #2");
    // A request with `Cookie` keeps its answer only on the response's own explicit freshness.
    let cookie = [("cookie", "session=1")];
    let r = request(a, Method::GET, "/status/410", &cookie, body("")).await;
    assert!(
        status_of(&r).contains("detail=request-cookie"),
        "{}",
        status_of(&r)
    );
    assert_eq!(get(a, "/status/410").await.text(), "/status/410 #2");
    assert_eq!(o.hits() - before, 10);
}

#[tokio::test]
async fn ignored_parameters_share_one_entry_and_still_reach_the_origin() {
    let o = Origin::start().await;
    let l = proxy(
        &o,
        "cache_ttl = { '200' = '1m' }\ncache_key = { ignore_query = ['utm_*', 'gclid'] }",
    )
    .await;
    let a = l.listen_addrs()[0];
    let first = get(a, "/p?utm_source=a&id=1").await;
    assert!(
        status_of(&first).contains("stored"),
        "{}",
        status_of(&first)
    );
    let second = get(a, "/p?id=1&utm_source=b").await;
    assert!(
        status_of(&second).starts_with("langur; hit"),
        "{}",
        status_of(&second)
    );
    assert_eq!(second.text(), "/p?utm_source=a&id=1 #1");
    assert_eq!(get(a, "/p?id=1&gclid=z").await.text(), second.text());
    assert_eq!(get(a, "/p?id=1").await.text(), second.text());
    assert_eq!(
        o.seen(),
        ["/p?utm_source=a&id=1"],
        "the whole query, as sent"
    );
    // Another value of a kept parameter is another entry.
    assert_eq!(
        get(a, "/p?id=2&utm_source=b").await.text(),
        "/p?id=2&utm_source=b #2"
    );
    assert_eq!(o.hits(), 2);
    // A PURGE of the URL without the ignored parameters clears the shared entry (and only
    // that one).
    let r = purge(a, "/p?id=1").await;
    assert_eq!(r.text().trim(), "{\"purged\":1}");
    assert_eq!(
        get(a, "/p?utm_medium=c&id=1").await.text(),
        "/p?utm_medium=c&id=1 #3"
    );
    assert_eq!(get(a, "/p?id=2").await.text(), "/p?id=2&utm_source=b #2");
    // So does a PURGE that carries ignored parameters, and an unsafe method's success.
    let r = purge(a, "/p?gclid=q&id=1").await;
    assert_eq!(r.text().trim(), "{\"purged\":1}");
    get(a, "/p?id=1").await;
    request(a, Method::POST, "/p?id=1&utm_source=form", &[], body("x")).await;
    assert_eq!(
        get(a, "/p?id=1").await.text(),
        "/p?id=1 #6",
        "POST invalidated it"
    );
    assert_eq!(o.hits(), 6);
}

#[tokio::test]
async fn ignoring_the_whole_query_shares_one_entry() {
    let o = Origin::start().await;
    let l = proxy(
        &o,
        "cache_ttl = { '200' = '1m' }\ncache_key = { ignore_query = true }",
    )
    .await;
    let a = l.listen_addrs()[0];
    for p in ["/q?a=1", "/q?b=2&c=3", "/q", "/q?"] {
        assert_eq!(get(a, p).await.text(), "/q?a=1 #1", "{p}");
    }
    assert_eq!(o.seen(), ["/q?a=1"]);
    assert_eq!(get(a, "/other?a=1").await.text(), "/other?a=1 #1");
    let r = purge(a, "/q?z=9").await;
    assert_eq!(r.text().trim(), "{\"purged\":1}");
    assert_eq!(get(a, "/q?d=4").await.text(), "/q?d=4 #2");
    assert_eq!(o.hits(), 3);
}

#[tokio::test]
async fn a_route_without_cache_key_keeps_every_query_apart() {
    let o = Origin::start().await;
    let l = langur_toml(&format!(
        "[[route]]\nmatch = ['^/plain/']\npool = 'o'\ncache = true\n\
         [[route]]\nmatch = ['^/']\npool = 'o'\ncache = true\n\
         cache_key = {{ ignore_query = ['utm_*'] }}\n\
         [pools.o]\nservers = ['{}']\n[cache]\ndefault_ttl = '1m'\n",
        o.addr
    ))
    .await;
    let a = l.listen_addrs()[0];
    get(a, "/plain/x?utm_source=a&id=1").await;
    get(a, "/plain/x?id=1&utm_source=b").await;
    get(a, "/plain/x?id=1&utm_source=b").await;
    assert_eq!(o.hits(), 2, "two entries on the route without rules");
    get(a, "/ruled?utm_source=a&id=1").await;
    get(a, "/ruled?id=1&utm_source=b").await;
    assert_eq!(o.hits(), 3, "one entry on the route with them");
}
