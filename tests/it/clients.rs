//! Who the client is: PROXY protocol in (v1, v2, refusals, deadlines), `send_proxy` out (and on
//! health checks), trusted proxies and the forwarding fields, on real sockets.

use crate::common::*;
use http::{Method, StatusCode};
use std::net::SocketAddr;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const V2_SIGNATURE: &[u8] = b"\r\n\r\n\0\r\nQUIT\n";

/// A v2 PROXY header for a TCP/IPv4 connection from `src` to `dst`, with `tlvs` after the
/// addresses.
fn v2(src: SocketAddr, dst: SocketAddr, tlvs: &[u8]) -> Vec<u8> {
    let (SocketAddr::V4(s), SocketAddr::V4(d)) = (src, dst) else {
        panic!("IPv4 only")
    };
    let mut h = V2_SIGNATURE.to_vec();
    h.extend([0x21, 0x11]);
    h.extend(((12 + tlvs.len()) as u16).to_be_bytes());
    h.extend(s.ip().octets());
    h.extend(d.ip().octets());
    h.extend(s.port().to_be_bytes());
    h.extend(d.port().to_be_bytes());
    h.extend(tlvs);
    h
}

const GET: &[u8] = b"GET /headers HTTP/1.1\r\nHost: site.example\r\nConnection: close\r\n\r\n";

/// Writes `pieces` on a new connection (each flushed, `gap` apart) and reads until the peer
/// closes (or 5 s pass).
async fn exchange(at: SocketAddr, pieces: &[&[u8]], gap: Duration) -> String {
    let mut s = TcpStream::connect(at).await.unwrap();
    s.set_nodelay(true).unwrap();
    for p in pieces {
        if s.write_all(p).await.is_err() {
            break;
        }
        tokio::time::sleep(gap).await;
    }
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).to_string()
}

async fn behind_a_balancer(b: &Backend, extra: &str) -> langur::Langur {
    langur_toml(&format!(
        "[server]\nproxy_protocol = true\nproxy_protocol_from = [\"127.0.0.0/8\"]\n{extra}\n\
         [[route]]\npath_prefix = \"/\"\npool = \"p\"\n[pools.p]\nservers = [\"{}\"]\n",
        b.addr
    ))
    .await
}

fn refused(lg: &langur::Langur) -> [u64; 4] {
    let rt = lg.shared().runtime.load();
    let r = &rt.traffic.proxy_refused;
    [&r.untrusted, &r.missing, &r.malformed, &r.timeout].map(|c| c.load(Relaxed))
}

fn seen(b: &Backend, name: &str) -> Option<String> {
    let h = b.last_headers.lock().unwrap().clone()?;
    h.get(name).map(|v| v.to_str().unwrap().to_string())
}

#[tokio::test]
async fn proxy_headers_v1_and_v2_name_the_client() {
    let b = Backend::start("b").await;
    let lg = behind_a_balancer(&b, "").await;
    let at = lg.listen_addrs()[0];
    let v1 = b"PROXY TCP4 203.0.113.7 198.51.100.1 40000 80\r\n";
    let out = exchange(at, &[&[&v1[..], GET].concat()], Duration::ZERO).await;
    assert!(out.starts_with("HTTP/1.1 200"), "{out}");
    assert_eq!(seen(&b, "x-forwarded-for").as_deref(), Some("203.0.113.7"));
    // IPv6 in v1.
    let v1 = b"PROXY TCP6 2001:db8::7 2001:db8::1 40000 80\r\n";
    exchange(at, &[&[&v1[..], GET].concat()], Duration::ZERO).await;
    assert_eq!(seen(&b, "x-forwarded-for").as_deref(), Some("2001:db8::7"));
    // v2 with TLVs (authority; TLS at the balancer, which makes the client's scheme https).
    let mut tlvs = vec![0x02, 0, 12];
    tlvs.extend(b"site.example");
    tlvs.extend([0x20, 0, 15, 0x01, 0, 0, 0, 0, 0x21, 0, 7]);
    tlvs.extend(b"TLSv1.3");
    let h = v2(
        "192.0.2.44:5000".parse().unwrap(),
        "198.51.100.1:443".parse().unwrap(),
        &tlvs,
    );
    let out = exchange(at, &[&[&h[..], GET].concat()], Duration::ZERO).await;
    assert!(out.starts_with("HTTP/1.1 200"), "{out}");
    assert_eq!(seen(&b, "x-forwarded-for").as_deref(), Some("192.0.2.44"));
    assert_eq!(seen(&b, "x-forwarded-proto").as_deref(), Some("https"));
    // A header split over many packets, byte by byte.
    let whole = [
        &v2(
            "192.0.2.45:5000".parse().unwrap(),
            "198.51.100.1:80".parse().unwrap(),
            &[],
        )[..],
        GET,
    ]
    .concat();
    let pieces: Vec<&[u8]> = whole.chunks(1).take(40).chain([&whole[40..]]).collect();
    let out = exchange(at, &pieces, Duration::from_millis(2)).await;
    assert!(out.starts_with("HTTP/1.1 200"), "{out}");
    assert_eq!(seen(&b, "x-forwarded-for").as_deref(), Some("192.0.2.45"));
    let v1 = b"PROXY TCP4 203.0.113.8 198.51.100.1 40000 80\r\n";
    let pieces: Vec<&[u8]> = v1.chunks(3).chain([GET]).collect();
    exchange(at, &pieces, Duration::from_millis(2)).await;
    assert_eq!(seen(&b, "x-forwarded-for").as_deref(), Some("203.0.113.8"));
    // LOCAL (the balancer's own check) and UNKNOWN: the peer is the client.
    let local = [V2_SIGNATURE, &[0x20, 0x00, 0, 0]].concat();
    exchange(at, &[&[&local[..], GET].concat()], Duration::ZERO).await;
    assert_eq!(seen(&b, "x-forwarded-for").as_deref(), Some("127.0.0.1"));
    // Keep-alive: the connection's later requests keep the announced client.
    let mut s = TcpStream::connect(at).await.unwrap();
    s.write_all(b"PROXY TCP4 203.0.113.9 198.51.100.1 1 80\r\n")
        .await
        .unwrap();
    for _ in 0..2 {
        s.write_all(b"GET /headers HTTP/1.1\r\nHost: a\r\n\r\n")
            .await
            .unwrap();
        let mut buf = vec![0u8; 4096];
        let n = s.read(&mut buf).await.unwrap();
        assert!(buf[..n].starts_with(b"HTTP/1.1 200"));
        assert_eq!(seen(&b, "x-forwarded-for").as_deref(), Some("203.0.113.9"));
        // Long enough for the connection to be parked and woken again.
        tokio::time::sleep(Duration::from_millis(700)).await;
    }
    assert_eq!(refused(&lg), [0, 0, 0, 0]);
}

#[tokio::test]
async fn connections_without_a_good_proxy_header_are_closed_and_counted() {
    let b = Backend::start("b").await;
    let lg = behind_a_balancer(&b, "proxy_protocol_timeout = \"300ms\"").await;
    let at = lg.listen_addrs()[0];
    // None at all: HTTP first.
    assert_eq!(exchange(at, &[GET], Duration::ZERO).await, "");
    // v1 with a bad address; v2 with a wrong length or signature.
    let bad_v1 = b"PROXY TCP4 203.0.113.300 198.51.100.1 40000 80\r\n";
    assert_eq!(
        exchange(at, &[&[&bad_v1[..], GET].concat()], Duration::ZERO).await,
        ""
    );
    let mut short = v2(
        "192.0.2.1:1".parse().unwrap(),
        "192.0.2.2:2".parse().unwrap(),
        &[],
    );
    short[15] = 8; // shorter than IPv4 addresses need
    short.truncate(16 + 8);
    assert_eq!(
        exchange(at, &[&[&short[..], GET].concat()], Duration::ZERO).await,
        ""
    );
    let mut sig = v2(
        "192.0.2.1:1".parse().unwrap(),
        "192.0.2.2:2".parse().unwrap(),
        &[],
    );
    sig[4] = b'X';
    assert_eq!(
        exchange(at, &[&[&sig[..], GET].concat()], Duration::ZERO).await,
        ""
    );
    // Too slow: half a header, then nothing past the deadline.
    let started = std::time::Instant::now();
    let out = exchange(at, &[b"PROXY TCP4 203.0"], Duration::ZERO).await;
    assert_eq!(out, "");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    // Closed before sending anything.
    drop(TcpStream::connect(at).await.unwrap());
    tokio::time::sleep(Duration::from_millis(100)).await;
    let [untrusted, missing, malformed, timeout] = refused(&lg);
    assert_eq!((untrusted, malformed, timeout), (0, 2, 1));
    assert_eq!(missing, 3);
    assert_eq!(b.hits(), 0, "nothing reached the server");
}

#[tokio::test]
async fn a_peer_outside_proxy_protocol_from_is_refused() {
    let b = Backend::start("b").await;
    let lg = langur_toml(&format!(
        "[server]\nproxy_protocol = true\nproxy_protocol_from = [\"10.0.0.0/8\"]\n\
         [[route]]\npath_prefix = \"/\"\npool = \"p\"\n[pools.p]\nservers = [\"{}\"]\n",
        b.addr
    ))
    .await;
    let v1 = b"PROXY TCP4 203.0.113.7 198.51.100.1 40000 80\r\n";
    let out = exchange(
        lg.listen_addrs()[0],
        &[&[&v1[..], GET].concat()],
        Duration::ZERO,
    )
    .await;
    assert_eq!(out, "");
    assert_eq!(refused(&lg), [1, 0, 0, 0]);
    assert_eq!(b.hits(), 0);
}

#[tokio::test]
async fn the_refusals_show_in_stats_and_metrics() {
    let b = Backend::start("b").await;
    let config = toml_config(&format!(
        "[server]\nproxy_protocol = true\nproxy_protocol_from = [\"127.0.0.1\"]\n\
         [[route]]\npath_prefix = \"/\"\npool = \"p\"\n[pools.p]\nservers = [\"{}\"]\n",
        b.addr
    ));
    let lg = start_with_admin(config).await;
    exchange(lg.listen_addrs()[0], &[GET], Duration::ZERO).await;
    let admin = lg.admin_addr().unwrap();
    let stats = get(admin, "/api/stats").await;
    let v: serde_json::Value = serde_json::from_slice(&stats.body).unwrap();
    assert_eq!(v["proxy_protocol_refused"]["missing"], 1, "{v}");
    let metrics = get(admin, "/metrics").await.text();
    assert!(
        metrics.contains("langur_proxy_protocol_refused_total{reason=\"missing\"} 1"),
        "{metrics}"
    );
}

/// An origin that records the first bytes of every connection (up to the end of a request
/// head) and answers `200 ok`; connections that send no head (checks) are recorded too.
async fn recording_origin() -> (SocketAddr, Arc<Mutex<Vec<Vec<u8>>>>) {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let seen: Arc<Mutex<Vec<Vec<u8>>>> = Arc::default();
    let record = seen.clone();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            let record = record.clone();
            tokio::spawn(async move {
                let i = {
                    let mut r = record.lock().unwrap();
                    r.push(Vec::new());
                    r.len() - 1
                };
                let mut buf = [0u8; 4096];
                loop {
                    let n = match s.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => n,
                    };
                    let done = {
                        let mut r = record.lock().unwrap();
                        r[i].extend_from_slice(&buf[..n]);
                        find(&r[i], b"\r\n\r\n").is_some()
                    };
                    if done {
                        let _ = s
                            .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
                            .await;
                        return;
                    }
                }
            });
        }
    });
    (addr, seen)
}

#[tokio::test]
async fn send_proxy_writes_the_header_first_byte_for_byte() {
    for version in ["v1", "v2"] {
        let (origin, seen) = recording_origin().await;
        let lg = langur_toml(&format!(
            "[[route]]\npath_prefix = \"/\"\npool = \"p\"\n\
             [pools.p]\nservers = [\"{origin}\"]\nsend_proxy = \"{version}\"\n"
        ))
        .await;
        let at = lg.listen_addrs()[0];
        let mut s = TcpStream::connect(at).await.unwrap();
        let me = s.local_addr().unwrap();
        s.write_all(b"GET /x HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
            .await
            .unwrap();
        let mut out = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut out)).await;
        assert!(
            out.starts_with(b"HTTP/1.1 200"),
            "{}",
            String::from_utf8_lossy(&out)
        );
        let first = seen.lock().unwrap()[0].clone();
        let header = match version {
            "v1" => format!(
                "PROXY TCP4 127.0.0.1 127.0.0.1 {} {}\r\n",
                me.port(),
                at.port()
            )
            .into_bytes(),
            _ => v2(me, at, &[]),
        };
        assert!(
            first.starts_with(&header),
            "{version}: {:?}",
            String::from_utf8_lossy(&first)
        );
        assert!(first[header.len()..].starts_with(b"GET /x HTTP/1.1\r\n"));
    }
}

#[tokio::test]
async fn send_proxy_on_health_checks_and_through_a_proxy_header() {
    let (origin, seen) = recording_origin().await;
    let lg = langur_toml(&format!(
        "[server]\nproxy_protocol = true\nproxy_protocol_from = [\"127.0.0.1\"]\n\
         [[route]]\npath_prefix = \"/\"\npool = \"p\"\n\
         [pools.p]\nservers = [\"{origin}\"]\nsend_proxy = \"v2\"\n\
         check = {{ type = \"tcp\", interval = \"100ms\" }}\n"
    ))
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let local = [V2_SIGNATURE, &[0x20, 0x00, 0, 0]].concat();
    let checks = seen.lock().unwrap().clone();
    assert!(!checks.is_empty());
    assert!(checks.iter().all(|c| c == &local), "{checks:?}");
    // The announced client and destination travel on.
    let client: SocketAddr = "203.0.113.7:40000".parse().unwrap();
    let dst: SocketAddr = "198.51.100.1:443".parse().unwrap();
    let h = v2(client, dst, &[]);
    let get = b"GET /y HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n";
    let out = exchange(
        lg.listen_addrs()[0],
        &[&[&h[..], get].concat()],
        Duration::ZERO,
    )
    .await;
    assert!(out.starts_with("HTTP/1.1 200"), "{out}");
    let sent = seen
        .lock()
        .unwrap()
        .iter()
        .find(|c| find(c, b"GET /y").is_some())
        .cloned()
        .unwrap();
    assert_eq!(&sent[..h.len()], &h[..]);
}

#[tokio::test]
async fn forged_forwarding_fields_are_replaced_and_trusted_proxies_walked() {
    let b = Backend::start("b").await;
    let forged = [
        ("x-forwarded-for", "6.6.6.6"),
        ("x-forwarded-proto", "https"),
        ("x-forwarded-host", "evil.example"),
        ("x-real-ip", "6.6.6.6"),
        ("forwarded", "for=6.6.6.6"),
    ];
    let lg = langur_toml(&format!(
        "[[route]]\npath_prefix = \"/\"\npool = \"p\"\n[pools.p]\nservers = [\"{}\"]\n",
        b.addr
    ))
    .await;
    let at = lg.listen_addrs()[0];
    request(at, Method::GET, "/headers", &forged, body("")).await;
    assert_eq!(seen(&b, "x-forwarded-for").as_deref(), Some("127.0.0.1"));
    assert_eq!(seen(&b, "x-forwarded-proto").as_deref(), Some("http"));
    assert_eq!(seen(&b, "x-forwarded-host").as_deref(), Some("test.local"));
    assert_eq!(seen(&b, "x-real-ip"), None);
    assert_eq!(seen(&b, "forwarded"), None);
    // The old way, asked for.
    let lg = langur_toml(&format!(
        "[server]\nforwarded_headers = \"append\"\n\
         [[route]]\npath_prefix = \"/\"\npool = \"p\"\n[pools.p]\nservers = [\"{}\"]\n",
        b.addr
    ))
    .await;
    request(
        lg.listen_addrs()[0],
        Method::GET,
        "/headers",
        &forged,
        body(""),
    )
    .await;
    assert_eq!(
        seen(&b, "x-forwarded-for").as_deref(),
        Some("6.6.6.6, 127.0.0.1")
    );
}

#[tokio::test]
async fn behind_trusted_proxies_the_right_most_untrusted_hop_is_the_client() {
    let a = Backend::start("a").await;
    let other = Backend::start("other").await;
    let lg = langur_toml(&format!(
        "[server]\ntrusted_proxies = [\"127.0.0.1\", \"10.0.0.0/8\"]\nx_real_ip = true\n\
         [[route]]\npath = \"/denied\"\ndeny = [\"203.0.113.9\"]\npool = \"a\"\n\
         [[route]]\npath_prefix = \"/\"\nsource = [\"203.0.113.0/24\"]\npool = \"a\"\n\
         [[route]]\npath_prefix = \"/\"\npool = \"other\"\n\
         [pools.a]\nservers = [\"{}\"]\n[pools.other]\nservers = [\"{}\"]\n",
        a.addr, other.addr
    ))
    .await;
    let at = lg.listen_addrs()[0];
    let via = [
        ("x-forwarded-for", "6.6.6.6, 203.0.113.9, 10.1.2.3"),
        ("x-forwarded-proto", "https"),
    ];
    let r = request(at, Method::GET, "/headers", &via, body("")).await;
    // Route `source` sees the client behind the proxies.
    assert_eq!(r.backend(), "a");
    assert_eq!(
        seen(&a, "x-forwarded-for").as_deref(),
        Some("6.6.6.6, 203.0.113.9, 10.1.2.3, 127.0.0.1")
    );
    assert_eq!(seen(&a, "x-real-ip").as_deref(), Some("203.0.113.9"));
    assert_eq!(seen(&a, "x-forwarded-proto").as_deref(), Some("https"));
    let r = request(at, Method::GET, "/denied", &via, body("")).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    // Without forwarding fields the trusted peer itself is the client.
    let r = request(at, Method::GET, "/denied", &[], body("")).await;
    assert_eq!(r.backend(), "a");
    let r = request(at, Method::GET, "/headers", &[], body("")).await;
    assert_eq!(r.backend(), "other");
}

#[tokio::test]
async fn rfc_7239_forwarded_out_and_in() {
    let b = Backend::start("b").await;
    let lg = langur_toml(&format!(
        "[server]\nforwarded = \"rfc7239\"\n\
         [[route]]\npath_prefix = \"/\"\npool = \"p\"\n[pools.p]\nservers = [\"{}\"]\n",
        b.addr
    ))
    .await;
    let at = lg.listen_addrs()[0];
    request(
        at,
        Method::GET,
        "/headers",
        &[("forwarded", "for=6.6.6.6")],
        body(""),
    )
    .await;
    assert_eq!(
        seen(&b, "forwarded").as_deref(),
        Some("for=127.0.0.1;host=test.local;proto=http")
    );
    assert_eq!(seen(&b, "x-forwarded-for"), None);
    // In: a trusted proxy's `Forwarded` names the client (IPv6, quoted, with a port).
    let lg = langur_toml(&format!(
        "[server]\nforwarded = \"both\"\ntrusted_proxies = [\"127.0.0.1\"]\n\
         real_ip_header = \"Forwarded\"\n\
         [[route]]\npath_prefix = \"/\"\ndeny = [\"2001:db8::/32\"]\npool = \"p\"\n\
         [pools.p]\nservers = [\"{}\"]\n",
        b.addr
    ))
    .await;
    let at = lg.listen_addrs()[0];
    let fw = [("forwarded", "for=\"[2001:db8::5]:4711\";proto=https")];
    let r = request(at, Method::GET, "/headers", &fw, body("")).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let fw = [("forwarded", "for=192.0.2.60;proto=https")];
    let r = request(at, Method::GET, "/headers", &fw, body("")).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(
        seen(&b, "forwarded").as_deref(),
        Some("for=192.0.2.60;proto=https, for=127.0.0.1;host=test.local;proto=http")
    );
    assert_eq!(seen(&b, "x-forwarded-for").as_deref(), Some("127.0.0.1"));
}

#[test]
fn bad_client_settings_name_file_line_and_key() {
    let e = langur::config::parse_str(
        "c.toml",
        "[server]\n\
         trusted_proxies = [\"10.0.0.0/8\", \"10.0.0.0/33\"]\n\
         proxy_protocol = true\n\
         forwarded = \"x-forwarded-for\"\n\
         forwarded_headers = \"merge\"\n\
         real_ip_header = \"X-Client\"\n\
         proxy_protocol_timeout = \"0s\"\n\
         [[route]]\npath_prefix = \"/\"\npool = \"p\"\n\
         [pools.p]\nservers = [\"127.0.0.1:9\"]\nsend_proxy = \"v3\"\n",
        true,
    )
    .unwrap_err()
    .to_string();
    for want in [
        "c.toml:2: `trusted_proxies`: `10.0.0.0/33` is not a network",
        "c.toml:3: `proxy_protocol` needs `proxy_protocol_from`",
        "c.toml:4: `forwarded` must be",
        "c.toml:5: `forwarded_headers` must be",
        "c.toml:6: `real_ip_header` must be",
        "c.toml:7: `proxy_protocol_timeout` must be more than zero",
        "c.toml:13: `send_proxy` must be",
    ] {
        assert!(e.contains(want), "{want} missing from:\n{e}");
    }
    let e = langur::config::parse_str(
        "c.toml",
        "[server]\nlisten = [\"127.0.0.1:8080\"]\nproxy_protocol = [\"127.0.0.1:8081\"]\n\
         proxy_protocol_from = [\"unix\", \"nonsense\"]\n",
        true,
    )
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("c.toml:3: `proxy_protocol`: 127.0.0.1:8081 is none of the listeners"),
        "{e}"
    );
    assert!(
        e.contains("c.toml:4: `proxy_protocol_from`: `nonsense`"),
        "{e}"
    );
}

/// The access log (the binary's stdout) names the client a PROXY header announced.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_access_log_shows_the_announced_client() {
    use tokio::io::AsyncBufReadExt;
    let b = Backend::start("b").await;
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let dir = crate::common::Scratch::new("clients");
    let cfg = dir.join("log.toml");
    std::fs::write(
        &cfg,
        format!(
            "[server]\nlisten = [\"{port}\"]\nproxy_protocol = true\n\
             proxy_protocol_from = [\"127.0.0.1\"]\n\
             [[route]]\npath_prefix = \"/\"\npool = \"p\"\n[pools.p]\nservers = [\"{}\"]\n",
            b.addr
        ),
    )
    .unwrap();
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_langur"))
        .args(["run", "--workers", "1", "--admin", "127.0.0.1:0", "-c"])
        .arg(&cfg)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let v1 = b"PROXY TCP4 203.0.113.77 198.51.100.1 40000 80\r\n";
    while TcpStream::connect(port).await.is_err() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "langur did not start"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let out = exchange(port, &[&[&v1[..], GET].concat()], Duration::ZERO).await;
    assert!(out.starts_with("HTTP/1.1 200"), "{out}");
    let line = tokio::time::timeout(Duration::from_secs(10), async {
        while let Ok(Some(l)) = lines.next_line().await {
            if l.contains("/headers") {
                return l;
            }
        }
        String::new()
    })
    .await
    .unwrap();
    assert!(line.contains("client=203.0.113.77"), "{line}");
    assert!(line.contains("peer=127.0.0.1:"), "{line}");
    // v2's TLVs: the authority the client asked for, its TLS version.
    let mut tlvs = vec![0x02, 0, 12];
    tlvs.extend(b"site.example");
    tlvs.extend([0x20, 0, 15, 0x01, 0, 0, 0, 0, 0x21, 0, 7]);
    tlvs.extend(b"TLSv1.3");
    let h = v2(
        "192.0.2.9:5000".parse().unwrap(),
        "198.51.100.1:443".parse().unwrap(),
        &tlvs,
    );
    let out = exchange(port, &[&[&h[..], GET].concat()], Duration::ZERO).await;
    assert!(out.starts_with("HTTP/1.1 200"), "{out}");
    let line = tokio::time::timeout(Duration::from_secs(10), async {
        while let Ok(Some(l)) = lines.next_line().await {
            if l.contains("/headers") {
                return l;
            }
        }
        String::new()
    })
    .await
    .unwrap();
    assert!(line.contains("client=192.0.2.9"), "{line}");
    assert!(line.contains("proxy_authority=site.example"), "{line}");
    assert!(line.contains("proxy_ssl=TLSv1.3"), "{line}");
    assert!(line.contains("scheme=https"), "{line}");
}

/// A fresh directory for sockets.
fn socket_dir(tag: &str) -> crate::common::Scratch {
    crate::common::Scratch::new(&format!("unix-{tag}"))
}

/// Writes `bytes` on a new connection to the Unix-domain socket at `path` and reads until it
/// closes.
async fn unix_exchange(path: &std::path::Path, pieces: &[&[u8]]) -> String {
    let mut s = tokio::net::UnixStream::connect(path).await.unwrap();
    for p in pieces {
        s.write_all(p).await.unwrap();
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).to_string()
}

#[tokio::test]
async fn a_unix_socket_listener_serves_and_its_peer_can_be_trusted() {
    let b = Backend::start("b").await;
    let d = socket_dir("listen");
    let sock = d.join("l.sock");
    // A socket file left by a process that is gone is replaced.
    drop(std::os::unix::net::UnixListener::bind(&sock).unwrap());
    let lg = langur_toml(&format!(
        "[server]\nlisten = [\"unix:{s}\"]\ntrusted_proxies = [\"unix\"]\n\
         [[route]]\npath = \"/denied\"\ndeny = [\"203.0.113.0/24\"]\npool = \"p\"\n\
         [[route]]\npath_prefix = \"/\"\npool = \"p\"\n[pools.p]\nservers = [\"{}\"]\n",
        b.addr,
        s = sock.display()
    ))
    .await;
    let out = unix_exchange(&sock, &[GET]).await;
    assert!(out.starts_with("HTTP/1.1 200"), "{out}");
    assert_eq!(seen(&b, "x-forwarded-for").as_deref(), Some("127.0.0.1"));
    // Keep-alive over the socket: parked and woken again.
    let mut s = tokio::net::UnixStream::connect(&sock).await.unwrap();
    for _ in 0..2 {
        s.write_all(b"GET /headers HTTP/1.1\r\nHost: a\r\nX-Forwarded-For: 203.0.113.5\r\n\r\n")
            .await
            .unwrap();
        let mut buf = vec![0u8; 8192];
        let n = s.read(&mut buf).await.unwrap();
        assert!(buf[..n].starts_with(b"HTTP/1.1 200"), "{:?}", &buf[..n]);
        assert_eq!(
            seen(&b, "x-forwarded-for").as_deref(),
            Some("203.0.113.5, 127.0.0.1")
        );
        tokio::time::sleep(Duration::from_millis(700)).await;
    }
    let denied = b"GET /denied HTTP/1.1\r\nHost: a\r\nX-Forwarded-For: 203.0.113.5\r\nConnection: close\r\n\r\n";
    let out = unix_exchange(&sock, &[denied]).await;
    assert!(out.starts_with("HTTP/1.1 403"), "{out}");
    // The TCP listener's clients are not trusted.
    let r = request(
        lg.listen_addrs()[0],
        Method::GET,
        "/denied",
        &[("x-forwarded-for", "203.0.113.5")],
        body(""),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    lg.shutdown().await;
    assert!(!sock.exists(), "the socket file is removed at shutdown");
}

#[tokio::test]
async fn proxy_headers_over_a_unix_socket() {
    let b = Backend::start("b").await;
    let d = socket_dir("pp");
    let sock = d.join("pp.sock");
    let lg = langur_toml(&format!(
        "[server]\nlisten = [\"unix:{s}\"]\nproxy_protocol = [\"unix:{s}\"]\n\
         proxy_protocol_from = [\"unix\"]\n\
         [[route]]\npath_prefix = \"/\"\npool = \"p\"\n[pools.p]\nservers = [\"{}\"]\n",
        b.addr,
        s = sock.display()
    ))
    .await;
    // The header and the request in one write (bytes after the header are handed on), then
    // in pieces.
    let v1 = b"PROXY TCP4 203.0.113.7 198.51.100.1 40000 80\r\n";
    let out = unix_exchange(&sock, &[&[&v1[..], GET].concat()]).await;
    assert!(out.starts_with("HTTP/1.1 200"), "{out}");
    assert_eq!(seen(&b, "x-forwarded-for").as_deref(), Some("203.0.113.7"));
    let out = unix_exchange(&sock, &[&v1[..9], &v1[9..], GET]).await;
    assert!(out.starts_with("HTTP/1.1 200"), "{out}");
    assert_eq!(unix_exchange(&sock, &[GET]).await, "");
    // The TCP listener is not covered.
    let r = get(lg.listen_addrs()[0], "/headers").await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(refused(&lg), [0, 1, 0, 0]);
}

/// A client's socket whose first `skip` written bytes are dropped (they were sent already).
struct Skip {
    io: tokio::net::UnixStream,
    skip: usize,
}

impl tokio::io::AsyncRead for Skip {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl tokio::io::AsyncWrite for Skip {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        let n = self.skip.min(buf.len());
        if n > 0 {
            self.skip -= n;
            return std::task::Poll::Ready(Ok(n));
        }
        std::pin::Pin::new(&mut self.io).poll_write(cx, buf)
    }
    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.io).poll_flush(cx)
    }
    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

/// A PROXY header on a Unix-domain socket followed, in the same write, by the first bytes of
/// the HTTP/2 preface (`PR`): langur waits for the rest and serves HTTP/2 (it used to decide
/// on the two bytes, and closed the connection as a bad HTTP/1 request).
#[tokio::test]
async fn a_proxy_header_then_part_of_the_h2c_preface_over_a_unix_socket() {
    let b = Backend::start("b").await;
    let d = socket_dir("pph2");
    let sock = d.join("pp.sock");
    let lg = langur_toml(&format!(
        "[server]\nh2c = true\nlisten = [\"unix:{s}\"]\nproxy_protocol = [\"unix:{s}\"]\n\
         proxy_protocol_from = [\"unix\"]\n\
         [[route]]\npath_prefix = \"/\"\npool = \"p\"\n[pools.p]\nservers = [\"{}\"]\n",
        b.addr,
        s = sock.display()
    ))
    .await;
    let mut s = tokio::net::UnixStream::connect(&sock).await.unwrap();
    s.write_all(b"PROXY TCP4 203.0.113.7 198.51.100.1 40000 80\r\nPR")
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    let get = crate::tls_h2::h2_get(Skip { io: s, skip: 2 }, "http://x/");
    let (status, _, _) = tokio::time::timeout(Duration::from_secs(5), get)
        .await
        .expect("an HTTP/2 response");
    assert_eq!(status, StatusCode::OK);
    assert_eq!(seen(&b, "x-forwarded-for").as_deref(), Some("203.0.113.7"));
    lg.shutdown().await;
}

/// An origin on a Unix-domain socket: records the first bytes of every connection (to the end
/// of a request head) and answers `200 unix`.
fn unix_origin(path: &std::path::Path) -> Arc<Mutex<Vec<Vec<u8>>>> {
    let l = tokio::net::UnixListener::bind(path).unwrap();
    let seen: Arc<Mutex<Vec<Vec<u8>>>> = Arc::default();
    let record = seen.clone();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            let record = record.clone();
            tokio::spawn(async move {
                let mut got = Vec::new();
                let mut buf = [0u8; 4096];
                loop {
                    let n = match s.read(&mut buf).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => n,
                    };
                    got.extend_from_slice(&buf[..n]);
                    if find(&got, b"\r\n\r\n").is_some() {
                        let _ = s
                            .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 4\r\n\r\nunix")
                            .await;
                        break;
                    }
                }
                record.lock().unwrap().push(got);
            });
        }
    });
    seen
}

#[tokio::test]
async fn a_server_on_a_unix_socket_with_checks_and_proxy_headers() {
    let d = socket_dir("up");
    let sock = d.join("app.sock");
    let seen = unix_origin(&sock);
    let lg = langur_toml(&format!(
        "[[route]]\npath_prefix = \"/\"\npool = \"p\"\n\
         [pools.p]\nservers = [\"unix:{s}\"]\nsend_proxy = \"v1\"\n\
         check = {{ type = \"http\", path = \"/health\", interval = \"100ms\" }}\n",
        s = sock.display()
    ))
    .await;
    let at = lg.listen_addrs()[0];
    tokio::time::sleep(Duration::from_millis(400)).await;
    let mut s = TcpStream::connect(at).await.unwrap();
    let me = s.local_addr().unwrap();
    s.write_all(b"GET /x HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut out)).await;
    let out = String::from_utf8_lossy(&out).to_string();
    assert!(out.starts_with("HTTP/1.1 200"), "{out}");
    assert!(out.ends_with("unix"), "{out}");
    let all = seen.lock().unwrap().clone();
    let checks: Vec<&Vec<u8>> = all
        .iter()
        .filter(|c| find(c, b"GET /health").is_some())
        .collect();
    assert!(!checks.is_empty(), "checks reach the socket");
    assert!(checks
        .iter()
        .all(|c| c.starts_with(b"PROXY UNKNOWN\r\nGET /health HTTP/1.1\r\n")));
    let sent = all.iter().find(|c| find(c, b"GET /x").is_some()).unwrap();
    let header = format!(
        "PROXY TCP4 127.0.0.1 127.0.0.1 {} {}\r\n",
        me.port(),
        at.port()
    );
    assert!(
        sent.starts_with(header.as_bytes()),
        "{:?}",
        String::from_utf8_lossy(sent)
    );
    // A request that names no host goes with `Host: localhost`, not the socket's path.
    let out = raw(at, b"GET /nohost HTTP/1.0\r\n\r\n", Duration::from_secs(5)).await;
    assert!(out.ends_with("unix"), "{out}");
    let all = seen.lock().unwrap().clone();
    let sent = all
        .iter()
        .find(|c| find(c, b"GET /nohost").is_some())
        .unwrap();
    let sent = String::from_utf8_lossy(sent).to_ascii_lowercase();
    assert!(sent.contains("\r\nhost: localhost\r\n"), "{sent}");
    assert!(
        !sent.contains("x-forwarded-host") && !sent.contains(".sock"),
        "{sent}"
    );
    // Config errors name the file and line.
    let bad = langur::config::parse_str(
        "u.toml",
        "[[route]]\npath_prefix = \"/\"\npool = \"p\"\n\
         [pools.p]\nservers = [\"unix:relative.sock\"]\n",
        true,
    )
    .unwrap_err()
    .to_string();
    assert!(
        bad.contains("u.toml:5") && bad.contains("absolute path"),
        "{bad}"
    );
    let bad = langur::config::parse_str(
        "u.toml",
        "[server]\nlisten = [\"unix:/tmp/a.sock\", \"unix:/tmp/a.sock\"]\n",
        true,
    )
    .unwrap_err()
    .to_string();
    assert!(
        bad.contains("u.toml:2") && bad.contains("named twice"),
        "{bad}"
    );
}

/// On a TLS listener the PROXY header comes before the handshake.
#[tokio::test]
async fn a_proxy_header_before_the_tls_handshake() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let b = Backend::start("b").await;
    let d = socket_dir("tls");
    let cert = rcgen::generate_simple_self_signed(vec!["pp.test".to_string()]).unwrap();
    let (c, k) = (d.join("c.pem"), d.join("k.pem"));
    std::fs::write(&c, cert.cert.pem()).unwrap();
    std::fs::write(&k, cert.signing_key.serialize_pem()).unwrap();
    let lg = langur_toml(&format!(
        "[server]\nproxy_protocol = true\nproxy_protocol_from = [\"127.0.0.1\"]\n\
         [tls]\nlisten = [\"127.0.0.1:0\"]\ncertificates = [{{ cert = \"{}\", key = \"{}\" }}]\n\
         [[route]]\npath_prefix = \"/\"\npool = \"p\"\n[pools.p]\nservers = [\"{}\"]\n",
        c.display(),
        k.display(),
        b.addr
    ))
    .await;
    let mut roots = rustls::RootCertStore::empty();
    roots.add(cert.cert.der().clone()).unwrap();
    let config = rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let mut s = TcpStream::connect(lg.tls_addrs()[0]).await.unwrap();
    s.write_all(b"PROXY TCP4 203.0.113.50 198.51.100.1 40000 443\r\n")
        .await
        .unwrap();
    let name = rustls::pki_types::ServerName::try_from("pp.test").unwrap();
    let mut tls = connector.connect(name, s).await.unwrap();
    tls.write_all(GET).await.unwrap();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), tls.read_to_end(&mut out)).await;
    assert!(
        out.starts_with(b"HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&out)
    );
    assert_eq!(seen(&b, "x-forwarded-for").as_deref(), Some("203.0.113.50"));
    assert_eq!(seen(&b, "x-forwarded-proto").as_deref(), Some("https"));
    // Without the header, the handshake's first bytes are refused as no PROXY header.
    let s = TcpStream::connect(lg.tls_addrs()[0]).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from("pp.test").unwrap();
    assert!(connector.connect(name, s).await.is_err());
    assert_eq!(refused(&lg)[1], 1);
}

/// A dual-stack listener (`[::]`) reached over IPv4: its clients are `::ffff:a.b.c.d` to the
/// socket, and must be the IPv4 clients every list names.
#[tokio::test]
async fn ipv4_mapped_clients_are_their_ipv4_address_everywhere() {
    let b = Backend::start("b").await;
    let other = Backend::start("other").await;
    let text = format!(
        "[[route]]\npath = \"/denied\"\ndeny = [\"127.0.0.1\"]\npool = \"p\"\n\
         [[route]]\npath = \"/allowed\"\nallow = [\"::ffff:127.0.0.0/104\"]\npool = \"p\"\n\
         request_headers = {{ set = {{ \"x-client\" = \"{{client_ip}}\" }} }}\n\
         [[route]]\npath_prefix = \"/\"\nsource = [\"127.0.0.0/8\"]\npool = \"p\"\n\
         [[route]]\npath_prefix = \"/\"\npool = \"other\"\n\
         [pools.p]\nservers = [\"{}\"]\n[pools.other]\nservers = [\"{}\"]\n",
        b.addr, other.addr
    );
    let mut config = langur::config::parse_str("t.toml", &text, true).unwrap();
    config.server.access_log = false;
    // A dual-stack socket.
    let l = tokio::net::TcpListener::bind("[::]:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    let _lg = langur::Langur::start_on(config, vec![l], None)
        .await
        .unwrap();
    let at: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let r = get(at, "/denied").await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let r = get(at, "/allowed").await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(seen(&b, "x-client").as_deref(), Some("127.0.0.1"));
    assert_eq!(seen(&b, "x-forwarded-for").as_deref(), Some("127.0.0.1"));
    let r = get(at, "/headers").await;
    assert_eq!(r.backend(), "b", "route `source` matches the IPv4 client");
    // Over IPv6 itself, the client is ::1 and none of these networks.
    let six: SocketAddr = format!("[::1]:{port}").parse().unwrap();
    assert_eq!(get(six, "/denied").await.status, StatusCode::OK);
    assert_eq!(get(six, "/allowed").await.status, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn ipv4_mapped_proxy_sources_are_their_ipv4_address() {
    let b = Backend::start("b").await;
    let lg = behind_a_balancer(
        &b,
        "[[route]]\npath = \"/denied\"\ndeny = [\"1.2.3.0/24\"]\npool = \"p\"\n",
    )
    .await;
    let at = lg.listen_addrs()[0];
    let denied = b"GET /denied HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n";
    let v1 = b"PROXY TCP6 ::ffff:1.2.3.4 ::1 40000 80\r\n";
    let out = exchange(at, &[&[&v1[..], denied].concat()], Duration::ZERO).await;
    assert!(out.starts_with("HTTP/1.1 403"), "{out}");
    let mut six = vec![0u8; 36];
    six[10..16].copy_from_slice(&[0xff, 0xff, 1, 2, 3, 5]);
    let mut h = V2_SIGNATURE.to_vec();
    h.extend([0x21, 0x21, 0, 36]);
    h.extend(&six);
    let out = exchange(at, &[&[&h[..], denied].concat()], Duration::ZERO).await;
    assert!(out.starts_with("HTTP/1.1 403"), "{out}");
    let out = exchange(at, &[&[&v1[..], GET].concat()], Duration::ZERO).await;
    assert!(out.starts_with("HTTP/1.1 200"), "{out}");
    assert_eq!(seen(&b, "x-forwarded-for").as_deref(), Some("1.2.3.4"));
    // A v1 port with a sign is not a plain decimal number.
    let plus = b"PROXY TCP4 1.2.3.4 198.51.100.1 +1111 80\r\n";
    let out = exchange(at, &[&[&plus[..], GET].concat()], Duration::ZERO).await;
    assert_eq!(out, "");
    assert_eq!(refused(&lg), [0, 0, 1, 0]);
}

/// An entry of the forwarding field langur cannot read ends the walk: the last trusted hop is
/// the client, and an address a client wrote left of it never is.
#[tokio::test]
async fn an_unreadable_forwarding_entry_ends_the_walk() {
    let b = Backend::start("b").await;
    let cfg = |from: &str| {
        format!(
            "[server]\ntrusted_proxies = [\"127.0.0.1\"]\nreal_ip_header = \"{from}\"\n\
             x_real_ip = true\n\
             [[route]]\npath_prefix = \"/\"\nallow = [\"127.0.0.1\"]\npool = \"p\"\n\
             [pools.p]\nservers = [\"{}\"]\n",
            b.addr
        )
    };
    let lg = langur_toml(&cfg("X-Forwarded-For")).await;
    let at = lg.listen_addrs()[0];
    for bad in ["unknown", "fe80::1%eth0", "nonsense"] {
        let xff = format!("6.6.6.6, {bad}");
        let r = request(
            at,
            Method::GET,
            "/headers",
            &[("x-forwarded-for", &xff)],
            body(""),
        )
        .await;
        assert_eq!(r.status, StatusCode::OK, "{bad}");
        assert_eq!(seen(&b, "x-real-ip").as_deref(), Some("127.0.0.1"), "{bad}");
    }
    let lg = langur_toml(&cfg("Forwarded")).await;
    let at = lg.listen_addrs()[0];
    for bad in [
        "for=2001:db8::1",
        "for=\"2001:db8::1\"",
        "for=9.9.9.9:1234",
        "for=unknown",
    ] {
        let fw = format!("for=6.6.6.6, {bad}");
        let r = request(at, Method::GET, "/headers", &[("forwarded", &fw)], body("")).await;
        assert_eq!(r.status, StatusCode::OK, "{bad}");
        assert_eq!(seen(&b, "x-real-ip").as_deref(), Some("127.0.0.1"), "{bad}");
    }
    // Section 6's forms are read.
    let fw = [("forwarded", "for=\"[2001:db8::1]:80\"")];
    let r = request(at, Method::GET, "/headers", &fw, body("")).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn forwarding_out_behind_a_trusted_balancer() {
    let b = Backend::start("b").await;
    let cfg = |extra: &str| {
        format!(
            "[server]\ntrusted_proxies = [\"127.0.0.1\", \"10.0.0.0/8\"]\nforwarded = \"both\"\n\
             redirect_http_to_https = true\n{extra}\n\
             [[route]]\npath_prefix = \"/\"\npool = \"p\"\n[pools.p]\nservers = [\"{}\"]\n",
            b.addr
        )
    };
    let lg = langur_toml(&cfg("")).await;
    let at = lg.listen_addrs()[0];
    // The balancer took TLS: its X-Forwarded-Proto is the client's scheme (no redirect).
    let fields = [
        ("x-forwarded-for", "203.0.113.9, 10.0.0.2"),
        ("x-forwarded-proto", "https"),
    ];
    let r = request(at, Method::GET, "/headers", &fields, body("")).await;
    assert_eq!(r.status, StatusCode::OK);
    // Forwarded starts with the client and the trusted hops X-Forwarded-For named.
    assert_eq!(
        seen(&b, "forwarded").as_deref(),
        Some(
            "for=203.0.113.9;proto=https, for=10.0.0.2, \
             for=127.0.0.1;host=test.local;proto=http"
        )
    );
    assert_eq!(seen(&b, "x-forwarded-proto").as_deref(), Some("https"));
    // Plain HTTP at the balancer: redirected; so is a client's own claim.
    let http = [("x-forwarded-proto", "http")];
    let r = request(at, Method::GET, "/x", &http, body("")).await;
    assert_eq!(r.status, StatusCode::PERMANENT_REDIRECT);
    // A Forwarded line with a quote left open is dropped before this hop's element.
    let open = [
        ("forwarded", "for=\"6.6.6.6"),
        ("x-forwarded-proto", "https"),
    ];
    request(at, Method::GET, "/headers", &open, body("")).await;
    assert_eq!(
        seen(&b, "forwarded").as_deref(),
        Some("for=127.0.0.1;host=test.local;proto=http")
    );
    // X-Real-IP read: the X-Forwarded-For sent starts with the client.
    let lg = langur_toml(&cfg("real_ip_header = \"X-Real-IP\"")).await;
    let at = lg.listen_addrs()[0];
    let fields = [
        ("x-real-ip", "203.0.113.10"),
        ("x-forwarded-proto", "https"),
    ];
    request(at, Method::GET, "/headers", &fields, body("")).await;
    assert_eq!(
        seen(&b, "x-forwarded-for").as_deref(),
        Some("203.0.113.10, 127.0.0.1")
    );
    assert_eq!(
        seen(&b, "forwarded").as_deref(),
        Some("for=203.0.113.10;proto=https, for=127.0.0.1;host=test.local;proto=http")
    );
    // From a client no one trusts, X-Forwarded-Proto changes nothing.
    let lg = langur_toml(&format!(
        "[server]\nredirect_http_to_https = true\n\
         [[route]]\npath_prefix = \"/\"\npool = \"p\"\n[pools.p]\nservers = [\"{}\"]\n",
        b.addr
    ))
    .await;
    let https = [("x-forwarded-proto", "https")];
    let r = request(lg.listen_addrs()[0], Method::GET, "/x", &https, body("")).await;
    assert_eq!(r.status, StatusCode::PERMANENT_REDIRECT);
}

/// CGI and PHP servers read `X_Forwarded_For` as `X-Forwarded-For` (`HTTP_X_FORWARDED_FOR`).
#[tokio::test]
async fn underscore_forms_of_the_forwarding_fields_are_dropped() {
    let b = Backend::start("b").await;
    let lg = langur_toml(&format!(
        "[[route]]\npath_prefix = \"/\"\npool = \"p\"\n[pools.p]\nservers = [\"{}\"]\n",
        b.addr
    ))
    .await;
    let forged = [
        ("x_forwarded_for", "6.6.6.6"),
        ("x_real_ip", "6.6.6.6"),
        ("x_forwarded_proto", "https"),
        ("x-forwarded_host", "evil.example"),
        ("x_other", "kept"),
    ];
    request(
        lg.listen_addrs()[0],
        Method::GET,
        "/headers",
        &forged,
        body(""),
    )
    .await;
    for (name, _) in &forged[..4] {
        assert_eq!(seen(&b, name), None, "{name}");
    }
    assert_eq!(seen(&b, "x_other").as_deref(), Some("kept"));
    assert_eq!(seen(&b, "x-forwarded-for").as_deref(), Some("127.0.0.1"));
}

#[tokio::test]
async fn a_unix_socket_peer_is_loopback_in_every_field() {
    let b = Backend::start("b").await;
    let d = socket_dir("fields");
    let sock = d.join("f.sock");
    let _lg = langur_toml(&format!(
        "[server]\nlisten = [\"unix:{s}\"]\nforwarded = \"both\"\nx_real_ip = true\n\
         [[route]]\npath_prefix = \"/\"\nallow = [\"127.0.0.1\"]\npool = \"p\"\n\
         [pools.p]\nservers = [\"{}\"]\n",
        b.addr,
        s = sock.display()
    ))
    .await;
    let out = unix_exchange(&sock, &[GET]).await;
    assert!(out.starts_with("HTTP/1.1 200"), "{out}");
    assert_eq!(seen(&b, "x-forwarded-for").as_deref(), Some("127.0.0.1"));
    assert_eq!(seen(&b, "x-real-ip").as_deref(), Some("127.0.0.1"));
    assert_eq!(
        seen(&b, "forwarded").as_deref(),
        Some("for=127.0.0.1;host=site.example;proto=http")
    );
}

/// The warnings about refused PROXY connections (one per listener every few seconds, with
/// the count of the others), and a request refused for its framing logged with the client
/// behind a trusted proxy, in the binary's own output.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_warn_once_in_a_while_and_bad_framing_logs_the_client() {
    use tokio::io::AsyncBufReadExt;
    let b = Backend::start("b").await;
    let pick = || {
        std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
    };
    let (covered, plain) = (pick(), pick());
    let dir = crate::common::Scratch::new("warn");
    let cfg = dir.join("warn.toml");
    std::fs::write(
        &cfg,
        format!(
            "[server]\nlisten = [\"{covered}\", \"{plain}\"]\nproxy_protocol = [\"{covered}\"]\n\
             proxy_protocol_from = [\"127.0.0.1\"]\ntrusted_proxies = [\"127.0.0.1\"]\n\
             [[route]]\npath_prefix = \"/\"\npool = \"p\"\n[pools.p]\nservers = [\"{}\"]\n",
            b.addr
        ),
    )
    .unwrap();
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_langur"))
        .args(["run", "--workers", "1", "--admin", "127.0.0.1:0", "-c"])
        .arg(&cfg)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    // The access log and langur's own messages, both on standard output.
    let mut out = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let lines = Arc::new(Mutex::new(Vec::<String>::new()));
    let w = lines.clone();
    tokio::spawn(async move {
        while let Ok(Some(l)) = out.next_line().await {
            w.lock().unwrap().push(l);
        }
    });
    let find = |what: &str| -> Vec<String> {
        let all = lines.lock().unwrap();
        all.iter().filter(|l| l.contains(what)).cloned().collect()
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while TcpStream::connect(plain).await.is_err() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "langur did not start"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for _ in 0..3 {
        assert_eq!(exchange(covered, &[GET], Duration::ZERO).await, "");
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let warned = find("PROXY protocol");
    assert_eq!(warned.len(), 1, "{warned:?}");
    let l = &warned[0];
    assert!(l.contains("WARN"), "{l}");
    assert!(l.contains("peer=127.0.0.1:"), "{l}");
    assert!(l.contains("reason=missing"), "{l}");
    assert!(l.contains(&format!("listener={covered}")), "{l}");
    // Both Content-Length and Transfer-Encoding: 400, logged with the client behind the proxy.
    let bad = b"POST /x HTTP/1.1\r\nHost: a\r\nX-Forwarded-For: 203.0.113.44\r\n\
                Content-Length: 3\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n\
                0\r\n\r\n";
    let answer = exchange(plain, &[bad], Duration::ZERO).await;
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    let t = std::time::Instant::now();
    while find("/x").is_empty() && t.elapsed() < Duration::from_secs(5) {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let line = find("/x").pop().unwrap_or_default();
    assert!(line.contains("client=203.0.113.44"), "{line}");
}
