//! Listeners, the accept loop, the admin listener, reload and graceful shutdown.
//!
//! [`Langur::start`] binds (or takes already-bound) listeners, builds the runtime snapshot and
//! serves until [`Langur::shutdown`]. Each accepted connection is one task running hyper's HTTP/1
//! server with keep-alive; requests read the current snapshot through an `ArcSwap` (no lock).
//!
//! Every listener (client, TLS, admin) is kept in [`Listeners`] with the address it was
//! configured with, so a reload can open the ones the new config adds and drain the ones it
//! removes. A listener is one socket per worker, the workers sharing the port through
//! SO_REUSEPORT; before binding, a probe without SO_REUSEPORT makes sure no other process
//! already serves the port (unless `[server] reuse_port` asks to share it).

use crate::backend::Pool;
use crate::config::Config;
use crate::proxy::Live;
use crate::proxy::Runtime;
use crate::router::Router;
use anyhow::Context;
use arc_swap::ArcSwap;
use http::header::HeaderValue;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::{watch, Notify, Semaphore};
use tokio::task::{JoinHandle, JoinSet};

/// The running instance: what connections read ([`Live`], reached through `Deref`), and what
/// start-up, reload, shutdown and the admin API need besides.
#[derive(Debug)]
pub struct Shared {
    /// The snapshot and the stopping flag, handed to every connection.
    pub live: Arc<Live>,
    /// This instance's name in `Via` (see [`Shared::instance`]).
    instance: Mutex<Arc<str>>,
    /// Worker threads (per-worker slots in servers are sized by it).
    pub workers: usize,
    /// Health transitions of every pool (kept across reloads).
    pub events: Arc<crate::backend::events::EventLog>,
    /// Responses by status class and their per-second history.
    pub traffic: Arc<crate::stats::Traffic>,
    /// Who may use the admin API: its token and host names (replaced on reload).
    pub admin: ArcSwap<crate::admin::Access>,
    /// Where the config came from (re-read on reload); `None` for configs built in memory.
    pub config_path: Option<std::path::PathBuf>,
    /// The health checkers of the current runtime (replaced on reload).
    pub checkers: Mutex<Vec<tokio::task::JoinHandle<()>>>,
    /// What the command line (or the embedding caller) replaced in the file; applied again on
    /// every reload.
    overrides: Overrides,
    /// The config being served, overrides applied (what a reload compares with).
    current: Mutex<Config>,
    /// The open listeners; `None` until serving starts.
    listeners: Mutex<Option<Listeners>>,
    /// One reload at a time (SIGHUP and the admin API may ask together).
    reloading: Mutex<()>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl crate::admin::Instance for Shared {
    fn live(&self) -> &Live {
        &self.live
    }
    fn traffic(&self) -> &Arc<crate::stats::Traffic> {
        &self.traffic
    }
    fn events(&self) -> &crate::backend::events::EventLog {
        &self.events
    }
    fn access(&self) -> Arc<crate::admin::Access> {
        self.admin.load_full()
    }
    fn name(&self) -> Arc<str> {
        self.instance()
    }
    fn reload(self: Arc<Self>) -> anyhow::Result<String> {
        reload(&self)
    }
}

impl std::ops::Deref for Shared {
    type Target = Live;
    fn deref(&self) -> &Live {
        &self.live
    }
}

impl Shared {
    /// This instance's name, as `Via` says it.
    pub fn instance(&self) -> Arc<str> {
        lock(&self.instance).clone()
    }

    /// The bound addresses of the open listeners of one kind, in config order.
    fn bound(&self, kind: Kind) -> Vec<SocketAddr> {
        lock(&self.listeners)
            .as_ref()
            .map(|l| {
                l.open
                    .iter()
                    .filter(|o| o.kind == kind)
                    .map(|o| o.bound)
                    .collect()
            })
            .unwrap_or_default()
    }
}

/// What the command line (`--listen`, `--admin`, `--workers`, `--no-access-log`) or a caller
/// of [`Langur::start_on`] replaces in the config file. Kept, so a reload re-reads the file
/// and applies them again (a reload never reopens the file's `listen` over `--listen`).
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    /// Client listeners instead of `[server] listen`.
    pub listen: Option<Vec<SocketAddr>>,
    /// The admin listener instead of `[admin] listen`; `Some(None)`: no admin listener.
    pub admin: Option<Option<SocketAddr>>,
    pub workers: Option<usize>,
    pub no_access_log: bool,
}

impl Overrides {
    /// Applies the overrides; an error when they make two listeners take the same address.
    pub fn apply(&self, config: &mut Config) -> anyhow::Result<()> {
        if let Some(l) = &self.listen {
            config.server.listen = l.clone();
        }
        if let Some(Some(a)) = self.admin {
            config.admin.listen = a;
        }
        if let Some(w) = self.workers {
            config.server.workers = Some(w);
        }
        if self.no_access_log {
            config.server.access_log = false;
        }
        if self.listen.is_some() || self.admin.is_some() {
            let wanted = wanted(config, self.admin_enabled());
            for (j, (kb, b)) in wanted.iter().enumerate() {
                if let Some((ka, a)) = wanted[..j]
                    .iter()
                    .find(|(_, a)| crate::config::overlap(*a, *b))
                {
                    anyhow::bail!(
                        "{} {b} and {} {a} take the same connections: each listener needs an address of its own",
                        kb.word(),
                        ka.word()
                    );
                }
            }
        }
        Ok(())
    }

    fn admin_enabled(&self) -> bool {
        !matches!(self.admin, Some(None))
    }
}

/// The listeners a config asks for, in order: client, TLS, admin.
fn wanted(config: &Config, admin: bool) -> Vec<(Kind, SocketAddr)> {
    let mut out: Vec<(Kind, SocketAddr)> = config
        .server
        .listen
        .iter()
        .map(|a| (Kind::Plain, *a))
        .collect();
    if let Some(t) = &config.server.tls {
        out.extend(t.listen.iter().map(|a| (Kind::Tls, *a)));
    }
    if admin {
        out.push((Kind::Admin, config.admin.listen));
    }
    out
}

/// What a listener serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Plain,
    Tls,
    Admin,
}

impl Kind {
    fn word(self) -> &'static str {
        match self {
            Kind::Plain => "client listener",
            Kind::Tls => "TLS listener",
            Kind::Admin => "admin listener",
        }
    }
}

/// One open listener.
#[derive(Debug)]
struct Open {
    kind: Kind,
    /// The address as configured: port 0 stays 0, so the same entry after a reload is the same
    /// listener (it keeps the port it got).
    configured: SocketAddr,
    bound: SocketAddr,
    /// Stops this listener alone (a reload removed it; at shutdown, the admin listener).
    stop: watch::Sender<bool>,
    /// One accept loop per worker (the admin listener: one task on the main runtime).
    tasks: Vec<JoinHandle<()>>,
    /// The `max_connections` permits of each worker's socket.
    slots: Vec<Arc<Slots>>,
}

/// The `max_connections` permits of one worker's socket. A connection holds a permit while it
/// is open (parked too); the accept loop takes one before each accept.
#[derive(Debug)]
struct Slots {
    sem: Arc<Semaphore>,
    /// Permits to destroy as they come back (the limit was lowered below what is in use).
    debt: std::sync::atomic::AtomicUsize,
    /// Tells the accept loop the limit changed (it may hold a permit that is now debt).
    changed: Notify,
}

impl Slots {
    fn new(n: usize) -> Slots {
        Slots {
            sem: Arc::new(Semaphore::new(n)),
            debt: Default::default(),
            changed: Notify::new(),
        }
    }

    /// Moves the limit from `old` to `new`: permits are added (paying the debt first) or
    /// destroyed (those free now at once, the others as connections close).
    fn resize(&self, old: usize, new: usize) {
        use std::sync::atomic::Ordering::SeqCst;
        if new > old {
            let mut more = new - old;
            let _ = self.debt.fetch_update(SeqCst, SeqCst, |d| {
                let paid = d.min(new - old);
                more = new - old - paid;
                Some(d - paid)
            });
            self.sem.add_permits(more);
        } else if old > new {
            let gone = self.sem.forget_permits(old - new);
            self.debt.fetch_add(old - new - gone, SeqCst);
        }
        self.changed.notify_one();
    }

    /// Destroys `p` if a permit is owed (true), else gives it back.
    fn pay(
        &self,
        p: tokio::sync::OwnedSemaphorePermit,
    ) -> Option<tokio::sync::OwnedSemaphorePermit> {
        use std::sync::atomic::Ordering::SeqCst;
        if self
            .debt
            .fetch_update(SeqCst, SeqCst, |d| d.checked_sub(1))
            .is_ok()
        {
            p.forget();
            None
        } else {
            Some(p)
        }
    }
}

/// Every open listener, and where their accept loops run.
#[derive(Debug)]
struct Listeners {
    /// One runtime per worker; each listener has an accept loop on each.
    workers: Vec<tokio::runtime::Handle>,
    /// Where the admin listener runs.
    main: tokio::runtime::Handle,
    shutdown: watch::Receiver<bool>,
    open: Vec<Open>,
    /// Accept loops of listeners removed by reloads, still finishing their connections.
    draining: Vec<JoinHandle<()>>,
    /// `max_connections` of each worker's socket, as last applied.
    per_socket: usize,
}

/// Sockets bound for one listener, not yet served.
struct Bound {
    kind: Kind,
    configured: SocketAddr,
    sockets: Vec<std::net::TcpListener>,
}

impl Listeners {
    fn new(
        workers: Vec<tokio::runtime::Handle>,
        main: tokio::runtime::Handle,
        shutdown: watch::Receiver<bool>,
        max_connections: usize,
    ) -> Listeners {
        let per_socket = max_connections.div_ceil(workers.len().max(1));
        Listeners {
            workers,
            main,
            shutdown,
            open: Vec::new(),
            draining: Vec::new(),
            per_socket,
        }
    }

    /// Binds one listener: a socket per worker (one for the admin listener). `share` is
    /// `[server] reuse_port`; `ours` are addresses this process already listens on (a reload
    /// may move a port from one of them to the new one).
    fn bind(
        &self,
        kind: Kind,
        addr: SocketAddr,
        share: bool,
        ours: &[SocketAddr],
    ) -> anyhow::Result<Bound> {
        let n = if kind == Kind::Admin {
            1
        } else {
            self.workers.len()
        };
        let what = match kind {
            Kind::Plain => String::new(),
            Kind::Tls => " (tls)".into(),
            Kind::Admin => " (admin)".into(),
        };
        let sockets = bind_sockets(addr, n, share, ours)
            .with_context(|| format!("cannot listen on {addr}{what}"))?;
        Ok(Bound {
            kind,
            configured: addr,
            sockets,
        })
    }

    /// Starts accept loops on bound sockets.
    fn serve(&mut self, shared: &Arc<Shared>, b: Bound) -> anyhow::Result<SocketAddr> {
        let bound = b
            .sockets
            .first()
            .context("a listener without a socket")?
            .local_addr()?;
        let (stop, stop_rx) = watch::channel(false);
        let mut tasks = Vec::new();
        let mut slots = Vec::new();
        if b.kind == Kind::Admin {
            for s in b.sockets {
                let shared = shared.clone();
                let stop = stop_rx.clone();
                tasks.push(self.main.spawn(async move {
                    match TcpListener::from_std(s) {
                        Ok(l) => crate::admin::serve(l, shared, stop).await,
                        Err(e) => tracing::error!(error = %e, "admin listener failed"),
                    }
                }));
            }
        } else {
            let tls = b.kind == Kind::Tls;
            for (s, worker) in b.sockets.into_iter().zip(&self.workers) {
                let sem = Arc::new(Slots::new(self.per_socket));
                slots.push(sem.clone());
                let (shared, shutdown, stop) =
                    (shared.clone(), self.shutdown.clone(), stop_rx.clone());
                tasks.push(worker.spawn(async move {
                    match TcpListener::from_std(s) {
                        Ok(l) => accept_loop(l, shared, shutdown, stop, tls, sem).await,
                        Err(e) => tracing::error!(error = %e, "listener failed"),
                    }
                }));
            }
        }
        self.open.push(Open {
            kind: b.kind,
            configured: b.configured,
            bound,
            stop,
            tasks,
            slots,
        });
        Ok(bound)
    }

    /// Stops a listener: no new connections; the ones it has finish (see [`accept_loop`]).
    fn remove(&mut self, i: usize) -> Open {
        let o = self.open.remove(i);
        let _ = o.stop.send(true);
        o
    }

    /// Sets `max_connections` for every client and TLS socket. A lower limit is reached as
    /// connections close (the permits are taken back as they come free).
    fn set_max_connections(&mut self, max: usize) {
        let per = max.div_ceil(self.workers.len().max(1));
        let old = std::mem::replace(&mut self.per_socket, per);
        if per == old {
            return;
        }
        for slots in self.open.iter().flat_map(|o| o.slots.iter()) {
            slots.resize(old, per);
        }
    }

    /// Every accept loop's task but the admin listener's (at shutdown).
    fn take_accept_tasks(&mut self) -> Vec<JoinHandle<()>> {
        let mut out = std::mem::take(&mut self.draining);
        for o in self.open.iter_mut().filter(|o| o.kind != Kind::Admin) {
            out.append(&mut o.tasks);
        }
        out
    }

    /// Stops the admin listener (after the drain); returns its task.
    fn stop_admin(&mut self) -> Vec<JoinHandle<()>> {
        let mut out = Vec::new();
        for o in self.open.iter_mut().filter(|o| o.kind == Kind::Admin) {
            let _ = o.stop.send(true);
            out.append(&mut o.tasks);
        }
        out
    }

    fn abort_all(&mut self) {
        for t in self
            .open
            .iter()
            .flat_map(|o| o.tasks.iter())
            .chain(self.draining.iter())
        {
            t.abort();
        }
    }
}

/// Binds `n` sockets on `addr` that share it (SO_REUSEPORT); the first fixes the port when
/// `addr` has port 0. Unless `share` is set, a port another process already listens on is an
/// error: a probe socket without SO_REUSEPORT cannot bind it (ours, the sockets this process
/// already has, are told apart by `ours`).
fn bind_sockets(
    addr: SocketAddr,
    n: usize,
    share: bool,
    ours: &[SocketAddr],
) -> anyhow::Result<Vec<std::net::TcpListener>> {
    if addr.port() != 0 && !share && !ours.iter().any(|o| crate::config::overlap(*o, addr)) {
        if let Err(e) = probe(addr) {
            if e.kind() == std::io::ErrorKind::AddrInUse {
                anyhow::bail!(
                    "the port is already in use by another process, or by a connection of this machine (`ss -tanp sport = :PORT` shows which; ports in the ephemeral range, /proc/sys/net/ipv4/ip_local_port_range, can be taken by outgoing connections). To share a port with another process on purpose, set [server] reuse_port = true"
                );
            }
            return Err(e.into());
        }
    }
    let first = bind_std(addr, true)?;
    let actual = first.local_addr()?;
    let mut out = vec![first];
    for _ in 1..n.max(1) {
        out.push(bind_std(actual, true)?);
    }
    Ok(out)
}

/// Binds (without listening) a socket without SO_REUSEPORT: fails when another socket
/// listens on the port.
fn probe(addr: SocketAddr) -> std::io::Result<()> {
    let socket = socket2::Socket::new(
        socket2::Domain::for_address(addr),
        socket2::Type::STREAM,
        Some(socket2::Protocol::TCP),
    )?;
    socket.set_reuse_address(true)?;
    socket.bind(&addr.into())
}

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

/// Builds the request path's snapshot from a config.
pub fn build_runtime(
    config: &Config,
    instance: &Arc<str>,
    workers: usize,
    events: &Arc<crate::backend::events::EventLog>,
) -> anyhow::Result<Runtime> {
    build_runtime_from(config, instance, workers, events, None)
}

/// Builds a snapshot, carrying state over from `old` (see [`reload`]).
pub fn build_runtime_from(
    config: &Config,
    instance: &Arc<str>,
    workers: usize,
    events: &Arc<crate::backend::events::EventLog>,
    old: Option<&Runtime>,
) -> anyhow::Result<Runtime> {
    let patterns: Vec<(Vec<String>, usize)> = config
        .routes
        .iter()
        .enumerate()
        .map(|(i, r)| (r.patterns.clone(), i))
        .collect();
    let router = Router::new(&patterns).context("compiling routes")?;
    let routes = config
        .routes
        .iter()
        .map(|r| crate::proxy::RouteRt {
            pool: r.pool,
            root: r.root.as_deref().map(Arc::from),
            cache: r.cache,
            grace: r.grace,
            purge: r.purge.clone(),
        })
        .collect();
    let pools: Vec<Arc<Pool>> = config
        .pools
        .iter()
        .map(|p| {
            let mut pool = Pool::from_config(p, workers, events.clone());
            pool.request_timeout = config.server.limits.request_timeout;
            Arc::new(pool)
        })
        .collect();
    if let Some(old) = old {
        for p in &pools {
            let Some(o) = old.pools.iter().find(|o| o.name == p.name) else {
                continue;
            };
            for s in &p.servers {
                if let Some(prev) = o.servers.iter().find(|x| x.addr == s.addr) {
                    s.carry_from(prev);
                }
            }
        }
    }
    let traffic = old.map(|o| o.traffic.clone()).unwrap_or_default();
    let cache = match old {
        Some(o) if o.cache.rules == config.cache => o.cache.clone(),
        _ => crate::cache::Cache::new(config.cache.clone()),
    };
    Ok(Runtime {
        router,
        routes,
        pools,
        cache,
        traffic,
        via: HeaderValue::from_str(&format!("1.1 {instance}"))
            .context("instance name is not a valid header value")?,
        via_token: instance.clone(),
        access_log: config.server.access_log,
        limits: config.server.limits.clone(),
        tls: config.server.tls.as_ref().map(|t| t.config.clone()),
        h2c: config.server.h2c,
        h2: config.server.h2.clone(),
    })
}

/// A name for this process's `Via` entries: the configured one, or `langur-` and 8 hex digits.
pub fn instance_name(config: &Config) -> Arc<str> {
    if let Some(n) = &config.server.name {
        return Arc::from(n.as_str());
    }
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u32(std::process::id());
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0),
    );
    Arc::from(format!("langur-{:08x}", h.finish() as u32))
}

/// A running instance.
pub struct Langur {
    shared: Arc<Shared>,
    shutdown: watch::Sender<bool>,
}

impl Drop for Langur {
    fn drop(&mut self) {
        // The listener tasks, the admin listener's too, end with the instance.
        if let Some(l) = lock(&self.shared.listeners).as_mut() {
            l.abort_all();
        }
    }
}

impl Langur {
    /// Binds the config's listeners (and the admin listener) and starts serving.
    pub async fn start(config: Config) -> anyhow::Result<Langur> {
        Self::serve_config(config, Overrides::default(), Vec::new()).await
    }

    /// Starts serving on listeners the caller bound (tests bind 127.0.0.1:0 first). They take
    /// the place of `[server] listen` and `[admin] listen`, on reloads too; `admin: None` means
    /// no admin listener.
    pub async fn start_on(
        config: Config,
        listeners: Vec<TcpListener>,
        admin: Option<TcpListener>,
    ) -> anyhow::Result<Langur> {
        let mut given = Vec::new();
        let mut overrides = Overrides {
            listen: Some(Vec::new()),
            admin: Some(None),
            workers: Some(1),
            no_access_log: false,
        };
        for l in listeners {
            let a = l.local_addr()?;
            overrides.listen.get_or_insert_with(Vec::new).push(a);
            given.push((Kind::Plain, a, l.into_std()?));
        }
        if let Some(l) = admin {
            let a = l.local_addr()?;
            overrides.admin = Some(Some(a));
            given.push((Kind::Admin, a, l.into_std()?));
        }
        Self::serve_config(config, overrides, given).await
    }

    async fn serve_config(
        mut config: Config,
        mut overrides: Overrides,
        given: Vec<(Kind, SocketAddr, std::net::TcpListener)>,
    ) -> anyhow::Result<Langur> {
        overrides.workers = Some(1);
        overrides.apply(&mut config)?;
        let admin = overrides.admin_enabled();
        if admin {
            crate::admin::check_exposure(config.admin.listen, config.admin.token.as_deref())?;
        }
        let (shutdown, shutdown_rx) = watch::channel(false);
        let here = tokio::runtime::Handle::current();
        let mut ls = Listeners::new(
            vec![here.clone()],
            here,
            shutdown_rx,
            config.server.limits.max_connections,
        );
        // Bind everything before serving anything, so a port in use fails the start at once.
        let mut bound = Vec::new();
        let mut ours: Vec<SocketAddr> = given.iter().map(|g| g.1).collect();
        for (kind, addr) in wanted(&config, admin) {
            if given.iter().any(|g| g.0 == kind && g.1 == addr) {
                continue; // bound by the caller: served below
            }
            let b = ls.bind(kind, addr, config.server.reuse_port, &ours)?;
            ours.extend(b.sockets.first().and_then(|s| s.local_addr().ok()));
            bound.push(b);
        }
        let mut shared = new_shared(&config, 1)?;
        shared.overrides = overrides;
        let shared = Arc::new(shared);
        for (kind, addr, socket) in given {
            bound.insert(
                0,
                Bound {
                    kind,
                    configured: addr,
                    sockets: vec![socket],
                },
            );
        }
        // Config order: client, TLS, admin.
        bound.sort_by_key(|b| b.kind as u8);
        for b in bound {
            let kind = b.kind;
            let at = ls.serve(&shared, b)?;
            match kind {
                Kind::Plain => tracing::info!(listen = %at, "langur is serving"),
                Kind::Tls => tracing::info!(tls_listen = %at, "langur is serving TLS"),
                Kind::Admin => tracing::info!(admin = %at, "admin listener"),
            }
        }
        *lock(&shared.listeners) = Some(ls);
        *lock(&shared.checkers) =
            crate::backend::monitor::spawn_checkers(&shared.runtime.load().pools);
        Ok(Langur { shared, shutdown })
    }

    /// Client listener addresses, as bound (they follow reloads).
    pub fn listen_addrs(&self) -> Vec<SocketAddr> {
        self.shared.bound(Kind::Plain)
    }

    /// TLS listener addresses, as bound.
    pub fn tls_addrs(&self) -> Vec<SocketAddr> {
        self.shared.bound(Kind::Tls)
    }

    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.shared.bound(Kind::Admin).first().copied()
    }

    pub fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }

    /// Stops accepting, lets in-flight requests finish (up to the shutdown timeout), returns.
    pub async fn shutdown(self) {
        let tasks = begin_shutdown(&self.shared, &self.shutdown);
        let limit = self.shared.runtime.load().limits.shutdown_timeout;
        let aborts: Vec<_> = tasks.iter().map(|t| t.abort_handle()).collect();
        if tokio::time::timeout(limit, join_all(tasks)).await.is_err() {
            tracing::warn!("shutdown timeout reached; closing remaining connections");
            for a in aborts {
                a.abort();
            }
        }
        let admin = lock(&self.shared.listeners)
            .as_mut()
            .map(|l| l.stop_admin())
            .unwrap_or_default();
        join_all(admin).await;
    }

    /// Serves until the process gets SIGINT or SIGTERM, then shuts down gracefully.
    pub async fn run_until_signal(self) -> anyhow::Result<()> {
        wait_for_signal(&self.shared).await;
        tracing::info!("shutting down: no new connections; finishing requests in flight");
        self.shutdown().await;
        Ok(())
    }
}

/// Marks the instance stopping, stops the checkers and the accept loops; returns the accept
/// loops' tasks (they end once their connections finished).
fn begin_shutdown(shared: &Shared, shutdown: &watch::Sender<bool>) -> Vec<JoinHandle<()>> {
    shared
        .stopping
        .store(true, std::sync::atomic::Ordering::Relaxed);
    for c in lock(&shared.checkers).drain(..) {
        c.abort();
    }
    let _ = shutdown.send(true);
    lock(&shared.listeners)
        .as_mut()
        .map(|l| l.take_accept_tasks())
        .unwrap_or_default()
}

async fn join_all(tasks: Vec<JoinHandle<()>>) {
    for t in tasks {
        let _ = t.await;
    }
}

#[cfg(unix)]
async fn wait_for_signal(shared: &Arc<Shared>) {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    let mut int = signal(SignalKind::interrupt()).expect("SIGINT handler");
    let mut hup = signal(SignalKind::hangup()).expect("SIGHUP handler");
    loop {
        tokio::select! {
            _ = term.recv() => return,
            _ = int.recv() => return,
            _ = hup.recv() => {
                // reload() logs its own outcome
                let _ = reload(shared);
            }
        }
    }
}

#[cfg(not(unix))]
async fn wait_for_signal(_shared: &Arc<Shared>) {
    let _ = tokio::signal::ctrl_c().await;
}

pub(crate) fn new_shared(config: &Config, workers: usize) -> anyhow::Result<Shared> {
    let instance = instance_name(config);
    let events = Arc::new(crate::backend::events::EventLog::default());
    let runtime = build_runtime(config, &instance, workers, &events)?;
    let traffic = runtime.traffic.clone();
    Ok(Shared {
        live: Arc::new(Live {
            runtime: ArcSwap::from_pointee(runtime),
            stopping: Default::default(),
        }),
        instance: Mutex::new(instance),
        workers,
        events,
        traffic,
        admin: ArcSwap::from_pointee(crate::admin::Access::from_config(&config.admin)),
        config_path: (!config.source.is_empty() && std::path::Path::new(&config.source).is_file())
            .then(|| std::path::PathBuf::from(&config.source)),
        checkers: Default::default(),
        overrides: Overrides::default(),
        current: Mutex::new(config.clone()),
        listeners: Mutex::new(None),
        reloading: Mutex::new(()),
    })
}

/// Binds a listener with SO_REUSEADDR and a deep backlog (needs a tokio runtime).
pub fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    TcpListener::from_std(bind_std(addr, false)?)
}

fn bind_std(addr: SocketAddr, reuse_port: bool) -> std::io::Result<std::net::TcpListener> {
    let socket = socket2::Socket::new(
        socket2::Domain::for_address(addr),
        socket2::Type::STREAM,
        Some(socket2::Protocol::TCP),
    )?;
    socket.set_reuse_address(true)?;
    #[cfg(unix)]
    if reuse_port {
        socket.set_reuse_port(true)?;
    }
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(4096)?;
    Ok(socket.into())
}

/// Serves `config` with one thread per worker until SIGTERM or SIGINT.
pub fn run_threaded(config: Config) -> anyhow::Result<()> {
    run_threaded_with(config, Overrides::default())
}

/// Serves `config` (its overrides already applied) with one thread per worker until SIGTERM
/// or SIGINT (the `run` command); a reload applies `overrides` again.
///
/// Each worker is a single-threaded tokio runtime with its own listening socket on every address
/// (SO_REUSEPORT: the kernel spreads new connections over the workers). A connection, its
/// requests and the upstream connections they use stay on one thread: no work stealing, no
/// cross-thread wakeups on the hot path. The main thread runs the admin listener and signals.
pub fn run_threaded_with(config: Config, overrides: Overrides) -> anyhow::Result<()> {
    let workers = config.server.workers.unwrap_or_else(|| {
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    });
    let mut shared = new_shared(&config, workers)?;
    shared.overrides = overrides;
    let shared = Arc::new(shared);
    let admin = shared.overrides.admin_enabled();
    if admin {
        crate::admin::check_exposure(config.admin.listen, config.admin.token.as_deref())?;
    }
    let main_rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    // The workers' runtimes, each driven by its thread until told to exit.
    let mut runtimes = Vec::new();
    for _ in 0..workers {
        runtimes.push(
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?,
        );
    }
    let (shutdown, shutdown_rx) = watch::channel(false);
    let mut ls = Listeners::new(
        runtimes.iter().map(|r| r.handle().clone()).collect(),
        main_rt.handle().clone(),
        shutdown_rx,
        config.server.limits.max_connections,
    );
    // Bind every worker's socket before serving, so a port in use fails the start at once. An
    // address with port 0 gets its port from the first bind; the other workers join it.
    let mut bound = Vec::new();
    let mut ours = Vec::new();
    for (kind, addr) in wanted(&config, admin) {
        let b = ls.bind(kind, addr, config.server.reuse_port, &ours)?;
        ours.extend(b.sockets.first().and_then(|s| s.local_addr().ok()));
        bound.push(b);
    }
    let mut threads = Vec::new();
    let mut exits = Vec::new();
    for (id, rt) in runtimes.into_iter().enumerate() {
        let (exit, exit_rx) = tokio::sync::oneshot::channel::<()>();
        exits.push(exit);
        threads.push(
            std::thread::Builder::new()
                .name(format!("langur-worker-{id}"))
                .spawn(move || {
                    crate::worker::set_worker_id(id);
                    // Accept loops are spawned onto this runtime (at start and by reloads);
                    // it runs them until the main thread says the drain is over.
                    rt.block_on(async move {
                        let _ = exit_rx.await;
                    });
                })?,
        );
    }
    for b in bound {
        let kind = b.kind;
        let at = ls.serve(&shared, b)?;
        match kind {
            Kind::Plain => tracing::info!(listen = %at, workers, "langur is serving"),
            Kind::Tls => tracing::info!(tls_listen = %at, workers, "langur is serving TLS"),
            Kind::Admin => tracing::info!(admin = %at, "admin listener"),
        }
    }
    *lock(&shared.listeners) = Some(ls);

    main_rt.block_on(async {
        *lock(&shared.checkers) =
            crate::backend::monitor::spawn_checkers(&shared.runtime.load().pools);
        wait_for_signal(&shared).await;
        tracing::info!("shutting down: no new connections; finishing requests in flight");
        // The admin listener outlives the drain, so `/healthz` can say 503 meanwhile.
        let tasks = begin_shutdown(&shared, &shutdown);
        let limit = shared.runtime.load().limits.shutdown_timeout;
        if tokio::time::timeout(limit, join_all(tasks)).await.is_err() {
            tracing::warn!("shutdown timeout reached; exiting with requests still in flight");
        }
        let admin = lock(&shared.listeners)
            .as_mut()
            .map(|l| l.stop_admin())
            .unwrap_or_default();
        for t in admin {
            t.abort();
        }
    });
    for e in exits {
        let _ = e.send(());
    }
    for t in threads {
        let _ = t.join();
    }
    Ok(())
}

/// Accepts the connections of one worker's socket until shutdown, or until `stop` (a reload
/// removed the listener): then no new connections are taken, idle ones are closed, and busy
/// ones are closed once idle, within `shutdown_timeout`.
async fn accept_loop(
    listener: TcpListener,
    shared: Arc<Shared>,
    mut shutdown: watch::Receiver<bool>,
    mut stop: watch::Receiver<bool>,
    tls: bool,
    // `max_connections` of this socket.
    slots: Arc<Slots>,
) {
    let active = Arc::new(crate::conn::Active::default());
    let (ticks, clock) = crate::conn::park_clock();
    // The listener's connections: when this task ends (or is aborted at the shutdown timeout),
    // they end with it.
    let mut conns = JoinSet::new();
    // Idle keep-alive connections, and the one timer that closes them (see `park.rs`).
    let lot = crate::park::Lot::new();
    let mut lot_timer = Box::pin(tokio::time::sleep(Duration::from_secs(3600)));
    let ctx = crate::conn::Ctx {
        shared: shared.live.clone(),
        active: active.clone(),
        ticks: ticks.clone(),
        lot: lot.clone(),
    };
    let mut removed = false;
    loop {
        // At the limit, stop accepting (the kernel's backlog holds newcomers) until one closes.
        let permit = tokio::select! {
            p = slots.sem.clone().acquire_owned() => match p {
                Ok(p) => match slots.pay(p) {
                    Some(p) => p,
                    None => continue, // the limit was lowered
                },
                Err(_) => break,
            },
            Some(_) = conns.join_next(), if !conns.is_empty() => continue,
            back = std::future::poll_fn(|cx| lot.poll_next(cx, lot_timer.as_mut())) => {
                conns.spawn(crate::conn::serve(back, ctx.clone(), false));
                continue;
            }
            _ = shutdown.changed() => break,
            _ = stop.changed() => {
                removed = true;
                break;
            }
        };
        tokio::select! {
            accepted = listener.accept() => {
                let (stream, peer) = match accepted {
                    Ok(x) => x,
                    Err(e) => {
                        // EMFILE and friends: back off instead of spinning.
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let _ = stream.set_nodelay(true);
                if tls {
                    let (live, active, ticks) = (shared.live.clone(), active.clone(), ticks.clone());
                    conns.spawn(async move {
                        crate::conn::serve_tls(stream, peer, live, active, ticks).await;
                        drop(permit);
                    });
                } else {
                    let conn = crate::conn::Parked { stream, peer, permit: Some(permit) };
                    conns.spawn(crate::conn::serve(conn, ctx.clone(), true));
                }
            }
            Some(_) = conns.join_next(), if !conns.is_empty() => continue,
            back = std::future::poll_fn(|cx| lot.poll_next(cx, lot_timer.as_mut())) => {
                conns.spawn(crate::conn::serve(back, ctx.clone(), false));
            }
            // The limit changed: the permit held for the next accept may be owed.
            _ = slots.changed.notified() => {
                let _ = slots.pay(permit);
            }
            _ = shutdown.changed() => break,
            _ = stop.changed() => {
                removed = true;
                break;
            }
        }
    }
    drop(listener);
    if removed && !*shutdown.borrow() {
        // Removed by a reload: the port is released now; requests on open connections are
        // answered, and a connection is closed as soon as it is idle.
        lot.close_all();
        let limit = shared.runtime.load().limits.shutdown_timeout;
        let deadline = tokio::time::sleep(limit);
        tokio::pin!(deadline);
        let mut tick = tokio::time::interval(Duration::from_millis(100));
        while !(conns.is_empty() && lot.is_empty()) {
            tokio::select! {
                Some(_) = conns.join_next(), if !conns.is_empty() => {}
                back = std::future::poll_fn(|cx| lot.poll_next(cx, lot_timer.as_mut())) => {
                    conns.spawn(crate::conn::serve(back, ctx.clone(), false));
                }
                _ = tick.tick() => lot.close_all(),
                _ = shutdown.changed() => break,
                _ = &mut deadline => {
                    conns.abort_all();
                    break;
                }
            }
        }
    }
    // Idle connections close now; the ones in an exchange finish it first.
    drop(ctx);
    lot.close_all();
    if *shutdown.borrow() {
        shared
            .stopping
            .store(true, std::sync::atomic::Ordering::Relaxed);
    }
    clock.abort();
    active.drained().await;
}
