//! Unit tests of the DNS helpers: SRV weights and targets, the servers an answer makes, their
//! names.

use super::*;
use crate::backend::events::EventLog;
use crate::config::dns::dns_name;

#[test]
fn srv_weights_keep_their_proportions() {
    assert_eq!(srv_weights(&[30, 10]), [30, 10]);
    assert_eq!(
        srv_weights(&[0, 0]),
        [1, 1],
        "weight 0 is the smallest share"
    );
    assert_eq!(srv_weights(&[0, 5]), [1, 5]);
    assert_eq!(srv_weights(&[60000, 6000, 3]), [1000, 100, 1]);
    assert_eq!(srv_weights(&[65535, 1]), [1000, 1], "never rounded to 0");
    assert_eq!(
        srv_weights(&[1000, 999]),
        [1000, 999],
        "not scaled up to 1000"
    );
    assert_eq!(srv_weights(&[]), Vec::<u32>::new());
}

fn rec(priority: u16, weight: u16, port: u16, target: &str) -> SrvRecord {
    SrvRecord {
        priority,
        weight,
        port,
        target: target.into(),
    }
}

#[test]
fn srv_targets_leave_out_port_0_and_the_root_and_rank_priorities() {
    let t = srv_targets(&[
        rec(10, 0, 8080, "A.Example."),
        rec(10, 5, 0, "b.example."),
        rec(10, 5, 8080, "."),
        rec(20, 60, 9090, "c.example."),
        rec(5, 2, 80, "bad name."),
    ]);
    let seen: Vec<(&str, u16, u32, bool)> = t
        .iter()
        .map(|t| (t.name.host.as_str(), t.name.port, t.weight, t.backup))
        .collect();
    // The lowest priority left is 10: the bad name's 5 does not count.
    assert_eq!(
        seen,
        [("a.example", 8080, 1, false), ("c.example", 9090, 60, true)]
    );
    assert!(srv_targets(&[]).is_empty());
    assert!(srv_targets(&[rec(0, 1, 0, "a."), rec(0, 1, 80, ".")]).is_empty());
}

/// A pool with a static server and `api.internal:8080` at `addrs`.
fn pool(addrs: &[&str]) -> (Pool, Entry) {
    let c = crate::config::parse_str(
        "t.toml",
        "[[route]]\npath_prefix = '/'\npool = 'p'\n[pools.p]\nservers = ['127.0.0.1:1', 'api.internal:8080']\n",
        true,
    )
    .unwrap();
    let entry = Entry {
        name: dns_name("api.internal:8080").unwrap(),
        server: c.pools[0].servers[1].clone(),
    };
    let found: Vec<Found> = addrs
        .iter()
        .map(|a| Found::at(a.parse().unwrap()))
        .collect();
    let p = Pool::from_config_resolved(&c.pools[0], 1, Arc::new(EventLog::default()), &|s| {
        if s.dns.is_some() {
            found.clone()
        } else {
            Vec::new()
        }
    });
    (p, entry)
}

fn at(addrs: &[&str]) -> Vec<Found> {
    addrs
        .iter()
        .map(|a| Found::at(a.parse().unwrap()))
        .collect()
}

/// The addresses of `list`, in order.
fn addrs(list: &[Arc<Server>]) -> Vec<String> {
    list.iter().map(|s| s.addr.to_string()).collect()
}

#[test]
fn an_answer_adds_new_addresses_keeps_known_ones_and_drops_vanished_ones() {
    let (p, e) = pool(&["10.0.0.1:8080", "10.0.0.2:8080"]);
    let make = |e: &Entry, f: &Found| p.server_from(&e.server, f);
    let same = at(&["10.0.0.2:8080", "10.0.0.1:8080"]);
    assert!(
        apply_answers(&p, &[(&e, Some(&same))], &make).is_none(),
        "no change"
    );
    let next = at(&["10.0.0.2:8080", "10.0.0.3:8080"]);
    let list = apply_answers(&p, &[(&e, Some(&next))], &make).unwrap();
    assert_eq!(
        addrs(&list),
        ["127.0.0.1:1", "10.0.0.2:8080", "10.0.0.3:8080"]
    );
    assert!(
        Arc::ptr_eq(&list[1], &p.servers[2]),
        "a kept server is the same object"
    );
    assert_eq!(&*list[2].name, "api.internal:8080@10.0.0.3");
    assert_eq!(list[2].dns_entry.as_deref(), Some("api.internal:8080"));
}

#[test]
fn duplicates_empty_and_failed_answers() {
    let (p, e) = pool(&["10.0.0.1:8080"]);
    let make = |e: &Entry, f: &Found| p.server_from(&e.server, f);
    let twice = at(&["10.0.0.9:8080", "10.0.0.9:8080"]);
    let list = apply_answers(&p, &[(&e, Some(&twice))], &make).unwrap();
    assert_eq!(
        addrs(&list),
        ["127.0.0.1:1", "10.0.0.9:8080"],
        "one server per address"
    );
    assert!(
        apply_answers(&p, &[(&e, None)], &make).is_none(),
        "a failed lookup keeps the last good servers"
    );
    let list = apply_answers(&p, &[(&e, Some(&[]))], &make).unwrap();
    assert_eq!(
        addrs(&list),
        ["127.0.0.1:1"],
        "an empty answer (allowed) empties the name"
    );
    assert!(apply_answers(&p, &[], &make).is_none());
}

#[test]
fn srv_weight_and_rank_changes() {
    let (p, e) = pool(&["10.0.0.1:8080"]);
    let make = |e: &Entry, f: &Found| p.server_from(&e.server, f);
    let heavier = vec![Found {
        weight: Some(40),
        ..Found::at("10.0.0.1:8080".parse().unwrap())
    }];
    let list = apply_answers(&p, &[(&e, Some(&heavier))], &make).unwrap();
    assert!(Arc::ptr_eq(&list[1], &p.servers[1]), "weight set in place");
    assert_eq!(list[1].weight.load(Ordering::Relaxed), 40);
    let backup = vec![Found {
        backup: true,
        ..heavier[0].clone()
    }];
    let list = apply_answers(&p, &[(&e, Some(&backup))], &make).unwrap();
    assert!(
        !Arc::ptr_eq(&list[1], &p.servers[1]),
        "a new rank is a new server"
    );
    assert!(list[1].backup);
}

#[test]
fn server_names_from_dns() {
    let a = Found::at("10.0.0.7:8080".parse().unwrap());
    assert_eq!(
        server_name("api.internal:8080", &a),
        "api.internal:8080@10.0.0.7"
    );
    let srv = Found {
        target: Some("a.example:8080".into()),
        ..a.clone()
    };
    assert_eq!(
        server_name("_http._tcp.api", &srv),
        "_http._tcp.api@10.0.0.7:8080"
    );
    let v6 = Found::at("[2001:db8::7]:80".parse().unwrap());
    assert_eq!(server_name("api:80", &v6), "api:80@2001:db8::7");
}

#[test]
fn host_names_parsed_from_addresses() {
    assert_eq!(dns_name("api.internal:0").map(|n| n.port), Some(0));
    assert_eq!(dns_name("api.internal:65536"), None);
    assert_eq!(dns_name(":80"), None);
    assert_eq!(dns_name(".:80"), None, "the root is no host");
    assert_eq!(
        dns_name("localhost:80").map(|n| n.host),
        Some("localhost".into())
    );
    assert!(dns_name(&format!("{}.example:80", "a".repeat(63))).is_some());
    assert_eq!(dns_name(&format!("{}.example:80", "a".repeat(64))), None);
    let long = vec!["a".repeat(60); 5].join(".");
    assert_eq!(dns_name(&format!("{long}:80")), None, "over 253 bytes");
    assert_eq!(dns_name("a..b:80"), None);
    assert_eq!(dns_name("a-.example:80"), None);
    assert!(crate::config::dns::srv_name("_http._tcp.API.example.")
        .is_some_and(|n| n.srv && n.host == "_http._tcp.api.example" && n.port == 0));
}

#[test]
fn refresh_times_clamped_at_both_ends() {
    use crate::config::dns::DnsPolicy;
    let p = DnsPolicy {
        min_ttl: Duration::from_secs(5),
        max_ttl: Duration::from_secs(5),
        allow_empty: false,
    };
    assert_eq!(p.refresh_after(Duration::ZERO), Duration::from_secs(5));
    assert_eq!(p.refresh_after(Duration::MAX), Duration::from_secs(5));
    let d = DnsPolicy::default();
    assert_eq!(d.refresh_after(Duration::from_millis(1)), d.min_ttl);
    assert_eq!(d.refresh_after(Duration::from_secs(1 << 31)), d.max_ttl);
}
