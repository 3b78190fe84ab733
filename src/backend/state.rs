//! A server's state carried from one version of it to the next, matched by name (HAProxy's
//! server-state rule): on reload, from the previous snapshot's server of the same name in the
//! same pool.
//!
//! What goes over: the operator state (`ready`, `drain`, `maint`) and the counters are the
//! server's, so they follow its name; health and failure tracking belong to its address, so
//! they follow only while the address stays the same; a weight or `maxconn` set at run time
//! stays while the configuration still says what it said when the value was set (the file
//! changing it wins).

use super::Server;
use std::sync::atomic::Ordering;
use std::sync::Arc;

impl Server {
    /// Whether `other` is at this server's address (the same address, or the same Unix-domain
    /// socket).
    pub fn same_endpoint(&self, other: &Server) -> bool {
        self.addr == other.addr && self.unix == other.unix
    }

    /// The address as one string: `ip:port`, or `unix:PATH`.
    pub fn endpoint(&self) -> String {
        match &self.unix {
            Some(p) => format!("unix:{}", p.display()),
            None => self.addr.to_string(),
        }
    }

    /// Takes over the state of its predecessor `old` (on reload): operator state and counters;
    /// health, failure tracking and latency only when `old` is at the same address; the
    /// weight and `maxconn` `old` had when the configuration did not change them.
    pub fn carry_from(&self, old: &Server) {
        let r = Ordering::Relaxed;
        self.operator.store(old.operator.load(r), r);
        for (a, b) in [
            (&self.requests, &old.requests),
            (&self.errors, &old.errors),
            (&self.redispatched, &old.redispatched),
            (&self.connect_failures_total, &old.connect_failures_total),
            (&self.check_failures, &old.check_failures),
            (&self.downs, &old.downs),
        ] {
            a.store(b.load(r), r);
        }
        for (a, b) in self.responses.iter().zip(&old.responses) {
            a.store(b.load(r), r);
        }
        self.max_in_flight.store(old.max_in_flight.load(r), r);
        self.latency.copy_from(&old.latency);
        self.keep_settings(
            (old.weight.load(r), old.file_weight),
            (old.maxconn.load(r), old.file_maxconn),
        );
        if self.same_endpoint(old) {
            self.carry_health(old);
        }
    }

    /// Health, failure tracking, slow start and the response-time average of `old`, at the
    /// same address.
    fn carry_health(&self, old: &Server) {
        let r = Ordering::Relaxed;
        self.health.store(old.health.load(r), r);
        for (a, b) in [
            (&self.last_failure_ms, &old.last_failure_ms),
            (&self.last_change_ms, &old.last_change_ms),
            (&self.up_since_ms, &old.up_since_ms),
            (&self.backoff_until_ms, &old.backoff_until_ms),
            (&self.ewma_us, &old.ewma_us),
            (&self.ewma_at_ms, &old.ewma_at_ms),
        ] {
            a.store(b.load(r), r);
        }
        self.failures.store(old.failures.load(r), r);
        self.passive_errors.store(old.passive_errors.load(r), r);
        let prev = old
            .machine
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let mut m = self.machine.lock().unwrap_or_else(|p| p.into_inner());
        m.health = prev.health;
        m.against = prev.against.min(m.thresholds.rise.max(m.thresholds.fall));
        m.last = prev.last;
    }

    /// `(weight now, weight configured)` and the same for `maxconn`, of a predecessor: each
    /// value set at run time is kept when the configuration still says what it said then.
    fn keep_settings(&self, weight: (u32, u32), maxconn: (usize, usize)) {
        if weight.1 == self.file_weight {
            self.weight.store(weight.0, Ordering::Relaxed);
        }
        if maxconn.1 == self.file_maxconn {
            self.maxconn.store(maxconn.0, Ordering::Relaxed);
        }
    }
}

/// The server of `old` that `s` (one of `new`) continues: the one with its name, else (a
/// server renamed in the file) the one at its address whose name no server of `new` has.
pub fn predecessor<'a>(
    s: &Server,
    new: &[Arc<Server>],
    old: &'a [Arc<Server>],
) -> Option<&'a Arc<Server>> {
    old.iter().find(|x| x.name == s.name).or_else(|| {
        old.iter()
            .find(|x| x.same_endpoint(s) && !new.iter().any(|n| n.name == x.name))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::events::EventLog;
    use crate::backend::health::Health;
    use crate::backend::{Operator, Pool};

    fn pool(servers: &[(&str, &str)]) -> Arc<Pool> {
        let mut list = String::new();
        for (name, addr) in servers {
            list.push_str(&format!("{{ name = '{name}', address = '{addr}' }},"));
        }
        let c = crate::config::parse_str(
            "t.toml",
            &format!("[[route]]\npath_prefix = '/'\npool = 'p'\n[pools.p]\nserver = [{list}]\n"),
            true,
        )
        .unwrap();
        Arc::new(Pool::from_config(
            &c.pools[0],
            1,
            Arc::new(EventLog::default()),
        ))
    }

    #[test]
    fn a_server_is_continued_by_name_and_a_renamed_one_by_address() {
        let old = pool(&[("a", "127.0.0.1:1"), ("b", "127.0.0.1:2")]);
        let new = pool(&[("a", "127.0.0.1:9"), ("c", "127.0.0.1:2")]);
        let by = |i: usize| predecessor(&new.servers[i], &new.servers, &old.servers);
        assert_eq!(by(0).map(|s| &*s.name), Some("a"), "same name, new address");
        assert_eq!(by(1).map(|s| &*s.name), Some("b"), "renamed, same address");
        let swapped = pool(&[("b", "127.0.0.1:1"), ("a", "127.0.0.1:2")]);
        let by = |i: usize| predecessor(&swapped.servers[i], &swapped.servers, &old.servers);
        assert_eq!(by(0).map(|s| &*s.name), Some("b"), "the name wins");
    }

    #[test]
    fn operator_state_follows_the_name_health_the_address() {
        let old = pool(&[("a", "127.0.0.1:1")]);
        old.servers[0].set_operator(Operator::Maint);
        old.servers[0].set_health(Health::Down);
        old.servers[0].requests.store(7, Ordering::Relaxed);
        let moved = pool(&[("a", "127.0.0.1:9")]);
        moved.servers[0].carry_from(&old.servers[0]);
        assert_eq!(moved.servers[0].operator(), Operator::Maint);
        assert_eq!(moved.servers[0].requests.load(Ordering::Relaxed), 7);
        assert_eq!(
            moved.servers[0].health(),
            Health::Up,
            "a new address starts up"
        );
        let same = pool(&[("a", "127.0.0.1:1")]);
        same.servers[0].carry_from(&old.servers[0]);
        assert_eq!(same.servers[0].health(), Health::Down);
    }

    #[test]
    fn a_weight_set_at_run_time_stays_until_the_file_changes_it() {
        let old = pool(&[("a", "127.0.0.1:1")]);
        old.set_weight(0, 7);
        old.servers[0].maxconn.store(3, Ordering::Relaxed);
        let same = pool(&[("a", "127.0.0.1:1")]);
        same.servers[0].carry_from(&old.servers[0]);
        assert_eq!(same.servers[0].weight.load(Ordering::Relaxed), 7);
        assert_eq!(same.servers[0].maxconn.load(Ordering::Relaxed), 3);
        let c = crate::config::parse_str(
            "t.toml",
            "[[route]]\npath_prefix = '/'\npool = 'p'\n[pools.p]\nserver = [{ name = 'a', address = '127.0.0.1:1', weight = 5 }]\n",
            true,
        )
        .unwrap();
        let changed = Pool::from_config(&c.pools[0], 1, Arc::new(EventLog::default()));
        changed.servers[0].carry_from(&old.servers[0]);
        assert_eq!(
            changed.servers[0].weight.load(Ordering::Relaxed),
            5,
            "the file wins"
        );
        assert_eq!(changed.servers[0].maxconn.load(Ordering::Relaxed), 3);
    }
}
