//! Routing: the first route (in file order) whose matchers all match the request: one of its
//! path patterns (`match`) is found in the path, and its `host`, `path`, `path_prefix`,
//! `methods`, `headers`, `query` and `source` matchers ([`crate::matching`]) hold.
//!
//! Patterns are searched, not anchored, because that is what the reference format means:
//! `Match /*.php` must hit `/index.php`, and `^/.*` anchors itself when the author wants it.
//! Each route's patterns are compiled once into a single alternation. With a few routes they are
//! tried in order, stopping at the first hit; from [`SET_THRESHOLD`] routes on, one `RegexSet`
//! pass finds every matching route at once and the lowest index wins (measured: 50 prefix routes
//! cost 1.3 µs tried one by one, see docs/performance.md).

use crate::matching::{parent, HostPattern, Input, Miss, RequestMatch};
use regex::{Regex, RegexSet};
use std::collections::HashMap;

/// From this many routes on, routing uses one `RegexSet` pass.
pub const SET_THRESHOLD: usize = 8;

/// Compiled routes. Cheap to share; built once per config load.
#[derive(Debug, Clone)]
pub struct Router {
    routes: Vec<(Regex, usize)>,
    set: Option<RegexSet>,
    /// When some route has a matcher besides its path patterns: routes by host.
    hosts: Option<Box<HostIndex>>,
}

/// Routes by host, so that picking among 1 000 sites costs what picking among 10 does: exact
/// names by hash lookup, one-label wildcards by the name under the first label, regexes tried
/// only when some route has one, and routes without `host` always candidates. Each list holds
/// route indices in file order; a request's candidates are their ordered merge.
#[derive(Debug, Clone, Default)]
struct HostIndex {
    exact: HashMap<Box<str>, Vec<u32>>,
    wildcard: HashMap<Box<str>, Vec<u32>>,
    regex: Vec<(Regex, u32)>,
    any: Vec<u32>,
    /// Per route: its matchers, and whether it has path patterns at all.
    matchers: Vec<(RequestMatch, bool)>,
}

impl Router {
    /// `routes` are (patterns, target) in priority order. Patterns must already be valid
    /// (config validation compiled them once).
    pub fn new(routes: &[(Vec<String>, usize)]) -> Result<Router, regex::Error> {
        let mut out = Vec::with_capacity(routes.len());
        for (patterns, target) in routes {
            let joined = patterns
                .iter()
                .map(|p| format!("(?:{p})"))
                .collect::<Vec<_>>()
                .join("|");
            out.push((Regex::new(&joined)?, *target));
        }
        let set = if out.len() >= SET_THRESHOLD {
            Some(RegexSet::new(out.iter().map(|(r, _)| r.as_str()))?)
        } else {
            None
        };
        Ok(Router {
            routes: out,
            set,
            hosts: None,
        })
    }

    /// Routes with matchers besides their path patterns: `routes[i]`'s matchers are
    /// `matchers[i]`; a route with no patterns matches every path. When no route has a
    /// matcher, this is [`Router::new`].
    pub fn with_matchers(
        routes: &[(Vec<String>, usize)],
        matchers: Vec<RequestMatch>,
    ) -> Result<Router, regex::Error> {
        let mut router = Router::new(routes)?;
        if matchers.iter().all(RequestMatch::is_empty) {
            return Ok(router);
        }
        let mut index = HostIndex::default();
        for (i, (m, (patterns, _))) in matchers.into_iter().zip(routes).enumerate() {
            let i = i as u32;
            if m.hosts.is_empty() {
                index.any.push(i);
            }
            for h in &m.hosts {
                match h {
                    HostPattern::Exact(n) => index.exact.entry(n.clone()).or_default().push(i),
                    HostPattern::Wildcard(n) => {
                        index.wildcard.entry(n.clone()).or_default().push(i)
                    }
                    HostPattern::Regex(r) => index.regex.push((r.clone(), i)),
                }
            }
            index.matchers.push((m, !patterns.is_empty()));
        }
        // Routes in file order in every list, each once.
        for list in index.exact.values_mut().chain(index.wildcard.values_mut()) {
            list.dedup();
        }
        router.set = None;
        router.hosts = Some(Box::new(index));
        Ok(router)
    }

    /// Whether some route matches on more than the path (the request's other parts are read).
    pub fn needs_request(&self) -> bool {
        self.hosts.is_some()
    }

    /// The first route that matches the whole request, and its target.
    pub fn route_request(&self, req: &Input<'_>) -> Option<(usize, usize)> {
        let Some(index) = &self.hosts else {
            return self.route(req.path);
        };
        let none: &[u32] = &[];
        let exact = index.exact.get(req.host).map_or(none, Vec::as_slice);
        let wild = parent(req.host)
            .and_then(|p| index.wildcard.get(p))
            .map_or(none, Vec::as_slice);
        let lists = [exact, wild, index.any.as_slice()];
        let mut at = [0usize; 3];
        // The next regex-host route whose regex matches (checked once each).
        let mut re_at = 0;
        let next_regex = |from: &mut usize| {
            while let Some((re, i)) = index.regex.get(*from) {
                if re.is_match(req.host) {
                    return Some(*i);
                }
                *from += 1;
            }
            None
        };
        let mut re_next = next_regex(&mut re_at);
        let mut last = None;
        loop {
            let mut best = re_next;
            let mut from = 3;
            for (k, list) in lists.iter().enumerate() {
                if let Some(&i) = list.get(at[k]) {
                    if best.map_or(true, |b| i < b) {
                        best = Some(i);
                        from = k;
                    }
                }
            }
            let i = best?;
            if from == 3 {
                re_at += 1;
                re_next = next_regex(&mut re_at);
            } else {
                at[from] += 1;
            }
            if last == Some(i) {
                continue;
            }
            last = Some(i);
            let (m, has_patterns) = &index.matchers[i as usize];
            let (re, target) = &self.routes[i as usize];
            if (!has_patterns || re.is_match(req.path)) && m.matches_rest(req) {
                return Some((i as usize, *target));
            }
        }
    }

    /// Why route `i` does not match this request (the first matcher that fails: `host`, then
    /// its path patterns, then [`RequestMatch::miss_rest`]'s order), or `None` when it
    /// matches. The same tests [`Router::route_request`] makes, one route at a time, for
    /// `langur explain`; never on the request path.
    pub fn miss<'r>(&'r self, i: usize, req: &Input<'_>) -> Option<Miss<'r>> {
        let (re, _) = self.routes.get(i)?;
        let Some(index) = &self.hosts else {
            return (!re.is_match(req.path)).then_some(Miss::Match);
        };
        let (m, has_patterns) = &index.matchers[i];
        if !m.host_matches(req.host) {
            return Some(Miss::Host);
        }
        if *has_patterns && !re.is_match(req.path) {
            return Some(Miss::Match);
        }
        m.miss_rest(req)
    }

    /// How many routes there are.
    pub fn len(&self) -> usize {
        self.routes.len()
    }

    /// Whether there is no route.
    pub fn is_empty(&self) -> bool {
        self.routes.is_empty()
    }

    /// The groups of route `route`'s path pattern in `path` (for `$1`.. in its templates;
    /// meaningful when the route has one pattern).
    pub fn captures<'p>(&self, route: usize, path: &'p str) -> Option<regex::Captures<'p>> {
        self.routes.get(route)?.0.captures(path)
    }

    /// The index of the first matching route and its target.
    pub fn route(&self, path: &str) -> Option<(usize, usize)> {
        if let Some(set) = &self.set {
            return set
                .matches(path)
                .iter()
                .next()
                .map(|i| (i, self.routes[i].1));
        }
        self.routes
            .iter()
            .enumerate()
            .find(|(_, (re, _))| re.is_match(path))
            .map(|(i, (_, t))| (i, *t))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reference() -> Router {
        Router::new(&[
            (vec!["/*.php".into()], 0),
            (
                vec![
                    "/*.jpg".into(),
                    "/*.png".into(),
                    "/*.css".into(),
                    "/*.js".into(),
                    "/*.html".into(),
                ],
                1,
            ),
        ])
        .unwrap()
    }

    /// `miss` tells, route by route, what `route_request` decides: the first route without a
    /// miss is the one it picks.
    #[test]
    fn misses_agree_with_the_choice() {
        use crate::matching::HostPattern;
        let m = |hosts: &[&str], prefix: Option<&str>| RequestMatch {
            hosts: hosts
                .iter()
                .map(|h| HostPattern::parse(h).unwrap())
                .collect(),
            path_prefix: prefix.map(Into::into),
            ..Default::default()
        };
        let routes = vec![
            (vec![], 0),
            (vec![r"\.php$".into()], 1),
            (vec![], 2),
            (vec![], 3),
        ];
        let matchers = vec![
            m(&["a.example"], None),
            m(&["*.example"], None),
            m(&[], Some("/api")),
            m(&[], None),
        ];
        let r = Router::with_matchers(&routes, matchers).unwrap();
        let headers = http::HeaderMap::new();
        for (host, path) in [
            ("a.example", "/"),
            ("b.example", "/x.php"),
            ("b.example", "/api/x"),
            ("c.other", "/api"),
            ("c.other", "/y"),
        ] {
            let input = Input {
                host,
                path,
                query: None,
                method: &http::Method::GET,
                headers: &headers,
                source: std::net::Ipv4Addr::LOCALHOST.into(),
                client_cert: None,
            };
            let first = (0..r.len()).find(|&i| r.miss(i, &input).is_none());
            assert_eq!(first, r.route_request(&input).map(|x| x.0), "{host}{path}");
        }
        let input = Input {
            host: "b.example",
            path: "/x",
            query: None,
            method: &http::Method::GET,
            headers: &headers,
            source: std::net::Ipv4Addr::LOCALHOST.into(),
            client_cert: None,
        };
        assert_eq!(r.miss(0, &input), Some(Miss::Host));
        assert_eq!(r.miss(1, &input), Some(Miss::Match));
        assert_eq!(r.miss(2, &input), Some(Miss::PathPrefix));
        assert_eq!(r.miss(3, &input), None);
    }

    #[test]
    fn reference_patterns_are_searched_not_anchored() {
        let r = reference();
        assert_eq!(r.route("/index.php").map(|x| x.1), Some(0));
        assert_eq!(r.route("/img/a.jpg").map(|x| x.1), Some(1));
        assert_eq!(r.route("/style.css").map(|x| x.1), Some(1));
        assert_eq!(r.route("/readme.txt"), None);
    }

    #[test]
    fn first_route_wins_and_anchors_are_honoured() {
        let r = Router::new(&[(vec![r"^/api/".into()], 7), (vec!["^/.*".into()], 9)]).unwrap();
        assert_eq!(r.route("/api/x"), Some((0, 7)));
        assert_eq!(r.route("/x/api/"), Some((1, 9)));
        // `^/api/` is anchored on purpose: without the anchor `/x/api/` would go to the API pool.
        let unanchored = Router::new(&[(vec!["/api/".into()], 7)]).unwrap();
        assert_eq!(unanchored.route("/x/api/"), Some((0, 7)));
    }

    #[test]
    fn many_routes_keep_first_match_order() {
        let mut routes: Vec<(Vec<String>, usize)> = (0..20)
            .map(|i| (vec![format!("^/s{i}/")], 100 + i))
            .collect();
        routes.push((vec!["^/".into()], 999));
        routes.insert(3, (vec![r"\.png$".into()], 555));
        let r = Router::new(&routes).unwrap();
        assert!(r.set.is_some());
        assert_eq!(r.route("/s7/a"), Some((8, 107)));
        assert_eq!(
            r.route("/s1/logo.png"),
            Some((1, 101)),
            "an earlier route wins"
        );
        assert_eq!(
            r.route("/s9/logo.png"),
            Some((3, 555)),
            "an earlier route wins"
        );
        assert_eq!(r.route("/other"), Some((21, 999)));
    }
}
