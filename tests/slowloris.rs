//! Slow clients: a test binary of its own (the other integration tests are one binary,
//! tests/it), so no other test's load shares the machine with it while it measures a normal
//! client's latency.

#[path = "it/common/mod.rs"]
mod common;

use common::*;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// 1 000 connections each send one byte of a request head per second. A normal client's
/// requests are served quickly all along, and the slow connections are closed at the
/// `header_read_timeout` (2 s here), not before.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slowloris_does_not_slow_other_clients() {
    let b = Backend::start("b").await;
    let lg = langur_toml(&format!(
        "[server]\nheader_read_timeout = \"2s\"\n[[route]]\nmatch = ['^/']\npool = \"p\"\n[pools.p]\nservers = [\"{}\"]\n",
        b.addr
    ))
    .await;
    let at = lg.listen_addrs()[0];
    let closed_after = Arc::new(std::sync::Mutex::new(Vec::new()));
    let mut slow = Vec::new();
    for _ in 0..1000 {
        let closed_after = closed_after.clone();
        slow.push(tokio::spawn(async move {
            let s = TcpStream::connect(at).await.unwrap();
            let (mut r, mut w) = s.into_split();
            let began = Instant::now();
            let writer = tokio::spawn(async move {
                for byte in b"GET / HTTP/1.1\r\nHost: slow\r\nX-Slow: aaaaaaaaaaaaaaaaaaaa\r\n" {
                    if w.write_all(&[*byte]).await.is_err() {
                        return;
                    }
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            });
            let mut buf = [0u8; 512];
            // Whatever comes back (nothing, or a 408) ends with the connection closing.
            loop {
                match tokio::time::timeout(Duration::from_secs(8), r.read(&mut buf)).await {
                    Ok(Ok(0)) | Ok(Err(_)) => break,
                    Ok(Ok(_)) => continue,
                    Err(_) => break,
                }
            }
            writer.abort();
            closed_after.lock().unwrap().push(began.elapsed());
        }));
    }
    // Meanwhile, a normal client: 30 requests on fresh connections, each quick.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut worst = Duration::ZERO;
    for _ in 0..30 {
        let t = Instant::now();
        let r = get(at, "/").await;
        assert_eq!(r.status, 200);
        worst = worst.max(t.elapsed());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        worst < Duration::from_millis(500),
        "a normal request took {worst:?} beside 1000 slow connections"
    );
    for s in slow {
        s.await.unwrap();
    }
    let times = closed_after.lock().unwrap().clone();
    assert_eq!(times.len(), 1000);
    let (min, max) = (
        times.iter().min().copied().unwrap(),
        times.iter().max().copied().unwrap(),
    );
    assert!(
        min >= Duration::from_millis(1500),
        "a slow connection was closed after only {min:?}"
    );
    assert!(
        max <= Duration::from_millis(4500),
        "a slow connection stayed open {max:?} (head timeout 2 s)"
    );
    lg.shutdown().await;
}
