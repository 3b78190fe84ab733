//! Health in motion: a checker task per checked server, passive observation of live traffic, and
//! the one place a transition is applied (state flip, one warning line, counters, the event log,
//! and the session shutdowns the pool asks for).

use super::events::Event;
use super::health::{CheckResult, CheckStatus, Health, Pace, Transition};
use super::probe::probe;
use super::Pool;
use crate::config::{ObserveConfig, ObserveMode, OnError};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

/// Whether the reference's high availability has the server offline (its failed connects
/// reached `attempts`).
fn ha_offline(pool: &Pool, server: &super::Server) -> bool {
    !pool.ha.offline_timeout.is_zero() && server.consecutive_failures() >= pool.ha.attempts
}

/// The bookkeeping every transition shares: one warning line, the counters, the health log.
/// `counts`: whether this is the server going out of service (the other mechanism, checks or
/// failed connects, may already have taken it out: one outage is one `down`).
fn record(pool: &Pool, server: &super::Server, e: Event, duration: Duration, counts: bool) {
    server
        .last_change_ms
        .store(crate::clock::now_ms(), Ordering::Relaxed);
    if e.to == Health::Down && counts {
        server.downs.fetch_add(1, Ordering::Relaxed);
    }
    if e.from == Health::Down && e.to == Health::Up {
        server.came_up();
    }
    tracing::warn!(
        pool = %pool.name,
        server = %server.name,
        from = e.from.as_str(),
        to = e.to.as_str(),
        check_status = e.status.as_str(),
        check_code = e.code.unwrap_or(0),
        check_duration_ms = duration.as_millis() as u64,
        reason = %e.reason,
        "server health changed"
    );
    pool.events.push(e);
}

fn event(
    pool: &Pool,
    server: &super::Server,
    from: Health,
    to: Health,
    status: CheckStatus,
    code: Option<u16>,
    reason: String,
) -> Event {
    Event {
        at_unix: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0),
        pool: pool.name.to_string(),
        server: server.name.to_string(),
        from,
        to,
        status,
        code,
        reason,
    }
}

/// Applies a transition of server `idx` of `pool`: the flip, the bookkeeping, and the session
/// shutdowns the pool asks for.
pub fn apply(pool: &Pool, idx: usize, t: &Transition) {
    let server = &pool.servers[idx];
    server.set_health(t.to);
    let e = event(
        pool,
        server,
        t.from,
        t.to,
        t.result.status,
        t.result.code,
        t.result.detail.clone(),
    );
    let counts = !ha_offline(pool, server);
    record(pool, server, e, t.result.duration, counts);
    // Waiters look again: a server went away (maybe the last) or came back.
    pool.queue.wake_all();
    if t.to == Health::Down && pool.shutdown_sessions_on_down {
        server.kill_sessions();
    }
    if t.from == Health::Down
        && t.to != Health::Down
        && !server.backup
        && pool.shutdown_backup_sessions_on_up
    {
        for b in pool.servers.iter().filter(|s| s.backup) {
            b.kill_sessions();
        }
    }
}

/// The reference's high availability took a server offline (`up == false`) or back: recorded
/// like a health transition.
pub fn availability_changed(pool: &Pool, server: &super::Server, up: bool, reason: String) {
    let (from, to, status) = if up {
        (Health::Down, Health::Up, CheckStatus::L4Ok)
    } else {
        (Health::Up, Health::Down, CheckStatus::L4Con)
    };
    let counts = server.health() != Health::Down;
    record(
        pool,
        server,
        event(pool, server, from, to, status, None, reason),
        Duration::ZERO,
        counts,
    );
}

/// Feeds one check result to server `idx`'s state machine; applies a transition if any.
pub fn record_check(pool: &Pool, idx: usize, result: CheckResult) {
    let server = &pool.servers[idx];
    let ok = result.status.is_success();
    if !ok {
        server.check_failures.fetch_add(1, Ordering::Relaxed);
    } else if server.consecutive_failures() > 0 {
        // A passing check connected: failed connects of live traffic are over, and a server
        // they took offline is back now rather than at the end of `offline_timeout`.
        let was_offline = ha_offline(pool, server);
        server.connect_succeeded();
        if was_offline {
            availability_changed(pool, server, true, "health check passed".into());
        }
    }
    let transition = {
        let mut m = server.machine.lock().unwrap_or_else(|e| e.into_inner());
        // The health log: failures while up and successes while down, not routine successes.
        if !ok && m.health != Health::Down {
            tracing::info!(pool = %pool.name, server = %server.name, check_status = result.status.as_str(),
                check_code = result.code.unwrap_or(0), reason = %result.detail, "health check failed");
        } else if ok && m.health == Health::Down {
            tracing::info!(pool = %pool.name, server = %server.name, check_status = result.status.as_str(),
                check_code = result.code.unwrap_or(0), "health check passed while down");
        }
        m.hurry = false;
        m.observe(result)
    };
    if let Some(t) = transition {
        apply(pool, idx, &t);
    }
}

/// The delay before the next check of a server.
fn next_delay(pool: &Pool, idx: usize) -> Duration {
    let server = &pool.servers[idx];
    let Some(check) = &server.check else {
        return Duration::from_secs(3600);
    };
    let pace = server
        .machine
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .pace();
    match pace {
        Pace::Normal => check.interval,
        Pace::Fast => check.fastinter,
        Pace::Down => check.downinter,
    }
}

/// Checks server `idx` forever, starting after `first`.
pub async fn run_checker(pool: Arc<Pool>, idx: usize, first: Duration) {
    let server = pool.servers[idx].clone();
    let Some(check) = server.check.clone() else {
        return;
    };
    let body_re = check
        .expect_body
        .as_deref()
        .and_then(|b| regex::Regex::new(b).ok());
    let mut delay = first;
    loop {
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = server.hurry.notified() => {}
        }
        // A server in maintenance is not checked (HAProxy's MAINT); leaving it hurries a check.
        if server.operator() == super::Operator::Maint {
            delay = check.interval;
            continue;
        }
        let how = super::probe::Transport {
            tls: pool.tls.as_ref(),
            host: &server.address,
            h2: pool.protocol == crate::config::Protocol::H2,
            send_proxy: pool.send_proxy,
            unix: server.unix.as_deref(),
        };
        let result = probe(server.addr, &check, body_re.as_ref(), how).await;
        record_check(&pool, idx, result);
        delay = next_delay(&pool, idx);
    }
}

/// Starts the checkers of every checked server, spread over each pool's interval so they do not
/// all fire at once; each with its pool's name.
pub fn spawn_checkers(pools: &[Arc<Pool>]) -> Vec<(Arc<str>, tokio::task::JoinHandle<()>)> {
    pools
        .iter()
        .flat_map(|p| {
            spawn_pool_checkers(p)
                .into_iter()
                .map(|h| (p.name.clone(), h))
        })
        .collect()
}

/// Starts the checkers of one pool's checked servers, spread over its interval.
pub fn spawn_pool_checkers(pool: &Arc<Pool>) -> Vec<tokio::task::JoinHandle<()>> {
    let checked: Vec<usize> = (0..pool.servers.len())
        .filter(|&i| pool.servers[i].check.is_some())
        .collect();
    let n = checked.len().max(1) as u32;
    let mut handles = Vec::new();
    for (k, &i) in checked.iter().enumerate() {
        let interval = pool.servers[i]
            .check
            .as_ref()
            .map(|c| c.interval)
            .unwrap_or_default();
        let first = interval * k as u32 / n;
        handles.push(tokio::spawn(run_checker(pool.clone(), i, first)));
    }
    handles
}

/// What live traffic showed about a server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Seen {
    Ok,
    /// Connect failure or reset (layer 4).
    L4Error,
    /// An invalid response (layer 7).
    BadResponse,
    /// A 5xx status (layer 7).
    Status(u16),
}

/// Passive observation: counts errors in live traffic and acts at `error_limit`.
pub fn observe(pool: &Pool, idx: usize, seen: Seen) {
    let server = &pool.servers[idx];
    count(server, seen);
    let Some(obs) = pool.observe else { return };
    let Some(result) = passive_failure(seen, &obs) else {
        server.passive_ok();
        return;
    };
    if !server.passive_error(obs.error_limit) {
        return;
    }
    act(pool, idx, obs.on_error, result);
}

/// The server's counters of what live traffic showed: responses by status class (1xx..5xx),
/// errors.
fn count(server: &super::Server, seen: Seen) {
    match seen {
        Seen::Status(c) => {
            let class = usize::from(c / 100).clamp(1, 5) - 1;
            server.responses[class].fetch_add(1, Ordering::Relaxed);
        }
        Seen::BadResponse | Seen::L4Error => {
            server.errors.fetch_add(1, Ordering::Relaxed);
        }
        Seen::Ok => {}
    }
}

/// Whether what live traffic showed is an error under the observation `mode`, as the failed
/// check it stands for: a connection error always; an invalid response as a reset at layer 4,
/// as `L7RSP` at layer 7; a 5xx only at layer 7 (`L7STS`). `None`: a success.
fn passive_failure(seen: Seen, obs: &ObserveConfig) -> Option<CheckResult> {
    let (status, code, detail) = match seen {
        Seen::Ok => return None,
        Seen::Status(c) if c < 500 => return None,
        Seen::L4Error => (
            CheckStatus::L4Con,
            None,
            "live traffic: connection errors".to_string(),
        ),
        Seen::Status(_) if obs.mode == ObserveMode::Layer4 => return None,
        Seen::BadResponse if obs.mode == ObserveMode::Layer4 => (
            CheckStatus::L4Con,
            None,
            "live traffic: connection reset".to_string(),
        ),
        Seen::BadResponse => (
            CheckStatus::L7Rsp,
            None,
            "live traffic: invalid responses".to_string(),
        ),
        Seen::Status(c) => (
            CheckStatus::L7Sts,
            Some(c),
            format!(
                "live traffic: {} consecutive {c} responses",
                obs.error_limit
            ),
        ),
    };
    Some(CheckResult::new(status, code, detail, Duration::ZERO))
}

/// What `on_error` does once live traffic reached `error_limit`: hurry the next check,
/// count one failed check, leave one check to take the server down, or take it down now.
fn act(pool: &Pool, idx: usize, on_error: OnError, result: CheckResult) {
    let server = &pool.servers[idx];
    match on_error {
        OnError::Fastinter => {
            server
                .machine
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .hurry = true;
            server.hurry.notify_one();
        }
        OnError::FailCheck => record_check(pool, idx, result),
        OnError::SuddenDeath => {
            server
                .machine
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .sudden_death();
            server.hurry.notify_one();
        }
        OnError::MarkDown => {
            let t = server
                .machine
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .mark_down(result);
            if let Some(t) = t {
                apply(pool, idx, &t);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pool_observing(on_error: OnError) -> Pool {
        let mut p = super::super::tests::pool(&[false, false], false);
        p.observe = Some(ObserveConfig {
            mode: ObserveMode::Layer7,
            error_limit: 2,
            on_error,
        });
        p
    }

    #[test]
    fn passive_actions() {
        // fail-check: every `error_limit` errors count as one failed check (fall = 3).
        let p = pool_observing(OnError::FailCheck);
        for _ in 0..4 {
            observe(&p, 0, Seen::Status(502));
        }
        assert_eq!(p.servers[0].check_failures.load(Ordering::Relaxed), 2);
        assert_eq!(p.servers[0].health(), Health::Up);
        observe(&p, 0, Seen::Status(200)); // a success ends the run of errors
        observe(&p, 0, Seen::Status(503));
        assert_eq!(p.servers[0].check_failures.load(Ordering::Relaxed), 2);
        observe(&p, 0, Seen::BadResponse);
        assert_eq!(p.servers[0].health(), Health::Down, "third failed check");

        // sudden-death: one more failed check takes it down.
        let p = pool_observing(OnError::SuddenDeath);
        observe(&p, 0, Seen::L4Error);
        observe(&p, 0, Seen::L4Error);
        let t = p.servers[0]
            .machine
            .lock()
            .unwrap()
            .observe(CheckResult::new(
                CheckStatus::L7Sts,
                Some(500),
                "",
                Duration::ZERO,
            ));
        assert_eq!(t.map(|t| t.to), Some(Health::Down));

        // fastinter: the next check is hurried, health untouched.
        let p = pool_observing(OnError::Fastinter);
        observe(&p, 1, Seen::Status(500));
        observe(&p, 1, Seen::Status(500));
        assert_eq!(p.servers[1].machine.lock().unwrap().pace(), Pace::Fast);
        assert_eq!(p.servers[1].health(), Health::Up);

        // 4xx is not an error; layer4 ignores statuses.
        let mut p = pool_observing(OnError::MarkDown);
        observe(&p, 0, Seen::Status(404));
        observe(&p, 0, Seen::Status(404));
        assert_eq!(p.servers[0].health(), Health::Up);
        p.observe = Some(ObserveConfig {
            mode: ObserveMode::Layer4,
            error_limit: 2,
            on_error: OnError::MarkDown,
        });
        observe(&p, 0, Seen::Status(500));
        observe(&p, 0, Seen::Status(500));
        assert_eq!(p.servers[0].health(), Health::Up);
        observe(&p, 0, Seen::L4Error);
        observe(&p, 0, Seen::L4Error);
        assert_eq!(p.servers[0].health(), Health::Down);
        assert_eq!(p.events.recent().len(), 1);
    }
}
