//! The socket under an upstream connection, its kill switch, its session registration and
//! its silence timer.

use super::*;

/// The socket of an upstream connection.
#[derive(Debug)]
pub enum Io {
    Tcp(TcpStream),
    Tls(Box<tokio_rustls::client::TlsStream<TcpStream>>),
    /// A server on a Unix-domain socket.
    Unix(tokio::net::UnixStream),
    /// In memory: for the fuzz target and tests ([`fuzzing`]).
    Mem(tokio::io::DuplexStream),
}

impl AsyncRead for Io {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Io::Tcp(s) => Pin::new(s).poll_read(cx, buf),
            Io::Unix(s) => Pin::new(s).poll_read(cx, buf),
            Io::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
            Io::Mem(s) => Pin::new(s).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Io {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Io::Tcp(s) => Pin::new(s).poll_write(cx, buf),
            Io::Unix(s) => Pin::new(s).poll_write(cx, buf),
            Io::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
            Io::Mem(s) => Pin::new(s).poll_write(cx, buf),
        }
    }
    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Io::Tcp(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            Io::Unix(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            Io::Tls(s) => Pin::new(s.as_mut()).poll_write_vectored(cx, bufs),
            Io::Mem(s) => Pin::new(s).poll_write_vectored(cx, bufs),
        }
    }
    fn is_write_vectored(&self) -> bool {
        match self {
            Io::Tcp(s) => s.is_write_vectored(),
            Io::Unix(s) => s.is_write_vectored(),
            Io::Tls(s) => s.is_write_vectored(),
            Io::Mem(s) => s.is_write_vectored(),
        }
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Io::Tcp(s) => Pin::new(s).poll_flush(cx),
            Io::Unix(s) => Pin::new(s).poll_flush(cx),
            Io::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
            Io::Mem(s) => Pin::new(s).poll_flush(cx),
        }
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Io::Tcp(s) => Pin::new(s).poll_shutdown(cx),
            Io::Unix(s) => Pin::new(s).poll_shutdown(cx),
            Io::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
            Io::Mem(s) => Pin::new(s).poll_shutdown(cx),
        }
    }
}

/// The way to end one connection from outside (`shutdown-sessions`): a flag its reads and
/// writes look at, and the waker of whoever waits on it.
#[derive(Debug, Default)]
pub struct Kill {
    pub(super) killed: AtomicBool,
    pub(super) waker: atomic_waker::AtomicWaker,
}

impl Kill {
    pub fn kill(&self) {
        self.killed.store(true, Ordering::Release);
        self.waker.wake();
    }

    pub(super) fn killed(&self) -> bool {
        self.killed.load(Ordering::Acquire)
    }

    /// After a `Pending`: wake this task if the connection is ended meanwhile.
    pub(super) fn pending<T>(&self, cx: &Context<'_>) -> Poll<io::Result<T>> {
        self.waker.register(cx.waker());
        if self.killed() {
            return Poll::Ready(Err(killed()));
        }
        Poll::Pending
    }
}

pub(super) fn killed() -> io::Error {
    io::Error::new(
        io::ErrorKind::ConnectionAborted,
        "the server's sessions were shut down",
    )
}

/// The entry of a connection in its server's session list, removed when the connection ends.
/// Weak: the server's idle list holds its connections, which must not keep it alive (a server
/// replaced by a reload is dropped with its idle connections).
#[derive(Debug)]
pub(super) struct Registered {
    pub(super) peer: std::sync::Weak<Peer>,
    pub(super) id: u64,
}

impl Drop for Registered {
    fn drop(&mut self) {
        if let Some(peer) = self.peer.upgrade() {
            peer.end_session(self.id);
        }
    }
}

/// The silence limit on response bodies (`read_timeout`), kept per connection: a read that
/// brings data sets a flag (no clock read); one sleep, allocated once per connection, ticks
/// every half limit while a body read waits, and two silent ticks in a row fail the read. So
/// a body silent for `read_timeout` is cut between 1 and 1.5 times `read_timeout` after its
/// last data, and a body that arrives with its head costs no timer at all.
#[derive(Debug)]
pub(super) struct Silence {
    pub(super) half: Duration,
    pub(super) progressed: bool,
    pub(super) silent: u8,
    pub(super) sleep: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl Silence {
    pub(super) fn start(&mut self) {
        self.progressed = true;
        self.silent = 0;
    }

    /// A body read is pending: true once the server was silent for the limit.
    pub(super) fn expired(&mut self, cx: &mut Context<'_>) -> bool {
        let half = self.half;
        let sleep = self
            .sleep
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(half)));
        while std::future::Future::poll(sleep.as_mut(), cx).is_ready() {
            if std::mem::take(&mut self.progressed) {
                self.silent = 0;
            } else {
                self.silent += 1;
                if self.silent >= 2 {
                    return true;
                }
            }
            sleep.as_mut().reset(tokio::time::Instant::now() + half);
        }
        false
    }
}
