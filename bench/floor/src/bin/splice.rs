//! The floor proxy on tokio (epoll) for large bodies. A response's head is read and written as
//! in `epoll`; its body then goes to the client either through user space (`MODE=copy`, the
//! default: reads and writes of up to 64 KiB, as langur moves a body) or around it
//! (`MODE=splice`: `splice(2)` from the server's socket into a pipe, and from the pipe into the
//! client's socket, as HAProxy's `option splice-response` does). It measures what forwarding
//! bodies without copying them through user space would give a proxy on this kernel.

use langur_floor::{head_end, serve_on_tokio};
use nix::fcntl::{splice, OFlag, SpliceFFlags};
use std::os::fd::OwnedFd;
use tokio::io::{AsyncReadExt, AsyncWriteExt, Interest};
use tokio::net::TcpStream;

/// How much one `splice` moves at most: a pipe's default capacity (16 pages).
const PIPE: usize = 64 * 1024;

fn main() {
    let spliced = std::env::var("MODE").is_ok_and(|m| m == "splice");
    serve_on_tokio(move |client, server| relay(client, server, spliced));
}

async fn relay(mut client: TcpStream, server: &'static str, spliced: bool) -> Option<()> {
    client.set_nodelay(true).ok()?;
    let mut server = TcpStream::connect(server).await.ok()?;
    server.set_nodelay(true).ok()?;
    let pipe = match spliced {
        true => Some(nix::unistd::pipe2(OFlag::O_NONBLOCK | OFlag::O_CLOEXEC).ok()?),
        false => None,
    };
    let (mut req, mut buf) = (vec![0u8; 16 * 1024], vec![0u8; 64 * 1024]);
    loop {
        let mut got = 0;
        while head_end(&req[..got]).is_none() {
            match client.read(&mut req[got..]).await.ok()? {
                0 => return None,
                n => got += n,
            }
        }
        server.write_all(&req[..got]).await.ok()?;
        let mut have = 0;
        let (head, length) = loop {
            match server.read(&mut buf[have..]).await.ok()? {
                0 => return None,
                n => have += n,
            }
            if let Some(h) = head_end(&buf[..have]) {
                break h;
            }
        };
        let first = have.min(head + length);
        client.write_all(&buf[..first]).await.ok()?;
        let left = head + length - first;
        match &pipe {
            None => copied(&mut server, &mut client, &mut buf, left).await?,
            Some(pipe) => through_pipe(&server, &client, pipe, left).await?,
        }
    }
}

/// Moves `left` bytes from `server` to `client` through `buf`.
async fn copied(
    server: &mut TcpStream,
    client: &mut TcpStream,
    buf: &mut [u8],
    mut left: usize,
) -> Option<()> {
    while left > 0 {
        let room = left.min(buf.len());
        let n = server.read(&mut buf[..room]).await.ok()?;
        if n == 0 {
            return None;
        }
        client.write_all(&buf[..n]).await.ok()?;
        left -= n;
    }
    Some(())
}

/// Moves `left` bytes from `server` to `client` through the kernel's pipe: what `server` has
/// goes into the pipe, then out of it into `client`, never into user space.
async fn through_pipe(
    server: &TcpStream,
    client: &TcpStream,
    (from_pipe, into_pipe): &(OwnedFd, OwnedFd),
    mut left: usize,
) -> Option<()> {
    let flags = SpliceFFlags::SPLICE_F_MOVE | SpliceFFlags::SPLICE_F_NONBLOCK;
    while left > 0 {
        let n = server
            .async_io(Interest::READABLE, || {
                splice(server, None, into_pipe, None, left.min(PIPE), flags).map_err(Into::into)
            })
            .await
            .ok()?;
        if n == 0 {
            return None;
        }
        left -= n;
        let mut out = n;
        while out > 0 {
            out -= client
                .async_io(Interest::WRITABLE, || {
                    splice(from_pipe, None, client, None, out, flags).map_err(Into::into)
                })
                .await
                .ok()?;
        }
    }
    Some(())
}
