//! The floor proxy on monoio's io_uring driver. `MODE=coop` sets up the ring with
//! `IORING_SETUP_COOP_TASKRUN`, `MODE=defer` with `DEFER_TASKRUN` and `SINGLE_ISSUER` too;
//! without it, the ring is set up as monoio does by default.

use langur_floor::{head_end, listen, servers};
use monoio::buf::{IoBufMut, SliceMut};
use monoio::io::{AsyncReadRent, AsyncWriteRentExt};
use monoio::net::TcpStream;

fn main() {
    let mut ring = io_uring::IoUring::builder();
    match std::env::var("MODE").as_deref() {
        Ok("coop") => {
            ring.setup_coop_taskrun();
        }
        Ok("defer") => {
            ring.setup_coop_taskrun();
            ring.setup_single_issuer();
            ring.setup_defer_taskrun();
        }
        _ => {}
    }
    let mut rt = monoio::RuntimeBuilder::<monoio::IoUringDriver>::new()
        .with_entries(1024)
        .uring_builder(ring)
        .build()
        .expect("an io_uring runtime");
    rt.block_on(async {
        let listener = monoio::net::TcpListener::bind(listen()).expect("bind");
        let servers = servers();
        for n in 0.. {
            let Ok((client, _)) = listener.accept().await else {
                continue;
            };
            monoio::spawn(relay(client, servers[n % servers.len()]));
        }
    });
}

/// Reads more into the spare capacity of `buf`.
async fn more(s: &mut TcpStream, buf: Vec<u8>) -> (std::io::Result<usize>, Vec<u8>) {
    let (at, cap) = (buf.len(), buf.capacity());
    let spare: SliceMut<Vec<u8>> = buf.slice_mut(at..cap);
    let (r, spare) = s.read(spare).await;
    (r, spare.into_inner())
}

async fn relay(mut client: TcpStream, server: &'static str) -> Option<()> {
    client.set_nodelay(true).ok()?;
    let mut server = TcpStream::connect(server).await.ok()?;
    server.set_nodelay(true).ok()?;
    let (mut req, mut resp) = (Vec::with_capacity(16 * 1024), Vec::with_capacity(64 * 1024));
    loop {
        req.clear();
        while head_end(&req).is_none() {
            let (r, b) = more(&mut client, req).await;
            req = b;
            if r.ok()? == 0 {
                return None;
            }
        }
        let (r, b) = server.write_all(req).await;
        req = b;
        r.ok()?;
        resp.clear();
        let mut total = usize::MAX;
        while resp.len() < total {
            let (r, b) = more(&mut server, resp).await;
            resp = b;
            if r.ok()? == 0 {
                return None;
            }
            if let Some((head, length)) = head_end(&resp) {
                total = head + length;
            }
        }
        resp.truncate(total);
        let (r, b) = client.write_all(resp).await;
        resp = b;
        r.ok()?;
    }
}
