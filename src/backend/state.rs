//! A server's state carried from one version of it to the next, matched by name (HAProxy's
//! server-state rule): on reload, from the previous snapshot's server of the same name in the
//! same pool; at start, from the state file's record (`[server] state_file`).
//!
//! What goes over: the operator state (`ready`, `drain`, `maint`) and the counters are the
//! server's, so they follow its name; health and failure tracking belong to its address, so
//! they follow only while the address stays the same; a weight or `maxconn` set at run time
//! stays while the configuration still says what it said when the value was set (the file
//! changing it wins).

use super::health::Health;
use super::{Operator, Pool, Server};
use serde::{Deserialize, Serialize};
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

    /// Sets the health its checks found (the request path's and the check machine's).
    fn restore_health(&self, h: Health) {
        self.set_health(h);
        self.machine
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .health = h;
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

/// What the state file keeps of one server.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Saved {
    pub pool: String,
    pub name: String,
    /// `ip:port` or `unix:PATH`: the health below is this address's.
    pub address: String,
    /// `ready`, `drain` or `maint`.
    pub operator: String,
    /// `up`, `drain` or `down`, as the checks found it.
    pub health: String,
    pub weight: u32,
    pub file_weight: u32,
    pub maxconn: usize,
    pub file_maxconn: usize,
}

/// The state file's whole text: a format tag and the servers.
#[derive(Debug, Serialize, Deserialize)]
struct File {
    langur_server_state: u32,
    servers: Vec<Saved>,
}

/// The version of the state file's format this build writes and reads.
const FORMAT: u32 = 1;

/// The state file's text for `pools` (JSON, a server per line of the array).
pub fn snapshot(pools: &[Arc<Pool>]) -> String {
    let r = Ordering::Relaxed;
    let servers = pools
        .iter()
        .flat_map(|p| {
            p.servers.iter().map(|s| Saved {
                pool: p.name.to_string(),
                name: s.name.to_string(),
                address: s.endpoint(),
                operator: s.operator().as_str().to_string(),
                health: s.health().as_str().to_string(),
                weight: s.weight.load(r),
                file_weight: s.file_weight,
                maxconn: s.maxconn.load(r),
                file_maxconn: s.file_maxconn,
            })
        })
        .collect();
    let file = File {
        langur_server_state: FORMAT,
        servers,
    };
    let mut text = serde_json::to_string_pretty(&file).unwrap_or_default();
    text.push('\n');
    text
}

/// The records of a state file's text; an error saying why it is not one this build wrote.
pub fn parse(text: &str) -> Result<Vec<Saved>, String> {
    let file: File =
        serde_json::from_str(text).map_err(|e| format!("not a langur server-state file ({e})"))?;
    if file.langur_server_state != FORMAT {
        return Err(format!(
            "format {} (this langur reads format {FORMAT})",
            file.langur_server_state
        ));
    }
    Ok(file.servers)
}

/// Applies `saved` to the servers of `pools` with the same pool and name: operator state;
/// health when the address is the same and the server has a check (which will correct it);
/// weight and `maxconn` when the configuration did not change them. Returns how many records
/// applied; the others name servers this configuration does not have. A word it does not
/// know leaves that part as it is.
pub fn restore(pools: &[Arc<Pool>], saved: &[Saved]) -> usize {
    let mut applied = 0;
    for rec in saved {
        let Some(p) = pools.iter().find(|p| *p.name == rec.pool) else {
            continue;
        };
        let Some(s) = p.servers.iter().find(|s| *s.name == rec.name) else {
            continue;
        };
        applied += 1;
        if let Some(o) = operator(&rec.operator) {
            s.set_operator(o);
        }
        if let Some(h) = health(&rec.health) {
            if s.check.is_some() && s.endpoint() == rec.address {
                s.restore_health(h);
            }
        }
        s.keep_settings(
            (rec.weight.min(1000), rec.file_weight),
            (rec.maxconn.min(1_000_000), rec.file_maxconn),
        );
    }
    for p in pools {
        p.rebalance();
    }
    applied
}

/// An operator state from its word.
pub fn operator(word: &str) -> Option<Operator> {
    match word {
        "ready" => Some(Operator::Ready),
        "drain" => Some(Operator::Drain),
        "maint" => Some(Operator::Maint),
        _ => None,
    }
}

fn health(word: &str) -> Option<Health> {
    match word {
        "up" => Some(Health::Up),
        "drain" => Some(Health::Drain),
        "down" => Some(Health::Down),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::events::EventLog;

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

    #[test]
    fn the_state_file_round_trips_and_refuses_what_it_did_not_write() {
        let p = pool(&[("a", "127.0.0.1:1"), ("b", "127.0.0.1:2")]);
        p.servers[1].set_operator(Operator::Drain);
        p.set_weight(1, 9);
        let text = snapshot(std::slice::from_ref(&p));
        let saved = parse(&text).unwrap();
        assert_eq!(saved.len(), 2);
        let fresh = pool(&[("b", "127.0.0.1:2"), ("z", "127.0.0.1:3")]);
        assert_eq!(restore(std::slice::from_ref(&fresh), &saved), 1);
        assert_eq!(fresh.servers[0].operator(), Operator::Drain);
        assert_eq!(fresh.servers[0].weight.load(Ordering::Relaxed), 9);
        assert_eq!(fresh.servers[1].operator(), Operator::Ready);
        for bad in ["", "{", "1 srv 2", "{\"servers\": []}", "[]"] {
            assert!(parse(bad).is_err(), "{bad:?}");
        }
        let future = text.replace("\"langur_server_state\": 1", "\"langur_server_state\": 2");
        assert!(parse(&future).unwrap_err().contains("format 2"));
        let odd = text.replace("\"drain\"", "\"sideways\"");
        let fresh = pool(&[("b", "127.0.0.1:2")]);
        restore(std::slice::from_ref(&fresh), &parse(&odd).unwrap());
        assert_eq!(
            fresh.servers[0].operator(),
            Operator::Ready,
            "unknown word ignored"
        );
    }
}
