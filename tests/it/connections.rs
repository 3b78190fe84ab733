//! Client connection handling: keep-alive across parking, pipelining, HTTP/1.0, close, and an
//! unread request body that must never be read as the next request.

use crate::common;

use common::*;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

async fn setup() -> (langur::Langur, Backend) {
    let b = Backend::start("b").await;
    let toml = format!(
        "[[route]]\nmatch = ['^/ok', '^/echo']\npool = \"p\"\n[pools.p]\nservers = [\"{}\"]\n",
        b.addr
    );
    (langur_toml(&toml).await, b)
}

/// Reads until `n` complete responses (each with Content-Length) have arrived or time runs out.
async fn read_responses(s: &mut TcpStream, n: usize) -> String {
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = tokio::time::Instant::now() + Duration::from_secs(3);
    while count_complete(&out) < n {
        match tokio::time::timeout_at(deadline, s.read(&mut buf)).await {
            Ok(Ok(0)) | Err(_) => break,
            Ok(Ok(k)) => out.extend_from_slice(&buf[..k]),
            Ok(Err(_)) => break,
        }
    }
    String::from_utf8_lossy(&out).to_string()
}

fn count_complete(data: &[u8]) -> usize {
    let mut n = 0;
    let mut rest = data;
    while let Some(end) = find(rest, b"\r\n\r\n") {
        let len = content_length(&rest[..end]);
        if rest.len() < end + 4 + len {
            break;
        }
        n += 1;
        rest = &rest[end + 4 + len..];
    }
    n
}

async fn closed(s: &mut TcpStream) -> bool {
    let mut b = [0u8; 64];
    matches!(
        tokio::time::timeout(Duration::from_secs(2), s.read(&mut b)).await,
        Ok(Ok(0)) | Ok(Err(_))
    )
}

#[tokio::test]
async fn keep_alive_survives_parking_and_pipelining_works() {
    let (lg, b) = setup().await;
    let at = lg.listen_addrs()[0];
    let mut s = TcpStream::connect(at).await.unwrap();
    s.write_all(b"GET /ok/1 HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    assert_eq!(
        count_complete(read_responses(&mut s, 1).await.as_bytes()),
        1
    );
    // Idle long enough to be parked (two ticks of the park clock), then reuse the connection.
    tokio::time::sleep(langur::conn::PARK_TICK * 3).await;
    s.write_all(b"GET /ok/2 HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    assert_eq!(
        count_complete(read_responses(&mut s, 1).await.as_bytes()),
        1
    );
    // Three pipelined requests in one write, some with bodies, right after another park.
    tokio::time::sleep(langur::conn::PARK_TICK * 3).await;
    s.write_all(
        b"GET /ok/3 HTTP/1.1\r\nHost: x\r\n\r\nPOST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhelloGET /ok/4 HTTP/1.1\r\nHost: x\r\n\r\n",
    )
    .await
    .unwrap();
    let out = read_responses(&mut s, 3).await;
    assert_eq!(count_complete(out.as_bytes()), 3, "{out}");
    assert!(out.contains("hello"), "{out}");
    assert_eq!(b.hits(), 5);
    assert_eq!(
        b.conns.load(std::sync::atomic::Ordering::SeqCst),
        1,
        "one upstream connection throughout"
    );
    lg.shutdown().await;
}

#[tokio::test]
async fn http10_keep_alive_and_close() {
    let (lg, _b) = setup().await;
    let at = lg.listen_addrs()[0];
    // HTTP/1.0 with keep-alive: kept open, and said so.
    let mut s = TcpStream::connect(at).await.unwrap();
    s.write_all(b"GET /ok HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
        .await
        .unwrap();
    let out = read_responses(&mut s, 1).await;
    assert!(
        out.to_ascii_lowercase().contains("connection: keep-alive"),
        "{out}"
    );
    s.write_all(b"GET /ok HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
        .await
        .unwrap();
    assert_eq!(
        count_complete(read_responses(&mut s, 1).await.as_bytes()),
        1
    );
    // Plain HTTP/1.0: closed after the response.
    let mut s = TcpStream::connect(at).await.unwrap();
    s.write_all(b"GET /ok HTTP/1.0\r\n\r\n").await.unwrap();
    assert_eq!(
        count_complete(read_responses(&mut s, 1).await.as_bytes()),
        1
    );
    assert!(
        closed(&mut s).await,
        "HTTP/1.0 without keep-alive must close"
    );
    // HTTP/1.1 with Connection: close: closed after the response.
    let mut s = TcpStream::connect(at).await.unwrap();
    s.write_all(b"GET /ok HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    assert_eq!(
        count_complete(read_responses(&mut s, 1).await.as_bytes()),
        1
    );
    assert!(closed(&mut s).await, "Connection: close must close");
    lg.shutdown().await;
}

#[tokio::test]
async fn an_unread_request_body_is_never_taken_for_a_request() {
    let (lg, b) = setup().await;
    let at = lg.listen_addrs()[0];
    let mut s = TcpStream::connect(at).await.unwrap();
    // A POST to no route is answered 404 without reading its body; the body looks like a request.
    let smuggled = b"GET /ok/smuggled HTTP/1.1\r\nHost: x\r\n\r\n";
    let head = format!(
        "POST /nowhere HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n",
        smuggled.len()
    );
    s.write_all(head.as_bytes()).await.unwrap();
    s.write_all(smuggled).await.unwrap();
    let out = read_responses(&mut s, 2).await;
    assert!(out.starts_with("HTTP/1.1 404"), "{out}");
    assert_eq!(
        count_complete(out.as_bytes()),
        1,
        "the body was served as a request: {out}"
    );
    assert!(
        closed(&mut s).await,
        "the connection must end after an unread body"
    );
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(b.hits(), 0, "the body reached a backend as a request");
    lg.shutdown().await;
}

/// langur with short connection timers: `header_read_timeout` 1 s, `keepalive_timeout` 4 s
/// (far enough apart to tell which one closed a connection).
async fn timed(h2c: bool) -> (langur::Langur, Backend) {
    let b = Backend::start("b").await;
    let toml = format!(
        "[server]\nh2c = {h2c}\nheader_read_timeout = \"1s\"\nkeepalive_timeout = \"4s\"\n[[route]]\nmatch = ['^/']\npool = \"p\"\n[pools.p]\nservers = [\"{}\"]\n",
        b.addr
    );
    (langur_toml(&toml).await, b)
}

/// Reads (and drops) what comes until the peer closes; how long that took from `since`, or
/// `None` if it stayed open for `max`.
async fn closed_after(
    s: &mut TcpStream,
    since: std::time::Instant,
    max: Duration,
) -> Option<Duration> {
    let mut buf = [0u8; 4096];
    loop {
        match tokio::time::timeout(max.saturating_sub(since.elapsed()), s.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return Some(since.elapsed()),
            Ok(Ok(_)) => continue,
            Err(_) => return None,
        }
    }
}

/// Opens a connection, writes `bytes`, and tells when langur closed it.
async fn close_time(at: std::net::SocketAddr, bytes: &[u8]) -> Option<Duration> {
    let t = std::time::Instant::now();
    let mut s = TcpStream::connect(at).await.unwrap();
    s.write_all(bytes).await.unwrap();
    closed_after(&mut s, t, Duration::from_secs(8)).await
}

fn between(took: Option<Duration>, lo_ms: u64, hi_ms: u64) -> bool {
    took.is_some_and(|t| t >= Duration::from_millis(lo_ms) && t <= Duration::from_millis(hi_ms))
}

const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let mut f = (payload.len() as u32).to_be_bytes()[1..].to_vec();
    f.push(kind);
    f.push(flags);
    f.extend_from_slice(&stream.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

/// An HPACK block for `GET path` (static-table entries and literals, no Huffman).
fn get_block(path: &str) -> Vec<u8> {
    let mut b = vec![0x82, 0x86, 0x41, 0x01, b'x', 0x04, path.len() as u8];
    b.extend_from_slice(path.as_bytes());
    b
}

/// A connection that sends nothing is closed at `header_read_timeout`, not at
/// `keepalive_timeout`, whether the listener sniffs for h2c or not (both used to wait for
/// the keep-alive limit or forever).
#[tokio::test]
async fn a_silent_connection_closes_at_the_head_timeout_with_h2c_off_and_on() {
    let ((off, _b1), (on, _b2)) = tokio::join!(timed(false), timed(true));
    let (a, b) = tokio::join!(
        close_time(off.listen_addrs()[0], b""),
        close_time(on.listen_addrs()[0], b"")
    );
    assert!(between(a, 900, 2000), "h2c off: closed after {a:?}");
    assert!(between(b, 900, 2000), "h2c on: closed after {b:?}");
    off.shutdown().await;
    on.shutdown().await;
}

/// While langur sniffs for the h2c preface, and until the preface and the client's first
/// frame are in, the head deadline applies.
#[tokio::test]
async fn h2c_preface_sniffing_and_the_preface_itself_have_the_head_deadline() {
    let (lg, _b) = timed(true).await;
    let at = lg.listen_addrs()[0];
    let cases: [(&str, &[u8]); 4] = [
        ("the first bytes of `PRI `", b"PR"),
        ("half the preface", &PREFACE[..16]),
        ("the preface without SETTINGS", PREFACE),
        (
            "a partial SETTINGS frame",
            b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x06\x04",
        ),
    ];
    let times = futures_util::future::join_all(cases.iter().map(|(_, b)| close_time(at, b))).await;
    for ((name, _), took) in cases.iter().zip(times) {
        assert!(between(took, 900, 2300), "{name}: closed after {took:?}");
    }
    lg.shutdown().await;
}

/// An HTTP/2 connection with no stream open is told GOAWAY and closed: at
/// `header_read_timeout` before its first request, at `keepalive_timeout` after one.
#[tokio::test]
async fn an_idle_h2c_connection_gets_goaway_at_its_deadline() {
    let (lg, _b) = timed(true).await;
    let at = lg.listen_addrs()[0];
    // No request at all: the preface and SETTINGS, then silence.
    let first = async {
        let t = std::time::Instant::now();
        let mut s = TcpStream::connect(at).await.unwrap();
        let mut out = PREFACE.to_vec();
        out.extend(frame(0x4, 0, 0, &[]));
        s.write_all(&out).await.unwrap();
        let mut got = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(8), s.read_to_end(&mut got)).await;
        let took = t.elapsed();
        // Frame types the server sent: SETTINGS, its ack, then GOAWAY.
        let mut kinds = Vec::new();
        let mut i = 0;
        while i + 9 <= got.len() {
            kinds.push(got[i + 3]);
            i += 9 + u32::from_be_bytes([0, got[i], got[i + 1], got[i + 2]]) as usize;
        }
        (took, kinds)
    };
    // One request, then idle: the keep-alive limit.
    let after_one = async {
        let s = TcpStream::connect(at).await.unwrap();
        let (mut send, conn) = hyper::client::conn::http2::handshake::<_, _, String>(
            hyper_util::rt::TokioExecutor::new(),
            hyper_util::rt::TokioIo::new(s),
        )
        .await
        .unwrap();
        let conn = tokio::spawn(conn);
        let resp = send
            .send_request(http::Request::get("http://x/").body(String::new()).unwrap())
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        http_body_util::BodyExt::collect(resp.into_body())
            .await
            .unwrap();
        let t = std::time::Instant::now();
        let ended = tokio::time::timeout(Duration::from_secs(8), conn).await;
        assert!(ended.is_ok(), "the idle HTTP/2 connection stayed open");
        t.elapsed()
    };
    let ((took, kinds), idle) = tokio::join!(first, after_one);
    assert!(
        took >= Duration::from_millis(900) && took <= Duration::from_millis(2500),
        "no request: closed after {took:?}"
    );
    assert!(
        kinds.contains(&0x7),
        "no GOAWAY before the close: {kinds:?}"
    );
    assert!(
        idle >= Duration::from_millis(3900) && idle <= Duration::from_millis(5500),
        "after a request: closed after {idle:?} (keepalive_timeout 4 s)"
    );
    lg.shutdown().await;
}

/// A HEADERS frame without END_HEADERS and no CONTINUATION stalls the whole connection: it is
/// cut at `header_read_timeout`, even while another stream is busy.
#[tokio::test]
async fn an_unfinished_http2_header_block_is_cut_at_the_head_timeout() {
    let (lg, b) = timed(true).await;
    let at = lg.listen_addrs()[0];
    let mut bytes = PREFACE.to_vec();
    bytes.extend(frame(0x4, 0, 0, &[]));
    // Stream 1: a whole request the server takes 3 s to answer.
    bytes.extend(frame(0x1, 0x5, 1, &get_block("/slow/3000")));
    // Stream 3: the start of a header block, never finished.
    let block = get_block("/never");
    bytes.extend(frame(0x1, 0x1, 3, &block[..3]));
    let took = close_time(at, &bytes).await;
    assert!(between(took, 900, 2300), "closed after {took:?}");
    assert_eq!(b.hits(), 1, "stream 1 reached the server");
    lg.shutdown().await;
}

const BIG: usize = 32 << 20;

fn big_answer(_path: &str) -> (Vec<Vec<u8>>, Duration, After) {
    let mut r = format!("HTTP/1.1 200 OK\r\nContent-Length: {BIG}\r\n\r\n").into_bytes();
    r.resize(r.len() + BIG, b'x');
    (vec![r], Duration::ZERO, After::Stay)
}

/// A client that stops reading its response has a deadline too: once it has taken nothing for
/// `body_timeout`, its connection is cut (the lane's writes and hyper's alike), instead of
/// holding the connection, the upstream exchange and their buffers for as long as it likes.
#[tokio::test]
async fn a_client_that_stops_reading_its_response_is_cut_at_body_timeout() {
    let (addr, _seen, _) = raw_origin(big_answer).await;
    let lg = langur_toml(&format!(
        "[server]\nbody_timeout = \"500ms\"\n[[route]]\nmatch = ['^/']\npool = \"p\"\n[pools.p]\nservers = [\"{addr}\"]\n"
    ))
    .await;
    let at = lg.listen_addrs()[0];
    // A bodiless GET (langur's lane) and a POST (hyper).
    let requests: [&'static [u8]; 2] = [
        b"GET /big HTTP/1.1\r\nHost: x\r\n\r\n",
        b"POST /big HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nhi",
    ];
    // Both at once: each waits out its own deadline.
    let one = |raw: &'static [u8]| async move {
        let mut s = TcpStream::connect(at).await.unwrap();
        s.write_all(raw).await.unwrap();
        // Read nothing for a while: the socket buffers fill, then nothing moves.
        tokio::time::sleep(Duration::from_millis(2000)).await;
        let mut got = 0usize;
        let mut buf = vec![0u8; 1 << 16];
        let ended = tokio::time::timeout(Duration::from_secs(10), async {
            loop {
                match s.read(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => got += n,
                }
            }
        })
        .await;
        assert!(
            ended.is_ok(),
            "{:?}: the connection stayed open",
            String::from_utf8_lossy(raw)
        );
        assert!(
            got < BIG,
            "{:?}: the whole response came ({got} bytes): the stalled client was not cut",
            String::from_utf8_lossy(raw)
        );
    };
    futures_util::future::join_all(requests.map(one)).await;
    lg.shutdown().await;
}

/// An HTTP/2 client that grants no flow-control window (`SETTINGS_INITIAL_WINDOW_SIZE` 0) gets
/// its response's head and no body: its connection is cut at `body_timeout`, as a client that
/// reads nothing is (it used to stay open for as long as the client liked: hyper never asks a
/// body for data it cannot send, so no write ever waited). A body whose server pauses longer
/// than `body_timeout` is not cut (that is the pool's `read_timeout`).
#[tokio::test]
async fn an_h2_client_that_grants_no_window_is_cut_at_body_timeout() {
    fn script(_: &str) -> (Vec<Vec<u8>>, Duration, After) {
        let head = b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nab".to_vec();
        (
            vec![head, b"cd".to_vec()],
            Duration::from_millis(1200),
            After::Stay,
        )
    }
    let (origin, _, _) = raw_origin(script).await;
    let lg = langur_toml(&format!(
        "[server]\nh2c = true\nbody_timeout = \"500ms\"\n[[route]]\nmatch = ['^/']\n\
         pool = \"p\"\n[pools.p]\nservers = [\"{origin}\"]\n"
    ))
    .await;
    let at = lg.listen_addrs()[0];
    let no_window = async {
        let mut s = TcpStream::connect(at).await.unwrap();
        let mut out = PREFACE.to_vec();
        out.extend(frame(0x4, 0, 0, &[0, 4, 0, 0, 0, 0]));
        out.extend(frame(0x1, 0x5, 1, &get_block("/")));
        s.write_all(&out).await.unwrap();
        let t = std::time::Instant::now();
        let mut got = Vec::new();
        let closed = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut got)).await;
        (closed.is_ok(), t.elapsed())
    };
    let paused = async {
        let s = TcpStream::connect(at).await.unwrap();
        crate::tls_h2::h2_get(s, "http://x/").await
    };
    let ((closed, took), body) = tokio::join!(no_window, paused);
    assert!(closed, "a client granting no window kept its connection");
    assert!(
        took >= Duration::from_millis(400) && took < Duration::from_secs(3),
        "cut after {took:?}"
    );
    assert_eq!(
        (body.0.as_u16(), &body.2[..]),
        (200, &b"abcd"[..]),
        "the paused body"
    );
    lg.shutdown().await;
}
