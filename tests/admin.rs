//! The admin API: every endpoint, the token rule, GET never mutating, CSV and Prometheus
//! output read back by parsers, and reload.

mod common;

use common::*;
use http::{Method, StatusCode};
use serde_json::Value;
use std::net::SocketAddr;
use std::time::Duration;

async fn admin_get(a: SocketAddr, path: &str, headers: &[(&str, &str)]) -> Resp {
    request(a, Method::GET, path, headers, body("")).await
}

async fn admin_post(a: SocketAddr, path: &str, json: &str) -> Resp {
    request(
        a,
        Method::POST,
        path,
        &[("content-type", "application/json")],
        body(json.to_string()),
    )
    .await
}

fn parse(r: &Resp) -> Value {
    serde_json::from_slice(&r.body).unwrap_or_else(|e| panic!("{e}: {}", r.text()))
}

async fn setup() -> (langur::Langur, Backend, Backend) {
    let a = Backend::start("a").await;
    let b = Backend::start("b").await;
    let l = start_with_admin(toml_config(&format!(
        "[[route]]\nmatch = ['^/']\npool = 'web'\ncache = true\n[pools.web]\nbalance = 'round-robin'\nservers = ['{}', '{}']\n",
        a.addr, b.addr
    )))
    .await;
    (l, a, b)
}

fn server<'a>(stats: &'a Value, name: &str) -> &'a Value {
    stats["pools"][0]["servers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == name || s["address"] == name)
        .unwrap()
}

#[tokio::test]
async fn stats_json_counts_traffic() {
    let (l, a, _b) = setup().await;
    let p = l.listen_addrs()[0];
    let admin = l.admin_addr().unwrap();
    for _ in 0..10 {
        assert_eq!(get(p, "/x").await.status, 200);
    }
    get(p, "/nothing-routes-here-is-fine").await;
    let s = parse(&admin_get(admin, "/api/stats", &[]).await);
    assert_eq!(s["requests"], 11);
    assert_eq!(s["status"]["2xx"], 11);
    assert!(s["uptime_secs"].is_u64());
    let sa = server(&s, &a.addr.to_string());
    assert_eq!(sa["operator"], "ready");
    assert_eq!(sa["health"], "up");
    assert_eq!(sa["state"], "alive");
    assert!(sa["requests"].as_u64().unwrap() >= 5);
    assert_eq!(sa["responses"]["2xx"], sa["requests"]);
    assert_eq!(sa["weight"], 1);
    assert!(s["cache"]["misses"].as_u64().unwrap() > 0);
    assert!(s["pools"][0]["queue"]["length"].is_u64());
}

#[tokio::test]
async fn csv_uses_haproxy_column_names() {
    let (l, a, _b) = setup().await;
    let p = l.listen_addrs()[0];
    for _ in 0..4 {
        get(p, "/").await;
    }
    let r = admin_get(l.admin_addr().unwrap(), "/stats.csv", &[]).await;
    assert_eq!(r.status, 200);
    let text = r.text();
    let mut reader = csv::ReaderBuilder::new().from_reader(text.as_bytes());
    let header: Vec<String> = reader.headers().unwrap().iter().map(String::from).collect();
    assert_eq!(header[0], "# pxname");
    for name in [
        "svname",
        "qcur",
        "qmax",
        "scur",
        "smax",
        "slim",
        "stot",
        "econ",
        "eresp",
        "wredis",
        "status",
        "weight",
        "act",
        "bck",
        "chkfail",
        "chkdown",
        "lastchg",
        "check_status",
        "check_code",
        "check_duration",
        "hrsp_2xx",
        "hrsp_5xx",
        "req_tot",
        "addr",
        "algo",
    ] {
        assert!(header.iter().any(|h| h == name), "missing column {name}");
    }
    let col = |n: &str| header.iter().position(|h| h == n).unwrap();
    let rows: Vec<csv::StringRecord> = reader.records().map(|r| r.unwrap()).collect();
    assert_eq!(rows.len(), 3, "two servers and the BACKEND row");
    let row_a = rows
        .iter()
        .find(|r| r[col("svname")] == a.addr.to_string())
        .unwrap();
    assert_eq!(&row_a[0], "web");
    assert_eq!(&row_a[col("status")], "UP");
    assert_eq!(&row_a[col("stot")], "2");
    assert_eq!(&row_a[col("hrsp_2xx")], "2");
    let backend = rows
        .iter()
        .find(|r| &r[col("svname")] == "BACKEND")
        .unwrap();
    assert_eq!(&backend[col("stot")], "4");
}

#[tokio::test]
async fn metrics_parse_as_prometheus_text() {
    let (l, _a, _b) = setup().await;
    let p = l.listen_addrs()[0];
    for _ in 0..3 {
        get(p, "/m").await;
    }
    let r = admin_get(l.admin_addr().unwrap(), "/metrics", &[]).await;
    assert_eq!(r.status, 200);
    let text = r.text();
    let lines = text.lines().map(|l| Ok(l.to_string()));
    let scrape = prometheus_parse::Scrape::parse(lines).expect("valid Prometheus text");
    let find = |name: &str| {
        scrape
            .samples
            .iter()
            .filter(|s| s.metric == name)
            .collect::<Vec<_>>()
    };
    let reqs = find("langur_server_requests_total");
    assert_eq!(reqs.len(), 2);
    assert!(reqs
        .iter()
        .all(|s| s.labels.get("pool") == Some("web") && s.labels.get("server").is_some()));
    let total: f64 = reqs
        .iter()
        .map(|s| match s.value {
            prometheus_parse::Value::Counter(v) | prometheus_parse::Value::Untyped(v) => v,
            ref other => panic!("counter expected, got {other:?}"),
        })
        .sum();
    assert_eq!(total, 3.0);
    assert!(
        !find("langur_server_response_seconds").is_empty(),
        "latency histogram"
    );
    assert!(!find("langur_cache_misses_total").is_empty());
    assert!(!find("langur_pool_queue_length").is_empty());
    assert!(!find("langur_responses_total").is_empty());
    let series = scrape.samples.len();
    assert!(series < 200, "bounded series: {series}");
}

#[tokio::test]
async fn operator_state_changes_by_post_only() {
    let (l, a, b) = setup().await;
    let p = l.listen_addrs()[0];
    let admin = l.admin_addr().unwrap();
    let path = format!("/api/servers/web/{}/state", a.addr);
    // GET never mutates.
    let r = admin_get(admin, &path, &[]).await;
    assert_eq!(r.status, StatusCode::METHOD_NOT_ALLOWED);
    let s = parse(&admin_get(admin, "/api/stats", &[]).await);
    assert_eq!(server(&s, &a.addr.to_string())["operator"], "ready");
    let r = admin_post(admin, &path, "{\"state\":\"drain\"}").await;
    assert_eq!(r.status, 200, "{}", r.text());
    let s = parse(&admin_get(admin, "/api/stats", &[]).await);
    assert_eq!(server(&s, &a.addr.to_string())["operator"], "drain");
    assert_eq!(server(&s, &a.addr.to_string())["state"], "drain");
    let before = a.hits();
    for _ in 0..6 {
        assert_eq!(get(p, "/").await.status, 200);
    }
    assert_eq!(a.hits(), before, "a drained server takes nothing new");
    assert!(b.hits() >= 6);
    let r = admin_post(admin, &path, "{\"state\":\"sleep\"}").await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    let encoded = format!(
        "/api/servers/web/{}/state",
        a.addr.to_string().replace(':', "%3A")
    );
    let r = admin_post(admin, &encoded, "ready").await;
    assert_eq!(r.status, 200);
    let r = admin_post(
        admin,
        "/api/servers/web/nope:1/state",
        "{\"state\":\"drain\"}",
    )
    .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn weight_changes_rebuild_the_balancer() {
    let (l, a, b) = setup().await;
    let p = l.listen_addrs()[0];
    let admin = l.admin_addr().unwrap();
    let r = admin_post(
        admin,
        &format!("/api/servers/web/{}/weight", a.addr),
        "{\"weight\":3}",
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let s = parse(&admin_get(admin, "/api/stats", &[]).await);
    assert_eq!(server(&s, &a.addr.to_string())["weight"], 3);
    let (a0, b0) = (a.hits(), b.hits());
    for _ in 0..40 {
        get(p, "/w").await;
    }
    assert_eq!((a.hits() - a0, b.hits() - b0), (30, 10));
    let r = admin_post(
        admin,
        &format!("/api/servers/web/{}/weight", a.addr),
        "{\"weight\":-1}",
    )
    .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn cache_purge_by_url_prefix_and_all() {
    let (l, _a, _b) = setup().await;
    let admin = l.admin_addr().unwrap();
    let cache = l.shared().runtime.load().cache.clone();
    let none = http::HeaderMap::new();
    for k in ["/a", "/static/1", "/static/2", "/b"] {
        let obj = langur::cache::Object::new(
            StatusCode::OK,
            http::HeaderMap::new(),
            bytes::Bytes::from_static(b"x"),
            0,
            60,
            0,
            0,
            false,
            false,
        );
        cache.insert(&format!("http://test.local{k}"), &none, obj);
    }
    let n = |r: &Resp| parse(r)["purged"].as_u64().unwrap();
    let r = admin_post(
        admin,
        "/api/cache/purge",
        "{\"url\":\"http://test.local/a\"}",
    )
    .await;
    assert_eq!(n(&r), 1);
    let r = admin_post(admin, "/api/cache/purge", "{\"prefix\":\"/static/\"}").await;
    assert_eq!(n(&r), 2);
    assert_eq!(cache.stats().entries, 1);
    let r = admin_post(admin, "/api/cache/purge", "{}").await;
    assert_eq!(n(&r), 1);
    assert_eq!(cache.stats().entries, 0);
    let r = admin_post(admin, "/api/cache/purge", "{\"nonsense\":1}").await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn events_healthz_dashboard_and_unknown_paths() {
    let dead = dead_addr().await;
    let ok = Backend::start("ok").await;
    let l = start_with_admin(toml_config(&format!(
        "[[route]]\nmatch = ['^/']\npool = 'web'\n[pools.web]\nservers = ['{}']\n[[pools.web.server]]\naddress = '{}'\ncheck = {{ type = 'tcp', interval = '100ms', fall = 1, rise = 1 }}\n",
        ok.addr, dead
    )))
    .await;
    let admin = l.admin_addr().unwrap();
    let mut events = Value::Null;
    for _ in 0..50 {
        events = parse(&admin_get(admin, "/api/events", &[]).await);
        if !events.as_array().unwrap().is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let e = &events[0];
    assert_eq!(e["server"], dead.to_string());
    assert_eq!(e["to"], "down");
    assert!(e["check_status"].as_str().unwrap().starts_with("L4"));
    assert_eq!(admin_get(admin, "/healthz", &[]).await.status, 200);
    // The sampler records one point a second for the graphs.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let h = parse(&admin_get(admin, "/api/history", &[]).await);
    let h = h.as_array().unwrap();
    assert!(!h.is_empty(), "history has samples");
    assert!(h[0]["t"].is_u64() && h[0]["rps"].is_number() && h[0].get("5xx").is_some());
    let page = admin_get(admin, "/", &[]).await;
    assert_eq!(page.status, 200);
    assert!(page.text().contains("<canvas id=\"rps-graph\""));
    assert_eq!(admin_get(admin, "/nope", &[]).await.status, 404);
    let r = request(admin, Method::DELETE, "/api/stats", &[], body("")).await;
    assert_eq!(r.status, StatusCode::METHOD_NOT_ALLOWED);
}

#[tokio::test]
async fn a_token_is_required_when_set_and_when_exposed() {
    let be = Backend::start("a").await;
    let text = format!(
        "[admin]\ntoken = 's3cret'\n[[route]]\nmatch = ['^/']\npool = 'p'\n[pools.p]\nservers = ['{}']\n",
        be.addr
    );
    let l = start_with_admin(toml_config(&text)).await;
    let admin = l.admin_addr().unwrap();
    let r = admin_get(admin, "/api/stats", &[]).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert!(r.headers.contains_key("www-authenticate"));
    assert_eq!(
        admin_get(admin, "/api/stats", &[("authorization", "Bearer wrong")])
            .await
            .status,
        401
    );
    assert_eq!(
        admin_get(admin, "/api/stats", &[("authorization", "Bearer s3cret")])
            .await
            .status,
        200
    );
    // user:s3cret
    assert_eq!(
        admin_get(admin, "/", &[("authorization", "Basic dXNlcjpzM2NyZXQ=")])
            .await
            .status,
        200
    );
    let r = request(admin, Method::POST, "/api/cache/purge", &[], body("{}")).await;
    assert_eq!(r.status, 401, "mutations too");
    let r = request(
        admin,
        Method::POST,
        "/api/cache/purge",
        &[
            ("authorization", "Bearer s3cret"),
            ("origin", "http://evil.example"),
        ],
        body("{}"),
    )
    .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "cross-origin POST");

    // Exposed beyond loopback without a token: refused at start.
    let no_token = toml_config(&format!(
        "[[route]]\nmatch = ['^/']\npool = 'p'\n[pools.p]\nservers = ['{}']\n",
        be.addr
    ));
    let l2 = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let exposed = tokio::net::TcpListener::bind("0.0.0.0:0").await.unwrap();
    let err = langur::Langur::start_on(no_token, vec![l2], Some(exposed))
        .await
        .err()
        .expect("must refuse");
    assert!(err.to_string().contains("token"), "{err}");
}

#[tokio::test]
async fn reload_keeps_state_and_refuses_bad_configs() {
    let a = Backend::start("a").await;
    let b = Backend::start("b").await;
    let dir = std::env::temp_dir().join(format!("langur-reload-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("langur.toml");
    let v1 = format!(
        "[[route]]\nmatch = ['^/']\npool = 'web'\n[pools.web]\nservers = ['{}']\n",
        a.addr
    );
    std::fs::write(&file, &v1).unwrap();
    let config = langur::config::load(&file).unwrap();
    let l = start_with_admin(config).await;
    let p = l.listen_addrs()[0];
    let admin = l.admin_addr().unwrap();
    for _ in 0..3 {
        get(p, "/").await;
    }
    admin_post(
        admin,
        &format!("/api/servers/web/{}/state", a.addr),
        "drain",
    )
    .await;

    let v2 = format!(
        "{v1}[[route]]\nmatch = ['^/b']\npool = 'other'\n[pools.other]\nservers = ['{}']\n",
        b.addr
    )
    .replace("match = ['^/']", "match = ['^/a']");
    std::fs::write(&file, &v2).unwrap();
    let r = admin_post(admin, "/api/reload", "").await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(get(p, "/b").await.backend(), "b", "the new route serves");
    let s = parse(&admin_get(admin, "/api/stats", &[]).await);
    let sa = server(&s, &a.addr.to_string());
    assert_eq!(sa["requests"], 3, "counters kept");
    assert_eq!(sa["operator"], "drain", "operator state kept");

    std::fs::write(&file, "[[route]]\nmatch = ['(']\npool = 'nope'\n").unwrap();
    let r = admin_post(admin, "/api/reload", "").await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    let errors = parse(&r)["errors"].to_string();
    assert!(errors.contains("langur.toml:2"), "{errors}");
    assert_eq!(
        get(p, "/b").await.backend(),
        "b",
        "still serving the last good config"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn healthz_says_503_while_draining_and_requests_finish() {
    let be = Backend::start("a").await;
    let l = start_with_admin(toml_config(&format!(
        "[[route]]\nmatch = ['^/']\npool = 'p'\n[pools.p]\nservers = ['{}']\n",
        be.addr
    )))
    .await;
    let p = l.listen_addrs()[0];
    let admin = l.admin_addr().unwrap();
    assert_eq!(admin_get(admin, "/healthz", &[]).await.status, 200);
    let slow = tokio::spawn(get(p, "/slow/800"));
    while be.in_flight.load(std::sync::atomic::Ordering::SeqCst) == 0 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let stopping = tokio::spawn(l.shutdown());
    let mut saw_503 = false;
    for _ in 0..50 {
        if admin_get(admin, "/healthz", &[]).await.status == StatusCode::SERVICE_UNAVAILABLE {
            saw_503 = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(saw_503, "healthz must report the drain");
    assert_eq!(
        slow.await.unwrap().status,
        200,
        "the request in flight finished"
    );
    stopping.await.unwrap();
}
