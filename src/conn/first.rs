//! A new plain connection's first bytes: read (within `header_read_timeout`) before the lane
//! or hyper takes the connection, to tell HTTP/2 with prior knowledge from HTTP/1.

use super::*;

/// Whether a new connection speaks HTTP/2 with prior knowledge (h2c), with its first bytes
/// in `pending`: read here, after any read before (what followed a PROXY header on a
/// Unix-domain socket, which may be a part of `PRI `). `None`: it closed, or sent nothing
/// within `header_read_timeout`.
pub(super) async fn h2_or_not(conn: &mut Parked, pending: &mut Bytes, f: &Fresh) -> Option<bool> {
    if let Some(h2) = told(pending, f.h2c) {
        return Some(h2);
    }
    let deadline = tokio::time::Instant::now() + f.wait;
    let before = bytes::BytesMut::from(&pending[..]);
    let (read, h2) = first_bytes(&mut conn.stream, deadline, f.h2c, before).await?;
    if let Some(p) = &conn.permit {
        p.front().bytes_in(read.len() - pending.len());
    }
    *pending = read;
    Some(h2)
}

/// Whether `first` (a connection's first bytes) starts HTTP/2 with prior knowledge: `None`
/// while it cannot be told yet (nothing, or a part of `PRI `, the start of the HTTP/2 preface
/// and not an HTTP/1 method anyone uses).
fn told(first: &[u8], h2c: bool) -> Option<bool> {
    let seen = first.len().min(4);
    if !h2c {
        return (!first.is_empty()).then_some(false);
    }
    if first[..seen] != b"PRI "[..seen] {
        return Some(false);
    }
    (seen == 4).then_some(true)
}

/// Waits (until `deadline`) for a new connection's first bytes and reads them after `buf` (what
/// was read before), for the lane or hyper to take from there, until [`told`] can tell.
/// `None`: the client closed or sent nothing in time; else the bytes and whether the client
/// speaks HTTP/2 with prior knowledge. A read, not a peek and then a read: one system call
/// less per connection. The buffer is taken only once the socket is readable, so a client
/// that connects and sends nothing holds none; a part of `PRI ` waits for the socket, not on
/// a timer (the bytes were taken).
async fn first_bytes(
    stream: &mut ClientStream,
    deadline: tokio::time::Instant,
    h2c: bool,
    mut buf: bytes::BytesMut,
) -> Option<(Bytes, bool)> {
    // One timer, for the deadline, and the socket polled directly (a small future: a
    // connection waiting for its first bytes is a task of its own).
    let sleep = tokio::time::sleep_until(deadline);
    tokio::pin!(sleep);
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
        if let Some(h2) = told(&buf, h2c) {
            return Some((buf.freeze(), h2));
        }
    }
}

/// A read of what the client sent first (see [`first_bytes`]): `None` on an error.
fn poll_first_read(
    stream: &mut ClientStream,
    cx: &mut Context<'_>,
    buf: &mut bytes::BytesMut,
) -> Poll<Option<usize>> {
    if buf.capacity() - buf.len() < crate::lane::READ_BUF / 8 {
        if buf.is_empty() && std::task::ready!(stream.poll_read_ready(cx)).is_err() {
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
