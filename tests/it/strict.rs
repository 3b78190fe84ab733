//! Strict HTTP/1: malformed or ambiguous requests never reach a server, and malformed responses
//! become 502s on connections that are not reused. Everything goes over raw TCP sockets.

use crate::common;

use common::*;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// The request paths one upstream connection carried, and whether it ended.
type Conn = (Vec<String>, bool);

/// A raw origin: records every byte it receives per connection, and answers each request head
/// whose path starts with `/bad/N` with `responses[N]`, anything else with a small 200.
struct RawOrigin {
    addr: SocketAddr,
    /// Per accepted connection: the request paths it carried, and whether it ended.
    conns: Arc<Mutex<Vec<Conn>>>,
    bytes: Arc<std::sync::atomic::AtomicUsize>,
}

async fn raw_origin(responses: Vec<Vec<u8>>) -> RawOrigin {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let conns = Arc::new(Mutex::new(Vec::new()));
    let bytes = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let responses = Arc::new(responses);
    let (c, b) = (conns.clone(), bytes.clone());
    tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = l.accept().await else {
                continue;
            };
            let idx = {
                let mut v = c.lock().unwrap();
                v.push((Vec::new(), false));
                v.len() - 1
            };
            let (c, b, responses) = (c.clone(), b.clone(), responses.clone());
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut tmp = [0u8; 4096];
                loop {
                    let n = s.read(&mut tmp).await.unwrap_or(0);
                    if n == 0 {
                        c.lock().unwrap()[idx].1 = true;
                        return;
                    }
                    b.fetch_add(n, std::sync::atomic::Ordering::SeqCst);
                    buf.extend_from_slice(&tmp[..n]);
                    while let Some(end) = find(&buf, b"\r\n\r\n") {
                        let len = content_length(&buf[..end]);
                        if buf.len() < end + 4 + len {
                            break;
                        }
                        let head = String::from_utf8_lossy(&buf[..end]).to_string();
                        buf.drain(..end + 4 + len);
                        let path = head.split(' ').nth(1).unwrap_or("").to_string();
                        c.lock().unwrap()[idx].0.push(path.clone());
                        let answer = match path
                            .strip_prefix("/bad/")
                            .and_then(|n| n.parse::<usize>().ok())
                        {
                            Some(n) => responses[n].clone(),
                            None => b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok".to_vec(),
                        };
                        if s.write_all(&answer).await.is_err() {
                            return;
                        }
                    }
                }
            });
        }
    });
    RawOrigin { addr, conns, bytes }
}

/// Sends `bytes` on a new connection; returns what came back and whether the proxy closed the
/// connection (rather than the read timing out).
async fn exchange(at: SocketAddr, bytes: &[u8]) -> (String, bool) {
    let mut s = TcpStream::connect(at).await.unwrap();
    // The proxy may answer and close before reading everything; a failed write is fine.
    let _ = s.write_all(bytes).await;
    let mut out = Vec::new();
    let closed = tokio::time::timeout(Duration::from_secs(3), s.read_to_end(&mut out))
        .await
        .is_ok();
    (String::from_utf8_lossy(&out).to_string(), closed)
}

fn request_cases() -> Vec<(&'static str, Vec<u8>, u16)> {
    let h = "Host: x\r\n";
    let post = |extra: &str, body: &str| -> Vec<u8> {
        format!("POST /p HTTP/1.1\r\n{h}{extra}\r\n{body}").into_bytes()
    };
    let get =
        |extra: &str| -> Vec<u8> { format!("GET /g HTTP/1.1\r\n{h}{extra}\r\n").into_bytes() };
    let chunked = |body: &str| post("Transfer-Encoding: chunked\r\n", body);
    let many_headers: String = (0..150).map(|i| format!("X-H{i}: v\r\n")).collect();
    vec![
        // Framing: Content-Length and Transfer-Encoding
        (
            "CL then TE",
            post(
                "Content-Length: 5\r\nTransfer-Encoding: chunked\r\n",
                "0\r\n\r\n",
            ),
            400,
        ),
        (
            "TE then CL",
            post(
                "Transfer-Encoding: chunked\r\nContent-Length: 5\r\n",
                "0\r\n\r\n",
            ),
            400,
        ),
        (
            "two equal CL",
            post("Content-Length: 5\r\nContent-Length: 5\r\n", "hello"),
            400,
        ),
        (
            "two different CL",
            post("Content-Length: 5\r\nContent-Length: 6\r\n", "hello!"),
            400,
        ),
        ("CL list", post("Content-Length: 5, 5\r\n", "hello"), 400),
        ("CL with plus", post("Content-Length: +5\r\n", "hello"), 400),
        ("CL negative", post("Content-Length: -1\r\n", ""), 400),
        (
            "CL two numbers",
            post("Content-Length: 5 5\r\n", "hello"),
            400,
        ),
        ("CL hex", post("Content-Length: 0x5\r\n", "hello"), 400),
        ("CL empty", post("Content-Length: \r\n", ""), 400),
        ("CL letters", post("Content-Length: abc\r\n", ""), 400),
        (
            "CL overflow",
            post("Content-Length: 99999999999999999999999\r\n", ""),
            400,
        ),
        // Codings langur does not implement, before a final chunked: 501 (RFC 9112 6.1).
        (
            "TE gzip, chunked",
            post("Transfer-Encoding: gzip, chunked\r\n", "0\r\n\r\n"),
            501,
        ),
        (
            "TE deflate, chunked",
            post("Transfer-Encoding: deflate, chunked\r\n", "0\r\n\r\n"),
            501,
        ),
        (
            "TE gzip then chunked in two fields",
            post(
                "Transfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n",
                "0\r\n\r\n",
            ),
            501,
        ),
        (
            "TE chunked, chunked",
            post("Transfer-Encoding: chunked, chunked\r\n", "0\r\n\r\n"),
            400,
        ),
        (
            "TE chunked, gzip",
            post("Transfer-Encoding: chunked, gzip\r\n", "0\r\n\r\n"),
            400,
        ),
        (
            "TE identity",
            post("Transfer-Encoding: identity\r\n", ""),
            400,
        ),
        (
            "TE twice",
            post(
                "Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n",
                "0\r\n\r\n",
            ),
            400,
        ),
        (
            "TE xchunked",
            post("Transfer-Encoding: xchunked\r\n", "0\r\n\r\n"),
            400,
        ),
        (
            "TE on HTTP/1.0",
            b"POST /p HTTP/1.0\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n".to_vec(),
            400,
        ),
        // Header syntax
        (
            "space before colon (TE)",
            post("Transfer-Encoding : chunked\r\n", "0\r\n\r\n"),
            400,
        ),
        (
            "space before colon (CL)",
            post("Content-Length : 5\r\n", "hello"),
            400,
        ),
        ("obs-fold with space", get("X-A: a\r\n b\r\n"), 400),
        ("obs-fold with tab", get("X-A: a\r\n\tb\r\n"), 400),
        (
            "obs-fold of TE",
            post("X-A: a\r\n Transfer-Encoding: chunked\r\n", "0\r\n\r\n"),
            400,
        ),
        ("bare CR in value", get("X-A: a\rb\r\n"), 400),
        ("NUL in value", get("X-A: a\0b\r\n"), 400),
        ("control char in value", get("X-A: a\x01b\r\n"), 400),
        ("DEL in value", get("X-A: a\x7fb\r\n"), 400),
        ("control char in name", get("X\x01A: b\r\n"), 400),
        ("space in name", get("X A: b\r\n"), 400),
        ("empty name", get(": b\r\n"), 400),
        ("line without colon", get("Foo\r\n"), 400),
        // Chunked bodies
        (
            "chunk size not hex",
            chunked("zz\r\nhello\r\n0\r\n\r\n"),
            400,
        ),
        (
            "chunk size negative",
            chunked("-5\r\nhello\r\n0\r\n\r\n"),
            400,
        ),
        (
            "chunk size overflow",
            chunked("FFFFFFFFFFFFFFFFFF\r\nhello\r\n0\r\n\r\n"),
            400,
        ),
        ("chunk size 0x", chunked("0x5\r\nhello\r\n0\r\n\r\n"), 400),
        (
            "chunk data too long",
            chunked("5\r\nhelloX\r\n0\r\n\r\n"),
            400,
        ),
        ("chunk size empty", chunked("\r\nhello\r\n0\r\n\r\n"), 400),
        (
            "chunk extension with LF",
            chunked("5;a\nb\r\nhello\r\n0\r\n\r\n"),
            400,
        ),
        (
            "chunk extension with CR",
            chunked("5;a\rb\r\nhello\r\n0\r\n\r\n"),
            400,
        ),
        // Chunk-size lines exactly as RFC 9112 7.1 writes them.
        (
            "chunk size with space before CRLF",
            chunked("5 \r\nhello\r\n0\r\n\r\n"),
            400,
        ),
        (
            "chunk size with tab before CRLF",
            chunked("5\t\r\nhello\r\n0\r\n\r\n"),
            400,
        ),
        (
            "chunk extension without a name",
            chunked("5;\r\nhello\r\n0\r\n\r\n"),
            400,
        ),
        (
            "chunk extension with space before CRLF",
            chunked("5;a=b \r\nhello\r\n0\r\n\r\n"),
            400,
        ),
        (
            "chunk extension with a control byte",
            chunked("5;a=\x01b\r\nhello\r\n0\r\n\r\n"),
            400,
        ),
        (
            "chunk extension with DEL in a quoted value",
            chunked("5;a=\"\x7f\"\r\nhello\r\n0\r\n\r\n"),
            400,
        ),
        (
            "last chunk with space before CRLF",
            chunked("5\r\nhello\r\n0 \r\n\r\n"),
            400,
        ),
        (
            "chunk data ended by bare LF",
            chunked("5\r\nhello\n0\r\n\r\n"),
            400,
        ),
        // Trailer sections: every line ends with CRLF. The first case is the issue's: hyper
        // ends a trailer line only at CRLF, so it would read the pipelined GET as trailer text
        // where other parsers see two requests.
        (
            "trailer ended by bare LF, then a pipelined GET",
            chunked("5\r\nhello\r\n0\r\nX-Note: a\n\r\nGET /second HTTP/1.1\r\nHost: x\r\n\r\n"),
            400,
        ),
        (
            "trailer section ended by bare LF",
            chunked("5\r\nhello\r\n0\r\nX-Note: a\r\n\nGET /second HTTP/1.1\r\nHost: x\r\n\r\n"),
            400,
        ),
        (
            "empty trailer section ended by bare LF",
            chunked("5\r\nhello\r\n0\r\n\nGET /second HTTP/1.1\r\nHost: x\r\n\r\n"),
            400,
        ),
        (
            "bare LF between trailer lines",
            chunked("0\r\nX-A: 1\nX-B: 2\r\n\r\n"),
            400,
        ),
        (
            "bare CR in a trailer line",
            chunked("0\r\nX-A: 1\rX-B: 2\r\n\r\n"),
            400,
        ),
        // Host
        ("no Host", b"GET /g HTTP/1.1\r\n\r\n".to_vec(), 400),
        ("two Hosts", get("Host: y\r\n"), 400),
        (
            "Host with space",
            b"GET /g HTTP/1.1\r\nHost: a b\r\n\r\n".to_vec(),
            400,
        ),
        (
            "Host with userinfo",
            b"GET /g HTTP/1.1\r\nHost: u@a\r\n\r\n".to_vec(),
            400,
        ),
        (
            "Host with path",
            b"GET /g HTTP/1.1\r\nHost: a/b\r\n\r\n".to_vec(),
            400,
        ),
        (
            "Host present but empty",
            b"GET /g HTTP/1.1\r\nHost: \r\n\r\n".to_vec(),
            400,
        ),
        (
            "Host with a port and no host",
            b"GET /g HTTP/1.1\r\nHost: :80\r\n\r\n".to_vec(),
            400,
        ),
        (
            "Host empty with a body (hyper's path)",
            b"POST /p HTTP/1.1\r\nHost:\r\nContent-Length: 2\r\n\r\nhi".to_vec(),
            400,
        ),
        (
            "absolute form with userinfo",
            b"GET http://u@x/g HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(),
            400,
        ),
        // Request line
        (
            "double space",
            b"GET  /g HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(),
            400,
        ),
        (
            "lowercase version",
            b"GET /g http/1.1\r\nHost: x\r\n\r\n".to_vec(),
            400,
        ),
        (
            "bad method token",
            b"G(T /g HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(),
            400,
        ),
        (
            "space in target",
            b"GET /a b HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(),
            400,
        ),
        (
            "control char in target",
            b"GET /a\x01 HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(),
            400,
        ),
        (
            "asterisk with GET",
            b"GET * HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(),
            400,
        ),
        (
            "authority form with GET",
            b"GET x:80 HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(),
            400,
        ),
        ("no version", b"GET /g\r\nHost: x\r\n\r\n".to_vec(), 400),
        // Limits
        (
            "URI too long",
            format!("GET /{} HTTP/1.1\r\n{h}\r\n", "a".repeat(9000)).into_bytes(),
            414,
        ),
        (
            "head too large",
            get(&format!("X-Big: {}\r\n", "b".repeat(40_000))),
            431,
        ),
        ("too many headers", get(&many_headers), 431),
        (
            "body over max_body_size (CL)",
            post("Content-Length: 2048\r\n", &"x".repeat(2048)),
            413,
        ),
        (
            "body over max_body_size (chunked)",
            chunked(&format!("800\r\n{}\r\n0\r\n\r\n", "x".repeat(2048))),
            413,
        ),
    ]
}

#[tokio::test]
async fn malformed_requests_never_reach_a_server() {
    let origin = raw_origin(Vec::new()).await;
    let lg = langur_toml(&format!(
        "[server]\nmax_body_size = \"1 KiB\"\n[[route]]\nmatch = ['^/']\npool = \"p\"\n[pools.p]\nservers = [\"{}\"]\n",
        origin.addr
    ))
    .await;
    let at = lg.listen_addrs()[0];
    let cases = request_cases();
    assert!(cases.len() >= 40, "{} cases", cases.len());
    let mut failures = Vec::new();
    for (name, bytes, want) in &cases {
        let (out, closed) = exchange(at, bytes).await;
        let status = out.get(9..12).unwrap_or("");
        if status != want.to_string() || !closed {
            failures.push(format!(
                "{name}: wanted {want} and a closed connection, got {:?} (closed: {closed})",
                out.lines().next().unwrap_or("")
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert_eq!(
        origin.bytes.load(std::sync::atomic::Ordering::SeqCst),
        0,
        "bytes reached the server: {:?}",
        origin.conns.lock().unwrap()
    );

    // The same proxy still serves good requests, including a chunked body re-framed.
    let (out, _) = exchange(
        at,
        b"POST /ok HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
    )
    .await;
    assert!(out.starts_with("HTTP/1.1 200"), "{out}");
    assert_eq!(origin.conns.lock().unwrap()[0].0, vec!["/ok".to_string()]);
    lg.shutdown().await;
}

#[tokio::test]
async fn malformed_responses_are_502_and_their_connection_is_dropped() {
    let responses: Vec<(&str, &[u8])> = vec![
        (
            "CL and TE",
            b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        ),
        (
            "two different CL",
            b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nok!",
        ),
        (
            "two equal CL",
            b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 2\r\n\r\nok",
        ),
        (
            "CL letters",
            b"HTTP/1.1 200 OK\r\nContent-Length: ab\r\n\r\nok",
        ),
        (
            "TE gzip",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\nok",
        ),
        (
            "TE gzip, chunked",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n",
        ),
        (
            "TE in HTTP/1.0",
            b"HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n",
        ),
        (
            "obs-fold",
            b"HTTP/1.1 200 OK\r\nX-A: a\r\n b\r\nContent-Length: 2\r\n\r\nok",
        ),
        (
            "space before colon",
            b"HTTP/1.1 200 OK\r\nContent-Length : 2\r\n\r\nok",
        ),
        (
            "bare CR",
            b"HTTP/1.1 200 OK\r\nX-A: a\rb\r\nContent-Length: 2\r\n\r\nok",
        ),
        (
            "NUL in value",
            b"HTTP/1.1 200 OK\r\nX-A: a\0b\r\nContent-Length: 2\r\n\r\nok",
        ),
        (
            "status 2000",
            b"HTTP/1.1 2000 OK\r\nContent-Length: 2\r\n\r\nok",
        ),
        (
            "status letters",
            b"HTTP/1.1 abc OK\r\nContent-Length: 2\r\n\r\nok",
        ),
        ("not HTTP", b"hello there\r\n\r\n"),
    ];
    let origin = raw_origin(responses.iter().map(|(_, r)| r.to_vec()).collect()).await;
    let lg = langur_toml(&format!(
        "[[route]]\nmatch = ['^/']\npool = \"p\"\n[pools.p]\nservers = [\"{}\"]\n",
        origin.addr
    ))
    .await;
    let at = lg.listen_addrs()[0];
    let mut failures = Vec::new();
    for (i, (name, _)) in responses.iter().enumerate() {
        let r = get(at, &format!("/bad/{i}")).await;
        if r.status != 502 {
            failures.push(format!("{name}: {} {:?}", r.status, r.body));
        }
        // A good request after it is served, on a fresh upstream connection.
        let r = get(at, "/good").await;
        assert_eq!(r.status, 200, "after {name}");
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    tokio::time::sleep(Duration::from_millis(200)).await;
    for (paths, ended) in origin.conns.lock().unwrap().iter() {
        if let Some(p) = paths.iter().position(|p| p.starts_with("/bad/")) {
            assert_eq!(
                p + 1,
                paths.len(),
                "a connection was reused after a bad response: {paths:?}"
            );
            assert!(
                *ended,
                "the connection of a bad response was kept open: {paths:?}"
            );
        }
    }
    lg.shutdown().await;
}

/// A response whose body breaks after its head went out cannot become a 502: the client's
/// connection is cut (no final chunk), and the server connection is not reused.
#[tokio::test]
async fn a_body_broken_midway_cuts_the_client_off() {
    let origin = raw_origin(vec![
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\nzz\r\n".to_vec(),
    ])
    .await;
    let lg = langur_toml(&format!(
        "[[route]]\nmatch = ['^/']\npool = \"p\"\n[pools.p]\nservers = [\"{}\"]\n",
        origin.addr
    ))
    .await;
    let at = lg.listen_addrs()[0];
    let (out, closed) = exchange(at, b"GET /bad/0 HTTP/1.1\r\nHost: x\r\n\r\n").await;
    assert!(out.starts_with("HTTP/1.1 200"), "{out}");
    assert!(closed, "the client connection was left open: {out}");
    assert!(
        !out.ends_with("0\r\n\r\n"),
        "the body was ended as if complete: {out}"
    );
    let r = get(at, "/good").await;
    assert_eq!(r.status, 200);
    let conns = origin.conns.lock().unwrap().clone();
    assert_eq!(conns.len(), 2, "{conns:?}");
    lg.shutdown().await;
}

fn pool_config(server: SocketAddr, server_keys: &str, pool_keys: &str) -> String {
    format!(
        "[server]\n{server_keys}\n[[route]]\nmatch = ['^/']\npool = \"p\"\n[pools.p]\n{pool_keys}\nservers = [\"{server}\"]\n"
    )
}

#[tokio::test]
async fn a_client_that_stalls_in_its_body_gets_408_and_the_server_sees_nothing() {
    let origin = raw_origin(Vec::new()).await;
    let lg = langur_toml(&pool_config(origin.addr, "body_timeout = \"500ms\"", "")).await;
    let at = lg.listen_addrs()[0];
    let t = std::time::Instant::now();
    let mut s = TcpStream::connect(at).await.unwrap();
    s.write_all(b"POST /p HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nabc")
        .await
        .unwrap();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(3), s.read_to_end(&mut out)).await;
    let out = String::from_utf8_lossy(&out);
    assert!(out.starts_with("HTTP/1.1 408"), "{out}");
    assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
    assert_eq!(origin.bytes.load(std::sync::atomic::Ordering::SeqCst), 0);
    lg.shutdown().await;
}

#[tokio::test]
async fn request_timeout_bounds_the_wait_for_a_response_head() {
    let b = Backend::start("b").await;
    let lg = langur_toml(&pool_config(b.addr, "request_timeout = \"500ms\"", "")).await;
    let at = lg.listen_addrs()[0];
    let t = std::time::Instant::now();
    let r = get(at, "/slow/3000").await;
    assert_eq!(r.status, 504);
    assert!(
        t.elapsed() < Duration::from_millis(1500),
        "{:?}",
        t.elapsed()
    );
    lg.shutdown().await;
}

#[tokio::test]
async fn a_server_silent_mid_body_is_cut_off_at_read_timeout() {
    let origin = raw_origin(vec![
        b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc".to_vec()
    ])
    .await;
    let lg = langur_toml(&pool_config(origin.addr, "", "read_timeout = \"300ms\"")).await;
    let at = lg.listen_addrs()[0];
    let t = std::time::Instant::now();
    let (out, closed) = exchange(at, b"GET /bad/0 HTTP/1.1\r\nHost: x\r\n\r\n").await;
    assert!(out.starts_with("HTTP/1.1 200"), "{out}");
    assert!(out.ends_with("abc"), "{out}");
    assert!(closed);
    assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
    lg.shutdown().await;
}

#[tokio::test]
async fn idle_keep_alive_connections_close_at_keepalive_timeout() {
    let b = Backend::start("b").await;
    let lg = langur_toml(&pool_config(b.addr, "keepalive_timeout = \"1s\"", "")).await;
    let at = lg.listen_addrs()[0];
    let t = std::time::Instant::now();
    let (out, closed) = exchange(at, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").await;
    assert!(out.starts_with("HTTP/1.1 200"), "{out}");
    assert!(closed, "an idle connection stayed open");
    let took = t.elapsed();
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_millis(2500),
        "{took:?}"
    );
    lg.shutdown().await;
}

#[tokio::test]
async fn at_max_connections_accepting_waits_until_one_closes() {
    let b = Backend::start("b").await;
    let lg = langur_toml(&pool_config(b.addr, "max_connections = 2", "")).await;
    let at = lg.listen_addrs()[0];
    let mut first = TcpStream::connect(at).await.unwrap();
    let _second = TcpStream::connect(at).await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    // The third is queued by the kernel, not served.
    let mut third = TcpStream::connect(at).await.unwrap();
    third
        .write_all(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut buf = [0u8; 256];
    assert!(
        tokio::time::timeout(Duration::from_millis(500), third.read(&mut buf))
            .await
            .is_err(),
        "a connection over the limit was served"
    );
    first.shutdown().await.unwrap();
    drop(first);
    let n = tokio::time::timeout(Duration::from_secs(3), third.read(&mut buf))
        .await
        .expect("served once a slot freed")
        .unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
    lg.shutdown().await;
}

#[tokio::test]
async fn shutdown_timeout_bounds_the_drain() {
    let b = Backend::start("b").await;
    let lg = langur_toml(&pool_config(b.addr, "shutdown_timeout = \"500ms\"", "")).await;
    let at = lg.listen_addrs()[0];
    let slow = tokio::spawn(async move {
        let mut s = TcpStream::connect(at).await.unwrap();
        s.write_all(b"GET /slow/5000 HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        let mut out = Vec::new();
        let _ = s.read_to_end(&mut out).await;
    });
    let t = std::time::Instant::now();
    while b.in_flight.load(std::sync::atomic::Ordering::SeqCst) == 0 {
        assert!(
            t.elapsed() < Duration::from_secs(3),
            "the request never arrived"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let t = std::time::Instant::now();
    lg.shutdown().await;
    let took = t.elapsed();
    assert!(
        took >= Duration::from_millis(400) && took < Duration::from_millis(1500),
        "shutdown took {took:?} with a 500 ms shutdown_timeout and a 5 s request in flight"
    );
    // The request that outlived the limit was cut, not answered.
    tokio::time::timeout(Duration::from_secs(2), slow)
        .await
        .expect("the client connection was closed")
        .unwrap();
}
