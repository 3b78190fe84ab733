//! Bounded retries: `retries`, the pool-wide retry budget, and replaying idempotent requests
//! whose response never started (never a POST).

use crate::common;

use common::*;
use http::Method;
use std::sync::atomic::Ordering;

fn connects(lg: &langur::Langur) -> u64 {
    lg.shared().runtime.load().pools[0]
        .servers
        .iter()
        .map(|s| s.connect_failures_total.load(Ordering::SeqCst))
        .sum()
}

async fn dead_pool(n: usize, extra: &str) -> langur::Langur {
    let mut list = Vec::new();
    for _ in 0..n {
        list.push(format!("\"{}\"", dead_addr().await));
    }
    // offline_timeout = 0: no high availability, so every request tries servers afresh.
    let toml = format!(
        "[[route]]\nmatch = ['^/']\npool = \"p\"\n[pools.p]\noffline_timeout = \"0s\"\nservers = [{}]\n{extra}\n",
        list.join(", ")
    );
    langur_toml(&toml).await
}

#[tokio::test]
async fn retries_limit_the_attempts_of_one_request() {
    let lg = dead_pool(6, "retries = 2").await;
    let r = get(lg.listen_addrs()[0], "/").await;
    assert_eq!(r.status, 503);
    assert_eq!(connects(&lg), 3, "one attempt and two retries");
    lg.shutdown().await;
    let lg = dead_pool(6, "").await;
    assert_eq!(get(lg.listen_addrs()[0], "/").await.status, 503);
    assert_eq!(
        connects(&lg),
        6,
        "without a limit every server is tried once (the reference)"
    );
    lg.shutdown().await;
}

#[tokio::test]
async fn the_retry_budget_caps_retries_when_every_server_fails() {
    let lg = dead_pool(10, "retry_budget = 0.2").await;
    let at = lg.listen_addrs()[0];
    for _ in 0..50 {
        assert_eq!(get(at, "/").await.status, 503);
    }
    let total = connects(&lg);
    // 50 first attempts + 20% of 50 + the reserve of 10, instead of 500.
    assert!(total <= 70, "{total} connect attempts");
    assert!(total >= 50, "{total}");
    lg.shutdown().await;
}

#[tokio::test]
async fn an_idempotent_request_is_replayed_when_its_response_never_started() {
    let (dying, swallowed) = swallowing_backend().await;
    let good = Backend::start("good").await;
    let toml = format!(
        "[[route]]\nmatch = ['^/']\npool = \"p\"\n[pools.p]\nbalance = \"first-alive\"\nservers = [\"{dying}\", \"{}\"]\n",
        good.addr
    );
    let lg = langur_toml(&toml).await;
    let at = lg.listen_addrs()[0];
    let r = get(at, "/page").await;
    assert_eq!(r.status, 200);
    assert_eq!(r.backend(), "good");
    assert_eq!(swallowed.load(Ordering::SeqCst), 1);
    // A POST is never replayed.
    let r = request(at, Method::POST, "/order", &[], body("x")).await;
    assert_eq!(r.status, 502);
    assert_eq!(good.hits(), 1);
    lg.shutdown().await;
}
