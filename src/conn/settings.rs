//! hyper's server settings for client connections, from the runtime's limits.

use crate::proxy;

/// HTTP/1.1 server settings for TLS connections (plain ones: [`h1_plain_builder`]). The head
/// deadline is the watchdog's (see [`super::drive_until_stopped`]), not hyper's: hyper's runs from
/// the moment it waits for a head, so it would close idle keep-alive connections at
/// `header_read_timeout` rather than `keepalive_timeout`.
pub(super) fn h1_builder(rt: &proxy::Runtime) -> hyper::server::conn::http1::Builder {
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(crate::timer::LazyTimer)
        .header_read_timeout(None)
        .max_headers(rt.limits.max_headers)
        .max_header_size(rt.limits.max_header_size)
        .keep_alive(true);
    builder
}

/// HTTP/2 server settings (TLS with ALPN h2, and h2c), from the runtime's limits.
pub(super) fn h2_builder(
    rt: &proxy::Runtime,
) -> hyper::server::conn::http2::Builder<hyper_util::rt::TokioExecutor> {
    let mut builder =
        hyper::server::conn::http2::Builder::new(hyper_util::rt::TokioExecutor::new());
    builder
        .timer(hyper_util::rt::TokioTimer::new())
        .max_concurrent_streams(rt.h2.max_concurrent_streams)
        .initial_stream_window_size(rt.h2.window)
        .initial_connection_window_size(rt.h2.window)
        .max_header_list_size(rt.limits.max_header_size as u32)
        // What hyper buffers per stream for a client that does not take it (hyper's default is
        // about 400 KiB: 100 streams a connection held ~40 MB of a client that reads nothing).
        .max_send_buf_size(H2_SEND_BUFFER);
    builder
}

/// Bytes of a response body buffered per HTTP/2 stream ahead of the client's window: 16 KiB
/// (nginx writes HTTP/2 bodies in 8 KiB chunks), so a connection of 100 streams holds 1.6 MiB
/// at most.
const H2_SEND_BUFFER: usize = 16 * 1024;

/// HTTP/1.1 server settings for a plain connection's hyper turn (see [`super::drive`]); its head
/// deadline is hyper's own, as the turn starts with a request's first bytes.
pub(super) fn h1_plain_builder(rt: &proxy::Runtime) -> hyper::server::conn::http1::Builder {
    let l = &rt.limits;
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(crate::timer::LazyTimer)
        .header_read_timeout(l.header_read_timeout)
        .max_header_size(l.max_header_size)
        .max_headers(l.max_headers)
        .keep_alive(true)
        .writev(false);
    builder
}
