//! A new plain connection's first bytes: read (within `header_read_timeout`) before the lane
//! or hyper takes the connection, to tell HTTP/2 with prior knowledge from HTTP/1.

use super::*;

/// Whether a new connection speaks HTTP/2 with prior knowledge (h2c), its first bytes read
/// into `pending` when none were read before (after a PROXY header). `None`: it closed, or
/// sent nothing within `header_read_timeout`.
pub(super) async fn h2_or_not(conn: &mut Parked, pending: &mut Bytes, f: &Fresh) -> Option<bool> {
    if !pending.is_empty() {
        return Some(f.h2c && pending.starts_with(b"PRI "));
    }
    let deadline = tokio::time::Instant::now() + f.wait;
    let (read, h2) = first_bytes(&mut conn.stream, deadline, f.h2c).await?;
    if let Some(p) = &conn.permit {
        p.front().bytes_in(read.len());
    }
    *pending = read;
    Some(h2)
}

/// Waits (until `deadline`) for a new connection's first bytes and reads them, for the lane or
/// hyper to take from there: one read, or with h2c on, reads until `PRI ` (the start of the
/// HTTP/2 preface, not an HTTP/1 method anyone uses) is told from anything else. `None`: the
/// client closed or sent nothing in time; else the bytes read and whether the client speaks
/// HTTP/2 with prior knowledge. A read, not a peek and
/// then a read: one system call less per connection. The buffer is taken only once the socket
/// is readable, so a client that connects and sends nothing holds none.
async fn first_bytes(
    stream: &mut ClientStream,
    deadline: tokio::time::Instant,
    h2c: bool,
) -> Option<(Bytes, bool)> {
    // One timer, for the deadline and the short pauses below, and the socket polled directly
    // (a small future: a connection waiting for its first bytes is a task of its own).
    let sleep = tokio::time::sleep_until(deadline);
    tokio::pin!(sleep);
    let mut buf = bytes::BytesMut::new();
    // The pause between looks at a partial `PRI `: doubled each time (5 ms up to 320 ms), so a
    // client that sends `P` and stops costs a few wake-ups, not one every 5 ms.
    let mut pause_ms: u32 = 5;
    loop {
        std::future::poll_fn(|cx| {
            if let Poll::Ready(r) = poll_first_read(stream, cx, &mut buf) {
                return Poll::Ready(r.filter(|&n| n != 0));
            }
            if sleep.as_mut().poll(cx).is_ready() {
                return Poll::Ready(None);
            }
            Poll::Pending
        })
        .await?;
        let seen = buf.len().min(4);
        if !h2c || buf[..seen] != b"PRI "[..seen] {
            return Some((buf.freeze(), false));
        }
        if seen == 4 {
            return Some((buf.freeze(), true));
        }
        // Part of `PRI ` so far: look again shortly.
        let now = tokio::time::Instant::now();
        if now >= deadline {
            return None;
        }
        let pause = Duration::from_millis(pause_ms.into());
        sleep.as_mut().reset(deadline.min(now + pause));
        (&mut sleep).await;
        sleep.as_mut().reset(deadline);
        pause_ms = (pause_ms * 2).min(320);
    }
}

/// A read of what the client sent first (see [`first_bytes`]): `None` on an error.
fn poll_first_read(
    stream: &mut ClientStream,
    cx: &mut Context<'_>,
    buf: &mut bytes::BytesMut,
) -> Poll<Option<usize>> {
    if buf.capacity() == 0 {
        if std::task::ready!(stream.poll_read_ready(cx)).is_err() {
            return Poll::Ready(None);
        }
        buf.reserve(crate::lane::READ_BUF);
    }
    match tokio_util::io::poll_read_buf(Pin::new(stream), cx, buf) {
        Poll::Ready(r) => Poll::Ready(r.ok()),
        Poll::Pending => {
            if buf.is_empty() {
                // Readable, yet nothing came: no buffer held while waiting on.
                *buf = bytes::BytesMut::new();
            }
            Poll::Pending
        }
    }
}
