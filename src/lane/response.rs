//! The response on the wire: its head (the status line, the fields, and the body's framing
//! chosen as hyper's encoder does, with `Connection: close` and `Date` as hyper adds them) and
//! its body (by length or in chunks, with the trailers a client accepts), written into the
//! lane's output buffer for one `send`.

use super::*;

/// How the response body goes on the wire.
pub(super) enum Framing {
    /// No body (HEAD, 204, 304, or an empty one).
    None,
    Length(u64),
    /// Chunked; `Some` lists the trailer fields the client may be sent.
    Chunked(Option<Vec<HeaderValue>>),
}

/// Writes the status line and fields into `out`, and chooses the body's framing as hyper's
/// encoder does. Sets `close` when the response asks for it; says `Connection: close` when the
/// client asked (or the worker is stopping) and the response does not already.
pub(super) fn encode_head(
    out: &mut Vec<u8>,
    parts: &http::response::Parts,
    body: &ProxyBody,
    head_only: bool,
    trailers_ok: bool,
    close: &mut bool,
) -> Framing {
    let mut status = parts.status;
    if status.is_informational() {
        // Only a 101 could come from the proxy, and upgrades never take the lane.
        status = StatusCode::BAD_GATEWAY;
        *close = true;
    }
    // One allocation for the head on a new connection, not a doubling per field (a no-op
    // afterwards: the buffer is kept for the connection's next responses).
    out.reserve(HEAD_RESERVE + 64 * parts.headers.len());
    status_line(out, status);
    let fields = copy_fields(out, &parts.headers);
    let framing = if status == StatusCode::NO_CONTENT || status == StatusCode::NOT_MODIFIED {
        Framing::None
    } else if head_only {
        head_length(out, body, fields.declared);
        Framing::None
    } else {
        body_framing(out, body, fields.declared, fields.announced, trailers_ok)
    };
    *close |= fields.says_close;
    if *close && !fields.says_close {
        out.extend_from_slice(b"connection: close\r\n");
    }
    if !fields.has_date {
        out.extend_from_slice(b"date: ");
        date(out);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"\r\n");
    framing
}

/// Room for the status line and langur's own fields (`content-length`, `date`, `connection`).
const HEAD_RESERVE: usize = 160;

/// `HTTP/1.1 <code> <reason>` and CRLF.
#[inline]
fn status_line(out: &mut Vec<u8>, status: StatusCode) {
    if status == StatusCode::OK {
        out.extend_from_slice(b"HTTP/1.1 200 OK\r\n");
    } else {
        out.extend_from_slice(b"HTTP/1.1 ");
        out.extend_from_slice(status.as_str().as_bytes());
        out.push(b' ');
        out.extend_from_slice(status.canonical_reason().unwrap_or("<none>").as_bytes());
        out.extend_from_slice(b"\r\n");
    }
}

/// What the response's own fields say about its framing and its end.
struct Fields<'a> {
    /// The first `Content-Length`.
    declared: Option<&'a HeaderValue>,
    /// The `Trailer` fields, if any.
    announced: Option<Vec<HeaderValue>>,
    has_date: bool,
    /// `Connection: close`.
    says_close: bool,
}

/// Writes the response's fields into `out`, but those the framing decides (`Content-Length`,
/// `Transfer-Encoding`, `Trailer`): they are collected, as are `Date` and `Connection: close`.
#[inline]
fn copy_fields<'a>(out: &mut Vec<u8>, headers: &'a HeaderMap) -> Fields<'a> {
    let mut fields = Fields {
        declared: None,
        announced: None,
        has_date: false,
        says_close: false,
    };
    for (name, value) in headers {
        if name == header::CONTENT_LENGTH {
            fields.declared.get_or_insert(value);
            continue;
        }
        if name == header::TRANSFER_ENCODING {
            continue;
        }
        if name == header::TRAILER {
            let announced = fields.announced.get_or_insert_with(Vec::new);
            announced.push(value.clone());
            continue;
        }
        if name == header::CONNECTION && has_token(value.as_bytes(), "close") {
            fields.says_close = true;
        }
        fields.has_date |= name == header::DATE;
        field(out, name.as_str().as_bytes(), value.as_bytes());
    }
    fields
}

/// The body length of a response to HEAD: what a GET would have sent, as the server
/// (`declared`) or the body said; none if neither knows.
#[inline]
fn head_length(out: &mut Vec<u8>, body: &ProxyBody, declared: Option<&HeaderValue>) {
    if let Some(v) = declared {
        field(out, b"content-length", v.as_bytes());
    } else if !body.is_end_stream() {
        if let Some(n) = body.size_hint().exact() {
            length(out, n);
        }
    }
}

/// How a response body that may be sent goes on the wire, with its framing fields: the
/// body's exact length, else the server's `Content-Length` (`declared`), else chunked,
/// repeating the `Trailer` fields (`announced`), which are sent as trailers only if the client
/// accepts them (`trailers_ok`).
#[inline]
fn body_framing(
    out: &mut Vec<u8>,
    body: &ProxyBody,
    declared: Option<&HeaderValue>,
    announced: Option<Vec<HeaderValue>>,
    trailers_ok: bool,
) -> Framing {
    let exact = if body.is_end_stream() {
        Some(0)
    } else {
        body.size_hint().exact()
    };
    if let Some(n) = exact {
        length(out, n);
        if n == 0 {
            Framing::None
        } else {
            Framing::Length(n)
        }
    } else if let Some(n) = declared.and_then(|v| crate::strict::digits(v.as_bytes())) {
        length(out, n);
        Framing::Length(n)
    } else {
        out.extend_from_slice(b"transfer-encoding: chunked\r\n");
        for v in announced.iter().flatten() {
            field(out, b"trailer", v.as_bytes());
        }
        Framing::Chunked(announced.filter(|_| trailers_ok))
    }
}

fn field(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    out.extend_from_slice(name);
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

fn length(out: &mut Vec<u8>, n: u64) {
    out.extend_from_slice(b"content-length: ");
    out.extend_from_slice(itoa::Buffer::new().format(n).as_bytes());
    out.extend_from_slice(b"\r\n");
}

/// Fields never sent as trailers (as in hyper: they change how the message is read, routed or
/// cached).
fn trailer_allowed(name: &HeaderName, announced: &[HeaderValue]) -> bool {
    use http::header::*;
    let forbidden = [
        AUTHORIZATION,
        CACHE_CONTROL,
        CONTENT_ENCODING,
        CONTENT_LENGTH,
        CONTENT_RANGE,
        CONTENT_TYPE,
        HOST,
        MAX_FORWARDS,
        SET_COOKIE,
        TRAILER,
        TRANSFER_ENCODING,
        TE,
    ];
    !forbidden.contains(name)
        && announced
            .iter()
            .any(|v| has_token(v.as_bytes(), name.as_str()))
}

fn broken(what: &'static str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what)
}

/// Writes the head (already in `out`) and the body. An error means the connection must close:
/// the client went away, or the body failed or did not match its length.
pub(super) async fn write_body(
    lane: &mut Lane<'_>,
    mut body: ProxyBody,
    framing: Framing,
) -> io::Result<()> {
    let mut wire = match framing {
        Framing::None => {
            drop(body);
            return lane.flush().await;
        }
        Framing::Length(n) => Wire::length(n),
        Framing::Chunked(announced) => Wire::chunked(announced),
    };
    loop {
        // Whatever is ready now goes into the same write as the head.
        let frame = match std::future::poll_fn(|cx| Poll::Ready(Pin::new(&mut body).poll_frame(cx)))
            .await
        {
            Poll::Ready(f) => f,
            Poll::Pending => {
                lane.flush().await?;
                let next = std::future::poll_fn(|cx| Pin::new(&mut body).poll_frame(cx));
                match lane.watching(std::pin::pin!(next)).await {
                    Some(f) => f,
                    None => return Err(broken("client closed")),
                }
            }
        };
        let frame = match frame {
            None => {
                let end = wire.end(&mut lane.out);
                let flushed = lane.flush().await;
                return end.and(flushed);
            }
            Some(Err(_)) => {
                // What came before is sent; the missing end tells the client.
                let _ = lane.flush().await;
                return Err(broken("body failed"));
            }
            Some(Ok(f)) => f,
        };
        match frame.into_data() {
            Ok(data) => {
                if data.is_empty() {
                    continue;
                }
                wire.data_start(&mut lane.out, data.len())?;
                if data.len() >= DIRECT {
                    lane.flush_with(&data).await?;
                } else {
                    lane.out.extend_from_slice(&data);
                }
                wire.data_end(&mut lane.out);
                if lane.out.len() >= OUT_MAX {
                    lane.flush().await?;
                }
            }
            Err(frame) => {
                if let Ok(fields) = frame.into_trailers() {
                    wire.trailers(&mut lane.out, &fields);
                }
            }
        }
    }
}

/// A response body on its way out: its framing, and how far it got.
struct Wire {
    /// Chunked (else a length).
    chunked: bool,
    /// Bytes the declared length still expects.
    left: u64,
    /// The trailer fields the client may be sent (chunked only).
    announced: Option<Vec<HeaderValue>>,
    /// The last chunk and the trailers were written.
    trailed: bool,
}

impl Wire {
    fn length(n: u64) -> Wire {
        Wire {
            chunked: false,
            left: n,
            announced: None,
            trailed: false,
        }
    }

    fn chunked(announced: Option<Vec<HeaderValue>>) -> Wire {
        Wire {
            chunked: true,
            left: 0,
            announced,
            trailed: false,
        }
    }

    /// Before `len` bytes of data: a chunk's size line, or the count against the length (an
    /// error if they go past it).
    #[inline]
    fn data_start(&mut self, out: &mut Vec<u8>, len: usize) -> io::Result<()> {
        if self.chunked {
            write_hex(out, len);
            out.extend_from_slice(b"\r\n");
        } else if len as u64 > self.left {
            return Err(broken("body longer than its length"));
        } else {
            self.left -= len as u64;
        }
        Ok(())
    }

    /// After the data: the CRLF that ends a chunk.
    #[inline]
    fn data_end(&self, out: &mut Vec<u8>) {
        if self.chunked {
            out.extend_from_slice(b"\r\n");
        }
    }

    /// Trailers: with a last chunk, the fields the response announced and the client may be
    /// sent (RFC 9112 7.1.2), once; ignored for a client that does not take them, or a body
    /// with a length.
    fn trailers(&mut self, out: &mut Vec<u8>, fields: &HeaderMap) {
        let Some(announced) = &self.announced else {
            return;
        };
        if self.trailed {
            return;
        }
        self.trailed = true;
        out.extend_from_slice(b"0\r\n");
        for (name, value) in fields {
            if trailer_allowed(name, announced) {
                field(out, name.as_str().as_bytes(), value.as_bytes());
            }
        }
        out.extend_from_slice(b"\r\n");
    }

    /// The body ended: the last chunk (unless trailers ended it already), or an error if it was
    /// shorter than its length.
    #[inline]
    fn end(&self, out: &mut Vec<u8>) -> io::Result<()> {
        if self.chunked {
            if !self.trailed {
                out.extend_from_slice(b"0\r\n\r\n");
            }
        } else if self.left != 0 {
            return Err(broken("body shorter than its length"));
        }
        Ok(())
    }
}

/// `Date` values, formatted once a second per thread (as hyper caches them).
fn date(out: &mut Vec<u8>) {
    use std::cell::RefCell;
    use std::time::{SystemTime, UNIX_EPOCH};
    thread_local! {
        static CACHED: RefCell<(u64, [u8; 29])> = const { RefCell::new((u64::MAX, [0; 29])) };
    }
    let now = SystemTime::now();
    let secs = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    CACHED.with(|c| {
        let mut c = c.borrow_mut();
        if c.0 != secs {
            let s = httpdate::fmt_http_date(now);
            if s.len() == 29 {
                c.1.copy_from_slice(s.as_bytes());
                c.0 = secs;
            } else {
                out.extend_from_slice(s.as_bytes());
                return;
            }
        }
        out.extend_from_slice(&c.1);
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_are_imf_fixdate() {
        let mut out = Vec::new();
        date(&mut out);
        date(&mut out);
        assert_eq!(out.len(), 58);
        assert!(httpdate::parse_http_date(std::str::from_utf8(&out[..29]).unwrap()).is_ok());
        assert_eq!(out[..29], out[29..]);
    }
}
