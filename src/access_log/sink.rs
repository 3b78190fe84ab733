//! Where lines go: a bounded queue to one writer thread per sink, which formats them in
//! batches and writes them to their destination (and turns traced ones into spans). The queue
//! holds at most `[log] queue` lines; a request whose line finds it full drops the line and
//! counts it ([`Sink::dropped`]), so a slow disk, a stalled pipe or a lost syslog server never
//! makes a request wait.

use super::format::{self, Shows};
use super::otlp::{Exporter, SpanCounters};
use super::Line;
use crate::config::log::{LogSettings, LogTarget, TracingSettings};
use anyhow::Context;
use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Lines written per batch at most.
const BATCH: usize = 512;
/// How often an idle writer looks for a reopen request.
const IDLE: Duration = Duration::from_millis(200);

/// Bumped by [`reopen`]; every file writer reopens its file when it sees a new value.
static REOPEN: AtomicU64 = AtomicU64::new(0);

/// The writer threads started so far (for [`wait_for_writers`]).
static WRITERS: Mutex<Vec<std::thread::JoinHandle<()>>> = Mutex::new(Vec::new());

/// Asks every access-log file to be reopened (`SIGUSR1`, logrotate's convention): lines written
/// from now on go to a file opened by name again.
pub fn reopen() {
    REOPEN.fetch_add(1, Ordering::Relaxed);
}

/// Waits (up to `limit`) for the writers of sinks that were dropped to write their last lines
/// and send their last spans; at exit.
pub fn wait_for_writers(limit: Duration) {
    let deadline = std::time::Instant::now() + limit;
    let threads = std::mem::take(&mut *WRITERS.lock().unwrap_or_else(|e| e.into_inner()));
    for t in threads {
        while !t.is_finished() && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        if t.is_finished() {
            let _ = t.join();
        }
    }
}

/// One access log (and span export): what the request path sends lines to.
#[derive(Debug)]
pub struct Sink {
    tx: SyncSender<Box<Line>>,
    shows: Shows,
    dropped: Arc<AtomicU64>,
    spans: Arc<SpanCounters>,
    /// What it was made from: a reload with the same settings keeps it.
    pub(crate) settings: (Option<LogSettings>, Option<TracingSettings>),
}

impl Sink {
    /// Opens the destination (an error names it), builds the exporter when `[tracing] otlp`
    /// is set, and starts the writer thread. `log`: `None` when lines are not written (only
    /// spans). `dropped` counts lines dropped, `spans` the spans exported (both kept across
    /// reloads by the caller).
    pub fn start(
        log: Option<&LogSettings>,
        tracing: Option<&TracingSettings>,
        dropped: Arc<AtomicU64>,
        spans: Arc<SpanCounters>,
    ) -> anyhow::Result<Arc<Sink>> {
        let out = match log {
            Some(l) => Some(Output::open(&l.access)?),
            None => None,
        };
        let exporter = match tracing.and_then(|t| t.otlp.as_deref().map(|url| (t, url))) {
            Some((t, url)) => Some(Exporter::new(url, &t.service_name, spans.clone())?),
            None => None,
        };
        let queue = log.map_or(crate::config::log::DEFAULT_QUEUE, |l| l.queue);
        let (tx, rx) = std::sync::mpsc::sync_channel(queue);
        let writer = Writer {
            rx,
            out,
            format: log.map(|l| l.format.clone()),
            exporter,
            buf: Vec::with_capacity(64 * 1024),
            reopened: REOPEN.load(Ordering::Relaxed),
            dropped: dropped.clone(),
            failing: false,
        };
        let thread = std::thread::Builder::new()
            .name("langur-access-log".into())
            .spawn(move || writer.run())
            .context("starting the access-log writer")?;
        let mut writers = WRITERS.lock().unwrap_or_else(|e| e.into_inner());
        writers.retain(|t| !t.is_finished());
        writers.push(thread);
        Ok(Arc::new(Sink {
            tx,
            shows: log.map_or(Shows::default(), |l| Shows::of(&l.format)),
            dropped,
            spans,
            settings: (log.cloned(), tracing.cloned()),
        }))
    }

    /// What of a request its lines show (the rest is not gathered).
    pub(crate) fn shows(&self) -> Shows {
        self.shows
    }

    /// Lines dropped because the writer could not keep up.
    pub fn dropped(&self) -> &Arc<AtomicU64> {
        &self.dropped
    }

    /// The span export's counts (zero without `[tracing] otlp`).
    pub fn spans(&self) -> &Arc<SpanCounters> {
        &self.spans
    }

    /// Queues a line; never waits.
    pub(super) fn send(&self, line: Box<Line>) {
        match self.tx.try_send(line) {
            Ok(()) => {}
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                self.dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

/// A sink's thread: takes lines off the queue in batches until every sender is gone.
struct Writer {
    rx: Receiver<Box<Line>>,
    out: Option<Output>,
    format: Option<crate::config::log::LogFormat>,
    exporter: Option<Exporter>,
    buf: Vec<u8>,
    reopened: u64,
    /// Lines lost, with the queue's drops.
    dropped: Arc<AtomicU64>,
    /// The last write failed (its warning said so).
    failing: bool,
}

impl Writer {
    fn run(mut self) {
        let mut batch = Vec::with_capacity(BATCH);
        loop {
            match self.rx.recv_timeout(IDLE) {
                Ok(line) => batch.push(line),
                Err(RecvTimeoutError::Timeout) => {
                    self.maybe_reopen();
                    continue;
                }
                Err(RecvTimeoutError::Disconnected) => break,
            }
            while batch.len() < BATCH {
                match self.rx.try_recv() {
                    Ok(line) => batch.push(line),
                    Err(_) => break,
                }
            }
            self.maybe_reopen();
            self.write(&batch);
            batch.clear();
        }
        if let Some(e) = self.exporter.take() {
            e.shutdown();
        }
    }

    fn maybe_reopen(&mut self) {
        let asked = REOPEN.load(Ordering::Relaxed);
        if asked != self.reopened {
            self.reopened = asked;
            if let Some(out) = &mut self.out {
                out.reopen();
            }
        }
    }

    /// Formats and writes one batch; spans of traced requests go to the exporter.
    fn write(&mut self, batch: &[Box<Line>]) {
        let clock = format::Clock::now();
        if let Some(exporter) = &self.exporter {
            for line in batch {
                exporter.export(line, clock.start_of(line));
            }
        }
        let (Some(out), Some(fmt)) = (&mut self.out, &self.format) else {
            return;
        };
        self.buf.clear();
        if let Output::Syslog(s) = out {
            for line in batch {
                self.buf.clear();
                format::write(&mut self.buf, fmt, line, &clock);
                s.send(&self.buf);
            }
            return;
        }
        for line in batch {
            format::write(&mut self.buf, fmt, line, &clock);
            self.buf.push(b'\n');
        }
        match out.write(&self.buf) {
            Ok(()) if self.failing => {
                self.failing = false;
                tracing::info!("access log: lines are written again");
            }
            Ok(()) => {}
            Err(e) => {
                // Lost: counted with the lines the queue dropped; said once per outage.
                self.dropped
                    .fetch_add(batch.len() as u64, Ordering::Relaxed);
                if !self.failing {
                    self.failing = true;
                    tracing::warn!(error = %e, "access log: lines cannot be written; they are counted as dropped until writing works again");
                }
            }
        }
        if self.buf.capacity() > 1 << 20 {
            self.buf = Vec::with_capacity(64 * 1024);
        }
    }
}

/// A destination, open.
enum Output {
    Stdout,
    Stderr,
    File(std::path::PathBuf, std::fs::File),
    Syslog(Syslog),
}

impl Output {
    fn open(target: &LogTarget) -> anyhow::Result<Output> {
        Ok(match target {
            LogTarget::Stdout => Output::Stdout,
            LogTarget::Stderr => Output::Stderr,
            LogTarget::File(p) => Output::File(p.clone(), open_file(p)?),
            LogTarget::SyslogUdp(a) => Output::Syslog(Syslog::udp(*a)?),
            LogTarget::SyslogUnix(p) => Output::Syslog(Syslog::unix(p)?),
        })
    }

    /// Writes a batch of whole lines (one write for stdout and stderr, so lines of the
    /// application log never land inside one).
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        match self {
            Output::Stdout => std::io::stdout().lock().write_all(bytes),
            Output::Stderr => std::io::stderr().lock().write_all(bytes),
            Output::File(_, f) => f.write_all(bytes),
            Output::Syslog(_) => Ok(()),
        }
    }

    fn reopen(&mut self) {
        if let Output::File(path, f) = self {
            match open_file(path) {
                Ok(new) => *f = new,
                Err(e) => tracing::error!("access log: {e:#}; still writing to the old file"),
            }
        }
    }
}

/// Opens (or makes) the log file for appending: a regular file, or a FIFO another process
/// reads (a log shipper). The open itself does not wait: a FIFO nobody reads is an error at
/// once ("no such device or address") instead of holding a start or a reload. Writes to a
/// FIFO then block as a file's would (the queue in front takes the wait, and drops lines
/// while it is full), so a line is never cut in the middle.
fn open_file(path: &std::path::Path) -> anyhow::Result<std::fs::File> {
    use nix::fcntl::{fcntl, FcntlArg, OFlag};
    use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
    let what = || format!("cannot open the access log {}", path.display());
    let f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .custom_flags(OFlag::O_NONBLOCK.bits())
        .open(path)
        .with_context(|| format!("{} (a FIFO needs its reader first)", what()))?;
    let kind = f.metadata().with_context(what)?.file_type();
    if kind.is_fifo() {
        fcntl(&f, FcntlArg::F_SETFL(OFlag::O_APPEND)).with_context(what)?;
    } else if !kind.is_file() {
        anyhow::bail!("{}: neither a regular file nor a FIFO", what());
    }
    Ok(f)
}

/// RFC 3164 messages (facility `local0`, severity `info`, tag `langur[PID]`), one datagram per
/// line, over UDP (RFC 5426) or a Unix datagram socket. A Unix socket that fails (its daemon
/// restarted) is connected again for the next line.
enum Syslog {
    Udp(fasyslog::sender::UdpSender),
    Unix(
        std::path::PathBuf,
        Option<fasyslog::sender::UnixDatagramSender>,
    ),
}

impl Syslog {
    fn udp(to: std::net::SocketAddr) -> anyhow::Result<Syslog> {
        let local = if to.is_ipv4() { "0.0.0.0:0" } else { "[::]:0" };
        let mut s = fasyslog::sender::UdpSender::connect(local, to)
            .with_context(|| format!("cannot reach syslog at udp://{to}"))?;
        s.set_context(context());
        Ok(Syslog::Udp(s))
    }

    fn unix(path: &std::path::Path) -> anyhow::Result<Syslog> {
        let s = connect_unix(path)
            .with_context(|| format!("cannot reach syslog at {}", path.display()))?;
        Ok(Syslog::Unix(path.to_path_buf(), Some(s)))
    }

    fn send(&mut self, line: &[u8]) {
        let msg = String::from_utf8_lossy(line);
        let sev = fasyslog::Severity::INFORMATIONAL;
        match self {
            Syslog::Udp(s) => {
                let _ = s.send_rfc3164(sev, &msg);
            }
            Syslog::Unix(path, slot) => {
                if slot.is_none() {
                    *slot = connect_unix(path).ok();
                }
                if let Some(s) = slot {
                    if s.send_rfc3164(sev, &msg).is_err() {
                        *slot = None;
                    }
                }
            }
        }
    }
}

fn connect_unix(path: &std::path::Path) -> std::io::Result<fasyslog::sender::UnixDatagramSender> {
    let mut s = fasyslog::sender::UnixDatagramSender::connect(path)?;
    s.set_context(context());
    Ok(s)
}

fn context() -> fasyslog::format::SyslogContext {
    let mut c = fasyslog::format::SyslogContext::new();
    c.facility(fasyslog::Facility::LOCAL0).appname("langur");
    c
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::access_log::AccessLog;
    use crate::config::log::LogFormat;
    use crate::session::{ClientInfo, ConnState};

    /// A write that fails (here: a file open for reading only) loses its lines: they are
    /// counted with the queue's drops, and counting stops when writing works again.
    #[test]
    fn lines_a_write_cannot_deliver_are_counted_as_dropped() {
        let scratch = crate::scratch_dir("sink");
        let dir = scratch.path().to_path_buf();
        let path = dir.join("a.log");
        std::fs::write(&path, "").unwrap();
        let dropped = Arc::new(AtomicU64::new(0));
        let sink = Sink::start(None, None, dropped.clone(), Arc::default()).unwrap();
        let (_tx, rx) = std::sync::mpsc::sync_channel(1);
        let read_only = std::fs::File::open(&path).unwrap();
        let mut w = Writer {
            rx,
            out: Some(Output::File(path.clone(), read_only)),
            format: Some(LogFormat::Json),
            exporter: None,
            buf: Vec::new(),
            reopened: 0,
            dropped: dropped.clone(),
            failing: false,
        };
        let req = http::Request::get("/x").body(()).unwrap();
        let client = ClientInfo::connected(Some("127.0.0.1:1".parse().unwrap()), None);
        let conn = ConnState::new(client.clone());
        let batch: Vec<Box<Line>> = (0..3)
            .map(|_| AccessLog::new(&sink, &req, &client, &conn).0)
            .collect();
        w.write(&batch);
        w.write(&batch);
        assert_eq!(dropped.load(Ordering::Relaxed), 6);
        assert!(w.failing);
        w.out = Some(Output::File(path.clone(), open_file(&path).unwrap()));
        w.write(&batch);
        assert_eq!(dropped.load(Ordering::Relaxed), 6);
        assert!(!w.failing);
        let written = std::fs::read_to_string(&path).unwrap();
        assert_eq!(written.lines().count(), 3);
    }
}
