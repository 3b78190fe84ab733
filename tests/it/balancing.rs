//! The hashing methods end to end: a client stays on its server, a session stays on its server
//! and moves only when that server goes down.

use crate::common;

use common::ctl::Ctl;
use common::*;
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// One request from a chosen local address; returns the backend that answered.
async fn get_from(at: SocketAddr, from: IpAddr, path: &str, cookie: Option<&str>) -> String {
    let sock = tokio::net::TcpSocket::new_v4().unwrap();
    sock.bind(SocketAddr::new(from, 0)).unwrap();
    let mut s = sock.connect(at).await.unwrap();
    let cookie = cookie
        .map(|c| format!("Cookie: {c}\r\n"))
        .unwrap_or_default();
    let req = format!("GET {path} HTTP/1.1\r\nHost: t\r\n{cookie}Connection: close\r\n\r\n");
    s.write_all(req.as_bytes()).await.unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    assert!(out.starts_with("HTTP/1.1 200"), "{out}");
    out.lines()
        .find_map(|l| l.strip_prefix("x-backend: "))
        .unwrap_or("?")
        .trim()
        .to_string()
}

async fn three() -> (Ctl, Ctl, Ctl) {
    (
        Ctl::start("a").await,
        Ctl::start("b").await,
        Ctl::start("c").await,
    )
}

#[tokio::test]
async fn source_hashing_keeps_each_client_on_one_server() {
    let (a, b, c) = three().await;
    let toml = format!(
        "[[route]]\nmatch = ['^/']\npool = \"p\"\n[pools.p]\nbalance = \"source\"\nservers = [\"{}\", \"{}\", \"{}\"]\n",
        a.addr, b.addr, c.addr
    );
    let lg = langur_toml(&toml).await;
    let at = lg.listen_addrs()[0];
    let mut used = std::collections::HashSet::new();
    for n in 1..=24u8 {
        let from: IpAddr = format!("127.0.0.{n}").parse().unwrap();
        let first = get_from(at, from, "/app", None).await;
        for _ in 0..4 {
            assert_eq!(
                get_from(at, from, "/app", None).await,
                first,
                "client {from} moved"
            );
        }
        used.insert(first);
    }
    assert!(used.len() >= 2, "24 clients all on one server: {used:?}");
    lg.shutdown().await;
}

#[tokio::test]
async fn cookie_hashing_keeps_a_session_and_moves_it_only_when_its_server_goes_down() {
    let (a, b, c) = three().await;
    let mut ctls = HashMap::from([("a", a), ("b", b), ("c", c)]);
    let toml = format!(
        "[[route]]\nmatch = ['^/']\npool = \"p\"\n[pools.p]\nbalance = \"cookie:session\"\nattempts = 1\noffline_timeout = \"30s\"\nservers = [\"{}\", \"{}\", \"{}\"]\n",
        ctls["a"].addr, ctls["b"].addr, ctls["c"].addr
    );
    let lg = langur_toml(&toml).await;
    let at = lg.listen_addrs()[0];
    let me: IpAddr = "127.0.0.1".parse().unwrap();
    let mut home = HashMap::new();
    for s in 0..30 {
        let cookie = format!("theme=dark; session=user-{s}");
        let first = get_from(at, me, "/app", Some(&cookie)).await;
        for _ in 0..3 {
            assert_eq!(
                get_from(at, me, "/app", Some(&cookie)).await,
                first,
                "session {s} moved"
            );
        }
        home.insert(s, first);
    }
    let victim = home[&0].clone();
    ctls.get_mut(victim.as_str()).unwrap().stop();
    for s in 0..30 {
        let cookie = format!("theme=dark; session=user-{s}");
        let now = get_from(at, me, "/app", Some(&cookie)).await; // never an error
        if home[&s] == victim {
            assert_ne!(now, victim);
        } else {
            assert_eq!(now, home[&s], "session {s} moved although its server is up");
        }
    }
    // No session cookie: spread round robin.
    let spread: std::collections::HashSet<String> = {
        let mut v = std::collections::HashSet::new();
        for _ in 0..6 {
            v.insert(get_from(at, me, "/app", None).await);
        }
        v
    };
    assert_eq!(spread.len(), 2, "{spread:?}");
    lg.shutdown().await;
}

/// Which backend answered a plain GET.
async fn who(at: SocketAddr, path: &str) -> String {
    get_from(at, "127.0.0.1".parse().unwrap(), path, None).await
}

#[tokio::test]
async fn a_backup_does_not_tilt_round_robin_between_primaries() {
    let (a, b, k) = three().await;
    let l = langur_toml(&format!(
        "[[route]]\nmatch = ['^/']\npool = 'p'\n[pools.p]\nserver = [{{ address = '{}' }}, {{ address = '{}' }}, {{ address = '{}', backup = true }}]\n",
        a.addr, b.addr, k.addr
    ))
    .await;
    let at = l.listen_addrs()[0];
    let mut counts: HashMap<String, usize> = HashMap::new();
    for _ in 0..60 {
        *counts.entry(who(at, "/app").await).or_default() += 1;
    }
    assert_eq!(counts.get("a"), Some(&30), "{counts:?}");
    assert_eq!(counts.get("b"), Some(&30), "{counts:?}");
    assert_eq!(counts.get("c"), None, "{counts:?}");
}

#[tokio::test]
async fn slow_start_never_refuses_what_only_ramping_servers_can_take() {
    use common::ctl::S500;
    use std::sync::atomic::Ordering;
    let (a, b, _) = three().await;
    let l = langur_toml(&format!(
        "[[route]]\nmatch = ['^/']\npool = 'p'\n[pools.p]\nslowstart = '6s'\nservers = ['{}', '{}']\n[pools.p.check]\ntype = 'http'\npath = '/health'\ninterval = '50ms'\nfastinter = '50ms'\ndowninter = '50ms'\nrise = 1\nfall = 1\n",
        a.addr, b.addr
    ))
    .await;
    let at = l.listen_addrs()[0];
    a.mode.store(S500, Ordering::SeqCst);
    b.mode.store(S500, Ordering::SeqCst);
    tokio::time::sleep(std::time::Duration::from_millis(400)).await;
    a.mode.store(0, Ordering::SeqCst);
    b.mode.store(0, Ordering::SeqCst);
    tokio::time::sleep(std::time::Duration::from_millis(400)).await;
    // Both are back and at the very start of their ramp: every request is still served.
    let mut counts: HashMap<String, usize> = HashMap::new();
    for _ in 0..40 {
        *counts.entry(who(at, "/app").await).or_default() += 1;
    }
    assert_eq!(counts.values().sum::<usize>(), 40, "{counts:?}");
}
