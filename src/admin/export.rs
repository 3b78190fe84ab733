//! Stats in three shapes: JSON for the dashboard and scripts, CSV with HAProxy's `show stat`
//! column names, and Prometheus text (encoded by `prometheus-client` at scrape time from the
//! live counters, so the request path keeps a single set of atomics).

use super::Instance;
use crate::backend::health::CheckResult;
use crate::backend::{Pool, Server};
use crate::clock;

/// The instance, as these exports take it.
type Shared = dyn Instance;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;
use serde_json::{json, Value};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

fn last_check(s: &Server) -> Option<CheckResult> {
    s.check.as_ref()?;
    Some(
        s.machine
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .last
            .clone(),
    )
}

fn since_change_secs(s: &Server) -> u64 {
    clock::now_ms().saturating_sub(s.last_change_ms.load(Relaxed)) / 1000
}

fn server_json(p: &Pool, s: &Server) -> Value {
    let check = last_check(s).map(|c| {
        json!({
            "status": c.status.as_str(),
            "code": c.code,
            "duration_ms": c.duration.as_secs_f64() * 1000.0,
            "description": if c.detail.is_empty() { c.status.description().to_string() } else { c.detail.clone() },
        })
    });
    let r = &s.responses;
    json!({
        "name": &*s.name,
        "address": s.addr.to_string(),
        "operator": s.operator().as_str(),
        "health": s.health().as_str(),
        "state": s.state_word(p.ha),
        "backup": s.backup,
        "weight": s.weight.load(Relaxed),
        "in_flight": s.in_flight.load(Relaxed),
        "max_in_flight": s.max_in_flight.load(Relaxed),
        "maxconn": s.maxconn,
        "requests": s.requests.load(Relaxed),
        "responses": {
            "1xx": r[0].load(Relaxed), "2xx": r[1].load(Relaxed), "3xx": r[2].load(Relaxed),
            "4xx": r[3].load(Relaxed), "5xx": r[4].load(Relaxed),
        },
        "errors": s.errors.load(Relaxed),
        "connect_failures": s.connect_failures_total.load(Relaxed),
        "redispatched": s.redispatched.load(Relaxed),
        "check_failures": s.check_failures.load(Relaxed),
        "downs": s.downs.load(Relaxed),
        "last_change_secs": since_change_secs(s),
        "check": check,
    })
}

pub fn stats_json(shared: &Shared) -> Value {
    let rt = shared.live().runtime.load();
    let pools: Vec<Value> = rt
        .pools
        .iter()
        .map(|p| {
            json!({
                "name": &*p.name,
                "balance": format!("{:?}", p.balance),
                "queue": {
                    "length": p.queue.len(),
                    "max_seen": p.queue.max_seen.load(Relaxed),
                    "limit": p.queue.config.max,
                    "refused": p.queue.refused.load(Relaxed),
                    "timed_out": p.queue.timed_out.load(Relaxed),
                },
                "servers": p.servers.iter().map(|s| server_json(p, s)).collect::<Vec<_>>(),
            })
        })
        .collect();
    let t = shared.traffic().totals();
    let last = shared.traffic().last().unwrap_or_default();
    json!({
        "instance": &*shared.name(),
        "uptime_secs": shared.traffic().uptime_secs(),
        "requests": t.requests,
        "status": t,
        "rate": last,
        "pools": pools,
        "cache": rt.cache.stats(),
    })
}

pub fn events_json(shared: &Shared) -> Value {
    let events: Vec<Value> = shared
        .events()
        .recent()
        .into_iter()
        .map(|e| {
            json!({
                "at": e.at_unix,
                "pool": e.pool,
                "server": e.server,
                "from": e.from.as_str(),
                "to": e.to.as_str(),
                "check_status": e.status.as_str(),
                "check_code": e.code,
                "reason": e.reason,
            })
        })
        .collect();
    Value::Array(events)
}

/// HAProxy's `show stat` columns, in its order, as far as `algo`; langur fills the ones it has
/// and leaves the others empty, so tools that read HAProxy's CSV by name or position work.
pub const CSV_COLUMNS: &[&str] = &[
    "pxname",
    "svname",
    "qcur",
    "qmax",
    "scur",
    "smax",
    "slim",
    "stot",
    "bin",
    "bout",
    "dreq",
    "dresp",
    "ereq",
    "econ",
    "eresp",
    "wretr",
    "wredis",
    "status",
    "weight",
    "act",
    "bck",
    "chkfail",
    "chkdown",
    "lastchg",
    "downtime",
    "qlimit",
    "pid",
    "iid",
    "sid",
    "throttle",
    "lbtot",
    "tracked",
    "type",
    "rate",
    "rate_lim",
    "rate_max",
    "check_status",
    "check_code",
    "check_duration",
    "hrsp_1xx",
    "hrsp_2xx",
    "hrsp_3xx",
    "hrsp_4xx",
    "hrsp_5xx",
    "hrsp_other",
    "hanafail",
    "req_rate",
    "req_rate_max",
    "req_tot",
    "cli_abrt",
    "srv_abrt",
    "comp_in",
    "comp_out",
    "comp_byp",
    "comp_rsp",
    "lastsess",
    "last_chk",
    "last_agt",
    "qtime",
    "ctime",
    "rtime",
    "ttime",
    "agent_status",
    "agent_code",
    "agent_duration",
    "check_desc",
    "agent_desc",
    "check_rise",
    "check_fall",
    "check_health",
    "agent_rise",
    "agent_fall",
    "agent_health",
    "addr",
    "cookie",
    "mode",
    "algo",
];

/// HAProxy's status words.
fn haproxy_status(p: &Pool, s: &Server) -> &'static str {
    match s.state_word(p.ha) {
        "alive" | "overloaded" => "UP",
        "drain" => "DRAIN",
        "maint" => "MAINT",
        _ => "DOWN",
    }
}

fn csv_field(v: &str) -> String {
    if v.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", v.replace('"', "\"\""))
    } else {
        v.to_string()
    }
}

pub fn csv(shared: &Shared) -> String {
    let rt = shared.live().runtime.load();
    let mut out = format!("# {}\n", CSV_COLUMNS.join(","));
    let col = |name: &str| {
        CSV_COLUMNS
            .iter()
            .position(|c| *c == name)
            .expect("known column")
    };
    for (pid, p) in rt.pools.iter().enumerate() {
        let mut backend = vec![String::new(); CSV_COLUMNS.len()];
        let set = |row: &mut Vec<String>, name: &str, v: String| row[col(name)] = v;
        let mut totals = [0u64; 5];
        let (mut scur, mut stot, mut econ, mut wredis, mut act, mut bck) = (0, 0, 0, 0, 0, 0);
        let mut up = 0;
        for (sid, s) in p.servers.iter().enumerate() {
            let mut row = vec![String::new(); CSV_COLUMNS.len()];
            let r: Vec<u64> = s.responses.iter().map(|c| c.load(Relaxed)).collect();
            for (i, v) in r.iter().enumerate() {
                totals[i] += v;
            }
            let status = haproxy_status(p, s);
            up += usize::from(status == "UP");
            let inflight = s.in_flight.load(Relaxed);
            let reqs = s.requests.load(Relaxed);
            scur += inflight;
            stot += reqs;
            econ += s.connect_failures_total.load(Relaxed);
            wredis += s.redispatched.load(Relaxed);
            act += usize::from(!s.backup);
            bck += usize::from(s.backup);
            set(&mut row, "pxname", csv_field(&p.name));
            set(&mut row, "svname", csv_field(&s.name));
            set(&mut row, "qcur", "0".into());
            set(&mut row, "scur", inflight.to_string());
            set(&mut row, "smax", s.max_in_flight.load(Relaxed).to_string());
            if s.maxconn > 0 {
                set(&mut row, "slim", s.maxconn.to_string());
            }
            set(&mut row, "stot", reqs.to_string());
            set(
                &mut row,
                "econ",
                s.connect_failures_total.load(Relaxed).to_string(),
            );
            set(&mut row, "eresp", s.errors.load(Relaxed).to_string());
            set(&mut row, "wredis", s.redispatched.load(Relaxed).to_string());
            set(&mut row, "status", status.into());
            set(&mut row, "weight", s.weight.load(Relaxed).to_string());
            set(&mut row, "act", u8::from(!s.backup).to_string());
            set(&mut row, "bck", u8::from(s.backup).to_string());
            set(
                &mut row,
                "chkfail",
                s.check_failures.load(Relaxed).to_string(),
            );
            set(&mut row, "chkdown", s.downs.load(Relaxed).to_string());
            set(&mut row, "lastchg", since_change_secs(s).to_string());
            set(&mut row, "pid", "1".into());
            set(&mut row, "iid", (pid + 1).to_string());
            set(&mut row, "sid", (sid + 1).to_string());
            set(&mut row, "lbtot", reqs.to_string());
            set(&mut row, "type", "2".into());
            if let Some(c) = last_check(s) {
                set(&mut row, "check_status", c.status.as_str().into());
                if let Some(code) = c.code {
                    set(&mut row, "check_code", code.to_string());
                }
                set(
                    &mut row,
                    "check_duration",
                    c.duration.as_millis().to_string(),
                );
                let desc = if c.detail.is_empty() {
                    c.status.description().to_string()
                } else {
                    c.detail
                };
                set(&mut row, "check_desc", csv_field(&desc));
            }
            for (i, name) in ["hrsp_1xx", "hrsp_2xx", "hrsp_3xx", "hrsp_4xx", "hrsp_5xx"]
                .iter()
                .enumerate()
            {
                set(&mut row, name, r[i].to_string());
            }
            set(&mut row, "hrsp_other", "0".into());
            set(&mut row, "req_tot", reqs.to_string());
            set(&mut row, "addr", s.addr.to_string());
            set(&mut row, "mode", "http".into());
            out.push_str(&row.join(","));
            out.push('\n');
        }
        set(&mut backend, "pxname", csv_field(&p.name));
        set(&mut backend, "svname", "BACKEND".into());
        set(&mut backend, "qcur", p.queue.len().to_string());
        set(
            &mut backend,
            "qmax",
            p.queue.max_seen.load(Relaxed).to_string(),
        );
        set(&mut backend, "scur", scur.to_string());
        set(&mut backend, "stot", stot.to_string());
        set(&mut backend, "econ", econ.to_string());
        set(&mut backend, "wredis", wredis.to_string());
        set(
            &mut backend,
            "status",
            if up > 0 { "UP" } else { "DOWN" }.into(),
        );
        set(&mut backend, "act", act.to_string());
        set(&mut backend, "bck", bck.to_string());
        set(&mut backend, "qlimit", p.queue.config.max.to_string());
        set(&mut backend, "pid", "1".into());
        set(&mut backend, "iid", (pid + 1).to_string());
        set(&mut backend, "sid", "0".into());
        set(&mut backend, "lbtot", stot.to_string());
        set(&mut backend, "type", "1".into());
        for (i, name) in ["hrsp_1xx", "hrsp_2xx", "hrsp_3xx", "hrsp_4xx", "hrsp_5xx"]
            .iter()
            .enumerate()
        {
            set(&mut backend, name, totals[i].to_string());
        }
        set(&mut backend, "req_tot", stot.to_string());
        set(&mut backend, "mode", "http".into());
        set(
            &mut backend,
            "algo",
            csv_field(&format!("{:?}", p.balance).to_lowercase()),
        );
        out.push_str(&backend.join(","));
        out.push('\n');
    }
    out
}

/// Everything `/metrics` shows, read from the live counters on each scrape.
#[derive(Debug)]
struct Collector(Arc<Shared>);

type Labels = Vec<(&'static str, String)>;

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
            &mut enc,
            "responses",
            "Responses sent to clients, by status class.",
            MetricType::Counter,
            classes
                .iter()
                .map(|(c, v)| (vec![("class", c.to_string())], counter(*v)))
                .collect(),
        )?;
        family(
            &mut enc,
            "uptime_seconds",
            "Seconds since start.",
            MetricType::Gauge,
            vec![(vec![], gauge(shared.traffic().uptime_secs() as i64))],
        )?;

        let mut per_server: Vec<(&Arc<Pool>, &Arc<Server>)> = Vec::new();
        for p in rt.pools.iter() {
            for s in p.servers.iter() {
                per_server.push((p, s));
            }
        }
        let labels = |p: &Pool, s: &Server| -> Labels {
            vec![("pool", p.name.to_string()), ("server", s.name.to_string())]
        };
        let ctr = |f: &dyn Fn(&Server) -> u64| -> Vec<(Labels, ConstCounter<u64>)> {
            per_server
                .iter()
                .map(|(p, s)| (labels(p, s), counter(f(s))))
                .collect()
        };
        let gge = |f: &dyn Fn(&Pool, &Server) -> i64| -> Vec<(Labels, ConstGauge<i64>)> {
            per_server
                .iter()
                .map(|(p, s)| (labels(p, s), gauge(f(p, s))))
                .collect()
        };
        family(
            &mut enc,
            "server_requests",
            "Requests sent to the server.",
            MetricType::Counter,
            ctr(&|s| s.requests.load(Relaxed)),
        )?;
        let mut by_class = Vec::new();
        for (p, s) in &per_server {
            for (i, c) in ["1xx", "2xx", "3xx", "4xx", "5xx"].iter().enumerate() {
                let mut l = labels(p, s);
                l.push(("class", c.to_string()));
                by_class.push((l, counter(s.responses[i].load(Relaxed))));
            }
        }
        family(
            &mut enc,
            "server_responses",
            "Server responses by status class.",
            MetricType::Counter,
            by_class,
        )?;
        family(
            &mut enc,
            "server_errors",
            "Failed exchanges (connect failures, broken or late responses).",
            MetricType::Counter,
            ctr(&|s| s.errors.load(Relaxed)),
        )?;
        family(
            &mut enc,
            "server_redispatched",
            "Requests that reached the server after failing on another.",
            MetricType::Counter,
            ctr(&|s| s.redispatched.load(Relaxed)),
        )?;
        family(
            &mut enc,
            "server_check_failures",
            "Failed health checks.",
            MetricType::Counter,
            ctr(&|s| s.check_failures.load(Relaxed)),
        )?;
        family(
            &mut enc,
            "server_in_flight",
            "Requests in flight.",
            MetricType::Gauge,
            gge(&|_, s| s.in_flight.load(Relaxed) as i64),
        )?;
        family(
            &mut enc,
            "server_weight",
            "Balancing weight.",
            MetricType::Gauge,
            gge(&|_, s| i64::from(s.weight.load(Relaxed))),
        )?;
        family(
            &mut enc,
            "server_up",
            "1 when the server takes new requests.",
            MetricType::Gauge,
            gge(&|p, s| i64::from(haproxy_status(p, s) == "UP")),
        )?;

        // Response time histogram per server.
        let mut h = enc.encode_descriptor(
            "server_response_seconds",
            "Time from sending the request to the response head.",
            None,
            MetricType::Histogram,
        )?;
        for (p, s) in &per_server {
            let (sum, count, buckets) = s.latency.snapshot();
            let l = labels(p, s);
            h.encode_family(&l)?.encode_histogram::<Labels>(
                sum,
                count,
                &per_bucket(&buckets),
                None,
            )?;
        }

        let pools = |f: &dyn Fn(&Pool) -> i64| -> Vec<(Labels, ConstGauge<i64>)> {
            rt.pools
                .iter()
                .map(|p| (vec![("pool", p.name.to_string())], gauge(f(p))))
                .collect()
        };
        family(
            &mut enc,
            "pool_queue_length",
            "Requests waiting in the pool's queue.",
            MetricType::Gauge,
            pools(&|p| p.queue.len() as i64),
        )?;
        let pc = |f: &dyn Fn(&Pool) -> u64| -> Vec<(Labels, ConstCounter<u64>)> {
            rt.pools
                .iter()
                .map(|p| (vec![("pool", p.name.to_string())], counter(f(p))))
                .collect()
        };
        family(
            &mut enc,
            "pool_queue_timeouts",
            "Requests that waited too long in the queue.",
            MetricType::Counter,
            pc(&|p| p.queue.timed_out.load(Relaxed)),
        )?;
        family(
            &mut enc,
            "pool_queue_refused",
            "Requests refused because the queue was full.",
            MetricType::Counter,
            pc(&|p| p.queue.refused.load(Relaxed)),
        )?;

        let c = rt.cache.stats();
        for (name, help, v) in [
            ("cache_hits", "Answers from the cache.", c.hits),
            ("cache_misses", "Lookups that found nothing.", c.misses),
            (
                "cache_stale",
                "Stale answers (stale-while-revalidate, stale-if-error).",
                c.stale,
            ),
            (
                "cache_revalidations",
                "Conditional requests sent to refresh stale entries.",
                c.revalidations,
            ),
            ("cache_stores", "Responses stored.", c.stores),
            (
                "cache_evictions",
                "Entries evicted to stay within max_size.",
                c.evictions,
            ),
            (
                "cache_coalesced",
                "Requests that waited for another's fetch.",
                c.coalesced,
            ),
            ("cache_purged", "Entries removed by purges.", c.purged),
        ] {
            family(
                &mut enc,
                name,
                help,
                MetricType::Counter,
                vec![(vec![], counter(v))],
            )?;
        }
        family(
            &mut enc,
            "cache_bytes",
            "Bytes in use (keys, headers, bodies).",
            MetricType::Gauge,
            vec![(vec![], gauge(c.bytes as i64))],
        )?;
        family(
            &mut enc,
            "cache_max_bytes",
            "The byte budget.",
            MetricType::Gauge,
            vec![(vec![], gauge(c.max_size as i64))],
        )?;
        family(
            &mut enc,
            "cache_entries",
            "Entries stored.",
            MetricType::Gauge,
            vec![(vec![], gauge(c.entries as i64))],
        )?;
        Ok(())
    }
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
    let mut registry = prometheus_client::registry::Registry::with_prefix("langur");
    registry.register_collector(Box::new(Collector(shared.clone())));
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
