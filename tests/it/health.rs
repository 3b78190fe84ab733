//! Backend health end to end: active checks with HAProxy's statuses, rise/fall timing, drain on
//! 404, passive observation, backups, and session shutdown. Backends are raw TCP servers the test
//! can stop, restart and make misbehave.

use crate::common;

use common::*;
use langur::backend::health::{CheckStatus, Health};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::ctl::*;

/// Downloads `/download` through langur: its length, or the error that cut it.
async fn download(at: std::net::SocketAddr) -> Result<usize, hyper::Error> {
    let s = tokio::net::TcpStream::connect(at).await.unwrap();
    let (mut send, conn) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(s))
        .await
        .unwrap();
    tokio::spawn(conn);
    let req = http::Request::get("/download")
        .header("host", "t")
        .body(body(""))
        .unwrap();
    let resp = send.send_request(req).await.unwrap();
    http_body_util::BodyExt::collect(resp.into_body())
        .await
        .map(|c| c.to_bytes().len())
}

fn server(lg: &langur::Langur, i: usize) -> Arc<langur::backend::Server> {
    lg.shared().runtime.load().pools[0].servers[i].clone()
}

async fn wait_for(what: &str, limit: Duration, mut f: impl FnMut() -> bool) -> Duration {
    let t0 = Instant::now();
    while !f() {
        assert!(t0.elapsed() < limit, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    t0.elapsed()
}

/// langur with one pool of `a` alone, checked as `check` says (see [`check_conf`]); and its
/// server.
async fn one_checked(a: &Ctl, check: &str) -> (langur::Langur, Arc<langur::backend::Server>) {
    let toml = format!(
        "[[route]]\nmatch = ['^/']\npool = \"p\"\n[pools.p]\nservers = [\"{}\"]\n{check}",
        a.addr
    );
    let lg = langur_toml(&toml).await;
    let sa = server(&lg, 0);
    (lg, sa)
}

fn check_conf(extra: &str) -> String {
    format!("[pools.p.check]\ntype = \"http\"\npath = \"/health\"\ninterval = \"300ms\"\nfastinter = \"50ms\"\ndowninter = \"100ms\"\ntimeout = \"150ms\"\nrise = 2\nfall = 3\n{extra}")
}

#[tokio::test]
async fn a_killed_backend_goes_down_after_fall_checks_and_comes_back_after_rise() {
    let mut a = Ctl::start("a").await;
    let b = Ctl::start("b").await;
    let toml = format!(
        "[[route]]\nmatch = ['^/']\npool = \"p\"\n[pools.p]\nservers = [\"{}\", \"{}\"]\n{}",
        a.addr,
        b.addr,
        check_conf("")
    );
    let lg = langur_toml(&toml).await;
    let sa = server(&lg, 0);
    wait_for("first check", Duration::from_secs(2), || {
        sa.machine.lock().unwrap().last.status == CheckStatus::L7Ok
    })
    .await;
    assert_eq!(sa.health(), Health::Up);

    a.stop();
    let took = wait_for("down", Duration::from_secs(3), || {
        sa.health() == Health::Down
    })
    .await;
    // One normal interval to notice, then two more failures at fastinter (plus scheduling slack).
    assert!(
        took < Duration::from_millis(300 + 2 * 50 + 250),
        "took {took:?}"
    );
    let last = sa.machine.lock().unwrap().last.clone();
    assert_eq!(last.status, CheckStatus::L4Con);
    assert_eq!(sa.check_failures.load(Ordering::SeqCst), 3);
    // While down, traffic goes to b only.
    for _ in 0..6 {
        assert_eq!(get(lg.listen_addrs()[0], "/app").await.backend(), "b");
    }

    a.restart().await;
    wait_for("up", Duration::from_secs(3), || sa.health() == Health::Up).await;
    let events = lg.shared().events.recent();
    let mine: Vec<_> = events
        .iter()
        .filter(|e| e.server == a.addr.to_string())
        .collect();
    assert_eq!(mine.len(), 2, "each transition once: {events:?}");
    assert_eq!(
        (mine[1].from, mine[1].to, mine[1].status),
        (Health::Up, Health::Down, CheckStatus::L4Con)
    );
    assert_eq!(
        (mine[0].from, mine[0].to, mine[0].status),
        (Health::Down, Health::Up, CheckStatus::L7Ok)
    );
    assert!(!mine[1].reason.is_empty());
    lg.shutdown().await;
}

#[tokio::test]
async fn check_statuses_follow_haproxy() {
    let a = Ctl::start("a").await;
    let (lg, sa) = one_checked(&a, &check_conf("")).await;
    let status = || sa.machine.lock().unwrap().last.clone();
    for (mode, want, code) in [
        (S500, CheckStatus::L7Sts, Some(500)),
        (GARBAGE, CheckStatus::L7Rsp, None),
        (HANG, CheckStatus::L7Tout, None),
        (OK, CheckStatus::L7Ok, Some(200)),
    ] {
        a.mode.store(mode, Ordering::SeqCst);
        wait_for(want.as_str(), Duration::from_secs(3), || {
            status().status == want
        })
        .await;
        assert_eq!(status().code, code, "{want}");
    }
    // A tcp check of a port nobody listens on is L4CON.
    let dead = dead_addr().await;
    let toml = format!(
        "[[route]]\nmatch = ['^/']\npool = \"p\"\n[pools.p]\nservers = [\"{dead}\"]\n[pools.p.check]\ntype = \"tcp\"\ninterval = \"100ms\"\n"
    );
    let lg2 = langur_toml(&toml).await;
    let sd = server(&lg2, 0);
    wait_for("L4CON", Duration::from_secs(2), || {
        sd.machine.lock().unwrap().last.status == CheckStatus::L4Con
    })
    .await;
    lg.shutdown().await;
    lg2.shutdown().await;
}

#[tokio::test]
async fn disable_on_404_drains_without_cutting_requests_in_flight() {
    let a = Ctl::start("a").await;
    let b = Ctl::start("b").await;
    let toml = format!(
        "[[route]]\nmatch = ['^/']\npool = \"p\"\n[pools.p]\nbalance = \"first-alive\"\nservers = [\"{}\", \"{}\"]\n{}",
        a.addr,
        b.addr,
        check_conf("disable_on_404 = true\n")
    );
    let lg = langur_toml(&toml).await;
    let at = lg.listen_addrs()[0];
    let sa = server(&lg, 0);
    // A long download starts on a (first-alive).
    let download = tokio::spawn(async move { get(at, "/download").await });
    wait_for("download on a", Duration::from_secs(2), || {
        a.hits.load(Ordering::SeqCst) == 1
    })
    .await;
    a.mode.store(NOT_FOUND, Ordering::SeqCst);
    wait_for("drain", Duration::from_secs(2), || {
        sa.health() == Health::Drain
    })
    .await;
    assert_eq!(sa.machine.lock().unwrap().last.status, CheckStatus::L7OkC);
    for _ in 0..5 {
        assert_eq!(
            get(at, "/app").await.backend(),
            "b",
            "a drained server got a new request"
        );
    }
    let r = download.await.unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(
        r.body.len(),
        DOWNLOAD_CHUNKS * 1024,
        "the request in flight was cut"
    );
    lg.shutdown().await;
}

#[tokio::test]
async fn layer7_observation_marks_a_failing_server_down_before_any_check() {
    let a = Ctl::start("a").await;
    let b = Ctl::start("b").await;
    let toml = format!(
        "[[route]]\nmatch = ['^/']\npool = \"p\"\n[pools.p]\nservers = [\"{}\", \"{}\"]\nobserve = \"layer7\"\nerror_limit = 3\non_error = \"mark-down\"\n[pools.p.check]\ntype = \"http\"\npath = \"/health\"\ninterval = \"30s\"\n",
        a.addr, b.addr
    );
    let lg = langur_toml(&toml).await;
    let at = lg.listen_addrs()[0];
    let sa = server(&lg, 0);
    wait_for("first check", Duration::from_secs(2), || {
        sa.machine.lock().unwrap().last.status == CheckStatus::L7Ok
    })
    .await;
    a.mode.store(S500, Ordering::SeqCst); // /app answers 500; /health would too, but no check is due
    let mut from_a = 0;
    for _ in 0..12 {
        let r = get(at, "/app").await;
        if r.backend() == "a" {
            from_a += 1;
        }
    }
    assert_eq!(from_a, 3, "a is out of rotation after 3 errors");
    assert_eq!(sa.health(), Health::Down);
    let e = &lg.shared().events.recent()[0];
    assert_eq!((e.status, e.code), (CheckStatus::L7Sts, Some(500)));
    assert!(e.reason.contains("live traffic"), "{}", e.reason);
    lg.shutdown().await;
}

#[tokio::test]
async fn backups_serve_only_when_primaries_are_down_and_give_way_when_they_return() {
    let mut p = Ctl::start("primary").await;
    let k1 = Ctl::start("backup1").await;
    let k2 = Ctl::start("backup2").await;
    let toml = format!(
        "[[route]]\nmatch = ['^/']\npool = \"p\"\n[pools.p]\non_marked_up = \"shutdown-backup-sessions\"\nserver = [{{ address = \"{}\" }}, {{ address = \"{}\", backup = true }}, {{ address = \"{}\", backup = true }}]\n{}",
        p.addr,
        k1.addr,
        k2.addr,
        check_conf("")
    );
    let lg = langur_toml(&toml).await;
    let at = lg.listen_addrs()[0];
    for _ in 0..6 {
        assert_eq!(get(at, "/app").await.backend(), "primary");
    }
    p.stop();
    let sp = server(&lg, 0);
    wait_for("primary down", Duration::from_secs(3), || {
        sp.health() == Health::Down
    })
    .await;
    for _ in 0..6 {
        assert_eq!(
            get(at, "/app").await.backend(),
            "backup1",
            "the first backup takes it all"
        );
    }
    // A long download on the backup ends when the primary comes back.
    let download = tokio::spawn(async move {
        let t0 = Instant::now();
        let r = tokio::time::timeout(Duration::from_secs(20), download(at))
            .await
            .expect("the download should have been ended");
        (r, t0.elapsed())
    });
    wait_for("download on backup", Duration::from_secs(2), || {
        k1.hits.load(Ordering::SeqCst) >= 7
    })
    .await;
    p.restart().await;
    let (result, took) = download.await.unwrap();
    assert!(
        result.is_err() || result.unwrap() < DOWNLOAD_CHUNKS * 1024,
        "the backup session was not ended"
    );
    assert!(took < Duration::from_secs(5), "took {took:?}");
    assert_eq!(sp.health(), Health::Up);
    assert_eq!(get(at, "/app").await.backend(), "primary");
    lg.shutdown().await;
}

#[tokio::test]
async fn shutdown_sessions_ends_a_download_from_a_server_marked_down() {
    let a = Ctl::start("a").await;
    let toml = format!(
        "[[route]]\nmatch = ['^/']\npool = \"p\"\n[pools.p]\non_marked_down = \"shutdown-sessions\"\nservers = [\"{}\"]\n{}",
        a.addr,
        check_conf("")
    );
    let lg = langur_toml(&toml).await;
    let at = lg.listen_addrs()[0];
    let download = tokio::spawn(async move {
        let r = download(at).await;
        (r, Instant::now())
    });
    wait_for("download", Duration::from_secs(2), || {
        a.hits.load(Ordering::SeqCst) == 1
    })
    .await;
    a.mode.store(S500, Ordering::SeqCst);
    let sa = server(&lg, 0);
    wait_for("down", Duration::from_secs(3), || {
        sa.health() == Health::Down
    })
    .await;
    let down_at = Instant::now();
    let (result, ended_at) = tokio::time::timeout(Duration::from_secs(5), download)
        .await
        .expect("download not ended")
        .unwrap();
    assert!(
        result.is_err(),
        "the client must see its download cut, not a clean end"
    );
    // Within one check interval of the server being marked down.
    assert!(
        ended_at.saturating_duration_since(down_at) < Duration::from_millis(300),
        "{:?}",
        ended_at - down_at
    );
    lg.shutdown().await;
}

#[tokio::test]
async fn a_passing_check_ends_an_offline_period_and_one_outage_is_one_down() {
    let mut a = Ctl::start("a").await;
    let b = Ctl::start("b").await;
    let toml = format!(
        "[[route]]\nmatch = ['^/']\npool = \"p\"\n[pools.p]\nattempts = 1\noffline_timeout = \"30s\"\nservers = [\"{}\", \"{}\"]\n{}",
        a.addr,
        b.addr,
        check_conf("")
    );
    let lg = langur_toml(&toml).await;
    let at = lg.listen_addrs()[0];
    let sa = server(&lg, 0);
    wait_for("first check", Duration::from_secs(2), || {
        sa.machine.lock().unwrap().last.status == CheckStatus::L7Ok
    })
    .await;
    a.stop();
    // Live traffic finds the dead server first (offline for 30 s by the reference's rule),
    // then the checks take it down too: one outage, counted once.
    for _ in 0..4 {
        assert_eq!(get(at, "/app").await.backend(), "b");
    }
    wait_for("down", Duration::from_secs(3), || {
        sa.health() == Health::Down
    })
    .await;
    assert_eq!(sa.downs.load(Ordering::SeqCst), 1);
    a.restart().await;
    wait_for("up", Duration::from_secs(3), || sa.health() == Health::Up).await;
    // Back in rotation at once, not when the 30 s offline period ends.
    let mut seen_a = false;
    for _ in 0..6 {
        seen_a |= get(at, "/app").await.backend() == "a";
    }
    assert!(seen_a, "a passing check must end the offline period");
    lg.shutdown().await;
}

#[tokio::test]
async fn a_server_in_maintenance_is_not_checked_and_leaving_it_checks_at_once() {
    let a = Ctl::start("a").await;
    // Checks every second from the first (at start): leaving maintenance 1.2 s in, the next
    // check would come at 2 s without the hurry, 800 ms later.
    let every_second = check_conf("").replace("interval = \"300ms\"", "interval = \"1s\"");
    let (lg, sa) = one_checked(&a, &every_second).await;
    wait_for("first check", Duration::from_secs(2), || {
        sa.machine.lock().unwrap().last.status == CheckStatus::L7Ok
    })
    .await;
    let pool = lg.shared().runtime.load().pools[0].clone();
    pool.set_operator(0, langur::backend::Operator::Maint);
    // Its checks would now fail, but none runs: the one due at 1 s is skipped.
    a.mode.store(S500, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert_eq!(sa.check_failures.load(Ordering::SeqCst), 0);
    assert_eq!(sa.health(), Health::Up);
    // Back to ready: a check runs at once, not at the next interval.
    pool.set_operator(0, langur::backend::Operator::Ready);
    let took = wait_for("a check", Duration::from_secs(2), || {
        sa.check_failures.load(Ordering::SeqCst) > 0
    })
    .await;
    assert!(took < Duration::from_millis(400), "took {took:?}");
    lg.shutdown().await;
}
