//! Prometheus text (encoded by `prometheus-client` at scrape time from the live counters, so
//! the request path keeps a single set of atomics): OpenMetrics 1.0, or text 0.0.4 rewritten
//! from it.

mod client;

use super::{haproxy_status, Shared};
use crate::backend::{Pool, Server};
use crate::cache::Stats;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

/// Everything `/metrics` shows, read from the live counters on each scrape.
#[derive(Debug)]
struct Collector(Arc<Shared>);

type Labels = Vec<(&'static str, String)>;

/// One metric family: its descriptor, then its samples (one without labels is written bare).
fn family<M: EncodeMetric>(
    enc: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    kind: MetricType,
    series: Vec<(Labels, M)>,
) -> std::fmt::Result {
    let mut m = enc.encode_descriptor(name, help, None, kind)?;
    if series.len() == 1 && series[0].0.is_empty() {
        let (_, metric) = series.into_iter().next().expect("one series");
        return metric.encode(m);
    }
    for (labels, metric) in series {
        metric.encode(m.encode_family(&labels)?)?;
    }
    Ok(())
}

fn counter(v: u64) -> ConstCounter<u64> {
    ConstCounter::new(v)
}

fn gauge(v: i64) -> ConstGauge<i64> {
    ConstGauge::new(v)
}

impl prometheus_client::collector::Collector for Collector {
    fn encode(&self, mut enc: DescriptorEncoder) -> std::fmt::Result {
        let shared = &self.0;
        let rt = shared.live().runtime.load();
        traffic(&mut enc, &**shared)?;
        access_log(&mut enc, &rt)?;
        proxy_refused(&mut enc, &shared.traffic().proxy_refused)?;
        tls_failures(&mut enc, &shared.traffic().tls_failures)?;
        certificates(&mut enc, &**shared)?;
        client::listeners(&mut enc, &shared.traffic().listeners.all())?;
        client::routes(&mut enc, &rt)?;
        let servers: Vec<(&Pool, &Server)> = rt
            .pools
            .iter()
            .flat_map(|p| p.servers.iter().map(move |s| (&**p, &**s)))
            .collect();
        per_server(&mut enc, &servers)?;
        latency(&mut enc, &servers)?;
        pools(&mut enc, &rt.pools)?;
        limits(&mut enc, &rt, &**shared)?;
        if let Some(c) = &rt.cluster {
            cluster(&mut enc, &rt, c)?;
        }
        cache(&mut enc, &rt.cache.stats())?;
        match &rt.cache.shared {
            Some(s) => shared_cache(&mut enc, &s.counters),
            None => Ok(()),
        }
    }
}

/// The instance's families: responses sent to clients by status class, and uptime.
fn traffic(enc: &mut DescriptorEncoder, shared: &Shared) -> std::fmt::Result {
    let t = shared.traffic().totals();
    let classes = [
        ("1xx", t.c1xx),
        ("2xx", t.c2xx),
        ("3xx", t.c3xx),
        ("4xx", t.c4xx),
        ("5xx", t.c5xx),
        ("other", t.other),
    ];
    family(
        enc,
        "responses",
        "Responses sent to clients, by status class.",
        MetricType::Counter,
        classes
            .iter()
            .map(|(c, v)| (vec![("class", c.to_string())], counter(*v)))
            .collect(),
    )?;
    family(
        enc,
        "uptime_seconds",
        "Seconds since start.",
        MetricType::Gauge,
        vec![(vec![], gauge(shared.traffic().uptime_secs() as i64))],
    )
}

/// Client connections the PROXY protocol's rules closed, by reason.
fn proxy_refused(enc: &mut DescriptorEncoder, r: &crate::stats::ProxyRefusals) -> std::fmt::Result {
    use std::sync::atomic::Ordering::Relaxed;
    let reasons = [
        ("untrusted", &r.untrusted),
        ("missing", &r.missing),
        ("malformed", &r.malformed),
        ("timeout", &r.timeout),
    ];
    family(
        enc,
        "proxy_protocol_refused",
        "Client connections closed before any HTTP for want of a good PROXY header, by reason.",
        MetricType::Counter,
        reasons
            .iter()
            .map(|(why, v)| (vec![("reason", why.to_string())], counter(v.load(Relaxed))))
            .collect(),
    )
}

/// TLS handshakes with clients that failed, by reason.
fn tls_failures(enc: &mut DescriptorEncoder, f: &crate::stats::TlsFailures) -> std::fmt::Result {
    family(
        enc,
        "tls_handshake_failures",
        "TLS handshakes with clients that failed, by reason (a client certificate missing, from an unknown CA, expired, revoked or otherwise bad; a timeout; anything else).",
        MetricType::Counter,
        f.counts()
            .map(|(why, n)| (vec![("reason", why.to_string())], counter(n)))
            .collect(),
    )
}

/// Seconds until each certificate the TLS listeners serve expires (negative once expired),
/// per name and source (`file`, `acme`); absent without certificates.
fn certificates(enc: &mut DescriptorEncoder, shared: &Shared) -> std::fmt::Result {
    let certs = shared.certificates();
    if certs.is_empty() {
        return Ok(());
    }
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    let series = certs
        .iter()
        .filter_map(|c| c.not_after.map(|t| (c, t - now)))
        .flat_map(|(c, left)| {
            c.names.iter().map(move |n| {
                let labels = vec![("name", n.clone()), ("source", c.source.to_string())];
                (labels, gauge(left))
            })
        })
        .collect();
    family(
        enc,
        "certificate_expiry_seconds",
        "Seconds until the certificate served for a name expires (negative once expired), by source (file or acme).",
        MetricType::Gauge,
        series,
    )
}

/// Access-log lines dropped because the writer could not keep up (absent when neither the
/// access log nor tracing is on), and the spans exported over OTLP (with `[tracing] otlp`):
/// queued, exported, failed; queued minus the other two is what the queue dropped or still
/// holds.
fn access_log(enc: &mut DescriptorEncoder, rt: &crate::proxy::Runtime) -> std::fmt::Result {
    let Some(sink) = &rt.log else { return Ok(()) };
    family(
        enc,
        "access_log_dropped_lines",
        "Access-log lines dropped because the queue to the writer was full.",
        MetricType::Counter,
        vec![(vec![], counter(sink.dropped().load(Relaxed)))],
    )?;
    if !sink.settings.1.as_ref().is_some_and(|t| t.otlp.is_some()) {
        return Ok(());
    }
    unlabelled_counters(enc, SPAN_COUNTERS, sink.spans())
}

/// The span export's counters (`[tracing] otlp`), as families without labels.
const SPAN_COUNTERS: &[Family<crate::access_log::SpanCounters>] = &[
    (
        "tracing_spans_queued",
        "Spans handed to the OTLP batch processor (those past its 2048-span queue are dropped there).",
        |s| s.queued.load(Relaxed),
    ),
    (
        "tracing_spans_exported",
        "Spans the OTLP collector took.",
        |s| s.exported.load(Relaxed),
    ),
    (
        "tracing_spans_failed",
        "Spans lost in exports that failed (collector down, refusing, or too slow).",
        |s| s.failed.load(Relaxed),
    ),
];

/// One counter family without labels per entry of `table`, each read of `of`.
fn unlabelled_counters<T>(
    enc: &mut DescriptorEncoder,
    table: &[Family<T>],
    of: &T,
) -> std::fmt::Result {
    for (name, help, read) in table {
        family(
            enc,
            name,
            help,
            MetricType::Counter,
            vec![(vec![], counter(read(of)))],
        )?;
    }
    Ok(())
}

/// A family with one value read of each `T`: its name, its help, and the reading.
type Family<T> = (&'static str, &'static str, fn(&T) -> u64);

/// What a family with a sample per server reads of it.
enum Sample {
    Counter(fn(&Server) -> u64),
    Gauge(fn(&Pool, &Server) -> i64),
    /// A counter per status class (1xx..5xx) of the server's responses.
    ByClass,
}

/// The families with a sample per server (labels `pool` and `server`), in the order shown.
const SERVER_FAMILIES: &[(&str, &str, Sample)] = &[
    (
        "server_requests",
        "Requests sent to the server.",
        Sample::Counter(|s| s.requests.load(Relaxed)),
    ),
    (
        "server_responses",
        "Server responses by status class.",
        Sample::ByClass,
    ),
    (
        "server_errors",
        "Failed exchanges (connect failures, broken or late responses).",
        Sample::Counter(|s| s.errors.load(Relaxed)),
    ),
    (
        "server_redispatched",
        "Requests that reached the server after failing on another.",
        Sample::Counter(|s| s.redispatched.load(Relaxed)),
    ),
    (
        "server_check_failures",
        "Failed health checks.",
        Sample::Counter(|s| s.check_failures.load(Relaxed)),
    ),
    (
        "server_in_flight",
        "Requests in flight.",
        Sample::Gauge(|_, s| s.in_flight.load(Relaxed) as i64),
    ),
    (
        "server_weight",
        "Balancing weight.",
        Sample::Gauge(|_, s| i64::from(s.weight.load(Relaxed))),
    ),
    (
        "server_up",
        "1 when the server takes new requests.",
        Sample::Gauge(|p, s| i64::from(haproxy_status(p, s) == "UP")),
    ),
];

fn server_labels(p: &Pool, s: &Server) -> Labels {
    vec![("pool", p.name.to_string()), ("server", s.name.to_string())]
}

/// The [`SERVER_FAMILIES`] of every server of every pool.
fn per_server(enc: &mut DescriptorEncoder, servers: &[(&Pool, &Server)]) -> std::fmt::Result {
    for (name, help, sample) in SERVER_FAMILIES {
        match sample {
            Sample::Counter(read) => family(
                enc,
                name,
                help,
                MetricType::Counter,
                servers
                    .iter()
                    .map(|(p, s)| (server_labels(p, s), counter(read(s))))
                    .collect(),
            )?,
            Sample::Gauge(read) => family(
                enc,
                name,
                help,
                MetricType::Gauge,
                servers
                    .iter()
                    .map(|(p, s)| (server_labels(p, s), gauge(read(p, s))))
                    .collect(),
            )?,
            Sample::ByClass => {
                let mut by_class = Vec::new();
                for (p, s) in servers {
                    for (i, c) in ["1xx", "2xx", "3xx", "4xx", "5xx"].iter().enumerate() {
                        let mut l = server_labels(p, s);
                        l.push(("class", c.to_string()));
                        by_class.push((l, counter(s.responses[i].load(Relaxed))));
                    }
                }
                family(enc, name, help, MetricType::Counter, by_class)?
            }
        }
    }
    Ok(())
}

/// Response time histogram per server: seconds from sending the request to the response
/// head.
fn latency(enc: &mut DescriptorEncoder, servers: &[(&Pool, &Server)]) -> std::fmt::Result {
    let mut h = enc.encode_descriptor(
        "server_response_seconds",
        "Time from sending the request to the response head.",
        None,
        MetricType::Histogram,
    )?;
    for (p, s) in servers {
        let (sum, count, buckets) = s.latency.snapshot();
        let l = server_labels(p, s);
        h.encode_family(&l)?
            .encode_histogram::<Labels>(sum, count, &per_bucket(&buckets), None)?;
    }
    Ok(())
}

/// The pools' queues (label `pool`): length now, requests that timed out or were refused.
fn pools(enc: &mut DescriptorEncoder, pools: &[Arc<Pool>]) -> std::fmt::Result {
    let labels = |p: &Pool| vec![("pool", p.name.to_string())];
    family(
        enc,
        "pool_queue_length",
        "Requests waiting in the pool's queue.",
        MetricType::Gauge,
        pools
            .iter()
            .map(|p| (labels(p), gauge(p.queue.len() as i64)))
            .collect(),
    )?;
    family(
        enc,
        "pool_dns_stale",
        "1 while some server name of the pool is served from its last good answer (its lookups fail).",
        MetricType::Gauge,
        pools
            .iter()
            .map(|p| (labels(p), gauge(p.discovery.stale.load(Relaxed) as i64)))
            .collect(),
    )?;
    let counters: [Family<Pool>; 4] = [
        (
            "pool_dns_lookups",
            "Background lookups of the pool's server names.",
            |p| p.discovery.lookups.load(Relaxed),
        ),
        (
            "pool_dns_lookup_failures",
            "Lookups of the pool's server names that failed (the last good addresses stayed).",
            |p| p.discovery.failures.load(Relaxed),
        ),
        (
            "pool_queue_timeouts",
            "Requests that waited too long in the queue.",
            |p| p.queue.timed_out.load(Relaxed),
        ),
        (
            "pool_queue_refused",
            "Requests refused because the queue was full.",
            |p| p.queue.refused.load(Relaxed),
        ),
    ];
    for (name, help, read) in counters {
        family(
            enc,
            name,
            help,
            MetricType::Counter,
            pools
                .iter()
                .map(|p| (labels(p), counter(read(p))))
                .collect(),
        )?;
    }
    Ok(())
}

/// The limits per client: per route with a `rate_limit` (label `route`, its place in file
/// order from 1) the requests answered 429, the keys remembered and the requests of new keys
/// that went through the overflow bucket; connections refused by `max_connections_per_client`.
fn limits(
    enc: &mut DescriptorEncoder,
    rt: &crate::proxy::Runtime,
    shared: &Shared,
) -> std::fmt::Result {
    let limited: Vec<(Labels, &crate::limits::RateLimiter)> = rt
        .routes
        .iter()
        .enumerate()
        .filter_map(|(i, r)| Some((vec![("route", (i + 1).to_string())], &**r.limiter.as_ref()?)))
        .collect();
    let counters: [Family<crate::limits::RateLimiter>; 2] = [
        (
            "route_rate_limited",
            "Requests answered 429 by the route's rate_limit.",
            |l| l.limited.load(Relaxed),
        ),
        (
            "route_rate_limit_overflowed",
            "Requests of new keys measured in the shared overflow bucket (max_keys reached).",
            |l| l.overflowed(),
        ),
    ];
    for (name, help, read) in counters {
        let series = limited.iter().map(|(l, r)| (l.clone(), counter(read(r))));
        family(enc, name, help, MetricType::Counter, series.collect())?;
    }
    let keys = limited
        .iter()
        .map(|(l, r)| (l.clone(), gauge(r.keys() as i64)));
    family(
        enc,
        "route_rate_limit_keys",
        "Keys the route's rate_limit remembers now.",
        MetricType::Gauge,
        keys.collect(),
    )?;
    family(
        enc,
        "client_connections_refused",
        "Connections closed at accept: their client had max_connections_per_client open.",
        MetricType::Counter,
        vec![(vec![], counter(shared.live().clients.refused.load(Relaxed)))],
    )
}

/// `[cluster]`: whether Redis answers, its failed calls and outages; per route with a
/// fleet-wide `rate_limit`, the round trips and the decisions taken per instance instead.
fn cluster(
    enc: &mut DescriptorEncoder,
    rt: &crate::proxy::Runtime,
    c: &crate::cluster::Cluster,
) -> std::fmt::Result {
    family(
        enc,
        "cluster_redis_up",
        "Whether the fleet's Redis answered last time (1) or not (0).",
        MetricType::Gauge,
        vec![(vec![], gauge(i64::from(c.is_up())))],
    )?;
    let plain: [(&str, &str, u64); 5] = [
        (
            "cluster_redis_errors",
            "Redis calls that failed or passed [cluster] timeout.",
            c.errors.load(Relaxed),
        ),
        (
            "cluster_redis_outages",
            "Times Redis was found unreachable (at start, or after answering).",
            c.outages.load(Relaxed),
        ),
        (
            "cluster_purges_sent",
            "Purges published to the fleet.",
            c.purges_sent.load(Relaxed),
        ),
        (
            "cluster_purges_unsent",
            "Purges applied here only: Redis was unreachable or the queue full.",
            c.purges_unsent.load(Relaxed),
        ),
        (
            "cluster_purges_received",
            "Purges from other instances applied here.",
            c.purges_received.load(Relaxed),
        ),
    ];
    for (name, help, v) in plain {
        family(
            enc,
            name,
            help,
            MetricType::Counter,
            vec![(vec![], counter(v))],
        )?;
    }
    let fleet: Vec<(Labels, &crate::limits::cluster::ClusterLimit)> = rt
        .routes
        .iter()
        .enumerate()
        .filter_map(|(i, r)| {
            let c = r.limiter.as_ref()?.cluster.as_ref()?;
            Some((vec![("route", (i + 1).to_string())], c))
        })
        .collect();
    let counters: [Family<crate::limits::cluster::ClusterLimit>; 2] = [
        (
            "route_rate_limit_cluster_round_trips",
            "Round trips to Redis for the route's fleet-wide rate_limit.",
            |l| l.asked.load(Relaxed),
        ),
        (
            "route_rate_limit_cluster_fallbacks",
            "Decisions of a fleet-wide rate_limit taken per instance: Redis was unreachable.",
            |l| l.fallbacks.load(Relaxed),
        ),
    ];
    for (name, help, read) in counters {
        let series = fleet.iter().map(|(l, r)| (l.clone(), counter(read(r))));
        family(enc, name, help, MetricType::Counter, series.collect())?;
    }
    Ok(())
}

/// The cache's counters, as families without labels.
const CACHE_COUNTERS: &[Family<Stats>] = &[
    ("cache_hits", "Answers from the cache.", |c| c.hits),
    ("cache_misses", "Lookups that found nothing.", |c| c.misses),
    (
        "cache_stale",
        "Stale answers (stale-while-revalidate, stale-if-error).",
        |c| c.stale,
    ),
    (
        "cache_revalidations",
        "Conditional requests sent to refresh stale entries.",
        |c| c.revalidations,
    ),
    ("cache_stores", "Responses stored.", |c| c.stores),
    (
        "cache_evictions",
        "Entries evicted to stay within max_size.",
        |c| c.evictions,
    ),
    (
        "cache_coalesced",
        "Requests that waited for another's fetch.",
        |c| c.coalesced,
    ),
    ("cache_purged", "Entries removed by purges.", |c| c.purged),
];

/// The cache's occupancy, as gauges without labels.
const CACHE_GAUGES: &[Family<Stats>] = &[
    (
        "cache_bytes",
        "Bytes in use (keys, headers, bodies).",
        |c| c.bytes,
    ),
    ("cache_max_bytes", "The byte budget.", |c| c.max_size),
    ("cache_entries", "Entries stored.", |c| c.entries),
];

/// The cache's families: [`CACHE_COUNTERS`], then [`CACHE_GAUGES`].
fn cache(enc: &mut DescriptorEncoder, c: &Stats) -> std::fmt::Result {
    unlabelled_counters(enc, CACHE_COUNTERS, c)?;
    for (name, help, read) in CACHE_GAUGES {
        family(
            enc,
            name,
            help,
            MetricType::Gauge,
            vec![(vec![], gauge(read(c) as i64))],
        )?;
    }
    Ok(())
}

/// The shared cache's counters (`[cache] shared = true`), as families without labels.
const SHARED_COUNTERS: &[Family<crate::cache::shared::Counters>] = &[
    (
        "cache_shared_hits",
        "Answers from the fleet's Redis after an in-memory miss.",
        |c| c.hits.load(Relaxed),
    ),
    (
        "cache_shared_misses",
        "In-memory misses Redis had nothing usable for.",
        |c| c.misses.load(Relaxed),
    ),
    (
        "cache_shared_errors",
        "Shared-cache calls that failed or passed [cluster] timeout (the request went to the origin).",
        |c| c.errors.load(Relaxed),
    ),
    (
        "cache_shared_corrupt",
        "Records in Redis that did not decode (deleted).",
        |c| c.corrupt.load(Relaxed),
    ),
    (
        "cache_shared_stores",
        "Records written to Redis.",
        |c| c.stores.load(Relaxed),
    ),
    (
        "cache_shared_dropped",
        "Writes not made: the queue was full or Redis down.",
        |c| c.dropped.load(Relaxed),
    ),
    (
        "cache_shared_waits",
        "Misses that waited for another instance's fetch.",
        |c| c.waits.load(Relaxed),
    ),
    (
        "cache_shared_wait_timeouts",
        "Waits for another instance's fetch that ran out (lock_timeout).",
        |c| c.wait_timeouts.load(Relaxed),
    ),
];

/// The shared cache's families.
fn shared_cache(
    enc: &mut DescriptorEncoder,
    c: &crate::cache::shared::Counters,
) -> std::fmt::Result {
    unlabelled_counters(enc, SHARED_COUNTERS, c)
}

/// The encoder takes each bucket's own count and writes the running sums itself; the
/// latency snapshot is already cumulative, so it is taken apart here (else every bucket, `+Inf`
/// included, is summed twice and exceeds `_count`).
fn per_bucket(cumulative: &[(f64, u64)]) -> Vec<(f64, u64)> {
    let mut below = 0;
    cumulative
        .iter()
        .map(|&(le, n)| {
            let own = n.saturating_sub(below);
            below = below.max(n);
            (le, own)
        })
        .collect()
}

/// The two text formats a scraper may ask for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// Prometheus text 0.0.4: counters are typed under their `_total` name, no `# EOF`.
    Text,
    /// OpenMetrics 1.0: counter families without `_total`, ending with `# EOF`.
    OpenMetrics,
}

impl Format {
    pub fn content_type(self) -> &'static str {
        match self {
            Format::Text => "text/plain; version=0.0.4; charset=utf-8",
            Format::OpenMetrics => "application/openmetrics-text; version=1.0.0; charset=utf-8",
        }
    }

    /// OpenMetrics when the `Accept` field prefers it to plain text (Prometheus asks for it
    /// first), text 0.0.4 otherwise (curl, older scrapers).
    pub fn negotiate(accept: Option<&str>) -> Format {
        let (mut om, mut text) = (0.0f32, 0.0f32);
        for item in accept.unwrap_or("").split(',') {
            let mut parts = item.split(';');
            let kind = parts.next().unwrap_or("").trim().to_ascii_lowercase();
            let q = parts
                .filter_map(|p| p.trim().strip_prefix("q="))
                .find_map(|q| q.trim().parse::<f32>().ok())
                .unwrap_or(1.0);
            match kind.as_str() {
                "application/openmetrics-text" => om = om.max(q),
                "text/plain" | "text/*" | "*/*" => text = text.max(q),
                _ => {}
            }
        }
        if om > 0.0 && om >= text {
            Format::OpenMetrics
        } else {
            Format::Text
        }
    }
}

pub fn prometheus(shared: &Arc<Shared>, format: Format) -> String {
    let mut registry = prometheus_client::registry::Registry::default();
    let started = crate::cache::policy::unix_now() - shared.traffic().uptime_secs();
    registry.register_collector(Box::new(super::process::Process {
        started_unix: started as f64,
    }));
    registry
        .sub_registry_with_prefix("langur")
        .register_collector(Box::new(Collector(shared.clone())));
    let mut out = String::new();
    if prometheus_client::encoding::text::encode(&mut out, &registry).is_err() {
        out.clear();
    }
    match format {
        Format::OpenMetrics => out,
        Format::Text => openmetrics_to_text(&out),
    }
}

/// Rewrites the encoder's OpenMetrics into text 0.0.4: a counter family `x` has its samples
/// named `x_total`, which 0.0.4 types under that name; `# UNIT` and `# EOF` do not exist there.
fn openmetrics_to_text(om: &str) -> String {
    let counters: std::collections::HashSet<&str> = om
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|rest| rest.strip_suffix(" counter"))
        .collect();
    let mut out = String::with_capacity(om.len() + 16 * counters.len());
    for line in om.lines() {
        if line == "# EOF" || line.starts_with("# UNIT ") {
            continue;
        }
        let meta = ["# HELP ", "# TYPE "]
            .into_iter()
            .find_map(|p| line.strip_prefix(p).map(|rest| (p, rest)));
        match meta {
            Some((p, rest)) => {
                let (name, tail) = rest.split_once(' ').unwrap_or((rest, ""));
                let tail = if p == "# TYPE " && tail == "unknown" {
                    "untyped"
                } else {
                    tail
                };
                let suffix = if counters.contains(name) {
                    "_total"
                } else {
                    ""
                };
                out.push_str(&format!("{p}{name}{suffix} {tail}"));
            }
            None => out.push_str(line),
        }
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cumulative_buckets_are_taken_apart() {
        let c = [(0.1, 2), (1.0, 5), (f64::INFINITY, 6)];
        assert_eq!(per_bucket(&c), vec![(0.1, 2), (1.0, 3), (f64::INFINITY, 1)]);
    }

    #[test]
    fn negotiation() {
        assert_eq!(Format::negotiate(None), Format::Text);
        assert_eq!(Format::negotiate(Some("*/*")), Format::Text);
        assert_eq!(Format::negotiate(Some("text/plain")), Format::Text);
        let prometheus = "application/openmetrics-text;version=1.0.0;q=0.5,application/openmetrics-text;version=0.0.1;q=0.4,text/plain;version=0.0.4;q=0.3,*/*;q=0.2";
        assert_eq!(Format::negotiate(Some(prometheus)), Format::OpenMetrics);
        assert_eq!(
            Format::negotiate(Some("application/openmetrics-text; q=0.1, text/plain")),
            Format::Text
        );
        assert_eq!(
            Format::negotiate(Some("application/openmetrics-text; q=0")),
            Format::Text
        );
    }

    #[test]
    fn counters_are_typed_under_their_sample_name_in_text() {
        let om = "# HELP a Things.\n# TYPE a counter\na_total{x=\"1\"} 3\n# HELP g G.\n# TYPE g gauge\ng 1\n# EOF\n";
        assert_eq!(
            openmetrics_to_text(om),
            "# HELP a_total Things.\n# TYPE a_total counter\na_total{x=\"1\"} 3\n# HELP g G.\n# TYPE g gauge\ng 1\n"
        );
    }
}
