//! A pool's backlog queue (lighttpd2's design): requests that find every usable server at its
//! `maxconn` wait here, first in first out, for a slot.
//!
//! No polling: every request that finishes on a server of the pool wakes the oldest waiter not
//! yet woken. A woken waiter that still finds no slot (a race with another release) goes back to
//! waiting at its place. Newcomers queue behind existing waiters, so the order of dispatch is the
//! order of arrival. A waiter whose client went away leaves the queue when its future is dropped.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use tokio::sync::Notify;

use crate::config::QueueConfig;

#[derive(Debug)]
struct Waiter {
    id: u64,
    notify: Notify,
    woken: AtomicBool,
}

#[derive(Debug)]
pub struct Queue {
    pub config: QueueConfig,
    waiters: Mutex<VecDeque<Arc<Waiter>>>,
    len: AtomicUsize,
    next_id: AtomicU64,
    /// Requests answered `full_status` because the queue was full, ever.
    pub refused: AtomicU64,
    /// Requests answered `timeout_status`, ever.
    pub timed_out: AtomicU64,
    /// Longest the queue has been.
    pub max_seen: AtomicUsize,
}

/// A place in the queue; leaving it (drop) gives the place up.
#[derive(Debug)]
pub struct Ticket {
    queue: Arc<Queue>,
    waiter: Arc<Waiter>,
}

impl Queue {
    pub fn new(config: QueueConfig) -> Queue {
        Queue {
            config,
            waiters: Mutex::new(VecDeque::new()),
            len: AtomicUsize::new(0),
            next_id: AtomicU64::new(0),
            refused: AtomicU64::new(0),
            timed_out: AtomicU64::new(0),
            max_seen: AtomicUsize::new(0),
        }
    }

    /// Requests waiting now.
    pub fn len(&self) -> usize {
        self.len.load(Ordering::Relaxed)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Takes a place at the back, or `None` when the queue is full.
    pub fn enter(self: &Arc<Self>) -> Option<Ticket> {
        let mut w = self.waiters.lock().unwrap_or_else(|e| e.into_inner());
        if w.len() >= self.config.max {
            self.refused.fetch_add(1, Ordering::Relaxed);
            return None;
        }
        let waiter = Arc::new(Waiter {
            id: self.next_id.fetch_add(1, Ordering::Relaxed),
            notify: Notify::new(),
            woken: AtomicBool::new(false),
        });
        w.push_back(waiter.clone());
        self.len.store(w.len(), Ordering::Relaxed);
        self.max_seen.fetch_max(w.len(), Ordering::Relaxed);
        Some(Ticket {
            queue: self.clone(),
            waiter,
        })
    }

    /// A slot was freed: wake the oldest waiter not yet woken. Cheap when nobody waits.
    pub fn wake_one(&self) {
        if self.len.load(Ordering::Relaxed) == 0 {
            return;
        }
        let w = self.waiters.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(first) = w.iter().find(|x| !x.woken.load(Ordering::Relaxed)) {
            first.woken.store(true, Ordering::Relaxed);
            first.notify.notify_one();
        }
    }

    /// Wakes every waiter (the pool's state changed: e.g. every server went down).
    pub fn wake_all(&self) {
        let w = self.waiters.lock().unwrap_or_else(|e| e.into_inner());
        for x in w.iter() {
            x.woken.store(true, Ordering::Relaxed);
            x.notify.notify_one();
        }
    }
}

impl Ticket {
    /// Waits to be woken (a slot was freed, or the pool changed).
    pub async fn woken(&self) {
        self.waiter.notify.notified().await;
    }

    /// Woken, but no slot after all: wait again at the same place.
    pub fn rewait(&self) {
        self.waiter.woken.store(false, Ordering::Relaxed);
    }

    /// Got a slot: leave the queue without passing a wake-up on.
    pub fn used(self) {
        self.waiter.woken.store(false, Ordering::Relaxed);
    }

    /// Is this the oldest waiter? Only the head of the queue may take a slot.
    pub fn is_first(&self) -> bool {
        let w = self.queue.waiters.lock().unwrap_or_else(|e| e.into_inner());
        w.front().is_some_and(|f| f.id == self.waiter.id)
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        let mut w = self.queue.waiters.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(pos) = w.iter().position(|x| x.id == self.waiter.id) {
            w.remove(pos);
        }
        self.queue.len.store(w.len(), Ordering::Relaxed);
        // A wake-up this waiter received but did not use goes to the next one.
        if self.waiter.woken.load(Ordering::Relaxed) {
            if let Some(next) = w.iter().find(|x| !x.woken.load(Ordering::Relaxed)) {
                next.woken.store(true, Ordering::Relaxed);
                next.notify.notify_one();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn q(max: usize) -> Arc<Queue> {
        Arc::new(Queue::new(QueueConfig {
            max,
            timeout: Duration::from_secs(1),
            full_status: 503,
            timeout_status: 504,
            retry_after: Duration::from_secs(1),
        }))
    }

    #[tokio::test(start_paused = true)]
    async fn fifo_and_bounded() {
        let q = q(2);
        let a = q.enter().unwrap();
        let b = q.enter().unwrap();
        assert!(q.enter().is_none(), "full");
        assert_eq!(q.refused.load(Ordering::Relaxed), 1);
        assert!(a.is_first() && !b.is_first());
        q.wake_one();
        // a is woken, b is not
        tokio::time::timeout(Duration::from_millis(10), a.woken())
            .await
            .expect("a woken");
        assert!(tokio::time::timeout(Duration::from_millis(10), b.woken())
            .await
            .is_err());
        drop(a);
        assert!(b.is_first());
        assert_eq!(q.len(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn an_unused_wake_up_passes_on_when_a_waiter_leaves() {
        let q = q(5);
        let a = q.enter().unwrap();
        let b = q.enter().unwrap();
        q.wake_one(); // goes to a
        drop(a); // a's client went away before using it
        tokio::time::timeout(Duration::from_millis(10), b.woken())
            .await
            .expect("b got a's wake-up");
    }

    #[tokio::test(start_paused = true)]
    async fn wake_all_wakes_everyone() {
        let q = q(5);
        let t: Vec<Ticket> = (0..3).map(|_| q.enter().unwrap()).collect();
        q.wake_all();
        for x in &t {
            tokio::time::timeout(Duration::from_millis(10), x.woken())
                .await
                .expect("woken");
        }
    }
}
