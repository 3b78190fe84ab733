//! The watchdog of TLS and HTTP/2 connections: what each waits for, and its deadline, checked
//! on the park clock's ticks.

use super::*;

/// What the connection waits for now (for connections the watchdog in
/// [`drive_until_stopped`] looks after).
pub(super) fn wait_of(state: &ConnState, h2: bool) -> Wait {
    let scan = state.scan.load(Ordering::Relaxed);
    let started = state.started.load(Ordering::Relaxed);
    // An exchange in progress. A request body left unread once its exchange is over (a 404
    // to a POST, say) is hyper's to drain or close on: the connection is idle then, with the
    // idle deadline, never busy forever.
    let busy = started != state.finished.load(Ordering::Relaxed);
    // A header block in progress stalls every HTTP/2 stream: it has its deadline even
    // while other streams are busy.
    if scan & 1 == 1 && (h2 || !busy) {
        Wait::Reading(scan)
    } else if busy && state.owed.load(Ordering::Relaxed) > 0 {
        Wait::Owed(state.body_polls.load(Ordering::Relaxed))
    } else if busy {
        Wait::Busy
    } else {
        Wait::Idle(started)
    }
}

/// What a connection that is not parked (TLS, HTTP/2) waits for, which decides its deadline.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Wait {
    /// An exchange in progress: its own timers apply (`body_timeout`, `request_timeout`, the
    /// pool's), not the connection's.
    Busy,
    /// A response body hyper owes the client and has not asked for since (an HTTP/2 client
    /// that grants no flow-control window, or a client that reads nothing), after this many
    /// polls of the connection's bodies: `body_timeout`, as for a client that takes no bytes.
    Owed(u64),
    /// Part of a head, the HTTP/2 preface or an unfinished HTTP/2 header block has arrived
    /// (`header_read_timeout`); the scanner's view, so progress to the next one starts anew.
    Reading(u64),
    /// Nothing in progress, after this many requests: the first is awaited for
    /// `header_read_timeout`, the next ones for `keepalive_timeout`.
    Idle(u64),
}

impl Wait {
    pub(super) fn limit(self, limits: &crate::config::Limits) -> Option<Duration> {
        match self {
            Wait::Busy => None,
            Wait::Owed(_) => Some(limits.body_timeout),
            Wait::Reading(_) | Wait::Idle(0) => Some(limits.header_read_timeout),
            Wait::Idle(_) => Some(limits.keepalive_timeout),
        }
    }
}

/// The deadlines of a connection that is not parked, checked on the park clock's ticks (so a
/// deadline costs no timer of its own, and is met up to two ticks late, never early).
pub(super) struct Watchdog<'a> {
    pub(super) state: &'a ConnState,
    pub(super) h2: bool,
    /// The tick the connection was accepted at (its first request is awaited from there).
    pub(super) born: u64,
}

/// Drives a connection that is not parked (HTTP/2, TLS) until it ends, its deadline passes
/// (see [`Wait`]), or the worker stops. At shutdown it is told to finish gracefully (GOAWAY for
/// HTTP/2, close after the exchange in progress for HTTP/1); so is an idle HTTP/2 connection,
/// which is cut two ticks later if its client does not let it close. Any other deadline cuts it
/// at once.
pub(super) async fn drive_until_stopped<C: Future<Output = Result<(), hyper::Error>>>(
    conn: C,
    shared: &Shared,
    ticks: &mut tokio::sync::watch::Receiver<u64>,
    watch: Watchdog<'_>,
    finish: impl Fn(Pin<&mut C>),
) {
    let mut conn = std::pin::pin!(conn);
    let mut stopping = false;
    let mut goaway_at: Option<u64> = None;
    let mut seen = (Wait::Idle(0), watch.born);
    loop {
        tokio::select! {
            r = conn.as_mut() => {
                if let Err(e) = r {
                    super::ended_with(watch.state, &e, &shared.runtime.load());
                }
                return;
            }
            changed = ticks.changed() => {
                if changed.is_err() || shared.stopping.load(Ordering::Relaxed) {
                    if !stopping {
                        stopping = true;
                        finish(conn.as_mut());
                    }
                    if changed.is_err() {
                        // No clock any more: the worker is ending; wait for the connection.
                        let _ = conn.as_mut().await;
                        return;
                    }
                }
                let now = *ticks.borrow();
                if let Some(at) = goaway_at {
                    if now >= at + 2 {
                        return;
                    }
                    continue;
                }
                let wait = wait_of(watch.state, watch.h2);
                if wait != seen.0 {
                    seen = (wait, now);
                    continue;
                }
                let Some(limit) = wait.limit(&shared.runtime.load().limits) else {
                    continue;
                };
                // The state began somewhere in the tick it was seen in: counted from that
                // tick's end, so a deadline is never early (and late by up to two ticks).
                let ticks = (now - seen.1).saturating_sub(1);
                let waited = PARK_TICK.saturating_mul(u32::try_from(ticks).unwrap_or(u32::MAX));
                if waited < limit {
                    continue;
                }
                match wait {
                    Wait::Idle(_) if watch.h2 => {
                        finish(conn.as_mut());
                        goaway_at = Some(now);
                    }
                    Wait::Reading(_) => {
                        // A head left unfinished: a request error, as on plain connections.
                        watch.state.front.as_ref().inspect(|f| f.bad_request());
                        return;
                    }
                    _ => return,
                }
            }
        }
    }
}

/// Drives an HTTP/2 connection (see [`drive_until_stopped`]), its writes going out once per
/// poll of the connection (see `held.rs`).
pub(super) async fn drive_h2<I>(
    io: I,
    svc: ProxyService,
    rt: &proxy::Runtime,
    shared: &Shared,
    ticks: &mut tokio::sync::watch::Receiver<u64>,
    watch: Watchdog<'_>,
) where
    I: Read + Write + Unpin + Send + 'static,
{
    let (io, drain) = super::held::held(io);
    let conn = super::held::FlushAfter::new(h2_builder(rt).serve_connection(io, svc), drain);
    drive_until_stopped(conn, shared, ticks, watch, |c| c.conn().graceful_shutdown()).await;
}
