use super::*;
use std::sync::atomic::Ordering::Relaxed;

fn limit(key: LimitKey, count: u32, period_s: u64, burst: u32, max_keys: usize) -> RateLimit {
    RateLimit {
        key,
        count,
        period: Duration::from_secs(period_s),
        burst,
        max_keys,
        scope: Default::default(),
    }
}

fn limiter(count: u32, burst: u32, max_keys: usize) -> Arc<RateLimiter> {
    let l = limit(LimitKey::ClientIp, count, 1, burst, max_keys);
    Arc::new(RateLimiter::new(&l, "test".into()))
}

#[tokio::test(start_paused = true)]
async fn the_burst_then_one_per_interval() {
    let l = limiter(10, 3, 100);
    for _ in 0..3 {
        assert_eq!(l.check(1), Decision::Allow);
    }
    let Decision::Deny(wait) = l.check(1) else {
        panic!("over the burst")
    };
    assert!(
        wait <= Duration::from_millis(100) && wait > Duration::ZERO,
        "{wait:?}"
    );
    assert_eq!(l.limited.load(Relaxed), 1);
    tokio::time::advance(Duration::from_millis(100)).await;
    assert_eq!(l.check(1), Decision::Allow, "one share came back");
    assert!(matches!(l.check(1), Decision::Deny(_)));
    tokio::time::advance(Duration::from_millis(300)).await;
    for _ in 0..3 {
        assert_eq!(l.check(1), Decision::Allow, "the whole burst came back");
    }
}

#[tokio::test(start_paused = true)]
async fn keys_are_independent() {
    let l = limiter(1, 1, 100);
    assert_eq!(l.check(1), Decision::Allow);
    assert!(matches!(l.check(1), Decision::Deny(_)));
    assert_eq!(l.check(2), Decision::Allow);
    assert_eq!(l.keys(), 2);
}

#[tokio::test(start_paused = true)]
async fn at_the_cap_new_keys_share_one_bucket_and_known_ones_keep_theirs() {
    let l = limiter(1, 2, 3);
    for k in 1..=3 {
        assert_eq!(l.check(k), Decision::Allow);
    }
    assert_eq!(l.keys(), 3);
    // New keys: one shared bucket of burst 2.
    assert_eq!(l.check(100), Decision::Allow);
    assert_eq!(l.check(101), Decision::Allow);
    assert!(matches!(l.check(102), Decision::Deny(_)));
    assert_eq!(l.keys(), 3, "nothing was added");
    assert_eq!(l.overflowed(), 3);
    // A known key still has its own.
    assert_eq!(l.check(1), Decision::Allow);
}

#[tokio::test(start_paused = true)]
async fn idle_keys_are_swept_and_busy_ones_kept() {
    let l = limiter(10, 2, 1000);
    for k in 0..500 {
        assert_eq!(l.check(k), Decision::Allow);
    }
    assert_eq!(l.check(7), Decision::Allow);
    assert!(matches!(l.check(7), Decision::Deny(_)));
    // Key 7 spent its burst; the others took one of two shares, back after 100 ms (a key is
    // forgotten one interval after that: governor's margin).
    tokio::time::advance(Duration::from_millis(250)).await;
    l.sweep();
    assert_eq!(l.keys(), 1, "only the key still owing time is kept");
    assert!(matches!(l.check(7), Decision::Allow));
    tokio::time::advance(Duration::from_secs(1)).await;
    l.sweep();
    assert_eq!(l.keys(), 0);
}

#[tokio::test(start_paused = true)]
async fn a_sweep_starts_by_itself_when_new_keys_arrive() {
    let l = limiter(10, 1, 1_000_000);
    for k in 0..100 {
        l.check(k);
    }
    tokio::time::advance(Duration::from_secs(2)).await;
    l.check(1000);
    // The sweep runs on the blocking pool, in real time: paused time would let a wait by
    // tokio's clock pass before that thread has even started.
    let t = std::time::Instant::now();
    while l.keys() > 1 && t.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(2));
    }
    assert!(l.keys() <= 1, "{} keys left", l.keys());
}

#[test]
fn fields_of_a_denied_request() {
    let l = limit(LimitKey::ClientIp, 100, 60, 50, 10);
    let r = RateLimiter::new(&l, "x".into());
    assert_eq!(r.policy(), "\"default\";q=100;w=60;langur-burst=50");
    let (state, secs) = RateLimiter::denied_fields(Duration::from_millis(1200));
    assert_eq!((state.to_str().unwrap(), secs), ("\"default\";r=0;t=2", 2));
    assert_eq!(RateLimiter::denied_fields(Duration::ZERO).1, 1);
}

#[test]
fn keys_by_kind() {
    let ip: IpAddr = "10.0.0.1".parse().unwrap();
    let mut h = HeaderMap::new();
    let by_header = RateLimiter::new(
        &limit(LimitKey::Header("x-api-key".parse().unwrap()), 1, 1, 1, 10),
        "h".into(),
    );
    let without = by_header.key_of(&h, ip).unwrap();
    assert_eq!(
        without,
        super::super::ip_key(ip),
        "no field: the client's address"
    );
    h.insert("x-api-key", HeaderValue::from_static("k1"));
    assert_ne!(by_header.key_of(&h, ip).unwrap(), without);
    let route = RateLimiter::new(&limit(LimitKey::Route, 1, 1, 1, 10), "r".into());
    let other: IpAddr = "10.0.0.2".parse().unwrap();
    assert_eq!(route.key_of(&h, ip), route.key_of(&HeaderMap::new(), other));
    // The field twice: no key (the request is refused).
    h.append("x-api-key", HeaderValue::from_static("k2"));
    assert_eq!(by_header.key_of(&h, ip), None);
}
