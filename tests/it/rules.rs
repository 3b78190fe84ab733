//! Virtual hosts, request matching and route rules end to end: hosts (exact, wildcard, regex),
//! path matchers, methods, headers, queries and sources pick routes; redirects, fixed answers,
//! rewrites, header rules, request IDs, access rules, basic auth and error pages act on them.
use crate::common;
use common::*;
use http::{Method, StatusCode};
use std::net::SocketAddr;

async fn get_host(at: SocketAddr, host: &str, path: &str) -> Resp {
    request(at, Method::GET, path, &[("host", host)], body("")).await
}

/// A directory of files for a test (error pages, users files).
fn dir(tag: &str) -> crate::common::Scratch {
    crate::common::Scratch::new(&format!("rules-{tag}"))
}

#[tokio::test]
async fn hosts_pick_pools_on_one_listener() {
    let (shop, blog, api, any) = (
        Backend::start("shop").await,
        Backend::start("blog").await,
        Backend::start("api").await,
        Backend::start("any").await,
    );
    let lg = langur_toml(&format!(
        r#"
[[route]]
host = ["shop.example", "www.shop.example"]
pool = "shop"
[[route]]
host = ["*.blog.example"]
pool = "blog"
[[route]]
host = ['~^api[0-9]+\.example\.net$']
pool = "api"
[[route]]
path_prefix = "/"
pool = "any"
[pools.shop]
servers = ["{}"]
[pools.blog]
servers = ["{}"]
[pools.api]
servers = ["{}"]
[pools.any]
servers = ["{}"]
"#,
        shop.addr, blog.addr, api.addr, any.addr
    ))
    .await;
    let at = lg.listen_addrs()[0];
    for (host, want) in [
        ("shop.example", "shop"),
        ("SHOP.example:8080", "shop"),
        ("www.shop.example.", "shop"),
        ("me.blog.example", "blog"),
        ("blog.example", "any"),
        ("a.b.blog.example", "any"),
        ("api7.example.net", "api"),
        ("api.example.net", "any"),
        ("other.example", "any"),
    ] {
        assert_eq!(get_host(at, host, "/").await.backend(), want, "{host}");
    }
    // The absolute form's authority is the host (RFC 9112 3.2.2), as for the cache key.
    let r = request(
        at,
        Method::GET,
        "http://shop.example/x",
        &[("host", "other.example")],
        body(""),
    )
    .await;
    assert_eq!(r.backend(), "shop");
}

#[tokio::test]
async fn paths_methods_headers_queries_and_sources() {
    let (a, b) = (Backend::start("a").await, Backend::start("b").await);
    let lg = langur_toml(&format!(
        r#"
[[route]]
path = "/exact"
pool = "a"
[[route]]
path_prefix = "/api/"
methods = ["POST"]
pool = "a"
[[route]]
path_prefix = "/h"
headers = {{ "x-env" = "canary", "user-agent" = "~bot", "x-skip" = "!" }}
pool = "a"
[[route]]
path_prefix = "/q"
query = {{ "debug" = "1" }}
pool = "a"
[[route]]
path_prefix = "/src"
source = ["10.0.0.0/8"]
pool = "a"
[[route]]
path_prefix = "/"
pool = "b"
[pools.a]
servers = ["{}"]
[pools.b]
servers = ["{}"]
"#,
        a.addr, b.addr
    ))
    .await;
    let at = lg.listen_addrs()[0];
    let send = |m: Method, p: &'static str, h: Vec<(&'static str, &'static str)>| async move {
        request(at, m, p, &h, body("")).await.backend()
    };
    assert_eq!(send(Method::GET, "/exact", vec![]).await, "a");
    assert_eq!(send(Method::GET, "/exact/", vec![]).await, "b");
    assert_eq!(send(Method::GET, "/exact?x=1", vec![]).await, "a");
    assert_eq!(send(Method::POST, "/api", vec![]).await, "a");
    assert_eq!(send(Method::POST, "/api/x", vec![]).await, "a");
    assert_eq!(
        send(Method::POST, "/apix", vec![]).await,
        "b",
        "segment-aware"
    );
    assert_eq!(send(Method::GET, "/api/x", vec![]).await, "b", "method");
    let canary = vec![("x-env", "canary"), ("user-agent", "googlebot")];
    assert_eq!(send(Method::GET, "/h", canary.clone()).await, "a");
    let mut skipped = canary.clone();
    skipped.push(("x-skip", "1"));
    assert_eq!(
        send(Method::GET, "/h", skipped).await,
        "b",
        "`!` means absent"
    );
    assert_eq!(
        send(
            Method::GET,
            "/h",
            vec![("x-env", "canary"), ("user-agent", "curl")]
        )
        .await,
        "b"
    );
    assert_eq!(send(Method::GET, "/q?a=2&debug=1", vec![]).await, "a");
    assert_eq!(send(Method::GET, "/q?debug=2", vec![]).await, "b");
    assert_eq!(send(Method::GET, "/q", vec![]).await, "b");
    assert_eq!(
        send(Method::GET, "/src", vec![]).await,
        "b",
        "127.0.0.1 is not 10/8"
    );
}

#[tokio::test]
async fn source_matches_the_client_address() {
    let (a, b) = (Backend::start("a").await, Backend::start("b").await);
    let lg = langur_toml(&format!(
        "[[route]]\npath_prefix = \"/\"\nsource = [\"127.0.0.0/8\"]\npool = \"a\"\n\
         [[route]]\npath_prefix = \"/\"\npool = \"b\"\n\
         [pools.a]\nservers = [\"{}\"]\n[pools.b]\nservers = [\"{}\"]\n",
        a.addr, b.addr
    ))
    .await;
    assert_eq!(get(lg.listen_addrs()[0], "/").await.backend(), "a");
}

#[tokio::test]
async fn redirects_and_fixed_answers() {
    let lg = langur_toml(
        r#"
[[route]]
host = ["old.example"]
redirect = { to = "https://new.example{path_and_query}", status = 301 }
[[route]]
path = "/healthz"
respond = { status = 200, body = "ok\n" }
[[route]]
match = '^/users/([0-9]+)$'
redirect = { to = "/people/$1" }
"#,
    )
    .await;
    let at = lg.listen_addrs()[0];
    let r = get_host(at, "old.example", "/a/b?c=d").await;
    assert_eq!(r.status, StatusCode::MOVED_PERMANENTLY);
    assert_eq!(r.headers["location"], "https://new.example/a/b?c=d");
    let r = get(at, "/healthz").await;
    assert_eq!((r.status, r.text().as_str()), (StatusCode::OK, "ok\n"));
    assert_eq!(r.headers["content-type"], "text/plain; charset=utf-8");
    let r = get(at, "/users/42").await;
    assert_eq!(r.status, StatusCode::FOUND, "302 by default");
    assert_eq!(r.headers["location"], "/people/42");
}

#[tokio::test]
async fn http_is_redirected_to_https_with_path_and_query() {
    let b = Backend::start("b").await;
    let lg = langur_toml(&format!(
        "[server]\nredirect_http_to_https = true\nhsts = \"max-age=63072000; includeSubDomains\"\n\
         [[route]]\nmatch = '^/'\npool = \"p\"\n[pools.p]\nservers = [\"{}\"]\n",
        b.addr
    ))
    .await;
    let r = get_host(lg.listen_addrs()[0], "Site.Example:80", "/a?b=1").await;
    assert_eq!(r.status, StatusCode::PERMANENT_REDIRECT);
    assert_eq!(r.headers["location"], "https://site.example/a?b=1");
    assert!(
        r.headers.get("strict-transport-security").is_none(),
        "HSTS only on TLS answers (RFC 6797 7.2)"
    );
    assert_eq!(b.hits(), 0);
}

#[tokio::test]
async fn rewrites_reach_the_server_and_the_log() {
    let b = Backend::start("b").await;
    let lg = langur_toml(&format!(
        r#"
[[route]]
path_prefix = "/api"
strip_prefix = "/api"
add_prefix = "/v2"
pool = "p"
[[route]]
path_prefix = "/old"
rewrite = {{ from = '^/old/(.*)$', to = '/new/$1' }}
pool = "p"
[[route]]
path_prefix = "/"
pool = "p"
[pools.p]
servers = ["{}"]
"#,
        b.addr
    ))
    .await;
    let at = lg.listen_addrs()[0];
    get(at, "/api/users?x=1").await;
    get(at, "/api").await;
    get(at, "/old/a/b").await;
    get(at, "/apix").await;
    let seen: Vec<String> = b
        .arrivals
        .lock()
        .unwrap()
        .iter()
        .map(|a| a.1.clone())
        .collect();
    assert_eq!(seen, ["/v2/users?x=1", "/v2", "/new/a/b", "/apix"]);
}

#[tokio::test]
async fn header_rules_both_ways_and_host_override() {
    let b = Backend::start("b").await;
    let lg = langur_toml(&format!(
        r#"
[[route]]
path_prefix = "/"
pool = "p"
request_headers = {{ set = {{ host = "{{upstream_host}}", "x-client" = "{{client_ip}} {{scheme}} {{host}}" }}, add = {{ "x-tag" = "a" }}, remove = ["x-secret"] }}
response_headers = {{ set = {{ "x-frame-options" = "DENY", "x-path" = "{{path}}" }}, remove = ["x-backend"] }}
[pools.p]
servers = ["{}"]
"#,
        b.addr
    ))
    .await;
    let at = lg.listen_addrs()[0];
    let r = request(
        at,
        Method::GET,
        "/headers",
        &[
            ("host", "site.example"),
            ("x-secret", "s"),
            ("x-tag", "client"),
        ],
        body(""),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    let seen = b.last_headers.lock().unwrap().clone().unwrap();
    assert_eq!(seen["host"], b.addr.to_string());
    assert_eq!(seen["x-client"], "127.0.0.1 http site.example");
    assert!(seen.get("x-secret").is_none());
    let tags: Vec<_> = seen.get_all("x-tag").iter().collect();
    assert_eq!(tags, ["client", "a"]);
    assert_eq!(r.headers["x-frame-options"], "DENY");
    assert_eq!(r.headers["x-path"], "/headers");
    assert!(r.headers.get("x-backend").is_none());
}

#[tokio::test]
async fn request_ids_are_made_kept_returned_and_forwarded() {
    let b = Backend::start("b").await;
    let lg = langur_toml(&format!(
        "[server]\nrequest_id = true\n[[route]]\nmatch = '^/'\npool = \"p\"\n[pools.p]\nservers = [\"{}\"]\n",
        b.addr
    ))
    .await;
    let at = lg.listen_addrs()[0];
    let r = get(at, "/").await;
    let id = r.headers["x-request-id"].to_str().unwrap().to_string();
    assert_eq!(id.len(), 36, "a UUID: {id}");
    assert_eq!(&id[14..15], "7", "version 7: {id}");
    assert_eq!(
        b.last_headers.lock().unwrap().as_ref().unwrap()["x-request-id"],
        id.as_str()
    );
    let kept = request(
        at,
        Method::GET,
        "/",
        &[("x-request-id", "abc-123")],
        body(""),
    )
    .await;
    assert_eq!(kept.headers["x-request-id"], "abc-123");
    let replaced = request(
        at,
        Method::GET,
        "/",
        &[("x-request-id", "a b<script>")],
        body(""),
    )
    .await;
    assert_ne!(replaced.headers["x-request-id"], "a b<script>");
    // Errors carry it too.
    let lg2 = langur_toml("[server]\nrequest_id = \"X-Trace\"\n[[route]]\npath = \"/only\"\nrespond = { body = \"x\" }\n").await;
    let r = get(lg2.listen_addrs()[0], "/none").await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert!(r.headers.contains_key("x-trace"));
}

#[tokio::test]
async fn deny_and_allow() {
    let b = Backend::start("b").await;
    let lg = langur_toml(&format!(
        r#"
[[route]]
path_prefix = "/admin"
allow = ["10.0.0.0/8"]
pool = "p"
[[route]]
path_prefix = "/"
deny = ["127.0.0.1"]
pool = "p"
[pools.p]
servers = ["{}"]
"#,
        b.addr
    ))
    .await;
    let at = lg.listen_addrs()[0];
    assert_eq!(get(at, "/admin").await.status, StatusCode::FORBIDDEN);
    assert_eq!(get(at, "/x").await.status, StatusCode::FORBIDDEN);
    assert_eq!(b.hits(), 0);
}

#[tokio::test]
async fn basic_auth_then_credentials_stay_here() {
    let b = Backend::start("b").await;
    let d = dir("auth");
    let hash = bcrypt::hash("s3cret", 4).unwrap();
    std::fs::write(d.join("htpasswd"), format!("# staging\nalice:{hash}\n")).unwrap();
    let lg = langur_toml(&format!(
        r#"
[[route]]
path_prefix = "/"
basic_auth = {{ realm = "staging", users_file = "{}" }}
pool = "p"
[pools.p]
servers = ["{}"]
"#,
        d.join("htpasswd").display(),
        b.addr
    ))
    .await;
    let at = lg.listen_addrs()[0];
    let r = get(at, "/headers").await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        r.headers["www-authenticate"],
        "Basic realm=\"staging\", charset=\"UTF-8\""
    );
    use base64::Engine;
    let good = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode("alice:s3cret")
    );
    let bad = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode("alice:nope")
    );
    let r = request(
        at,
        Method::GET,
        "/headers",
        &[("authorization", &bad)],
        body(""),
    )
    .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert_eq!(b.hits(), 0);
    let r = request(
        at,
        Method::GET,
        "/headers",
        &[("authorization", &good)],
        body(""),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(!r.text().contains("authorization"), "{}", r.text());
    assert_eq!(b.hits(), 1);
}

#[tokio::test]
async fn error_pages_for_langur_and_intercepted_server_errors() {
    let b = Backend::start("b").await;
    let dead = dead_addr().await;
    let d = dir("pages");
    std::fs::write(d.join("502.html"), "<h1>our 502</h1>").unwrap();
    std::fs::write(d.join("5xx.html"), "<h1>our 5xx</h1>").unwrap();
    std::fs::write(d.join("404.html"), "<h1>nothing here</h1>").unwrap();
    let lg = langur_toml(&format!(
        r#"
[server]
error_pages = {{ "404" = "{d}/404.html" }}
[[route]]
path_prefix = "/dead"
pool = "dead"
error_pages = {{ "5xx" = "{d}/5xx.html", "502" = "{d}/502.html" }}
[[route]]
path_prefix = "/status"
pool = "p"
intercept_errors = true
error_pages = {{ "5xx" = "{d}/5xx.html" }}
[[route]]
path_prefix = "/plain"
pool = "p"
[pools.dead]
servers = ["{dead}"]
[pools.p]
servers = ["{}"]
"#,
        b.addr,
        d = d.display()
    ))
    .await;
    let at = lg.listen_addrs()[0];
    let r = get(at, "/dead").await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(r.text(), "<h1>our 5xx</h1>");
    assert_eq!(r.headers["content-type"], "text/html; charset=utf-8");
    let r = get(at, "/status/500").await;
    assert_eq!(r.status, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(r.text(), "<h1>our 5xx</h1>", "intercepted");
    let r = get(at, "/status/404").await;
    assert_eq!(
        r.text(),
        "<h1>nothing here</h1>",
        "[server] pages apply to intercepted errors"
    );
    let r = get(at, "/status/418").await;
    assert_eq!(
        r.text(),
        "b says 418",
        "no page for it: the server's is kept"
    );
    let r = get(at, "/plain/status/500").await;
    assert_eq!(
        r.text(),
        "b",
        "a route without intercept_errors passes the server's"
    );
    let r = get(at, "/nowhere").await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_eq!(
        r.text(),
        "<h1>nothing here</h1>",
        "[server] pages for langur's own"
    );
}

#[tokio::test]
async fn a_dead_pool_gets_the_502_page() {
    let lg_dir = dir("p502");
    std::fs::write(lg_dir.join("502.html"), "bad gateway page").unwrap();
    // A server that accepts and closes: a broken exchange is langur's 502.
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            if let Ok((mut s, _)) = l.accept().await {
                use tokio::io::AsyncReadExt;
                let mut buf = [0u8; 1024];
                let _ = s.read(&mut buf).await;
                drop(s);
            }
        }
    });
    let lg = langur_toml(&format!(
        "[[route]]\npath_prefix = \"/\"\npool = \"p\"\nerror_pages = {{ \"502\" = \"{}/502.html\" }}\n[pools.p]\nservers = [\"{addr}\"]\n",
        lg_dir.display()
    ))
    .await;
    let r = get(lg.listen_addrs()[0], "/x").await;
    assert_eq!(r.status, StatusCode::BAD_GATEWAY);
    assert_eq!(r.text(), "bad gateway page");
}

#[test]
fn bad_rules_name_file_line_and_key() {
    let cases: &[(&str, usize, &str)] = &[
        ("[[route]]\nhost = [\"a b\"]\npool = \"p\"\n", 2, "host"),
        ("[[route]]\npath_prefix = \"api\"\npool = \"p\"\n", 2, "path_prefix"),
        ("[[route]]\npath_prefix = \"/\"\nmethods = [\"get\"]\npool = \"p\"\n", 3, "methods"),
        ("[[route]]\npath_prefix = \"/\"\nsource = [\"10.0.0.0/33\"]\npool = \"p\"\n", 3, "source"),
        ("[[route]]\npath_prefix = \"/\"\nheaders = { \"x\" = \"~(\" }\npool = \"p\"\n", 3, "headers.x"),
        ("[[route]]\npath_prefix = \"/\"\nredirect = { to = \"/x\" }\npool = \"p\"\n", 3, "redirect"),
        ("[[route]]\npath_prefix = \"/\"\nredirect = { to = \"/x\", status = 200 }\n", 3, "redirect.status"),
        ("[[route]]\npath_prefix = \"/\"\nredirect = { to = \"/{nope}\" }\n", 3, "redirect.to"),
        ("[[route]]\npath_prefix = \"/\"\nredirect = { to = \"/$1\" }\n", 3, "redirect.to"),
        ("[[route]]\npath_prefix = \"/\"\nrewrite = { from = \"(\", to = \"/\" }\npool = \"p\"\n", 3, "rewrite.from"),
        ("[[route]]\npath_prefix = \"/\"\nrequest_headers = { set = { \"transfer-encoding\" = \"x\" } }\npool = \"p\"\n", 3, "request_headers.set"),
        ("[[route]]\npath_prefix = \"/\"\nresponse_headers = { set = { \"host\" = \"x\" } }\npool = \"p\"\n", 3, "response_headers.set"),
        ("[[route]]\npath_prefix = \"/\"\nbasic_auth = { users_file = \"/nonexistent/htpasswd\" }\npool = \"p\"\n", 3, "basic_auth.users_file"),
        ("[[route]]\npath_prefix = \"/\"\nerror_pages = { \"502\" = \"/nonexistent/502.html\" }\npool = \"p\"\n", 3, "error_pages.502"),
        ("[[route]]\npath_prefix = \"/\"\nerror_pages = { \"200\" = \"/dev/null\" }\npool = \"p\"\n", 3, "error_pages.200"),
        ("[[route]]\npath_prefix = \"/\"\ncache = true\ncache_ttl = { \"2xxx\" = \"1m\" }\npool = \"p\"\n", 4, "cache_ttl.2xxx"),
        ("[[route]]\npath_prefix = \"/\"\nredirec = { to = \"/\" }\npool = \"p\"\n", 0, "redirect"),
        ("[[route]]\npool = \"p\"\n", 0, "needs a matcher"),
        ("[server]\nhsts = \"includeSubDomains\"\n", 2, "hsts"),
    ];
    for (text, line, want) in cases {
        let text = format!("{text}[pools.p]\nservers = [\"127.0.0.1:9\"]\n");
        let errors = langur::config::parse_str("test.toml", &text, true)
            .err()
            .unwrap_or_else(|| panic!("accepted:\n{text}"));
        let shown = errors.to_string();
        let found = errors.0.iter().any(|e| {
            e.file == "test.toml"
                && if *line == 0 {
                    e.message.contains(want)
                } else {
                    e.line == *line && e.key.as_deref() == Some(*want)
                }
        });
        assert!(
            found,
            "want {want:?} on line {line} in:\n{shown}\nfor:\n{text}"
        );
    }
    // Plain-text passwords are refused with a hint.
    let d = dir("plain");
    std::fs::write(d.join("users"), "bob:hunter2\n").unwrap();
    let text = format!(
        "[[route]]\npath_prefix = \"/\"\nbasic_auth = {{ users_file = \"{}\" }}\npool = \"p\"\n[pools.p]\nservers = [\"127.0.0.1:9\"]\n",
        d.join("users").display()
    );
    let e = langur::config::parse_str("test.toml", &text, true)
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("plain"), "{e}");
}

#[test]
fn shadowed_routes_are_warned_about() {
    let config = toml_config(
        "[[route]]\nhost = [\"a.example\"]\npath_prefix = \"/\"\npool = \"p\"\n\
         [[route]]\nhost = [\"a.example\"]\npath_prefix = \"/api\"\npool = \"p\"\n\
         [[route]]\nhost = [\"b.example\"]\npath_prefix = \"/api\"\npool = \"p\"\n\
         [pools.p]\nservers = [\"127.0.0.1:9\"]\n",
    );
    let w: Vec<String> = config.warnings.iter().map(|w| w.to_string()).collect();
    assert_eq!(w.len(), 1, "{w:?}");
    assert!(
        w[0].contains("test.toml:5") && w[0].contains("line 1"),
        "{w:?}"
    );
}

/// The access log (the binary's, on stdout) names the request ID and the path a rewrite sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_access_log_shows_the_request_id_and_the_rewritten_path() {
    use tokio::io::AsyncBufReadExt;
    let b = Backend::start("b").await;
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let d = dir("log");
    let cfg = d.join("log.toml");
    std::fs::write(
        &cfg,
        format!(
            "[server]\nlisten = [\"{port}\"]\nrequest_id = true\n\
             [[route]]\npath_prefix = \"/api\"\nstrip_prefix = \"/api\"\npool = \"p\"\n\
             [pools.p]\nservers = [\"{}\"]\n",
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
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    let id = loop {
        assert!(tokio::time::Instant::now() < deadline, "no answer");
        if let Ok(s) = tokio::net::TcpStream::connect(port).await {
            drop(s);
            let r = request(
                port,
                Method::GET,
                "/api/x?y=1",
                &[("x-request-id", "req-42")],
                body(""),
            )
            .await;
            break r.headers["x-request-id"].to_str().unwrap().to_string();
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    };
    assert_eq!(id, "req-42");
    let line = tokio::time::timeout(std::time::Duration::from_secs(10), async {
        while let Ok(Some(l)) = lines.next_line().await {
            if l.contains("langur::access") || l.contains("status=") {
                return l;
            }
        }
        String::new()
    })
    .await
    .unwrap();
    assert!(line.contains("request_id=req-42"), "{line}");
    assert!(line.contains("rewritten=/x"), "{line}");
    assert!(line.contains("path=/api/x"), "{line}");
}

/// A route's error pages and response header rules apply to every answer it gives: its own
/// 401 and 403, its redirects and fixed answers, not only the server's.
#[tokio::test]
async fn route_rules_dress_the_routes_own_answers() {
    let d = dir("own");
    std::fs::write(d.join("403.html"), "not for you").unwrap();
    let lg = langur_toml(&format!(
        r#"
[[route]]
path = "/deny"
deny = ["127.0.0.0/8"]
respond = {{ body = "x" }}
error_pages = {{ "403" = "{d}/403.html" }}
response_headers = {{ set = {{ "x-r" = "yes" }} }}
[[route]]
path = "/r"
respond = {{ body = "x" }}
response_headers = {{ set = {{ "x-r" = "yes" }}, remove = ["content-type"] }}
[[route]]
path = "/go"
redirect = {{ to = "/there" }}
response_headers = {{ add = {{ "cache-control" = "no-store" }} }}
"#,
        d = d.display()
    ))
    .await;
    let at = lg.listen_addrs()[0];
    let r = get(at, "/deny").await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert_eq!(r.text(), "not for you");
    assert_eq!(r.headers["x-r"], "yes");
    let r = get(at, "/r").await;
    assert_eq!(r.text(), "x");
    assert_eq!(r.headers["x-r"], "yes");
    assert!(r.headers.get("content-type").is_none());
    let r = get(at, "/go").await;
    assert_eq!(r.status, StatusCode::FOUND);
    assert_eq!(r.headers["cache-control"], "no-store");
}

/// A rule that sets `Host` leaves `X-Forwarded-Host` naming the client's host.
#[tokio::test]
async fn a_host_rule_keeps_the_forwarded_host() {
    let b = Backend::start("b").await;
    let lg = langur_toml(&format!(
        "[[route]]\npath_prefix = \"/\"\nrequest_headers = {{ set = {{ host = \"origin.example\" }} }}\npool = \"p\"\n[pools.p]\nservers = [\"{}\"]\n",
        b.addr
    ))
    .await;
    let at = lg.listen_addrs()[0];
    get_host(at, "site.example", "/").await;
    let seen = b.last_headers.lock().unwrap().clone().unwrap();
    assert_eq!(seen["host"], "origin.example");
    assert_eq!(seen["x-forwarded-host"], "site.example");
    request(
        at,
        Method::GET,
        "http://abs.example/",
        &[("host", "abs.example")],
        body(""),
    )
    .await;
    let seen = b.last_headers.lock().unwrap().clone().unwrap();
    assert_eq!(seen["host"], "origin.example");
    assert_eq!(seen["x-forwarded-host"], "abs.example");
}

/// With `redirect_http_to_https`, a plain request that names no host cannot be redirected and
/// is not served either.
#[tokio::test]
async fn an_https_redirect_without_a_host_is_refused() {
    let b = Backend::start("b").await;
    let lg = langur_toml(&format!(
        "[server]\nredirect_http_to_https = true\n[[route]]\nmatch = '^/'\npool = \"p\"\n[pools.p]\nservers = [\"{}\"]\n",
        b.addr
    ))
    .await;
    let out = raw(
        lg.listen_addrs()[0],
        b"GET / HTTP/1.0\r\n\r\n",
        std::time::Duration::from_secs(2),
    )
    .await;
    assert!(
        out.starts_with("HTTP/1.0 400") || out.starts_with("HTTP/1.1 400"),
        "{out}"
    );
    assert_eq!(b.hits(), 0);
}

/// File names in a configuration (`root`, `users_file`, error pages, `respond.file`) are
/// relative to the configuration file's directory, wherever langur is started from.
#[test]
fn file_names_are_relative_to_the_configuration() {
    let d = dir("relative");
    std::fs::create_dir_all(d.join("www")).unwrap();
    std::fs::write(d.join("hello.txt"), "hi").unwrap();
    let text = "[[route]]\npath = \"/hello\"\nrespond = { file = \"hello.txt\" }\n\
                [[route]]\npath_prefix = \"/\"\nroot = \"www\"\n";
    let file = d.join("site.toml");
    let config = langur::config::parse_str(&file.display().to_string(), text, true)
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        config.routes[1].root.as_deref(),
        Some(d.join("www").canonicalize().unwrap().as_path())
    );
    let e = langur::config::parse_str("elsewhere/site.toml", text, true)
        .err()
        .unwrap()
        .to_string();
    assert!(
        e.contains("elsewhere/site.toml:3") && e.contains("hello.txt"),
        "{e}"
    );
}

/// `check`'s warnings: a wildcard route before an exact name it covers, an HTTPS redirect or
/// HSTS without a TLS listener; a bad host is one error, not two.
#[test]
fn more_warnings_and_single_errors() {
    let config = toml_config(
        "[server]\nredirect_http_to_https = true\nhsts = \"max-age=60\"\n\
         [[route]]\nhost = [\"*.x.example\"]\npath_prefix = \"/\"\npool = \"p\"\n\
         [[route]]\nhost = [\"q.x.example\"]\npool = \"p\"\n\
         [pools.p]\nservers = [\"127.0.0.1:9\"]\n",
    );
    let w: Vec<String> = config.warnings.iter().map(|w| w.to_string()).collect();
    assert!(
        w.iter()
            .any(|w| w.contains("test.toml:8") && w.contains("never used")),
        "{w:?}"
    );
    assert!(
        w.iter().any(|w| w.contains("redirect_http_to_https")),
        "{w:?}"
    );
    assert!(w.iter().any(|w| w.contains("hsts")), "{w:?}");
    let e = langur::config::parse_str(
        "test.toml",
        "[[route]]\nhost = [\"*.*.example\"]\npool = \"p\"\n[pools.p]\nservers = [\"127.0.0.1:9\"]\n",
        true,
    )
    .err()
    .unwrap();
    assert_eq!(e.0.len(), 1, "{e}");
}

/// ACME HTTP-01 challenges stay on plain HTTP under `redirect_http_to_https`.
#[tokio::test]
async fn acme_challenges_are_not_redirected() {
    let b = Backend::start("b").await;
    let lg = langur_toml(&format!(
        "[server]\nredirect_http_to_https = true\n[[route]]\nmatch = '^/'\npool = \"p\"\n[pools.p]\nservers = [\"{}\"]\n",
        b.addr
    ))
    .await;
    let at = lg.listen_addrs()[0];
    let r = get_host(at, "site.example", "/.well-known/acme-challenge/token").await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.backend(), "b");
    let r = get_host(at, "site.example", "/.well-known/other").await;
    assert_eq!(r.status, StatusCode::PERMANENT_REDIRECT);
    // Only a CA's GET or HEAD of one token is exempt: anything else under the path is
    // redirected like every other plain request.
    for path in [
        "/.well-known/acme-challenge/a/b",
        "/.well-known/acme-challenge/",
        "/.well-known/acme-challenge/a.b",
    ] {
        let r = get_host(at, "site.example", path).await;
        assert_eq!(r.status, StatusCode::PERMANENT_REDIRECT, "{path}");
    }
    let post = "POST /.well-known/acme-challenge/token HTTP/1.1\r\nHost: site.example\r\n\
                Content-Length: 0\r\nConnection: close\r\n\r\n";
    let answer = raw(at, post.as_bytes(), std::time::Duration::from_secs(5)).await;
    assert!(answer.starts_with("HTTP/1.1 308"), "{answer}");
}

/// Routes that share a URL do not share cache entries: what a password-protected or
/// header-selected route stored is never served on another route.
#[tokio::test]
async fn routes_do_not_share_cache_entries() {
    let (secret, public) = (
        Backend::start("secret").await,
        Backend::start("public").await,
    );
    let d = dir("cacheauth");
    let hash = bcrypt::hash("pw", 4).unwrap();
    std::fs::write(d.join("users"), format!("u:{hash}\n")).unwrap();
    let lg = langur_toml(&format!(
        r#"
[cache]
default_ttl = "60s"
[[route]]
host = ["shop.example"]
headers = {{ "x-preview" = "1" }}
basic_auth = {{ users_file = "{}" }}
pool = "secret"
cache = true
[[route]]
host = ["shop.example"]
pool = "public"
cache = true
[pools.secret]
servers = ["{}"]
[pools.public]
servers = ["{}"]
"#,
        d.join("users").display(),
        secret.addr,
        public.addr
    ))
    .await;
    let at = lg.listen_addrs()[0];
    use base64::Engine;
    let auth = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode("u:pw")
    );
    let hdrs = [
        ("host", "shop.example"),
        ("x-preview", "1"),
        ("authorization", auth.as_str()),
    ];
    let r = request(at, Method::GET, "/page", &hdrs, body("")).await;
    assert_eq!(r.backend(), "secret");
    let r = request(at, Method::GET, "/page", &hdrs, body("")).await;
    assert_eq!(r.backend(), "secret");
    assert!(
        r.headers["cache-status"].to_str().unwrap().contains("hit"),
        "stored on its route"
    );
    let r = get_host(at, "shop.example", "/page").await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(
        r.backend(),
        "public",
        "the other route's entry is not served here"
    );
    let r = get_host(at, "shop.example", "/page").await;
    assert_eq!(r.backend(), "public");
    let r = request(at, Method::GET, "/page", &hdrs, body("")).await;
    assert_eq!(r.backend(), "secret", "nor the other way round");
}

/// Hosts that servers split differently from langur (a port that is not a number) are
/// refused, so host routes and access rules cannot be stepped around.
#[tokio::test]
async fn hosts_servers_would_read_differently_are_refused() {
    let b = Backend::start("b").await;
    let lg = langur_toml(&format!(
        "[[route]]\nhost = [\"secret.example\"]\ndeny = [\"127.0.0.0/8\"]\npool = \"p\"\n\
         [[route]]\npath_prefix = \"/\"\npool = \"p\"\n[pools.p]\nservers = [\"{}\"]\n",
        b.addr
    ))
    .await;
    let at = lg.listen_addrs()[0];
    assert_eq!(
        get_host(at, "secret.example", "/").await.status,
        StatusCode::FORBIDDEN
    );
    for host in [
        "secret.example:abc",
        "secret.example..",
        "[secret.example]",
        "secret.example;x",
    ] {
        assert_eq!(
            get_host(at, host, "/").await.status,
            StatusCode::BAD_REQUEST,
            "{host}"
        );
    }
    assert_eq!(b.hits(), 0);
}

/// Path variants that servers read as `/admin` (`//admin`, `;` parameters, an encoded
/// slash) are under `/admin` for routing; a rewrite cannot make dot-segments, queries or
/// fragments from client data: refused, not forwarded as they were.
#[tokio::test]
async fn paths_cannot_step_around_prefix_rules_or_rewrites() {
    let b = Backend::start("b").await;
    let lg = langur_toml(&format!(
        r#"
[[route]]
path_prefix = "/admin"
deny = ["127.0.0.0/8"]
pool = "p"
[[route]]
match = '^/files-(.*)$'
rewrite = {{ from = '^/files-(.*)$', to = '/files/$1' }}
pool = "p"
[[route]]
path_prefix = "/t"
rewrite = {{ from = '^/t/(.*)$', to = '/t/{{header.x-tenant}}/$1' }}
pool = "p"
[[route]]
path_prefix = "/"
pool = "p"
[pools.p]
servers = ["{}"]
"#,
        b.addr
    ))
    .await;
    let at = lg.listen_addrs()[0];
    for p in [
        "/admin",
        "//admin",
        "/admin;x",
        "/admin;/x",
        "/admin%2Fx",
        "/x/../admin",
    ] {
        assert_eq!(get(at, p).await.status, StatusCode::FORBIDDEN, "{p}");
    }
    assert_eq!(
        get(at, "/x/..%2Fadmin").await.status,
        StatusCode::BAD_REQUEST
    );
    assert_eq!(
        get(at, "/files-../admin").await.status,
        StatusCode::BAD_REQUEST
    );
    for tenant in ["../admin", "a?b=c", "a#f", "a b"] {
        let r = request(
            at,
            Method::GET,
            "/t/page",
            &[("x-tenant", tenant)],
            body(""),
        )
        .await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{tenant}");
    }
    let r = request(
        at,
        Method::GET,
        "/t/page?q=1",
        &[("x-tenant", "acme")],
        body(""),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    let seen: Vec<String> = b
        .arrivals
        .lock()
        .unwrap()
        .iter()
        .map(|a| a.1.clone())
        .collect();
    assert_eq!(
        seen,
        ["/t/acme/page?q=1"],
        "nothing else reached the server"
    );
}

/// A page or users file that is a FIFO or a device is a config error at once, never a hang
/// or an endless read; a second request-ID field never rides along with a kept one.
#[tokio::test]
async fn special_files_and_duplicate_ids() {
    let d = dir("special");
    let fifo = d.join("fifo");
    let _ = std::fs::remove_file(&fifo);
    assert!(std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap()
        .success());
    for (key, file) in [
        (
            "error_pages = { \"502\" = \"FILE\" }",
            fifo.display().to_string(),
        ),
        ("respond = { file = \"FILE\" }", "/dev/zero".to_string()),
        (
            "basic_auth = { users_file = \"FILE\" }",
            fifo.display().to_string(),
        ),
    ] {
        let text = format!(
            "[[route]]\npath_prefix = \"/\"\n{}\npool = \"p\"\n[pools.p]\nservers = [\"127.0.0.1:9\"]\n",
            key.replace("FILE", &file)
        );
        let t = std::time::Instant::now();
        let e = langur::config::parse_str("test.toml", &text, true)
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("regular file"), "{e}");
        assert!(t.elapsed() < std::time::Duration::from_secs(2));
    }
    let b = Backend::start("b").await;
    let lg = langur_toml(&format!(
        "[server]\nrequest_id = true\n[[route]]\nmatch = '^/'\npool = \"p\"\n[pools.p]\nservers = [\"{}\"]\n",
        b.addr
    ))
    .await;
    let at = lg.listen_addrs()[0];
    request(
        at,
        Method::GET,
        "/",
        &[
            ("x-request-id", "good-id"),
            ("x-request-id", "evil\" injected=1"),
        ],
        body(""),
    )
    .await;
    let seen = b.last_headers.lock().unwrap().clone().unwrap();
    let ids: Vec<_> = seen.get_all("x-request-id").iter().collect();
    assert_eq!(ids, ["good-id"]);
}
