//! `[[route]]` (`[PROXY_ENTRY]`): each route key group has its own check, and `route` puts
//! them together in file order.

use super::*;

/// Routes in file order. A route whose target is wrong (see [`target`]) is reported and left
/// out; its `root` and `purge` are then not looked at.
pub(super) fn routes(raw: &RawConfig, diag: &mut Diag) -> Vec<RouteConfig> {
    let pool_names: Vec<&str> = raw.pools.iter().map(|p| p.name.as_str()).collect();
    raw.routes
        .iter()
        .filter_map(|r| route(r, &pool_names, diag))
        .collect()
}

/// One route: its patterns, what serves it, the directory, the purge networks.
fn route(r: &RawRoute, pool_names: &[&str], diag: &mut Diag) -> Option<RouteConfig> {
    for pat in &r.patterns {
        check_regex(pat, "match", diag);
    }
    let pool = target(r, pool_names, diag)?;
    let root = root(r.root.as_ref(), diag);
    let purge = purge(&r.purge, diag);
    Some(RouteConfig {
        patterns: r.patterns.iter().map(|p| p.value.clone()).collect(),
        pool,
        root,
        cache: r.cache.unwrap_or(false),
        grace: r.grace.as_ref().map(|g| g.value),
        purge,
        line: r.line,
    })
}

/// What serves a route: `Some(Some(i))` the pool at index `i` of the file's pools, `Some(None)`
/// a `root` directory. `None` (reported) when it names both, neither, or a pool that is not
/// defined (with the closest name suggested).
fn target(r: &RawRoute, pool_names: &[&str], diag: &mut Diag) -> Option<Option<usize>> {
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
                "a route needs `pool = \"NAME\"` or `root = \"/a/directory\"`",
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

/// A route's `root`, made absolute (symbolic links resolved); an error when it is missing,
/// unreadable or not a directory.
fn root(root: Option<&At<String>>, diag: &mut Diag) -> Option<std::path::PathBuf> {
    let root = root?;
    match std::fs::canonicalize(&root.value) {
        Ok(p) if p.is_dir() => Some(p),
        Ok(_) => {
            diag.error(
                root.line,
                Some("root"),
                format!("`{}` is not a directory", root.value),
            );
            None
        }
        Err(e) => {
            diag.error(root.line, Some("root"), format!("`{}`: {e}", root.value));
            None
        }
    }
}

/// The client networks that may `PURGE`: networks (`10.0.0.0/8`) or single addresses (a host
/// network); anything else is reported and left out.
fn purge(list: &[At<String>], diag: &mut Diag) -> Vec<ipnet::IpNet> {
    let mut purge = Vec::new();
    for a in list {
        let parsed = a
            .value
            .parse::<ipnet::IpNet>()
            .or_else(|_| a.value.parse::<std::net::IpAddr>().map(ipnet::IpNet::from));
        match parsed {
            Ok(n) => purge.push(n),
            Err(_) => diag.error(
                a.line,
                Some("purge"),
                format!(
                    "`{}` is not an address or network (write 127.0.0.1 or 10.0.0.0/8)",
                    a.value
                ),
            ),
        }
    }
    purge
}

/// Warnings about what the routes leave out: a pool no route names (a route that failed its
/// checks still counts as naming its pool), and a file without routes (only when it has no
/// errors), where every request is answered 404.
pub(super) fn route_warnings(raw: &RawConfig, routes: &[RouteConfig], diag: &mut Diag) {
    for (i, p) in raw.pools.iter().enumerate() {
        if !routes.iter().any(|r| r.pool == Some(i))
            && !raw
                .routes
                .iter()
                .any(|r| r.pool.as_ref().is_some_and(|n| n.value == p.name))
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
