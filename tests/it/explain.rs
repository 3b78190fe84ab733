//! `langur explain` and `/api/explain`: a shadowed route, a rewrite with header rules, a
//! client behind a chain of trusted proxies, a response not stored because of `Set-Cookie`,
//! and a server in maintenance, each told as the pipeline decides it (and, for the route and
//! the rewrite, checked against what a real request through langur does).

use crate::common;
use common::*;
use langur::proxy::explain::{ask_from, explain, Explanation};
use serde_json::Value;
use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_langur");

/// Explains one request against a configuration, as `langur explain` does (servers as at
/// start).
fn explained(config: &str, request: &str, headers: &[&str], from: Option<&str>) -> Explanation {
    explained_with(config, request, headers, from, &[])
}

fn explained_with(
    config: &str,
    request: &str,
    headers: &[&str],
    from: Option<&str>,
    response: &[&str],
) -> Explanation {
    let config = toml_config(config);
    let events = std::sync::Arc::new(Default::default());
    let rt = langur::server::build_runtime(&config, &"test".into(), 1, &events).unwrap();
    let h: Vec<String> = headers.iter().map(|s| s.to_string()).collect();
    let r: Vec<String> = response.iter().map(|s| s.to_string()).collect();
    let ask = ask_from(request, &h, from, None, None, &r).unwrap();
    explain(&rt, &ask)
}

#[tokio::test]
async fn a_shadowed_route_is_named_with_the_route_that_wins() {
    let b = Backend::start("b").await;
    let config = format!(
        "[[route]]\nhost = [\"other.example\"]\npool = \"a\"\n\
         [[route]]\npath_prefix = \"/api\"\npool = \"a\"\n\
         [[route]]\npath = \"/api/x\"\npool = \"b\"\n\
         [pools.a]\nservers = [\"{0}\"]\n[pools.b]\nservers = [\"{0}\"]\n",
        b.addr
    );
    let e = explained(&config, "GET https://shop.example/api/x", &[], None);
    // Routes are numbered from 1, as in the access log and the metrics.
    assert_eq!(e.route, Some(2), "{e}");
    assert_eq!(e.routes_tried.len(), 2);
    assert_eq!(e.routes_tried[0].miss.as_deref(), Some("host"));
    assert_eq!(e.routes_tried[1].miss, None);
    assert_eq!(e.also_matching.len(), 1);
    assert_eq!(e.also_matching[0].route, 3);
    assert_eq!(e.answer, "forwarded to pool `a`");
    let text = e.to_string();
    assert!(text.contains("shadowed  #3 line"), "{text}");
    assert!(text.contains("#2 line 4 -> a: MATCH"), "{text}");
    // The running instance agrees: the request goes to pool a.
    let lg = langur_toml(&config).await;
    let r = request(
        lg.listen_addrs()[0],
        http::Method::GET,
        "/api/x",
        &[("host", "shop.example")],
        body(""),
    )
    .await;
    assert_eq!(r.status, 200);
    // No route: every route tried, each with its miss.
    let e = explained(&config, "GET http://shop.example/other", &[], None);
    assert_eq!(e.route, None);
    assert_eq!(e.routes_tried.len(), 3);
    assert_eq!(e.routes_tried[1].miss.as_deref(), Some("path_prefix"));
    assert_eq!(e.routes_tried[2].miss.as_deref(), Some("path"));
    assert!(e.answer.starts_with("404"), "{}", e.answer);
}

#[tokio::test]
async fn a_rewrite_and_header_rules_are_shown_as_the_server_gets_them() {
    let b = Backend::start("b").await;
    let config = format!(
        "[[route]]\npath_prefix = \"/v1\"\nstrip_prefix = \"/v1\"\npool = \"p\"\n\
         request_headers = {{ set = {{ \"x-client\" = \"{{client_ip}}\" }}, remove = [\"x-debug\"] }}\n\
         [pools.p]\nservers = [\"{}\"]\n",
        b.addr
    );
    let e = explained(
        &config,
        "GET http://shop.example/v1/orders?page=2",
        &["X-Debug: 1"],
        Some("198.51.100.7"),
    );
    assert!(
        e.rules
            .iter()
            .any(|r| r == "rewrite: /v1/orders -> /orders"),
        "{e}"
    );
    assert!(
        e.rules
            .iter()
            .any(|r| r == "request header set: x-client: 198.51.100.7"),
        "{e}"
    );
    assert!(
        e.rules
            .iter()
            .any(|r| r == "request header removed: x-debug"),
        "{e}"
    );
    let up = e.upstream.as_ref().unwrap();
    assert_eq!(up.target, "GET /orders?page=2");
    assert!(up
        .headers
        .iter()
        .any(|(n, v)| n == "x-forwarded-for" && v == "198.51.100.7"));
    // What a real request makes of it.
    let lg = langur_toml(&config).await;
    let r = request(
        lg.listen_addrs()[0],
        http::Method::GET,
        "/v1/orders?page=2",
        &[("host", "shop.example"), ("x-debug", "1")],
        body(""),
    )
    .await;
    assert_eq!(r.status, 200);
    assert_eq!(
        b.arrivals.lock().unwrap().last().unwrap().1,
        "/orders?page=2"
    );
    let seen = b.last_headers.lock().unwrap().clone().unwrap();
    assert!(seen.get("x-debug").is_none());
    assert_eq!(seen.get("x-client").unwrap(), "127.0.0.1");
}

#[test]
fn a_client_behind_a_chain_of_trusted_proxies_is_found_and_said_how() {
    let config = "[server]\ntrusted_proxies = [\"10.0.0.0/8\"]\n\
         [[route]]\npath_prefix = \"/\"\ndeny = [\"203.0.113.9\"]\npool = \"p\"\n\
         [pools.p]\nservers = [\"127.0.0.1:9\"]\n";
    let chain = "X-Forwarded-For: 6.6.6.6, 198.51.100.20, 10.9.9.9";
    let e = explained(
        config,
        "GET http://shop.example/",
        &[chain],
        Some("10.1.2.3"),
    );
    assert_eq!(e.client.address, "198.51.100.20", "{e}");
    assert!(e.client.trusted);
    assert!(
        e.client.derived.contains("10.1.2.3 is in trusted_proxies"),
        "{e}"
    );
    assert!(e.answer.starts_with("forwarded"), "{e}");
    // The same field from a peer not trusted is not believed.
    let e = explained(
        config,
        "GET http://shop.example/",
        &[chain],
        Some("192.0.2.50"),
    );
    assert_eq!(e.client.address, "192.0.2.50");
    assert!(e.client.derived.contains("not in trusted_proxies"), "{e}");
    // The client found behind the chain is the one `deny` sees.
    let chain = "X-Forwarded-For: 203.0.113.9, 10.9.9.9";
    let e = explained(
        config,
        "GET http://shop.example/",
        &[chain],
        Some("10.1.2.3"),
    );
    assert_eq!(e.client.address, "203.0.113.9");
    assert!(e.answer.starts_with("403"), "{e}");
}

#[test]
fn a_response_with_set_cookie_is_not_stored_and_says_why() {
    let config = "[[route]]\npath_prefix = \"/\"\npool = \"p\"\ncache = true\n\
         [pools.p]\nservers = [\"127.0.0.1:9\"]\n";
    let url = "GET https://shop.example/product/1?b=2&a=1";
    let cookie = ["Cache-Control: max-age=60", "Set-Cookie: session=1"];
    let e = explained_with(config, url, &[], None, &cookie);
    let c = e.cache.as_ref().unwrap();
    assert_eq!(c.key, "https://shop.example/product/1?b=2&a=1", "{e}");
    assert!(!c.storable);
    assert_eq!(c.why, "set-cookie");
    assert_eq!(c.stored_now, None);
    let e = explained_with(config, url, &[], None, &["Cache-Control: max-age=60"]);
    let c = e.cache.as_ref().unwrap();
    assert!(c.storable, "{e}");
    assert_eq!(c.why, "stored, fresh for 60 s");
    // A request that bypasses the cache says so.
    let e = explained_with(config, url, &["X-HTTP-Method-Override: DELETE"], None, &[]);
    let bypass = e.cache.as_ref().unwrap().bypass.clone().unwrap();
    assert!(bypass.contains("fwd=bypass"), "{bypass}");
}

#[tokio::test]
async fn a_server_in_maintenance_is_not_usable_on_the_admin_api() {
    let (a, b) = (Backend::start("a").await, Backend::start("b").await);
    let lg = start_with_admin(toml_config(&format!(
        "[[route]]\npath_prefix = \"/\"\npool = \"web\"\n[pools.web]\nservers = [\"{}\", \"{}\"]\n",
        a.addr, b.addr
    )))
    .await;
    let admin = lg.admin_addr().unwrap();
    let host = admin.to_string();
    let post = request(
        admin,
        http::Method::POST,
        &format!("/api/servers/web/{}/state", a.addr),
        &[("host", &host), ("content-type", "application/json")],
        body("{\"state\":\"maint\"}"),
    )
    .await;
    assert_eq!(post.status, 200, "{}", post.text());
    let path = "/api/explain?request=GET%20http://shop.example/x&from=10.1.2.3";
    let r = request(admin, http::Method::GET, path, &[("host", &host)], body("")).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let v: Value = serde_json::from_slice(&r.body).unwrap();
    let servers = v["pool"]["servers"].as_array().unwrap();
    assert_eq!(servers[0]["state"], "maint", "{v}");
    assert_eq!(servers[0]["usable"], false);
    assert_eq!(servers[0]["why_not"], "maint");
    assert_eq!(servers[1]["usable"], true);
    assert_eq!(v["client"]["address"], "10.1.2.3");
    assert_eq!(v["pool"]["balance"], "round-robin");
    for bad in [
        "/api/explain?nope=1",
        "/api/explain?request=GET%20http://a/&format=xml",
        "/api/explain?request=GET%20http://a/&request=GET%20http://b/",
        "/api/explain?request=GET%20/x",
    ] {
        let r = request(admin, http::Method::GET, bad, &[("host", &host)], body("")).await;
        assert_eq!(r.status, 400, "{bad}: {}", r.text());
    }
}

/// Explain runs what the connection and the trace phase do before routing: a head over
/// `max_header_size` is 431, and with `[tracing]` the server gets this hop's traceparent.
#[test]
fn explain_sees_the_head_limit_and_the_trace_phase() {
    let config = "[tracing]\nratio = 1.0\n[[route]]\npath_prefix = \"/\"\npool = \"a\"\n\
                  [pools.a]\nservers = [\"127.0.0.1:9\"]\n";
    let big = format!("X-Big: {}", "b".repeat(40 << 10));
    let e = explained(config, "GET http://a/x", &[&big], None);
    assert!(e.answer.starts_with("431"), "{e}");
    let parent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
    let tp = format!("traceparent: {parent}");
    let e = explained(config, "GET http://a/x", &[&tp], None);
    let sent = &e.upstream.as_ref().unwrap().headers;
    let up = &sent.iter().find(|(n, _)| n == "traceparent").unwrap().1;
    assert!(
        up.starts_with("00-0af7651916cd43dd8448eb211c80319c-"),
        "{up}"
    );
    assert_ne!(up, parent, "a span of this hop");
    assert!(e.rules.iter().any(|r| r.contains("trace continued")), "{e}");
    let e = explained(
        config,
        "GET http://a/x",
        &["traceparent: 00-0AF7-bad"],
        None,
    );
    assert!(e.rules.iter().any(|r| r.contains("trace started")), "{e}");
}

#[test]
fn the_command_explains_from_a_file() {
    let dir = crate::common::Scratch::new("explain");
    let file = dir.join("explain.toml");
    std::fs::write(
        &file,
        "[[route]]\npath_prefix = \"/api\"\npool = \"api\"\ncache = true\n\
         [pools.api]\nservers = [\"127.0.0.1:9\"]\n",
    )
    .unwrap();
    let out = Command::new(BIN)
        .args(["explain", "-c"])
        .arg(&file)
        .args([
            "GET https://shop.example/api/x",
            "-H",
            "Cookie: a=b",
            "--from",
            "10.1.2.3",
        ])
        .args(["--response-header", "Set-Cookie: s=1"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains("routes    #1 line ") && text.contains("-> api: MATCH"),
        "{text}"
    );
    assert!(text.contains("client    10.1.2.3 (https)"), "{text}");
    assert!(text.contains("key https://shop.example/api/x"), "{text}");
    assert!(text.contains("not stored: set-cookie"), "{text}");
    assert!(text.contains("127.0.0.1:9 alive: usable"), "{text}");
    let bad = Command::new(BIN)
        .args(["explain", "-c"])
        .arg(&file)
        .args(["GET ftp://x/"])
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("URL scheme `ftp`"));
}
