//! Memory of a rate limit's keyed store as distinct client addresses arrive, counted by a
//! global allocator that tallies live bytes. `cargo bench --bench limits_memory`; the numbers
//! are recorded in docs/clients.md.

use langur::config::route::{LimitKey, RateLimit};
use langur::limits::{ip_key, RateLimiter};
use std::alloc::{GlobalAlloc, Layout, System};
use std::net::{IpAddr, Ipv4Addr};
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The system allocator, counting the bytes it has handed out and not taken back.
struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size(), Relaxed);
        System.alloc(layout)
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size(), Relaxed);
        System.dealloc(ptr, layout)
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new: usize) -> *mut u8 {
        LIVE.fetch_add(new, Relaxed);
        LIVE.fetch_sub(layout.size(), Relaxed);
        System.realloc(ptr, layout, new)
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

/// Sends one request from each of `clients` distinct IPv4 addresses through a limiter that
/// keeps at most `max_keys`; prints the store's live bytes, the keys kept and the time taken.
fn spray(clients: u32, max_keys: usize) {
    let limit = RateLimit {
        key: LimitKey::ClientIp,
        count: 100,
        period: Duration::from_secs(1),
        burst: 50,
        max_keys,
        scope: Default::default(),
    };
    let before = LIVE.load(Relaxed);
    let l = Arc::new(RateLimiter::new(&limit, "bench".into()));
    let t = Instant::now();
    for i in 0..clients {
        let ip = IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + i));
        l.check(ip_key(ip));
    }
    let took = t.elapsed();
    let bytes = LIVE.load(Relaxed) - before;
    println!(
        "{clients} addresses, max_keys {max_keys}: {} keys kept, {:.1} MiB ({:.1} bytes per key kept), {} through the overflow bucket, {:.0} ns per check",
        l.keys(),
        bytes as f64 / (1 << 20) as f64,
        bytes as f64 / l.keys().max(1) as f64,
        l.overflowed(),
        took.as_nanos() as f64 / f64::from(clients),
    );
}

fn main() {
    spray(1_000_000, 1_000_000);
    spray(1_000_000, 100_000);
    spray(100_000, 100_000);
}
