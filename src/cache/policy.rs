//! RFC 9111 decisions as pure functions: what may be stored, for how long, how old a stored
//! response is, and whether a conditional request is answered 304. Time is always passed in
//! (seconds since the epoch for HTTP dates), so every rule is tested without a clock.

use crate::config::route::StatusSet;
use crate::config::CacheConfig;
use http::header::{
    HeaderMap, HeaderValue, AGE, AUTHORIZATION, CACHE_CONTROL, CONTENT_TYPE, DATE, ETAG, EXPIRES,
    IF_MODIFIED_SINCE, IF_NONE_MATCH, IF_RANGE, LAST_MODIFIED, SET_COOKIE, VARY,
};
use http::{Method, StatusCode};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The directives of `Cache-Control` langur acts on (response and request side alike).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct CacheControl {
    pub max_age: Option<u64>,
    pub s_maxage: Option<u64>,
    pub no_store: bool,
    pub no_cache: bool,
    pub private: bool,
    pub public: bool,
    pub must_revalidate: bool,
    pub proxy_revalidate: bool,
    pub stale_while_revalidate: Option<u64>,
    pub stale_if_error: Option<u64>,
    /// Fields named by a qualified `no-cache="a, b"` or `private="a, b"` (RFC 9111 5.2.2.4,
    /// 5.2.2.7): the response is stored without them.
    pub unstored_fields: Vec<http::header::HeaderName>,
}

impl CacheControl {
    /// Reads every `Cache-Control` field (RFC 9111 5.2). Unknown directives are ignored.
    /// A qualified `no-cache="field"` or `private="field"` names fields that are not stored
    /// (the rest of the response is); a quoted argument may hold commas. A delta-seconds is
    /// read by [`delta_seconds`]; one that does not parse makes the directive absent, except
    /// for `max-age` and `s-maxage`, where RFC 9111 asks to treat an invalid value as stale
    /// (0). A directive given twice counts as first given (RFC 9111 4.2.1).
    pub fn parse(headers: &HeaderMap) -> CacheControl {
        let mut cc = CacheControl::default();
        for value in headers.get_all(CACHE_CONTROL) {
            // A field that cannot be read might have said `no-store`: fail closed.
            let Ok(text) = value.to_str() else {
                cc.no_store = true;
                continue;
            };
            for (name, arg, quoted) in directives(text) {
                let secs = || arg.and_then(delta_seconds);
                // The fields a qualified form names; `None` when it names none that can be read
                // (`private=""`, an unterminated quote): then it counts as the unqualified form.
                let fields = |cc: &mut CacheControl| -> Option<()> {
                    let before = cc.unstored_fields.len();
                    for f in arg.unwrap_or("").split(',') {
                        if let Ok(n) = http::header::HeaderName::from_bytes(f.trim().as_bytes()) {
                            cc.unstored_fields.push(n);
                        }
                    }
                    (cc.unstored_fields.len() > before).then_some(())
                };
                match name.to_ascii_lowercase().as_str() {
                    "max-age" if cc.max_age.is_none() => cc.max_age = Some(secs().unwrap_or(0)),
                    "s-maxage" if cc.s_maxage.is_none() => cc.s_maxage = Some(secs().unwrap_or(0)),
                    "no-store" => cc.no_store = true,
                    "no-cache" if (quoted || arg.is_some()) && fields(&mut cc).is_some() => {}
                    "no-cache" => cc.no_cache = true,
                    "private" if (quoted || arg.is_some()) && fields(&mut cc).is_some() => {}
                    "private" => cc.private = true,
                    "public" => cc.public = true,
                    "must-revalidate" => cc.must_revalidate = true,
                    "proxy-revalidate" => cc.proxy_revalidate = true,
                    "stale-while-revalidate" if cc.stale_while_revalidate.is_none() => {
                        cc.stale_while_revalidate = secs()
                    }
                    "stale-if-error" if cc.stale_if_error.is_none() => cc.stale_if_error = secs(),
                    // A field that cannot be read might have said `no-store`: fail closed.
                    UNREADABLE => cc.no_store = true,
                    _ => {}
                }
            }
        }
        cc
    }

    /// A shared cache may not serve this response stale (`must-revalidate`,
    /// `proxy-revalidate`, or `s-maxage`, which implies the latter).
    pub fn forbids_stale(&self) -> bool {
        self.must_revalidate || self.proxy_revalidate || self.s_maxage.is_some()
    }
}

/// The largest delta-seconds a cache keeps: a larger one, however large, counts as this
/// (RFC 9111 1.2.2: about 68 years).
pub const DELTA_SECONDS_CAP: u64 = 1 << 31;

/// A delta-seconds (RFC 9111 1.2.2: `1*DIGIT`), capped at [`DELTA_SECONDS_CAP`]; `None` for
/// anything but digits.
pub fn delta_seconds(text: &str) -> Option<u64> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some(
        text.parse::<u64>()
            .map_or(DELTA_SECONDS_CAP, |n| n.min(DELTA_SECONDS_CAP)),
    )
}

/// The directive [`directives`] reports for a field it cannot read.
const UNREADABLE: &str = "\u{0}unreadable";

/// The directives of one `Cache-Control` value: name, argument (unquoted), whether it was
/// quoted. Commas inside a quoted argument do not split (RFC 9110 5.6.4).
fn directives(text: &str) -> Vec<(&str, Option<&str>, bool)> {
    let mut out = Vec::new();
    let mut rest = text;
    loop {
        rest = rest.trim_start_matches([' ', '\t', ',']);
        if rest.is_empty() {
            return out;
        }
        let end = rest.find([',', '=']).unwrap_or(rest.len());
        let name = rest[..end].trim();
        rest = &rest[end..];
        if let Some(r) = rest.strip_prefix('=') {
            let r = r.trim_start();
            if let Some(q) = r.strip_prefix('"') {
                let Some(close) = q.find('"') else {
                    // An unterminated quote swallows what follows (a `no-store`, say): the
                    // field cannot be read.
                    out.push((UNREADABLE, None, false));
                    return out;
                };
                out.push((name, Some(&q[..close]), true));
                rest = q.get(close + 1..).unwrap_or("");
            } else {
                let e = r.find(',').unwrap_or(r.len());
                out.push((name, Some(r[..e].trim()), false));
                rest = &r[e..];
            }
        } else if !name.is_empty() {
            out.push((name, None, false));
        }
    }
}

/// Why a response was not stored (shown in `Cache-Status` as `detail`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotStored {
    Method,
    Status,
    NoStore,
    Private,
    SetCookie,
    Authorization,
    VaryStar,
    ContentType,
    TooLarge,
    NoFreshness,
    Partial,
    /// The request had `Cookie` and the response did not explicitly allow shared caching.
    Cookie,
}

impl NotStored {
    pub fn as_str(self) -> &'static str {
        match self {
            NotStored::Method => "method",
            NotStored::Status => "status",
            NotStored::NoStore => "no-store",
            NotStored::Private => "private",
            NotStored::SetCookie => "set-cookie",
            NotStored::Authorization => "authorization",
            NotStored::VaryStar => "vary-star",
            NotStored::ContentType => "content-type",
            NotStored::TooLarge => "too-large",
            NotStored::NoFreshness => "no-freshness",
            NotStored::Partial => "partial",
            NotStored::Cookie => "request-cookie",
        }
    }
}

/// Statuses RFC 9110 calls heuristically cacheable: stored without explicit freshness when a
/// `default_ttl` is configured.
fn heuristic_status(s: StatusCode) -> bool {
    matches!(
        s.as_u16(),
        200 | 203 | 204 | 300 | 301 | 308 | 404 | 405 | 410 | 414 | 501
    )
}

/// Statuses stored at all (with explicit freshness for the ones outside the heuristic list).
/// 206 is left out: ranges are cut from complete stored responses instead.
fn understood_status(s: StatusCode) -> bool {
    heuristic_status(s) || matches!(s.as_u16(), 302 | 307)
}

/// The time a route's `cache_ttl` gives a response of `status`: the first entry that holds it,
/// in the order validation stored them (exact codes, then classes, then `any`).
pub fn route_ttl(list: &[(StatusSet, Duration)], status: StatusCode) -> Option<Duration> {
    let code = status.as_u16();
    list.iter().find(|(s, _)| s.contains(code)).map(|(_, t)| *t)
}

/// Whether the response states its own freshness: `s-maxage`, `max-age` or `Expires` (an
/// invalid or past `Expires` included: it says "stale").
pub fn explicit_freshness(headers: &HeaderMap, cc: &CacheControl) -> bool {
    cc.s_maxage.is_some() || cc.max_age.is_some() || headers.contains_key(EXPIRES)
}

/// Seconds since the epoch of an HTTP date, if it is one.
pub fn http_date(v: Option<&HeaderValue>) -> Option<u64> {
    let t = httpdate::parse_http_date(v?.to_str().ok()?).ok()?;
    Some(t.duration_since(UNIX_EPOCH).ok()?.as_secs())
}

/// Seconds since the epoch, now, by the wall clock.
pub fn unix_now() -> u64 {
    unix_now_ms() / 1000
}

/// Milliseconds since the epoch, now, by the wall clock.
pub fn unix_now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Formats seconds since the epoch as an HTTP date.
pub fn fmt_http_date(secs: u64) -> String {
    httpdate::fmt_http_date(UNIX_EPOCH + Duration::from_secs(secs))
}

/// `secs` (Unix seconds) as a field value in the HTTP date format (RFC 9110 5.6.7).
pub fn http_date_value(secs: u64) -> Option<HeaderValue> {
    HeaderValue::from_str(&fmt_http_date(secs)).ok()
}

/// Whether a `Content-Type` is one the rules keep (`*`, `text/*`, `image/png`); parameters and
/// case are ignored. A response without a type is kept only under `*`.
pub fn type_allowed(content_type: Option<&HeaderValue>, patterns: &[String]) -> bool {
    if patterns.iter().any(|p| p == "*") {
        return true;
    }
    let Some(ct) = content_type.and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let ct = ct
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    patterns.iter().any(|p| match p.strip_suffix("/*") {
        Some(major) => ct
            .split_once('/')
            .is_some_and(|(m, _)| m.eq_ignore_ascii_case(major)),
        None => *p == ct,
    })
}

/// The freshness lifetime in seconds from the response's own words (`s-maxage`, `max-age`,
/// `Expires` against `Date`), else the configured `default_ttl` for heuristically cacheable
/// statuses; clamped to `min_ttl`/`max_ttl`. `None`: nothing says it may be reused.
/// `response_time` stands in for a missing `Date`.
pub fn freshness_lifetime(
    status: StatusCode,
    headers: &HeaderMap,
    cc: &CacheControl,
    rules: &CacheConfig,
    response_time: u64,
) -> Option<u64> {
    let explicit = cc.s_maxage.or(cc.max_age).or_else(|| {
        let expires = headers.get(EXPIRES)?;
        let date = http_date(headers.get(DATE)).unwrap_or(response_time);
        // An invalid Expires (e.g. "0") means already expired.
        let lifetime = http_date(Some(expires)).map_or(0, |e| e.saturating_sub(date));
        Some(lifetime.min(DELTA_SECONDS_CAP))
    });
    let lifetime = match explicit {
        Some(l) => l,
        None if heuristic_status(status) && !rules.default_ttl.is_zero() => {
            rules.default_ttl.as_secs()
        }
        None => return None,
    };
    let mut lifetime = lifetime.max(rules.min_ttl.as_secs());
    if let Some(max) = rules.max_ttl {
        lifetime = lifetime.min(max.as_secs());
    }
    Some(lifetime)
}

/// The freshness lifetime on a route whose `cache_ttl` lists the status (`route`, from
/// [`route_ttl`]), as nginx's `proxy_cache_valid` sets it: the response's own explicit
/// freshness ([`explicit_freshness`]) still wins, `max-age=0` included; without it the route's
/// time is the lifetime, in place of `default_ttl`, for any status (a 500 too). It counts from
/// when the response arrives (its initial age is added, so `Cache-Status` shows the whole time
/// as `ttl`), in whole seconds rounded up, and is not clamped by `min_ttl`/`max_ttl`: the
/// route's own number is the more specific rule. Without `route`: [`freshness_lifetime`].
/// `initial_age` is in seconds, rounded down.
pub fn route_lifetime(
    status: StatusCode,
    headers: &HeaderMap,
    cc: &CacheControl,
    route: Option<Duration>,
    rules: &CacheConfig,
    response_time: u64,
    initial_age: u64,
) -> Option<u64> {
    match route {
        Some(t) if !explicit_freshness(headers, cc) => {
            let secs = t.as_secs() + u64::from(t.subsec_nanos() > 0);
            Some(secs.saturating_add(initial_age))
        }
        _ => freshness_lifetime(status, headers, cc, rules, response_time),
    }
}

/// The age of a response when it arrived, in milliseconds (RFC 9111 4.2.3): the larger of the
/// apparent age (arrival minus `Date`) and `Age` plus the time the exchange took.
/// `request_ms` and `response_ms` are Unix milliseconds. The exchange is timed to the
/// millisecond, so one that merely crosses a second boundary adds no second. `Date` has whole
/// seconds, so the apparent age is taken in whole seconds, as the RFC's formula does: the
/// arrival's second minus `Date`'s (a response that arrives in the second of its `Date` is no
/// age; one that arrives in a later second is at least the seconds between).
pub fn initial_age_ms(headers: &HeaderMap, request_ms: u64, response_ms: u64) -> u64 {
    let apparent = http_date(headers.get(DATE)).map_or(0, |d| {
        (response_ms / 1000).saturating_sub(d).saturating_mul(1000)
    });
    let age = age_value(headers).unwrap_or(0).saturating_mul(1000);
    let corrected = age.saturating_add(response_ms.saturating_sub(request_ms));
    apparent.max(corrected)
}

/// The `Age` of a response (RFC 9111 5.1): the first member of the first field line (a list,
/// or repeated lines, keep the first); anything else than a non-negative integer is ignored
/// (`None`), never a reason not to store. Values past 2^31 are capped there.
pub fn age_value(headers: &HeaderMap) -> Option<u64> {
    let first = headers.get(AGE)?.to_str().ok()?;
    delta_seconds(first.split(',').next()?.trim())
}

/// Whether a response explicitly allows a shared cache to keep it: `public`, `s-maxage`,
/// `max-age` or `Expires` (anything but heuristic freshness).
pub fn explicitly_shared(headers: &HeaderMap, cc: &CacheControl) -> bool {
    cc.public || cc.s_maxage.is_some() || cc.max_age.is_some() || headers.contains_key(EXPIRES)
}

/// The head kept in the cache: without `Set-Cookie` (reached only when a rule allows storing
/// such responses: cookies are never replayed), `Age` (recomputed on every answer), the
/// framing fields of the connection it came on, and the fields a qualified `no-cache` or
/// `private` names. Values are copied, so a stored head pins no read buffer.
pub fn stored_headers(headers: &HeaderMap, cc: &CacheControl) -> HeaderMap {
    use http::header::{CONNECTION, TRANSFER_ENCODING};
    let mut out = HeaderMap::with_capacity(headers.keys_len());
    for (name, value) in headers {
        if name == SET_COOKIE
            || name == AGE
            || name == TRANSFER_ENCODING
            || name == CONNECTION
            || cc.unstored_fields.contains(name)
        {
            continue;
        }
        let copy = HeaderValue::from_bytes(value.as_bytes()).unwrap_or_else(|_| value.clone());
        out.append(name.clone(), copy);
    }
    out
}

/// Whether the response to this request may be stored, and if not, why. Freshness is decided
/// separately ([`freshness_lifetime`]).
pub fn storable(
    method: &Method,
    req_headers: &HeaderMap,
    status: StatusCode,
    headers: &HeaderMap,
    cc: &CacheControl,
    rules: &CacheConfig,
) -> Result<(), NotStored> {
    storable_on_route(method, req_headers, status, headers, cc, rules, false)
}

/// [`storable`] on a route: when its `cache_ttl` lists the status (`listed`), any final status
/// may be stored, as nginx stores any status `proxy_cache_valid` names (a 500, a 302 without
/// explicit freshness), except 206 (ranges are cut from complete responses) and 304 (the
/// answer to a client's own conditional, which says nothing of the body). Every other refusal
/// stands: `no-store`, `private`, `Set-Cookie`, `Authorization`, `Vary: *`, the content type.
pub fn storable_on_route(
    method: &Method,
    req_headers: &HeaderMap,
    status: StatusCode,
    headers: &HeaderMap,
    cc: &CacheControl,
    rules: &CacheConfig,
    listed: bool,
) -> Result<(), NotStored> {
    if method != Method::GET {
        return Err(NotStored::Method);
    }
    if status == StatusCode::PARTIAL_CONTENT {
        return Err(NotStored::Partial);
    }
    let by_route = listed && status != StatusCode::NOT_MODIFIED && !status.is_informational();
    if !understood_status(status) && !by_route {
        return Err(NotStored::Status);
    }
    if cc.no_store || CacheControl::parse(req_headers).no_store {
        return Err(NotStored::NoStore);
    }
    if cc.private && !rules.store_private {
        return Err(NotStored::Private);
    }
    if headers.contains_key(SET_COOKIE)
        && !rules.store_set_cookie
        && !cc.unstored_fields.contains(&SET_COOKIE)
    {
        return Err(NotStored::SetCookie);
    }
    // RFC 9111 3.5: an authorised request's answer may be shared when the response says so.
    let shared_despite_auth = cc.public || cc.s_maxage.is_some() || cc.must_revalidate;
    if req_headers.contains_key(AUTHORIZATION) && !rules.store_authorized && !shared_despite_auth {
        return Err(NotStored::Authorization);
    }
    // `Vary: *`, and a member that is not a field name (`Cookie Accept`, bytes outside
    // ASCII), vary on what no key can hold: not stored.
    if headers.get_all(VARY).iter().any(|v| {
        v.to_str().map_or(true, |s| {
            s.split(',').map(str::trim).any(|p| {
                p == "*"
                    || (!p.is_empty()
                        && http::header::HeaderName::from_bytes(p.as_bytes()).is_err())
            })
        })
    }) {
        return Err(NotStored::VaryStar);
    }
    if !type_allowed(headers.get(CONTENT_TYPE), &rules.types) {
        return Err(NotStored::ContentType);
    }
    Ok(())
}

/// Entity tags in an `If-None-Match`-style list match `etag` by weak comparison.
fn etag_listed(list: &HeaderValue, etag: Option<&HeaderValue>) -> bool {
    let Ok(list) = list.to_str() else {
        return false;
    };
    if list.trim() == "*" {
        return true;
    }
    let Some(etag) = etag.and_then(|e| e.to_str().ok()) else {
        return false;
    };
    let weak = |t: &str| t.trim().trim_start_matches("W/").to_string();
    let want = weak(etag);
    list.split(',').any(|t| weak(t) == want)
}

/// Whether a request's preconditions fail against a response with these validators (412,
/// RFC 9110 13.2.2 steps 1 and 2): `If-Match` needs `*` or a strongly matching entity tag;
/// without it, `If-Unmodified-Since` needs the response not modified after that date (ignored
/// when the response has no `Last-Modified`, or the date does not parse).
pub fn precondition_failed(
    req: &HeaderMap,
    etag: Option<&HeaderValue>,
    last_mod: Option<&HeaderValue>,
) -> bool {
    if let Some(im) = req.get(http::header::IF_MATCH) {
        let Ok(list) = im.to_str() else { return true };
        if list.trim() == "*" {
            return false;
        }
        let strong = etag
            .and_then(|e| e.to_str().ok())
            .filter(|e| !e.starts_with("W/"));
        return !strong.is_some_and(|e| list.split(',').any(|t| t.trim() == e));
    }
    match (
        http_date(req.get(http::header::IF_UNMODIFIED_SINCE)),
        http_date(last_mod),
    ) {
        (Some(since), Some(modified)) => modified > since,
        _ => false,
    }
}

/// Whether a conditional GET/HEAD is answered 304 from a response with these validators:
/// `If-None-Match` (weak comparison) wins; `If-Modified-Since` is looked at only without it.
pub fn not_modified(
    req: &HeaderMap,
    etag: Option<&HeaderValue>,
    last_mod: Option<&HeaderValue>,
) -> bool {
    if let Some(inm) = req.get(IF_NONE_MATCH) {
        return etag_listed(inm, etag);
    }
    match (http_date(req.get(IF_MODIFIED_SINCE)), http_date(last_mod)) {
        (Some(since), Some(modified)) => modified <= since,
        _ => false,
    }
}

/// What a `Range` header asks of a body of `len` bytes.
#[derive(Debug, PartialEq, Eq)]
pub enum RangeAnswer {
    /// No range, an unsupported or multi-part one, or an `If-Range` that no longer matches:
    /// send everything.
    Full,
    /// Bytes `start..=end`.
    Partial(u64, u64),
    /// 416.
    Unsatisfiable,
}

/// Reads a single `bytes=` range (RFC 9110 14.2). Several ranges are answered with the whole
/// body, which the RFC allows.
pub fn range(
    req: &HeaderMap,
    len: u64,
    etag: Option<&HeaderValue>,
    last_mod: Option<&HeaderValue>,
) -> RangeAnswer {
    let Some(spec) = req.get(http::header::RANGE).and_then(|v| v.to_str().ok()) else {
        return RangeAnswer::Full;
    };
    if let Some(ir) = req.get(IF_RANGE) {
        let ok = match ir.to_str() {
            Ok(t) if t.starts_with('"') => etag
                .and_then(|e| e.to_str().ok())
                .is_some_and(|e| !e.starts_with("W/") && e == t),
            Ok(_) => http_date(Some(ir)).is_some() && http_date(Some(ir)) == http_date(last_mod),
            Err(_) => false,
        };
        if !ok {
            return RangeAnswer::Full;
        }
    }
    let Some(set) = spec.trim().strip_prefix("bytes=") else {
        return RangeAnswer::Full;
    };
    if set.contains(',') {
        return RangeAnswer::Full;
    }
    let Some((a, b)) = set.trim().split_once('-') else {
        return RangeAnswer::Full;
    };
    let (a, b) = (a.trim(), b.trim());
    let parse = |s: &str| -> Option<u64> {
        (!s.is_empty() && s.bytes().all(|c| c.is_ascii_digit())).then(|| s.parse().ok())?
    };
    match (a.is_empty(), b.is_empty()) {
        (true, false) => match parse(b) {
            Some(0) => RangeAnswer::Unsatisfiable,
            Some(n) if len > 0 => RangeAnswer::Partial(len.saturating_sub(n), len - 1),
            Some(_) => RangeAnswer::Unsatisfiable,
            None => RangeAnswer::Full,
        },
        (false, _) => {
            let Some(start) = parse(a) else {
                return RangeAnswer::Full;
            };
            let end = if b.is_empty() {
                Some(u64::MAX)
            } else {
                parse(b)
            };
            match end {
                None => RangeAnswer::Full,
                Some(end) if end < start => RangeAnswer::Full,
                Some(_) if start >= len => RangeAnswer::Unsatisfiable,
                Some(end) => RangeAnswer::Partial(start, end.min(len - 1)),
            }
        }
        (true, true) => RangeAnswer::Full,
    }
}

/// The headers a 304 carries over from the stored response (RFC 9110 15.4.5).
pub const NOT_MODIFIED_HEADERS: &[http::header::HeaderName] = &[
    CACHE_CONTROL,
    ETAG,
    EXPIRES,
    LAST_MODIFIED,
    VARY,
    DATE,
    http::header::CONTENT_LOCATION,
];

/// Updates stored headers from a 304 (RFC 9111 4.3.4): every field it carries replaces the
/// stored one, except the framing fields that describe the stored body.
pub fn merge_304(stored: &mut HeaderMap, fresh: &HeaderMap) {
    use http::header::{CONTENT_ENCODING, CONTENT_LENGTH, CONTENT_RANGE, TRANSFER_ENCODING};
    let mut last: Option<&http::header::HeaderName> = None;
    for (name, value) in fresh {
        if name == CONTENT_LENGTH
            || name == AGE
            || name == CONTENT_ENCODING
            || name == CONTENT_RANGE
            || name == TRANSFER_ENCODING
        {
            continue;
        }
        if last != Some(name) {
            stored.remove(name);
            last = Some(name);
        }
        stored.append(name.clone(), value.clone());
    }
}

#[cfg(test)]
mod tests;
