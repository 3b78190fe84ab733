//! The access log: one line per request through `tracing` (target `langur::access`), written
//! when the response body is finished or abandoned, so it has the real byte count and total time.

use std::net::SocketAddr;
use std::sync::Arc;
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

/// Everything one access-log line says.
#[derive(Debug)]
pub struct Line {
    pub client: SocketAddr,
    pub method: http::Method,
    pub path: String,
    pub status: u16,
    pub bytes: u64,
    pub pool: Option<Arc<str>>,
    pub server: Option<Arc<str>>,
    /// From the request leaving for the server to its response head arriving.
    pub upstream_ms: Option<f64>,
    pub start: Instant,
    /// Empty when all went well; otherwise why it did not (`no_server`, `client_aborted`, ...).
    pub reason: &'static str,
    /// What the cache did (`hit`, `miss`, `stale`, `revalidated`, `bypass`), empty if unused.
    pub cache: &'static str,
    /// The path sent to the server when a route rewrote it.
    pub rewritten: Option<String>,
    /// The request ID (`[server] request_id`).
    pub request_id: Option<http::HeaderValue>,
}

impl AccessLog {
    pub fn new(client: SocketAddr, method: &http::Method, path: &str, start: Instant) -> AccessLog {
        AccessLog(Box::new(Line {
            client,
            method: method.clone(),
            path: path.to_string(),
            status: 0,
            bytes: 0,
            pool: None,
            server: None,
            upstream_ms: None,
            start,
            reason: "",
            cache: "",
            rewritten: None,
            request_id: None,
        }))
    }

    pub fn emit(&self) {
        let total_ms = self.start.elapsed().as_secs_f64() * 1000.0;
        tracing::info!(
            target: "langur::access",
            client = %self.client,
            method = %self.method,
            path = %self.path,
            status = self.status,
            bytes = self.bytes,
            pool = self.pool.as_deref().unwrap_or("-"),
            server = self.server.as_deref().unwrap_or("-"),
            upstream_ms = format_args!("{:.3}", self.upstream_ms.unwrap_or(-1.0)),
            total_ms = format_args!("{total_ms:.3}"),
            reason = if self.reason.is_empty() { "-" } else { self.reason },
            cache = if self.cache.is_empty() { "-" } else { self.cache },
            rewritten = self.rewritten.as_deref().unwrap_or("-"),
            request_id = self
                .request_id
                .as_ref()
                .and_then(|v| v.to_str().ok())
                .unwrap_or("-"),
        );
    }
}
