//! The listeners: what a config asks for, binding (SO_REUSEPORT across workers, a probe for
//! other processes), and opening and draining them as a reload changes them.

use super::*;
use crate::config::ListenAddr;
use std::os::unix::net::UnixListener as StdUnixListener;

/// The listeners a config asks for, in order: client (TCP, then Unix-domain sockets), TLS,
/// admin.
pub(super) fn wanted(config: &Config, admin: bool) -> Vec<(Kind, ListenAddr)> {
    let s = &config.server;
    let mut out: Vec<(Kind, ListenAddr)> = s
        .listen
        .iter()
        .map(|a| (Kind::Plain, ListenAddr::Tcp(*a)))
        .collect();
    out.extend(
        s.listen_unix
            .iter()
            .map(|p| (Kind::Plain, ListenAddr::Unix(p.clone()))),
    );
    if let Some(t) = &s.tls {
        out.extend(t.listen.iter().map(|a| (Kind::Tls, ListenAddr::Tcp(*a))));
    }
    if admin {
        out.push((Kind::Admin, ListenAddr::Tcp(config.admin.listen)));
    }
    out
}

/// The TCP addresses among `listeners`.
pub(super) fn tcp<'a>(listeners: impl IntoIterator<Item = &'a ListenAddr>) -> Vec<SocketAddr> {
    listeners
        .into_iter()
        .filter_map(|l| match l {
            ListenAddr::Tcp(a) => Some(*a),
            ListenAddr::Unix(_) => None,
        })
        .collect()
}

/// What a listener serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Kind {
    Plain,
    Tls,
    Admin,
}

impl Kind {
    pub(super) fn word(self) -> &'static str {
        match self {
            Kind::Plain => "client listener",
            Kind::Tls => "TLS listener",
            Kind::Admin => "admin listener",
        }
    }
}

/// One open listener.
#[derive(Debug)]
pub(super) struct Open {
    pub(super) kind: Kind,
    /// The address as configured: port 0 stays 0, so the same entry after a reload is the same
    /// listener (it keeps the port it got).
    pub(super) configured: ListenAddr,
    pub(super) bound: ListenAddr,
    /// Stops this listener alone (a reload removed it; at shutdown, the admin listener).
    pub(super) stop: watch::Sender<bool>,
    /// One accept loop per worker (the admin listener: one task on the main runtime).
    pub(super) tasks: Vec<JoinHandle<()>>,
    /// The `max_connections` permits of each worker's socket.
    pub(super) slots: Vec<Arc<Slots>>,
}

/// The `max_connections` permits of one worker's socket. A connection holds a permit while it
/// is open (parked too); the accept loop takes one before each accept.
#[derive(Debug)]
pub(super) struct Slots {
    pub(super) sem: Arc<Semaphore>,
    /// Permits to destroy as they come back (the limit was lowered below what is in use).
    pub(super) debt: std::sync::atomic::AtomicUsize,
    /// Tells the accept loop the limit changed (it may hold a permit that is now debt).
    pub(super) changed: Notify,
}

impl Slots {
    pub(super) fn new(n: usize) -> Slots {
        Slots {
            sem: Arc::new(Semaphore::new(n)),
            debt: Default::default(),
            changed: Notify::new(),
        }
    }

    /// Moves the limit from `old` to `new`: permits are added (paying the debt first) or
    /// destroyed (those free now at once, the others as connections close).
    pub(super) fn resize(&self, old: usize, new: usize) {
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
    pub(super) fn pay(
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
pub(super) struct Listeners {
    /// One runtime per worker; each listener has an accept loop on each.
    pub(super) workers: Vec<tokio::runtime::Handle>,
    /// Where the admin listener runs.
    pub(super) main: tokio::runtime::Handle,
    pub(super) shutdown: watch::Receiver<bool>,
    pub(super) open: Vec<Open>,
    /// Accept loops of listeners removed by reloads, still finishing their connections.
    pub(super) draining: Vec<JoinHandle<()>>,
    /// `max_connections` of each worker's socket, as last applied.
    pub(super) per_socket: usize,
}

/// Sockets bound for one listener, not yet served.
pub(super) struct Bound {
    pub(super) kind: Kind,
    pub(super) configured: ListenAddr,
    pub(super) sockets: Sockets,
}

/// A listener's sockets, one per worker (the admin listener's: one).
pub(super) enum Sockets {
    Tcp(Vec<std::net::TcpListener>),
    /// One Unix-domain socket, shared by the workers (a descriptor each).
    Unix(Vec<StdUnixListener>),
}

impl Bound {
    /// The address the first socket got (a TCP port 0 gets its port here).
    pub(super) fn local(&self) -> anyhow::Result<ListenAddr> {
        match &self.sockets {
            Sockets::Tcp(s) => Ok(ListenAddr::Tcp(
                s.first()
                    .context("a listener without a socket")?
                    .local_addr()?,
            )),
            Sockets::Unix(_) => Ok(self.configured.clone()),
        }
    }
}

impl Listeners {
    pub(super) fn new(
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
    pub(super) fn bind(
        &self,
        kind: Kind,
        addr: &ListenAddr,
        share: bool,
        ours: &[SocketAddr],
    ) -> anyhow::Result<Bound> {
        let n = if kind == Kind::Admin {
            1
        } else {
            self.workers.len()
        };
        let addr = match addr {
            ListenAddr::Tcp(a) => *a,
            ListenAddr::Unix(path) => {
                let sockets = bind_unix(path, n)
                    .with_context(|| format!("cannot listen on unix:{}", path.display()))?;
                return Ok(Bound {
                    kind,
                    configured: ListenAddr::Unix(path.clone()),
                    sockets: Sockets::Unix(sockets),
                });
            }
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
            configured: ListenAddr::Tcp(addr),
            sockets: Sockets::Tcp(sockets),
        })
    }

    /// Starts accept loops on bound sockets.
    pub(super) fn serve(&mut self, shared: &Arc<Shared>, b: Bound) -> anyhow::Result<ListenAddr> {
        let bound = b.local()?;
        let (stop, stop_rx) = watch::channel(false);
        let mut tasks = Vec::new();
        let mut slots = Vec::new();
        let sockets: Vec<Socket> = match b.sockets {
            Sockets::Tcp(s) => s.into_iter().map(Socket::Tcp).collect(),
            Sockets::Unix(s) => s.into_iter().map(Socket::Unix).collect(),
        };
        if b.kind == Kind::Admin {
            for s in tcp_sockets(sockets) {
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
            let listener = b.configured.clone();
            let counters = shared.traffic.listeners.register(&bound.to_string(), tls);
            for (s, worker) in sockets.into_iter().zip(&self.workers) {
                let sem = Arc::new(Slots::new(self.per_socket));
                slots.push(sem.clone());
                let (shared, shutdown, stop) =
                    (shared.clone(), self.shutdown.clone(), stop_rx.clone());
                let (listener, counters) = (listener.clone(), counters.clone());
                tasks.push(worker.spawn(async move {
                    match s.into_tokio() {
                        Ok(l) => {
                            accept_loop(l, shared, shutdown, stop, tls, sem, (listener, counters))
                                .await
                        }
                        Err(e) => tracing::error!(error = %e, "listener failed"),
                    }
                }));
            }
        }
        self.open.push(Open {
            kind: b.kind,
            configured: b.configured,
            bound: bound.clone(),
            stop,
            tasks,
            slots,
        });
        Ok(bound)
    }

    /// Stops a listener: no new connections; the ones it has finish (see [`accept_loop`]). A
    /// Unix-domain socket's file is removed.
    pub(super) fn remove(&mut self, i: usize) -> Open {
        let o = self.open.remove(i);
        let _ = o.stop.send(true);
        unlink(&o.configured);
        o
    }

    /// Sets `max_connections` for every client and TLS socket. A lower limit is reached as
    /// connections close (the permits are taken back as they come free).
    pub(super) fn set_max_connections(&mut self, max: usize) {
        let per = max.div_ceil(self.workers.len().max(1));
        let old = std::mem::replace(&mut self.per_socket, per);
        if per == old {
            return;
        }
        for slots in self.open.iter().flat_map(|o| o.slots.iter()) {
            slots.resize(old, per);
        }
    }

    /// Every accept loop's task but the admin listener's (at shutdown); Unix-domain sockets'
    /// files are removed.
    pub(super) fn take_accept_tasks(&mut self) -> Vec<JoinHandle<()>> {
        let mut out = std::mem::take(&mut self.draining);
        for o in self.open.iter_mut().filter(|o| o.kind != Kind::Admin) {
            out.append(&mut o.tasks);
            unlink(&o.configured);
        }
        out
    }

    /// Stops the admin listener (after the drain); returns its task.
    pub(super) fn stop_admin(&mut self) -> Vec<JoinHandle<()>> {
        let mut out = Vec::new();
        for o in self.open.iter_mut().filter(|o| o.kind == Kind::Admin) {
            let _ = o.stop.send(true);
            out.append(&mut o.tasks);
        }
        out
    }

    pub(super) fn abort_all(&mut self) {
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

/// One worker's socket, not yet in its runtime.
enum Socket {
    Tcp(std::net::TcpListener),
    Unix(StdUnixListener),
}

impl Socket {
    /// The socket in the current (worker's) runtime.
    fn into_tokio(self) -> std::io::Result<Acceptor> {
        match self {
            Socket::Tcp(s) => TcpListener::from_std(s).map(Acceptor::Tcp),
            Socket::Unix(s) => tokio::net::UnixListener::from_std(s).map(Acceptor::Unix),
        }
    }
}

/// The TCP sockets among `sockets` (the admin listener has no other).
fn tcp_sockets(sockets: Vec<Socket>) -> impl Iterator<Item = std::net::TcpListener> {
    sockets.into_iter().filter_map(|s| match s {
        Socket::Tcp(s) => Some(s),
        Socket::Unix(_) => None,
    })
}

/// Binds a Unix-domain socket at `path` (non-blocking), with a descriptor for each of `n`
/// workers. A socket file left by a process that is gone is replaced; one that something
/// still listens on, or a file that is not a socket, is an error.
fn bind_unix(path: &std::path::Path, n: usize) -> anyhow::Result<Vec<StdUnixListener>> {
    use std::os::unix::fs::FileTypeExt;
    if let Ok(meta) = std::fs::symlink_metadata(path) {
        if !meta.file_type().is_socket() {
            anyhow::bail!("the path exists and is not a socket");
        }
        if std::os::unix::net::UnixStream::connect(path).is_ok() {
            anyhow::bail!("another process listens on this socket");
        }
        std::fs::remove_file(path)?;
    }
    let first = StdUnixListener::bind(path)?;
    first.set_nonblocking(true)?;
    let mut out = Vec::with_capacity(n.max(1));
    for _ in 1..n.max(1) {
        out.push(first.try_clone()?);
    }
    out.insert(0, first);
    Ok(out)
}

/// Removes a Unix-domain socket listener's file (nothing for TCP).
fn unlink(l: &ListenAddr) {
    if let ListenAddr::Unix(path) = l {
        let _ = std::fs::remove_file(path);
    }
}

/// Binds `n` sockets on `addr` that share it (SO_REUSEPORT); the first fixes the port when
/// `addr` has port 0. Unless `share` is set, a port another process already listens on is an
/// error: a probe socket without SO_REUSEPORT cannot bind it (ours, the sockets this process
/// already has, are told apart by `ours`).
pub(super) fn bind_sockets(
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
pub(super) fn probe(addr: SocketAddr) -> std::io::Result<()> {
    let socket = socket2::Socket::new(
        socket2::Domain::for_address(addr),
        socket2::Type::STREAM,
        Some(socket2::Protocol::TCP),
    )?;
    socket.set_reuse_address(true)?;
    socket.bind(&addr.into())
}

/// Binds a listener with SO_REUSEADDR and a deep backlog (needs a tokio runtime).
pub fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    TcpListener::from_std(bind_std(addr, false)?)
}

pub(super) fn bind_std(
    addr: SocketAddr,
    reuse_port: bool,
) -> std::io::Result<std::net::TcpListener> {
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
