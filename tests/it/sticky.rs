//! Sticky sessions (a pool's `sticky`, insert and prefix modes: a client stays on its server
//! while it can serve, moves with a new cookie when it cannot) and traffic splits across pools
//! (`pools`), sticky per client.

use crate::common::*;
use http::Method;
use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;

async fn with_cookie(at: SocketAddr, cookie: &str) -> Resp {
    let headers: &[(&str, &str)] = if cookie.is_empty() {
        &[]
    } else {
        &[("cookie", cookie)]
    };
    request(at, Method::GET, "/session", headers, body("")).await
}

/// The response's `Set-Cookie` of the cookie `name`, if any.
fn set_cookie(r: &Resp, name: &str) -> Option<String> {
    r.headers
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_string())
        .find(|v| v.starts_with(&format!("{name}=")))
}

async fn set_state(admin: SocketAddr, server: &str, state: &str) {
    let host = admin.to_string();
    let r = request(
        admin,
        Method::POST,
        &format!("/api/servers/web/{server}/state"),
        &[("host", &host)],
        body(state.to_string()),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
}

fn pool(backends: &[&Backend], sticky: &str) -> String {
    let servers: Vec<String> = backends
        .iter()
        .map(|b| format!("  {{ address = '{}', name = '{}' }},\n", b.addr, b.name))
        .collect();
    format!(
        "[[route]]\nmatch = '^/'\npool = 'web'\n[pools.web]\nsticky = {sticky}\nserver = [\n{}]\n",
        servers.concat()
    )
}

#[tokio::test]
async fn insert_mode_keeps_a_client_on_its_server_until_it_cannot_serve() {
    let (a, b, c) = (
        Backend::start("a").await,
        Backend::start("b").await,
        Backend::start("c").await,
    );
    let sticky =
        "{ cookie = 'SRV', mode = 'insert', max_age = '1h', secure = true, httponly = true }";
    let l = start_with_admin(toml_config(&pool(&[&a, &b, &c], sticky))).await;
    let (p, admin) = (l.listen_addrs()[0], l.admin_addr().unwrap());

    // Every new client gets a cookie naming the server that answered: opaque, one per server.
    let mut given: HashMap<String, String> = HashMap::new();
    for _ in 0..6 {
        let r = with_cookie(p, "theme=dark").await;
        assert_eq!(r.text(), "theme=dark");
        let set = set_cookie(&r, "SRV").unwrap();
        let (pair, attributes) = set.split_once("; ").unwrap();
        assert_eq!(attributes, "Path=/; Max-Age=3600; Secure; HttpOnly");
        let value = pair.strip_prefix("SRV=").unwrap();
        assert!(value.len() == 32 && value.bytes().all(|b| b.is_ascii_hexdigit()));
        given.insert(r.backend(), pair.to_string());
    }
    assert_eq!(given.len(), 3, "{given:?}");
    let values: HashSet<&String> = given.values().collect();
    assert_eq!(values.len(), 3);

    // With it, the client stays; the server never sees langur's cookie; no new cookie is set.
    let home = "b";
    let cookie = format!("theme=dark; {}", given[home]);
    for _ in 0..12 {
        let r = with_cookie(p, &cookie).await;
        assert_eq!(r.backend(), home);
        assert_eq!(r.text(), "theme=dark");
        assert_eq!(set_cookie(&r, "SRV"), None);
    }

    // Unknown or malformed values are ignored: balanced as a new client, and a cookie set.
    let unknown = format!("SRV={}", "0123456789abcdef".repeat(2));
    for bad in [unknown.as_str(), "SRV=../../x", "SRV=", "SRV=B"] {
        let r = with_cookie(p, &format!("{bad}; k=v")).await;
        assert_eq!(r.status, 200);
        assert_eq!(r.text(), "k=v");
        assert!(set_cookie(&r, "SRV").unwrap().starts_with("SRV="), "{bad}");
    }

    // A draining server keeps its clients (and takes no new ones).
    set_state(admin, home, "drain").await;
    for _ in 0..4 {
        assert_eq!(with_cookie(p, &cookie).await.backend(), home);
        assert_ne!(with_cookie(p, "").await.backend(), home);
    }

    // In maintenance it cannot serve: the client moves, with a cookie naming its new server,
    // and stays there.
    set_state(admin, home, "maint").await;
    let r = with_cookie(p, &cookie).await;
    assert_eq!(r.status, 200);
    let moved = r.backend();
    assert_ne!(moved, home);
    let new = set_cookie(&r, "SRV").unwrap();
    assert!(new.starts_with(&given[&moved]), "{new}");
    for _ in 0..6 {
        let r = with_cookie(p, &given[&moved]).await;
        assert_eq!(r.backend(), moved);
        assert_eq!(set_cookie(&r, "SRV"), None);
    }
    // Back in service, the old cookie finds its server again.
    set_state(admin, home, "ready").await;
    assert_eq!(with_cookie(p, &cookie).await.backend(), home);
    drop(l);
}

#[tokio::test]
async fn a_server_that_fails_to_connect_passes_its_client_on_with_a_new_cookie() {
    let a = Backend::start("a").await;
    let b = Backend::start("b").await;
    let text = pool(
        &[&a, &b],
        "{ cookie = 'SRV', secret = 'a shared secret of some length' }",
    );
    let first = langur_toml(&text).await;
    let mut given: HashMap<String, String> = HashMap::new();
    for _ in 0..2 {
        let r = with_cookie(first.listen_addrs()[0], "").await;
        // Plain HTTP and `secure` not set: no `Secure`; a session cookie (no `Max-Age`).
        let set = set_cookie(&r, "SRV").unwrap();
        let (pair, attributes) = set.split_once("; ").unwrap();
        assert_eq!(attributes, "Path=/; HttpOnly");
        given.insert(r.backend(), pair.to_string());
    }
    drop(first);
    // Another instance with the same secret reads the same cookies (a restart, or a second
    // instance behind one name).
    let second = langur_toml(&text).await;
    let p = second.listen_addrs()[0];
    for name in ["a", "b", "a"] {
        assert_eq!(with_cookie(p, &given[name]).await.backend(), name);
    }
    drop(second);
    // `a` is gone (its address refuses connections): its client is served by `b` and told so.
    let dead = dead_addr().await;
    let moved = text.replace(&a.addr.to_string(), &dead.to_string());
    let third = langur_toml(&moved).await;
    let p = third.listen_addrs()[0];
    let r = with_cookie(p, &given["a"]).await;
    assert_eq!((r.status.as_u16(), r.backend().as_str()), (200, "b"));
    assert!(set_cookie(&r, "SRV").unwrap().starts_with(&given["b"]));
    assert_eq!(set_cookie(&with_cookie(p, &given["b"]).await, "SRV"), None);
}

#[tokio::test]
async fn prefix_mode_rides_on_the_applications_session_cookie() {
    let (a, b) = (Backend::start("a").await, Backend::start("b").await);
    let sticky = "{ cookie = 'JSESSIONID', mode = 'prefix' }";
    let l = start_with_admin(toml_config(&pool(&[&a, &b], sticky))).await;
    let (p, admin) = (l.listen_addrs()[0], l.admin_addr().unwrap());

    // The application's cookie goes out with the server's value in front of its own.
    let r = with_cookie(p, "").await;
    let home = r.backend();
    let set = set_cookie(&r, "JSESSIONID").unwrap();
    let (value, rest) = set
        .strip_prefix("JSESSIONID=")
        .unwrap()
        .split_once('~')
        .unwrap();
    assert_eq!(value.len(), 32);
    assert_eq!(rest, format!("{home}-session; Path=/; HttpOnly"));
    let cookie = format!("x=1; JSESSIONID={value}~{home}-session");

    // Back in, the prefix picks the server and comes off: the application sees its own value.
    for _ in 0..8 {
        let r = with_cookie(p, &cookie).await;
        assert_eq!(r.backend(), home);
        assert_eq!(r.text(), format!("x=1; JSESSIONID={home}-session"));
        assert_eq!(set_cookie(&r, "JSESSIONID"), None);
    }
    // A value without langur's prefix is the application's business only.
    let r = with_cookie(p, "JSESSIONID=zzz").await;
    assert_eq!(r.text(), "JSESSIONID=zzz");

    // The server goes into maintenance: the next one gets the application's value without the
    // prefix, and the session it starts comes back prefixed with its own.
    set_state(admin, &home, "maint").await;
    let r = with_cookie(p, &cookie).await;
    let other = r.backend();
    assert_ne!(other, home);
    assert_eq!(r.text(), format!("x=1; JSESSIONID={home}-session"));
    let set = set_cookie(&r, "JSESSIONID").unwrap();
    let (new_value, rest) = set
        .strip_prefix("JSESSIONID=")
        .unwrap()
        .split_once('~')
        .unwrap();
    assert_ne!(new_value, value);
    assert!(rest.starts_with(&format!("{other}-session")));
    let cookie = format!("JSESSIONID={new_value}~{other}-session");
    for _ in 0..4 {
        assert_eq!(with_cookie(p, &cookie).await.backend(), other);
    }
}

/// Requests on a few kept-alive connections at once; the answering backend of each.
async fn backends_of(at: SocketAddr, total: usize, cookie: &str) -> Vec<String> {
    use http_body_util::BodyExt;
    let conns = 4;
    let mut tasks = Vec::new();
    for _ in 0..conns {
        let cookie = cookie.to_string();
        tasks.push(tokio::spawn(async move {
            let stream = tokio::net::TcpStream::connect(at).await.unwrap();
            let (mut send, conn) =
                hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
                    .await
                    .unwrap();
            tokio::spawn(conn);
            let mut seen = Vec::new();
            for _ in 0..total / conns {
                let mut req = http::Request::get("/").header("host", "test.local");
                if !cookie.is_empty() {
                    req = req.header("cookie", cookie.as_str());
                }
                let resp = send
                    .send_request(
                        req.body(http_body_util::Empty::<bytes::Bytes>::new())
                            .unwrap(),
                    )
                    .await
                    .unwrap();
                assert_eq!(resp.status(), 200);
                let name = resp.headers()["x-backend"].to_str().unwrap().to_string();
                resp.into_body().collect().await.unwrap();
                seen.push(name);
            }
            seen
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    all
}

#[tokio::test]
async fn a_split_sends_its_share_to_each_pool_and_keeps_sticky_clients_on_theirs() {
    let (v1, v2) = (Backend::start("v1").await, Backend::start("v2").await);
    let l = langur_toml(&format!(
        "[[route]]\npath_prefix = '/'\npools = [{{ pool = 'v1', weight = 95 }}, {{ pool = 'v2', weight = 5 }}]\n[pools.v1]\nsticky = {{ cookie = 'SRV' }}\nservers = ['{}']\n[pools.v2]\nsticky = {{ cookie = 'SRV' }}\nservers = ['{}']\n",
        v1.addr, v2.addr
    ))
    .await;
    let p = l.listen_addrs()[0];

    let seen = backends_of(p, 10_000, "").await;
    assert_eq!(seen.len(), 10_000);
    let share = seen.iter().filter(|b| *b == "v2").count() as f64 / 10_000.0;
    assert!((share - 0.05).abs() <= 0.02, "v2 took {share}");

    // A client keeps its side of the split: its cookie names a server of that pool.
    let mut cookies: HashMap<String, String> = HashMap::new();
    for _ in 0..40 {
        let r = with_cookie(p, "").await;
        let pair = set_cookie(&r, "SRV")
            .unwrap()
            .split_once("; ")
            .unwrap()
            .0
            .to_string();
        cookies.insert(r.backend(), pair);
    }
    assert_eq!(cookies.len(), 2);
    for side in ["v1", "v2"] {
        let seen = backends_of(p, 200, &cookies[side]).await;
        assert!(seen.iter().all(|b| b == side), "{side}: {seen:?}");
    }
}
