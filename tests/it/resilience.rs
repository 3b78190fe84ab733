//! Staying up under change: a backend dying and config reloads while traffic flows.

use crate::common;

use common::ctl::Ctl;
use common::*;
use http_body_util::BodyExt;
use hyper_util::rt::TokioIo;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::net::TcpStream;

/// One GET on a kept-alive connection; `Err` says what failed.
async fn one_get(
    send: &mut hyper::client::conn::http1::SendRequest<http_body_util::Empty<bytes::Bytes>>,
) -> Result<(), String> {
    let req = http::Request::get("/app")
        .header("host", "load")
        .body(http_body_util::Empty::new())
        .unwrap();
    let resp = send.send_request(req).await.map_err(|e| e.to_string())?;
    let status = resp.status();
    let body = resp
        .into_body()
        .collect()
        .await
        .map_err(|e| e.to_string())?
        .to_bytes();
    if status != 200 || body.is_empty() {
        return Err(format!("{status} {body:?}"));
    }
    Ok(())
}

/// Continuous GETs for 5 s over keep-alive connections; one of three backends is killed and
/// the config is reloaded twice on the way. Not one GET fails.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_a_backend_and_reload_twice_under_load_without_a_failed_get() {
    let mut backends = [
        Ctl::start("a").await,
        Ctl::start("b").await,
        Ctl::start("c").await,
    ];
    let dir = crate::common::Scratch::new("resilience");
    let path = dir.join("langur.toml");
    let servers = |names: &[&Ctl]| {
        names
            .iter()
            .map(|c| format!("\"{}\"", c.addr))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let config_text = |servers: String, balance: &str| {
        format!(
            "[server]\naccess_log = false\n[[route]]\nmatch = ['^/']\npool = \"p\"\n[pools.p]\nbalance = \"{balance}\"\nservers = [{servers}]\n"
        )
    };
    std::fs::write(
        &path,
        config_text(
            servers(&[&backends[0], &backends[1], &backends[2]]),
            "round-robin",
        ),
    )
    .unwrap();
    let config = langur::config::load(&path).unwrap();
    let lg = start(config).await;
    let at = lg.listen_addrs()[0];

    let stop = Arc::new(AtomicBool::new(false));
    let ok = Arc::new(AtomicUsize::new(0));
    let failures = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let mut clients = Vec::new();
    for _ in 0..16 {
        let (stop, ok, failures) = (stop.clone(), ok.clone(), failures.clone());
        clients.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let stream = TcpStream::connect(at).await.unwrap();
                let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
                    .await
                    .unwrap();
                tokio::spawn(conn);
                // 200 requests per connection, then a fresh one (as real clients come and go).
                for _ in 0..200 {
                    if stop.load(Ordering::Relaxed) {
                        break;
                    }
                    match one_get(&mut send).await {
                        Ok(()) => {
                            ok.fetch_add(1, Ordering::Relaxed);
                        }
                        Err(e) => {
                            failures.lock().unwrap().push(e);
                            break;
                        }
                    }
                }
            }
        }));
    }
    let t0 = Instant::now();
    tokio::time::sleep(Duration::from_secs(1)).await;
    // Kill one backend outright: its listener and every connection go away mid-traffic.
    backends[1].stop();
    tokio::time::sleep(Duration::from_secs(1)).await;
    // Reload 1: the dead server leaves the pool.
    std::fs::write(
        &path,
        config_text(servers(&[&backends[0], &backends[2]]), "round-robin"),
    )
    .unwrap();
    langur::server::reload(lg.shared()).expect("first reload");
    tokio::time::sleep(Duration::from_secs(1)).await;
    // A bad config in between changes nothing.
    std::fs::write(&path, "[[route]]\nmatch = ['(']\n").unwrap();
    assert!(langur::server::reload(lg.shared()).is_err());
    tokio::time::sleep(Duration::from_millis(500)).await;
    // Reload 2: another balancing method, the dead server back in the list (still dead).
    std::fs::write(
        &path,
        config_text(
            servers(&[&backends[0], &backends[1], &backends[2]]),
            "least-connections",
        ),
    )
    .unwrap();
    langur::server::reload(lg.shared()).expect("second reload");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    stop.store(true, Ordering::Relaxed);
    for c in clients {
        c.await.unwrap();
    }
    let elapsed = t0.elapsed();
    let failures = failures.lock().unwrap().clone();
    let n = ok.load(Ordering::Relaxed);
    eprintln!(
        "{n} GETs in {elapsed:?} ({:.0}/s), {} failed",
        n as f64 / elapsed.as_secs_f64(),
        failures.len()
    );
    assert!(failures.is_empty(), "failed GETs: {failures:?}");
    assert!(n > 1_500, "too little load to mean anything: {n}");
    assert!(backends[0].hits.load(Ordering::SeqCst) > 0);
    assert!(backends[2].hits.load(Ordering::SeqCst) > 0);
    lg.shutdown().await;
}
