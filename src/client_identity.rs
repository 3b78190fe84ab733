//! Who the client is when langur is not the first hop: the networks whose word is believed
//! (`trusted_proxies`, `proxy_protocol_from`), the walk through `X-Forwarded-For`, RFC 7239
//! `Forwarded` or `X-Real-IP` to the right-most address no trusted proxy owns, and the RFC 7239
//! node syntax langur writes. Pure functions over plain data: the configuration builds a
//! [`Trust`], the request path runs [`walk`] (see docs/clients.md).

use http::header::{HeaderMap, HeaderName, HeaderValue};
use ipnet::IpNet;
use std::net::{IpAddr, SocketAddr};

/// At most this many entries of a forwarding field are looked at, from the right: a chain of
/// proxies is a handful of hops, and a client could send thousands of entries.
pub const MAX_HOPS: usize = 32;

/// Peers whose word about the client is believed: networks (`10.0.0.0/8`, `2001:db8::/32`,
/// single addresses) and, with `unix`, peers on a Unix-domain socket listener.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Trust {
    pub nets: Vec<IpNet>,
    pub unix: bool,
}

/// One entry of a trust list as written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TrustEntry {
    Net(IpNet),
    Unix,
}

impl TrustEntry {
    /// `10.0.0.0/8`, `192.0.2.7`, `2001:db8::/32`, `::1` or `unix`. Errors: a sentence naming
    /// what is accepted.
    pub fn parse(text: &str) -> Result<TrustEntry, String> {
        let t = text.trim();
        if t.eq_ignore_ascii_case("unix") {
            return Ok(TrustEntry::Unix);
        }
        t.parse::<IpNet>()
            .or_else(|_| t.parse::<IpAddr>().map(IpNet::from))
            .map(|n| TrustEntry::Net(canonical_net(n)))
            .map_err(|_| {
                format!("`{text}` is not a network, an address or \"unix\" (write 10.0.0.0/8, 192.0.2.7, ::1 or unix)")
            })
    }
}

impl Trust {
    pub fn push(&mut self, entry: TrustEntry) {
        match entry {
            TrustEntry::Net(n) => self.nets.push(n),
            TrustEntry::Unix => self.unix = true,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.nets.is_empty() && !self.unix
    }

    /// Whether `ip` is in one of the networks (an IPv4-mapped IPv6 address as its IPv4 one).
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = canonical(ip);
        self.nets.iter().any(|n| n.contains(&ip))
    }

    /// Whether a socket peer is trusted: `None` is a Unix-domain socket's peer.
    pub fn admits(&self, peer: Option<IpAddr>) -> bool {
        match peer {
            Some(ip) => self.contains(ip),
            None => self.unix,
        }
    }
}

/// An IPv4-mapped IPv6 address as its IPv4 address; others as they are.
pub fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// A socket address with its IP [`canonical`]: what every client address langur makes goes
/// through (the socket's peer, a PROXY header's source), so that an IPv4 client on a `[::]`
/// listener (`::ffff:192.0.2.1`) is the IPv4 client every network list names.
pub fn canonical_addr(a: SocketAddr) -> SocketAddr {
    match a {
        SocketAddr::V6(v6) => match v6.ip().to_ipv4_mapped() {
            Some(v4) => SocketAddr::new(IpAddr::V4(v4), v6.port()),
            None => a,
        },
        v4 => v4,
    }
}

/// A network as clients are compared with it: an IPv4-mapped IPv6 network (`::ffff:10.0.0.0/104`)
/// as its IPv4 network (`10.0.0.0/8`), since client addresses are [`canonical`]; others as they
/// are. Configuration lists go through this once, at load.
pub fn canonical_net(n: IpNet) -> IpNet {
    match n {
        IpNet::V6(v6) if v6.prefix_len() >= 96 => match v6.network().to_ipv4_mapped() {
            Some(v4) => ipnet::Ipv4Net::new(v4, v6.prefix_len() - 96).map_or(n, IpNet::V4),
            None => n,
        },
        n => n,
    }
}

/// Which request field names the client behind a trusted proxy (`real_ip_header`, nginx's
/// name for the same choice).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum RealIpFrom {
    /// `X-Forwarded-For`: comma-separated addresses, the client's first.
    #[default]
    XForwardedFor,
    /// RFC 7239 `Forwarded`: the `for=` of each element.
    Forwarded,
    /// `X-Real-IP`: one address.
    XRealIp,
}

impl RealIpFrom {
    pub fn parse(text: &str) -> Option<RealIpFrom> {
        Some(match text.to_ascii_lowercase().as_str() {
            "x-forwarded-for" => RealIpFrom::XForwardedFor,
            "forwarded" => RealIpFrom::Forwarded,
            "x-real-ip" => RealIpFrom::XRealIp,
            _ => return None,
        })
    }

    pub fn field(self) -> HeaderName {
        match self {
            RealIpFrom::XForwardedFor => X_FORWARDED_FOR,
            RealIpFrom::Forwarded => http::header::FORWARDED,
            RealIpFrom::XRealIp => X_REAL_IP,
        }
    }
}

pub const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
pub const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
pub const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
pub const X_REAL_IP: HeaderName = HeaderName::from_static("x-real-ip");

/// One entry of a forwarding field, as the walk reads it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hop {
    Addr(IpAddr),
    /// An empty list entry (`a, , b`): no entry at all (RFC 9110 5.6.1), skipped.
    Blank,
    /// Not an address langur can read (a typo, a host name, `unknown`, a zone index
    /// `fe80::1%eth0`, a node RFC 7239 does not allow such as a bare IPv6 address): the walk
    /// ends there, as what lies to its left cannot be told from what a client made up.
    Garbage,
    /// RFC 7239 `unknown`, an obfuscated node (`_hidden`), or an element without `for`: the
    /// hop did not say who its client was, so the walk ends there.
    Opaque,
}

/// The client behind trusted proxies: walking `hops` from the right (the hop nearest to
/// langur first), the first address not in `trust`; if every address is trusted, the last one
/// reached (the left-most, as nginx's `real_ip_recursive`). The walk ends at an entry it
/// cannot read (the last trusted address reached is the client then, as with nginx's realip
/// module: an entry left of one no proxy could have written is the client's own word), skips
/// empty ones, and looks at [`MAX_HOPS`] entries at most. With the number of entries looked at,
/// the client's included. `None`: no address was reached (the field is absent, empty, or its
/// right-most entry unreadable), and the connection's peer stays the client.
pub fn walk(hops: impl Iterator<Item = Hop>, trust: &Trust) -> Option<(IpAddr, usize)> {
    let mut last = None;
    for (i, hop) in hops.take(MAX_HOPS).enumerate() {
        match hop {
            Hop::Addr(ip) if !trust.contains(ip) => return Some((canonical(ip), i + 1)),
            Hop::Addr(ip) => last = Some((canonical(ip), i + 1)),
            Hop::Blank => {}
            Hop::Garbage | Hop::Opaque => break,
        }
    }
    last
}

/// The client named by the request's `from` field (see [`walk`]), right-most entry first,
/// across every line of the field.
pub fn client_from(headers: &HeaderMap, from: RealIpFrom, trust: &Trust) -> Option<IpAddr> {
    walk_from(headers, from, trust).map(|(ip, _)| ip)
}

/// [`client_from`] with the number of entries looked at, from the right, the client's
/// included.
pub fn walk_from(headers: &HeaderMap, from: RealIpFrom, trust: &Trust) -> Option<(IpAddr, usize)> {
    let lines = headers.get_all(from.field());
    match from {
        RealIpFrom::XForwardedFor | RealIpFrom::XRealIp => walk(xff_hops(headers, from), trust),
        RealIpFrom::Forwarded => {
            let mut ring = Ring::default();
            for v in lines.iter() {
                forwarded_hops(v.as_bytes(), &mut ring);
            }
            walk(ring.rev(), trust)
        }
    }
}

/// The entries of `X-Forwarded-For` (or `X-Real-IP`), right-most first, across its lines.
fn xff_hops(headers: &HeaderMap, from: RealIpFrom) -> impl Iterator<Item = Hop> + '_ {
    headers
        .get_all(from.field())
        .iter()
        .rev()
        .flat_map(|v| v.as_bytes().rsplit(|b| *b == b','))
        .map(xff_hop)
}

/// The addresses of the `hops` right-most entries of `X-Forwarded-For` (or `X-Real-IP`),
/// left-most first: the client and the trusted proxies a walk of `hops` entries went through
/// (empty entries left out).
pub fn chain(headers: &HeaderMap, from: RealIpFrom, hops: usize) -> Vec<IpAddr> {
    let mut out: Vec<IpAddr> = xff_hops(headers, from)
        .take(hops.min(MAX_HOPS))
        .filter_map(|h| match h {
            Hop::Addr(ip) => Some(canonical(ip)),
            _ => None,
        })
        .collect();
    out.reverse();
    out
}

/// The scheme the nearest hop says the request came with, when it is a trusted proxy:
/// `X-Forwarded-Proto`'s right-most value, or (`from` is `Forwarded`) the right-most element's
/// `proto` (RFC 7239 section 5.4). Only `http` and `https` are taken (any case); `None`
/// otherwise.
pub fn proto_from(headers: &HeaderMap, from: RealIpFrom) -> Option<&'static str> {
    let word: Vec<u8> = match from {
        RealIpFrom::Forwarded => {
            let line = headers
                .get_all(http::header::FORWARDED)
                .iter()
                .next_back()?;
            last_element_proto(line.as_bytes())?
        }
        _ => {
            let line = headers.get_all(X_FORWARDED_PROTO).iter().next_back()?;
            trim(line.as_bytes().rsplit(|b| *b == b',').next()?).to_vec()
        }
    };
    if word.eq_ignore_ascii_case(b"https") {
        Some("https")
    } else if word.eq_ignore_ascii_case(b"http") {
        Some("http")
    } else {
        None
    }
}

/// The `proto` of a `Forwarded` line's last element.
fn last_element_proto(line: &[u8]) -> Option<Vec<u8>> {
    let (mut current, mut last) = (None, None);
    let mut rest = line;
    loop {
        let (pair, sep, after) = split_pair(rest);
        if let Some((name, value)) = parse_pair(pair) {
            if name.eq_ignore_ascii_case(b"proto") {
                current = Some(value);
            }
        }
        if sep != Some(b';') {
            last = current.take();
        }
        match sep {
            None => return last,
            Some(_) => rest = after,
        }
    }
}

/// Whether a `Forwarded` line can be added to: every quoted string it opens is closed (an
/// element appended after an open quote would land inside it).
pub fn forwarded_is_sound(line: &[u8]) -> bool {
    let (mut quoted, mut escaped) = (false, false);
    for &b in line {
        match b {
            _ if escaped => escaped = false,
            b'\\' if quoted => escaped = true,
            b'"' => quoted = !quoted,
            _ => {}
        }
    }
    !quoted
}

/// An `X-Forwarded-For` entry: an address, with optional whitespace; `1.2.3.4:5678`,
/// `[2001:db8::1]` and `[2001:db8::1]:5678` are read too (some proxies add ports).
pub fn xff_hop(entry: &[u8]) -> Hop {
    let Ok(text) = std::str::from_utf8(entry) else {
        return Hop::Garbage;
    };
    let text = text.trim_matches([' ', '\t']);
    if text.is_empty() {
        return Hop::Blank;
    }
    node_addr(text).map_or(Hop::Garbage, Hop::Addr)
}

/// An address as a node may write it: `192.0.2.1`, `192.0.2.1:80`, `2001:db8::1`,
/// `[2001:db8::1]`, `[2001:db8::1]:80`.
fn node_addr(t: &str) -> Option<IpAddr> {
    if let Ok(ip) = t.parse::<IpAddr>() {
        return Some(ip);
    }
    if let Ok(sa) = t.parse::<SocketAddr>() {
        return Some(sa.ip());
    }
    t.strip_prefix('[')?.strip_suffix(']')?.parse().ok()
}

/// The last [`MAX_HOPS`] hops of a `Forwarded` field, oldest first, so a field of any length
/// costs a fixed amount of memory.
struct Ring {
    hops: [Hop; MAX_HOPS],
    len: usize,
}

impl Default for Ring {
    fn default() -> Ring {
        Ring {
            hops: [Hop::Garbage; MAX_HOPS],
            len: 0,
        }
    }
}

impl Ring {
    fn push(&mut self, hop: Hop) {
        self.hops[self.len % MAX_HOPS] = hop;
        self.len += 1;
    }

    /// Newest first.
    fn rev(&self) -> impl Iterator<Item = Hop> + '_ {
        let n = self.len.min(MAX_HOPS);
        (0..n).map(move |i| self.hops[(self.len - 1 - i) % MAX_HOPS])
    }
}

/// The hops of one `Forwarded` line (RFC 7239 section 4: elements separated by `,`, pairs by
/// `;`, values tokens or quoted strings, which may hold either separator).
fn forwarded_hops(line: &[u8], ring: &mut Ring) {
    let mut element: Option<Hop> = None;
    let mut broken = false;
    let mut rest = line;
    loop {
        let (pair, sep, after) = split_pair(rest);
        match parse_pair(pair) {
            Some((name, value)) if name.eq_ignore_ascii_case(b"for") => {
                if element.is_some() {
                    broken = true; // `for` twice: RFC 7239 section 4 forbids it
                }
                element = Some(for_hop(&value));
            }
            Some(_) => {}
            None => broken = !pair.iter().all(|b| *b == b' ' || *b == b'\t') || broken,
        }
        if sep != Some(b';') {
            // The element ends here.
            // An empty list element (`a, , b`) is no hop (RFC 9110 5.6.1).
            let blank =
                element.is_none() && !broken && pair.iter().all(|b| b.is_ascii_whitespace());
            if !blank {
                ring.push(match (broken, element) {
                    (true, _) => Hop::Garbage,
                    (false, Some(h)) => h,
                    (false, None) => Hop::Opaque,
                });
            }
            element = None;
            broken = false;
        }
        match sep {
            None => return,
            Some(_) => rest = after,
        }
    }
}

/// The next `name=value` pair of `s`, the separator after it (`;` or `,`, `None` at the end)
/// and what follows; separators inside a quoted string do not count.
fn split_pair(s: &[u8]) -> (&[u8], Option<u8>, &[u8]) {
    let mut quoted = false;
    let mut escaped = false;
    for (i, &b) in s.iter().enumerate() {
        match b {
            _ if escaped => escaped = false,
            b'\\' if quoted => escaped = true,
            b'"' => quoted = !quoted,
            b';' | b',' if !quoted => return (&s[..i], Some(b), &s[i + 1..]),
            _ => {}
        }
    }
    if quoted {
        // A quote that never closes would swallow the elements proxies appended after it:
        // this pair ends at the next separator instead (and is garbage).
        if let Some(i) = s.iter().position(|b| *b == b';' || *b == b',') {
            return (&s[..i], Some(s[i]), &s[i + 1..]);
        }
    }
    (s, None, &[])
}

/// `name=value` with optional whitespace around it; the value unquoted. `None`: not a pair.
fn parse_pair(pair: &[u8]) -> Option<(&[u8], Vec<u8>)> {
    let pair = trim(pair);
    let eq = pair.iter().position(|b| *b == b'=')?;
    let (name, value) = (&pair[..eq], &pair[eq + 1..]);
    if name.is_empty() || !name.iter().all(|b| is_tchar(*b)) {
        return None;
    }
    let value = match value {
        [b'"', inner @ .., b'"'] => {
            let mut out = Vec::with_capacity(inner.len());
            let mut escaped = false;
            for &b in inner {
                match b {
                    _ if escaped => {
                        out.push(b);
                        escaped = false;
                    }
                    b'\\' => escaped = true,
                    b'"' => return None,
                    _ => out.push(b),
                }
            }
            if escaped {
                return None;
            }
            out
        }
        v if !v.is_empty() && v.iter().all(|b| is_tchar(*b)) => v.to_vec(),
        _ => return None,
    };
    Some((name, value))
}

/// A `for=` node (RFC 7239 section 6): an address (with an optional port), or `unknown` or an
/// obfuscated identifier (`_` first), which end the walk.
fn for_hop(value: &[u8]) -> Hop {
    let Ok(text) = std::str::from_utf8(value) else {
        return Hop::Garbage;
    };
    if text.eq_ignore_ascii_case("unknown") || text.starts_with('_') {
        return Hop::Opaque;
    }
    // Only section 6's forms: a bare IPv6 address (`for="2001:db8::1"`) is not one, and
    // ends the walk like any other entry that cannot be read.
    rfc7239_node(text).map_or(Hop::Garbage, Hop::Addr)
}

/// A node's address as RFC 7239 section 6 writes it: `192.0.2.1`, `192.0.2.1:80`,
/// `[2001:db8::1]`, `[2001:db8::1]:80` (a port may be obfuscated: `_x`).
fn rfc7239_node(text: &str) -> Option<IpAddr> {
    let (ip, port) = match text.strip_prefix('[') {
        Some(rest) => {
            let (v6, after) = rest.split_once(']')?;
            (IpAddr::V6(v6.parse().ok()?), after)
        }
        None => {
            let (v4, port) = text.find(':').map_or((text, ""), |i| text.split_at(i));
            (IpAddr::V4(v4.parse().ok()?), port)
        }
    };
    let port_ok = match port.strip_prefix(':') {
        None => port.is_empty(),
        Some(p) => match p.strip_prefix('_') {
            Some(obf) => obf
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b)),
            None => (1..=5).contains(&p.len()) && p.bytes().all(|b| b.is_ascii_digit()),
        },
    };
    port_ok.then_some(ip)
}

fn trim(mut s: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = s {
        s = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = s {
        s = rest;
    }
    s
}

/// RFC 9110 5.6.2 `tchar`.
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// A node as RFC 7239 section 6 writes it, ready for `for=`: an IPv4 address bare, an IPv6
/// address in brackets and quotes (`"[2001:db8::1]"`), a port after a colon inside quotes
/// (`"192.0.2.1:8080"`); `None` is `unknown` (a Unix-domain socket's peer).
pub fn node(ip: Option<IpAddr>, port: Option<u16>) -> String {
    match (ip.map(canonical), port) {
        (None, _) => "unknown".into(),
        (Some(IpAddr::V4(v4)), None) => v4.to_string(),
        (Some(IpAddr::V4(v4)), Some(p)) => format!("\"{v4}:{p}\""),
        (Some(IpAddr::V6(v6)), None) => format!("\"[{v6}]\""),
        (Some(IpAddr::V6(v6)), Some(p)) => format!("\"[{v6}]:{p}\""),
    }
}

/// A `Forwarded` parameter value: the value itself when it is a token, else a quoted string
/// with `"` and `\` escaped (RFC 7239 section 4, RFC 9110 5.6.4). Bytes a field value cannot
/// hold are left out.
pub fn param_value(out: &mut Vec<u8>, value: &[u8]) {
    if !value.is_empty() && value.iter().all(|b| is_tchar(*b)) {
        out.extend_from_slice(value);
        return;
    }
    out.push(b'"');
    for &b in value {
        if b == b'"' || b == b'\\' {
            out.push(b'\\');
        }
        if b == b'\t' || (b' '..=b'~').contains(&b) || b >= 0x80 {
            out.push(b);
        }
    }
    out.push(b'"');
}

/// One `Forwarded` element for this hop: `for=NODE;host=HOST;proto=PROTO` (`for_node` made by
/// [`node`], `host` left out when the request has none).
pub fn forwarded_element(for_node: &str, host: Option<&HeaderValue>, proto: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(48);
    out.extend_from_slice(b"for=");
    out.extend_from_slice(for_node.as_bytes());
    if let Some(h) = host.filter(|h| !h.is_empty()) {
        out.extend_from_slice(b";host=");
        param_value(&mut out, h.as_bytes());
    }
    out.extend_from_slice(b";proto=");
    out.extend_from_slice(proto.as_bytes());
    out
}

#[cfg(test)]
mod tests;
