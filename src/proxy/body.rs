//! Body types of the request path. Both are enums rather than boxed trait objects, so a request
//! costs no allocation for its body.
//!
//! [`ProxyBody`] is what the client receives. It streams the server's body frame by frame (never
//! buffering it) and carries the request's bookkeeping: the in-flight count, the upstream
//! connection (returned to the idle pool only when the body ended cleanly), and the access-log
//! line, written when the body is done or abandoned.

use crate::access_log::AccessLog;
use crate::backend::{InFlight, Server};
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
        }
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
        };
        if let Kind::Upstream(inner) = &b.kind {
            if inner.is_end_stream() {
                b.finish();
            }
        }
        b
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
            Kind::Upstream(inner) => {
                let polled = Pin::new(inner).poll_frame(cx);
                match &polled {
                    Poll::Ready(Some(Ok(frame))) => {
                        if let Some(d) = frame.data_ref() {
                            this.bytes += d.len() as u64;
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
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            Kind::Full(d) => SizeHint::with_exact(d.as_ref().map_or(0, |d| d.len() as u64)),
            Kind::Upstream(b) => b.size_hint(),
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
