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
    /// Put before the common arguments (a configuration file, `--sentinel`, `--replicaof`).
    args: Vec<String>,
    /// A directory of its own (a Sentinel's configuration), removed with it.
    dir: Option<std::path::PathBuf>,
}

impl Redis {
    /// Starts one on a free port and waits until it answers (at most 5 s).
    pub async fn start() -> Redis {
        Redis::start_with(Vec::new(), None).await
    }

    async fn start_with(args: Vec<String>, dir: Option<std::path::PathBuf>) -> Redis {
        let port = dead_addr().await.port();
        let mut r = Redis {
            port,
            child: None,
            args,
            dir,
        };
        r.restart().await;
        r
    }

    /// A Sentinel watching `master` as `m`, quick to fail it over (200 ms without an
    /// answer).
    pub async fn sentinel_for(master: &Redis) -> Redis {
        let dir = std::env::temp_dir().join(format!(
            "langur-sentinel-{}-{}",
            std::process::id(),
            master.port
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let conf = dir.join("sentinel.conf");
        let text = format!(
            "sentinel monitor m 127.0.0.1 {} 1\nsentinel down-after-milliseconds m 200\nsentinel failover-timeout m 1000\n",
            master.port
        );
        std::fs::write(&conf, text).unwrap();
        let args = vec![conf.display().to_string(), "--sentinel".to_string()];
        Redis::start_with(args, Some(dir)).await
    }

    /// `redis://127.0.0.1:PORT/0`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    /// Starts it (again) on the same port.
    pub async fn restart(&mut self) {
        let child = Command::new("redis-server")
            .args(&self.args)
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
        if let Some(d) = &self.dir {
            let _ = std::fs::remove_dir_all(d);
        }
    }
}

/// Waits until `redis` answers `line` with a reply containing `what` (at most 3 s).
async fn wait_reply(redis: &Redis, line: &str, what: &str) {
    let t = tokio::time::Instant::now();
    loop {
        let r = redis.command(line).await;
        if r.contains(what) {
            return;
        }
        assert!(t.elapsed() < Duration::from_secs(3), "{line}: {r}");
        tokio::time::sleep(Duration::from_millis(10)).await;
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

/// Two instances, `a` and `c`, on one Redis, each with one route to `backend` limited by
/// `limit` at cluster scope; returned once both are linked.
async fn two_limited(
    redis: &Redis,
    backend: SocketAddr,
    limit: &str,
) -> (langur::Langur, langur::Langur) {
    let cfg = |name| {
        format!(
            "{}{}",
            limited_route(backend, limit),
            cluster_section(&redis.url(), name)
        )
    };
    let a = langur_toml(&cfg("a")).await;
    let c = langur_toml(&cfg("c")).await;
    wait_link(&a, true).await;
    wait_link(&c, true).await;
    (a, c)
}

#[tokio::test]
async fn a_cluster_limit_holds_across_instances_within_its_bound() {
    let redis = Redis::start().await;
    let b = Backend::start("b").await;
    // 20 at once, then one every 6 s: nothing comes back during the test. The batch is 2, so
    // each instance may hold one granted request unused: 18 to 20 served, never more.
    let limit = "key = 'route', rate = '10/m', burst = 20";
    let (a, c) = two_limited(&redis, b.addr, limit).await;
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
    // 20 granted two at a time, then refusals remembered for the 6 s wait: about 12 round
    // trips for 60 requests.
    assert!(
        asked_a + asked_c < 25,
        "the allowance saved round trips: {asked_a} + {asked_c}"
    );
}

#[tokio::test]
async fn concurrent_requests_for_one_key_share_a_round_trip() {
    let redis = Redis::start().await;
    let b = Backend::start("b").await;
    // A batch of 100: a burst of requests at once needs a handful of round trips, growing.
    let limit = "key = 'route', rate = '1000/s', burst = 1000";
    let (a, _c) = two_limited(&redis, b.addr, limit).await;
    let at = a.listen_addrs()[0];
    let all: Vec<_> = (0..60)
        .map(|_| tokio::spawn(async move { get(at, "/").await.status.as_u16() }))
        .collect();
    for h in all {
        assert_eq!(h.await.unwrap(), 200);
    }
    let (asked, fell) = limit_counters(&a);
    assert_eq!(fell, 0);
    assert!(asked <= 20, "{asked} round trips for 60 requests");
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

/// A Redis that answers but refuses the work (here: a database it does not have; a wrong
/// password or an out-of-memory Redis answer the same way) is down for the fleet, as one that
/// does not answer: counted, and the limits are the instance's own.
#[tokio::test]
async fn a_redis_that_refuses_the_connection_is_down_not_up() {
    let redis = Redis::start().await;
    let b = Backend::start("b").await;
    let url = redis.url().replace("/0", "/99999");
    let text = format!(
        "{}{}",
        limited_route(b.addr, "key = 'route', rate = '10/m', burst = 3"),
        cluster_section(&url, "solo")
    );
    let lg = langur_toml(&text).await;
    let rt = lg.shared().runtime.load();
    let c = rt.cluster.as_ref().unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while c.outages.load(Relaxed) == 0 {
        assert!(tokio::time::Instant::now() < deadline, "never counted down");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Several heartbeats later it is still down.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!c.is_up());
    assert_eq!(get(lg.listen_addrs()[0], "/").await.status, 200);
    let (_, fell) = limit_counters(&lg);
    assert_eq!(fell, 1, "decided by the instance");
}

#[tokio::test]
async fn redis_killed_mid_test_fails_open_then_recovers() {
    let mut redis = Redis::start().await;
    let b = Backend::start("b").await;
    let limit = "key = 'client_ip', rate = '1000/s', burst = 1000";
    let (a, c) = two_limited(&redis, b.addr, limit).await;
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

fn cached_route(backend: SocketAddr) -> String {
    format!(
        "[[route]]\npath_prefix = '/'\npool = 'p'\ncache = true\npurge = ['127.0.0.0/8']\n[pools.p]\nservers = ['{backend}']\n[cache]\ndefault_ttl = '60s'\n"
    )
}

/// Waits until the instance's purge subscription is on (at most 5 s).
pub async fn wait_subscribed(lg: &langur::server::Langur) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let rt = lg.shared().runtime.load();
        if rt
            .cluster
            .as_ref()
            .is_some_and(|c| c.subscribed.load(Relaxed))
        {
            return;
        }
        assert!(tokio::time::Instant::now() < deadline, "never subscribed");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Objects in the instance's in-memory cache.
pub fn stored(lg: &langur::server::Langur) -> u64 {
    lg.shared().runtime.load().cache.stats().entries
}

/// Waits until the instance's cache holds `n` objects (at most 2 s).
pub async fn wait_stored(lg: &langur::server::Langur, n: u64) {
    let t = tokio::time::Instant::now();
    while stored(lg) != n {
        assert!(
            t.elapsed() < Duration::from_secs(2),
            "{} stored, not {n}",
            stored(lg)
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test]
async fn a_purge_on_one_instance_is_applied_by_the_others_within_100ms() {
    let redis = Redis::start().await;
    let b = Backend::start("b").await;
    let text = |name| {
        format!(
            "{}{}",
            cached_route(b.addr),
            cluster_section(&redis.url(), name)
        )
    };
    let fleet = [
        langur_toml(&text("a")).await,
        langur_toml(&text("b")).await,
        langur_toml(&text("c")).await,
    ];
    for lg in &fleet {
        wait_subscribed(lg).await;
        assert_eq!(get(lg.listen_addrs()[0], "/page").await.status, 200);
        wait_stored(lg, 1).await;
    }
    assert_eq!(b.hits(), 3);
    let r = request(
        fleet[0].listen_addrs()[0],
        http::Method::from_bytes(b"PURGE").unwrap(),
        "/page",
        &[],
        body(""),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let t = std::time::Instant::now();
    while fleet.iter().any(|lg| stored(lg) != 0) {
        assert!(
            t.elapsed() < Duration::from_millis(100),
            "not purged everywhere in 100 ms"
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    // The next request on another instance goes to the origin.
    assert_eq!(get(fleet[2].listen_addrs()[0], "/page").await.status, 200);
    assert_eq!(b.hits(), 4);
    let c = fleet[1].shared().runtime.load().cluster.clone().unwrap();
    assert_eq!(c.purges_received.load(Relaxed), 1);
}

#[tokio::test]
async fn after_a_gap_an_instance_clears_what_it_cannot_prove_fresh() {
    let mut redis = Redis::start().await;
    let b = Backend::start("b").await;
    let text = format!(
        "{}{}",
        cached_route(b.addr),
        cluster_section(&redis.url(), "a")
    );
    let lg = langur_toml(&text).await;
    wait_subscribed(&lg).await;
    redis.kill();
    wait_link(&lg, false).await;
    let c = lg.shared().runtime.load().cluster.clone().unwrap();
    let t = tokio::time::Instant::now();
    while c.subscribed.load(Relaxed) {
        assert!(
            t.elapsed() < Duration::from_secs(2),
            "the subscription outlived Redis"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // Stored while no purge could reach this instance.
    assert_eq!(get(lg.listen_addrs()[0], "/while-away").await.status, 200);
    wait_stored(&lg, 1).await;
    redis.restart().await;
    wait_subscribed(&lg).await;
    // Cleared when the subscription came back.
    wait_stored(&lg, 0).await;
}

/// `/api/cluster` of an instance with an admin listener.
async fn fleet_view(lg: &langur::server::Langur) -> serde_json::Value {
    let r = get(lg.admin_addr().unwrap(), "/api/cluster").await;
    assert_eq!(r.status, 200, "{}", r.text());
    serde_json::from_slice(&r.body).unwrap()
}

#[tokio::test]
async fn the_fleet_view_lists_instances_flags_other_configs_and_marks_redis_down() {
    let mut redis = Redis::start().await;
    let b = Backend::start("b").await;
    let route = |prefix: &str, name: &str| {
        format!(
            "[[route]]\npath_prefix = '{prefix}'\npool = 'p'\n[pools.p]\nservers = ['{}']\n{}",
            b.addr,
            cluster_section(&redis.url(), name)
        )
    };
    let a = start_with_admin(toml_config(&route("/", "a"))).await;
    let same = langur_toml(&route("/", "same")).await;
    let other = langur_toml(&route("/other", "other")).await;
    for lg in [&a, &same, &other] {
        wait_link(lg, true).await;
    }
    let t = tokio::time::Instant::now();
    let view = loop {
        let v = fleet_view(&a).await;
        if v["instances"].as_array().unwrap().len() == 3 {
            break v;
        }
        assert!(t.elapsed() < Duration::from_secs(3), "{v}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(view["redis"]["up"], true);
    let list = view["instances"].as_array().unwrap();
    assert_eq!(list[0]["name"], "a");
    assert_eq!(list[0]["self"], true);
    let by_name = |n: &str| list.iter().find(|r| r["name"] == n).unwrap();
    assert_eq!(by_name("same")["config_differs"], false);
    assert_eq!(by_name("other")["config_differs"], true);
    assert_eq!(view["config_differs"], true);
    assert!(view["sum"]["requests_per_second"].is_number());
    redis.kill();
    wait_link(&a, false).await;
    let v = fleet_view(&a).await;
    assert_eq!(v["redis"]["up"], false, "{v}");
    assert_eq!(
        v["instances"].as_array().unwrap().len(),
        1,
        "only itself: {v}"
    );
    drop((same, other));
}

/// Each instance stores `path`, a `PURGE` of it on the first reaches them all within 1 s.
async fn purge_reaches_the_fleet(fleet: &[langur::Langur], path: &str) {
    for lg in fleet {
        wait_subscribed(lg).await;
        assert_eq!(get(lg.listen_addrs()[0], path).await.status, 200);
        wait_stored(lg, 1).await;
    }
    let purge = http::Method::from_bytes(b"PURGE").unwrap();
    let r = request(fleet[0].listen_addrs()[0], purge, path, &[], body("")).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let t = std::time::Instant::now();
    while fleet.iter().any(|lg| stored(lg) != 0) {
        assert!(
            t.elapsed() < Duration::from_secs(1),
            "not purged everywhere"
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// Waits until each instance's link goes to `master` and is up (at most 5 s).
async fn wait_master(fleet: &[langur::Langur], master: &Redis) {
    let want = format!("127.0.0.1:{}", master.port);
    let t = tokio::time::Instant::now();
    for lg in fleet {
        let c = lg.shared().runtime.load().cluster.clone().unwrap();
        while !(c.is_up() && c.master().as_deref() == Some(want.as_str())) {
            assert!(t.elapsed() < Duration::from_secs(5), "{:?}", c.master());
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

#[tokio::test]
async fn through_sentinel_purges_reach_the_fleet_and_a_failover_is_followed() {
    // Quick to sync, loaded from the socket (no file in the working directory).
    let args = |more: &[&str]| {
        let quick = [
            "--repl-diskless-sync-delay",
            "0",
            "--repl-diskless-load",
            "swapdb",
        ];
        quick.iter().chain(more).map(|s| s.to_string()).collect()
    };
    let mut master = Redis::start_with(args(&[]), None).await;
    let of = master.port.to_string();
    let replica = Redis::start_with(args(&["--replicaof", "127.0.0.1", &of]), None).await;
    wait_reply(&master, "INFO replication\r\n", "state=online").await;
    let sentinel = Redis::sentinel_for(&master).await;
    let known = format!("127.0.0.1:{}", replica.port);
    wait_reply(&sentinel, "SENTINEL REPLICAS m\r\n", &known).await;
    let url = format!("redis+sentinel://127.0.0.1:{}/m/0", sentinel.port);
    let b = Backend::start("b").await;
    let text = |name| format!("{}{}", cached_route(b.addr), cluster_section(&url, name));
    let fleet = [langur_toml(&text("a")).await, langur_toml(&text("c")).await];
    wait_master(&fleet, &master).await;
    purge_reaches_the_fleet(&fleet, "/before").await;
    // The master dies; the sentinel promotes the replica, and the fleet follows it (calls,
    // the purge channel's subscription) without a restart.
    master.kill();
    wait_master(&fleet, &replica).await;
    wait_reply(&replica, "PUBSUB NUMSUB test:purge\r\n", ":2\r\n").await;
    purge_reaches_the_fleet(&fleet, "/after").await;
    let c = fleet[1].shared().runtime.load().cluster.clone().unwrap();
    assert_eq!(c.purges_received.load(Relaxed), 2);
    assert!(c.outages.load(Relaxed) >= 1, "the failover was an outage");
}
