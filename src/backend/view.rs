//! The pool as the balancer sees it for one request at one moment: which servers are usable
//! (health, operator state, failed connects, `maxconn`, slow start, backups), read once per pick.

use super::*;
use crate::balancer::Candidates;

/// The pool as the balancer sees it for one request at one moment.
pub struct PoolView<'a> {
    pub pool: &'a Pool,
    pub tried: &'a Tried,
    /// The clock, read at most once and only if a server has failures.
    pub now_ms: std::cell::OnceCell<u64>,
    /// Backups' turn: `None` while a non-backup server is usable, else which backups may serve
    /// (`usize::MAX` for all of them). Worked out at most once per view.
    pub backup_turn: std::cell::OnceCell<Option<usize>>,
    /// One roll of the dice per pick, in [0, 1): a server in slow start is usable in this pick
    /// when its ramp exceeds it, so over many picks its share is the ramp.
    pub roll: std::cell::OnceCell<f64>,
    /// Set when a server was passed over only because of its slow start; then a pick that found
    /// nothing is made again with slow start ignored ([`PoolView::pick`]).
    ramp_skipped: std::cell::Cell<bool>,
    ignore_ramp: std::cell::Cell<bool>,
}

impl<'a> PoolView<'a> {
    pub fn new(pool: &'a Pool, tried: &'a Tried) -> PoolView<'a> {
        PoolView {
            pool,
            tried,
            now_ms: Default::default(),
            backup_turn: Default::default(),
            roll: Default::default(),
            ramp_skipped: Default::default(),
            ignore_ramp: Default::default(),
        }
    }

    /// The balancer's pick. Slow start shapes the shares between servers and never refuses a
    /// request: when the only servers that could take it are ramping up, one of them does.
    pub fn pick(
        &self,
        balancer: &dyn crate::balancer::Balancer,
        ctx: &crate::balancer::PickContext,
    ) -> Option<usize> {
        let picked = balancer.pick(self, ctx);
        if picked.is_some() || !self.ramp_skipped.get() {
            return picked;
        }
        self.ignore_ramp.set(true);
        let again = balancer.pick(self, ctx);
        self.ignore_ramp.set(false);
        again
    }

    /// May the server a client's cookie names take its request? As HAProxy does, a server
    /// that drains still serves the clients it has (draining is for new ones); one in
    /// maintenance, down, offline after failed connects, at its `maxconn`, or tried already by
    /// this request does not, and the request is balanced as if it had no cookie. Slow start
    /// and backups do not matter: the client is the server's already.
    pub fn persists(&self, i: usize) -> bool {
        let Some(s) = self.pool.servers.get(i) else {
            return false;
        };
        !self.tried.contains(i)
            && s.operator() != Operator::Maint
            && s.health() != Health::Down
            && !s.overloaded()
            && s.availability(self.pool.ha, &|| self.now()) != Availability::Offline
    }

    pub fn now(&self) -> u64 {
        *self.now_ms.get_or_init(crate::clock::now_ms)
    }

    fn backup_turn(&self) -> Option<usize> {
        *self.backup_turn.get_or_init(|| {
            let now = || self.now();
            let servers = &self.pool.servers;
            let primary = servers
                .iter()
                .enumerate()
                .any(|(i, s)| !s.backup && !self.tried.contains(i) && self.pool.alive(s, &now));
            if primary {
                None
            } else if self.pool.all_backups {
                Some(usize::MAX)
            } else {
                // The first backup that can serve takes it all.
                servers
                    .iter()
                    .enumerate()
                    .find(|(i, s)| s.backup && !self.tried.contains(*i) && self.pool.alive(s, &now))
                    .map(|(i, _)| i)
            }
        })
    }
}

impl Candidates for PoolView<'_> {
    fn len(&self) -> usize {
        self.pool.servers.len()
    }
    fn weight(&self, i: usize) -> u32 {
        self.pool.servers[i].weight.load(Ordering::Relaxed)
    }
    fn in_flight(&self, i: usize) -> usize {
        self.pool.servers[i].in_flight.load(Ordering::Relaxed)
    }
    fn latency(&self, i: usize) -> f64 {
        self.pool.servers[i].latency_us()
    }
    #[inline]
    fn usable(&self, i: usize) -> bool {
        self.refusal(i).is_none()
    }
}

/// Why a pick passes over a server ([`PoolView::refusal`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// This request already tried it.
    Tried,
    /// At its `maxconn`, or backing off after a 503 or a connect timeout.
    Overloaded,
    /// Not alive: the operator's `drain` or `maint`, health down or draining, or offline after
    /// failed connects ([`Server::state_word`] names which).
    NotAlive,
    /// In slow start, and this pick's roll is over its ramp.
    SlowStart,
    /// A backup, and some non-backup server is usable.
    Backup,
    /// A backup, and another backup takes the load (`all_backups` off).
    OtherBackup,
}

impl Refusal {
    /// A few words for people (`langur explain`).
    pub fn as_str(self) -> &'static str {
        match self {
            Refusal::Tried => "already tried",
            Refusal::Overloaded => "overloaded (at maxconn or backing off)",
            Refusal::NotAlive => "not alive",
            Refusal::SlowStart => "slow start (this pick's share passed it over)",
            Refusal::Backup => "backup (a non-backup server is usable)",
            Refusal::OtherBackup => "backup (the first usable backup takes the load)",
        }
    }
}

impl PoolView<'_> {
    /// Why server `i` is not usable for this pick, or `None` when it is: the one decision the
    /// balancers see through [`Candidates::usable`].
    #[inline]
    pub fn refusal(&self, i: usize) -> Option<Refusal> {
        let s = &self.pool.servers[i];
        // Backups wait for primaries to be down, not merely full (those requests queue).
        if self.tried.contains(i) {
            return Some(Refusal::Tried);
        }
        if s.overloaded() {
            return Some(Refusal::Overloaded);
        }
        if !self.pool.alive(s, &|| self.now()) {
            return Some(Refusal::NotAlive);
        }
        if !self.pool.slowstart.is_zero() && !self.ignore_ramp.get() {
            let ramp = s.ramp(self.pool.slowstart, &|| self.now());
            if ramp < 1.0 {
                let roll = *self
                    .roll
                    .get_or_init(|| self.pool.dice.below(1 << 20) as f64 / (1u64 << 20) as f64);
                if roll >= ramp {
                    self.ramp_skipped.set(true);
                    return Some(Refusal::SlowStart);
                }
            }
        }
        if !self.pool.has_backups {
            return None;
        }
        match self.backup_turn() {
            None if s.backup => Some(Refusal::Backup),
            Some(usize::MAX) if !s.backup => Some(Refusal::NotAlive),
            Some(first) if first != usize::MAX && i != first => Some(match s.backup {
                true => Refusal::OtherBackup,
                false => Refusal::NotAlive,
            }),
            _ => None,
        }
    }
}
