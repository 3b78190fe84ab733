//! Reload: re-read the file, check it, and swap it in whole or change nothing.

use super::*;

/// Re-reads the config file and swaps in a new snapshot. A config with errors changes
/// nothing: the errors are logged and returned. Servers present before and after (same pool,
/// same name) keep their operator state and counters, and their health while their address
/// stays (see [`crate::backend::state`]); servers the admin API added stay; the cache is kept while its
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
        // One line, whatever the number of errors: a log line is one event.
        let errors = msg.trim_end().replace('\n', "; ");
        tracing::error!(file = %path.display(), %errors, "reload refused, still serving the previous config");
        anyhow::anyhow!(msg)
    };
    let Checked {
        config,
        instance,
        old,
        new,
    } = check(shared, path).map_err(refuse)?;
    // Nothing has changed yet if a bind fails.
    let mut guard = lock(&shared.listeners);
    let plan = match guard.as_mut() {
        Some(ls) => {
            let admin = shared.overrides.admin_enabled();
            plan_listeners(ls, &config, admin).map_err(|e| refuse(format!("{e:#}")))?
        }
        None => Plan::default(),
    };
    // Everything can be applied now.
    let kept = servers_kept(&new, &old);
    swap(shared, &config, &new, instance);
    let changes = match guard.as_mut() {
        Some(ls) => apply_listeners(ls, shared, plan, new.limits.max_connections),
        None => Vec::new(),
    };
    drop(guard);
    *lock(&shared.current) = config;
    let summary = summary(&new, &old, kept, &changes);
    tracing::info!(file = %path.display(), "config reloaded: {summary}");
    Ok(summary)
}

/// A new config that passed every check, and the snapshot built from it.
struct Checked {
    config: Config,
    instance: Arc<str>,
    /// The snapshot served until now.
    old: Arc<Runtime>,
    new: Arc<Runtime>,
}

/// Reads `path`, applies the overrides and checks what a reload cannot change (`workers`) or
/// must not open (an exposed admin listener), then builds the new snapshot, carrying state
/// over from the current one. `Err`: why the reload is refused.
fn check(shared: &Shared, path: &std::path::Path) -> Result<Checked, String> {
    let mut config = crate::config::load(path).map_err(|e| e.to_string())?;
    for w in &config.warnings {
        tracing::warn!("{}:{}: {}", w.file, w.line, w.message);
    }
    shared
        .overrides
        .apply(&mut config)
        .map_err(|e| format!("{e:#}"))?;
    crate::acme::Manager::check(config.acme.as_ref())?;
    let previous = lock(&shared.current).clone();
    if config.server.workers != previous.server.workers {
        let word = |w: Option<usize>| w.map_or("one per core".to_string(), |n| n.to_string());
        return Err(format!(
            "{}: `workers` changed (from {} to {}): worker threads are started once, so this needs a restart",
            path.display(),
            word(previous.server.workers),
            word(config.server.workers)
        ));
    }
    if shared.overrides.admin_enabled() {
        crate::admin::check_exposure(config.admin.listen, config.admin.token.as_deref())
            .map_err(|e| format!("{e:#}"))?;
    }
    let instance = match (&config.server.name, &previous.server.name) {
        (Some(n), _) => Arc::from(n.as_str()),
        (None, Some(_)) => instance_name(&config),
        (None, None) => shared.instance(),
    };
    let old = shared.runtime.load_full();
    let new = build_runtime_from(
        &config,
        &instance,
        shared.workers,
        &shared.events,
        Some(&old),
    )
    .map_err(|e| format!("{e:#}"))?;
    Ok(Checked {
        config,
        instance,
        old,
        new: Arc::new(new),
    })
}

/// How the listeners change: the new ones, bound already, and the open ones to remove (their
/// indices in `open`, ascending).
#[derive(Default)]
struct Plan {
    opened: Vec<Bound>,
    removed: Vec<usize>,
}

/// Matches the listeners `config` wants with the open ones (same kind, same configured
/// address) and binds the ones that are new. An error if one cannot be bound; nothing is
/// served or closed here.
fn plan_listeners(ls: &Listeners, config: &Config, admin: bool) -> anyhow::Result<Plan> {
    let mut unmatched: Vec<bool> = vec![true; ls.open.len()];
    let mut fresh = Vec::new();
    for (kind, addr) in wanted(config, admin) {
        match (0..ls.open.len())
            .find(|&i| unmatched[i] && ls.open[i].kind == kind && ls.open[i].configured == addr)
        {
            Some(i) => unmatched[i] = false,
            None => fresh.push((kind, addr)),
        }
    }
    let removed = (0..ls.open.len()).filter(|&i| unmatched[i]).collect();
    let ours: Vec<SocketAddr> = tcp(ls.open.iter().map(|o| &o.bound));
    let mut opened = Vec::new();
    for (kind, addr) in fresh {
        opened.push(ls.bind(kind, &addr, config.server.reuse_port, &ours)?);
    }
    Ok(Plan { opened, removed })
}

/// Servers of `new` that were in `old` too (same pool, same name): they keep their state.
fn servers_kept(new: &Runtime, old: &Runtime) -> usize {
    new.pools
        .iter()
        .filter_map(|p| old.pools.iter().find(|o| o.name == p.name).map(|o| (p, o)))
        .map(|(p, o)| {
            p.servers
                .iter()
                .filter(|s| crate::backend::state::predecessor(s, &p.servers, &o.servers).is_some())
                .count()
        })
        .sum()
}

/// Swaps in the new snapshot, its health checkers (the old ones stop), the admin API's access
/// rules and the instance name.
fn swap(shared: &Arc<Shared>, config: &Config, new: &Arc<Runtime>, instance: Arc<str>) {
    super::runtime::fleet_purges(&shared.live, new);
    super::runtime::fleet_status(&shared.live, new);
    shared.runtime.store(new.clone());
    if let Err(e) = shared.acme.configure(config.acme.clone(), new.acme.clone()) {
        tracing::error!(error = %e, "[acme] not applied");
    }
    {
        let mut checkers = lock(&shared.checkers);
        for (_, c) in checkers.drain(..) {
            c.abort();
        }
        *checkers = crate::backend::monitor::spawn_checkers(&new.pools);
    }
    {
        let mut discovery = lock(&shared.discovery);
        for d in discovery.drain(..) {
            d.abort();
        }
        *discovery = super::discovery::spawn(shared, config);
    }
    shared
        .admin
        .store(Arc::new(crate::admin::Access::from_config(&config.admin)));
    *lock(&shared.instance) = instance;
}

/// Removes the listeners the plan drops (they stop accepting and drain), applies
/// `max_connections`, and serves the new ones. Returns the changes as `-kind address` and
/// `+kind address`, in that order.
fn apply_listeners(
    ls: &mut Listeners,
    shared: &Arc<Shared>,
    plan: Plan,
    max_connections: usize,
) -> Vec<String> {
    let mut changes = Vec::new();
    for i in plan.removed.into_iter().rev() {
        let o = ls.remove(i);
        tracing::info!(kind = o.kind.word(), address = %o.bound, "listener closed by reload; its connections finish first");
        changes.push(format!("-{} {}", o.kind.word(), o.bound));
        ls.draining.extend(o.tasks);
    }
    ls.set_max_connections(max_connections);
    for b in plan.opened {
        let kind = b.kind;
        match ls.serve(shared, b) {
            Ok(at) => {
                tracing::info!(kind = kind.word(), address = %at, "listener opened by reload");
                changes.push(format!("+{} {at}", kind.word()));
            }
            Err(e) => tracing::error!(error = %e, "a listener added by the reload failed"),
        }
    }
    changes
}

/// The reload's one-line report: routes, pools, servers that kept their state, whether the
/// cache was kept, and the listeners that changed.
fn summary(new: &Runtime, old: &Runtime, kept: usize, changes: &[String]) -> String {
    let n = |count: usize, one: &str| match count {
        1 => format!("1 {one}"),
        n => format!("{n} {one}s"),
    };
    let mut summary = format!(
        "{}, {}; {} kept their state; cache {}",
        n(new.routes.len(), "route"),
        n(new.pools.len(), "pool"),
        n(kept, "server"),
        if Arc::ptr_eq(&new.cache, &old.cache) {
            "kept"
        } else {
            "rebuilt (its settings or its [cluster] link changed)"
        }
    );
    if !changes.is_empty() {
        summary.push_str("; listeners: ");
        summary.push_str(&changes.join(", "));
    }
    summary
}
