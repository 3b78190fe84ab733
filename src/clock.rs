//! Monotonic milliseconds for state kept in atomics. Based on tokio's clock, so tests running
//! with paused time see it move when they advance it.

use std::sync::OnceLock;
use tokio::time::Instant;

static BASE: OnceLock<Instant> = OnceLock::new();

/// Milliseconds since the first call in this process.
pub fn now_ms() -> u64 {
    let base = *BASE.get_or_init(Instant::now);
    Instant::now().saturating_duration_since(base).as_millis() as u64
}

/// Microseconds since the first call of [`now_ms`] or this in this process (a request's start,
/// kept in eight bytes).
#[inline]
pub fn now_us() -> u64 {
    let base = *BASE.get_or_init(Instant::now);
    Instant::now().saturating_duration_since(base).as_micros() as u64
}
