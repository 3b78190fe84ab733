//! The admin API: every endpoint, the token rule, GET never mutating, CSV and Prometheus
//! output read back by parsers, and reload.

use crate::common;

use common::*;
use http::{Method, StatusCode};
use serde_json::Value;
use std::net::SocketAddr;
use std::time::Duration;

/// A request to the admin API as a browser or curl on this machine sends it: `Host` is the
/// address it connected to (unless the test gives one).
async fn admin_req(
    a: SocketAddr,
    method: Method,
    path: &str,
    headers: &[(&str, &str)],
    b: &str,
) -> Resp {
    let host = a.to_string();
    let mut h: Vec<(&str, &str)> = headers.to_vec();
    if !h.iter().any(|(k, _)| k.eq_ignore_ascii_case("host")) {
        h.push(("host", &host));
    }
    request(a, method, path, &h, body(b.to_string())).await
}

async fn admin_get(a: SocketAddr, path: &str, headers: &[(&str, &str)]) -> Resp {
    admin_req(a, Method::GET, path, headers, "").await
}

async fn admin_post(a: SocketAddr, path: &str, json: &str) -> Resp {
    admin_req(
        a,
        Method::POST,
        path,
        &[("content-type", "application/json")],
        json,
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
    // A target langur refuses (a bad escape): a request error of the listener's.
    let bad = raw(
        p,
        b"GET /%zz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        Duration::from_secs(2),
    )
    .await;
    assert!(bad.starts_with("HTTP/1.1 400"), "{bad}");
    // The FRONTEND row's rates are the sampler's (one a second): read once it has one.
    let mut text = String::new();
    for _ in 0..60 {
        let r = admin_get(l.admin_addr().unwrap(), "/stats.csv", &[]).await;
        assert_eq!(r.status, 200);
        text = r.text();
        let front = text
            .lines()
            .find(|l| l.contains(",FRONTEND,"))
            .unwrap_or("");
        if front
            .split(',')
            .nth(46)
            .is_some_and(|v| v != "0" && !v.is_empty())
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
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
    // HAProxy's positions, which tools read by.
    let col = |n: &str| header.iter().position(|h| h == n).unwrap();
    for (i, name) in [
        (7, "stot"),
        (8, "bin"),
        (9, "bout"),
        (10, "dreq"),
        (12, "ereq"),
    ] {
        assert_eq!(col(name), i, "{name}");
    }
    for (i, name) in [
        (33, "rate"),
        (46, "req_rate"),
        (76, "algo"),
        (79, "conn_tot"),
    ] {
        assert_eq!(col(name), i, "{name}");
    }
    let rows: Vec<csv::StringRecord> = reader.records().map(|r| r.unwrap()).collect();
    assert_eq!(
        rows.len(),
        4,
        "the listener's FRONTEND row, two servers and the BACKEND row"
    );
    let front = &rows[0];
    let n = |name: &str| -> u64 {
        front[col(name)]
            .parse()
            .unwrap_or_else(|_| panic!("{name}: {:?}", &front[col(name)]))
    };
    assert_eq!(&front[0], p.to_string());
    assert_eq!(&front[col("svname")], "FRONTEND");
    assert_eq!(&front[col("status")], "OPEN");
    assert_eq!(&front[col("type")], "0");
    assert_eq!(&front[col("mode")], "http");
    assert_eq!((n("hrsp_2xx"), n("hrsp_4xx"), n("req_tot")), (4, 1, 5));
    assert_eq!((n("ereq"), n("dreq")), (1, 0));
    // Each request above came on a connection of its own; the bytes are whole requests and
    // responses, heads included.
    assert_eq!((n("stot"), n("conn_tot"), n("dcon")), (5, 5, 0));
    assert!(n("scur") <= 5);
    // The most open at once, as read by the sampler (it has run: the rates are in), and the
    // process's limit.
    assert!(n("smax") >= n("scur") && n("smax") <= 5, "{front:?}");
    assert_eq!(n("slim"), 20_000);
    assert!(n("bin") > 5 * 18 && n("bout") > 5 * 40, "{front:?}");
    assert!(n("req_rate") >= 1 && n("req_rate_max") >= n("req_rate"));
    assert!(n("rate") >= 1 && n("conn_rate") == n("rate"));
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
    assert_eq!(&backend[col("algo")], "roundrobin");
    let stats = parse(&admin_get(l.admin_addr().unwrap(), "/api/stats", &[]).await);
    assert_eq!(stats["pools"][0]["balance"], "round-robin");
}

/// One sample of a scrape: name, labels, value.
#[derive(Debug)]
struct Sample {
    name: String,
    labels: std::collections::BTreeMap<String, String>,
    value: f64,
}

fn labels_of(text: &str) -> std::collections::BTreeMap<String, String> {
    let mut out = std::collections::BTreeMap::new();
    let mut rest = text;
    while !rest.is_empty() {
        let (k, after) = rest.split_once("=\"").expect("label=\"value\"");
        let mut value = String::new();
        let mut chars = after.char_indices();
        let end = loop {
            match chars.next().expect("closed label value") {
                (_, '\\') => value.push(chars.next().unwrap().1),
                (i, '"') => break i,
                (_, c) => value.push(c),
            }
        };
        assert!(
            out.insert(k.to_string(), value).is_none(),
            "label {k} twice"
        );
        rest = after[end + 1..].trim_start_matches(',');
    }
    out
}

/// Reads a scrape as strictly as Prometheus and OpenMetrics parsers do, and checks what they
/// check: every sample belongs to the family typed just before it, under that format's naming
/// (text 0.0.4: a counter is typed under its `_total` name; OpenMetrics: without it), each
/// series once, `# EOF` last in OpenMetrics and absent from text, counters non-negative, and
/// every histogram's buckets non-decreasing, ending with `+Inf` equal to `_count`.
fn strict_scrape(text: &str, openmetrics: bool) -> Vec<Sample> {
    let mut types: std::collections::HashMap<String, String> = Default::default();
    let mut current: Option<(String, String)> = None;
    let mut samples = Vec::new();
    let mut seen = std::collections::HashSet::new();
    let lines: Vec<&str> = text.lines().collect();
    if openmetrics {
        assert_eq!(lines.last(), Some(&"# EOF"), "OpenMetrics ends with # EOF");
        assert!(text.ends_with("# EOF\n"));
        assert_eq!(lines.iter().filter(|l| **l == "# EOF").count(), 1);
    } else {
        assert!(!text.contains("# EOF"), "text 0.0.4 has no # EOF");
    }
    for line in lines {
        if line == "# EOF" {
            continue;
        }
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap();
            assert!(
                types.insert(name.to_string(), kind.to_string()).is_none(),
                "{name} typed twice"
            );
            if !openmetrics && kind == "counter" {
                assert!(name.ends_with("_total"), "text counter family {name}");
            }
            if openmetrics && kind == "counter" {
                assert!(
                    !name.ends_with("_total"),
                    "OpenMetrics counter family {name}"
                );
            }
            current = Some((name.to_string(), kind.to_string()));
            continue;
        }
        if line.starts_with('#') {
            assert!(line.starts_with("# HELP "), "unexpected comment {line}");
            continue;
        }
        let (series, value) = line.rsplit_once(' ').unwrap();
        let value: f64 = match value {
            "+Inf" => f64::INFINITY,
            v => v.parse().unwrap_or_else(|_| panic!("value of {line}")),
        };
        let (name, labels) = match series.split_once('{') {
            Some((n, l)) => (n, labels_of(l.strip_suffix('}').unwrap())),
            None => (series, Default::default()),
        };
        let (family, kind) = current
            .clone()
            .unwrap_or_else(|| panic!("{name} before any TYPE"));
        let suffix = name
            .strip_prefix(family.as_str())
            .unwrap_or_else(|| panic!("{name} is not in the family typed before it ({family})"));
        let allowed: &[&str] = match (kind.as_str(), openmetrics) {
            ("counter", true) => &["_total"],
            ("histogram", _) => &["_bucket", "_sum", "_count"],
            _ => &[""],
        };
        assert!(
            allowed.contains(&suffix),
            "{name} in {kind} family {family}"
        );
        if kind == "counter" {
            assert!(value >= 0.0 && value.is_finite(), "{line}");
        }
        assert!(seen.insert(series.to_string()), "series twice: {series}");
        samples.push(Sample {
            name: name.to_string(),
            labels,
            value,
        });
    }
    // Histograms.
    for (family, _) in types.iter().filter(|(_, k)| *k == "histogram") {
        // Per label set (without `le`): the (bound, count) buckets and `_count`.
        type Buckets = (Vec<(f64, f64)>, Option<f64>);
        let mut series: std::collections::BTreeMap<String, Buckets> = Default::default();
        for s in samples
            .iter()
            .filter(|s| s.name.starts_with(family.as_str()))
        {
            let mut l = s.labels.clone();
            let le = l.remove("le");
            let key = format!("{l:?}");
            let e = series.entry(key).or_default();
            if s.name == format!("{family}_bucket") {
                let le = le.expect("a bucket has le");
                let bound = if le == "+Inf" {
                    f64::INFINITY
                } else {
                    le.parse().unwrap()
                };
                e.0.push((bound, s.value));
            } else if s.name == format!("{family}_count") {
                e.1 = Some(s.value);
            } else if s.name == format!("{family}_sum") {
                assert!(s.value >= 0.0);
            }
        }
        assert!(!series.is_empty(), "{family} has series");
        for (labels, (mut buckets, count)) in series {
            buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
            assert!(
                buckets.windows(2).all(|w| w[0].1 <= w[1].1),
                "{family}{labels}: buckets must not decrease: {buckets:?}"
            );
            let inf = buckets.last().filter(|b| b.0 == f64::INFINITY);
            let count = count.unwrap_or_else(|| panic!("{family}{labels} has no _count"));
            assert_eq!(
                inf.map(|b| b.1),
                Some(count),
                "{family}{labels}: +Inf must equal _count: {buckets:?}"
            );
        }
    }
    samples
}

/// The scrape read by the Prometheus project's own parsers (the Python client's): OpenMetrics
/// by its strict parser (the `# EOF`, metadata before samples, units matching names, bucket
/// order, every histogram's `+Inf` equal to its `_count`, ...), text 0.0.4 by the text parser.
/// CI installs `python3-prometheus-client`; without it here the check is skipped.
fn reference_parse(text: &str, openmetrics: bool) {
    let module = match openmetrics {
        true => "prometheus_client.openmetrics.parser",
        false => "prometheus_client.parser",
    };
    let script = format!(
        "import sys\nfrom {module} import text_string_to_metric_families as p\n\
         n = sum(len(f.samples) for f in p(sys.stdin.read()))\nprint(n)\n"
    );
    let have = std::process::Command::new("python3")
        .args(["-c", "import prometheus_client"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !have {
        eprintln!("python3 with prometheus_client not found: the reference parser is skipped");
        return;
    }
    let mut child = std::process::Command::new("python3")
        .args(["-c", &script])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "{module} refuses the scrape: {err}\n{text}"
    );
    let n: usize = String::from_utf8_lossy(&out.stdout).trim().parse().unwrap();
    assert!(n > 10, "{n} samples");
}

#[tokio::test]
async fn metrics_parse_as_prometheus_text() {
    let (l, _a, _b) = setup().await;
    let p = l.listen_addrs()[0];
    // Response times in several buckets.
    for path in ["/m", "/slow/3", "/slow/8", "/slow/30", "/m", "/slow/60"] {
        get(p, path).await;
    }
    let admin = l.admin_addr().unwrap();
    // A route's duration is recorded as its response body is dropped, just after the client
    // has it all.
    for _ in 0..100 {
        let s = parse(&admin_get(admin, "/api/stats", &[]).await);
        if s["routes"][0]["requests"] == 6 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let prometheus_accept = "application/openmetrics-text;version=1.0.0;q=0.5,application/openmetrics-text;version=0.0.1;q=0.4,text/plain;version=0.0.4;q=0.3,*/*;q=0.2";
    for (accept, openmetrics) in [
        (None, false),
        (Some("text/plain"), false),
        (Some("*/*"), false),
        (Some(prometheus_accept), true),
        (Some("application/openmetrics-text"), true),
    ] {
        let headers: Vec<(&str, &str)> = accept.iter().map(|a| ("accept", *a)).collect();
        let r = admin_get(admin, "/metrics", &headers).await;
        assert_eq!(r.status, 200);
        let ct = r.headers["content-type"].to_str().unwrap();
        if openmetrics {
            assert_eq!(
                ct, "application/openmetrics-text; version=1.0.0; charset=utf-8",
                "{accept:?}"
            );
        } else {
            assert_eq!(ct, "text/plain; version=0.0.4; charset=utf-8", "{accept:?}");
        }
        assert_eq!(r.headers["vary"], "accept");
        let text = r.text();
        let samples = strict_scrape(&text, openmetrics);
        let lines = text.lines().map(|l| Ok(l.to_string()));
        let scrape = prometheus_parse::Scrape::parse(lines).expect("valid Prometheus text");
        let value = |name: &str, server: &str| {
            samples
                .iter()
                .find(|s| {
                    s.name == name && s.labels.get("server").map(String::as_str) == Some(server)
                })
                .map(|s| s.value)
        };
        let reqs: Vec<&Sample> = samples
            .iter()
            .filter(|s| s.name == "langur_server_requests_total")
            .collect();
        assert_eq!(reqs.len(), 2);
        assert!(reqs.iter().all(|s| s.labels["pool"] == "web"));
        assert_eq!(reqs.iter().map(|s| s.value).sum::<f64>(), 6.0);
        // Each server's histogram counts its responses, once.
        for r in &reqs {
            let server = &r.labels["server"];
            assert_eq!(
                value("langur_server_response_seconds_count", server),
                Some(r.value),
                "{server}"
            );
        }
        if !openmetrics {
            // A text parser types the counters.
            let typed = scrape
                .samples
                .iter()
                .find(|s| s.metric == "langur_server_requests_total")
                .unwrap();
            assert!(
                matches!(typed.value, prometheus_parse::Value::Counter(_)),
                "{:?}",
                typed.value
            );
        }
        // The client side: the listener's and the route's series.
        let listener = p.to_string();
        let one = |name: &str, labels: &[(&str, &str)]| {
            let found: Vec<&Sample> = samples
                .iter()
                .filter(|s| {
                    s.name == name
                        && labels
                            .iter()
                            .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
                })
                .collect();
            assert_eq!(found.len(), 1, "{name}{labels:?}");
            found[0].value
        };
        let at = |name: &str| one(name, &[("listener", &listener)]);
        assert_eq!(at("langur_listener_connections_accepted_total"), 6.0);
        assert!(at("langur_listener_open_connections") <= 6.0);
        assert!(at("langur_listener_bytes_in_total") > 6.0 * 18.0);
        assert!(at("langur_listener_bytes_out_total") > 6.0 * 40.0);
        assert_eq!(at("langur_listener_request_errors_total"), 0.0);
        let with = |name: &str, k: &str, v: &str| one(name, &[("listener", &listener), (k, v)]);
        assert_eq!(with("langur_listener_responses_total", "class", "2xx"), 6.0);
        let refused = "langur_listener_connections_refused_total";
        for reason in ["limit", "proxy_protocol", "tls_handshake"] {
            assert_eq!(with(refused, "reason", reason), 0.0);
        }
        let denied = "langur_listener_requests_denied_total";
        assert_eq!(with(denied, "reason", "access"), 0.0);
        let route =
            |name: &str, more: &[(&str, &str)]| one(name, &[&[("route", "1")], more].concat());
        assert_eq!(
            route("langur_route_responses_total", &[("class", "2xx")]),
            6.0
        );
        assert_eq!(route("langur_route_denied_total", &[]), 0.0);
        let duration = "langur_route_request_duration_seconds";
        assert_eq!(route(&format!("{duration}_count"), &[]), 6.0);
        // The clients waited 3, 8, 30 and 60 ms for four of them, at least.
        assert!(route(&format!("{duration}_sum"), &[]) >= 0.101);
        assert!(route(&format!("{duration}_bucket"), &[("le", "0.025")]) <= 4.0);
        for name in [
            "langur_cache_misses_total",
            "langur_pool_queue_length",
            "langur_responses_total",
            "langur_uptime_seconds",
            "langur_server_up",
            "process_cpu_seconds_total",
            "process_resident_memory_bytes",
            "process_open_fds",
            "process_max_fds",
            "process_start_time_seconds",
        ] {
            assert!(samples.iter().any(|s| s.name == name), "{name}");
        }
        assert!(samples.len() < 200, "bounded series: {}", samples.len());
        reference_parse(&text, openmetrics);
    }
}

/// The listener's open connections and refusals, and the requests a route's rules refused,
/// as the client-side series count them.
#[tokio::test]
async fn client_side_series_count_refusals_and_denials() {
    let be = Backend::start("a").await;
    let text = format!(
        "[server]\nmax_connections_per_client = 2\n\
         [[route]]\nmatch = ['^/private']\npool = 'p'\ndeny = ['127.0.0.0/8']\n\
         [[route]]\nmatch = ['^/']\npool = 'p'\nrate_limit = {{ rate = '1/m', burst = 1 }}\n\
         [pools.p]\nservers = ['{}']\n",
        be.addr
    );
    let l = start_with_admin(toml_config(&text)).await;
    let (p, admin) = (l.listen_addrs()[0], l.admin_addr().unwrap());
    let open_now = |want: u64| async move {
        for _ in 0..200 {
            let s = parse(&admin_get(admin, "/api/stats", &[]).await);
            if s["listeners"][0]["open"] == want {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("never {want} connections open");
    };
    // Two connections held open: a third from the same client is refused at accept.
    let held = [
        tokio::net::TcpStream::connect(p).await.unwrap(),
        tokio::net::TcpStream::connect(p).await.unwrap(),
    ];
    open_now(2).await;
    let refused = raw(p, b"", Duration::from_secs(2)).await;
    assert!(refused.starts_with("HTTP/1.1 503"), "{refused}");
    drop(held);
    open_now(0).await;
    assert_eq!(get(p, "/private").await.status, 403);
    assert_eq!(get(p, "/a").await.status, 200);
    assert_eq!(get(p, "/a").await.status, 429);
    let r = admin_get(
        admin,
        "/metrics",
        &[("accept", "application/openmetrics-text")],
    )
    .await;
    let samples = strict_scrape(&r.text(), true);
    let value = |name: &str, labels: &[(&str, &str)]| {
        let s = samples.iter().find(|s| {
            s.name == name
                && labels
                    .iter()
                    .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
        });
        s.unwrap_or_else(|| panic!("{name}{labels:?}")).value
    };
    let listener = p.to_string();
    let at = |name: &str, more: &[(&str, &str)]| {
        value(name, &[&[("listener", listener.as_str())], more].concat())
    };
    let refusals = "langur_listener_connections_refused_total";
    assert_eq!(at(refusals, &[("reason", "limit")]), 1.0);
    assert_eq!(at("langur_listener_connections_accepted_total", &[]), 6.0);
    let denied = "langur_listener_requests_denied_total";
    assert_eq!(at(denied, &[("reason", "access")]), 1.0);
    assert_eq!(at(denied, &[("reason", "rate_limit")]), 1.0);
    assert_eq!(
        at("langur_listener_responses_total", &[("class", "4xx")]),
        2.0
    );
    assert_eq!(value("langur_route_denied_total", &[("route", "1")]), 1.0);
    assert_eq!(value("langur_route_denied_total", &[("route", "2")]), 0.0);
    let responses = "langur_route_responses_total";
    assert_eq!(value(responses, &[("route", "1"), ("class", "4xx")]), 1.0);
    assert_eq!(value(responses, &[("route", "2"), ("class", "2xx")]), 1.0);
    assert_eq!(value(responses, &[("route", "2"), ("class", "4xx")]), 1.0);
    assert_eq!(
        value("langur_route_rate_limited_total", &[("route", "2")]),
        1.0
    );
    // The CSV's FRONTEND row says the same in HAProxy's words.
    let csv = admin_get(admin, "/stats.csv", &[]).await.text();
    let mut reader = csv::ReaderBuilder::new().from_reader(csv.as_bytes());
    let header: Vec<String> = reader.headers().unwrap().iter().map(String::from).collect();
    let col = |n: &str| header.iter().position(|h| h == n).unwrap();
    let front = reader.records().next().unwrap().unwrap();
    assert_eq!(&front[col("svname")], "FRONTEND");
    assert_eq!((&front[col("dreq")], &front[col("dcon")]), ("2", "1"));
    assert_eq!((&front[col("stot")], &front[col("conn_tot")]), ("5", "6"));
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
    // The file's range, as PATCH /api/pools/... takes it.
    let weight = format!("/api/servers/web/{}/weight", a.addr);
    assert_eq!(
        admin_post(admin, &weight, "{\"weight\":1000}").await.status,
        200
    );
    let over = admin_post(admin, &weight, "{\"weight\":1001}").await;
    assert_eq!(over.status, StatusCode::BAD_REQUEST);
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

/// DNS rebinding: a page of evil.example whose name now resolves to 127.0.0.1 is same-origin
/// for the browser, so its requests carry `Host` and `Origin` of evil.example. Without a token,
/// the admin API answers only its own names.
#[tokio::test]
async fn without_a_token_only_loopback_and_configured_names_reach_the_admin_api() {
    let (l, a, _b) = setup().await;
    let admin = l.admin_addr().unwrap();
    let port = admin.port();
    let state = format!("/api/servers/web/{}/state", a.addr);
    let evil = format!("evil.example:{port}");
    let evil_origin = format!("http://evil.example:{port}");
    let r = admin_req(
        admin,
        Method::POST,
        &state,
        &[("host", &evil), ("origin", &evil_origin)],
        "{\"state\":\"maint\"}",
    )
    .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.text());
    assert!(r.text().contains("[admin] hosts"), "{}", r.text());
    let s = parse(&admin_get(admin, "/api/stats", &[]).await);
    assert_eq!(server(&s, &a.addr.to_string())["operator"], "ready");
    // Reading is refused too (the stats would leak), on every endpoint.
    for path in ["/api/stats", "/metrics", "/", "/healthz", "/stats.csv"] {
        let r = admin_get(admin, path, &[("host", &evil)]).await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{path}");
    }
    // Names that are not loopback, however they are dressed.
    for host in [
        "evil.example".to_string(),
        format!("127.0.0.1.evil.example:{port}"),
        format!("localhost.evil.example:{port}"),
        format!("10.1.2.3:{port}"),
        "127.0.0.1:notaport".to_string(),
        "[::1".to_string(),
        String::new(),
    ] {
        let r = admin_get(admin, "/api/stats", &[("host", &host)]).await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "Host {host:?}");
    }
    // Loopback names and addresses, and the listener's own address.
    for host in [
        format!("localhost:{port}"),
        "LOCALHOST".to_string(),
        "localhost.".to_string(),
        format!("dashboard.localhost:{port}"),
        format!("127.0.0.1:{port}"),
        format!("127.9.8.7:{port}"),
        format!("[::1]:{port}"),
        format!("[::ffff:127.0.0.1]:{port}"),
    ] {
        let r = admin_get(admin, "/api/stats", &[("host", &host)]).await;
        assert_eq!(r.status, 200, "Host {host:?}");
    }
    // An absolute-form target names the host too; two Host fields are not a way around.
    let raw_req = |target: String, hosts: &[&str]| {
        let mut t = format!("GET {target} HTTP/1.1\r\n");
        for h in hosts {
            t.push_str(&format!("Host: {h}\r\n"));
        }
        t.push_str("Connection: close\r\n\r\n");
        t
    };
    let here = admin.to_string();
    let out = raw(
        admin,
        raw_req(format!("http://{evil}/api/stats"), &[&here]).as_bytes(),
        Duration::from_secs(2),
    )
    .await;
    assert!(out.starts_with("HTTP/1.1 403"), "{out}");
    let out = raw(
        admin,
        raw_req("/api/stats".into(), &[&here, &evil]).as_bytes(),
        Duration::from_secs(2),
    )
    .await;
    assert!(!out.starts_with("HTTP/1.1 200"), "{out}");

    // A state-changing request from another origin is refused even with a good Host.
    for origin in [
        "http://evil.example".to_string(),
        format!("http://evil.example:{port}"),
        "http://localhost:3000".to_string(),
        "null".to_string(),
        format!("http://{here}/path"),
        format!("http://user@{here}"),
    ] {
        let r = admin_req(
            admin,
            Method::POST,
            &state,
            &[("origin", &origin)],
            "{\"state\":\"maint\"}",
        )
        .await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "Origin {origin}");
    }
    let s = parse(&admin_get(admin, "/api/stats", &[]).await);
    assert_eq!(server(&s, &a.addr.to_string())["operator"], "ready");
    // The dashboard's own origin (and curl, which sends none) may.
    let r = admin_req(
        admin,
        Method::POST,
        &state,
        &[("origin", &format!("http://{here}"))],
        "{\"state\":\"drain\"}",
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let r = admin_post(admin, &state, "{\"state\":\"ready\"}").await;
    assert_eq!(r.status, 200, "{}", r.text());
}

/// `[admin] hosts` names the API may be reached by (behind a proxy, or by name on a private
/// network); with a token, `Host` is not restricted, and `Origin` still is.
#[tokio::test]
async fn configured_admin_hosts_and_token_mode() {
    let be = Backend::start("a").await;
    let route = format!(
        "[[route]]\nmatch = ['^/']\npool = 'p'\n[pools.p]\nservers = ['{}']\n",
        be.addr
    );
    let l = start_with_admin(toml_config(&format!(
        "[admin]\nhosts = ['admin.example.com']\n{route}"
    )))
    .await;
    let admin = l.admin_addr().unwrap();
    let state = format!("/api/servers/p/{}/state", be.addr);
    for host in ["admin.example.com", "Admin.Example.Com:9090"] {
        assert_eq!(
            admin_get(admin, "/api/stats", &[("host", host)])
                .await
                .status,
            200,
            "{host}"
        );
    }
    assert_eq!(
        admin_get(admin, "/api/stats", &[("host", "other.example.com")])
            .await
            .status,
        403
    );
    // A page served as https://admin.example.com (through a proxy that forwards another Host).
    let r = admin_req(
        admin,
        Method::POST,
        &state,
        &[("origin", "https://admin.example.com")],
        "drain",
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let r = admin_req(
        admin,
        Method::POST,
        &state,
        &[
            ("host", "admin.example.com"),
            ("origin", "https://evil.example"),
        ],
        "ready",
    )
    .await;
    assert_eq!(r.status, 403);
    drop(l);

    // Token mode: any Host with the token; a cross-site POST is still refused.
    let l = start_with_admin(toml_config(&format!("[admin]\ntoken = 's3cret'\n{route}"))).await;
    let admin = l.admin_addr().unwrap();
    let bearer = ("authorization", "Bearer s3cret");
    let r = admin_get(admin, "/api/stats", &[("host", "evil.example"), bearer]).await;
    assert_eq!(r.status, 200);
    assert_eq!(
        admin_get(admin, "/api/stats", &[("host", "evil.example")])
            .await
            .status,
        401
    );
    let r = admin_req(
        admin,
        Method::POST,
        &state,
        &[
            ("host", "proxy.internal:9090"),
            ("origin", "https://proxy.internal:9090"),
            bearer,
        ],
        "drain",
    )
    .await;
    assert_eq!(r.status, 200, "same origin with the token: {}", r.text());
    let r = admin_req(
        admin,
        Method::POST,
        &state,
        &[
            ("host", "evil.example:9090"),
            ("origin", "http://other.example"),
            bearer,
        ],
        "ready",
    )
    .await;
    assert_eq!(r.status, 403);
}

#[tokio::test]
async fn reload_keeps_state_and_refuses_bad_configs() {
    let a = Backend::start("a").await;
    let b = Backend::start("b").await;
    let dir = crate::common::Scratch::new("reload");
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
        "[server]\nname = 'edge-2'\n{v1}[[route]]\nmatch = ['^/b']\npool = 'other'\n[pools.other]\nservers = ['{}']\n",
        b.addr
    )
    .replace("match = ['^/']", "match = ['^/a']");
    std::fs::write(&file, &v2).unwrap();
    let r = admin_post(admin, "/api/reload", "").await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(get(p, "/b").await.backend(), "b", "the new route serves");
    // The instance name changes too (Via, loop detection, stats).
    let via = b.last_headers.lock().unwrap().clone().unwrap()["via"].clone();
    assert_eq!(via, "1.1 edge-2");
    let s = parse(&admin_get(admin, "/api/stats", &[]).await);
    assert_eq!(s["instance"], "edge-2");
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
}

/// A scratch directory and the path of `langur.toml` in it.
fn temp_config(name: &str) -> (crate::common::Scratch, std::path::PathBuf) {
    let dir = crate::common::Scratch::new(name);
    let file = dir.join("langur.toml");
    (dir, file)
}

/// Waits until nothing accepts connections at `a`.
async fn closes(a: SocketAddr) {
    let t = std::time::Instant::now();
    while tokio::net::TcpStream::connect(a).await.is_ok() {
        assert!(t.elapsed() < Duration::from_secs(3), "{a} still accepts");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A reload applies `listen` changes: it opens the new addresses, and the removed ones stop
/// accepting at once while their requests in flight finish. The admin listener moves too. A
/// port that cannot be bound, or two listeners on one address, refuse the reload and change
/// nothing.
#[tokio::test]
async fn reload_opens_new_listeners_and_drains_removed_ones() {
    let be = Backend::start("a").await;
    let (_dir, file) = temp_config("listeners");
    let route = format!(
        "[[route]]\nmatch = ['^/']\npool = 'p'\n[pools.p]\nservers = ['{}']\n",
        be.addr
    );
    let write = |listen: &str, admin: &str| {
        std::fs::write(
            &file,
            format!("[server]\nlisten = [{listen}]\n[admin]\nlisten = '{admin}'\n{route}"),
        )
        .unwrap();
    };
    write("'127.0.0.1:0'", "127.0.0.1:0");
    let mut config = langur::config::load(&file).unwrap();
    config.server.access_log = false;
    let l = langur::Langur::start(config).await.unwrap();
    let p1 = l.listen_addrs()[0];
    let admin = l.admin_addr().unwrap();
    assert_eq!(get(p1, "/").await.status, 200);

    // Added: the new port serves, the old one (same entry) keeps its port.
    let q = dead_addr().await;
    write(&format!("'127.0.0.1:0', '{q}'"), "127.0.0.1:0");
    let r = admin_post(admin, "/api/reload", "").await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(
        parse(&r)["summary"]
            .as_str()
            .unwrap()
            .contains(&format!("+client listener {q}")),
        "{}",
        r.text()
    );
    assert_eq!(l.listen_addrs(), vec![p1, q]);
    assert_eq!(get(q, "/").await.status, 200);
    assert_eq!(get(p1, "/").await.status, 200);

    // Removed while a request is in flight on it and a kept-alive connection idles on it.
    let idle = tokio::net::TcpStream::connect(p1).await.unwrap();
    let (mut send, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(idle))
            .await
            .unwrap();
    let conn = tokio::spawn(conn);
    let req = http::Request::get("/")
        .header("host", "t")
        .body(body(""))
        .unwrap();
    assert_eq!(send.send_request(req).await.unwrap().status(), 200);
    let slow = tokio::spawn(get(p1, "/slow/400"));
    while be.in_flight.load(std::sync::atomic::Ordering::SeqCst) == 0 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    write(&format!("'{q}'"), "127.0.0.1:0");
    let r = admin_post(admin, "/api/reload", "").await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(
        r.text().contains(&format!("-client listener {p1}")),
        "{}",
        r.text()
    );
    assert_eq!(l.listen_addrs(), vec![q]);
    closes(p1).await;
    let answer = slow.await.unwrap();
    assert_eq!(
        (answer.status, answer.text()),
        (StatusCode::OK, "a".to_string())
    );
    tokio::time::timeout(Duration::from_secs(2), conn)
        .await
        .expect("the idle connection of a removed listener is closed")
        .unwrap()
        .ok();
    assert_eq!(get(q, "/").await.status, 200);

    // The admin listener moves; the answer to the reload still comes on the old one.
    let a2 = dead_addr().await;
    write(&format!("'{q}'"), &a2.to_string());
    let r = admin_post(admin, "/api/reload", "").await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(l.admin_addr(), Some(a2));
    assert_eq!(admin_get(a2, "/healthz", &[]).await.status, 200);
    closes(admin).await;
    let admin = a2;

    // A port another socket holds: refused, nothing changed.
    let held = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let h = held.local_addr().unwrap();
    write(&format!("'{q}', '{h}'"), &a2.to_string());
    let r = admin_post(admin, "/api/reload", "").await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.text());
    let errors = parse(&r)["errors"].to_string();
    assert!(
        errors.contains(&format!("cannot listen on {h}")) && errors.contains("in use"),
        "{errors}"
    );
    assert_eq!(l.listen_addrs(), vec![q]);
    assert_eq!(get(q, "/").await.status, 200);
    drop(held);

    // The admin listener beyond loopback without a token: refused, as at start.
    write(&format!("'{q}'"), "0.0.0.0:0");
    let r = admin_post(admin, "/api/reload", "").await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.text());
    assert!(
        parse(&r)["errors"].to_string().contains("token"),
        "{}",
        r.text()
    );
    assert_eq!(l.admin_addr(), Some(a2));

    // Two listeners on one address: a config error, with its line.
    write(&format!("'{q}', '{q}'"), &a2.to_string());
    let r = admin_post(admin, "/api/reload", "").await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.text());
    let errors = parse(&r)["errors"].to_string();
    assert!(errors.contains("langur.toml:2: `listen`"), "{errors}");
    assert_eq!(get(q, "/").await.status, 200);
    l.shutdown().await;
}

/// `max_connections` is applied on reload, upward at once and downward as connections close.
#[tokio::test]
async fn reload_changes_max_connections() {
    let be = Backend::start("a").await;
    let (_dir, file) = temp_config("maxconn");
    let write = |max: usize| {
        std::fs::write(
            &file,
            format!(
                "[server]\nlisten = ['127.0.0.1:0']\nmax_connections = {max}\n[admin]\nlisten = '127.0.0.1:0'\n[[route]]\nmatch = ['^/']\npool = 'p'\n[pools.p]\nservers = ['{}']\n",
                be.addr
            ),
        )
        .unwrap();
    };
    write(1);
    let mut config = langur::config::load(&file).unwrap();
    config.server.access_log = false;
    let l = langur::Langur::start(config).await.unwrap();
    let (p, admin) = (l.listen_addrs()[0], l.admin_addr().unwrap());
    let first = tokio::net::TcpStream::connect(p).await.unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    let waiting = tokio::spawn(get(p, "/"));
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        !waiting.is_finished(),
        "at the limit, a second connection waits"
    );
    write(3);
    assert_eq!(admin_post(admin, "/api/reload", "").await.status, 200);
    let r = tokio::time::timeout(Duration::from_secs(2), waiting)
        .await
        .expect("served once the limit was raised")
        .unwrap();
    assert_eq!(r.status, 200);
    write(1);
    assert_eq!(admin_post(admin, "/api/reload", "").await.status, 200);
    tokio::time::sleep(Duration::from_millis(50)).await;
    let waiting = tokio::spawn(get(p, "/"));
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!waiting.is_finished(), "the lowered limit holds");
    drop(first);
    let r = tokio::time::timeout(Duration::from_secs(2), waiting)
        .await
        .expect("served once the first connection closed")
        .unwrap();
    assert_eq!(r.status, 200);
    l.shutdown().await;
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
