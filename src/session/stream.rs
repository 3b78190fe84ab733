//! A client's socket: TCP, or a Unix-domain socket (`listen = ["unix:/run/langur.sock"]`).
//! One type for the lane, the parking lot and hyper, so both kinds take the same path; the
//! match per call is the whole cost of the second kind.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpStream, UnixStream};

#[derive(Debug)]
pub enum ClientStream {
    Tcp(TcpStream),
    Unix(UnixStream),
}

impl From<TcpStream> for ClientStream {
    fn from(s: TcpStream) -> ClientStream {
        ClientStream::Tcp(s)
    }
}

impl From<UnixStream> for ClientStream {
    fn from(s: UnixStream) -> ClientStream {
        ClientStream::Unix(s)
    }
}

impl ClientStream {
    pub fn try_write(&self, buf: &[u8]) -> io::Result<usize> {
        match self {
            ClientStream::Tcp(s) => s.try_write(buf),
            ClientStream::Unix(s) => s.try_write(buf),
        }
    }

    /// Writes what the socket takes now of `bufs`, in order (`writev`), as `try_write`.
    pub fn try_write_vectored(&self, bufs: &[io::IoSlice<'_>]) -> io::Result<usize> {
        match self {
            ClientStream::Tcp(s) => s.try_write_vectored(bufs),
            ClientStream::Unix(s) => s.try_write_vectored(bufs),
        }
    }

    /// Resolves when the socket can take more (as `TcpStream::writable`; one waiter).
    pub fn writable(&self) -> impl std::future::Future<Output = io::Result<()>> + '_ {
        std::future::poll_fn(move |cx| match self {
            ClientStream::Tcp(s) => s.poll_write_ready(cx),
            ClientStream::Unix(s) => s.poll_write_ready(cx),
        })
    }

    /// Whether the socket has something to read (as `TcpStream::poll_read_ready`).
    pub fn poll_read_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self {
            ClientStream::Tcp(s) => s.poll_read_ready(cx),
            ClientStream::Unix(s) => s.poll_read_ready(cx),
        }
    }

    /// Resolves when the socket has something to read (as `TcpStream::readable`; one waiter).
    pub fn readable(&self) -> impl std::future::Future<Output = io::Result<()>> + '_ {
        std::future::poll_fn(move |cx| match self {
            ClientStream::Tcp(s) => s.poll_read_ready(cx),
            ClientStream::Unix(s) => s.poll_read_ready(cx),
        })
    }

    /// Whether the client sent something, without taking it: `Some(n)`, `n` bytes peeked into
    /// `buf` (0: the client closed); `None`, the socket turned readable but what came cannot
    /// be told without reading (a Unix-domain socket has no peek here): the caller reads, and
    /// a wake-up that brought nothing costs one read that would block.
    pub fn poll_peek(
        &self,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<Option<usize>>> {
        match self {
            ClientStream::Tcp(s) => {
                let mut b = ReadBuf::new(buf);
                s.poll_peek(cx, &mut b).map_ok(Some)
            }
            ClientStream::Unix(s) => s.poll_read_ready(cx).map_ok(|()| None),
        }
    }

    pub fn as_tcp(&self) -> Option<&TcpStream> {
        match self {
            ClientStream::Tcp(s) => Some(s),
            ClientStream::Unix(_) => None,
        }
    }
}

impl AsyncRead for ClientStream {
    #[inline]
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            ClientStream::Tcp(s) => Pin::new(s).poll_read(cx, buf),
            ClientStream::Unix(s) => Pin::new(s).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for ClientStream {
    #[inline]
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            ClientStream::Tcp(s) => Pin::new(s).poll_write(cx, buf),
            ClientStream::Unix(s) => Pin::new(s).poll_write(cx, buf),
        }
    }

    #[inline]
    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            ClientStream::Tcp(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            ClientStream::Unix(s) => Pin::new(s).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            ClientStream::Tcp(s) => s.is_write_vectored(),
            ClientStream::Unix(s) => s.is_write_vectored(),
        }
    }

    #[inline]
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            ClientStream::Tcp(s) => Pin::new(s).poll_flush(cx),
            ClientStream::Unix(s) => Pin::new(s).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            ClientStream::Tcp(s) => Pin::new(s).poll_shutdown(cx),
            ClientStream::Unix(s) => Pin::new(s).poll_shutdown(cx),
        }
    }
}
