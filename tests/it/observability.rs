//! The access log (every format parsed back, file reopen on SIGUSR1, syslog over UDP and a
//! Unix socket, a blocked writer), `LANGUR_LOG`, and W3C trace context with spans sent to an
//! OTLP receiver started here.

use crate::common::*;
use http::Method;
use langur::Langur;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::Ordering;
use std::time::Duration;
use tokio::net::TcpListener;

const BIN: &str = env!("CARGO_BIN_EXE_langur");
const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const PARENT: &str = "00f067aa0ba902b7";

fn dir(name: &str) -> crate::common::Scratch {
    crate::common::Scratch::new(&format!("obs-{name}"))
}

/// langur in-process with the access log on (the harness turns it off) and an admin listener.
async fn logging(text: &str) -> Langur {
    let mut config = toml_config(text);
    config.admin.hosts.push("test.local".into());
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let admin = TcpListener::bind("127.0.0.1:0").await.unwrap();
    Langur::start_on(config, vec![l], Some(admin))
        .await
        .unwrap()
}

fn pool(b: &Backend) -> String {
    format!(
        "[[route]]\nmatch = '^/'\npool = \"p\"\n[pools.p]\nserver = [{{ address = \"{}\" }}]\n",
        b.addr
    )
}

/// The file's lines once it has at least `n` (waiting up to 10 seconds).
async fn lines(path: &Path, n: usize) -> Vec<String> {
    for _ in 0..500 {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        let lines: Vec<String> = text.lines().map(str::to_string).collect();
        if lines.len() >= n {
            return lines;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("{} has fewer than {n} lines", path.display());
}

async fn get_with(at: SocketAddr, path: &str, headers: &[(&str, &str)]) -> Resp {
    request(at, Method::GET, path, headers, body("")).await
}

#[tokio::test]
async fn json_lines_carry_every_field() {
    let b = Backend::start("b").await;
    let d = dir("json");
    let log = d.join("access.log");
    let lg = logging(&format!(
        "[log]\nformat = \"json\"\naccess = \"{}\"\n{}",
        log.display(),
        pool(&b)
    ))
    .await;
    let at = lg.listen_addrs()[0];
    let r = get_with(
        at,
        "/a/b?x=1&y=%22",
        &[
            ("user-agent", "curl/8 \"q\""),
            ("referer", "http://r.example/"),
        ],
    )
    .await;
    assert_eq!(r.status, 200);
    let line = &lines(&log, 1).await[0];
    let v: serde_json::Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
    let time = v["time"].as_str().unwrap();
    humantime::parse_rfc3339(time).unwrap_or_else(|e| panic!("{e}: {time}"));
    assert!(time.ends_with('Z') && time.len() == 24, "{time}");
    assert_eq!(v["client"], "127.0.0.1");
    assert!(v["client_port"].as_u64().unwrap() > 0);
    assert_eq!(v["method"], "GET");
    assert_eq!(v["scheme"], "http");
    assert_eq!(v["host"], "test.local");
    assert_eq!(v["path"], "/a/b");
    assert_eq!(v["query"], "x=1&y=%22");
    assert_eq!(v["protocol"], "HTTP/1.1");
    assert_eq!(v["status"], 200);
    assert_eq!(v["bytes_in"], 0);
    assert_eq!(v["bytes_out"].as_u64().unwrap(), r.body.len() as u64);
    assert_eq!(v["route"], "#1");
    assert_eq!(v["pool"], "p");
    assert_eq!(v["server"], b.addr.to_string());
    assert_eq!(v["user_agent"], "curl/8 \"q\"");
    assert_eq!(v["referer"], "http://r.example/");
    for absent in [
        "cache",
        "reason",
        "request_id",
        "trace_id",
        "tls_version",
        "sni",
    ] {
        assert!(v[absent].is_null(), "{absent}: {line}");
    }
    for ms in ["queue_ms", "connect_ms", "header_ms", "total_ms"] {
        assert!(v[ms].as_f64().unwrap() >= 0.0, "{ms}: {line}");
    }
    assert!(v["total_ms"].as_f64() >= v["header_ms"].as_f64());
}

/// A file route's lines say `cache` only where the route has a cache: `miss` when read from
/// disk, `hit` from memory, for the file and its pre-compressed sibling alike.
#[tokio::test]
async fn file_routes_log_the_cache_only_where_there_is_one() {
    let d = dir("files");
    let www = d.join("www");
    std::fs::create_dir_all(&www).unwrap();
    std::fs::write(www.join("a.css"), "body{}").unwrap();
    std::fs::write(www.join("a.css.gz"), "not really gzip").unwrap();
    let log = d.join("access.log");
    let lg = logging(&format!(
        "[log]\nformat = \"json\"\naccess = \"{}\"\n\
         [[route]]\npath_prefix = '/plain/'\nstrip_prefix = '/plain'\nroot = '{w}'\nprecompressed = true\n\
         [[route]]\npath_prefix = '/kept/'\nstrip_prefix = '/kept'\nroot = '{w}'\nprecompressed = true\ncache = true\n",
        log.display(),
        w = www.display()
    ))
    .await;
    let at = lg.listen_addrs()[0];
    let gz = [("accept-encoding", "gzip")];
    let mut want = Vec::new();
    for (path, ae, cache) in [
        ("/plain/a.css", &[][..], None),
        ("/plain/a.css", &gz[..], None),
        ("/kept/a.css", &[][..], Some("miss")),
        ("/kept/a.css", &[][..], Some("hit")),
        ("/kept/a.css", &gz[..], Some("miss")),
        ("/kept/a.css", &gz[..], Some("hit")),
    ] {
        let r = get_with(at, path, ae).await;
        assert_eq!(r.status, 200);
        let coded = r.headers.get("content-encoding").is_some();
        assert_eq!(coded, !ae.is_empty(), "{path} {ae:?}");
        let status = r
            .headers
            .get("cache-status")
            .map(|v| v.to_str().unwrap().to_string());
        match cache {
            None => assert_eq!(status, None, "{path}"),
            Some("hit") => assert_eq!(status.as_deref(), Some("langur; hit"), "{path} {ae:?}"),
            Some(_) => assert!(status.unwrap().contains("fwd=miss"), "{path} {ae:?}"),
        }
        want.push(cache);
    }
    let got: Vec<Option<String>> = lines(&log, want.len())
        .await
        .iter()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            v["cache"].as_str().map(str::to_string)
        })
        .collect();
    let want: Vec<Option<String>> = want.iter().map(|c| c.map(str::to_string)).collect();
    assert_eq!(got, want);
}

#[tokio::test]
async fn combined_lines_match_the_standard_form() {
    let b = Backend::start("b").await;
    let d = dir("combined");
    let log = d.join("access.log");
    let lg = logging(&format!(
        "[log]\nformat = \"combined\"\naccess = \"{}\"\n{}",
        log.display(),
        pool(&b)
    ))
    .await;
    let at = lg.listen_addrs()[0];
    get_with(
        at,
        "/x?q=1",
        &[("user-agent", "agent \"7\""), ("referer", "http://r/")],
    )
    .await;
    get_with(at, "/y", &[]).await;
    let lines = lines(&log, 2).await;
    // Apache's combined format, as log parsers (GoAccess, AWStats, ...) read it.
    let re = regex::Regex::new(
        r#"^(\S+) (\S+) (\S+) \[(\d{2}/[A-Z][a-z]{2}/\d{4}:\d{2}:\d{2}:\d{2} [+-]\d{4})\] "(\S+) (\S+) (HTTP/\d\.\d)" (\d{3}) (\d+|-) "((?:[^"\\]|\\.)*)" "((?:[^"\\]|\\.)*)"$"#,
    )
    .unwrap();
    let c = re
        .captures(&lines[0])
        .unwrap_or_else(|| panic!("{}", lines[0]));
    assert_eq!(&c[1], "127.0.0.1");
    assert_eq!(
        (&c[5], &c[6], &c[7], &c[8]),
        ("GET", "/x?q=1", "HTTP/1.1", "200")
    );
    assert_eq!(&c[10], "http://r/");
    assert_eq!(&c[11], "agent \\x227\\x22");
    let c = re
        .captures(&lines[1])
        .unwrap_or_else(|| panic!("{}", lines[1]));
    assert_eq!((&c[10], &c[11]), ("-", "-"));
}

#[tokio::test]
async fn haproxy_lines_read_as_httplog() {
    let b = Backend::start("b").await;
    let dead = dead_addr().await;
    let d = dir("haproxy");
    let log = d.join("access.log");
    let lg = logging(&format!(
        "[log]\nformat = \"haproxy\"\naccess = \"{}\"\n[[route]]\npath_prefix = \"/dead\"\npool = \"d\"\n{}[pools.d]\nservers = [\"{dead}\"]\n",
        log.display(),
        pool(&b)
    ))
    .await;
    let at = lg.listen_addrs()[0];
    get_with(at, "/ok?a=b", &[]).await;
    let r = get_with(at, "/dead", &[]).await;
    assert!(r.status.is_server_error());
    let lines = lines(&log, 2).await;
    // HAProxy's `option httplog` (HAProxy's configuration manual, 8.2.3).
    let re = regex::Regex::new(
        r#"^([\d.]+):(\d+) \[(\d{2}/[A-Z][a-z]{2}/\d{4}:\d{2}:\d{2}:\d{2}\.\d{3})\] (\S+) (\S+)/(\S+) (-?\d+)/(-?\d+)/(-?\d+)/(-?\d+)/(\d+) (\d{3}) (\d+) (\S+) (\S+) (\S{4}) (\d+)/(\d+)/(\d+)/(\d+)/(\d+) (\d+)/(\d+) "(\S+) (\S+) (\S+)"$"#,
    )
    .unwrap();
    let ok = lines.iter().find(|l| l.contains("/ok")).unwrap();
    let c = re.captures(ok).unwrap_or_else(|| panic!("{ok}"));
    assert_eq!(&c[1], "127.0.0.1");
    assert_eq!(
        (&c[4], &c[5], &c[6]),
        ("langur", "p", b.addr.to_string().as_str())
    );
    assert!(c[8].parse::<i64>().unwrap() >= 0 && c[10].parse::<i64>().unwrap() >= 0);
    assert_eq!((&c[12], &c[16]), ("200", "----"));
    assert_eq!((&c[24], &c[25], &c[26]), ("GET", "/ok?a=b", "HTTP/1.1"));
    let dead = lines.iter().find(|l| l.contains("/dead")).unwrap();
    let c = re.captures(dead).unwrap_or_else(|| panic!("{dead}"));
    assert_eq!(&c[16], "SC--", "{dead}");
    assert_eq!(&c[10], "-1", "no response: Tr is -1: {dead}");
}

#[tokio::test]
async fn templates_and_logfmt_write_what_they_say() {
    let b = Backend::start("b").await;
    let d = dir("template");
    let (t, f) = (d.join("t.log"), d.join("f.log"));
    let lg = logging(&format!(
        "[log]\nformat = \"{{method}} {{path}} {{{{{{status}}}}}} ua={{user_agent}} q={{query}}\"\naccess = \"{}\"\n{}",
        t.display(),
        pool(&b)
    ))
    .await;
    get_with(lg.listen_addrs()[0], "/t", &[("user-agent", "a\"b")]).await;
    assert_eq!(lines(&t, 1).await[0], "GET /t {200} ua=a\\x22b q=-");
    let lg = logging(&format!(
        "[log]\naccess = \"{}\"\n{}",
        f.display(),
        pool(&b)
    ))
    .await;
    get_with(
        lg.listen_addrs()[0],
        "/f?x=1",
        &[("user-agent", "two words")],
    )
    .await;
    let line = &lines(&f, 1).await[0];
    for part in [
        "method=GET",
        "path=/f",
        "query=\"x=1\"",
        "status=200",
        "user_agent=\"two words\"",
        "pool=p",
        "reason=-",
    ] {
        assert!(line.contains(part), "{part}: {line}");
    }
}

/// A bad `[log]` or `[tracing]` value names its line and key.
#[test]
fn bad_log_and_tracing_settings_name_their_line() {
    let text = "[log]\nformat = \"{nope}\"\naccess = \"syslog:tcp://x:1\"\nqueue = 0\n[tracing]\notlp = \"https://c:4318\"\nratio = 2\n";
    let e = langur::config::parse_str("x.toml", text, true)
        .err()
        .unwrap();
    let e = e.to_string();
    for want in [
        "x.toml:2: `format`: unknown variable `{nope}`",
        "x.toml:3: `access`",
        "x.toml:4: `queue` must be between",
        "x.toml:6: `otlp`: https is not supported",
        "x.toml:7: `ratio` must be between 0 and 1",
    ] {
        assert!(e.contains(want), "{want}\n{e}");
    }
}

/// A destination the writer could not use is refused by the configuration itself (so by
/// `langur check` and a reload, with its line), not found at start: a device, a directory, a
/// missing directory, a missing syslog socket. A FIFO nobody reads is refused at start (its
/// open would wait for a reader), at once.
#[tokio::test]
async fn log_destinations_that_cannot_work_are_refused_at_once() {
    let d = dir("destinations");
    let fifo = d.join("fifo");
    let _ = std::fs::remove_file(&fifo);
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::S_IRWXU).unwrap();
    let text = format!(
        "[log]\naccess = \"{}\"\n[[route]]\npath_prefix = \"/\"\nrespond = {{ body = \"ok\" }}\n",
        fifo.display()
    );
    let config = langur::config::parse_str("x.toml", &text, true).unwrap();
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let started = tokio::time::timeout(
        Duration::from_secs(5),
        Langur::start_on(config, vec![l], None),
    )
    .await
    .expect("the start waited for a reader");
    let e = format!("{:#}", started.err().expect("no reader: refused"));
    assert!(e.contains("FIFO needs its reader"), "{e}");
    for (access, says) in [
        ("/dev/full".to_string(), "neither a regular file nor a FIFO"),
        (d.display().to_string(), "neither a regular file nor a FIFO"),
        (
            "/nonexistent/dir/a.log".to_string(),
            "its directory does not exist",
        ),
        (
            "syslog:unix:/nonexistent/log".to_string(),
            "no syslog socket",
        ),
    ] {
        let text = format!("[log]\naccess = \"{access}\"\n");
        let e = langur::config::parse_str("x.toml", &text, true)
            .err()
            .unwrap_or_else(|| panic!("{access} accepted"))
            .to_string();
        assert!(
            e.contains("x.toml:2: `access`") && e.contains(says),
            "{access}: {e}"
        );
    }
    let ok = format!("[log]\naccess = \"{}\"\n", d.join("new.log").display());
    assert!(langur::config::parse_str("x.toml", &ok, true).is_ok());
}

#[tokio::test]
async fn syslog_lines_reach_udp_and_unix_sockets() {
    let b = Backend::start("b").await;
    let udp = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let d = dir("syslog");
    let path = d.join("log.sock");
    let unix = tokio::net::UnixDatagram::bind(&path).unwrap();
    let over_udp = logging(&format!(
        "[log]\nformat = \"combined\"\naccess = \"syslog:udp://{}\"\n{}",
        udp.local_addr().unwrap(),
        pool(&b)
    ))
    .await;
    let over_unix = logging(&format!(
        "[log]\nformat = \"json\"\naccess = \"syslog:unix:{}\"\n{}",
        path.display(),
        pool(&b)
    ))
    .await;
    get_with(over_udp.listen_addrs()[0], "/by-udp", &[]).await;
    get_with(over_unix.listen_addrs()[0], "/by-unix", &[]).await;
    let (mut a, mut b) = (vec![0u8; 8192], vec![0u8; 8192]);
    let by_udp = tokio::time::timeout(Duration::from_secs(10), udp.recv(&mut a)).await;
    let by_unix = tokio::time::timeout(Duration::from_secs(10), unix.recv(&mut b)).await;
    for (what, n, buf) in [("udp", by_udp, &a), ("unix", by_unix, &b)] {
        let n = n.unwrap_or_else(|_| panic!("nothing over {what}")).unwrap();
        let text = std::str::from_utf8(&buf[..n]).unwrap();
        let m = syslog_loose::parse_message(text, syslog_loose::Variant::RFC3164);
        assert_eq!(
            m.facility,
            Some(syslog_loose::SyslogFacility::LOG_LOCAL0),
            "{text}"
        );
        assert_eq!(
            m.severity,
            Some(syslog_loose::SyslogSeverity::SEV_INFO),
            "{text}"
        );
        assert_eq!(m.appname, Some("langur"), "{text}");
        match what {
            "udp" => assert!(m.msg.contains("\"GET /by-udp HTTP/1.1\" 200"), "{text}"),
            _ => {
                let v: serde_json::Value =
                    serde_json::from_str(m.msg).unwrap_or_else(|e| panic!("{e}: {:?}", m.msg));
                assert_eq!(v["path"], "/by-unix");
            }
        }
    }
}

/// A writer that cannot write (a FIFO nobody reads) fills its queue; requests go on at their
/// usual speed, and the lines that find the queue full are counted.
#[tokio::test]
async fn a_blocked_writer_slows_no_request_and_counts_what_it_drops() {
    let b = Backend::start("b").await;
    let d = dir("fifo");
    let fifo = d.join("access.fifo");
    assert!(std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap()
        .success());
    // Opened for reading, never read: the writer's writes block once the pipe is full.
    let _reader = tokio::net::unix::pipe::OpenOptions::new()
        .open_receiver(&fifo)
        .unwrap();
    let lg = logging(&format!(
        "[log]\nformat = \"json\"\naccess = \"{}\"\nqueue = 8\n{}",
        fifo.display(),
        pool(&b)
    ))
    .await;
    let at = lg.listen_addrs()[0];
    let long = format!("/{}", "x".repeat(2000));
    let mut slowest = Duration::ZERO;
    for _ in 0..300 {
        let t = std::time::Instant::now();
        assert_eq!(get_with(at, &long, &[]).await.status, 200);
        slowest = slowest.max(t.elapsed());
    }
    assert!(
        slowest < Duration::from_millis(500),
        "a request took {slowest:?}"
    );
    let metrics = get(lg.admin_addr().unwrap(), "/metrics").await.text();
    let dropped: u64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("langur_access_log_dropped_lines_total "))
        .unwrap_or_else(|| panic!("{metrics}"))
        .trim()
        .parse()
        .unwrap();
    // 300 lines of 2 KiB: the pipe takes 64 KiB (about 30), the queue 8, the rest is dropped.
    assert!(dropped >= 200, "{dropped} dropped");
}

/// With `[tracing]`, a request's `traceparent` is continued (the caller's trace, a new span
/// ID) and one is made when there is none; the log names the trace.
#[tokio::test]
async fn traceparent_is_continued_or_started_and_logged() {
    let b = Backend::start("b").await;
    let d = dir("trace");
    let log = d.join("access.log");
    let lg = logging(&format!(
        "[log]\nformat = \"{{trace_id}}\"\naccess = \"{}\"\n[tracing]\n{}",
        log.display(),
        pool(&b)
    ))
    .await;
    let at = lg.listen_addrs()[0];
    let incoming = format!("00-{TRACE}-{PARENT}-01");
    get_with(
        at,
        "/",
        &[("traceparent", &incoming), ("tracestate", "k=v")],
    )
    .await;
    let seen = b.last_headers.lock().unwrap().clone().unwrap();
    let sent = seen["traceparent"].to_str().unwrap().to_string();
    let parts: Vec<&str> = sent.split('-').collect();
    assert_eq!(
        (parts[0], parts[1], parts[3]),
        ("00", TRACE, "01"),
        "{sent}"
    );
    assert!(
        parts[2].len() == 16 && parts[2] != PARENT,
        "a new span ID: {sent}"
    );
    assert_eq!(seen["tracestate"], "k=v");
    get_with(at, "/", &[]).await;
    let seen = b.last_headers.lock().unwrap().clone().unwrap();
    let made = seen["traceparent"].to_str().unwrap().to_string();
    let re = regex::Regex::new("^00-([0-9a-f]{32})-([0-9a-f]{16})-01$").unwrap();
    let c = re.captures(&made).unwrap_or_else(|| panic!("{made}"));
    let lines = lines(&log, 2).await;
    assert_eq!(lines, vec![TRACE.to_string(), c[1].to_string()]);
}

/// Without `[tracing]` the headers go through untouched, and the log still names the trace.
#[tokio::test]
async fn without_tracing_traceparent_passes_through_untouched() {
    let b = Backend::start("b").await;
    let d = dir("passthrough");
    let log = d.join("access.log");
    let lg = logging(&format!(
        "[log]\nformat = \"{{trace_id}}\"\naccess = \"{}\"\n{}",
        log.display(),
        pool(&b)
    ))
    .await;
    let incoming = format!("00-{TRACE}-{PARENT}-00");
    get_with(lg.listen_addrs()[0], "/", &[("traceparent", &incoming)]).await;
    let seen = b.last_headers.lock().unwrap().clone().unwrap();
    assert_eq!(seen["traceparent"], incoming.as_str());
    get_with(lg.listen_addrs()[0], "/", &[]).await;
    let seen = b.last_headers.lock().unwrap().clone().unwrap();
    assert!(seen.get("traceparent").is_none());
    assert_eq!(
        lines(&log, 2).await,
        vec![TRACE.to_string(), "-".to_string()]
    );
}

mod otlp_receiver {
    use bytes::Bytes;
    use http_body_util::{BodyExt, Full};
    use hyper::service::service_fn;
    use hyper_util::rt::TokioIo;
    use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
    use prost::Message;
    use std::net::SocketAddr;
    use tokio::sync::mpsc;

    /// An OTLP/HTTP receiver: decodes every `POST /v1/traces` (protobuf) and passes it on.
    pub async fn start() -> (
        SocketAddr,
        mpsc::UnboundedReceiver<ExportTraceServiceRequest>,
    ) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            loop {
                let Ok((s, _)) = listener.accept().await else {
                    return;
                };
                let tx = tx.clone();
                tokio::spawn(async move {
                    let svc = service_fn(move |req: http::Request<hyper::body::Incoming>| {
                        let tx = tx.clone();
                        async move {
                            assert_eq!(req.uri().path(), "/v1/traces");
                            assert_eq!(req.headers()["content-type"], "application/x-protobuf");
                            let body = req.into_body().collect().await.unwrap().to_bytes();
                            let _ = tx.send(ExportTraceServiceRequest::decode(body).unwrap());
                            Ok::<_, std::convert::Infallible>(http::Response::new(Full::new(
                                Bytes::new(),
                            )))
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(s), svc)
                        .await;
                });
            }
        });
        (addr, rx)
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// `[tracing] otlp` sends each traced request's spans to the collector: the request span is
/// the caller's span's child and has the ID the server saw as its parent.
#[tokio::test]
async fn spans_reach_the_otlp_receiver() {
    let b = Backend::start("b").await;
    let (collector, mut exports) = otlp_receiver::start().await;
    let mut config = toml_config(&format!(
        "[tracing]\notlp = \"http://{collector}\"\nservice_name = \"edge\"\n{}",
        pool(&b)
    ));
    config.server.access_log = false;
    let lg = start_on(config).await;
    let incoming = format!("00-{TRACE}-{PARENT}-01");
    get_with(
        lg.listen_addrs()[0],
        "/traced",
        &[("traceparent", &incoming)],
    )
    .await;
    let seen = b.last_headers.lock().unwrap().clone().unwrap();
    let hop = seen["traceparent"]
        .to_str()
        .unwrap()
        .split('-')
        .nth(2)
        .unwrap()
        .to_string();
    let mut spans = Vec::new();
    let mut service = None;
    while !spans
        .iter()
        .any(|s: &opentelemetry_proto::tonic::trace::v1::Span| s.name == "upstream")
    {
        let req = tokio::time::timeout(Duration::from_secs(10), exports.recv())
            .await
            .expect("no spans within 10 s")
            .unwrap();
        for rs in req.resource_spans {
            let attrs = rs.resource.map(|r| r.attributes).unwrap_or_default();
            service = attrs
                .iter()
                .find(|a| a.key == "service.name")
                .and_then(|a| a.value.clone())
                .or(service);
            spans.extend(rs.scope_spans.into_iter().flat_map(|s| s.spans));
        }
    }
    let service = format!("{service:?}");
    assert!(service.contains("edge"), "{service}");
    let request = spans.iter().find(|s| s.name == "request").unwrap();
    assert_eq!(hex(&request.trace_id), TRACE);
    assert_eq!(hex(&request.parent_span_id), PARENT);
    assert_eq!(
        hex(&request.span_id),
        hop,
        "the span the server saw as its parent"
    );
    assert!(request.end_time_unix_nano >= request.start_time_unix_nano);
    let path = request
        .attributes
        .iter()
        .find(|a| a.key == "url.path")
        .unwrap();
    assert!(format!("{:?}", path.value).contains("/traced"));
    for child in ["route", "upstream"] {
        let s = spans.iter().find(|s| s.name == child).unwrap();
        assert_eq!(s.parent_span_id, request.span_id, "{child}");
        assert_eq!(hex(&s.trace_id), TRACE);
    }
    let up = spans.iter().find(|s| s.name == "upstream").unwrap();
    assert_eq!(
        up.kind,
        opentelemetry_proto::tonic::trace::v1::span::SpanKind::Client as i32
    );
    // Counted: every span handed over was taken (counted once the collector has answered).
    let rt = lg.shared().runtime.load();
    let counts = rt.log.as_ref().unwrap().spans();
    let t = std::time::Instant::now();
    loop {
        let (queued, exported, failed) = (
            counts.queued.load(Ordering::Relaxed),
            counts.exported.load(Ordering::Relaxed),
            counts.failed.load(Ordering::Relaxed),
        );
        assert!(queued >= 3 && failed == 0, "{counts:?}");
        if exported == queued {
            break;
        }
        assert!(t.elapsed() < Duration::from_secs(10), "{counts:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A collector that does not answer loses the spans sent to it: counted (and said once in the
/// application log), never a failed request.
#[tokio::test]
async fn spans_lost_to_a_dead_collector_are_counted() {
    let b = Backend::start("b").await;
    let dead = free_port();
    let mut config = toml_config(&format!(
        "[tracing]\notlp = \"http://{dead}\"\n{}",
        pool(&b)
    ));
    config.server.access_log = false;
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let admin = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let lg = Langur::start_on(config, vec![l], Some(admin))
        .await
        .unwrap();
    for _ in 0..3 {
        assert_eq!(get(lg.listen_addrs()[0], "/x").await.status, 200);
    }
    let rt = lg.shared().runtime.load();
    let counts = rt.log.as_ref().unwrap().spans();
    let t = std::time::Instant::now();
    while counts.failed.load(Ordering::Relaxed) == 0 {
        assert!(t.elapsed() < Duration::from_secs(10), "{counts:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(counts.exported.load(Ordering::Relaxed), 0);
    let admin = lg.admin_addr().unwrap();
    let host = admin.to_string();
    let metrics = request(admin, Method::GET, "/metrics", &[("host", &host)], body(""))
        .await
        .text();
    let failed = metrics
        .lines()
        .find(|l| l.starts_with("langur_tracing_spans_failed_total "))
        .unwrap_or_else(|| panic!("{metrics}"));
    assert_ne!(failed, "langur_tracing_spans_failed_total 0", "{metrics}");
}

async fn start_on(config: langur::config::Config) -> Langur {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    Langur::start_on(config, vec![l], None).await.unwrap()
}

fn free_port() -> SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

/// `SIGUSR1` makes the binary open its access-log file again by name (logrotate moved it).
#[tokio::test]
async fn a_file_is_reopened_on_sigusr1() {
    let b = Backend::start("b").await;
    let d = dir("reopen");
    let log = d.join("access.log");
    let port = free_port();
    let cfg = d.join("langur.toml");
    std::fs::write(
        &cfg,
        format!(
            "[server]\nlisten = [\"{port}\"]\n[admin]\nlisten = \"127.0.0.1:0\"\n[log]\naccess = \"access.log\"\nformat = \"{{path}}\"\n{}",
            pool(&b)
        ),
    )
    .unwrap();
    let mut child = tokio::process::Command::new(BIN)
        .args(["run", "--workers", "1", "-c"])
        .arg(&cfg)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while tokio::net::TcpStream::connect(port).await.is_err() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "langur did not start"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    get_with(port, "/before", &[]).await;
    assert_eq!(lines(&log, 1).await, vec!["/before"]);
    let rotated = d.join("access.log.1");
    std::fs::rename(&log, &rotated).unwrap();
    let pid = child.id().unwrap().to_string();
    assert!(std::process::Command::new("kill")
        .args(["-USR1", &pid])
        .status()
        .unwrap()
        .success());
    // The writer looks for the signal at least every 200 ms.
    tokio::time::sleep(Duration::from_millis(500)).await;
    get_with(port, "/after", &[]).await;
    assert_eq!(lines(&log, 1).await, vec!["/after"]);
    assert_eq!(std::fs::read_to_string(&rotated).unwrap(), "/before\n");
    assert!(
        child.try_wait().unwrap().is_none(),
        "SIGUSR1 must not end langur"
    );
    child.kill().await.unwrap();
}

/// `LANGUR_LOG` takes the level names people type; an unknown one stops the start.
#[test]
fn langur_log_takes_common_names_and_refuses_unknown_ones() {
    let d = dir("level");
    let cfg = d.join("langur.toml");
    std::fs::write(&cfg, "[[route]]\nmatch = '^/'\nroot = \".\"\n").unwrap();
    let out = std::process::Command::new(BIN)
        .args(["run", "-c"])
        .arg(&cfg)
        .env("LANGUR_LOG", "verbose")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("unknown level `verbose`"), "{err}");
}

/// A head the parser refuses (no request to speak of) still has its line, as HAProxy's
/// `<BADREQ>`: status, reason, client; method, path and protocol absent.
#[tokio::test]
async fn a_head_refused_before_parsing_has_a_line() {
    let b = Backend::start("b").await;
    let d = dir("badreq");
    for (format, want) in [
        ("json", "\"method\":null"),
        ("combined", "\"-\" 400"),
        ("haproxy", "\"<BADREQ>\""),
    ] {
        let log = d.join(format!("{format}.log"));
        let lg = logging(&format!(
            "[log]\nformat = \"{format}\"\naccess = \"{}\"\n{}",
            log.display(),
            pool(&b)
        ))
        .await;
        let at = lg.listen_addrs()[0];
        let out = raw(
            at,
            b"GET / HTTP/1.1\r\nHost: x\r\nno colon\r\n\r\n",
            Duration::from_secs(3),
        )
        .await;
        assert!(out.starts_with("HTTP/1.1 400"), "{out}");
        let line = lines(&log, 1).await.remove(0);
        assert!(line.contains(want), "{format}: {line}");
        if format == "json" {
            let v: serde_json::Value = serde_json::from_str(&line).unwrap();
            assert_eq!(
                (v["status"].as_u64(), v["reason"].as_str()),
                (Some(400), Some("bad_request"))
            );
            assert_eq!(v["client"], "127.0.0.1");
        }
        lg.shutdown().await;
    }
    assert_eq!(b.hits(), 0);
}
