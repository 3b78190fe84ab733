//! A pool's servers changed through the admin API while traffic runs (added, weighted,
//! drained then removed, with no failed request; the errors as JSON), kept by a reload that
//! also moves a server to another address under the same name.

use crate::common::*;
use http::Method;
use serde_json::Value;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

const TOKEN: &str = "Bearer s3cret";

async fn call(admin: SocketAddr, method: Method, path: &str, json: &str) -> Resp {
    request(
        admin,
        method,
        path,
        &[
            ("content-type", "application/json"),
            ("authorization", TOKEN),
        ],
        body(json.to_string()),
    )
    .await
}

/// `/api/stats`' server `name` of pool `api`, if it is there.
async fn server(admin: SocketAddr, name: &str) -> Option<Value> {
    let r = call(admin, Method::GET, "/api/stats", "").await;
    let v: Value = serde_json::from_slice(&r.body).unwrap();
    v["pools"].as_array()?.iter().find(|p| p["name"] == "api")?["servers"]
        .as_array()?
        .iter()
        .find(|s| s["name"] == name)
        .cloned()
}

/// Waits (up to 5 s) for `cond`.
async fn until(what: &str, mut cond: impl AsyncFnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while !cond().await {
        assert!(tokio::time::Instant::now() < deadline, "{what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Three clients asking without pause, a request in four slow (150 ms); the failures.
fn traffic(
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
) -> Vec<tokio::task::JoinHandle<(u32, Vec<String>)>> {
    (0..3)
        .map(|c| {
            let stop = stop.clone();
            tokio::spawn(async move {
                let (mut n, mut bad) = (0, Vec::new());
                while !stop.load(Ordering::Relaxed) {
                    n += 1;
                    let path = if (n + c) % 4 == 0 { "/slow/150" } else { "/" };
                    let r = get(addr, path).await;
                    if r.status != 200 {
                        bad.push(format!("{} {}", r.status, r.text()));
                    }
                }
                (n, bad)
            })
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn servers_added_weighted_drained_and_removed_under_traffic_and_kept_by_reload() {
    let (b0, b1, b2) = (
        Backend::start("zero").await,
        Backend::start("one").await,
        Backend::start("two").await,
    );
    let dir = crate::common::Scratch::new("pool-servers");
    let file = dir.join("langur.toml");
    let v1 = |at: SocketAddr| {
        format!("[admin]\ntoken = 's3cret'\n[[route]]\npath_prefix = '/'\npool = 'api'\n[pools.api]\nserver = [{{ address = '{at}', name = 'zero' }}]\n")
    };
    std::fs::write(&file, v1(b0.addr)).unwrap();
    let l = start_with_admin(langur::config::load(&file).unwrap()).await;
    let (addr, admin) = (l.listen_addrs()[0], l.admin_addr().unwrap());
    let stop = Arc::new(AtomicBool::new(false));
    let load = traffic(addr, stop.clone());
    let pools = "/api/pools/api/servers";

    // The token applies.
    let anonymous = request(admin, Method::POST, pools, &[], body("{}")).await;
    assert_eq!(anonymous.status, 401);
    let one = format!(
        r#"{{"address": "{}", "name": "one", "weight": 2, "maxconn": 50}}"#,
        b1.addr
    );
    let r = call(admin, Method::POST, pools, &one).await;
    assert_eq!(r.status, 201, "{}", r.text());
    let v: Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(
        (v["server"].as_str(), v["weight"].as_u64()),
        (Some("one"), Some(2))
    );
    until("the new server gets traffic", async || b1.hits() >= 5).await;

    // Errors, all JSON: a name or an address the pool has (409), an unknown pool or server
    // (404), a bad body (400), a method the path does not take (405), a path
    // no endpoint has (404).
    for (method, path, body, status) in [
        (Method::POST, pools, one.clone(), 409),
        (
            Method::POST,
            pools,
            format!(r#"{{"address": "{}", "name": "x"}}"#, b0.addr),
            409,
        ),
        // The same address written as IPv4-mapped IPv6 is the same server.
        (
            Method::POST,
            pools,
            format!(
                r#"{{"address": "[::ffff:{}]:{}", "name": "x"}}"#,
                b0.addr.ip(),
                b0.addr.port()
            ),
            409,
        ),
        (
            Method::POST,
            "/api/pools/nope/servers",
            format!(r#"{{"address": "{}"}}"#, b2.addr),
            404,
        ),
        (
            Method::POST,
            pools,
            r#"{"address": "api.internal:80"}"#.into(),
            400,
        ),
        (
            Method::POST,
            pools,
            format!(r#"{{"address": "{}", "name": "a b"}}"#, b2.addr),
            400,
        ),
        (
            Method::PATCH,
            &format!("{pools}/one"),
            r#"{"wieght": 3}"#.into(),
            400,
        ),
        (
            Method::PATCH,
            &format!("{pools}/one"),
            r#"{"weight": 1001}"#.into(),
            400,
        ),
        (
            Method::PATCH,
            &format!("{pools}/nobody"),
            r#"{"weight": 3}"#.into(),
            404,
        ),
        (
            Method::DELETE,
            &format!("{pools}/nobody"),
            String::new(),
            404,
        ),
        (Method::GET, &format!("{pools}/one"), String::new(), 405),
        // A path no endpoint has is 404 whatever the method.
        (
            Method::DELETE,
            &format!("{pools}/one/extra"),
            String::new(),
            404,
        ),
        (Method::POST, "/api/nothing", String::new(), 404),
        (Method::PUT, "/api/stats/x", String::new(), 404),
        (Method::POST, "/api/stats", String::new(), 405),
    ] {
        let r = call(admin, method.clone(), path, &body).await;
        assert_eq!(r.status, status, "{method} {path} {body}: {}", r.text());
        assert!(r.text().contains("\"error\""), "{}", r.text());
    }

    // A weight and a limit, at once; the dashboard's stats and the metrics show them.
    let r = call(
        admin,
        Method::PATCH,
        &format!("{pools}/one"),
        r#"{"weight": 3, "maxconn": 10}"#,
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let s = server(admin, "one").await.expect("listed");
    assert_eq!(
        (s["weight"].as_u64(), s["maxconn"].as_u64()),
        (Some(3), Some(10))
    );
    let metrics = call(admin, Method::GET, "/metrics", "").await.text();
    assert!(metrics.contains("server=\"one\""), "{metrics}");

    // A reload moves `zero` to another address: its operator state stays (by name), the
    // added server and its weight and limit too.
    let r = call(admin, Method::POST, "/api/servers/api/zero/state", "drain").await;
    assert_eq!(r.status, 200, "{}", r.text());
    std::fs::write(&file, v1(b2.addr)).unwrap();
    let r = call(admin, Method::POST, "/api/reload", "").await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(
        r.text().contains("2 servers kept their state"),
        "{}",
        r.text()
    );
    let zero = server(admin, "zero").await.expect("zero");
    assert_eq!(zero["operator"], "drain", "{zero}");
    assert_eq!(zero["address"], b2.addr.to_string(), "{zero}");
    let s = server(admin, "one").await.expect("one kept");
    assert_eq!(
        (s["weight"].as_u64(), s["maxconn"].as_u64()),
        (Some(3), Some(10))
    );
    let r = call(admin, Method::POST, "/api/servers/api/zero/state", "ready").await;
    assert_eq!(r.status, 200, "{}", r.text());
    until("zero's new address gets traffic", async || b2.hits() >= 3).await;

    // `one` drains, then goes; its requests in flight finish.
    let r = call(admin, Method::DELETE, &format!("{pools}/one"), "").await;
    assert!(r.status == 202 || r.status == 200, "{}", r.text());
    until("the drained server leaves", async || {
        server(admin, "one").await.is_none()
    })
    .await;
    let before = b1.hits();
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(b1.hits(), before, "a removed server gets nothing new");

    stop.store(true, Ordering::Relaxed);
    let mut sent = 0;
    for t in load {
        let (n, bad) = t.await.unwrap();
        sent += n;
        assert!(bad.is_empty(), "failed requests: {bad:?}");
    }
    assert!(sent > 30, "{sent} requests");
}

/// `[server] state_file`: a server put in maintenance and a weight set through the admin API
/// outlive a restart; a corrupt or foreign file is a warning, never a failed start.
#[tokio::test]
async fn a_server_in_maintenance_stays_there_after_a_restart() {
    let (a, b) = (Backend::start("a").await, Backend::start("b").await);
    let dir = crate::common::Scratch::new("state");
    let state = dir.join("state");
    let _ = std::fs::remove_file(&state);
    let text = format!(
        "[server]\nstate_file = '{}'\n[[route]]\npath_prefix = '/'\npool = 'api'\n[pools.api]\nserver = [{{ address = '{}', name = 'a' }}, {{ address = '{}', name = 'b' }}]\n",
        state.display(),
        a.addr,
        b.addr
    );
    let l = start_with_admin(toml_config(&text)).await;
    let admin = l.admin_addr().unwrap();
    let r = call(admin, Method::POST, "/api/servers/api/b/state", "maint").await;
    assert_eq!(r.status, 200, "{}", r.text());
    let r = call(
        admin,
        Method::PATCH,
        "/api/pools/api/servers/a",
        r#"{"weight": 7}"#,
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    // Written on change, within a second or so.
    until("the state file is written", async || {
        std::fs::read_to_string(&state).is_ok_and(|t| t.contains("\"maint\""))
    })
    .await;
    l.shutdown().await;

    let l = start_with_admin(toml_config(&text)).await;
    let (addr, admin) = (l.listen_addrs()[0], l.admin_addr().unwrap());
    let s = server(admin, "b").await.unwrap();
    assert_eq!(s["operator"], "maint", "{s}");
    assert_eq!(server(admin, "a").await.unwrap()["weight"], 7);
    for _ in 0..4 {
        assert_eq!(get(addr, "/").await.backend(), "a");
    }
    l.shutdown().await;

    for bad in [
        "{ not json",
        "1\n# be_id be_name srv_id srv_name srv_addr\n",
    ] {
        std::fs::write(&state, bad).unwrap();
        let l = start_with_admin(toml_config(&text)).await;
        let admin = l.admin_addr().unwrap();
        assert_eq!(server(admin, "b").await.unwrap()["operator"], "ready");
        drop(l);
    }
}
