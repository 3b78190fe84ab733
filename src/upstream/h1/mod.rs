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
/// What a read asks the socket for (a head, a chunk line, a small body).
const READ_SIZE: usize = 16 * 1024;
/// What a read of a response body asks the socket for: four times fewer reads and writes
/// for a large body than at [`READ_SIZE`] (the frames are slices of one allocation, freed
/// once the client has taken them).
const BODY_READ_SIZE: usize = 64 * 1024;
/// How long a request with `Expect: 100-continue` holds its body back for the server's answer
/// (RFC 9110 10.1.1 lets a client send it after a while anyway; curl waits one second too), so
/// a server that ignores the expectation still gets the body.
const EXPECT_WAIT: Duration = Duration::from_secs(1);

/// One HTTP/1.1 connection to a server, between exchanges or during one.
pub struct Conn {
    /// `send_proxy`: the client its PROXY header announced (it carries only its requests).
    pub proxied: Option<std::net::SocketAddr>,
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

/// Why waiting for a response head ended without one, for [`Conn::send`].
enum Unanswered {
    /// Nothing of the request was written: it goes back whole.
    Unsent(io::Error),
    Failed(SendError),
}

/// What [`Conn::send`] keeps while it waits for the response head.
struct Waiting {
    /// The request body was read from before the first write.
    touched: bool,
    /// Some of a response arrived.
    got_any: bool,
    /// A success held back one turn while the body that waited for a 100 starts to go.
    early: Option<Head>,
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
            proxied: None,
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
        // Checks tokio's readiness first: no system call, and no waker to register.
        let tried = match &self.io {
            Io::Tcp(s) => Some(s.try_read_buf(&mut self.buf)),
            Io::Unix(s) => Some(s.try_read_buf(&mut self.buf)),
            _ => None,
        };
        if let Some(r) = tried {
            return matches!(r, Err(e) if e.kind() == io::ErrorKind::WouldBlock);
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
        let socket = match &self.io {
            Io::Tcp(s) => socket2::SockRef::from(s),
            Io::Tls(s) => socket2::SockRef::from(s.get_ref().0),
            Io::Unix(s) => socket2::SockRef::from(s),
            Io::Mem(_) => return true,
        };
        let mut byte = [MaybeUninit::<u8>::uninit(); 1];
        matches!(
            socket.peek(&mut byte),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock
        )
    }

    /// Reads more into `buf`. `body`: a response body is being read, so its silence limit
    /// applies (waiting for a head is `response_timeout`'s business).
    fn poll_fill(&mut self, cx: &mut Context<'_>, body: bool) -> Poll<io::Result<usize>> {
        if self.kill.killed() {
            return Poll::Ready(Err(killed()));
        }
        let size = if body { BODY_READ_SIZE } else { READ_SIZE };
        if self.buf.capacity() - self.buf.len() < size / 4 {
            self.buf.reserve(size);
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
        let mut up = Upload {
            framing,
            pieces: std::collections::VecDeque::new(),
            ended: false,
        };
        let mut touched = false;
        // With `Expect: 100-continue` the body is not even looked at before the server answers:
        // asking the client's body for data is what makes hyper send the client its 100.
        if expect {
            self.expect = Some(Box::pin(tokio::time::sleep(EXPECT_WAIT)));
        } else if framing != Out::None {
            // Whatever of the body is ready now goes with the head, in one write.
            match self.first_write(&mut up, &mut body) {
                Ok(polled) => touched = polled,
                Err(e) => {
                    *kept = Some(parts);
                    return Err(e);
                }
            }
        }
        self.out_pos = 0;
        self.partial_at = 0;
        self.sending = true;
        let mut body = Some(body);
        if framing != Out::None && !up.ended {
            self.upload = Some((up, body.take().expect("not taken yet")));
        }
        let mut wait = Waiting {
            touched,
            got_any: false,
            early: None,
        };
        let head = std::future::poll_fn(|cx| self.poll_answer(cx, &mut wait)).await;
        let failed = match head {
            Ok(head) => match self.respond(head, head_only) {
                Ok(resp) => return Ok(resp),
                Err(e) => e,
            },
            Err(Unanswered::Unsent(e)) => return Err(self.unsent(parts, body, e)),
            Err(Unanswered::Failed(e)) => e,
        };
        *kept = Some(parts);
        Err(failed)
    }

    /// Copies into `out`, after the head, whatever of the request body is ready now (up to
    /// about [`FIRST_WRITE`] bytes), so that it goes out in the head's write. Returns whether
    /// the body was read from (then the request can no longer go elsewhere whole); an error
    /// is a body that broke its framing (`Failed`) or failed on the client's side.
    fn first_write(&mut self, up: &mut Upload, body: &mut UpBody) -> Result<bool, SendError> {
        let mut touched = false;
        let mut cx = noop_context();
        while !up.ended && self.out.len() < FIRST_WRITE {
            match Pin::new(&mut *body).poll_frame(&mut cx) {
                Poll::Ready(Some(Ok(frame))) => {
                    touched = true;
                    up.encode(frame, Some(&mut self.out))
                        .map_err(SendError::Failed)?;
                }
                Poll::Ready(None) => {
                    touched = true;
                    up.end(None, Some(&mut self.out))
                        .map_err(SendError::Failed)?;
                }
                Poll::Ready(Some(Err(e))) => return Err(client_error(e)),
                Poll::Pending => break,
            }
        }
        Ok(touched)
    }

    /// Drives the request out while it waits for the final response head, which it returns.
    /// A success that comes while the body waits for a 100 is held back one turn (see below).
    fn poll_answer(
        &mut self,
        cx: &mut Context<'_>,
        wait: &mut Waiting,
    ) -> Poll<Result<Head, Unanswered>> {
        if let Some(head) = wait.early.take() {
            return Poll::Ready(Ok(head));
        }
        loop {
            if self.sending {
                self.upload_before_head(cx, wait.touched)?;
            }
            if wait.early.is_some() {
                // The client's body was just asked for: one turn of the client's
                // connection lets hyper send its 100 before this head goes out.
                cx.waker().wake_by_ref();
                return Poll::Pending;
            }
            let head = match self.poll_head(cx, &mut wait.got_any) {
                Poll::Ready(Ok(head)) => head,
                Poll::Ready(Err(e)) => return Poll::Ready(Err(Unanswered::Failed(e))),
                Poll::Pending => return Poll::Pending,
            };
            if self.expect.is_some() && head.status.is_success() && self.sending {
                // A success before the server asked for the body: it answered early and
                // means to read it (a streaming server; RFC 9110 10.1.1 lets it), as curl
                // reads it too. The body goes now.
                self.expect = None;
                wait.early = Some(head);
                continue;
            }
            return Poll::Ready(Ok(head));
        }
    }

    /// One turn of the request going out before the response head came: `Err` ends the wait
    /// (the client's body failed, or the write failed with nothing of the request written,
    /// which `touched` says of the body). A write that fails after that stops the sending
    /// only: the server may have answered before it closed.
    #[inline]
    fn upload_before_head(
        &mut self,
        cx: &mut Context<'_>,
        touched: bool,
    ) -> Result<(), Unanswered> {
        match self.poll_upload(cx) {
            Poll::Ready(Ok(())) => self.sending = false,
            Poll::Ready(Err(Upstream::Client(kind))) => {
                return Err(Unanswered::Failed(SendError::Client(kind)))
            }
            Poll::Ready(Err(Upstream::Io(e))) if !self.wrote && !touched => {
                return Err(Unanswered::Unsent(e));
            }
            Poll::Ready(Err(Upstream::Io(e))) => {
                // Maybe the server answered before it closed: read what it said.
                tracing::debug!(error = %e, "request write failed");
                self.stop_sending();
            }
            Poll::Pending => {}
        }
        Ok(())
    }

    /// The request rebuilt from its head and its body (kept aside, or still in `upload`),
    /// since nothing of it was written: it may go elsewhere.
    fn unsent(
        &mut self,
        parts: http::request::Parts,
        body: Option<UpBody>,
        e: io::Error,
    ) -> SendError {
        let body = match (body, self.upload.take()) {
            (Some(b), _) | (None, Some((_, b))) => b,
            (None, None) => UpBody::Empty,
        };
        SendError::Unsent(Box::new(Request::from_parts(parts, body)), e)
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
            while !up.pieces.is_empty() {
                ready!(poll_write_pieces(
                    &mut self.io,
                    &self.kill,
                    cx,
                    &mut up.pieces
                ))
                .map_err(Upstream::Io)?;
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

    /// The response to a final head: its framing judged (ambiguous framing is an error, RFC
    /// 9112 6.1 and 6.3), how its body ends, and whether the connection may carry another
    /// exchange afterwards.
    fn respond(
        mut self: Box<Self>,
        head: Head,
        head_only: bool,
    ) -> Result<Response<Body>, SendError> {
        if self.expect.take().is_some() {
            // A refusal (or a redirect) before the server asked for the body: the body
            // is never sent (the client never got a 100 either), and the connection,
            // whose server may still wait for it, is not reused.
            self.stop_sending();
        }
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
        // A connection whose response has no body by definition (HEAD, 204, 304) is not
        // reused: a server that sends one there anyway (a common fault) would have it read as
        // the next request's response.
        let bodiless = head_only || code == 204 || code == 304;
        let reusable = keep_alive && !bodiless && !matches!(state, State::Close | State::Switched);
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

/// Whether a request asks for `100-continue` (RFC 9110 10.1.1).
pub(crate) fn expects_continue(headers: &HeaderMap) -> bool {
    headers
        .get(http::header::EXPECT)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue"))
}

mod body;
pub mod fuzzing;
mod head;
mod socket;
mod upload;

#[cfg(test)]
use body::trailers;
use body::{ends_section, Chunk, State};
pub use body::{Body, Upgraded};
use head::{Field, Framing, Head};
use socket::{killed, Registered, Silence};
pub use socket::{Io, Kill};
pub(crate) use upload::write_hex;
use upload::{poll_write, poll_write_pieces, Upload, Upstream};

#[cfg(test)]
mod tests;
