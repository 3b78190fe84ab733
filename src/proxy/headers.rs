//! Header rewriting between client and server: pure functions over `HeaderMap`.

use crate::client_identity::{
    self, RealIpFrom, X_FORWARDED_FOR, X_FORWARDED_HOST, X_FORWARDED_PROTO, X_REAL_IP,
};
use crate::config::Forwarding;
use crate::session::ClientInfo;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};

/// Headers that describe one connection, never forwarded (RFC 9110 7.6.1, plus the
/// `Keep-Alive`/`Proxy-Connection` that old clients still send).
const HOP_BY_HOP: [HeaderName; 6] = [
    header::CONNECTION,
    header::TE,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
];

/// Does `TE` (as sent by the client) accept trailers?
pub fn te_trailers(h: &HeaderMap) -> bool {
    h.get_all(header::TE).iter().any(|v| {
        v.to_str()
            .map(|s| {
                s.split(',')
                    .any(|t| t.trim().eq_ignore_ascii_case("trailers"))
            })
            .unwrap_or(false)
    })
}

/// Fields a `Connection` option never removes (RFC 9110 7.6.1 lets a sender nominate any
/// field; these are the ones langur itself reads to route, frame, key, store, validate or
/// balance a message, so removing them would make langur decide on one message and forward
/// another: a request answered for one host stored under another, a variant stored under the
/// wrong `Vary` value, a `private` response stored).
const NEVER_NOMINATED: [HeaderName; 25] = [
    header::HOST,
    header::CONTENT_LENGTH,
    header::CONTENT_TYPE,
    header::CONTENT_ENCODING,
    header::CONTENT_RANGE,
    header::CONTENT_LOCATION,
    header::LOCATION,
    header::AUTHORIZATION,
    header::COOKIE,
    header::SET_COOKIE,
    header::CACHE_CONTROL,
    header::PRAGMA,
    header::EXPIRES,
    header::DATE,
    header::AGE,
    header::ETAG,
    header::LAST_MODIFIED,
    header::VARY,
    header::IF_MATCH,
    header::IF_NONE_MATCH,
    header::IF_MODIFIED_SINCE,
    header::IF_UNMODIFIED_SINCE,
    header::IF_RANGE,
    header::RANGE,
    header::EXPECT,
];

/// Removes hop-by-hop headers, including every header named in `Connection` except those
/// langur depends on ([`NEVER_NOMINATED`], and whatever `keep` says: a pool's hashing field).
///
/// One pass over the names present first: a message has a handful of fields and usually one
/// hop-by-hop field at most, so comparing names beats a hashed removal per candidate (that was
/// 7% of a proxied request's instructions). `keep` is asked only for fields that `Connection`
/// nominates.
pub fn strip_hop_by_hop(h: &mut HeaderMap, keep: impl Fn(&HeaderName) -> bool) {
    let mut found = [false; 6];
    for k in h.keys() {
        // Only names of a hop-by-hop length are compared (most fields are not).
        if matches!(k.as_str().len(), 2 | 7 | 10 | 16 | 17) {
            if let Some(i) = HOP_BY_HOP.iter().position(|n| n == k) {
                found[i] = true;
            }
        }
    }
    if !found.contains(&true) {
        return;
    }
    // `found[0]` is Connection: the fields it names go too.
    if found[0] {
        let named: Vec<HeaderName> = h
            .get_all(header::CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|s| s.split(','))
            .map(str::trim)
            // The usual options name no field (`close`) or one removed below anyway.
            .filter(|t| {
                !(t.eq_ignore_ascii_case("keep-alive")
                    || t.eq_ignore_ascii_case("close")
                    || t.eq_ignore_ascii_case("upgrade")
                    || t.eq_ignore_ascii_case("te"))
            })
            .filter_map(|t| HeaderName::from_bytes(t.as_bytes()).ok())
            .filter(|n| !NEVER_NOMINATED.contains(n) && !keep(n))
            .collect();
        for n in named {
            h.remove(n);
        }
    }
    for (n, present) in HOP_BY_HOP.iter().zip(found) {
        if present {
            h.remove(n);
        }
    }
}

/// An HTTP/2 request made ready for HTTP/1.1 (RFC 9113 8.2 and 8.3), the one place that
/// translates: the `cookie` crumbs are joined into one field with `"; "` (8.2.3); a field
/// value with leading or trailing whitespace, or a connection-specific field, makes the
/// request malformed (8.2.1, 8.2.2). `:authority` itself (no userinfo, a `host` that agrees
/// with it: 8.3.1) is checked by `strict::check_request`, which runs first; `Host` is set from
/// `:authority` as the request goes upstream, as for an absolute-form HTTP/1.1 request.
///
/// Errors: a short reason; the caller answers 400.
pub fn h2_to_h1(h: &mut HeaderMap) -> Result<(), &'static str> {
    for (name, value) in h.iter() {
        let v = value.as_bytes();
        if v.first().is_some_and(|b| *b == b' ' || *b == b'\t')
            || v.last().is_some_and(|b| *b == b' ' || *b == b'\t')
        {
            return Err("field value with surrounding whitespace");
        }
        if HOP_BY_HOP[..].contains(name) && !(name == header::TE && v == b"trailers") {
            return Err("connection-specific field");
        }
    }
    let mut crumbs = h.get_all(header::COOKIE).iter();
    if let (Some(first), Some(_)) = (crumbs.next(), crumbs.next()) {
        let mut joined = first.as_bytes().to_vec();
        for c in h.get_all(header::COOKIE).iter().skip(1) {
            joined.extend_from_slice(b"; ");
            joined.extend_from_slice(c.as_bytes());
        }
        let v = HeaderValue::from_bytes(&joined).map_err(|_| "bad cookie")?;
        h.insert(header::COOKIE, v);
    }
    Ok(())
}

/// Does any `Via` entry name `token` as the proxy it passed (`1.1 token`, `HTTP/1.1 token (c)`)?
pub fn via_contains(h: &HeaderMap, token: &str) -> bool {
    h.get_all(header::VIA).iter().any(|v| {
        v.to_str()
            .map(|s| {
                s.split(',')
                    .any(|entry| entry.split_whitespace().nth(1) == Some(token))
            })
            .unwrap_or(false)
    })
}

/// Writes the forwarding fields of the request going upstream and appends this hop to `Via`.
///
/// The fields a client sent itself are replaced (never appended to), unless the previous hop
/// is a trusted proxy (`client.trusted`) or `forwarded_headers = "append"` asks for the old
/// way: then `X-Forwarded-For` and `Forwarded` get this hop added, and a trusted proxy's
/// `X-Forwarded-Proto` and `X-Forwarded-Host` are kept. `rules.x_forwarded` writes
/// The fields that tell a server who the verified TLS client is: its certificate's subject
/// (RFC 4514), subject alternative names and SHA-256 fingerprint (see [`ClientCert`]).
pub const CLIENT_CERT_FIELDS: [&str; 3] = [
    "x-client-cert-subject",
    "x-client-cert-san",
    "x-client-cert-sha256",
];

/// Removes the client's own `X-Client-Cert-*` fields (never believed), then writes the
/// verified certificate's when there is one. A value that cannot be a field value is left
/// out.
///
/// [`ClientCert`]: crate::tls::ClientCert
pub fn client_cert_fields(h: &mut HeaderMap, cert: Option<&crate::tls::ClientCert>) {
    for name in CLIENT_CERT_FIELDS {
        h.remove(name);
    }
    let Some(c) = cert else { return };
    for (name, value) in CLIENT_CERT_FIELDS
        .into_iter()
        .zip([&c.subject, &c.sans, &c.sha256])
    {
        if value.is_empty() {
            continue;
        }
        if let Ok(v) = HeaderValue::from_bytes(value.as_bytes()) {
            h.insert(HeaderName::from_static(name), v);
        }
    }
}

/// `X-Forwarded-For` (the previous hop, [`ClientInfo::ip_header`]), `-Proto` and `-Host`
/// (`host`: what the client asked for, before any rule replaced `Host`); `rules.rfc7239`
/// writes an RFC 7239 `Forwarded` element (`for`, `host`, `proto`; section 6's quoting);
/// `rules.x_real_ip` writes `X-Real-IP`, the client after any trusted proxies. `Host` is left
/// as it is.
///
/// Behind a trusted proxy that named the client in a field other than the one written (`from`,
/// `real_ip_header`), the written field starts with the client (and the trusted hops the walk
/// went through), as nginx's `$proxy_add_x_forwarded_for` does after its realip module: a
/// `Forwarded` made from `X-Forwarded-For` or `X-Real-IP`, an `X-Forwarded-For` made from
/// `X-Real-IP`. A `Forwarded` line with a quote left open is dropped before this hop's element
/// is added (it would land inside the quote). Unless `forwarded_headers = "append"`, the
/// underscore forms of the fields (`X_Forwarded_For`, `X_Real_IP`, `X_Forwarded_Proto`,
/// `X_Forwarded_Host`), which CGI and PHP servers read as the dash forms, are removed.
pub fn add_forwarding(
    h: &mut HeaderMap,
    client: &ClientInfo,
    rules: &Forwarding,
    from: RealIpFrom,
    host: Option<&HeaderValue>,
    via: &HeaderValue,
) {
    let keep = rules.append || client.trusted;
    let found = match rules.append {
        true => Found::default(),
        false => scan_forwarding(h),
    };
    if found.underscore {
        remove_underscore_forms(h);
    }
    if rules.rfc7239 {
        rfc7239(h, client, keep, from, host);
    } else if found.forwarded && !keep {
        h.remove(header::FORWARDED);
    }
    if rules.x_forwarded {
        x_forwarded(h, client, keep, from, host);
    } else if !keep {
        h.remove(X_FORWARDED_FOR);
        h.remove(X_FORWARDED_PROTO);
        h.remove(X_FORWARDED_HOST);
    }
    if rules.x_real_ip {
        let ip = match client.trusted {
            true => crate::session::client_ip_value(client.addr.ip()),
            false => client.ip_header.clone(),
        };
        h.insert(X_REAL_IP, ip);
    } else if found.real_ip && !keep {
        h.remove(X_REAL_IP);
    }
    h.append(header::VIA, via.clone());
}

/// What a pass over the request's field names found.
#[derive(Default)]
struct Found {
    forwarded: bool,
    real_ip: bool,
    /// An underscore form of a forwarding field.
    underscore: bool,
}

/// Whether the request has `Forwarded`, `X-Real-IP` or an underscore form of a forwarding
/// field: one pass over the names (a handful), cheaper than a hashed removal of each when, as
/// usual, none is there.
fn scan_forwarding(h: &HeaderMap) -> Found {
    let mut found = Found::default();
    for k in h.keys() {
        // Only names of these lengths can be one; most are not.
        match k.as_str().len() {
            9 => {
                found.forwarded |= *k == header::FORWARDED;
                found.real_ip |= *k == X_REAL_IP;
                found.underscore |= is_underscore_form(k);
            }
            15..=17 => found.underscore |= is_underscore_form(k),
            _ => {}
        }
    }
    found
}

/// The fields a CGI or PHP server folds (`-` and `_` alike) into `HTTP_X_FORWARDED_FOR` and
/// the like.
const FOLDED: [&str; 4] = [
    "x-real-ip",
    "x-forwarded-for",
    "x-forwarded-host",
    "x-forwarded-proto",
];

/// `X_Forwarded_For` and the like: a forwarding field's name with `_` for some `-`. Names
/// not starting with `x` (most) are told apart by their first byte.
#[inline]
fn is_underscore_form(name: &HeaderName) -> bool {
    let n = name.as_str().as_bytes();
    n.first() == Some(&b'x') && folded_form(n)
}

#[cold]
fn folded_form(n: &[u8]) -> bool {
    FOLDED.iter().any(|f| {
        let mut underscore = false;
        f.len() == n.len()
            && n.iter().zip(f.as_bytes()).all(|(a, b)| {
                underscore |= *a == b'_';
                a == b || (*a == b'_' && *b == b'-')
            })
            && underscore
    })
}

#[cold]
fn remove_underscore_forms(h: &mut HeaderMap) {
    let names: Vec<HeaderName> = h
        .keys()
        .filter(|k| is_underscore_form(k))
        .cloned()
        .collect();
    for n in names {
        h.remove(n);
    }
}

/// `Forwarded`: this hop's element (the previous hop, the host, the connection's scheme),
/// added to a kept field (its lines with a quote left open dropped) or alone; behind a trusted
/// proxy that named the client in another field, the client's element (with its scheme) and the
/// trusted hops come first.
fn rfc7239(
    h: &mut HeaderMap,
    client: &ClientInfo,
    keep: bool,
    from: RealIpFrom,
    host: Option<&HeaderValue>,
) {
    // The previous hop as `X-Forwarded-For` names it: a Unix-domain socket's peer is
    // 127.0.0.1 here too (see docs/clients.md).
    let hop = client
        .origin
        .as_ref()
        .and_then(|o| o.source)
        .or(client.peer)
        .unwrap_or(crate::session::UNIX_PEER);
    let node = client_identity::node(Some(hop.ip()), None);
    let element = client_identity::forwarded_element(&node, host, client.hop_scheme);
    let incoming = keep && keep_sound_forwarded(h);
    if !(client.trusted && !incoming && client.walked > 0 && from != RealIpFrom::Forwarded) {
        append_or_set(h, header::FORWARDED, keep, &element);
        return;
    }
    let mut value = Vec::with_capacity(64 + element.len());
    let chain = client_identity::chain(h, from, usize::from(client.walked));
    for (i, ip) in chain.iter().enumerate() {
        value.extend_from_slice(b"for=");
        value.extend_from_slice(client_identity::node(Some(*ip), None).as_bytes());
        if i == 0 {
            value.extend_from_slice(b";proto=");
            value.extend_from_slice(client.scheme.as_bytes());
        }
        value.extend_from_slice(b", ");
    }
    value.extend_from_slice(&element);
    append_or_set(h, header::FORWARDED, false, &value);
}

/// Drops the `Forwarded` lines a quote was left open in; whether any line is left.
fn keep_sound_forwarded(h: &mut HeaderMap) -> bool {
    let lines = h.get_all(header::FORWARDED);
    let mut iter = lines.iter();
    let Some(first) = iter.next() else {
        return false;
    };
    if std::iter::once(first)
        .chain(iter)
        .all(|v| client_identity::forwarded_is_sound(v.as_bytes()))
    {
        return true;
    }
    let sound: Vec<HeaderValue> = h
        .get_all(header::FORWARDED)
        .iter()
        .filter(|v| client_identity::forwarded_is_sound(v.as_bytes()))
        .cloned()
        .collect();
    h.remove(header::FORWARDED);
    let any = !sound.is_empty();
    for v in sound {
        h.append(header::FORWARDED, v);
    }
    any
}

/// `X-Forwarded-For` (the previous hop added to a kept list, else alone; behind a trusted proxy
/// that named the client in `X-Real-IP` and sent no list, the client first), `-Proto` and
/// `-Host` (a trusted proxy's kept, else this hop's).
fn x_forwarded(
    h: &mut HeaderMap,
    client: &ClientInfo,
    keep: bool,
    from: RealIpFrom,
    host: Option<&HeaderValue>,
) {
    if keep {
        let named_elsewhere = client.trusted
            && client.walked > 0
            && from == RealIpFrom::XRealIp
            && !h.contains_key(X_FORWARDED_FOR);
        match named_elsewhere {
            true => {
                let mut v = crate::session::client_ip_value(client.addr.ip())
                    .as_bytes()
                    .to_vec();
                v.extend_from_slice(b", ");
                v.extend_from_slice(client.ip_header.as_bytes());
                append_or_set(h, X_FORWARDED_FOR, false, &v);
            }
            false => append_or_set(h, X_FORWARDED_FOR, true, client.ip_header.as_bytes()),
        }
    } else {
        h.insert(X_FORWARDED_FOR, client.ip_header.clone());
    }
    if !(client.trusted && h.contains_key(X_FORWARDED_PROTO)) {
        h.insert(X_FORWARDED_PROTO, HeaderValue::from_static(client.scheme));
    }
    if !(client.trusted && h.contains_key(X_FORWARDED_HOST)) {
        match host {
            Some(host) => {
                h.insert(X_FORWARDED_HOST, host.clone());
            }
            None => {
                h.remove(X_FORWARDED_HOST);
            }
        }
    }
}

/// Sets `name` to `value`, or (with `keep`) adds `value` to the list the request has, as one
/// field line (RFC 9110 5.3).
fn append_or_set(h: &mut HeaderMap, name: HeaderName, keep: bool, value: &[u8]) {
    let own = || HeaderValue::from_bytes(value).ok();
    match h.entry(name) {
        header::Entry::Occupied(mut e) if keep => {
            let mut prior: Vec<&[u8]> = e.iter().map(|v| v.as_bytes()).collect();
            prior.push(value);
            if let Some(joined) = HeaderValue::from_bytes(&prior.join(&b", "[..]))
                .ok()
                .or_else(own)
            {
                e.insert(joined);
            }
        }
        header::Entry::Occupied(mut e) => {
            if let Some(v) = own() {
                e.insert(v);
            }
        }
        header::Entry::Vacant(e) => {
            if let Some(v) = own() {
                e.insert(v);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strips_hop_by_hop_and_connection_named() {
        let mut h = HeaderMap::new();
        h.insert(
            header::CONNECTION,
            HeaderValue::from_static("keep-alive, X-Secret"),
        );
        h.insert("x-secret", HeaderValue::from_static("1"));
        h.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        h.insert(header::TE, HeaderValue::from_static("trailers"));
        h.insert(header::UPGRADE, HeaderValue::from_static("h2c"));
        h.insert("proxy-connection", HeaderValue::from_static("keep-alive"));
        h.insert("x-keep", HeaderValue::from_static("1"));
        strip_hop_by_hop(&mut h, |_| false);
        assert_eq!(h.len(), 1);
        assert!(h.contains_key("x-keep"));
    }

    #[test]
    fn connection_never_removes_what_langur_reads() {
        let mut h = HeaderMap::new();
        h.insert(
            header::CONNECTION,
            HeaderValue::from_static(
                "close, Host, Accept-Language, Cookie, X-User, Vary, Cache-Control",
            ),
        );
        for n in [
            "host",
            "accept-language",
            "cookie",
            "x-user",
            "vary",
            "cache-control",
            "x-gone",
        ] {
            h.insert(n, HeaderValue::from_static("v"));
        }
        h.append(
            header::CONNECTION,
            HeaderValue::from_static("x-gone, content-length"),
        );
        h.insert(header::CONTENT_LENGTH, HeaderValue::from_static("3"));
        strip_hop_by_hop(&mut h, |n| n == "x-user");
        for kept in [
            "host",
            "cookie",
            "x-user",
            "vary",
            "cache-control",
            "content-length",
        ] {
            assert!(h.contains_key(kept), "{kept} removed");
        }
        assert!(!h.contains_key("accept-language"));
        assert!(!h.contains_key("x-gone"));
        assert!(!h.contains_key(header::CONNECTION));
    }

    fn client(ip: &str, trusted: bool) -> ClientInfo {
        let mut c = ClientInfo::new(std::net::SocketAddr::new(ip.parse().unwrap(), 4000));
        c.trusted = trusted;
        c
    }

    fn forwarded(h: &mut HeaderMap, c: &ClientInfo, rules: Forwarding) {
        let host = h.get(header::HOST).cloned();
        let via = HeaderValue::from_static("1.1 langur-x");
        add_forwarding(h, c, &rules, RealIpFrom::XForwardedFor, host.as_ref(), &via);
    }

    fn sent() -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::HOST, HeaderValue::from_static("example.org"));
        h.insert("x-forwarded-for", HeaderValue::from_static("6.6.6.6"));
        h.insert("x-forwarded-proto", HeaderValue::from_static("https"));
        h.insert("x-forwarded-host", HeaderValue::from_static("evil.example"));
        h.insert("x-real-ip", HeaderValue::from_static("6.6.6.6"));
        h.insert("forwarded", HeaderValue::from_static("for=6.6.6.6"));
        h
    }

    #[test]
    fn forwarding_fields_from_a_client_are_replaced() {
        let mut h = sent();
        forwarded(&mut h, &client("127.0.0.1", false), Forwarding::default());
        assert_eq!(h["x-forwarded-for"], "127.0.0.1");
        assert_eq!(h["x-forwarded-proto"], "http");
        assert_eq!(h["x-forwarded-host"], "example.org");
        assert!(h.get("x-real-ip").is_none());
        assert!(h.get("forwarded").is_none());
        assert_eq!(h["host"], "example.org");
        assert!(via_contains(&h, "langur-x"));
        assert!(!via_contains(&h, "langur-y"));
        // The old way, asked for.
        let mut h = sent();
        let append = Forwarding {
            append: true,
            ..Forwarding::default()
        };
        forwarded(&mut h, &client("127.0.0.1", false), append);
        assert_eq!(h["x-forwarded-for"], "6.6.6.6, 127.0.0.1");
        assert_eq!(h["x-forwarded-proto"], "http");
        assert_eq!(h["x-forwarded-host"], "example.org");
        assert_eq!(h["x-real-ip"], "6.6.6.6");
    }

    #[test]
    fn a_trusted_proxy_s_fields_are_kept_and_added_to() {
        let mut h = sent();
        let mut c = client("10.0.0.1", true);
        c.addr = "1.2.3.4:0".parse().unwrap();
        let all = Forwarding {
            append: false,
            x_forwarded: true,
            rfc7239: true,
            x_real_ip: true,
        };
        forwarded(&mut h, &c, all);
        assert_eq!(h["x-forwarded-for"], "6.6.6.6, 10.0.0.1");
        assert_eq!(h["x-forwarded-proto"], "https");
        assert_eq!(h["x-forwarded-host"], "evil.example");
        assert_eq!(h["x-real-ip"], "1.2.3.4");
        assert_eq!(
            h["forwarded"],
            "for=6.6.6.6, for=10.0.0.1;host=example.org;proto=http"
        );
    }

    #[test]
    fn rfc_7239_alone() {
        let mut h = sent();
        h.insert(header::HOST, HeaderValue::from_static("example.org:8080"));
        let rfc = Forwarding {
            x_forwarded: false,
            rfc7239: true,
            ..Forwarding::default()
        };
        forwarded(&mut h, &client("2001:db8::7", false), rfc);
        assert_eq!(
            h["forwarded"],
            "for=\"[2001:db8::7]\";host=\"example.org:8080\";proto=http"
        );
        for gone in [
            "x-forwarded-for",
            "x-forwarded-proto",
            "x-forwarded-host",
            "x-real-ip",
        ] {
            assert!(h.get(gone).is_none(), "{gone}");
        }
    }

    #[test]
    fn h2_translation() {
        let mut h = HeaderMap::new();
        h.append(header::COOKIE, HeaderValue::from_static("a=1"));
        h.append(header::COOKIE, HeaderValue::from_static("b=2"));
        h.append(header::COOKIE, HeaderValue::from_static("c=3"));
        h.insert(header::HOST, HeaderValue::from_static("site.example"));
        h.insert(header::TE, HeaderValue::from_static("trailers"));
        assert_eq!(h2_to_h1(&mut h), Ok(()));
        assert_eq!(h.get_all(header::COOKIE).iter().count(), 1);
        assert_eq!(h[header::COOKIE], "a=1; b=2; c=3");

        let bad = |name: &'static str, value: &'static str| {
            let mut h = HeaderMap::new();
            h.insert(name, HeaderValue::from_static(value));
            h2_to_h1(&mut h).is_err()
        };
        assert!(bad("x-a", " padded"));
        assert!(bad("x-a", "padded\t"));
        assert!(bad("connection", "close"));
        assert!(bad("keep-alive", "1"));
        assert!(bad("te", "gzip"));
        assert!(!bad("host", "a.example"));
    }

    #[test]
    fn via_parsing() {
        let mut h = HeaderMap::new();
        h.insert(
            header::VIA,
            HeaderValue::from_static("1.0 fred, 1.1 p.example.net (Apache/1.1)"),
        );
        assert!(via_contains(&h, "fred"));
        assert!(via_contains(&h, "p.example.net"));
        assert!(!via_contains(&h, "1.1"));
    }
}
