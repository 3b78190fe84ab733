//! A pool's backlog queue (lighttpd2's design): requests that find every usable server at its
//! `maxconn` wait here for a slot, first in first out, or with `fair = true` round robin
//! across clients.
//!
//! No polling: every request that finishes on a server of the pool wakes the next waiter not
//! yet woken. A woken waiter that still finds no slot (a race with another release) goes back to
//! waiting at its place. Newcomers queue behind existing waiters. A waiter whose client went
//! away leaves the queue when its future is dropped.
//!
//! **Fair queueing.** Waiters are kept in flows, one per key (the route's rate-limit key, else
//! the client's address), each in arrival order, and the flows in a ring: the next waiter
//! served is the first of the flow at the front, and a flow that was served moves to the
//! back. A client with one request waiting is served within one turn of the ring, however
//! many another client has queued. The first-in-first-out queue is the same structure with
//! every waiter in one flow. Memory is bounded by `max` (a flow exists only while it has a
//! waiter).

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use tokio::sync::Notify;

use crate::config::QueueConfig;

#[derive(Debug)]
struct Waiter {
    id: u64,
    /// Its flow.
    key: u64,
    notify: Notify,
    woken: AtomicBool,
    /// It took a slot (its flow had its turn).
    served: AtomicBool,
}

/// The waiters: flows by key, and the ring of flows in the order they are served.
#[derive(Debug, Default)]
struct Lanes {
    flows: HashMap<u64, VecDeque<Arc<Waiter>>>,
    order: VecDeque<u64>,
    len: usize,
}

impl Lanes {
    fn push(&mut self, w: Arc<Waiter>) {
        let flow = self.flows.entry(w.key).or_default();
        if flow.is_empty() {
            self.order.push_back(w.key);
        }
        flow.push_back(w);
        self.len += 1;
    }

    /// The waiter served next.
    fn first(&self) -> Option<&Arc<Waiter>> {
        self.flows.get(self.order.front()?)?.front()
    }

    /// The first waiter not woken yet, in the order they would be served if nobody came or
    /// left: the first of each flow in ring order, then the second of each, and so on. Usually
    /// the first one looked at.
    fn next_unwoken(&self) -> Option<&Arc<Waiter>> {
        for depth in 0..self.len {
            let mut any = false;
            for w in self
                .order
                .iter()
                .filter_map(|k| self.flows.get(k)?.get(depth))
            {
                if !w.woken.load(Ordering::Relaxed) {
                    return Some(w);
                }
                any = true;
            }
            if !any {
                break;
            }
        }
        None
    }

    /// Takes `w` out; a flow served from its front moves to the back of the ring, an empty
    /// one leaves it.
    fn remove(&mut self, w: &Waiter) {
        let Some(flow) = self.flows.get_mut(&w.key) else {
            return;
        };
        let Some(pos) = flow.iter().position(|x| x.id == w.id) else {
            return;
        };
        flow.remove(pos);
        self.len -= 1;
        let at_front = self.order.front() == Some(&w.key);
        if flow.is_empty() {
            self.flows.remove(&w.key);
            if let Some(i) = self.order.iter().position(|k| *k == w.key) {
                self.order.remove(i);
            }
        } else if at_front && pos == 0 && w.served.load(Ordering::Relaxed) {
            self.order.rotate_left(1);
        }
    }
}

#[derive(Debug)]
pub struct Queue {
    pub config: QueueConfig,
    waiters: Mutex<Lanes>,
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
            waiters: Mutex::new(Lanes::default()),
            len: AtomicUsize::new(0),
            next_id: AtomicU64::new(0),
            refused: AtomicU64::new(0),
            timed_out: AtomicU64::new(0),
            max_seen: AtomicUsize::new(0),
        }
    }

    fn lanes(&self) -> std::sync::MutexGuard<'_, Lanes> {
        self.waiters.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Requests waiting now.
    pub fn len(&self) -> usize {
        self.len.load(Ordering::Relaxed)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Takes a place at the back (of `key`'s flow when the queue is fair; `key` is the
    /// client's, see `limits::ip_key`), or `None` when the queue is full.
    pub fn enter(self: &Arc<Self>, key: u64) -> Option<Ticket> {
        let mut w = self.lanes();
        if w.len >= self.config.max {
            self.refused.fetch_add(1, Ordering::Relaxed);
            return None;
        }
        let waiter = Arc::new(Waiter {
            id: self.next_id.fetch_add(1, Ordering::Relaxed),
            key: if self.config.fair { key } else { 0 },
            notify: Notify::new(),
            woken: AtomicBool::new(false),
            served: AtomicBool::new(false),
        });
        w.push(waiter.clone());
        self.len.store(w.len, Ordering::Relaxed);
        self.max_seen.fetch_max(w.len, Ordering::Relaxed);
        Some(Ticket {
            queue: self.clone(),
            waiter,
        })
    }

    /// A slot was freed: wake the next waiter not yet woken. Cheap when nobody waits.
    pub fn wake_one(&self) {
        if self.len.load(Ordering::Relaxed) == 0 {
            return;
        }
        let w = self.lanes();
        wake_next(&w);
    }

    /// Wakes every waiter (the pool's state changed: e.g. every server went down).
    pub fn wake_all(&self) {
        let w = self.lanes();
        for x in w.flows.values().flatten() {
            x.woken.store(true, Ordering::Relaxed);
            x.notify.notify_one();
        }
    }
}

/// Wakes the first waiter, in service order, not woken yet.
fn wake_next(w: &Lanes) {
    if let Some(next) = w.next_unwoken() {
        next.woken.store(true, Ordering::Relaxed);
        next.notify.notify_one();
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

    /// Got a slot: leave the queue without passing a wake-up on (the flow's turn is over).
    pub fn used(self) {
        self.waiter.woken.store(false, Ordering::Relaxed);
        self.waiter.served.store(true, Ordering::Relaxed);
    }

    /// Is this the waiter served next? Only it may take a slot.
    pub fn is_first(&self) -> bool {
        let w = self.queue.lanes();
        w.first().is_some_and(|f| f.id == self.waiter.id)
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        let mut w = self.queue.lanes();
        w.remove(&self.waiter);
        self.queue.len.store(w.len, Ordering::Relaxed);
        // A wake-up this waiter received but did not use goes to the next one.
        if self.waiter.woken.load(Ordering::Relaxed) {
            wake_next(&w);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn fair_q(max: usize) -> Arc<Queue> {
        queue(max, true)
    }

    /// Serves the queue's first waiter among `t` (it takes a slot and leaves); whose it was.
    fn serve(t: &mut Vec<(char, Ticket)>) -> char {
        let i = t.iter().position(|(_, x)| x.is_first()).expect("a first");
        let (who, ticket) = t.remove(i);
        ticket.used();
        who
    }

    #[test]
    fn a_fair_queue_serves_clients_in_turn() {
        let q = fair_q(100);
        let mut t = Vec::new();
        for _ in 0..4 {
            t.push(('a', q.enter(1).unwrap()));
        }
        t.push(('b', q.enter(2).unwrap()));
        t.push(('b', q.enter(2).unwrap()));
        t.push(('c', q.enter(3).unwrap()));
        let order: String = (0..7).map(|_| serve(&mut t)).collect();
        assert_eq!(order, "abcabaa");
        assert!(q.is_empty());
        assert!(q.lanes().flows.is_empty() && q.lanes().order.is_empty());
    }

    #[test]
    fn a_waiter_that_leaves_unserved_keeps_its_flows_turn() {
        let q = fair_q(100);
        let a1 = q.enter(1).unwrap();
        let a2 = q.enter(1).unwrap();
        let b = q.enter(2).unwrap();
        drop(a1); // timed out: a's next waiter is first, a keeps the turn
        assert!(a2.is_first());
        drop(a2); // a's flow is empty: it leaves the ring
        assert!(b.is_first());
        assert_eq!(q.lanes().order.len(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn wake_ups_follow_the_service_order() {
        let q = fair_q(100);
        let a1 = q.enter(1).unwrap();
        let _a2 = q.enter(1).unwrap();
        let b = q.enter(2).unwrap();
        q.wake_one();
        q.wake_one(); // a1 is woken already: b's turn comes next, not a2's
        for x in [&a1, &b] {
            tokio::time::timeout(Duration::from_millis(10), x.woken())
                .await
                .expect("woken");
        }
    }

    #[test]
    fn a_fifo_queue_ignores_keys() {
        let q = q(10);
        let a = q.enter(1).unwrap();
        let b = q.enter(2).unwrap();
        assert!(a.is_first() && !b.is_first());
        a.used();
        assert!(b.is_first());
    }

    fn q(max: usize) -> Arc<Queue> {
        queue(max, false)
    }

    /// A queue of `max` waiters with a one-second timeout, first-in first-out or `fair`.
    fn queue(max: usize, fair: bool) -> Arc<Queue> {
        Arc::new(Queue::new(QueueConfig {
            max,
            timeout: Duration::from_secs(1),
            full_status: 503,
            timeout_status: 504,
            retry_after: Duration::from_secs(1),
            fair,
        }))
    }

    #[tokio::test(start_paused = true)]
    async fn fifo_and_bounded() {
        let q = q(2);
        let a = q.enter(0).unwrap();
        let b = q.enter(0).unwrap();
        assert!(q.enter(0).is_none(), "full");
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
        let a = q.enter(0).unwrap();
        let b = q.enter(0).unwrap();
        q.wake_one(); // goes to a
        drop(a); // a's client went away before using it
        tokio::time::timeout(Duration::from_millis(10), b.woken())
            .await
            .expect("b got a's wake-up");
    }

    #[tokio::test(start_paused = true)]
    async fn wake_all_wakes_everyone() {
        let q = q(5);
        let t: Vec<Ticket> = (0..3).map(|_| q.enter(0).unwrap()).collect();
        q.wake_all();
        for x in &t {
            tokio::time::timeout(Duration::from_millis(10), x.woken())
                .await
                .expect("woken");
        }
    }
}
