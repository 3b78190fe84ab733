//! The upstream HTTP/1.1 client, against a scripted origin that writes raw bytes: framing of
//! response bodies (chunked with extensions and trailers, split byte by byte; close-delimited;
//! HTTP/1.0), informational and bodiless responses, connection reuse and its races, and the
//! framing of request bodies as the origin receives them.

mod common;

use bytes::Bytes;
use common::{get, langur_toml, raw_origin, request, After, Seen};
use futures_util::StreamExt;
use http::Method;
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::net::TcpStream;

/// The answer to a path: pieces written one by one (flushed, with `gap` between them).
fn script(path: &str) -> (Vec<Vec<u8>>, Duration, After) {
    let ok = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok".to_vec();
    let no_gap = Duration::ZERO;
    match path {
        "/dribble" => {
            let all = b"HTTP/1.1 200 OK\r\nTrailer: x-sum\r\nTransfer-Encoding: chunked\r\n\r\n\
                        5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nx-sum: 42\r\n\r\n";
            (
                all.iter().map(|b| vec![*b]).collect(),
                Duration::from_millis(1),
                After::Stay,
            )
        }
        "/close" => (
            vec![
                b"HTTP/1.1 200 OK\r\n\r\nuntil the ".to_vec(),
                b"end".to_vec(),
            ],
            Duration::from_millis(20),
            After::Close,
        ),
        "/http10" => (
            vec![b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok".to_vec()],
            no_gap,
            After::Stay,
        ),
        "/continue" => (
            vec![
                b"HTTP/1.1 100 Continue\r\n\r\n".to_vec(),
                b"HTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\n\r\n".to_vec(),
                ok,
            ],
            Duration::from_millis(5),
            After::Stay,
        ),
        "/head" => (
            vec![b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n".to_vec()],
            no_gap,
            After::Stay,
        ),
        "/204" => (
            vec![b"HTTP/1.1 204 No Content\r\n\r\n".to_vec()],
            no_gap,
            After::Stay,
        ),
        "/304" => (
            vec![b"HTTP/1.1 304 Not Modified\r\nContent-Length: 10\r\n\r\n".to_vec()],
            no_gap,
            After::Stay,
        ),
        "/big-head" => {
            let mut h = b"HTTP/1.1 200 OK\r\n".to_vec();
            for i in 0..700 {
                h.extend_from_slice(format!("x-filler-{i}: {}\r\n", "v".repeat(100)).as_bytes());
            }
            h.extend_from_slice(b"Content-Length: 2\r\n\r\nok");
            (vec![h], no_gap, After::Stay)
        }
        "/then-close" => (vec![ok], no_gap, After::Close),
        "/drop" => (vec![], no_gap, After::Close),
        _ => (vec![ok], no_gap, After::Stay),
    }
}

async fn origin() -> (SocketAddr, Seen) {
    let (addr, seen, _) = raw_origin(script).await;
    (addr, seen)
}

fn config(addr: SocketAddr) -> String {
    format!("[[route]]\nmatch = ['^/']\npool = \"p\"\n[pools.p]\nservers = [\"{addr}\"]\n")
}

fn paths(conn: &[Vec<u8>]) -> Vec<String> {
    conn.iter()
        .map(|r| {
            String::from_utf8_lossy(r)
                .split(' ')
                .nth(1)
                .unwrap_or("")
                .to_string()
        })
        .collect()
}

#[tokio::test]
async fn a_chunked_response_dribbled_byte_by_byte_arrives_whole_with_its_trailers() {
    let (addr, seen) = origin().await;
    let lg = langur_toml(&config(addr)).await;
    let at = lg.listen_addrs()[0];

    // A client that accepts trailers gets them.
    let stream = TcpStream::connect(at).await.unwrap();
    let (mut send, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .unwrap();
    tokio::spawn(conn);
    let req = http::Request::get("/dribble")
        .header("host", "t")
        .header("te", "trailers")
        .body(http_body_util::Empty::<Bytes>::new())
        .unwrap();
    let resp = send.send_request(req).await.unwrap();
    assert_eq!(resp.status(), 200);
    let collected = resp.into_body().collect().await.unwrap();
    let trailers = collected.trailers().cloned();
    assert_eq!(&collected.to_bytes()[..], b"hello world");
    assert_eq!(trailers.expect("trailers")["x-sum"], "42");

    // The connection ended cleanly, so the next request reuses it.
    assert_eq!(get(at, "/after").await.status, 200);
    let conns = seen.lock().unwrap().clone();
    assert_eq!(
        conns.len(),
        1,
        "{:?}",
        conns.iter().map(|c| paths(c)).collect::<Vec<_>>()
    );
    assert_eq!(paths(&conns[0]), ["/dribble", "/after"]);
    lg.shutdown().await;
}

#[tokio::test]
async fn close_delimited_and_http10_bodies_arrive_whole_and_their_connections_are_not_reused() {
    let (addr, seen) = origin().await;
    let lg = langur_toml(&config(addr)).await;
    let at = lg.listen_addrs()[0];
    let r = get(at, "/close").await;
    assert_eq!(
        (r.status.as_u16(), r.text().as_str()),
        (200, "until the end")
    );
    let r = get(at, "/http10").await;
    assert_eq!((r.status.as_u16(), r.text().as_str()), (200, "ok"));
    let r = get(at, "/after").await;
    assert_eq!(r.status, 200);
    let conns: Vec<Vec<String>> = seen.lock().unwrap().iter().map(|c| paths(c)).collect();
    assert_eq!(conns, [["/close"], ["/http10"], ["/after"]]);
    lg.shutdown().await;
}

#[tokio::test]
async fn informational_responses_are_skipped_and_bodiless_ones_read_no_body() {
    let (addr, seen) = origin().await;
    let lg = langur_toml(&config(addr)).await;
    let at = lg.listen_addrs()[0];
    let r = get(at, "/continue").await;
    assert_eq!((r.status.as_u16(), r.text().as_str()), (200, "ok"));
    let r = request(at, Method::HEAD, "/head", &[], common::body("")).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.headers["content-length"], "5");
    assert_eq!(get(at, "/204").await.status, 204);
    // A 304 says how long the body would be, and has none.
    let r = tokio::time::timeout(Duration::from_secs(2), get(at, "/304"))
        .await
        .expect("a 304 must not wait for a body");
    assert_eq!(r.status, 304);
    assert_eq!(get(at, "/after").await.status, 200);
    let conns: Vec<Vec<String>> = seen.lock().unwrap().iter().map(|c| paths(c)).collect();
    assert_eq!(
        conns,
        [["/continue", "/head", "/204", "/304", "/after"]],
        "every one of these leaves the connection reusable"
    );
    lg.shutdown().await;
}

#[tokio::test]
async fn a_server_closing_idle_connections_costs_no_request_and_no_failure() {
    let (addr, seen) = origin().await;
    let lg = langur_toml(&config(addr)).await;
    let at = lg.listen_addrs()[0];
    // The origin closes right after each response without saying so: the next request finds
    // the idle connection closed (or races with the close) and must still be served.
    for i in 0..30 {
        let r = get(at, "/then-close").await;
        assert_eq!(r.status, 200, "request {i}: {}", r.text());
        if i % 3 == 0 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    let conns = seen.lock().unwrap().clone();
    assert!(conns.iter().all(|c| c.len() == 1));
    let rt = lg.shared().runtime.load();
    let server = &rt.pools[0].servers[0];
    let errors = server.errors.load(std::sync::atomic::Ordering::SeqCst);
    let failed = server
        .connect_failures_total
        .load(std::sync::atomic::Ordering::SeqCst);
    assert_eq!(
        (errors, failed),
        (0, 0),
        "a closed idle connection counted against the server"
    );
    drop(rt);
    lg.shutdown().await;
}

#[tokio::test]
async fn an_oversized_response_head_is_a_502() {
    let (addr, _) = origin().await;
    let lg = langur_toml(&config(addr)).await;
    let at = lg.listen_addrs()[0];
    assert_eq!(get(at, "/big-head").await.status, 502);
    assert_eq!(get(at, "/after").await.status, 200);
    lg.shutdown().await;
}

#[tokio::test]
async fn request_bodies_keep_their_framing_upstream() {
    let (addr, seen) = origin().await;
    let lg = langur_toml(&config(addr)).await;
    let at = lg.listen_addrs()[0];

    // A body with a length goes with that length.
    let r = request(at, Method::POST, "/len", &[], common::body("hello")).await;
    assert_eq!(r.status, 200);

    // A body with trailers goes chunked, with them (one without would get a length: it is
    // read ahead whole when it is short).
    let frames: Vec<Result<Frame<Bytes>, hyper::Error>> = vec![
        Ok(Frame::data(Bytes::from_static(b"ab"))),
        Ok(Frame::data(Bytes::from_static(b"cde"))),
        Ok(Frame::trailers({
            let mut t = http::HeaderMap::new();
            t.insert("x-check", "7".parse().unwrap());
            t
        })),
    ];
    let stream = futures_util::stream::iter(frames).then(|f| async move {
        tokio::time::sleep(Duration::from_millis(10)).await;
        f
    });
    let body = http_body_util::combinators::BoxBody::new(StreamBody::new(stream));
    let r = request(
        at,
        Method::POST,
        "/chunked",
        &[("trailer", "x-check")],
        body,
    )
    .await;
    assert_eq!(r.status, 200);

    // An empty POST says so.
    let r = request(at, Method::POST, "/empty", &[], common::body("")).await;
    assert_eq!(r.status, 200);

    let all: Vec<String> = seen
        .lock()
        .unwrap()
        .iter()
        .flatten()
        .map(|r| String::from_utf8_lossy(r).to_lowercase())
        .collect();
    let find = |p: &str| all.iter().find(|r| r.contains(p)).unwrap().clone();
    let len = find("/len");
    assert!(
        len.contains("content-length: 5\r\n") && len.ends_with("\r\n\r\nhello"),
        "{len}"
    );
    let chunked = find("/chunked");
    assert!(
        chunked.contains("transfer-encoding: chunked\r\n"),
        "{chunked}"
    );
    assert!(
        chunked.ends_with("\r\n\r\n2\r\nab\r\n3\r\ncde\r\n0\r\nx-check: 7\r\n\r\n"),
        "{chunked:?}"
    );
    let empty = find("/empty");
    assert!(empty.contains("content-length: 0\r\n"), "{empty}");
    lg.shutdown().await;
}

#[tokio::test]
async fn a_request_the_server_dropped_unanswered_is_resent_only_if_idempotent() {
    let (addr, seen) = origin().await;
    let lg = langur_toml(&config(addr)).await;
    let at = lg.listen_addrs()[0];
    // A POST on a reused connection that the server closes without a word: 502, sent once.
    assert_eq!(get(at, "/warm").await.status, 200);
    let r = request(at, Method::POST, "/drop", &[], common::body("x")).await;
    assert_eq!(r.status, 502);
    // A GET is sent again, on a fresh connection (which the server drops too).
    assert_eq!(get(at, "/warm").await.status, 200);
    let r = get(at, "/drop").await;
    assert_eq!(r.status, 502);
    let conns: Vec<Vec<String>> = seen.lock().unwrap().iter().map(|c| paths(c)).collect();
    assert_eq!(
        conns,
        [
            vec!["/warm", "/drop"],
            vec!["/warm", "/drop"],
            vec!["/drop"]
        ]
    );
    lg.shutdown().await;
}

#[tokio::test]
async fn a_reload_closes_the_idle_connections_of_the_servers_it_replaced() {
    let (addr, seen, closed) = raw_origin(script).await;
    let dir = std::env::temp_dir().join(format!("langur-h1-reload-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("langur.toml");
    std::fs::write(
        &path,
        format!("[server]\naccess_log = false\n{}", config(addr)),
    )
    .unwrap();
    let lg = common::start(langur::config::load(&path).unwrap()).await;
    let at = lg.listen_addrs()[0];
    assert_eq!(get(at, "/a").await.status, 200);
    assert_eq!(closed.load(std::sync::atomic::Ordering::SeqCst), 0);
    // The reload builds new server objects; the old one goes, and its idle connection with it.
    langur::server::reload(lg.shared()).expect("reload");
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while closed.load(std::sync::atomic::Ordering::SeqCst) == 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "the replaced server's idle connection was never closed"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(get(at, "/b").await.status, 200);
    assert_eq!(seen.lock().unwrap().len(), 2);
    lg.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
}
