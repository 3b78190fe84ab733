//! Limits per client end to end: request rates per key (429 with `Retry-After` and the
//! `RateLimit-Policy`/`RateLimit` fields, recovery, `[defaults]`, reload, stats), open
//! connections per client address, and the fair backlog queue; bad values in the file.

use crate::common;

use common::*;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

/// A connection from a chosen local address (127.0.0.0/8 is all loopback).
async fn connect_from(at: SocketAddr, from: IpAddr) -> TcpStream {
    let sock = tokio::net::TcpSocket::new_v4().unwrap();
    sock.bind(SocketAddr::new(from, 0)).unwrap();
    sock.connect(at).await.unwrap()
}

/// The answer's head (status line and fields) to a GET on its own connection from `from`.
async fn get_from(at: SocketAddr, from: IpAddr, path: &str, fields: &str) -> String {
    let mut s = connect_from(at, from).await;
    let req = format!("GET {path} HTTP/1.1\r\nHost: t\r\n{fields}Connection: close\r\n\r\n");
    s.write_all(req.as_bytes()).await.unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    out
}

fn status(answer: &str) -> u16 {
    answer.get(9..12).and_then(|s| s.parse().ok()).unwrap_or(0)
}

fn field<'a>(answer: &'a str, name: &str) -> Option<&'a str> {
    answer.lines().take_while(|l| !l.is_empty()).find_map(|l| {
        let (n, v) = l.split_once(':')?;
        n.eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

fn route_to(backend: SocketAddr, route_extra: &str) -> String {
    format!("[[route]]\npath_prefix = '/'\npool = 'p'\n{route_extra}\n[pools.p]\nservers = ['{backend}']\n")
}

#[tokio::test]
async fn over_the_burst_is_429_with_the_fields_and_keys_are_independent() {
    let b = Backend::start("b").await;
    let lg = langur_toml(&route_to(
        b.addr,
        "rate_limit = { key = 'client_ip', rate = '10/s', burst = 3 }",
    ))
    .await;
    let at = lg.listen_addrs()[0];
    let me = ip("127.0.0.2");
    for i in 0..3 {
        assert_eq!(status(&get_from(at, me, "/", "").await), 200, "request {i}");
    }
    let over = get_from(at, me, "/", "").await;
    assert_eq!(status(&over), 429, "{over}");
    assert_eq!(field(&over, "retry-after"), Some("1"));
    assert_eq!(
        field(&over, "ratelimit-policy"),
        Some("\"default\";q=10;w=1;langur-burst=3")
    );
    assert_eq!(field(&over, "ratelimit"), Some("\"default\";r=0;t=1"));
    assert_eq!(b.hits(), 3, "a refused request never reaches the server");
    // Another client has its own bucket.
    assert_eq!(status(&get_from(at, ip("127.0.0.3"), "/", "").await), 200);
    // One share comes back every 100 ms.
    tokio::time::sleep(Duration::from_millis(130)).await;
    assert_eq!(status(&get_from(at, me, "/", "").await), 200, "recovered");
    assert_eq!(status(&get_from(at, me, "/", "").await), 429);
    tokio::time::sleep(Duration::from_millis(350)).await;
    for _ in 0..3 {
        assert_eq!(
            status(&get_from(at, me, "/", "").await),
            200,
            "the whole burst"
        );
    }
    lg.shutdown().await;
}

#[tokio::test]
async fn a_header_key_counts_per_value_and_by_address_without_it() {
    let b = Backend::start("b").await;
    let lg = langur_toml(&route_to(
        b.addr,
        "rate_limit = { key = 'header:X-Api-Key', rate = '1/m', burst = 2 }",
    ))
    .await;
    let at = lg.listen_addrs()[0];
    let me = ip("127.0.0.2");
    let k1 = "X-Api-Key: k1\r\n";
    assert_eq!(status(&get_from(at, me, "/", k1).await), 200);
    assert_eq!(status(&get_from(at, me, "/", k1).await), 200);
    let over = get_from(at, me, "/", k1).await;
    assert_eq!(status(&over), 429);
    // One a minute after a burst of two: the next one in 60 s.
    assert_eq!(field(&over, "ratelimit"), Some("\"default\";r=0;t=60"));
    assert_eq!(field(&over, "retry-after"), Some("60"));
    assert_eq!(
        field(&over, "ratelimit-policy"),
        Some("\"default\";q=1;w=60;langur-burst=2")
    );
    // Another key from the same address is counted apart.
    assert_eq!(
        status(&get_from(at, me, "/", "X-Api-Key: k2\r\n").await),
        200
    );
    // Without the field, the client's address is the key.
    assert_eq!(status(&get_from(at, me, "/", "").await), 200);
    assert_eq!(status(&get_from(at, me, "/", "").await), 200);
    assert_eq!(status(&get_from(at, me, "/", "").await), 429);
    assert_eq!(status(&get_from(at, ip("127.0.0.3"), "/", "").await), 200);
    lg.shutdown().await;
}

#[tokio::test]
async fn routes_inherit_the_defaults_limit_unless_they_set_their_own_or_false() {
    let b = Backend::start("b").await;
    let lg = langur_toml(&format!(
        "[defaults]\nrate_limit = {{ rate = '1/m', burst = 1 }}\n\
         [[route]]\npath_prefix = '/inherits'\npool = 'p'\n\
         [[route]]\npath_prefix = '/free'\npool = 'p'\nrate_limit = false\n\
         [[route]]\npath_prefix = '/own'\npool = 'p'\nrate_limit = {{ key = 'route', rate = '2/h', burst = 2 }}\n\
         [pools.p]\nservers = ['{}']\n",
        b.addr
    ))
    .await;
    let at = lg.listen_addrs()[0];
    let me = ip("127.0.0.2");
    assert_eq!(status(&get_from(at, me, "/inherits", "").await), 200);
    assert_eq!(status(&get_from(at, me, "/inherits", "").await), 429);
    for _ in 0..5 {
        assert_eq!(status(&get_from(at, me, "/free", "").await), 200);
    }
    // `key = 'route'`: one count for every client.
    assert_eq!(status(&get_from(at, me, "/own", "").await), 200);
    assert_eq!(
        status(&get_from(at, ip("127.0.0.3"), "/own", "").await),
        200
    );
    let over = get_from(at, ip("127.0.0.4"), "/own", "").await;
    assert_eq!(status(&over), 429);
    assert_eq!(field(&over, "ratelimit"), Some("\"default\";r=0;t=1800"));
    lg.shutdown().await;
}

#[tokio::test]
async fn limited_requests_are_counted_per_route_in_stats_and_metrics() {
    let b = Backend::start("b").await;
    let mut config = toml_config(&format!(
        "[[route]]\npath_prefix = '/free'\npool = 'p'\n\
         [[route]]\npath_prefix = '/'\npool = 'p'\nrate_limit = {{ rate = '1/m', burst = 1 }}\n\
         [pools.p]\nservers = ['{}']\n",
        b.addr
    ));
    config.server.access_log = false;
    let lg = start_with_admin(config).await;
    let (at, admin) = (lg.listen_addrs()[0], lg.admin_addr().unwrap());
    let me = ip("127.0.0.2");
    assert_eq!(status(&get_from(at, me, "/x", "").await), 200);
    for _ in 0..2 {
        assert_eq!(status(&get_from(at, me, "/x", "").await), 429);
    }
    let host = [("host", "127.0.0.1")];
    let s = request(admin, http::Method::GET, "/api/stats", &host, body("")).await;
    let stats: serde_json::Value = serde_json::from_slice(&s.body).unwrap();
    let limits = &stats["rate_limits"];
    assert_eq!(limits.as_array().unwrap().len(), 1, "{limits}");
    assert_eq!(limits[0]["route"], 2);
    assert_eq!(limits[0]["rate"], "1/m");
    assert_eq!(limits[0]["limited"], 2);
    assert_eq!(limits[0]["keys"], 1);
    let m = request(admin, http::Method::GET, "/metrics", &host, body("")).await;
    let text = m.text();
    assert!(
        text.contains("langur_route_rate_limited_total{route=\"2\"} 2"),
        "{text}"
    );
    assert!(text.contains("langur_route_rate_limit_keys{route=\"2\"} 1"));
    lg.shutdown().await;
}

#[tokio::test]
async fn a_reload_keeps_the_counts_of_an_unchanged_limit() {
    let b = Backend::start("b").await;
    let dir = crate::common::Scratch::new("limits");
    let file = dir.join("langur.toml");
    let limited = route_to(b.addr, "rate_limit = { rate = '1/m', burst = 1 }");
    std::fs::write(&file, &limited).unwrap();
    let lg = start(langur::config::load(&file).unwrap()).await;
    let at = lg.listen_addrs()[0];
    let me = ip("127.0.0.2");
    assert_eq!(status(&get_from(at, me, "/", "").await), 200);
    assert_eq!(status(&get_from(at, me, "/", "").await), 429);
    // Another route added, this one unchanged: still over its limit.
    std::fs::write(
        &file,
        format!("[[route]]\npath = '/other'\npool = 'p'\n{limited}"),
    )
    .unwrap();
    langur::server::reload(lg.shared()).unwrap();
    assert_eq!(status(&get_from(at, me, "/", "").await), 429, "state kept");
    // A new rate is a new limit.
    std::fs::write(&file, limited.replace("1/m", "2/m")).unwrap();
    langur::server::reload(lg.shared()).unwrap();
    assert_eq!(status(&get_from(at, me, "/", "").await), 200, "fresh state");
    lg.shutdown().await;
}

/// Whether a connection just made is refused for `max_connections_per_client`: a short 503
/// with `Connection: close` before anything is sent, then the close (an accepted connection
/// waits for its request instead).
async fn refused_busy(s: &mut TcpStream) -> bool {
    let mut out = Vec::new();
    match tokio::time::timeout(Duration::from_millis(500), s.read_to_end(&mut out)).await {
        Err(_) => false,
        Ok(_) => {
            let text = String::from_utf8_lossy(&out);
            assert!(
                text.starts_with("HTTP/1.1 503") && text.contains("Connection: close"),
                "{text}"
            );
            true
        }
    }
}

/// A keep-alive request on `s`; its status.
async fn get_on(s: &mut TcpStream) -> u16 {
    s.write_all(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
        .await
        .unwrap();
    let mut buf = vec![0u8; 4096];
    let n = s.read(&mut buf).await.unwrap();
    status(&String::from_utf8_lossy(&buf[..n]))
}

#[tokio::test]
async fn connections_per_client_are_capped_at_accept() {
    let b = Backend::start("b").await;
    let lg = start_with_admin(toml_config(&format!(
        "[server]\nmax_connections_per_client = 3\n{}",
        route_to(b.addr, "")
    )))
    .await;
    let at = lg.listen_addrs()[0];
    let me = ip("127.0.0.2");
    let mut open = Vec::new();
    for _ in 0..3 {
        let mut s = connect_from(at, me).await;
        assert_eq!(get_on(&mut s).await, 200);
        open.push(s);
    }
    let mut fourth = connect_from(at, me).await;
    assert!(refused_busy(&mut fourth).await, "the 4th is refused");
    // Other clients are not affected, and the three still serve.
    let mut other = connect_from(at, ip("127.0.0.3")).await;
    assert_eq!(get_on(&mut other).await, 200);
    for s in &mut open {
        assert_eq!(get_on(s).await, 200);
    }
    // One closes: its place comes free.
    drop(open.pop());
    let t = std::time::Instant::now();
    loop {
        let mut s = connect_from(at, me).await;
        if !refused_busy(&mut s).await {
            break;
        }
        assert!(t.elapsed() < Duration::from_secs(3), "no place came free");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(lg.shared().clients.refused.load(Ordering::Relaxed) >= 1);
    let host = [("host", "127.0.0.1")];
    let admin = lg.admin_addr().unwrap();
    let m = request(admin, http::Method::GET, "/metrics", &host, body("")).await;
    assert!(
        m.text()
            .contains("langur_client_connections_refused_total "),
        "{}",
        m.text()
    );
    lg.shutdown().await;
}

#[tokio::test]
async fn a_balancer_sending_proxy_headers_is_not_capped_as_one_client() {
    let b = Backend::start("b").await;
    let lg = langur_toml(&format!(
        "[server]\nmax_connections_per_client = 1\nproxy_protocol = true\n\
         proxy_protocol_from = ['127.0.0.0/8']\n{}",
        route_to(b.addr, "")
    ))
    .await;
    let at = lg.listen_addrs()[0];
    let balancer = ip("127.0.0.2");
    let mut open = Vec::new();
    for client in ["192.0.2.1", "192.0.2.2", "192.0.2.3"] {
        let mut s = connect_from(at, balancer).await;
        let header = format!("PROXY TCP4 {client} 192.0.2.100 40000 80\r\n");
        s.write_all(header.as_bytes()).await.unwrap();
        assert_eq!(get_on(&mut s).await, 200, "{client}");
        open.push(s);
    }
    assert_eq!(lg.shared().clients.refused.load(Ordering::Relaxed), 0);
    // The client a header announces is counted: a second connection of 192.0.2.1 is refused.
    let mut again = connect_from(at, balancer).await;
    again
        .write_all(b"PROXY TCP4 192.0.2.1 192.0.2.100 40001 80\r\n")
        .await
        .unwrap();
    assert!(refused_busy(&mut again).await);
    assert_eq!(lg.shared().clients.refused.load(Ordering::Relaxed), 1);
    // Its place comes free when the first one closes.
    drop(open.remove(0));
    let t = std::time::Instant::now();
    loop {
        let mut s = connect_from(at, balancer).await;
        s.write_all(b"PROXY TCP4 192.0.2.1 192.0.2.100 40002 80\r\n")
            .await
            .unwrap();
        if !refused_busy(&mut s).await {
            assert_eq!(get_on(&mut s).await, 200);
            break;
        }
        assert!(t.elapsed() < Duration::from_secs(3), "no place came free");
    }
    lg.shutdown().await;
}

#[tokio::test]
async fn a_trusted_proxy_is_not_capped_as_one_client() {
    let b = Backend::start("b").await;
    let lg = langur_toml(&format!(
        "[server]
max_connections_per_client = 1
trusted_proxies = ['127.0.0.2']
{}",
        route_to(b.addr, "")
    ))
    .await;
    let at = lg.listen_addrs()[0];
    let mut open = Vec::new();
    for _ in 0..3 {
        let mut s = connect_from(at, ip("127.0.0.2")).await;
        assert_eq!(get_on(&mut s).await, 200);
        open.push(s);
    }
    // Others are.
    let _one = connect_from(at, ip("127.0.0.3")).await;
    let mut two = connect_from(at, ip("127.0.0.3")).await;
    assert!(refused_busy(&mut two).await);
    lg.shutdown().await;
}

/// `header:NAME` keys: a request with the field twice is refused, so `X-Api-Key: junk` and
/// `X-Api-Key: victim` cannot escape the victim's limit.
#[tokio::test]
async fn a_rate_limit_key_field_sent_twice_is_refused() {
    let b = Backend::start("b").await;
    let lg = langur_toml(&route_to(
        b.addr,
        "rate_limit = { key = 'header:X-Api-Key', rate = '1/m', burst = 1 }",
    ))
    .await;
    let at = lg.listen_addrs()[0];
    let me = ip("127.0.0.2");
    let victim = "X-Api-Key: victim\r\n";
    assert_eq!(status(&get_from(at, me, "/", victim).await), 200);
    assert_eq!(status(&get_from(at, me, "/", victim).await), 429);
    let both = "X-Api-Key: junk\r\nX-Api-Key: victim\r\n";
    assert_eq!(status(&get_from(at, me, "/", both).await), 400);
    assert_eq!(b.hits.load(Ordering::Relaxed), 1);
}

/// A server that holds every request until `gate` opens, then answers each at once (a
/// 200 with no body, on a kept-alive connection).
async fn gated_server(gate: tokio::sync::watch::Receiver<bool>) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            let mut gate = gate.clone();
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut buf = [0u8; 4096];
                loop {
                    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                        match s.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => head.extend_from_slice(&buf[..n]),
                        }
                    }
                    head.clear();
                    if gate.wait_for(|open| *open).await.is_err() {
                        return;
                    }
                    let ok = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n";
                    if s.write_all(ok).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    addr
}

/// Completion order of requests sent from two clients to a pool with one slot: `a` sends
/// `many` first, and once they all wait (the server holds the first) `b` sends `few`; then the
/// server answers. Returns the order in which the requests completed (`'a'` or `'b'`), which
/// is the queue's order alone, however loaded the machine.
async fn two_clients(fair: bool, many: usize, few: usize) -> Vec<char> {
    let (open, gate) = tokio::sync::watch::channel(false);
    let server = gated_server(gate).await;
    let lg = langur_toml(&format!(
        "[[route]]\npath_prefix = '/'\npool = 'p'\n[pools.p]\nservers = ['{server}']\nmaxconn = 1\n\
         [pools.p.queue]\nmax = 1000\ntimeout = '60s'\nfair = {fair}\n"
    ))
    .await;
    let at = lg.listen_addrs()[0];
    let done = Arc::new(Mutex::new(Vec::new()));
    let mut tasks = Vec::new();
    let send = |who: char, from: &str| {
        let (done, from) = (done.clone(), ip(from));
        tokio::spawn(async move {
            let answer = get_from(at, from, "/", "").await;
            assert_eq!(status(&answer), 200, "{answer}");
            done.lock().unwrap().push(who);
        })
    };
    let queue = || lg.shared().runtime.load().pools[0].queue.len();
    // Bounds for a loaded machine (the whole suite runs at once), not timing checks.
    let wait_for_queue = |n: usize| async move {
        let t = std::time::Instant::now();
        while queue() < n {
            assert!(t.elapsed() < Duration::from_secs(30), "queue: {}", queue());
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    };
    for _ in 0..many {
        tasks.push(send('a', "127.0.0.2"));
    }
    // One of a's holds the slot; the rest wait.
    wait_for_queue(many - 1).await;
    for _ in 0..few {
        tasks.push(send('b', "127.0.0.3"));
    }
    wait_for_queue(many - 1 + few).await;
    open.send(true).unwrap();
    for t in tasks {
        t.await.unwrap();
    }
    lg.shutdown().await;
    let order = done.lock().unwrap().clone();
    order
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fair_queue_serves_a_small_client_before_a_big_ones_backlog_drains() {
    let order = two_clients(true, 200, 5).await;
    let last_b = order.iter().rposition(|w| *w == 'b').unwrap();
    let a_after = order[last_b..].iter().filter(|w| **w == 'a').count();
    println!("fair: b's last answer came with {a_after} of a's 200 still to come");
    // When b arrived, 199 of a's waited; round robin serves b's five within about ten turns,
    // so most of a's backlog is still waiting when b is done.
    assert!(
        a_after >= 100,
        "b finished with {a_after} of a's left: {order:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_fair_the_queue_is_first_in_first_out() {
    let order = two_clients(false, 60, 3).await;
    let first_b = order.iter().position(|w| *w == 'b').unwrap();
    let a_after = order[first_b..].iter().filter(|w| **w == 'a').count();
    println!("first in first out: b's first answer came with {a_after} of a's 60 to come");
    assert!(a_after <= 2, "b was served before a's backlog: {order:?}");
}

fn config_error(text: &str) -> String {
    match langur::config::parse_str("limits.toml", text, true) {
        Ok(_) => panic!("accepted: {text}"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn bad_values_are_errors_naming_file_line_and_key() {
    let e = config_error(
        "[[route]]\npath_prefix = '/'\nrespond = { body = 'x' }\nrate_limit = { rate = '100/fortnight' }\n",
    );
    assert!(e.contains("limits.toml:4"), "{e}");
    assert!(e.contains("rate_limit.rate"), "{e}");
    assert!(e.contains("fortnight") && e.contains("s, m, h or d"), "{e}");
    let route = "[[route]]\npath_prefix = '/'\nrespond = { body = 'x' }\n";
    for (bad, want) in [
        ("rate_limit = { rate = '0/s' }", "rate_limit.rate"),
        ("rate_limit = { rate = '100' }", "no unit"),
        ("rate_limit = { rate = 'x/s' }", "not a count"),
        (
            "rate_limit = { rate = '1/s', burst = 0 }",
            "rate_limit.burst",
        ),
        (
            "rate_limit = { rate = '1/s', key = 'cookie' }",
            "rate_limit.key",
        ),
        (
            "rate_limit = { rate = '1/s', key = 'header:a b' }",
            "not a header name",
        ),
        (
            "rate_limit = { rate = '1/s', max_keys = 0 }",
            "rate_limit.max_keys",
        ),
        ("rate_limit = { burst = 5 }", "needs `rate"),
        (
            "rate_limit = { rate = '1/s', bursts = 5 }",
            "did you mean `burst`",
        ),
        ("rate_limit = true", "or false"),
    ] {
        let e = config_error(&format!("{route}{bad}\n"));
        assert!(
            e.contains("limits.toml:4") && e.contains(want),
            "{bad}: {e}"
        );
    }
    let e = config_error("[defaults]\nrate_limit = { rate = '5/fortnight' }\n");
    assert!(
        e.contains("limits.toml:2") && e.contains("fortnight"),
        "{e}"
    );
    let e = config_error("[server]\nmax_connections_per_client = -1\n");
    assert!(
        e.contains("limits.toml:2") && e.contains("max_connections_per_client"),
        "{e}"
    );
    let e = config_error("[pools.p]\nservers = ['127.0.0.1:1']\n[pools.p.queue]\nfair = 'yes'\n");
    assert!(e.contains("limits.toml:4") && e.contains("fair"), "{e}");
}

#[test]
fn rates_are_read_in_every_unit() {
    for (text, per) in [
        ("100/s", 1),
        ("100/second", 1),
        ("100 / sec", 1),
        ("10r/s", 1),
        ("5/m", 60),
        ("5/min", 60),
        ("5/minute", 60),
        ("2/h", 3600),
        ("2/hour", 3600),
        ("1/d", 86400),
    ] {
        let c = toml_config(&format!(
            "[[route]]\npath_prefix = '/'\nrespond = {{ body = 'x' }}\nrate_limit = {{ rate = '{text}' }}\n"
        ));
        let l = c.routes[0].rules.rate_limit.clone().unwrap();
        assert_eq!(l.period, Duration::from_secs(per), "{text}");
        assert_eq!(l.burst, l.count, "the burst defaults to the count");
    }
}
