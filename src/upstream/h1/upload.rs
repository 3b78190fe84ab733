//! Writing a request upstream: its head and body, full-duplex with the response.

use super::*;

/// Why sending a request stopped.
pub(super) enum Upstream {
    /// The client's body failed (what the client is told).
    Client(crate::error::ErrorKind),
    Io(io::Error),
}

/// One write of `data`, ended early if the connection is ended from outside.
pub(super) fn poll_write(
    io: &mut Io,
    kill: &Kill,
    cx: &mut Context<'_>,
    data: &[u8],
) -> Poll<io::Result<usize>> {
    if kill.killed() {
        return Poll::Ready(Err(killed()));
    }
    let written = Pin::new(io).poll_write(cx, data);
    outcome(kill, cx, written)
}

/// A write's outcome as the writers here take it: a write that waits also waits on the kill
/// switch, and a write of nothing is `WriteZero`.
fn outcome(kill: &Kill, cx: &Context<'_>, r: Poll<io::Result<usize>>) -> Poll<io::Result<usize>> {
    match r {
        Poll::Pending => kill.pending(cx),
        Poll::Ready(Ok(0)) => Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
        r => r,
    }
}

/// Pieces of a request body written in one `writev` at most: a chunk is three (its size
/// line, its data, the line's end), so a few chunks go out together.
const GATHER: usize = 16;

/// One vectored write of the first of `pieces` (at most [`GATHER`]), ended early as
/// [`poll_write`] is; what was written is taken off `pieces`. A chunked body's size lines and
/// data then go out together, not a write (and a packet) each.
pub(super) fn poll_write_pieces(
    io: &mut Io,
    kill: &Kill,
    cx: &mut Context<'_>,
    pieces: &mut std::collections::VecDeque<Bytes>,
) -> Poll<io::Result<()>> {
    if kill.killed() {
        return Poll::Ready(Err(killed()));
    }
    let mut slices = [io::IoSlice::new(&[]); GATHER];
    let mut k = 0;
    for (slice, piece) in slices.iter_mut().zip(pieces.iter()) {
        *slice = io::IoSlice::new(piece);
        k += 1;
    }
    let written = Pin::new(io).poll_write_vectored(cx, &slices[..k]);
    let mut n = ready!(outcome(kill, cx, written))?;
    while let Some(front) = pieces.front_mut() {
        if n < front.len() {
            front.advance(n);
            break;
        }
        n -= front.len();
        pieces.pop_front();
    }
    Poll::Ready(Ok(()))
}

/// The request body on its way out: framed pieces waiting to be written.
pub(super) struct Upload {
    pub(super) framing: Out,
    pub(super) pieces: std::collections::VecDeque<Bytes>,
    pub(super) ended: bool,
}

impl Upload {
    /// A body frame, framed: copied into `head` (the first write) when given, else queued.
    pub(super) fn encode(
        &mut self,
        frame: Frame<Bytes>,
        head: Option<&mut Vec<u8>>,
    ) -> io::Result<()> {
        let data = match frame.into_data() {
            Ok(d) => d,
            // Trailers come last; only chunked framing can carry them.
            Err(frame) => {
                return match frame.into_trailers() {
                    Ok(t) => self.end(Some(&t), head),
                    Err(_) => Ok(()),
                }
            }
        };
        if data.is_empty() {
            return Ok(());
        }
        match &mut self.framing {
            Out::Length(left) => {
                let n = data.len() as u64;
                if n > *left {
                    return Err(invalid("request body longer than its Content-Length"));
                }
                *left -= n;
                match head {
                    Some(out) => out.extend_from_slice(&data),
                    None => self.pieces.push_back(data),
                }
            }
            Out::Chunked => {
                let mut size = Vec::with_capacity(18);
                write_hex(&mut size, data.len());
                size.extend_from_slice(b"\r\n");
                match head {
                    Some(out) => {
                        out.extend_from_slice(&size);
                        out.extend_from_slice(&data);
                        out.extend_from_slice(b"\r\n");
                    }
                    None => {
                        self.pieces.push_back(Bytes::from(size));
                        self.pieces.push_back(data);
                        self.pieces.push_back(Bytes::from_static(b"\r\n"));
                    }
                }
            }
            Out::None => {}
        }
        Ok(())
    }

    /// The end of the body (with its trailers, if chunked).
    pub(super) fn end(
        &mut self,
        trailers: Option<&HeaderMap>,
        head: Option<&mut Vec<u8>>,
    ) -> io::Result<()> {
        self.ended = true;
        match self.framing {
            Out::Length(left) if left > 0 => {
                Err(invalid("request body shorter than its Content-Length"))
            }
            Out::Chunked => {
                let mut last = Vec::with_capacity(5);
                last.extend_from_slice(b"0\r\n");
                for (name, value) in trailers.into_iter().flatten() {
                    last.extend_from_slice(name.as_str().as_bytes());
                    last.extend_from_slice(b": ");
                    last.extend_from_slice(value.as_bytes());
                    last.extend_from_slice(b"\r\n");
                }
                last.extend_from_slice(b"\r\n");
                match head {
                    Some(out) => out.extend_from_slice(&last),
                    None => self.pieces.push_back(Bytes::from(last)),
                }
                Ok(())
            }
            _ => Ok(()),
        }
    }
}

/// `n` in hexadecimal, as a chunk size.
pub(crate) fn write_hex(out: &mut Vec<u8>, n: usize) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut tmp = [0u8; 16];
    let mut i = tmp.len();
    let mut n = n;
    loop {
        i -= 1;
        tmp[i] = DIGITS[n & 15];
        n >>= 4;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&tmp[i..]);
}
