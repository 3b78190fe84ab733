//! `sticky` on a pool: cookie persistence as written ([`RawSticky`]) and validated
//! ([`StickyConfig`]). The decisions are the balancer's (`balancer::sticky`).

use super::{At, Diag};
use std::time::Duration;

pub const STICKY_KEYS: &[&str] = &[
    "cookie", "mode", "max_age", "secure", "httponly", "domain", "secret",
];

/// How the cookie names the server (HAProxy's `cookie` modes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StickyMode {
    /// langur's own cookie, set on the response of a client that has none (or one naming
    /// another server) and removed from requests before they reach the server (HAProxy's
    /// `insert indirect`).
    Insert,
    /// The application's own session cookie, its value prefixed with the server's and `~` on
    /// the way out and the prefix removed on the way in (HAProxy's `prefix`).
    Prefix,
}

/// `sticky = { ... }` as written.
#[derive(Debug, Clone, Default)]
pub(crate) struct RawSticky {
    pub line: usize,
    pub cookie: Option<At<String>>,
    pub mode: Option<At<String>>,
    pub max_age: Option<At<Duration>>,
    pub secure: Option<At<bool>>,
    pub httponly: Option<At<bool>>,
    pub domain: Option<At<String>>,
    pub secret: Option<At<String>>,
}

/// A pool's cookie persistence, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StickyConfig {
    /// The cookie's name (an RFC 6265 token).
    pub cookie: String,
    pub mode: StickyMode,
    /// Insert mode: `Max-Age` of the cookie set (`None`: a session cookie, gone when the
    /// browser closes).
    pub max_age: Option<Duration>,
    /// Insert mode: `Secure` always (`Some(true)`), never (`Some(false)`) or on answers to
    /// HTTPS requests only (`None`, the default).
    pub secure: Option<bool>,
    /// Insert mode: `HttpOnly` (the default), so scripts in the page cannot read it.
    pub httponly: bool,
    /// Insert mode: `Domain`, if any (else the cookie goes back to the host that set it).
    pub domain: Option<String>,
    /// The key of the servers' values: the same on every instance behind one name, so a
    /// client's cookie is good on all of them and across restarts (`None`: a random key per
    /// process).
    pub secret: Option<String>,
}

/// RFC 6265 4.1.1: a cookie name is an RFC 9110 token.
fn is_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

/// Checks `sticky`: a cookie name, a known mode, and the insert-only keys only in insert mode;
/// each problem is reported on its line with its key.
pub(crate) fn sticky(raw: &RawSticky, diag: &mut Diag) -> Option<StickyConfig> {
    let mut ok = true;
    let cookie = match &raw.cookie {
        Some(c) if is_token(&c.value) => c.value.clone(),
        Some(c) => {
            let msg = format!("`sticky.cookie` must be a cookie name (letters, digits and !#$%&'*+-.^_`|~), not `{}`", c.value);
            diag.error(c.line, Some("cookie"), msg);
            return None;
        }
        None => {
            let msg = "`sticky` needs `cookie = \"NAME\"`: the cookie that names the server";
            diag.error(raw.line, Some("cookie"), msg);
            return None;
        }
    };
    let mode = match raw.mode.as_ref().map(|m| (m, m.value.to_ascii_lowercase())) {
        None => StickyMode::Insert,
        Some((_, m)) if m == "insert" => StickyMode::Insert,
        Some((_, m)) if m == "prefix" => StickyMode::Prefix,
        Some((m, _)) => {
            let msg = format!(
                "`sticky.mode` must be \"insert\" or \"prefix\", not `{}`",
                m.value
            );
            diag.error(m.line, Some("mode"), msg);
            return None;
        }
    };
    if mode == StickyMode::Prefix {
        let lines = [
            ("max_age", raw.max_age.as_ref().map(|a| a.line)),
            ("secure", raw.secure.as_ref().map(|a| a.line)),
            ("httponly", raw.httponly.as_ref().map(|a| a.line)),
            ("domain", raw.domain.as_ref().map(|a| a.line)),
        ];
        for (key, line) in lines {
            if let Some(line) = line {
                let msg = format!("`sticky.{key}` is for mode \"insert\": in mode \"prefix\" the application's cookie keeps its own attributes");
                diag.error(line, Some(key), msg);
                ok = false;
            }
        }
    }
    if let Some(a) = raw.max_age.as_ref().filter(|a| a.value.is_zero()) {
        let msg = "`sticky.max_age` must be more than zero (leave it out for a session cookie)";
        diag.error(a.line, Some("max_age"), msg);
        ok = false;
    }
    if let Some(d) = &raw.domain {
        let good = !d.value.is_empty()
            && d.value
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-');
        if !good {
            let msg = format!("`sticky.domain` must be a host name, not `{}`", d.value);
            diag.error(d.line, Some("domain"), msg);
            ok = false;
        }
    }
    if let Some(s) = raw.secret.as_ref().filter(|s| s.value.len() < 16) {
        let msg = "`sticky.secret` must be at least 16 characters (a random string; the same on every instance)";
        diag.error(s.line, Some("secret"), msg);
        ok = false;
    }
    ok.then(|| StickyConfig {
        cookie,
        mode,
        max_age: raw.max_age.as_ref().map(|a| a.value),
        secure: raw.secure.as_ref().map(|s| s.value),
        httponly: raw.httponly.as_ref().map_or(true, |h| h.value),
        domain: raw.domain.as_ref().map(|d| d.value.clone()),
        secret: raw.secret.as_ref().map(|s| s.value.clone()),
    })
}
