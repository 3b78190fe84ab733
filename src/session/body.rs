//! Request bodies: the client's body as langur reads it (under `body_timeout` and
//! `max_body_size`, read ahead up to `request_buffer`), and the body a request sends upstream.

use super::ConnState;
use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

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
                let frame = match frame.into_trailers() {
                    Ok(mut trailers) => {
                        let names: Vec<http::HeaderName> = trailers.keys().cloned().collect();
                        for n in names.iter().filter(|n| !trailer_allowed(n)) {
                            trailers.remove(n);
                        }
                        Frame::trailers(trailers)
                    }
                    Err(frame) => frame,
                };
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

/// Whether a client's trailer field is passed on. Fields a server may act on as if they were
/// in the head are dropped (RFC 9110 6.5.1: framing, routing, authentication, request
/// modifiers, content format), and so are those that change how a server reads the request
/// (method overrides, original-URL and forwarding fields): some servers merge trailers into
/// the head.
pub(crate) fn trailer_allowed(name: &http::HeaderName) -> bool {
    use http::header::*;
    const DENIED: [HeaderName; 24] = [
        CONTENT_LENGTH,
        TRANSFER_ENCODING,
        TE,
        TRAILER,
        CONNECTION,
        UPGRADE,
        HOST,
        AUTHORIZATION,
        PROXY_AUTHORIZATION,
        COOKIE,
        SET_COOKIE,
        CACHE_CONTROL,
        PRAGMA,
        EXPECT,
        RANGE,
        IF_MATCH,
        IF_NONE_MATCH,
        IF_MODIFIED_SINCE,
        IF_UNMODIFIED_SINCE,
        IF_RANGE,
        CONTENT_TYPE,
        CONTENT_ENCODING,
        CONTENT_RANGE,
        MAX_FORWARDS,
    ];
    let n = name.as_str();
    !(DENIED.contains(name)
        || n == "keep-alive"
        || n == "proxy-connection"
        || n == "via"
        || n == "forwarded"
        || n.starts_with("x-forwarded-")
        || n.starts_with("x-http-method")
        || n == "x-method-override"
        || n.starts_with("x-original-")
        || n == "x-rewrite-url"
        || n.contains('_'))
}
