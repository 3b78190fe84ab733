//! The `langur` binary: `check` output and exit codes, and `run` streaming 100 MiB each way
//! with bounded memory (measured on the proxy process itself).

use crate::common;

use bytes::Bytes;
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame;
use hyper_util::rt::TokioIo;
use std::process::{Command, Stdio};
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, BufReader};

const BIN: &str = env!("CARGO_BIN_EXE_langur");

/// A file holding `text`, named `langur-…-NAME` in the temporary directory; removed with the
/// value.
pub fn temp_file(name: &str, text: &str) -> tempfile::TempPath {
    let mut f = tempfile::Builder::new()
        .prefix("langur-")
        .suffix(&format!("-{name}"))
        .tempfile()
        .unwrap();
    std::io::Write::write_all(&mut f, text.as_bytes()).unwrap();
    f.into_temp_path()
}

/// Every configuration in `examples/` (`*.toml`, `*.conf`; the Rust examples are not
/// configurations), as `langur check` reads it.
fn example_configs() -> Vec<std::path::PathBuf> {
    let mut files: Vec<_> = std::fs::read_dir("examples")
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "toml" || x == "conf"))
        .collect();
    files.sort();
    files
}

#[test]
fn check_accepts_the_examples() {
    let files = example_configs();
    for f in [
        "examples/langur.toml",
        "examples/proxy_reverse.conf",
        "examples/weighted.conf",
        "examples/multi-site.toml",
        "examples/acme.toml",
    ] {
        assert!(files.iter().any(|p| p.ends_with(f)), "{f} not in {files:?}");
    }
    for f in &files {
        let out = Command::new(BIN)
            .args(["check", "-c"])
            .arg(f)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{}: {text}", f.display());
        assert!(text.contains(": ok: "), "{text}");
    }
}

/// The multi-site example checks; its only warnings are the two about its `[tls]` section,
/// which is commented out until certificates are there.
#[test]
fn check_accepts_the_multi_site_example() {
    let out = Command::new(BIN)
        .args(["check", "-c", "examples/multi-site.toml"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    let warnings: Vec<&str> = text.lines().filter(|l| l.contains("warning")).collect();
    assert_eq!(warnings.len(), 2, "{text}");
    assert!(
        warnings.iter().all(|w| w.contains("no `[tls] listen`")),
        "{text}"
    );
    assert!(text.contains(": ok: 5 route(s), 4 pool(s)"), "{text}");
    assert_eq!(text.lines().count(), 3, "{text}");
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
        text.contains(&format!("{f}:2: `ServerList`: bad server address")),
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

#[test]
fn check_names_the_line_of_duplicate_listeners_and_unitless_durations() {
    let f = temp_file(
        "ops.toml",
        "[server]\nlisten = [\"127.0.0.1:8080\", \"127.0.0.1:8080\"]\n[[route]]\nmatch = ['^/']\npool = \"p\"\n[pools.p]\nservers = [\"127.0.0.1:80\"]\n[pools.p.check]\ninterval = 2000\n",
    );
    let out = Command::new(BIN)
        .args(["check", "-c"])
        .arg(&f)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8_lossy(&out.stdout);
    let f = f.display().to_string();
    assert!(
        text.contains(&format!(
            "{f}:2: `listen`: 127.0.0.1:8080 is also a client listener on line 2"
        )),
        "{text}"
    );
    assert!(
        text.contains(&format!(
            "{f}:9: `check.interval`: `2000` has no unit: write \"2000ms\" or \"2000s\""
        )),
        "{text}"
    );
}

#[test]
fn command_line_listeners_that_take_the_same_connections_are_refused() {
    let f = temp_file(
        "plain.toml",
        "[[route]]\nmatch = ['^/']\npool = \"p\"\n[pools.p]\nservers = [\"127.0.0.1:80\"]\n",
    );
    for args in [
        &["--listen", "127.0.0.1:18080", "--listen", "127.0.0.1:18080"][..],
        &["--listen", "0.0.0.0:18080", "--listen", "127.0.0.1:18080"][..],
        &["--listen", "127.0.0.1:18090", "--admin", "127.0.0.1:18090"][..],
        &["--listen", "127.0.0.1:9090"][..],
    ] {
        let out = Command::new(BIN)
            .args(["run", "-c"])
            .arg(&f)
            .args(args)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains("take the same connections"), "{args:?}: {err}");
    }
}

/// A running langur's output, line by line, kept for the test to search.
struct Run {
    child: tokio::process::Child,
    lines: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

impl Run {
    async fn start(config: &std::path::Path, args: &[&str]) -> Run {
        let mut child = tokio::process::Command::new(BIN)
            .args(["run", "-c"])
            .arg(config)
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let lines = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        for out in [
            Box::new(child.stdout.take().unwrap()) as Box<dyn tokio::io::AsyncRead + Unpin + Send>,
            Box::new(child.stderr.take().unwrap()),
        ] {
            let lines = lines.clone();
            tokio::spawn(async move {
                let mut r = BufReader::new(out).lines();
                while let Ok(Some(l)) = r.next_line().await {
                    lines.lock().unwrap().push(l);
                }
            });
        }
        Run { child, lines }
    }

    /// The first line containing `what` (waits up to 10 s).
    async fn wait_for(&self, what: &str) -> String {
        let t = std::time::Instant::now();
        loop {
            if let Some(l) = self.lines.lock().unwrap().iter().find(|l| l.contains(what)) {
                return l.clone();
            }
            assert!(
                t.elapsed() < Duration::from_secs(10),
                "no line with {what:?} in:\n{}",
                self.lines.lock().unwrap().join("\n")
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    fn count(&self, what: &str) -> usize {
        self.lines
            .lock()
            .unwrap()
            .iter()
            .filter(|l| l.contains(what))
            .count()
    }

    fn signal(&self, sig: &str) {
        let pid = self.child.id().unwrap().to_string();
        assert!(Command::new("kill")
            .args([sig, &pid])
            .status()
            .unwrap()
            .success());
    }
}

/// A port nothing listens on now.
fn free_port() -> std::net::SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

async fn refused(a: std::net::SocketAddr) {
    let t = std::time::Instant::now();
    while tokio::net::TcpStream::connect(a).await.is_ok() {
        assert!(t.elapsed() < Duration::from_secs(5), "{a} still accepts");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A second langur with the same config does not silently share the first one's port
/// (SO_REUSEPORT); `reuse_port = true` shares it on purpose. The first one's workers share
/// their port among themselves all along.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_process_on_a_served_port_is_refused_unless_asked_to_share() {
    let b = common::Backend::start("b").await;
    let p = free_port();
    let route = format!(
        "[[route]]\nmatch = ['^/']\npool = \"p\"\n[pools.p]\nservers = [\"{}\"]\n",
        b.addr
    );
    let cfg = temp_file(
        "shared-1.toml",
        &format!("[server]\nlisten = [\"{p}\"]\n{route}"),
    );
    let args = [
        "--admin",
        "127.0.0.1:0",
        "--workers",
        "2",
        "--no-access-log",
    ];
    let first = Run::start(&cfg, &args).await;
    first.wait_for(&format!("listen={p}")).await;
    for _ in 0..6 {
        assert_eq!(common::get(p, "/").await.status, 200);
    }
    let admin: std::net::SocketAddr = first
        .wait_for("admin=")
        .await
        .split("admin=")
        .nth(1)
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap()
        .parse()
        .unwrap();

    // The same config, a wildcard address on the same port, the first one's admin port.
    let wildcard = temp_file(
        "shared-2.toml",
        &format!("[server]\nlisten = [\"0.0.0.0:{}\"]\n{route}", p.port()),
    );
    let free = free_port();
    let other = temp_file(
        "shared-3.toml",
        &format!("[server]\nlisten = [\"{free}\"]\n{route}"),
    );
    for (config, admin_arg, want) in [
        (
            &cfg,
            "127.0.0.1:0".to_string(),
            format!("cannot listen on {p}"),
        ),
        (
            &wildcard,
            "127.0.0.1:0".to_string(),
            format!("cannot listen on 0.0.0.0:{}", p.port()),
        ),
        (
            &other,
            admin.to_string(),
            format!("cannot listen on {admin} (admin)"),
        ),
    ] {
        let mut second = Run::start(config, &["--admin", &admin_arg, "--no-access-log"]).await;
        let status = tokio::time::timeout(Duration::from_secs(10), second.child.wait())
            .await
            .expect("the second process exits")
            .unwrap();
        assert_eq!(status.code(), Some(1));
        let line = second.wait_for(&want).await;
        assert!(line.contains("already in use by another process"), "{line}");
        assert!(line.contains("reuse_port"), "{line}");
    }

    // Asked for: it shares the port.
    let sharing = temp_file(
        "shared-4.toml",
        &format!("[server]\nlisten = [\"{p}\"]\nreuse_port = true\n{route}"),
    );
    let second = Run::start(&sharing, &args).await;
    second.wait_for(&format!("listen={p}")).await;
    assert_eq!(common::get(p, "/").await.status, 200);
    drop(second);
    drop(first);
}

/// SIGHUP applies `listen` changes in the multi-worker server: the new port is served by
/// every worker, the removed one closes. A changed `workers` is refused with the old config
/// still serving, and `--listen` keeps its place over the file's `listen`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_applies_listener_changes_and_refuses_a_workers_change() {
    let b = common::Backend::start("b").await;
    let route = format!(
        "[[route]]\nmatch = ['^/']\npool = \"p\"\n[pools.p]\nservers = [\"{}\"]\n",
        b.addr
    );
    let (p1, p2) = (free_port(), free_port());
    let text = |listen: std::net::SocketAddr, workers: usize| {
        format!("[server]\nlisten = [\"{listen}\"]\nworkers = {workers}\n{route}")
    };
    let cfg = temp_file("hup.toml", &text(p1, 2));
    let run = Run::start(&cfg, &["--admin", "127.0.0.1:0", "--no-access-log"]).await;
    run.wait_for(&format!("listen={p1}")).await;
    assert_eq!(common::get(p1, "/").await.status, 200);

    std::fs::write(&cfg, text(p2, 2)).unwrap();
    run.signal("-HUP");
    let line = run.wait_for("config reloaded").await;
    assert!(line.contains(&format!("+client listener {p2}")), "{line}");
    assert!(line.contains(&format!("-client listener {p1}")), "{line}");
    // Fresh connections land on both workers' sockets.
    for _ in 0..20 {
        assert_eq!(common::get(p2, "/").await.status, 200);
    }
    refused(p1).await;

    std::fs::write(&cfg, text(p1, 3)).unwrap();
    run.signal("-HUP");
    run.wait_for("reload refused").await;
    run.wait_for("`workers` changed (from 2 to 3)").await;
    assert_eq!(common::get(p2, "/").await.status, 200);
    assert!(tokio::net::TcpStream::connect(p1).await.is_err());
    assert_eq!(run.count("config reloaded"), 1);
    drop(run);

    // `--listen` replaces the file's listeners, on reload too.
    let p3 = free_port();
    std::fs::write(&cfg, text(p3, 2)).unwrap();
    let run = Run::start(
        &cfg,
        &[
            "--listen",
            "127.0.0.1:0",
            "--admin",
            "127.0.0.1:0",
            "--no-access-log",
        ],
    )
    .await;
    let at: std::net::SocketAddr = run
        .wait_for("listen=")
        .await
        .split("listen=")
        .nth(1)
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap()
        .parse()
        .unwrap();
    run.signal("-HUP");
    let line = run.wait_for("config reloaded").await;
    assert!(!line.contains("listener"), "{line}");
    assert_eq!(common::get(at, "/").await.status, 200);
    assert!(tokio::net::TcpStream::connect(p3).await.is_err());
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
pub async fn spawn_langur(
    config: &std::path::Path,
) -> (tokio::process::Child, std::net::SocketAddr) {
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

/// A root that goes missing (a deploy that points it at nothing) is said once in the error
/// log however many requests meet it, and once when it is back; its files are 404 meanwhile.
#[tokio::test]
async fn a_root_that_goes_missing_and_comes_back_is_said_once_each_way() {
    let dir = crate::common::Scratch::new("root-log");
    let (root, gone) = (dir.join("site"), dir.join("site.gone"));
    std::fs::create_dir(&root).unwrap();
    std::fs::write(root.join("a.txt"), "here").unwrap();
    let p = free_port();
    let cfg = dir.join("langur.toml");
    let text = format!(
        "[server]\nlisten = [\"{p}\"]\n[admin]\nlisten = \"127.0.0.1:0\"\n[[route]]\nmatch = ['^/']\nroot = '{}'\n",
        root.display()
    );
    std::fs::write(&cfg, text).unwrap();
    let run = Run::start(&cfg, &[]).await;
    run.wait_for(&format!("listen={p}")).await;
    assert_eq!(common::get(p, "/a.txt").await.status, 200);
    std::fs::rename(&root, &gone).unwrap();
    // The handle is opened again at most once a second: a few requests over two seconds.
    for _ in 0..8 {
        tokio::time::sleep(Duration::from_millis(250)).await;
        common::get(p, "/a.txt").await;
    }
    assert_eq!(common::get(p, "/a.txt").await.status, 404);
    run.wait_for("the root cannot be opened").await;
    assert_eq!(run.count("the root cannot be opened"), 1);
    std::fs::rename(&gone, &root).unwrap();
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(common::get(p, "/a.txt").await.status, 200);
    for _ in 0..4 {
        tokio::time::sleep(Duration::from_millis(300)).await;
        common::get(p, "/a.txt").await;
    }
    run.wait_for("the root can be opened again").await;
    assert_eq!(run.count("the root can be opened again"), 1);
    assert_eq!(run.count("the root cannot be opened"), 1);
}
