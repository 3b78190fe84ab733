//! The floor proxy on tokio's current-thread runtime (epoll), as langur's workers run.

use langur_floor::{head_end, serve_on_tokio};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

fn main() {
    serve_on_tokio(relay);
}

async fn relay(mut client: TcpStream, server: &'static str) -> Option<()> {
    client.set_nodelay(true).ok()?;
    let mut server = TcpStream::connect(server).await.ok()?;
    server.set_nodelay(true).ok()?;
    let (mut req, mut resp) = (vec![0u8; 16 * 1024], vec![0u8; 64 * 1024]);
    loop {
        let mut got = 0;
        while head_end(&req[..got]).is_none() {
            match client.read(&mut req[got..]).await.ok()? {
                0 => return None,
                n => got += n,
            }
        }
        server.write_all(&req[..got]).await.ok()?;
        let (mut have, mut total) = (0, usize::MAX);
        while have < total {
            match server.read(&mut resp[have..]).await.ok()? {
                0 => return None,
                n => have += n,
            }
            if let Some((head, length)) = head_end(&resp[..have]) {
                total = head + length;
            }
        }
        client.write_all(&resp[..total]).await.ok()?;
    }
}
