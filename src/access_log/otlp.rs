//! Spans of traced requests, sent to an OTLP/HTTP collector (protobuf) by the OpenTelemetry
//! SDK's batch processor, which queues them (2 048 at most, the rest dropped) and exports them
//! from its own thread every second, or sooner when 512 are waiting.
//!
//! A request's spans are made from its finished access-log line on the writer thread, with the
//! IDs the request path already sent upstream: `request` (kind server: the whole exchange,
//! child of the caller's span), and under it `route` (from the head to the pool's pick: the
//! routing, the route's rules, a short body read ahead), `cache`, `queue`, `connect` and
//! `upstream` (kind client: from the request leaving to the end of the response), each when
//! the request went through that phase.

use super::Line;
use anyhow::Context;
use bytes::Bytes;
use opentelemetry::trace::{
    SpanContext, SpanId, SpanKind, Status, TraceFlags, TraceId, TraceState,
};
use opentelemetry::{InstrumentationScope, KeyValue};
use opentelemetry_http::{HttpClient, HttpError, Request, Response};
use opentelemetry_otlp::{Protocol, WithExportConfig, WithHttpConfig};
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::trace::{
    BatchConfigBuilder, BatchSpanProcessor, IdGenerator, RandomIdGenerator, SpanData, SpanEvents,
    SpanLinks, SpanProcessor,
};
use std::borrow::Cow;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

/// How long one export may take.
const EXPORT_TIMEOUT: Duration = Duration::from_secs(10);

/// What a sink's span export counts, kept across reloads (see `langur_tracing_*`).
#[derive(Debug, Default)]
pub struct SpanCounters {
    /// Spans handed to the batch processor.
    pub queued: AtomicU64,
    /// Spans the collector took.
    pub exported: AtomicU64,
    /// Spans of exports that failed (collector down, refused, too slow): lost.
    pub failed: AtomicU64,
}

/// The OTLP exporter, counting what it sends and saying when the collector stops (and starts
/// again) taking spans: one warning per outage, not one per batch.
#[derive(Debug)]
struct Counted {
    inner: opentelemetry_otlp::SpanExporter,
    counters: Arc<SpanCounters>,
    url: String,
    failing: AtomicBool,
}

impl opentelemetry_sdk::trace::SpanExporter for Counted {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        let n = batch.len() as u64;
        let r = self.inner.export(batch).await;
        match &r {
            Ok(()) => {
                self.counters.exported.fetch_add(n, Relaxed);
                if self.failing.swap(false, Relaxed) {
                    tracing::info!(collector = %self.url, "spans are exported again");
                }
            }
            Err(e) => {
                self.counters.failed.fetch_add(n, Relaxed);
                if !self.failing.swap(true, Relaxed) {
                    tracing::warn!(collector = %self.url, error = %e, spans = n, "span export failed: spans are lost until the collector takes them again");
                }
            }
        }
        r
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.inner.force_flush()
    }

    fn set_resource(&mut self, resource: &opentelemetry_sdk::Resource) {
        self.inner.set_resource(resource);
    }
}

/// The exporter of one sink.
pub(super) struct Exporter {
    processor: BatchSpanProcessor,
    counters: Arc<SpanCounters>,
    scope: InstrumentationScope,
    /// Drives the HTTP client's connections (one thread).
    rt: Option<tokio::runtime::Runtime>,
}

impl std::fmt::Debug for Exporter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Exporter")
    }
}

/// hyper's client, run on the exporter's own runtime (the SDK's batch thread has none).
#[derive(Debug)]
struct Client {
    inner: opentelemetry_http::hyper::HyperClient,
    rt: tokio::runtime::Handle,
}

#[async_trait::async_trait]
impl HttpClient for Client {
    async fn send_bytes(&self, request: Request<Bytes>) -> Result<Response<Bytes>, HttpError> {
        let inner = self.inner.clone();
        self.rt
            .spawn(async move { inner.send_bytes(request).await })
            .await?
    }
}

impl Exporter {
    /// An exporter to `url` (the traces endpoint), its spans naming `service`, counted in
    /// `counters`.
    pub fn new(url: &str, service: &str, counters: Arc<SpanCounters>) -> anyhow::Result<Exporter> {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("langur-otlp")
            .enable_all()
            .build()
            .context("starting the OTLP exporter's runtime")?;
        let client = Client {
            inner: opentelemetry_http::hyper::HyperClient::with_default_connector(
                EXPORT_TIMEOUT,
                None,
            ),
            rt: rt.handle().clone(),
        };
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_http_client(client)
            .with_protocol(Protocol::HttpBinary)
            .with_endpoint(url)
            .with_timeout(EXPORT_TIMEOUT)
            .build()
            .with_context(|| format!("the OTLP exporter to {url}"))?;
        let exporter = Counted {
            inner: exporter,
            counters: counters.clone(),
            url: url.to_string(),
            failing: AtomicBool::new(false),
        };
        let config = BatchConfigBuilder::default()
            .with_scheduled_delay(Duration::from_secs(1))
            .build();
        let mut processor = BatchSpanProcessor::builder(exporter)
            .with_batch_config(config)
            .build();
        processor.set_resource(
            &opentelemetry_sdk::Resource::builder_empty()
                .with_service_name(service.to_string())
                .build(),
        );
        Ok(Exporter {
            processor,
            counters,
            scope: InstrumentationScope::builder("langur")
                .with_version(env!("CARGO_PKG_VERSION"))
                .build(),
            rt: Some(rt),
        })
    }

    /// Hands one span to the batch processor (which drops it when its queue is full).
    fn queue(&self, span: SpanData) {
        self.counters.queued.fetch_add(1, Relaxed);
        self.processor.on_end(span);
    }

    /// Queues the spans of a finished request (only of sampled ones this hop traced).
    pub fn export(&self, line: &Line, start: SystemTime) {
        let Some(t) = line.trace.filter(|t| t.ours && t.sampled) else {
            return;
        };
        let trace_id = TraceId::from_bytes(t.trace_id);
        let own = SpanId::from_bytes(t.span_id);
        let at = |offset: Duration| start + offset;
        let end = at(line.total);
        let mut request = self.span(trace_id, own, t.parent.map(SpanId::from_bytes), "request");
        request.span_kind = SpanKind::Server;
        (request.start_time, request.end_time) = (start, end);
        request.attributes = attributes(line);
        if line.status >= 500 || !line.reason.is_empty() {
            request.status = Status::error(line.reason);
        }
        self.queue(request);
        let child = |name: &'static str, from: Duration, to: Duration| {
            let mut s = self.span(
                trace_id,
                RandomIdGenerator::default().new_span_id(),
                Some(own),
                name,
            );
            (s.start_time, s.end_time) = (at(from), at(to.max(from)));
            s
        };
        let forwarded = line.forwarded.unwrap_or(line.total);
        if let Some(route) = line.route {
            let mut s = child("route", Duration::ZERO, forwarded);
            s.attributes
                .push(KeyValue::new("langur.route", format!("#{}", route + 1)));
            self.queue(s);
        }
        if !line.cache.is_empty() {
            let mut s = child("cache", Duration::ZERO, line.sent.unwrap_or(line.total));
            s.attributes.push(KeyValue::new("langur.cache", line.cache));
            self.queue(s);
        }
        if let (Some(q), Some(f)) = (line.queue.filter(|q| !q.is_zero()), line.forwarded) {
            self.queue(child("queue", f, f + q));
        }
        let Some(sent) = line.sent else { return };
        if let Some(c) = line.connect.filter(|c| !c.is_zero()) {
            self.queue(child("connect", sent.saturating_sub(c), sent));
        }
        let mut up = child("upstream", sent, line.total);
        up.span_kind = SpanKind::Client;
        if let Some(server) = &line.server {
            up.attributes
                .push(KeyValue::new("server.address", server.to_string()));
        }
        self.queue(up);
    }

    fn span(
        &self,
        trace: TraceId,
        id: SpanId,
        parent: Option<SpanId>,
        name: &'static str,
    ) -> SpanData {
        SpanData {
            span_context: SpanContext::new(
                trace,
                id,
                TraceFlags::SAMPLED,
                false,
                TraceState::default(),
            ),
            parent_span_id: parent.unwrap_or(SpanId::INVALID),
            parent_span_is_remote: parent.is_some() && name == "request",
            span_kind: SpanKind::Internal,
            name: Cow::Borrowed(name),
            start_time: SystemTime::UNIX_EPOCH,
            end_time: SystemTime::UNIX_EPOCH,
            attributes: Vec::new(),
            dropped_attributes_count: 0,
            events: SpanEvents::default(),
            links: SpanLinks::default(),
            status: Status::Unset,
            instrumentation_scope: self.scope.clone(),
        }
    }

    /// Sends what is queued (waiting up to 5 seconds) and stops.
    pub fn shutdown(mut self) {
        let _ = self.processor.shutdown_with_timeout(Duration::from_secs(5));
        if let Some(rt) = self.rt.take() {
            rt.shutdown_background();
        }
    }
}

impl Drop for Exporter {
    fn drop(&mut self) {
        if let Some(rt) = self.rt.take() {
            rt.shutdown_background();
        }
    }
}

/// The request span's attributes, in OpenTelemetry's HTTP semantic conventions' names.
fn attributes(line: &Line) -> Vec<KeyValue> {
    let text = |v: &http::HeaderValue| String::from_utf8_lossy(v.as_bytes()).into_owned();
    let mut a = vec![
        KeyValue::new("http.request.method", line.method.as_str().to_string()),
        KeyValue::new("url.path", line.uri.path().to_string()),
        KeyValue::new("url.scheme", line.scheme),
        KeyValue::new("http.response.status_code", i64::from(line.status)),
        KeyValue::new("client.address", line.client.ip().to_string()),
    ];
    if let Some(q) = line.uri.query() {
        a.push(KeyValue::new("url.query", q.to_string()));
    }
    if let Some(h) = &line.host {
        a.push(KeyValue::new("server.address", text(h)));
    }
    if let Some(ua) = &line.user_agent {
        a.push(KeyValue::new("user_agent.original", text(ua)));
    }
    if let Some(p) = &line.pool {
        a.push(KeyValue::new("langur.pool", p.to_string()));
    }
    if let Some(id) = &line.request_id {
        a.push(KeyValue::new("langur.request_id", text(id)));
    }
    if !line.reason.is_empty() {
        a.push(KeyValue::new("langur.reason", line.reason));
    }
    a
}
