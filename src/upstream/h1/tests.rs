//! The upstream HTTP/1.1 client's unit tests.

use super::*;

/// tokio learns of a close only when its reactor runs; the kernel knows at once. A
/// connection closed since the last reactor turn still looks reusable to tokio's readiness,
/// and `is_alive_now` asks the kernel.
#[tokio::test(flavor = "current_thread")]
async fn a_close_the_reactor_has_not_seen_yet_is_found_by_asking_the_kernel() {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let client = TcpStream::connect(addr).await.unwrap();
    let (peer, _) = l.accept().await.unwrap();
    let sessions = Arc::new(Peer::new(1));
    let mut conn = Conn::new(Io::Tcp(client), &sessions, Duration::from_secs(5));
    // Idle and quiet: both checks agree.
    assert!(conn.is_reusable());
    assert!(conn.is_alive_now());
    // Let the reactor see the socket quiet, then close the far side with no turn of the
    // reactor in between (nothing is awaited).
    tokio::task::yield_now().await;
    drop(peer.into_std().unwrap());
    assert!(
        conn.is_reusable(),
        "tokio's readiness already knew (not the case tested)"
    );
    assert!(!conn.is_alive_now(), "the kernel knows the server closed");
}

#[test]
fn hex() {
    for n in [0usize, 1, 15, 16, 255, 4096, 0xdead_beef] {
        let mut out = Vec::new();
        write_hex(&mut out, n);
        assert_eq!(String::from_utf8(out).unwrap(), format!("{n:x}"));
    }
}

#[test]
fn trailer_sections() {
    let mut at = 0;
    let mut b = BytesMut::from(&b"\r\nrest"[..]);
    assert!(trailers(&mut b, &mut at).unwrap().unwrap().is_empty());
    assert_eq!(&b[..], b"rest");
    let mut b = BytesMut::from(&b"grpc-status: 0\r\nx: y\r\n\r\n"[..]);
    let t = trailers(&mut b, &mut at).unwrap().unwrap();
    assert_eq!(t["grpc-status"], "0");
    assert!(b.is_empty());
    let mut b = BytesMut::from(&b"grpc-status: 0\r\n"[..]);
    assert!(trailers(&mut b, &mut at).unwrap().is_none());
    assert_eq!(at, b.len());
    // More of the same section without its end: not parsed again.
    b.extend_from_slice(b"x-more: 1\r");
    assert!(trailers(&mut b, &mut at).unwrap().is_none());
    b.extend_from_slice(b"\n\r\n");
    assert_eq!(trailers(&mut b, &mut at).unwrap().unwrap().len(), 2);
    let mut at = 0;
    let mut b = BytesMut::from(&b"bad line\r\n\r\n"[..]);
    assert!(trailers(&mut b, &mut at).is_err());
}

#[test]
fn section_ends() {
    assert!(ends_section(b"HTTP/1.1 200 OK\r\n\r\n", 0));
    assert!(ends_section(b"HTTP/1.1 200 OK\n\n", 0));
    // The end straddles what was seen before and what came after.
    assert!(ends_section(b"HTTP/1.1 200 OK\r\n\r\n", 17));
    assert!(!ends_section(b"HTTP/1.1 200 OK\r\nA: b\r\n", 10));
}

#[test]
fn framing_fields() {
    let mut f = Framing::default();
    f.see(Field::of(b"Content-Length"), b"12");
    assert_eq!(f.length(), Ok(Some(12)));
    f.see(Field::of(b"content-length"), b"12");
    assert!(f.length().is_err());
    let mut f = Framing::default();
    f.see(Field::of(b"TRANSFER-ENCODING"), b"gzip, chunked");
    assert!(f.chunked().is_err());
    let mut f = Framing::default();
    f.see(Field::of(b"Connection"), b"Keep-Alive, Upgrade");
    assert!(f.keep_alive && !f.close && !f.names_others);
    f.see(Field::of(b"connection"), b" close, x-private");
    assert!(f.close && f.names_others);
    assert_eq!(Field::of(b"Proxy-Connection"), Field::Hop);
    assert_eq!(Field::of(b"te"), Field::Hop);
    assert_eq!(Field::of(b"Upgrade"), Field::Upgrade);
    assert_eq!(Field::of(b"x-upgrade"), Field::Other);
}
