//! `[cache] shared = true` end to end: two langur instances and a real `redis-server` (see
//! `cluster`): a miss on one is a hit on the other without the origin, concurrent misses
//! across instances reach the origin once, a purge leaves Redis and the other instance's
//! memory, a record that does not decode is a miss, Redis killed is the origin, and a `Vary`
//! variant is never another's.

use crate::cluster::{cluster_section, wait_stored, wait_subscribed, Redis};
use crate::common;

use common::*;
use std::net::SocketAddr;
use std::time::Duration;

fn shared_route(backend: SocketAddr) -> String {
    format!(
        "[[route]]\npath_prefix = '/'\npool = 'p'\ncache = true\npurge = ['127.0.0.0/8']\n[pools.p]\nservers = ['{backend}']\n[cache]\ndefault_ttl = '60s'\nshared = true\n"
    )
}

/// Two instances sharing `redis`'s cache in front of `origin`, subscribed to purges.
async fn pair(redis: &Redis, origin: SocketAddr) -> [langur::server::Langur; 2] {
    let text = |name| {
        format!(
            "{}{}",
            shared_route(origin),
            cluster_section(&redis.url(), name)
        )
    };
    let fleet = [langur_toml(&text("a")).await, langur_toml(&text("b")).await];
    for lg in &fleet {
        wait_subscribed(lg).await;
    }
    fleet
}

fn cache_status(r: &Resp) -> String {
    r.headers
        .get("cache-status")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default()
}

/// Waits until `EXISTS key` says `n` (at most 10 s: a bound for a loaded machine, not a timing
/// check).
async fn wait_exists(redis: &Redis, key: &str, n: u8) {
    let t = std::time::Instant::now();
    loop {
        let r = redis.command(&format!("EXISTS {key}\r\n")).await;
        if r.trim() == format!(":{n}") {
            return;
        }
        assert!(t.elapsed() < Duration::from_secs(10), "EXISTS {key}: {r}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

fn shared_counters(lg: &langur::server::Langur) -> serde_json::Value {
    let rt = lg.shared().runtime.load();
    rt.cache.shared.as_ref().unwrap().counters.json()
}

#[tokio::test]
async fn a_miss_on_one_instance_is_a_hit_on_the_other_until_purged_or_redis_dies() {
    let mut redis = Redis::start().await;
    let origin = Backend::start("o").await;
    let [a, b] = pair(&redis, origin.addr).await;
    let (at_a, at_b) = (a.listen_addrs()[0], b.listen_addrs()[0]);
    let first = get(at_a, "/page").await;
    assert_eq!(first.status, 200);
    assert!(
        cache_status(&first).contains("fwd=miss"),
        "{}",
        cache_status(&first)
    );
    let key = "test:c:http://test.local/page";
    wait_exists(&redis, key, 1).await;
    let ttl: i64 = redis.command(&format!("PTTL {key}\r\n")).await[1..]
        .trim()
        .parse()
        .unwrap();
    assert!(
        (50_000..=60_000).contains(&ttl),
        "the remaining freshness: {ttl}"
    );

    let shared = get(at_b, "/page").await;
    assert_eq!((shared.status, shared.text()), (first.status, first.text()));
    assert!(
        cache_status(&shared).contains("hit") && cache_status(&shared).contains("detail=shared"),
        "{}",
        cache_status(&shared)
    );
    assert_eq!(origin.hits(), 1, "B's miss was answered from Redis");
    let local = get(at_b, "/page").await;
    assert!(
        !cache_status(&local).contains("shared"),
        "B keeps it in memory"
    );
    assert_eq!(shared_counters(&b)["hits"], 1);

    // A purge on A: gone from Redis and from B's memory.
    let purge = http::Method::from_bytes(b"PURGE").unwrap();
    let r = request(at_a, purge, "/page", &[], body("")).await;
    assert_eq!(r.status, 200, "{}", r.text());
    wait_exists(&redis, key, 0).await;
    wait_stored(&b, 0).await;
    assert_eq!(get(at_b, "/page").await.status, 200);
    assert_eq!(origin.hits(), 2, "after the purge, the origin");

    // A record that is not ours is a miss, and deleted.
    let bad = "test:c:http://test.local/bad";
    assert_eq!(
        redis
            .command(&format!("HSET {bad} o garbage\r\n"))
            .await
            .trim(),
        ":1"
    );
    let r = get(at_a, "/bad").await;
    assert!(
        cache_status(&r).contains("fwd=miss"),
        "{}",
        cache_status(&r)
    );
    assert_eq!(shared_counters(&a)["corrupt"], 1);
    assert_eq!(origin.hits(), 3);
    // A key of another type (something else wrote it) is deleted too, and filled again.
    let other = "test:c:http://test.local/other";
    assert_eq!(
        redis
            .command(&format!("SET {other} hello\r\n"))
            .await
            .trim(),
        "+OK"
    );
    let r = get(at_a, "/other").await;
    assert_eq!(r.status, 200);
    assert_eq!(shared_counters(&a)["corrupt"], 2);
    let t = std::time::Instant::now();
    while redis.command(&format!("TYPE {other}\r\n")).await.trim() == "+string" {
        assert!(t.elapsed() < Duration::from_secs(10), "never deleted");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(origin.hits(), 4);
    assert!(a.shared().runtime.load().cluster.as_ref().unwrap().is_up());

    // Redis gone: still served, from the origin.
    redis.kill();
    for i in 0..3 {
        let r = get(at_b, &format!("/after/{i}")).await;
        assert_eq!(r.status, 200, "no client error without Redis");
    }
    assert_eq!(origin.hits(), 7);
    let errors = shared_counters(&b)["errors"].as_u64().unwrap();
    assert!(errors >= 1, "counted: {errors}");
}

#[tokio::test]
async fn concurrent_misses_across_instances_reach_the_origin_once() {
    let redis = Redis::start().await;
    let origin = Backend::start("o").await;
    let [a, b] = pair(&redis, origin.addr).await;
    let addrs = [a.listen_addrs()[0], b.listen_addrs()[0]];
    let all = (0..50).map(|i| get(addrs[i % 2], "/slow/300"));
    let answers = futures_util::future::join_all(all).await;
    assert!(answers.iter().all(|r| r.status == 200));
    assert_eq!(origin.hits(), 1, "one fetch for the fleet");
    let waited = |lg| shared_counters(lg)["waits"].as_u64().unwrap();
    assert!(
        waited(&a) + waited(&b) <= 1,
        "at most the other instance waited"
    );
    let shared = answers
        .iter()
        .filter(|r| cache_status(r).contains("detail=shared"))
        .count();
    assert_eq!(
        shared, 1,
        "its leader took the fleet's answer; its others, its memory"
    );
    drop(redis);
}

#[tokio::test]
async fn a_vary_variant_is_never_another_requests() {
    fn script(_path: &str) -> (Vec<Vec<u8>>, Duration, After) {
        let answer = b"HTTP/1.1 200 OK\r\nCache-Control: max-age=60\r\nVary: X-Lang\r\nContent-Length: 2\r\n\r\nok";
        (vec![answer.to_vec()], Duration::ZERO, After::Stay)
    }
    let redis = Redis::start().await;
    let (origin, seen, _) = raw_origin(script).await;
    let asked = || seen.lock().unwrap().iter().map(Vec::len).sum::<usize>();
    let [a, b] = pair(&redis, origin).await;
    let (at_a, at_b) = (a.listen_addrs()[0], b.listen_addrs()[0]);
    let lang = |addr, l| async move {
        request(addr, http::Method::GET, "/v", &[("x-lang", l)], body("")).await
    };
    assert_eq!(lang(at_a, "fr").await.status, 200);
    wait_exists(&redis, "test:c:http://test.local/v", 1).await;
    let t = std::time::Instant::now();
    while shared_counters(&a)["stores"] != 1 {
        assert!(t.elapsed() < Duration::from_secs(10));
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let de = lang(at_b, "de").await;
    assert!(
        !cache_status(&de).contains("shared"),
        "{}",
        cache_status(&de)
    );
    assert_eq!(asked(), 2, "another variant: the origin");
    let fr = lang(at_b, "fr").await;
    assert!(
        cache_status(&fr).contains("detail=shared"),
        "{}",
        cache_status(&fr)
    );
    assert_eq!(asked(), 2, "the same variant: Redis");
    drop(redis);
}

/// The binary itself with `[cluster]` and the shared cache: it starts (the link's tasks run on
/// its main runtime), serves, and what it stores reaches Redis.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_runs_with_a_cluster_and_a_shared_cache() {
    let redis = Redis::start().await;
    let origin = Backend::start("o").await;
    let text = format!(
        "{}{}",
        shared_route(origin.addr),
        cluster_section(&redis.url(), "bin")
    );
    let cfg = crate::cli::temp_file("shared.toml", &text);
    let (_child, addr) = crate::cli::spawn_langur(&cfg).await;
    // The link to Redis comes up in the background: a store made before it is up is dropped
    // (and counted), so new URLs are asked until one reaches Redis.
    let t = std::time::Instant::now();
    for n in 0.. {
        let path = format!("/bin/{n}");
        assert_eq!(get(addr, &path).await.status, 200);
        let key = format!("EXISTS test:c:http://test.local{path}\r\n");
        let asked = std::time::Instant::now();
        while asked.elapsed() < Duration::from_millis(200) {
            if redis.command(&key).await.trim() == ":1" {
                return;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert!(
            t.elapsed() < Duration::from_secs(20),
            "nothing reached Redis"
        );
    }
}
