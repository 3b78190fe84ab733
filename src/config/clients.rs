//! `[server]`'s client-identity settings and a pool's `send_proxy`, validated (see
//! docs/clients.md): PROXY protocol on incoming connections, the trusted proxies, and the
//! forwarding fields sent to servers.

use crate::client_identity::{RealIpFrom, Trust};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// How long a connection from a `proxy_protocol_from` peer may take to send its PROXY
/// header (`proxy_protocol_timeout`; nginx's name, a shorter default: load balancers send it
/// with the connection).
pub const DEFAULT_PROXY_PROTOCOL_TIMEOUT: Duration = Duration::from_secs(5);

/// A listening address as configured: TCP, or a Unix-domain socket's path (`unix:PATH`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ListenAddr {
    Tcp(SocketAddr),
    Unix(PathBuf),
}

impl std::fmt::Display for ListenAddr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ListenAddr::Tcp(a) => write!(f, "{a}"),
            ListenAddr::Unix(p) => write!(f, "unix:{}", p.display()),
        }
    }
}

/// Who the client is and what servers are told of it (`[server]`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ClientSettings {
    /// PROXY protocol on incoming connections, if on.
    pub proxy_protocol: Option<ProxyProtocolIn>,
    /// `trusted_proxies`: peers whose forwarding fields are believed and kept.
    pub trusted: Trust,
    /// `real_ip_header`: the field that names the client behind a trusted proxy.
    pub real_ip_from: RealIpFrom,
    pub forwarding: Forwarding,
}

/// `proxy_protocol`: every connection of the listeners it covers starts with a PROXY header
/// (v1 or v2) from a peer in `from`; anything else is closed and counted.
#[derive(Debug, Clone, PartialEq)]
pub struct ProxyProtocolIn {
    /// The listeners it covers, as configured; `None`: every client and TLS listener.
    pub listeners: Option<Vec<ListenAddr>>,
    /// `proxy_protocol_from`: who may send the header.
    pub from: Trust,
    /// `proxy_protocol_timeout`: from accept to a complete header.
    pub timeout: Duration,
}

impl ProxyProtocolIn {
    /// Whether connections to `listener` (as configured) start with a PROXY header.
    pub fn covers(&self, listener: &ListenAddr) -> bool {
        self.listeners
            .as_ref()
            .map_or(true, |l| l.iter().any(|x| x == listener))
    }
}

/// The forwarding fields sent to servers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Forwarding {
    /// `forwarded_headers = "append"`: a client's own forwarding fields are kept and added to
    /// (the old way), whoever sent them. The default replaces them unless the previous hop is
    /// a trusted proxy.
    pub append: bool,
    /// `X-Forwarded-For`, `-Proto`, `-Host` (`forwarded = "x-forwarded"` or `"both"`).
    pub x_forwarded: bool,
    /// RFC 7239 `Forwarded` (`forwarded = "rfc7239"` or `"both"`).
    pub rfc7239: bool,
    /// `x_real_ip = true`: `X-Real-IP` names the client.
    pub x_real_ip: bool,
}

impl Default for Forwarding {
    fn default() -> Forwarding {
        Forwarding {
            append: false,
            x_forwarded: true,
            rfc7239: false,
            x_real_ip: false,
        }
    }
}

/// `send_proxy`: the PROXY header version written first on every new connection to a pool's
/// servers (and its checks), as HAProxy's `send-proxy` and `send-proxy-v2`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SendProxy {
    V1,
    V2,
}
