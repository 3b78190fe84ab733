//! An [`Ask`] from what people type (the command line, the admin API's query), and an
//! [`Explanation`] as text.

use super::{ensure_host, Ask, Explanation};
use http::header::{HeaderMap, HeaderName, HeaderValue};
use http::{Method, StatusCode, Uri};
use std::fmt::{self, Display, Write as _};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

/// The client address when none is given: a documentation address (RFC 5737), a client from
/// elsewhere that nothing trusts.
pub const DEFAULT_FROM: IpAddr = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1));

/// An [`Ask`] as typed: `request` is `METHOD URL` or `URL` (GET); the URL absolute
/// (`https://shop.example/api/x`: its scheme is the listener's, its authority the `Host`) or
/// a path with `Host` among `headers`. Fields are `Name: value`. `from` is the socket's peer
/// (an address, with or without a port; default [`DEFAULT_FROM`]); `proxy_source` what a PROXY
/// header announced; `status` (default 200) and `response_headers` the response to judge.
/// Errors name what was wrong.
pub fn ask_from(
    request: &str,
    headers: &[String],
    from: Option<&str>,
    proxy_source: Option<&str>,
    status: Option<&str>,
    response_headers: &[String],
) -> Result<Ask, String> {
    // What is echoed in an error: at most 200 bytes of it.
    let shown = |t: &str| match t.char_indices().nth(200) {
        Some((i, _)) => format!("{}...", &t[..i]),
        None => t.to_string(),
    };
    let mut words = request.split_whitespace();
    let (method, url) = match (words.next(), words.next(), words.next()) {
        (Some(u), None, None) => ("GET", u),
        (Some(m), Some(u), None) => (m, u),
        _ => {
            let msg = format!("request `{}`: write `METHOD URL` or `URL`", shown(request));
            return Err(msg);
        }
    };
    let method =
        Method::from_bytes(method.as_bytes()).map_err(|_| format!("bad method `{method}`"))?;
    let uri: Uri = url
        .parse()
        .map_err(|e| format!("bad URL `{}`: {e}", shown(url)))?;
    let scheme = match uri.scheme_str() {
        None if url.starts_with('/') => "http",
        None => {
            let msg = format!(
                "`{}`: write a whole URL (`http://HOST/PATH`) or a path",
                shown(url)
            );
            return Err(msg);
        }
        Some("http") => "http",
        Some("https") => "https",
        Some(s) => return Err(format!("URL scheme `{s}`: write http or https")),
    };
    let target: Uri = uri
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .parse()
        .map_err(|e| format!("bad URL `{}`: {e}", shown(url)))?;
    let mut fields = parse_fields(headers)?;
    ensure_host(&mut fields, uri.authority().map(|a| a.as_str()))?;
    if !fields.contains_key(http::header::HOST) {
        let msg = format!(
            "`{}` names no host: write the whole URL or add -H 'Host: NAME'",
            shown(url)
        );
        return Err(msg);
    }
    let status = match status {
        None => StatusCode::OK,
        Some(s) => s
            .parse::<u16>()
            .ok()
            .and_then(|n| StatusCode::from_u16(n).ok())
            .ok_or_else(|| format!("bad status `{s}`"))?,
    };
    Ok(Ask {
        method,
        target,
        headers: fields,
        scheme,
        peer: address(from, "from")?.unwrap_or(SocketAddr::new(DEFAULT_FROM, 0)),
        proxy_source: address(proxy_source, "proxy source")?,
        status,
        response_headers: parse_fields(response_headers)?,
    })
}

/// An address with or without a port (port 0 when none).
fn address(text: Option<&str>, what: &str) -> Result<Option<SocketAddr>, String> {
    let Some(t) = text else {
        return Ok(None);
    };
    if let Ok(a) = t.parse::<SocketAddr>() {
        return Ok(Some(a));
    }
    let ip = t.trim_start_matches('[').trim_end_matches(']');
    ip.parse::<IpAddr>()
        .map(|ip| Some(SocketAddr::new(ip, 0)))
        .map_err(|_| format!("bad {what} address `{t}`"))
}

/// `Name: value` lines as fields, in order (a name given twice gets both values).
fn parse_fields(lines: &[String]) -> Result<HeaderMap, String> {
    let mut out = HeaderMap::new();
    for line in lines {
        let (name, value) = line
            .split_once(':')
            .ok_or_else(|| format!("header `{line}`: write `Name: value`"))?;
        let name = HeaderName::from_bytes(name.trim().as_bytes())
            .map_err(|_| format!("bad header name in `{line}`"))?;
        let value = HeaderValue::from_str(value.trim())
            .map_err(|_| format!("bad header value in `{line}`"))?;
        out.append(name, value);
    }
    Ok(out)
}

impl Display for Explanation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut s = String::new();
        let _ = writeln!(s, "request   {}", self.request);
        let c = &self.client;
        let _ = writeln!(s, "client    {} ({}): {}", c.address, c.scheme, c.derived);
        for (k, r) in self.routes_tried.iter().enumerate() {
            let label = if k == 0 { "routes" } else { "" };
            let verdict = match &r.miss {
                Some(m) => format!("no match ({m})"),
                None => "MATCH".into(),
            };
            let _ = writeln!(
                s,
                "{label:<9} #{} line {} -> {}: {verdict}",
                r.route, r.line, r.target
            );
        }
        for r in &self.also_matching {
            let _ = writeln!(
                s,
                "shadowed  #{} line {} -> {}: matches too, but an earlier route wins",
                r.route, r.line, r.target
            );
        }
        for r in &self.rules {
            let _ = writeln!(s, "rule      {r}");
        }
        let _ = writeln!(s, "answer    {}", self.answer);
        if let Some(u) = &self.upstream {
            let _ = writeln!(s, "upstream  {}", u.target);
            for (n, v) in &u.headers {
                let _ = writeln!(s, "          {n}: {v}");
            }
        }
        if let Some(k) = &self.cache {
            let _ = writeln!(s, "cache     key {}", k.key);
            if let Some(b) = &k.bypass {
                let _ = writeln!(s, "          bypassed: {b}");
            }
            let _ = writeln!(s, "          stored now: {}", k.stored_now.unwrap_or("no"));
            let verdict = if k.storable { "" } else { "not stored: " };
            let _ = writeln!(s, "          the sample response: {verdict}{}", k.why);
        }
        if let Some(p) = &self.pool {
            let _ = writeln!(s, "pool      {} (balance {})", p.name, p.balance);
            for sv in &p.servers {
                let usable = match &sv.why_not {
                    None => "usable".to_string(),
                    Some(w) => format!("not usable: {w}"),
                };
                let _ = writeln!(s, "          {} {}: {usable}", sv.name, sv.state);
            }
        }
        f.write_str(&s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ask(request: &str, headers: &[&str]) -> Result<Ask, String> {
        let h: Vec<String> = headers.iter().map(|s| s.to_string()).collect();
        ask_from(request, &h, None, None, None, &[])
    }

    /// What people type: a whole URL, or a path with a `Host`; anything else is an error
    /// saying what to write, never a guess.
    #[test]
    fn requests_as_typed() {
        let a = ask("POST https://shop.example/x?y=1", &[]).unwrap();
        assert_eq!((a.method.as_str(), a.scheme), ("POST", "https"));
        assert_eq!(a.target, "/x?y=1");
        assert_eq!(a.headers["host"], "shop.example");
        let a = ask("/x", &["Host: shop.example"]).unwrap();
        assert_eq!((a.method.as_str(), a.scheme), ("GET", "http"));
        for (bad, says) in [
            ("/x", "names no host"),
            ("GET /x", "names no host"),
            ("garbage", "whole URL"),
            ("ftp://shop.example/", "scheme"),
            ("GET http://a/ extra", "METHOD URL"),
            ("", "METHOD URL"),
            ("G@T http://a/", "bad method"),
        ] {
            let e = ask(bad, &[]).unwrap_err();
            assert!(e.contains(says), "{bad:?}: {e}");
        }
        assert!(ask("shop.example/x", &[]).is_err());
        assert!(ask("http://a/", &["no colon"])
            .unwrap_err()
            .contains("Name: value"));
        assert!(ask_from("http://a/", &[], Some("nope"), None, None, &[]).is_err());
        assert!(ask_from("http://a/", &[], None, None, Some("99"), &[]).is_err());
    }
}
