//! The shared part of the floor proxies: where a head ends, and the servers.
//!
//! Each proxy takes a client connection, opens one connection to a server for it (round robin
//! over [`servers`]), and then, for as long as both stay open: reads a request head, writes it
//! to the server, reads the response head and its `Content-Length` body, writes them to the
//! client. No parsing beyond the end of the head and the length, no header rewriting, no
//! routing: what is left is the system calls and the runtime, the floor under any proxy that
//! uses them. Requests with bodies, chunked responses and pipelining are not handled (wrk's GETs
//! to a static file need none of them).

/// Where the proxy listens: `$LISTEN` (`host:port`), else 127.0.0.1:18181.
pub fn listen() -> String {
    std::env::var("LISTEN").unwrap_or_else(|_| "127.0.0.1:18181".into())
}

/// The servers: `$SERVERS` (`host:port` separated by spaces), else three on 127.0.0.1.
pub fn servers() -> Vec<&'static str> {
    let list = std::env::var("SERVERS")
        .unwrap_or_else(|_| "127.0.0.1:19201 127.0.0.1:19202 127.0.0.1:19203".into());
    list.split_whitespace()
        .map(|s| &*Box::leak(s.to_string().into_boxed_str()))
        .collect()
}

/// The length of a complete head at the front of `b` and its `Content-Length` (0 when it has
/// none); `None` while the head is incomplete.
pub fn head_end(b: &[u8]) -> Option<(usize, usize)> {
    let end = b.windows(4).position(|w| w == b"\r\n\r\n")? + 4;
    let mut length = 0;
    for line in b[..end].split(|&c| c == b'\n') {
        if line.len() > 15 && line[..15].eq_ignore_ascii_case(b"content-length:") {
            length = std::str::from_utf8(&line[15..])
                .ok()
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(0);
        }
    }
    Some((end, length))
}

/// Runs a floor proxy on tokio's current-thread runtime (epoll), as langur's workers run: each
/// client connection accepted on [`listen`] is handed to `relay` with its server (round robin
/// over [`servers`]), in a task of its own.
pub fn serve_on_tokio<F>(relay: impl Fn(tokio::net::TcpStream, &'static str) -> F)
where
    F: std::future::Future + Send + 'static,
    F::Output: Send,
{
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()
        .expect("a runtime");
    rt.block_on(async {
        let listener = tokio::net::TcpListener::bind(listen()).await.expect("bind");
        let servers = servers();
        for n in 0.. {
            let Ok((client, _)) = listener.accept().await else {
                continue;
            };
            tokio::spawn(relay(client, servers[n % servers.len()]));
        }
    });
}
