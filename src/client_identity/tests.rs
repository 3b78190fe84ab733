//! The walk, the nodes and the trust lists.
use super::*;

fn trust(list: &[&str]) -> Trust {
    let mut t = Trust::default();
    for e in list {
        t.push(TrustEntry::parse(e).unwrap());
    }
    t
}

fn headers(name: &str, lines: &[&str]) -> HeaderMap {
    let mut h = HeaderMap::new();
    for l in lines {
        h.append(
            HeaderName::from_bytes(name.as_bytes()).unwrap(),
            HeaderValue::from_bytes(l.as_bytes()).unwrap(),
        );
    }
    h
}

fn ip(s: &str) -> Option<IpAddr> {
    Some(s.parse().unwrap())
}

#[test]
fn trust_entries() {
    assert_eq!(TrustEntry::parse("unix"), Ok(TrustEntry::Unix));
    assert!(TrustEntry::parse("10.0.0.0/8").is_ok());
    assert!(TrustEntry::parse("::1").is_ok());
    for bad in ["10.0.0.0/33", "10.0.0", "example.com", "", "10.0.0.0/8,"] {
        let e = TrustEntry::parse(bad).unwrap_err();
        assert!(e.contains("10.0.0.0/8"), "{e}");
    }
    let t = trust(&["10.0.0.0/8", "unix"]);
    assert!(t.contains("10.1.2.3".parse().unwrap()));
    assert!(t.contains("::ffff:10.1.2.3".parse().unwrap()));
    assert!(!t.contains("11.1.2.3".parse().unwrap()));
    assert!(t.admits(None));
    assert!(!trust(&["10.0.0.0/8"]).admits(None));
}

#[test]
fn x_forwarded_for_takes_the_right_most_untrusted_hop() {
    let t = trust(&["10.0.0.0/8"]);
    let from = RealIpFrom::XForwardedFor;
    let h = headers("x-forwarded-for", &["6.6.6.6, 1.2.3.4, 10.0.0.2"]);
    assert_eq!(client_from(&h, from, &t), ip("1.2.3.4"));
    // Across lines, the last line's last entry is the nearest hop.
    let h = headers(
        "x-forwarded-for",
        &["6.6.6.6", "1.2.3.4,10.0.0.2", " 10.0.0.3 "],
    );
    assert_eq!(client_from(&h, from, &t), ip("1.2.3.4"));
    // All trusted: the left-most.
    let h = headers("x-forwarded-for", &["10.0.0.9, 10.0.0.2"]);
    assert_eq!(client_from(&h, from, &t), ip("10.0.0.9"));
    // Ports and brackets are read; empty entries skipped.
    let h = headers(
        "x-forwarded-for",
        &["7.7.7.7, [2001:db8::1]:443, , 10.0.0.5:8080"],
    );
    assert_eq!(client_from(&h, from, &t), ip("2001:db8::1"));
    // An entry that cannot be read ends the walk: the last trusted hop is the client, and
    // what a client wrote left of it is never reached.
    for bad in [
        "unknown",
        "fe80::1%eth0",
        "nonsense",
        "1.2.3.4:+80",
        "::ffff:1.2.3.4%1",
    ] {
        let line = format!("6.6.6.6, {bad}, 10.0.0.5");
        let h = headers("x-forwarded-for", &[&line]);
        assert_eq!(client_from(&h, from, &t), ip("10.0.0.5"), "{bad}");
        let h = headers("x-forwarded-for", &[&format!("6.6.6.6, {bad}")]);
        assert_eq!(client_from(&h, from, &t), None, "{bad}");
    }
    let h = headers("x-forwarded-for", &["garbage, ,,"]);
    assert_eq!(client_from(&h, from, &t), None);
    // IPv4-mapped entries are the IPv4 client, and trusted as such.
    let h = headers("x-forwarded-for", &["::ffff:1.2.3.4, ::ffff:10.0.0.1"]);
    assert_eq!(client_from(&h, from, &t), ip("1.2.3.4"));
    assert_eq!(client_from(&HeaderMap::new(), from, &t), None);
    let h = headers("x-real-ip", &["192.0.2.9"]);
    assert_eq!(client_from(&h, RealIpFrom::XRealIp, &t), ip("192.0.2.9"));
}

#[test]
fn huge_lists_are_bounded() {
    let t = trust(&["10.0.0.0/8"]);
    let mut list = vec!["1.1.1.1"; 5000];
    list.extend(std::iter::repeat_n("10.0.0.1", MAX_HOPS + 5));
    let h = headers("x-forwarded-for", &[&list.join(",")]);
    // The hops past the bound are not looked at: the left-most one looked at wins.
    assert_eq!(
        client_from(&h, RealIpFrom::XForwardedFor, &t),
        ip("10.0.0.1")
    );
    let fw: Vec<String> = (0..5000)
        .map(|i| format!("for=1.1.{}.{}", i / 256, i % 256))
        .collect();
    let h = headers("forwarded", &[&fw.join(", ")]);
    assert_eq!(client_from(&h, RealIpFrom::Forwarded, &t), ip("1.1.19.135"));
}

#[test]
fn forwarded_for_nodes() {
    let t = trust(&["10.0.0.0/8"]);
    let f = RealIpFrom::Forwarded;
    let h = headers(
        "forwarded",
        &["for=192.0.2.60;proto=http;by=203.0.113.43, For=\"[2001:db8:cafe::17]:4711\";host=\"a,b;c\", for=10.0.0.1"],
    );
    assert_eq!(client_from(&h, f, &t), ip("2001:db8:cafe::17"));
    // `unknown` and obfuscated nodes end the walk at the last trusted hop.
    let h = headers("forwarded", &["for=1.2.3.4, for=unknown, for=10.0.0.2"]);
    assert_eq!(client_from(&h, f, &t), ip("10.0.0.2"));
    let h = headers("forwarded", &["for=1.2.3.4, for=_hidden"]);
    assert_eq!(client_from(&h, f, &t), None);
    let h = headers("forwarded", &["for=1.2.3.4, proto=https"]);
    assert_eq!(client_from(&h, f, &t), None);
    // An element that cannot be read ends the walk: bare IPv6 (section 6 brackets it),
    // an unquoted port, a broken pair.
    for bad in [
        "for=2001:db8::1",
        "for=\"2001:db8::1\"",
        "for=9.9.9.9:1234",
        "for=\"9.9.9.9:+1\"",
        "for=\"[2001:db8::1]x\"",
        "=x",
        "for=1.2.3.4;for=9.9.9.9",
    ] {
        let h = headers("forwarded", &[&format!("for=6.6.6.6, {bad}, for=10.0.0.7")]);
        assert_eq!(client_from(&h, f, &t), ip("10.0.0.7"), "{bad}");
    }
    let h = headers("forwarded", &["for=\"192.0.2.1:_a1\", for=10.0.0.7"]);
    assert_eq!(client_from(&h, f, &t), ip("192.0.2.1"));
    // Quoted separators do not split.
    let h = headers(
        "forwarded",
        &["for=5.5.5.5, for=\"unterminated, =x, for=1.2.3.4;for=9.9.9.9, for=\"192.0.2.1:80\""],
    );
    assert_eq!(client_from(&h, f, &t), ip("192.0.2.1"));
    // A quote a client leaves open does not swallow what the proxies appended.
    let h = headers("forwarded", &["for=\"6.6.6.6, for=1.2.3.4, for=10.0.0.2"]);
    assert_eq!(client_from(&h, f, &t), ip("1.2.3.4"));
    let h = headers(
        "forwarded",
        &["for=\"x, for=\"[2001:db8::9]\", for=10.0.0.2"],
    );
    assert_eq!(client_from(&h, f, &t), ip("2001:db8::9"));
    let h = headers("forwarded", &["for=\"1.2.3.4\\\"\", for=10.0.0.3"]);
    assert_eq!(client_from(&h, f, &t), ip("10.0.0.3"));
}

#[test]
fn the_chain_and_the_scheme_behind_trusted_proxies() {
    let t = trust(&["10.0.0.0/8"]);
    let from = RealIpFrom::XForwardedFor;
    let h = headers(
        "x-forwarded-for",
        &["6.6.6.6, 1.2.3.4", "10.0.0.2, , 10.0.0.3"],
    );
    let (client, n) = walk_from(&h, from, &t).unwrap();
    assert_eq!((Some(client), n), (ip("1.2.3.4"), 4));
    let want: Vec<IpAddr> = ["1.2.3.4", "10.0.0.2", "10.0.0.3"]
        .iter()
        .map(|a| a.parse().unwrap())
        .collect();
    assert_eq!(chain(&h, from, n), want);
    let mut h = headers("x-forwarded-proto", &["http, HTTPS "]);
    assert_eq!(proto_from(&h, from), Some("https"));
    h.insert(X_FORWARDED_PROTO, HeaderValue::from_static("ftp"));
    assert_eq!(proto_from(&h, from), None);
    let h = headers(
        "forwarded",
        &[
            "for=1.2.3.4;proto=http",
            "for=10.0.0.1;proto=https;host=\"a;b\"",
        ],
    );
    assert_eq!(proto_from(&h, RealIpFrom::Forwarded), Some("https"));
    assert_eq!(proto_from(&h, from), None);
    assert!(forwarded_is_sound(b"for=\"[::1]\";host=\"a\\\"b\""));
    assert!(!forwarded_is_sound(b"for=\"6.6.6.6"));
    assert!(!forwarded_is_sound(b"for=\"6\\\""));
}

#[test]
fn mapped_networks_and_addresses_are_ipv4() {
    let n: IpNet = "::ffff:10.0.0.0/104".parse().unwrap();
    assert_eq!(canonical_net(n), "10.0.0.0/8".parse::<IpNet>().unwrap());
    let n: IpNet = "2001:db8::/32".parse().unwrap();
    assert_eq!(canonical_net(n), n);
    let n: IpNet = "::/0".parse().unwrap();
    assert_eq!(canonical_net(n), n);
    let a: SocketAddr = "[::ffff:1.2.3.4]:80".parse().unwrap();
    assert_eq!(
        canonical_addr(a),
        "1.2.3.4:80".parse::<SocketAddr>().unwrap()
    );
    assert_eq!(
        TrustEntry::parse("::ffff:10.0.0.1"),
        Ok(TrustEntry::Net("10.0.0.1/32".parse().unwrap()))
    );
}

#[test]
fn garbage_never_panics() {
    let t = trust(&["10.0.0.0/8", "::/0"]);
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    let alphabet = b"for=\";,\\ [ ]:.0123456789abcdef_unknownFOR\t=,;\"x";
    for _ in 0..5000 {
        let len = (seed % 64) as usize;
        let mut v = Vec::with_capacity(len);
        for _ in 0..len {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            v.push(alphabet[(seed % alphabet.len() as u64) as usize]);
        }
        let Ok(value) = HeaderValue::from_bytes(&v) else {
            continue;
        };
        let mut h = HeaderMap::new();
        h.insert(http::header::FORWARDED, value.clone());
        h.insert(X_FORWARDED_FOR, value.clone());
        h.insert(X_REAL_IP, value);
        for from in [
            RealIpFrom::Forwarded,
            RealIpFrom::XForwardedFor,
            RealIpFrom::XRealIp,
        ] {
            let _ = client_from(&h, from, &t);
        }
    }
}

#[test]
fn nodes_are_quoted_as_rfc_7239_says() {
    assert_eq!(node(ip("192.0.2.43"), None), "192.0.2.43");
    assert_eq!(node(ip("192.0.2.43"), Some(47011)), "\"192.0.2.43:47011\"");
    assert_eq!(
        node(ip("2001:db8:cafe::17"), None),
        "\"[2001:db8:cafe::17]\""
    );
    assert_eq!(
        node(ip("2001:db8:cafe::17"), Some(4711)),
        "\"[2001:db8:cafe::17]:4711\""
    );
    assert_eq!(node(ip("::ffff:192.0.2.1"), None), "192.0.2.1");
    assert_eq!(node(None, None), "unknown");
    let e = forwarded_element(
        "\"[::1]\"",
        Some(&HeaderValue::from_static("example.com:8080")),
        "https",
    );
    assert_eq!(e, b"for=\"[::1]\";host=\"example.com:8080\";proto=https");
    let e = forwarded_element(
        "1.2.3.4",
        Some(&HeaderValue::from_static("a.example")),
        "http",
    );
    assert_eq!(e, b"for=1.2.3.4;host=a.example;proto=http");
    let mut out = Vec::new();
    param_value(&mut out, b"a\"b\\c");
    assert_eq!(out, b"\"a\\\"b\\\\c\"");
    // What langur writes, it reads back.
    let h = headers(
        "forwarded",
        &["for=\"[2001:db8::5]:99\";host=\"x:1\";proto=http"],
    );
    assert_eq!(
        client_from(&h, RealIpFrom::Forwarded, &Trust::default()),
        ip("2001:db8::5")
    );
}
