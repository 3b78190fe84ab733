//! Compression of responses on routes with `compress` (the last step of the way back, after the
//! route's rules): the coding is chosen from the request's `Accept-Encoding` when the request
//! arrives ([`request`]), and the response is encoded as it streams ([`apply`]).
//!
//! Left as they are: responses with a `Content-Encoding` already, `Cache-Control:
//! no-transform`, 1xx, 204 and 206, types outside the route's list, bodies of a known length
//! below `min_size`, and answers to HTTP/1.0 requests (no chunked framing, as nginx's
//! `gzip_http_version`). Every response that could be compressed says `Vary: Accept-Encoding`,
//! compressed or not, so shared caches keep the codings apart. A HEAD gets the head its GET
//! would get (`Content-Encoding`, no `Content-Length`, the weak `ETag`), without a body.
//!
//! A 304 (RFC 9110 15.4.5) carries what its 200 would: `Vary: Accept-Encoding`, and the weak
//! `ETag` when the client validated the weak tag of a compressed answer (the server, asked with
//! the strong twin, answers with the strong tag).
//!
//! A compressed response loses `Content-Length` (it streams, chunked on HTTP/1.1) and
//! `Accept-Ranges`, and its strong `ETag` becomes weak (`W/"..."`, as nginx does): the bytes
//! differ per coding while the representation is the same. A client sending that weak tag back
//! in `If-None-Match` gets its 304 from the cache (weak comparison, RFC 9110 13.1.2) and from a
//! server that knows only the strong tag: the strong twin of every weak tag is added to the
//! request's `If-None-Match` on its way.

use super::body::ProxyBody;
use crate::coding::{Accept, Coding, Transcoder};
use crate::config::compress::Compress;
use http::header::{
    HeaderMap, HeaderValue, ACCEPT_RANGES, CACHE_CONTROL, CONTENT_ENCODING, CONTENT_LENGTH,
    CONTENT_TYPE, ETAG, IF_NONE_MATCH, RANGE, VARY,
};
use http::{Method, Request, Response, StatusCode, Version};

/// Marks a response whose coding was chosen already (served from the cache's stored forms, a
/// pre-compressed file): [`apply`] leaves it as it is.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Negotiated;

/// What a request takes: the coding its response will be sent in (identity for HTTP/1.0 and
/// `Range` requests), and the codings it reads at all; `head`: only the head is sent;
/// `weak_tags`: its `If-None-Match` names weak tags (their strong twins were added).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Want {
    coding: Coding,
    accept: Accept,
    head: bool,
    weak_tags: bool,
}

/// The request's side: what it takes ([`Want`]), and the strong twin of each weak tag of its
/// `If-None-Match`. Only on routes with `compress`: kept out of line, so that other routes pay
/// the branch alone.
#[cold]
#[inline(never)]
pub(crate) fn request<B>(c: &Compress, req: &mut Request<B>) -> Want {
    let weak_tags = req.headers().contains_key(IF_NONE_MATCH) && twin_tags(req.headers_mut());
    let accept = Accept::parse(req.headers());
    let coding = if req.version() == Version::HTTP_10 || req.headers().contains_key(RANGE) {
        Coding::Identity
    } else {
        accept.choose(&c.encodings)
    };
    let head = req.method() == Method::HEAD;
    Want {
        coding,
        accept,
        head,
        weak_tags,
    }
}

/// Adds `"x"` after every `W/"x"` of `If-None-Match` that the list does not hold already;
/// whether the field names a weak tag at all.
fn twin_tags(h: &mut HeaderMap) -> bool {
    let Some(text) = h.get(IF_NONE_MATCH).and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let tags: Vec<&str> = text.split(',').map(str::trim).collect();
    let weak = tags.iter().any(|t| t.starts_with("W/"));
    let twins: Vec<&str> = tags
        .iter()
        .filter_map(|t| t.strip_prefix("W/"))
        .filter(|strong| !tags.contains(strong))
        .collect();
    if twins.is_empty() {
        return weak;
    }
    let joined = format!("{text}, {}", twins.join(", "));
    if let Ok(v) = HeaderValue::from_str(&joined) {
        h.insert(IF_NONE_MATCH, v);
    }
    weak
}

/// The response's side: encodes it in the coding the request chose when it may be compressed
/// (see the module docs). A server's encoded answer that the client cannot read (a server
/// that compresses whatever it is asked) is re-coded into what the client takes.
pub(crate) fn apply(
    c: &Compress,
    want: Want,
    mut resp: Response<ProxyBody>,
) -> Response<ProxyBody> {
    if resp.extensions().get::<Negotiated>().is_some() || resp.body().is_coded() {
        return resp;
    }
    if resp.status() == StatusCode::NOT_MODIFIED {
        not_modified(want, resp.headers_mut());
        return resp;
    }
    let len = resp
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    let from = match Coding::of(resp.headers()) {
        Some(Coding::Identity) if eligible(c, resp.status(), resp.headers(), len) => {
            Coding::Identity
        }
        Some(sent) if sent != Coding::Identity && !want.accept.accepts(sent) => {
            if !recodable(c, resp.status(), resp.headers(), None) {
                return resp;
            }
            sent
        }
        _ => return resp,
    };
    add_vary(resp.headers_mut());
    if want.head {
        // The head its GET would get; no body to code.
        if from != want.coding {
            recoded_head(resp.headers_mut(), want.coding);
        }
        return resp;
    }
    let Ok(Some(tx)) = Transcoder::new(from, want.coding, c.level) else {
        return resp;
    };
    recoded_head(resp.headers_mut(), want.coding);
    resp.body_mut().encode(tx, None);
    resp
}

/// A 304's head: `Vary: Accept-Encoding` as its 200 would say, and the tag made weak when the
/// client validated a weak one (see the module docs) and takes a coding.
fn not_modified(want: Want, h: &mut HeaderMap) {
    if h.get(CONTENT_ENCODING).is_some() || no_transform(h) {
        return;
    }
    add_vary(h);
    if want.weak_tags && want.coding != Coding::Identity {
        weaken(h);
    }
}

/// Whether a response may be compressed on a route: a status with a body that is not a part,
/// no coding yet, no `no-transform`, a listed type, and not shorter than `min_size` (`len`:
/// its length when known, of its identity form).
pub(crate) fn eligible(c: &Compress, status: StatusCode, h: &HeaderMap, len: Option<u64>) -> bool {
    let coded = h
        .get(CONTENT_ENCODING)
        .is_some_and(|v| !v.as_bytes().eq_ignore_ascii_case(b"identity"));
    !coded && recodable(c, status, h, len)
}

/// [`eligible`] but for the coding: whether a body of this head may be sent in another coding
/// than its own (a stored one may be decoded first).
pub(crate) fn recodable(c: &Compress, status: StatusCode, h: &HeaderMap, len: Option<u64>) -> bool {
    let s = status.as_u16();
    if s < 200 || matches!(s, 204 | 206 | 304) {
        return false;
    }
    if len.is_some_and(|n| n < c.min_size) || no_transform(h) {
        return false;
    }
    crate::cache::policy::type_allowed(h.get(CONTENT_TYPE), &c.types)
}

/// `Cache-Control: no-transform` (RFC 9111 5.2.2.6): no proxy may change the content coding.
pub(crate) fn no_transform(h: &HeaderMap) -> bool {
    h.get_all(CACHE_CONTROL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|d| d.trim().eq_ignore_ascii_case("no-transform"))
}

/// Adds `Accept-Encoding` to `Vary`, unless it is there already (or `Vary: *`).
pub(crate) fn add_vary(h: &mut HeaderMap) {
    let listed = h
        .get_all(VARY)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|n| {
            let n = n.trim();
            n == "*" || n.eq_ignore_ascii_case("accept-encoding")
        });
    if !listed {
        h.append(VARY, HeaderValue::from_static("Accept-Encoding"));
    }
}

/// The head of a body sent in another coding than the one it had: `Content-Encoding` says the
/// new one, `Content-Length` and `Accept-Ranges` go (ranges are answered from the identity
/// form), a strong `ETag` becomes weak, and `Vary` names `Accept-Encoding`.
pub(crate) fn recoded_head(h: &mut HeaderMap, to: Coding) {
    match to {
        Coding::Identity => h.remove(CONTENT_ENCODING),
        c => h.insert(CONTENT_ENCODING, c.header()),
    };
    h.remove(CONTENT_LENGTH);
    if to != Coding::Identity {
        h.remove(ACCEPT_RANGES);
    }
    weaken(h);
    add_vary(h);
}

/// `ETag: "x"` becomes `W/"x"` (a weak tag stays as it is).
pub(crate) fn weaken(h: &mut HeaderMap) {
    let Some(tag) = h.get(ETAG) else { return };
    if tag.as_bytes().starts_with(b"W/") {
        return;
    }
    let mut weak = Vec::with_capacity(tag.len() + 2);
    weak.extend_from_slice(b"W/");
    weak.extend_from_slice(tag.as_bytes());
    if let Ok(v) = HeaderValue::from_bytes(&weak) {
        h.insert(ETAG, v);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weak_tags_get_their_strong_twin() {
        let mut h = HeaderMap::new();
        h.insert(
            IF_NONE_MATCH,
            HeaderValue::from_static("W/\"a\", \"b\", W/\"b\""),
        );
        twin_tags(&mut h);
        assert_eq!(h[IF_NONE_MATCH], "W/\"a\", \"b\", W/\"b\", \"a\"");
        let mut h = HeaderMap::new();
        h.insert(IF_NONE_MATCH, HeaderValue::from_static("\"a\""));
        twin_tags(&mut h);
        assert_eq!(h[IF_NONE_MATCH], "\"a\"");
    }

    #[test]
    fn vary_is_added_once_and_etags_weakened() {
        let mut h = HeaderMap::new();
        h.insert(VARY, HeaderValue::from_static("Origin, accept-encoding"));
        add_vary(&mut h);
        assert_eq!(h.get_all(VARY).iter().count(), 1);
        let mut h = HeaderMap::new();
        h.insert(ETAG, HeaderValue::from_static("\"x\""));
        h.insert(CONTENT_LENGTH, HeaderValue::from_static("10"));
        recoded_head(&mut h, Coding::Br);
        assert_eq!(h[ETAG], "W/\"x\"");
        assert_eq!(h[CONTENT_ENCODING], "br");
        assert_eq!(h[VARY], "Accept-Encoding");
        assert!(!h.contains_key(CONTENT_LENGTH));
    }

    #[test]
    fn what_is_left_alone() {
        let c = Compress::default();
        let mut h = HeaderMap::new();
        h.insert(
            CONTENT_TYPE,
            HeaderValue::from_static("text/html; charset=utf-8"),
        );
        assert!(eligible(&c, StatusCode::OK, &h, Some(4096)));
        assert!(eligible(&c, StatusCode::NOT_FOUND, &h, None));
        assert!(!eligible(&c, StatusCode::OK, &h, Some(100)));
        for s in [204, 206, 304, 101] {
            assert!(!eligible(&c, StatusCode::from_u16(s).unwrap(), &h, None));
        }
        let mut cc = h.clone();
        cc.insert(
            CACHE_CONTROL,
            HeaderValue::from_static("public, No-Transform"),
        );
        assert!(!eligible(&c, StatusCode::OK, &cc, None));
        let mut ce = h.clone();
        ce.insert(CONTENT_ENCODING, HeaderValue::from_static("gzip"));
        assert!(!eligible(&c, StatusCode::OK, &ce, None));
        h.insert(CONTENT_TYPE, HeaderValue::from_static("image/png"));
        assert!(!eligible(&c, StatusCode::OK, &h, None));
    }
}
