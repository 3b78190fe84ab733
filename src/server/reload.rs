//! Reload: re-read the file, check it, and swap it in whole or change nothing.

use super::*;

/// Re-reads the config file and swaps in a new snapshot. A config with errors changes
/// nothing: the errors are logged and returned. Servers present before and after (same pool,
/// same address) keep their health, operator state and counters; the cache is kept while its
/// rules stay the same. Listeners follow the file: new addresses are opened (all of them
/// before anything changes, so a port that cannot be bound refuses the reload), removed ones
/// stop accepting and close once their connections are done. The admin token, its host names,
/// the instance name and `max_connections` change too; only `workers` needs a restart (a
/// reload that changes it is refused). Requests in flight finish on the snapshot they started
/// with.
pub fn reload(shared: &Arc<Shared>) -> anyhow::Result<String> {
    let _one = lock(&shared.reloading);
    let Some(path) = &shared.config_path else {
        anyhow::bail!("no config file to re-read (langur was started without one)");
    };
    let refuse = |msg: String| -> anyhow::Error {
        tracing::error!(file = %path.display(), "reload refused, still serving the previous config:\n{msg}");
        anyhow::anyhow!(msg)
    };
    let mut config = crate::config::load(path).map_err(|e| refuse(e.to_string()))?;
    shared
        .overrides
        .apply(&mut config)
        .map_err(|e| refuse(format!("{e:#}")))?;
    let previous = lock(&shared.current).clone();
    if config.server.workers != previous.server.workers {
        let word = |w: Option<usize>| w.map_or("one per core".to_string(), |n| n.to_string());
        return Err(refuse(format!(
            "{}: `workers` changed (from {} to {}): worker threads are started once, so this needs a restart",
            path.display(),
            word(previous.server.workers),
            word(config.server.workers)
        )));
    }
    let admin = shared.overrides.admin_enabled();
    if admin {
        crate::admin::check_exposure(config.admin.listen, config.admin.token.as_deref())
            .map_err(|e| refuse(format!("{e:#}")))?;
    }
    let instance = match (&config.server.name, &previous.server.name) {
        (Some(n), _) => Arc::from(n.as_str()),
        (None, Some(_)) => instance_name(&config),
        (None, None) => shared.instance(),
    };
    let old = shared.runtime.load_full();
    let new = Arc::new(
        build_runtime_from(
            &config,
            &instance,
            shared.workers,
            &shared.events,
            Some(&old),
        )
        .map_err(|e| refuse(format!("{e:#}")))?,
    );

    // Listeners: match the wanted ones with the open ones (same kind, same configured
    // address), bind what is new; nothing has changed yet if a bind fails.
    let mut guard = lock(&shared.listeners);
    let mut opened: Vec<Bound> = Vec::new();
    let mut removed: Vec<usize> = Vec::new();
    if let Some(ls) = guard.as_mut() {
        let mut unmatched: Vec<bool> = vec![true; ls.open.len()];
        let mut fresh = Vec::new();
        for (kind, addr) in wanted(&config, admin) {
            match (0..ls.open.len())
                .find(|&i| unmatched[i] && ls.open[i].kind == kind && ls.open[i].configured == addr)
            {
                Some(i) => unmatched[i] = false,
                None => fresh.push((kind, addr)),
            }
        }
        removed = (0..ls.open.len()).filter(|&i| unmatched[i]).collect();
        let ours: Vec<SocketAddr> = ls.open.iter().map(|o| o.bound).collect();
        for (kind, addr) in fresh {
            match ls.bind(kind, addr, config.server.reuse_port, &ours) {
                Ok(b) => opened.push(b),
                Err(e) => return Err(refuse(format!("{e:#}"))),
            }
        }
    }

    // Everything can be applied now.
    let kept: usize = new
        .pools
        .iter()
        .filter_map(|p| old.pools.iter().find(|o| o.name == p.name).map(|o| (p, o)))
        .map(|(p, o)| {
            p.servers
                .iter()
                .filter(|s| o.servers.iter().any(|x| x.addr == s.addr))
                .count()
        })
        .sum();
    shared.runtime.store(new.clone());
    {
        let mut checkers = lock(&shared.checkers);
        for c in checkers.drain(..) {
            c.abort();
        }
        *checkers = crate::backend::monitor::spawn_checkers(&new.pools);
    }
    shared
        .admin
        .store(Arc::new(crate::admin::Access::from_config(&config.admin)));
    *lock(&shared.instance) = instance;
    let mut changes = Vec::new();
    if let Some(ls) = guard.as_mut() {
        for i in removed.into_iter().rev() {
            let o = ls.remove(i);
            tracing::info!(kind = o.kind.word(), address = %o.bound, "listener closed by reload; its connections finish first");
            changes.push(format!("-{} {}", o.kind.word(), o.bound));
            ls.draining.extend(o.tasks);
        }
        ls.set_max_connections(new.limits.max_connections);
        for b in opened {
            let kind = b.kind;
            match ls.serve(shared, b) {
                Ok(at) => {
                    tracing::info!(kind = kind.word(), address = %at, "listener opened by reload");
                    changes.push(format!("+{} {at}", kind.word()));
                }
                Err(e) => tracing::error!(error = %e, "a listener added by the reload failed"),
            }
        }
    }
    drop(guard);
    *lock(&shared.current) = config;
    let mut summary = format!(
        "{} routes, {} pools; {kept} servers kept their state; cache {}",
        new.routes.len(),
        new.pools.len(),
        if Arc::ptr_eq(&new.cache, &old.cache) {
            "kept"
        } else {
            "rebuilt (its rules changed)"
        }
    );
    if !changes.is_empty() {
        summary.push_str("; listeners: ");
        summary.push_str(&changes.join(", "));
    }
    tracing::info!(file = %path.display(), "config reloaded: {summary}");
    Ok(summary)
}
