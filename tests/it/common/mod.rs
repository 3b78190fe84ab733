//! Test harness: in-process backends on ephemeral ports, a small HTTP client, and langur itself
//! started in-process on listeners bound to 127.0.0.1:0.
#![allow(dead_code)]

pub mod ctl;

use bytes::Bytes;
use http::{HeaderMap, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use langur::Langur;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

pub type Body = http_body_util::combinators::BoxBody<Bytes, hyper::Error>;

fn full(b: impl Into<Bytes>) -> Body {
    Full::new(b.into()).map_err(|never| match never {}).boxed()
}

/// An in-process backend. Every answer carries its name; some paths behave specially:
/// `/slow/MS` waits MS milliseconds, `/status/NNN` answers that status, `/echo` streams the request body back, `/headers` answers
/// the request headers it got as `name: value` lines, `/head` answers `Content-Length: 1234`
/// to HEAD, `/trailers` echoes the body and sends the request's trailers back as trailers,
/// `/session` answers the `Cookie` it got and sets `JSESSIONID=NAME-session` unless it got that.
pub struct Backend {
    pub name: String,
    pub addr: SocketAddr,
    pub hits: Arc<AtomicUsize>,
    pub conns: Arc<AtomicUsize>,
    pub in_flight: Arc<AtomicUsize>,
    pub max_in_flight: Arc<AtomicUsize>,
    pub last_headers: Arc<Mutex<Option<HeaderMap>>>,
    /// (arrival time, path and query) of every request, in arrival order.
    pub arrivals: Arc<Mutex<Vec<(std::time::Instant, String)>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Backend {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Backend {
    pub async fn start(name: &str) -> Backend {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        Self::start_on(name, listener)
    }

    pub fn start_on(name: &str, listener: TcpListener) -> Backend {
        let addr = listener.local_addr().unwrap();
        let hits = Arc::new(AtomicUsize::new(0));
        let conns = Arc::new(AtomicUsize::new(0));
        let in_flight = Arc::new(AtomicUsize::new(0));
        let max_in_flight = Arc::new(AtomicUsize::new(0));
        let last_headers = Arc::new(Mutex::new(None));
        let arrivals = Arc::new(Mutex::new(Vec::new()));
        let arr = arrivals.clone();
        let (n, h, c, f, m, l) = (
            Arc::<str>::from(name),
            hits.clone(),
            conns.clone(),
            in_flight.clone(),
            max_in_flight.clone(),
            last_headers.clone(),
        );
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                c.fetch_add(1, Ordering::SeqCst);
                let (n, h, f, m, l) = (n.clone(), h.clone(), f.clone(), m.clone(), l.clone());
                let arr = arr.clone();
                tokio::spawn(async move {
                    let svc = service_fn(move |req: Request<Incoming>| {
                        let (n, h, f, m, l) =
                            (n.clone(), h.clone(), f.clone(), m.clone(), l.clone());
                        let pq = req
                            .uri()
                            .path_and_query()
                            .map(|p| p.to_string())
                            .unwrap_or_default();
                        arr.lock().unwrap().push((std::time::Instant::now(), pq));
                        async move {
                            h.fetch_add(1, Ordering::SeqCst);
                            let now = f.fetch_add(1, Ordering::SeqCst) + 1;
                            m.fetch_max(now, Ordering::SeqCst);
                            *l.lock().unwrap() = Some(req.headers().clone());
                            let resp = behave(&n, req).await;
                            f.fetch_sub(1, Ordering::SeqCst);
                            Ok::<_, Infallible>(resp)
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        Backend {
            name: name.to_string(),
            addr,
            hits,
            conns,
            in_flight,
            max_in_flight,
            last_headers,
            arrivals,
            task,
        }
    }

    pub fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }
}

async fn behave(name: &str, req: Request<Incoming>) -> Response<Body> {
    let path = req.uri().path().to_string();
    let named = |b: Body| {
        Response::builder()
            .header("x-backend", name)
            .body(b)
            .unwrap()
    };
    if let Some(code) = path.strip_prefix("/status/") {
        let status = StatusCode::from_u16(code.parse().unwrap_or(500)).unwrap();
        let mut resp = named(full(format!("{name} says {code}")));
        *resp.status_mut() = status;
        return resp;
    }
    if let Some(n) = path.strip_prefix("/fill/") {
        // `n` bytes, byte i being (i + n) % 251: a body that tells its own length.
        let n: usize = n.parse().unwrap_or(0);
        return named(full(fill(n)));
    }
    if let Some(ms) = path.strip_prefix("/slow/") {
        let ms: u64 = ms.parse().unwrap_or(1000);
        tokio::time::sleep(Duration::from_millis(ms)).await;
        return named(full(name.to_string()));
    }
    match path.as_str() {
        "/echo" => named(req.into_body().boxed()),
        "/headers" => {
            let mut text = String::new();
            for (k, v) in req.headers() {
                text.push_str(&format!("{}: {}\n", k, v.to_str().unwrap_or("?")));
            }
            named(full(text))
        }
        "/session" => {
            let cookie = req
                .headers()
                .get("cookie")
                .map(|v| v.to_str().unwrap_or("?").to_string())
                .unwrap_or_default();
            let mut b = Response::builder().header("x-backend", name);
            if !cookie.contains(&format!("JSESSIONID={name}-")) {
                b = b.header(
                    "set-cookie",
                    format!("JSESSIONID={name}-session; Path=/; HttpOnly"),
                );
            }
            b.body(full(cookie)).unwrap()
        }
        "/head" => Response::builder()
            .header("x-backend", name)
            .header("content-length", "1234")
            .body(full(Bytes::new()))
            .unwrap(),
        "/trailers" => {
            let collected = req.into_body().collect().await.unwrap();
            let trailers = collected.trailers().cloned().unwrap_or_default();
            let data = collected.to_bytes();
            let declared = trailers
                .keys()
                .map(|k| k.as_str())
                .collect::<Vec<_>>()
                .join(", ");
            let frames = vec![
                Ok::<_, hyper::Error>(Frame::data(data)),
                Ok(Frame::trailers(trailers)),
            ];
            Response::builder()
                .header("x-backend", name)
                .header("trailer", declared)
                .body(StreamBody::new(futures_stream(frames)).boxed())
                .unwrap()
        }
        _ => named(full(name.to_string())),
    }
}

/// The body `/fill/{n}` answers: `n` bytes, byte i being (i + n) % 251.
pub fn fill(n: usize) -> Vec<u8> {
    (0..n).map(|i| ((i + n) % 251) as u8).collect()
}

fn futures_stream<T: Send + 'static>(items: Vec<T>) -> impl futures_util::Stream<Item = T> + Send {
    futures_util::stream::iter(items)
}

/// A backend that reads one request (head and Content-Length body) and closes the connection
/// without answering. Counts the requests it swallowed.
pub async fn swallowing_backend() -> (SocketAddr, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let count = Arc::new(AtomicUsize::new(0));
    let c = count.clone();
    tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = listener.accept().await else {
                continue;
            };
            let c = c.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut tmp = [0u8; 4096];
                loop {
                    let Ok(n) = s.read(&mut tmp).await else {
                        return;
                    };
                    if n == 0 {
                        return;
                    }
                    buf.extend_from_slice(&tmp[..n]);
                    if let Some(end) = find(&buf, b"\r\n\r\n") {
                        let len = content_length(&buf[..end]);
                        if buf.len() >= end + 4 + len {
                            c.fetch_add(1, Ordering::SeqCst);
                            return; // drop the socket: no response
                        }
                    }
                }
            });
        }
    });
    (addr, count)
}

/// The Content-Length of a raw message head (0 when absent).
pub fn content_length(head: &[u8]) -> usize {
    String::from_utf8_lossy(head)
        .to_ascii_lowercase()
        .lines()
        .find_map(|l| {
            l.strip_prefix("content-length:")
                .map(|v| v.trim().parse().unwrap_or(0))
        })
        .unwrap_or(0)
}

pub fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// A port that nothing listens on (bound, then released).
pub async fn dead_addr() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let a = l.local_addr().unwrap();
    drop(l);
    a
}

/// Starts langur in-process from config text; `{listen}` is not needed: it binds 127.0.0.1:0.
pub async fn langur_toml(text: &str) -> Langur {
    let config =
        langur::config::parse_str("test.toml", text, true).unwrap_or_else(|e| panic!("{e}"));
    start(config).await
}

pub async fn langur_legacy(text: &str) -> Langur {
    let config =
        langur::config::parse_str("test.conf", text, false).unwrap_or_else(|e| panic!("{e}"));
    start(config).await
}

pub async fn start(mut config: langur::config::Config) -> Langur {
    config.server.access_log = false;
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    Langur::start_on(config, vec![l], None).await.unwrap()
}

pub struct Resp {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Resp {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).to_string()
    }
    pub fn backend(&self) -> String {
        self.headers
            .get("x-backend")
            .map(|v| v.to_str().unwrap().to_string())
            .unwrap_or_default()
    }
}

/// One request on a fresh connection.
pub async fn request(
    addr: SocketAddr,
    method: Method,
    path: &str,
    headers: &[(&str, &str)],
    body: Body,
) -> Resp {
    let stream = TcpStream::connect(addr).await.unwrap();
    let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn);
    let mut b = Request::builder().method(method).uri(path);
    if !headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("host")) {
        b = b.header("host", "test.local");
    }
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    let resp = send.send_request(b.body(body).unwrap()).await.unwrap();
    let (parts, body) = resp.into_parts();
    let body = body
        .collect()
        .await
        .map(|c| c.to_bytes())
        .unwrap_or_default();
    Resp {
        status: parts.status,
        headers: parts.headers,
        body,
    }
}

pub async fn get(addr: SocketAddr, path: &str) -> Resp {
    request(addr, Method::GET, path, &[], full(Bytes::new())).await
}

pub fn body(b: impl Into<Bytes>) -> Body {
    full(b)
}

/// Writes raw bytes on a new connection and reads until the peer closes or `timeout` passes.
pub async fn raw(addr: SocketAddr, bytes: &[u8], timeout: Duration) -> String {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(bytes).await.unwrap();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(timeout, s.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).to_string()
}

/// Starts langur with an admin listener on 127.0.0.1:0 too.
pub async fn start_with_admin(mut config: langur::config::Config) -> Langur {
    config.server.access_log = false;
    // The test client's default `Host` (the admin API refuses names it does not know).
    config.admin.hosts.push("test.local".into());
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let admin = TcpListener::bind("127.0.0.1:0").await.unwrap();
    Langur::start_on(config, vec![l], Some(admin))
        .await
        .unwrap()
}

pub fn toml_config(text: &str) -> langur::config::Config {
    langur::config::parse_str("test.toml", text, true).unwrap_or_else(|e| panic!("{e}"))
}

/// The length of the request at the front of `buf` (head and body), if it is all there.
pub fn request_len(buf: &[u8]) -> Option<usize> {
    let mut fields = [httparse::EMPTY_HEADER; 64];
    let mut req = httparse::Request::new(&mut fields);
    let head = match req.parse(buf).ok()? {
        httparse::Status::Complete(n) => n,
        httparse::Status::Partial => return None,
    };
    let field = |name: &str| {
        req.headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case(name))
            .map(|h| String::from_utf8_lossy(h.value).to_string())
    };
    if let Some(n) = field("content-length") {
        let n: usize = n.parse().ok()?;
        return (buf.len() >= head + n).then_some(head + n);
    }
    if field("transfer-encoding").is_some() {
        // Chunks, then the last chunk and the trailer section.
        let mut at = head;
        loop {
            let (used, size) = match httparse::parse_chunk_size(&buf[at..]).ok()? {
                httparse::Status::Complete(x) => x,
                httparse::Status::Partial => return None,
            };
            at += used;
            if size == 0 {
                let mut t = [httparse::EMPTY_HEADER; 16];
                return match httparse::parse_headers(&buf[at..], &mut t).ok()? {
                    httparse::Status::Complete((n, _)) => Some(at + n),
                    httparse::Status::Partial => None,
                };
            }
            at += size as usize + 2;
            if buf.len() < at {
                return None;
            }
        }
    }
    Some(head)
}

/// What a raw origin does after its answer.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum After {
    Stay,
    /// Close at once, without saying so in the answer.
    Close,
}

/// Per accepted connection, the raw requests it carried.
pub type Seen = Arc<Mutex<Vec<Vec<Vec<u8>>>>>;

/// A raw origin's answer to a path: the pieces, the gap between them, and what comes after.
pub type Script = fn(&str) -> (Vec<Vec<u8>>, Duration, After);

/// An origin that answers each request with raw bytes: `script(path)` gives the pieces (each
/// written and flushed, `gap` apart) and what to do after. Returns its address, the requests
/// per connection, and how many connections the other side closed.
pub async fn raw_origin(script: Script) -> (SocketAddr, Seen, Arc<AtomicUsize>) {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let seen: Seen = Arc::default();
    let closed = Arc::new(AtomicUsize::new(0));
    let (s2, c2) = (seen.clone(), closed.clone());
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            // Pieces go out as written (no Nagle), as from a server that flushes each.
            let _ = s.set_nodelay(true);
            let idx = {
                let mut v = s2.lock().unwrap();
                v.push(Vec::new());
                v.len() - 1
            };
            let (seen, closed) = (s2.clone(), c2.clone());
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut tmp = [0u8; 8192];
                loop {
                    while let Some(len) = request_len(&buf) {
                        let raw: Vec<u8> = buf.drain(..len).collect();
                        let path = String::from_utf8_lossy(&raw)
                            .split(' ')
                            .nth(1)
                            .unwrap_or("")
                            .to_string();
                        seen.lock().unwrap()[idx].push(raw);
                        let (pieces, gap, after) = script(&path);
                        for p in pieces {
                            if s.write_all(&p).await.is_err() {
                                return;
                            }
                            let _ = s.flush().await;
                            if !gap.is_zero() {
                                tokio::time::sleep(gap).await;
                            }
                        }
                        if after == After::Close {
                            return;
                        }
                    }
                    match s.read(&mut tmp).await {
                        Ok(0) | Err(_) => {
                            closed.fetch_add(1, Ordering::SeqCst);
                            return;
                        }
                        Ok(n) => buf.extend_from_slice(&tmp[..n]),
                    }
                }
            });
        }
    });
    (addr, seen, closed)
}

/// The body of a chunked message (`raw` starts at the first chunk), and where it ends (after
/// the last chunk and an empty trailer section); `None` while incomplete.
pub fn dechunked(mut raw: &[u8]) -> Option<(Vec<u8>, usize)> {
    let (mut body, start) = (Vec::new(), raw.len());
    loop {
        let line = find(raw, b"\r\n")?;
        let size = std::str::from_utf8(&raw[..line]).ok()?;
        let size = usize::from_str_radix(size.split(';').next()?, 16).ok()?;
        raw = &raw[line + 2..];
        if size == 0 {
            return (raw.get(..2)? == b"\r\n").then(|| (body, start - raw.len() + 2));
        }
        body.extend_from_slice(raw.get(..size)?);
        assert_eq!(raw.get(size..size + 2)?, b"\r\n");
        raw = &raw[size + 2..];
    }
}

/// A directory for one test's files, named `langur-TAG-…` in the system's temporary
/// directory and removed with the value, also when the test fails.
pub struct Scratch(tempfile::TempDir);

impl Scratch {
    pub fn new(tag: &str) -> Scratch {
        let dir = tempfile::Builder::new()
            .prefix(&format!("langur-{tag}-"))
            .tempdir()
            .expect("a temporary directory");
        Scratch(dir)
    }
}

impl std::ops::Deref for Scratch {
    type Target = std::path::Path;
    fn deref(&self) -> &std::path::Path {
        self.0.path()
    }
}

impl AsRef<std::path::Path> for Scratch {
    fn as_ref(&self) -> &std::path::Path {
        self.0.path()
    }
}
