//! Body types of the request path. Both are enums rather than boxed trait objects, so a request
//! costs no allocation for its body.
//!
//! [`ProxyBody`] is what the client receives. It streams the server's body frame by frame (never
//! buffering it) and carries the request's bookkeeping: the in-flight count, the upstream
//! connection (returned to the idle pool only when the body ended cleanly), and the access-log
//! line, written when the body is done or abandoned.

use crate::access_log::AccessLog;
use crate::backend::{InFlight, Server};
use crate::cache::Fill;
use crate::proxy::session::ConnState;
use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

/// Why a body stopped short.
#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    #[error("client body: {0}")]
    Client(#[source] hyper::Error),
    #[error("the request body is larger than max_body_size")]
    TooLarge,
    #[error("the client sent no body data within body_timeout")]
    ClientTimeout,
    #[error("server body: {0}")]
    Upstream(#[source] std::io::Error),
}

impl BodyError {
    /// What the client is told when its own body failed (`None`: not the client's body).
    pub fn client_kind(&self) -> Option<crate::error::ErrorKind> {
        use crate::error::ErrorKind;
        match self {
            BodyError::TooLarge => Some(ErrorKind::BodyTooLarge),
            BodyError::ClientTimeout => Some(ErrorKind::ClientTimeout),
            BodyError::Client(_) => Some(ErrorKind::BadRequest),
            BodyError::Upstream(_) => None,
        }
    }
}

/// A silence limit on a body: armed when polling it returns `Pending`, disarmed by progress.
/// The sleep is allocated the first time a body has to wait, and reused after.
#[derive(Debug)]
pub struct IdleTimer {
    limit: std::time::Duration,
    sleep: Option<Pin<Box<tokio::time::Sleep>>>,
    armed: bool,
}

impl IdleTimer {
    pub fn new(limit: std::time::Duration) -> IdleTimer {
        IdleTimer {
            limit,
            sleep: None,
            armed: false,
        }
    }

    pub fn progress(&mut self) {
        self.armed = false;
    }

    /// Called when the body is `Pending`: true once the limit passed without progress.
    pub fn expired(&mut self, cx: &mut Context<'_>) -> bool {
        let deadline = tokio::time::Instant::now() + self.limit;
        match &mut self.sleep {
            None => self.sleep = Some(Box::pin(tokio::time::sleep_until(deadline))),
            Some(s) if !self.armed => s.as_mut().reset(deadline),
            Some(_) => {}
        }
        self.armed = true;
        let s = self.sleep.as_mut().expect("set above");
        std::future::Future::poll(s.as_mut(), cx).is_ready()
    }
}

/// A request body as the client connection hands it over: hyper's, or none at all (the fast
/// lane in `lane.rs` only takes requests without a body).
#[derive(Debug)]
pub enum ClientIn {
    Hyper(Incoming),
    Empty,
}

impl ClientIn {
    /// No body, or hyper's says it has ended.
    pub fn is_end_stream(&self) -> bool {
        match self {
            ClientIn::Hyper(b) => b.is_end_stream(),
            ClientIn::Empty => true,
        }
    }
}

/// The client's request body: the part read before a server was picked, then the rest as it
/// arrives, under `body_timeout` and `max_body_size`.
#[derive(Debug)]
pub struct ClientBody {
    buffered: std::collections::VecDeque<Frame<Bytes>>,
    rest: Option<Incoming>,
    /// Told when the body was read to its end (only then may the connection carry another
    /// request).
    conn: Option<Arc<ConnState>>,
    seen: u64,
    max: u64,
    idle: IdleTimer,
}

impl ClientBody {
    pub fn new(body: Incoming, conn: Arc<ConnState>, limits: &crate::config::Limits) -> ClientBody {
        ClientBody {
            buffered: Default::default(),
            rest: Some(body),
            conn: Some(conn),
            seen: 0,
            max: limits.max_body_size,
            idle: IdleTimer::new(limits.body_timeout),
        }
    }

    /// Reads ahead until the body ended or `limit` bytes are held, so a short body is complete
    /// (and known to be well formed) before any server sees it.
    pub async fn read_ahead(&mut self, limit: usize) -> Result<(), BodyError> {
        let mut held = 0usize;
        while held < limit && self.rest.is_some() {
            let next = std::future::poll_fn(|cx| self.poll_rest(cx)).await;
            match next {
                Some(Ok(frame)) => {
                    held += frame.data_ref().map_or(0, |d| d.len());
                    self.buffered.push_back(frame);
                }
                Some(Err(e)) => return Err(e),
                None => break,
            }
        }
        Ok(())
    }

    /// Everything was read ahead: the body can be sent again.
    pub fn complete(&self) -> bool {
        self.rest.is_none()
    }

    fn done(&mut self) {
        self.rest = None;
        if let Some(c) = self.conn.take() {
            c.request_body_done();
        }
    }

    fn poll_rest(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        let Some(rest) = &mut self.rest else {
            return Poll::Ready(None);
        };
        match Pin::new(&mut *rest).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                self.idle.progress();
                if let Some(d) = frame.data_ref() {
                    self.seen += d.len() as u64;
                    if self.max > 0 && self.seen > self.max {
                        return Poll::Ready(Some(Err(BodyError::TooLarge)));
                    }
                }
                if rest.is_end_stream() {
                    self.done();
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(None) => {
                self.done();
                Poll::Ready(None)
            }
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(BodyError::Client(e)))),
            Poll::Pending => {
                if self.idle.expired(cx) {
                    Poll::Ready(Some(Err(BodyError::ClientTimeout)))
                } else {
                    Poll::Pending
                }
            }
        }
    }
}

/// A request body on its way to a server.
#[derive(Debug)]
pub enum UpBody {
    /// The client's body.
    Client(Box<ClientBody>),
    /// A body read whole, that may be sent again (a retried request).
    Copy(std::collections::VecDeque<Frame<Bytes>>),
    /// No body (health checks, revalidations).
    Empty,
}

impl UpBody {
    /// Whether the body is known whole (none, or read ahead to its end), so it could be sent
    /// again.
    pub fn is_whole(&self) -> bool {
        match self {
            UpBody::Client(c) => c.complete(),
            UpBody::Copy(_) | UpBody::Empty => true,
        }
    }

    /// A copy to send again, if the body is known whole.
    pub fn replay(&self) -> Option<UpBody> {
        let frames = match self {
            UpBody::Empty => return Some(UpBody::Empty),
            UpBody::Client(c) if c.complete() => &c.buffered,
            UpBody::Copy(f) => f,
            UpBody::Client(_) => return None,
        };
        let mut copy = std::collections::VecDeque::with_capacity(frames.len());
        for f in frames {
            if let Some(d) = f.data_ref() {
                copy.push_back(Frame::data(d.clone()));
            } else if let Some(t) = f.trailers_ref() {
                copy.push_back(Frame::trailers(t.clone()));
            }
        }
        Some(UpBody::Copy(copy))
    }
}

impl Body for UpBody {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        match self.get_mut() {
            UpBody::Client(c) => match c.buffered.pop_front() {
                Some(f) => Poll::Ready(Some(Ok(f))),
                None => c.poll_rest(cx),
            },
            UpBody::Copy(f) => Poll::Ready(f.pop_front().map(Ok)),
            UpBody::Empty => Poll::Ready(None),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            UpBody::Client(c) => {
                c.buffered.is_empty() && c.rest.as_ref().map_or(true, |r| r.is_end_stream())
            }
            UpBody::Copy(f) => f.is_empty(),
            UpBody::Empty => true,
        }
    }

    fn size_hint(&self) -> SizeHint {
        let held = |frames: &std::collections::VecDeque<Frame<Bytes>>| {
            frames
                .iter()
                .map(|f| f.data_ref().map_or(0, |d| d.len() as u64))
                .sum::<u64>()
        };
        // Trailers need chunked framing upstream, so a body with them has no exact size.
        let has_trailers = |frames: &std::collections::VecDeque<Frame<Bytes>>| {
            frames.iter().any(|f| f.is_trailers())
        };
        match self {
            UpBody::Client(c) if c.rest.is_none() && has_trailers(&c.buffered) => {
                let mut hint = SizeHint::new();
                hint.set_lower(held(&c.buffered));
                hint
            }
            UpBody::Copy(f) if has_trailers(f) => {
                let mut hint = SizeHint::new();
                hint.set_lower(held(f));
                hint
            }
            UpBody::Client(c) => match &c.rest {
                None => SizeHint::with_exact(held(&c.buffered)),
                Some(r) => {
                    let h = held(&c.buffered);
                    let inner = r.size_hint();
                    let mut hint = SizeHint::new();
                    hint.set_lower(inner.lower() + h);
                    if let Some(u) = inner.upper() {
                        hint.set_upper(u + h);
                    }
                    hint
                }
            },
            UpBody::Copy(f) => SizeHint::with_exact(held(f)),
            UpBody::Empty => SizeHint::with_exact(0),
        }
    }
}

/// Where an HTTP/1.1 connection goes back once its response has been read to the end.
#[derive(Debug)]
pub struct Reusable {
    pub server: Arc<Server>,
    pub max_idle: usize,
}

#[derive(Debug)]
enum Kind {
    Full(Option<Bytes>),
    /// A server's body.
    Upstream(super::upstream::UpstreamBody),
    /// Part of a file, read in chunks as the client takes them (boxed: a file's reader is
    /// large, and every response moves this enum).
    File(
        Box<tokio_util::io::ReaderStream<tokio::io::Take<tokio::fs::File>>>,
        u64,
    ),
}

/// The body sent to the client.
#[derive(Debug)]
pub struct ProxyBody {
    kind: Kind,
    /// Held (not read) so the server counts this request until the body is done.
    _in_flight: Option<InFlight>,
    reuse: Option<Reusable>,
    log: Option<AccessLog>,
    bytes: u64,
    ended: bool,
    /// The client connection, told when this body did not end cleanly.
    conn: Option<Arc<ConnState>>,
    /// A cache entry being filled from this body as it streams by.
    fill: Option<Box<Fill>>,
}

impl ProxyBody {
    /// A body held in memory (error pages, small answers).
    pub fn full(data: impl Into<Bytes>, log: Option<AccessLog>) -> ProxyBody {
        let data = data.into();
        ProxyBody {
            bytes: data.len() as u64,
            kind: Kind::Full(if data.is_empty() { None } else { Some(data) }),
            _in_flight: None,
            reuse: None,
            log,
            ended: true,
            conn: None,
            fill: None,
        }
    }

    /// `len` bytes of a file from `start`, streamed. Gives the log back if it cannot be opened.
    pub async fn file(
        path: &std::path::Path,
        start: u64,
        len: u64,
        log: Option<AccessLog>,
    ) -> Result<ProxyBody, Option<AccessLog>> {
        use tokio::io::{AsyncReadExt, AsyncSeekExt};
        let Ok(mut f) = tokio::fs::File::open(path).await else {
            return Err(log);
        };
        if start > 0 && f.seek(std::io::SeekFrom::Start(start)).await.is_err() {
            return Err(log);
        }
        let reader = tokio_util::io::ReaderStream::with_capacity(f.take(len), 64 * 1024);
        Ok(ProxyBody {
            kind: Kind::File(Box::new(reader), len),
            _in_flight: None,
            reuse: None,
            log,
            bytes: 0,
            ended: len == 0,
            conn: None,
            fill: None,
        })
    }

    /// A server's body, streamed.
    pub fn upstream(
        body: super::upstream::UpstreamBody,
        in_flight: InFlight,
        reuse: Reusable,
        log: Option<AccessLog>,
    ) -> ProxyBody {
        let mut b = ProxyBody {
            kind: Kind::Upstream(body),
            _in_flight: Some(in_flight),
            reuse: Some(reuse),
            log,
            bytes: 0,
            ended: false,
            conn: None,
            fill: None,
        };
        if let Kind::Upstream(inner) = &b.kind {
            if inner.is_end_stream() {
                b.finish();
            }
        }
        b
    }

    /// Copies the body into the cache as it streams; stored when it ends cleanly. A body that
    /// already ended is stored at once.
    pub fn fill(&mut self, fill: Fill) {
        if self.ended {
            if let Kind::Upstream(..) = self.kind {
                fill.finish();
                return;
            }
        }
        self.fill = Some(Box::new(fill));
    }

    /// Takes the access-log line away (the response is being replaced by another).
    pub fn take_log(&mut self) -> Option<AccessLog> {
        self.log.take()
    }

    /// The access log line, to note what the cache did.
    pub fn log_mut(&mut self) -> Option<&mut AccessLog> {
        self.log.as_mut()
    }

    /// Corrects the status the access log will show.
    pub fn set_status(&mut self, status: u16) {
        if let Some(l) = &mut self.log {
            l.status = status;
        }
    }

    /// Tells the client connection how this body ends (see `conn.rs`).
    pub fn attach(&mut self, conn: Arc<ConnState>) {
        self.conn = Some(conn);
    }

    fn finish(&mut self) {
        self.ended = true;
        if let Some(f) = self.fill.take() {
            f.finish();
        }
        if let Some(r) = self.reuse.take() {
            // An HTTP/2 connection is shared, not taken: nothing to give back.
            if let Kind::Upstream(super::upstream::UpstreamBody::H1(b)) = &mut self.kind {
                if let Some(c) = b.take_reusable() {
                    r.server.put_idle(c, r.max_idle);
                }
            }
        }
    }
}

impl Body for ProxyBody {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        let this = self.get_mut();
        match &mut this.kind {
            Kind::Full(data) => Poll::Ready(data.take().map(|d| Ok(Frame::data(d)))),
            Kind::File(reader, left) => {
                use futures_core::Stream;
                match Pin::new(&mut **reader).poll_next(cx) {
                    Poll::Ready(Some(Ok(d))) => {
                        this.bytes += d.len() as u64;
                        *left = left.saturating_sub(d.len() as u64);
                        if *left == 0 {
                            this.ended = true;
                        }
                        Poll::Ready(Some(Ok(Frame::data(d))))
                    }
                    // A read error or a file that shrank: end short, and the connection closes
                    // (the Content-Length promised more).
                    Poll::Ready(Some(Err(_))) | Poll::Ready(None) => {
                        if let Some(log) = &mut this.log {
                            if !this.ended {
                                log.reason = "file_read_error";
                            }
                        }
                        Poll::Ready(None)
                    }
                    Poll::Pending => Poll::Pending,
                }
            }
            Kind::Upstream(inner) => {
                let polled = Pin::new(&mut *inner).poll_frame(cx);
                match polled {
                    Poll::Ready(Some(Ok(frame))) => {
                        match frame.data_ref() {
                            Some(d) => {
                                this.bytes += d.len() as u64;
                                if this.fill.as_mut().is_some_and(|f| !f.push(d)) {
                                    this.fill = None;
                                }
                            }
                            // Trailers are not stored: a response that has them is not kept.
                            None => this.fill = None,
                        }
                        if inner.is_end_stream() {
                            this.finish();
                        }
                        Poll::Ready(Some(Ok(frame)))
                    }
                    Poll::Ready(None) => {
                        this.finish();
                        Poll::Ready(None)
                    }
                    Poll::Ready(Some(Err(e))) => {
                        this.reuse = None;
                        let timed_out = e.kind() == std::io::ErrorKind::TimedOut;
                        if let Some(log) = &mut this.log {
                            log.reason = if timed_out {
                                "upstream_read_timeout"
                            } else {
                                "upstream_aborted"
                            };
                        }
                        Poll::Ready(Some(Err(BodyError::Upstream(e))))
                    }
                    Poll::Pending => Poll::Pending,
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.kind {
            Kind::Full(d) => d.is_none(),
            Kind::Upstream(b) => b.is_end_stream(),
            Kind::File(_, left) => *left == 0,
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            Kind::Full(d) => SizeHint::with_exact(d.as_ref().map_or(0, |d| d.len() as u64)),
            Kind::Upstream(b) => b.size_hint(),
            Kind::File(_, left) => SizeHint::with_exact(*left),
        }
    }
}

impl Drop for ProxyBody {
    fn drop(&mut self) {
        if let Some(c) = &self.conn {
            c.body_dropped(self.ended);
        }
        if let Some(mut log) = self.log.take() {
            log.bytes = self.bytes;
            if !self.ended && log.reason.is_empty() {
                log.reason = "client_aborted";
            }
            log.emit();
        }
    }
}
