//! Servers named by DNS: the resolver (hickory, the system's `resolv.conf` or `[dns] servers`),
//! one lookup with its TTL (A/AAAA records, or a pool's SRV records and their targets'
//! addresses), and what a new answer changes in a pool's servers (pure).

use super::{Pool, Server};
use crate::config::dns::{DnsFamily, DnsName, DnsSettings};
use crate::config::ServerConfig;
use hickory_resolver::config::{LookupIpStrategy, NameServerConfigGroup, ResolverConfig};
use hickory_resolver::name_server::TokioConnectionProvider;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// A pool's lookups, as the admin API and metrics show them (kept across reloads and changes).
#[derive(Debug, Default)]
pub struct Discovery {
    /// Lookups made in the background.
    pub lookups: AtomicU64,
    /// Lookups that failed (or found nothing where the pool may not be empty).
    pub failures: AtomicU64,
    /// Some name of the pool is served from its last good answer.
    pub stale: AtomicBool,
}

/// One answer: the servers found (sorted by address, without repeats) and how long they may
/// be kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    pub found: Vec<Found>,
    pub ttl: Duration,
}

/// A server an answer names: its address, and from an SRV record its weight, whether it is a
/// backup (a priority after the first) and its target as `host:port` (for TLS).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    pub addr: SocketAddr,
    pub weight: Option<u32>,
    pub backup: bool,
    pub target: Option<String>,
}

impl Found {
    /// An address record's server: the entry's own weight and options.
    pub fn at(addr: SocketAddr) -> Found {
        Found {
            addr,
            weight: None,
            backup: false,
            target: None,
        }
    }
}

/// SRV weights (RFC 2782, 0 to 65535) as server weights (1 to 1000), in proportion: scaled
/// down when the largest is above 1000; a weight of 0 is the smallest share, 1.
pub fn srv_weights(weights: &[u16]) -> Vec<u32> {
    let max = weights.iter().copied().max().unwrap_or(0).max(1) as f64;
    let scale = if max > 1000.0 { 1000.0 / max } else { 1.0 };
    weights
        .iter()
        .map(|w| ((*w as f64 * scale).round() as u32).clamp(1, 1000))
        .collect()
}

/// An SRV record as the answer has it (RFC 2782): the target as written, `.` for none.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SrvRecord {
    pub priority: u16,
    pub weight: u16,
    pub port: u16,
    pub target: String,
}

/// A host an SRV answer sends to: its name and port, its server weight, whether it is a
/// backup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SrvTarget {
    pub name: DnsName,
    pub weight: u32,
    pub backup: bool,
}

/// The hosts of an SRV answer (RFC 2782): a record with port 0 or the target `.` (the service
/// is not there) or a target that is not a host name is left out; the records of the lowest
/// priority are primaries, the others backups; weights as [`srv_weights`] scales them, over
/// the records kept.
pub fn srv_targets(records: &[SrvRecord]) -> Vec<SrvTarget> {
    let kept: Vec<(&SrvRecord, String)> = records
        .iter()
        .filter(|r| r.port != 0)
        .filter_map(|r| {
            let host = r.target.trim_end_matches('.').to_ascii_lowercase();
            crate::config::dns::valid_name(&host).then_some((r, host))
        })
        .collect();
    let first = kept.iter().map(|(r, _)| r.priority).min();
    let weights = srv_weights(&kept.iter().map(|(r, _)| r.weight).collect::<Vec<_>>());
    kept.into_iter()
        .zip(weights)
        .map(|((r, host), weight)| SrvTarget {
            name: DnsName {
                host,
                port: r.port,
                srv: false,
            },
            weight,
            backup: Some(r.priority) != first,
        })
        .collect()
}

/// The resolver servers' names go through.
#[derive(Clone)]
pub struct Resolver(hickory_resolver::TokioResolver);

impl std::fmt::Debug for Resolver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Resolver")
    }
}

impl Resolver {
    /// From `[dns]`: its name servers (UDP, then TCP for a truncated answer) or the system's;
    /// no cache, so every lookup asks (the refresh times are the pool's, from the TTLs). Needs
    /// a tokio runtime to run its lookups on. An error when the system's configuration cannot
    /// be read.
    pub fn new(s: &DnsSettings) -> Result<Resolver, String> {
        let provider = TokioConnectionProvider::default();
        let mut builder = if s.servers.is_empty() {
            hickory_resolver::TokioResolver::builder(provider)
                .map_err(|e| format!("cannot read the system's resolver configuration: {e}"))?
        } else {
            let mut group = NameServerConfigGroup::new();
            for a in &s.servers {
                group.merge(NameServerConfigGroup::from_ips_clear(
                    &[a.ip()],
                    a.port(),
                    true,
                ));
            }
            hickory_resolver::TokioResolver::builder_with_config(
                ResolverConfig::from_parts(None, Vec::new(), group),
                provider,
            )
        };
        let o = builder.options_mut();
        o.timeout = s.timeout;
        o.attempts = 1;
        o.cache_size = 0;
        o.ip_strategy = match s.family {
            DnsFamily::Both => LookupIpStrategy::Ipv4AndIpv6,
            DnsFamily::Ipv4 => LookupIpStrategy::Ipv4Only,
            DnsFamily::Ipv6 => LookupIpStrategy::Ipv6Only,
        };
        Ok(Resolver(builder.build()))
    }

    /// The A/AAAA records of `name`, with its port, or for an SRV name its records' targets;
    /// a name with no records is an empty answer (kept a second), a failure an error saying
    /// why.
    pub async fn lookup(&self, name: &DnsName) -> Result<Answer, String> {
        if name.srv {
            return self.lookup_srv(name).await;
        }
        self.lookup_ip(name).await
    }

    async fn lookup_ip(&self, name: &DnsName) -> Result<Answer, String> {
        // Fully qualified: the search list is not tried.
        let fqdn = format!("{}.", name.host);
        match self.0.lookup_ip(fqdn).await {
            Ok(found) => {
                let ttl = found
                    .valid_until()
                    .saturating_duration_since(std::time::Instant::now());
                let mut addrs: Vec<SocketAddr> = found
                    .iter()
                    .map(|ip| SocketAddr::new(ip, name.port))
                    .collect();
                addrs.sort();
                addrs.dedup();
                let found = addrs.into_iter().map(Found::at).collect();
                Ok(Answer { found, ttl })
            }
            Err(e) if e.is_no_records_found() || e.is_nx_domain() => Ok(Answer::empty()),
            Err(e) => Err(e.to_string()),
        }
    }

    /// The SRV records of `name` (RFC 2782): each target's addresses with the record's port
    /// and weight; records of the lowest priority are primaries, the others backups; a record
    /// with port 0 or the target `.` (no service there) is left out. A target that cannot be
    /// resolved fails the whole lookup (the last good answer stays).
    async fn lookup_srv(&self, name: &DnsName) -> Result<Answer, String> {
        let srv = match self.0.srv_lookup(format!("{}.", name.host)).await {
            Ok(s) => s,
            Err(e) if e.is_no_records_found() || e.is_nx_domain() => return Ok(Answer::empty()),
            Err(e) => return Err(e.to_string()),
        };
        let mut ttl = srv
            .as_lookup()
            .valid_until()
            .saturating_duration_since(std::time::Instant::now());
        let records: Vec<SrvRecord> = srv
            .iter()
            .map(|r| SrvRecord {
                priority: r.priority(),
                weight: r.weight(),
                port: r.port(),
                target: r.target().to_ascii(),
            })
            .collect();
        let mut found: Vec<Found> = Vec::new();
        for t in srv_targets(&records) {
            let a = self
                .lookup_ip(&t.name)
                .await
                .map_err(|e| format!("target {}: {e}", t.name.host))?;
            ttl = ttl.min(a.ttl);
            found.extend(a.found.into_iter().map(|f| Found {
                weight: Some(t.weight),
                backup: t.backup,
                target: Some(format!("{}:{}", t.name.host, t.name.port)),
                ..f
            }));
        }
        found.sort_by_key(|f| f.addr);
        found.dedup_by_key(|f| f.addr);
        Ok(Answer { found, ttl })
    }
}

impl Answer {
    fn empty() -> Answer {
        Answer {
            found: Vec::new(),
            ttl: Duration::from_secs(1),
        }
    }
}

/// Resolves `names` once, off any event loop (a thread of its own with its own runtime, so it
/// can be called from inside one), each lookup bounded by `[dns] timeout`. One result per name.
pub fn resolve_blocking(s: &DnsSettings, names: Vec<DnsName>) -> Vec<Result<Vec<Found>, String>> {
    if names.is_empty() {
        return Vec::new();
    }
    let s = s.clone();
    let n = names.len();
    let run = move || -> Result<Vec<Result<Vec<Found>, String>>, String> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| e.to_string())?;
        rt.block_on(async {
            let resolver = Resolver::new(&s)?;
            let mut out = Vec::with_capacity(names.len());
            for name in &names {
                // The resolver's own timeout bounds each query; this bounds the whole lookup.
                let limit = s.timeout * 3;
                out.push(
                    match tokio::time::timeout(limit, resolver.lookup(name)).await {
                        Ok(r) => r.map(|a| a.found),
                        Err(_) => Err(format!("no answer within {limit:?}")),
                    },
                );
            }
            Ok(out)
        })
    };
    match std::thread::spawn(run).join() {
        Ok(Ok(out)) => out,
        Ok(Err(e)) => vec![Err(e); n],
        Err(_) => vec![Err("the resolver thread panicked".to_string()); n],
    }
}

/// A pool's name `written` (as the config writes it) and its entry: the template of the
/// servers its addresses become.
#[derive(Debug, Clone)]
pub struct Entry {
    pub name: DnsName,
    pub server: ServerConfig,
}

/// The servers of `pool` once `answers` are applied: for each entry with an answer, its
/// servers whose address is still there are kept (the same objects, so their state and
/// connections stay; an SRV weight that changed is set), new addresses become new servers
/// (`make`), and the others leave; an entry without an answer (`None`: stale) keeps its
/// servers. Servers not from DNS stay. `None` when nothing changes.
pub fn apply_answers(
    pool: &Pool,
    answers: &[(&Entry, Option<&[Found]>)],
    make: &dyn Fn(&Entry, &Found) -> Arc<Server>,
) -> Option<Vec<Arc<Server>>> {
    let of = |s: &Server, e: &Entry| s.dns_entry.as_deref() == Some(e.server.name.as_str());
    let mut out: Vec<Arc<Server>> = Vec::with_capacity(pool.servers.len());
    let mut changed = false;
    for s in &pool.servers {
        let Some((_, Some(found))) = answers.iter().find(|(e, _)| of(s, e)) else {
            out.push(s.clone());
            continue;
        };
        match found
            .iter()
            .find(|f| f.addr == s.addr && f.backup == s.backup)
        {
            Some(f) => {
                if let Some(w) = f.weight.filter(|w| *w != s.weight.load(Ordering::Relaxed)) {
                    s.weight.store(w, Ordering::Relaxed);
                    changed = true;
                }
                out.push(s.clone());
            }
            None => changed = true,
        }
    }
    for (e, found) in answers {
        for f in found.unwrap_or_default() {
            if !out.iter().any(|s| of(s, e) && s.addr == f.addr) {
                out.push(make(e, f));
                changed = true;
            }
        }
    }
    changed.then_some(out)
}

/// The name a server from DNS goes by: the entry as written, `@`, the address
/// (`api.internal:8080@10.0.0.7`; from SRV with its port, `_http._tcp.api@10.0.0.7:8080`).
pub fn server_name(written: &str, f: &Found) -> String {
    match f.target {
        Some(_) => format!("{written}@{}", f.addr),
        None => format!("{written}@{}", f.addr.ip()),
    }
}

/// Counts one lookup of the pool; `failed`: it failed (the last good answer stays).
pub fn count(d: &Discovery, failed: bool) {
    d.lookups.fetch_add(1, Ordering::Relaxed);
    if failed {
        d.failures.fetch_add(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests;
