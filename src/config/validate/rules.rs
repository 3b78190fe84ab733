//! A route's matchers and actions, and the `[server]` rules for every request: each key group
//! has its own check, every error names its line and key. Files named here (`users_file`, error
//! pages, `respond.file`) are read now, relative to the configuration file's directory, so a
//! missing one is an error at load and reload, never at request time.

use super::*;
use crate::config::route::*;
use crate::matching::{parse_prefix, HostPattern, RequestMatch, ValueMatch};
use crate::template::{Template, Var};
use http::header::{HeaderName, HeaderValue};
use std::path::{Path, PathBuf};

/// Fields no rule may set, add or remove: hop-by-hop and message framing (RFC 9110 7.6.1,
/// RFC 9112 6), which langur writes itself.
const UNTOUCHABLE: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "content-length",
];

/// The route's matchers besides `match`.
pub(super) fn matcher(r: &RawRoute, diag: &mut Diag) -> RequestMatch {
    let mut m = RequestMatch::default();
    for h in &r.hosts {
        match HostPattern::parse(&h.value) {
            Ok(p) => m.hosts.push(p),
            Err(e) => diag.error(h.line, Some("host"), e),
        }
    }
    if let Some(p) = &r.path {
        if p.value.starts_with('/') {
            m.path = Some(p.value.clone());
        } else {
            diag.error(
                p.line,
                Some("path"),
                format!("path `{}` must start with `/`", p.value),
            );
        }
    }
    if let Some(p) = &r.path_prefix {
        match parse_prefix(&p.value) {
            Ok(p) => m.path_prefix = Some(p),
            Err(e) => diag.error(p.line, Some("path_prefix"), e),
        }
    }
    for name in &r.methods {
        match http::Method::from_bytes(name.value.as_bytes()) {
            Ok(x) if name.value.bytes().all(|b| b.is_ascii_uppercase()) => m.methods.push(x),
            _ => diag.error(
                name.line,
                Some("methods"),
                format!(
                    "`{}` is not a method name (write it in capitals: GET)",
                    name.value
                ),
            ),
        }
    }
    for (name, cond) in &r.headers {
        let key = format!("headers.{name}");
        let field = HeaderName::from_bytes(name.as_bytes());
        match (field, ValueMatch::parse(&cond.value)) {
            (Ok(f), Ok(c)) => m.headers.push((f, c)),
            (Err(_), _) => diag.error(
                cond.line,
                Some(&key),
                format!("`{name}` is not a header name"),
            ),
            (_, Err(e)) => diag.error(cond.line, Some(&key), e),
        }
    }
    for (name, cond) in &r.query {
        match ValueMatch::parse(&cond.value) {
            Ok(c) => m.query.push((name.clone(), c)),
            Err(e) => diag.error(cond.line, Some(&format!("query.{name}")), e),
        }
    }
    m.source = networks(&r.source, "source", diag);
    client_cert(r, &mut m, diag);
    m
}

/// `client_cert` (`"verified"` or `"none"`) and `client_cert_subject` (a value condition, as
/// `headers` takes).
fn client_cert(r: &RawRoute, m: &mut RequestMatch, diag: &mut Diag) {
    if let Some(c) = &r.client_cert {
        match c.value.as_str() {
            "verified" => m.client_cert = Some(true),
            "none" => m.client_cert = Some(false),
            other => diag.error(
                c.line,
                Some("client_cert"),
                format!("`client_cert` must be \"verified\" or \"none\", not `{other}`"),
            ),
        }
    }
    if let Some(s) = &r.client_cert_subject {
        match ValueMatch::parse(&s.value) {
            Ok(v) => m.client_subject = Some(v),
            Err(e) => diag.error(s.line, Some("client_cert_subject"), e),
        }
    }
}

/// The client networks of `source`, `allow`, `deny` and `purge`: networks (`10.0.0.0/8`) or
/// single addresses; anything else is reported and left out.
pub(super) fn networks(list: &[At<String>], key: &str, diag: &mut Diag) -> Vec<ipnet::IpNet> {
    let mut out = Vec::new();
    for a in list {
        let parsed = a
            .value
            .parse::<ipnet::IpNet>()
            .or_else(|_| a.value.parse::<std::net::IpAddr>().map(ipnet::IpNet::from));
        match parsed {
            Ok(n) => out.push(crate::client_identity::canonical_net(n)),
            Err(_) => diag.error(
                a.line,
                Some(key),
                format!(
                    "`{}` is not an address or network (write 127.0.0.1 or 10.0.0.0/8)",
                    a.value
                ),
            ),
        }
    }
    out
}

/// What the templates of a route may read: `$1`.. need exactly one `match` pattern with that
/// many groups.
struct Groups<'a> {
    patterns: &'a [At<String>],
}

impl Groups<'_> {
    fn check(&self, t: &Template, line: usize, key: &str, diag: &mut Diag) {
        let n = t.max_group();
        if n == 0 {
            return;
        }
        let available = match self.patterns {
            [one] => regex::Regex::new(&one.value).map_or(0, |r| r.captures_len() - 1),
            _ => {
                diag.error(
                    line,
                    Some(key),
                    "`$1`.. read the groups of the route's `match`, which needs exactly one pattern",
                );
                return;
            }
        };
        if usize::from(n) > available {
            diag.error(
                line,
                Some(key),
                format!("`${n}`: the route's `match` has {available} group(s)"),
            );
        }
    }
}

/// A template, reported with its key when it does not parse.
fn template(text: &At<String>, key: &str, diag: &mut Diag) -> Option<Template> {
    Template::parse(&text.value)
        .map_err(|e| diag.error(text.line, Some(key), format!("`{key}`: {e}")))
        .ok()
}

/// Everything the route does besides choosing a target. `base`: the configuration file's
/// directory.
pub(super) fn rules(r: &RawRoute, base: &Path, diag: &mut Diag) -> RouteRules {
    let groups = Groups {
        patterns: &r.patterns,
    };
    let mut rules = RouteRules {
        access: Access {
            allow: networks(&r.allow, "allow", diag),
            deny: networks(&r.deny, "deny", diag),
        },
        basic_auth: r
            .basic_auth
            .as_ref()
            .and_then(|a| basic_auth(a, r, base, diag)),
        redirect: r.redirect.as_ref().and_then(|x| redirect(x, &groups, diag)),
        respond: r.respond.as_ref().and_then(|x| respond(x, base, diag)),
        rewrite: rewrite(r, diag),
        request_headers: r
            .request_headers
            .as_ref()
            .map(|h| header_rules(h, "request_headers", true, &groups, diag))
            .unwrap_or_default(),
        response_headers: r
            .response_headers
            .as_ref()
            .map(|h| header_rules(h, "response_headers", false, &groups, diag))
            .unwrap_or_default(),
        error_pages: error_pages(&r.error_pages, base, diag),
        intercept_errors: r.intercept_errors.unwrap_or(false),
        cache_ttl: cache_ttl(&r.cache_ttl, diag),
        ignore_query: ignore_query(r.cache_key.as_ref()),
        uses_groups: false,
        // Set by the caller, which knows `[defaults]`.
        rate_limit: None,
    };
    rules.uses_groups = uses_groups(&rules);
    if r.cache != Some(true) {
        if let Some((_, t)) = r.cache_ttl.first() {
            diag.warn(
                t.line,
                Some("cache_ttl"),
                "`cache_ttl` has no effect without `cache = true`",
            );
        }
        if let Some(k) = &r.cache_key {
            diag.warn(
                k.line,
                Some("cache_key"),
                "`cache_key` has no effect without `cache = true`",
            );
        }
    }
    rules
}

/// The units a rate may be written in (`100/s`, `5/minute`), with their length in seconds.
const RATE_UNITS: &[(&[&str], u64)] = &[
    (&["s", "sec", "second", "seconds"], 1),
    (&["m", "min", "minute", "minutes"], 60),
    (&["h", "hr", "hour", "hours"], 3600),
    (&["d", "day", "days"], 86_400),
];

/// A rate: `COUNT/UNIT` (`100/s`, `30/min`, `1000/h`, nginx's `10r/s` too), the count from 1
/// to 1 000 000 000, the unit one of [`RATE_UNITS`]. The error names what is wrong.
pub(super) fn parse_rate(text: &str) -> Result<(u32, std::time::Duration), String> {
    let allowed = "write COUNT/UNIT with the unit s, m, h or d (also sec, second, min, minute, hr, hour, day): \"100/s\", \"30/min\"";
    let Some((count, unit)) = text.split_once('/') else {
        return Err(format!("rate `{text}` has no unit: {allowed}"));
    };
    let count = count.trim();
    let count = count.strip_suffix('r').unwrap_or(count);
    let count = match count.parse::<u32>() {
        Ok(n @ 1..=1_000_000_000) => n,
        _ => {
            return Err(format!(
                "rate `{text}`: `{count}` is not a count from 1 to 1000000000"
            ))
        }
    };
    let unit = unit.trim().to_ascii_lowercase();
    match RATE_UNITS
        .iter()
        .find(|(names, _)| names.contains(&unit.as_str()))
    {
        Some((_, secs)) => Ok((count, std::time::Duration::from_secs(*secs))),
        None => Err(format!("rate `{text}`: unknown unit `{unit}`; {allowed}")),
    }
}

/// `rate_limit` (a route's or `[defaults]`'): the key (`client_ip`, the default; `route`;
/// `header:NAME`), the rate, the burst (default: the rate's count) and `max_keys`.
/// `Off` is no limit.
pub(super) fn rate_limit(raw: &RawRateLimit, cluster: bool, diag: &mut Diag) -> Option<RateLimit> {
    let RawRateLimit::On(t) = raw else {
        return None;
    };
    let key = match t.key.as_ref() {
        None => LimitKey::ClientIp,
        Some(k) => limit_key(k, diag)?,
    };
    let Some(rate) = &t.rate else {
        diag.error(
            t.line,
            Some("rate_limit"),
            "`rate_limit` needs `rate = \"COUNT/UNIT\"` (\"100/s\")",
        );
        return None;
    };
    let (count, period) = parse_rate(&rate.value)
        .map_err(|e| {
            let msg = format!("`rate_limit.rate`: {e}");
            diag.error(rate.line, Some("rate_limit.rate"), msg)
        })
        .ok()?;
    let burst = match t.burst.as_ref() {
        None => count,
        Some(_) => ranged(diag, t.burst.as_ref(), "rate_limit.burst", 1, 1_000_000_000)? as u32,
    };
    // The burst is as many requests' worth of time: it must not pass the longest duration
    // (the limiter's arithmetic is in nanoseconds, which would wrap past 584 years).
    let span = (period / count.max(1)).checked_mul(burst);
    if span.map_or(true, |s| s > crate::config::MAX_DURATION) {
        let line = t.burst.as_ref().map_or(rate.line, |b| b.line);
        let msg = format!(
            "`rate_limit.burst`: {burst} requests at {} is more than 10 years of the rate",
            rate.value
        );
        diag.error(line, Some("rate_limit.burst"), msg);
        return None;
    }
    let max_keys = match t.max_keys.as_ref() {
        None => DEFAULT_RATE_LIMIT_KEYS,
        Some(_) => ranged(
            diag,
            t.max_keys.as_ref(),
            "rate_limit.max_keys",
            1,
            100_000_000,
        )? as usize,
    };
    let scope = limit_scope(t.scope.as_ref(), cluster, diag)?;
    Some(RateLimit {
        key,
        count,
        period,
        burst,
        max_keys,
        scope,
    })
}

/// `instance` (the default) or `cluster`, which needs `[cluster]`.
fn limit_scope(s: Option<&At<String>>, cluster: bool, diag: &mut Diag) -> Option<LimitScope> {
    let Some(s) = s else {
        return Some(LimitScope::Instance);
    };
    match s.value.trim().to_ascii_lowercase().as_str() {
        "instance" => Some(LimitScope::Instance),
        "cluster" if cluster => Some(LimitScope::Cluster),
        "cluster" => {
            let msg = "`rate_limit.scope = \"cluster\"` needs a [cluster] section (its Redis)";
            diag.error(s.line, Some("rate_limit.scope"), msg);
            None
        }
        v => {
            let msg = format!("`rate_limit.scope` must be \"instance\" or \"cluster\", not `{v}`");
            diag.error(s.line, Some("rate_limit.scope"), msg);
            None
        }
    }
}

/// `client_ip`, `route` or `header:NAME`.
fn limit_key(k: &At<String>, diag: &mut Diag) -> Option<LimitKey> {
    let v = k.value.trim();
    if v.eq_ignore_ascii_case("client_ip") {
        return Some(LimitKey::ClientIp);
    }
    if v.eq_ignore_ascii_case("route") {
        return Some(LimitKey::Route);
    }
    let name = v
        .split_once(':')
        .filter(|(kind, _)| kind.eq_ignore_ascii_case("header"))
        .map(|(_, name)| name.trim());
    match name.map(|n| HeaderName::from_bytes(n.as_bytes())) {
        Some(Ok(h)) => Some(LimitKey::Header(h)),
        Some(Err(_)) => {
            diag.error(
                k.line,
                Some("rate_limit.key"),
                format!("`{}` is not a header name", name.unwrap_or("")),
            );
            None
        }
        None => {
            diag.error(
                k.line,
                Some("rate_limit.key"),
                format!(
                    "`rate_limit.key` must be \"client_ip\", \"route\" or \"header:NAME\", not `{v}`"
                ),
            );
            None
        }
    }
}

fn uses_groups(r: &RouteRules) -> bool {
    let group = |v: &Var| matches!(v, Var::Group(_));
    r.redirect.as_ref().is_some_and(|x| x.to.uses(group))
        || [&r.request_headers, &r.response_headers]
            .iter()
            .any(|h| h.set.iter().chain(&h.add).any(|(_, t)| t.uses(group)))
}

fn basic_auth(a: &RawBasicAuth, r: &RawRoute, base: &Path, diag: &mut Diag) -> Option<BasicAuth> {
    let Some(file) = &a.users_file else {
        diag.error(
            a.line,
            Some("basic_auth"),
            "`basic_auth` needs `users_file = \"FILE\"`",
        );
        return None;
    };
    let path = relative(base, &file.value);
    let users = match crate::credentials::Users::load(&path) {
        Ok(u) => u,
        Err(e) => {
            let key = "basic_auth.users_file";
            diag.error(file.line, Some(key), format!("`{key}`: {e}"));
            return None;
        }
    };
    let realm = a.realm.as_ref().map_or("restricted", |r| r.value.as_str());
    Some(BasicAuth {
        challenge: crate::credentials::challenge(realm),
        users: std::sync::Arc::new(users),
        forward: r.forward_auth_header.unwrap_or(false),
    })
}

fn redirect(x: &RawRedirect, groups: &Groups<'_>, diag: &mut Diag) -> Option<Redirect> {
    let Some(to) = &x.to else {
        diag.error(
            x.line,
            Some("redirect"),
            "`redirect` needs `to = \"https://{host}{path_and_query}\"`",
        );
        return None;
    };
    let status = match x.status.as_ref().map(|s| s.value) {
        None => http::StatusCode::FOUND,
        Some(s @ (301 | 302 | 303 | 307 | 308)) => {
            http::StatusCode::from_u16(s as u16).expect("a redirect status")
        }
        Some(s) => {
            let line = x.status.as_ref().map_or(x.line, |s| s.line);
            diag.error(
                line,
                Some("redirect.status"),
                format!("{s} is not a redirect status (301, 302, 303, 307 or 308)"),
            );
            return None;
        }
    };
    let t = template(to, "redirect.to", diag)?;
    groups.check(&t, to.line, "redirect.to", diag);
    Some(Redirect { to: t, status })
}

fn respond(x: &RawRespond, base: &Path, diag: &mut Diag) -> Option<Respond> {
    let status = match x.status.as_ref() {
        None => http::StatusCode::OK,
        Some(s) => match u16::try_from(s.value)
            .ok()
            .filter(|c| (200..=599).contains(c))
        {
            Some(c) => http::StatusCode::from_u16(c).expect("in range"),
            None => {
                diag.error(
                    s.line,
                    Some("respond.status"),
                    format!("{} is not a status from 200 to 599", s.value),
                );
                return None;
            }
        },
    };
    let (body, guessed) = match (&x.body, &x.file) {
        (Some(_), Some(f)) => {
            diag.error(
                f.line,
                Some("respond.file"),
                "`respond` has either `body` or `file`, not both",
            );
            return None;
        }
        (Some(b), None) => (
            bytes::Bytes::from(b.value.clone()),
            "text/plain; charset=utf-8".to_string(),
        ),
        (None, Some(f)) => {
            let path = relative(base, &f.value);
            match read_page(&path) {
                Ok(data) => (data.into(), content_type_of(&path)),
                Err(e) => {
                    diag.error(
                        f.line,
                        Some("respond.file"),
                        format!("`{}`: {e}", path.display()),
                    );
                    return None;
                }
            }
        }
        (None, None) => (bytes::Bytes::new(), "text/plain; charset=utf-8".to_string()),
    };
    let content_type = match &x.content_type {
        None => HeaderValue::from_str(&guessed).ok()?,
        Some(ct) => match HeaderValue::from_str(&ct.value) {
            Ok(v) => v,
            Err(_) => {
                diag.error(
                    ct.line,
                    Some("respond.content_type"),
                    "not a valid header value",
                );
                return None;
            }
        },
    };
    Some(Respond {
        status,
        body,
        content_type,
    })
}

fn rewrite(r: &RawRoute, diag: &mut Diag) -> Option<PathRewrite> {
    let mut out = PathRewrite::default();
    for (field, key, slot) in [
        (&r.strip_prefix, "strip_prefix", &mut out.strip_prefix),
        (&r.add_prefix, "add_prefix", &mut out.add_prefix),
    ] {
        if let Some(p) = field {
            match parse_prefix(&p.value) {
                Ok(v) => *slot = Some(v),
                Err(e) => diag.error(p.line, Some(key), e.replace("path_prefix", key)),
            }
        }
    }
    if let Some(rw) = &r.rewrite {
        if out.strip_prefix.is_some() || out.add_prefix.is_some() {
            diag.error(
                rw.line,
                Some("rewrite"),
                "a route has either `rewrite` or `strip_prefix`/`add_prefix`, not both",
            );
            return None;
        }
        let (Some(from), Some(to)) = (&rw.from, &rw.to) else {
            diag.error(
                rw.line,
                Some("rewrite"),
                "`rewrite` needs `from = 'REGEX'` and `to = '/path/$1'`",
            );
            return None;
        };
        let re = match regex::Regex::new(&from.value) {
            Ok(re) => re,
            Err(e) => {
                diag.error(
                    from.line,
                    Some("rewrite.from"),
                    format!("regex `{}` does not compile: {e}", from.value),
                );
                return None;
            }
        };
        let t = template(to, "rewrite.to", diag)?;
        if usize::from(t.max_group()) >= re.captures_len() {
            diag.error(
                to.line,
                Some("rewrite.to"),
                format!(
                    "`${}`: `rewrite.from` has {} group(s)",
                    t.max_group(),
                    re.captures_len() - 1
                ),
            );
            return None;
        }
        out.regex = Some((re, t));
    }
    (out.strip_prefix.is_some() || out.add_prefix.is_some() || out.regex.is_some()).then_some(out)
}

/// `set`, `add` and `remove` of one direction. `request`: `Host` may be set (it is the
/// request's own); in responses it has no meaning.
fn header_rules(
    h: &RawHeaderRules,
    key: &str,
    request: bool,
    groups: &Groups<'_>,
    diag: &mut Diag,
) -> HeaderRules {
    let mut out = HeaderRules::default();
    let field = |name: &str, line: usize, what: &str, diag: &mut Diag| -> Option<HeaderName> {
        let k = format!("{key}.{what}");
        let Ok(n) = HeaderName::from_bytes(name.as_bytes()) else {
            diag.error(line, Some(&k), format!("`{name}` is not a header name"));
            return None;
        };
        if UNTOUCHABLE.contains(&n.as_str()) {
            diag.error(
                line,
                Some(&k),
                format!("`{n}` is a hop-by-hop or framing field, which langur writes itself"),
            );
            return None;
        }
        if n == http::header::HOST && (!request || what != "set") {
            diag.error(
                line,
                Some(&k),
                "`host` can only be set, on the request (request_headers.set)",
            );
            return None;
        }
        Some(n)
    };
    for (what, list, slot) in [("set", &h.set, &mut out.set), ("add", &h.add, &mut out.add)] {
        for (name, value) in list {
            let k = format!("{key}.{what}");
            let named = format!("{k}.{name}");
            let (Some(n), Some(t)) = (
                field(name, value.line, what, diag),
                template(value, &named, diag),
            ) else {
                continue;
            };
            if let Some(lit) = t.as_literal() {
                if HeaderValue::from_str(lit).is_err() {
                    diag.error(
                        value.line,
                        Some(&k),
                        format!("`{lit}` is not a valid header value"),
                    );
                    continue;
                }
            }
            groups.check(&t, value.line, &k, diag);
            slot.push((n, t));
        }
    }
    for name in &h.remove {
        if let Some(n) = field(&name.value, name.line, "remove", diag) {
            out.remove.push(n);
        }
    }
    out
}

/// `error_pages = { "502" = "errors/502.html", "5xx" = "errors/5xx.html" }`: statuses 400 to
/// 599 or a class (`4xx`, `5xx`); each file is read now.
pub(super) fn error_pages(
    list: &[(String, At<String>)],
    base: &Path,
    diag: &mut Diag,
) -> ErrorPages {
    let mut pages = ErrorPages::default();
    for (status, file) in list {
        let key = format!("error_pages.{status}");
        let set = StatusSet::parse(status);
        let path = relative(base, &file.value);
        let page = match read_page(&path) {
            Ok(data) => Page {
                body: data.into(),
                content_type: HeaderValue::from_str(&content_type_of(&path))
                    .unwrap_or(HeaderValue::from_static("text/html; charset=utf-8")),
            },
            Err(e) => {
                diag.error(file.line, Some(&key), format!("`{}`: {e}", path.display()));
                continue;
            }
        };
        match set {
            Some(StatusSet::Code(c @ 400..=599)) => pages.exact.push((c, page)),
            Some(StatusSet::Class(c @ 4..=5)) => pages.class[usize::from(c)] = Some(page),
            _ => diag.error(
                file.line,
                Some(&key),
                format!("`{status}` is not an error status (400 to 599, `4xx` or `5xx`)"),
            ),
        }
    }
    pages
}

fn cache_ttl(
    list: &[(String, At<String>)],
    diag: &mut Diag,
) -> Vec<(StatusSet, std::time::Duration)> {
    let mut out = Vec::new();
    for (status, ttl) in list {
        let key = format!("cache_ttl.{status}");
        let Some(set) = StatusSet::parse(status) else {
            diag.error(
                ttl.line,
                Some(&key),
                format!("`cache_ttl`: `{status}` is not a status (`200`, `4xx` or `any`)"),
            );
            continue;
        };
        match parse_duration(&ttl.value) {
            Ok(d) => out.push((set, d)),
            Err(e) => diag.error(ttl.line, Some(&key), format!("`{key}`: {e}")),
        }
    }
    // Exact codes before classes before `any`, whatever the file's order.
    out.sort_by_key(|(s, _)| match s {
        StatusSet::Code(_) => 0,
        StatusSet::Class(_) => 1,
        StatusSet::Any => 2,
    });
    out
}

fn ignore_query(k: Option<&RawCacheKey>) -> IgnoreQuery {
    match k {
        None => IgnoreQuery::None,
        Some(k) if k.ignore_whole_query == Some(true) => IgnoreQuery::All,
        Some(k) if k.ignore_query.is_empty() => IgnoreQuery::None,
        Some(k) => IgnoreQuery::Names(k.ignore_query.iter().map(|n| n.value.clone()).collect()),
    }
}

/// `[server]` rules for every request.
pub(super) fn site(raw: &RawConfig, base: &Path, diag: &mut Diag) -> SiteRules {
    let hsts = raw.hsts.as_ref().and_then(|h| match HeaderValue::from_str(&h.value) {
        Ok(v) if hsts_max_age(&h.value).is_some() => Some(v),
        _ => {
            diag.error(h.line, Some("hsts"), format!("`{}` is not a Strict-Transport-Security value (write \"max-age=63072000; includeSubDomains\")", h.value));
            None
        }
    });
    let request_id =
        raw.request_id
            .as_ref()
            .and_then(|r| match HeaderName::from_bytes(r.value.as_bytes()) {
                Ok(n) if !UNTOUCHABLE.contains(&n.as_str()) && n != http::header::HOST => Some(n),
                _ => {
                    diag.error(
                        r.line,
                        Some("request_id"),
                        format!("`{}` is not a header name langur may set", r.value),
                    );
                    None
                }
            });
    if raw.tls_listen.is_empty() {
        if raw.redirect_http_to_https == Some(true) {
            diag.warn(
                1,
                Some("redirect_http_to_https"),
                "`redirect_http_to_https` with no `[tls] listen`: clients are sent to port 443, which this configuration does not serve",
            );
        }
        if let Some(h) = &raw.hsts {
            diag.warn(
                h.line,
                Some("hsts"),
                "`hsts` is sent on TLS answers only, and there is no `[tls] listen`",
            );
        }
    }
    SiteRules {
        redirect_http_to_https: raw.redirect_http_to_https.unwrap_or(false),
        hsts,
        error_pages: error_pages(&raw.error_pages, base, diag),
        request_id,
    }
}

/// The largest page or `respond.file` read, in bytes: they are held in memory and sent whole.
const MAX_PAGE: u64 = 1 << 20;

/// A page's bytes: a regular file of at most [`MAX_PAGE`] bytes (see [`crate::regular_file`]).
fn read_page(path: &Path) -> std::io::Result<Vec<u8>> {
    crate::regular_file::read(path, MAX_PAGE)
}

/// `name` relative to `base` unless absolute.
fn relative(base: &Path, name: &str) -> PathBuf {
    base.join(name)
}

fn content_type_of(path: &Path) -> String {
    let mime = mime_guess::from_path(path).first_or_text_plain();
    if mime.type_() == "text" || mime.essence_str() == "application/json" {
        format!("{}; charset=utf-8", mime.essence_str())
    } else {
        mime.essence_str().to_string()
    }
}
