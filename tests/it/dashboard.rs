//! The dashboard in a real headless Chromium (Debian's `chromium` and `chromium-driver`, which
//! `.ci/run` installs): load it, send traffic and watch the count and the graphs (requests,
//! server response time) move, drain a server from the page, clear the cache; without a caching
//! route the cache card is not shown. A screenshot is kept as `dashboard.png` in the test
//! artifacts directory (`$CARGO_TARGET_TMPDIR`).
//!
//! Without Chromium the test says so and passes, except under CI (`CI` set), where a missing
//! browser is a failure.

use crate::common;

use common::*;
use fantoccini::{Client, ClientBuilder, Locator};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const CHROMIUM: &str = "/usr/bin/chromium";
const DRIVER: &str = "/usr/bin/chromedriver";

struct Driver(Child);

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

async fn start_driver() -> (Driver, u16) {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let child = Command::new(DRIVER)
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("chromedriver starts");
    let started = Instant::now();
    while tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .is_err()
    {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "chromedriver did not listen"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    (Driver(child), port)
}

async fn browser(port: u16) -> Client {
    let mut caps = serde_json::Map::new();
    caps.insert(
        "goog:chromeOptions".into(),
        serde_json::json!({
            "binary": CHROMIUM,
            "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                     "--disable-background-networking", "--window-size=1400,1100"],
        }),
    );
    ClientBuilder::rustls()
        .expect("tls")
        .capabilities(caps)
        .connect(&format!("http://127.0.0.1:{port}"))
        .await
        .expect("a Chromium session")
}

/// The page re-renders every second: an element found just before a render goes stale, so
/// reads are retried a few times.
async fn text(c: &Client, css: &str) -> String {
    for _ in 0..10 {
        if let Ok(e) = c.find(Locator::Css(css)).await {
            if let Ok(t) = e.text().await {
                return t;
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("cannot read the text of {css}");
}

/// The text of `css`, or empty when it is not on the page (yet).
async fn text_now(c: &Client, css: &str) -> String {
    match c.find(Locator::Css(css)).await {
        Ok(e) => e.text().await.unwrap_or_default(),
        Err(_) => String::new(),
    }
}

async fn attr(c: &Client, css: &str, name: &str) -> String {
    for _ in 0..10 {
        if let Ok(e) = c.find(Locator::Css(css)).await {
            if let Ok(a) = e.attr(name).await {
                return a.unwrap_or_default();
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("cannot read {name} of {css}");
}

/// Polls `check` until it holds or `limit` passes.
async fn eventually<F, Fut>(what: &str, limit: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = Instant::now();
    while !check().await {
        assert!(start.elapsed() < limit, "timed out waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn number(s: &str) -> u64 {
    s.replace(',', "").trim().parse().unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboard_in_headless_chromium() {
    if !std::path::Path::new(CHROMIUM).exists() || !std::path::Path::new(DRIVER).exists() {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI must install chromium and chromium-driver (see .ci/run)"
        );
        eprintln!("SKIPPED: {CHROMIUM} or {DRIVER} is not installed");
        return;
    }
    let a = Backend::start("a").await;
    let b = Backend::start("b").await;
    let l = start_with_admin(toml_config(&format!(
        "[[route]]\nmatch = ['^/']\npool = 'web'\ncache = true\n[pools.web]\nservers = ['{}', '{}']\n[cache]\nmax_size = '1 MiB'\n",
        a.addr, b.addr
    )))
    .await;
    let proxy = l.listen_addrs()[0];
    let admin = l.admin_addr().unwrap();
    // A few entries in the cache, so clearing it shows.
    let cache = l.shared().runtime.load().cache.clone();
    for i in 0..5 {
        let obj = langur::cache::Object::new(
            http::StatusCode::OK,
            http::HeaderMap::new(),
            bytes::Bytes::from(vec![b'x'; 20_000]),
            0,
            600,
            0,
            0,
            false,
            false,
        );
        cache.insert(
            &format!("http://test.local/e{i}"),
            &http::HeaderMap::new(),
            obj,
        );
    }

    let (_driver, port) = start_driver().await;
    let c = browser(port).await;
    c.goto(&format!("http://{admin}/")).await.unwrap();
    eventually(
        "the page shows live stats",
        Duration::from_secs(10),
        || async { text(&c, "#live-text").await == "live" },
    )
    .await;
    assert_eq!(text(&c, "#cache-entries").await, "5");

    // Traffic: the count and the graph move.
    let load = tokio::spawn(async move {
        for _ in 0..6 {
            for _ in 0..40 {
                get(proxy, "/page").await;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    });
    eventually(
        "the request count moves",
        Duration::from_secs(10),
        || async { number(&text(&c, "#requests").await) >= 40 },
    )
    .await;
    // The route's row: its rate over the last seconds.
    let route = "tr[data-route=\"1\"]";
    eventually(
        "the route's rate shows",
        Duration::from_secs(10),
        || async {
            text(&c, &format!("{route} .rate"))
                .await
                .parse::<f64>()
                .unwrap_or(0.0)
                >= 1.0
        },
    )
    .await;
    eventually(
        "the graph draws the traffic",
        Duration::from_secs(15),
        || async {
            number(&attr(&c, "#rps-graph", "data-points").await) >= 2
                && attr(&c, "#rps-graph", "data-max")
                    .await
                    .parse::<f64>()
                    .unwrap_or(0.0)
                    > 1.0
        },
    )
    .await;
    load.await.unwrap();
    eventually("all requests counted", Duration::from_secs(5), || async {
        number(&text(&c, "#requests").await) == 240
    })
    .await;
    eventually(
        "the route counts them all",
        Duration::from_secs(5),
        || async { number(&text(&c, &format!("{route} .requests")).await) == 240 },
    )
    .await;
    // Bytes per second to and from clients.
    eventually("the bytes graph draws", Duration::from_secs(5), || async {
        number(&attr(&c, "#bytes-graph", "data-points").await) >= 2
            && attr(&c, "#bytes-graph", "data-max")
                .await
                .parse::<f64>()
                .unwrap_or(0.0)
                > 1000.0
    })
    .await;
    let p95: f64 = text(&c, &format!("{route} .p95")).await.parse().unwrap();
    assert!(p95 > 0.0, "the route's p95 over the minute");

    // The latency graph: p50, p95 and p99 per second from the servers' histograms (20 ms
    // answers land in the 25 ms bucket).
    for i in 0..10 {
        get(proxy, &format!("/slow/20?{i}")).await;
    }
    eventually(
        "the latency graph draws",
        Duration::from_secs(10),
        || async {
            number(&attr(&c, "#latency-graph", "data-points").await) >= 2
                && attr(&c, "#latency-graph", "data-max")
                    .await
                    .parse::<f64>()
                    .unwrap_or(0.0)
                    >= 20.0
        },
    )
    .await;
    let card = c.find(Locator::Id("cache-card")).await.unwrap();
    assert!(
        card.is_displayed().await.unwrap(),
        "a caching route: the card shows"
    );
    let certs = c.find(Locator::Id("certs-card")).await.unwrap();
    assert!(
        !certs.is_displayed().await.unwrap(),
        "no TLS: no certificates card"
    );

    // Drain server a from the page.
    let row = format!("tr[data-server=\"web/{}\"]", a.addr);
    c.find(Locator::Css(&format!(
        "{row} button[data-action=\"drain\"]"
    )))
    .await
    .unwrap()
    .click()
    .await
    .unwrap();
    eventually("the row shows drain", Duration::from_secs(5), || async {
        text(&c, &format!("{row} .state")).await == "drain"
    })
    .await;
    let stats: serde_json::Value =
        serde_json::from_slice(&get(admin, "/api/stats").await.body).unwrap();
    let sa = stats["pools"][0]["servers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["address"] == a.addr.to_string())
        .unwrap()
        .clone();
    assert_eq!(sa["operator"], "drain");

    // Clear the cache (the page asks to confirm).
    c.find(Locator::Id("cache-clear"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    c.accept_alert().await.unwrap();
    eventually("entries go to 0", Duration::from_secs(5), || async {
        text(&c, "#cache-entries").await == "0"
    })
    .await;
    assert_eq!(cache.stats().entries, 0);

    let png = c.screenshot().await.unwrap();
    let dir = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("dashboard.png");
    std::fs::write(&path, png).unwrap();
    eprintln!("screenshot: {}", path.display());

    // Without a caching route there is no cache card; with a TLS certificate, a certificates
    // card lists it.
    let pki = crate::tls_h2::Pki::new("dashboard");
    let (cert, key, _) = pki.issue("site", &["site.example"]);
    let plain = start_with_admin(toml_config(&format!(
        "[[route]]\nmatch = ['^/']\npool = 'web'\n[pools.web]\nservers = ['{}']\n[tls]\nlisten = ['127.0.0.1:0']\ncertificates = [{{ cert = '{}', key = '{}' }}]\n",
        a.addr,
        crate::tls_h2::p(&cert),
        crate::tls_h2::p(&key)
    )))
    .await;
    let plain_admin = plain.admin_addr().unwrap();
    c.goto(&format!("http://{plain_admin}/")).await.unwrap();
    eventually("no cache card", Duration::from_secs(10), || async {
        let card = c.find(Locator::Id("cache-card")).await.unwrap();
        text(&c, "#live-text").await == "live" && !card.is_displayed().await.unwrap()
    })
    .await;
    eventually("a certificates card", Duration::from_secs(10), || async {
        let card = c.find(Locator::Id("certs-card")).await.unwrap();
        card.is_displayed().await.unwrap()
            && text(&c, "#certs").await.contains("site.example")
            && text(&c, "#certs").await.contains("file")
    })
    .await;
    let fleet = c.find(Locator::Id("fleet-card")).await.unwrap();
    assert!(
        !fleet.is_displayed().await.unwrap(),
        "no [cluster]: no fleet card"
    );

    // With [cluster], the fleet card lists the instances.
    let redis = crate::cluster::Redis::start().await;
    let member = |name| {
        format!(
            "[[route]]\nmatch = ['^/']\npool = 'web'\n[pools.web]\nservers = ['{}']\n{}",
            a.addr,
            crate::cluster::cluster_section(&redis.url(), name)
        )
    };
    let edge = start_with_admin(toml_config(&member("edge-1"))).await;
    let _other = langur_toml(&member("edge-2")).await;
    c.goto(&format!("http://{}/", edge.admin_addr().unwrap()))
        .await
        .unwrap();
    eventually(
        "the fleet card lists both",
        Duration::from_secs(10),
        || async {
            text_now(&c, "tr[data-instance=\"edge-2\"] td").await == "edge-2"
                && text_now(&c, "#fleet-redis")
                    .await
                    .eq_ignore_ascii_case("redis up")
        },
    )
    .await;
    assert!(text(&c, "tr[data-instance=\"edge-1\"]")
        .await
        .contains("this one"));
    c.close().await.unwrap();
    drop(b);
}
