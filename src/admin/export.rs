//! Stats in three shapes: JSON for the dashboard and scripts (here), CSV with HAProxy's
//! `show stat` column names (`csv`), and Prometheus text (`prometheus`).

mod csv;
mod process;
mod prometheus;

pub use self::csv::csv;
pub use self::prometheus::{prometheus, Format};

use super::Instance;
use crate::backend::health::CheckResult;
use crate::backend::{Pool, Server};
use crate::clock;
use serde_json::{json, Value};
use std::sync::atomic::Ordering::Relaxed;

/// The instance, as these exports take it.
type Shared = dyn Instance;

/// The result of the server's last check; `None` for a server without checks.
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

/// Whole seconds since the server's state last changed.
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
        "address": address(s),
        "operator": s.operator().as_str(),
        "health": s.health().as_str(),
        "state": s.state_word(p.ha),
        "backup": s.backup,
        "weight": s.weight.load(Relaxed),
        "in_flight": s.in_flight.load(Relaxed),
        "max_in_flight": s.max_in_flight.load(Relaxed),
        "maxconn": s.maxconn.load(Relaxed),
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

/// A server's address as shown: its Unix-domain socket as written, else the address.
pub(crate) fn address(s: &Server) -> String {
    match s.unix {
        Some(_) => s.address.to_string(),
        None => s.addr.to_string(),
    }
}

pub fn stats_json(shared: &Shared) -> Value {
    let rt = shared.live().runtime.load();
    let pools: Vec<Value> = rt
        .pools
        .iter()
        .map(|p| {
            json!({
                "name": &*p.name,
                "balance": p.balance.name(),
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
        "cache_shared": rt.cache.shared.as_ref().map(|s| s.counters.json()),
        "caching": rt.routes.iter().any(|r| r.cache),
        "cluster": rt.cluster.is_some(),
        "latency": latency_json(&rt),
        "rate_limits": rate_limits_json(&rt),
        "listeners": listeners_json(shared),
        "routes": routes_json(&rt),
        "clients": {
            "connected": shared.live().clients.clients(),
            "connections_refused": shared.live().clients.refused.load(Relaxed),
        },
        "proxy_protocol_refused": &shared.traffic().proxy_refused,
        "tls_handshake_failures": &shared.traffic().tls_failures,
    })
}

/// The servers' response-head times added up: cumulative counts per bucket (`le` in
/// seconds, the last `null` for +Inf), for the dashboard's p50/p95/p99 between two polls.
fn latency_json(rt: &crate::proxy::Runtime) -> Value {
    let mut sums: Vec<(f64, u64)> = Vec::new();
    for s in rt.pools.iter().flat_map(|p| p.servers.iter()) {
        let (_, _, buckets) = s.latency.snapshot();
        if sums.is_empty() {
            sums = buckets.iter().map(|(le, _)| (*le, 0)).collect();
        }
        for (sum, (_, n)) in sums.iter_mut().zip(&buckets) {
            sum.1 += n;
        }
    }
    let le: Vec<Option<f64>> = sums
        .iter()
        .map(|(le, _)| le.is_finite().then_some(*le))
        .collect();
    let counts: Vec<u64> = sums.iter().map(|(_, n)| *n).collect();
    json!({ "le": le, "cumulative": counts })
}

/// The listeners' counters (`name`: the address as bound): connections open, accepted and
/// refused by reason, bytes, responses by class, requests refused or malformed, and the last
/// second's rates.
fn listeners_json(shared: &Shared) -> Value {
    use crate::session::counters::REFUSALS;
    let all = shared.traffic().listeners.all();
    let rows = all.iter().map(|l| {
        let (t, r) = (l.totals(), l.rates());
        let refused: serde_json::Map<String, Value> = REFUSALS
            .iter()
            .zip(t.refused)
            .map(|(why, n)| (why.to_string(), n.into()))
            .collect();
        json!({
            "name": &*l.name,
            "tls": l.tls,
            "open": t.open,
            "accepted": t.accepted,
            "refused": refused,
            "bytes_in": t.bytes_in,
            "bytes_out": t.bytes_out,
            "requests": t.requests(),
            "responses": classes_json(&t.classes),
            "request_errors": t.bad_requests,
            "denied": t.denied,
            "rate_limited": t.rate_limited,
            "rate": {
                "connections": r.conn, "requests": r.req,
                "bytes_in": r.bytes_in, "bytes_out": r.bytes_out,
            },
        })
    });
    Value::Array(rows.collect())
}

fn classes_json(c: &[u64; 6]) -> Value {
    json!({ "1xx": c[0], "2xx": c[1], "3xx": c[2], "4xx": c[3], "5xx": c[4], "other": c[5] })
}

/// Every route (`route`: its place in file order, from 1; `line` in the file; `pool`, or
/// `null` for a file route): responses by class, requests refused by `deny`/`allow`, and the
/// request duration as cumulative counts per bucket (`le` in seconds, `null` for +Inf), for
/// the dashboard's rates and p95 between two polls.
fn routes_json(rt: &crate::proxy::Runtime) -> Value {
    let rows = rt.routes.iter().enumerate().map(|(i, r)| {
        let name = |p: usize| rt.pools.get(p).map(|p| p.name.to_string());
        let pool = match (&r.split, r.pool) {
            (Some(s), _) => Some(s.pools.iter().filter_map(|p| name(*p)).collect::<Vec<_>>().join(", ")),
            (None, Some(p)) => name(p),
            (None, None) => None,
        };
        let c = r.stats.classes();
        let (_, _, buckets) = r.stats.duration.snapshot();
        json!({
            "route": i + 1,
            "line": r.line,
            "pool": pool,
            "requests": c.iter().sum::<u64>(),
            "responses": classes_json(&c),
            "denied": r.stats.denied.load(Relaxed),
            "rate_limited": r.limiter.as_ref().map(|l| l.limited.load(Relaxed)),
            "duration": {
                "le": buckets.iter().map(|(le, _)| le.is_finite().then_some(*le)).collect::<Vec<_>>(),
                "cumulative": buckets.iter().map(|(_, n)| *n).collect::<Vec<_>>(),
            },
        })
    });
    Value::Array(rows.collect())
}

/// The routes with a `rate_limit` (`route`: its place in file order, from 1): the limit, the
/// requests answered 429, the keys remembered and the requests of new keys that went through
/// the shared overflow bucket (the store was full).
fn rate_limits_json(rt: &crate::proxy::Runtime) -> Value {
    let limited = rt.routes.iter().enumerate().filter_map(|(i, r)| {
        let l = r.limiter.as_ref()?;
        let c = l.config();
        Some(json!({
            "route": i + 1,
            "key": c.key.text(),
            "rate": c.rate_text(),
            "burst": c.burst,
            "max_keys": c.max_keys,
            "limited": l.limited.load(Relaxed),
            "keys": l.keys(),
            "overflowed": l.overflowed(),
            "scope": if l.cluster.is_some() { "cluster" } else { "instance" },
            "cluster_round_trips": l.cluster.as_ref().map(|c| c.asked.load(Relaxed)),
            "cluster_fallbacks": l.cluster.as_ref().map(|c| c.fallbacks.load(Relaxed)),
        }))
    });
    Value::Array(limited.collect())
}

/// `GET /api/certificates`: every certificate the TLS listeners serve, with `not_after` and
/// `last_attempt` in seconds since the Unix epoch and `expires_in` in seconds (negative once
/// expired).
pub fn certificates_json(shared: &Shared) -> Value {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    let certs: Vec<Value> = shared
        .certificates()
        .into_iter()
        .map(|c| {
            json!({
                "names": c.names,
                "issuer": c.issuer,
                "not_after": c.not_after,
                "expires_in": c.not_after.map(|t| t - now),
                "source": c.source,
                "last_attempt": c.last_attempt,
                "last_error": c.last_error,
            })
        })
        .collect();
    Value::Array(certs)
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

/// HAProxy's status words.
fn haproxy_status(p: &Pool, s: &Server) -> &'static str {
    match s.state_word(p.ha) {
        "alive" | "overloaded" => "UP",
        "drain" => "DRAIN",
        "maint" => "MAINT",
        _ => "DOWN",
    }
}
