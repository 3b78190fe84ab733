//! The fast lane: plain HTTP/1.1 requests without a body, served without hyper.
//!
//! Most requests a proxy sees are `GET`s and `HEAD`s with a head and nothing else. For those,
//! hyper's server dispatcher (its state machine, its read and write buffers, the `Incoming` body
//! and the service call) was the largest user-space cost per request left (see
//! `docs/performance.md`). The lane parses such a head with httparse (as hyper does), hands the
//! request to the proxy, and writes the response head and body straight into one buffer for one
//! `send`.
//!
//! It takes a request only when it is sure to treat it exactly as hyper would: a complete
//! HTTP/1.1 head within the limits, no `Content-Length`, `Transfer-Encoding`, `Expect` or
//! `Upgrade`, no `Connection: upgrade`, not `CONNECT`, and a URI and fields the `http` types
//! accept. Anything else (a body, an upgrade, HTTP/1.0, a partial head, a malformed one) is
//! handed to hyper together with every byte read so far, starting at that request's first byte,
//! so hyper answers it (and its errors) as it always did. The connection comes back to the lane
//! once hyper is idle again (see `conn.rs`).
//!
//! What it keeps from hyper: a client that closes while its request is in flight cancels the
//! exchange; `Connection: close` (either side) ends the connection after the response, and the
//! response says so; `Date` is added; HEAD, 204 and 304 responses carry no body; a body of
//! unknown length is chunked, with trailers only for a client that sent `TE: trailers` and only
//! the fields the response's `Trailer` announced; a body shorter or longer than its
//! `Content-Length`, or one that fails, ends the connection.

use crate::proxy::body::{ClientIn, ProxyBody};
use crate::proxy::Live as Shared;
use crate::session::counters::{Front, Verdict};
use crate::session::stream::ClientStream;
use crate::session::ConnState;
use crate::upstream::h1::write_hex;
use bytes::{Buf, Bytes, BytesMut};
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, Request, StatusCode, Uri, Version};
use http_body::Body;
use std::future::Future;
use std::io;
use std::mem::MaybeUninit;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;
use tokio::io::AsyncWriteExt;

mod response;

use response::{encode_head, write_body};

/// Heads with more fields than this go to hyper (which applies `max_headers` itself). hyper's
/// own default is 100.
const FIELDS: usize = 100;
/// Longer request targets go to hyper (which answers 414 over this length).
const MAX_URI: usize = u16::MAX as usize - 1;
/// Read buffer: a new one is this big; it is topped up when less than `READ_MIN` is left.
pub(crate) const READ_BUF: usize = 8 * 1024;
const READ_MIN: usize = 1024;
/// Body pieces this big are not copied into the output buffer: they are written from where
/// they are, in one vectored write with what the buffer holds (a head, a chunk's size line).
/// Smaller ones are copied, so that several go out in one write.
const DIRECT: usize = 4 * 1024;
/// The output buffer is written out once it holds this much.
const OUT_MAX: usize = 64 * 1024;

/// A plain client connection, as the lane holds it.
struct Lane<'c> {
    stream: ClientStream,
    /// Bytes received and not yet parsed; they start at a request's first byte.
    pending: Bytes,
    /// Where reads land (then split off into `pending`).
    buf: BytesMut,
    /// The response head and small body pieces, sent together.
    out: Vec<u8>,
    /// How long the client may take none of its response (`body_timeout`).
    stall: Duration,
    /// The listener's counters (bytes received and sent).
    front: Option<&'c Front>,
}

/// Why the lane stopped.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Every response was written and the client stayed quiet for the grace period: park it.
    Idle,
    /// `pending` starts a request the lane does not take: hyper's turn.
    Hyper,
    /// The connection is finished (closed, failed, or the worker is stopping).
    Close,
}

impl<'c> Lane<'c> {
    fn new(
        stream: ClientStream,
        pending: Bytes,
        stall: Duration,
        front: Option<&'c Front>,
    ) -> Lane<'c> {
        // Bytes read before (a new connection's first read) become the read buffer, whose
        // room is then used for the next read instead of a buffer of its own.
        let (pending, buf) = match pending.is_empty() {
            true => (pending, BytesMut::new()),
            false => match pending.try_into_mut() {
                Ok(buf) => (Bytes::new(), buf),
                Err(pending) => (pending, BytesMut::new()),
            },
        };
        Lane {
            stream,
            pending,
            buf,
            out: Vec::new(),
            stall,
            front,
        }
    }

    /// Counts `n` bytes received from the client.
    #[inline]
    fn count_in(&self, n: usize) {
        if let Some(f) = self.front {
            f.bytes_in(n);
        }
    }

    /// Counts a response among the listener's.
    #[inline]
    fn count_response(&self, status: u16, verdict: Verdict) {
        if let Some(f) = self.front {
            f.response(status, verdict);
        }
    }

    /// Counts `n` bytes sent to the client.
    #[inline]
    fn count_out(&self, n: usize) {
        if let Some(f) = self.front {
            f.bytes_out(n);
        }
    }

    /// Everything received and not parsed yet (for hyper, or for the parking lot). Reads happen
    /// only when nothing is pending, so at most one of `pending` and `buf` holds bytes.
    fn take_unparsed(&mut self) -> Bytes {
        debug_assert!(self.pending.is_empty() || self.buf.is_empty());
        if self.pending.is_empty() {
            self.buf.split().freeze()
        } else {
            std::mem::take(&mut self.pending)
        }
    }

    /// Nothing buffered in either direction: the client may be watched for its next bytes.
    fn drained(&self) -> bool {
        self.pending.is_empty() && self.buf.is_empty()
    }

    fn reserve(&mut self) {
        if self.buf.capacity() - self.buf.len() < READ_MIN {
            self.buf.reserve(READ_BUF);
        }
    }

    /// Reads what the socket has now, without waiting: `None` if nothing is there.
    async fn read_now(&mut self) -> Option<io::Result<usize>> {
        self.reserve();
        let Lane { stream, buf, .. } = self;
        let read = std::future::poll_fn(|cx| {
            match tokio_util::io::poll_read_buf(Pin::new(&mut *stream), cx, &mut *buf) {
                Poll::Pending => Poll::Ready(None),
                Poll::Ready(r) => Poll::Ready(Some(r)),
            }
        })
        .await;
        if let Some(Ok(n)) = read {
            self.count_in(n);
        }
        read
    }

    /// Waits for `fut`; meanwhile, if nothing is buffered, reads from the client to notice it
    /// closing. `None`: it closed (or failed), and `fut` is dropped. Bytes it sends meanwhile
    /// (a pipelined request) are kept for later, and the watch stops (as in hyper).
    /// The future is pinned by the caller: it is not moved (an exchange's future is large).
    async fn watching<F: Future>(&mut self, mut fut: Pin<&mut F>) -> Option<F::Output> {
        let mut watch = self.drained();
        if watch {
            self.reserve();
        }
        let Lane {
            stream, buf, front, ..
        } = self;
        std::future::poll_fn(|cx| {
            if let Poll::Ready(out) = fut.as_mut().poll(cx) {
                return Poll::Ready(Some(out));
            }
            if watch {
                match tokio_util::io::poll_read_buf(Pin::new(&mut *stream), cx, &mut *buf) {
                    Poll::Ready(Ok(0)) | Poll::Ready(Err(_)) => return Poll::Ready(None),
                    Poll::Ready(Ok(n)) => {
                        watch = false;
                        if let Some(f) = front {
                            f.bytes_in(n);
                        }
                    }
                    Poll::Pending => {}
                }
            }
            Poll::Pending
        })
        .await
    }

    /// Sends the output buffer.
    async fn flush(&mut self) -> io::Result<()> {
        if !self.out.is_empty() {
            send(&self.stream, &self.out, self.stall).await?;
            self.count_out(self.out.len());
            self.out.clear();
        }
        Ok(())
    }

    /// Sends the output buffer, then `data`: one vectored write while the socket takes both,
    /// and no copy of `data`.
    async fn flush_with(&mut self, data: &[u8]) -> io::Result<()> {
        let n = self.out.len() + data.len();
        send_pair(&self.stream, &self.out, data, self.stall).await?;
        self.count_out(n);
        self.out.clear();
        Ok(())
    }
}

/// Writes all of `data`. A client that takes none of it for `limit` is given up on (the
/// connection closes): a response waiting on a client that stopped reading has a deadline
/// too. No timer while the socket takes what is written.
async fn send(stream: &ClientStream, mut data: &[u8], limit: Duration) -> io::Result<()> {
    while !data.is_empty() {
        match stream.try_write(data) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => data = &data[n..],
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => writable(stream, limit).await?,
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Writes all of `first` and then all of `second` (as [`send`]), both in one `writev` while the
/// socket takes them.
async fn send_pair(
    stream: &ClientStream,
    mut first: &[u8],
    mut second: &[u8],
    limit: Duration,
) -> io::Result<()> {
    while !first.is_empty() {
        let both = [io::IoSlice::new(first), io::IoSlice::new(second)];
        match stream.try_write_vectored(&both) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) if n < first.len() => first = &first[n..],
            Ok(n) => {
                second = &second[n - first.len()..];
                first = &[];
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => writable(stream, limit).await?,
            Err(e) => return Err(e),
        }
    }
    send(stream, second, limit).await
}

/// Waits until the socket takes more, at most `limit` (then [`stalled`]).
async fn writable(stream: &ClientStream, limit: Duration) -> io::Result<()> {
    match tokio::time::timeout(limit, stream.writable()).await {
        Ok(ready) => ready,
        Err(_) => Err(stalled()),
    }
}

/// The client accepted no byte of its response within `body_timeout`.
pub(crate) fn stalled() -> io::Error {
    io::Error::new(
        io::ErrorKind::TimedOut,
        "the client took nothing of its response within body_timeout",
    )
}

/// Serves requests on `stream` (`pending`: bytes already received) until one is not for the
/// lane, the connection ends, or it stays idle for two ticks of the worker's park clock.
/// Gives back the socket and what was received and not parsed.
pub async fn serve(
    stream: ClientStream,
    pending: Bytes,
    shared: &Shared,
    state: &Arc<ConnState>,
    ticks: &mut tokio::sync::watch::Receiver<u64>,
) -> (Outcome, ClientStream, Bytes) {
    let stall = shared.runtime.load().limits.body_timeout;
    let mut lane = Lane::new(stream, pending, stall, state.front.as_ref());
    let outcome = run(&mut lane, shared, state, ticks).await;
    let unparsed = lane.take_unparsed();
    (outcome, lane.stream, unparsed)
}

/// Serves requests until one is not for the lane, the connection ends, or it stays idle for
/// two ticks of the worker's park clock.
async fn run(
    lane: &mut Lane<'_>,
    shared: &Shared,
    state: &Arc<ConnState>,
    ticks: &mut tokio::sync::watch::Receiver<u64>,
) -> Outcome {
    loop {
        if lane.pending.is_empty() {
            if lane.buf.is_empty() {
                match lane.read_now().await {
                    Some(Ok(0)) | Some(Err(_)) => return Outcome::Close,
                    Some(Ok(_)) => {}
                    None => match grace(lane, shared, ticks).await {
                        Some(true) => continue,
                        Some(false) => return Outcome::Idle,
                        None => return Outcome::Close,
                    },
                }
            }
            lane.pending = lane.buf.split().freeze();
        }
        let rt = shared.runtime.load_full();
        let limits = &rt.limits;
        let Some(head) = parse(&lane.pending, limits.max_header_size, limits.max_headers) else {
            return Outcome::Hyper;
        };
        lane.pending.advance(head.len);
        state.exchange_started();
        let head_only = head.req.method() == Method::HEAD;
        let exchange = crate::proxy::handle(&rt, head.req, &state.client, state);
        let Some(resp) = lane.watching(std::pin::pin!(exchange)).await else {
            return Outcome::Close;
        };
        rt.traffic.count(resp.status().as_u16());
        lane.count_response(resp.status().as_u16(), resp.body().verdict());
        let (parts, body) = resp.into_parts();
        let mut close = head.close || shared.stopping.load(Ordering::Relaxed);
        lane.out.clear();
        let framing = encode_head(
            &mut lane.out,
            &parts,
            &body,
            head_only,
            head.trailers,
            &mut close,
        );
        drop(parts);
        if write_body(lane, body, framing).await.is_err() {
            return Outcome::Close;
        }
        state.response_done();
        if lane.out.capacity() > OUT_MAX {
            lane.out = Vec::new();
        }
        if close {
            // A client that asked to close sends nothing more (RFC 9112 9.6), and all it sent
            // was read: the socket's close sends the FIN, as nginx does. Otherwise (langur
            // closes, or bytes came after the request) the FIN is sent first, on its own.
            if !(head.close && lane.drained()) {
                let _ = lane.stream.shutdown().await;
            }
            return Outcome::Close;
        }
    }
}

/// Waits for the client's next bytes for two ticks of the park clock. `Some(true)`: they
/// came; `Some(false)`: time to park; `None`: close (the worker is stopping, or an error).
async fn grace(
    lane: &mut Lane<'_>,
    shared: &Shared,
    ticks: &mut tokio::sync::watch::Receiver<u64>,
) -> Option<bool> {
    if shared.stopping.load(Ordering::Relaxed) {
        return None;
    }
    let mark = *ticks.borrow_and_update();
    loop {
        tokio::select! {
            biased;
            r = lane.stream.readable() => return r.ok().map(|()| true),
            changed = ticks.changed() => {
                if changed.is_err() || shared.stopping.load(Ordering::Relaxed) {
                    return None;
                }
                if *ticks.borrow() >= mark + 2 {
                    return Some(false);
                }
            }
        }
    }
}

/// A request head the lane takes.
struct Head {
    req: Request<ClientIn>,
    /// Bytes of the head.
    len: usize,
    /// The client asked to close after this exchange.
    close: bool,
    /// The client accepts trailers (`TE: trailers`).
    trailers: bool,
}

/// Parses a request head from the start of `data`. `None`: not for the lane (see the module
/// documentation); hyper will read it from the same bytes.
fn parse(data: &Bytes, max_head: usize, max_fields: usize) -> Option<Head> {
    let mut fields = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; FIELDS];
    let mut req = httparse::Request::new(&mut []);
    let len = match httparse::ParserConfig::default().parse_request_with_uninit_headers(
        &mut req,
        data,
        &mut fields,
    ) {
        Ok(httparse::Status::Complete(n)) => n,
        _ => return None,
    };
    if len > max_head || req.headers.len() > max_fields || req.version != Some(1) {
        return None;
    }
    let method = Method::from_bytes(req.method?.as_bytes()).ok()?;
    if method == Method::CONNECT {
        return None;
    }
    let path = req.path?;
    if path.len() > MAX_URI {
        return None;
    }
    let uri = Uri::from_maybe_shared(data.slice_ref(path.as_bytes())).ok()?;
    // Room for the forwarding fields the proxy adds (see `headers::add_forwarding`).
    let mut headers = HeaderMap::with_capacity(req.headers.len() + 6);
    let (mut close, mut trailers) = (false, false);
    for f in req.headers.iter() {
        let name = f.name.as_bytes();
        let is = |n: &str| name.eq_ignore_ascii_case(n.as_bytes());
        match name.len() {
            14 if is("content-length") => return None,
            17 if is("transfer-encoding") => return None,
            6 if is("expect") => return None,
            7 if is("upgrade") => return None,
            10 if is("connection") => {
                if has_token(f.value, "upgrade") {
                    return None;
                }
                close |= has_token(f.value, "close");
            }
            2 if is("te") => trailers |= has_token(f.value, "trailers"),
            _ => {}
        }
        let name = HeaderName::from_bytes(name).ok()?;
        let value = HeaderValue::from_maybe_shared(data.slice_ref(f.value)).ok()?;
        headers.append(name, value);
    }
    let mut r = Request::new(ClientIn::Empty);
    *r.method_mut() = method;
    *r.uri_mut() = uri;
    *r.version_mut() = Version::HTTP_11;
    *r.headers_mut() = headers;
    Some(Head {
        req: r,
        len,
        close,
        trailers,
    })
}

/// Whether a comma-separated field value lists `token` (case-insensitive).
fn has_token(value: &[u8], token: &str) -> bool {
    value
        .split(|&b| b == b',')
        .any(|t| t.trim_ascii().eq_ignore_ascii_case(token.as_bytes()))
}

/// For the fuzz targets and their seeds.
#[doc(hidden)]
pub mod fuzzing {
    use super::*;
    use std::sync::Mutex;

    type Seen = (Method, Uri, Version, HeaderMap);

    /// Reads the head at the start of `data` with the lane and, if the lane takes it, with
    /// hyper's server too: panics if hyper refuses it or reads it differently. True if the
    /// lane took it.
    pub async fn agrees_with_hyper(data: &[u8]) -> bool {
        let Some(lane) = parse(&Bytes::copy_from_slice(data), 64 * 1024, 100) else {
            return false;
        };
        let first: Arc<Mutex<Option<Seen>>> = Arc::default();
        let record = first.clone();
        let svc = hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
            let mut slot = record.lock().unwrap_or_else(|e| e.into_inner());
            if slot.is_none() {
                *slot = Some((
                    req.method().clone(),
                    req.uri().clone(),
                    req.version(),
                    req.headers().clone(),
                ));
            }
            async { Ok::<_, std::convert::Infallible>(http::Response::new(String::new())) }
        });
        let (mut client, server) = tokio::io::duplex(256 * 1024);
        let conn = hyper::server::conn::http1::Builder::new()
            .max_headers(100)
            .serve_connection(hyper_util::rt::TokioIo::new(server), svc);
        let head = &data[..lane.len];
        let feed = async move {
            let _ = client.write_all(head).await;
            let _ = client.shutdown().await;
            let mut sink = Vec::new();
            let _ = tokio::io::AsyncReadExt::read_to_end(&mut client, &mut sink).await;
        };
        let _ = tokio::time::timeout(std::time::Duration::from_secs(5), async {
            tokio::join!(conn, feed)
        })
        .await;
        let seen = first.lock().unwrap_or_else(|e| e.into_inner()).take();
        let (method, uri, version, headers) =
            seen.unwrap_or_else(|| panic!("hyper refused a head the lane took: {head:?}"));
        assert_eq!(&method, lane.req.method());
        assert_eq!(&uri, lane.req.uri());
        assert_eq!(version, lane.req.version());
        assert_eq!(&headers, lane.req.headers());
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(raw: &str) -> Option<Head> {
        parse(&Bytes::copy_from_slice(raw.as_bytes()), 64 * 1024, 100)
    }

    #[test]
    fn takes_plain_gets_and_heads() {
        let h = head("GET /a?b=1 HTTP/1.1\r\nHost: x\r\nAccept: */*\r\n\r\nGET /next").unwrap();
        assert_eq!(h.req.uri(), "/a?b=1");
        assert_eq!(h.req.headers()["host"], "x");
        assert_eq!(
            h.len,
            "GET /a?b=1 HTTP/1.1\r\nHost: x\r\nAccept: */*\r\n\r\n".len()
        );
        assert!(!h.close && !h.trailers);
        let h = head("HEAD / HTTP/1.1\r\nConnection: Keep-Alive, close\r\nTE: trailers\r\n\r\n")
            .unwrap();
        assert!(h.close && h.trailers);
    }

    #[test]
    fn leaves_the_rest_to_hyper() {
        for raw in [
            "POST / HTTP/1.1\r\nContent-Length: 1\r\n\r\nx",
            "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
            "GET / HTTP/1.1\r\ncontent-length: 0\r\n\r\n",
            "PUT / HTTP/1.1\r\nExpect: 100-continue\r\n\r\n",
            "GET / HTTP/1.1\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n",
            "GET / HTTP/1.1\r\nConnection: upgrade\r\n\r\n",
            "CONNECT a:443 HTTP/1.1\r\nHost: a:443\r\n\r\n",
            "GET / HTTP/1.0\r\n\r\n",
            "GET / HTTP/1.1\r\nHost: x\r\n",
            "GET / HTTP/1.1\r\nHo st: x\r\n\r\n",
            "GET / HTTP/1.1\r\nX: a\x01b\r\n\r\n",
            "G@T / HTTP/1.1\r\n\r\n",
        ] {
            assert!(head(raw).is_none(), "{raw:?}");
        }
        // Over the limits.
        let big = format!("GET / HTTP/1.1\r\nX: {}\r\n\r\n", "a".repeat(100));
        assert!(parse(&Bytes::from(big), 64, 100).is_none());
        let many = format!("GET / HTTP/1.1\r\n{}\r\n", "X: y\r\n".repeat(5));
        assert!(parse(&Bytes::from(many.clone()), 1024, 4).is_none());
        assert!(parse(&Bytes::from(many), 1024, 5).is_some());
    }

    #[test]
    fn tokens() {
        assert!(has_token(b"keep-alive, Close", "close"));
        assert!(!has_token(b"closed", "close"));
        assert!(has_token(b" trailers ", "trailers"));
    }
}
