//! An HTTP/2 client connection's writes, held until the connection has been polled and then
//! written out together: a batch per wake-up, as HAProxy's multiplexer writes.
//!
//! hyper's HTTP/2 server (the `h2` crate) sends a DATA payload of 256 bytes or more by
//! reference, and flushes its buffer before it encodes the next frame. Without this, 100
//! responses ready at once went out as 100 `writev`s, and over TLS as 100 records. Here every
//! write is copied into one buffer of at most [`HELD_MAX`] bytes and `poll_flush` returns at
//! once; [`FlushAfter`] writes the buffer out after each poll of the connection. A write that
//! finds the buffer full waits for the socket, so a client that does not read still holds
//! hyper back (and meets the connection's silence limit, which the inner I/O keeps).
//!
//! The two halves share the I/O through a mutex that is never contended: the connection and
//! its driver are one task.

use hyper::rt::{Read, ReadBufCursor, Write};
use std::future::Future;
use std::io::{self, IoSlice};
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};

/// Most bytes held before a write waits for the socket: two TLS records' worth.
const HELD_MAX: usize = 32 * 1024;

/// The buffer's first size (it grows to [`HELD_MAX`] when needed). It is freed once written
/// out, so an idle connection holds none: one allocation per batch of writes.
const HELD_FIRST: usize = 16 * 1024;

struct Inner<T> {
    io: T,
    out: Vec<u8>,
    /// Bytes of `out` already written.
    sent: usize,
    /// Written into `out` since the inner I/O was last flushed.
    dirty: bool,
    /// A write to the socket failed: every later write fails the same way.
    failed: Option<io::ErrorKind>,
}

/// hyper's side: reads go straight through, writes are held.
pub(super) struct Held<T>(Arc<Mutex<Inner<T>>>);

/// The driver's side, which writes out what is held.
pub(super) struct Drain<T>(Arc<Mutex<Inner<T>>>);

/// Splits `io` into the half hyper gets and the half the connection's driver keeps.
pub(super) fn held<T>(io: T) -> (Held<T>, Drain<T>) {
    let inner = Arc::new(Mutex::new(Inner {
        io,
        out: Vec::new(),
        sent: 0,
        dirty: false,
        failed: None,
    }));
    (Held(inner.clone()), Drain(inner))
}

fn lock<T>(m: &Mutex<Inner<T>>) -> MutexGuard<'_, Inner<T>> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl<T: Write + Unpin> Inner<T> {
    /// Writes out what is held and flushes the inner I/O. `Pending` while the socket takes no
    /// more (the waker is registered with it).
    fn drain(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if let Some(kind) = self.failed {
            return Poll::Ready(Err(kind.into()));
        }
        while self.sent < self.out.len() {
            let r = Pin::new(&mut self.io).poll_write(cx, &self.out[self.sent..]);
            match r {
                Poll::Ready(Ok(0)) => return self.fail(io::ErrorKind::WriteZero.into()),
                Poll::Ready(Ok(n)) => self.sent += n,
                Poll::Ready(Err(e)) => return self.fail(e),
                Poll::Pending => return Poll::Pending,
            }
        }
        self.sent = 0;
        self.out = Vec::new();
        if self.dirty {
            if let Err(e) = std::task::ready!(Pin::new(&mut self.io).poll_flush(cx)) {
                return self.fail(e);
            }
            self.dirty = false;
        }
        Poll::Ready(Ok(()))
    }

    fn fail<R>(&mut self, e: io::Error) -> Poll<io::Result<R>> {
        self.failed = Some(e.kind());
        Poll::Ready(Err(e))
    }

    /// Takes as much of `bufs` as the buffer has room for, after writing the buffer out if it
    /// is full.
    fn hold(&mut self, cx: &mut Context<'_>, bufs: &[IoSlice<'_>]) -> Poll<io::Result<usize>> {
        if let Some(kind) = self.failed {
            return Poll::Ready(Err(kind.into()));
        }
        let len: usize = bufs.iter().map(|b| b.len()).sum();
        if len == 0 {
            return Poll::Ready(Ok(0));
        }
        if self.out.len() + len > HELD_MAX && !self.out.is_empty() {
            std::task::ready!(self.drain(cx))?;
        }
        if self.out.capacity() == 0 {
            self.out.reserve(len.clamp(HELD_FIRST, HELD_MAX));
        }
        let mut taken = 0;
        for b in bufs {
            let n = b.len().min(HELD_MAX - self.out.len());
            self.out.extend_from_slice(&b[..n]);
            taken += n;
            if n < b.len() {
                break;
            }
        }
        self.dirty = true;
        Poll::Ready(Ok(taken))
    }
}

impl<T: Read + Unpin> Read for Held<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: ReadBufCursor<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut lock(&self.0).io).poll_read(cx, buf)
    }
}

impl<T: Write + Unpin> Write for Held<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        lock(&self.0).hold(cx, &[IoSlice::new(buf)])
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        lock(&self.0).hold(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    /// Ready at once: the held bytes go out after this poll of the connection ([`FlushAfter`]).
    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        match lock(&self.0).failed {
            Some(kind) => Poll::Ready(Err(kind.into())),
            None => Poll::Ready(Ok(())),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let mut inner = lock(&self.0);
        std::task::ready!(inner.drain(cx))?;
        Pin::new(&mut inner.io).poll_shutdown(cx)
    }
}

impl<T: Write + Unpin> Drain<T> {
    /// Writes out what is held, as far as the socket takes it now (the rest after the socket's
    /// wake-up). An error is kept for hyper's next write.
    fn poll_drain(&self, cx: &mut Context<'_>) {
        let _ = lock(&self.0).drain(cx);
    }
}

pin_project_lite::pin_project! {
    /// A connection future whose held writes go out after each of its polls.
    pub(super) struct FlushAfter<C, T> {
        #[pin]
        conn: C,
        drain: Drain<T>,
    }
}

impl<C, T> FlushAfter<C, T> {
    pub(super) fn new(conn: C, drain: Drain<T>) -> Self {
        FlushAfter { conn, drain }
    }

    /// The connection inside (to ask it to finish).
    pub(super) fn conn(self: Pin<&mut Self>) -> Pin<&mut C> {
        self.project().conn
    }
}

impl<C: Future, T: Write + Unpin> Future for FlushAfter<C, T> {
    type Output = C::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<C::Output> {
        let this = self.project();
        let r = this.conn.poll(cx);
        this.drain.poll_drain(cx);
        r
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;

    /// A socket that counts the writes it is given.
    #[derive(Default)]
    struct Recorder {
        bytes: Vec<u8>,
        writes: usize,
        flushes: usize,
    }

    impl Write for Recorder {
        fn poll_write(
            self: Pin<&mut Self>,
            _: &mut Context<'_>,
            buf: &[u8],
        ) -> Poll<io::Result<usize>> {
            let this = self.get_mut();
            this.writes += 1;
            this.bytes.extend_from_slice(buf);
            Poll::Ready(Ok(buf.len()))
        }
        fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            self.get_mut().flushes += 1;
            Poll::Ready(Ok(()))
        }
        fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
    }

    /// Many small writes and flushes during one poll of the connection reach the socket as one
    /// write and one flush, in order, once the poll ends.
    #[tokio::test]
    async fn writes_go_out_together_after_the_poll() {
        let (held, drain) = held(Recorder::default());
        let shared = drain.0.clone();
        let mut held = hyper_util::rt::TokioIo::new(held);
        let writes = async {
            for i in 0..100u8 {
                held.write_all(&[i; 100]).await.unwrap();
                held.flush().await.unwrap();
            }
        };
        let mut conn = std::pin::pin!(FlushAfter::new(writes, drain));
        let waker = futures_util::task::noop_waker();
        let mut cx = Context::from_waker(&waker);
        assert!(conn.as_mut().poll(&mut cx).is_ready());
        let rec = lock(&shared);
        assert_eq!((rec.io.writes, rec.io.flushes), (1, 1));
        for (i, chunk) in rec.io.bytes.chunks(100).enumerate() {
            assert!(chunk.iter().all(|&x| x as usize == i), "in order");
        }
        assert_eq!(rec.io.bytes.len(), 100 * 100);
        assert_eq!(rec.out.capacity(), 0, "an idle connection holds no buffer");
    }

    /// A client that reads nothing: writes stop at the bound (plus what the socket holds).
    #[tokio::test]
    async fn a_full_buffer_waits_for_the_socket() {
        let (a, _b) = tokio::io::duplex(1024);
        let (held, _drain) = held(hyper_util::rt::TokioIo::new(a));
        let mut held = hyper_util::rt::TokioIo::new(held);
        let chunk = [7u8; 1000];
        let mut written = 0;
        // 100 KB offered: without the bound every write would be taken at once.
        let r = tokio::time::timeout(std::time::Duration::from_millis(50), async {
            for _ in 0..100 {
                held.write_all(&chunk).await.unwrap();
                written += chunk.len();
            }
        })
        .await;
        assert!(r.is_err(), "the writes were held back");
        assert!(
            written <= HELD_MAX + 1024,
            "at most the bound and the socket's room: {written}"
        );
    }

    /// A failed write to the socket fails hyper's next write and flush.
    #[tokio::test]
    async fn a_failed_socket_fails_later_writes() {
        let (a, b) = tokio::io::duplex(1024);
        drop(b);
        let (held, drain) = held(hyper_util::rt::TokioIo::new(a));
        let mut held = hyper_util::rt::TokioIo::new(held);
        held.write_all(b"hello").await.unwrap();
        let waker = futures_util::task::noop_waker();
        drain.poll_drain(&mut Context::from_waker(&waker));
        assert!(held.write_all(b"again").await.is_err());
        assert!(held.flush().await.is_err());
    }
}
