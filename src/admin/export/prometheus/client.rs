//! The client side's families: per listener (label `listener`, its address as bound) the
//! connections open, accepted and refused (by `reason`), bytes in and out, responses by
//! status class and the requests refused or malformed; per route (label `route`, its place in
//! file order from 1) responses by status class, the requests its `deny`/`allow` refused, and
//! the request duration as its clients see it.

use super::{counter, family, gauge, per_bucket, Family, Labels};
use crate::session::counters::{Listener, Totals, REFUSALS};
use prometheus_client::encoding::DescriptorEncoder;
use prometheus_client::metrics::MetricType;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

const CLASSES: [&str; 6] = ["1xx", "2xx", "3xx", "4xx", "5xx", "other"];

/// The listeners' families, from their totals read once.
pub(super) fn listeners(enc: &mut DescriptorEncoder, all: &[Arc<Listener>]) -> std::fmt::Result {
    let read: Vec<(Labels, Totals)> = all
        .iter()
        .map(|l| (vec![("listener", l.name.to_string())], l.totals()))
        .collect();
    family(
        enc,
        "listener_open_connections",
        "Client connections open now.",
        MetricType::Gauge,
        read.iter()
            .map(|(l, t)| (l.clone(), gauge(t.open as i64)))
            .collect(),
    )?;
    let plain: [Family<Totals>; 4] = [
        (
            "listener_connections_accepted",
            "Client connections accepted (refused ones included).",
            |t| t.accepted,
        ),
        (
            "listener_bytes_in",
            "Bytes received from clients (after TLS).",
            |t| t.bytes_in,
        ),
        (
            "listener_bytes_out",
            "Bytes sent to clients (before TLS).",
            |t| t.bytes_out,
        ),
        (
            "listener_request_errors",
            "Requests answered by langur as malformed, too large or too slow (HAProxy's ereq).",
            |t| t.bad_requests,
        ),
    ];
    for (name, help, v) in plain {
        let series = read.iter().map(|(l, t)| (l.clone(), counter(v(t))));
        family(enc, name, help, MetricType::Counter, series.collect())?;
    }
    let mut refused = Vec::new();
    let mut denied = Vec::new();
    let mut responses = Vec::new();
    for (l, t) in &read {
        for (why, n) in REFUSALS.iter().zip(t.refused) {
            refused.push((with(l, "reason", why), counter(n)));
        }
        denied.push((with(l, "reason", "access"), counter(t.denied)));
        denied.push((with(l, "reason", "rate_limit"), counter(t.rate_limited)));
        for (class, n) in CLASSES.iter().zip(t.classes) {
            responses.push((with(l, "class", class), counter(n)));
        }
    }
    family(
        enc,
        "listener_connections_refused",
        "Client connections closed before any HTTP, by reason (limit: max_connections_per_client; proxy_protocol: no good PROXY header; tls_handshake: a failed TLS handshake).",
        MetricType::Counter,
        refused,
    )?;
    family(
        enc,
        "listener_requests_denied",
        "Requests refused by a route's rule, by reason (access: deny/allow; rate_limit).",
        MetricType::Counter,
        denied,
    )?;
    family(
        enc,
        "listener_responses",
        "Responses sent to clients, by status class.",
        MetricType::Counter,
        responses,
    )
}

fn with(labels: &Labels, name: &'static str, value: &str) -> Labels {
    let mut l = labels.clone();
    l.push((name, value.to_string()));
    l
}

/// The routes' families.
pub(super) fn routes(enc: &mut DescriptorEncoder, rt: &crate::proxy::Runtime) -> std::fmt::Result {
    let labels = |i: usize| vec![("route", (i + 1).to_string())];
    let mut responses = Vec::new();
    for (i, r) in rt.routes.iter().enumerate() {
        for (class, n) in CLASSES.iter().zip(r.stats.classes()) {
            responses.push((with(&labels(i), "class", class), counter(n)));
        }
    }
    family(
        enc,
        "route_responses",
        "Responses to the route's requests, by status class.",
        MetricType::Counter,
        responses,
    )?;
    family(
        enc,
        "route_denied",
        "Requests refused by the route's deny/allow (403).",
        MetricType::Counter,
        rt.routes
            .iter()
            .enumerate()
            .map(|(i, r)| (labels(i), counter(r.stats.denied.load(Relaxed))))
            .collect(),
    )?;
    let mut h = enc.encode_descriptor(
        "route_request_duration_seconds",
        "Time from the request head to the end of the response body, as the client sees it.",
        None,
        MetricType::Histogram,
    )?;
    for (i, r) in rt.routes.iter().enumerate() {
        let (sum, count, buckets) = r.stats.duration.snapshot();
        h.encode_family(&labels(i))?.encode_histogram::<Labels>(
            sum,
            count,
            &per_bucket(&buckets),
            None,
        )?;
    }
    Ok(())
}
