//! The health log: recent transitions, newest first, bounded; also written to the log.

use super::health::{CheckStatus, Health};
use std::collections::VecDeque;
use std::sync::Mutex;

/// How many transitions are kept.
pub const EVENT_CAPACITY: usize = 256;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// Wall-clock time, seconds since the Unix epoch.
    pub at_unix: u64,
    pub pool: String,
    pub server: String,
    pub from: Health,
    pub to: Health,
    pub status: CheckStatus,
    pub code: Option<u16>,
    /// Why: the check's detail, or the passive or operator reason.
    pub reason: String,
}

#[derive(Debug, Default)]
pub struct EventLog {
    events: Mutex<VecDeque<Event>>,
}

impl EventLog {
    pub fn push(&self, e: Event) {
        let mut q = self.events.lock().unwrap_or_else(|e| e.into_inner());
        if q.len() == EVENT_CAPACITY {
            q.pop_back();
        }
        q.push_front(e);
    }

    /// Newest first.
    pub fn recent(&self) -> Vec<Event> {
        self.events
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .cloned()
            .collect()
    }
}
