//! `max_connections_per_client` past accept: the client a PROXY header announced counted once
//! the header is read, and what a refused connection is told (see docs/limits.md).

use super::Shared;
use crate::proxy;
use crate::session::stream::ClientStream;

/// `max_connections_per_client` by the client a PROXY header announced (the socket's peer is
/// the balancer, not counted at accept): its place, `Ok(None)` when nothing is counted (no
/// limit, no client announced, or one in `trusted_proxies`), `Err` when it has that many open
/// already (counted in `refused`).
pub(super) fn announced_client_slot(
    shared: &Shared,
    rt: &proxy::Runtime,
    origin: &crate::session::Origin,
) -> Result<Option<crate::limits::ClientSlot>, ()> {
    let max = rt.limits.max_connections_per_client;
    match origin.source {
        Some(src) if max > 0 && !rt.clients.trusted.contains(src.ip()) => {
            shared.clients.open(src.ip(), max).map(Some).ok_or(())
        }
        _ => Ok(None),
    }
}

/// What a connection refused for its client's `max_connections_per_client` is told on a plain
/// listener, as nginx's `limit_conn` answers.
const BUSY: &[u8] =
    b"HTTP/1.1 503 Service Unavailable\r\nConnection: close\r\nContent-Length: 0\r\n\r\n";

/// Closes a connection refused at accept for its client's `max_connections_per_client`: on a
/// plain listener after a 503 written if the socket takes it at once (never waited for); on a
/// TLS listener silently (nothing can be said before a handshake).
pub fn refuse_busy(stream: ClientStream, tls: bool) {
    if !tls {
        refuse_busy_stream(&stream);
    }
}

#[cold]
pub(super) fn refuse_busy_stream(stream: &ClientStream) {
    let _ = stream.try_write(BUSY);
}
