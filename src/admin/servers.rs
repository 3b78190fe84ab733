//! A pool's servers changed through the admin API, without a reload: `POST
//! /api/pools/{pool}/servers` adds one, `DELETE /api/pools/{pool}/servers/{name}` drains it
//! and then removes it, `PATCH` the same path sets its weight or `maxconn`. A server is named
//! by its name (the address as written when it has none). A list change is applied atomically
//! (the pool is swapped whole) by [`Instance::change_servers`]; errors are JSON
//! (`{"error": ...}`): 400 for a bad body, 404 for an unknown pool or server, 409 for a
//! conflict.

use super::{error, json, Instance, Resp};
use crate::backend::dns::Found;
use crate::backend::{Operator, Pool, Server};
use crate::config::ServerConfig;
use http::StatusCode;
use serde_json::{json as j, Map, Value};
use std::net::SocketAddr;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Weak};
use std::time::Duration;

/// The most servers a pool may have through `POST` (each is a health check, a row in the
/// stats, and points on a hashing pool's ring).
pub const MAX_POOL_SERVERS: usize = 4096;

/// Why a body is refused (400), as the `error` of the answer.
type Bad = String;

/// The JSON object of a request body; 400 when it is something else.
fn object(body: &[u8]) -> Result<Map<String, Value>, Bad> {
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(m)) => Ok(m),
        _ => Err("the body must be a JSON object".into()),
    }
}

/// An integer field in `lo..=hi`; `Ok(None)` when absent, 400 when out of range or not one.
fn int(m: &Map<String, Value>, key: &str, lo: u64, hi: u64) -> Result<Option<u64>, Bad> {
    match m.get(key) {
        None => Ok(None),
        Some(v) => match v.as_u64().filter(|n| (lo..=hi).contains(n)) {
            Some(n) => Ok(Some(n)),
            None => Err(format!("`{key}` must be an integer from {lo} to {hi}")),
        },
    }
}

/// A boolean field; `Ok(None)` when absent, 400 when not a boolean.
fn boolean(m: &Map<String, Value>, key: &str) -> Result<Option<bool>, Bad> {
    match m.get(key) {
        None => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(_) => Err(format!("`{key}` must be true or false")),
    }
}

/// 400 naming a key the endpoint does not take.
fn only(m: &Map<String, Value>, keys: &[&str]) -> Result<(), Bad> {
    match m.keys().find(|k| !keys.contains(&k.as_str())) {
        Some(k) => Err(format!("unknown key `{k}` (known: {})", keys.join(", "))),
        None => Ok(()),
    }
}

fn no_pool(pool: &str) -> Resp {
    error(StatusCode::NOT_FOUND, format!("no pool `{pool}`"))
}

fn no_server(pool: &str, name: &str) -> Resp {
    error(
        StatusCode::NOT_FOUND,
        format!("no server `{name}` in pool `{pool}`"),
    )
}

fn pool_of(shared: &dyn Instance, pool: &str) -> Option<Arc<Pool>> {
    let rt = shared.live().runtime.load();
    rt.pools.iter().find(|p| &*p.name == pool).cloned()
}

fn describe(p: &Pool, s: &Server) -> Value {
    j!({
        "pool": &*p.name,
        "server": &*s.name,
        "address": s.endpoint(),
        "weight": s.weight.load(Relaxed),
        "maxconn": s.maxconn.load(Relaxed),
        "backup": s.backup,
        "check": s.check.is_some(),
        "state": s.operator().as_str(),
    })
}

/// `POST /api/pools/{pool}/servers` with `{"address": "10.0.0.7:8080", "name": "api-7",
/// "weight": 2, "backup": false, "maxconn": 100, "check": true}`: only `address` is required
/// (an IP address and port); `name` as a server's in the file (default: the address as
/// given), weight 1 to 1000 (default 1), maxconn 0 to 1 000 000 (default 0, no limit),
/// `check` whether it gets the pool's active check (default true; the pool's check as its
/// first checked server has it). It starts with the pool's slow start. 201 with the server;
/// 404 for an unknown pool; 409 when the pool has a server of that name or at that address, or
/// already [`MAX_POOL_SERVERS`].
pub(super) fn add(shared: &dyn Instance, pool: &str, body: &[u8]) -> Resp {
    let (new, check) = match server_config(body) {
        Ok(c) => c,
        Err(why) => return error(StatusCode::BAD_REQUEST, why),
    };
    if pool_of(shared, pool).is_none() {
        return no_pool(pool);
    }
    let mut refusal = None;
    let mut added = None;
    let changed = shared.change_servers(pool, &mut |p: &Pool| {
        if p.servers.len() >= MAX_POOL_SERVERS {
            let why = format!("pool `{pool}` has {MAX_POOL_SERVERS} servers, the most it may have");
            refusal = Some(error(StatusCode::CONFLICT, why));
            return None;
        }
        if let Some(x) = p
            .servers
            .iter()
            .find(|s| *s.name == new.name || (s.unix.is_none() && s.addr == new.addr))
        {
            let why = if *x.name == new.name {
                format!("pool `{pool}` already has a server named `{}`", new.name)
            } else {
                format!("server `{}` of pool `{pool}` is at {}", x.name, new.addr)
            };
            refusal = Some(error(StatusCode::CONFLICT, why));
            return None;
        }
        let mut c = new.clone();
        c.check = check
            .then(|| p.servers.iter().find_map(|s| s.check.clone()))
            .flatten();
        let mut s = p.server_from(&c, &Found::at(c.addr));
        if let Some(fresh) = Arc::get_mut(&mut s) {
            fresh.added = true;
        }
        if !p.slowstart.is_zero() {
            s.came_up();
        }
        added = Some(s.clone());
        let mut list = p.servers.clone();
        list.push(s);
        Some(list)
    });
    match (changed, added, refusal) {
        (_, _, Some(r)) => r,
        (Some(p), Some(s), _) => {
            tracing::warn!(pool, server = %s.name, address = %s.addr, "server added through the admin API");
            json(StatusCode::CREATED, &describe(&p, &s))
        }
        _ => no_pool(pool),
    }
}

/// The server a POST body describes (its check still to come from the pool), and whether it
/// gets the pool's check.
fn server_config(body: &[u8]) -> Result<(ServerConfig, bool), Bad> {
    let m = object(body)?;
    only(
        &m,
        &["address", "name", "weight", "backup", "maxconn", "check"],
    )?;
    let written = m.get("address").and_then(Value::as_str).unwrap_or("");
    // `[::ffff:a.b.c.d]:p` is the IPv4 server `a.b.c.d:p` (one server, not two).
    let Ok(addr) = written
        .parse::<SocketAddr>()
        .map(crate::client_identity::canonical_addr)
    else {
        return Err(
            "`address` must be an IP address and port (\"10.0.0.7:8080\", \"[2001:db8::7]:8080\")"
                .into(),
        );
    };
    let name = match m.get("name") {
        None => written.to_string(),
        Some(Value::String(n)) if crate::config::valid_server_name(n) => n.clone(),
        Some(_) => {
            return Err("`name` must be 1 to 64 letters, digits, `-`, `_`, `.` or `:`".into())
        }
    };
    let weight = int(&m, "weight", 1, 1000)?.unwrap_or(1) as u32;
    let config = ServerConfig {
        name,
        address: written.to_string(),
        addr,
        unix: None,
        weight,
        backup: boolean(&m, "backup")?.unwrap_or(false),
        check: None,
        maxconn: int(&m, "maxconn", 0, 1_000_000)?.unwrap_or(0) as usize,
        dns: None,
    };
    Ok((config, boolean(&m, "check")?.unwrap_or(true)))
}

/// How often a draining server's requests in flight are counted.
const DRAIN_POLL: Duration = Duration::from_millis(25);

/// `DELETE /api/pools/{pool}/servers/{name}`: the server drains (it takes nothing new, its
/// requests in flight finish), then leaves the pool. 200 when it had nothing in flight (it is
/// gone), else 202 while it drains: it leaves when its last request ends, or after the pool's
/// request timeout at the latest; setting its state back to `ready` meanwhile keeps it. 404
/// for an unknown pool or server, 409 for a server from DNS (its name's records bring it).
pub(super) fn remove(shared: &Arc<dyn Instance>, pool: &str, name: &str) -> Resp {
    let Some(p) = pool_of(&**shared, pool) else {
        return no_pool(pool);
    };
    let Some(i) = p.servers.iter().position(|s| &*s.name == name) else {
        return no_server(pool, name);
    };
    let s = p.servers[i].clone();
    if let Some(entry) = &s.dns_entry {
        return error(
            StatusCode::CONFLICT,
            format!("server `{name}` is one of the addresses of `{entry}`: change its DNS records or the file"),
        );
    }
    p.set_operator(i, Operator::Drain);
    let in_flight = s.in_flight.load(Relaxed);
    if in_flight == 0 && leave(&**shared, pool, name).is_some() {
        tracing::warn!(pool, server = name, "server removed through the admin API");
        return json(StatusCode::OK, &j!({"pool": pool, "removed": name}));
    }
    tracing::warn!(
        pool,
        server = name,
        in_flight,
        "server draining before its removal through the admin API"
    );
    let deadline = tokio::time::Instant::now() + p.request_timeout;
    let (weak, pool_name, server) = (Arc::downgrade(shared), pool.to_string(), name.to_string());
    tokio::spawn(drain_then_leave(weak, pool_name, server, deadline));
    json(
        StatusCode::ACCEPTED,
        &j!({"pool": pool, "draining": name, "in_flight": in_flight}),
    )
}

/// Waits until server `name` of `pool` has nothing in flight (or `deadline`), then removes it
/// if it is still draining.
async fn drain_then_leave(
    shared: Weak<dyn Instance>,
    pool: String,
    name: String,
    deadline: tokio::time::Instant,
) {
    loop {
        let Some(instance) = shared.upgrade() else {
            return;
        };
        let busy = pool_of(&*instance, &pool)
            .and_then(|p| {
                let s = p.servers.iter().find(|s| *s.name == name)?;
                (s.operator() == Operator::Drain).then(|| s.in_flight.load(Relaxed))
            })
            .filter(|n| *n > 0);
        if busy.is_none() || tokio::time::Instant::now() >= deadline {
            if leave(&*instance, &pool, &name).is_some() {
                tracing::warn!(pool, server = name, "drained server removed");
            }
            return;
        }
        drop(instance);
        tokio::time::sleep(DRAIN_POLL).await;
    }
}

/// Removes server `name` from `pool` if it is still draining; the new pool, or `None`.
fn leave(shared: &dyn Instance, pool: &str, name: &str) -> Option<Arc<Pool>> {
    shared.change_servers(pool, &mut |p: &Pool| {
        let i = p
            .servers
            .iter()
            .position(|s| &*s.name == name && s.operator() == Operator::Drain)?;
        let mut list = p.servers.clone();
        list.remove(i);
        Some(list)
    })
}

/// `PATCH /api/pools/{pool}/servers/{name}` with `{"weight": 3}` and/or `{"maxconn": 50}`
/// (weight 0 to 1000, 0 taking no new requests; maxconn 0 to 1 000 000, 0 no limit): applied
/// at once, the balancer rebuilt for a weight, waiting requests looking again for a
/// `maxconn`. 200 with the server; 404 for an unknown pool or server, 400 for a bad body.
pub(super) fn patch(shared: &dyn Instance, pool: &str, name: &str, body: &[u8]) -> Resp {
    let (weight, maxconn) = match object(body).and_then(|m| {
        only(&m, &["weight", "maxconn"])?;
        Ok((
            int(&m, "weight", 0, 1000)?,
            int(&m, "maxconn", 0, 1_000_000)?,
        ))
    }) {
        Ok((None, None)) => return error(StatusCode::BAD_REQUEST, "give `weight` or `maxconn`"),
        Ok(v) => v,
        Err(why) => return error(StatusCode::BAD_REQUEST, why),
    };
    let Some(p) = pool_of(shared, pool) else {
        return no_pool(pool);
    };
    let Some(i) = p.servers.iter().position(|s| &*s.name == name) else {
        return no_server(pool, name);
    };
    let s = &p.servers[i];
    if let Some(m) = maxconn {
        s.maxconn.store(m as usize, Relaxed);
        p.queue.wake_all();
    }
    if let Some(w) = weight {
        p.set_weight(i, w as u32);
    }
    tracing::warn!(
        pool,
        server = name,
        weight = s.weight.load(Relaxed),
        maxconn = s.maxconn.load(Relaxed),
        "server changed through the admin API"
    );
    json(StatusCode::OK, &describe(&p, s))
}
