//! A raw-TCP backend the test controls: it can be stopped (listener and every connection go
//! away), restarted on the same port, and told how to answer.
#![allow(dead_code)]

use super::find;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

pub const OK: u8 = 0;
pub const S500: u8 = 1;
pub const HANG: u8 = 2;
pub const GARBAGE: u8 = 3;
pub const NOT_FOUND: u8 = 4;
/// `/app` answers 503 (and `/health` 200).
pub const S503: u8 = 5;
/// `/download` sends this many 1 KiB chunks, 15 ms apart.
pub const DOWNLOAD_CHUNKS: usize = 150;

/// A backend whose answers the test controls. `/health` answers per `mode`; `/app` answers its
/// name (or 500 in mode S500); `/download` streams DOWNLOAD_CHUNKS chunks, 15 ms apart.
pub struct Ctl {
    pub name: &'static str,
    pub addr: SocketAddr,
    pub mode: Arc<AtomicU8>,
    pub hits: Arc<AtomicUsize>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Ctl {
    pub async fn start(name: &'static str) -> Ctl {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let mut c = Ctl {
            name,
            addr: l.local_addr().unwrap(),
            mode: Arc::new(AtomicU8::new(OK)),
            hits: Arc::new(AtomicUsize::new(0)),
            task: None,
        };
        c.serve(l);
        c
    }

    fn serve(&mut self, l: TcpListener) {
        let (name, mode, hits) = (self.name, self.mode.clone(), self.hits.clone());
        self.task = Some(tokio::spawn(async move {
            let mut conns = tokio::task::JoinSet::new();
            loop {
                let Ok((mut s, _)) = l.accept().await else {
                    continue;
                };
                let (mode, hits) = (mode.clone(), hits.clone());
                conns.spawn(async move {
                    let mut buf = Vec::new();
                    let mut tmp = [0u8; 2048];
                    while find(&buf, b"\r\n\r\n").is_none() {
                        match s.read(&mut tmp).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&tmp[..n]),
                        }
                    }
                    let line = String::from_utf8_lossy(&buf).lines().next().unwrap_or("").to_string();
                    let path = line.split_whitespace().nth(1).unwrap_or("/").to_string();
                    let m = mode.load(Ordering::SeqCst);
                    let reply = |status: &str, body: &str| {
                        format!("HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\nx-backend: {name}\r\n\r\n{body}", body.len())
                    };
                    if path == "/health" {
                        let out = match m {
                            S500 => reply("500 Internal Server Error", "bad"),
                            HANG => {
                                tokio::time::sleep(Duration::from_secs(30)).await;
                                return;
                            }
                            GARBAGE => "this is not http\r\n\r\n".to_string(),
                            NOT_FOUND => reply("404 Not Found", "gone"),
                            _ => reply("200 OK", "ok"),
                        };
                        let _ = s.write_all(out.as_bytes()).await;
                        return;
                    }
                    hits.fetch_add(1, Ordering::SeqCst);
                    if path == "/download" {
                        let head = format!("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nx-backend: {name}\r\n\r\n");
                        if s.write_all(head.as_bytes()).await.is_err() {
                            return;
                        }
                        for _ in 0..DOWNLOAD_CHUNKS {
                            if s.write_all(b"400\r\n").await.is_err() || s.write_all(&[b'd'; 1024]).await.is_err() || s.write_all(b"\r\n").await.is_err() {
                                return;
                            }
                            tokio::time::sleep(Duration::from_millis(15)).await;
                        }
                        let _ = s.write_all(b"0\r\n\r\n").await;
                        return;
                    }
                    let out = if m == S503 {
                        reply("503 Service Unavailable", name)
                    } else if m == S500 { reply("500 Internal Server Error", name) } else { reply("200 OK", name) };
                    let _ = s.write_all(out.as_bytes()).await;
                });
            }
        }));
    }

    /// Kills the backend: the listener and every connection go away.
    pub fn stop(&mut self) {
        if let Some(t) = self.task.take() {
            t.abort();
        }
    }

    pub async fn restart(&mut self) {
        let l = TcpListener::bind(self.addr).await.unwrap();
        self.serve(l);
    }
}

impl Drop for Ctl {
    fn drop(&mut self) {
        self.stop();
    }
}
