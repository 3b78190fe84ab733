//! What a route does besides choosing its target, validated: redirects, fixed answers, path
//! rewrites, header rules, access rules, error pages and cache rules. A route without any of
//! these has [`RouteRules::is_empty`], and the request path skips them with one branch.

use crate::template::Template;
use bytes::Bytes;
use http::header::{HeaderName, HeaderValue};
use http::StatusCode;
use ipnet::IpNet;
use regex::Regex;
use std::sync::Arc;
use std::time::Duration;

/// A route's actions, in the order the pipeline applies them: access (`deny`, `allow`,
/// `basic_auth`), then `redirect` or `respond`, then the path rewrite and the request header
/// rules; on the way back, error pages and the response header rules.
#[derive(Debug, Clone, Default)]
pub struct RouteRules {
    pub access: Access,
    pub basic_auth: Option<BasicAuth>,
    pub redirect: Option<Redirect>,
    pub respond: Option<Respond>,
    pub rewrite: Option<PathRewrite>,
    pub request_headers: HeaderRules,
    pub response_headers: HeaderRules,
    /// The route's own pages (over `[server] error_pages`).
    pub error_pages: ErrorPages,
    /// Servers' error responses (4xx and 5xx with a page) are replaced by the page too.
    pub intercept_errors: bool,
    /// `cache_ttl`: freshness by status, over the origin's (nginx's `proxy_cache_valid`).
    pub cache_ttl: Vec<(StatusSet, Duration)>,
    /// `cache_key`: query parameters left out of the key.
    pub ignore_query: IgnoreQuery,
    /// Whether some template reads `$1`.. (the route's path groups).
    pub uses_groups: bool,
    /// `rate_limit` (the route's own, or `[defaults]`'s): requests per key, over it 429.
    pub rate_limit: Option<RateLimit>,
}

impl RouteRules {
    /// Whether the route has no action at all (the request path then skips this phase).
    pub fn is_empty(&self) -> bool {
        self.access.is_empty()
            && self.basic_auth.is_none()
            && self.redirect.is_none()
            && self.respond.is_none()
            && self.rewrite.is_none()
            && self.request_headers.is_empty()
            && self.response_headers.is_empty()
            && self.error_pages.is_empty()
            && self.cache_ttl.is_empty()
            && self.ignore_query.is_none()
            && self.rate_limit.is_none()
    }
}

/// `rate_limit = { key = "client_ip", rate = "100/s", burst = 50 }`: GCRA (the generic cell
/// rate algorithm, as the `governor` crate runs it) per key: a key may make `burst` requests at
/// once, then one every `period / count`; a request over the limit is answered 429.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RateLimit {
    pub key: LimitKey,
    /// Requests per `period` (the rate).
    pub count: u32,
    /// One second, minute, hour or day.
    pub period: Duration,
    /// Requests a key may make at once (the bucket's size), at least 1.
    pub burst: u32,
    /// Keys remembered at most (memory is bounded by it; see docs/limits.md).
    pub max_keys: usize,
    /// Whose requests count: this instance's, or the whole fleet's (`[cluster]`).
    pub scope: LimitScope,
}

/// `rate_limit.scope`: where a key's requests are counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LimitScope {
    /// Each instance counts its own (the default).
    #[default]
    Instance,
    /// Counted across the fleet in Redis (`[cluster]`), with a per-instance limit when Redis
    /// cannot be reached (see docs/scale-out.md).
    Cluster,
}

impl RateLimit {
    /// The time one request's share takes to come back (`period / count`), at least 1 ns.
    pub fn interval(&self) -> Duration {
        (self.period / self.count.max(1)).max(Duration::from_nanos(1))
    }

    /// The rate as `COUNT/UNIT` (`100/s`).
    pub fn rate_text(&self) -> String {
        let unit = match self.period.as_secs() {
            60 => "m",
            3600 => "h",
            86400 => "d",
            _ => "s",
        };
        format!("{}/{unit}", self.count)
    }
}

/// What a rate limit counts requests by.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LimitKey {
    /// The client's address (an IPv6 client by its /64).
    ClientIp,
    /// A request field's value (`header:X-Api-Key`); a request without it is counted by its
    /// client's address.
    Header(HeaderName),
    /// One count for the whole route.
    Route,
}

impl LimitKey {
    /// As written in the file (`client_ip`, `header:x-api-key`, `route`).
    pub fn text(&self) -> String {
        match self {
            LimitKey::ClientIp => "client_ip".into(),
            LimitKey::Header(h) => format!("header:{h}"),
            LimitKey::Route => "route".into(),
        }
    }
}

/// `allow` and `deny` networks: a client in `deny` is refused (403); with `allow`, a client
/// in none of its networks is refused.
#[derive(Debug, Clone, Default)]
pub struct Access {
    pub allow: Vec<IpNet>,
    pub deny: Vec<IpNet>,
}

impl Access {
    pub fn is_empty(&self) -> bool {
        self.allow.is_empty() && self.deny.is_empty()
    }

    /// Whether `ip` may use the route.
    pub fn permits(&self, ip: std::net::IpAddr) -> bool {
        !self.deny.iter().any(|n| n.contains(&ip))
            && (self.allow.is_empty() || self.allow.iter().any(|n| n.contains(&ip)))
    }
}

/// `basic_auth`: RFC 7617 credentials checked against a users file read at load.
#[derive(Debug, Clone)]
pub struct BasicAuth {
    /// The realm's challenge, ready to send (`WWW-Authenticate`).
    pub challenge: HeaderValue,
    pub users: Arc<crate::credentials::Users>,
    /// `forward_auth_header`: keep `Authorization` on the request to the server.
    pub forward: bool,
}

/// `redirect`: the answer is `status` with `Location` rendered from `to`.
#[derive(Debug, Clone)]
pub struct Redirect {
    pub to: Template,
    /// 301, 302, 303, 307 or 308.
    pub status: StatusCode,
}

/// `respond`: a fixed answer.
#[derive(Debug, Clone)]
pub struct Respond {
    pub status: StatusCode,
    pub body: Bytes,
    pub content_type: HeaderValue,
}

/// The path the pool receives: `strip_prefix`, then `add_prefix`; or `rewrite`'s regex
/// replacement (RFC 3986 path; the query is kept).
#[derive(Debug, Clone, Default)]
pub struct PathRewrite {
    /// Stored without a trailing `/`; segment-aware like `path_prefix`.
    pub strip_prefix: Option<String>,
    /// Stored without a trailing `/`.
    pub add_prefix: Option<String>,
    pub regex: Option<(Regex, Template)>,
}

/// Field rules: `remove` first, then `set` (replacing), then `add` (appending).
#[derive(Debug, Clone, Default)]
pub struct HeaderRules {
    pub set: Vec<(HeaderName, Template)>,
    pub add: Vec<(HeaderName, Template)>,
    pub remove: Vec<HeaderName>,
}

impl HeaderRules {
    pub fn is_empty(&self) -> bool {
        self.set.is_empty() && self.add.is_empty() && self.remove.is_empty()
    }
}

/// Error pages by status: exact codes first, then the class (`4xx`, `5xx`).
#[derive(Debug, Clone, Default)]
pub struct ErrorPages {
    pub exact: Vec<(u16, Page)>,
    /// Index 4 is `4xx`, 5 is `5xx`.
    pub class: [Option<Page>; 6],
}

impl ErrorPages {
    pub fn is_empty(&self) -> bool {
        self.exact.is_empty() && self.class.iter().all(Option::is_none)
    }

    /// The page for `status`, if any.
    pub fn get(&self, status: u16) -> Option<&Page> {
        self.exact
            .iter()
            .find(|(s, _)| *s == status)
            .map(|(_, p)| p)
            .or_else(|| self.class.get(usize::from(status / 100))?.as_ref())
    }
}

/// A page file read at load (and reload).
#[derive(Debug, Clone)]
pub struct Page {
    pub body: Bytes,
    /// From the file's extension.
    pub content_type: HeaderValue,
}

/// A set of statuses in `cache_ttl`: one code, a class (`4xx`), or `any`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatusSet {
    Code(u16),
    Class(u16),
    Any,
}

impl StatusSet {
    /// Parses `200`, `4xx` or `any`.
    pub fn parse(text: &str) -> Option<StatusSet> {
        if text.eq_ignore_ascii_case("any") {
            return Some(StatusSet::Any);
        }
        if let Some(c) = text.strip_suffix("xx").or_else(|| text.strip_suffix("XX")) {
            return match c.as_bytes() {
                [d @ b'1'..=b'5'] => Some(StatusSet::Class(u16::from(d - b'0'))),
                _ => None,
            };
        }
        if text.len() != 3 {
            return None;
        }
        match text.parse::<u16>() {
            Ok(c @ 100..=599) => Some(StatusSet::Code(c)),
            _ => None,
        }
    }

    pub fn contains(&self, status: u16) -> bool {
        match self {
            StatusSet::Code(c) => *c == status,
            StatusSet::Class(c) => status / 100 == *c,
            StatusSet::Any => true,
        }
    }
}

/// `cache_key.ignore_query`: names (`*` ends a name prefix, as in `utm_*`) or the whole query.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum IgnoreQuery {
    #[default]
    None,
    Names(Vec<String>),
    All,
}

impl IgnoreQuery {
    pub fn is_none(&self) -> bool {
        *self == IgnoreQuery::None
    }

    /// Whether the parameter `name` is left out of the key.
    pub fn ignores(&self, name: &str) -> bool {
        match self {
            IgnoreQuery::None => false,
            IgnoreQuery::All => true,
            IgnoreQuery::Names(n) => n.iter().any(|p| match p.strip_suffix('*') {
                Some(prefix) => name.starts_with(prefix),
                None => name == p,
            }),
        }
    }
}

/// `[server]` rules that apply to every request.
#[derive(Debug, Clone, Default)]
pub struct SiteRules {
    /// Plain-HTTP requests are redirected (308) to `https://` with the same host, path and
    /// query.
    pub redirect_http_to_https: bool,
    /// `Strict-Transport-Security` added to answers on TLS connections (RFC 6797).
    pub hsts: Option<HeaderValue>,
    pub error_pages: ErrorPages,
    /// The request ID field (`X-Request-Id`), when request IDs are on.
    pub request_id: Option<HeaderName>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_sets() {
        assert_eq!(StatusSet::parse("200"), Some(StatusSet::Code(200)));
        assert_eq!(StatusSet::parse("4xx"), Some(StatusSet::Class(4)));
        assert_eq!(StatusSet::parse("any"), Some(StatusSet::Any));
        for bad in ["", "99", "600", "6xx", "0xx", "x", "+1xx", "20"] {
            assert_eq!(StatusSet::parse(bad), None, "{bad}");
        }
        assert!(StatusSet::Class(4).contains(404));
        assert!(!StatusSet::Class(4).contains(500));
    }

    #[test]
    fn ignored_query_names() {
        let q = IgnoreQuery::Names(vec!["utm_*".into(), "gclid".into()]);
        assert!(q.ignores("utm_source"));
        assert!(q.ignores("gclid"));
        assert!(!q.ignores("gclid2"));
        assert!(!q.ignores("page"));
        assert!(IgnoreQuery::All.ignores("page"));
    }

    #[test]
    fn access_rules() {
        let a = Access {
            allow: vec!["10.0.0.0/8".parse().unwrap()],
            deny: vec!["10.9.0.0/16".parse().unwrap()],
        };
        assert!(a.permits("10.1.1.1".parse().unwrap()));
        assert!(!a.permits("10.9.1.1".parse().unwrap()));
        assert!(!a.permits("192.168.1.1".parse().unwrap()));
    }
}
