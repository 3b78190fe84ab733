//! Building the runtime snapshot (and the shared state) from a config.

use super::*;

/// Builds the request path's snapshot from a config.
pub fn build_runtime(
    config: &Config,
    instance: &Arc<str>,
    workers: usize,
    events: &Arc<crate::backend::events::EventLog>,
) -> anyhow::Result<Runtime> {
    build_runtime_from(config, instance, workers, events, None)
}

/// Builds a snapshot, carrying state over from `old` (see [`reload`]).
pub fn build_runtime_from(
    config: &Config,
    instance: &Arc<str>,
    workers: usize,
    events: &Arc<crate::backend::events::EventLog>,
    old: Option<&Runtime>,
) -> anyhow::Result<Runtime> {
    let patterns: Vec<(Vec<String>, usize)> = config
        .routes
        .iter()
        .enumerate()
        .map(|(i, r)| (r.patterns.clone(), i))
        .collect();
    let matchers = config.routes.iter().map(|r| r.matcher.clone()).collect();
    let router = Router::with_matchers(&patterns, matchers).context("compiling routes")?;
    let cluster = cluster(config, instance, old)?;
    let pool_hosts: Vec<_> = config.pools.iter().map(upstream_host).collect();
    let routes = routes(config, old, cluster.as_ref(), &pool_hosts);
    let pools = pools(config, workers, events, old)?;
    let traffic = old.map(|o| o.traffic.clone()).unwrap_or_default();
    let cache = cache(config, old, cluster.as_ref());
    // One store of ACME certificates for the process's life: the listeners of every snapshot
    // serve it.
    let acme = config
        .acme
        .as_ref()
        .map(|_| old.and_then(|o| o.acme.clone()).unwrap_or_default());
    if let (Some(tls), Some(issued)) = (&config.server.tls, &acme) {
        tls.config.attach(issued.clone());
    }
    Ok(Runtime {
        router,
        routes,
        pools,
        pool_hosts,
        cache,
        traffic,
        via: HeaderValue::from_str(&format!("1.1 {instance}"))
            .context("instance name is not a valid header value")?,
        via_token: instance.clone(),
        log: log_sink(config, old)?,
        tracing: config
            .tracing
            .as_ref()
            .map(crate::access_log::trace::Propagation::new),
        limits: config.server.limits.clone(),
        tls: config.server.tls.as_ref().map(|t| t.config.clone()),
        h2c: config.server.h2c,
        h2: config.server.h2.clone(),
        site_active: site_active(&config.site),
        site: config.site.clone(),
        https_port: config
            .server
            .tls
            .as_ref()
            .and_then(|t| t.listen.first())
            .map(|a| a.port())
            .filter(|p| *p != 443),
        clients: config.server.clients.clone(),
        send_proxy: config.pools.iter().any(|p| p.send_proxy.is_some()),
        cluster,
        acme,
    })
}

/// The old runtime's cache while its rules (and the cluster link its shared level uses) are
/// unchanged, else a new one.
fn cache(
    config: &Config,
    old: Option<&Runtime>,
    cluster: Option<&Arc<crate::cluster::Cluster>>,
) -> Arc<crate::cache::Cache> {
    let link = cluster.filter(|_| config.cache.shared);
    let same_link = |c: &crate::cache::Cache| match (c.fleet(), link) {
        (None, None) => true,
        (Some(a), Some(b)) => Arc::ptr_eq(a, b),
        _ => false,
    };
    match old {
        Some(o) if o.cache.rules == config.cache && same_link(&o.cache) => o.cache.clone(),
        _ => crate::cache::Cache::with_fleet(config.cache.clone(), link),
    }
}

/// The routes as the request path sees them, in file order.
fn routes(
    config: &Config,
    old: Option<&Runtime>,
    cluster: Option<&Arc<crate::cluster::Cluster>>,
    pool_hosts: &[Option<HeaderValue>],
) -> Vec<crate::proxy::RouteRt> {
    config
        .routes
        .iter()
        .zip(rate_limiters(config, old, cluster))
        .enumerate()
        .map(|(index, (r, limiter))| crate::proxy::RouteRt {
            index: index as u32,
            line: r.line as u32,
            pool: r.pool,
            split: split(&r.split),
            root: r
                .root
                .as_deref()
                .map(|p| Arc::new(crate::proxy::files::root::Root::new(p))),
            cache: r.cache,
            grace: r.grace,
            purge: r.purge.clone(),
            rules: (!r.rules.is_empty()).then(|| Arc::new(r.rules.clone())),
            upstream_host: r.pool.and_then(|i| pool_hosts[i].clone()),
            limiter,
            encoding: r.encoding.clone(),
            stats: route_stats(r, index, old),
        })
        .collect()
}

/// A route's counters: the ones of `old`'s route in the same place when it matches the same
/// requests (so its series continue across a reload), else new ones.
fn route_stats(
    r: &crate::config::RouteConfig,
    index: usize,
    old: Option<&Runtime>,
) -> Arc<crate::stats::route::RouteStats> {
    let identity = format!("{:?} {:?}", r.patterns, r.matcher);
    match old.and_then(|o| o.routes.get(index)) {
        Some(o) if o.stats.identity == identity => o.stats.clone(),
        _ => Arc::new(crate::stats::route::RouteStats::new(identity)),
    }
}

/// A route's traffic split, if it has one.
fn split(split: &[(usize, u32)]) -> Option<Arc<crate::balancer::split::Split>> {
    (!split.is_empty()).then(|| Arc::new(crate::balancer::split::Split::new(split)))
}

/// Applies the fleet's purges to whichever cache is current when they arrive (once per
/// cluster link; a reload that keeps the link keeps it).
pub(crate) fn fleet_purges(live: &Arc<Live>, rt: &Runtime) {
    let Some(c) = &rt.cluster else { return };
    let live = Arc::downgrade(live);
    c.on_purge(move |p| {
        use crate::cluster::Purge;
        let Some(live) = live.upgrade() else { return };
        let cache = &live.runtime.load().cache;
        match p {
            Purge::Url(k) => cache.purge_url(&k),
            Purge::Prefix(k) => cache.purge_prefix(&k),
            Purge::All | Purge::Gap => cache.purge_all(),
            Purge::Key(k) => cache.invalidate(&k),
        };
    });
}

/// What this instance's heartbeat tells the fleet: its requests and their rate, its cache's
/// hits and misses, requests refused by rate limits (once per cluster link).
pub(crate) fn fleet_status(live: &Arc<Live>, rt: &Runtime) {
    let Some(c) = &rt.cluster else { return };
    let live = Arc::downgrade(live);
    c.on_status(move || {
        let Some(live) = live.upgrade() else {
            return serde_json::json!({});
        };
        let rt = live.runtime.load();
        let t = rt.traffic.totals();
        let rate = rt.traffic.last().map(|s| s.rps).unwrap_or(0.0);
        let cache = rt.cache.stats();
        let limited: u64 = rt
            .routes
            .iter()
            .filter_map(|r| r.limiter.as_ref())
            .map(|l| l.limited.load(std::sync::atomic::Ordering::Relaxed))
            .sum();
        serde_json::json!({
            "requests": t.requests,
            "requests_per_second": rate,
            "cache_hits": cache.hits,
            "cache_misses": cache.misses,
            "rate_limited": limited,
            "uptime_secs": rt.traffic.uptime_secs(),
        })
    });
}

/// A checksum of what must be the same across a fleet: routes (matchers, pools, cache, rate
/// limits), pools and their servers, and the cache's rules.
fn config_sum(config: &Config) -> u64 {
    let mut text = String::new();
    for r in &config.routes {
        let limit = &r.rules.rate_limit;
        text.push_str(&format!(
            "{:?}{:?}{:?}{:?}{limit:?}\n",
            r.patterns, r.matcher, r.pool, r.cache
        ));
    }
    for p in &config.pools {
        let servers: Vec<&str> = p.servers.iter().map(|s| s.address.as_str()).collect();
        text.push_str(&format!("{} {servers:?}\n", p.name));
    }
    text.push_str(&format!("{:?}", config.cache));
    xxhash_rust::xxh3::xxh3_64(text.as_bytes())
}

/// The link to the fleet's Redis: the old runtime's while `[cluster]` is unchanged, else a
/// new one (which does not wait for Redis: see [`crate::cluster::Cluster::start`]).
fn cluster(
    config: &Config,
    instance: &Arc<str>,
    old: Option<&Runtime>,
) -> anyhow::Result<Option<Arc<crate::cluster::Cluster>>> {
    let Some(c) = &config.cluster else {
        return Ok(None);
    };
    let link = match old.and_then(|o| o.cluster.as_ref()) {
        Some(o) if o.config == *c => o.clone(),
        _ => crate::cluster::Cluster::start(c, instance).context("[cluster]")?,
    };
    link.set_config_sum(config_sum(config));
    Ok(Some(link))
}

/// The pools of `config`, with the addresses of their server names; a server that was in the
/// same pool of `old` (same name; see [`crate::backend::state`]) keeps its state, a server the
/// admin API added stays, and a pool keeps its lookups' counters.
fn pools(
    config: &Config,
    workers: usize,
    events: &Arc<crate::backend::events::EventLog>,
    old: Option<&Runtime>,
) -> anyhow::Result<Vec<Arc<Pool>>> {
    let resolved = resolve_names(config, old)?;
    let pools = config
        .pools
        .iter()
        .map(|p| {
            let addrs = |s: &crate::config::ServerConfig| {
                resolved
                    .get(&(p.name.clone(), s.name.clone()))
                    .cloned()
                    .unwrap_or_default()
            };
            let mut pool = Pool::from_config_resolved(p, workers, events.clone(), &addrs);
            pool.request_timeout = config.server.limits.request_timeout;
            if let Some(o) = old.and_then(|o| o.pools.iter().find(|o| *o.name == p.name)) {
                pool.discovery = o.discovery.clone();
                for s in &pool.servers {
                    if let Some(prev) = predecessor(s, &pool.servers, &o.servers) {
                        s.carry_from(prev);
                    }
                }
                pool = keep_added(pool, o);
                pool.rebalance();
            }
            Arc::new(pool)
        })
        .collect();
    Ok(pools)
}

use crate::backend::dns::Found;
use crate::backend::state::predecessor;

/// `pool` with the servers added to `old` through the admin API whose name and address the
/// file does not have: they stay, with their state, weight and `maxconn`, until removed, the
/// pool goes or langur restarts. Each is built again for the new pool (its queue, its check).
fn keep_added(pool: Pool, old: &Pool) -> Pool {
    let kept: Vec<&Arc<crate::backend::Server>> = old
        .servers
        .iter()
        .filter(|x| {
            x.added
                && !pool
                    .servers
                    .iter()
                    .any(|s| s.name == x.name || s.same_endpoint(x))
        })
        .collect();
    if kept.is_empty() {
        return pool;
    }
    let check = pool.servers.iter().find_map(|s| s.check.clone());
    let mut list = pool.servers.clone();
    for x in kept {
        list.push(added_server(&pool, x, check.clone()));
    }
    pool.with_servers(list)
}

/// A server the admin API added, as `pool`'s: `x`'s name, address and options with `check`,
/// its state carried over.
pub(super) fn added_server(
    pool: &Pool,
    x: &crate::backend::Server,
    check: Option<crate::config::CheckConfig>,
) -> Arc<crate::backend::Server> {
    let c = crate::config::ServerConfig {
        name: x.name.to_string(),
        address: x.address.to_string(),
        addr: x.addr,
        unix: None,
        weight: x.file_weight,
        backup: x.backup,
        check,
        maxconn: x.file_maxconn,
        dns: None,
    };
    let mut s = pool.server_from(&c, &Found::at(x.addr));
    if let Some(fresh) = Arc::get_mut(&mut s) {
        fresh.added = true;
    }
    s.carry_from(x);
    s
}

/// The addresses of the servers named by DNS, by (pool, name as written): the ones the same
/// pool of `old` has for the name (a reload does not ask again; the pool's task will), else
/// looked up now. A name that does not resolve is an error naming it, unless its pool has
/// `dns_allow_empty` (then it is a warning and the name has no server until it resolves).
fn resolve_names(
    config: &Config,
    old: Option<&Runtime>,
) -> anyhow::Result<std::collections::HashMap<(String, String), Vec<Found>>> {
    let mut out = std::collections::HashMap::new();
    let mut ask = Vec::new();
    for p in &config.pools {
        let before = old.and_then(|o| o.pools.iter().find(|o| *o.name == p.name));
        for s in p.servers.iter().filter(|s| s.dns.is_some()) {
            let srv = s.dns.as_ref().is_some_and(|d| d.srv);
            let kept: Vec<Found> = before
                .map(|o| {
                    o.servers
                        .iter()
                        .filter(|x| x.dns_entry.as_deref() == Some(s.name.as_str()))
                        .map(|x| Found {
                            addr: x.addr,
                            weight: srv
                                .then(|| x.weight.load(std::sync::atomic::Ordering::Relaxed)),
                            backup: srv && x.backup,
                            target: srv.then(|| x.address.to_string()),
                        })
                        .collect()
                })
                .unwrap_or_default();
            if kept.is_empty() {
                ask.push((p, s));
            } else {
                out.insert((p.name.clone(), s.name.clone()), kept);
            }
        }
    }
    let names = ask.iter().filter_map(|(_, s)| s.dns.clone()).collect();
    let answers = crate::backend::dns::resolve_blocking(&config.dns, names);
    for ((p, s), answer) in ask.into_iter().zip(answers) {
        let why = match answer {
            Ok(addrs) if !addrs.is_empty() => {
                out.insert((p.name.clone(), s.name.clone()), addrs);
                continue;
            }
            Ok(_) => "it has no address".to_string(),
            Err(e) => e,
        };
        if !p.dns.allow_empty {
            anyhow::bail!(
                "pool `{}`: cannot resolve server `{}`: {why}",
                p.name,
                s.name
            );
        }
        tracing::warn!(pool = %p.name, server = %s.name, "cannot resolve the server's name ({why}); it has no server until it resolves (dns_allow_empty)");
    }
    Ok(out)
}

/// The routes' rate limiters, in route order: a route whose identity (its matchers and its
/// limit) is the same as a route of `old` keeps that route's limiter, so the keys' states
/// survive the reload; the others start empty.
fn rate_limiters(
    config: &Config,
    old: Option<&Runtime>,
    cluster: Option<&Arc<crate::cluster::Cluster>>,
) -> Vec<Option<Arc<crate::limits::RateLimiter>>> {
    use crate::config::route::LimitScope;
    let mut kept: Vec<Arc<crate::limits::RateLimiter>> = old
        .map(|o| o.routes.iter().filter_map(|r| r.limiter.clone()).collect())
        .unwrap_or_default();
    config
        .routes
        .iter()
        .map(|r| {
            let limit = r.rules.rate_limit.as_ref()?;
            let identity = format!("{:?} {:?} {:?}", r.patterns, r.matcher, limit);
            let fleet = cluster.filter(|_| limit.scope == LimitScope::Cluster);
            let same_link = |l: &crate::limits::RateLimiter| {
                let theirs = l.cluster.as_ref().map(|c| &c.cluster);
                match (theirs, fleet) {
                    (Some(a), Some(b)) => Arc::ptr_eq(a, b),
                    (a, b) => a.is_none() && b.is_none(),
                }
            };
            match kept
                .iter()
                .position(|l| l.identity == identity && same_link(l))
            {
                Some(i) => Some(kept.swap_remove(i)),
                None => {
                    let l = crate::limits::RateLimiter::new(limit, identity);
                    Some(Arc::new(match fleet {
                        Some(c) => l.with_cluster(c.clone()),
                        None => l,
                    }))
                }
            }
        })
        .collect()
}

/// The access log's sink (and span export): the old runtime's when nothing about it changed,
/// else a new one (its dropped-lines count carried over); `None` when both are off.
fn log_sink(
    config: &Config,
    old: Option<&Runtime>,
) -> anyhow::Result<Option<Arc<crate::access_log::Sink>>> {
    let log = config.server.access_log.then_some(&config.log);
    let settings = (log.cloned(), config.tracing.clone());
    if settings == (None, None) {
        return Ok(None);
    }
    let old = old.and_then(|o| o.log.as_ref());
    if let Some(o) = old.filter(|o| o.settings == settings) {
        return Ok(Some(o.clone()));
    }
    let dropped = old.map(|o| o.dropped().clone()).unwrap_or_default();
    let spans = old.map(|o| o.spans().clone()).unwrap_or_default();
    crate::access_log::Sink::start(log, config.tracing.as_ref(), dropped, spans).map(Some)
}

/// Whether some `[server]` rule applies to every request.
fn site_active(site: &crate::config::route::SiteRules) -> bool {
    site.redirect_http_to_https
        || site.hsts.is_some()
        || site.request_id.is_some()
        || !site.error_pages.is_empty()
}

/// `{upstream_host}` of a pool: its TLS server name, else its first server's address as
/// written (a default port left out; `localhost` for a Unix-domain socket; an SRV name without
/// its `_service._proto.` labels).
fn upstream_host(pool: &crate::config::PoolConfig) -> Option<HeaderValue> {
    let name = pool.tls.as_ref().and_then(|t| t.server_name.clone());
    let name = name.or_else(|| {
        let s = pool.servers.first()?;
        if s.unix.is_some() {
            // A Unix-domain socket's path is no host (nginx sends `localhost`).
            return Some("localhost".to_string());
        }
        if let Some(d) = s.dns.as_ref().filter(|d| d.srv) {
            // `_http._tcp.api.example` names the service `api.example`.
            let mut host = d.host.as_str();
            while let Some((_, rest)) = host.split_once('.').filter(|_| host.starts_with('_')) {
                host = rest;
            }
            return Some(host.to_string());
        }
        let written = s.address.as_str();
        Some(
            written
                .strip_suffix(":80")
                .filter(|_| pool.tls.is_none())
                .or_else(|| written.strip_suffix(":443").filter(|_| pool.tls.is_some()))
                .unwrap_or(written)
                .to_string(),
        )
    })?;
    HeaderValue::from_str(&name).ok()
}

/// A name for this process's `Via` entries: the configured one, or `langur-` and 8 hex digits.
pub fn instance_name(config: &Config) -> Arc<str> {
    if let Some(n) = &config.server.name {
        return Arc::from(n.as_str());
    }
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u32(std::process::id());
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0),
    );
    Arc::from(format!("langur-{:08x}", h.finish() as u32))
}

pub(crate) fn new_shared(config: &Config, workers: usize) -> anyhow::Result<Shared> {
    let instance = instance_name(config);
    let events = Arc::new(crate::backend::events::EventLog::default());
    let runtime = build_runtime(config, &instance, workers, &events)?;
    if let Some(path) = &config.server.state_file {
        super::state_file::read(path, &runtime.pools);
    }
    let traffic = runtime.traffic.clone();
    let live = Arc::new(Live {
        runtime: ArcSwap::from_pointee(runtime),
        stopping: Default::default(),
        clients: Default::default(),
    });
    fleet_purges(&live, &live.runtime.load());
    fleet_status(&live, &live.runtime.load());
    let acme = Arc::new(crate::acme::Manager::new(events.clone()));
    acme.configure(config.acme.clone(), live.runtime.load().acme.clone())
        .map_err(anyhow::Error::msg)?;
    Ok(Shared {
        live,
        instance: Mutex::new(instance),
        workers,
        acme,
        acme_task: Mutex::new(None),
        events,
        traffic,
        admin: ArcSwap::from_pointee(crate::admin::Access::from_config(&config.admin)),
        config_path: (!config.source.is_empty() && std::path::Path::new(&config.source).is_file())
            .then(|| std::path::PathBuf::from(&config.source)),
        checkers: Default::default(),
        discovery: Default::default(),
        overrides: Overrides::default(),
        current: Mutex::new(config.clone()),
        listeners: Mutex::new(None),
        reloading: Mutex::new(()),
    })
}

#[cfg(test)]
mod tests {
    use super::upstream_host;

    /// The `Host` a pool's servers get for a request that names none: a name, never a path.
    #[test]
    fn a_pools_name_for_its_servers() {
        for (pool, want) in [
            ("servers = ['127.0.0.1:8080']", "127.0.0.1:8080"),
            ("servers = ['app.internal:80']", "app.internal"),
            ("servers = ['unix:/run/app.sock']", "localhost"),
            (
                "srv = '_http._tcp.api.service.consul'",
                "api.service.consul",
            ),
            (
                "servers = ['10.0.0.1:443']\ntls = true\ntls_server_name = 'api.example'",
                "api.example",
            ),
        ] {
            let text = format!("[[route]]\nmatch = ['^/']\npool = 'p'\n[pools.p]\n{pool}\n");
            let config = crate::config::parse_str("t.toml", &text, true).unwrap();
            assert_eq!(upstream_host(&config.pools[0]).unwrap(), want, "{pool}");
        }
    }
}
