//! Tests of the users file, verification and its cache, the Authorization parser and the challenge.

use super::*;

/// A users file in a fresh temporary directory; removed with the value.
struct File(std::path::PathBuf);

impl File {
    fn new(text: &str) -> File {
        static N: AtomicU64 = AtomicU64::new(0);
        let dir = std::env::temp_dir().join(format!(
            "langur-credentials-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("htpasswd");
        std::fs::write(&path, text).unwrap();
        File(path)
    }
}

impl Drop for File {
    fn drop(&mut self) {
        if let Some(dir) = self.0.parent() {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

fn load(text: &str) -> Result<Users, String> {
    Users::load(&File::new(text).0)
}

fn bcrypt_of(password: &str) -> String {
    bcrypt::hash_with_salt(password, 4, [7; 16])
        .unwrap()
        .format_for_version(bcrypt::Version::TwoY)
}

fn argon2_of(password: &str, algorithm: argon2::Algorithm) -> String {
    use argon2::PasswordHasher;
    let params = argon2::Params::new(8, 1, 1, None).unwrap();
    argon2::Argon2::new(algorithm, argon2::Version::V0x13, params)
        .hash_password_with_salt(password.as_bytes(), b"saltsaltsalt")
        .unwrap()
        .to_string()
}

fn two_users() -> Users {
    load(&format!(
        "# staging\n\nalice:{}\r\n  # indented comment\nbob:{}\n",
        bcrypt_of("wonderland"),
        argon2_of("builder", argon2::Algorithm::Argon2id)
    ))
    .unwrap()
}

fn header(v: &str) -> HeaderValue {
    HeaderValue::from_str(v).unwrap()
}

fn basic(raw: &[u8]) -> HeaderValue {
    use base64::Engine as _;
    header(&format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(raw)
    ))
}

#[test]
fn bcrypt_and_argon2_users_verify() {
    let users = two_users();
    assert_eq!(users.len(), 2);
    assert!(users.verify("alice", b"wonderland"));
    assert!(users.verify("bob", b"builder"));
    assert!(!users.verify("alice", b"builder"));
    assert!(!users.verify("bob", b"wonderland"));
    assert!(!users.verify("bob", b""));
    assert!(!users.verify("Alice", b"wonderland"));
}

#[test]
fn every_accepted_variant_loads_and_verifies() {
    let b = bcrypt_of("pw");
    let text = format!(
        "a:{}\nb:{}\nc:{}\nd:{}\ne:{}\nf:{}\n",
        b.replacen("$2y$", "$2a$", 1),
        b.replacen("$2y$", "$2b$", 1),
        b,
        argon2_of("pw", argon2::Algorithm::Argon2id),
        argon2_of("pw", argon2::Algorithm::Argon2i),
        argon2_of("pw", argon2::Algorithm::Argon2d),
    );
    let users = load(&text).unwrap();
    for u in ["a", "b", "c", "d", "e", "f"] {
        assert!(users.verify(u, b"pw"), "{u}");
        assert!(!users.verify(u, b"pW"), "{u}");
    }
}

#[test]
fn hashes_from_other_implementations_verify() {
    // `htpasswd -nbB -C 4`, crypt_blowfish's test vector, Python's bcrypt, and argon2-cffi
    // (the Argon2 reference code) with m=16, t=1, p=2 and a 16-byte output.
    let text = "\
        carol:$2y$04$yAUe3MwITlkuVsTUHvsOf.EbPDe0dMRCHVk1pNZlgm9uU3hALPA2G\n\
        crypt:$2a$05$CCCCCCCCCCCCCCCCCCCCC.E5YPO9kmyuRGyh0XouQYb4YMJKvyOeW\n\
        py2b:$2b$04$ezQBpss5jhYxLlhHzWGYluhNt3VZGAFgtcNhD/UCS23htCDsVfLAe\n\
        py2a:$2a$04$ybqn9Q46ySpPxMkJUnoJWOR0rjM9t8g9qEqtemKmf1qjRRcRjv7C.\n\
        id:$argon2id$v=19$m=16,t=1,p=2$zgoARohKroT9NIc0aYGFCg$WuU8PaYFffhp+15UtbNVnQ\n\
        i:$argon2i$v=19$m=16,t=1,p=2$VDy8eHuijYwDGy0XmvflBg$DXII6UeHWUKmx64wT8NvUA\n\
        d:$argon2d$v=19$m=16,t=1,p=2$G1kAtbe1EMq4GawcjBt+Bw$B1avFx1SxzKEun5/27sO8Q\n";
    let users = load(text).unwrap();
    assert!(users.verify("carol", b"open sesame"));
    assert!(!users.verify("carol", b"open sesame "));
    assert!(users.verify("crypt", b"U*U"));
    for u in ["py2b", "py2a", "id", "i", "d"] {
        assert!(users.verify(u, b"s3cret:with colon"), "{u}");
        assert!(!users.verify(u, b"s3cret:with colon!"), "{u}");
    }
}

#[test]
fn an_unknown_user_fails_after_one_verification() {
    let users = two_users();
    // Even the password of the dummy (the file's first hash) does not let a stranger in.
    assert!(!users.verify("mallory", b"wonderland"));
    assert!(!users.verify("mallory", b"wonderland"));
    assert_eq!(users.slow_verifications(), 2);
    assert!(!users.verify("", b""));
}

#[test]
fn refused_formats_name_the_line_the_user_and_the_fix() {
    let cases: &[(&str, &str)] = &[
        ("hunter2", "plain-text password"),
        ("{SHA}EfatjsUqKYSrqv18O1FlA3hcIHI=", "SHA-1 hash ({SHA})"),
        (
            "$apr1$ZZ61l6YQ$9OMosMQsp5f57sQEwuLS7.",
            "Apache MD5 hash ($apr1$)",
        ),
        ("$1$saltsalt$qjXMvbEw8oaL.CzflDugX/", "MD5-crypt hash ($1$)"),
        ("$5$rounds=5000$salt$abcdef", "SHA-256-crypt hash ($5$)"),
        ("$6$salt$abcdef", "SHA-512-crypt hash ($6$)"),
        ("rl0kV9VnKdBnE", "DES-crypt hash or a plain-text password"),
        (
            "$scrypt$ln=16,r=8,p=1$c2FsdA$aGFzaA",
            "unrecognised hash scheme",
        ),
        ("{SSHA}abc", "unrecognised hash scheme"),
        ("$2x$04$abc", "buggy `$2x$` variant"),
        ("", "no password hash"),
    ];
    for (hash, what) in cases {
        let err = load(&format!("# users\nalice:{}\nbob:{hash}\n", bcrypt_of("a")))
            .err()
            .unwrap_or_else(|| panic!("{hash} loaded"));
        assert!(err.contains("line 3: user \"bob\": "), "{err}");
        assert!(err.contains(what), "{hash}: {err}");
        assert!(err.contains("htpasswd -B"), "{err}");
        if !hash.is_empty() {
            assert!(!err.contains(hash), "the error repeats the hash: {err}");
        }
    }
}

#[test]
fn the_plain_text_error_reads_as_documented() {
    let f = File::new("alice:s3cret\n");
    let err = Users::load(&f.0).err().unwrap();
    assert_eq!(
        err,
        format!(
            "`{}`: line 1: user \"alice\": plain-text password; hash it with \
             `htpasswd -B` (bcrypt) or argon2",
            f.0.display()
        )
    );
    assert!(!err.contains("s3cret"));
}

#[test]
fn malformed_bcrypt_and_argon2_are_load_errors() {
    let good = bcrypt_of("pw");
    let cases = [
        good[..59].to_string(),           // one byte short
        format!("{}!", &good[..59]),      // not base64
        good.replacen("$04$", "$xx$", 1), // cost not a number
        good.replacen("$04$", "$03$", 1), // cost out of range
        "$2b$".to_string(),               // prefix only
    ];
    for hash in &cases {
        let err = load(&format!("carol:{hash}\n")).err().unwrap();
        assert!(
            err.contains("line 1: user \"carol\": malformed bcrypt hash"),
            "{err}"
        );
    }
    let good = argon2_of("pw", argon2::Algorithm::Argon2id);
    let cases = [
        good.replacen("m=8", "m=1", 1),  // memory under the minimum
        good.replacen("m=8", "q=8", 1),  // unknown parameter
        good.replacen("v=19", "v=7", 1), // unknown version
        good.replacen("$argon2id$", "$argon2x$", 1),
        good[..good.rfind('$').unwrap()].to_string(), // no output
        "$argon2id$v=19$m=8,t=1,p=1$c2FsdA$aGFzaGhhc2hoYXNo".to_string(), // 4-byte salt
        "$argon2id$".to_string(),
    ];
    for hash in &cases {
        let err = load(&format!("dave:{hash}\n")).err().unwrap();
        assert!(
            err.contains("line 1: user \"dave\": malformed argon2 hash"),
            "{hash}: {err}"
        );
    }
}

#[test]
fn duplicate_empty_and_colon_users_are_refused() {
    let h = bcrypt_of("pw");
    let err = load(&format!("alice:{h}\n\nalice:{h}\n")).err().unwrap();
    assert!(
        err.contains("line 3: user \"alice\" is already listed on line 1"),
        "{err}"
    );
    let err = load(&format!(":{h}\n")).err().unwrap();
    assert!(err.contains("line 1: empty user name"), "{err}");
    let err = load(&format!("ali:ce:{h}\n")).err().unwrap();
    assert!(
        err.contains("line 1: user \"ali:ce\" contains `:`"),
        "{err}"
    );
    let err = load(&format!("ali\u{1}ce:{h}\n")).err().unwrap();
    assert!(err.contains("control character"), "{err}");
    let err = load("alice\n").err().unwrap();
    assert!(err.contains("line 1: no `:`"), "{err}");
    // A plain-text password with a colon is not taken for part of the user name.
    let err = load("alice:open:sesame\n").err().unwrap();
    assert!(err.contains("user \"alice\": plain-text password"), "{err}");
    assert!(!err.contains("open") && !err.contains("sesame"), "{err}");
}

#[test]
fn empty_unreadable_and_non_utf8_files_are_refused() {
    for text in ["", "\n\n", "# only a comment\n   \n"] {
        let err = load(text).err().unwrap();
        assert!(err.contains("lists no users"), "{err}");
    }
    let err = Users::load(Path::new("/nonexistent/langur/htpasswd"))
        .err()
        .unwrap();
    assert!(err.starts_with("cannot read users file"), "{err}");
    assert!(err.contains("No such file or directory"), "{err}");
    let f = File::new("");
    std::fs::write(&f.0, b"# ok\n\xff\xfe:x\n").unwrap();
    let err = Users::load(&f.0).err().unwrap();
    assert!(err.contains("line 2: not UTF-8"), "{err}");
}

#[test]
fn debug_shows_users_not_hashes() {
    let users = two_users();
    let text = format!("{users:?}");
    assert!(text.contains("alice") && text.contains("bcrypt"), "{text}");
    assert!(text.contains("bob") && text.contains("argon2"), "{text}");
    assert!(!text.contains('$'), "{text}");
}

#[test]
fn a_second_verify_is_answered_from_the_cache() {
    let users = two_users();
    let t0 = Instant::now();
    assert!(users.verify_at("alice", b"wonderland", t0));
    assert_eq!(users.slow_verifications(), 1);
    assert!(users.verify_at("alice", b"wonderland", t0 + Duration::from_secs(1)));
    assert!(users.verify_at("alice", b"wonderland", t0 + Duration::from_secs(299)));
    assert_eq!(users.slow_verifications(), 1);
    // Another password for the same user is not a hit, and does not evict the entry.
    assert!(!users.verify_at("alice", b"wonderlanD", t0 + Duration::from_secs(2)));
    assert_eq!(users.slow_verifications(), 2);
    assert!(users.verify_at("alice", b"wonderland", t0 + Duration::from_secs(3)));
    assert_eq!(users.slow_verifications(), 2);
    // Another user with alice's password is not a hit either.
    assert!(!users.verify_at("bob", b"wonderland", t0));
    assert_eq!(users.slow_verifications(), 3);
}

#[test]
fn a_failure_is_not_cached() {
    let users = two_users();
    let t0 = Instant::now();
    assert!(!users.verify_at("alice", b"nope", t0));
    assert!(!users.verify_at("alice", b"nope", t0));
    assert!(!users.verify_at("nobody", b"nope", t0));
    assert!(!users.verify_at("nobody", b"nope", t0));
    assert_eq!(users.slow_verifications(), 4);
    assert_eq!(users.cache.len(), 0);
}

#[test]
fn a_cached_verification_expires_after_five_minutes() {
    let users = two_users();
    let t0 = Instant::now();
    assert!(users.verify_at("bob", b"builder", t0));
    assert!(users.verify_at("bob", b"builder", t0 + CACHE_TTL - Duration::from_millis(1)));
    assert_eq!(users.slow_verifications(), 1);
    assert!(users.verify_at("bob", b"builder", t0 + CACHE_TTL));
    assert_eq!(users.slow_verifications(), 2);
    // The new verification starts a new period.
    assert!(users.verify_at("bob", b"builder", t0 + CACHE_TTL + Duration::from_secs(60)));
    assert_eq!(users.slow_verifications(), 2);
}

#[test]
fn the_cache_keeps_at_most_its_bound() {
    let users = two_users();
    let t0 = Instant::now();
    let tag = |u: &str| users.tag(u, b"pw");
    for i in 0..CACHE_ENTRIES + 10 {
        let u = format!("u{i}");
        users
            .cache
            .remember(&u, tag(&u), t0 + Duration::from_millis(i as u64));
    }
    assert_eq!(users.cache.len(), CACHE_ENTRIES);
    // The oldest went first.
    assert!(!users
        .cache
        .hit("u0", &tag("u0"), t0 + Duration::from_secs(2)));
    let last = format!("u{}", CACHE_ENTRIES + 9);
    assert!(users
        .cache
        .hit(&last, &tag(&last), t0 + Duration::from_secs(2)));
    // Expired entries go before live ones.
    let later = t0 + CACHE_TTL + Duration::from_millis(100);
    users.cache.remember("fresh", tag("fresh"), later);
    assert!(users.cache.len() < CACHE_ENTRIES);
    assert!(users.cache.hit("fresh", &tag("fresh"), later));
}

#[test]
fn each_load_has_its_own_key() {
    let a = two_users();
    let b = two_users();
    assert!(a.tag("alice", b"pw") != b.tag("alice", b"pw"));
    assert!(a.tag("alice", b"pw") == a.tag("alice", b"pw"));
    // The user is part of the tag, unambiguously.
    assert!(a.tag("ab", b"c") != a.tag("a", b"bc"));
}

#[tokio::test]
async fn verify_async_runs_a_miss_off_the_loop_and_answers_a_hit_inline() {
    fn sendable<F: std::future::Future + Send>(f: F) -> F {
        f
    }
    let users = Arc::new(two_users());
    assert!(sendable(users.verify_async("alice".into(), b"wonderland".to_vec())).await);
    assert_eq!(users.slow_verifications(), 1);
    assert!(
        users
            .verify_async("alice".into(), b"wonderland".to_vec())
            .await
    );
    assert_eq!(users.slow_verifications(), 1);
    assert!(!users.verify_async("alice".into(), b"x".to_vec()).await);
    assert!(!users.verify_async("zed".into(), b"x".to_vec()).await);
    assert_eq!(users.slow_verifications(), 3);
    let all = (0..8).map(|_| {
        let u = Arc::clone(&users);
        tokio::spawn(async move { u.verify_async("bob".into(), b"builder".to_vec()).await })
    });
    for t in all {
        assert!(t.await.unwrap());
    }
}

#[test]
fn parse_authorization_reads_basic_credentials() {
    // RFC 7617 2's example.
    assert_eq!(
        parse_authorization(&header("Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ==")),
        Some(("Aladdin".to_string(), b"open sesame".to_vec()))
    );
    for scheme in ["basic", "BASIC", "bAsIc"] {
        let v = header(&format!("{scheme} QWxhZGRpbjpvcGVuIHNlc2FtZQ=="));
        assert_eq!(parse_authorization(&v).unwrap().0, "Aladdin");
    }
    assert_eq!(
        parse_authorization(&header("Basic   QWxhZGRpbjpvcGVuIHNlc2FtZQ=="))
            .unwrap()
            .0,
        "Aladdin"
    );
    assert_eq!(
        parse_authorization(&basic(b"alice:")),
        Some(("alice".to_string(), Vec::new()))
    );
    assert_eq!(
        parse_authorization(&basic(b"alice:a:b:c")),
        Some(("alice".to_string(), b"a:b:c".to_vec()))
    );
    assert_eq!(
        parse_authorization(&basic(b":pw")),
        Some((String::new(), b"pw".to_vec()))
    );
    // UTF-8 user (RFC 7617 2.1's charset), password bytes as sent.
    assert_eq!(
        parse_authorization(&basic("test:123\u{a3}".as_bytes())),
        Some(("test".to_string(), "123\u{a3}".as_bytes().to_vec()))
    );
    assert_eq!(
        parse_authorization(&basic(b"\xc3\xa9:\xff")),
        Some(("\u{e9}".to_string(), vec![0xff]))
    );
}

#[test]
fn parse_authorization_refuses_malformed_values() {
    let long = format!("Basic {}", "QUFB".repeat(MAX_AUTHORIZATION_LEN));
    let cases = [
        header("Basic"),
        header("Basic "),
        header("Basic !!!not base64!!!"),
        header("Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ"), // padding missing
        header("Bearer QWxhZGRpbjpvcGVuIHNlc2FtZQ=="),
        header("BasicQWxhZGRpbjpvcGVuIHNlc2FtZQ=="),
        header("Digest username=\"a\""),
        header(""),
        basic(b"no colon here"),
        basic(b"\xff\xfe:pw"),
        basic(b"a\x01b:pw"),
        header(&long),
        HeaderValue::from_bytes(b"Basic \xff\xfe").unwrap(),
    ];
    for v in &cases {
        assert_eq!(parse_authorization(v), None, "{v:?}");
    }
    // Just under the bound still decodes.
    let user = "u".repeat(2000);
    assert!(parse_authorization(&basic(format!("{user}:pw").as_bytes())).is_some());
}

#[test]
fn parse_authorization_never_panics() {
    // Every short value over a small alphabet, and some random bytes.
    let alphabet = b"Basic QWE=:/+ \t\xff";
    let mut v = Vec::new();
    for a in alphabet {
        for b in alphabet {
            for c in alphabet {
                v.clear();
                v.extend_from_slice(b"Basic ");
                v.extend_from_slice(&[*a, *b, *c, b'=']);
                if let Ok(h) = HeaderValue::from_bytes(&v) {
                    let _ = parse_authorization(&h);
                }
            }
        }
    }
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    for len in 0..200 {
        let bytes: Vec<u8> = (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                (x as u8).max(0x20)
            })
            .collect();
        if let Ok(h) = HeaderValue::from_bytes(&bytes) {
            let _ = parse_authorization(&h);
        }
    }
}

#[test]
fn challenge_quotes_and_escapes_the_realm() {
    assert_eq!(
        challenge("staging"),
        "Basic realm=\"staging\", charset=\"UTF-8\""
    );
    assert_eq!(
        challenge(r#"say "hi" \o/"#),
        r#"Basic realm="say \"hi\" \\o/", charset="UTF-8""#
    );
    assert_eq!(challenge(""), "Basic realm=\"\", charset=\"UTF-8\"");
    assert_eq!(
        challenge("a\r\nSet-Cookie: x\u{7f}"),
        "Basic realm=\"aSet-Cookie: x\", charset=\"UTF-8\""
    );
    assert_eq!(
        challenge("caf\u{e9}").as_bytes(),
        "Basic realm=\"caf\u{e9}\", charset=\"UTF-8\"".as_bytes()
    );
}

/// Parameters that would make one check take seconds or gigabytes are refused at load: every
/// request with credentials may cost one check (an unknown user is checked against a listed
/// hash too).
#[test]
fn costs_a_request_cannot_afford_are_refused() {
    let expensive = bcrypt_of("pw").replacen("$04$", "$15$", 1);
    let e = load(&format!("big:{expensive}\n")).unwrap_err();
    assert!(e.contains("cost 15 outside 4..=14"), "{e}");
    let argon = argon2_of("pw", argon2::Algorithm::Argon2id);
    let m = argon.split('$').nth(3).unwrap().to_string();
    let huge = argon.replacen(&m, "m=4294967295,t=1,p=1", 1);
    let e = load(&format!("big:{huge}\n")).unwrap_err();
    assert!(e.contains("above what a request may cost"), "{e}");
    let e = load(&format!(
        "big:{}\n",
        argon.replacen(&m, "m=64,t=100,p=1", 1)
    ))
    .unwrap_err();
    assert!(e.contains("t=100"), "{e}");
}
