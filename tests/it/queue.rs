//! Overload end to end: per-server limits, the FIFO backlog queue, full and timeout answers with
//! Retry-After, clients leaving the queue, and refusal at once when every server is down.

use crate::common;

use common::*;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

fn pool_toml(servers: &[std::net::SocketAddr], pool_extra: &str, queue: &str) -> String {
    let list = servers
        .iter()
        .map(|s| format!("\"{s}\""))
        .collect::<Vec<_>>()
        .join(", ");
    format!("[[route]]\nmatch = ['^/']\npool = \"p\"\n[pools.p]\nservers = [{list}]\n{pool_extra}\n[pools.p.queue]\n{queue}\n")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn maxconn_holds_and_the_queue_dispatches_in_arrival_order() {
    let (a, b) = (Backend::start("a").await, Backend::start("b").await);
    let lg = langur_toml(&pool_toml(
        &[a.addr, b.addr],
        "maxconn = 2",
        "max = 100\ntimeout = \"10s\"",
    ))
    .await;
    let at = lg.listen_addrs()[0];
    let mut joins = Vec::new();
    for id in 0..50 {
        joins.push(tokio::spawn(async move {
            get(at, &format!("/slow/100?id={id}")).await.status
        }));
        tokio::time::sleep(Duration::from_millis(8)).await;
    }
    for j in joins {
        assert_eq!(j.await.unwrap(), 200);
    }
    assert!(
        a.max_in_flight.load(Ordering::SeqCst) <= 2,
        "a held {}",
        a.max_in_flight.load(Ordering::SeqCst)
    );
    assert!(
        b.max_in_flight.load(Ordering::SeqCst) <= 2,
        "b held {}",
        b.max_in_flight.load(Ordering::SeqCst)
    );
    let mut all: Vec<(Instant, String)> = a.arrivals.lock().unwrap().clone();
    all.extend(b.arrivals.lock().unwrap().iter().cloned());
    all.sort();
    let ids: Vec<usize> = all
        .iter()
        .map(|(_, p)| p.rsplit('=').next().unwrap().parse().unwrap())
        .collect();
    // The queue hands slots out in arrival order; two requests released within microseconds of
    // each other to different servers may still be recorded by those servers in either order
    // (thread scheduling after the dispatch), so a neighbour swap is tolerated, nothing more.
    let displaced = ids
        .iter()
        .enumerate()
        .filter(|(i, id)| i.abs_diff(**id) > 1)
        .count();
    assert_eq!(displaced, 0, "dispatch out of arrival order: {ids:?}");
    assert!(
        lg.shared().runtime.load().pools[0]
            .queue
            .max_seen
            .load(Ordering::SeqCst)
            > 10
    );
    lg.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn beyond_limits_and_queue_requests_are_refused_at_once_with_retry_after() {
    let (a, b) = (Backend::start("a").await, Backend::start("b").await);
    let lg = langur_toml(&pool_toml(
        &[a.addr, b.addr],
        "maxconn = 1",
        "max = 5\ntimeout = \"10s\"\nfull_status = 503\nretry_after = \"2s\"",
    ))
    .await;
    let at = lg.listen_addrs()[0];
    // 2 slots + 5 places: the first 7 are held, 10 more are refused.
    let mut held = Vec::new();
    for _ in 0..7 {
        held.push(tokio::spawn(
            async move { get(at, "/slow/600").await.status },
        ));
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let t0 = Instant::now();
    let mut refused = Vec::new();
    for _ in 0..10 {
        refused.push(tokio::spawn(async move { get(at, "/slow/600").await }));
    }
    for r in refused {
        let r = r.await.unwrap();
        assert_eq!(r.status, 503);
        assert_eq!(r.headers["retry-after"], "2");
        assert!(r.text().contains("queue is full"), "{}", r.text());
    }
    assert!(
        t0.elapsed() < Duration::from_millis(400),
        "refusals must be immediate: {:?}",
        t0.elapsed()
    );
    for h in held {
        assert_eq!(h.await.unwrap(), 200);
    }
    lg.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_wait_gets_timeout_status_and_a_client_that_leaves_frees_its_place() {
    let a = Backend::start("a").await;
    let lg = langur_toml(&pool_toml(
        &[a.addr],
        "maxconn = 1",
        "max = 1\ntimeout = \"300ms\"\ntimeout_status = 504",
    ))
    .await;
    let at = lg.listen_addrs()[0];
    let busy = tokio::spawn(async move { get(at, "/slow/1500").await.status });
    tokio::time::sleep(Duration::from_millis(50)).await;
    let t0 = Instant::now();
    let r = get(at, "/x").await;
    assert_eq!(r.status, 504);
    assert!(r.headers.contains_key("retry-after"));
    let waited = t0.elapsed();
    assert!(
        waited >= Duration::from_millis(280) && waited < Duration::from_millis(800),
        "{waited:?}"
    );

    // A waiting client goes away: its place is free at once for the next one.
    let queue = lg.shared().runtime.load().pools[0].queue.clone();
    let leaver = tokio::spawn(async move { get(at, "/y").await });
    let t1 = Instant::now();
    while queue.is_empty() {
        assert!(t1.elapsed() < Duration::from_secs(2));
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    leaver.abort();
    let t2 = Instant::now();
    while !queue.is_empty() {
        assert!(
            t2.elapsed() < Duration::from_millis(250),
            "the place was not freed"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let r = get(at, "/z").await;
    assert_eq!(
        r.status, 504,
        "queued (not refused as full), then timed out"
    );
    assert_eq!(queue.refused.load(Ordering::SeqCst), 0);
    assert_eq!(busy.await.unwrap(), 200);
    lg.shutdown().await;
}

#[tokio::test]
async fn all_servers_down_are_refused_at_once_not_after_the_timeout() {
    let (d1, d2) = (dead_addr().await, dead_addr().await);
    let lg = langur_toml(&pool_toml(
        &[d1, d2],
        "maxconn = 1\nattempts = 1",
        "timeout = \"5s\"",
    ))
    .await;
    let at = lg.listen_addrs()[0];
    for _ in 0..3 {
        let t0 = Instant::now();
        let r = get(at, "/").await;
        assert_eq!(r.status, 503);
        assert!(r.headers.contains_key("retry-after"));
        assert!(
            t0.elapsed() < Duration::from_millis(300),
            "{:?}",
            t0.elapsed()
        );
    }
    lg.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waiters_are_answered_at_once_when_every_server_goes_down() {
    let a = Backend::start("a").await;
    let lg = langur_toml(&pool_toml(
        &[a.addr],
        "maxconn = 1",
        "max = 10\ntimeout = \"10s\"",
    ))
    .await;
    let at = lg.listen_addrs()[0];
    let busy = tokio::spawn(async move { get(at, "/slow/3000").await.status });
    tokio::time::sleep(Duration::from_millis(50)).await;
    let mut waiting = Vec::new();
    for _ in 0..4 {
        waiting.push(tokio::spawn(async move {
            let t0 = Instant::now();
            (get(at, "/w").await.status, t0.elapsed())
        }));
    }
    let queue = lg.shared().runtime.load().pools[0].queue.clone();
    let t1 = Instant::now();
    while queue.len() < 4 {
        assert!(t1.elapsed() < Duration::from_secs(2));
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // The operator takes the only server out: the queue is woken and every waiter is refused.
    let rt = lg.shared().runtime.load();
    rt.pools[0].set_operator(0, langur::backend::Operator::Maint);
    for w in waiting {
        let (status, took) = w.await.unwrap();
        assert_eq!(status, 503);
        assert!(took < Duration::from_secs(1), "{took:?}");
    }
    drop(rt);
    let _ = busy.await;
    lg.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_answering_503_backs_off_until_timeout_or_another_request_completes() {
    use common::ctl::{Ctl, OK, S503};
    let (a, b) = (Ctl::start("a").await, Ctl::start("b").await);
    let toml = format!(
        "[[route]]\nmatch = ['^/']\npool = \"p\"\n[pools.p]\nbalance = \"round-robin\"\noverload_backoff = \"10s\"\nservers = [\"{}\", \"{}\"]\n",
        a.addr, b.addr
    );
    let lg = langur_toml(&toml).await;
    let at = lg.listen_addrs()[0];
    // A long download holds a request on a (round robin starts with a).
    let download = tokio::spawn(async move { get(at, "/download").await.status });
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(get(at, "/app").await.backend(), "b");
    a.mode.store(S503, Ordering::SeqCst);
    let r = get(at, "/app").await;
    assert_eq!((r.status.as_u16(), r.backend().as_str()), (503, "a"));
    a.mode.store(OK, Ordering::SeqCst);
    for _ in 0..6 {
        assert_eq!(get(at, "/app").await.backend(), "b", "a is backing off");
    }
    // The download on a completes (well before the 10 s backoff): a is tried again.
    assert_eq!(download.await.unwrap(), 200);
    let seen: Vec<String> = {
        let mut v = Vec::new();
        for _ in 0..4 {
            v.push(get(at, "/app").await.backend());
        }
        v
    };
    assert!(seen.iter().any(|s| s == "a"), "{seen:?}");
    lg.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_start_gives_a_server_that_comes_up_less_at_first_then_its_share() {
    use common::ctl::{Ctl, OK, S500};
    let (a, b) = (Ctl::start("a").await, Ctl::start("b").await);
    let toml = format!(
        "[[route]]\nmatch = ['^/']\npool = \"p\"\n[pools.p]\nbalance = \"round-robin\"\nslowstart = \"3s\"\nservers = [\"{}\", \"{}\"]\n[pools.p.check]\ntype = \"http\"\npath = \"/health\"\ninterval = \"100ms\"\nfastinter = \"50ms\"\ndowninter = \"100ms\"\nrise = 1\nfall = 1\n",
        a.addr, b.addr
    );
    let lg = langur_toml(&toml).await;
    let at = lg.listen_addrs()[0];
    let sa = lg.shared().runtime.load().pools[0].servers[0].clone();
    a.mode.store(S500, Ordering::SeqCst);
    let t0 = Instant::now();
    while sa.health() != langur::backend::health::Health::Down {
        assert!(t0.elapsed() < Duration::from_secs(3));
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    a.mode.store(OK, Ordering::SeqCst);
    while sa.health() != langur::backend::health::Health::Up {
        assert!(t0.elapsed() < Duration::from_secs(5));
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let count_a = |v: &[String]| v.iter().filter(|s| s.as_str() == "a").count();
    let mut early = Vec::new();
    let t1 = Instant::now();
    while t1.elapsed() < Duration::from_millis(500) {
        early.push(get(at, "/app").await.backend());
    }
    let early_share = count_a(&early) as f64 / early.len() as f64;
    assert!(
        early_share < 0.25,
        "just up, a got {:.0}% of {}",
        early_share * 100.0,
        early.len()
    );
    tokio::time::sleep(Duration::from_secs(3)).await;
    let mut late = Vec::new();
    for _ in 0..40 {
        late.push(get(at, "/app").await.backend());
    }
    assert_eq!(count_a(&late), 20, "full share after the ramp: {late:?}");
    lg.shutdown().await;
}
