//! The upstream HTTP/1.1 client, against a scripted origin that writes raw bytes: framing of
//! response bodies (chunked with extensions and trailers, split byte by byte; close-delimited;
//! HTTP/1.0), informational and bodiless responses, connection reuse and its races, and the
//! framing of request bodies as the origin receives them.

use crate::common;

use bytes::Bytes;
use common::{get, langur_toml, raw_origin, request, After, Seen};
use futures_util::StreamExt;
use http::Method;
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::Notify;

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
        // Closes right after answering a HEAD, without `Connection: close`.
        "/head-then-close" => (
            vec![b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n".to_vec()],
            no_gap,
            After::Close,
        ),
        // Switches to a protocol nobody asked for.
        "/switch-h2c" => (
            vec![
                b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n\r\n"
                    .to_vec(),
            ],
            no_gap,
            After::Stay,
        ),
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
    // Every one of these leaves the connection reusable except HEAD, 204 and 304: a server
    // that sends a body there anyway would have it read as the next request's response.
    assert_eq!(
        conns,
        [
            vec!["/continue", "/head"],
            vec!["/204"],
            vec!["/304"],
            vec!["/after"]
        ],
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
    let dir = crate::common::Scratch::new("h1-reload");
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
}

/// Writes `raw` on a new connection and reads until langur closes it (or 5 s pass).
async fn exchange(at: SocketAddr, raw: &[u8]) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = TcpStream::connect(at).await.unwrap();
    s.write_all(raw).await.unwrap();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).to_string()
}

/// The case: the server closes right after answering a HEAD (without saying so), and
/// the client's pipelined POST, which cannot be sent twice, must not go on that connection.
/// It goes on one whose liveness the kernel confirmed just before, or a new one: 30 of 30
/// POSTs are answered, each sent once.
#[tokio::test]
async fn a_post_never_goes_on_a_connection_the_server_just_closed() {
    let (addr, seen) = origin().await;
    let lg = langur_toml(&config(addr)).await;
    let at = lg.listen_addrs()[0];
    let mut failures = Vec::new();
    for i in 0..30 {
        let out = exchange(
            at,
            b"HEAD /head-then-close HTTP/1.1\r\nHost: x\r\n\r\n\
              POST /posted HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello",
        )
        .await;
        let statuses: Vec<&str> = out
            .split("HTTP/1.1 ")
            .skip(1)
            .map(|r| r.get(..3).unwrap_or(""))
            .collect();
        if statuses != ["200", "200"] {
            failures.push(format!("run {i}: {statuses:?}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    let posts = seen
        .lock()
        .unwrap()
        .iter()
        .flat_map(|c| paths(c))
        .filter(|p| p == "/posted")
        .count();
    assert_eq!(posts, 30, "a POST was sent twice or not at all");
    lg.shutdown().await;
}

/// `Upgrade: h2c` is not tunnelled (only WebSocket is): the request is served as a plain one,
/// without its upgrade fields. A server that switches to a protocol the client did not ask
/// for gets a 502.
#[tokio::test]
async fn only_websocket_upgrades_are_tunnelled() {
    let (addr, seen) = origin().await;
    let lg = langur_toml(&config(addr)).await;
    let at = lg.listen_addrs()[0];
    let out = exchange(
        at,
        b"GET /plain HTTP/1.1\r\nHost: x\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\n\
          HTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n\r\n\
          GET /after HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(out.starts_with("HTTP/1.1 200 "), "{out}");
    assert_eq!(out.matches("HTTP/1.1 200 ").count(), 2, "{out}");
    let sent: Vec<String> = seen
        .lock()
        .unwrap()
        .concat()
        .iter()
        .map(|r| String::from_utf8_lossy(r).to_ascii_lowercase())
        .collect();
    assert_eq!(sent.len(), 2, "{sent:?}");
    for field in ["upgrade", "http2-settings"] {
        assert!(
            !sent[0].contains(field),
            "{field} was forwarded: {}",
            sent[0]
        );
    }
    // A WebSocket handshake answered with a switch to h2c.
    let out = exchange(
        at,
        b"GET /switch-h2c HTTP/1.1\r\nHost: x\r\nConnection: Upgrade, close\r\nUpgrade: websocket\r\n\
          Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n",
    )
    .await;
    assert!(out.starts_with("HTTP/1.1 502 "), "{out}");
    lg.shutdown().await;
}

/// What the `Expect` origin saw of a request.
#[derive(Debug, Default, Clone)]
struct Seen100 {
    head: String,
    body_bytes: usize,
}

/// An origin for `Expect: 100-continue`: `/refuse` answers 413 on the head alone; `/accept`
/// answers 100 after 300 ms, reads the body and says how long it was; `/ignore` never sends
/// 100, reads the body and says how long it was; `/early` answers 200 at once and echoes the
/// body as it comes.
async fn expect_origin() -> (SocketAddr, std::sync::Arc<std::sync::Mutex<Vec<Seen100>>>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let seen: std::sync::Arc<std::sync::Mutex<Vec<Seen100>>> = Default::default();
    let log = seen.clone();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            let log = log.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut tmp = [0u8; 8192];
                let end = loop {
                    if let Some(e) = common::find(&buf, b"\r\n\r\n") {
                        break e + 4;
                    }
                    match s.read(&mut tmp).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&tmp[..n]),
                    }
                };
                let head = String::from_utf8_lossy(&buf[..end]).to_string();
                let len = common::content_length(&buf[..end]);
                let i = {
                    let mut v = log.lock().unwrap();
                    v.push(Seen100 {
                        head: head.clone(),
                        body_bytes: buf.len() - end,
                    });
                    v.len() - 1
                };
                let path = head.split(' ').nth(1).unwrap_or("").to_string();
                if path == "/refuse" {
                    let _ = s
                        .write_all(b"HTTP/1.1 413 Content Too Large\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
                        .await;
                    // Whatever still comes is counted.
                    while let Ok(n) = s.read(&mut tmp).await {
                        if n == 0 {
                            break;
                        }
                        log.lock().unwrap()[i].body_bytes += n;
                    }
                    return;
                }
                if path == "/accept" {
                    tokio::time::sleep(Duration::from_millis(300)).await;
                    let _ = s.write_all(b"HTTP/1.1 100 Continue\r\n\r\n").await;
                }
                if path == "/early" {
                    // A streaming server: the head at once, then the body echoed as it comes.
                    let head = format!("HTTP/1.1 200 OK\r\nContent-Length: {len}\r\n\r\n");
                    let _ = s.write_all(head.as_bytes()).await;
                    let mut got = buf.len() - end;
                    let _ = s.write_all(&buf[end..]).await;
                    while got < len {
                        match s.read(&mut tmp).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => {
                                got += n;
                                let _ = s.write_all(&tmp[..n]).await;
                            }
                        }
                    }
                    log.lock().unwrap()[i].body_bytes = got;
                    return;
                }
                let mut got = buf.len() - end;
                while got < len {
                    match s.read(&mut tmp).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => got += n,
                    }
                }
                log.lock().unwrap()[i].body_bytes = got;
                let answer = format!("got {got}");
                let _ = s
                    .write_all(
                        format!(
                            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{answer}",
                            answer.len()
                        )
                        .as_bytes(),
                    )
                    .await;
            });
        }
    });
    (addr, seen)
}

/// Reads what arrives until `want` shows up (or 5 s pass); returns it and when it came.
async fn read_until(s: &mut TcpStream, want: &str) -> (String, Duration) {
    use tokio::io::AsyncReadExt;
    let t = std::time::Instant::now();
    let mut got = Vec::new();
    let mut tmp = [0u8; 4096];
    while !String::from_utf8_lossy(&got).contains(want) && t.elapsed() < Duration::from_secs(5) {
        match tokio::time::timeout(Duration::from_secs(5), s.read(&mut tmp)).await {
            Ok(Ok(0)) | Ok(Err(_)) | Err(_) => break,
            Ok(Ok(n)) => got.extend_from_slice(&tmp[..n]),
        }
    }
    (String::from_utf8_lossy(&got).to_string(), t.elapsed())
}

/// `Expect: 100-continue` (RFC 9110 10.1.1): langur forwards the head first and never answers
/// 100 itself before the server was asked. A server that refuses gets to say so (413, and no
/// body byte is sent); a server's 100 is relayed, and the body follows; a server that ignores
/// the expectation gets the body after a second anyway.
#[tokio::test]
async fn expect_100_continue_asks_the_server_first() {
    use tokio::io::AsyncWriteExt;
    let (addr, seen) = expect_origin().await;
    let lg = langur_toml(&config(addr)).await;
    let at = lg.listen_addrs()[0];

    // Refused on the head alone: 413 is the first (and only) answer.
    let mut s = TcpStream::connect(at).await.unwrap();
    s.write_all(b"PUT /refuse HTTP/1.1\r\nHost: x\r\nContent-Length: 10000000\r\nExpect: 100-continue\r\n\r\n")
        .await
        .unwrap();
    let (out, _) = read_until(&mut s, "\r\n\r\n").await;
    assert!(out.starts_with("HTTP/1.1 413 "), "{out}");
    drop(s);

    // Accepted: the 100 comes only once the server sent its own (300 ms), then the body.
    let mut s = TcpStream::connect(at).await.unwrap();
    s.write_all(b"PUT /accept HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\nExpect: 100-continue\r\n\r\n")
        .await
        .unwrap();
    let (out, took) = read_until(&mut s, "\r\n\r\n").await;
    assert!(out.starts_with("HTTP/1.1 100 Continue\r\n\r\n"), "{out}");
    assert!(
        took >= Duration::from_millis(250),
        "100 after {took:?}: not the server's"
    );
    s.write_all(&vec![b'x'; 100_000]).await.unwrap();
    let (out, _) = read_until(&mut s, "got 100000").await;
    assert!(out.starts_with("HTTP/1.1 200 "), "{out}");
    drop(s);

    // Ignored by the server: after a second langur asks for the body anyway.
    let mut s = TcpStream::connect(at).await.unwrap();
    s.write_all(
        b"PUT /ignore HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n",
    )
    .await
    .unwrap();
    let (out, took) = read_until(&mut s, "\r\n\r\n").await;
    assert!(out.starts_with("HTTP/1.1 100 Continue\r\n\r\n"), "{out}");
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_millis(3000),
        "100 after {took:?}"
    );
    s.write_all(b"hello").await.unwrap();
    let (out, _) = read_until(&mut s, "got 5").await;
    assert!(out.starts_with("HTTP/1.1 200 "), "{out}");
    drop(s);

    // A success before any 100: the server means to read the body (it streams it back), so
    // the body goes, and the client gets its 100 before the server's head.
    let mut s = TcpStream::connect(at).await.unwrap();
    s.write_all(
        b"PUT /early HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n",
    )
    .await
    .unwrap();
    let (out, _) = read_until(&mut s, "content-length: 5\r\n").await;
    assert!(
        out.starts_with("HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 "),
        "{out}"
    );
    s.write_all(b"hello").await.unwrap();
    let (out, _) = read_until(&mut s, "hello").await;
    assert!(out.ends_with("hello"), "{out}");
    drop(s);

    // HTTP/1.0 expectations are ignored (RFC 9110 10.1.1), so not sent on.
    let mut s = TcpStream::connect(at).await.unwrap();
    s.write_all(b"PUT /ignore HTTP/1.0\r\nHost: x\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\nhello")
        .await
        .unwrap();
    let (out, _) = read_until(&mut s, "got 5").await;
    assert!(out.starts_with("HTTP/1.0 200 "), "{out}");

    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 5, "{seen:?}");
    assert_eq!(seen[0].body_bytes, 0, "the refused body was sent: {seen:?}");
    assert!(seen[0]
        .head
        .to_ascii_lowercase()
        .contains("expect: 100-continue"));
    assert_eq!(seen[1].body_bytes, 100_000);
    assert_eq!(seen[3].body_bytes, 5);
    assert!(
        !seen[4].head.to_ascii_lowercase().contains("expect"),
        "{}",
        seen[4].head
    );
    lg.shutdown().await;
}

/// A server that answers no request until `n` have arrived, then all of them (so `n` are in
/// flight at once whatever the machine's speed), and counts the connections it accepted.
async fn gated_origin(n: usize) -> (SocketAddr, Arc<AtomicUsize>) {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let conns = Arc::new(AtomicUsize::new(0));
    let (arrived, gate) = (Arc::new(AtomicUsize::new(0)), Arc::new(Notify::new()));
    let counted = conns.clone();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            counted.fetch_add(1, Ordering::SeqCst);
            let (arrived, gate) = (arrived.clone(), gate.clone());
            tokio::spawn(async move {
                let mut buf = vec![0u8; 4096];
                loop {
                    let mut head = Vec::new();
                    while common::find(&head, b"\r\n\r\n").is_none() {
                        match s.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(k) => head.extend_from_slice(&buf[..k]),
                        }
                    }
                    // Made before counting, so the last arrival's wake-up cannot be missed.
                    let open = gate.notified();
                    if arrived.fetch_add(1, Ordering::SeqCst) % n == n - 1 {
                        gate.notify_waiters();
                    } else {
                        open.await;
                    }
                    let ok = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
                    if s.write_all(ok).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    (addr, conns)
}

/// With more requests in flight on a server than the 256 idle connections a worker otherwise
/// keeps, its idle list grows with the load: a second wave of 300 requests at a time reuses
/// the first wave's connections instead of opening new ones (before, 44 were closed at the
/// end of each wave and opened again in the next). The peak holds for 10 s
/// (`PEAK_HOLD_MS`), then the usual limit applies again.
#[tokio::test]
async fn idle_connections_follow_the_load_past_the_default_limit() {
    let (origin, conns) = gated_origin(300).await;
    let lg = langur_toml(&format!(
        "[[route]]\nmatch = ['^/']\npool = \"p\"\n[pools.p]\nservers = [\"{origin}\"]\n"
    ))
    .await;
    let at = lg.listen_addrs()[0];
    let wave = || async {
        let all = futures_util::future::join_all((0..300).map(|_| get(at, "/")));
        let done = tokio::time::timeout(Duration::from_secs(30), all).await;
        assert!(done.unwrap().iter().all(|r| r.status == 200));
    };
    wave().await;
    assert_eq!(
        conns.load(Ordering::SeqCst),
        300,
        "the first wave's connections"
    );
    wave().await;
    let opened = conns.load(Ordering::SeqCst) - 300;
    assert!(
        opened <= 2,
        "the second wave opened {opened} new connections"
    );
    lg.shutdown().await;
}

/// A chunked upload of many chunks, to a server that reads slowly through a small receive
/// window: the size lines and data langur gathers into each write are taken in part, again
/// and again, and reach the server whole and in order.
#[tokio::test]
async fn a_chunked_upload_reaches_a_slow_server_whole() {
    // The server: a 4 KiB receive buffer, 16 KiB reads 1 ms apart (16 MB/s, slower than
    // langur sends); it answers with the body it got.
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let listener = socket.listen(16).unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let (mut s, _) = listener.accept().await.unwrap();
        let mut got = Vec::new();
        let mut buf = [0u8; 16384];
        let body = loop {
            let n = s.read(&mut buf).await.unwrap();
            assert!(n > 0, "the request ended early");
            got.extend_from_slice(&buf[..n]);
            // Parsed once the last chunk is in (the body has no trailers).
            if got.ends_with(b"\r\n0\r\n\r\n") {
                let end = common::find(&got, b"\r\n\r\n").unwrap() + 4;
                break common::dechunked(&got[end..])
                    .expect("a whole chunked body")
                    .0;
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        };
        let head = format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n", body.len());
        s.write_all(&[head.as_bytes(), &body].concat())
            .await
            .unwrap();
        let _ = s.read(&mut buf).await;
    });
    let lg = langur_toml(&config(addr)).await;
    let at = lg.listen_addrs()[0];
    // Chunks of 1 to 2 999 bytes, about 6 MB in all (more than the sockets between langur and
    // the server hold), sent at once.
    let (mut raw, mut want) = (Vec::new(), Vec::new());
    raw.extend_from_slice(b"POST /up HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n");
    raw.extend_from_slice(b"Connection: close\r\n\r\n");
    for i in 0..4000usize {
        let n = 1 + (i * 1237) % 2999;
        let piece = common::fill(n);
        raw.extend_from_slice(format!("{n:x}\r\n").as_bytes());
        raw.extend_from_slice(&piece);
        raw.extend_from_slice(b"\r\n");
        want.extend_from_slice(&piece);
    }
    raw.extend_from_slice(b"0\r\n\r\n");
    let mut s = TcpStream::connect(at).await.unwrap();
    s.write_all(&raw).await.unwrap();
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(20), s.read_to_end(&mut out))
        .await
        .expect("the answer, then the close")
        .unwrap();
    let end = common::find(&out, b"\r\n\r\n").expect("a head") + 4;
    assert!(
        out.starts_with(b"HTTP/1.1 200 "),
        "{}",
        String::from_utf8_lossy(&out[..end])
    );
    assert_eq!(out.len() - end, want.len());
    assert!(out[end..] == want[..], "the server got other bytes");
    lg.shutdown().await;
}
