//! The `langur` binary: `check` output and exit codes, and `run` streaming 100 MiB each way
//! with bounded memory (measured on the proxy process itself).

mod common;

use bytes::Bytes;
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame;
use hyper_util::rt::TokioIo;
use std::process::{Command, Stdio};
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, BufReader};

const BIN: &str = env!("CARGO_BIN_EXE_langur");

fn temp_file(name: &str, text: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("langur-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

#[test]
fn check_accepts_the_examples() {
    for f in [
        "examples/langur.toml",
        "examples/proxy_reverse.conf",
        "examples/weighted.conf",
    ] {
        let out = Command::new(BIN).args(["check", "-c", f]).output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{f}: {text}");
        assert!(text.contains(": ok: "), "{text}");
    }
}

#[test]
fn check_prints_every_error_with_its_line() {
    let toml = temp_file(
        "bad.toml",
        "[server]\nlisten = [\"127.0.0.1:8080\"]\nworkrs = 2\n\n[[route]]\nmatch = ['^/']\npool = \"p\"\n\n[pools.p]\nservers = [\"127.0.0.1:80\", \"300.1.2.3:80\"]\n",
    );
    let out = Command::new(BIN)
        .args(["check", "-c"])
        .arg(&toml)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8_lossy(&out.stdout);
    let f = toml.display().to_string();
    assert!(
        text.contains(&format!("{f}:3: unknown key `workrs`")),
        "{text}"
    );
    assert!(text.contains("did you mean `workers`"), "{text}");
    assert!(
        text.contains(&format!("{f}:10: bad server address")),
        "{text}"
    );
    assert!(text.contains("300.1.2.3:80"), "{text}");
    assert_eq!(text.lines().count(), 2, "{text}");

    let legacy = temp_file(
        "bad.conf",
        "[PROXY_ENTRY]\nServerList 127.0.0.1:80 nohost\nLoadBalance Round-Robin\nMatchh ^/\nMatch ^/\n",
    );
    let out = Command::new(BIN)
        .args(["check", "-c"])
        .arg(&legacy)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8_lossy(&out.stdout);
    let f = legacy.display().to_string();
    assert!(
        text.contains(&format!("{f}:2: bad server address")),
        "{text}"
    );
    assert!(
        text.contains(&format!("{f}:4: unknown key `Matchh`")),
        "{text}"
    );
}

#[test]
fn check_warns_about_a_server_that_is_langur_itself() {
    let f = temp_file(
        "loop.toml",
        "[server]\nlisten = [\"127.0.0.1:18181\"]\n[[route]]\nmatch = ['^/']\npool = \"p\"\n[pools.p]\nservers = [\"127.0.0.1:18181\"]\n",
    );
    let out = Command::new(BIN)
        .args(["check", "-c"])
        .arg(&f)
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("warning") && text.contains("loop"), "{text}");
}

fn rss_kib(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

/// Starts the binary with a config; returns the child and the address it reports.
async fn spawn_langur(config: &std::path::Path) -> (tokio::process::Child, std::net::SocketAddr) {
    let mut child = tokio::process::Command::new(BIN)
        .args(["run", "-c"])
        .arg(config)
        .args([
            "--listen",
            "127.0.0.1:0",
            "--admin",
            "127.0.0.1:0",
            "--workers",
            "2",
            "--no-access-log",
        ])
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let addr = tokio::time::timeout(Duration::from_secs(10), async {
        while let Some(line) = lines.next_line().await.unwrap() {
            if let Some(i) = line.find("listen=") {
                return line[i + 7..]
                    .split_whitespace()
                    .next()
                    .unwrap()
                    .parse()
                    .unwrap();
            }
        }
        panic!("langur exited before listening")
    })
    .await
    .unwrap();
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    (child, addr)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_100_mib_body_streams_both_ways_in_bounded_memory() {
    let b = common::Backend::start("echo").await;
    let cfg = temp_file(
        "stream.toml",
        &format!(
            "[[route]]\nmatch = ['^/']\npool = \"p\"\n[pools.p]\nservers = [\"{}\"]\n",
            b.addr
        ),
    );
    let (child, at) = spawn_langur(&cfg).await;
    let pid = child.id().unwrap();
    assert_eq!(common::get(at, "/warm").await.status, 200);
    let before = rss_kib(pid, "VmRSS:");

    const CHUNK: usize = 64 * 1024;
    const TOTAL: usize = 100 * 1024 * 1024;
    let chunk = Bytes::from(vec![b'z'; CHUNK]);
    let frames = futures_util::stream::iter(
        (0..TOTAL / CHUNK).map(move |_| Ok::<_, hyper::Error>(Frame::data(chunk.clone()))),
    );
    let stream = tokio::net::TcpStream::connect(at).await.unwrap();
    let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn);
    let req = http::Request::post("/echo")
        .header("host", "t")
        .body(StreamBody::new(frames))
        .unwrap();
    let resp = send.send_request(req).await.unwrap();
    assert_eq!(resp.status(), 200);
    let mut body = resp.into_body();
    let mut received = 0usize;
    while let Some(frame) = body.frame().await {
        if let Ok(d) = frame.unwrap().into_data() {
            received += d.len();
        }
    }
    assert_eq!(received, TOTAL);
    let peak = rss_kib(pid, "VmHWM:");
    let growth_mib = peak.saturating_sub(before) as f64 / 1024.0;
    assert!(
        growth_mib < 32.0,
        "resident memory grew by {growth_mib:.1} MiB (from {before} KiB to a peak of {peak} KiB)"
    );
    eprintln!("100 MiB each way: proxy RSS {before} KiB before, peak {peak} KiB ({growth_mib:.1} MiB growth)");
}

#[tokio::test]
async fn demo_starts_backends_and_prints_urls_that_work() {
    let mut child = tokio::process::Command::new(BIN)
        .args(["demo", "--listen", "127.0.0.1:0", "--admin", "127.0.0.1:0"])
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let url = tokio::time::timeout(Duration::from_secs(10), async {
        while let Some(line) = lines.next_line().await.unwrap() {
            if let Some(i) = line.find("curl http://") {
                return line[i + 5..].split_whitespace().next().unwrap().to_string();
            }
        }
        panic!("demo printed no URL")
    })
    .await
    .unwrap();
    let addr: std::net::SocketAddr = url
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .parse()
        .unwrap();
    let mut seen = std::collections::HashSet::new();
    for path in ["/", "/logo.png", "/a.css", "/b.css"] {
        let r = common::get(addr, path).await;
        assert_eq!(r.status, 200, "{path}");
        assert!(r.text().contains("demo-backend-"), "{}", r.text());
        seen.insert(r.backend());
    }
    assert!(
        seen.len() >= 2,
        "the demo balances over its backends: {seen:?}"
    );
}

/// SIGTERM while requests are in flight: every request langur had accepted gets its full
/// response, new connections are refused at once, and the process exits 0.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_under_load_finishes_every_accepted_request_and_exits_0() {
    let b = common::Backend::start("b").await;
    let cfg = temp_file(
        "sigterm.toml",
        &format!(
            "[server]\nshutdown_timeout = \"10s\"\n[[route]]\nmatch = ['^/']\npool = \"p\"\n[pools.p]\nservers = [\"{}\"]\n",
            b.addr
        ),
    );
    let (mut child, at) = spawn_langur(&cfg).await;
    let pid = child.id().unwrap();
    // Background load: quick requests on fresh connections.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut load = Vec::new();
    for _ in 0..4 {
        let stop = stop.clone();
        load.push(tokio::spawn(async move {
            let mut done = 0usize;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let Ok(s) = tokio::net::TcpStream::connect(at).await else {
                    break; // the listener is gone: shutdown began
                };
                let Ok((mut send, conn)) = hyper::client::conn::http1::handshake::<
                    _,
                    http_body_util::Empty<Bytes>,
                >(TokioIo::new(s))
                .await
                else {
                    continue;
                };
                tokio::spawn(conn);
                let req = http::Request::get("/quick")
                    .header("host", "t")
                    .body(http_body_util::Empty::new())
                    .unwrap();
                // A request sent as the listener closes may be refused; one that got a response
                // head must get all of its body.
                if let Ok(resp) = send.send_request(req).await {
                    let body = resp.into_body().collect().await.expect("a full body");
                    assert_eq!(body.to_bytes(), "b");
                    done += 1;
                }
            }
            done
        }));
    }
    // Twenty slow requests, accepted and in flight at the backend when SIGTERM arrives.
    let mut slow = Vec::new();
    for _ in 0..20 {
        slow.push(tokio::spawn(async move {
            let r = common::get(at, "/slow/1500").await;
            (r.status, r.body)
        }));
    }
    let t = std::time::Instant::now();
    while b.in_flight.load(std::sync::atomic::Ordering::SeqCst) < 20 {
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "slow requests never arrived"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let status = Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    // New connections are refused promptly.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        tokio::net::TcpStream::connect(at).await.is_err(),
        "still accepting after SIGTERM"
    );
    for s in slow {
        let (status, body) = s.await.unwrap();
        assert_eq!(status, 200);
        assert_eq!(body, "b");
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut quick = 0;
    for l in load {
        quick += l.await.unwrap();
    }
    assert!(quick > 0);
    let exit = tokio::time::timeout(Duration::from_secs(10), child.wait())
        .await
        .expect("langur exits within its shutdown timeout")
        .unwrap();
    assert!(exit.success(), "exit status {exit:?}");
}
