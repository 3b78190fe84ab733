//! Server health as HAProxy models it, as a pure state machine: results in, transitions out.
//!
//! Active checks and passive observation both feed [`HealthMachine::observe`] with a
//! [`CheckStatus`]. A server that is up goes down after `fall` consecutive failures; a server that
//! is down comes up after `rise` consecutive successes. Between the first failure and `fall` a
//! change is *pending* and checks run at `fastinter`; while down they run at `downinter`. A server
//! starts up (status `INI`) and stays up until its checks say otherwise, as HAProxy does, so a
//! restart of langur never takes healthy servers out of rotation while the first checks run.
//!
//! `L7OKC` (a 404 with `disable_on_404`) is a success that puts the server in *drain*: alive,
//! keeping its requests in flight, but given no new ones.

use std::fmt;
use std::time::Duration;

/// HAProxy's check status codes, with the same meanings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CheckStatus {
    Unk,
    Ini,
    SockErr,
    L4Ok,
    L4Tout,
    L4Con,
    L6Ok,
    L6Tout,
    L6Rsp,
    L7Ok,
    L7OkC,
    L7Tout,
    L7Rsp,
    L7Sts,
}

impl CheckStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            CheckStatus::Unk => "UNK",
            CheckStatus::Ini => "INI",
            CheckStatus::SockErr => "SOCKERR",
            CheckStatus::L4Ok => "L4OK",
            CheckStatus::L4Tout => "L4TOUT",
            CheckStatus::L4Con => "L4CON",
            CheckStatus::L6Ok => "L6OK",
            CheckStatus::L6Tout => "L6TOUT",
            CheckStatus::L6Rsp => "L6RSP",
            CheckStatus::L7Ok => "L7OK",
            CheckStatus::L7OkC => "L7OKC",
            CheckStatus::L7Tout => "L7TOUT",
            CheckStatus::L7Rsp => "L7RSP",
            CheckStatus::L7Sts => "L7STS",
        }
    }

    /// HAProxy's description of the code.
    pub fn description(self) -> &'static str {
        match self {
            CheckStatus::Unk => "unknown",
            CheckStatus::Ini => "initializing",
            CheckStatus::SockErr => "socket error",
            CheckStatus::L4Ok => "Layer4 check passed",
            CheckStatus::L4Tout => "Layer1-4 timeout",
            CheckStatus::L4Con => "Layer1-4 connection problem",
            CheckStatus::L6Ok => "Layer6 check passed",
            CheckStatus::L6Tout => "Layer6 timeout",
            CheckStatus::L6Rsp => "Layer6 invalid response",
            CheckStatus::L7Ok => "Layer7 check passed",
            CheckStatus::L7OkC => "Layer7 check conditionally passed",
            CheckStatus::L7Tout => "Layer7 timeout",
            CheckStatus::L7Rsp => "Layer7 invalid response",
            CheckStatus::L7Sts => "Layer7 wrong status",
        }
    }

    pub fn is_success(self) -> bool {
        matches!(
            self,
            CheckStatus::L4Ok | CheckStatus::L6Ok | CheckStatus::L7Ok | CheckStatus::L7OkC
        )
    }
}

impl fmt::Display for CheckStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The outcome of one check (or one passive observation).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckResult {
    pub status: CheckStatus,
    /// The layer-7 code (e.g. the HTTP status), when there is one.
    pub code: Option<u16>,
    /// A short human description of what happened.
    pub detail: String,
    pub duration: Duration,
}

impl CheckResult {
    pub fn new(
        status: CheckStatus,
        code: Option<u16>,
        detail: impl Into<String>,
        duration: Duration,
    ) -> Self {
        CheckResult {
            status,
            code,
            detail: detail.into(),
            duration,
        }
    }
}

/// Health as the balancer sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Health {
    Up,
    /// Alive but asked (by `L7OKC`) to take no new requests.
    Drain,
    Down,
}

impl Health {
    pub fn as_str(self) -> &'static str {
        match self {
            Health::Up => "up",
            Health::Drain => "drain",
            Health::Down => "down",
        }
    }
}

/// `rise` and `fall` (HAProxy's words).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Thresholds {
    pub rise: u32,
    pub fall: u32,
}

/// A change of health, to be logged once and counted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transition {
    pub from: Health,
    pub to: Health,
    pub result: CheckResult,
}

/// Which interval the next check waits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pace {
    /// Steady state: `interval`.
    Normal,
    /// A change is pending: `fastinter`.
    Fast,
    /// Down: `downinter`.
    Down,
}

/// One server's health.
#[derive(Debug, Clone)]
pub struct HealthMachine {
    pub thresholds: Thresholds,
    pub health: Health,
    /// Consecutive results against the current health (failures while up, successes while down).
    pub against: u32,
    pub last: CheckResult,
    /// A passive `fastinter` request: check sooner, once.
    pub hurry: bool,
}

impl HealthMachine {
    pub fn new(thresholds: Thresholds) -> HealthMachine {
        HealthMachine {
            thresholds: Thresholds {
                rise: thresholds.rise.max(1),
                fall: thresholds.fall.max(1),
            },
            health: Health::Up,
            against: 0,
            last: CheckResult::new(CheckStatus::Ini, None, "not checked yet", Duration::ZERO),
            hurry: false,
        }
    }

    /// Feeds one result; returns the transition if health changed.
    pub fn observe(&mut self, result: CheckResult) -> Option<Transition> {
        let ok = result.status.is_success();
        let from = self.health;
        let target = match (from, ok) {
            (Health::Down, false) => {
                self.against = 0;
                None
            }
            (Health::Down, true) => {
                self.against += 1;
                (self.against >= self.thresholds.rise).then_some(self.alive_health(&result))
            }
            (_, false) => {
                self.against += 1;
                (self.against >= self.thresholds.fall).then_some(Health::Down)
            }
            (_, true) => {
                self.against = 0;
                let h = self.alive_health(&result);
                (h != from).then_some(h)
            }
        };
        self.last = result.clone();
        let to = target?;
        self.health = to;
        self.against = 0;
        Some(Transition { from, to, result })
    }

    fn alive_health(&self, result: &CheckResult) -> Health {
        if result.status == CheckStatus::L7OkC {
            Health::Drain
        } else {
            Health::Up
        }
    }

    /// Passive `sudden-death`: as if every check but the last allowed one had failed.
    pub fn sudden_death(&mut self) {
        if self.health != Health::Down {
            self.against = self.against.max(self.thresholds.fall.saturating_sub(1));
        }
    }

    /// Passive `mark-down`: down at once.
    pub fn mark_down(&mut self, result: CheckResult) -> Option<Transition> {
        if self.health == Health::Down {
            return None;
        }
        let from = self.health;
        self.health = Health::Down;
        self.against = 0;
        self.last = result.clone();
        Some(Transition {
            from,
            to: Health::Down,
            result,
        })
    }

    /// Which interval the next check should wait.
    pub fn pace(&self) -> Pace {
        if self.hurry || (self.against > 0 && self.health != Health::Down) {
            Pace::Fast
        } else if self.health == Health::Down {
            if self.against > 0 {
                Pace::Fast
            } else {
                Pace::Down
            }
        } else {
            Pace::Normal
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(status: CheckStatus) -> CheckResult {
        CheckResult::new(status, None, "", Duration::from_millis(1))
    }

    const T: Thresholds = Thresholds { rise: 2, fall: 3 };

    #[test]
    fn starts_up_and_falls_after_fall_failures() {
        let mut m = HealthMachine::new(T);
        assert_eq!(m.health, Health::Up);
        assert_eq!(m.last.status, CheckStatus::Ini);
        assert_eq!(m.observe(r(CheckStatus::L4Con)), None);
        assert_eq!(m.pace(), Pace::Fast, "a change is pending");
        assert_eq!(m.observe(r(CheckStatus::L4Con)), None);
        let t = m.observe(r(CheckStatus::L4Con)).expect("down after 3");
        assert_eq!((t.from, t.to), (Health::Up, Health::Down));
        assert_eq!(t.result.status, CheckStatus::L4Con);
        assert_eq!(m.pace(), Pace::Down);
        assert_eq!(
            m.observe(r(CheckStatus::L4Con)),
            None,
            "no second transition"
        );
    }

    #[test]
    fn a_success_in_between_resets_the_count() {
        let mut m = HealthMachine::new(T);
        m.observe(r(CheckStatus::L7Sts));
        m.observe(r(CheckStatus::L7Sts));
        assert_eq!(m.observe(r(CheckStatus::L7Ok)), None);
        assert_eq!(m.pace(), Pace::Normal);
        m.observe(r(CheckStatus::L7Sts));
        m.observe(r(CheckStatus::L7Sts));
        assert_eq!(m.health, Health::Up);
    }

    #[test]
    fn rises_after_rise_successes() {
        let mut m = HealthMachine::new(T);
        m.mark_down(r(CheckStatus::L7Sts)).unwrap();
        assert_eq!(m.observe(r(CheckStatus::L7Ok)), None);
        assert_eq!(m.pace(), Pace::Fast);
        let t = m.observe(r(CheckStatus::L7Ok)).unwrap();
        assert_eq!((t.from, t.to), (Health::Down, Health::Up));
        assert_eq!(m.pace(), Pace::Normal);
    }

    #[test]
    fn not_found_with_disable_on_404_drains() {
        let mut m = HealthMachine::new(T);
        let t = m.observe(r(CheckStatus::L7OkC)).unwrap();
        assert_eq!((t.from, t.to), (Health::Up, Health::Drain));
        let t = m.observe(r(CheckStatus::L7Ok)).unwrap();
        assert_eq!((t.from, t.to), (Health::Drain, Health::Up));
        // drain -> down after fall failures, like up
        m.observe(r(CheckStatus::L7OkC));
        for _ in 0..2 {
            assert_eq!(m.observe(r(CheckStatus::L4Con)), None);
        }
        assert_eq!(m.observe(r(CheckStatus::L4Con)).unwrap().to, Health::Down);
    }

    #[test]
    fn sudden_death_leaves_one_failure() {
        let mut m = HealthMachine::new(T);
        m.sudden_death();
        assert_eq!(m.observe(r(CheckStatus::L7Sts)).unwrap().to, Health::Down);
    }
}
