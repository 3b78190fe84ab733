//! Body types of the request path. Both are enums rather than boxed trait objects, so a request
//! costs no allocation for its body.
//!
//! [`ProxyBody`] is what the client receives. It streams the server's body frame by frame (never
//! buffering it) and carries the request's bookkeeping: the in-flight count, the upstream
//! connection (returned to the idle pool only when the body ended cleanly), and the access-log
//! line, written when the body is done or abandoned. A body may be re-coded on its way
//! ([`ProxyBody::encode`], for `compress`): then it goes through a [`Coded`] stage, and a body
//! without one pays a single branch.

use crate::access_log::AccessLog;
use crate::backend::InFlight;
use crate::cache::{Fill, FormFill};
use crate::coding::Transcoder;
use crate::session::counters::Verdict;
use crate::session::ConnState;
use crate::stats::route::RouteStats;
use crate::upstream::peer::Peer;
use bytes::{Buf, Bytes};
use http_body::{Body, Frame, SizeHint};
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::{Context, Poll};

pub use crate::session::body::{BodyError, ClientBody, ClientIn, IdleTimer, UpBody};

/// Where an HTTP/1.1 connection goes back once its response has been read to the end.
#[derive(Debug)]
pub struct Reusable {
    pub peer: Arc<Peer>,
    pub max_idle: usize,
}

#[derive(Debug)]
enum Kind {
    Full(Option<Bytes>),
    /// A server's body.
    Upstream(crate::upstream::UpstreamBody),
    /// Part of a file, read in chunks as the client takes them (boxed: a file's reader is
    /// large, and every response moves this enum).
    File(
        Box<tokio_util::io::ReaderStream<tokio::io::Take<tokio::fs::File>>>,
        u64,
    ),
}

/// The body sent to the client.
#[derive(Debug)]
pub struct ProxyBody {
    kind: Kind,
    /// Held (not read) so the server counts this request until the body is done.
    in_flight: Option<InFlight>,
    reuse: Option<Reusable>,
    log: Option<AccessLog>,
    bytes: u64,
    ended: bool,
    /// The client connection, told when this body did not end cleanly.
    conn: Option<Arc<ConnState>>,
    /// Counted among the connection's bodies hyper owes the client (see [`ConnState::owed`]).
    owed: bool,
    /// A cache entry being filled from this body as it streams by.
    fill: Option<Box<Fill>>,
    /// The body is re-coded on its way to the client.
    codec: Option<Box<Coded>>,
    /// What the answer says of the request besides its status (the listener's `ereq`, `dreq`).
    verdict: Verdict,
    /// The route's counters, told the status and the duration when the body is done.
    tally: Option<Tally>,
}

/// A routed request's response on its way, for its route's request duration ([`RouteStats`]);
/// sixteen bytes, as every response is moved several times.
#[derive(Debug)]
pub struct Tally {
    pub stats: Arc<RouteStats>,
    /// When the request's head was handed to the pipeline ([`crate::clock::now_us`]).
    pub start_us: u64,
}

/// A body re-coded as it streams (compressed, decompressed, or both): the source's frames go
/// into the [`Transcoder`]; its output is sent when 32 KiB have gathered, when the source
/// pauses (flushed first, so server-sent events and long polls arrive as they are written),
/// and at the end. Trailers follow the last data.
#[derive(Debug)]
pub struct Coded {
    tx: Transcoder,
    /// What of the source's current chunk is not pushed yet.
    input: Bytes,
    /// Bytes sent to the client.
    sent: u64,
    /// The source has ended and the transcoder is finished.
    done: bool,
    trailers: Option<http::HeaderMap>,
    /// A stored object's form made from this output.
    keep: Option<FormFill>,
}

/// Output gathered before it is sent even though the source has more ready.
const CODED_BATCH: usize = 32 * 1024;
/// Pushes into the transcoder in one poll before the body yields to the worker's other tasks
/// (each push is bounded: 64 KiB of input to encode, or 64 KiB decoded), so a body that
/// decodes far more than it sends cannot hold the worker.
const CODED_PUSHES: usize = 16;

impl ProxyBody {
    /// A body held in memory (error pages, small answers).
    pub fn full(data: impl Into<Bytes>, log: Option<AccessLog>) -> ProxyBody {
        let data = data.into();
        ProxyBody {
            bytes: data.len() as u64,
            kind: Kind::Full(if data.is_empty() { None } else { Some(data) }),
            in_flight: None,
            reuse: None,
            log,
            ended: true,
            conn: None,
            owed: false,
            fill: None,
            codec: None,
            verdict: Verdict::None,
            tally: None,
        }
    }

    /// The answer to a HEAD (RFC 9110 9.3.2): a body held in memory is dropped and its length
    /// returned, for `Content-Length`. HTTP/1.1 leaves a HEAD's body unsent anyway; HTTP/2 must
    /// not send one (RFC 9113 8.1). Other bodies are left: a server's answer to HEAD has none.
    /// A body re-coded on its way has no length before it is made: it is dropped, and `None`
    /// returned (its head has no `Content-Length`, as its GET's).
    pub fn drop_for_head(&mut self) -> Option<u64> {
        if self.codec.take().is_some() {
            if let Kind::Full(data) = &mut self.kind {
                data.take();
            }
            self.bytes = 0;
            return None;
        }
        match &mut self.kind {
            Kind::Full(data) => {
                let len = data.take().map_or(0, |d| d.len() as u64);
                self.bytes = 0;
                Some(len)
            }
            _ => None,
        }
    }

    /// `len` bytes of an open file from `start`, streamed in 64 KiB reads on tokio's blocking
    /// pool. Gives the log back if it cannot seek to `start`.
    pub fn file(
        mut f: std::fs::File,
        start: u64,
        len: u64,
        log: Option<AccessLog>,
    ) -> Result<ProxyBody, Option<AccessLog>> {
        use std::io::Seek;
        use tokio::io::AsyncReadExt;
        if start > 0 && f.seek(std::io::SeekFrom::Start(start)).is_err() {
            return Err(log);
        }
        let f = tokio::fs::File::from_std(f);
        let reader = tokio_util::io::ReaderStream::with_capacity(f.take(len), 64 * 1024);
        Ok(ProxyBody {
            kind: Kind::File(Box::new(reader), len),
            in_flight: None,
            reuse: None,
            log,
            bytes: 0,
            ended: len == 0,
            conn: None,
            owed: false,
            fill: None,
            codec: None,
            verdict: Verdict::None,
            tally: None,
        })
    }

    /// A server's body, streamed.
    pub fn upstream(
        body: crate::upstream::UpstreamBody,
        in_flight: InFlight,
        reuse: Reusable,
        log: Option<AccessLog>,
    ) -> ProxyBody {
        let mut b = ProxyBody {
            kind: Kind::Upstream(body),
            in_flight: Some(in_flight),
            reuse: Some(reuse),
            log,
            bytes: 0,
            ended: false,
            conn: None,
            owed: false,
            fill: None,
            codec: None,
            verdict: Verdict::None,
            tally: None,
        };
        if let Kind::Upstream(inner) = &b.kind {
            if inner.is_end_stream() {
                b.finish();
            }
        }
        b
    }

    /// Copies the body into the cache as it streams; stored when it ends cleanly. A body that
    /// already ended is stored at once.
    pub fn fill(&mut self, fill: Fill) {
        if self.ended {
            if let Kind::Upstream(..) = self.kind {
                fill.finish();
                return;
            }
        }
        self.fill = Some(Box::new(fill));
    }

    /// Re-codes the body on its way (the response's head must say the new coding, without a
    /// length); `keep` stores the output as a cached object's form when it is complete.
    pub fn encode(&mut self, tx: Transcoder, keep: Option<FormFill>) {
        self.codec = Some(Box::new(Coded {
            tx,
            input: Bytes::new(),
            sent: 0,
            done: false,
            trailers: None,
            keep,
        }));
    }

    /// Whether the body is re-coded on its way.
    pub fn is_coded(&self) -> bool {
        self.codec.is_some()
    }

    /// Takes the access-log line away (the response is being replaced by another).
    pub fn take_log(&mut self) -> Option<AccessLog> {
        self.log.take()
    }

    /// The access log line, to note what the cache did.
    pub fn log_mut(&mut self) -> Option<&mut AccessLog> {
        self.log.as_mut()
    }

    /// Corrects the status the access log will show.
    pub fn set_status(&mut self, status: u16) {
        if let Some(l) = &mut self.log {
            l.status = status;
        }
    }

    /// What the answer says of the request (langur's own answers).
    #[inline]
    pub fn set_verdict(&mut self, verdict: Verdict) {
        self.verdict = verdict;
    }

    #[inline]
    pub fn verdict(&self) -> Verdict {
        self.verdict
    }

    /// Tells the route's counters of this response when it is done.
    #[inline]
    pub fn tally(&mut self, tally: Tally) {
        self.tally = Some(tally);
    }

    /// Tells the client connection how this body ends (see `conn.rs`).
    pub fn attach(&mut self, conn: Arc<ConnState>) {
        conn.owed.fetch_add(1, Ordering::Relaxed);
        self.owed = true;
        self.conn = Some(conn);
    }

    /// hyper polls the body (see [`ConnState::owed`]).
    #[inline]
    fn asked(&mut self) {
        if let Some(c) = &self.conn {
            c.body_polls.fetch_add(1, Ordering::Relaxed);
            if std::mem::take(&mut self.owed) {
                c.owed.fetch_sub(1, Ordering::Relaxed);
            }
        }
    }

    /// The body gave hyper data and more is to come: owed until hyper polls again.
    #[inline]
    fn gave(&mut self) {
        if let Some(c) = &self.conn {
            if !self.ended {
                c.owed.fetch_add(1, Ordering::Relaxed);
                self.owed = true;
            }
        }
    }

    fn finish(&mut self) {
        self.ended = true;
        if let Some(f) = self.fill.take() {
            f.finish();
        }
        if let Some(r) = self.reuse.take() {
            // An HTTP/2 connection is shared, not taken: nothing to give back.
            if let Kind::Upstream(crate::upstream::UpstreamBody::H1(b)) = &mut self.kind {
                if let Some(c) = b.take_reusable() {
                    let busy = self.in_flight.as_ref().map_or(0, |f| f.now());
                    r.peer.put_idle(c, r.max_idle, busy);
                }
            }
        }
    }
}

impl Body for ProxyBody {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        let this = self.get_mut();
        this.asked();
        let r = match this.codec.is_some() {
            true => this.poll_coded(cx),
            false => this.poll_source(cx),
        };
        if let Poll::Ready(Some(Ok(_))) = &r {
            this.gave();
        }
        r
    }

    fn is_end_stream(&self) -> bool {
        if let Some(c) = &self.codec {
            return c.done && c.trailers.is_none();
        }
        match &self.kind {
            Kind::Full(d) => d.is_none(),
            Kind::Upstream(b) => b.is_end_stream(),
            Kind::File(_, left) => *left == 0,
        }
    }

    fn size_hint(&self) -> SizeHint {
        if self.codec.is_some() {
            return SizeHint::default();
        }
        match &self.kind {
            Kind::Full(d) => SizeHint::with_exact(d.as_ref().map_or(0, |d| d.len() as u64)),
            Kind::Upstream(b) => b.size_hint(),
            Kind::File(_, left) => SizeHint::with_exact(*left),
        }
    }
}

impl ProxyBody {
    /// The body's own frames, as they come (the whole of `poll_frame` without a codec).
    #[inline(always)]
    fn poll_source(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        let this = self;
        match &mut this.kind {
            Kind::Full(data) => Poll::Ready(data.take().map(|d| Ok(Frame::data(d)))),
            Kind::File(reader, left) => {
                use futures_core::Stream;
                match Pin::new(&mut **reader).poll_next(cx) {
                    Poll::Ready(Some(Ok(d))) => {
                        this.bytes += d.len() as u64;
                        *left = left.saturating_sub(d.len() as u64);
                        if *left == 0 {
                            this.ended = true;
                        }
                        Poll::Ready(Some(Ok(Frame::data(d))))
                    }
                    // A read error or a file that shrank: end short, and the connection closes
                    // (the Content-Length promised more).
                    Poll::Ready(Some(Err(_))) | Poll::Ready(None) => {
                        if let Some(log) = &mut this.log {
                            if !this.ended {
                                log.reason = "file_read_error";
                            }
                        }
                        Poll::Ready(None)
                    }
                    Poll::Pending => Poll::Pending,
                }
            }
            Kind::Upstream(inner) => {
                let polled = Pin::new(&mut *inner).poll_frame(cx);
                match polled {
                    Poll::Ready(Some(Ok(frame))) => {
                        match frame.data_ref() {
                            Some(d) => {
                                this.bytes += d.len() as u64;
                                if this.fill.as_mut().is_some_and(|f| !f.push(d)) {
                                    this.fill = None;
                                }
                            }
                            // Trailers are not stored: a response that has them is not kept.
                            None => this.fill = None,
                        }
                        if inner.is_end_stream() {
                            this.finish();
                        }
                        Poll::Ready(Some(Ok(frame)))
                    }
                    Poll::Ready(None) => {
                        this.finish();
                        Poll::Ready(None)
                    }
                    Poll::Ready(Some(Err(e))) => {
                        this.reuse = None;
                        let timed_out = e.kind() == std::io::ErrorKind::TimedOut;
                        if let Some(log) = &mut this.log {
                            log.reason = if timed_out {
                                "upstream_read_timeout"
                            } else {
                                "upstream_aborted"
                            };
                        }
                        Poll::Ready(Some(Err(BodyError::Upstream(e))))
                    }
                    Poll::Pending => Poll::Pending,
                }
            }
        }
    }

    /// The re-coded body: the source's data goes through the transcoder a step at a time; its
    /// output goes out in batches, on a pause of the source (flushed), and at the end.
    #[cold]
    #[inline(never)]
    fn poll_coded(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        let mut pushes = 0;
        loop {
            let c = self.codec.as_deref_mut().expect("a coded body");
            if !c.input.is_empty() {
                if pushes == CODED_PUSHES {
                    // Enough work for one poll: other tasks of the worker run first.
                    cx.waker().wake_by_ref();
                    return Poll::Pending;
                }
                pushes += 1;
                match c.tx.push(&c.input) {
                    Ok(n) => c.input.advance(n),
                    Err(e) => return self.coding_failed(e),
                }
                if c.tx.pending() >= CODED_BATCH {
                    return Poll::Ready(Some(Ok(Frame::data(c.emit()))));
                }
                continue;
            }
            if c.done {
                return Poll::Ready(c.last());
            }
            match self.poll_source(cx) {
                Poll::Ready(Some(Ok(frame))) => {
                    let c = self.codec.as_deref_mut().expect("a coded body");
                    match frame.into_data() {
                        Ok(d) => c.input = d,
                        Err(f) => c.trailers = f.into_trailers().ok(),
                    }
                }
                Poll::Ready(None) => {
                    let c = self.codec.as_deref_mut().expect("a coded body");
                    if let Err(e) = c.tx.finish() {
                        return self.coding_failed(e);
                    }
                    c.done = true;
                }
                Poll::Ready(Some(Err(e))) => return Poll::Ready(Some(Err(e))),
                Poll::Pending => return self.paused(),
            }
        }
    }

    /// The source has nothing ready: what was taken is flushed and sent, so a stream that
    /// pauses (server-sent events, long polls) arrives as it was written.
    fn paused(&mut self) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        let c = self.codec.as_deref_mut().expect("a coded body");
        if c.tx.unflushed() {
            if let Err(e) = c.tx.flush() {
                return self.coding_failed(e);
            }
        }
        if c.tx.pending() > 0 {
            return Poll::Ready(Some(Ok(Frame::data(c.emit()))));
        }
        Poll::Pending
    }

    /// A body that cannot be re-coded (a corrupt or cut compressed body from a server) ends
    /// with an error: the client sees a broken transfer, never a wrong body.
    #[cold]
    fn coding_failed(
        &mut self,
        e: std::io::Error,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        self.reuse = None;
        if let Some(log) = &mut self.log {
            log.reason = "coding_error";
        }
        if let Some(c) = &mut self.codec {
            c.keep = None;
            c.done = true;
        }
        Poll::Ready(Some(Err(BodyError::Upstream(e))))
    }
}

impl Coded {
    /// The output so far, counted and copied into the form being kept.
    fn emit(&mut self) -> Bytes {
        let out = self.tx.take();
        self.sent += out.len() as u64;
        if let Some(k) = &mut self.keep {
            k.push(&out);
        }
        out
    }

    /// After the source's end: the last output, then the form is kept, then the trailers.
    fn last(&mut self) -> Option<Result<Frame<Bytes>, BodyError>> {
        if self.tx.pending() > 0 {
            return Some(Ok(Frame::data(self.emit())));
        }
        if let Some(keep) = self.keep.take() {
            keep.finish();
        }
        self.trailers.take().map(|t| Ok(Frame::trailers(t)))
    }
}

impl Drop for ProxyBody {
    fn drop(&mut self) {
        if let Some(t) = self.tally.take() {
            let took = crate::clock::now_us().saturating_sub(t.start_us);
            t.stats
                .duration
                .observe(std::time::Duration::from_micros(took));
        }
        if let Some(c) = &self.conn {
            if self.owed {
                c.owed.fetch_sub(1, Ordering::Relaxed);
            }
            c.body_dropped(self.ended && self.codec.as_ref().map_or(true, |c| c.done));
        }
        if let Some(mut log) = self.log.take() {
            log.bytes = match &self.codec {
                Some(c) => c.sent,
                None => self.bytes,
            };
            if !self.ended && log.reason.is_empty() {
                log.reason = "client_aborted";
            }
            log.emit();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::coding::{transcode, Coding, Level};
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::task::{Wake, Waker};

    struct Count(AtomicUsize);
    impl Wake for Count {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::Relaxed);
        }
    }

    #[test]
    fn a_body_that_decodes_far_more_than_it_sends_yields_to_other_tasks() {
        let zeros = vec![0u8; 16 << 20];
        let bomb = transcode(&zeros, Coding::Identity, Coding::Gzip, Level::Default).unwrap();
        let mut body = ProxyBody::full(bomb, None);
        let tx = Transcoder::new(Coding::Gzip, Coding::Br, Level::Fast)
            .unwrap()
            .unwrap();
        body.encode(tx, None);
        let wakes = Arc::new(Count(AtomicUsize::new(0)));
        let waker = Waker::from(wakes.clone());
        let mut cx = Context::from_waker(&waker);
        let (mut sent, mut pending) = (Vec::new(), 0);
        loop {
            match Pin::new(&mut body).poll_frame(&mut cx) {
                Poll::Ready(Some(Ok(f))) => sent.extend_from_slice(&f.into_data().unwrap()),
                Poll::Ready(None) => break,
                Poll::Ready(Some(Err(e))) => panic!("{e}"),
                Poll::Pending => pending += 1,
            }
        }
        // 16 MiB decoded at most 16 pushes of 64 KiB a poll: it gave the worker back, and
        // asked to be polled again each time.
        assert!(pending >= 15, "{pending}");
        assert_eq!(wakes.0.load(Ordering::Relaxed), pending);
        let back = transcode(&sent, Coding::Br, Coding::Identity, Level::Fast).unwrap();
        assert_eq!(back.len(), zeros.len());
    }
}
