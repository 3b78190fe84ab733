//! The proxy core end to end: routing, balancing, high availability, forwarding, loops.

use crate::common;

use common::*;
use http::Method;
use std::time::{Duration, Instant};
use tokio::net::TcpListener;

fn count(v: &[String], name: &str) -> usize {
    v.iter().filter(|x| x.as_str() == name).count()
}

/// The reference's legacy example, with its loopback ports replaced by in-process backends.
#[tokio::test]
async fn legacy_example_routes_and_balances() {
    let mut text = std::fs::read_to_string("examples/proxy_reverse.conf").unwrap();
    let mut backends = Vec::new();
    for port in 9001..=9005 {
        let b = Backend::start(&format!("host{}", port - 9000)).await;
        text = text.replace(&format!("127.0.0.1:{port}"), &b.addr.to_string());
        backends.push(b);
    }
    let lg = langur_legacy(&text).await;
    let at = lg.listen_addrs()[0];

    // .php: First-Alive over host4, host5 -> always host4 while it lives
    for _ in 0..5 {
        let r = get(at, "/index.php?x=1").await;
        assert_eq!(r.status, 200);
        assert_eq!(r.backend(), "host4");
    }
    // static: Round-Robin over the trio, exactly 10 each of 30
    let mut seen = Vec::new();
    for i in 0..30 {
        let path = ["/a.jpg", "/b.png", "/c.css", "/d.js", "/e.html"][i % 5];
        let r = get(at, path).await;
        assert_eq!(r.status, 200, "{path}");
        seen.push(r.backend());
    }
    for name in ["host1", "host2", "host3"] {
        assert_eq!(count(&seen, name), 10, "{seen:?}");
    }
    // nothing matches
    let r = get(at, "/readme.txt").await;
    assert_eq!(r.status, 404);
    assert!(r.text().contains("no route"));
    lg.shutdown().await;
}

async fn weighted_run(lg: &langur::Langur, names: [&str; 3]) {
    let at = lg.listen_addrs()[0];
    let mut seen = Vec::new();
    for _ in 0..60 {
        seen.push(get(at, "/").await.backend());
    }
    assert_eq!(count(&seen, names[0]), 30, "{seen:?}");
    assert_eq!(count(&seen, names[1]), 10, "{seen:?}");
    assert_eq!(count(&seen, names[2]), 20, "{seen:?}");
    for w in seen.windows(3) {
        assert!(
            !(w[0] == w[1] && w[1] == w[2]),
            "three in a row on one server: {seen:?}"
        );
    }
}

#[tokio::test]
async fn weighted_round_robin_by_repetition_and_by_weight() {
    let (a, b, c) = (
        Backend::start("a").await,
        Backend::start("b").await,
        Backend::start("c").await,
    );
    // The reference's way: a listed 3 times, c twice, b once.
    let legacy = format!(
        "[PROXY_ENTRY]\nServerList {a} {c} {a} {b} {a} {c}\nLoadBalancer RoundRobin\nMatch ^/.*\n",
        a = a.addr,
        b = b.addr,
        c = c.addr
    );
    let lg = langur_legacy(&legacy).await;
    weighted_run(&lg, ["a", "b", "c"]).await;
    lg.shutdown().await;

    let toml = format!(
        "[[route]]\nmatch = ['^/']\npool = \"w\"\n[pools.w]\nbalance = \"round-robin\"\nserver = [{{ address = \"{}\", weight = 3 }}, {{ address = \"{}\", weight = 1 }}, {{ address = \"{}\", weight = 2 }}]\n",
        a.addr, b.addr, c.addr
    );
    let lg = langur_toml(&toml).await;
    weighted_run(&lg, ["a", "b", "c"]).await;
    lg.shutdown().await;
}

#[tokio::test]
async fn least_connections_avoids_a_server_holding_slow_requests() {
    let (a, b) = (Backend::start("a").await, Backend::start("b").await);
    let toml = format!(
        "[[route]]\nmatch = ['^/']\npool = \"p\"\n[pools.p]\nbalance = \"least-connections\"\nservers = [\"{}\", \"{}\"]\n",
        a.addr, b.addr
    );
    let lg = langur_toml(&toml).await;
    let at = lg.listen_addrs()[0];
    let slow = tokio::spawn(async move { get(at, "/slow/1500").await });
    // wait until the slow request is held by one backend
    let t0 = Instant::now();
    while a.in_flight.load(std::sync::atomic::Ordering::SeqCst)
        + b.in_flight.load(std::sync::atomic::Ordering::SeqCst)
        == 0
    {
        assert!(t0.elapsed() < Duration::from_secs(5));
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let busy = if a.in_flight.load(std::sync::atomic::Ordering::SeqCst) == 1 {
        "a"
    } else {
        "b"
    };
    for _ in 0..10 {
        let r = get(at, "/").await;
        assert_ne!(
            r.backend(),
            busy,
            "a new request went to the server holding the slow one"
        );
    }
    assert_eq!(slow.await.unwrap().backend(), busy);
    lg.shutdown().await;
}

fn server_stats(lg: &langur::Langur, pool: usize, server: usize) -> (u32, u64) {
    let rt = lg.shared().runtime.load();
    let s = &rt.pools[pool].servers[server];
    (
        s.consecutive_failures(),
        s.connect_failures_total
            .load(std::sync::atomic::Ordering::SeqCst),
    )
}

#[tokio::test]
async fn dead_server_is_skipped_then_left_alone_then_retried_once() {
    let dead = dead_addr().await;
    let (a, b) = (Backend::start("a").await, Backend::start("b").await);
    let toml = format!(
        "[defaults]\nattempts = 2\noffline_timeout = \"700ms\"\n[[route]]\nmatch = ['^/']\npool = \"p\"\n[pools.p]\nbalance = \"round-robin\"\nservers = [\"{dead}\", \"{}\", \"{}\"]\n",
        a.addr, b.addr
    );
    let lg = langur_toml(&toml).await;
    let at = lg.listen_addrs()[0];

    // No client-visible error while the dead server is skipped.
    for _ in 0..12 {
        let r = get(at, "/").await;
        assert_eq!(r.status, 200);
        assert!(r.backend() == "a" || r.backend() == "b");
    }
    // It took exactly `attempts` failed connects to mark it offline; then no more connects.
    assert_eq!(server_stats(&lg, 0, 0), (2, 2));
    let mut joins = Vec::new();
    for _ in 0..20 {
        joins.push(tokio::spawn(async move { get(at, "/").await.status }));
    }
    for j in joins {
        assert_eq!(j.await.unwrap(), 200);
    }
    assert_eq!(
        server_stats(&lg, 0, 0).1,
        2,
        "an offline server was connected to"
    );

    // After offline_timeout, exactly one request tries it (even with many at once).
    tokio::time::sleep(Duration::from_millis(800)).await;
    let mut joins = Vec::new();
    for _ in 0..20 {
        joins.push(tokio::spawn(async move { get(at, "/").await.status }));
    }
    for j in joins {
        assert_eq!(j.await.unwrap(), 200);
    }
    assert_eq!(
        server_stats(&lg, 0, 0).1,
        3,
        "the retry must be a single connect"
    );

    // Now bring the server up on that port: while still offline it gets nothing; after the
    // timeout one request tries it, succeeds, and it is back in rotation.
    let listener = TcpListener::bind(dead).await.unwrap();
    let revived = Backend::start_on("revived", listener);
    for _ in 0..6 {
        assert_eq!(get(at, "/").await.status, 200);
    }
    assert_eq!(
        revived.conns.load(std::sync::atomic::Ordering::SeqCst),
        0,
        "connected while offline"
    );
    tokio::time::sleep(Duration::from_millis(800)).await;
    let mut seen = Vec::new();
    for _ in 0..9 {
        seen.push(get(at, "/").await.backend());
    }
    assert!(count(&seen, "revived") >= 2, "{seen:?}");
    assert_eq!(server_stats(&lg, 0, 0).0, 0, "a success resets the count");
    // Both transitions are in the health log, once each, in the same words as health checks.
    let events = lg.shared().events.recent();
    assert_eq!(events.len(), 2, "{events:?}");
    assert_eq!(events[1].to, langur::backend::health::Health::Down);
    assert!(
        events[1].reason.contains("2 consecutive failed connects"),
        "{}",
        events[1].reason
    );
    assert_eq!(events[0].to, langur::backend::health::Health::Up);
    lg.shutdown().await;
}

#[tokio::test]
async fn all_servers_dead_gives_503_quickly() {
    let (d1, d2) = (dead_addr().await, dead_addr().await);
    let toml = format!(
        "[[route]]\nmatch = ['^/']\npool = \"p\"\n[pools.p]\nattempts = 1\nservers = [\"{d1}\", \"{d2}\"]\n"
    );
    let lg = langur_toml(&toml).await;
    let at = lg.listen_addrs()[0];
    for _ in 0..3 {
        let t0 = Instant::now();
        let r = get(at, "/x").await;
        assert_eq!(r.status, 503);
        assert!(r.text().contains("no server was available"), "{}", r.text());
        assert!(
            t0.elapsed() < Duration::from_millis(500),
            "took {:?}",
            t0.elapsed()
        );
    }
    lg.shutdown().await;
}

#[tokio::test]
async fn a_post_that_reached_a_dying_server_is_not_replayed() {
    let (dying, swallowed) = swallowing_backend().await;
    let other = Backend::start("other").await;
    let toml = format!(
        "[[route]]\nmatch = ['^/']\npool = \"p\"\n[pools.p]\nbalance = \"first-alive\"\nservers = [\"{dying}\", \"{}\"]\n",
        other.addr
    );
    let lg = langur_toml(&toml).await;
    let at = lg.listen_addrs()[0];
    let r = request(
        at,
        Method::POST,
        "/order",
        &[("content-type", "text/plain")],
        body("pay 10 EUR"),
    )
    .await;
    assert_eq!(r.status, 502);
    assert_eq!(swallowed.load(std::sync::atomic::Ordering::SeqCst), 1);
    assert_eq!(other.hits(), 0, "the POST was sent a second time");
    lg.shutdown().await;
}

#[tokio::test]
async fn hop_by_hop_headers_are_stripped_and_forwarding_headers_added() {
    let b = Backend::start("b").await;
    let toml = format!(
        "[server]\nname = \"edge-7\"\n[[route]]\nmatch = ['^/']\npool = \"p\"\n[pools.p]\nservers = [\"{}\"]\n",
        b.addr
    );
    let lg = langur_toml(&toml).await;
    let at = lg.listen_addrs()[0];
    let r = request(
        at,
        Method::GET,
        "/headers",
        &[
            ("connection", "keep-alive, x-private"),
            ("x-private", "secret"),
            ("keep-alive", "timeout=5"),
            ("proxy-connection", "keep-alive"),
            ("te", "gzip"),
            ("upgrade", "foo/2"),
            ("x-forwarded-for", "203.0.113.9"),
            ("x-forwarded-proto", "https"),
            ("x-end-to-end", "kept"),
        ],
        body(""),
    )
    .await;
    assert_eq!(r.status, 200);
    let h = b.last_headers.lock().unwrap().clone().unwrap();
    for gone in [
        "x-private",
        "keep-alive",
        "proxy-connection",
        "te",
        "upgrade",
    ] {
        assert!(!h.contains_key(gone), "{gone} reached the backend");
    }
    assert_ne!(
        h.get("connection").map(|v| v.to_str().unwrap()),
        Some("keep-alive, x-private")
    );
    assert_eq!(h["x-end-to-end"], "kept");
    assert_eq!(h["host"], "test.local");
    // A client's own forwarding fields are replaced (it is no trusted proxy).
    assert_eq!(h["x-forwarded-for"], "127.0.0.1");
    assert_eq!(h["x-forwarded-proto"], "http");
    assert_eq!(h["x-forwarded-host"], "test.local");
    assert_eq!(h["via"], "1.1 edge-7");
    lg.shutdown().await;
}

#[tokio::test]
async fn a_request_looping_back_into_the_proxy_ends_with_508_after_one_hop() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let me = listener.local_addr().unwrap();
    let toml =
        format!("[[route]]\nmatch = ['^/']\npool = \"p\"\n[pools.p]\nservers = [\"{me}\"]\n");
    let mut config = langur::config::parse_str("t.toml", &toml, true).unwrap();
    config.server.listen = vec![me];
    assert_eq!(
        config.self_loop_warnings().len(),
        1,
        "check warns about the loop"
    );
    config.server.access_log = false;
    let lg = langur::Langur::start_on(config, vec![listener], None)
        .await
        .unwrap();
    let t0 = Instant::now();
    let r = get(me, "/loop").await;
    assert_eq!(r.status, 508);
    assert!(r.text().contains("Loop Detected"));
    assert!(t0.elapsed() < Duration::from_secs(2));
    let rt = lg.shared().runtime.load();
    assert_eq!(
        rt.pools[0].servers[0]
            .requests
            .load(std::sync::atomic::Ordering::SeqCst),
        1,
        "exactly one hop"
    );
    drop(rt);
    lg.shutdown().await;
}

#[tokio::test]
async fn upstream_connections_are_reused() {
    let b = Backend::start("b").await;
    let toml = format!(
        "[[route]]\nmatch = ['^/']\npool = \"p\"\n[pools.p]\nservers = [\"{}\"]\n",
        b.addr
    );
    let lg = langur_toml(&toml).await;
    let at = lg.listen_addrs()[0];
    for _ in 0..20 {
        assert_eq!(get(at, "/").await.status, 200);
    }
    assert_eq!(b.hits(), 20);
    assert_eq!(
        b.conns.load(std::sync::atomic::Ordering::SeqCst),
        1,
        "one upstream connection for sequential requests"
    );
    lg.shutdown().await;
}

#[tokio::test]
async fn head_chunked_trailers_and_expect_continue_pass_through() {
    let b = Backend::start("b").await;
    let toml = format!(
        "[[route]]\nmatch = ['^/']\npool = \"p\"\n[pools.p]\nservers = [\"{}\"]\n",
        b.addr
    );
    let lg = langur_toml(&toml).await;
    let at = lg.listen_addrs()[0];
    let wait = Duration::from_secs(3);

    // HEAD keeps Content-Length and sends no body; the connection stays usable.
    let out = raw(
        at,
        b"HEAD /head HTTP/1.1\r\nHost: x\r\n\r\nGET /plain HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        wait,
    )
    .await;
    assert!(out.starts_with("HTTP/1.1 200"), "{out}");
    assert!(
        out.to_ascii_lowercase().contains("content-length: 1234"),
        "{out}"
    );
    let second = out
        .find("HTTP/1.1 200")
        .map(|i| &out[i + 5..])
        .and_then(|s| s.find("HTTP/1.1 200"));
    assert!(
        second.is_some(),
        "the second response follows directly: {out}"
    );
    assert!(out.ends_with('b'), "{out}");

    // Chunked request with trailers; chunked response with trailers (client sent TE: trailers).
    let out = raw(
        at,
        b"POST /trailers HTTP/1.1\r\nHost: x\r\nTE: trailers\r\nTrailer: x-checksum\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\nx-checksum: 42\r\n\r\n",
        wait,
    )
    .await;
    assert!(out.starts_with("HTTP/1.1 200"), "{out}");
    assert!(out.contains("hello world"), "{out}");
    assert!(
        out.to_ascii_lowercase().contains("x-checksum: 42"),
        "trailer lost: {out}"
    );

    // Expect: 100-continue: the client gets 100 before sending its body.
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(at).await.unwrap();
    s.write_all(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nExpect: 100-continue\r\nConnection: close\r\n\r\n").await.unwrap();
    let mut buf = vec![0u8; 256];
    let n = tokio::time::timeout(wait, s.read(&mut buf))
        .await
        .unwrap()
        .unwrap();
    let first = String::from_utf8_lossy(&buf[..n]).to_string();
    assert!(first.starts_with("HTTP/1.1 100 Continue"), "{first}");
    s.write_all(b"ping").await.unwrap();
    let mut rest = Vec::new();
    let _ = tokio::time::timeout(wait, s.read_to_end(&mut rest)).await;
    let rest = first + &String::from_utf8_lossy(&rest);
    assert!(rest.contains("HTTP/1.1 200"), "{rest}");
    assert!(rest.ends_with("ping"), "{rest}");
    lg.shutdown().await;
}

#[tokio::test]
async fn the_path_a_route_matches_is_the_path_the_server_gets() {
    let b = Backend::start("b").await;
    let lg = langur_toml(&format!(
        "[[route]]\nmatch = ['^/public/']\npool = 'p'\n[pools.p]\nservers = ['{}']\n",
        b.addr
    ))
    .await;
    let at = lg.listen_addrs()[0];
    let wait = Duration::from_secs(3);
    let status = |out: &str| out.split(' ').nth(1).unwrap_or("").to_string();
    // Dot-segments (raw or encoded) are resolved before routing: /admin has no route.
    for target in [
        "/public/../admin/users",
        "/public/%2e%2e/admin/users",
        "/public/%2E%2E/admin/users",
        "/public/./../admin",
    ] {
        let req = format!("GET {target} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
        let out = raw(at, req.as_bytes(), wait).await;
        assert_eq!(status(&out), "404", "{target}: {out}");
    }
    // Targets servers read in ways no normalisation predicts are refused.
    for target in [
        "/public/..;/admin",
        "/public/%5c..%5cadmin",
        "/public/a%00b",
        "/public/%zz",
    ] {
        let req = format!("GET {target} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
        let out = raw(at, req.as_bytes(), wait).await;
        assert_eq!(status(&out), "400", "{target}: {out}");
    }
    assert_eq!(b.hits.load(std::sync::atomic::Ordering::SeqCst), 0);
    // What is routed is forwarded in the same normal form; the query is left as sent.
    let req =
        b"GET /public/a/./b/../%7ec%2f?q=/../x HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
    let out = raw(at, req, wait).await;
    assert_eq!(status(&out), "200", "{out}");
    let got = b.arrivals.lock().unwrap().last().unwrap().1.clone();
    assert_eq!(got, "/public/a/~c%2F?q=/../x");
    lg.shutdown().await;
}

#[tokio::test]
async fn http2_cookies_reach_an_http1_server_as_one_field() {
    use bytes::Bytes;
    use http_body_util::{BodyExt, Full};
    use hyper_util::rt::{TokioExecutor, TokioIo};
    let (b, lg) = in_front("h2c = true").await;
    let at = lg.listen_addrs()[0];
    let io = TokioIo::new(tokio::net::TcpStream::connect(at).await.unwrap());
    let (mut send, conn) =
        hyper::client::conn::http2::handshake::<_, _, Full<Bytes>>(TokioExecutor::new(), io)
            .await
            .unwrap();
    tokio::spawn(conn);
    let ask = |extra: &[(&'static str, &'static str)]| {
        let mut req = http::Request::builder().uri("http://site.example/headers");
        for (k, v) in extra {
            req = req.header(*k, *v);
        }
        req.body(Full::new(Bytes::new())).unwrap()
    };
    let resp = send
        .send_request(ask(&[
            ("cookie", "a=1"),
            ("cookie", "b=2"),
            ("cookie", "c=3"),
        ]))
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let _ = resp.into_body().collect().await;
    let seen = b.last_headers.lock().unwrap().clone().unwrap();
    let cookies: Vec<_> = seen.get_all("cookie").iter().collect();
    assert_eq!(cookies, ["a=1; b=2; c=3"]);
    assert_eq!(seen["host"], "site.example", "Host from :authority");
    // A host naming another authority than :authority, and a padded value, are malformed.
    for bad in [[("host", "other.example")], [("x-pad", " value")]] {
        let resp = send.send_request(ask(&bad)).await.unwrap();
        assert_eq!(resp.status(), 400, "{bad:?}");
    }
    lg.shutdown().await;
}

/// An HTTP/1.0 request without `Host` reaches the server with the pool's name for it (as
/// nginx's `$proxy_host`): servers refuse an HTTP/1.1 request with an empty one. A `Host` the
/// client sent, or a rule set, is kept.
#[tokio::test]
async fn an_http10_request_without_host_reaches_the_server_with_the_pools_name_for_it() {
    let (b, lg) = in_front("").await;
    let at = lg.listen_addrs()[0];
    // (head, Host sent, X-Forwarded-Host sent)
    for (head, want, named) in [
        ("GET /x HTTP/1.0\r\n\r\n", b.addr.to_string(), None),
        (
            "GET /x HTTP/1.0\r\nHost: mine\r\n\r\n",
            "mine".into(),
            Some("mine"),
        ),
        (
            "GET http://abs.example/x HTTP/1.0\r\n\r\n",
            "abs.example".into(),
            Some("abs.example"),
        ),
    ] {
        let out = raw(at, head.as_bytes(), Duration::from_secs(3)).await;
        assert!(
            out.starts_with("HTTP/1.0 200") || out.starts_with("HTTP/1.1 200"),
            "{out}"
        );
        let seen = b.last_headers.lock().unwrap().clone().unwrap();
        assert_eq!(seen.get_all("host").iter().count(), 1, "{seen:?}");
        assert_eq!(seen["host"], want.as_str(), "{head}");
        // The forwarded host is the client's, and none when it named none.
        assert_eq!(
            seen.get("x-forwarded-host").map(|v| v.to_str().unwrap()),
            named,
            "{head}"
        );
    }
    lg.shutdown().await;
    // A rule's `Host` wins.
    let b = Backend::start("b").await;
    let lg = langur_toml(&format!(
        "[[route]]\nmatch = ['^/r']\npool = 'p'\nrequest_headers = {{ set = {{ Host = 'ruled' }} }}\n\
         [[route]]\nmatch = ['^/']\npool = 'p'\n[pools.p]\nservers = ['{}']\n",
        b.addr
    ))
    .await;
    let at = lg.listen_addrs()[0];
    raw(at, b"GET /r HTTP/1.0\r\n\r\n", Duration::from_secs(3)).await;
    let seen = b.last_headers.lock().unwrap().clone().unwrap();
    assert_eq!(seen["host"], "ruled");
    assert!(!seen.contains_key("x-forwarded-host"), "{seen:?}");
}

#[tokio::test]
async fn request_trailers_a_server_could_merge_into_the_head_are_dropped() {
    let (_b, lg) = in_front("").await;
    let at = lg.listen_addrs()[0];
    let out = raw(
        at,
        b"POST /trailers HTTP/1.1\r\nHost: x\r\nTE: trailers\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n3\r\nabc\r\n0\r\nx-checksum: 42\r\nContent-Length: 50\r\nHost: evil\r\nX-HTTP-Method-Override: DELETE\r\nX_Forwarded_Prefix: //evil\r\n\r\n",
        Duration::from_secs(3),
    )
    .await;
    let lower = out.to_ascii_lowercase();
    assert!(lower.starts_with("http/1.1 200"), "{out}");
    assert!(
        lower.contains("x-checksum: 42"),
        "an ordinary trailer passes: {out}"
    );
    for gone in [
        "host: evil",
        "content-length: 50",
        "x-http-method-override",
        "x_forwarded_prefix",
    ] {
        assert!(!lower.contains(gone), "{gone} reached the server: {out}");
    }
    lg.shutdown().await;
}

/// A backend and langur in front of it: every path to it, `server` the lines of `[server]`.
async fn in_front(server: &str) -> (Backend, langur::Langur) {
    let b = Backend::start("b").await;
    let lg = langur_toml(&format!(
        "[server]\n{server}\n[[route]]\nmatch = ['^/']\npool = 'p'\n[pools.p]\nservers = ['{}']\n",
        b.addr
    ))
    .await;
    (b, lg)
}
