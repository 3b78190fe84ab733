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
use crate::conn::ConnState;
use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use hyper::client::conn::http1::SendRequest;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

/// A request body on its way to a server.
#[derive(Debug)]
pub enum UpBody {
    /// The client's body, streamed through; the client connection is told when it was read to
    /// its end (only then may the connection carry another request).
    Incoming(Incoming, Option<Arc<ConnState>>),
    /// No body (health checks, revalidations).
    Empty,
}

impl Body for UpBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        match self.get_mut() {
            UpBody::Incoming(b, conn) => {
                let polled = Pin::new(&mut *b).poll_frame(cx);
                if matches!(polled, Poll::Ready(None)) || b.is_end_stream() {
                    if let Some(c) = conn.take() {
                        c.request_body_done();
                    }
                }
                polled
            }
            UpBody::Empty => Poll::Ready(None),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            UpBody::Incoming(b, _) => b.is_end_stream(),
            UpBody::Empty => true,
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            UpBody::Incoming(b, _) => b.size_hint(),
            UpBody::Empty => SizeHint::with_exact(0),
        }
    }
}

/// An upstream connection to give back once its response has been read to the end.
#[derive(Debug)]
pub struct Reusable {
    pub server: Arc<Server>,
    pub sender: SendRequest<UpBody>,
    pub max_idle: usize,
}

#[derive(Debug)]
enum Kind {
    Full(Option<Bytes>),
    Upstream(Incoming),
    /// Part of a file, read in chunks as the client takes them.
    File(
        tokio_util::io::ReaderStream<tokio::io::Take<tokio::fs::File>>,
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
            kind: Kind::File(reader, len),
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
        body: Incoming,
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
            if let Kind::Upstream(_) = self.kind {
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
            r.server.put_idle(r.sender, r.max_idle);
        }
    }
}

impl Body for ProxyBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let this = self.get_mut();
        match &mut this.kind {
            Kind::Full(data) => Poll::Ready(data.take().map(|d| Ok(Frame::data(d)))),
            Kind::File(reader, left) => {
                use futures_core::Stream;
                match Pin::new(reader).poll_next(cx) {
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
                let polled = Pin::new(inner).poll_frame(cx);
                match &polled {
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
                        if let Kind::Upstream(inner) = &this.kind {
                            if inner.is_end_stream() {
                                this.finish();
                            }
                        }
                    }
                    Poll::Ready(None) => this.finish(),
                    Poll::Ready(Some(Err(_))) => {
                        this.reuse = None;
                        if let Some(log) = &mut this.log {
                            log.reason = "upstream_aborted";
                        }
                    }
                    Poll::Pending => {}
                }
                polled
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
            if self.ended {
                c.response_done();
            } else {
                c.force_close();
            }
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
