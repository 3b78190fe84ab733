//! The pipeline's side of a client connection: who the client is, and what the request's
//! exchanges report back to the connection that carries them (a body that did not end cleanly,
//! a pending upgrade, a tunnel). Defined here, below the client layer, so the pipeline and the
//! client connection code (`conn.rs`, `lane.rs`) share it without importing each other.

use http::HeaderValue;
use std::net::SocketAddr;

pub mod body;

/// What the pipeline knows about the client connection (made once per connection).
#[derive(Debug, Clone)]
pub struct ClientInfo {
    pub addr: SocketAddr,
    /// The client's IP as an `X-Forwarded-For` value.
    pub ip_header: HeaderValue,
    /// `http` or `https` (`X-Forwarded-Proto`).
    pub scheme: &'static str,
}

impl ClientInfo {
    pub fn new(addr: SocketAddr) -> ClientInfo {
        ClientInfo {
            addr,
            ip_header: client_ip_value(addr.ip()),
            scheme: "http",
        }
    }
}

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

/// One client connection: who it is, and what its exchanges report back to the loop that
/// decides when hyper is idle. One allocation per connection.
#[derive(Debug)]
pub struct ConnState {
    pub client: ClientInfo,
    /// An exchange did not end cleanly: leave the connection to hyper (it will close it).
    pub(crate) close: AtomicBool,
    /// The current request's body has not been read to its end yet.
    pub(crate) body_pending: AtomicBool,
    /// Requests hyper handed to the service.
    pub(crate) started: AtomicU64,
    /// Responses whose body ended cleanly (and was dropped by hyper).
    pub(crate) completed: AtomicU64,
    /// Exchanges over, however they ended (their response body dropped, or their service
    /// future dropped before it answered): with `started`, the HTTP/2 streams in progress.
    pub(crate) finished: AtomicU64,
    /// What the scanner of the client's bytes last saw (see [`ConnState::note_scan`]).
    pub(crate) scan: AtomicU64,
    /// hyper's last I/O on the socket was a successful flush (nothing of its own left to write).
    pub(crate) flushed: AtomicBool,
    /// Index of the first request whose framing was ambiguous (see `framing.rs`), or MAX.
    pub(crate) ambiguous_at: AtomicU64,
    /// Plain connections are driven without hyper's upgrade support (they are taken apart when
    /// idle), so an upgrade is completed by hand: the tunnel waits on this for the socket.
    pub(crate) manual: bool,
    pub(crate) upgrade: UpgradeSlot,
    /// The connection became a tunnel: its bytes are no longer HTTP to scan.
    pub(crate) tunnel: AtomicBool,
}

#[derive(Default)]
pub(crate) struct UpgradeSlot(
    std::sync::Mutex<Option<tokio::sync::oneshot::Sender<Box<dyn Tunnel>>>>,
);

impl std::fmt::Debug for UpgradeSlot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("UpgradeSlot")
    }
}

/// Either side of an upgraded connection.
pub trait Tunnel: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send> Tunnel for T {}

impl ConnState {
    pub(crate) fn new(client: ClientInfo) -> ConnState {
        ConnState {
            client,
            close: AtomicBool::new(false),
            body_pending: AtomicBool::new(false),
            started: AtomicU64::new(0),
            completed: AtomicU64::new(0),
            finished: AtomicU64::new(0),
            scan: AtomicU64::new(0),
            flushed: AtomicBool::new(false),
            ambiguous_at: AtomicU64::new(u64::MAX),
            manual: false,
            upgrade: UpgradeSlot::default(),
            tunnel: AtomicBool::new(false),
        }
    }

    /// The server switched protocols: what follows is a tunnel.
    pub fn mark_tunnel(&self) {
        self.tunnel.store(true, Ordering::Relaxed);
    }

    pub fn manual_upgrade(&self) -> bool {
        self.manual
    }

    /// Registers a pending upgrade; the receiver gets the client's socket once hyper has
    /// written the 101 and let go of it.
    pub fn expect_upgrade(&self) -> tokio::sync::oneshot::Receiver<Box<dyn Tunnel>> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        *self.upgrade.0.lock().unwrap_or_else(|e| e.into_inner()) = Some(tx);
        rx
    }

    /// The client's side of an upgrade that was asked for, once hyper let go of the socket.
    pub(crate) fn take_upgrade(&self) -> Option<tokio::sync::oneshot::Sender<Box<dyn Tunnel>>> {
        self.upgrade
            .0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
    }

    /// A request was taken by the lane (hyper's are counted by the service).
    pub(crate) fn exchange_started(&self) {
        self.started.fetch_add(1, Ordering::Relaxed);
    }

    pub fn force_close(&self) {
        self.close.store(true, Ordering::Relaxed);
    }

    pub fn request_body_done(&self) {
        self.body_pending.store(false, Ordering::Relaxed);
    }

    /// A response body ended cleanly and hyper is done with it.
    pub fn response_done(&self) {
        self.completed.fetch_add(1, Ordering::Relaxed);
    }

    /// A response body handed to hyper was dropped: cleanly ended or not.
    pub fn body_dropped(&self, ended: bool) {
        if ended {
            self.response_done();
        } else {
            self.force_close();
        }
        self.finished.fetch_add(1, Ordering::Relaxed);
    }

    /// Records the scanner's view: how far the client got (heads or header blocks begun) and
    /// whether it is in the middle of one (or of the HTTP/2 preface).
    pub(crate) fn note_scan(&self, (seen, reading): (u64, bool)) {
        self.scan
            .store(seen << 1 | u64::from(reading), Ordering::Relaxed);
    }

    /// Every response so far was written out (bodies ended cleanly, hyper flushed).
    pub(crate) fn responses_done(&self) -> bool {
        !self.close.load(Ordering::Relaxed)
            && self.flushed.load(Ordering::Relaxed)
            && self.started.load(Ordering::Relaxed) == self.completed.load(Ordering::Relaxed)
    }

    pub(crate) fn idle(&self) -> bool {
        self.responses_done() && !self.body_pending.load(Ordering::Relaxed)
    }
}

/// The client's IP as it goes into `X-Forwarded-For` (IPv4-mapped IPv6 shown as IPv4).
pub fn client_ip_value(ip: std::net::IpAddr) -> HeaderValue {
    let text = match ip {
        std::net::IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => v4.to_string(),
            None => v6.to_string(),
        },
        v4 => v4.to_string(),
    };
    HeaderValue::from_str(&text).expect("an IP address is a valid header value")
}
