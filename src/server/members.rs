//! A pool's servers changed at run time (DNS answers, the admin API's `POST` and `DELETE`),
//! without a reload: the pool is built again around the new list and the snapshot swapped with
//! it, so a request sees one whole list and the request path takes no lock.

use super::*;
use crate::backend::{Operator, Server};

/// Changes the servers of pool `pool`: `f` gets the pool as it is and gives its new list
/// (`None`: no change). Servers kept are the same objects (state, counters and connections
/// go on); a server that leaves is drained (its requests in flight finish, nothing new goes
/// to it, even from a request that still reads the previous snapshot) and dropped with its
/// last request. The pool's checkers start again for the new list. One change (or reload) at
/// a time. Returns the new pool, or `None` when the pool does not exist or nothing changed.
pub fn change_servers(
    shared: &Shared,
    pool: &str,
    f: impl FnOnce(&Pool) -> Option<Vec<Arc<Server>>>,
) -> Option<Arc<Pool>> {
    let _one = lock(&shared.reloading);
    let rt = shared.runtime.load_full();
    let i = rt.pools.iter().position(|p| &*p.name == pool)?;
    let old = &rt.pools[i];
    let next = Arc::new(old.with_servers(f(old)?));
    let mut snapshot = (*rt).clone();
    snapshot.pools[i] = next.clone();
    shared.runtime.store(Arc::new(snapshot));
    for s in old.servers.iter().filter(|s| !has(&next, s)) {
        s.set_operator(Operator::Drain);
        tracing::info!(pool, server = %s.name, in_flight = s.in_flight.load(std::sync::atomic::Ordering::Relaxed), "server removed; its requests in flight finish");
    }
    for s in next.servers.iter().filter(|s| !has(old, s)) {
        tracing::info!(pool, server = %s.name, "server added");
    }
    {
        let mut checkers = lock(&shared.checkers);
        checkers.retain(|(p, h)| {
            let ours = &**p == pool;
            if ours {
                h.abort();
            }
            !ours
        });
        let name: Arc<str> = next.name.clone();
        checkers.extend(
            crate::backend::monitor::spawn_pool_checkers(&next)
                .into_iter()
                .map(|h| (name.clone(), h)),
        );
    }
    // Waiters look again: the pool may have gained a server.
    next.queue.wake_all();
    Some(next)
}

/// Is `s` (this very object) one of `pool`'s servers?
fn has(pool: &Pool, s: &Arc<Server>) -> bool {
    pool.servers.iter().any(|x| Arc::ptr_eq(x, s))
}
