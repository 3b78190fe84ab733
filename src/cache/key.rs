//! Cache keys: the primary key (scheme, host, path and query; RFC 9111 section 2), the query
//! parameters a route ignores, and the variant key a response's `Vary` selects (section 4.1).

use super::*;

/// The path-and-query part of a key (`http://host/p?q` -> `/p?q`).
pub(super) fn key_path(key: &str) -> &str {
    let rest = key.split_once("://").map_or(key, |(_, r)| r);
    rest.find('/').map_or("/", |i| &rest[i..])
}

/// The primary key of a request: scheme, host (lower-cased) and path with query.
pub fn primary_key(scheme: &str, host: &str, path_and_query: &str) -> String {
    let mut k = String::with_capacity(scheme.len() + host.len() + path_and_query.len() + 3);
    k.push_str(scheme);
    k.push_str("://");
    for c in host.chars() {
        k.push(c.to_ascii_lowercase());
    }
    k.push_str(path_and_query);
    k
}

/// A key's target on a route with `cache_key.ignore_query`: the query parameters it names are
/// left out (the whole query with `ignore_query = true`); the others stay in the order sent,
/// byte for byte (empty ones from `&&` included), and a query left empty is no query, so
/// `/p?id=1&utm_source=b` and `/p?utm_source=a&id=1` are both `/p?id=1`, and `/p?utm_source=a`
/// is `/p`. A parameter's name is what precedes its first `=`, compared as sent (case and
/// percent-encoding included: `utm%5Fsource` is another name). Without a query, or with nothing
/// to leave out, the target is returned as it is, unallocated.
///
/// `target` is a path and query (`/p?q`), or a whole key (`https://host/p?q`): a scheme and a
/// host hold no `?`. Only the key changes; the server is still sent the whole target.
pub fn key_target<'t>(target: &'t str, ignore: &IgnoreQuery) -> Cow<'t, str> {
    let Some((path, query)) = target.split_once('?') else {
        return Cow::Borrowed(target);
    };
    let name = |param: &'t str| param.split_once('=').map_or(param, |(n, _)| n);
    match ignore {
        IgnoreQuery::None => return Cow::Borrowed(target),
        IgnoreQuery::All => return Cow::Borrowed(path),
        IgnoreQuery::Names(_) if query.is_empty() => return Cow::Borrowed(path),
        IgnoreQuery::Names(_) => {}
    }
    if !query.split('&').any(|p| ignore.ignores(name(p))) {
        return Cow::Borrowed(target);
    }
    let mut out = String::with_capacity(target.len());
    out.push_str(path);
    let mut sep = '?';
    for param in query.split('&').filter(|p| !ignore.ignores(name(p))) {
        out.push(sep);
        out.push_str(param);
        sep = '&';
    }
    Cow::Owned(out)
}

/// The header names a response varies on, lower-cased, in order.
pub fn vary_names(h: &HeaderMap) -> Vec<HeaderName> {
    let mut out: Vec<HeaderName> = Vec::new();
    for v in h.get_all(http::header::VARY) {
        let Ok(s) = v.to_str() else { continue };
        for name in s.split(',') {
            if let Ok(n) = HeaderName::from_bytes(name.trim().as_bytes()) {
                if !out.contains(&n) {
                    out.push(n);
                }
            }
        }
    }
    out
}

/// The key of the variant a request selects: the primary key, NUL, then for each varied
/// header its name, `:`, and its values as the request sent them (several fields joined with
/// `,`, whitespace around commas removed), or 0x03 when the request has none, each followed by
/// 0x01. Values are kept byte for byte (bytes outside printable ASCII, and `%`, as `%XX`), so
/// two requests share a variant only when they sent the same values, an absent field is not an
/// empty one, and a variant of `Vary: X-A` is never one of `Vary: X-B`.
///
/// `Accept-Encoding` is the exception: it is keyed by the coding the request would be sent
/// among zstd, br and gzip (or identity, [`crate::coding::Accept::choose`]), so the many
/// spellings browsers send make at most four variants. A variant found may still hold a coding
/// this request does not accept (a server chose otherwise); the cache phase decodes it then.
pub fn variant_key(primary: &str, names: &[HeaderName], req: &HeaderMap) -> String {
    use std::fmt::Write;
    let mut k = String::with_capacity(primary.len() + 32);
    k.push_str(primary);
    k.push('\0');
    for n in names {
        k.push_str(n.as_str());
        k.push(':');
        if n == http::header::ACCEPT_ENCODING {
            let accept = crate::coding::Accept::parse(req);
            k.push_str(accept.choose(&crate::coding::DEFAULT_ORDER).token());
            k.push('\u{1}');
            continue;
        }
        let mut values = req.get_all(n).iter().peekable();
        if values.peek().is_none() {
            k.push('\u{3}');
        }
        let mut first = true;
        for v in values {
            if !first {
                k.push(',');
            }
            first = false;
            for (i, part) in v.as_bytes().split(|b| *b == b',').enumerate() {
                if i > 0 {
                    k.push(',');
                }
                for &b in part.trim_ascii() {
                    if (0x20..0x7f).contains(&b) && b != b'%' {
                        k.push(char::from(b));
                    } else {
                        let _ = write!(k, "%{b:02X}");
                    }
                }
            }
        }
        k.push('\u{1}');
    }
    k
}
