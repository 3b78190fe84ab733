//! `[cluster]` end to end against a real `redis-server` (Debian's package), started by each
//! test on a free loopback port without persistence and killed at its end: two or more langur
//! instances in one test, Redis down at start, killed mid-test and restarted.

use crate::common;

use common::*;
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A `redis-server` of this test's own.
pub struct Redis {
    pub port: u16,
    child: Option<Child>,
}

impl Redis {
    /// Starts one on a free port and waits until it answers (at most 5 s).
    pub async fn start() -> Redis {
        let port = dead_addr().await.port();
        let mut r = Redis { port, child: None };
        r.restart().await;
        r
    }

    /// `redis://127.0.0.1:PORT/0`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    /// Starts it (again) on the same port.
    pub async fn restart(&mut self) {
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no", "--protected-mode", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server (Debian package redis-server; .ci/run installs it)");
        self.child = Some(child);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while tokio::time::Instant::now() < deadline {
            if self.ping().await {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("redis-server did not answer on port {}", self.port);
    }

    /// Kills it at once (SIGKILL), as a crash would.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    async fn ping(&self) -> bool {
        self.command("PING\r\n").await.starts_with("+PONG")
    }

    /// One inline command, its first reply line (empty when Redis cannot be reached).
    pub async fn command(&self, line: &str) -> String {
        let Ok(mut s) = TcpStream::connect(("127.0.0.1", self.port)).await else {
            return String::new();
        };
        if s.write_all(line.as_bytes()).await.is_err() {
            return String::new();
        }
        let mut buf = vec![0u8; 4096];
        let n = tokio::time::timeout(Duration::from_secs(2), s.read(&mut buf))
            .await
            .ok()
            .and_then(|r| r.ok())
            .unwrap_or(0);
        String::from_utf8_lossy(&buf[..n]).to_string()
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The `[cluster]` section for `url`, a generous call deadline (the test machine is busy) and
/// a short heartbeat.
pub fn cluster_section(url: &str, name: &str) -> String {
    format!(
        "[cluster]\nredis = '{url}'\nname = '{name}'\nprefix = 'test:'\ntimeout = '500ms'\nheartbeat = '100ms'\nconnect_timeout = '500ms'\n"
    )
}

/// Waits until the instance's link to Redis is `up` (at most 5 s).
pub async fn wait_link(lg: &langur::server::Langur, up: bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let rt = lg.shared().runtime.load();
        if rt.cluster.as_ref().is_some_and(|c| c.is_up() == up) {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the link never went up={up}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn limited_route(backend: SocketAddr, limit: &str) -> String {
    format!(
        "[[route]]\npath_prefix = '/'\npool = 'p'\nrate_limit = {{ {limit}, scope = 'cluster' }}\n[pools.p]\nservers = ['{backend}']\n"
    )
}

/// (round trips to Redis, decisions taken per instance) of the first route's limit.
fn limit_counters(lg: &langur::server::Langur) -> (u64, u64) {
    let rt = lg.shared().runtime.load();
    let c = rt.routes[0]
        .limiter
        .as_ref()
        .unwrap()
        .cluster
        .as_ref()
        .unwrap();
    (c.asked.load(Relaxed), c.fallbacks.load(Relaxed))
}

#[tokio::test]
async fn a_cluster_limit_holds_across_instances_within_its_bound() {
    let redis = Redis::start().await;
    let b = Backend::start("b").await;
    // 20 at once, then one every 6 s: nothing comes back during the test. The batch is 2, so
    // each instance may hold one granted request unused: 18 to 20 served, never more.
    let limit = "key = 'route', rate = '10/m', burst = 20";
    let cfg = |name| {
        format!(
            "{}{}",
            limited_route(b.addr, limit),
            cluster_section(&redis.url(), name)
        )
    };
    let a = langur_toml(&cfg("a")).await;
    let c = langur_toml(&cfg("c")).await;
    wait_link(&a, true).await;
    wait_link(&c, true).await;
    let mut ok = 0;
    let mut refused = 0;
    for i in 0..60 {
        let at = if i % 2 == 0 { &a } else { &c };
        match get(at.listen_addrs()[0], "/").await.status.as_u16() {
            200 => ok += 1,
            429 => refused += 1,
            s => panic!("unexpected status {s}"),
        }
    }
    assert!((18..=20).contains(&ok), "served {ok}, refused {refused}");
    assert_eq!(ok + refused, 60);
    assert_eq!(b.hits(), ok);
    let (asked_a, fell_a) = limit_counters(&a);
    let (asked_c, fell_c) = limit_counters(&c);
    assert_eq!((fell_a, fell_c), (0, 0), "Redis was up the whole time");
    assert!(
        asked_a + asked_c < 60,
        "the allowance saved round trips: {asked_a} + {asked_c}"
    );
}

#[tokio::test]
async fn redis_down_at_start_runs_degraded_with_limits_per_instance() {
    let dead = dead_addr().await;
    let b = Backend::start("b").await;
    let text = format!(
        "{}{}",
        limited_route(b.addr, "key = 'route', rate = '10/m', burst = 3"),
        cluster_section(&format!("redis://{dead}/0"), "solo")
    );
    let lg = langur_toml(&text).await;
    let at = lg.listen_addrs()[0];
    let statuses: Vec<u16> = futures_util::future::join_all((0..5).map(|_| get(at, "/")))
        .await
        .iter()
        .map(|r| r.status.as_u16())
        .collect();
    assert_eq!(
        statuses.iter().filter(|s| **s == 200).count(),
        3,
        "{statuses:?}"
    );
    assert_eq!(
        statuses.iter().filter(|s| **s == 429).count(),
        2,
        "{statuses:?}"
    );
    let (_, fell) = limit_counters(&lg);
    assert_eq!(fell, 5, "every decision was the instance's own");
    let rt = lg.shared().runtime.load();
    assert!(!rt.cluster.as_ref().unwrap().is_up());
}

#[tokio::test]
async fn redis_killed_mid_test_fails_open_then_recovers() {
    let mut redis = Redis::start().await;
    let b = Backend::start("b").await;
    let limit = "key = 'client_ip', rate = '1000/s', burst = 1000";
    let cfg = |name| {
        format!(
            "{}{}",
            limited_route(b.addr, limit),
            cluster_section(&redis.url(), name)
        )
    };
    let a = langur_toml(&cfg("a")).await;
    let c = langur_toml(&cfg("c")).await;
    wait_link(&a, true).await;
    wait_link(&c, true).await;
    let addrs = [a.listen_addrs()[0], c.listen_addrs()[0]];
    let all_ok = |n: usize| async move {
        for i in 0..n {
            let s = get(addrs[i % 2], "/").await.status;
            assert_eq!(s, 200, "request {i}: no client error whatever Redis does");
        }
    };
    all_ok(20).await;
    let (asked_before, _) = limit_counters(&a);
    assert!(asked_before > 0);
    redis.kill();
    all_ok(40).await;
    wait_link(&a, false).await;
    let (_, fell) = limit_counters(&a);
    assert!(fell > 0, "limits fell back to the instance");
    // The instance's own limit still holds while Redis is away.
    redis.restart().await;
    wait_link(&a, true).await;
    wait_link(&c, true).await;
    let (asked, _) = limit_counters(&a);
    all_ok(20).await;
    let (asked_after, _) = limit_counters(&a);
    assert!(
        asked_after > asked,
        "back to the fleet's count after the restart"
    );
    assert!(redis.command("DBSIZE\r\n").await.starts_with(':'));
}
