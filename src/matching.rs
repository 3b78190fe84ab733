//! Request matchers of a route (besides the path patterns of `match`): `host`, `path`,
//! `path_prefix`, `methods`, `headers`, `query` and `source`. A route matches when every
//! matcher it has does. These are the validated values (built by config validation) and pure
//! functions over a request's parts; the router indexes the hosts.

use http::header::{HeaderMap, HeaderName};
use http::Method;
use ipnet::IpNet;
use regex::Regex;
use std::borrow::Cow;
use std::net::IpAddr;

/// One entry of a route's `host` list (RFC 9110 7.2: the authority's host, compared without
/// the port, case-insensitively).
#[derive(Debug, Clone)]
pub enum HostPattern {
    /// `example.com`: this name only (stored lower case, without a trailing dot).
    Exact(Box<str>),
    /// `*.example.com`: exactly one more label in front of the suffix (stored without `*.`).
    Wildcard(Box<str>),
    /// `~regex`: searched in the host (anchor it to mean the whole name).
    Regex(Regex),
}

impl HostPattern {
    /// Parses one `host` entry. Errors: an empty name, a `*` anywhere but a leading `*.`, a
    /// regex that does not compile, characters a host name cannot have.
    pub fn parse(text: &str) -> Result<HostPattern, String> {
        if let Some(re) = text.strip_prefix('~') {
            // Hosts are matched lower case, so the regex ignores case (else `~^API` could
            // never match).
            return regex::RegexBuilder::new(re)
                .case_insensitive(true)
                .build()
                .map(HostPattern::Regex)
                .map_err(|e| format!("host regex `{re}` does not compile: {e}"));
        }
        let lower = text.trim_end_matches('.').to_ascii_lowercase();
        let (wild, name) = match lower.strip_prefix("*.") {
            Some(rest) => (true, rest.to_string()),
            None => (false, lower),
        };
        let ok =
            |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_' | ':' | '[' | ']');
        if name.is_empty() || !name.chars().all(ok) || name.starts_with('.') || name.contains("..")
        {
            return Err(format!(
                "host `{text}` is not a host name (write `example.com`, `*.example.com` or `~regex`)"
            ));
        }
        if name.contains(':') && !name.starts_with('[') {
            return Err(format!(
                "host `{text}` has a port: hosts are matched without one"
            ));
        }
        Ok(if wild {
            HostPattern::Wildcard(name.into())
        } else {
            HostPattern::Exact(name.into())
        })
    }

    /// Whether `host` (as [`request_host`] gives it) matches.
    pub fn matches(&self, host: &str) -> bool {
        match self {
            HostPattern::Exact(n) => **n == *host,
            HostPattern::Wildcard(suffix) => parent(host) == Some(suffix),
            HostPattern::Regex(re) => re.is_match(host),
        }
    }
}

impl HostPattern {
    /// Whether every host `other` matches, this matches too (for the shadowing warning):
    /// `*.example.com` covers `a.example.com`, a regex covers the names it matches.
    pub fn covers(&self, other: &HostPattern) -> bool {
        match (self, other) {
            (_, HostPattern::Exact(n)) => self.matches(n),
            (HostPattern::Wildcard(a), HostPattern::Wildcard(b)) => a == b,
            (HostPattern::Regex(a), HostPattern::Regex(b)) => a.as_str() == b.as_str(),
            _ => false,
        }
    }
}

/// The name under a host's first label (`a.example.com` → `example.com`), which is what a
/// one-label wildcard is looked up by.
pub fn parent(host: &str) -> Option<&str> {
    let (first, rest) = host.split_once('.')?;
    (!first.is_empty() && !rest.is_empty()).then_some(rest)
}

/// A value condition of `headers` or `query`: `"text"` (equal), `"~regex"` (searched), `"!"`
/// (absent).
#[derive(Debug, Clone)]
pub enum ValueMatch {
    Exact(Box<str>),
    Regex(Regex),
    Absent,
}

impl ValueMatch {
    /// Parses a condition. Errors: a regex that does not compile.
    pub fn parse(text: &str) -> Result<ValueMatch, String> {
        if text == "!" {
            return Ok(ValueMatch::Absent);
        }
        match text.strip_prefix('~') {
            Some(re) => Regex::new(re)
                .map(ValueMatch::Regex)
                .map_err(|e| format!("regex `{re}` does not compile: {e}")),
            None => Ok(ValueMatch::Exact(text.into())),
        }
    }

    /// Whether the values present (none: the field is absent) satisfy the condition: one of
    /// them must match (`Absent`: there must be none).
    pub fn matches<'a>(&self, mut values: impl Iterator<Item = &'a [u8]>) -> bool {
        match self {
            ValueMatch::Absent => values.next().is_none(),
            ValueMatch::Exact(want) => values.any(|v| v == want.as_bytes()),
            ValueMatch::Regex(re) => {
                values.any(|v| std::str::from_utf8(v).is_ok_and(|s| re.is_match(s)))
            }
        }
    }
}

/// The matchers of a route other than its path patterns (`match`). Empty lists match all.
#[derive(Debug, Clone, Default)]
pub struct RequestMatch {
    pub hosts: Vec<HostPattern>,
    /// `path`: the path equals this (no query).
    pub path: Option<String>,
    /// `path_prefix`, stored without a trailing `/` (`/` itself is stored as the empty string).
    pub path_prefix: Option<String>,
    pub methods: Vec<Method>,
    pub headers: Vec<(HeaderName, ValueMatch)>,
    /// `query`: names and conditions on the decoded value (`application/x-www-form-urlencoded`).
    pub query: Vec<(String, ValueMatch)>,
    /// `source`: the client address is in one of these networks.
    pub source: Vec<IpNet>,
    /// `client_cert`: `Some(true)`, the TLS handshake verified a client certificate
    /// (`"verified"`); `Some(false)`, none was presented (`"none"`).
    pub client_cert: Option<bool>,
    /// `client_cert_subject`: the verified certificate's subject (RFC 4514) meets this; a
    /// request without a verified certificate does not match.
    pub client_subject: Option<ValueMatch>,
}

/// The matcher that kept a route from matching a request (what `langur explain` reports), by
/// its configuration key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Miss<'a> {
    Host,
    /// `match`: none of the route's path patterns is found in the path.
    Match,
    Path,
    PathPrefix,
    Methods,
    /// `headers`: this field's condition does not hold.
    Header(&'a HeaderName),
    /// `query`: this parameter's condition does not hold.
    Query(&'a str),
    Source,
    ClientCert,
    ClientCertSubject,
}

impl std::fmt::Display for Miss<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Miss::Host => f.write_str("host"),
            Miss::Match => f.write_str("match"),
            Miss::Path => f.write_str("path"),
            Miss::PathPrefix => f.write_str("path_prefix"),
            Miss::Methods => f.write_str("methods"),
            Miss::Header(n) => write!(f, "headers.{n}"),
            Miss::Query(n) => write!(f, "query.{n}"),
            Miss::Source => f.write_str("source"),
            Miss::ClientCert => f.write_str("client_cert"),
            Miss::ClientCertSubject => f.write_str("client_cert_subject"),
        }
    }
}

/// What matching reads of a request.
pub struct Input<'a> {
    /// As [`request_host`] gives it ("" when the request names none).
    pub host: &'a str,
    pub path: &'a str,
    pub query: Option<&'a str>,
    pub method: &'a Method,
    pub headers: &'a HeaderMap,
    pub source: IpAddr,
    /// The client certificate the connection's handshake verified.
    pub client_cert: Option<&'a crate::tls::ClientCert>,
}

impl RequestMatch {
    /// Whether the route has no matcher besides its path patterns.
    pub fn is_empty(&self) -> bool {
        self.hosts.is_empty() && self.is_path_only()
    }

    /// Whether the route has no matcher besides `host` and its path patterns.
    pub fn is_path_only(&self) -> bool {
        self.path.is_none()
            && self.path_prefix.is_none()
            && self.methods.is_empty()
            && self.headers.is_empty()
            && self.query.is_empty()
            && self.source.is_empty()
            && self.client_cert.is_none()
            && self.client_subject.is_none()
    }

    /// Whether every matcher but `host` (which the router's index has checked) matches.
    #[inline]
    pub fn matches_rest(&self, req: &Input<'_>) -> bool {
        self.miss_rest(req).is_none()
    }

    /// The first matcher but `host` that does not match, in the order they are checked
    /// (`path`, `path_prefix`, `methods`, `headers`, `query`, `source`, `client_cert`,
    /// `client_cert_subject`); `None`: all match.
    pub fn miss_rest(&self, req: &Input<'_>) -> Option<Miss<'_>> {
        if !self.path.as_deref().map_or(true, |p| p == req.path) {
            return Some(Miss::Path);
        }
        if !self
            .path_prefix
            .as_deref()
            .map_or(true, |p| prefix_matches(p, req.path))
        {
            return Some(Miss::PathPrefix);
        }
        if !(self.methods.is_empty() || self.methods.contains(req.method)) {
            return Some(Miss::Methods);
        }
        let header = self.headers.iter().find(|(name, cond)| {
            !cond.matches(req.headers.get_all(name).iter().map(|v| v.as_bytes()))
        });
        if let Some((name, _)) = header {
            return Some(Miss::Header(name));
        }
        let query = self.query.iter().find(|(name, cond)| {
            let values = query_values(req.query, name);
            !cond.matches(values.iter().map(|v| v.as_bytes()))
        });
        if let Some((name, _)) = query {
            return Some(Miss::Query(name));
        }
        if !(self.source.is_empty() || self.source.iter().any(|n| n.contains(&req.source))) {
            return Some(Miss::Source);
        }
        if !self
            .client_cert
            .map_or(true, |want| want == req.client_cert.is_some())
        {
            return Some(Miss::ClientCert);
        }
        let subject = |cond: &ValueMatch| {
            req.client_cert
                .is_some_and(|c| cond.matches(std::iter::once(c.subject.as_bytes())))
        };
        if !self.client_subject.as_ref().map_or(true, subject) {
            return Some(Miss::ClientCertSubject);
        }
        None
    }

    /// Whether the request's host (as [`request_host`] gives it) is one of `host`'s, or the
    /// route has no `host` (what the router's host index decides, one pattern at a time).
    pub fn host_matches(&self, host: &str) -> bool {
        self.hosts.is_empty() || self.hosts.iter().any(|h| h.matches(host))
    }

    /// Whether this route's matchers take every request that `later`'s do, ignoring path
    /// patterns: hosts covering all of the later route's (or none), and nothing else but a
    /// prefix that covers the later route's. `langur check` warns about a route shadowed this way.
    pub fn covers(&self, later: &RequestMatch) -> bool {
        let same_hosts = self.hosts.is_empty()
            || (!later.hosts.is_empty()
                && later
                    .hosts
                    .iter()
                    .all(|h| self.hosts.iter().any(|p| p.covers(h))));
        let prefix_covers = match (&self.path_prefix, &later.path_prefix, &later.path) {
            (None, _, _) => true,
            (Some(p), Some(q), _) => prefix_matches(p, if q.is_empty() { "/" } else { q }),
            (Some(p), None, Some(exact)) => prefix_matches(p, exact),
            (Some(p), None, None) => p.is_empty(),
        };
        same_hosts
            && prefix_covers
            && self.path.is_none()
            && self.methods.is_empty()
            && self.headers.is_empty()
            && self.query.is_empty()
            && self.source.is_empty()
            && self.client_cert.is_none()
            && self.client_subject.is_none()
    }
}

/// Segment-aware prefix (stored without its trailing `/`): `/api` matches `/api`, `/api/`
/// and `/api/x`, not `/apix`. The empty prefix (`/`) matches every path.
pub fn prefix_matches(prefix: &str, path: &str) -> bool {
    match path.strip_prefix(prefix) {
        // `;` parameters and an encoded slash end a segment for many servers (Tomcat, Spring;
        // those that decode `%2F`): `/admin;x` and `/admin%2Fx` are under `/admin`.
        Some(rest) => {
            rest.is_empty()
                || rest.starts_with(['/', ';'])
                || rest.starts_with("%2F")
                || prefix.is_empty()
        }
        None => false,
    }
}

/// Normalises a `path_prefix` as written: a leading `/` is required; a trailing one is dropped.
pub fn parse_prefix(text: &str) -> Result<String, String> {
    if !text.starts_with('/') {
        return Err(format!("path_prefix `{text}` must start with `/`"));
    }
    Ok(text.trim_end_matches('/').to_string())
}

/// The decoded values of query parameter `name` (form encoding: `+` is a space).
fn query_values<'a>(query: Option<&'a str>, name: &str) -> Vec<Cow<'a, str>> {
    let Some(q) = query else {
        return Vec::new();
    };
    form_urlencoded::parse(q.as_bytes())
        .filter(|(k, _)| k == name)
        .map(|(_, v)| v)
        .collect()
}

/// The host a request names, for matching: the request target's authority (absolute form,
/// HTTP/2 `:authority`), else `Host`; port and a trailing dot removed, lower case. `None`
/// when neither is there or it is not text.
pub fn request_host<'a>(uri: &'a http::Uri, headers: &'a HeaderMap) -> Option<Cow<'a, str>> {
    let raw = match uri.authority() {
        Some(a) => a.as_str(),
        None => headers.get(http::header::HOST)?.to_str().ok()?,
    };
    let host = strip_port(raw.trim());
    let host = host.strip_suffix('.').unwrap_or(host);
    Some(if host.bytes().any(|b| b.is_ascii_uppercase()) {
        Cow::Owned(host.to_ascii_lowercase())
    } else {
        Cow::Borrowed(host)
    })
}

/// `example.com:8080` → `example.com`; `[::1]:8080` → `[::1]`.
fn strip_port(authority: &str) -> &str {
    if authority.starts_with('[') {
        return match authority.find(']') {
            Some(end) => &authority[..=end],
            None => authority,
        };
    }
    match authority.rsplit_once(':') {
        Some((h, port)) if port.bytes().all(|b| b.is_ascii_digit()) => h,
        _ => authority,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host(h: &str) -> String {
        let mut headers = HeaderMap::new();
        headers.insert(http::header::HOST, h.parse().unwrap());
        request_host(&http::Uri::from_static("/"), &headers)
            .unwrap()
            .into_owned()
    }

    #[test]
    fn hosts_lose_port_dot_and_case() {
        assert_eq!(host("Example.COM:8080"), "example.com");
        assert_eq!(host("example.com."), "example.com");
        assert_eq!(host("[::1]:443"), "[::1]");
        assert_eq!(host("10.0.0.1"), "10.0.0.1");
        let uri: http::Uri = "http://Other.Example:81/x".parse().unwrap();
        let mut h = HeaderMap::new();
        h.insert(http::header::HOST, "ignored".parse().unwrap());
        assert_eq!(request_host(&uri, &h).unwrap(), "other.example");
        assert!(request_host(&http::Uri::from_static("/"), &HeaderMap::new()).is_none());
    }

    #[test]
    fn host_patterns() {
        let p = |s: &str| HostPattern::parse(s).unwrap();
        assert!(p("Example.com").matches("example.com"));
        assert!(!p("example.com").matches("www.example.com"));
        assert!(p("*.example.com").matches("a.example.com"));
        assert!(!p("*.example.com").matches("example.com"));
        assert!(!p("*.example.com").matches("a.b.example.com"));
        assert!(p(r"~^api[0-9]+\.example\.net$").matches("api7.example.net"));
        assert!(!p(r"~^api[0-9]+\.example\.net$").matches("api.example.net"));
        assert!(p(r"~^API[0-9]+\.").matches("api7.example.net"));
        for bad in [
            "",
            "*",
            "a.*.com",
            "ex ample.com",
            "example.com:80",
            "~(",
            ".x",
            "a..b",
        ] {
            assert!(HostPattern::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn prefixes_are_segment_aware() {
        let p = parse_prefix("/api/").unwrap();
        assert_eq!(p, "/api");
        assert!(prefix_matches(&p, "/api"));
        assert!(prefix_matches(&p, "/api/"));
        assert!(prefix_matches(&p, "/api/x"));
        assert!(!prefix_matches(&p, "/apix"));
        assert!(prefix_matches(&p, "/api;jsessionid=1"));
        assert!(prefix_matches(&p, "/api%2Fx"));
        assert!(!prefix_matches(&p, "/ap"));
        let root = parse_prefix("/").unwrap();
        assert!(prefix_matches(&root, "/anything"));
        assert!(parse_prefix("api").is_err());
    }

    #[test]
    fn values_headers_and_queries() {
        let m = RequestMatch {
            methods: vec![Method::GET],
            headers: vec![
                (
                    "x-env".parse().unwrap(),
                    ValueMatch::parse("canary").unwrap(),
                ),
                (
                    "user-agent".parse().unwrap(),
                    ValueMatch::parse("~bot").unwrap(),
                ),
                ("x-debug".parse().unwrap(), ValueMatch::parse("!").unwrap()),
            ],
            query: vec![("debug".into(), ValueMatch::parse("1 2").unwrap())],
            source: vec!["10.0.0.0/8".parse().unwrap()],
            ..Default::default()
        };
        let mut h = HeaderMap::new();
        h.insert("x-env", "canary".parse().unwrap());
        h.insert("user-agent", "googlebot/2".parse().unwrap());
        fn input<'a>(h: &'a HeaderMap, q: Option<&'a str>, ip: &str, m: &'a Method) -> Input<'a> {
            Input {
                host: "",
                path: "/",
                query: q,
                method: m,
                headers: h,
                source: ip.parse().unwrap(),
                client_cert: None,
            }
        }
        let get = &Method::GET;
        assert!(m.matches_rest(&input(&h, Some("a=b&debug=1+2"), "10.1.2.3", get)));
        assert!(m.matches_rest(&input(&h, Some("debug=1%202"), "10.1.2.3", get)));
        assert!(!m.matches_rest(&input(&h, Some("debug=1"), "10.1.2.3", get)));
        assert!(!m.matches_rest(&input(&h, None, "10.1.2.3", get)));
        assert!(!m.matches_rest(&input(&h, Some("debug=1+2"), "11.0.0.1", get)));
        assert!(!m.matches_rest(&input(&h, Some("debug=1+2"), "10.0.0.1", &Method::POST)));
        let mut h2 = h.clone();
        h2.insert("x-debug", "1".parse().unwrap());
        assert!(!m.matches_rest(&input(&h2, Some("debug=1+2"), "10.0.0.1", get)));
        let mut h3 = h.clone();
        h3.insert("user-agent", "curl".parse().unwrap());
        assert!(!m.matches_rest(&input(&h3, Some("debug=1+2"), "10.0.0.1", get)));
        assert!(ValueMatch::parse("~(").is_err());
    }

    #[test]
    fn covering_routes() {
        let hosts = |h: &[&str]| RequestMatch {
            hosts: h.iter().map(|s| HostPattern::parse(s).unwrap()).collect(),
            ..Default::default()
        };
        assert!(hosts(&["a.com", "b.com"]).covers(&hosts(&["b.com", "a.com"])));
        assert!(!hosts(&["a.com"]).covers(&hosts(&["b.com"])));
        assert!(hosts(&[]).covers(&hosts(&["b.com"])));
        assert!(hosts(&["*.x.com"]).covers(&hosts(&["q.x.com"])));
        assert!(!hosts(&["*.x.com"]).covers(&hosts(&["x.com"])));
        assert!(!hosts(&["a.com"]).covers(&hosts(&[])));
        let mut api = hosts(&["a.com"]);
        api.path_prefix = Some("/api".into());
        let mut v1 = hosts(&["a.com"]);
        v1.path_prefix = Some("/api/v1".into());
        assert!(api.covers(&v1));
        assert!(!v1.covers(&api));
        let mut get = hosts(&["a.com"]);
        get.methods = vec![Method::GET];
        assert!(!get.covers(&hosts(&["a.com"])));
    }
}
