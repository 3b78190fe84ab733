//! Client connection handling: keep-alive across parking, pipelining, HTTP/1.0, close, and an
//! unread request body that must never be read as the next request.

mod common;

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
