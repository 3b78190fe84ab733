//! The hashing methods end to end: a client stays on its server, a session stays on its server
//! and moves only when that server goes down.

mod common;

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
