//! Server state and pool view unit tests.

use super::*;
use crate::balancer::Candidates;

pub(crate) fn pool(backups: &[bool], all_backups: bool) -> Pool {
    let servers = backups
        .iter()
        .enumerate()
        .map(|(i, b)| {
            let mut s = Server::new(
                &format!("s{i}"),
                format!("127.0.0.1:{}", 1000 + i).parse().unwrap(),
                1,
                1,
            );
            s.backup = *b;
            Arc::new(s)
        })
        .collect();
    Pool {
        name: Arc::from("p"),
        servers,
        balancer: arc_swap::ArcSwap::from_pointee(crate::balancer::build(
            &crate::config::BalanceMethod::RoundRobin,
            &vec![("x".to_string(), 1); backups.len()],
            1,
            None,
        )),
        balance: crate::config::BalanceMethod::RoundRobin,
        hash_balance_factor: None,
        hash_on: None,
        tracks_latency: false,
        sticky: None,
        sticky_config: None,
        retries: None,
        retry_budget: None,
        slowstart: Duration::ZERO,
        overload_backoff: Duration::ZERO,
        send_proxy: None,
        dice: crate::balancer::random::Rng::new(1),
        ha: HaPolicy {
            attempts: 1,
            offline_timeout: Duration::from_secs(10),
        },
        connect_timeout: Duration::from_secs(1),
        response_timeout: Duration::from_secs(1),
        read_timeout: Duration::from_secs(1),
        protocol: crate::config::Protocol::H1,
        tls: None,
        request_timeout: Duration::from_secs(10),
        max_idle_per_server: 1,
        observe: None,
        has_backups: backups.iter().any(|b| *b),
        all_backups,
        shutdown_sessions_on_down: false,
        shutdown_backup_sessions_on_up: false,
        events: Default::default(),
        slots: 1,
        discovery: Default::default(),
        queue: Arc::new(queue::Queue::new(crate::config::QueueConfig {
            max: 10,
            timeout: Duration::from_secs(1),
            full_status: 503,
            timeout_status: 504,
            retry_after: Duration::from_secs(1),
            fair: false,
        })),
    }
}

fn usable(p: &Pool) -> Vec<bool> {
    let tried = Tried::default();
    let v = PoolView::new(p, &tried);
    (0..p.servers.len()).map(|i| v.usable(i)).collect()
}

#[test]
fn operator_state_and_health_decide_usability() {
    let p = pool(&[false, false, false], false);
    p.servers[0].set_operator(Operator::Drain);
    p.servers[1].set_health(Health::Drain);
    assert_eq!(usable(&p), vec![false, false, true]);
    assert_eq!(p.servers[0].state_word(p.ha), "drain");
    p.servers[2].set_operator(Operator::Maint);
    assert_eq!(usable(&p), vec![false, false, false]);
    assert_eq!(p.servers[2].state_word(p.ha), "maint");
    p.servers[0].set_operator(Operator::Ready);
    assert_eq!(p.servers[0].state_word(p.ha), "alive");
    p.servers[0].connect_failed(crate::clock::now_ms());
    assert_eq!(
        p.servers[0].state_word(p.ha),
        "down",
        "offline after `attempts` failed connects"
    );
}

#[test]
fn backups_wait_for_every_primary() {
    let p = pool(&[false, true, true], false);
    assert_eq!(usable(&p), vec![true, false, false]);
    p.servers[0].set_health(Health::Down);
    assert_eq!(
        usable(&p),
        vec![false, true, false],
        "the first backup takes it all"
    );
    let p = pool(&[false, true, true], true);
    p.servers[0].set_operator(Operator::Maint);
    assert_eq!(
        usable(&p),
        vec![false, true, true],
        "all_backups share the load"
    );
}

/// `maxconn` is strict: of threads that claim a slot of a server with `maxconn = 3` at once,
/// three get one, and a slot given back without a request counts no request.
#[test]
fn maxconn_slots_are_claimed_atomically() {
    let mut s = Server::new("a", "127.0.0.1:1".parse().unwrap(), 1, 1);
    s.maxconn = AtomicUsize::new(3);
    let s = Arc::new(s);
    let start = Arc::new(std::sync::Barrier::new(8));
    let got: Vec<Option<InFlight>> = std::thread::scope(|t| {
        let claims: Vec<_> = (0..8)
            .map(|_| {
                let (s, start) = (s.clone(), start.clone());
                t.spawn(move || {
                    start.wait();
                    InFlight::claim(&s)
                })
            })
            .collect();
        claims.into_iter().map(|c| c.join().unwrap()).collect()
    });
    assert_eq!(got.iter().flatten().count(), 3);
    assert_eq!(s.in_flight.load(Ordering::Relaxed), 3);
    assert!(InFlight::claim(&s).is_none(), "at maxconn");
    drop(got);
    assert_eq!(s.in_flight.load(Ordering::Relaxed), 0);
    assert_eq!(s.requests.load(Ordering::Relaxed), 0);
    let mut one = InFlight::claim(&s).unwrap();
    one.carries_request();
    assert_eq!(s.requests.load(Ordering::Relaxed), 1);
}

/// `maxconn` and the overload backoff, with tokio's clock paused and moved by hand.
#[tokio::test(start_paused = true)]
async fn limits_and_backoff() {
    let mut s = Server::new("a", "127.0.0.1:1".parse().unwrap(), 1, 1);
    s.maxconn = AtomicUsize::new(2);
    let s = Arc::new(s);
    let a = InFlight::new(s.clone());
    assert!(!s.overloaded());
    let b = InFlight::new(s.clone());
    assert!(s.overloaded(), "at maxconn");
    drop(a);
    assert!(!s.overloaded());
    // A 503: backing off for 3 s, not ended by the request that brought it...
    let mut c = InFlight::new(s.clone());
    s.back_off(Duration::from_secs(3));
    c.keep_backoff();
    drop(c);
    assert!(s.overloaded());
    tokio::time::advance(Duration::from_millis(2_900)).await;
    assert!(s.overloaded());
    tokio::time::advance(Duration::from_millis(200)).await;
    assert!(!s.overloaded(), "the backoff ran out");
    // ...but by any other request that completes.
    s.back_off(Duration::from_secs(3));
    assert!(s.overloaded());
    drop(b);
    assert!(!s.overloaded());
}

#[test]
fn slow_start_ramps_linearly() {
    let ramp = Duration::from_secs(30);
    assert_eq!(slowstart_factor(Duration::ZERO, ramp), 0.05);
    assert!((slowstart_factor(Duration::from_secs(15), ramp) - 0.5).abs() < 1e-9);
    assert_eq!(slowstart_factor(Duration::from_secs(31), ramp), 1.0);
    assert_eq!(
        slowstart_factor(Duration::from_secs(1), Duration::ZERO),
        1.0
    );
}

/// Slow start through the balancer, with tokio's clock paused and moved by hand.
#[tokio::test(start_paused = true)]
async fn slow_start_share_rises_to_the_full_share() {
    let mut p = pool(&[false, false], false);
    p.slowstart = Duration::from_secs(30);
    p.servers[1].came_up();
    let share = |p: &Pool| {
        let mut n = 0;
        for _ in 0..20_000 {
            let tried = Tried::default();
            let v = PoolView::new(p, &tried);
            if p.balancer
                .load()
                .pick(&v, &crate::balancer::PickContext::default())
                == Some(1)
            {
                n += 1;
            }
        }
        n as f64 / 20_000.0
    };
    let early = share(&p);
    assert!(early < 0.1, "just up: {early}");
    tokio::time::advance(Duration::from_secs(15)).await;
    let mid = share(&p);
    assert!(mid > 0.25 && mid < 0.45, "half-way: {mid}");
    tokio::time::advance(Duration::from_secs(16)).await;
    let done = share(&p);
    assert!((done - 0.5).abs() < 0.02, "full share: {done}");
}

#[test]
fn retry_budget_is_a_ratio_of_traffic() {
    let b = RetryBudget::new(0.2);
    let mut allowed = 0;
    for _ in 0..100 {
        b.deposit();
        // every request would like 3 retries
        for _ in 0..3 {
            if b.withdraw() {
                allowed += 1;
            }
        }
    }
    assert_eq!(
        allowed,
        RetryBudget::RESERVE as usize + 20,
        "20% of 100 requests plus the reserve"
    );
}

#[test]
fn tried_set() {
    let mut t = Tried::default();
    t.insert(3);
    t.insert(200);
    assert!(t.contains(3) && t.contains(200));
    assert!(!t.contains(4) && !t.contains(199) && !t.contains(1000));
}

#[test]
fn server_goes_offline_and_one_retry_is_claimed() {
    let s = Arc::new(Server::new("a", "127.0.0.1:1".parse().unwrap(), 1, 1));
    let p = HaPolicy {
        attempts: 2,
        offline_timeout: Duration::from_secs(5),
    };
    assert_eq!(s.availability(p, &|| 0), Availability::Up);
    s.connect_failed(1000);
    assert_eq!(s.availability(p, &|| 1000), Availability::Up);
    s.connect_failed(1000);
    assert_eq!(s.availability(p, &|| 1001), Availability::Offline);
    assert_eq!(s.availability(p, &|| 6000), Availability::RetryDue);
    let claim = s.claim_retry().expect("first claim");
    assert!(s.claim_retry().is_none(), "only one request retries");
    assert_eq!(s.availability(p, &|| 6000), Availability::Offline);
    drop(claim);
    assert_eq!(s.availability(p, &|| 6000), Availability::RetryDue);
    assert_eq!(s.connect_succeeded(), 2);
    assert_eq!(s.availability(p, &|| 6000), Availability::Up);
}
