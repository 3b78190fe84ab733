//! Header rewriting between client and server: pure functions over `HeaderMap`.

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

/// Appends this hop to `Via` and the client to `X-Forwarded-For`; sets `X-Forwarded-Proto` and
/// `X-Forwarded-Host` (a client cannot choose those). `Host` is left as it is. `client_ip` is the
/// client's address as a header value, made once per connection ([`crate::session::client_ip_value`]).
pub fn add_forwarding(
    h: &mut HeaderMap,
    client_ip: &HeaderValue,
    proto: &'static str,
    via: &HeaderValue,
) {
    const XFF: HeaderName = HeaderName::from_static("x-forwarded-for");
    const XFP: HeaderName = HeaderName::from_static("x-forwarded-proto");
    const XFH: HeaderName = HeaderName::from_static("x-forwarded-host");
    // One lookup: the entry either holds earlier hops (joined with ours) or gets ours.
    match h.entry(XFF) {
        header::Entry::Occupied(mut e) => {
            let mut prior: Vec<&[u8]> = e.iter().map(|v| v.as_bytes()).collect();
            prior.push(client_ip.as_bytes());
            let joined = HeaderValue::from_bytes(&prior.join(&b", "[..]))
                .unwrap_or_else(|_| client_ip.clone());
            e.insert(joined);
        }
        header::Entry::Vacant(e) => {
            e.insert(client_ip.clone());
        }
    }
    h.insert(XFP, HeaderValue::from_static(proto));
    match h.get(header::HOST).cloned() {
        Some(host) => {
            h.insert(XFH, host);
        }
        None => {
            h.remove(XFH);
        }
    }
    h.append(header::VIA, via.clone());
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::session::client_ip_value;

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

    #[test]
    fn forwarding_headers() {
        let mut h = HeaderMap::new();
        h.insert(header::HOST, HeaderValue::from_static("example.org"));
        h.insert("x-forwarded-for", HeaderValue::from_static("10.0.0.1"));
        h.insert("x-forwarded-proto", HeaderValue::from_static("https"));
        let via = HeaderValue::from_static("1.1 langur-x");
        add_forwarding(
            &mut h,
            &client_ip_value("127.0.0.1".parse().unwrap()),
            "http",
            &via,
        );
        assert_eq!(h["x-forwarded-for"], "10.0.0.1, 127.0.0.1");
        assert_eq!(h["x-forwarded-proto"], "http");
        assert_eq!(h["x-forwarded-host"], "example.org");
        assert_eq!(h["host"], "example.org");
        assert!(via_contains(&h, "langur-x"));
        assert!(!via_contains(&h, "langur-y"));
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
