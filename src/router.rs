//! Routing: the first route (in file order) one of whose patterns is found in the request path.
//!
//! Patterns are searched, not anchored, because that is what the reference format means:
//! `Match /*.php` must hit `/index.php`, and `^/.*` anchors itself when the author wants it.
//! Each route's patterns are compiled once into a single alternation, so a route costs one
//! regex search and routes are tried in order, stopping at the first hit.

use regex::Regex;

/// Compiled routes. Cheap to share; built once per config load.
#[derive(Debug, Clone)]
pub struct Router {
    routes: Vec<(Regex, usize)>,
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
        Ok(Router { routes: out })
    }

    /// The index of the first matching route and its target.
    pub fn route(&self, path: &str) -> Option<(usize, usize)> {
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
}
