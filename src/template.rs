//! Value templates for route actions (`redirect.to`, `request_headers`, `response_headers`,
//! `rewrite.to`; `respond.body` is literal text): literal text with variables, parsed once at load so that an
//! unknown variable is a configuration error, and rendered per request without parsing.
//!
//! Syntax: `{host}`, `{path}`, `{query}`, `{path_and_query}`, `{scheme}`, `{client_ip}`,
//! `{request_id}`, `{upstream_host}`, `{header.NAME}` (the request field's first value), and
//! `$1`..`$9` (groups of the route's regex). `{{`, `}}` and `$$` stand for `{`, `}` and `$`.
//! A `$` not followed by a digit or `$` is literal, so header values such as `$Version=1`
//! need no escaping.

use http::header::HeaderName;
use std::fmt;

/// One variable of a template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Var {
    /// The request's host, port removed, lower case.
    Host,
    /// The path as it goes upstream (after rewrites).
    Path,
    /// The query, without `?` (empty when there is none).
    Query,
    /// Path and, when present, `?` and query.
    PathAndQuery,
    /// `http` or `https`, the client connection's.
    Scheme,
    /// The client's address (no port).
    ClientIp,
    /// The request ID (empty when request IDs are off).
    RequestId,
    /// The pool's upstream host: its TLS server name, else its first server as written.
    UpstreamHost,
    /// A request header's first value (empty when absent).
    Header(HeaderName),
    /// A group of the route's regex, 1..=9 (empty when it did not take part).
    Group(u8),
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Text(Box<str>),
    Var(Var),
}

/// A parsed template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    parts: Vec<Part>,
}

/// Why a template does not parse: the message names the offending piece.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TemplateError(pub String);

impl fmt::Display for TemplateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The variables' names as written, for error messages.
pub const VARIABLES: &str = "{host}, {path}, {query}, {path_and_query}, {scheme}, {client_ip}, \
                             {request_id}, {upstream_host}, {header.NAME}, $1..$9";

/// What a template reads of a request; the pipeline implements it.
pub trait Vars {
    /// Appends the value of `var` to `out`.
    fn var(&self, var: &Var, out: &mut String);
}

impl Template {
    /// Parses `text`. Errors: an unknown variable, an unclosed `{`, a lone `}`, an invalid
    /// header name in `{header.NAME}`.
    pub fn parse(text: &str) -> Result<Template, TemplateError> {
        let mut parts = Vec::new();
        let mut lit = String::new();
        let mut chars = text.char_indices().peekable();
        while let Some((i, c)) = chars.next() {
            match c {
                '{' if chars.peek().map(|p| p.1) == Some('{') => {
                    chars.next();
                    lit.push('{');
                }
                '}' if chars.peek().map(|p| p.1) == Some('}') => {
                    chars.next();
                    lit.push('}');
                }
                '}' => {
                    return Err(TemplateError(format!(
                        "a lone `}}` at byte {i} (write `}}}}` for a literal one)"
                    )))
                }
                '{' => {
                    let rest = &text[i + 1..];
                    let Some(end) = rest.find('}') else {
                        return Err(TemplateError(format!(
                            "`{{` at byte {i} is not closed (write `{{{{` for a literal one)"
                        )));
                    };
                    let var = variable(&rest[..end])?;
                    for _ in 0..rest[..=end].chars().count() {
                        chars.next();
                    }
                    flush(&mut lit, &mut parts);
                    parts.push(Part::Var(var));
                }
                '$' => match chars.peek().map(|p| p.1) {
                    Some('$') => {
                        chars.next();
                        lit.push('$');
                    }
                    Some(d @ '1'..='9') => {
                        chars.next();
                        flush(&mut lit, &mut parts);
                        parts.push(Part::Var(Var::Group(d as u8 - b'0')));
                    }
                    _ => lit.push('$'),
                },
                c => lit.push(c),
            }
        }
        flush(&mut lit, &mut parts);
        Ok(Template { parts })
    }

    /// Whether the template uses `var` (e.g. to know whether a route's groups are needed).
    pub fn uses(&self, pred: impl Fn(&Var) -> bool) -> bool {
        self.parts
            .iter()
            .any(|p| matches!(p, Part::Var(v) if pred(v)))
    }

    /// The highest regex group the template reads (0: none).
    pub fn max_group(&self) -> u8 {
        self.parts
            .iter()
            .filter_map(|p| match p {
                Part::Var(Var::Group(n)) => Some(*n),
                _ => None,
            })
            .max()
            .unwrap_or(0)
    }

    /// The text when the template has no variable.
    pub fn as_literal(&self) -> Option<&str> {
        match self.parts.as_slice() {
            [] => Some(""),
            [Part::Text(t)] => Some(t),
            _ => None,
        }
    }

    /// Renders the template into `out` (appended).
    pub fn render_into(&self, vars: &dyn Vars, out: &mut String) {
        for p in &self.parts {
            match p {
                Part::Text(t) => out.push_str(t),
                Part::Var(v) => vars.var(v, out),
            }
        }
    }

    /// Renders the template into a new string.
    pub fn render(&self, vars: &dyn Vars) -> String {
        let mut out = String::new();
        self.render_into(vars, &mut out);
        out
    }
}

fn flush(lit: &mut String, parts: &mut Vec<Part>) {
    if !lit.is_empty() {
        parts.push(Part::Text(std::mem::take(lit).into_boxed_str()));
    }
}

fn variable(name: &str) -> Result<Var, TemplateError> {
    Ok(match name {
        "host" => Var::Host,
        "path" => Var::Path,
        "query" => Var::Query,
        "path_and_query" => Var::PathAndQuery,
        "scheme" => Var::Scheme,
        "client_ip" => Var::ClientIp,
        "request_id" => Var::RequestId,
        "upstream_host" => Var::UpstreamHost,
        _ => {
            if let Some(h) = name.strip_prefix("header.") {
                let n = HeaderName::from_bytes(h.as_bytes()).map_err(|_| {
                    TemplateError(format!("`{{{name}}}`: `{h}` is not a header name"))
                })?;
                Var::Header(n)
            } else {
                return Err(TemplateError(format!(
                    "unknown variable `{{{name}}}` (known: {VARIABLES})"
                )));
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Req;
    impl Vars for Req {
        fn var(&self, var: &Var, out: &mut String) {
            out.push_str(match var {
                Var::Host => "example.com",
                Var::Path => "/a/b",
                Var::Query => "x=1",
                Var::PathAndQuery => "/a/b?x=1",
                Var::Scheme => "https",
                Var::ClientIp => "10.0.0.1",
                Var::RequestId => "id",
                Var::UpstreamHost => "origin.internal",
                Var::Header(n) if n == "user-agent" => "curl",
                Var::Header(_) => "",
                Var::Group(1) => "one",
                Var::Group(_) => "",
            })
        }
    }

    fn r(t: &str) -> String {
        Template::parse(t).unwrap().render(&Req)
    }

    #[test]
    fn variables_render() {
        assert_eq!(
            r("https://{host}{path_and_query}"),
            "https://example.com/a/b?x=1"
        );
        assert_eq!(r("{scheme}:{client_ip}:{request_id}"), "https:10.0.0.1:id");
        assert_eq!(r("{header.User-Agent}/{header.x-none}"), "curl/");
        assert_eq!(r("/new/$1$2"), "/new/one");
        assert_eq!(r("{upstream_host}"), "origin.internal");
        assert_eq!(r("{path}?{query}"), "/a/b?x=1");
    }

    #[test]
    fn escapes_and_literal_dollars() {
        assert_eq!(r("{{x}} $$1 $Version=1 $"), "{x} $1 $Version=1 $");
        assert_eq!(
            Template::parse("max-age=1").unwrap().as_literal(),
            Some("max-age=1")
        );
        assert_eq!(Template::parse("{host}").unwrap().as_literal(), None);
        assert_eq!(r("ünï{host}ü"), "ünïexample.comü");
    }

    #[test]
    fn errors_name_the_piece() {
        let e = Template::parse("{hots}").unwrap_err().0;
        assert!(e.contains("unknown variable `{hots}`"), "{e}");
        assert!(e.contains("{host}"), "{e}");
        assert!(Template::parse("{host")
            .unwrap_err()
            .0
            .contains("not closed"));
        assert!(Template::parse("a}b").unwrap_err().0.contains("lone"));
        assert!(Template::parse("{header.a b}")
            .unwrap_err()
            .0
            .contains("not a header name"));
        assert!(Template::parse("{}").is_err());
    }

    #[test]
    fn groups_and_uses() {
        let t = Template::parse("/$3/$1/{host}").unwrap();
        assert_eq!(t.max_group(), 3);
        assert!(t.uses(|v| *v == Var::Host));
        assert!(!t.uses(|v| *v == Var::UpstreamHost));
    }
}
