//! The pipeline's side of a client connection: who the client is, and what the request's
//! exchanges report back to the connection that carries them (a body that did not end cleanly,
//! a pending upgrade, a tunnel). Defined here, below the client layer, so the pipeline and the
//! client connection code (`conn.rs`, `lane.rs`) share it without importing each other.

use crate::client_identity::{self, RealIpFrom, Trust};
use http::HeaderValue;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

pub mod body;
pub mod counters;
pub mod stream;

/// What the pipeline knows about the client connection (made once per connection; per
/// request, [`ClientInfo::behind`] names the client behind trusted proxies).
#[derive(Debug, Clone)]
pub struct ClientInfo {
    /// The client, as every decision sees it (access log, allow and deny, route `source`,
    /// `source` hashing, rate limits): the PROXY header's source, else the socket's peer; per
    /// request, the address `trusted_proxies` lets a forwarding field name. A Unix-domain
    /// socket's peer is [`UNIX_PEER`].
    pub addr: SocketAddr,
    /// The socket's peer: the client, or the proxy or load balancer in front of it. `None`: a
    /// Unix-domain socket.
    pub peer: Option<SocketAddr>,
    /// The previous hop (the connection's client: the PROXY header's source, else the socket's
    /// peer) as an `X-Forwarded-For` entry.
    pub ip_header: HeaderValue,
    /// `http` or `https`: the client's (`X-Forwarded-Proto`, the HTTPS redirect, HSTS, logs),
    /// which a trusted proxy may name.
    pub scheme: &'static str,
    /// `http` or `https`: the connection's from the previous hop (the `proto` of the element
    /// this hop adds to `Forwarded`).
    pub hop_scheme: &'static str,
    /// What a PROXY protocol header said, or the connection's own address when a pool sends
    /// PROXY headers; `None` otherwise.
    pub origin: Option<Arc<Origin>>,
    /// The previous hop is in `trusted_proxies`: its forwarding fields are believed, and added
    /// to rather than replaced.
    pub trusted: bool,
    /// The client certificate the TLS handshake verified (only on listeners whose certificate
    /// entry has `client_ca`).
    pub cert: Option<Arc<crate::tls::ClientCert>>,
    /// Behind trusted proxies: the entries of the `real_ip_header` field the walk read, from
    /// the right, to reach `addr` (the client's entry included); 0 when no field named it.
    pub walked: u8,
}

/// The address a Unix-domain socket's peer is given (it has none): loopback, port 0. Such a
/// peer is on this machine, behind the socket file's permissions.
pub const UNIX_PEER: SocketAddr = SocketAddr::new(IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 0);

/// A client connection's endpoints beyond the socket's peer (made once per connection, only
/// when PROXY protocol or a pool's `send_proxy` asks for it).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Origin {
    /// The client a PROXY header announced; `None` for `LOCAL`, `UNKNOWN` or an address family
    /// without one (the socket's peer is the client then).
    pub source: Option<SocketAddr>,
    /// The address the client connected to: the PROXY header's destination, else this
    /// connection's own address (the destination of headers `send_proxy` writes).
    pub destination: Option<SocketAddr>,
    /// PROXY v2 `PP2_TYPE_AUTHORITY`: the host name the client asked for (its SNI).
    pub authority: Option<Box<str>>,
    /// PROXY v2 `PP2_TYPE_SSL` with the client bit: the TLS version it used
    /// (`PP2_SUBTYPE_SSL_VERSION`), or `ssl` when none is given.
    pub ssl: Option<Box<str>>,
}

impl ClientInfo {
    /// A TCP client with nothing in front of it that langur knows of.
    pub fn new(addr: SocketAddr) -> ClientInfo {
        ClientInfo {
            addr,
            peer: Some(addr),
            ip_header: client_ip_value(addr.ip()),
            scheme: "http",
            hop_scheme: "http",
            origin: None,
            trusted: false,
            cert: None,
            walked: 0,
        }
    }

    /// A client connection: the socket's `peer` (`None`: a Unix-domain socket) and what a
    /// PROXY header said (`origin`).
    pub fn connected(peer: Option<SocketAddr>, origin: Option<Arc<Origin>>) -> ClientInfo {
        let announced = origin.as_ref().and_then(|o| o.source);
        let peer = peer.map(client_identity::canonical_addr);
        let addr = client_identity::canonical_addr(announced.or(peer).unwrap_or(UNIX_PEER));
        let scheme = match origin.as_ref().is_some_and(|o| o.ssl.is_some()) {
            // The load balancer in front took the client's TLS.
            true => "https",
            false => "http",
        };
        ClientInfo {
            addr,
            peer,
            ip_header: client_ip_value(addr.ip()),
            scheme,
            hop_scheme: scheme,
            origin,
            trusted: false,
            cert: None,
            walked: 0,
        }
    }

    /// This request's client when the previous hop (the PROXY header's source, else the
    /// socket's peer) is in `trust`: the address the request's `from` field names behind it
    /// (see [`client_identity::walk`]), or the hop itself when the field names none; marked
    /// `trusted`; its scheme is the one the hop names (`X-Forwarded-Proto`, or `Forwarded`'s
    /// `proto` when that is the field read; see [`client_identity::proto_from`]). `None`: the
    /// hop is not trusted, and this `ClientInfo` stands.
    pub fn behind_proxies(
        &self,
        trust: &Trust,
        from: RealIpFrom,
        headers: &http::HeaderMap,
    ) -> Option<ClientInfo> {
        let hop_trusted = match self.origin.as_ref().and_then(|o| o.source) {
            Some(a) => trust.contains(a.ip()),
            None => trust.admits(self.peer.map(|p| p.ip())),
        };
        if !hop_trusted {
            return None;
        }
        let mut c = self.clone();
        c.trusted = true;
        if let Some((ip, walked)) = client_identity::walk_from(headers, from, trust) {
            c.addr = SocketAddr::new(ip, 0);
            c.walked = walked.min(usize::from(u8::MAX)) as u8;
        }
        if let Some(scheme) = client_identity::proto_from(headers, from) {
            c.scheme = scheme;
        }
        Some(c)
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
    /// Response bodies hyper owes the client: given to hyper, or last polled for data, and not
    /// polled since (hyper polls a body only when it can send: an HTTP/2 client that grants
    /// no window leaves its bodies owed).
    pub(crate) owed: AtomicU64,
    /// Polls of this connection's response bodies so far: progress while bodies are owed.
    pub(crate) body_polls: AtomicU64,
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
    /// What the TLS handshake settled (TLS listeners only), for the access log.
    pub tls: Option<TlsInfo>,
    /// The listener's counters (bytes, responses); `None` outside a listener (tests).
    pub front: Option<counters::Front>,
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
            owed: AtomicU64::new(0),
            body_polls: AtomicU64::new(0),
            flushed: AtomicBool::new(false),
            ambiguous_at: AtomicU64::new(u64::MAX),
            manual: false,
            upgrade: UpgradeSlot::default(),
            tunnel: AtomicBool::new(false),
            tls: None,
            front: None,
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
    let v4 = match ip {
        std::net::IpAddr::V4(v4) => v4,
        std::net::IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => v4,
            None => {
                let text = v6.to_string();
                return HeaderValue::from_str(&text)
                    .expect("an IP address is a valid header value");
            }
        },
    };
    // Dotted quad written by hand: `Display` goes through the formatting machinery, which
    // cost more than the rest of a new connection's bookkeeping.
    let mut text = [0u8; 15];
    let mut n = 0;
    for (i, octet) in v4.octets().into_iter().enumerate() {
        if i > 0 {
            text[n] = b'.';
            n += 1;
        }
        let mut digits = itoa::Buffer::new();
        let digits = digits.format(octet).as_bytes();
        text[n..n + digits.len()].copy_from_slice(digits);
        n += digits.len();
    }
    HeaderValue::from_bytes(&text[..n]).expect("an IP address is a valid header value")
}

/// A TLS connection's parameters as logs name them: the version (`TLSv1.3`), the cipher
/// suite's IANA name (`TLS_AES_128_GCM_SHA256`) and the server name the client asked for (SNI).
#[derive(Debug, Clone)]
pub struct TlsInfo {
    pub version: &'static str,
    pub cipher: &'static str,
    pub sni: Option<std::sync::Arc<str>>,
}

impl TlsInfo {
    /// What a finished server handshake settled.
    pub fn of(conn: &rustls::ServerConnection) -> TlsInfo {
        let version = match conn.protocol_version() {
            Some(rustls::ProtocolVersion::TLSv1_3) => "TLSv1.3",
            Some(rustls::ProtocolVersion::TLSv1_2) => "TLSv1.2",
            _ => "-",
        };
        // rustls names TLS 1.3 suites `TLS13_...`; their IANA names begin `TLS_`.
        let cipher = match conn
            .negotiated_cipher_suite()
            .and_then(|s| s.suite().as_str())
        {
            Some("TLS13_AES_128_GCM_SHA256") => "TLS_AES_128_GCM_SHA256",
            Some("TLS13_AES_256_GCM_SHA384") => "TLS_AES_256_GCM_SHA384",
            Some("TLS13_CHACHA20_POLY1305_SHA256") => "TLS_CHACHA20_POLY1305_SHA256",
            Some(name) => name,
            None => "-",
        };
        TlsInfo {
            version,
            cipher,
            sni: conn.server_name().map(std::sync::Arc::from),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::client_ip_value;
    use std::net::IpAddr;

    #[test]
    fn client_ip_values_read_as_display_writes_them() {
        for (ip, want) in [
            ("0.0.0.0", "0.0.0.0"),
            ("255.255.255.255", "255.255.255.255"),
            ("10.1.22.123", "10.1.22.123"),
            ("192.0.2.9", "192.0.2.9"),
            ("::ffff:1.2.3.4", "1.2.3.4"),
            ("::1", "::1"),
            ("2001:db8::1", "2001:db8::1"),
        ] {
            let v = client_ip_value(ip.parse::<IpAddr>().unwrap());
            assert_eq!(v, want, "{ip}");
        }
    }
}
