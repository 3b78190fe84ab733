//! A hyper [`Timer`] whose sleeps register with tokio's timer wheel only when first polled.
//!
//! hyper arms a header-read timer for every request head (our slowloris guard) and drops it as
//! soon as the head is parsed. On a busy keep-alive connection the head is usually already in the
//! read buffer, so the timer is never polled at all: registering and deregistering it was
//! measurable (about 2% of the CPU per request in the proxy benchmark, see docs/performance.md).
//! A lazy sleep only records its deadline; a slow client whose head is not complete gets the
//! real tokio sleep on the first `Pending`, with the same deadline.

use hyper::rt::{Sleep, Timer};
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy, Default)]
pub struct LazyTimer;

impl Timer for LazyTimer {
    fn sleep(&self, duration: Duration) -> Pin<Box<dyn Sleep>> {
        Box::pin(LazySleep::new(Instant::now() + duration))
    }

    fn sleep_until(&self, deadline: Instant) -> Pin<Box<dyn Sleep>> {
        Box::pin(LazySleep::new(deadline))
    }

    fn reset(&self, sleep: &mut Pin<Box<dyn Sleep>>, new_deadline: Instant) {
        if let Some(s) = sleep.as_mut().downcast_mut_pin::<LazySleep>() {
            s.reset(new_deadline);
        } else {
            *sleep = self.sleep_until(new_deadline);
        }
    }
}

pin_project_lite::pin_project! {
    /// A deadline that becomes a tokio sleep only when someone waits on it.
    pub struct LazySleep {
        deadline: Instant,
        #[pin]
        inner: Option<tokio::time::Sleep>,
    }
}

impl LazySleep {
    fn new(deadline: Instant) -> LazySleep {
        LazySleep {
            deadline,
            inner: None,
        }
    }

    fn reset(self: Pin<&mut Self>, deadline: Instant) {
        let mut this = self.project();
        *this.deadline = deadline;
        if let Some(inner) = this.inner.as_mut().as_pin_mut() {
            inner.reset(deadline.into());
        }
    }
}

impl Future for LazySleep {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let mut this = self.project();
        if this.inner.is_none() {
            if Instant::now() >= *this.deadline {
                return Poll::Ready(());
            }
            this.inner
                .set(Some(tokio::time::sleep_until((*this.deadline).into())));
        }
        this.inner.as_pin_mut().expect("set above").poll(cx)
    }
}

impl Sleep for LazySleep {}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn fires_at_its_deadline_when_polled() {
        let t0 = Instant::now();
        LazyTimer.sleep(Duration::from_millis(30)).await;
        assert!(t0.elapsed() >= Duration::from_millis(30));
    }

    #[tokio::test]
    async fn reset_moves_the_deadline() {
        let mut s = LazyTimer.sleep(Duration::from_secs(60));
        LazyTimer.reset(&mut s, Instant::now() + Duration::from_millis(10));
        tokio::time::timeout(Duration::from_secs(5), s)
            .await
            .expect("reset deadline honoured");
    }

    #[tokio::test]
    async fn past_deadline_is_ready_at_once() {
        let s = LazyTimer.sleep_until(Instant::now() - Duration::from_millis(1));
        tokio::time::timeout(Duration::from_millis(100), s)
            .await
            .unwrap();
    }
}
