//! Server names: `name` in the long form (the address as written otherwise) shows in the stats,
//! the CSV's `svname`, the metrics' `server` label, the access log and the admin API's paths;
//! checks still send the address as written.

use crate::common::*;
use http::Method;
use langur::Langur;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::net::TcpListener;

async fn admin(a: SocketAddr, method: Method, path: &str, b: &str) -> Resp {
    let host = a.to_string();
    request(a, method, path, &[("host", &host)], body(b.to_string())).await
}

#[tokio::test]
async fn names_show_everywhere_a_server_is_named() {
    let a = Backend::start("a").await;
    let b = Backend::start("b").await;
    let dir = crate::common::Scratch::new("names");
    let log = dir.join("access.log");
    let mut config = toml_config(&format!(
        "[log]\nformat = \"json\"\naccess = \"{}\"\n[[route]]\nmatch = '^/'\npool = 'web'\n[pools.web]\ncheck = {{ type = 'http', path = '/check', interval = '50ms' }}\nserver = [\n  {{ address = '{}', name = 'app-1' }},\n  {{ address = '{}' }},\n]\n",
        log.display(),
        a.addr,
        b.addr
    ));
    config.admin.hosts.push("test.local".into());
    let l = Langur::start_on(
        config,
        vec![TcpListener::bind("127.0.0.1:0").await.unwrap()],
        Some(TcpListener::bind("127.0.0.1:0").await.unwrap()),
    )
    .await
    .unwrap();
    let (p, adm) = (l.listen_addrs()[0], l.admin_addr().unwrap());
    for _ in 0..4 {
        assert_eq!(get(p, "/x").await.status, 200);
    }

    let stats: serde_json::Value =
        serde_json::from_slice(&admin(adm, Method::GET, "/api/stats", "").await.body).unwrap();
    let names: Vec<&str> = stats["pools"][0]["servers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    let unnamed = b.addr.to_string();
    assert_eq!(names, ["app-1", unnamed.as_str()]);

    let csv = admin(adm, Method::GET, "/stats.csv", "").await.text();
    assert!(csv.lines().any(|l| l.starts_with("web,app-1,")), "{csv}");
    let metrics = admin(adm, Method::GET, "/metrics", "").await.text();
    assert!(
        metrics.contains("langur_server_requests_total{pool=\"web\",server=\"app-1\"} 2"),
        "{metrics}"
    );

    // The admin API's paths take the name.
    let r = admin(adm, Method::POST, "/api/servers/web/app-1/state", "maint").await;
    assert_eq!(r.status, 200, "{}", r.text());
    for _ in 0..4 {
        assert_eq!(get(p, "/x").await.backend(), "b");
    }

    // The access log names the server.
    let mut servers = Vec::new();
    for _ in 0..500 {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        servers = text
            .lines()
            // A line still being written is read again on the next turn.
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .map(|v| v["server"].clone())
            .collect();
        if servers.len() >= 8 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(servers.iter().filter(|s| *s == "app-1").count(), 2);
    assert_eq!(servers.iter().filter(|s| **s == *unnamed).count(), 6);

    // Checks still send the address as written (not the name) as `Host`. (A server in
    // maintenance is not checked: back to ready first.)
    let r = admin(adm, Method::POST, "/api/servers/web/app-1/state", "ready").await;
    assert_eq!(r.status, 200, "{}", r.text());
    let mut host = String::new();
    for _ in 0..100 {
        let seen = a.last_headers.lock().unwrap().clone();
        host = seen
            .and_then(|h| h.get("host").map(|v| v.to_str().unwrap().to_string()))
            .unwrap_or_default();
        if host == a.addr.to_string() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(host, a.addr.to_string());
}
