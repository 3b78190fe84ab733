//! Compression through real sockets: negotiation by `Accept-Encoding`, bodies decoded with the
//! real decoders (flate2, brotli, zstd) and compared, what is left uncompressed, streams that
//! pause, pre-compressed static files, and the cache's one entry for every coding.

use crate::common;

use bytes::Bytes;
use common::*;
use http::{Method, Request, Response};
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use std::convert::Infallible;
use std::io::Read;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::net::{TcpListener, TcpStream};

/// 64 KiB of text that compresses well but not trivially.
fn text() -> Bytes {
    let mut s = String::new();
    let mut i = 0u32;
    while s.len() < 64 * 1024 {
        s.push_str(&format!(
            "<p>line {i} of the page, id {}</p>\n",
            i * 7919 % 1000
        ));
        i += 1;
    }
    Bytes::from(s)
}

fn gzip(b: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(b).unwrap();
    e.finish().unwrap()
}

fn brotli(b: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut out = Vec::new();
    {
        let mut w = brotli::CompressorWriter::new(&mut out, 4096, 5, 22);
        w.write_all(b).unwrap();
    }
    out
}

/// The body decoded by the real decoder of its `Content-Encoding`.
fn decode(r: &Resp) -> Vec<u8> {
    let coding = r
        .headers
        .get("content-encoding")
        .map(|v| v.to_str().unwrap().to_string());
    let mut out = Vec::new();
    match coding.as_deref() {
        None => out.extend_from_slice(&r.body),
        Some("gzip") => {
            flate2::read::GzDecoder::new(&r.body[..])
                .read_to_end(&mut out)
                .unwrap();
        }
        Some("br") => {
            brotli::Decompressor::new(&r.body[..], 4096)
                .read_to_end(&mut out)
                .unwrap();
        }
        Some("zstd") => out = zstd::decode_all(&r.body[..]).unwrap(),
        Some(other) => panic!("unexpected coding {other}"),
    }
    out
}

/// What the origin saw: every request's path and `Accept-Encoding` and `If-None-Match`.
#[derive(Default)]
struct Seen(Mutex<Vec<(String, String, String)>>);

impl Seen {
    fn count(&self, path: &str) -> usize {
        self.0
            .lock()
            .unwrap()
            .iter()
            .filter(|s| s.0 == path)
            .count()
    }
    fn last(&self, path: &str) -> (String, String) {
        let v = self.0.lock().unwrap();
        let s = v.iter().rev().find(|s| s.0 == path).unwrap();
        (s.1.clone(), s.2.clone())
    }
}

type OriginBody = http_body_util::combinators::BoxBody<Bytes, Infallible>;

fn reply(status: u16, headers: &[(&str, &str)], body: impl Into<Bytes>) -> Response<OriginBody> {
    let mut b = Response::builder().status(status);
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    b.body(Full::new(body.into()).boxed()).unwrap()
}

/// The origin, steered by the last path segment: `text` (64 KiB of text/html, `ETag: "v1"`,
/// cacheable, a 304 for an `If-None-Match` naming `"v1"` literally, as a server that knows no
/// weak tags), `small`, `png`, `nt` (no-transform), `gz` (always gzip), `vary` (encodes as the
/// request asks, gzip or br, with `Vary: Accept-Encoding`), `partial` (206), `empty` (204),
/// `sse` (two events a second apart).
fn answer(req: &Request<Incoming>, seen: &Seen) -> Response<OriginBody> {
    let path = req.uri().path().to_string();
    let h = |n: &str| {
        req.headers()
            .get(n)
            .map(|v| v.to_str().unwrap().to_string())
            .unwrap_or_default()
    };
    let (ae, inm) = (h("accept-encoding"), h("if-none-match"));
    seen.0
        .lock()
        .unwrap()
        .push((path.clone(), ae.clone(), inm.clone()));
    let html = ("content-type", "text/html; charset=utf-8");
    let cc = ("cache-control", "max-age=60");
    match path.rsplit('/').next().unwrap() {
        "text" if inm.split(',').any(|t| t.trim() == "\"v1\"") => {
            reply(304, &[("etag", "\"v1\""), cc], Bytes::new())
        }
        "text" => reply(200, &[html, cc, ("etag", "\"v1\"")], text()),
        "small" => reply(200, &[html], "tiny"),
        "png" => reply(200, &[("content-type", "image/png")], text()),
        "nt" => reply(200, &[html, ("cache-control", "no-transform")], text()),
        "gz" => reply(
            200,
            &[html, cc, ("content-encoding", "gzip")],
            gzip(&text()),
        ),
        "vary" => {
            let v = ("vary", "Accept-Encoding");
            if ae.contains("br") {
                reply(
                    200,
                    &[html, cc, v, ("content-encoding", "br")],
                    brotli(&text()),
                )
            } else if ae.contains("gzip") {
                reply(
                    200,
                    &[html, cc, v, ("content-encoding", "gzip")],
                    gzip(&text()),
                )
            } else {
                reply(200, &[html, cc, v], text())
            }
        }
        "partial" => reply(
            206,
            &[html, ("content-range", "bytes 0-1999/65536")],
            vec![b'a'; 2000],
        ),
        "empty" => reply(204, &[html], Bytes::new()),
        "sse" => sse(),
        _ => reply(404, &[html], "no such thing"),
    }
}

/// Two server-sent events a second apart.
fn sse() -> Response<OriginBody> {
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Frame<Bytes>, Infallible>>(4);
    tokio::spawn(async move {
        let _ = tx.send(Ok(Frame::data(Bytes::from("data: one\n\n")))).await;
        tokio::time::sleep(Duration::from_secs(1)).await;
        let _ = tx.send(Ok(Frame::data(Bytes::from("data: two\n\n")))).await;
    });
    let stream = tokio_stream_of(rx);
    Response::builder()
        .header("content-type", "text/event-stream")
        .body(BodyExt::boxed(StreamBody::new(stream)))
        .unwrap()
}

fn tokio_stream_of<T: Send + 'static>(
    mut rx: tokio::sync::mpsc::Receiver<T>,
) -> impl futures_util::Stream<Item = T> + Send {
    futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx))
}

struct Origin {
    addr: SocketAddr,
    seen: Arc<Seen>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Origin {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn origin() -> Origin {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen = Arc::new(Seen::default());
    let s = seen.clone();
    let task = tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let s = s.clone();
            tokio::spawn(async move {
                let svc = service_fn(move |req: Request<Incoming>| {
                    let r = answer(&req, &s);
                    async move { Ok::<_, Infallible>(r) }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    Origin { addr, seen, task }
}

/// langur in front of the origin: `/c/` compresses, `/k/` compresses and caches, `/v/` caches
/// only, `/f/` serves `root` with pre-compressed siblings.
async fn proxy(o: &Origin, root: Option<&std::path::Path>) -> (langur::Langur, SocketAddr) {
    let files = root.map_or(String::new(), |r| {
        format!(
            "[[route]]\npath_prefix = '/f/'\nstrip_prefix = '/f'\nroot = '{0}'\nprecompressed = true\n\
             [[route]]\npath_prefix = '/g/'\nstrip_prefix = '/g'\nroot = '{0}'\ncompress = true\n",
            r.display()
        )
    });
    let l = langur_toml(&format!(
        "{files}\
         [[route]]\npath_prefix = '/c/'\npool = 'o'\ncompress = true\n\
         [[route]]\npath_prefix = '/k/'\npool = 'o'\ncache = true\ncompress = true\n\
         [[route]]\npath_prefix = '/v/'\npool = 'o'\ncache = true\n\
         [pools.o]\nservers = ['{}']\n",
        o.addr
    ))
    .await;
    let a = l.listen_addrs()[0];
    (l, a)
}

async fn get_with(a: SocketAddr, path: &str, headers: &[(&str, &str)]) -> Resp {
    request(a, Method::GET, path, headers, body(Bytes::new())).await
}

fn header<'r>(r: &'r Resp, name: &str) -> &'r str {
    r.headers.get(name).map_or("", |v| v.to_str().unwrap())
}

#[tokio::test]
async fn each_encoding_is_negotiated_and_decodes_to_the_body() {
    let o = origin().await;
    let (_l, a) = proxy(&o, None).await;
    for (ae, want) in [
        ("gzip", "gzip"),
        ("br", "br"),
        ("zstd", "zstd"),
        ("gzip, deflate, br, zstd", "zstd"),
        ("gzip, deflate, br", "br"),
        ("gzip;q=1.0, br;q=0.5", "gzip"),
        ("br;q=0.2, gzip;q=0.8, zstd;q=0", "gzip"),
        ("*", "zstd"),
        ("identity;q=0, gzip", "gzip"),
        ("GZip;Q=0.5", "gzip"),
    ] {
        let r = get_with(a, "/c/text", &[("accept-encoding", ae)]).await;
        assert_eq!(r.status, 200, "{ae}");
        assert_eq!(header(&r, "content-encoding"), want, "{ae}");
        assert_eq!(decode(&r), text(), "{ae}");
        assert!(
            r.body.len() < text().len() / 3,
            "{ae}: {} bytes",
            r.body.len()
        );
        assert_eq!(header(&r, "vary"), "Accept-Encoding", "{ae}");
        assert_eq!(header(&r, "etag"), "W/\"v1\"", "{ae}");
        assert!(!r.headers.contains_key("content-length"), "{ae}");
    }
    for ae in [
        "",
        "deflate",
        "gzip;q=0, br;q=0",
        "identity",
        "br;q=0.5, identity",
    ] {
        let r = get_with(a, "/c/text", &[("accept-encoding", ae)]).await;
        assert!(!r.headers.contains_key("content-encoding"), "{ae:?}");
        assert_eq!(r.body, text(), "{ae:?}");
        assert_eq!(header(&r, "etag"), "\"v1\"", "{ae:?}");
        assert_eq!(header(&r, "vary"), "Accept-Encoding", "{ae:?}");
    }
    let r = get_with(a, "/c/text", &[]).await;
    assert!(!r.headers.contains_key("content-encoding"));
    assert_eq!(header(&r, "content-length"), text().len().to_string());
}

#[tokio::test]
async fn what_is_not_compressed() {
    let o = origin().await;
    let (_l, a) = proxy(&o, None).await;
    let ae = [("accept-encoding", "gzip, br, zstd")];
    for path in [
        "/c/small",
        "/c/png",
        "/c/nt",
        "/c/partial",
        "/c/empty",
        "/c/missing",
    ] {
        let r = get_with(a, path, &ae).await;
        assert!(!r.headers.contains_key("content-encoding"), "{path}");
        assert!(!r.headers.contains_key("vary"), "{path}");
    }
    // A 404 page of 13 bytes is below min_size too.
    assert_eq!(get_with(a, "/c/missing", &ae).await.text(), "no such thing");
    // Already encoded by the server: sent as it is, not twice.
    let r = get_with(a, "/c/gz", &ae).await;
    assert_eq!(header(&r, "content-encoding"), "gzip");
    assert_eq!(decode(&r), text());
    // HEAD: the head its GET gets, without a body.
    let r = request(a, Method::HEAD, "/c/text", &ae, body(Bytes::new())).await;
    assert_eq!(r.status, 200);
    assert_eq!(header(&r, "content-encoding"), "zstd");
    assert_eq!(header(&r, "vary"), "Accept-Encoding");
    assert_eq!(header(&r, "etag"), "W/\"v1\"");
    assert!(!r.headers.contains_key("content-length"));
    assert!(r.body.is_empty());
    let r = request(a, Method::HEAD, "/c/small", &ae, body(Bytes::new())).await;
    assert!(!r.headers.contains_key("content-encoding"));
    // A range goes to the server as it is; its 206 is left alone.
    let r = get_with(
        a,
        "/c/partial",
        &[("accept-encoding", "gzip"), ("range", "bytes=0-1999")],
    )
    .await;
    assert_eq!(r.status, 206);
    assert!(!r.headers.contains_key("content-encoding"));
    assert_eq!(r.body.len(), 2000);
}

#[tokio::test]
async fn a_stream_with_pauses_arrives_event_by_event() {
    let o = origin().await;
    let (_l, a) = proxy(&o, None).await;
    for coding in ["gzip", "br", "zstd"] {
        let stream = TcpStream::connect(a).await.unwrap();
        let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .unwrap();
        tokio::spawn(conn);
        let req = Request::get("/c/sse")
            .header("host", "test.local")
            .header("accept-encoding", coding)
            .body(Full::new(Bytes::new()))
            .unwrap();
        let start = Instant::now();
        let resp = send.send_request(req).await.unwrap();
        assert_eq!(resp.headers()["content-encoding"], coding);
        let mut body = resp.into_body();
        let mut got = Vec::new();
        // Everything before the pause arrives before the second event is even written.
        while !decoded_prefix(coding, &got).ends_with(b"data: one\n\n") {
            let f = tokio::time::timeout(Duration::from_millis(800), body.frame())
                .await
                .unwrap_or_else(|_| panic!("{coding}: the first event is held back"))
                .unwrap()
                .unwrap();
            if let Ok(d) = f.into_data() {
                got.extend_from_slice(&d);
            }
        }
        assert!(start.elapsed() < Duration::from_millis(900), "{coding}");
        while let Some(f) = body.frame().await {
            if let Ok(d) = f.unwrap().into_data() {
                got.extend_from_slice(&d);
            }
        }
        assert!(start.elapsed() >= Duration::from_secs(1), "{coding}");
        assert_eq!(
            decoded_prefix(coding, &got),
            b"data: one\n\ndata: two\n\n",
            "{coding}"
        );
    }
}

/// What a real decoder makes of a stream so far (it may stop short of the end).
fn decoded_prefix(coding: &str, b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    let mut r: Box<dyn Read> = match coding {
        "gzip" => Box::new(flate2::read::GzDecoder::new(b)),
        "br" => Box::new(brotli::Decompressor::new(b, 4096)),
        _ => Box::new(zstd::stream::read::Decoder::new(b).unwrap()),
    };
    while let Ok(n) = r.read(&mut buf) {
        if n == 0 {
            break;
        }
        out.extend_from_slice(&buf[..n]);
    }
    out
}

#[tokio::test]
async fn a_cached_route_serves_every_coding_from_one_entry() {
    let o = origin().await;
    let (_l, a) = proxy(&o, None).await;
    let mut first = true;
    for ae in [
        "gzip", "br", "zstd", "", "gzip, br", "br", "gzip", "zstd, br",
    ] {
        let r = get_with(a, "/k/text", &[("accept-encoding", ae)]).await;
        assert_eq!(r.status, 200, "{ae}");
        assert_eq!(decode(&r), text(), "{ae:?}");
        assert_eq!(header(&r, "vary"), "Accept-Encoding", "{ae:?}");
        let status = header(&r, "cache-status");
        assert!(first || status.contains("hit"), "{ae:?}: {status}");
        first = false;
    }
    assert_eq!(o.seen.count("/k/text"), 1, "the origin was asked once");
    assert_eq!(
        o.seen.last("/k/text").0,
        "identity",
        "and asked for identity"
    );
    // A form made once is then stored: it has a length, and a HEAD gets the same head.
    let r = get_with(a, "/k/text", &[("accept-encoding", "br")]).await;
    assert_eq!(header(&r, "content-encoding"), "br");
    assert_eq!(header(&r, "content-length"), r.body.len().to_string());
    let h = request(
        a,
        Method::HEAD,
        "/k/text",
        &[("accept-encoding", "br")],
        body(Bytes::new()),
    )
    .await;
    assert_eq!(header(&h, "content-encoding"), "br");
    assert_eq!(header(&h, "content-length"), r.body.len().to_string());
    assert_eq!(header(&h, "etag"), header(&r, "etag"));
    assert!(h.body.is_empty());
    // A range is answered from the identity body.
    let r = get_with(
        a,
        "/k/text",
        &[("accept-encoding", "gzip"), ("range", "bytes=3-9")],
    )
    .await;
    assert_eq!(r.status, 206);
    assert!(!r.headers.contains_key("content-encoding"));
    assert_eq!(r.body, text().slice(3..10));
    assert_eq!(o.seen.count("/k/text"), 1);
}

#[tokio::test]
async fn conditional_requests_with_the_weak_tag_get_304() {
    let o = origin().await;
    let (_l, a) = proxy(&o, None).await;
    // From a server that knows only "v1": the request carries the strong twin too.
    let r = get_with(a, "/c/text", &[("accept-encoding", "gzip")]).await;
    let tag = header(&r, "etag").to_string();
    assert_eq!(tag, "W/\"v1\"");
    let r = get_with(
        a,
        "/c/text",
        &[("accept-encoding", "gzip"), ("if-none-match", &tag)],
    )
    .await;
    assert_eq!(r.status, 304);
    assert!(o.seen.last("/c/text").1.contains("\"v1\""));
    // The 304 says what its 200 said: the weak tag and Vary (RFC 9110 15.4.5).
    assert_eq!(header(&r, "etag"), "W/\"v1\"");
    assert_eq!(header(&r, "vary"), "Accept-Encoding");
    // A client without a weak tag that validates the strong one keeps it.
    let r = get_with(a, "/c/text", &[("if-none-match", "\"v1\"")]).await;
    assert_eq!(r.status, 304);
    assert_eq!(header(&r, "etag"), "\"v1\"");
    // A cached route's miss goes to the server, whose 304 is made the same way.
    let r = get_with(
        a,
        "/k/miss/text",
        &[("accept-encoding", "gzip"), ("if-none-match", &tag)],
    )
    .await;
    assert_eq!(r.status, 304);
    assert_eq!(header(&r, "etag"), "W/\"v1\"");
    assert_eq!(header(&r, "vary"), "Accept-Encoding");
    // From the cache.
    let r = get_with(a, "/k/text", &[("accept-encoding", "br")]).await;
    let tag = header(&r, "etag").to_string();
    assert_eq!(tag, "W/\"v1\"");
    let r = get_with(
        a,
        "/k/text",
        &[("accept-encoding", "br"), ("if-none-match", &tag)],
    )
    .await;
    assert_eq!(r.status, 304);
    assert!(header(&r, "cache-status").contains("hit"));
    assert_eq!(header(&r, "etag"), "W/\"v1\"");
    assert_eq!(o.seen.count("/k/text"), 1);
}

#[tokio::test]
async fn fifty_spellings_of_accept_encoding_make_at_most_four_variants() {
    let o = origin().await;
    let (_l, a) = proxy(&o, None).await;
    let tokens = ["gzip", "deflate", "br", "zstd"];
    let mut spellings = Vec::new();
    for i in 0..50usize {
        let (subset, style) = (i % 15 + 1, i / 15);
        let mut parts: Vec<String> = (0..4)
            .filter(|j| subset >> j & 1 == 1)
            .map(|j| match style {
                0 => tokens[j].to_string(),
                1 => format!("{};q=1", tokens[j]),
                2 => format!("{};q=1.0", tokens[j].to_uppercase()),
                _ => format!("{};q=0.8", tokens[j]),
            })
            .collect();
        if style == 3 {
            parts.reverse();
            parts.push("identity".into());
        }
        spellings.push(parts.join(if style == 1 { "," } else { ", " }));
    }
    spellings.sort();
    spellings.dedup();
    assert_eq!(spellings.len(), 50);
    for ae in &spellings {
        let r = get_with(a, "/v/vary", &[("accept-encoding", ae)]).await;
        assert_eq!(r.status, 200, "{ae}");
        assert_eq!(decode(&r), text(), "{ae}");
        let coding = header(&r, "content-encoding");
        let accepted = coding.is_empty()
            || ae
                .to_lowercase()
                .split(',')
                .any(|e| e.trim().starts_with(coding));
        assert!(accepted, "{ae}: sent {coding}");
    }
    let asked = o.seen.count("/v/vary");
    assert!(
        asked <= 4,
        "{asked} variants for {} spellings",
        spellings.len()
    );
}

#[tokio::test]
async fn a_stored_encoded_body_is_decoded_for_a_client_that_cannot_read_it() {
    let o = origin().await;
    let (_l, a) = proxy(&o, None).await;
    // Cache only: the server's gzip body is stored as it came.
    let r = get_with(a, "/v/gz", &[("accept-encoding", "gzip")]).await;
    assert_eq!(header(&r, "content-encoding"), "gzip");
    // A HEAD for identity before the identity form exists: no length (not the stored gzip's).
    let r = request(a, Method::HEAD, "/v/gz", &[], body(Bytes::new())).await;
    assert_eq!(r.status, 200);
    assert!(!r.headers.contains_key("content-encoding"));
    assert!(!r.headers.contains_key("content-length"));
    let r = get_with(a, "/v/gz", &[]).await;
    assert!(!r.headers.contains_key("content-encoding"));
    assert_eq!(r.body, text());
    assert_eq!(header(&r, "etag"), "");
    // With compress, a server that answers gzip to a request for identity: every coding is
    // still served from the one entry, decoded or re-coded.
    for ae in ["br", "", "gzip", "zstd", "identity"] {
        let r = get_with(a, "/k/gz", &[("accept-encoding", ae)]).await;
        assert_eq!(decode(&r), text(), "{ae:?}");
        let want = match ae {
            "" | "identity" => "",
            x => x,
        };
        assert_eq!(header(&r, "content-encoding"), want, "{ae:?}");
    }
    assert_eq!(o.seen.count("/v/gz"), 1);
    assert_eq!(o.seen.count("/k/gz"), 1);
}

#[tokio::test]
async fn precompressed_siblings_are_sent_to_clients_that_accept_them() {
    let dir = crate::common::Scratch::new("pre");
    let js = text();
    std::fs::write(dir.join("app.js"), &js).unwrap();
    std::fs::write(dir.join("app.js.br"), brotli(&js)).unwrap();
    std::fs::write(dir.join("app.js.gz"), gzip(&js)).unwrap();
    std::fs::write(dir.join("plain.js"), &js).unwrap();
    let o = origin().await;
    let (_l, a) = proxy(&o, Some(&dir.canonicalize().unwrap())).await;
    let plain = get_with(a, "/f/app.js", &[]).await;
    assert_eq!(plain.body, js);
    assert_eq!(header(&plain, "vary"), "Accept-Encoding");
    for (ae, want) in [
        ("br", "br"),
        ("gzip", "gzip"),
        ("gzip, br", "br"),
        ("zstd, gzip", "gzip"),
    ] {
        let r = get_with(a, "/f/app.js", &[("accept-encoding", ae)]).await;
        assert_eq!(header(&r, "content-encoding"), want, "{ae}");
        assert!(header(&r, "content-type").contains("javascript"), "{ae}");
        assert_eq!(header(&r, "content-length"), r.body.len().to_string());
        assert_eq!(decode(&r), js, "{ae}");
        assert_ne!(header(&r, "etag"), header(&plain, "etag"));
        assert_eq!(header(&r, "vary"), "Accept-Encoding");
        // The sibling's own tag gives a 304.
        let tag = header(&r, "etag").to_string();
        let again = get_with(
            a,
            "/f/app.js",
            &[("accept-encoding", ae), ("if-none-match", &tag)],
        )
        .await;
        assert_eq!(again.status, 304, "{ae}");
    }
    // A file compressed on its way: its 304 and its HEAD say what its 200 says.
    let ae = ("accept-encoding", "gzip");
    let r = get_with(a, "/g/plain.js", &[ae]).await;
    assert_eq!(header(&r, "content-encoding"), "gzip");
    let tag = header(&r, "etag").to_string();
    assert!(tag.starts_with("W/"), "{tag}");
    let r = get_with(a, "/g/plain.js", &[ae, ("if-none-match", &tag)]).await;
    assert_eq!(r.status, 304);
    assert_eq!(header(&r, "etag"), tag);
    assert_eq!(header(&r, "vary"), "Accept-Encoding");
    let r = request(a, Method::HEAD, "/g/plain.js", &[ae], body(Bytes::new())).await;
    assert_eq!(header(&r, "content-encoding"), "gzip");
    assert_eq!(header(&r, "etag"), tag);
    assert!(!r.headers.contains_key("content-length"));
    // No sibling for this coding, or a range: the file itself.
    let r = get_with(a, "/f/plain.js", &[("accept-encoding", "br")]).await;
    assert!(!r.headers.contains_key("content-encoding"));
    let r = get_with(
        a,
        "/f/app.js",
        &[("accept-encoding", "br"), ("range", "bytes=0-9")],
    )
    .await;
    assert_eq!(r.status, 206);
    assert!(!r.headers.contains_key("content-encoding"));
    assert_eq!(r.body, js.slice(0..10));
}

#[test]
fn bad_compress_settings_name_their_line_and_key() {
    let text = "[[route]]\npath_prefix = '/'\npool = 'o'\n\
                compress = { encodings = ['br', 'deflate'], level = 'max', min_size = 'lots', types = ['text'] }\n\
                [defaults]\ncompress = 'yes'\n\
                [pools.o]\nservers = ['127.0.0.1:1']\n";
    let e = langur::config::parse_str("t.toml", text, true)
        .unwrap_err()
        .to_string();
    for needle in [
        "t.toml:4: `compress.encodings`: `deflate` is not an encoding",
        "`max` is not a level",
        "`lots` is not a size",
        "`text` is not a content type",
        "t.toml:6: `compress` must be true, false or a table",
    ] {
        assert!(e.contains(needle), "{needle} not in: {e}");
    }
}
