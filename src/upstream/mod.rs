//! Connections to servers: HTTP/1.1 (`h1.rs`) or HTTP/2 (hyper's), over TCP or TLS, and the
//! silence limit on HTTP/2 response bodies (`read_timeout`; HTTP/1.1 keeps its own).
//!
//! The silence limit is kept per connection, not per request: a request costs a flag set per
//! read that brings data and no timer operation. The connection's I/O ([`TimedIo`]) keeps one
//! sleep, allocated once, that ticks every half `read_timeout`; when two ticks in a row find
//! nothing arrived while a response body is being read on the connection ([`Watch`]), the read
//! fails, which ends the body (and the connection). Waiting for a
//! response head is `response_timeout`'s business (in `forward`); an idle pooled connection is
//! only looked at once per period.

use crate::session::body::UpBody;

pub mod h1;
pub mod peer;
pub mod proxy_header;

use http::{Request, Response, Version};
use http_body::Body as _;
use hyper::body::Incoming;
use hyper::rt::{Read, ReadBufCursor, Write};
use hyper_util::rt::TokioIo;
use peer::Peer;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::net::TcpStream;
use tokio::time::{timeout, Instant};

/// What an upstream connection's I/O knows of the exchanges on it.
#[derive(Debug, Default)]
pub struct Watch {
    /// Response bodies being read on this connection.
    bodies: AtomicUsize,
}

/// Held while a response body is read: the connection's silence limit applies meanwhile.
#[derive(Debug)]
pub struct Reading(Arc<Watch>);

impl Reading {
    pub fn new(watch: &Arc<Watch>) -> Reading {
        watch.bodies.fetch_add(1, Ordering::Relaxed);
        Reading(watch.clone())
    }
}

impl Drop for Reading {
    fn drop(&mut self) {
        self.0.bodies.fetch_sub(1, Ordering::Relaxed);
    }
}

/// An upstream connection's I/O with the silence limit on reads.
///
/// A read that brings data only sets a flag (no clock read). The sleep ticks every half limit;
/// a tick that finds no data since the previous one counts a silent half, and two in a row while
/// a body is being read fail the read. So a body silent for `read_timeout` is cut between 1 and
/// 1.5 times `read_timeout` after its last data.
struct TimedIo {
    io: Box<dyn UpIoBox>,
    watch: Arc<Watch>,
    half: Duration,
    /// Data arrived since the last tick.
    progressed: bool,
    /// Silent ticks in a row.
    silent: u8,
    sleep: Option<Pin<Box<tokio::time::Sleep>>>,
    /// The sleep holds this task's waker since it was last set: a silent read only has to ask
    /// whether it elapsed, not poll it again (the connection is one task, so the waker stands).
    registered: bool,
}

impl TimedIo {
    fn new(io: Box<dyn UpIoBox>, watch: Arc<Watch>, limit: Duration) -> TimedIo {
        TimedIo {
            io,
            watch,
            half: (limit / 2).max(Duration::from_millis(1)),
            progressed: true,
            silent: 0,
            sleep: None,
            registered: false,
        }
    }
}

impl Read for TimedIo {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: ReadBufCursor<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        match Pin::new(&mut this.io).poll_read(cx, buf) {
            Poll::Pending => {}
            ready => {
                this.progressed = true;
                return ready;
            }
        }
        loop {
            if let Some(s) = &this.sleep {
                if this.registered && !s.is_elapsed() {
                    return Poll::Pending;
                }
            }
            let half = this.half;
            let sleep = this
                .sleep
                .get_or_insert_with(|| Box::pin(tokio::time::sleep(half)));
            if std::future::Future::poll(sleep.as_mut(), cx).is_pending() {
                this.registered = true;
                return Poll::Pending;
            }
            // A tick.
            this.registered = false;
            if std::mem::take(&mut this.progressed)
                || this.watch.bodies.load(Ordering::Relaxed) == 0
            {
                this.silent = 0;
            } else {
                this.silent += 1;
                if this.silent >= 2 {
                    return Poll::Ready(Err(std::io::Error::new(
                        std::io::ErrorKind::TimedOut,
                        "the server sent nothing within read_timeout",
                    )));
                }
            }
            sleep.as_mut().reset(Instant::now() + half);
        }
    }
}

impl Write for TimedIo {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write(cx, buf)
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }
    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write_vectored(cx, bufs)
    }
}

/// A connection to a server: HTTP/1.1 (one exchange at a time, driven by the request's task,
/// pooled when idle) or HTTP/2 (hyper's, one connection per server, shared by every request).
#[derive(Debug)]
pub enum Sender {
    H1(Box<h1::Conn>),
    H2(H2),
}

/// The shared HTTP/2 connection's sending half and what it shares with its I/O.
#[derive(Debug, Clone)]
pub struct H2 {
    pub sender: hyper::client::conn::http2::SendRequest<UpBody>,
    pub watch: Arc<Watch>,
}

pub use h1::SendError;

impl Sender {
    /// Waits until the connection can take a request (HTTP/2 flow control); false if closed.
    pub async fn ready(&mut self) -> bool {
        match self {
            Sender::H1(_) => true,
            Sender::H2(c) => c.sender.ready().await.is_ok(),
        }
    }

    /// Sends the request; the response's body gives an HTTP/1.1 connection back to its
    /// server's idle list when it ends cleanly. If an HTTP/1.1 exchange fails after the
    /// request may have been written, its head is left in `kept` (see [`h1::Conn::send`]).
    pub async fn send(
        self,
        req: Request<UpBody>,
        kept: &mut Option<http::request::Parts>,
    ) -> Result<Response<UpstreamBody>, SendError> {
        match self {
            Sender::H1(c) => c.send(req, kept).await.map(|r| r.map(UpstreamBody::H1)),
            Sender::H2(mut c) => match c.sender.try_send_request(req).await {
                Ok(resp) => {
                    if let Err(why) = crate::strict::check_response(resp.headers()) {
                        return Err(SendError::Ambiguous(why));
                    }
                    Ok(resp.map(|b| {
                        let reading = (!b.is_end_stream()).then(|| Reading::new(&c.watch));
                        UpstreamBody::H2(b, reading)
                    }))
                }
                Err(mut e) => match e.take_message() {
                    Some(back) => Err(SendError::Unsent(
                        Box::new(back),
                        std::io::Error::other(e.into_error()),
                    )),
                    None => {
                        let e = e.into_error();
                        if let Some(b) = std::error::Error::source(&e)
                            .and_then(|c| c.downcast_ref::<crate::session::body::BodyError>())
                        {
                            if let Some(kind) = b.client_kind() {
                                return Err(SendError::Client(kind));
                            }
                        }
                        Err(SendError::Failed(std::io::Error::other(e)))
                    }
                },
            },
        }
    }
}

/// A server's response body: read by the request's task (HTTP/1.1) or from hyper's HTTP/2
/// connection (with the connection's silence limit held while it is read).
#[derive(Debug)]
pub enum UpstreamBody {
    H1(h1::Body),
    H2(Incoming, Option<Reading>),
}

impl http_body::Body for UpstreamBody {
    type Data = bytes::Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<bytes::Bytes>, std::io::Error>>> {
        match self.get_mut() {
            UpstreamBody::H1(b) => Pin::new(b).poll_frame(cx),
            UpstreamBody::H2(b, reading) => match Pin::new(&mut *b).poll_frame(cx) {
                Poll::Ready(Some(Err(e))) => {
                    *reading = None;
                    let timed_out = std::error::Error::source(&e)
                        .and_then(|c| c.downcast_ref::<std::io::Error>())
                        .is_some_and(|io| io.kind() == std::io::ErrorKind::TimedOut);
                    let kind = if timed_out {
                        std::io::ErrorKind::TimedOut
                    } else {
                        std::io::ErrorKind::Other
                    };
                    Poll::Ready(Some(Err(std::io::Error::new(kind, e))))
                }
                Poll::Ready(None) => {
                    *reading = None;
                    Poll::Ready(None)
                }
                Poll::Ready(Some(Ok(frame))) => {
                    if b.is_end_stream() {
                        *reading = None;
                    }
                    Poll::Ready(Some(Ok(frame)))
                }
                Poll::Pending => Poll::Pending,
            },
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            UpstreamBody::H1(b) => b.is_end_stream(),
            UpstreamBody::H2(b, _) => b.is_end_stream(),
        }
    }

    fn size_hint(&self) -> http_body::SizeHint {
        match self {
            UpstreamBody::H1(b) => b.size_hint(),
            UpstreamBody::H2(b, _) => b.size_hint(),
        }
    }
}

/// An open connection to reuse: the shared HTTP/2 one, or an idle HTTP/1.1 one that the
/// kernel says is still open and quiet at this instant (see [`h1::Conn::is_alive_now`]). Every
/// request pays that one system call: bytes a server sent on an idle connection after its
/// last response (an answer to HEAD with a body, a response longer than announced) must never
/// be read as the next request's response, which the cache could then store for everyone; and
/// tokio's readiness may not know of them yet.
///
/// [`h1::Conn::is_alive_now`]: h1::Conn::is_alive_now
///
/// With `send_proxy` (`proxied`: the source the connection must have announced), only an
/// HTTP/1.1 connection that announced that client is reused: a PROXY header names one client.
pub fn take_connection(
    protocol: crate::config::Protocol,
    peer: &Peer,
    proxied: Option<std::net::SocketAddr>,
) -> Option<Sender> {
    match protocol {
        crate::config::Protocol::H2 if proxied.is_some() => None,
        crate::config::Protocol::H2 => peer.h2_sender().map(Sender::H2),
        crate::config::Protocol::H1 => {
            let take = || match proxied {
                None => peer.take_idle(),
                Some(source) => peer.take_idle_for(source),
            };
            let mut c = take()?;
            while !c.is_alive_now() {
                c = take()?;
            }
            Some(Sender::H1(c))
        }
    }
}

/// Where and how to connect: one server of a pool, as plain data (the pipeline makes it from
/// the pool's settings and the server's address and name).
#[derive(Debug, Clone, Copy)]
pub struct Target<'a> {
    pub addr: std::net::SocketAddr,
    /// The server's name: TLS server name, and the HTTP/2 `:authority` when the request has no
    /// `Host`.
    pub name: &'a str,
    pub tls: Option<&'a crate::tls::Upstream>,
    pub protocol: crate::config::Protocol,
    /// Longest silence while a response is awaited or read.
    pub read_timeout: Duration,
    /// A server on a Unix-domain socket: its path (`addr` is then a placeholder).
    pub unix: Option<&'a std::path::Path>,
    /// `send_proxy`: the PROXY header written first, and the client it names (an HTTP/1.1
    /// connection is reused only for that client; an HTTP/2 one is not shared).
    pub proxy: Option<(&'a [u8], std::net::SocketAddr)>,
}

/// Opens a connection (TCP, TLS if the pool says so, HTTP/1.1 or an HTTP/2 handshake) within
/// `connect_timeout`; the connection is registered as a session of `peer`. Errors: the
/// connect's or the handshake's, `TimedOut` when the time ran out.
pub async fn connect(
    to: &Target<'_>,
    peer: &Arc<Peer>,
    connect_timeout: std::time::Duration,
) -> std::io::Result<Sender> {
    let timed_out = || std::io::Error::new(std::io::ErrorKind::TimedOut, "connect timed out");
    let started = Instant::now();
    if let Some(path) = to.unix {
        let io = connect_unix(path, to.proxy.map(|p| p.0), connect_timeout).await?;
        return handshake(io, to, peer).await;
    }
    let mut stream = match timeout(connect_timeout, TcpStream::connect(to.addr)).await {
        Ok(r) => r?,
        Err(_) => return Err(timed_out()),
    };
    stream.set_nodelay(true)?;
    if let Some((header, _)) = to.proxy {
        // The PROXY header comes first, before any TLS.
        let left = connect_timeout.saturating_sub(started.elapsed());
        write_first(&mut stream, header, left).await?;
    }
    let io = match to.tls {
        None => h1::Io::Tcp(stream),
        Some(tls) => {
            let left = connect_timeout.saturating_sub(started.elapsed());
            match timeout(left, tls.handshake(to.name, stream)).await {
                Ok(Ok(s)) => h1::Io::Tls(Box::new(s)),
                Ok(Err(e)) => return Err(std::io::Error::other(format!("TLS: {e}"))),
                Err(_) => return Err(timed_out()),
            }
        }
    };
    match to.protocol {
        crate::config::Protocol::H1 => Ok(h1_sender(io, to, peer)),
        crate::config::Protocol::H2 => h2_handshake(io, to, peer).await,
    }
}

/// Writes a PROXY header within `limit`.
async fn write_first<S: tokio::io::AsyncWrite + Unpin>(
    stream: &mut S,
    header: &[u8],
    limit: Duration,
) -> std::io::Result<()> {
    match timeout(limit, tokio::io::AsyncWriteExt::write_all(stream, header)).await {
        Ok(r) => r,
        Err(_) => Err(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            "connect timed out",
        )),
    }
}

/// A connection to a server on a Unix-domain socket, with its PROXY header written, within
/// `limit`.
async fn connect_unix(
    path: &std::path::Path,
    header: Option<&[u8]>,
    limit: Duration,
) -> std::io::Result<h1::Io> {
    let started = Instant::now();
    let mut stream = match timeout(limit, tokio::net::UnixStream::connect(path)).await {
        Ok(r) => r?,
        Err(_) => {
            return Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "connect timed out",
            ))
        }
    };
    if let Some(h) = header {
        write_first(&mut stream, h, limit.saturating_sub(started.elapsed())).await?;
    }
    Ok(h1::Io::Unix(stream))
}

/// A new connection's protocol side: HTTP/1.1 as it is, or the HTTP/2 handshake.
async fn handshake(io: h1::Io, to: &Target<'_>, peer: &Arc<Peer>) -> std::io::Result<Sender> {
    match to.protocol {
        crate::config::Protocol::H1 => Ok(h1_sender(io, to, peer)),
        crate::config::Protocol::H2 => h2_handshake(io, to, peer).await,
    }
}

/// A new HTTP/1.1 connection, tagged with the client its PROXY header announced.
fn h1_sender(io: h1::Io, to: &Target<'_>, peer: &Arc<Peer>) -> Sender {
    let mut conn = h1::Conn::new(io, peer, to.read_timeout);
    conn.proxied = to.proxy.map(|(_, source)| source);
    Sender::H1(conn)
}

/// The HTTP/2 handshake of a new connection, its task a session of the server; the
/// connection is then shared by every request, unless it carries a PROXY header (which names
/// one client).
async fn h2_handshake(io: h1::Io, to: &Target<'_>, peer: &Arc<Peer>) -> std::io::Result<Sender> {
    let watch = Arc::new(Watch::default());
    let io = TimedIo::new(Box::new(TokioIo::new(io)), watch.clone(), to.read_timeout);
    let (sender, conn) =
        hyper::client::conn::http2::Builder::new(hyper_util::rt::TokioExecutor::new())
            .timer(hyper_util::rt::TokioTimer::new())
            .handshake(io)
            .await
            .map_err(std::io::Error::other)?;
    // A session of the server: `shutdown-sessions` can end it.
    peer.spawn_session(async move {
        let _ = conn.await;
    });
    let conn = H2 { sender, watch };
    if to.proxy.is_none() {
        *peer.h2.lock().unwrap_or_else(|e| e.into_inner()) = Some(conn.clone());
    }
    Ok(Sender::H2(conn))
}

/// A boxed upstream I/O (TCP or TLS), so both kinds make the same connection type.
trait UpIoBox: hyper::rt::Read + hyper::rt::Write + Unpin + Send {}
impl<T: hyper::rt::Read + hyper::rt::Write + Unpin + Send> UpIoBox for T {}

/// HTTP/2 needs the scheme and authority in the request (`:scheme`, `:authority`); they come
/// from the Host header, which HTTP/2 does not use.
pub fn to_h2(req: &mut Request<UpBody>, to: &Target<'_>) {
    let authority = req
        .headers_mut()
        .remove(http::header::HOST)
        .and_then(|h| h.to_str().ok().map(str::to_string))
        .unwrap_or_else(|| to.name.to_string());
    let scheme = if to.tls.is_some() { "https" } else { "http" };
    let pq = req.uri().path_and_query().map_or("/", |p| p.as_str());
    if let Ok(uri) = format!("{scheme}://{authority}{pq}").parse() {
        *req.uri_mut() = uri;
    }
    *req.version_mut() = Version::HTTP_2;
}
