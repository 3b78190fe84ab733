//! High availability as the reference describes it, as a pure function of plain numbers.
//!
//! A failed connect counts against the server and stamps the time. After `attempts` consecutive
//! failures the server is *offline*: it is not tried until `offline_timeout` has passed since the
//! last failure; then it is *due for a retry* and exactly one request may try it. A successful
//! connect resets the count. An `offline_timeout` of zero turns the whole mechanism off: every
//! server is always tried (a failed connect still moves the request on to the next server).

use std::time::Duration;

/// The two numbers of the reference document.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HaPolicy {
    /// `AttemptsCount`: consecutive failed connects before a server is offline.
    pub attempts: u32,
    /// `OfflineTimeOut`: how long an offline server is left alone. Zero disables HA.
    pub offline_timeout: Duration,
}

/// Where a server stands for the next request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Availability {
    /// Try it.
    Up,
    /// Known offline: do not connect.
    Offline,
    /// Offline, but its retry time has come: one request may try it (lighttpd2's "down-retry").
    RetryDue,
}

/// `failures` consecutive failed connects, the last one `since_last_failure` ago.
pub fn availability(policy: HaPolicy, failures: u32, since_last_failure: Duration) -> Availability {
    if policy.offline_timeout.is_zero() || failures < policy.attempts {
        Availability::Up
    } else if since_last_failure >= policy.offline_timeout {
        Availability::RetryDue
    } else {
        Availability::Offline
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const P: HaPolicy = HaPolicy {
        attempts: 3,
        offline_timeout: Duration::from_secs(10),
    };

    #[test]
    fn offline_after_attempts_then_retry_due() {
        let s = Duration::from_secs;
        assert_eq!(availability(P, 0, s(0)), Availability::Up);
        assert_eq!(availability(P, 2, s(0)), Availability::Up);
        assert_eq!(availability(P, 3, s(0)), Availability::Offline);
        assert_eq!(availability(P, 3, s(9)), Availability::Offline);
        assert_eq!(availability(P, 3, s(10)), Availability::RetryDue);
        assert_eq!(availability(P, 7, s(11)), Availability::RetryDue);
    }

    #[test]
    fn zero_timeout_disables_ha() {
        let p = HaPolicy {
            attempts: 1,
            offline_timeout: Duration::ZERO,
        };
        assert_eq!(availability(p, 100, Duration::ZERO), Availability::Up);
    }
}
