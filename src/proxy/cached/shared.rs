//! The shared cache's step (`[cache] shared = true`), taken by the in-memory leader of a miss
//! before it goes to the origin: the entry from Redis, or the fleet's lock, or a wait for the
//! instance that holds it (see [`crate::cache::shared`]). An entry found is kept in memory too
//! (not written back) and answered with `Cache-Status: langur; hit; ttl=N; detail=shared`.

use super::{serve, Reply, RouteRt, NAME};
use crate::access_log::AccessLog;
use crate::cache::shared::{Found, Shared};
use crate::cache::{Cache, FlightGuard};
use crate::clock;
use crate::proxy::body::ProxyBody;
use http::Response;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

/// An in-memory miss about to ask the fleet.
pub(super) struct Ask<'a> {
    pub(super) cache: &'a Arc<Cache>,
    pub(super) l2: &'a Shared,
    pub(super) route: &'a RouteRt,
    pub(super) primary: &'a str,
    pub(super) parts: &'a http::request::Parts,
}

impl Ask<'_> {
    /// The answer from Redis, if it has a fresh one for this request (waiting for another
    /// instance's fetch when it holds the lock); `None`: go to the origin (`guard` then holds
    /// the fleet's lock when this instance got it).
    pub(super) async fn fleet(
        &self,
        guard: &mut FlightGuard,
        log: &mut Option<AccessLog>,
    ) -> Option<Response<ProxyBody>> {
        let (req, index) = (&self.parts.headers, self.route.index);
        let obj = match self.l2.find(self.primary, req, index).await {
            Found::Hit(o) => *o,
            Found::Lead(lock) => {
                guard.hold_shared(lock);
                return None;
            }
            Found::Wait => {
                let limit = self.cache.rules.lock_timeout;
                self.l2.wait(self.primary, req, index, limit).await?
            }
            Found::Unavailable => return None,
        };
        let now = clock::now_ms();
        let status = format!("{NAME}; hit; ttl={}; detail=shared", obj.ttl(now));
        self.cache.counters.hits.fetch_add(1, Relaxed);
        // Kept here as well: this instance's next requests, and those waiting on `guard`, are
        // answered from memory.
        let copy = obj.copy_with(obj.headers.clone(), obj.body.clone());
        self.cache.insert_from_fleet(self.primary, req, copy);
        let stored = self.cache.lookup(self.primary, req);
        let how = |home| Reply {
            method: &self.parts.method,
            req,
            compress: self.route.encoding.compress.as_deref(),
            home,
        };
        match stored {
            Some((key, obj)) if obj.route == index => Some(serve(
                &obj,
                &how(Some((self.cache, &key))),
                status,
                "hit",
                log.take(),
            )),
            // Not kept in memory (evicted at once): answered from the record itself.
            _ => Some(serve(&Arc::new(obj), &how(None), status, "hit", log.take())),
        }
    }
}
