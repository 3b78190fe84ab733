//! The request target as langur routes, hashes, keys and forwards it: one normalised path, so
//! the path a route matched is the path the server gets.
//!
//! Normalisation is RFC 3986 6.2.2 on the path (the query is left as sent): percent-encoded
//! unreserved characters are decoded (`%7E` → `~`, `%2E` → `.`), the other escapes get upper
//! case hex digits (`%2f` → `%2F`, never decoded: an encoded slash stays data), and
//! dot-segments are removed (5.2.4: `/public/../admin` → `/admin`, `/a/./b` → `/a/b`), and
//! empty segments are merged (`//admin` → `/admin`, as nginx's `merge_slashes`: servers that
//! merge them would otherwise see a path no route matched).
//! Some targets are refused instead (400), because servers read them in ways no normalisation
//! can predict: a NUL or a backslash (raw or encoded; IIS and Windows servers treat it as a
//! separator), a malformed escape, and a segment that is a dot-segment followed by `;`
//! parameters (`/..;/`, which Tomcat and Jetty treat as `..`), and a dot-segment hidden
//! behind an encoded slash (`/x/..%2Fadmin`, which servers that decode `%2F` resolve).

use std::borrow::Cow;

/// Why a target is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BadTarget {
    /// `%` not followed by two hex digits.
    Escape,
    /// A NUL or a backslash, raw or encoded.
    Byte,
    /// `..;x` or `.;x` as a segment, or a dot-segment beside an encoded slash.
    DotParams,
}

/// Whether a byte is unreserved (RFC 3986 2.3).
fn unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// The normalised form of an origin-form path (starting with `/`, without the query).
/// Borrowed when it is already normal, which is the common case and costs one scan.
pub fn normalize_path(path: &str) -> Result<Cow<'_, str>, BadTarget> {
    let b = path.as_bytes();
    let mut needs = false;
    for (i, &c) in b.iter().enumerate() {
        match c {
            b'%' => needs = true,
            b'\\' | 0 => return Err(BadTarget::Byte),
            b'.' | b'/' if i > 0 && b[i - 1] == b'/' => needs = true,
            _ => {}
        }
    }
    if !needs {
        return Ok(Cow::Borrowed(path));
    }
    let text = decode_escapes(b)?;
    let norm = remove_dot_segments(&text)?;
    // Decoding made only ASCII, the rest is the path's own bytes: still UTF-8.
    let norm = String::from_utf8(norm).map_err(|_| BadTarget::Byte)?;
    if norm == path {
        return Ok(Cow::Borrowed(path));
    }
    Ok(Cow::Owned(norm))
}

/// Step 1 of [`normalize_path`]: escapes of unreserved characters decoded, the others
/// upper-cased (RFC 3986 6.2.2.1 and 6.2.2.2). Bytes, not chars: a path may hold UTF-8 as
/// sent, which passes through untouched. An escape of NUL or `\\` is refused.
fn decode_escapes(b: &[u8]) -> Result<Vec<u8>, BadTarget> {
    let mut text: Vec<u8> = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let (Some(h), Some(l)) = (
                b.get(i + 1).copied().and_then(hex),
                b.get(i + 2).copied().and_then(hex),
            ) else {
                return Err(BadTarget::Escape);
            };
            let v = h * 16 + l;
            if v == 0 || v == b'\\' {
                return Err(BadTarget::Byte);
            }
            if unreserved(v) {
                text.push(v);
            } else {
                text.push(b'%');
                text.push(b"0123456789ABCDEF"[usize::from(h)]);
                text.push(b"0123456789ABCDEF"[usize::from(l)]);
            }
            i += 3;
        } else {
            text.push(b[i]);
            i += 1;
        }
    }
    Ok(text)
}

/// Step 2 of [`normalize_path`]: dot-segments removed (RFC 3986 5.2.4) on whole segments,
/// empty segments merged but a trailing slash kept; `..;` and `.;` segments, and dots beside an
/// encoded slash, are refused.
fn remove_dot_segments(text: &[u8]) -> Result<Vec<u8>, BadTarget> {
    let trailing = text.ends_with(b"/.") || text.ends_with(b"/..");
    let mut out: Vec<&[u8]> = Vec::new();
    let segments = text.split(|c| *c == b'/').skip(1);
    let last = text
        .iter()
        .filter(|c| **c == b'/')
        .count()
        .saturating_sub(1);
    for (n, seg) in segments.enumerate() {
        if encoded_dots(seg) {
            return Err(BadTarget::DotParams);
        }
        match seg {
            // An empty segment is merged, except the last (a trailing slash).
            b"" if n < last => {}
            b"." => {}
            b".." => {
                out.pop();
            }
            s if s.starts_with(b"..;") || s.starts_with(b".;") => return Err(BadTarget::DotParams),
            s => out.push(s),
        }
    }
    let mut norm: Vec<u8> = Vec::with_capacity(text.len());
    for seg in &out {
        norm.push(b'/');
        norm.extend_from_slice(seg);
    }
    if trailing || norm.is_empty() {
        norm.push(b'/');
    }
    Ok(norm)
}

/// Whether a segment holds a dot-segment beside an encoded slash (`..%2Fx`, `x%2F..`).
fn encoded_dots(seg: &[u8]) -> bool {
    if !seg.windows(3).any(|w| w == b"%2F") {
        return false;
    }
    let mut rest = seg;
    loop {
        let end = rest.windows(3).position(|w| w == b"%2F");
        let part = &rest[..end.unwrap_or(rest.len())];
        if part == b"." || part == b".." {
            return true;
        }
        match end {
            Some(e) => rest = &rest[e + 3..],
            None => return false,
        }
    }
}

/// The request URI with its path normalised (origin-form and absolute-form keep their form;
/// `*` and authority-form are left alone). `None` when nothing changed.
pub fn normalize_uri(uri: &http::Uri) -> Result<Option<http::Uri>, BadTarget> {
    let path = uri.path();
    if !path.starts_with('/') {
        return Ok(None);
    }
    let Cow::Owned(norm) = normalize_path(path)? else {
        return Ok(None);
    };
    let pq = match uri.query() {
        Some(q) => format!("{norm}?{q}"),
        None => norm,
    };
    let mut parts = uri.clone().into_parts();
    parts.path_and_query = Some(pq.parse().map_err(|_| BadTarget::Escape)?);
    Ok(http::Uri::from_parts(parts).ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(p: &str) -> Result<String, BadTarget> {
        normalize_path(p).map(|c| c.into_owned())
    }

    #[test]
    fn normal_paths_are_borrowed() {
        for p in [
            "/",
            "/index.html",
            "/a/b.c/d",
            "/a..b/c",
            "/.well-known/x",
            "/a/.hidden",
        ] {
            assert!(matches!(normalize_path(p), Ok(Cow::Borrowed(_))), "{p}");
        }
    }

    #[test]
    fn dot_segments_removed() {
        assert_eq!(n("/public/../admin/users").unwrap(), "/admin/users");
        assert_eq!(n("/public/./a").unwrap(), "/public/a");
        assert_eq!(n("/a/b/../../c").unwrap(), "/c");
        assert_eq!(n("/../../etc/passwd").unwrap(), "/etc/passwd");
        assert_eq!(n("/a/..").unwrap(), "/");
        assert_eq!(n("/a/b/..").unwrap(), "/a/");
        assert_eq!(n("/a/.").unwrap(), "/a/");
        // Empty segments merge first (nginx's order), so a server that merges them too sees
        // the same path.
        assert_eq!(n("/a//../b").unwrap(), "/b");
    }

    #[test]
    fn empty_segments_merge() {
        assert_eq!(n("//admin").unwrap(), "/admin");
        assert_eq!(n("/a//b///c/").unwrap(), "/a/b/c/");
        assert_eq!(n("//").unwrap(), "/");
        assert_eq!(n("/a/").unwrap(), "/a/");
        assert!(matches!(normalize_path("/a/b/"), Ok(Cow::Borrowed(_))));
    }

    #[test]
    fn dots_beside_encoded_slashes_are_refused() {
        for p in [
            "/x/..%2Fadmin",
            "/x/%2F..%2Fadmin",
            "/x/a%2F..",
            "/x/.%2Fy",
            "/%2e%2e%2fadmin",
        ] {
            assert_eq!(n(p), Err(BadTarget::DotParams), "{p}");
        }
        assert_eq!(n("/a%2Fb..c").unwrap(), "/a%2Fb..c");
    }

    #[test]
    fn escapes_normalised() {
        assert_eq!(n("/public/%2e%2e/admin").unwrap(), "/admin");
        assert_eq!(n("/public/%2E./admin").unwrap(), "/admin");
        assert_eq!(n("/%7euser/%41").unwrap(), "/~user/A");
        assert_eq!(n("/a%2fb").unwrap(), "/a%2Fb");
        assert_eq!(n("/a%2Fb").unwrap(), "/a%2Fb");
        assert_eq!(n("/caf%c3%a9").unwrap(), "/caf%C3%A9");
        assert_eq!(
            n("/c/caf\u{e9}/./x").unwrap(),
            "/c/caf\u{e9}/x",
            "UTF-8 as sent is kept"
        );
        assert_eq!(n("/\u{65e5}%7e/../\u{672c}").unwrap(), "/\u{672c}");
    }

    #[test]
    fn refused() {
        assert_eq!(n("/a%2"), Err(BadTarget::Escape));
        assert_eq!(n("/a%zz"), Err(BadTarget::Escape));
        assert_eq!(n("/a%00b"), Err(BadTarget::Byte));
        assert_eq!(n("/a%5c..%5cadmin"), Err(BadTarget::Byte));
        assert_eq!(n("/public/..;/admin"), Err(BadTarget::DotParams));
        assert_eq!(n("/public/.;x/admin"), Err(BadTarget::DotParams));
        assert_eq!(n("/public/%2e%2e;/admin"), Err(BadTarget::DotParams));
    }

    #[test]
    fn uri_keeps_query_and_form() {
        let u: http::Uri = "/public/../admin?x=/../y".parse().unwrap();
        assert_eq!(normalize_uri(&u).unwrap().unwrap(), "/admin?x=/../y");
        let u: http::Uri = "http://a.example/x/./y".parse().unwrap();
        assert_eq!(normalize_uri(&u).unwrap().unwrap(), "http://a.example/x/y");
        let u: http::Uri = "/plain".parse().unwrap();
        assert_eq!(normalize_uri(&u).unwrap(), None);
    }
}
