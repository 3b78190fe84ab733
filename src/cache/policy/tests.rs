//! The RFC 9111 rules' unit tests.

use super::*;

fn h(pairs: &[(&str, &str)]) -> HeaderMap {
    let mut m = HeaderMap::new();
    for (k, v) in pairs {
        m.append(
            http::header::HeaderName::from_bytes(k.as_bytes()).unwrap(),
            HeaderValue::from_str(v).unwrap(),
        );
    }
    m
}

fn rules() -> CacheConfig {
    CacheConfig::default()
}

const NOW: u64 = 1_700_000_000;

#[test]
fn parses_directives() {
    let cc = CacheControl::parse(&h(&[
        ("cache-control", "Public, max-age=60"),
        (
            "cache-control",
            "s-maxage=\"30\", stale-while-revalidate=5, x-unknown, no-cache=\"set-cookie\"",
        ),
    ]));
    assert_eq!(cc.max_age, Some(60));
    assert_eq!(cc.s_maxage, Some(30));
    assert!(
        cc.public && !cc.no_cache,
        "a qualified no-cache names fields only"
    );
    assert_eq!(cc.unstored_fields, [SET_COOKIE]);
    assert_eq!(cc.stale_while_revalidate, Some(5));
    let listed = CacheControl::parse(&h(&[(
        "cache-control",
        "no-cache=\"Set-Cookie, X-Token\", private=x-user, max-age=9, private",
    )]));
    assert_eq!(
        listed.max_age,
        Some(9),
        "a comma inside quotes does not split"
    );
    assert!(listed.private && !listed.no_cache);
    assert_eq!(
        listed.unstored_fields,
        [
            SET_COOKIE,
            http::header::HeaderName::from_static("x-token"),
            http::header::HeaderName::from_static("x-user")
        ]
    );
    assert!(cc.forbids_stale(), "s-maxage implies proxy-revalidate");
    let bad = CacheControl::parse(&h(&[("cache-control", "max-age=soon")]));
    assert_eq!(bad.max_age, Some(0), "an invalid max-age is stale");
}

/// Whether a 200 to a plain GET with these response fields may be stored.
fn plain_get_storable(headers: &HeaderMap, cc: &CacheControl) -> bool {
    let req = HeaderMap::new();
    storable(&Method::GET, &req, StatusCode::OK, headers, cc, &rules()).is_ok()
}

#[test]
fn preconditions() {
    let etag = HeaderValue::from_static("\"v1\"");
    let lm = HeaderValue::from_str(&fmt_http_date(NOW)).unwrap();
    let fails = |pairs: &[(&str, &str)]| precondition_failed(&h(pairs), Some(&etag), Some(&lm));
    assert!(!fails(&[]));
    assert!(!fails(&[("if-match", "*")]));
    assert!(!fails(&[("if-match", "\"v0\", \"v1\"")]));
    assert!(fails(&[("if-match", "\"old\"")]));
    assert!(
        fails(&[("if-match", "W/\"v1\"")]),
        "If-Match compares strongly"
    );
    assert!(fails(&[("if-unmodified-since", &fmt_http_date(NOW - 60))]));
    assert!(!fails(&[("if-unmodified-since", &fmt_http_date(NOW))]));
    assert!(!fails(&[("if-unmodified-since", "garbage")]));
    assert!(
        !fails(&[
            ("if-match", "\"v1\""),
            ("if-unmodified-since", &fmt_http_date(NOW - 60))
        ]),
        "If-Unmodified-Since is not looked at when If-Match is present"
    );
    let weak = HeaderValue::from_static("W/\"v1\"");
    assert!(precondition_failed(
        &h(&[("if-match", "W/\"v1\"")]),
        Some(&weak),
        None
    ));
}

#[test]
fn unreadable_or_empty_directives_fail_closed() {
    let cc = |v: &[u8]| {
        let mut m = HeaderMap::new();
        m.insert(CACHE_CONTROL, HeaderValue::from_bytes(v).unwrap());
        CacheControl::parse(&m)
    };
    assert!(cc(b"max-age=60, private, \xff").no_store);
    for q in [&b"private=\"\""[..], b"private=,", b"private=\" \""] {
        assert!(cc(q).private, "{}", String::from_utf8_lossy(q));
    }
    // An unterminated quote may have swallowed anything, `no-store` included.
    for q in [
        &b"private=\""[..],
        b"max-age=300, private=\"x-a, no-store",
        b"no-cache=\"x-a",
    ] {
        assert!(cc(q).no_store, "{}", String::from_utf8_lossy(q));
    }
    assert!(cc(b"no-cache=\"\"").no_cache);
    assert!(!cc(b"no-cache=\"x-a\"").no_cache);
    let vary = |v: &str| {
        let h = h(&[("cache-control", "max-age=60"), ("vary", v)]);
        let c = CacheControl::parse(&h);
        storable(
            &Method::GET,
            &HeaderMap::new(),
            StatusCode::OK,
            &h,
            &c,
            &rules(),
        )
    };
    assert_eq!(vary("Cookie Accept"), Err(NotStored::VaryStar));
    assert_eq!(vary("*"), Err(NotStored::VaryStar));
    assert!(vary("Accept-Encoding, ").is_ok());
}

#[test]
fn invalid_age_is_ignored_and_lists_keep_the_first() {
    let age = |vals: &[&str]| {
        let pairs: Vec<(&str, &str)> = vals.iter().map(|v| ("age", *v)).collect();
        age_value(&h(&pairs))
    };
    assert_eq!(age(&["30"]), Some(30));
    assert_eq!(age(&["30, 60"]), Some(30));
    assert_eq!(age(&["30", "60"]), Some(30));
    assert_eq!(age(&["abc"]), None);
    assert_eq!(age(&["-5"]), None);
    assert_eq!(age(&["5s"]), None);
    assert_eq!(age(&["1.5"]), None);
    assert_eq!(age(&[""]), None);
    assert_eq!(age(&["99999999999999999999999"]), Some(1 << 31));
    // An invalid Age never makes a response unstorable.
    let headers = h(&[("age", "oops"), ("cache-control", "max-age=60")]);
    let cc = CacheControl::parse(&headers);
    assert!(plain_get_storable(&headers, &cc));
    assert_eq!(initial_age_ms(&headers, NOW * 1000, NOW * 1000), 0);
}

#[test]
fn authorization_shared_when_the_response_says_so() {
    let mut req = HeaderMap::new();
    req.insert(AUTHORIZATION, HeaderValue::from_static("Basic eDp5"));
    for (cc_text, ok) in [
        ("max-age=60", false),
        ("public, max-age=60", true),
        ("s-maxage=60", true),
        ("max-age=60, must-revalidate", true),
    ] {
        let headers = h(&[("cache-control", cc_text)]);
        let cc = CacheControl::parse(&headers);
        let r = storable(&Method::GET, &req, StatusCode::OK, &headers, &cc, &rules());
        assert_eq!(r.is_ok(), ok, "{cc_text}");
    }
}

#[test]
fn stored_head_leaves_out_what_must_not_be_kept() {
    let headers = h(&[
        ("cache-control", "max-age=60, no-cache=\"x-token\""),
        ("set-cookie", "a=1"),
        ("age", "5"),
        ("transfer-encoding", "chunked"),
        ("x-token", "secret"),
        ("content-type", "text/plain"),
    ]);
    let cc = CacheControl::parse(&headers);
    let kept = stored_headers(&headers, &cc);
    assert_eq!(kept.len(), 2, "{kept:?}");
    assert!(kept.contains_key("cache-control") && kept.contains_key("content-type"));
    // A Set-Cookie named by no-cache does not stop the rest from being stored.
    let headers = h(&[
        ("cache-control", "max-age=60, no-cache=\"Set-Cookie\""),
        ("set-cookie", "a=1"),
    ]);
    let cc = CacheControl::parse(&headers);
    assert!(plain_get_storable(&headers, &cc));
}

#[test]
fn s_maxage_wins_over_max_age_and_expires() {
    let r = rules();
    let hd = h(&[
        ("cache-control", "max-age=60, s-maxage=10"),
        ("expires", &fmt_http_date(NOW + 1000)),
    ]);
    let cc = CacheControl::parse(&hd);
    assert_eq!(
        freshness_lifetime(StatusCode::OK, &hd, &cc, &r, NOW),
        Some(10)
    );
    let hd = h(&[
        ("cache-control", "max-age=60"),
        ("expires", &fmt_http_date(NOW + 1000)),
    ]);
    let cc = CacheControl::parse(&hd);
    assert_eq!(
        freshness_lifetime(StatusCode::OK, &hd, &cc, &r, NOW),
        Some(60)
    );
}

#[test]
fn expires_counts_from_date_and_invalid_is_expired() {
    let r = rules();
    let hd = h(&[
        ("date", &fmt_http_date(NOW - 100)),
        ("expires", &fmt_http_date(NOW + 200)),
    ]);
    assert_eq!(
        freshness_lifetime(StatusCode::OK, &hd, &CacheControl::default(), &r, NOW),
        Some(300)
    );
    let hd = h(&[("expires", "0")]);
    assert_eq!(
        freshness_lifetime(StatusCode::OK, &hd, &CacheControl::default(), &r, NOW),
        Some(0)
    );
    // Capped as a delta-seconds is: 8 000 years ahead is 2^31 seconds.
    let hd = h(&[
        ("date", "Thu, 01 Jan 1970 00:00:00 GMT"),
        ("expires", "Fri, 31 Dec 9999 23:59:59 GMT"),
    ]);
    assert_eq!(
        freshness_lifetime(StatusCode::OK, &hd, &CacheControl::default(), &r, NOW),
        Some(DELTA_SECONDS_CAP)
    );
}

#[test]
fn default_ttl_only_for_heuristic_statuses_and_clamps_apply() {
    let mut r = rules();
    let none = HeaderMap::new();
    let cc = CacheControl::default();
    assert_eq!(
        freshness_lifetime(StatusCode::OK, &none, &cc, &r, NOW),
        None
    );
    r.default_ttl = Duration::from_secs(30);
    assert_eq!(
        freshness_lifetime(StatusCode::OK, &none, &cc, &r, NOW),
        Some(30)
    );
    assert_eq!(
        freshness_lifetime(StatusCode::FOUND, &none, &cc, &r, NOW),
        None
    );
    r.min_ttl = Duration::from_secs(45);
    assert_eq!(
        freshness_lifetime(StatusCode::OK, &none, &cc, &r, NOW),
        Some(45)
    );
    r.max_ttl = Some(Duration::from_secs(40));
    let long = h(&[("cache-control", "max-age=99999")]);
    let cc = CacheControl::parse(&long);
    assert_eq!(
        freshness_lifetime(StatusCode::OK, &long, &cc, &r, NOW),
        Some(40)
    );
}

#[test]
fn age_takes_the_larger_estimate() {
    let ms = |s: u64| s * 1000;
    let hd = h(&[("date", &fmt_http_date(NOW - 10)), ("age", "3")]);
    assert_eq!(
        initial_age_ms(&hd, ms(NOW - 1), ms(NOW) + 500),
        10_000,
        "apparent age, in the whole seconds of Date"
    );
    let hd = h(&[("date", &fmt_http_date(NOW)), ("age", "30")]);
    assert_eq!(
        initial_age_ms(&hd, ms(NOW - 2), ms(NOW)),
        32_000,
        "Age plus the exchange time"
    );
    assert_eq!(initial_age_ms(&HeaderMap::new(), ms(NOW), ms(NOW)), 0);
    // The exchange is timed in milliseconds: 2 ms across a second boundary are 2 ms.
    let hd = h(&[("age", "5")]);
    assert_eq!(initial_age_ms(&hd, ms(NOW) - 1, ms(NOW) + 1), 5_002);
    // Arriving in the second of its `Date` is no age; in the next, a second.
    let hd = h(&[("date", &fmt_http_date(NOW))]);
    assert_eq!(
        initial_age_ms(&hd, ms(NOW), ms(NOW) + 999),
        999,
        "the exchange's"
    );
    let hd = h(&[("date", &fmt_http_date(NOW - 1))]);
    assert_eq!(initial_age_ms(&hd, ms(NOW) - 1, ms(NOW) + 1), 1_000);
    // A `Date` in the future is no age; one in 1970 is the whole time since.
    let hd = h(&[("date", &fmt_http_date(NOW + 100))]);
    assert_eq!(initial_age_ms(&hd, ms(NOW), ms(NOW)), 0);
    let hd = h(&[("date", &fmt_http_date(0))]);
    assert_eq!(initial_age_ms(&hd, ms(NOW), ms(NOW)), ms(NOW));
    // `Age` past 2^31 counts as 2^31.
    let hd = h(&[("age", "99999999999999999999999")]);
    assert_eq!(initial_age_ms(&hd, ms(NOW), ms(NOW)), ms(1 << 31));
}

/// RFC 9111 1.2.2: a delta-seconds too large for the cache is 2^31; RFC 9111 4.2.1: the
/// first of a repeated directive counts.
#[test]
fn delta_seconds_are_capped_and_the_first_of_a_directive_counts() {
    assert_eq!(delta_seconds("0"), Some(0));
    assert_eq!(delta_seconds("60"), Some(60));
    assert_eq!(delta_seconds("2147483648"), Some(1 << 31));
    assert_eq!(delta_seconds("2147483649"), Some(1 << 31));
    assert_eq!(delta_seconds("18446744073709551615"), Some(1 << 31));
    assert_eq!(delta_seconds("99999999999999999999999999"), Some(1 << 31));
    for bad in ["", "-1", "+1", "1.5", "1 2", "0x10", "1s", " 1"] {
        assert_eq!(delta_seconds(bad), None, "{bad:?}");
    }
    let cc = |v: &[&str]| {
        let mut hd = HeaderMap::new();
        for x in v {
            hd.append(CACHE_CONTROL, HeaderValue::from_str(x).unwrap());
        }
        CacheControl::parse(&hd)
    };
    let c = cc(&["max-age=99999999999999999999, s-maxage=18446744073709551615"]);
    assert_eq!((c.max_age, c.s_maxage), (Some(1 << 31), Some(1 << 31)));
    let c = cc(&["max-age=0, max-age=600"]);
    assert_eq!(c.max_age, Some(0));
    let c = cc(&["max-age=0", "max-age=600"]);
    assert_eq!(c.max_age, Some(0), "across field lines");
    let c = cc(&["s-maxage=0, max-age=600, s-maxage=300"]);
    assert_eq!((c.s_maxage, c.max_age), (Some(0), Some(600)));
    let c = cc(&["max-age=x, max-age=600"]);
    assert_eq!(
        c.max_age,
        Some(0),
        "an invalid first value is stale, not skipped"
    );
    let c = cc(&[
        "stale-while-revalidate=5, stale-while-revalidate=500, stale-if-error=1",
        "stale-if-error=9",
    ]);
    assert_eq!(
        (c.stale_while_revalidate, c.stale_if_error),
        (Some(5), Some(1))
    );
}

#[test]
fn safe_defaults_refuse_private_cookies_authorization() {
    let r = rules();
    let get = Method::GET;
    let ok = h(&[("cache-control", "max-age=60")]);
    let none = HeaderMap::new();
    let st = StatusCode::OK;
    let check = |req: &HeaderMap, resp: &HeaderMap, r: &CacheConfig| {
        storable(&get, req, st, resp, &CacheControl::parse(resp), r)
    };
    assert_eq!(check(&none, &ok, &r), Ok(()));
    let p = h(&[("cache-control", "private, max-age=60")]);
    assert_eq!(check(&none, &p, &r), Err(NotStored::Private));
    let ns = h(&[("cache-control", "no-store")]);
    assert_eq!(check(&none, &ns, &r), Err(NotStored::NoStore));
    let sc = h(&[("cache-control", "max-age=60"), ("set-cookie", "a=b")]);
    assert_eq!(check(&none, &sc, &r), Err(NotStored::SetCookie));
    let auth = h(&[("authorization", "Bearer x")]);
    assert_eq!(check(&auth, &ok, &r), Err(NotStored::Authorization));
    let vs = h(&[("cache-control", "max-age=60"), ("vary", "Accept, *")]);
    assert_eq!(check(&none, &vs, &r), Err(NotStored::VaryStar));
    let mut open = rules();
    open.store_private = true;
    open.store_set_cookie = true;
    open.store_authorized = true;
    assert_eq!(check(&none, &p, &open), Ok(()));
    assert_eq!(check(&none, &sc, &open), Ok(()));
    assert_eq!(check(&auth, &ok, &open), Ok(()));
    assert_eq!(
        check(&none, &ns, &open),
        Err(NotStored::NoStore),
        "no-store always wins"
    );
    assert_eq!(
        storable(&Method::POST, &none, st, &ok, &CacheControl::parse(&ok), &r),
        Err(NotStored::Method)
    );
    assert_eq!(
        storable(
            &get,
            &none,
            StatusCode::PARTIAL_CONTENT,
            &ok,
            &CacheControl::parse(&ok),
            &r
        ),
        Err(NotStored::Partial)
    );
}

#[test]
fn content_types_with_wildcards() {
    let pats = vec!["text/*".to_string(), "application/json".to_string()];
    let v = |s: &str| HeaderValue::from_str(s).unwrap();
    assert!(type_allowed(Some(&v("text/html; charset=utf-8")), &pats));
    assert!(type_allowed(Some(&v("Application/JSON")), &pats));
    assert!(!type_allowed(Some(&v("image/png")), &pats));
    assert!(!type_allowed(None, &pats));
    assert!(type_allowed(None, &["*".to_string()]));
}

#[test]
fn conditionals() {
    let etag = HeaderValue::from_static("\"v1\"");
    let lm = HeaderValue::from_str(&fmt_http_date(NOW - 100)).unwrap();
    let inm = h(&[("if-none-match", "\"v0\", W/\"v1\"")]);
    assert!(not_modified(&inm, Some(&etag), Some(&lm)));
    let other = h(&[
        ("if-none-match", "\"v2\""),
        ("if-modified-since", &fmt_http_date(NOW)),
    ]);
    assert!(
        !not_modified(&other, Some(&etag), Some(&lm)),
        "If-None-Match wins over IMS"
    );
    let ims = h(&[("if-modified-since", &fmt_http_date(NOW - 50))]);
    assert!(not_modified(&ims, Some(&etag), Some(&lm)));
    let older = h(&[("if-modified-since", &fmt_http_date(NOW - 500))]);
    assert!(!not_modified(&older, Some(&etag), Some(&lm)));
    assert!(not_modified(&h(&[("if-none-match", "*")]), None, None));
}

#[test]
fn ranges() {
    let r = |spec: &str| range(&h(&[("range", spec)]), 100, None, None);
    assert_eq!(r("bytes=0-9"), RangeAnswer::Partial(0, 9));
    assert_eq!(r("bytes=90-"), RangeAnswer::Partial(90, 99));
    assert_eq!(r("bytes=-10"), RangeAnswer::Partial(90, 99));
    assert_eq!(r("bytes=50-500"), RangeAnswer::Partial(50, 99));
    assert_eq!(r("bytes=100-"), RangeAnswer::Unsatisfiable);
    assert_eq!(r("bytes=0-1,5-6"), RangeAnswer::Full);
    assert_eq!(r("bytes=9-2"), RangeAnswer::Full);
    assert_eq!(r("items=0-1"), RangeAnswer::Full);
    assert_eq!(r("bytes=-0"), RangeAnswer::Unsatisfiable);
    let etag = HeaderValue::from_static("\"v1\"");
    let stale = h(&[("range", "bytes=0-1"), ("if-range", "\"v0\"")]);
    assert_eq!(range(&stale, 100, Some(&etag), None), RangeAnswer::Full);
    let same = h(&[("range", "bytes=0-1"), ("if-range", "\"v1\"")]);
    assert_eq!(
        range(&same, 100, Some(&etag), None),
        RangeAnswer::Partial(0, 1)
    );
}

#[test]
fn a_304_updates_headers_but_not_framing() {
    let mut stored = h(&[
        ("content-length", "10"),
        ("cache-control", "max-age=1"),
        ("etag", "\"a\""),
        ("x-keep", "1"),
    ]);
    merge_304(
        &mut stored,
        &h(&[
            ("cache-control", "max-age=60"),
            ("content-length", "0"),
            ("etag", "\"a\""),
        ]),
    );
    assert_eq!(stored["cache-control"], "max-age=60");
    assert_eq!(stored["content-length"], "10");
    assert_eq!(stored["x-keep"], "1");
}

#[test]
fn a_routes_cache_ttl_by_status() {
    use crate::config::route::StatusSet;
    let list = [
        (StatusSet::Code(404), Duration::from_secs(60)),
        (StatusSet::Class(4), Duration::from_secs(20)),
        (StatusSet::Class(5), Duration::from_secs(10)),
        (StatusSet::Any, Duration::from_secs(5)),
    ];
    let t = |s: u16| route_ttl(&list, StatusCode::from_u16(s).unwrap()).map(|d| d.as_secs());
    assert_eq!(t(404), Some(60), "the exact code first");
    assert_eq!(t(410), Some(20));
    assert_eq!(t(503), Some(10));
    assert_eq!(t(200), Some(5));
    assert_eq!(route_ttl(&list[..2], StatusCode::OK), None);
}

#[test]
fn cache_ttl_applies_only_without_explicit_freshness() {
    let mut r = rules();
    r.default_ttl = Duration::from_secs(30);
    r.min_ttl = Duration::from_secs(100);
    r.max_ttl = Some(Duration::from_secs(200));
    let ten = Some(Duration::from_secs(10));
    let life = |hd: &HeaderMap, route, age| {
        let cc = CacheControl::parse(hd);
        route_lifetime(StatusCode::OK, hd, &cc, route, &r, NOW, age)
    };
    let none = HeaderMap::new();
    assert_eq!(life(&none, ten, 0), Some(10), "over default_ttl, unclamped");
    assert_eq!(life(&none, ten, 7), Some(17), "counted from its arrival");
    assert_eq!(
        life(&none, Some(Duration::from_millis(1500)), 0),
        Some(2),
        "whole seconds, rounded up"
    );
    assert_eq!(
        life(&none, None, 0),
        Some(100),
        "no route: default_ttl, clamped"
    );
    // The origin's own freshness wins, and the clamps apply to it as ever.
    for (name, value) in [
        ("cache-control", "max-age=150"),
        ("cache-control", "s-maxage=150, max-age=1"),
        ("expires", &fmt_http_date(NOW + 150)),
    ] {
        let hd = h(&[(name, value), ("date", &fmt_http_date(NOW))]);
        assert_eq!(life(&hd, ten, 0), Some(150), "{name}: {value}");
    }
    let zero = h(&[("cache-control", "max-age=0")]);
    let cc = CacheControl::parse(&zero);
    assert_eq!(
        route_lifetime(StatusCode::OK, &zero, &cc, ten, &rules(), NOW, 0),
        Some(0),
        "max-age=0 is the origin's word"
    );
    let past = h(&[("expires", "0")]);
    let cc = CacheControl::parse(&past);
    assert_eq!(
        route_lifetime(StatusCode::OK, &past, &cc, ten, &rules(), NOW, 0),
        Some(0),
        "an invalid Expires is stale"
    );
    // Any status gets the route's time, a 500 too.
    let cc = CacheControl::default();
    assert_eq!(
        route_lifetime(
            StatusCode::INTERNAL_SERVER_ERROR,
            &none,
            &cc,
            ten,
            &r,
            NOW,
            0
        ),
        Some(10)
    );
    assert_eq!(
        route_lifetime(
            StatusCode::INTERNAL_SERVER_ERROR,
            &none,
            &cc,
            None,
            &r,
            NOW,
            0
        ),
        None
    );
}

#[test]
fn cache_ttl_makes_statuses_storable_but_overrides_no_refusal() {
    let r = rules();
    let get = Method::GET;
    let none = HeaderMap::new();
    let on_route = |st: u16, resp: &HeaderMap, req: &HeaderMap, listed| {
        let st = StatusCode::from_u16(st).unwrap();
        let cc = CacheControl::parse(resp);
        storable_on_route(&get, req, st, resp, &cc, &r, listed)
    };
    assert_eq!(
        on_route(302, &none, &none, false),
        Ok(()),
        "understood anyway"
    );
    for st in [500, 502, 303, 401, 403, 429] {
        assert_eq!(on_route(st, &none, &none, false), Err(NotStored::Status));
        assert_eq!(on_route(st, &none, &none, true), Ok(()), "{st}");
    }
    assert_eq!(on_route(206, &none, &none, true), Err(NotStored::Partial));
    assert_eq!(on_route(304, &none, &none, true), Err(NotStored::Status));
    let auth = h(&[("authorization", "Bearer t")]);
    for (resp, req, why) in [
        (
            h(&[("cache-control", "no-store")]),
            &none,
            NotStored::NoStore,
        ),
        (
            h(&[("cache-control", "private")]),
            &none,
            NotStored::Private,
        ),
        (h(&[("set-cookie", "a=b")]), &none, NotStored::SetCookie),
        (h(&[("vary", "*")]), &none, NotStored::VaryStar),
        (none.clone(), &auth, NotStored::Authorization),
    ] {
        assert_eq!(on_route(500, &resp, req, true), Err(why));
        assert_eq!(on_route(200, &resp, req, true), Err(why));
    }
    let no_store = h(&[("cache-control", "no-store")]);
    assert_eq!(
        on_route(200, &none, &no_store, true),
        Err(NotStored::NoStore),
        "the request's no-store too"
    );
    let mut html_only = rules();
    html_only.types = vec!["text/html".into()];
    let cc = CacheControl::default();
    assert_eq!(
        storable_on_route(
            &get,
            &none,
            StatusCode::BAD_GATEWAY,
            &none,
            &cc,
            &html_only,
            true
        ),
        Err(NotStored::ContentType)
    );
    assert_eq!(
        storable_on_route(&Method::POST, &none, StatusCode::OK, &none, &cc, &r, true),
        Err(NotStored::Method)
    );
}
