//! The access log: one line per request, written when the response body is finished or
//! abandoned, so it has the real byte count and total time.
//!
//! On the request path a line is a boxed [`Line`] filled as the phases learn things (route,
//! pool, server, timings, cache, reason); at the end it is handed to its [`Sink`]'s bounded
//! queue (`try_send`: a full queue drops the line and counts it, a request never waits). The
//! sink's writer thread formats lines ([`format`]: logfmt, JSON, combined, HAProxy's httplog, a
//! template), writes them in batches to stdout, stderr, a file (reopened on `SIGUSR1`) or
//! syslog, and turns traced requests into spans for the OTLP exporter ([`otlp`]). W3C trace
//! context on the request path is [`trace`]'s.

mod format;
mod otlp;
mod sink;
pub mod trace;

pub use otlp::SpanCounters;
pub use sink::{reopen, wait_for_writers, Sink};

use crate::session::{ClientInfo, ConnState, TlsInfo};
use http::header::{HeaderValue, HOST, REFERER, USER_AGENT};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

/// One access-log line on its way: boxed, so a request carries a pointer through the pipeline
/// (and none at all when the log is off) instead of moving the whole line with every response.
#[derive(Debug)]
pub struct AccessLog(Box<Line>);

impl std::ops::Deref for AccessLog {
    type Target = Line;
    fn deref(&self) -> &Line {
        &self.0
    }
}

impl std::ops::DerefMut for AccessLog {
    fn deref_mut(&mut self) -> &mut Line {
        &mut self.0
    }
}

/// The hop in front of a client: a proxy or load balancer (see docs/clients.md).
#[derive(Debug)]
pub struct Hop {
    /// The socket's peer; `None`: a Unix-domain socket.
    pub peer: Option<SocketAddr>,
    /// What a PROXY header said, if one came.
    pub origin: Option<Arc<crate::session::Origin>>,
}

impl Hop {
    /// `client`'s hop: `None` when the socket's peer is the client and no PROXY header came.
    fn of(client: &ClientInfo) -> Option<Box<Hop>> {
        let origin = client
            .origin
            .as_ref()
            .filter(|o| o.source.is_some() || o.authority.is_some() || o.ssl.is_some());
        if client.peer == Some(client.addr) && origin.is_none() {
            return None;
        }
        Some(Box::new(Hop {
            peer: client.peer,
            origin: origin.cloned(),
        }))
    }
}

/// Everything one access-log line says (see `config::log::Field` for each field's meaning).
#[derive(Debug)]
pub struct Line {
    pub client: SocketAddr,
    pub method: http::Method,
    /// The target as the client sent it (path, query; the authority of an HTTP/2 request).
    pub uri: http::Uri,
    pub version: http::Version,
    pub scheme: &'static str,
    pub host: Option<HeaderValue>,
    pub user_agent: Option<HeaderValue>,
    pub referer: Option<HeaderValue>,
    /// The request body's `Content-Length` (`Some(0)` without a body, `None` when chunked).
    pub bytes_in: Option<u64>,
    pub tls: Option<TlsInfo>,
    /// The hop in front of the client, when there is one (and the format shows it).
    pub hop: Option<Box<Hop>>,
    pub status: u16,
    /// Body bytes sent to the client.
    pub bytes: u64,
    /// Index of the route that matched.
    pub route: Option<usize>,
    pub pool: Option<Arc<str>>,
    pub server: Option<Arc<str>>,
    /// Time waited in the pool's queue.
    pub queue: Option<Duration>,
    /// Time to open the connection to the server (zero when an idle one was reused).
    pub connect: Option<Duration>,
    /// From the request leaving for the server to its response head arriving.
    pub upstream_ms: Option<f64>,
    /// When the forward phase began (the pool's pick), from `start`.
    pub forwarded: Option<Duration>,
    /// When the request left for the server, from `start`.
    pub sent: Option<Duration>,
    pub start: Instant,
    /// From `start` to the end of the response body (set when the line is written).
    pub total: Duration,
    /// Empty when all went well; otherwise why it did not (`no_server`, `client_aborted`, ...).
    pub reason: &'static str,
    /// What the cache did (`hit`, `miss`, `stale`, `revalidated`, `bypass`), empty if unused.
    pub cache: &'static str,
    /// The path sent to the server when a route rewrote it.
    pub rewritten: Option<String>,
    /// The request ID (`[server] request_id`).
    pub request_id: Option<http::HeaderValue>,
    /// The request's W3C trace context (see [`trace`]).
    pub trace: Option<trace::Trace>,
    /// A head refused before it was parsed (HAProxy's `<BADREQ>`): method, target, protocol
    /// and request fields are unknown, and shown as absent.
    pub unparsed: bool,
    /// Taken when the line is sent, so a queued line holds no sink.
    sink: Option<Arc<Sink>>,
}

impl AccessLog {
    /// A line for a request when the log (or tracing) is on: [`AccessLog::new`] with `sink`.
    #[inline]
    pub fn start<B>(
        sink: Option<&Arc<Sink>>,
        req: &http::Request<B>,
        client: &ClientInfo,
        conn: &ConnState,
    ) -> Option<AccessLog> {
        sink.map(|s| AccessLog::new(s, req, client, conn))
    }

    /// A line for a request from `client` on `conn`, beginning now. Reads only the request
    /// fields its sink's format shows.
    pub fn new<B>(
        sink: &Arc<Sink>,
        req: &http::Request<B>,
        client: &ClientInfo,
        conn: &ConnState,
    ) -> AccessLog {
        let h = req.headers();
        let shows = sink.shows();
        let mut line = Box::new(Line {
            client: client.addr,
            method: req.method().clone(),
            uri: req.uri().clone(),
            version: req.version(),
            scheme: client.scheme,
            host: None,
            user_agent: None,
            referer: None,
            bytes_in: None,
            tls: conn.tls.clone(),
            hop: None,
            status: 0,
            bytes: 0,
            route: None,
            pool: None,
            server: None,
            queue: None,
            connect: None,
            upstream_ms: None,
            forwarded: None,
            sent: None,
            start: Instant::now(),
            total: Duration::ZERO,
            reason: "",
            cache: "",
            rewritten: None,
            request_id: None,
            trace: None,
            unparsed: false,
            sink: Some(sink.clone()),
        });
        if shows.request_fields {
            line.host = h.get(HOST).cloned();
            line.user_agent = h.get(USER_AGENT).cloned();
            line.referer = h.get(REFERER).cloned();
            line.bytes_in = body_length(req);
        }
        if shows.trace_id {
            line.trace = trace::observe(h);
        }
        if shows.hop {
            line.hop = Hop::of(client);
        }
        AccessLog(line)
    }

    /// Hands the line to its sink's writer (never waits: a full queue drops it and counts it).
    /// Writes the line of a head refused before it could be parsed (malformed: 400, too large:
    /// 431) on `conn`, whose client is `client`.
    pub fn refused_head(
        sink: &Arc<Sink>,
        client: &ClientInfo,
        conn: &ConnState,
        status: u16,
        reason: &'static str,
    ) {
        let req = http::Request::new(());
        let mut log = AccessLog::new(sink, &req, client, conn);
        log.unparsed = true;
        (log.status, log.reason) = (status, reason);
        (log.host, log.bytes_in) = (None, None);
        log.emit();
    }

    pub fn emit(mut self) {
        self.total = self.start.elapsed();
        if let Some(sink) = self.sink.take() {
            sink.send(self.0);
        }
    }
}

/// The request body's length as announced: 0 without a body, `None` when chunked.
fn body_length<B>(req: &http::Request<B>) -> Option<u64> {
    match req.headers().get(http::header::CONTENT_LENGTH) {
        Some(v) => v.to_str().ok()?.trim().parse().ok(),
        None if req.headers().contains_key(http::header::TRANSFER_ENCODING) => None,
        None => Some(0),
    }
}
