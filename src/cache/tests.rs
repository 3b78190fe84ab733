//! The store's unit tests: budget, variants, fills, coalescing.

use super::*;
use http::header::HeaderValue;
use http::StatusCode;

fn obj(body: usize, headers: &[(&str, &str)]) -> Object {
    let mut h = HeaderMap::new();
    for (k, v) in headers {
        h.append(
            HeaderName::from_bytes(k.as_bytes()).unwrap(),
            HeaderValue::from_str(v).unwrap(),
        );
    }
    Object::new(
        StatusCode::OK,
        h,
        Bytes::from(vec![b'x'; body]),
        0,
        60,
        0,
        0,
        false,
        false,
    )
}

#[test]
fn variant_keys_hold_names_raw_values_and_absence() {
    let names = |n: &[&'static str]| -> Vec<HeaderName> {
        n.iter().map(|x| HeaderName::from_static(x)).collect()
    };
    let req = |pairs: &[(&'static str, &[u8])]| {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, HeaderValue::from_bytes(v).unwrap());
        }
        h
    };
    let p = "http://a/x";
    let k = |n: &[&'static str], r: &HeaderMap| variant_key(p, &names(n), r);
    // Another field with the same value is another variant.
    assert_ne!(
        k(&["x-a"], &req(&[("x-a", b"foo")])),
        k(&["x-b"], &req(&[("x-b", b"foo")]))
    );
    // Absent is not empty.
    assert_ne!(k(&["x-a"], &req(&[])), k(&["x-a"], &req(&[("x-a", b"")])));
    // Bytes are kept apart, not folded into one replacement character.
    assert_ne!(
        k(&["x-a"], &req(&[("x-a", b"\xff")])),
        k(&["x-a"], &req(&[("x-a", b"\xfe")]))
    );
    // Whitespace around commas does not matter.
    assert_eq!(
        k(&["x-a"], &req(&[("x-a", b"a, b")])),
        k(&["x-a"], &req(&[("x-a", b"a,b")]))
    );
}

#[test]
fn a_change_of_vary_names_leaves_no_variant_behind() {
    let c = Cache::new(CacheConfig::default());
    let p = "http://a/v";
    let req = |k: &'static str, v: &'static str| {
        let mut h = HeaderMap::new();
        h.insert(k, HeaderValue::from_static(v));
        h
    };
    assert!(c.insert(p, &req("x-a", "foo"), obj(1, &[("vary", "X-A")])));
    assert!(c.insert(p, &req("x-b", "bar"), obj(1, &[("vary", "X-B")])));
    // The X-A variant went with its index: X-B: foo finds nothing.
    assert!(c.lookup(p, &req("x-b", "foo")).is_none());
    assert_eq!(c.invalidate(p), 2, "the index and the one live variant");
    assert_eq!(c.stats().entries, 0);
}

#[test]
fn fills_in_progress_share_a_budget() {
    let c = Cache::new(CacheConfig {
        max_size: 64 << 10,
        max_object_size: 16 << 10,
        ..Default::default()
    });
    assert_eq!(c.fill_budget(), 16 << 10);
    let fill = |i: usize| {
        Fill::new(
            c.clone(),
            format!("http://a/{i}"),
            HeaderMap::new(),
            obj(0, &[]),
            None,
        )
    };
    let chunk = Bytes::from(vec![b'x'; 6 << 10]);
    let (mut a, mut b, mut d) = (fill(1), fill(2), fill(3));
    assert!(a.push(&chunk) && b.push(&chunk));
    assert_eq!(c.filling(), 12 << 10);
    assert!(!d.push(&chunk), "a third fill would pass the budget");
    drop(d);
    drop(b);
    assert_eq!(
        c.filling(),
        6 << 10,
        "an abandoned fill gives its bytes back"
    );
    a.finish();
    assert_eq!(c.filling(), 0);
    assert!(c.lookup("http://a/1", &HeaderMap::new()).is_some());
    // One fill alone stops at max_object_size.
    let mut e = fill(4);
    assert!(e.push(&Bytes::from(vec![b'x'; 10 << 10])));
    assert!(!e.push(&Bytes::from(vec![b'x'; 10 << 10])));
}

#[test]
fn variants_are_kept_apart_and_capped() {
    let c = Cache::new(CacheConfig {
        max_variants: 2,
        ..Default::default()
    });
    let req = |enc: &str| {
        let mut h = HeaderMap::new();
        h.insert("accept-encoding", HeaderValue::from_str(enc).unwrap());
        h
    };
    let p = "http://a/x";
    assert!(c.insert(
        p,
        &req("gzip"),
        obj(1, &[("vary", "Accept-Encoding"), ("x-v", "gzip")])
    ));
    assert!(c.insert(
        p,
        &req("br"),
        obj(2, &[("vary", "Accept-Encoding"), ("x-v", "br")])
    ));
    assert_eq!(c.lookup(p, &req("gzip")).unwrap().1.headers["x-v"], "gzip");
    assert_eq!(c.lookup(p, &req("br")).unwrap().1.headers["x-v"], "br");
    assert!(c.lookup(p, &req("zstd")).is_none());
    c.insert(p, &req("zstd"), obj(3, &[("vary", "Accept-Encoding")]));
    assert!(
        c.lookup(p, &req("gzip")).is_none(),
        "the oldest variant made room"
    );
    assert!(c.lookup(p, &req("zstd")).is_some());
}

#[test]
fn purge_by_url_prefix_and_all() {
    let c = Cache::new(CacheConfig::default());
    let none = HeaderMap::new();
    for k in [
        "http://a/x",
        "http://a/x?q=1",
        "http://a/static/1",
        "http://a/static/2",
        "http://b/x",
    ] {
        c.insert(k, &none, obj(10, &[]));
    }
    assert_eq!(c.purge_url("http://a/x"), 1);
    assert!(c.lookup("http://b/x", &none).is_some());
    assert_eq!(c.purge_url("/x"), 1, "a path purges it on every host");
    assert_eq!(c.purge_prefix("/static/"), 2);
    assert_eq!(c.stats().entries, 1);
    assert_eq!(c.purge_all(), 1);
    assert_eq!(c.stats().entries, 0);
    assert_eq!(c.bytes(), 0);
}

#[test]
fn the_byte_budget_is_never_exceeded() {
    let c = Cache::new(CacheConfig {
        max_size: 200_000,
        max_object_size: 20_000,
        ..Default::default()
    });
    let none = HeaderMap::new();
    let mut seed = 7u64;
    for i in 0..5000u64 {
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let size = (seed >> 33) as usize % 19_000;
        let key = format!("http://h/{}", (seed >> 20) % 700);
        c.insert(&key, &none, obj(size, &[("content-type", "text/plain")]));
        assert!(
            c.bytes() <= 200_000,
            "over budget after insert {i}: {}",
            c.bytes()
        );
    }
    assert!(c.stats().evictions > 0);
}

#[tokio::test]
async fn waiters_wake_when_the_leader_is_done() {
    let c = Cache::new(CacheConfig::default());
    let Join::Leader(guard) = c.join("k") else {
        panic!("first is leader")
    };
    let Join::Wait(rx) = c.join("k") else {
        panic!("second waits")
    };
    let waiter = tokio::spawn(wait(rx, std::time::Duration::from_secs(5)));
    tokio::task::yield_now().await;
    assert!(c.in_flight("k"));
    drop(guard);
    assert!(waiter.await.unwrap());
    assert!(!c.in_flight("k"));
    assert!(matches!(c.join("k"), Join::Leader(_)));
}

#[test]
fn ignored_query_parameters_leave_the_key() {
    let names = IgnoreQuery::Names(vec!["utm_*".into(), "gclid".into()]);
    let k = |t| key_target(t, &names).into_owned();
    // The others keep their order and bytes; the two orders of one request share a key.
    assert_eq!(k("/p?id=1&utm_source=b"), "/p?id=1");
    assert_eq!(k("/p?utm_source=a&id=1"), "/p?id=1");
    assert_eq!(k("/p?b=2&utm_medium=x&a=%41&gclid=9&c"), "/p?b=2&a=%41&c");
    assert_eq!(k("/p?z=1&a=2"), "/p?z=1&a=2", "not sorted");
    assert_eq!(k("/p?a=1&&b=2&utm_x"), "/p?a=1&&b=2", "empty ones kept");
    // A query left empty is none.
    assert_eq!(k("/p?utm_source=a&gclid=b"), "/p");
    assert_eq!(k("/p?"), "/p");
    assert_eq!(k("/p"), "/p");
    // Names are compared as sent, and whole unless the pattern ends in `*`.
    assert_eq!(k("/p?gclid2=1&GCLID=2"), "/p?gclid2=1&GCLID=2");
    assert_eq!(k("/p?utm%5Fsource=1"), "/p?utm%5Fsource=1");
    assert_eq!(k("/p?utm_=1&utm=2"), "/p?utm=2");
    assert_eq!(
        k("/p?gclid&gclid=&id=1"),
        "/p?id=1",
        "with or without a value"
    );
    // A value that looks like a name is a value.
    assert_eq!(k("/p?id=utm_source"), "/p?id=utm_source");
    // Nothing to leave out: the target itself, not a copy.
    assert!(matches!(key_target("/p?id=1", &names), Cow::Borrowed(_)));
    // The whole query, and none.
    assert_eq!(key_target("/p?id=1&x=2", &IgnoreQuery::All), "/p");
    assert_eq!(key_target("/p?id=1", &IgnoreQuery::None), "/p?id=1");
    // A whole key works the same (a scheme and a host hold no `?`).
    assert_eq!(
        key_target("https://a.example/p?utm_id=1&id=2", &names),
        "https://a.example/p?id=2"
    );
}

#[test]
fn forms_count_in_the_budget_and_go_before_the_body() {
    use crate::coding::Coding;
    let c = Cache::new(CacheConfig {
        max_size: 64 * 1024,
        max_object_size: 16 * 1024,
        ..Default::default()
    });
    let none = HeaderMap::new();
    let p = "http://a/x";
    assert!(c.insert(p, &none, obj(4000, &[])));
    let (_, o) = c.lookup(p, &none).unwrap();
    assert!(o.claim(Coding::Br), "the first request makes the form");
    assert!(!o.claim(Coding::Br), "the others do not");
    let before = c.bytes();
    assert!(c.add_form(p, &o, Coding::Br, Bytes::from(vec![b'b'; 1000])));
    assert!(c.bytes() >= before + 1000, "the form is weighed");
    let (_, kept) = c.lookup(p, &none).unwrap();
    assert_eq!(kept.form(Coding::Br).unwrap().len(), 1000);
    assert_eq!(kept.form(Coding::Identity).unwrap().len(), 4000);
    // A form made from an object since replaced is not kept.
    assert!(!c.add_form(p, &o, Coding::Gzip, Bytes::from_static(b"g")));
    // Too large with its object: not kept.
    assert!(!c.add_form(p, &kept, Coding::Gzip, Bytes::from(vec![0; 20_000])));
    // When the store needs room, an entry comes back without its forms before it goes (one
    // never asked for again, so that it is the one to go).
    let p = "http://a/cold";
    assert!(c.insert(p, &none, obj(4000, &[])));
    let Some(Slot::Object(o)) = c.store.peek(p) else {
        panic!("stored")
    };
    assert!(c.add_form(p, &o, Coding::Br, Bytes::from(vec![b'b'; 1000])));
    let mut demoted = false;
    for i in 0..200 {
        let k = format!("http://a/{i}");
        c.insert(&k, &none, obj(4000, &[]));
        c.lookup(&k, &none);
        c.lookup(&k, &none);
        match c.store.peek(p) {
            Some(Slot::Object(o)) if o.forms_size() == 0 => {
                assert_eq!(o.body.len(), 4000);
                demoted = true;
                break;
            }
            Some(_) => {}
            None => panic!("the entry went with its forms at {i}"),
        }
    }
    assert!(demoted, "the forms went first");
}
