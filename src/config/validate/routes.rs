//! `[[route]]` (`[PROXY_ENTRY]`): each route key group has its own check, and `route` puts
//! them together in file order.

use super::*;

/// Routes in file order. A route whose target is wrong (see [`target`]) is reported and left
/// out; its `root` and `purge` are then not looked at.
pub(super) fn routes(raw: &RawConfig, diag: &mut Diag) -> Vec<RouteConfig> {
    let pool_names: Vec<&str> = raw.pools.iter().map(|p| p.name.as_str()).collect();
    let base = base_dir(&diag.file);
    // Checked once, at its own line; a route without `rate_limit` takes it.
    let default_limit = raw
        .default_rate_limit
        .as_ref()
        .and_then(|d| rules::rate_limit(d, raw.cluster.is_some(), diag));
    // Checked once, at its own line; a route without `compress` takes it.
    let default_compress =
        crate::config::compress::compress(raw.default_compress.as_ref(), None, diag)
            .map(std::sync::Arc::new);
    let routes: Vec<RouteConfig> = raw
        .routes
        .iter()
        .filter_map(|r| {
            let mut route = route(r, &pool_names, &base, diag)?;
            route.rules.rate_limit = match &r.rate_limit {
                Some(own) => rules::rate_limit(own, raw.cluster.is_some(), diag),
                None => default_limit.clone(),
            };
            route.encoding.compress = match &r.compress {
                Some(own) => crate::config::compress::compress(Some(own), None, diag)
                    .map(std::sync::Arc::new),
                None => default_compress.clone(),
            };
            Some(route)
        })
        .collect();
    shadowed(&routes, diag);
    routes
}

/// The directory of the configuration file, which file names in it are relative to.
pub(super) fn base_dir(file: &str) -> std::path::PathBuf {
    std::path::Path::new(file)
        .parent()
        .map(|p| p.to_path_buf())
        .unwrap_or_default()
}

/// One route: its patterns and matchers, what serves it, the directory, the purge networks,
/// its actions.
fn route(
    r: &RawRoute,
    pool_names: &[&str],
    base: &std::path::Path,
    diag: &mut Diag,
) -> Option<RouteConfig> {
    for pat in &r.patterns {
        check_regex(pat, "match", diag);
    }
    let matcher = rules::matcher(r, diag);
    let written = !(r.patterns.is_empty()
        && r.hosts.is_empty()
        && r.path.is_none()
        && r.path_prefix.is_none()
        && r.methods.is_empty()
        && r.headers.is_empty()
        && r.query.is_empty()
        && r.source.is_empty()
        && r.client_cert.is_none()
        && r.client_cert_subject.is_none());
    if !written {
        diag.error(
            r.line,
            Some("match"),
            "[[route]] needs a matcher: `match`, `host`, `path`, `path_prefix`, `methods`, `headers`, `query`, `source` or `client_cert` (`path_prefix = \"/\"` takes every request)",
        );
        return None;
    }
    let rules = rules::rules(r, base, diag);
    let split = match &r.pools {
        Some(pools) => split(r, pools, pool_names, diag)?,
        None => Vec::new(),
    };
    let pool = match split.first() {
        Some((first, _)) => Some(*first),
        None => target(r, pool_names, diag)?,
    };
    let root = root(r.root.as_ref(), base, diag);
    let purge = rules::networks(&r.purge, "purge", diag);
    Some(RouteConfig {
        patterns: r.patterns.iter().map(|p| p.value.clone()).collect(),
        pool,
        split,
        root,
        cache: r.cache.unwrap_or(false),
        grace: r.grace.as_ref().map(|g| g.value),
        purge,
        line: r.line,
        matcher,
        rules,
        encoding: crate::config::compress::Compression {
            compress: None,
            precompressed: precompressed(r, diag),
        },
    })
}

/// `precompressed`: only a route with `root` has files with siblings.
fn precompressed(r: &RawRoute, diag: &mut Diag) -> bool {
    let Some(p) = &r.precompressed else {
        return false;
    };
    if p.value && r.root.is_none() {
        diag.warn(
            p.line,
            Some("precompressed"),
            "`precompressed` has no effect without `root`",
        );
    }
    p.value
}

/// Warns about a route that an earlier one takes every request of: same host set (or none),
/// and a path that always matches.
fn shadowed(routes: &[RouteConfig], diag: &mut Diag) {
    for (j, later) in routes.iter().enumerate() {
        let earlier = routes[..j].iter().find(|e| {
            let all_paths = e.patterns.is_empty()
                || e.patterns
                    .iter()
                    .any(|p| matches!(p.as_str(), "" | "/" | "^/" | ".*" | "^.*" | "^/.*"));
            all_paths && e.matcher.covers(&later.matcher)
        });
        if let Some(e) = earlier {
            diag.warn(
                later.line,
                None,
                format!(
                    "this route is never used: the route on line {} takes every request it would",
                    e.line
                ),
            );
        }
    }
}

/// What serves a route: `Some(Some(i))` the pool at index `i` of the file's pools, `Some(None)`
/// a `root` directory. `None` (reported) when it names both, neither, or a pool that is not
/// defined (with the closest name suggested).
fn target(r: &RawRoute, pool_names: &[&str], diag: &mut Diag) -> Option<Option<usize>> {
    let answers = r
        .redirect
        .as_ref()
        .map(|x| (x.line, "redirect"))
        .or(r.respond.as_ref().map(|x| (x.line, "respond")));
    if let Some((line, key)) = answers {
        if r.pool.is_some() || r.root.is_some() || (r.redirect.is_some() && r.respond.is_some()) {
            diag.error(
                line,
                Some(key),
                "a route with `redirect` or `respond` answers by itself: it has no `pool`, `root`, or the other one",
            );
            return None;
        }
        return Some(None);
    }
    match (&r.pool, &r.root) {
        (Some(_), Some(root)) => {
            diag.error(
                root.line,
                Some("root"),
                "a route serves either a pool or a `root` directory, not both",
            );
            None
        }
        (None, None) => {
            diag.error(
                r.line,
                Some("pool"),
                "a route needs `pool = \"NAME\"`, `root = \"/a/directory\"`, `redirect = { to = \"...\" }` or `respond = { ... }`",
            );
            None
        }
        (None, Some(_)) => Some(None),
        (Some(name), None) => match pool_names.iter().position(|n| *n == name.value) {
            Some(i) => Some(Some(i)),
            None => {
                let hint = suggest(&name.value, pool_names)
                    .map(|s| format!(" (did you mean `{s}`?)"))
                    .unwrap_or_default();
                diag.error(
                    name.line,
                    Some("pool"),
                    format!(
                        "route names pool `{}`, which is not defined{hint}",
                        name.value
                    ),
                );
                None
            }
        },
    }
}

/// A traffic split (`pools`): each pool known and named once, weights 0 to 1000 (1 when not
/// given) and not all 0. It is the route's target: no `pool`, `root`, `redirect` or
/// `respond` beside it, and no `cache` (the entries would answer one pool's clients with
/// another's responses).
fn split(
    r: &RawRoute,
    pools: &At<Vec<crate::config::raw::RawSplit>>,
    pool_names: &[&str],
    diag: &mut Diag,
) -> Option<Vec<(usize, u32)>> {
    let beside = [
        ("pool", r.pool.is_some()),
        ("root", r.root.is_some()),
        ("redirect", r.redirect.is_some()),
        ("respond", r.respond.is_some()),
        ("cache", r.cache == Some(true)),
    ];
    if let Some((key, _)) = beside.iter().find(|(_, set)| *set) {
        let msg = format!("a route with `pools` (a traffic split) has no `{key}`: the split chooses the pool, and a cache would answer one pool's clients with another's responses");
        diag.error(pools.line, Some("pools"), msg);
        return None;
    }
    let mut out: Vec<(usize, u32)> = Vec::new();
    let mut ok = !pools.value.is_empty();
    if !ok {
        diag.error(
            pools.line,
            Some("pools"),
            "`pools` needs at least one `{ pool = \"NAME\", weight = N }`",
        );
    }
    for s in &pools.value {
        let Some(name) = &s.pool else {
            diag.error(
                s.line,
                Some("pool"),
                "an entry of `pools` needs `pool = \"NAME\"`",
            );
            ok = false;
            continue;
        };
        let weight = ranged(diag, s.weight.as_ref(), "weight", 0, 1000).map_or(1, |w| w as u32);
        match pool_names.iter().position(|n| *n == name.value) {
            Some(i) if out.iter().any(|(j, _)| *j == i) => {
                let msg = format!("`pools` names pool `{}` twice", name.value);
                diag.error(name.line, Some("pool"), msg);
                ok = false;
            }
            Some(i) => out.push((i, weight)),
            None => {
                let hint = suggest(&name.value, pool_names)
                    .map(|s| format!(" (did you mean `{s}`?)"))
                    .unwrap_or_default();
                let msg = format!(
                    "`pools` names pool `{}`, which is not defined{hint}",
                    name.value
                );
                diag.error(name.line, Some("pool"), msg);
                ok = false;
            }
        }
    }
    if ok && out.iter().all(|(_, w)| *w == 0) {
        diag.error(
            pools.line,
            Some("weight"),
            "the weights of `pools` are all 0: no pool would get a request",
        );
        ok = false;
    }
    ok.then_some(out)
}

/// A route's `root` (relative to the configuration file's directory), made absolute (symbolic
/// links kept); an error when it is missing, unreadable or not a directory.
fn root(
    root: Option<&At<String>>,
    base: &std::path::Path,
    diag: &mut Diag,
) -> Option<std::path::PathBuf> {
    let root = root?;
    // Kept as written (made absolute), not resolved: a root that is a symlink is followed to
    // wherever it points when a request comes (see `proxy::files::root`).
    let path = base.join(&root.value);
    match std::fs::canonicalize(&path) {
        Ok(p) if p.is_dir() => Some(std::path::absolute(&path).unwrap_or(p)),
        Ok(_) => {
            diag.error(
                root.line,
                Some("root"),
                format!("`{}` is not a directory", path.display()),
            );
            None
        }
        Err(e) => {
            diag.error(
                root.line,
                Some("root"),
                format!("`{}`: {e}", path.display()),
            );
            None
        }
    }
}

/// Whether a route as written names a pool, in `pool` or in `pools`.
fn names_pool(r: &RawRoute, name: &str) -> bool {
    let named = |n: &Option<At<String>>| n.as_ref().is_some_and(|n| n.value == name);
    named(&r.pool)
        || r.pools
            .as_ref()
            .is_some_and(|ps| ps.value.iter().any(|s| named(&s.pool)))
}

/// Warnings about what the routes leave out: a pool no route names (a route that failed its
/// checks still counts as naming its pool), and a file without routes (only when it has no
/// errors), where every request is answered 404.
pub(super) fn route_warnings(raw: &RawConfig, routes: &[RouteConfig], diag: &mut Diag) {
    for (i, p) in raw.pools.iter().enumerate() {
        if !routes
            .iter()
            .any(|r| r.pool == Some(i) || r.split.iter().any(|(j, _)| *j == i))
            && !raw.routes.iter().any(|r| names_pool(r, &p.name))
        {
            diag.warn(
                p.line,
                None,
                format!("pool `{}` is not used by any route", p.name),
            );
        }
    }
    if raw.routes.is_empty() && diag.errors.is_empty() {
        diag.warn(1, None, "no routes: every request will be answered 404");
    }
}
