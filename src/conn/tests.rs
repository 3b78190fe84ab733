//! Client connection unit tests.

use super::*;

/// A new connection waiting for its first request is one task; keep its future small
/// (idle keep-alive connections are not tasks: see `park.rs`).
#[tokio::test]
async fn a_parked_connection_is_small() {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let a = l.local_addr().unwrap();
    let _c = TcpStream::connect(a).await.unwrap();
    let (s, peer) = l.accept().await.unwrap();
    let config = crate::config::parse_str("t.toml", "", true).unwrap();
    let shared = Arc::new(crate::server::new_shared(&config, 1).unwrap());
    let (ticks, _clock) = park_clock();
    let ctx = Ctx {
        shared: shared.live.clone(),
        active: Arc::new(Active::default()),
        ticks,
        lot: crate::park::Lot::new(),
        listener: Arc::new(crate::config::ListenAddr::Tcp(a)),
    };
    let conn = Parked {
        stream: s.into(),
        peer,
        permit: None,
        origin: None,
    };
    let fut = serve(conn, ctx, true);
    let size = std::mem::size_of_val(&fut);
    // 600 bytes before the framing scanner (40 bytes) and the request limits came in, 768
    // with the lot's handle and the connection's permit.
    assert!(size <= 800, "the connection future grew to {size} bytes");
}
