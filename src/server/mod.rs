//! Listeners, the admin listener, reload and graceful shutdown (the accept loop is
//! [`accept`]'s).
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
    /// `[acme]`: its configuration and certificates, and its task (stopped at shutdown).
    pub acme: Arc<crate::acme::Manager>,
    acme_task: Mutex<Option<JoinHandle<()>>>,
    /// Responses by status class and their per-second history.
    pub traffic: Arc<crate::stats::Traffic>,
    /// Who may use the admin API: its token and host names (replaced on reload).
    pub admin: ArcSwap<crate::admin::Access>,
    /// Where the config came from (re-read on reload); `None` for configs built in memory.
    pub config_path: Option<std::path::PathBuf>,
    /// The health checkers of the current runtime, with their pool's name (replaced on
    /// reload, a pool's when its servers change).
    pub checkers: Mutex<Vec<(Arc<str>, tokio::task::JoinHandle<()>)>>,
    /// The tasks that follow server names in DNS, one per pool that has some (replaced on
    /// reload).
    pub discovery: Mutex<Vec<tokio::task::JoinHandle<()>>>,
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
    fn certificates(&self) -> Vec<crate::acme::CertificateInfo> {
        let rt = self.runtime.load();
        let files =
            rt.tls
                .iter()
                .flat_map(|t| t.identities())
                .map(|id| crate::acme::CertificateInfo {
                    names: id.names.clone(),
                    issuer: id.issuer.clone(),
                    not_after: Some(id.not_after),
                    source: "file",
                    last_attempt: None,
                    last_error: None,
                });
        files.chain(self.acme.certificates()).collect()
    }
    fn change_servers(
        &self,
        pool: &str,
        f: &mut dyn FnMut(&Pool) -> Option<Vec<Arc<crate::backend::Server>>>,
    ) -> Option<Arc<Pool>> {
        change_servers(self, pool, f)
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
            .map(|l| tcp(l.open.iter().filter(|o| o.kind == kind).map(|o| &o.bound)))
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
            let wanted: Vec<(Kind, SocketAddr)> = wanted(config, self.admin_enabled())
                .into_iter()
                .filter_map(|(k, a)| tcp([&a]).first().map(|a| (k, *a)))
                .collect();
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
            if given
                .iter()
                .any(|g| g.0 == kind && crate::config::ListenAddr::Tcp(g.1) == addr)
            {
                continue; // bound by the caller: served below
            }
            let b = ls.bind(kind, &addr, config.server.reuse_port, &ours)?;
            ours.extend(b.local().ok().and_then(|l| tcp([&l]).first().copied()));
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
                    configured: crate::config::ListenAddr::Tcp(addr),
                    sockets: listeners::Sockets::Tcp(vec![socket]),
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
        *lock(&shared.discovery) = discovery::spawn(&shared, &config);
        *lock(&shared.acme_task) = Some(tokio::spawn(shared.acme.clone().run()));
        state_file::spawn(&shared);
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

    /// Renews every ACME certificate now, whatever its age (tests; not reachable from the
    /// configuration).
    #[doc(hidden)]
    pub fn renew_certificates_now(&self) {
        self.shared.acme.renew_now();
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
        state_file::save(&self.shared);
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
    for (_, c) in lock(&shared.checkers).drain(..) {
        c.abort();
    }
    for d in lock(&shared.discovery).drain(..) {
        d.abort();
    }
    if let Some(t) = lock(&shared.acme_task).take() {
        t.abort();
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
    let mut usr1 = signal(SignalKind::user_defined1()).expect("SIGUSR1 handler");
    loop {
        tokio::select! {
            _ = term.recv() => return,
            _ = int.recv() => return,
            _ = hup.recv() => {
                // reload() logs its own outcome
                let _ = reload(shared);
            }
            // logrotate's convention: the access log's file is opened again by name.
            _ = usr1.recv() => crate::access_log::reopen(),
        }
    }
}

#[cfg(not(unix))]
async fn wait_for_signal(_shared: &Arc<Shared>) {
    let _ = tokio::signal::ctrl_c().await;
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
    let main_rt = current_thread_runtime()?;
    // What the first snapshot starts (the cluster link's heartbeat, purge and shared-cache
    // tasks) runs on the main thread's runtime, driven by its `block_on` below.
    let mut shared = {
        let _in_main = main_rt.enter();
        new_shared(&config, workers)?
    };
    shared.overrides = overrides;
    let shared = Arc::new(shared);
    let admin = shared.overrides.admin_enabled();
    if admin {
        crate::admin::check_exposure(config.admin.listen, config.admin.token.as_deref())?;
    }
    // The workers' runtimes, each driven by its thread until told to exit.
    let runtimes = (0..workers)
        .map(|_| current_thread_runtime())
        .collect::<std::io::Result<Vec<_>>>()?;
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
        let b = ls.bind(kind, &addr, config.server.reuse_port, &ours)?;
        ours.extend(b.local().ok().and_then(|l| tcp([&l]).first().copied()));
        bound.push(b);
    }
    let threads = WorkerThreads::start(runtimes)?;
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
        *lock(&shared.discovery) = discovery::spawn(&shared, &config);
        *lock(&shared.acme_task) = Some(tokio::spawn(shared.acme.clone().run()));
        state_file::spawn(&shared);
        wait_for_signal(&shared).await;
        tracing::info!("shutting down: no new connections; finishing requests in flight");
        drain(&shared, &shutdown).await;
    });
    threads.stop();
    Ok(())
}

/// A single-threaded tokio runtime (the main thread's, or a worker's).
fn current_thread_runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
}

/// The worker threads, and what tells each to exit.
struct WorkerThreads {
    exits: Vec<tokio::sync::oneshot::Sender<()>>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl WorkerThreads {
    /// Starts one thread per worker runtime (`langur-worker-<id>`), each driving its runtime
    /// until it is told to exit (or what tells it is dropped).
    fn start(runtimes: Vec<tokio::runtime::Runtime>) -> std::io::Result<WorkerThreads> {
        let mut workers = WorkerThreads {
            exits: Vec::new(),
            threads: Vec::new(),
        };
        for (id, rt) in runtimes.into_iter().enumerate() {
            let (exit, exit_rx) = tokio::sync::oneshot::channel::<()>();
            workers.exits.push(exit);
            workers.threads.push(
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
        Ok(workers)
    }

    /// Tells every worker the drain is over, then waits for their threads to end.
    fn stop(self) {
        for e in self.exits {
            let _ = e.send(());
        }
        for t in self.threads {
            let _ = t.join();
        }
    }
}

/// The threaded server's shutdown: stops accepting and waits for the requests in flight (up
/// to `shutdown_timeout`), then stops the admin listener, which outlives the drain so
/// `/healthz` can say 503 meanwhile.
async fn drain(shared: &Arc<Shared>, shutdown: &watch::Sender<bool>) {
    let tasks = begin_shutdown(shared, shutdown);
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
    state_file::save(shared);
}

mod accept;
mod discovery;
mod listeners;
mod members;
mod reload;
mod runtime;
mod state_file;

use accept::{accept_loop, Acceptor};
pub use listeners::bind;
use listeners::{tcp, wanted, Bound, Kind, Listeners, Slots};
pub use members::change_servers;
pub use reload::reload;
pub(crate) use runtime::new_shared;
pub use runtime::{build_runtime, build_runtime_from, instance_name};
