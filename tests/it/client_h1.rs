//! The client side of HTTP/1.1 on plain connections: bodiless requests go through langur's own
//! lane, the others through hyper, on the same connection and in any order. Raw bytes both
//! ways, so the framing a client sees is checked as written.

use crate::common;

use common::{find, langur_toml, raw_origin, After, Seen};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// What langur's origin saw: the requests (raw, in order) and how many of its connections
/// langur closed.
struct Origin {
    seen: Seen,
    closed: Arc<AtomicUsize>,
}

impl Origin {
    fn requests(&self) -> Vec<Vec<u8>> {
        self.seen.lock().unwrap().concat()
    }
}

/// The origin's answer to a path (`/hang`: none at all).
fn answer(path: &str) -> (Vec<Vec<u8>>, Duration, After) {
    let raw = match path {
        "/hang" => return (vec![], Duration::ZERO, After::Stay),
        "/chunked" => b"HTTP/1.1 200 OK\r\nTrailer: x-sum\r\nTransfer-Encoding: chunked\r\n\r\n\
              5\r\nhello\r\n0\r\nx-sum: 42\r\n\r\n"
            .to_vec(),
        "/no-content" => b"HTTP/1.1 204 No Content\r\n\r\n".to_vec(),
        "/not-modified" => {
            b"HTTP/1.1 304 Not Modified\r\nContent-Length: 9\r\nETag: \"a\"\r\n\r\n".to_vec()
        }
        p => format!(
            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nDate: Sun, 06 Nov 1994 08:49:37 GMT\r\n\r\n{p}",
            p.len()
        )
        .into_bytes(),
    };
    (vec![raw], Duration::ZERO, After::Stay)
}

fn config(addr: SocketAddr) -> String {
    format!("[[route]]\nmatch = ['^/']\npool = \"p\"\n[pools.p]\nservers = [\"{addr}\"]\n")
}

/// The origin, and langur in front of it (with its listening address).
async fn start() -> (Origin, langur::Langur, SocketAddr) {
    let (addr, seen, closed) = raw_origin(answer).await;
    let o = Origin { seen, closed };
    let lg = langur_toml(&config(addr)).await;
    let at = lg.listen_addrs()[0];
    (o, lg, at)
}

/// Sends `bytes` on one connection and reads until langur closes it.
async fn exchange(at: SocketAddr, bytes: &[u8]) -> String {
    let mut s = TcpStream::connect(at).await.unwrap();
    s.write_all(bytes).await.unwrap();
    let mut out = Vec::new();
    // A reset (langur refused a head it did not read whole) still leaves what came before.
    let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut out))
        .await
        .expect("langur closes the connection after `Connection: close`");
    String::from_utf8_lossy(&out).to_string()
}

/// The responses in `out`, each as (head, body), framed by their own fields (those numbered in
/// `to_head` answer HEAD requests: no body).
fn responses(out: &str, to_head: &[usize]) -> Vec<(String, String)> {
    let mut rest = out;
    let mut all = Vec::new();
    while !rest.is_empty() {
        let end = find(rest.as_bytes(), b"\r\n\r\n").expect("a complete head") + 4;
        let head = rest[..end].to_ascii_lowercase();
        rest = &rest[end..];
        let status: u16 = head[9..12].parse().unwrap();
        let body = if head.contains("transfer-encoding: chunked") {
            let end = find(rest.as_bytes(), b"0\r\n").unwrap();
            let trailer_end = find(&rest.as_bytes()[end..], b"\r\n\r\n").unwrap() + end + 4;
            let b = rest[..trailer_end].to_string();
            rest = &rest[trailer_end..];
            b
        } else if status == 204 || status == 304 || to_head.contains(&all.len()) {
            String::new()
        } else {
            let n = common::content_length(head.as_bytes());
            let b = rest[..n].to_string();
            rest = &rest[n..];
            b
        };
        all.push((head, body));
    }
    all
}

#[tokio::test]
async fn pipelined_requests_alternate_between_the_lane_and_hyper_in_order() {
    let (o, lg, at) = start().await;
    let out = exchange(
        at,
        b"GET /one HTTP/1.1\r\nHost: t\r\n\r\n\
          POST /two HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n\r\nabcde\
          GET /three HTTP/1.1\r\nHost: t\r\n\r\n\
          GET /four HTTP/1.0\r\nHost: t\r\nConnection: keep-alive\r\n\r\n\
          GET /five HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
    )
    .await;
    let r = responses(&out, &[]);
    let bodies: Vec<&str> = r.iter().map(|(_, b)| b.as_str()).collect();
    assert_eq!(
        bodies,
        ["/one", "/two", "/three", "/four", "/five"],
        "{out}"
    );
    for (head, _) in &r {
        assert!(head.contains("\r\ndate: "), "{head}");
    }
    // The origin's own Date is kept, not replaced.
    assert!(r[0].0.contains("date: sun, 06 nov 1994"), "{}", r[0].0);
    assert!(r[4].0.contains("connection: close"), "{}", r[4].0);
    let seen = o.requests();
    assert_eq!(seen.len(), 5);
    assert!(
        seen[1].ends_with(b"\r\n\r\nabcde"),
        "the body went with its request"
    );
    lg.shutdown().await;
}

#[tokio::test]
async fn responses_are_framed_for_the_client() {
    let (_o, lg, at) = start().await;
    let out = exchange(
        at,
        b"GET /chunked HTTP/1.1\r\nHost: t\r\nTE: trailers\r\n\r\n\
          GET /chunked HTTP/1.1\r\nHost: t\r\n\r\n\
          HEAD /five HTTP/1.1\r\nHost: t\r\n\r\n\
          GET /no-content HTTP/1.1\r\nHost: t\r\n\r\n\
          GET /not-modified HTTP/1.1\r\nHost: t\r\n\r\n\
          GET /last HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
    )
    .await;
    let r = responses(&out, &[2]);
    assert_eq!(r.len(), 6, "{out}");
    // Chunked upstream: chunked to the client, trailers only to one that accepts them, and
    // only the fields the response announced.
    assert!(r[0].0.contains("transfer-encoding: chunked"), "{}", r[0].0);
    assert!(r[0].0.contains("trailer: x-sum"), "{}", r[0].0);
    assert_eq!(r[0].1, "5\r\nhello\r\n0\r\nx-sum: 42\r\n\r\n");
    assert_eq!(r[1].1, "5\r\nhello\r\n0\r\n\r\n");
    // HEAD: the length a GET would have had, and no body.
    assert!(r[2].0.contains("content-length: 5"), "{}", r[2].0);
    // 204 and 304: no body, no length.
    assert!(
        r[3].0.starts_with("http/1.1 204 no content\r\n"),
        "{}",
        r[3].0
    );
    assert!(!r[3].0.contains("content-length"), "{}", r[3].0);
    assert!(
        r[4].0.starts_with("http/1.1 304 not modified\r\n"),
        "{}",
        r[4].0
    );
    assert!(r[4].0.contains("etag: \"a\""), "{}", r[4].0);
    assert!(!r[4].0.contains("content-length"), "{}", r[4].0);
    assert_eq!(r[5].1, "/last");
    lg.shutdown().await;
}

#[tokio::test]
async fn a_client_closing_while_its_request_waits_ends_the_exchange_upstream() {
    let (o, lg, at) = start().await;
    let mut s = TcpStream::connect(at).await.unwrap();
    s.write_all(b"GET /hang HTTP/1.1\r\nHost: t\r\n\r\n")
        .await
        .unwrap();
    for _ in 0..200 {
        if !o.requests().is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(o.requests().len(), 1, "the request reached the origin");
    drop(s);
    // langur notices and drops the upstream exchange (and its connection) at once, not when
    // the server's timeout would end it.
    for _ in 0..200 {
        if o.closed.load(Ordering::SeqCst) == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(o.closed.load(Ordering::SeqCst), 1);
    lg.shutdown().await;
}

#[tokio::test]
async fn a_smuggling_probe_after_lane_requests_is_refused_and_never_forwarded() {
    let (o, lg, at) = start().await;
    let out = exchange(
        at,
        b"GET /one HTTP/1.1\r\nHost: t\r\n\r\n\
          GET /two HTTP/1.1\r\nHost: t\r\n\r\n\
          POST /three HTTP/1.1\r\nHost: t\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n\
          0\r\n\r\n\
          GET /smuggled HTTP/1.1\r\nHost: t\r\n\r\n",
    )
    .await;
    let r = responses(&out, &[]);
    assert_eq!(r.len(), 3, "{out}");
    assert_eq!((r[0].1.as_str(), r[1].1.as_str()), ("/one", "/two"));
    assert!(r[2].0.starts_with("http/1.1 400 "), "{}", r[2].0);
    let seen: Vec<String> = o
        .requests()
        .iter()
        .map(|r| String::from_utf8_lossy(r).to_string())
        .collect();
    assert_eq!(seen.len(), 2, "{seen:?}");
    lg.shutdown().await;
}

#[tokio::test]
async fn malformed_and_oversized_heads_get_hyper_s_answers() {
    let (addr, seen, _) = raw_origin(answer).await;
    let lg = langur_toml(&format!(
        "[server]\nmax_header_size = \"8 KiB\"\n{}",
        config(addr)
    ))
    .await;
    let at = lg.listen_addrs()[0];
    let big = format!(
        "GET / HTTP/1.1\r\nHost: t\r\nX: {}\r\n\r\n",
        "a".repeat(10_000)
    );
    for (raw, status) in [
        (big.as_str(), "431"),
        ("GET / HTTP/1.1\r\nHo st: t\r\n\r\n", "400"),
        ("GET /a b HTTP/1.1\r\nHost: t\r\n\r\n", "400"),
    ] {
        let out = exchange(at, raw.as_bytes()).await;
        assert!(
            out.starts_with(&format!("HTTP/1.1 {status} ")),
            "{raw:?}: {out}"
        );
    }
    assert!(seen.lock().unwrap().concat().is_empty());
    lg.shutdown().await;
}

/// Reads one response with a Content-Length from a connection that stays open.
async fn read_response(s: &mut TcpStream) -> String {
    let mut got = Vec::new();
    let mut tmp = [0u8; 4096];
    loop {
        let n = s.read(&mut tmp).await.unwrap();
        assert!(n > 0, "the connection stays open");
        got.extend_from_slice(&tmp[..n]);
        if let Some(end) = find(&got, b"\r\n\r\n") {
            if got.len() >= end + 4 + common::content_length(&got[..end + 4]) {
                return String::from_utf8_lossy(&got).to_string();
            }
        }
    }
}

#[tokio::test]
async fn after_hyper_served_a_body_the_connection_comes_back_to_the_lane() {
    let (o, lg, at) = start().await;
    let mut s = TcpStream::connect(at).await.unwrap();
    s.write_all(b"POST /posted HTTP/1.1\r\nHost: t\r\nContent-Length: 2\r\n\r\nhi")
        .await
        .unwrap();
    assert!(read_response(&mut s).await.ends_with("/posted"));
    // hyper lets go after two ticks of the park clock (250 ms each) without a request.
    tokio::time::sleep(Duration::from_millis(800)).await;
    for path in ["/again", "/and-again"] {
        s.write_all(format!("GET {path} HTTP/1.1\r\nHost: t\r\n\r\n").as_bytes())
            .await
            .unwrap();
        assert!(read_response(&mut s).await.ends_with(path));
    }
    assert_eq!(o.requests().len(), 3);
    lg.shutdown().await;
}

/// A chunked body longer than `request_buffer` starts streaming to the server before its end
/// arrives; a trailer section with a bare LF then fails the request: the client gets 400 and
/// a closed connection, the server never a complete request, and the pipelined GET behind it
/// is never served.
#[tokio::test]
async fn a_bad_trailer_after_the_body_started_streaming_fails_the_request() {
    let (o, lg, at) = start().await;
    let chunk = "x".repeat(4096);
    let mut raw =
        b"POST /upload HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
    for _ in 0..20 {
        raw.extend_from_slice(format!("1000\r\n{chunk}\r\n").as_bytes());
    }
    let mut s = TcpStream::connect(at).await.unwrap();
    s.write_all(&raw).await.unwrap();
    // The first 64 KiB were read ahead, and the request went out.
    for _ in 0..100 {
        if o.seen.lock().unwrap().iter().any(|c| !c.is_empty())
            || o.closed.load(Ordering::SeqCst) > 0
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let _ = s
        .write_all(b"0\r\nX-Note: a\n\r\nGET /second HTTP/1.1\r\nHost: t\r\n\r\n")
        .await;
    let mut out = Vec::new();
    let r = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut out)).await;
    let out = String::from_utf8_lossy(&out);
    assert!(r.is_ok(), "the connection stayed open");
    assert!(out.starts_with("HTTP/1.1 400 "), "{out}");
    assert_eq!(out.matches("HTTP/1.1 ").count(), 1, "{out}");
    tokio::time::sleep(Duration::from_millis(100)).await;
    // The origin's parser never saw a whole request (it answers each one it sees).
    assert!(o.requests().is_empty(), "{:?}", o.requests().len());
    lg.shutdown().await;
}

/// Body pieces of a large response as the origin sends them, each written on its own: below,
/// at and above the size the lane writes without copying (4 KiB), and one byte.
const PIECES: [usize; 7] = [3000, 5000, 70_000, 1, 4096, 200_000, 4095];

/// An origin that sends a large body in [`PIECES`] (`/length`: with `Content-Length`,
/// `/chunked`: a chunk each), 2 ms apart, so that each reaches langur on its own.
fn pieces(path: &str) -> (Vec<Vec<u8>>, Duration, After) {
    let total: usize = PIECES.iter().sum();
    let body = common::fill(total);
    let chunked = path == "/chunked";
    let mut out = vec![match chunked {
        true => b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec(),
        false => format!("HTTP/1.1 200 OK\r\nContent-Length: {total}\r\n\r\n").into_bytes(),
    }];
    let mut at = 0;
    for n in PIECES {
        let piece = &body[at..at + n];
        at += n;
        out.push(match chunked {
            true => [format!("{n:x}\r\n").as_bytes(), piece, b"\r\n"].concat(),
            false => piece.to_vec(),
        });
    }
    if chunked {
        out.push(b"0\r\n\r\n".to_vec());
    }
    (out, Duration::from_millis(2), After::Stay)
}

/// A large body reaches a client that reads slowly through a small receive window whole and in
/// order: the lane's writes of a head or chunk line together with a body piece are taken in
/// part, again and again, and each part goes on where the last stopped.
#[tokio::test]
async fn a_large_body_reaches_a_slow_reader_whole_in_pieces_of_every_size() {
    let (addr, _, _) = raw_origin(pieces).await;
    let lg = langur_toml(&config(addr)).await;
    let at = lg.listen_addrs()[0];
    let want = common::fill(PIECES.iter().sum());
    for path in ["/length", "/chunked"] {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.set_recv_buffer_size(4096).unwrap();
        let mut s = socket.connect(at).await.unwrap();
        let req = format!("GET {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
        s.write_all(req.as_bytes()).await.unwrap();
        let mut out = Vec::new();
        let mut buf = [0u8; 2048];
        let read = async {
            loop {
                match s.read(&mut buf).await.unwrap() {
                    0 => break,
                    n => out.extend_from_slice(&buf[..n]),
                }
                tokio::time::sleep(Duration::from_micros(200)).await;
            }
        };
        tokio::time::timeout(Duration::from_secs(20), read)
            .await
            .expect("the whole response, then the close");
        let end = find(&out, b"\r\n\r\n").expect("a head") + 4;
        let head = String::from_utf8_lossy(&out[..end]).to_ascii_lowercase();
        assert!(head.starts_with("http/1.1 200 "), "{head}");
        let body = match path {
            "/chunked" => {
                assert!(head.contains("transfer-encoding: chunked"), "{head}");
                common::dechunked(&out[end..])
                    .expect("a whole chunked body")
                    .0
            }
            _ => out[end..].to_vec(),
        };
        assert_eq!(body.len(), want.len(), "{path}");
        assert!(body == want, "{path}: the bytes differ");
    }
    lg.shutdown().await;
}
