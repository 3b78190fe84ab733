//! Servers named by DNS: the resolver (hickory, the system's `resolv.conf` or `[dns] servers`),
//! one lookup with its TTL, and what a new answer changes in a pool's servers (pure).

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

/// One answer: the addresses (sorted, without repeats) and how long they may be kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    pub addrs: Vec<SocketAddr>,
    pub ttl: Duration,
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

    /// The A/AAAA records of `name`, with its port; a name with no records is an empty answer
    /// (its TTL that of the negative answer, else a second), a failure an error saying why.
    pub async fn lookup(&self, name: &DnsName) -> Result<Answer, String> {
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
                Ok(Answer { addrs, ttl })
            }
            Err(e) if e.is_no_records_found() || e.is_nx_domain() => Ok(Answer {
                addrs: Vec::new(),
                ttl: Duration::from_secs(1),
            }),
            Err(e) => Err(e.to_string()),
        }
    }
}

/// Resolves `names` once, off any event loop (a thread of its own with its own runtime, so it
/// can be called from inside one), each lookup bounded by `[dns] timeout`. One result per name.
pub fn resolve_blocking(
    s: &DnsSettings,
    names: Vec<DnsName>,
) -> Vec<Result<Vec<SocketAddr>, String>> {
    if names.is_empty() {
        return Vec::new();
    }
    let s = s.clone();
    let n = names.len();
    let run = move || -> Result<Vec<Result<Vec<SocketAddr>, String>>, String> {
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
                        Ok(r) => r.map(|a| a.addrs),
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
/// connections stay), new addresses become new servers (`make`), and the others leave; an
/// entry without an answer (`None`: stale) keeps its servers. Servers not from DNS stay.
/// `None` when nothing changes.
pub fn apply_answers(
    pool: &Pool,
    answers: &[(&Entry, Option<&[SocketAddr]>)],
    make: &dyn Fn(&Entry, SocketAddr) -> Arc<Server>,
) -> Option<Vec<Arc<Server>>> {
    let mut out: Vec<Arc<Server>> = Vec::with_capacity(pool.servers.len());
    let mut changed = false;
    for s in &pool.servers {
        let answer = answers
            .iter()
            .find(|(e, _)| s.from_dns && *s.address == *e.server.name);
        match answer {
            Some((_, Some(addrs))) if !addrs.contains(&s.addr) => changed = true,
            _ => out.push(s.clone()),
        }
    }
    for (e, addrs) in answers {
        for a in addrs.unwrap_or_default() {
            let known = pool
                .servers
                .iter()
                .any(|s| s.from_dns && *s.address == *e.server.name && s.addr == *a);
            if !known {
                out.push(make(e, *a));
                changed = true;
            }
        }
    }
    changed.then_some(out)
}

/// The name a server from DNS goes by: the entry as written, `@`, the address
/// (`api.internal:8080@10.0.0.7`).
pub fn server_name(written: &str, addr: SocketAddr) -> String {
    format!("{written}@{}", addr.ip())
}

/// Counts one lookup of the pool; `failed`: it failed (the last good answer stays).
pub fn count(d: &Discovery, failed: bool) {
    d.lookups.fetch_add(1, Ordering::Relaxed);
    if failed {
        d.failures.fetch_add(1, Ordering::Relaxed);
    }
}
