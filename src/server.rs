//! Listeners, the accept loop, the admin listener and graceful shutdown.
//!
//! [`Langur::start`] binds (or takes already-bound) listeners, builds the runtime snapshot and
//! serves until [`Langur::shutdown`]. Each accepted connection is one task running hyper's HTTP/1
//! server with keep-alive; requests read the current snapshot through an `ArcSwap` (no lock).

use crate::backend::Pool;
use crate::config::Config;
use crate::proxy::Runtime;
use crate::router::Router;
use anyhow::Context;
use arc_swap::ArcSwap;
use http::header::HeaderValue;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;

thread_local! {
    static WORKER_ID: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

/// The index of the worker thread running this code (0 outside worker threads).
pub fn worker_id() -> usize {
    WORKER_ID.with(|w| w.get())
}

/// State shared by every connection.
#[derive(Debug)]
pub struct Shared {
    pub runtime: ArcSwap<Runtime>,
    pub instance: Arc<str>,
    /// Worker threads (per-worker slots in servers are sized by it).
    pub workers: usize,
    /// Set at shutdown: connections close after their current exchange.
    pub stopping: std::sync::atomic::AtomicBool,
    /// Health transitions of every pool (kept across reloads).
    pub events: Arc<crate::backend::events::EventLog>,
    /// Responses by status class and their per-second history.
    pub traffic: Arc<crate::stats::Traffic>,
    /// The admin API's token, if any.
    pub admin_token: Option<String>,
    /// Where the config came from (re-read on reload); `None` for configs built in memory.
    pub config_path: Option<std::path::PathBuf>,
    /// The health checkers of the current runtime (replaced on reload).
    pub checkers: std::sync::Mutex<Vec<tokio::task::JoinHandle<()>>>,
}

/// Re-reads the config file and swaps in a new snapshot. A config with errors changes
/// nothing: the errors are logged and returned. Servers present before and after (same pool,
/// same address) keep their health, operator state and counters; the cache is kept while its
/// rules stay the same. Listeners are not touched (changing `listen` needs a restart).
/// Requests in flight finish on the snapshot they started with.
pub fn reload(shared: &Shared) -> anyhow::Result<String> {
    let Some(path) = &shared.config_path else {
        anyhow::bail!("no config file to re-read (langur was started without one)");
    };
    let config = match crate::config::load(path) {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(file = %path.display(), "reload refused, still serving the previous config:\n{e}");
            anyhow::bail!("{e}");
        }
    };
    let old = shared.runtime.load_full();
    let new = Arc::new(build_runtime_from(
        &config,
        &shared.instance,
        shared.workers,
        &shared.events,
        Some(&old),
    )?);
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
        let mut checkers = shared.checkers.lock().unwrap_or_else(|p| p.into_inner());
        for c in checkers.drain(..) {
            c.abort();
        }
        *checkers = crate::backend::monitor::spawn_checkers(&new.pools);
    }
    let summary = format!(
        "{} routes, {} pools; {kept} servers kept their state; cache {}",
        new.routes.len(),
        new.pools.len(),
        if Arc::ptr_eq(&new.cache, &old.cache) {
            "kept"
        } else {
            "rebuilt (its rules changed)"
        }
    );
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
    addrs: Vec<SocketAddr>,
    tls_addrs: Vec<SocketAddr>,
    admin_addr: Option<SocketAddr>,
    shutdown: watch::Sender<bool>,
    tasks: JoinSet<()>,
    /// The admin listener, stopped only after the drain (so `/healthz` can say 503 meanwhile).
    admin: Option<(watch::Sender<bool>, tokio::task::JoinHandle<()>)>,
}

impl Drop for Langur {
    fn drop(&mut self) {
        // Like the listener tasks (a JoinSet), the admin listener ends with the instance.
        if let Some((_, task)) = self.admin.take() {
            task.abort();
        }
    }
}

impl Langur {
    /// Binds the config's listeners (and the admin listener) and starts serving.
    pub async fn start(config: Config) -> anyhow::Result<Langur> {
        let mut listeners = Vec::new();
        for a in &config.server.listen {
            listeners.push(bind(*a).with_context(|| format!("cannot listen on {a}"))?);
        }
        let admin = bind(config.admin.listen)
            .with_context(|| format!("cannot listen on {} (admin)", config.admin.listen))?;
        Self::start_on(config, listeners, Some(admin)).await
    }

    /// Starts serving on listeners the caller bound (tests bind 127.0.0.1:0 first).
    pub async fn start_on(
        config: Config,
        listeners: Vec<TcpListener>,
        admin: Option<TcpListener>,
    ) -> anyhow::Result<Langur> {
        let shared = Arc::new(new_shared(&config, 1)?);
        let (shutdown, shutdown_rx) = watch::channel(false);
        let mut tasks = JoinSet::new();
        let mut addrs = Vec::new();
        for l in listeners {
            addrs.push(l.local_addr()?);
            tasks.spawn(accept_loop(l, shared.clone(), shutdown_rx.clone(), false));
        }
        // TLS listeners are bound here, from `[tls] listen` (port 0 works: see `tls_addrs`).
        let mut tls_addrs = Vec::new();
        if let Some(t) = &config.server.tls {
            for a in &t.listen {
                let l = bind(*a).with_context(|| format!("cannot listen on {a} (tls)"))?;
                tls_addrs.push(l.local_addr()?);
                tasks.spawn(accept_loop(l, shared.clone(), shutdown_rx.clone(), true));
            }
        }
        let (admin_addr, admin) = match admin {
            Some(l) => {
                let a = l.local_addr()?;
                crate::admin::check_exposure(a, config.admin.token.as_deref())?;
                let (stop, rx) = watch::channel(false);
                let task = tokio::spawn(crate::admin::serve(l, shared.clone(), rx));
                (Some(a), Some((stop, task)))
            }
            None => (None, None),
        };
        for a in &addrs {
            tracing::info!(listen = %a, "langur is serving");
        }
        *shared.checkers.lock().unwrap_or_else(|p| p.into_inner()) =
            crate::backend::monitor::spawn_checkers(&shared.runtime.load().pools);
        Ok(Langur {
            shared,
            addrs,
            tls_addrs,
            admin_addr,
            shutdown,
            tasks,
            admin,
        })
    }

    /// Client listener addresses, as bound.
    pub fn listen_addrs(&self) -> &[SocketAddr] {
        &self.addrs
    }

    /// TLS listener addresses, as bound.
    pub fn tls_addrs(&self) -> &[SocketAddr] {
        &self.tls_addrs
    }

    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin_addr
    }

    pub fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }

    /// Stops accepting, lets in-flight requests finish (up to the shutdown timeout), returns.
    pub async fn shutdown(mut self) {
        self.shared
            .stopping
            .store(true, std::sync::atomic::Ordering::Relaxed);
        for c in self
            .shared
            .checkers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .drain(..)
        {
            c.abort();
        }
        let _ = self.shutdown.send(true);
        let drain = async { while self.tasks.join_next().await.is_some() {} };
        let limit = self.shared.runtime.load().limits.shutdown_timeout;
        if tokio::time::timeout(limit, drain).await.is_err() {
            tracing::warn!("shutdown timeout reached; closing remaining connections");
            self.tasks.abort_all();
        }
        if let Some((stop, task)) = self.admin.take() {
            let _ = stop.send(true);
            let _ = task.await;
        }
    }

    /// Serves until the process gets SIGINT or SIGTERM, then shuts down gracefully.
    pub async fn run_until_signal(self) -> anyhow::Result<()> {
        wait_for_signal(&self.shared).await;
        tracing::info!("shutting down: no new connections; finishing requests in flight");
        self.shutdown().await;
        Ok(())
    }
}

#[cfg(unix)]
async fn wait_for_signal(shared: &Shared) {
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
async fn wait_for_signal(_shared: &Shared) {
    let _ = tokio::signal::ctrl_c().await;
}

pub(crate) fn new_shared(config: &Config, workers: usize) -> anyhow::Result<Shared> {
    let instance = instance_name(config);
    let events = Arc::new(crate::backend::events::EventLog::default());
    let runtime = build_runtime(config, &instance, workers, &events)?;
    let traffic = runtime.traffic.clone();
    Ok(Shared {
        runtime: ArcSwap::from_pointee(runtime),
        instance,
        workers,
        stopping: Default::default(),
        events,
        traffic,
        admin_token: config.admin.token.clone(),
        config_path: (!config.source.is_empty() && std::path::Path::new(&config.source).is_file())
            .then(|| std::path::PathBuf::from(&config.source)),
        checkers: Default::default(),
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

/// Serves `config` with one thread per worker until SIGTERM or SIGINT (the `run` command).
///
/// Each worker is a single-threaded tokio runtime with its own listening socket on every address
/// (SO_REUSEPORT: the kernel spreads new connections over the workers). A connection, its
/// requests and the upstream connections they use stay on one thread: no work stealing, no
/// cross-thread wakeups on the hot path. The main thread runs the admin listener and signals.
pub fn run_threaded(config: Config) -> anyhow::Result<()> {
    let workers = config.server.workers.unwrap_or_else(|| {
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    });
    let shared = Arc::new(new_shared(&config, workers)?);
    // Bind every worker's socket before serving, so a port in use fails the start at once. An
    // address with port 0 gets its port from the first bind; the other workers join it.
    let mut per_worker: Vec<Vec<(std::net::TcpListener, bool)>> =
        (0..workers).map(|_| Vec::new()).collect();
    let mut addrs = Vec::new();
    let tls_listen = config.server.tls.iter().flat_map(|t| t.listen.iter());
    for (a, tls) in config
        .server
        .listen
        .iter()
        .map(|a| (a, false))
        .chain(tls_listen.map(|a| (a, true)))
    {
        let first = bind_std(*a, true).with_context(|| format!("cannot listen on {a}"))?;
        let actual = first.local_addr()?;
        per_worker[0].push((first, tls));
        for w in per_worker.iter_mut().skip(1) {
            w.push((
                bind_std(actual, true).with_context(|| format!("cannot listen on {actual}"))?,
                tls,
            ));
        }
        addrs.push((actual, tls));
    }
    crate::admin::check_exposure(config.admin.listen, config.admin.token.as_deref())?;
    let admin_std = bind_std(config.admin.listen, false)
        .with_context(|| format!("cannot listen on {} (admin)", config.admin.listen))?;
    let admin_addr = admin_std.local_addr()?;

    let (shutdown, shutdown_rx) = watch::channel(false);
    let mut threads = Vec::new();
    for (id, listeners) in per_worker.into_iter().enumerate() {
        let shared = shared.clone();
        let rx = shutdown_rx.clone();
        let t = std::thread::Builder::new()
            .name(format!("langur-worker-{id}"))
            .spawn(move || -> anyhow::Result<()> {
                WORKER_ID.with(|w| w.set(id));
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()?;
                rt.block_on(async move {
                    let mut tasks = JoinSet::new();
                    for (l, tls) in listeners {
                        tasks.spawn(accept_loop(
                            TcpListener::from_std(l)?,
                            shared.clone(),
                            rx.clone(),
                            tls,
                        ));
                    }
                    let drain = async { while tasks.join_next().await.is_some() {} };
                    // accept loops end at shutdown, after their connections finished
                    drain.await;
                    Ok::<_, anyhow::Error>(())
                })
            })?;
        threads.push(t);
    }
    for (a, tls) in &addrs {
        if *tls {
            tracing::info!(tls_listen = %a, workers, "langur is serving TLS");
        } else {
            tracing::info!(listen = %a, workers, "langur is serving");
        }
    }
    tracing::info!(admin = %admin_addr, "admin listener");

    let main_rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    main_rt.block_on(async {
        let admin = TcpListener::from_std(admin_std)?;
        *shared.checkers.lock().unwrap_or_else(|p| p.into_inner()) =
            crate::backend::monitor::spawn_checkers(&shared.runtime.load().pools);
        // The admin listener outlives the drain, so `/healthz` can say 503 meanwhile.
        let (_admin_stop, admin_rx) = watch::channel(false);
        let admin_task = tokio::spawn(crate::admin::serve(admin, shared.clone(), admin_rx));
        wait_for_signal(&shared).await;
        tracing::info!("shutting down: no new connections; finishing requests in flight");
        shared
            .stopping
            .store(true, std::sync::atomic::Ordering::Relaxed);
        let _ = shutdown.send(true);
        for c in shared
            .checkers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .drain(..)
        {
            c.abort();
        }
        let joined = tokio::task::spawn_blocking(move || {
            for t in threads {
                let _ = t.join();
            }
        });
        let limit = shared.runtime.load().limits.shutdown_timeout;
        if tokio::time::timeout(limit, joined).await.is_err() {
            tracing::warn!("shutdown timeout reached; exiting with requests still in flight");
        }
        admin_task.abort();
        Ok::<_, anyhow::Error>(())
    })
}

async fn accept_loop(
    listener: TcpListener,
    shared: Arc<Shared>,
    mut shutdown: watch::Receiver<bool>,
    tls: bool,
) {
    let active = Arc::new(crate::conn::Active::default());
    let (ticks, clock) = crate::conn::park_clock();
    // `max_connections` per listener, shared by the workers' sockets on the same address.
    let slots = {
        let max = shared.runtime.load().limits.max_connections;
        Arc::new(tokio::sync::Semaphore::new(
            max.div_ceil(shared.workers.max(1)),
        ))
    };
    // The listener's connections: when this task ends (or is aborted at the shutdown timeout),
    // they end with it.
    let mut conns = JoinSet::new();
    // Idle keep-alive connections, and the one timer that closes them (see `park.rs`).
    let lot = crate::park::Lot::new();
    let mut lot_timer = Box::pin(tokio::time::sleep(Duration::from_secs(3600)));
    let ctx = crate::conn::Ctx {
        shared: shared.clone(),
        active: active.clone(),
        ticks: ticks.clone(),
        lot: lot.clone(),
    };
    loop {
        // At the limit, stop accepting (the kernel's backlog holds newcomers) until one closes.
        let permit = tokio::select! {
            p = slots.clone().acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => break,
            },
            Some(_) = conns.join_next(), if !conns.is_empty() => continue,
            back = std::future::poll_fn(|cx| lot.poll_next(cx, lot_timer.as_mut())) => {
                conns.spawn(crate::conn::serve(back, ctx.clone(), false));
                continue;
            }
            _ = shutdown.changed() => break,
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
                    let (shared, active, ticks) = (shared.clone(), active.clone(), ticks.clone());
                    conns.spawn(async move {
                        crate::conn::serve_tls(stream, peer, shared, active, ticks).await;
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
            _ = shutdown.changed() => break,
        }
    }
    drop(listener);
    // Idle connections close now; the ones in an exchange finish it first.
    drop(ctx);
    lot.close_all();
    shared
        .stopping
        .store(true, std::sync::atomic::Ordering::Relaxed);
    clock.abort();
    active.drained().await;
}
