//! The PROXY protocol header langur writes first on a new connection to a server
//! (`send_proxy`, HAProxy's `send-proxy` and `send-proxy-v2`), encoded by the `ppp` crate, and
//! the one its health checks write (HAProxy's `check-send-proxy`).

use crate::config::SendProxy;
use crate::session::ClientInfo;
use ppp::{v1, v2};
use std::net::{IpAddr, SocketAddr};

/// The header for a connection carrying `client`'s requests: its address (after any trusted
/// proxies) as the source, the address it reached as the destination (the PROXY header's it
/// came with, else the listener's; `server` when neither is known). An IPv4 address facing an
/// IPv6 one is written IPv4-mapped; v1 cannot say a Unix-domain socket's peer, so it is
/// `UNKNOWN` there and v2 gives no addresses (`AF_UNSPEC`).
pub fn header(version: SendProxy, client: &ClientInfo, server: SocketAddr) -> Vec<u8> {
    let source = client.peer.map(|_| client.addr).or_else(|| {
        // A Unix-domain socket's client: only a PROXY header or a trusted proxy names one.
        let announced = client.origin.as_ref().and_then(|o| o.source);
        (announced.is_some() || client.trusted).then_some(client.addr)
    });
    let destination = client
        .origin
        .as_ref()
        .and_then(|o| o.destination)
        .unwrap_or(server);
    match (version, source.map(|s| same_family(s, destination))) {
        (SendProxy::V1, None) => v1::Addresses::Unknown.to_string().into_bytes(),
        (SendProxy::V1, Some((s, d))) => v1_addresses(s, d).to_string().into_bytes(),
        (SendProxy::V2, None) => check(SendProxy::V2),
        (SendProxy::V2, Some((s, d))) => v2::Builder::with_addresses(
            v2::Version::Two | v2::Command::Proxy,
            v2::Protocol::Stream,
            (s, d),
        )
        .build()
        .unwrap_or_else(|_| check(SendProxy::V2)),
    }
}

/// The header of a health check: v2 `LOCAL` (the connection is the proxy's own, section
/// 2.2), v1 `UNKNOWN` (section 2.1: "health checks").
pub fn check(version: SendProxy) -> Vec<u8> {
    match version {
        SendProxy::V1 => v1::Addresses::Unknown.to_string().into_bytes(),
        SendProxy::V2 => v2::Builder::with_addresses(
            v2::Version::Two | v2::Command::Local,
            v2::Protocol::Unspecified,
            v2::Addresses::Unspecified,
        )
        .build()
        .unwrap_or_default(),
    }
}

fn v1_addresses(s: SocketAddr, d: SocketAddr) -> v1::Addresses {
    match (s.ip(), d.ip()) {
        (IpAddr::V4(si), IpAddr::V4(di)) => v1::Addresses::new_tcp4(si, di, s.port(), d.port()),
        (si, di) => v1::Addresses::new_tcp6(v6(si), v6(di), s.port(), d.port()),
    }
}

fn v6(ip: IpAddr) -> std::net::Ipv6Addr {
    match ip {
        IpAddr::V4(v4) => v4.to_ipv6_mapped(),
        IpAddr::V6(v6) => v6,
    }
}

/// Both addresses in one family: IPv4-mapped ones as IPv4, else IPv4 mapped into IPv6.
fn same_family(s: SocketAddr, d: SocketAddr) -> (SocketAddr, SocketAddr) {
    let canon =
        |a: SocketAddr| SocketAddr::new(crate::client_identity::canonical(a.ip()), a.port());
    let (s, d) = (canon(s), canon(d));
    if s.is_ipv4() == d.is_ipv4() {
        return (s, d);
    }
    let six = |a: SocketAddr| SocketAddr::new(IpAddr::V6(v6(a.ip())), a.port());
    (six(s), six(d))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::session::Origin;
    use std::sync::Arc;

    fn client(peer: &str, destination: Option<&str>) -> ClientInfo {
        let origin = destination.map(|d| {
            Arc::new(Origin {
                destination: Some(d.parse().unwrap()),
                ..Origin::default()
            })
        });
        ClientInfo::connected(Some(peer.parse().unwrap()), origin)
    }

    #[test]
    fn version_1() {
        let server = "10.0.0.9:8080".parse().unwrap();
        let c = client("192.0.2.1:51000", Some("198.51.100.2:80"));
        assert_eq!(
            header(SendProxy::V1, &c, server),
            b"PROXY TCP4 192.0.2.1 198.51.100.2 51000 80\r\n"
        );
        let c = client("[2001:db8::1]:5", Some("198.51.100.2:80"));
        assert_eq!(
            header(SendProxy::V1, &c, server),
            b"PROXY TCP6 2001:db8::1 ::ffff:198.51.100.2 5 80\r\n"
        );
        let c = client("192.0.2.1:51000", None);
        assert_eq!(
            header(SendProxy::V1, &c, server),
            b"PROXY TCP4 192.0.2.1 10.0.0.9 51000 8080\r\n"
        );
        let unix = ClientInfo::connected(None, None);
        assert_eq!(header(SendProxy::V1, &unix, server), b"PROXY UNKNOWN\r\n");
        assert_eq!(check(SendProxy::V1), b"PROXY UNKNOWN\r\n");
    }

    #[test]
    fn version_2() {
        let server = "10.0.0.9:8080".parse().unwrap();
        let c = client("192.0.2.1:51000", Some("198.51.100.2:80"));
        let mut want = b"\r\n\r\n\0\r\nQUIT\n\x21\x11\x00\x0c".to_vec();
        want.extend([192, 0, 2, 1, 198, 51, 100, 2, 0xc7, 0x38, 0, 80]);
        assert_eq!(header(SendProxy::V2, &c, server), want);
        assert_eq!(
            check(SendProxy::V2),
            b"\r\n\r\n\0\r\nQUIT\n\x20\x00\x00\x00"
        );
        let unix = ClientInfo::connected(None, None);
        assert_eq!(header(SendProxy::V2, &unix, server), check(SendProxy::V2));
    }
}
