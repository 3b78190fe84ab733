//! The upstream side of HTTP/1.1, driven inside the request's own task.
//!
//! hyper's client runs each connection as a task of its own: a request goes to it over a
//! channel, the response head comes back over another and the body over a third, so a proxied
//! request costs several task wake-ups and hand-offs on top of the work. Here the request's task
//! writes the request and reads the response itself, as HAProxy and pingora do; a connection
//! between two exchanges is a plain value in its server's idle list, not a task.
//!
//! The parsing is httparse's (the parser hyper uses): response heads, chunk-size lines and
//! trailers. What this module adds is the framing around them (RFC 9112 section 6) and the
//! strictness langur applies to servers: ambiguous framing is refused, not guessed.

use super::peer::{Peer, Session};
use crate::session::body::{BodyError, UpBody};
use crate::strict;
use bytes::{Buf, Bytes, BytesMut};
use http::header::{HeaderName, HeaderValue, CONTENT_LENGTH};
use http::{HeaderMap, Method, Request, Response, StatusCode, Version};
use http_body::{Body as _, Frame, SizeHint};
use std::io;
use std::mem::MaybeUninit;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::task::{ready, Context, Poll, Wake, Waker};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

/// Most fields accepted in a response head or a trailer section.
const MAX_FIELDS: usize = 100;
/// Largest response head (or trailer section) accepted; a larger one is a 502, like nginx's
/// "upstream sent too big header" (whose default is far smaller).
const MAX_HEAD: usize = 64 * 1024;
/// Largest chunk-size line, extensions included.
const MAX_CHUNK_LINE: usize = 4096;
/// Request body bytes that may go out with the head in its first write.
const FIRST_WRITE: usize = 64 * 1024;
/// What a read asks the socket for.
const READ_SIZE: usize = 16 * 1024;
/// How long a request with `Expect: 100-continue` holds its body back for the server's answer
/// (RFC 9110 10.1.1 lets a client send it after a while anyway; curl waits one second too), so
/// a server that ignores the expectation still gets the body.
const EXPECT_WAIT: Duration = Duration::from_secs(1);

/// The socket of an upstream connection.
#[derive(Debug)]
pub enum Io {
    Tcp(TcpStream),
    Tls(Box<tokio_rustls::client::TlsStream<TcpStream>>),
    /// In memory: for the fuzz target and tests ([`fuzzing`]).
    Mem(tokio::io::DuplexStream),
}

impl AsyncRead for Io {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Io::Tcp(s) => Pin::new(s).poll_read(cx, buf),
            Io::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
            Io::Mem(s) => Pin::new(s).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Io {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Io::Tcp(s) => Pin::new(s).poll_write(cx, buf),
            Io::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
            Io::Mem(s) => Pin::new(s).poll_write(cx, buf),
        }
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Io::Tcp(s) => Pin::new(s).poll_flush(cx),
            Io::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
            Io::Mem(s) => Pin::new(s).poll_flush(cx),
        }
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Io::Tcp(s) => Pin::new(s).poll_shutdown(cx),
            Io::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
            Io::Mem(s) => Pin::new(s).poll_shutdown(cx),
        }
    }
}

/// The way to end one connection from outside (`shutdown-sessions`): a flag its reads and
/// writes look at, and the waker of whoever waits on it.
#[derive(Debug, Default)]
pub struct Kill {
    killed: AtomicBool,
    waker: atomic_waker::AtomicWaker,
}

impl Kill {
    pub fn kill(&self) {
        self.killed.store(true, Ordering::Release);
        self.waker.wake();
    }

    fn killed(&self) -> bool {
        self.killed.load(Ordering::Acquire)
    }

    /// After a `Pending`: wake this task if the connection is ended meanwhile.
    fn pending<T>(&self, cx: &Context<'_>) -> Poll<io::Result<T>> {
        self.waker.register(cx.waker());
        if self.killed() {
            return Poll::Ready(Err(killed()));
        }
        Poll::Pending
    }
}

fn killed() -> io::Error {
    io::Error::new(
        io::ErrorKind::ConnectionAborted,
        "the server's sessions were shut down",
    )
}

/// The entry of a connection in its server's session list, removed when the connection ends.
/// Weak: the server's idle list holds its connections, which must not keep it alive (a server
/// replaced by a reload is dropped with its idle connections).
#[derive(Debug)]
struct Registered {
    peer: std::sync::Weak<Peer>,
    id: u64,
}

impl Drop for Registered {
    fn drop(&mut self) {
        if let Some(peer) = self.peer.upgrade() {
            peer.end_session(self.id);
        }
    }
}

/// The silence limit on response bodies (`read_timeout`), kept per connection: a read that
/// brings data sets a flag (no clock read); one sleep, allocated once per connection, ticks
/// every half limit while a body read waits, and two silent ticks in a row fail the read. So
/// a body silent for `read_timeout` is cut between 1 and 1.5 times `read_timeout` after its
/// last data, and a body that arrives with its head costs no timer at all.
#[derive(Debug)]
struct Silence {
    half: Duration,
    progressed: bool,
    silent: u8,
    sleep: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl Silence {
    fn start(&mut self) {
        self.progressed = true;
        self.silent = 0;
    }

    /// A body read is pending: true once the server was silent for the limit.
    fn expired(&mut self, cx: &mut Context<'_>) -> bool {
        let half = self.half;
        let sleep = self
            .sleep
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(half)));
        while std::future::Future::poll(sleep.as_mut(), cx).is_ready() {
            if std::mem::take(&mut self.progressed) {
                self.silent = 0;
            } else {
                self.silent += 1;
                if self.silent >= 2 {
                    return true;
                }
            }
            sleep.as_mut().reset(tokio::time::Instant::now() + half);
        }
        false
    }
}

/// One HTTP/1.1 connection to a server, between exchanges or during one.
pub struct Conn {
    io: Io,
    /// Bytes read and not yet consumed.
    buf: BytesMut,
    /// The encoding buffer for what is written (kept to reuse its allocation).
    out: Vec<u8>,
    /// Where the fields of the head being parsed lie in `buf` (kept, like `out`).
    fields: Vec<(usize, usize, usize, usize, Field)>,
    /// How much of `out` was written.
    out_pos: usize,
    /// `buf`'s length when the head (or trailer section) in it was last found incomplete.
    partial_at: usize,
    /// The request body still to send, once the head is out.
    upload: Option<(Upload, UpBody)>,
    /// The request is still going out (head, body or the final flush).
    sending: bool,
    /// Some of the request reached the socket.
    wrote: bool,
    kill: Arc<Kill>,
    silence: Silence,
    /// The request was not written whole (the server answered or closed early): the
    /// connection cannot carry another exchange.
    broken: bool,
    /// The request said `Expect: 100-continue`: its body waits for the server's 100 (or
    /// [`EXPECT_WAIT`]); a final status first means it is never sent.
    expect: Option<Pin<Box<tokio::time::Sleep>>>,
    _registered: Registered,
}

impl std::fmt::Debug for Conn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("h1::Conn")
            .field("io", &self.io)
            .field("buffered", &self.buf.len())
            .finish_non_exhaustive()
    }
}

/// Why an exchange failed.
#[derive(Debug)]
pub enum SendError {
    /// Nothing was written: the request comes back intact and may go elsewhere.
    Unsent(Box<Request<UpBody>>, io::Error),
    /// The connection ended before any byte of a response (on a reused connection, the
    /// server had closed it while idle).
    NoResponse(io::Error),
    /// The response's framing could be read two ways (why).
    Ambiguous(&'static str),
    /// The client's own body failed while it was being sent (what the client is told).
    Client(crate::error::ErrorKind),
    /// Anything else: a failed write or read, or a response that is not HTTP/1.x.
    Failed(io::Error),
}

/// How a message body is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Out {
    None,
    Length(u64),
    Chunked,
}

/// The request body failed: the client's fault, unless it was a server's body being relayed.
fn client_error(e: BodyError) -> SendError {
    match body_failed(e) {
        Upstream::Client(kind) => SendError::Client(kind),
        Upstream::Io(e) => SendError::Failed(e),
    }
}

/// Why a request body stopped, for [`Conn::poll_upload`].
fn body_failed(e: BodyError) -> Upstream {
    match e.client_kind() {
        Some(kind) => Upstream::Client(kind),
        None => Upstream::Io(io::Error::other(e)),
    }
}

fn invalid(what: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what)
}

fn noop_context() -> Context<'static> {
    struct Noop;
    impl Wake for Noop {
        fn wake(self: Arc<Self>) {}
    }
    static NOOP: OnceLock<Waker> = OnceLock::new();
    Context::from_waker(NOOP.get_or_init(|| Waker::from(Arc::new(Noop))))
}

impl Conn {
    /// A connection to `server`, registered as one of its sessions.
    pub fn new(io: Io, peer: &Arc<Peer>, read_timeout: Duration) -> Box<Conn> {
        let kill = Arc::new(Kill::default());
        let id = peer.add_session(Session::Conn(kill.clone()));
        Box::new(Conn {
            io,
            buf: BytesMut::new(),
            out: Vec::new(),
            fields: Vec::new(),
            out_pos: 0,
            partial_at: 0,
            upload: None,
            sending: false,
            wrote: false,
            kill,
            silence: Silence {
                half: (read_timeout / 2).max(Duration::from_millis(1)),
                progressed: true,
                silent: 0,
                sleep: None,
            },
            broken: false,
            expect: None,
            _registered: Registered {
                peer: Arc::downgrade(peer),
                id,
            },
        })
    }

    /// Whether an idle connection can carry another request: not ended from outside, and the
    /// server sent nothing since the last response (neither a close nor stray bytes). Costs no
    /// system call unless the socket was flagged readable.
    pub fn is_reusable(&mut self) -> bool {
        if self.kill.killed() || !self.buf.is_empty() {
            return false;
        }
        if self.buf.capacity() == 0 {
            self.buf.reserve(READ_SIZE);
        }
        if let Io::Tcp(s) = &self.io {
            // Checks tokio's readiness first: no system call, and no waker to register.
            return matches!(s.try_read_buf(&mut self.buf), Err(e) if e.kind() == io::ErrorKind::WouldBlock);
        }
        let mut cx = noop_context();
        matches!(
            tokio_util::io::poll_read_buf(Pin::new(&mut self.io), &mut cx, &mut self.buf),
            Poll::Pending
        )
    }

    /// Whether the server has neither closed this idle connection nor sent anything on it, asked
    /// of the kernel now (one system call), for a request that could not be sent again if the
    /// connection turned out dead: tokio's readiness, which [`Conn::is_reusable`] trusts, may
    /// not yet know of a close that arrived an instant ago.
    pub fn is_alive_now(&mut self) -> bool {
        if !self.is_reusable() {
            return false;
        }
        let tcp = match &self.io {
            Io::Tcp(s) => s,
            Io::Tls(s) => s.get_ref().0,
            Io::Mem(_) => return true,
        };
        let mut byte = [MaybeUninit::<u8>::uninit(); 1];
        matches!(
            socket2::SockRef::from(tcp).peek(&mut byte),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock
        )
    }

    /// Reads more into `buf`. `body`: a response body is being read, so its silence limit
    /// applies (waiting for a head is `response_timeout`'s business).
    fn poll_fill(&mut self, cx: &mut Context<'_>, body: bool) -> Poll<io::Result<usize>> {
        if self.kill.killed() {
            return Poll::Ready(Err(killed()));
        }
        if self.buf.capacity() - self.buf.len() < READ_SIZE / 4 {
            self.buf.reserve(READ_SIZE);
        }
        match tokio_util::io::poll_read_buf(Pin::new(&mut self.io), cx, &mut self.buf) {
            Poll::Ready(r) => {
                self.silence.progressed = true;
                Poll::Ready(r)
            }
            Poll::Pending => {
                if body && self.silence.expired(cx) {
                    return Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        "the server sent nothing within read_timeout",
                    )));
                }
                self.kill.pending(cx)
            }
        }
    }

    /// Sends a request and reads its response head; the body is read as the returned
    /// response's body is polled, and gives the connection back when it ends cleanly.
    ///
    /// The request body streams while the response is read (full duplex, as hyper's client
    /// does): a server may answer early, or echo the body as it comes. What of the body has
    /// not gone out when the head arrives is sent as the response body is polled.
    ///
    /// When the request was (or may have been) written and the exchange failed, its head is
    /// left in `kept`, so a replayable request can go again without a copy made beforehand.
    pub async fn send(
        mut self: Box<Self>,
        req: Request<UpBody>,
        kept: &mut Option<http::request::Parts>,
    ) -> Result<Response<Body>, SendError> {
        let head_only = req.method() == Method::HEAD;
        let framing = self.encode_head(&req);
        let expect = framing != Out::None && expects_continue(req.headers());
        let (parts, mut body) = req.into_parts();
        macro_rules! keep {
            ($e:expr) => {{
                *kept = Some(parts);
                Err($e)
            }};
        }
        // Whatever of the body is ready now goes with the head, in one write.
        let mut ended = framing == Out::None;
        let mut touched = false;
        let mut up = Upload {
            framing,
            pieces: std::collections::VecDeque::new(),
            ended: false,
        };
        // With `Expect: 100-continue` the body is not even looked at before the server answers:
        // asking the client's body for data is what makes hyper send the client its 100.
        if expect {
            self.expect = Some(Box::pin(tokio::time::sleep(EXPECT_WAIT)));
        }
        while !ended && !expect && self.out.len() < FIRST_WRITE {
            let mut cx = noop_context();
            match Pin::new(&mut body).poll_frame(&mut cx) {
                Poll::Ready(Some(Ok(frame))) => {
                    touched = true;
                    if let Err(e) = up.encode(frame, Some(&mut self.out)) {
                        return keep!(SendError::Failed(e));
                    }
                    ended = up.ended;
                }
                Poll::Ready(None) => {
                    touched = true;
                    ended = true;
                    if let Err(e) = up.end(None, Some(&mut self.out)) {
                        return keep!(SendError::Failed(e));
                    }
                }
                Poll::Ready(Some(Err(e))) => return keep!(client_error(e)),
                Poll::Pending => break,
            }
        }
        self.out_pos = 0;
        self.partial_at = 0;
        self.sending = true;
        let mut body = Some(body);
        if !ended {
            self.upload = Some((up, body.take().expect("not taken yet")));
        }
        let mut got_any = false;
        // `Err(Err(e))`: nothing was written, the request goes back (rebuilt below).
        // A success that comes while the body waits for a 100 (see below), held back one turn.
        let mut early: Option<Head> = None;
        let head = std::future::poll_fn(|cx| {
            if let Some(head) = early.take() {
                return Poll::Ready(Ok(head));
            }
            loop {
                if self.sending {
                    match self.poll_upload(cx) {
                        Poll::Ready(Ok(())) => self.sending = false,
                        Poll::Ready(Err(Upstream::Client(kind))) => {
                            return Poll::Ready(Err(Ok(SendError::Client(kind))))
                        }
                        Poll::Ready(Err(Upstream::Io(e))) if !self.wrote && !touched => {
                            return Poll::Ready(Err(Err(e)));
                        }
                        Poll::Ready(Err(Upstream::Io(e))) => {
                            // Maybe the server answered before it closed: read what it said.
                            tracing::debug!(error = %e, "request write failed");
                            self.stop_sending();
                        }
                        Poll::Pending => {}
                    }
                }
                if early.is_some() {
                    // The client's body was just asked for: one turn of the client's
                    // connection lets hyper send its 100 before this head goes out.
                    cx.waker().wake_by_ref();
                    return Poll::Pending;
                }
                let head = match self.poll_head(cx, &mut got_any) {
                    Poll::Ready(Ok(head)) => head,
                    Poll::Ready(Err(e)) => return Poll::Ready(Err(Ok(e))),
                    Poll::Pending => return Poll::Pending,
                };
                if self.expect.is_some() && head.status.is_success() && self.sending {
                    // A success before the server asked for the body: it answered early and
                    // means to read it (a streaming server; RFC 9110 10.1.1 lets it), as curl
                    // reads it too. The body goes now.
                    self.expect = None;
                    early = Some(head);
                    continue;
                }
                return Poll::Ready(Ok(head));
            }
        })
        .await;
        match head {
            Ok(head) => {
                if self.expect.take().is_some() {
                    // A refusal (or a redirect) before the server asked for the body: the body
                    // is never sent (the client never got a 100 either), and the connection,
                    // whose server may still wait for it, is not reused.
                    self.stop_sending();
                }
                match self.respond(head, head_only) {
                    Ok(resp) => Ok(resp),
                    Err(e) => keep!(e),
                }
            }
            Err(Err(e)) => {
                let body = match (body, self.upload.take()) {
                    (Some(b), _) | (None, Some((_, b))) => b,
                    (None, None) => UpBody::Empty,
                };
                Err(SendError::Unsent(
                    Box::new(Request::from_parts(parts, body)),
                    e,
                ))
            }
            Err(Ok(e)) => keep!(e),
        }
    }

    /// The request is no longer sent (the server failed it or answered early): the
    /// connection cannot carry another exchange.
    fn stop_sending(&mut self) {
        self.sending = false;
        self.upload = None;
        self.broken = true;
    }

    /// Drives the request out: the head (with what of the body came with it), then the body
    /// as the client sends it. Ready once all of it is written and flushed.
    fn poll_upload(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Upstream>> {
        loop {
            while self.out_pos < self.out.len() {
                let n = ready!(poll_write(
                    &mut self.io,
                    &self.kill,
                    cx,
                    &self.out[self.out_pos..]
                ))
                .map_err(Upstream::Io)?;
                self.out_pos += n;
                self.wrote = true;
            }
            if let Some(wait) = &mut self.expect {
                // The head is out; the body waits for the server's 100 (see `poll_head`) or
                // for `EXPECT_WAIT` to pass.
                if Pin::new(&mut self.io).poll_flush(cx).is_pending() {
                    return self.kill.pending(cx).map_err(Upstream::Io);
                }
                ready!(std::future::Future::poll(wait.as_mut(), cx));
                self.expect = None;
            }
            let Some((up, body)) = &mut self.upload else {
                return match Pin::new(&mut self.io).poll_flush(cx) {
                    Poll::Pending => self.kill.pending(cx).map_err(Upstream::Io),
                    r => r.map_err(Upstream::Io),
                };
            };
            while let Some(piece) = up.pieces.front_mut() {
                let n = ready!(poll_write(&mut self.io, &self.kill, cx, piece))
                    .map_err(Upstream::Io)?;
                piece.advance(n);
                if piece.is_empty() {
                    up.pieces.pop_front();
                }
            }
            if up.ended {
                self.upload = None;
                continue;
            }
            match ready!(Pin::new(body).poll_frame(cx)) {
                Some(Ok(frame)) => up.encode(frame, None).map_err(Upstream::Io)?,
                Some(Err(e)) => return Poll::Ready(Err(body_failed(e))),
                None => up.end(None, None).map_err(Upstream::Io)?,
            }
        }
    }

    /// The request line and fields into `out`, and how the body will be delimited.
    fn encode_head(&mut self, req: &Request<UpBody>) -> Out {
        let out = &mut self.out;
        out.clear();
        out.extend_from_slice(req.method().as_str().as_bytes());
        out.push(b' ');
        let target = req.uri().path_and_query().map_or("/", |p| p.as_str());
        out.extend_from_slice(if target.is_empty() {
            b"/"
        } else {
            target.as_bytes()
        });
        out.extend_from_slice(b" HTTP/1.1\r\n");
        let mut declared = None;
        for (name, value) in req.headers() {
            if name == CONTENT_LENGTH {
                declared = strict::digits(value.as_bytes());
            }
            out.extend_from_slice(name.as_str().as_bytes());
            out.extend_from_slice(b": ");
            out.extend_from_slice(value.as_bytes());
            out.extend_from_slice(b"\r\n");
        }
        let body = req.body();
        let framing = match declared {
            Some(0) => Out::None,
            Some(n) => Out::Length(n),
            None if body.is_end_stream() => {
                if matches!(*req.method(), Method::POST | Method::PUT | Method::PATCH) {
                    out.extend_from_slice(b"content-length: 0\r\n");
                }
                Out::None
            }
            None => match body.size_hint().exact() {
                Some(n) => {
                    out.extend_from_slice(b"content-length: ");
                    out.extend_from_slice(itoa::Buffer::new().format(n).as_bytes());
                    out.extend_from_slice(b"\r\n");
                    if n == 0 {
                        Out::None
                    } else {
                        Out::Length(n)
                    }
                }
                None => {
                    out.extend_from_slice(b"transfer-encoding: chunked\r\n");
                    Out::Chunked
                }
            },
        };
        out.extend_from_slice(b"\r\n");
        framing
    }

    /// Reads until a final response head (1xx other than 101 are skipped).
    fn poll_head(
        &mut self,
        cx: &mut Context<'_>,
        got_any: &mut bool,
    ) -> Poll<Result<Head, SendError>> {
        loop {
            if !self.buf.is_empty() {
                *got_any = true;
                // A head that was incomplete is parsed again only once an empty line arrived
                // (a server dribbling its head cannot make the parsing quadratic).
                if self.partial_at == 0 || ends_section(&self.buf, self.partial_at) {
                    match self.parse_head()? {
                        Some(head) => {
                            self.partial_at = 0;
                            if head.status.is_informational()
                                && head.status != StatusCode::SWITCHING_PROTOCOLS
                            {
                                if head.status == StatusCode::CONTINUE && self.expect.is_some() {
                                    // The server wants the body: send it (asking the client's
                                    // body for data makes hyper send the client its own 100).
                                    self.expect = None;
                                    cx.waker().wake_by_ref();
                                }
                                continue;
                            }
                            return Poll::Ready(Ok(head));
                        }
                        None => self.partial_at = self.buf.len(),
                    }
                } else if self.buf.len() >= MAX_HEAD {
                    return Poll::Ready(Err(SendError::Failed(invalid("response head too large"))));
                }
            }
            match ready!(self.poll_fill(cx, false)) {
                Ok(0) if !*got_any => {
                    return Poll::Ready(Err(SendError::NoResponse(
                        io::ErrorKind::UnexpectedEof.into(),
                    )))
                }
                Ok(0) => {
                    return Poll::Ready(Err(SendError::Failed(invalid("response head cut short"))))
                }
                Ok(_) => {}
                Err(e) if !*got_any && e.kind() != io::ErrorKind::ConnectionAborted => {
                    return Poll::Ready(Err(SendError::NoResponse(e)))
                }
                Err(e) => return Poll::Ready(Err(SendError::Failed(e))),
            }
        }
    }

    /// A complete head at the front of `buf`, taken out of it; `None` if more is needed.
    fn parse_head(&mut self) -> Result<Option<Head>, SendError> {
        let mut slots = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_FIELDS];
        let mut res = httparse::Response::new(&mut []);
        let parsed = httparse::ParserConfig::default()
            .parse_response_with_uninit_headers(&mut res, &self.buf, &mut slots);
        let len = match parsed {
            Ok(httparse::Status::Complete(n)) => n,
            Ok(httparse::Status::Partial) if self.buf.len() >= MAX_HEAD => {
                return Err(SendError::Failed(invalid("response head too large")))
            }
            Ok(httparse::Status::Partial) => return Ok(None),
            Err(e) => {
                return Err(SendError::Failed(invalid(format!(
                    "malformed response head: {e}"
                ))))
            }
        };
        let status = res
            .code
            .and_then(|c| StatusCode::from_u16(c).ok())
            .ok_or_else(|| SendError::Failed(invalid("bad status code")))?;
        let version = if res.version == Some(0) {
            Version::HTTP_10
        } else {
            Version::HTTP_11
        };
        let base = self.buf.as_ptr() as usize;
        self.fields.clear();
        let mut framing = Framing::default();
        for h in res.headers.iter() {
            let n = h.name.as_ptr() as usize - base;
            let v = h.value.as_ptr() as usize - base;
            let field = Field::of(h.name.as_bytes());
            framing.see(field, h.value);
            self.fields
                .push((n, n + h.name.len(), v, v + h.value.len(), field));
        }
        // Hop-by-hop fields are left out as the map is built (cheaper than removing them
        // after), unless `Connection` names other fields: then all go in, and the caller
        // strips by the general rule.
        let drop_hops = !framing.names_others;
        let switching = status == StatusCode::SWITCHING_PROTOCOLS;
        let head = self.buf.split_to(len).freeze();
        let mut headers = HeaderMap::with_capacity(self.fields.len());
        for &(ns, ne, vs, ve, field) in &self.fields {
            if drop_hops && field.hop_by_hop() && !(switching && field == Field::Upgrade) {
                continue;
            }
            let name = HeaderName::from_bytes(&head[ns..ne])
                .map_err(|_| SendError::Failed(invalid("bad field name in response")))?;
            let value = HeaderValue::from_maybe_shared(head.slice(vs..ve))
                .map_err(|_| SendError::Failed(invalid("bad field value in response")))?;
            headers.append(name, value);
        }
        Ok(Some(Head {
            status,
            version,
            headers,
            stripped: drop_hops,
            framing,
        }))
    }

    fn respond(
        mut self: Box<Self>,
        head: Head,
        head_only: bool,
    ) -> Result<Response<Body>, SendError> {
        let f = &head.framing;
        // RFC 9112 6.1: Transfer-Encoding in an HTTP/1.0 message is faulty framing.
        if head.version == Version::HTTP_10 && f.codings > 0 {
            return Err(SendError::Ambiguous(
                "transfer-encoding in an HTTP/1.0 response",
            ));
        }
        let length = f.length().map_err(SendError::Ambiguous)?;
        let chunked = f.chunked().map_err(SendError::Ambiguous)?;
        if chunked && length.is_some() {
            return Err(SendError::Ambiguous(
                "both content-length and transfer-encoding",
            ));
        }
        let keep_alive = match head.version {
            Version::HTTP_10 => f.keep_alive && !f.close,
            _ => !f.close,
        };
        let code = head.status.as_u16();
        let state = if head.status == StatusCode::SWITCHING_PROTOCOLS {
            State::Switched
        } else if head_only || code < 200 || code == 204 || code == 304 {
            State::Done
        } else if chunked {
            State::Chunked(Chunk::Size)
        } else if let Some(n) = length {
            if n == 0 {
                State::Done
            } else {
                State::Length(n)
            }
        } else {
            State::Close
        };
        // A connection that answered HEAD is not reused: a server that sends a body there
        // anyway (a common fault) would have it read as the next request's response.
        let reusable = keep_alive && !head_only && !matches!(state, State::Close | State::Switched);
        self.silence.start();
        let mut resp = Response::new(Body {
            conn: Some(self),
            state,
            reusable,
            failed: None,
            stripped: head.stripped,
        });
        *resp.status_mut() = head.status;
        *resp.version_mut() = head.version;
        *resp.headers_mut() = head.headers;
        Ok(resp)
    }
}

/// Why sending a request stopped.
enum Upstream {
    /// The client's body failed (what the client is told).
    Client(crate::error::ErrorKind),
    Io(io::Error),
}

/// One write of `data`, ended early if the connection is ended from outside.
fn poll_write(
    io: &mut Io,
    kill: &Kill,
    cx: &mut Context<'_>,
    data: &[u8],
) -> Poll<io::Result<usize>> {
    if kill.killed() {
        return Poll::Ready(Err(killed()));
    }
    match Pin::new(io).poll_write(cx, data) {
        Poll::Pending => kill.pending(cx),
        Poll::Ready(Ok(0)) => Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
        r => r,
    }
}

/// The request body on its way out: framed pieces waiting to be written.
struct Upload {
    framing: Out,
    pieces: std::collections::VecDeque<Bytes>,
    ended: bool,
}

impl Upload {
    /// A body frame, framed: copied into `head` (the first write) when given, else queued.
    fn encode(&mut self, frame: Frame<Bytes>, head: Option<&mut Vec<u8>>) -> io::Result<()> {
        let data = match frame.into_data() {
            Ok(d) => d,
            // Trailers come last; only chunked framing can carry them.
            Err(frame) => {
                return match frame.into_trailers() {
                    Ok(t) => self.end(Some(&t), head),
                    Err(_) => Ok(()),
                }
            }
        };
        if data.is_empty() {
            return Ok(());
        }
        match &mut self.framing {
            Out::Length(left) => {
                let n = data.len() as u64;
                if n > *left {
                    return Err(invalid("request body longer than its Content-Length"));
                }
                *left -= n;
                match head {
                    Some(out) => out.extend_from_slice(&data),
                    None => self.pieces.push_back(data),
                }
            }
            Out::Chunked => {
                let mut size = Vec::with_capacity(18);
                write_hex(&mut size, data.len());
                size.extend_from_slice(b"\r\n");
                match head {
                    Some(out) => {
                        out.extend_from_slice(&size);
                        out.extend_from_slice(&data);
                        out.extend_from_slice(b"\r\n");
                    }
                    None => {
                        self.pieces.push_back(Bytes::from(size));
                        self.pieces.push_back(data);
                        self.pieces.push_back(Bytes::from_static(b"\r\n"));
                    }
                }
            }
            Out::None => {}
        }
        Ok(())
    }

    /// The end of the body (with its trailers, if chunked).
    fn end(&mut self, trailers: Option<&HeaderMap>, head: Option<&mut Vec<u8>>) -> io::Result<()> {
        self.ended = true;
        match self.framing {
            Out::Length(left) if left > 0 => {
                Err(invalid("request body shorter than its Content-Length"))
            }
            Out::Chunked => {
                let mut last = Vec::with_capacity(5);
                last.extend_from_slice(b"0\r\n");
                for (name, value) in trailers.into_iter().flatten() {
                    last.extend_from_slice(name.as_str().as_bytes());
                    last.extend_from_slice(b": ");
                    last.extend_from_slice(value.as_bytes());
                    last.extend_from_slice(b"\r\n");
                }
                last.extend_from_slice(b"\r\n");
                match head {
                    Some(out) => out.extend_from_slice(&last),
                    None => self.pieces.push_back(Bytes::from(last)),
                }
                Ok(())
            }
            _ => Ok(()),
        }
    }
}

/// `n` in hexadecimal, as a chunk size.
pub(crate) fn write_hex(out: &mut Vec<u8>, n: usize) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut tmp = [0u8; 16];
    let mut i = tmp.len();
    let mut n = n;
    loop {
        i -= 1;
        tmp[i] = DIGITS[n & 15];
        n >>= 4;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&tmp[i..]);
}

struct Head {
    status: StatusCode,
    version: Version,
    headers: HeaderMap,
    /// The hop-by-hop fields were left out.
    stripped: bool,
    framing: Framing,
}

/// The response fields this module looks at, told apart by their raw names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Field {
    ContentLength,
    TransferEncoding,
    Connection,
    /// The other hop-by-hop fields: Keep-Alive, Proxy-Connection, TE.
    Hop,
    Upgrade,
    Other,
}

impl Field {
    fn of(name: &[u8]) -> Field {
        let is = |n: &str| name.eq_ignore_ascii_case(n.as_bytes());
        match name.len() {
            14 if is("content-length") => Field::ContentLength,
            17 if is("transfer-encoding") => Field::TransferEncoding,
            10 if is("connection") => Field::Connection,
            10 if is("keep-alive") => Field::Hop,
            16 if is("proxy-connection") => Field::Hop,
            2 if is("te") => Field::Hop,
            7 if is("upgrade") => Field::Upgrade,
            _ => Field::Other,
        }
    }

    fn hop_by_hop(self) -> bool {
        matches!(
            self,
            Field::TransferEncoding | Field::Connection | Field::Hop | Field::Upgrade
        )
    }
}

/// The fields a response's framing and persistence depend on, seen as the head is built.
#[derive(Default)]
struct Framing {
    lengths: u32,
    length: Option<u64>,
    length_ok: bool,
    codings: u32,
    chunked: bool,
    close: bool,
    keep_alive: bool,
    /// `Connection` names a field other than the usual options (so that field is hop-by-hop).
    names_others: bool,
}

impl Framing {
    fn see(&mut self, field: Field, value: &[u8]) {
        match field {
            Field::ContentLength => {
                self.lengths += 1;
                self.length = strict::digits(value);
                self.length_ok = self.length.is_some();
            }
            Field::TransferEncoding => {
                self.codings += 1;
                self.chunked = value.eq_ignore_ascii_case(b"chunked");
            }
            Field::Connection => {
                for t in value.split(|&b| b == b',') {
                    let t = t.trim_ascii();
                    if t.eq_ignore_ascii_case(b"close") {
                        self.close = true;
                    } else if t.eq_ignore_ascii_case(b"keep-alive") {
                        self.keep_alive = true;
                    } else if !(t.is_empty()
                        || t.eq_ignore_ascii_case(b"upgrade")
                        || t.eq_ignore_ascii_case(b"te"))
                    {
                        self.names_others = true;
                    }
                }
            }
            _ => {}
        }
    }

    fn length(&self) -> Result<Option<u64>, &'static str> {
        match self.lengths {
            0 => Ok(None),
            1 if self.length_ok => Ok(self.length),
            _ => Err("invalid or repeated content-length"),
        }
    }

    fn chunked(&self) -> Result<bool, &'static str> {
        match self.codings {
            0 => Ok(false),
            1 if self.chunked => Ok(true),
            _ => Err("transfer-encoding other than chunked"),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Chunk {
    /// Expecting a chunk-size line.
    Size,
    /// Data left in the current chunk.
    Data(u64),
    /// The CRLF after a chunk's data.
    DataEnd,
    /// The trailer section after the last chunk.
    Trailers,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Length(u64),
    Chunked(Chunk),
    /// Delimited by the server closing the connection.
    Close,
    /// A 101: what follows is another protocol (see [`Body::into_upgraded`]).
    Switched,
    Done,
}

/// A server's response body, read from the connection as it is polled.
#[derive(Debug)]
pub struct Body {
    conn: Option<Box<Conn>>,
    state: State,
    /// The connection can carry another exchange once this body ended.
    reusable: bool,
    /// A break, reported at the next poll.
    failed: Option<io::Error>,
    /// The head's hop-by-hop fields were left out already.
    stripped: bool,
}

impl Body {
    /// The response's hop-by-hop fields were left out as its head was read.
    pub fn head_stripped(&self) -> bool {
        self.stripped
    }

    /// The connection, once the body ended cleanly and the connection can be reused.
    pub fn take_reusable(&mut self) -> Option<Box<Conn>> {
        if self.state != State::Done || !self.reusable {
            return None;
        }
        let mut conn = self.conn.take()?;
        conn.wrote = false;
        (!conn.broken && !conn.sending && conn.buf.is_empty()).then_some(conn)
    }

    /// After a 101: the connection as a byte stream, with anything the server already sent.
    pub fn into_upgraded(mut self) -> Option<Upgraded> {
        if self.state != State::Switched {
            return None;
        }
        let Conn { io, buf, .. } = *self.conn.take()?;
        Some(Upgraded {
            pre: buf.freeze(),
            io,
        })
    }

    /// Takes up to `max` bytes of what is buffered.
    fn take(conn: &mut Conn, max: u64) -> Bytes {
        let n = conn
            .buf
            .len()
            .min(usize::try_from(max).unwrap_or(usize::MAX));
        conn.buf.split_to(n).freeze()
    }
}

impl http_body::Body for Body {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        let this = self.get_mut();
        if let Some(e) = this.failed.take() {
            return Poll::Ready(Some(Err(e)));
        }
        match this.poll_next(cx) {
            // A break is reported one poll late, so what came before it is flushed to the
            // client first (hyper drops its unsent buffer on a body error).
            Poll::Ready(Some(Err(e))) => {
                this.conn = None;
                this.failed = Some(e);
                cx.waker().wake_by_ref();
                Poll::Pending
            }
            other => other,
        }
    }

    fn is_end_stream(&self) -> bool {
        matches!(self.state, State::Done | State::Switched)
    }

    fn size_hint(&self) -> SizeHint {
        match self.state {
            State::Length(n) => SizeHint::with_exact(n),
            State::Done | State::Switched => SizeHint::with_exact(0),
            _ => SizeHint::default(),
        }
    }
}

impl Body {
    fn poll_next(&mut self, cx: &mut Context<'_>) -> Poll<Option<io::Result<Frame<Bytes>>>> {
        let this = self;
        loop {
            let Some(conn) = this.conn.as_mut() else {
                return Poll::Ready(None);
            };
            if conn.sending {
                // The rest of the request goes out as the response comes in.
                match conn.poll_upload(cx) {
                    Poll::Ready(Ok(())) => conn.sending = false,
                    Poll::Ready(Err(Upstream::Client(_))) => {
                        conn.stop_sending();
                        return Poll::Ready(Some(Err(io::Error::other(
                            "the client's body failed while the response streamed",
                        ))));
                    }
                    Poll::Ready(Err(Upstream::Io(e))) => {
                        tracing::debug!(error = %e, "request body write failed");
                        conn.stop_sending();
                    }
                    Poll::Pending => {}
                }
            }
            // Serve what the buffer holds; the arms that fall through need more bytes.
            match &mut this.state {
                State::Done | State::Switched => return Poll::Ready(None),
                State::Length(left) => {
                    if !conn.buf.is_empty() {
                        let data = Body::take(conn, *left);
                        *left -= data.len() as u64;
                        if *left == 0 {
                            this.state = State::Done;
                        }
                        return Poll::Ready(Some(Ok(Frame::data(data))));
                    }
                }
                State::Close => {
                    if !conn.buf.is_empty() {
                        let data = conn.buf.split().freeze();
                        return Poll::Ready(Some(Ok(Frame::data(data))));
                    }
                }
                State::Chunked(chunk) => match chunk {
                    Chunk::Size => match httparse::parse_chunk_size(&conn.buf) {
                        Ok(httparse::Status::Complete((used, size))) => {
                            conn.buf.advance(used);
                            *chunk = if size == 0 {
                                Chunk::Trailers
                            } else {
                                Chunk::Data(size)
                            };
                            continue;
                        }
                        Ok(httparse::Status::Partial) if conn.buf.len() < MAX_CHUNK_LINE => {}
                        _ => return Poll::Ready(Some(Err(invalid("bad chunk size line")))),
                    },
                    Chunk::Data(left) => {
                        if !conn.buf.is_empty() {
                            let data = Body::take(conn, *left);
                            *left -= data.len() as u64;
                            if *left == 0 {
                                *chunk = Chunk::DataEnd;
                            }
                            return Poll::Ready(Some(Ok(Frame::data(data))));
                        }
                    }
                    Chunk::DataEnd => {
                        if conn.buf.len() < 2 {
                        } else if &conn.buf[..2] == b"\r\n" {
                            conn.buf.advance(2);
                            *chunk = Chunk::Size;
                            continue;
                        } else {
                            return Poll::Ready(Some(Err(invalid("chunk not followed by CRLF"))));
                        }
                    }
                    Chunk::Trailers => match trailers(&mut conn.buf, &mut conn.partial_at) {
                        Ok(Some(t)) => {
                            this.state = State::Done;
                            if t.is_empty() {
                                return Poll::Ready(None);
                            }
                            return Poll::Ready(Some(Ok(Frame::trailers(t))));
                        }
                        Ok(None) => {}
                        Err(e) => return Poll::Ready(Some(Err(e))),
                    },
                },
            }
            match conn.poll_fill(cx, true) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Ok(0)) => {
                    if this.state == State::Close {
                        this.state = State::Done;
                        return Poll::Ready(None);
                    }
                    return Poll::Ready(Some(Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "the server closed the connection mid-body",
                    ))));
                }
                Poll::Ready(Ok(_)) => {}
                Poll::Ready(Err(e)) => return Poll::Ready(Some(Err(e))),
            }
        }
    }
}

/// Whether a request asks for `100-continue` (RFC 9110 10.1.1).
pub(crate) fn expects_continue(headers: &HeaderMap) -> bool {
    headers
        .get(http::header::EXPECT)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue"))
}

/// A complete trailer section at the front of `buf`, taken out of it.
fn trailers(buf: &mut BytesMut, partial_at: &mut usize) -> io::Result<Option<HeaderMap>> {
    if buf.starts_with(b"\r\n") {
        buf.advance(2);
        return Ok(Some(HeaderMap::new()));
    }
    if *partial_at > 0 && !ends_section(buf, *partial_at) {
        return if buf.len() < MAX_HEAD {
            Ok(None)
        } else {
            Err(invalid("trailer section too large"))
        };
    }
    *partial_at = 0;
    let mut slots = [httparse::EMPTY_HEADER; 32];
    match httparse::parse_headers(buf, &mut slots) {
        Ok(httparse::Status::Complete((used, fields))) => {
            let mut map = HeaderMap::with_capacity(fields.len());
            for f in fields {
                let name = HeaderName::from_bytes(f.name.as_bytes())
                    .map_err(|_| invalid("bad trailer name"))?;
                let value =
                    HeaderValue::from_bytes(f.value).map_err(|_| invalid("bad trailer value"))?;
                map.append(name, value);
            }
            buf.advance(used);
            Ok(Some(map))
        }
        Ok(httparse::Status::Partial) if buf.len() < MAX_HEAD => {
            *partial_at = buf.len();
            Ok(None)
        }
        Ok(httparse::Status::Partial) => Err(invalid("trailer section too large")),
        Err(e) => Err(invalid(format!("bad trailer section: {e}"))),
    }
}

/// Whether bytes from `from` on (with the three before, where a line end may have started)
/// hold an empty line: the end of a head or trailer section, with CRLF or bare LF line ends.
fn ends_section(buf: &[u8], from: usize) -> bool {
    let tail = &buf[from.saturating_sub(3).min(buf.len())..];
    memchr::memmem::find(tail, b"\n\r\n").is_some() || memchr::memmem::find(tail, b"\n\n").is_some()
}

/// A connection after a 101, with what the server sent right after its head served first.
#[derive(Debug)]
pub struct Upgraded {
    pre: Bytes,
    io: Io,
}

impl AsyncRead for Upgraded {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if !this.pre.is_empty() {
            let n = this.pre.len().min(buf.remaining());
            buf.put_slice(&this.pre[..n]);
            this.pre.advance(n);
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut this.io).poll_read(cx, buf)
    }
}

impl AsyncWrite for Upgraded {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write(cx, buf)
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}

/// The client side driven over an in-memory connection, for the `upstream_response` fuzz
/// target and the replay of its seeds.
#[doc(hidden)]
pub mod fuzzing {
    use super::*;
    use http_body_util::BodyExt;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// What an exchange came to.
    #[derive(Debug)]
    pub struct Outcome {
        pub status: u16,
        pub content_length: Option<u64>,
        pub body: Result<Vec<u8>, String>,
        pub trailers: bool,
        /// The connection went back to the idle list.
        pub reused: bool,
    }

    /// Sends a GET (or a HEAD) to a server that answers `response`, written in pieces whose
    /// sizes cycle through `pieces`, then closes. `Err` is a failed exchange (its message).
    pub async fn exchange(response: &[u8], pieces: &[u8], head: bool) -> Result<Outcome, String> {
        let (near, mut far) = tokio::io::duplex(64 * 1024);
        let peer = Arc::new(Peer::new(1));
        let conn = Conn::new(Io::Mem(near), &peer, Duration::from_secs(5));
        let response = response.to_vec();
        let pieces: Vec<usize> = pieces.iter().map(|&p| usize::from(p).max(1)).collect();
        let origin = tokio::spawn(async move {
            let mut req = Vec::new();
            let mut buf = [0u8; 1024];
            while !req.windows(4).any(|w| w == b"\r\n\r\n") {
                match far.read(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => req.extend_from_slice(&buf[..n]),
                }
            }
            let mut at = 0;
            let mut i = 0;
            while at < response.len() {
                let n = pieces
                    .get(i % pieces.len().max(1))
                    .copied()
                    .unwrap_or(usize::MAX);
                let end = at.saturating_add(n).min(response.len());
                if far.write_all(&response[at..end]).await.is_err() {
                    return;
                }
                at = end;
                i += 1;
            }
            let _ = far.shutdown().await;
            // Keep the far side open until the client is done (a close is the shutdown above).
            let _ = far.read(&mut buf).await;
        });
        let method = if head { Method::HEAD } else { Method::GET };
        let mut req = Request::new(UpBody::Empty);
        *req.method_mut() = method;
        req.headers_mut()
            .insert(http::header::HOST, HeaderValue::from_static("fuzz"));
        let result = conn.send(req, &mut None).await;
        let outcome = match result {
            Err(e) => Err(format!("{e:?}")),
            Ok(resp) => {
                let status = resp.status().as_u16();
                let content_length = resp
                    .headers()
                    .get(CONTENT_LENGTH)
                    .and_then(|v| strict::digits(v.as_bytes()));
                let mut body = resp.into_body();
                let mut data = Vec::new();
                let mut trailers = false;
                let mut failed = None;
                while let Some(frame) = body.frame().await {
                    match frame {
                        Ok(f) => match f.into_data() {
                            Ok(d) => data.extend_from_slice(&d),
                            Err(f) => trailers |= f.is_trailers(),
                        },
                        Err(e) => {
                            failed = Some(e.to_string());
                            break;
                        }
                    }
                }
                let reused = failed.is_none() && body.take_reusable().is_some();
                Ok(Outcome {
                    status,
                    content_length,
                    body: match failed {
                        None => Ok(data),
                        Some(e) => Err(e),
                    },
                    trailers,
                    reused,
                })
            }
        };
        origin.abort();
        outcome
    }

    /// The rules every outcome keeps: a body that ended cleanly has the length its head
    /// announced (none after HEAD, 204 or 304), and only such a body leaves the connection
    /// reusable.
    pub fn check(outcome: &Outcome, head: bool) {
        let Ok(body) = &outcome.body else {
            assert!(
                !outcome.reused,
                "a failed body left its connection reusable"
            );
            return;
        };
        let bodiless =
            head || outcome.status == 204 || outcome.status == 304 || outcome.status < 200;
        if bodiless {
            assert!(body.is_empty(), "a body after HEAD, 1xx, 204 or 304");
        } else if let Some(n) = outcome.content_length {
            assert_eq!(
                body.len() as u64,
                n,
                "a body of another length than announced"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// tokio learns of a close only when its reactor runs; the kernel knows at once. A
    /// connection closed since the last reactor turn still looks reusable to tokio's readiness,
    /// and `is_alive_now` asks the kernel.
    #[tokio::test(flavor = "current_thread")]
    async fn a_close_the_reactor_has_not_seen_yet_is_found_by_asking_the_kernel() {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let client = TcpStream::connect(addr).await.unwrap();
        let (peer, _) = l.accept().await.unwrap();
        let sessions = Arc::new(Peer::new(1));
        let mut conn = Conn::new(Io::Tcp(client), &sessions, Duration::from_secs(5));
        // Idle and quiet: both checks agree.
        assert!(conn.is_reusable());
        assert!(conn.is_alive_now());
        // Let the reactor see the socket quiet, then close the far side with no turn of the
        // reactor in between (nothing is awaited).
        tokio::task::yield_now().await;
        drop(peer.into_std().unwrap());
        assert!(
            conn.is_reusable(),
            "tokio's readiness already knew (not the case tested)"
        );
        assert!(!conn.is_alive_now(), "the kernel knows the server closed");
    }

    #[test]
    fn hex() {
        for n in [0usize, 1, 15, 16, 255, 4096, 0xdead_beef] {
            let mut out = Vec::new();
            write_hex(&mut out, n);
            assert_eq!(String::from_utf8(out).unwrap(), format!("{n:x}"));
        }
    }

    #[test]
    fn trailer_sections() {
        let mut at = 0;
        let mut b = BytesMut::from(&b"\r\nrest"[..]);
        assert!(trailers(&mut b, &mut at).unwrap().unwrap().is_empty());
        assert_eq!(&b[..], b"rest");
        let mut b = BytesMut::from(&b"grpc-status: 0\r\nx: y\r\n\r\n"[..]);
        let t = trailers(&mut b, &mut at).unwrap().unwrap();
        assert_eq!(t["grpc-status"], "0");
        assert!(b.is_empty());
        let mut b = BytesMut::from(&b"grpc-status: 0\r\n"[..]);
        assert!(trailers(&mut b, &mut at).unwrap().is_none());
        assert_eq!(at, b.len());
        // More of the same section without its end: not parsed again.
        b.extend_from_slice(b"x-more: 1\r");
        assert!(trailers(&mut b, &mut at).unwrap().is_none());
        b.extend_from_slice(b"\n\r\n");
        assert_eq!(trailers(&mut b, &mut at).unwrap().unwrap().len(), 2);
        let mut at = 0;
        let mut b = BytesMut::from(&b"bad line\r\n\r\n"[..]);
        assert!(trailers(&mut b, &mut at).is_err());
    }

    #[test]
    fn section_ends() {
        assert!(ends_section(b"HTTP/1.1 200 OK\r\n\r\n", 0));
        assert!(ends_section(b"HTTP/1.1 200 OK\n\n", 0));
        // The end straddles what was seen before and what came after.
        assert!(ends_section(b"HTTP/1.1 200 OK\r\n\r\n", 17));
        assert!(!ends_section(b"HTTP/1.1 200 OK\r\nA: b\r\n", 10));
    }

    #[test]
    fn framing_fields() {
        let mut f = Framing::default();
        f.see(Field::of(b"Content-Length"), b"12");
        assert_eq!(f.length(), Ok(Some(12)));
        f.see(Field::of(b"content-length"), b"12");
        assert!(f.length().is_err());
        let mut f = Framing::default();
        f.see(Field::of(b"TRANSFER-ENCODING"), b"gzip, chunked");
        assert!(f.chunked().is_err());
        let mut f = Framing::default();
        f.see(Field::of(b"Connection"), b"Keep-Alive, Upgrade");
        assert!(f.keep_alive && !f.close && !f.names_others);
        f.see(Field::of(b"connection"), b" close, x-private");
        assert!(f.close && f.names_others);
        assert_eq!(Field::of(b"Proxy-Connection"), Field::Hop);
        assert_eq!(Field::of(b"te"), Field::Hop);
        assert_eq!(Field::of(b"Upgrade"), Field::Upgrade);
        assert_eq!(Field::of(b"x-upgrade"), Field::Other);
    }
}
