//! A response body as it is read: lengths, chunks and trailers, upgrades.

use super::*;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Chunk {
    /// Expecting a chunk-size line.
    Size,
    /// Data left in the current chunk.
    Data(u64),
    /// The CRLF after a chunk's data.
    DataEnd,
    /// The trailer section after the last chunk.
    Trailers,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum State {
    Length(u64),
    Chunked(Chunk),
    /// Delimited by the server closing the connection.
    Close,
    /// A 101: what follows is another protocol (see [`Body::into_upgraded`]).
    Switched,
    Done,
}

/// A server's response body, read from the connection as it is polled.
#[derive(Debug)]
pub struct Body {
    pub(super) conn: Option<Box<Conn>>,
    pub(super) state: State,
    /// The connection can carry another exchange once this body ended.
    pub(super) reusable: bool,
    /// A break, reported at the next poll.
    pub(super) failed: Option<io::Error>,
    /// The head's hop-by-hop fields were left out already.
    pub(super) stripped: bool,
}

impl Body {
    /// The response's hop-by-hop fields were left out as its head was read.
    pub fn head_stripped(&self) -> bool {
        self.stripped
    }

    /// The connection, once the body ended cleanly and the connection can be reused.
    pub fn take_reusable(&mut self) -> Option<Box<Conn>> {
        if self.state != State::Done || !self.reusable {
            return None;
        }
        let mut conn = self.conn.take()?;
        conn.wrote = false;
        (!conn.broken && !conn.sending && conn.buf.is_empty()).then_some(conn)
    }

    /// After a 101: the connection as a byte stream, with anything the server already sent.
    pub fn into_upgraded(mut self) -> Option<Upgraded> {
        if self.state != State::Switched {
            return None;
        }
        let Conn { io, buf, .. } = *self.conn.take()?;
        Some(Upgraded {
            pre: buf.freeze(),
            io,
        })
    }

    /// Takes up to `max` bytes of what is buffered.
    pub(super) fn take(conn: &mut Conn, max: u64) -> Bytes {
        let n = conn
            .buf
            .len()
            .min(usize::try_from(max).unwrap_or(usize::MAX));
        conn.buf.split_to(n).freeze()
    }
}

impl http_body::Body for Body {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        let this = self.get_mut();
        if let Some(e) = this.failed.take() {
            return Poll::Ready(Some(Err(e)));
        }
        match this.poll_next(cx) {
            // A break is reported one poll late, so what came before it is flushed to the
            // client first (hyper drops its unsent buffer on a body error).
            Poll::Ready(Some(Err(e))) => {
                this.conn = None;
                this.failed = Some(e);
                cx.waker().wake_by_ref();
                Poll::Pending
            }
            other => other,
        }
    }

    fn is_end_stream(&self) -> bool {
        matches!(self.state, State::Done | State::Switched)
    }

    fn size_hint(&self) -> SizeHint {
        match self.state {
            State::Length(n) => SizeHint::with_exact(n),
            State::Done | State::Switched => SizeHint::with_exact(0),
            _ => SizeHint::default(),
        }
    }
}

/// What the buffered bytes gave a body being read, for [`Body::poll_next`].
enum Step {
    /// A frame, the end of the body, or a break: handed out as it is.
    Out(Option<io::Result<Frame<Bytes>>>),
    /// The state moved on without output: look at the buffer again.
    Again,
    /// The buffer holds nothing more to serve: read from the server.
    Fill,
}

impl Body {
    pub(super) fn poll_next(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Option<io::Result<Frame<Bytes>>>> {
        loop {
            let Some(conn) = self.conn.as_mut() else {
                return Poll::Ready(None);
            };
            if conn.sending {
                // The rest of the request goes out as the response comes in.
                if let Err(e) = conn.upload_beside_body(cx) {
                    return Poll::Ready(Some(Err(e)));
                }
            }
            // Serve what the buffer holds; the states that fall through need more bytes.
            match self.state.serve(conn) {
                Step::Out(out) => return Poll::Ready(out),
                Step::Again => continue,
                Step::Fill => {}
            }
            match ready!(conn.poll_fill(cx, true)) {
                Ok(0) => return Poll::Ready(self.state.closed()),
                Ok(_) => {}
                Err(e) => return Poll::Ready(Some(Err(e))),
            }
        }
    }
}

impl Conn {
    /// One turn of the rest of the request going out while the response body is read. `Err`
    /// is the client's body failing (the response cannot be finished either); a failed write
    /// only stops the sending, as the server may still answer in full.
    #[inline]
    fn upload_beside_body(&mut self, cx: &mut Context<'_>) -> io::Result<()> {
        match self.poll_upload(cx) {
            Poll::Ready(Ok(())) => self.sending = false,
            Poll::Ready(Err(Upstream::Client(_))) => {
                self.stop_sending();
                return Err(io::Error::other(
                    "the client's body failed while the response streamed",
                ));
            }
            Poll::Ready(Err(Upstream::Io(e))) => {
                tracing::debug!(error = %e, "request body write failed");
                self.stop_sending();
            }
            Poll::Pending => {}
        }
        Ok(())
    }
}

impl State {
    /// The next frame the buffered bytes make in this state (RFC 9112 6.3 for the length
    /// kinds, 7.1 for chunks and trailers), or whether more bytes are needed.
    #[inline]
    fn serve(&mut self, conn: &mut Conn) -> Step {
        match self {
            State::Done | State::Switched => Step::Out(None),
            State::Length(left) => match counted(conn, left) {
                Some(data) => {
                    if *left == 0 {
                        *self = State::Done;
                    }
                    Step::Out(Some(Ok(Frame::data(data))))
                }
                None => Step::Fill,
            },
            State::Close if conn.buf.is_empty() => Step::Fill,
            State::Close => Step::Out(Some(Ok(Frame::data(conn.buf.split().freeze())))),
            State::Chunked(Chunk::Trailers) => {
                match trailers(&mut conn.buf, &mut conn.partial_at) {
                    Ok(Some(t)) => {
                        *self = State::Done;
                        Step::Out((!t.is_empty()).then(|| Ok(Frame::trailers(t))))
                    }
                    Ok(None) => Step::Fill,
                    Err(e) => Step::Out(Some(Err(e))),
                }
            }
            State::Chunked(chunk) => chunk.serve(conn),
        }
    }

    /// The server closed the connection: the end of a body delimited by the close, else a
    /// body cut short.
    fn closed(&mut self) -> Option<io::Result<Frame<Bytes>>> {
        if *self == State::Close {
            *self = State::Done;
            return None;
        }
        Some(Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "the server closed the connection mid-body",
        )))
    }
}

impl Chunk {
    /// A chunk-size line, a chunk's data or the CRLF after it, out of the buffered bytes
    /// (RFC 9112 7.1); the trailer section is [`State::serve`]'s, as it ends the body.
    #[inline]
    fn serve(&mut self, conn: &mut Conn) -> Step {
        match self {
            Chunk::Size => match httparse::parse_chunk_size(&conn.buf) {
                Ok(httparse::Status::Complete((used, size))) => {
                    conn.buf.advance(used);
                    *self = if size == 0 {
                        Chunk::Trailers
                    } else {
                        Chunk::Data(size)
                    };
                    Step::Again
                }
                Ok(httparse::Status::Partial) if conn.buf.len() < MAX_CHUNK_LINE => Step::Fill,
                _ => Step::Out(Some(Err(invalid("bad chunk size line")))),
            },
            Chunk::Data(left) => match counted(conn, left) {
                Some(data) => {
                    if *left == 0 {
                        *self = Chunk::DataEnd;
                    }
                    Step::Out(Some(Ok(Frame::data(data))))
                }
                None => Step::Fill,
            },
            Chunk::DataEnd if conn.buf.len() < 2 => Step::Fill,
            Chunk::DataEnd if &conn.buf[..2] == b"\r\n" => {
                conn.buf.advance(2);
                *self = Chunk::Size;
                Step::Again
            }
            Chunk::DataEnd => Step::Out(Some(Err(invalid("chunk not followed by CRLF")))),
            // Served by `State::serve`.
            Chunk::Trailers => Step::Fill,
        }
    }
}

/// Up to `left` of the buffered bytes, counted off `left`; `None` when nothing is buffered.
#[inline]
fn counted(conn: &mut Conn, left: &mut u64) -> Option<Bytes> {
    if conn.buf.is_empty() {
        return None;
    }
    let data = Body::take(conn, *left);
    *left -= data.len() as u64;
    Some(data)
}

/// A complete trailer section at the front of `buf`, taken out of it.
pub(super) fn trailers(
    buf: &mut BytesMut,
    partial_at: &mut usize,
) -> io::Result<Option<HeaderMap>> {
    if buf.starts_with(b"\r\n") {
        buf.advance(2);
        return Ok(Some(HeaderMap::new()));
    }
    if *partial_at > 0 && !ends_section(buf, *partial_at) {
        return if buf.len() < MAX_HEAD {
            Ok(None)
        } else {
            Err(invalid("trailer section too large"))
        };
    }
    *partial_at = 0;
    let mut slots = [httparse::EMPTY_HEADER; 32];
    match httparse::parse_headers(buf, &mut slots) {
        Ok(httparse::Status::Complete((used, fields))) => {
            let mut map = HeaderMap::with_capacity(fields.len());
            for f in fields {
                let name = HeaderName::from_bytes(f.name.as_bytes())
                    .map_err(|_| invalid("bad trailer name"))?;
                let value =
                    HeaderValue::from_bytes(f.value).map_err(|_| invalid("bad trailer value"))?;
                map.append(name, value);
            }
            buf.advance(used);
            Ok(Some(map))
        }
        Ok(httparse::Status::Partial) if buf.len() < MAX_HEAD => {
            *partial_at = buf.len();
            Ok(None)
        }
        Ok(httparse::Status::Partial) => Err(invalid("trailer section too large")),
        Err(e) => Err(invalid(format!("bad trailer section: {e}"))),
    }
}

/// Whether bytes from `from` on (with the three before, where a line end may have started)
/// hold an empty line: the end of a head or trailer section, with CRLF or bare LF line ends.
pub(super) fn ends_section(buf: &[u8], from: usize) -> bool {
    let tail = &buf[from.saturating_sub(3).min(buf.len())..];
    memchr::memmem::find(tail, b"\n\r\n").is_some() || memchr::memmem::find(tail, b"\n\n").is_some()
}

/// A connection after a 101, with what the server sent right after its head served first.
#[derive(Debug)]
pub struct Upgraded {
    pre: Bytes,
    io: Io,
}

impl AsyncRead for Upgraded {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if !this.pre.is_empty() {
            let n = this.pre.len().min(buf.remaining());
            buf.put_slice(&this.pre[..n]);
            this.pre.advance(n);
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut this.io).poll_read(cx, buf)
    }
}

impl AsyncWrite for Upgraded {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write(cx, buf)
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}
