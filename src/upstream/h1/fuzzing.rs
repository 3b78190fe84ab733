//! The client side driven over an in-memory connection, for the `upstream_response` fuzz
//! target and the replay of its seeds.

use super::*;
use http_body_util::BodyExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// What an exchange came to.
#[derive(Debug)]
pub struct Outcome {
    pub status: u16,
    pub content_length: Option<u64>,
    pub body: Result<Vec<u8>, String>,
    pub trailers: bool,
    /// The connection went back to the idle list.
    pub reused: bool,
}

/// Sends a GET (or a HEAD) to a server that answers `response`, written in pieces whose
/// sizes cycle through `pieces`, then closes. `Err` is a failed exchange (its message).
pub async fn exchange(response: &[u8], pieces: &[u8], head: bool) -> Result<Outcome, String> {
    let (near, mut far) = tokio::io::duplex(64 * 1024);
    let peer = Arc::new(Peer::new(1));
    let conn = Conn::new(Io::Mem(near), &peer, Duration::from_secs(5));
    let response = response.to_vec();
    let pieces: Vec<usize> = pieces.iter().map(|&p| usize::from(p).max(1)).collect();
    let origin = tokio::spawn(async move {
        let mut req = Vec::new();
        let mut buf = [0u8; 1024];
        while !req.windows(4).any(|w| w == b"\r\n\r\n") {
            match far.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => req.extend_from_slice(&buf[..n]),
            }
        }
        let mut at = 0;
        let mut i = 0;
        while at < response.len() {
            let n = pieces
                .get(i % pieces.len().max(1))
                .copied()
                .unwrap_or(usize::MAX);
            let end = at.saturating_add(n).min(response.len());
            if far.write_all(&response[at..end]).await.is_err() {
                return;
            }
            at = end;
            i += 1;
        }
        let _ = far.shutdown().await;
        // Keep the far side open until the client is done (a close is the shutdown above).
        let _ = far.read(&mut buf).await;
    });
    let method = if head { Method::HEAD } else { Method::GET };
    let mut req = Request::new(UpBody::Empty);
    *req.method_mut() = method;
    req.headers_mut()
        .insert(http::header::HOST, HeaderValue::from_static("fuzz"));
    let result = conn.send(req, &mut None).await;
    let outcome = match result {
        Err(e) => Err(format!("{e:?}")),
        Ok(resp) => {
            let status = resp.status().as_u16();
            let content_length = resp
                .headers()
                .get(CONTENT_LENGTH)
                .and_then(|v| strict::digits(v.as_bytes()));
            let mut body = resp.into_body();
            let mut data = Vec::new();
            let mut trailers = false;
            let mut failed = None;
            while let Some(frame) = body.frame().await {
                match frame {
                    Ok(f) => match f.into_data() {
                        Ok(d) => data.extend_from_slice(&d),
                        Err(f) => trailers |= f.is_trailers(),
                    },
                    Err(e) => {
                        failed = Some(e.to_string());
                        break;
                    }
                }
            }
            let reused = failed.is_none() && body.take_reusable().is_some();
            Ok(Outcome {
                status,
                content_length,
                body: match failed {
                    None => Ok(data),
                    Some(e) => Err(e),
                },
                trailers,
                reused,
            })
        }
    };
    origin.abort();
    outcome
}

/// The rules every outcome keeps: a body that ended cleanly has the length its head
/// announced (none after HEAD, 204 or 304), and only such a body leaves the connection
/// reusable.
pub fn check(outcome: &Outcome, head: bool) {
    let Ok(body) = &outcome.body else {
        assert!(
            !outcome.reused,
            "a failed body left its connection reusable"
        );
        return;
    };
    let bodiless = head || outcome.status == 204 || outcome.status == 304 || outcome.status < 200;
    if bodiless {
        assert!(body.is_empty(), "a body after HEAD, 1xx, 204 or 304");
    } else if let Some(n) = outcome.content_length {
        assert_eq!(
            body.len() as u64,
            n,
            "a body of another length than announced"
        );
    }
}
