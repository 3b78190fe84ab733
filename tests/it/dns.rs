//! Servers named by DNS, against a real DNS server on loopback (hickory-server, in the test,
//! on a thread of its own) whose answers the test changes while traffic runs.

use crate::common::*;
use hickory_server::authority::MessageResponseBuilder;
use hickory_server::proto::op::{Header, ResponseCode};
use hickory_server::proto::rr::rdata::{A, SRV};
use hickory_server::proto::rr::{Name, RData, Record, RecordType};
use hickory_server::server::{Request, RequestHandler, ResponseHandler, ResponseInfo};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::TcpListener;

/// Records by (lower-case name without the dot, type).
type Records = HashMap<(String, RecordType), Vec<RData>>;

/// What the test DNS server answers: records by (lower-case name without the dot, type), and
/// whether it fails every query (SERVFAIL).
#[derive(Clone, Default)]
struct Zone {
    records: Arc<Mutex<Records>>,
    failing: Arc<AtomicBool>,
    queries: Arc<AtomicUsize>,
}

impl Zone {
    fn set_a(&self, name: &str, ips: &[&str]) {
        let rdata = ips
            .iter()
            .map(|ip| RData::A(A(ip.parse().unwrap())))
            .collect();
        self.records
            .lock()
            .unwrap()
            .insert((name.to_string(), RecordType::A), rdata);
    }

    /// SRV records: (priority, weight, port, target).
    fn set_srv(&self, name: &str, srvs: &[(u16, u16, u16, &str)]) {
        let rdata = srvs
            .iter()
            .map(|(priority, weight, port, target)| {
                let target = Name::from_ascii(format!("{target}.")).unwrap();
                RData::SRV(SRV::new(*priority, *weight, *port, target))
            })
            .collect();
        self.records
            .lock()
            .unwrap()
            .insert((name.to_string(), RecordType::SRV), rdata);
    }
}

#[async_trait::async_trait]
impl RequestHandler for Zone {
    async fn handle_request<R: ResponseHandler>(
        &self,
        request: &Request,
        mut response: R,
    ) -> ResponseInfo {
        self.queries.fetch_add(1, Ordering::Relaxed);
        let builder = MessageResponseBuilder::from_message_request(request);
        let mut header = Header::response_from_request(request.header());
        header.set_authoritative(true);
        if self.failing.load(Ordering::Relaxed) {
            let msg = builder.error_msg(request.header(), ResponseCode::ServFail);
            return response
                .send_response(msg)
                .await
                .unwrap_or_else(|_| header.into());
        }
        let Some(q) = request.queries().first() else {
            let msg = builder.error_msg(request.header(), ResponseCode::FormErr);
            return response
                .send_response(msg)
                .await
                .unwrap_or_else(|_| header.into());
        };
        let qname = q.name().to_string();
        let key = (
            qname.trim_end_matches('.').to_ascii_lowercase(),
            q.query_type(),
        );
        let name = Name::from(q.name().clone());
        let answers: Vec<Record> = self
            .records
            .lock()
            .unwrap()
            .get(&key)
            .map(|v| {
                v.iter()
                    .map(|r| Record::from_rdata(name.clone(), 0, r.clone()))
                    .collect()
            })
            .unwrap_or_default();
        let msg = builder.build(header, answers.iter(), [], [], []);
        response
            .send_response(msg)
            .await
            .unwrap_or_else(|_| header.into())
    }
}

/// Starts the DNS server on a loopback UDP port, on a thread and runtime of its own (langur
/// resolves at start while the test's runtime waits for it).
fn dns_server(zone: Zone) -> SocketAddr {
    let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    socket.set_nonblocking(true).unwrap();
    let addr = socket.local_addr().unwrap();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let mut server = hickory_server::ServerFuture::new(zone);
            server.register_socket(tokio::net::UdpSocket::from_std(socket).unwrap());
            let _ = server.block_until_done().await;
        });
    });
    addr
}

/// Backends on 127.0.0.1, 127.0.0.2 and 127.0.0.3, one port for all (a name's records share
/// the entry's port).
async fn backends_on_one_port() -> (u16, Vec<Backend>) {
    for _ in 0..20 {
        let first = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = first.local_addr().unwrap().port();
        let (Ok(second), Ok(third)) = (
            TcpListener::bind(("127.0.0.2", port)).await,
            TcpListener::bind(("127.0.0.3", port)).await,
        ) else {
            continue;
        };
        let b = vec![
            Backend::start_on("one", first),
            Backend::start_on("two", second),
            Backend::start_on("three", third),
        ];
        return (port, b);
    }
    panic!("no port free on 127.0.0.1 to 127.0.0.3");
}

/// Requests from `clients` tasks until `stop`: (answered 200, anything else).
fn traffic(
    addr: SocketAddr,
    clients: usize,
    stop: Arc<AtomicBool>,
) -> tokio::task::JoinHandle<(usize, Vec<String>)> {
    tokio::spawn(async move {
        let mut tasks = Vec::new();
        for c in 0..clients {
            let stop = stop.clone();
            tasks.push(tokio::spawn(async move {
                let (mut ok, mut bad) = (0, Vec::new());
                let mut n = 0;
                while !stop.load(Ordering::Relaxed) {
                    n += 1;
                    // Some requests are slow, so some are in flight when a server leaves.
                    let path = if (n + c) % 4 == 0 { "/slow/150" } else { "/" };
                    let r = get(addr, path).await;
                    if r.status == 200 {
                        ok += 1;
                    } else {
                        bad.push(format!("{} {}", r.status, r.text()));
                    }
                }
                (ok, bad)
            }));
        }
        let mut total = (0, Vec::new());
        for t in tasks {
            let (ok, bad) = t.await.unwrap();
            total.0 += ok;
            total.1.extend(bad);
        }
        total
    })
}

/// Waits until `cond` holds (at most 5 s).
async fn until(what: &str, cond: impl Fn() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while !cond() {
        assert!(tokio::time::Instant::now() < deadline, "timed out: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn config(dns: SocketAddr, pool: &str) -> String {
    format!(
        r#"
[dns]
servers = ["{dns}"]
timeout = "300ms"

[[route]]
path_prefix = "/"
pool = "api"

[pools.api]
dns_min_ttl = "100ms"
{pool}
"#
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_name_follows_its_records_with_traffic_running_and_no_failed_request() {
    let (port, b) = backends_on_one_port().await;
    let zone = Zone::default();
    zone.set_a("api.test", &["127.0.0.1"]);
    let dns = dns_server(zone.clone());
    let l = langur_toml(&config(dns, &format!(r#"servers = ["api.test:{port}"]"#))).await;
    let addr = l.listen_addrs()[0];
    let stop = Arc::new(AtomicBool::new(false));
    let load = traffic(addr, 4, stop.clone());
    until("one serves", || b[0].hits() > 5).await;
    assert_eq!(b[1].hits() + b[2].hits(), 0);

    // One address, then two: the new one takes its share.
    zone.set_a("api.test", &["127.0.0.1", "127.0.0.2"]);
    until("two serves", || b[1].hits() > 5).await;

    // Then another: both old ones leave (drained), the new one takes everything.
    zone.set_a("api.test", &["127.0.0.3"]);
    until("three serves", || b[2].hits() > 5).await;
    // Requests already sent to the old ones finish (slow ones take 150 ms).
    tokio::time::sleep(Duration::from_millis(400)).await;
    let before = (b[0].hits(), b[1].hits());
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(
        (b[0].hits(), b[1].hits()),
        before,
        "the old addresses get nothing new"
    );

    stop.store(true, Ordering::Relaxed);
    let (ok, bad) = load.await.unwrap();
    assert!(
        bad.is_empty(),
        "{} of {} requests failed: {bad:?}",
        bad.len(),
        ok + bad.len()
    );
    assert!(ok > 50, "{ok} requests");
    let rt = l.shared().runtime.load();
    let names: Vec<String> = rt.pools[0]
        .servers
        .iter()
        .map(|s| s.name.to_string())
        .collect();
    assert_eq!(names, [format!("api.test:{port}@127.0.0.3")]);
    assert!(rt.pools[0].discovery.lookups.load(Ordering::Relaxed) >= 3);
    assert_eq!(rt.pools[0].discovery.failures.load(Ordering::Relaxed), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_lookup_keeps_the_last_good_addresses() {
    let (port, b) = backends_on_one_port().await;
    let zone = Zone::default();
    zone.set_a("api.test", &["127.0.0.1", "127.0.0.2"]);
    let dns = dns_server(zone.clone());
    let text = config(dns, &format!(r#"servers = ["api.test:{port}"]"#));
    let l = start_with_admin(toml_config(&text)).await;
    let addr = l.listen_addrs()[0];
    let stop = Arc::new(AtomicBool::new(false));
    let load = traffic(addr, 2, stop.clone());
    until("both serve", || b[0].hits() > 3 && b[1].hits() > 3).await;

    // The server fails every query, then answers with no record: both keep the last set.
    zone.failing.store(true, Ordering::Relaxed);
    let pool = || l.shared().runtime.load().pools[0].clone();
    until("failures counted", || {
        pool().discovery.failures.load(Ordering::Relaxed) >= 3
    })
    .await;
    assert!(pool().discovery.stale.load(Ordering::Relaxed));
    zone.failing.store(false, Ordering::Relaxed);
    zone.set_a("api.test", &[]);
    let failed = pool().discovery.failures.load(Ordering::Relaxed);
    until("empty answers counted", || {
        pool().discovery.failures.load(Ordering::Relaxed) >= failed + 3
    })
    .await;
    assert_eq!(pool().servers.len(), 2, "never an empty pool");
    let (one, two) = (b[0].hits(), b[1].hits());
    until("both still serve", || {
        b[0].hits() > one && b[1].hits() > two
    })
    .await;

    // Answers again: no longer stale.
    zone.set_a("api.test", &["127.0.0.2"]);
    until("follows again", || pool().servers.len() == 1).await;
    assert!(!pool().discovery.stale.load(Ordering::Relaxed));

    stop.store(true, Ordering::Relaxed);
    let (_, bad) = load.await.unwrap();
    assert!(bad.is_empty(), "failed requests: {bad:?}");
    let metrics = get(l.admin_addr().unwrap(), "/metrics").await.text();
    assert!(
        metrics.contains("langur_pool_dns_lookup_failures_total{pool=\"api\"}"),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_name_that_does_not_resolve_stops_the_start_unless_allowed_empty() {
    let (port, b) = backends_on_one_port().await;
    let zone = Zone::default();
    let dns = dns_server(zone.clone());
    let text = config(dns, &format!(r#"servers = ["api.test:{port}"]"#));
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let err = langur::server::Langur::start_on(toml_config(&text), vec![l], None)
        .await
        .err()
        .expect("the start fails");
    let msg = format!("{err:#}");
    assert!(
        msg.contains("api.test:") && msg.contains("pool `api`"),
        "{msg}"
    );

    // Allowed empty: it starts, answers 503 until the name resolves, then serves.
    let text = config(
        dns,
        &format!("dns_allow_empty = true\nservers = [\"api.test:{port}\"]"),
    );
    let l = langur_toml(&text).await;
    let addr = l.listen_addrs()[0];
    assert_eq!(get(addr, "/").await.status, 503);
    zone.set_a("api.test", &["127.0.0.2"]);
    until("resolved", || {
        l.shared().runtime.load().pools[0].servers.len() == 1
    })
    .await;
    let r = get(addr, "/").await;
    assert_eq!((r.status.as_u16(), r.backend()), (200, "two".to_string()));
    assert_eq!(b[1].hits(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn srv_records_give_the_servers_ports_weights_and_backups() {
    let (port, b) = backends_on_one_port().await;
    let zone = Zone::default();
    zone.set_a("node1.test", &["127.0.0.1"]);
    zone.set_a("node2.test", &["127.0.0.2"]);
    zone.set_a("node3.test", &["127.0.0.3"]);
    // Weights 3:1; a record with port 0 (no service there) is left out.
    zone.set_srv(
        "_http._tcp.api.test",
        &[
            (1, 30, port, "node1.test"),
            (1, 10, port, "node2.test"),
            (1, 50, 0, "node3.test"),
        ],
    );
    let dns = dns_server(zone.clone());
    let l = langur_toml(&config(dns, r#"srv = "_http._tcp.api.test""#)).await;
    let addr = l.listen_addrs()[0];
    for _ in 0..400 {
        assert_eq!(get(addr, "/").await.status, 200);
    }
    assert_eq!((b[0].hits(), b[1].hits(), b[2].hits()), (300, 100, 0));

    // New weights (0 is the smallest share, 1), and a record of a later priority: a backup.
    zone.set_srv(
        "_http._tcp.api.test",
        &[
            (1, 0, port, "node1.test"),
            (1, 5, port, "node2.test"),
            (2, 1, port, "node3.test"),
        ],
    );
    let servers = || {
        let rt = l.shared().runtime.load();
        let mut v: Vec<(String, u32, bool)> = rt.pools[0]
            .servers
            .iter()
            .map(|s| {
                (
                    s.name.to_string(),
                    s.weight.load(Ordering::Relaxed),
                    s.backup,
                )
            })
            .collect();
        v.sort();
        v
    };
    let want = vec![
        (format!("_http._tcp.api.test@127.0.0.1:{port}"), 1, false),
        (format!("_http._tcp.api.test@127.0.0.2:{port}"), 5, false),
        (format!("_http._tcp.api.test@127.0.0.3:{port}"), 1, true),
    ];
    until("the pool follows the SRV records", || servers() == want).await;
    let before = b[2].hits();
    for _ in 0..60 {
        assert_eq!(get(addr, "/").await.status, 200);
    }
    assert_eq!(
        b[2].hits(),
        before,
        "the backup waits while primaries serve"
    );
    let address = l.shared().runtime.load().pools[0].servers[0]
        .address
        .to_string();
    assert!(
        address.starts_with("node") && address.ends_with(&format!(".test:{port}")),
        "{address}"
    );
}
