//! Request-head validation as a client's bytes meet it: the framing scanner over the raw
//! stream (split at a point the input chooses; the first byte that breaks the chunked framing
//! rules is found wherever the split falls), the HTTP/2 frame follower, hyper's HTTP/1 parser
//! on an in-memory connection, and langur's strict checks on every request hyper accepts. Never a panic; and a
//! request the scanner saw as ambiguous is one the proxy refuses. And a head the lane (langur's
//! own path for bodiless requests) takes is one hyper takes too, read the same way.
#![no_main]
use libfuzzer_sys::fuzz_target;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use tokio::io::AsyncWriteExt;

fuzz_target!(|data: &[u8]| {
    if data.is_empty() {
        return;
    }
    let split = usize::from(data[0]) % data.len().max(1);
    let input = &data[1..];

    let mut scanner = langur::framing::Framing::default();
    let (a, b) = input.split_at(split.min(input.len()));
    let taken = scanner.scan(a) + scanner.scan(b);
    let _ = scanner.ambiguous();
    // However the bytes are split, the first byte that breaks the chunked framing rules is the
    // same one, and nothing from it on is taken.
    let mut whole = langur::framing::Framing::default();
    let all = whole.scan(input);
    assert_eq!(taken, all, "split at {split}: {input:?}");
    assert_eq!(scanner.invalid(), whole.invalid());
    assert_eq!(whole.invalid(), all < input.len());
    let _ = scanner.progress();
    // The same bytes as HTTP/2 frames: followed without a panic.
    let mut frames = langur::framing::H2Frames::default();
    frames.scan(a);
    frames.scan(b);
    let _ = frames.progress();

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let (mut client, server) = tokio::io::duplex(64 * 1024);
        let limits = langur::config::Limits::default();
        let seen = Arc::new(AtomicU64::new(0));
        let s = seen.clone();
        let svc = hyper::service::service_fn(move |req: http::Request<hyper::body::Incoming>| {
            s.fetch_add(1, Ordering::Relaxed);
            let verdict = langur::strict::check_request(
                req.method(),
                req.uri(),
                req.version(),
                req.headers(),
                &limits,
            );
            let status = match verdict {
                Ok(()) => 200,
                Err(kind) => kind.status().as_u16(),
            };
            async move {
                Ok::<_, std::convert::Infallible>(
                    http::Response::builder()
                        .status(status)
                        .body(String::new())
                        .expect("response"),
                )
            }
        });
        let conn = hyper::server::conn::http1::Builder::new()
            .max_headers(100)
            .serve_connection(hyper_util::rt::TokioIo::new(server), svc);
        let feed = async move {
            let _ = client.write_all(input).await;
            let _ = client.shutdown().await;
            let mut sink = Vec::new();
            let _ = tokio::io::AsyncReadExt::read_to_end(&mut client, &mut sink).await;
        };
        let _ = tokio::time::timeout(std::time::Duration::from_secs(1), async {
            tokio::join!(conn, feed)
        })
        .await;
        // The lane takes only heads hyper reads the same way.
        langur::lane::fuzzing::agrees_with_hyper(input).await;
    });
});
