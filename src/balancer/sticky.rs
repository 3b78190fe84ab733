//! Cookie persistence (a pool's `sticky`), HAProxy's `cookie NAME insert indirect` and
//! `cookie NAME prefix`: which server a request's cookie names, the request's `Cookie` fields
//! without langur's part (so servers never see it), and the `Set-Cookie` that keeps a client
//! on the server that answered. Pure: the key comes in; no clock, no IO.
//!
//! A server's value is 32 lowercase hex digits: the first 128 bits of BLAKE2b keyed with the
//! pool's key over the pool's and the server's names. It says nothing about the server (no
//! address), stays the same across reloads (and restarts, under a configured `secret`), and
//! cannot be guessed without the key, so a client cannot pick a server it was not given. The
//! client's cookie is untrusted input: a value that is not exactly one of the pool's is ignored.
//!
//! Fields are split as RFC 6265 (4.2.1, 5.4) writes them: `Cookie` pairs at `;`, a pair at its
//! first `=`; a `Set-Cookie`'s name and value before its first `;`. Bytes outside the pairs
//! langur changes pass as they came.

use crate::config::sticky::{StickyConfig, StickyMode};
use blake2::digest::consts::U16;
use blake2::digest::{KeyInit, Mac};
use http::header::{COOKIE, SET_COOKIE};
use http::{HeaderMap, HeaderValue};

/// The length of a server's value, in hex digits.
pub const VALUE_LEN: usize = 32;
/// Between the server's value and the application's in prefix mode (HAProxy's).
pub const PREFIX_SEP: u8 = b'~';

type Keyed = blake2::Blake2bMac<U16>;

/// A pool's cookie persistence: the cookie, the mode and every server's value.
#[derive(Debug)]
pub struct Sticky {
    pub cookie: Box<str>,
    pub mode: StickyMode,
    /// Each server's value, by its index in the pool.
    values: Vec<u128>,
    /// Insert mode: each server's `Set-Cookie`, without and with `Secure`.
    set_cookie: Vec<[HeaderValue; 2]>,
    /// `Secure` always, never, or on HTTPS answers only (`None`).
    secure: Option<bool>,
}

/// A server's value under `key`: keyed BLAKE2b over the pool's name, a zero byte and the
/// server's name.
pub fn value_of(key: &[u8; 32], pool: &str, server: &str) -> u128 {
    let mut mac = <Keyed as KeyInit>::new_from_slice(key).expect("a 32-byte key fits BLAKE2b");
    mac.update(pool.as_bytes());
    mac.update(&[0]);
    mac.update(server.as_bytes());
    let out = mac.finalize().into_bytes();
    let mut b = [0u8; 16];
    b.copy_from_slice(&out);
    u128::from_be_bytes(b)
}

/// The value as sent: 32 lowercase hex digits.
pub fn hex(v: u128) -> String {
    format!("{v:032x}")
}

/// A value as a client sent it: exactly 32 lowercase hex digits, else `None`.
fn parse(v: &[u8]) -> Option<u128> {
    if v.len() != VALUE_LEN || !v.iter().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
        return None;
    }
    u128::from_str_radix(std::str::from_utf8(v).ok()?, 16).ok()
}

/// The `name=value` pairs of a `Cookie` field: (name, value) with spaces around them trimmed.
fn pairs(field: &[u8]) -> impl Iterator<Item = (&[u8], &[u8])> {
    field.split(|b| *b == b';').filter_map(|p| {
        let p = p.trim_ascii();
        let eq = p.iter().position(|b| *b == b'=')?;
        Some((p[..eq].trim_ascii(), p[eq + 1..].trim_ascii()))
    })
}

impl Sticky {
    /// `servers`: the pool's server names in pool order. `key`: the configured secret's hash or
    /// the process's random key.
    pub fn new(c: &StickyConfig, key: &[u8; 32], pool: &str, servers: &[&str]) -> Sticky {
        let values: Vec<u128> = servers.iter().map(|s| value_of(key, pool, s)).collect();
        let set_cookie = values
            .iter()
            .map(|v| [false, true].map(|secure| set_cookie(c, *v, secure)))
            .collect();
        Sticky {
            cookie: c.cookie.as_str().into(),
            mode: c.mode,
            values,
            set_cookie,
            secure: c.secure,
        }
    }

    /// The server's value (for tests and the documentation's examples).
    pub fn value(&self, i: usize) -> u128 {
        self.values[i]
    }

    /// The server whose value this is, if any.
    fn server(&self, value: &[u8]) -> Option<usize> {
        let v = parse(value)?;
        self.values.iter().position(|x| *x == v)
    }

    /// The server the request's cookie names (the first pair that names one), changing
    /// nothing.
    pub fn named(&self, headers: &HeaderMap) -> Option<usize> {
        let name = self.cookie.as_bytes();
        headers
            .get_all(COOKIE)
            .iter()
            .flat_map(|f| pairs(f.as_bytes()))
            .filter(|(n, _)| *n == name)
            .find_map(|(_, v)| match self.mode {
                StickyMode::Insert => self.server(v),
                StickyMode::Prefix => Self::split_prefix(v).and_then(|(s, _)| self.server(s)),
            })
    }

    /// In prefix mode, a value written `SERVER~APP`: the server's part and the application's.
    fn split_prefix(value: &[u8]) -> Option<(&[u8], &[u8])> {
        (value.len() > VALUE_LEN && value[VALUE_LEN] == PREFIX_SEP)
            .then(|| (&value[..VALUE_LEN], &value[VALUE_LEN + 1..]))
            .filter(|(v, _)| parse(v).is_some())
    }

    /// Reads the request's `Cookie` fields: the server the cookie names (the first that names
    /// one), and the fields as the server gets them: in insert mode without langur's cookie,
    /// in prefix mode with the server's part taken off the application's value. Fields that
    /// hold no pair of the cookie's name are not touched (and nothing is allocated).
    pub fn take(&self, headers: &mut HeaderMap) -> Option<usize> {
        let name = self.cookie.as_bytes();
        let ours = |n: &[u8], v: &[u8]| {
            n == name && (self.mode == StickyMode::Insert || Self::split_prefix(v).is_some())
        };
        let fields = headers.get_all(COOKIE);
        if !fields
            .iter()
            .any(|f| pairs(f.as_bytes()).any(|(n, v)| ours(n, v)))
        {
            return None;
        }
        let old: Vec<HeaderValue> = fields.iter().cloned().collect();
        headers.remove(COOKIE);
        let mut named = None;
        for field in &old {
            let mut out: Vec<u8> = Vec::with_capacity(field.len());
            for (n, v) in pairs(field.as_bytes()) {
                let kept = if !ours(n, v) {
                    Some(v)
                } else {
                    let (server, app) = match self.mode {
                        StickyMode::Insert => (v, None),
                        StickyMode::Prefix => {
                            Self::split_prefix(v).map_or((v, Some(v)), |(s, a)| (s, Some(a)))
                        }
                    };
                    named = named.or_else(|| self.server(server));
                    app
                };
                if let Some(v) = kept {
                    if !out.is_empty() {
                        out.extend_from_slice(b"; ");
                    }
                    out.extend_from_slice(n);
                    out.push(b'=');
                    out.extend_from_slice(v);
                }
            }
            if out.is_empty() {
                continue;
            }
            if let Ok(v) = HeaderValue::from_bytes(&out) {
                headers.append(COOKIE, v);
            }
        }
        named
    }

    /// Marks the response of server `i`: in insert mode, a `Set-Cookie` naming it unless the
    /// request's cookie named it already (`named`); in prefix mode, the server's value put in
    /// front of the application's in every `Set-Cookie` of the cookie's name. `https`: the
    /// request came over TLS (`Secure` when `secure` is not set).
    pub fn stamp(&self, headers: &mut HeaderMap, i: usize, named: Option<usize>, https: bool) {
        match self.mode {
            StickyMode::Insert => {
                if named != Some(i) {
                    let secure = self.secure.unwrap_or(https);
                    headers.append(SET_COOKIE, self.set_cookie[i][secure as usize].clone());
                }
            }
            StickyMode::Prefix => self.prefix_set_cookies(headers, i),
        }
    }

    fn prefix_set_cookies(&self, headers: &mut HeaderMap, i: usize) {
        let name = self.cookie.as_bytes();
        let is_ours = |f: &HeaderValue| pairs_head(f.as_bytes()).is_some_and(|(n, _, _)| n == name);
        if !headers.get_all(SET_COOKIE).iter().any(is_ours) {
            return;
        }
        let old: Vec<HeaderValue> = headers.get_all(SET_COOKIE).iter().cloned().collect();
        headers.remove(SET_COOKIE);
        let prefix = hex(self.values[i]);
        for f in old {
            let b = f.as_bytes();
            let new = match pairs_head(b) {
                Some((n, at, _)) if n == name => {
                    let mut out = Vec::with_capacity(b.len() + VALUE_LEN + 1);
                    out.extend_from_slice(&b[..at]);
                    out.extend_from_slice(prefix.as_bytes());
                    out.push(PREFIX_SEP);
                    out.extend_from_slice(&b[at..]);
                    HeaderValue::from_bytes(&out).unwrap_or(f)
                }
                _ => f,
            };
            headers.append(SET_COOKIE, new);
        }
    }
}

/// A `Set-Cookie` field's name, where its value starts, and the value (RFC 6265 5.2: before
/// the first `;`, split at the first `=`, spaces trimmed).
fn pairs_head(field: &[u8]) -> Option<(&[u8], usize, &[u8])> {
    let end = field.iter().position(|b| *b == b';').unwrap_or(field.len());
    let eq = field[..end].iter().position(|b| *b == b'=')?;
    let name = field[..eq].trim_ascii();
    let lead = field[eq + 1..end]
        .iter()
        .take_while(|b| **b == b' ' || **b == b'\t')
        .count();
    let at = eq + 1 + lead;
    Some((name, at, field[at..end].trim_ascii()))
}

/// The `Set-Cookie` of insert mode for one server.
fn set_cookie(c: &StickyConfig, value: u128, secure: bool) -> HeaderValue {
    let mut s = format!("{}={}; Path=/", c.cookie, hex(value));
    if let Some(age) = c.max_age {
        s.push_str(&format!("; Max-Age={}", age.as_secs().max(1)));
    }
    if let Some(d) = &c.domain {
        s.push_str(&format!("; Domain={d}"));
    }
    if c.secure.unwrap_or(secure) {
        s.push_str("; Secure");
    }
    if c.httponly {
        s.push_str("; HttpOnly");
    }
    HeaderValue::from_str(&s).expect("a cookie token, hex digits and a host name")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(mode: StickyMode) -> StickyConfig {
        StickyConfig {
            cookie: "SRV".into(),
            mode,
            max_age: Some(std::time::Duration::from_secs(3600)),
            secure: None,
            httponly: true,
            domain: None,
            secret: None,
        }
    }

    fn headers(cookies: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for c in cookies {
            h.append(COOKIE, HeaderValue::from_str(c).unwrap());
        }
        h
    }

    fn cookies(h: &HeaderMap) -> Vec<&str> {
        h.get_all(COOKIE)
            .iter()
            .map(|v| v.to_str().unwrap())
            .collect()
    }

    const KEY: [u8; 32] = [7; 32];

    #[test]
    fn values_are_keyed_opaque_and_distinct() {
        let a = value_of(&KEY, "web", "a");
        assert_eq!(a, value_of(&KEY, "web", "a"));
        assert_ne!(a, value_of(&KEY, "web", "b"));
        assert_ne!(a, value_of(&KEY, "api", "a"));
        assert_ne!(a, value_of(&[8; 32], "web", "a"));
        // The pool and server names are framed: ("ab", "c") is not ("a", "bc").
        assert_ne!(value_of(&KEY, "ab", "c"), value_of(&KEY, "a", "bc"));
        assert_eq!(hex(a).len(), VALUE_LEN);
    }

    #[test]
    fn insert_mode_reads_and_removes_its_cookie() {
        let s = Sticky::new(&config(StickyMode::Insert), &KEY, "web", &["a", "b"]);
        let b = hex(s.value(1));
        let mut h = headers(&[&format!("theme=dark; SRV={b}; x=1"), "y=2"]);
        assert_eq!(s.named(&h), Some(1));
        assert_eq!(s.take(&mut h), Some(1));
        assert_eq!(cookies(&h), ["theme=dark; x=1", "y=2"]);
        // Only langur's cookie: the field goes.
        let mut h = headers(&[&format!("SRV={b}")]);
        assert_eq!(s.take(&mut h), Some(1));
        assert!(h.get(COOKIE).is_none());
        // Unknown, malformed, upper-case or signed values are ignored (and still removed).
        for bad in [
            "0".repeat(32),
            b.to_uppercase(),
            format!("+{}", &b[1..]),
            format!("{b}0"),
            "SRV".into(),
            String::new(),
        ] {
            let mut h = headers(&[&format!("SRV={bad}; k=v")]);
            assert_eq!(s.take(&mut h), None, "{bad}");
            assert_eq!(cookies(&h), ["k=v"]);
        }
        // No cookie of that name: the fields are not touched.
        let mut h = headers(&["srv=1;a=b"]);
        assert_eq!(s.take(&mut h), None);
        assert_eq!(cookies(&h), ["srv=1;a=b"]);
    }

    #[test]
    fn insert_mode_sets_the_cookie_unless_it_named_the_server() {
        let s = Sticky::new(&config(StickyMode::Insert), &KEY, "web", &["a", "b"]);
        let mut h = HeaderMap::new();
        s.stamp(&mut h, 0, Some(0), false);
        assert!(h.get(SET_COOKIE).is_none());
        s.stamp(&mut h, 0, Some(1), false);
        let want = format!("SRV={}; Path=/; Max-Age=3600; HttpOnly", hex(s.value(0)));
        assert_eq!(h[SET_COOKIE], want.as_str());
        let mut h = HeaderMap::new();
        s.stamp(&mut h, 1, None, true);
        let want = format!(
            "SRV={}; Path=/; Max-Age=3600; Secure; HttpOnly",
            hex(s.value(1))
        );
        assert_eq!(h[SET_COOKIE], want.as_str());
    }

    #[test]
    fn prefix_mode_wraps_the_applications_cookie() {
        let mut c = config(StickyMode::Prefix);
        c.cookie = "JSESSIONID".into();
        let s = Sticky::new(&c, &KEY, "web", &["a", "b"]);
        let b = hex(s.value(1));
        let mut h = HeaderMap::new();
        h.append(SET_COOKIE, HeaderValue::from_static("other=1; Path=/"));
        h.append(
            SET_COOKIE,
            HeaderValue::from_static("JSESSIONID= abc; Path=/; HttpOnly"),
        );
        s.stamp(&mut h, 1, None, false);
        let set: Vec<&str> = h
            .get_all(SET_COOKIE)
            .iter()
            .map(|v| v.to_str().unwrap())
            .collect();
        assert_eq!(
            set,
            [
                "other=1; Path=/",
                &format!("JSESSIONID= {b}~abc; Path=/; HttpOnly")
            ]
        );
        // On the way in the prefix comes off, known or not; other values pass untouched.
        let mut h = headers(&[&format!("a=1; JSESSIONID={b}~abc")]);
        assert_eq!(s.take(&mut h), Some(1));
        assert_eq!(cookies(&h), ["a=1; JSESSIONID=abc"]);
        let unknown = "f".repeat(32);
        let mut h = headers(&[&format!("JSESSIONID={unknown}~abc")]);
        assert_eq!(s.take(&mut h), None);
        assert_eq!(cookies(&h), ["JSESSIONID=abc"]);
        for plain in [
            "JSESSIONID=abc",
            "JSESSIONID=~abc",
            &format!("JSESSIONID={}~x", &b[1..]),
        ] {
            let mut h = headers(&[plain]);
            assert_eq!(s.take(&mut h), None);
            assert_eq!(cookies(&h), [plain]);
        }
        // No Set-Cookie of that name: nothing changes.
        let mut h = HeaderMap::new();
        s.stamp(&mut h, 0, None, false);
        assert!(h.is_empty());
    }
}
