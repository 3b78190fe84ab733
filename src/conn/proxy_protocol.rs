//! The PROXY protocol on incoming connections (HAProxy's specification, versions 1 and 2),
//! parsed by the `ppp` crate: a connection from a `proxy_protocol_from` peer must start with a
//! complete header within `proxy_protocol_timeout`; anything else is closed and counted
//! (`Traffic::proxy_refused`), never read as HTTP.
//!
//! On TCP the header is peeked and then exactly its bytes are read, so what follows (HTTP, or
//! a TLS handshake) stays in the socket for the usual path. A Unix-domain socket cannot be
//! peeked here: its bytes are read, and those after the header are handed on.

use crate::client_identity::canonical_addr;
use crate::config::ListenAddr;
use crate::session::stream::ClientStream;
use crate::session::Origin;
use crate::stats::ProxyRefusals;
use bytes::{Bytes, BytesMut};
use ppp::{v1, v2, HeaderResult, PartialResult};
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::Ordering::Relaxed;
use std::task::Poll;
use std::time::Duration;
use tokio::io::AsyncReadExt;
use tokio::time::Instant;

/// The longest header taken: a v1 header is 107 bytes at most; a v2 header's TLVs (cloud load
/// balancers add a few dozen bytes of their own) must fit in this too.
pub const MAX_HEADER: usize = 4096;

/// The longest version 1 header, CRLF included (section 2.1).
const V1_MAX: usize = 107;

/// The v2 signature (section 2.2).
const V2_SIGNATURE: &[u8; 12] = b"\r\n\r\n\0\r\nQUIT\n";

/// Why a connection was closed before HTTP.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    Untrusted,
    Missing,
    Malformed,
    Timeout,
}

impl Refusal {
    /// Counts the refusal.
    pub fn count(self, c: &ProxyRefusals) {
        let counter = match self {
            Refusal::Untrusted => &c.untrusted,
            Refusal::Missing => &c.missing,
            Refusal::Malformed => &c.malformed,
            Refusal::Timeout => &c.timeout,
        };
        counter.fetch_add(1, Relaxed);
    }

    /// The counter's name (`untrusted`, `missing`, `malformed`, `timeout`).
    pub fn reason(self) -> &'static str {
        match self {
            Refusal::Untrusted => "untrusted",
            Refusal::Missing => "missing",
            Refusal::Malformed => "malformed",
            Refusal::Timeout => "timeout",
        }
    }

    fn word(self) -> &'static str {
        match self {
            Refusal::Untrusted => "from a peer outside proxy_protocol_from",
            Refusal::Missing => "without a PROXY header",
            Refusal::Malformed => "with a malformed PROXY header",
            Refusal::Timeout => "without a complete PROXY header in time",
        }
    }
}

/// What the bytes so far are.
#[derive(Debug, PartialEq)]
pub(crate) enum Progress {
    /// A complete header of this many bytes.
    Done(Origin, usize),
    /// The start of a header: more bytes are needed.
    More,
    Refused(Refusal),
}

/// Judges the bytes received so far (the start of a connection). Pure.
pub(crate) fn judge(buf: &[u8]) -> Progress {
    let n = buf.len().min(V2_SIGNATURE.len());
    let v2 = buf[..n] == V2_SIGNATURE[..n];
    let n = buf.len().min(6);
    if !v2 && buf[..n] != b"PROXY "[..n] {
        return Progress::Refused(Refusal::Missing);
    }
    if !v2 && !buf.contains(&b'\n') {
        // Version 1 ends at CRLF within 107 bytes (section 2.1): judged once the line is in.
        return match buf.len() > V1_MAX {
            true => Progress::Refused(Refusal::Malformed),
            false => Progress::More,
        };
    }
    if v2 && buf.len() >= 16 {
        let declared = u16::from_be_bytes([buf[14], buf[15]]) as usize;
        if 16 + declared > MAX_HEADER {
            return Progress::Refused(Refusal::Malformed);
        }
    }
    let parsed = HeaderResult::parse(buf);
    if parsed.is_incomplete() {
        return match buf.len() >= MAX_HEADER {
            true => Progress::Refused(Refusal::Malformed),
            false => Progress::More,
        };
    }
    match parsed {
        HeaderResult::V1(Ok(h)) if plain_ports(&h.header) => {
            Progress::Done(origin_v1(&h), h.header.len())
        }
        HeaderResult::V2(Ok(h)) => match origin_v2(&h) {
            Some(o) => Progress::Done(o, h.len()),
            None => Progress::Refused(Refusal::Malformed),
        },
        _ => Progress::Refused(Refusal::Malformed),
    }
}

/// Whether a v1 header's ports are plain decimal numbers (section 2.1: `+80`, which Rust's
/// integer parsing takes, is not one). `UNKNOWN` has none to check.
fn plain_ports(line: &str) -> bool {
    let words: Vec<&str> = line.trim_end().split(' ').collect();
    match words.as_slice() {
        ["PROXY", "TCP4" | "TCP6", _, _, sp, dp] => [sp, dp]
            .iter()
            .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit())),
        _ => true,
    }
}

/// A v1 header's addresses; `UNKNOWN` leaves the socket's peer the client (section 2.1).
fn origin_v1(h: &v1::Header<'_>) -> Origin {
    let (source, destination) = match h.addresses {
        v1::Addresses::Tcp4(a) => (
            SocketAddr::from((a.source_address, a.source_port)),
            SocketAddr::from((a.destination_address, a.destination_port)),
        ),
        v1::Addresses::Tcp6(a) => (
            SocketAddr::from((a.source_address, a.source_port)),
            SocketAddr::from((a.destination_address, a.destination_port)),
        ),
        v1::Addresses::Unknown => return Origin::default(),
    };
    Origin {
        source: Some(canonical_addr(source)),
        destination: Some(canonical_addr(destination)),
        ..Origin::default()
    }
}

/// PP2_TYPE_AUTHORITY, PP2_TYPE_SSL and its PP2_SUBTYPE_SSL_VERSION (section 2.2.5).
const PP2_TYPE_AUTHORITY: u8 = 0x02;
const PP2_TYPE_SSL: u8 = 0x20;
const PP2_SUBTYPE_SSL_VERSION: u8 = 0x21;
const PP2_CLIENT_SSL: u8 = 0x01;

/// A v2 header's addresses and the TLVs kept for the log; `None` when its TLVs do not add up.
/// `LOCAL` (the proxy's own health check) and address families without an IP address leave
/// the socket's peer the client (section 2.2).
fn origin_v2(h: &v2::Header<'_>) -> Option<Origin> {
    let mut o = Origin::default();
    if h.command == v2::Command::Proxy {
        match h.addresses {
            v2::Addresses::IPv4(a) => {
                o.source = Some(SocketAddr::from((a.source_address, a.source_port)));
                o.destination = Some(SocketAddr::from((
                    a.destination_address,
                    a.destination_port,
                )));
            }
            v2::Addresses::IPv6(a) => {
                o.source = Some(SocketAddr::from((a.source_address, a.source_port)));
                o.destination = Some(SocketAddr::from((
                    a.destination_address,
                    a.destination_port,
                )));
            }
            v2::Addresses::Unix(_) | v2::Addresses::Unspecified => {}
        }
    }
    o.source = o.source.map(canonical_addr);
    o.destination = o.destination.map(canonical_addr);
    for tlv in h.tlvs() {
        let tlv = tlv.ok()?;
        match tlv.kind {
            PP2_TYPE_AUTHORITY => o.authority = Some(printable(&tlv.value)),
            PP2_TYPE_SSL => o.ssl = ssl(&tlv.value)?,
            _ => {}
        }
    }
    Some(o)
}

/// PP2_TYPE_SSL's value: the client bit, the verify field, then sub-TLVs. `Some(None)`: the
/// client did not use TLS; `None`: the value does not add up.
fn ssl(value: &[u8]) -> Option<Option<Box<str>>> {
    let (&client, rest) = value.split_first()?;
    let subs = rest.get(4..)?;
    if client & PP2_CLIENT_SSL == 0 {
        return Some(None);
    }
    let mut version = None;
    for sub in v2::TypeLengthValues::from(subs) {
        let sub = sub.ok()?;
        if sub.kind == PP2_SUBTYPE_SSL_VERSION {
            version = Some(printable(&sub.value));
        }
    }
    Some(Some(version.unwrap_or_else(|| "ssl".into())))
}

/// A TLV's text for the log: printable ASCII, anything else as `?`, at most 255 bytes.
fn printable(v: &[u8]) -> Box<str> {
    v.iter()
        .take(255)
        .map(|&b| {
            if (0x21..0x7f).contains(&b) {
                b as char
            } else {
                '?'
            }
        })
        .collect()
}

/// Reads the PROXY header a new connection from `peer` must start with, by `deadline`. The
/// origin it announced, and (Unix-domain sockets) the bytes read after it. Refusals are
/// counted in `counters` and logged (see [`refused`]).
pub(crate) async fn read(
    stream: &mut ClientStream,
    peer: Option<SocketAddr>,
    deadline: Instant,
    counters: &ProxyRefusals,
    listener: &ListenAddr,
) -> Result<(Origin, Bytes), Refusal> {
    let got = match stream {
        ClientStream::Tcp(_) => peeked(stream, deadline).await.map(|o| (o, Bytes::new())),
        ClientStream::Unix(_) => read_unix(stream, deadline).await,
    };
    if let Err(r) = got {
        refused(r, listener, peer, counters);
    }
    got
}

/// Refuses a connection from a peer outside `proxy_protocol_from`.
pub(crate) fn untrusted(peer: Option<SocketAddr>, counters: &ProxyRefusals, listener: &ListenAddr) {
    refused(Refusal::Untrusted, listener, peer, counters);
}

/// At most one warning per listener in this long about refused connections.
pub const WARN_EVERY: Duration = Duration::from_secs(5);

/// Counts a refusal and warns of it: at most one line per listener every [`WARN_EVERY`],
/// naming the peer and the reason, and how many were refused without a line since the last
/// one (a scan or a misconfigured balancer must not flood the log).
#[cold]
fn refused(r: Refusal, listener: &ListenAddr, peer: Option<SocketAddr>, counters: &ProxyRefusals) {
    r.count(counters);
    static GATES: std::sync::Mutex<Vec<(ListenAddr, WarnGate)>> = std::sync::Mutex::new(Vec::new());
    let now = Instant::now();
    let due = {
        let mut gates = GATES.lock().unwrap_or_else(|e| e.into_inner());
        let i = match gates.iter().position(|(l, _)| l == listener) {
            Some(i) => i,
            None => {
                gates.push((listener.clone(), WarnGate::default()));
                gates.len() - 1
            }
        };
        gates[i].1.note(now, WARN_EVERY)
    };
    let Some(suppressed) = due else { return };
    let peer = peer.map_or_else(|| "unix".to_string(), |p| p.to_string());
    tracing::warn!(
        listener = %listener,
        peer = %peer,
        reason = %r.reason(),
        suppressed,
        "PROXY protocol: connection closed {} ({suppressed} more refused since the last warning)",
        r.word()
    );
}

/// When a rate-limited warning is due. Pure.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct WarnGate {
    last: Option<Instant>,
    suppressed: u64,
}

impl WarnGate {
    /// One more event at `now`: `Some(n)` when a line is due (`n` events went without one
    /// since the last), `None` when it is not (this one is counted for the next line).
    pub fn note(&mut self, now: Instant, every: Duration) -> Option<u64> {
        match self.last {
            Some(t) if now.saturating_duration_since(t) < every => {
                self.suppressed += 1;
                None
            }
            _ => {
                self.last = Some(now);
                Some(std::mem::take(&mut self.suppressed))
            }
        }
    }
}

/// TCP: peeks until the header is complete, then reads exactly its bytes. A header that
/// comes in pieces is looked at again after a pause that doubles (5 ms to 320 ms), as a peek
/// leaves the socket readable.
async fn peeked(stream: &mut ClientStream, deadline: Instant) -> Result<Origin, Refusal> {
    let ClientStream::Tcp(tcp) = stream else {
        return Err(Refusal::Missing);
    };
    let mut buf = vec![0u8; MAX_HEADER];
    let sleep = tokio::time::sleep_until(deadline);
    tokio::pin!(sleep);
    let mut pause = Duration::from_millis(5);
    let mut seen = 0;
    loop {
        let n = std::future::poll_fn(|cx| {
            let mut b = tokio::io::ReadBuf::new(&mut buf);
            if let Poll::Ready(r) = tcp.poll_peek(cx, &mut b) {
                return Poll::Ready(Ok(r.unwrap_or(0)));
            }
            if sleep.as_mut().poll(cx).is_ready() {
                return Poll::Ready(Err(Refusal::Timeout));
            }
            Poll::Pending
        })
        .await?;
        if n == 0 {
            return Err(Refusal::Missing);
        }
        match judge(&buf[..n]) {
            Progress::Done(origin, len) => {
                let mut taken = vec![0u8; len];
                return match tokio::time::timeout_at(deadline, tcp.read_exact(&mut taken)).await {
                    Ok(Ok(_)) => Ok(origin),
                    _ => Err(Refusal::Timeout),
                };
            }
            Progress::Refused(r) => return Err(r),
            Progress::More => {}
        }
        if n > seen {
            // Something came: look again soon.
            pause = Duration::from_millis(5);
            seen = n;
        }
        let now = Instant::now();
        if now >= deadline {
            return Err(Refusal::Timeout);
        }
        sleep.as_mut().reset(deadline.min(now + pause));
        (&mut sleep).await;
        sleep.as_mut().reset(deadline);
        pause = (pause * 2).min(Duration::from_millis(320));
    }
}

/// A Unix-domain socket: reads until the header is complete; the bytes after it are given
/// back.
async fn read_unix(
    stream: &mut ClientStream,
    deadline: Instant,
) -> Result<(Origin, Bytes), Refusal> {
    let mut buf = BytesMut::with_capacity(512);
    loop {
        match tokio::time::timeout_at(deadline, stream.read_buf(&mut buf)).await {
            Err(_) => return Err(Refusal::Timeout),
            Ok(Err(_)) | Ok(Ok(0)) if buf.is_empty() => return Err(Refusal::Missing),
            Ok(Err(_)) | Ok(Ok(0)) => return Err(Refusal::Malformed),
            Ok(Ok(_)) => {}
        }
        match judge(&buf) {
            Progress::Done(origin, len) => {
                let rest = buf.split_off(len).freeze();
                return Ok((origin, rest));
            }
            Progress::Refused(r) => return Err(r),
            Progress::More => buf.reserve(512.min(MAX_HEADER - buf.len().min(MAX_HEADER)).max(1)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v2(command: u8, family: u8, body: &[u8]) -> Vec<u8> {
        let mut h = V2_SIGNATURE.to_vec();
        h.push(command);
        h.push(family);
        h.extend((body.len() as u16).to_be_bytes());
        h.extend(body);
        h
    }

    fn addr(s: &str) -> Option<SocketAddr> {
        Some(s.parse().unwrap())
    }

    #[test]
    fn version_1() {
        let h = b"PROXY TCP4 192.0.2.1 198.51.100.2 51000 443\r\nGET / HTTP/1.1\r\n";
        let Progress::Done(o, len) = judge(h) else {
            panic!("{:?}", judge(h))
        };
        assert_eq!(&h[len..], b"GET / HTTP/1.1\r\n");
        assert_eq!(o.source, addr("192.0.2.1:51000"));
        assert_eq!(o.destination, addr("198.51.100.2:443"));
        let h = b"PROXY TCP6 2001:db8::1 2001:db8::2 1 2\r\n";
        assert!(matches!(judge(h), Progress::Done(o, 40) if o.source == addr("[2001:db8::1]:1")));
        assert!(matches!(judge(b"PROXY UNKNOWN\r\n"), Progress::Done(o, 15) if o.source.is_none()));
        // Every prefix of a header is the start of one.
        for i in 1..h.len() {
            assert_eq!(judge(&h[..i]), Progress::More, "{i}");
        }
        for bad in [
            &b"PROXY TCP4 192.0.2.300 198.51.100.2 51000 443\r\n"[..],
            b"PROXY TCP4 192.0.2.1 198.51.100.2 99999 443\r\n",
            b"PROXY TCP5 192.0.2.1 198.51.100.2 1 2\r\n",
            b"PROXY TCP4 2001:db8::1 198.51.100.2 1 2\r\n",
            b"PROXY TCP4 192.0.2.1 198.51.100.2 1 2\n\n",
            // Only plain decimal ports (Rust's integer parsing takes a sign).
            b"PROXY TCP4 192.0.2.1 198.51.100.2 +1111 443\r\n",
            b"PROXY TCP4 192.0.2.1 198.51.100.2 1111 +443\r\n",
        ] {
            assert_eq!(judge(bad), Progress::Refused(Refusal::Malformed), "{bad:?}");
        }
        let long = format!("PROXY TCP4 {}", "1".repeat(200));
        assert_eq!(
            judge(long.as_bytes()),
            Progress::Refused(Refusal::Malformed)
        );
        assert_eq!(
            judge(b"GET / HTTP/1.1\r\n"),
            Progress::Refused(Refusal::Missing)
        );
        assert_eq!(judge(b"PROXX"), Progress::Refused(Refusal::Missing));
    }

    #[test]
    fn version_2() {
        let mut body = vec![192, 0, 2, 1, 198, 51, 100, 2, 0xc7, 0x38, 1, 187];
        // PP2_TYPE_AUTHORITY "site.example"; PP2_TYPE_SSL: client over TLS, verified, TLSv1.3.
        body.extend([0x02, 0, 12]);
        body.extend(b"site.example");
        body.extend([0x20, 0, 15, 0x01, 0, 0, 0, 0, 0x21, 0, 7]);
        body.extend(b"TLSv1.3");
        let h = v2(0x21, 0x11, &body);
        let mut with_http = h.clone();
        with_http.extend(b"GET /");
        let Progress::Done(o, len) = judge(&with_http) else {
            panic!()
        };
        assert_eq!(len, h.len());
        assert_eq!(o.source, addr("192.0.2.1:51000"));
        assert_eq!(o.destination, addr("198.51.100.2:443"));
        assert_eq!(o.authority.as_deref(), Some("site.example"));
        assert_eq!(o.ssl.as_deref(), Some("TLSv1.3"));
        for i in 1..h.len() {
            assert_eq!(judge(&h[..i]), Progress::More, "{i}");
        }
        // LOCAL: the socket's peer is the client.
        let local = v2(0x20, 0x00, &[]);
        assert!(matches!(judge(&local), Progress::Done(o, 16) if o.source.is_none()));
        // IPv6.
        let mut six = vec![0u8; 36];
        six[15] = 1;
        six[31] = 2;
        let Progress::Done(o, _) = judge(&v2(0x21, 0x21, &six)) else {
            panic!()
        };
        assert_eq!(o.source, addr("[::1]:0"));
        // An IPv4-mapped source is the IPv4 client.
        let mut mapped = vec![0u8; 36];
        mapped[10..16].copy_from_slice(&[0xff, 0xff, 1, 2, 3, 4]);
        mapped[32..34].copy_from_slice(&[0x1f, 0x90]);
        let Progress::Done(o, _) = judge(&v2(0x21, 0x21, &mapped)) else {
            panic!()
        };
        assert_eq!(o.source, addr("1.2.3.4:8080"));
        let v1 = b"PROXY TCP6 ::ffff:1.2.3.4 ::1 5 80\r\n";
        let Progress::Done(o, _) = judge(v1) else {
            panic!()
        };
        assert_eq!(o.source, addr("1.2.3.4:5"));
    }

    #[test]
    fn warnings_are_rate_limited() {
        let mut g = WarnGate::default();
        let t = Instant::now();
        let every = Duration::from_secs(5);
        assert_eq!(g.note(t, every), Some(0));
        assert_eq!(g.note(t + Duration::from_secs(1), every), None);
        assert_eq!(g.note(t + Duration::from_secs(4), every), None);
        assert_eq!(g.note(t + Duration::from_secs(6), every), Some(2));
        assert_eq!(g.note(t + Duration::from_secs(7), every), None);
        assert_eq!(g.note(t + Duration::from_secs(20), every), Some(1));
    }

    #[test]
    fn bad_version_2_headers() {
        let ok = [192, 0, 2, 1, 198, 51, 100, 2, 0, 1, 0, 2];
        // Too short for its addresses; a TLV longer than what is left; a bad version, command
        // or family; a length past the bound; a broken signature.
        let mut bad_tlv = ok.to_vec();
        bad_tlv.extend([0x02, 0, 9, b'x']);
        let mut bad_ssl = ok.to_vec();
        bad_ssl.extend([0x20, 0, 2, 0x01, 0]);
        for h in [
            v2(0x21, 0x11, &ok[..8]),
            v2(0x21, 0x11, &bad_tlv),
            v2(0x21, 0x11, &bad_ssl),
            v2(0x31, 0x11, &ok),
            v2(0x2f, 0x11, &ok),
            v2(0x21, 0x41, &ok),
        ] {
            assert_eq!(judge(&h), Progress::Refused(Refusal::Malformed), "{h:?}");
        }
        let mut huge = v2(0x21, 0x11, &ok);
        huge[14..16].copy_from_slice(&5000u16.to_be_bytes());
        assert_eq!(judge(&huge[..16]), Progress::Refused(Refusal::Malformed));
        let mut sig = v2(0x21, 0x11, &ok);
        sig[11] = b'X';
        assert_eq!(judge(&sig), Progress::Refused(Refusal::Missing));
    }

    #[test]
    fn noise_never_panics() {
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        let starts: [&[u8]; 3] = [&V2_SIGNATURE[..], b"PROXY ", b""];
        for round in 0..20_000 {
            let mut buf = starts[round % 3].to_vec();
            let len = (seed % 200) as usize;
            for _ in 0..len {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                buf.push(if seed % 3 == 0 {
                    b"PROXY TCP46:.0123\r\n "[(seed % 19) as usize]
                } else {
                    seed as u8
                });
            }
            let _ = judge(&buf);
        }
    }
}
