//! `[[route]]` in TOML: the path patterns and target, the matchers (`host`, `path`,
//! `path_prefix`, `methods`, `headers`, `query`, `source`) and the actions (redirects, fixed
//! answers, rewrites, header rules, access, error pages, cache rules), read as written.

use super::{At, DeValue, RawRoute, Reader, Val};
use crate::config::raw::{
    RawBasicAuth, RawCacheKey, RawHeaderRules, RawRateLimit, RawRateLimitTable, RawRedirect,
    RawRespond, RawRewrite,
};

pub(super) const ROUTE_KEYS: &[&str] = &[
    "match",
    "pool",
    "pools",
    "root",
    "cache",
    "grace",
    "purge",
    "host",
    "path",
    "path_prefix",
    "methods",
    "headers",
    "query",
    "source",
    "client_cert",
    "client_cert_subject",
    "redirect",
    "respond",
    "strip_prefix",
    "add_prefix",
    "rewrite",
    "request_headers",
    "response_headers",
    "allow",
    "deny",
    "basic_auth",
    "forward_auth_header",
    "error_pages",
    "intercept_errors",
    "cache_ttl",
    "cache_key",
    "rate_limit",
    "compress",
    "precompressed",
    "acme",
];
const SPLIT_KEYS: &[&str] = &["pool", "weight"];
const REDIRECT_KEYS: &[&str] = &["to", "status"];
const RESPOND_KEYS: &[&str] = &["status", "body", "file", "content_type"];
const REWRITE_KEYS: &[&str] = &["from", "to"];
const HEADER_RULE_KEYS: &[&str] = &["set", "add", "remove"];
const BASIC_AUTH_KEYS: &[&str] = &["realm", "users_file"];
const CACHE_KEY_KEYS: &[&str] = &["ignore_query"];
const RATE_LIMIT_KEYS: &[&str] = &["key", "rate", "burst", "max_keys", "scope"];

impl Reader<'_> {
    /// One `[[route]]` table, every key read as written (checked in validation).
    pub(super) fn route(&mut self, item: &Val<'_>) -> Option<RawRoute> {
        let mut r = RawRoute {
            line: self.line(item.span()),
            ..RawRoute::default()
        };
        self.table(item, "[[route]]", |me, k, v, kline| {
            if !me.route_target(&mut r, k, v) && !me.route_matcher(&mut r, k, v) {
                me.route_action(&mut r, k, v, kline);
            }
        });
        Some(r)
    }

    /// What serves the route and its cache settings. `false`: not one of these keys.
    fn route_target(&mut self, r: &mut RawRoute, k: &str, v: &Val<'_>) -> bool {
        match k {
            "pool" => r.pool = self.string(k, v),
            "pools" => r.pools = self.split(k, v),
            "root" => r.root = self.string(k, v),
            "cache" => r.cache = self.bool(k, v),
            "grace" => r.grace = self.duration(k, v),
            "purge" => r.purge = self.str_list(k, v),
            "cache_ttl" => r.cache_ttl = self.str_map(k, v),
            "cache_key" => r.cache_key = self.cache_key(k, v),
            "compress" => r.compress = self.compress("[[route]]", k, v),
            "precompressed" => {
                let line = self.line(v.span());
                r.precompressed = self.bool(k, v).map(|b| At::new(b, line));
            }
            "acme" => {
                let line = self.line(v.span());
                r.acme = self.bool(k, v).map(|b| At::new(b, line));
            }
            _ => return false,
        }
        true
    }

    /// `pools`: a list of `{ pool = "NAME", weight = N }` tables.
    fn split(&mut self, k: &str, v: &Val<'_>) -> Option<At<Vec<crate::config::raw::RawSplit>>> {
        let DeValue::Array(items) = v.get_ref() else {
            self.type_error(
                k,
                v,
                "a list of tables such as [{ pool = \"v1\", weight = 95 }]",
            );
            return None;
        };
        let mut split = Vec::new();
        for item in items {
            let mut s = crate::config::raw::RawSplit {
                line: self.line(item.span()),
                ..Default::default()
            };
            self.table(item, "an entry of `pools`", |me, sk, sv, sline| match sk {
                "pool" => s.pool = me.string("pool", sv),
                "weight" => s.weight = me.int("weight", sv),
                _ => me
                    .diag
                    .unknown_key(sline, "an entry of `pools`", sk, SPLIT_KEYS),
            });
            split.push(s);
        }
        Some(At::new(split, self.line(v.span())))
    }

    /// The matchers. `false`: not one of these keys.
    fn route_matcher(&mut self, r: &mut RawRoute, k: &str, v: &Val<'_>) -> bool {
        match k {
            "match" => r.patterns = self.str_list(k, v),
            "host" => r.hosts = self.str_list(k, v),
            "path" => r.path = self.string(k, v),
            "path_prefix" => r.path_prefix = self.string(k, v),
            "methods" => r.methods = self.str_list(k, v),
            "headers" => r.headers = self.str_map(k, v),
            "query" => r.query = self.str_map(k, v),
            "source" => r.source = self.str_list(k, v),
            "client_cert" => r.client_cert = self.string(k, v),
            "client_cert_subject" => r.client_cert_subject = self.string(k, v),
            _ => return false,
        }
        true
    }

    /// The actions; an unknown key is reported here.
    fn route_action(&mut self, r: &mut RawRoute, k: &str, v: &Val<'_>, kline: usize) {
        match k {
            "redirect" => r.redirect = self.redirect(k, v),
            "respond" => r.respond = self.respond(k, v),
            "strip_prefix" => r.strip_prefix = self.string(k, v),
            "add_prefix" => r.add_prefix = self.string(k, v),
            "rewrite" => r.rewrite = self.rewrite(k, v),
            "request_headers" => r.request_headers = self.header_rules(k, v),
            "response_headers" => r.response_headers = self.header_rules(k, v),
            "allow" => r.allow = self.str_list(k, v),
            "deny" => r.deny = self.str_list(k, v),
            "basic_auth" => r.basic_auth = self.basic_auth(k, v),
            "forward_auth_header" => r.forward_auth_header = self.bool(k, v),
            "error_pages" => r.error_pages = self.str_map(k, v),
            "intercept_errors" => r.intercept_errors = self.bool(k, v),
            "rate_limit" => r.rate_limit = self.rate_limit("[[route]]", k, v),
            _ => self.diag.unknown_key(kline, "[[route]]", k, ROUTE_KEYS),
        }
    }

    /// A table of strings (`{ name = "value", ... }`), names as written.
    pub(super) fn str_map(&mut self, k: &str, v: &Val<'_>) -> Vec<(String, At<String>)> {
        let mut out = Vec::new();
        if !matches!(v.get_ref(), DeValue::Table(_)) {
            self.type_error(k, v, "a table of strings such as { name = \"value\" }");
            return out;
        }
        self.table(v, k, |me, name, val, _| {
            if let Some(s) = me.string(&format!("{k}.{name}"), val) {
                out.push((name.to_string(), s));
            }
        });
        out
    }

    /// `[server] request_id`: `true` (`X-Request-Id`), `false`, or a field name.
    pub(super) fn request_id(&mut self, k: &str, v: &Val<'_>) -> Option<At<String>> {
        let line = self.line(v.span());
        match v.get_ref() {
            DeValue::Boolean(true) => Some(At::new("x-request-id".into(), line)),
            DeValue::Boolean(false) => None,
            DeValue::String(_) => self.string(k, v),
            _ => {
                self.type_error(k, v, "true, false or a header name");
                None
            }
        }
    }

    /// Reads a sub-table's keys with `f`; reports keys `f` does not know against `known`.
    fn sub_table<T: Default>(
        &mut self,
        k: &str,
        v: &Val<'_>,
        known: &[&str],
        mut f: impl FnMut(&mut Self, &mut T, &str, &Val<'_>) -> bool,
    ) -> Option<(T, usize)> {
        if !matches!(v.get_ref(), DeValue::Table(_)) {
            self.type_error(k, v, "a table such as { key = value }");
            return None;
        }
        let mut t = T::default();
        let section = format!("[[route]] {k}");
        self.table(v, &section, |me, sk, sv, sline| {
            if !f(me, &mut t, sk, sv) {
                me.diag.unknown_key(sline, &section, sk, known);
            }
        });
        Some((t, self.line(v.span())))
    }

    fn redirect(&mut self, k: &str, v: &Val<'_>) -> Option<RawRedirect> {
        let (mut t, line) =
            self.sub_table(k, v, REDIRECT_KEYS, |me, t: &mut RawRedirect, sk, sv| {
                match sk {
                    "to" => t.to = me.string("redirect.to", sv),
                    "status" => t.status = me.int("redirect.status", sv),
                    _ => return false,
                }
                true
            })?;
        t.line = line;
        Some(t)
    }

    fn respond(&mut self, k: &str, v: &Val<'_>) -> Option<RawRespond> {
        let (mut t, line) =
            self.sub_table(k, v, RESPOND_KEYS, |me, t: &mut RawRespond, sk, sv| {
                match sk {
                    "status" => t.status = me.int("respond.status", sv),
                    "body" => t.body = me.string("respond.body", sv),
                    "file" => t.file = me.string("respond.file", sv),
                    "content_type" => t.content_type = me.string("respond.content_type", sv),
                    _ => return false,
                }
                true
            })?;
        t.line = line;
        Some(t)
    }

    fn rewrite(&mut self, k: &str, v: &Val<'_>) -> Option<RawRewrite> {
        let (mut t, line) =
            self.sub_table(k, v, REWRITE_KEYS, |me, t: &mut RawRewrite, sk, sv| {
                match sk {
                    "from" => t.from = me.string("rewrite.from", sv),
                    "to" => t.to = me.string("rewrite.to", sv),
                    _ => return false,
                }
                true
            })?;
        t.line = line;
        Some(t)
    }

    fn header_rules(&mut self, k: &str, v: &Val<'_>) -> Option<RawHeaderRules> {
        let key = k.to_string();
        let (mut t, line) = self.sub_table(
            k,
            v,
            HEADER_RULE_KEYS,
            |me, t: &mut RawHeaderRules, sk, sv| {
                let name = format!("{key}.{sk}");
                match sk {
                    "set" => t.set = me.str_map(&name, sv),
                    "add" => t.add = me.str_map(&name, sv),
                    "remove" => t.remove = me.str_list(&name, sv),
                    _ => return false,
                }
                true
            },
        )?;
        t.line = line;
        Some(t)
    }

    fn basic_auth(&mut self, k: &str, v: &Val<'_>) -> Option<RawBasicAuth> {
        let (mut t, line) =
            self.sub_table(k, v, BASIC_AUTH_KEYS, |me, t: &mut RawBasicAuth, sk, sv| {
                match sk {
                    "realm" => t.realm = me.string("basic_auth.realm", sv),
                    "users_file" => t.users_file = me.string("basic_auth.users_file", sv),
                    _ => return false,
                }
                true
            })?;
        t.line = line;
        Some(t)
    }

    /// `rate_limit`, on a route or in `[defaults]` (`section`): a table, or `false`.
    pub(super) fn rate_limit(
        &mut self,
        section: &str,
        k: &str,
        v: &Val<'_>,
    ) -> Option<RawRateLimit> {
        match v.get_ref() {
            DeValue::Boolean(false) => return Some(RawRateLimit::Off),
            DeValue::Table(_) => {}
            _ => {
                self.type_error(
                    k,
                    v,
                    "a table such as { rate = \"100/s\", burst = 50 } or false",
                );
                return None;
            }
        }
        let mut t = RawRateLimitTable {
            line: self.line(v.span()),
            ..RawRateLimitTable::default()
        };
        let section = format!("{section} rate_limit");
        self.table(v, &section, |me, sk, sv, sline| match sk {
            "key" => t.key = me.string("rate_limit.key", sv),
            "rate" => t.rate = me.string("rate_limit.rate", sv),
            "burst" => t.burst = me.int("rate_limit.burst", sv),
            "max_keys" => t.max_keys = me.int("rate_limit.max_keys", sv),
            "scope" => t.scope = me.string("rate_limit.scope", sv),
            _ => me.diag.unknown_key(sline, &section, sk, RATE_LIMIT_KEYS),
        });
        Some(RawRateLimit::On(t))
    }

    fn cache_key(&mut self, k: &str, v: &Val<'_>) -> Option<RawCacheKey> {
        let (mut t, line) =
            self.sub_table(k, v, CACHE_KEY_KEYS, |me, t: &mut RawCacheKey, sk, sv| {
                if sk != "ignore_query" {
                    return false;
                }
                match sv.get_ref() {
                    DeValue::Boolean(b) => t.ignore_whole_query = Some(*b),
                    _ => t.ignore_query = me.str_list("cache_key.ignore_query", sv),
                }
                true
            })?;
        t.line = line;
        Some(t)
    }
}
