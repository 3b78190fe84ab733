//! The client's bytes on their way to hyper: scanned for the framing hyper would resolve
//! silently (HTTP/1.1) and for the HTTP/2 preface and header blocks, on plain and TLS sockets.

use super::*;

/// What a client's bytes are scanned for on their way to hyper.
pub(super) enum Scan {
    /// HTTP/1.1: framing hyper would resolve silently, chunked framing rules, heads begun.
    H1(crate::framing::Framing),
    /// HTTP/2: the preface and header blocks, for their deadlines.
    H2(crate::framing::H2Frames),
}

impl Scan {
    pub(super) fn stop(&mut self) {
        if let Scan::H1(f) = self {
            f.stop();
        }
    }
}

/// The socket, with bytes hyper had read ahead (pipelined requests) served first. It records
/// whether hyper's last I/O was a completed flush.
pub(super) struct Prefixed {
    pub(super) io: TokioIo<ClientStream>,
    pub(super) prefix: Bytes,
    pub(super) state: Arc<ConnState>,
    /// Watches the request stream (see [`Scan`]).
    pub(super) scan: Scan,
    /// The scanner found bytes that break the framing rules: reads fail from here on.
    pub(super) failed: bool,
    /// A client that takes no byte of what is written for `body_timeout` is cut.
    pub(super) stall: IdleTimer,
}

impl Prefixed {
    /// hyper's socket when the lane hands a connection over: `unparsed` (what the lane read
    /// and did not take, from the first byte of a request) is read first, and the framing
    /// scanner watches from there, counting heads from the connection's requests so far (the
    /// lane only takes bodiless heads). Of `unparsed`, only the bytes before one that breaks
    /// the chunked framing rules are kept. `stall` is `body_timeout`.
    pub(super) fn h1(
        stream: ClientStream,
        mut unparsed: Bytes,
        state: &Arc<ConnState>,
        stall: Duration,
    ) -> Prefixed {
        let started = state.started.load(Ordering::Relaxed);
        let mut scan = Scan::H1(crate::framing::Framing::starting_at(started));
        let mut failed = false;
        let ok = scan_bytes(&mut scan, &mut failed, state, &unparsed);
        unparsed.truncate(ok);
        Prefixed {
            io: TokioIo::new(stream),
            prefix: unparsed,
            state: state.clone(),
            scan,
            failed,
            stall: IdleTimer::new(stall),
        }
    }

    /// hyper's socket for an h2c connection (HTTP/2 with prior knowledge), `read` its bytes
    /// read so far (none, unless a PROXY header came over a Unix-domain socket): scanned for
    /// the preface and header blocks. `stall` is `body_timeout`.
    pub(super) fn h2c(
        stream: ClientStream,
        read: Bytes,
        state: &Arc<ConnState>,
        stall: Duration,
    ) -> Prefixed {
        let mut scan = Scan::H2(Default::default());
        let mut failed = false;
        scan_bytes(&mut scan, &mut failed, state, &read);
        Prefixed {
            io: TokioIo::new(stream),
            prefix: read,
            state: state.clone(),
            scan,
            failed,
            stall: IdleTimer::new(stall),
        }
    }
}

impl Read for Prefixed {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        mut buf: ReadBufCursor<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if !this.prefix.is_empty() {
            let n = this.prefix.len().min(buf.remaining());
            buf.put_slice(&this.prefix[..n]);
            this.prefix.advance(n);
            return Poll::Ready(Ok(()));
        }
        read_scanned(
            Pin::new(this.io.inner_mut()),
            cx,
            buf,
            &mut this.scan,
            &mut this.failed,
            &this.state,
        )
    }
}

pub(super) fn invalid_framing() -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        "the request's chunked framing breaks RFC 9112 7.1",
    )
}

/// Scans what the client sent before hyper gets it; `failed` once the bytes broke the
/// chunked framing rules (hyper then gets the bytes before the bad one, and a read error).
/// Returns how many bytes of `data` hyper may have.
pub(super) fn scan_bytes(
    scan: &mut Scan,
    failed: &mut bool,
    state: &ConnState,
    data: &[u8],
) -> usize {
    match scan {
        Scan::H1(framing) => {
            let had = framing.ambiguous();
            let ok = framing.scan(data);
            if had.is_none() {
                if let Some(i) = framing.ambiguous() {
                    state.ambiguous_at.store(i, Ordering::Relaxed);
                }
            }
            state.note_scan(framing.progress());
            if ok < data.len() {
                *failed = true;
            }
            ok
        }
        Scan::H2(frames) => {
            frames.scan(data);
            state.note_scan(frames.progress());
            data.len()
        }
    }
}

/// Reads through a stack buffer, so the bytes can be scanned by the framing scanner before
/// hyper gets them (a copy of what was read; no unsafe code to look into hyper's cursor).
pub(super) fn read_scanned<T: tokio::io::AsyncRead + ?Sized>(
    io: Pin<&mut T>,
    cx: &mut Context<'_>,
    buf: ReadBufCursor<'_>,
    scan: &mut Scan,
    failed: &mut bool,
    state: &ConnState,
) -> Poll<io::Result<()>> {
    if *failed {
        return Poll::Ready(Err(invalid_framing()));
    }
    read_through(io, cx, buf, state, |data| {
        let ok = scan_bytes(scan, failed, state, data);
        if ok == 0 && *failed {
            return Err(invalid_framing());
        }
        Ok(ok)
    })
}

/// Reads into a stack buffer, counts the bytes among the listener's received, and gives hyper
/// the first `keep(bytes)` of them (or `keep`'s error).
fn read_through<T: tokio::io::AsyncRead + ?Sized>(
    io: Pin<&mut T>,
    cx: &mut Context<'_>,
    mut buf: ReadBufCursor<'_>,
    state: &ConnState,
    keep: impl FnOnce(&[u8]) -> io::Result<usize>,
) -> Poll<io::Result<()>> {
    // Uninitialized (not zeroed on every read); tokio's ReadBuf tracks what got filled.
    let mut chunk = [const { std::mem::MaybeUninit::<u8>::uninit() }; 16 * 1024];
    let want = buf.remaining().min(chunk.len());
    let mut tbuf = tokio::io::ReadBuf::uninit(&mut chunk[..want]);
    match io.poll_read(cx, &mut tbuf) {
        Poll::Ready(Ok(())) => {}
        other => return other,
    }
    let data = tbuf.filled();
    if let Some(f) = &state.front {
        f.bytes_in(data.len());
    }
    let ok = keep(data)?;
    buf.put_slice(&data[..ok]);
    Poll::Ready(Ok(()))
}

/// A TLS client connection, its bytes scanned like a plain one's (HTTP/1.1 or HTTP/2, as ALPN
/// chose).
pub(super) struct ScannedTls {
    pub(super) io: tokio_rustls::server::TlsStream<TcpStream>,
    pub(super) scan: Scan,
    pub(super) failed: bool,
    pub(super) state: Arc<ConnState>,
    pub(super) stall: IdleTimer,
}

/// A write that made no progress: an error once the client took nothing for the silence
/// limit (see [`IdleTimer`]), else `Pending`. Any progress disarms the limit.
pub(super) fn written<T>(
    r: Poll<io::Result<T>>,
    stall: &mut IdleTimer,
    cx: &mut Context<'_>,
) -> Poll<io::Result<T>> {
    match r {
        Poll::Pending if stall.expired(cx) => Poll::Ready(Err(crate::lane::stalled())),
        Poll::Pending => Poll::Pending,
        r => {
            stall.progress();
            r
        }
    }
}

/// Counts what a write gave the socket among the listener's bytes sent.
#[inline]
fn sent(state: &ConnState, r: &Poll<io::Result<usize>>) {
    if let (Poll::Ready(Ok(n)), Some(f)) = (r, &state.front) {
        f.bytes_out(*n);
    }
}

impl Read for ScannedTls {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: ReadBufCursor<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.state.tunnel.load(Ordering::Relaxed) {
            // Not scanned any more (the tunnel's bytes are another protocol's), still counted.
            return read_through(
                Pin::new(&mut this.io),
                cx,
                buf,
                &this.state,
                |d| Ok(d.len()),
            );
        }
        read_scanned(
            Pin::new(&mut this.io),
            cx,
            buf,
            &mut this.scan,
            &mut this.failed,
            &this.state,
        )
    }
}

impl Write for ScannedTls {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let r = tokio::io::AsyncWrite::poll_write(Pin::new(&mut this.io), cx, buf);
        sent(&this.state, &r);
        written(r, &mut this.stall, cx)
    }
    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let r = tokio::io::AsyncWrite::poll_write_vectored(Pin::new(&mut this.io), cx, bufs);
        sent(&this.state, &r);
        written(r, &mut this.stall, cx)
    }
    fn is_write_vectored(&self) -> bool {
        tokio::io::AsyncWrite::is_write_vectored(&self.io)
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let r = tokio::io::AsyncWrite::poll_flush(Pin::new(&mut this.io), cx);
        written(r, &mut this.stall, cx)
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let r = tokio::io::AsyncWrite::poll_shutdown(Pin::new(&mut this.io), cx);
        written(r, &mut this.stall, cx)
    }
}

impl Write for Prefixed {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        this.state.flushed.store(false, Ordering::Relaxed);
        let r = Pin::new(&mut this.io).poll_write(cx, buf);
        sent(&this.state, &r);
        written(r, &mut this.stall, cx)
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let r = Pin::new(&mut this.io).poll_flush(cx);
        if matches!(r, Poll::Ready(Ok(()))) {
            this.state.flushed.store(true, Ordering::Relaxed);
        }
        r
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}
