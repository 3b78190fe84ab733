//! Servers named by DNS, followed: a task per pool that has some asks again when the answers
//! expire (their TTL within the pool's `dns_min_ttl` and `dns_max_ttl`) and changes the pool's
//! servers to match. A failed lookup keeps the last good addresses (a warning and a count).

use super::*;
use crate::backend::dns::{apply_answers, count, Entry, Found, Resolver};
use crate::config::dns::DnsPolicy;
use std::sync::Weak;

/// Starts a task for every pool of `config` with servers named by DNS. None when the resolver
/// cannot be made (an error line; the pools keep the addresses they have).
pub(super) fn spawn(shared: &Arc<Shared>, config: &Config) -> Vec<JoinHandle<()>> {
    let followed: Vec<(String, Vec<Entry>, DnsPolicy)> = config
        .pools
        .iter()
        .map(|p| {
            let entries = p
                .servers
                .iter()
                .filter_map(|s| {
                    s.dns.clone().map(|name| Entry {
                        name,
                        server: s.clone(),
                    })
                })
                .collect::<Vec<_>>();
            (p.name.clone(), entries, p.dns)
        })
        .filter(|(_, e, _)| !e.is_empty())
        .collect();
    if followed.is_empty() {
        return Vec::new();
    }
    let resolver = match Resolver::new(&config.dns) {
        Ok(r) => r,
        Err(e) => {
            tracing::error!(error = %e, "server names will not be followed");
            return Vec::new();
        }
    };
    followed
        .into_iter()
        .map(|(pool, entries, policy)| {
            let (shared, resolver) = (Arc::downgrade(shared), resolver.clone());
            tokio::spawn(follow(shared, pool, entries, policy, resolver))
        })
        .collect()
}

/// Asks for the pool's names now, then again as their answers expire, until the instance
/// goes (or a reload replaces this task).
async fn follow(
    shared: Weak<Shared>,
    pool: String,
    entries: Vec<Entry>,
    policy: DnsPolicy,
    resolver: Resolver,
) {
    let mut delay = Duration::ZERO;
    loop {
        tokio::time::sleep(delay).await;
        let Some(shared) = shared.upgrade() else {
            return;
        };
        delay = refresh(&shared, &pool, &entries, policy, &resolver).await;
    }
}

/// One round: every name of the pool asked, the pool changed to match; returns when to ask
/// again (the shortest refresh time of the answers, `dns_min_ttl` after a failure).
async fn refresh(
    shared: &Shared,
    pool: &str,
    entries: &[Entry],
    policy: DnsPolicy,
    resolver: &Resolver,
) -> Duration {
    let Some(discovery) = shared
        .runtime
        .load()
        .pools
        .iter()
        .find(|p| &*p.name == pool)
        .map(|p| p.discovery.clone())
    else {
        return policy.max_ttl;
    };
    let mut next = policy.max_ttl;
    let mut answers: Vec<Option<Vec<Found>>> = Vec::with_capacity(entries.len());
    for e in entries {
        // The resolver's timeout bounds each query; this bounds the whole lookup.
        let limit = Duration::from_secs(10);
        let got = match tokio::time::timeout(limit, resolver.lookup(&e.name)).await {
            Ok(r) => r,
            Err(_) => Err(format!("no answer within {limit:?}")),
        };
        let why = match got {
            Ok(a) if !a.found.is_empty() || policy.allow_empty => {
                count(&discovery, false);
                next = next.min(policy.refresh_after(a.ttl));
                answers.push(Some(a.found));
                continue;
            }
            Ok(_) => "it has no address".to_string(),
            Err(e) => e,
        };
        count(&discovery, true);
        next = next.min(policy.min_ttl);
        tracing::warn!(pool, server = %e.server.name, error = %why, "lookup failed; its last addresses stay in use");
        answers.push(None);
    }
    discovery.stale.store(
        answers.iter().any(Option::is_none),
        std::sync::atomic::Ordering::Relaxed,
    );
    let pairs: Vec<(&Entry, Option<&[Found]>)> = entries
        .iter()
        .zip(&answers)
        .map(|(e, a)| (e, a.as_deref()))
        .collect();
    members::change_servers(shared, pool, |p| {
        apply_answers(p, &pairs, &|e, found| {
            let s = p.server_from(&e.server, found);
            // A new address starts with slow start, as a server that comes up does.
            if !p.slowstart.is_zero() {
                s.came_up();
            }
            s
        })
    });
    next
}
