//! Strict HTTP/1 framing: what hyper's parser lets through but a proxy must not.
//!
//! hyper (with httparse) already refuses, with 400/414/431 before any of our code runs: bad
//! request lines, control characters and bare CR in names or values, whitespace before the colon,
//! obs-fold, heads over `max_header_size` or with more than `max_headers` fields, chunked
//! encoding in HTTP/1.0, a `Transfer-Encoding` whose last coding is not `chunked`, differing
//! `Content-Length` values, and malformed chunk sizes while the body is read. It tolerates, by
//! design, a few things that are harmless to an origin server but are how requests get smuggled
//! past a proxy: `Content-Length` together with `Transfer-Encoding`, a repeated
//! `Content-Length`, and codings such as `gzip, chunked`. Those are refused here, before routing,
//! so nothing ambiguous reaches a pool, a file route or the cache: a transfer coding langur does
//! not implement gets 501 (RFC 9112 6.1), a list whose last coding is not `chunked` (or that
//! names it twice) 400 (RFC 9112 6.3).
//!
//! The target's authority follows RFC 9110 4.2 and 7.2 in every version: a `Host` that is empty
//! or not a valid authority, userinfo in the target, or (HTTP/2, RFC 9113 8.3.1) a `Host` that
//! names another authority than `:authority` is a 400.
//!
//! Upstream, the same rules hold for response heads ([`check_response`]): a response a client
//! might frame differently than we did is a 502, and its connection is not reused.

use crate::config::Limits;
use crate::error::ErrorKind;
use http::header::{CONTENT_LENGTH, HOST, TRANSFER_ENCODING};
use http::{HeaderMap, HeaderValue, Method, Version};

/// Checks a parsed request head. `Err` carries the answer (the connection is closed after it).
pub fn check_request(
    method: &Method,
    uri: &http::Uri,
    version: Version,
    headers: &HeaderMap,
    limits: &Limits,
) -> Result<(), ErrorKind> {
    if uri_len(uri) > limits.max_uri_length {
        return Err(ErrorKind::UriTooLong);
    }
    if headers.len() > limits.max_headers {
        return Err(ErrorKind::HeadersTooLarge);
    }
    if *method == Method::CONNECT {
        return Err(ErrorKind::MethodNotAllowed);
    }
    // Only OPTIONS may use the asterisk form; only CONNECT the authority form.
    let path = uri.path();
    if path == "*" && *method != Method::OPTIONS {
        return Err(ErrorKind::BadRequest);
    }
    if uri.scheme().is_none() && uri.authority().is_some() {
        return Err(ErrorKind::BadRequest);
    }
    if let Some(a) = uri.authority() {
        // No userinfo, no empty host (RFC 9110 4.2.1 and 4.2.4; RFC 9113 8.3.1). Without
        // userinfo, the host is empty exactly when the authority starts with the port.
        let a = a.as_str();
        if a.contains('@') || a.starts_with(':') {
            return Err(ErrorKind::BadRequest);
        }
    }
    let f = Fields::of(headers);
    if version >= Version::HTTP_11 || f.hosts > 0 {
        host(&f, uri, version)?;
    }
    let length = content_length(&f)?;
    let chunked = transfer_encoding(headers, &f)?;
    if chunked {
        if length.is_some() {
            return Err(ErrorKind::BadRequest);
        }
        if version < Version::HTTP_11 {
            return Err(ErrorKind::BadRequest);
        }
    }
    if let Some(n) = length {
        if limits.max_body_size > 0 && n > limits.max_body_size {
            return Err(ErrorKind::BodyTooLarge);
        }
    }
    Ok(())
}

/// Checks a server's response head: one valid `Content-Length` or exactly `chunked`, never
/// both. `Err` says why.
pub fn check_response(headers: &HeaderMap) -> Result<(), &'static str> {
    let f = Fields::of(headers);
    let length = content_length(&f).map_err(|_| "invalid or repeated content-length")?;
    let chunked =
        transfer_encoding(headers, &f).map_err(|_| "transfer-encoding other than chunked")?;
    if chunked && length.is_some() {
        return Err("both content-length and transfer-encoding");
    }
    Ok(())
}

/// The three fields framing depends on, found in one pass over the head (cheaper than three
/// hashed lookups for the few fields a request has), with how often each appeared.
struct Fields<'a> {
    host: Option<&'a HeaderValue>,
    hosts: u32,
    length: Option<&'a HeaderValue>,
    lengths: u32,
    coding: Option<&'a HeaderValue>,
    codings: u32,
}

impl<'a> Fields<'a> {
    fn of(headers: &'a HeaderMap) -> Fields<'a> {
        let mut f = Fields {
            host: None,
            hosts: 0,
            length: None,
            lengths: 0,
            coding: None,
            codings: 0,
        };
        for (name, value) in headers {
            let (slot, count) = if name == HOST {
                (&mut f.host, &mut f.hosts)
            } else if name == CONTENT_LENGTH {
                (&mut f.length, &mut f.lengths)
            } else if name == TRANSFER_ENCODING {
                (&mut f.coding, &mut f.codings)
            } else {
                continue;
            };
            slot.get_or_insert(value);
            *count += 1;
        }
        f
    }
}

fn uri_len(uri: &http::Uri) -> usize {
    uri.scheme_str().map_or(0, |s| s.len() + 3)
        + uri.authority().map_or(0, |a| a.as_str().len())
        + uri.path_and_query().map_or(0, |p| p.as_str().len())
}

/// Exactly one `Host`, and it is a valid, non-empty authority (RFC 9112 3.2, RFC 9110 7.2: an
/// `http` or `https` target always has an authority, so the empty `Host` RFC 9112 allows for
/// targets without one never applies here). In HTTP/2, a `Host` beside `:authority` must name
/// the same authority (RFC 9113 8.3.1).
fn host(f: &Fields<'_>, uri: &http::Uri, version: Version) -> Result<(), ErrorKind> {
    if let Some(a) = uri.authority() {
        if !valid_authority(a.as_str().as_bytes()) {
            return Err(ErrorKind::BadRequest);
        }
    }
    let h = match (f.host, f.hosts) {
        (Some(h), 1) => h,
        // None at all is allowed only with an absolute-form target (which then wins).
        (None, _) if uri.authority().is_some() => return Ok(()),
        _ => return Err(ErrorKind::BadRequest),
    };
    let b = h.as_bytes();
    if !valid_authority(b) {
        return Err(ErrorKind::BadRequest);
    }
    if version == Version::HTTP_2 {
        if let Some(a) = uri.authority() {
            if !a.as_str().as_bytes().eq_ignore_ascii_case(b) {
                return Err(ErrorKind::BadRequest);
            }
        }
    }
    Ok(())
}

/// An authority a server and langur cannot read differently: a host name of letters, digits,
/// `-`, `_` and `.` (no empty label, one trailing dot at most) or a bracketed IPv6 address,
/// then optionally `:` and a port of digits up to 65535 (RFC 3986 3.2.2 and 3.2.3, narrowed:
/// percent-encoded and sub-delimiter names, and ports that are not numbers, are refused, since
/// servers split such values in their own ways and routing by host would not be what they
/// see). Userinfo is refused too (RFC 9110 4.2.4).
fn valid_authority(b: &[u8]) -> bool {
    let (host, port) = match b.first() {
        Some(b'[') => match b.iter().position(|c| *c == b']') {
            Some(end) => {
                let inner = std::str::from_utf8(&b[1..end]).unwrap_or("");
                if inner.parse::<std::net::Ipv6Addr>().is_err() {
                    return false;
                }
                (&b[..0], &b[end + 1..])
            }
            None => return false,
        },
        _ => match b.iter().rposition(|c| *c == b':') {
            Some(i) => (&b[..i], &b[i..]),
            None => (b, &b[b.len()..]),
        },
    };
    let port_ok = match port {
        [] => true,
        [b':', digits @ ..] => {
            digits.len() <= 5
                && digits.iter().all(u8::is_ascii_digit)
                && digits
                    .iter()
                    .fold(0u32, |n, d| n * 10 + u32::from(d - b'0'))
                    <= 65535
        }
        _ => false,
    };
    let name = host.strip_suffix(b".").unwrap_or(host);
    let name_ok = b.first() == Some(&b'[')
        || (!name.is_empty()
            && name.split(|c| *c == b'.').all(|label| {
                !label.is_empty()
                    && label
                        .iter()
                        .all(|c| c.is_ascii_alphanumeric() || *c == b'-' || *c == b'_')
            }));
    port_ok && name_ok
}

/// The one `Content-Length`, if any: a single field of 1 to 18 digits.
fn content_length(f: &Fields<'_>) -> Result<Option<u64>, ErrorKind> {
    let Some(v) = f.length else { return Ok(None) };
    if f.lengths > 1 {
        return Err(ErrorKind::BadRequest);
    }
    digits(v.as_bytes()).map(Some).ok_or(ErrorKind::BadRequest)
}

/// A Content-Length value: 1 to 18 digits and nothing else.
pub fn digits(b: &[u8]) -> Option<u64> {
    if b.is_empty() || b.len() > 18 || !b.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(b.iter().fold(0u64, |n, d| n * 10 + u64::from(d - b'0')))
}

/// Whether the body is chunked. The codings of every `Transfer-Encoding` field, in order, must
/// end with `chunked`, which must appear once (else 400: the length cannot be known, RFC 9112
/// 6.3); any other coding in the list is one langur does not implement (501, RFC 9112 6.1).
fn transfer_encoding(headers: &HeaderMap, f: &Fields<'_>) -> Result<bool, ErrorKind> {
    let Some(v) = f.coding else {
        return Ok(false);
    };
    if f.codings == 1 && v.as_bytes().eq_ignore_ascii_case(b"chunked") {
        return Ok(true);
    }
    let mut codings = headers
        .get_all(TRANSFER_ENCODING)
        .iter()
        .flat_map(|v| v.as_bytes().split(|&b| b == b','))
        .map(<[u8]>::trim_ascii)
        .filter(|c| !c.is_empty())
        .peekable();
    let mut other = false;
    while let Some(c) = codings.next() {
        let chunked = c.eq_ignore_ascii_case(b"chunked");
        if codings.peek().is_none() {
            return match (chunked, other) {
                (true, false) => Ok(true),
                (true, true) => Err(ErrorKind::NotImplemented),
                (false, _) => Err(ErrorKind::BadRequest),
            };
        }
        if chunked {
            // Applied more than once, or not last.
            return Err(ErrorKind::BadRequest);
        }
        other = true;
    }
    // Only empty elements.
    Err(ErrorKind::BadRequest)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(lines: &[(&str, &str)]) -> Result<(), ErrorKind> {
        check_with("/", Version::HTTP_11, lines)
    }

    fn check_with(uri: &str, v: Version, lines: &[(&str, &str)]) -> Result<(), ErrorKind> {
        let mut h = HeaderMap::new();
        for (k, val) in lines {
            h.append(
                http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                http::HeaderValue::from_str(val).unwrap(),
            );
        }
        let uri: http::Uri = uri.parse().unwrap();
        check_request(&Method::POST, &uri, v, &h, &Limits::default())
    }

    #[test]
    fn framing() {
        assert!(check(&[("host", "a")]).is_ok());
        assert!(check(&[("host", "a"), ("content-length", "5")]).is_ok());
        assert!(check(&[("host", "a"), ("transfer-encoding", "chunked")]).is_ok());
        assert!(check(&[("host", "a"), ("transfer-encoding", "Chunked")]).is_ok());
        for bad in [
            vec![("content-length", "5"), ("transfer-encoding", "chunked")],
            vec![("content-length", "5"), ("content-length", "5")],
            vec![("content-length", "5, 5")],
            vec![("content-length", "+5")],
            vec![("content-length", "0x5")],
            vec![("content-length", "")],
            vec![("content-length", "99999999999999999999")],
            vec![
                ("transfer-encoding", "chunked"),
                ("transfer-encoding", "chunked"),
            ],
            vec![("transfer-encoding", "identity")],
            vec![("transfer-encoding", "chunked ;")],
            vec![("transfer-encoding", "chunked, gzip")],
            vec![("transfer-encoding", "gzip")],
            vec![
                ("transfer-encoding", "chunked"),
                ("transfer-encoding", "gzip"),
            ],
            vec![("transfer-encoding", "chunked, chunked")],
            vec![("transfer-encoding", "gzip, chunked, chunked")],
            vec![("transfer-encoding", " , ")],
        ] {
            let mut lines = vec![("host", "a")];
            lines.extend(bad.iter().copied());
            assert_eq!(check(&lines), Err(ErrorKind::BadRequest), "{bad:?}");
        }
        // Codings langur does not implement, before a final chunked: 501.
        for unknown in [
            vec![("transfer-encoding", "gzip, chunked")],
            vec![("transfer-encoding", "GZIP ,Chunked")],
            vec![("transfer-encoding", "deflate, gzip, chunked")],
            vec![
                ("transfer-encoding", "gzip"),
                ("transfer-encoding", "chunked"),
            ],
        ] {
            let mut lines = vec![("host", "a")];
            lines.extend(unknown.iter().copied());
            assert_eq!(check(&lines), Err(ErrorKind::NotImplemented), "{unknown:?}");
        }
    }

    #[test]
    fn host_rules() {
        assert_eq!(check(&[]), Err(ErrorKind::BadRequest));
        assert_eq!(
            check(&[("host", "a"), ("host", "b")]),
            Err(ErrorKind::BadRequest)
        );
        assert_eq!(check(&[("host", "a b")]), Err(ErrorKind::BadRequest));
        assert_eq!(check(&[("host", "a/b")]), Err(ErrorKind::BadRequest));
        assert_eq!(check(&[("host", "u@a")]), Err(ErrorKind::BadRequest));
        assert!(check(&[("host", "a.example:8080")]).is_ok());
        assert!(check(&[("host", "[::1]:80")]).is_ok());
        assert!(check(&[("host", "a.example.")]).is_ok());
        assert!(check(&[("host", "a.example:")]).is_ok());
        // Values servers split in their own ways (a port that is not a number, empty labels,
        // sub-delimiters, a bracketed name): refused, so routing by host is what they see.
        for bad in [
            "secret.example:abc",
            "secret.example:99999",
            "secret.example:1:2",
            "secret.example..",
            "a..b",
            ".a",
            "[secret.example]",
            "[::1",
            "secret.example;x",
            "a,b",
            "a%2eb",
            ":80",
        ] {
            assert_eq!(check(&[("host", bad)]), Err(ErrorKind::BadRequest), "{bad}");
        }
        assert_eq!(
            check_with("http://secret.example:abc/", Version::HTTP_11, &[]),
            Err(ErrorKind::BadRequest)
        );
        assert!(check_with("/", Version::HTTP_10, &[]).is_ok());
        assert!(check_with("http://a/x", Version::HTTP_11, &[]).is_ok());
        // Present but empty, or without a host: 400 on every target form and version.
        for uri in ["/", "http://a/x"] {
            for v in [Version::HTTP_10, Version::HTTP_11, Version::HTTP_2] {
                assert_eq!(
                    check_with(uri, v, &[("host", "")]),
                    Err(ErrorKind::BadRequest),
                    "{uri} {v:?}"
                );
                assert_eq!(
                    check_with(uri, v, &[("host", ":80")]),
                    Err(ErrorKind::BadRequest),
                    "{uri} {v:?}"
                );
            }
        }
        // Userinfo or an empty host in the target's authority (absolute form, `:authority`).
        for uri in ["http://u@a/x", "http://u:p@a/x", "http://:80/x"] {
            for v in [Version::HTTP_11, Version::HTTP_2] {
                assert_eq!(check_with(uri, v, &[]), Err(ErrorKind::BadRequest), "{uri}");
            }
        }
        // HTTP/2: Host must agree with :authority; HTTP/1.1's absolute form wins over Host.
        let h2 = Version::HTTP_2;
        assert!(check_with("https://a.example/x", h2, &[]).is_ok());
        assert!(check_with("https://a.example/x", h2, &[("host", "A.example")]).is_ok());
        assert_eq!(
            check_with("https://a.example/x", h2, &[("host", "b.example")]),
            Err(ErrorKind::BadRequest)
        );
        assert_eq!(
            check_with("https://a.example/x", h2, &[("host", "a.example:8443")]),
            Err(ErrorKind::BadRequest)
        );
        assert!(check_with("http://a/x", Version::HTTP_11, &[("host", "b")]).is_ok());
        assert_eq!(check_with("/x", h2, &[]), Err(ErrorKind::BadRequest));
    }

    #[test]
    fn limits() {
        let long = format!("/{}", "a".repeat(9000));
        assert_eq!(
            check_with(&long, Version::HTTP_11, &[("host", "a")]),
            Err(ErrorKind::UriTooLong)
        );
        assert_eq!(
            check(&[("host", "a"), ("content-length", "200000000")]),
            Err(ErrorKind::BodyTooLarge)
        );
    }

    #[test]
    fn responses() {
        let mut h = HeaderMap::new();
        assert!(check_response(&h).is_ok());
        h.insert(CONTENT_LENGTH, "3".parse().unwrap());
        assert!(check_response(&h).is_ok());
        h.insert(TRANSFER_ENCODING, "chunked".parse().unwrap());
        assert!(check_response(&h).is_err());
        h.remove(CONTENT_LENGTH);
        assert!(check_response(&h).is_ok());
        h.insert(TRANSFER_ENCODING, "gzip".parse().unwrap());
        assert!(check_response(&h).is_err());
    }
}
