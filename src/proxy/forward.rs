//! The forward phase: a prepared request to one of the pool's servers. In order, per server:
//! pick (or wait in the queue: [`Place`]), check its availability and the retry rules
//! ([`retry_allowed`]), open a connection ([`open`]), exchange, and judge the exchange
//! ([`judge`]): the response ([`respond`], or [`switch_protocols`] for a 101), the same server
//! on a fresh connection, the next server, or an answer to the client.

use super::*;
use crate::backend::RetryClaim;

/// A copy of the body of a request that may be sent again: an idempotent method (RFC 9110
/// 9.2.2) and a body known whole (none, or read ahead to its end). A POST is never replayed.
pub(super) fn replay_body(req: &Request<UpBody>) -> Option<UpBody> {
    if !is_idempotent(req.method()) {
        return None;
    }
    req.body().replay()
}

/// RFC 9110 9.2.2.
pub(super) fn is_idempotent(method: &http::Method) -> bool {
    use http::Method;
    matches!(
        *method,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::PUT | Method::DELETE | Method::TRACE
    )
}

/// The request's head again, with `body`.
pub(super) fn copy_head(req: &Request<UpBody>, body: UpBody) -> Request<UpBody> {
    let mut again = Request::new(body);
    *again.method_mut() = req.method().clone();
    *again.uri_mut() = req.uri().clone();
    *again.version_mut() = req.version();
    *again.headers_mut() = req.headers().clone();
    again
}

/// Where the upstream side connects for this server of this pool.
pub(super) fn target<'a>(pool: &'a Pool, server: &'a Server) -> Target<'a> {
    Target {
        addr: server.addr,
        name: &server.address,
        tls: pool.tls.as_ref(),
        protocol: pool.protocol,
        read_timeout: pool.read_timeout,
        unix: server.unix.as_deref(),
        proxy: None,
    }
}

/// The connect timeout, cut short by what is left of the request's time.
pub(super) fn connect_budget(pool: &Pool, until: Instant) -> std::time::Duration {
    pool.connect_timeout
        .min(until.saturating_duration_since(Instant::now()))
        .max(std::time::Duration::from_millis(1))
}

/// Records a failed connect; a server that goes offline (the reference's `attempts`) is a
/// transition like any other: one warning line and one entry in the health log.
pub(super) fn connect_failed(pool: &Pool, server: &Server, err: &std::io::Error) {
    let failures = server.connect_failed(clock::now_ms());
    if !pool.ha.offline_timeout.is_zero() && failures == pool.ha.attempts {
        monitor::availability_changed(
            pool,
            server,
            false,
            format!(
                "{failures} consecutive failed connects ({err}); not tried for {:?}",
                pool.ha.offline_timeout
            ),
        );
    } else {
        tracing::debug!(pool = %pool.name, server = %server.name, failures, error = %err, "connect failed");
    }
}

/// Sends a prepared request to the pool: pick, connect, retry, queue (steps 3 to 6 above).
pub(crate) async fn forward(
    pool: &Arc<Pool>,
    mut req: Request<UpBody>,
    client: &ClientInfo,
    mut log: Option<AccessLog>,
) -> Response<ProxyBody> {
    let (mut upgrade, asked) = take_upgrade(&mut req);
    // The server a sticky cookie names; the cookie is not the server's business.
    let stuck = match &pool.sticky {
        Some(s) => s.take(req.headers_mut()),
        None => None,
    };
    let mut run = Attempts::new(pool, &req, client);
    'servers: loop {
        let Some((i, mut in_flight)) = pick(pool, &run.ctx, &run.tried, &mut run.place, stuck)
        else {
            match wait_for_slot(pool, &run.tried, &mut run.place, run.until).await {
                Ok(()) => continue 'servers,
                Err(Refusal::Pool(kind)) => return refuse(pool, kind, log),
                Err(Refusal::Request(kind)) => return error_response(kind, log),
                Err(Refusal::NoneLeft) => return give_up(pool, run.last_error, log),
            }
        };
        let server = &pool.servers[i];
        let _claim = match run.admit(pool, i, &mut log) {
            Admission::Try(claim) => claim,
            Admission::Skip => continue 'servers,
            Admission::GiveUp => return give_up(pool, run.last_error, log),
        };
        in_flight.carries_request();
        // Idle connections first; a stale one hands the request back unsent and we try the next.
        loop {
            let Some((mut sender, connected)) = open(pool, i, run.until, client).await else {
                continue 'servers;
            };
            let reused = connected.is_none();
            if let (Some(took), Some(l)) = (connected, &mut log) {
                l.connect = Some(took);
            }
            if !sender.ready().await {
                if reused {
                    continue;
                }
                connect_failed(pool, server, &closed_at_once());
                continue 'servers;
            }
            let sent_at = run.sent_at(reused);
            let mut copy = ReplayCopy::take(&mut req, &sender, pool, server);
            let response_until = (sent_at + pool.response_timeout).min(run.until);
            let mut kept = None;
            let sent = tokio::time::timeout_at(response_until, sender.send(req, &mut kept)).await;
            let replay = copy.take_request(kept);
            let mut resp = match judge(pool, i, reused, sent, replay, response_until == run.until) {
                Outcome::Response(resp) => resp,
                Outcome::SameServer(again) => {
                    req = again;
                    continue;
                }
                Outcome::NextServer(again, error) => {
                    req = again;
                    run.last_error = error.unwrap_or(run.last_error);
                    continue 'servers;
                }
                Outcome::Fail(kind) => return error_response(kind, log),
            };
            if let Some(s) = &pool.sticky {
                s.stamp(resp.headers_mut(), i, stuck, client.scheme == "https");
            }
            let switch = Switch {
                client_side: upgrade.take(),
                asked: asked.as_ref(),
                sent_at,
                in_flight,
            };
            return deliver(pool, i, resp, switch, log);
        }
    }
}

/// The client's side of an upgrade it asked for, and what it asked to switch to (a 101 must
/// name one of them).
fn take_upgrade(req: &mut Request<UpBody>) -> (Option<ClientUpgrade>, Option<HeaderValue>) {
    let upgrade = req.extensions_mut().remove::<ClientUpgrade>();
    let asked = upgrade
        .as_ref()
        .and_then(|_| req.headers().get(http::header::UPGRADE).cloned());
    (upgrade, asked)
}

/// A fresh connection that a server closed before it could carry the request.
fn closed_at_once() -> std::io::Error {
    std::io::Error::other("connection closed at once")
}

/// The server's answer to the client: a tunnel for a 101, else [`respond`].
#[inline]
fn deliver(
    pool: &Pool,
    i: usize,
    resp: Response<UpstreamBody>,
    switch: Switch<'_>,
    log: Option<AccessLog>,
) -> Response<ProxyBody> {
    if resp.status() == http::StatusCode::SWITCHING_PROTOCOLS {
        return switch_protocols(pool, i, resp, switch, log);
    }
    respond(pool, i, resp, switch.sent_at, switch.in_flight, log)
}

/// What [`forward`] carries from one server to the next: the pick's context, the servers
/// tried, the queue place, the request's time (`request_timeout` bounds the queue, connects,
/// retries and the wait), and the attempts so far with what the last failed one came to.
struct Attempts {
    ctx: PickContext,
    tried: Tried,
    place: Place,
    started: Instant,
    until: Instant,
    count: u32,
    last_error: ErrorKind,
}

/// Whether a picked server is tried ([`Attempts::admit`]).
enum Admission {
    /// Tried, holding the single retry of an offline server if it is one.
    Try(Option<RetryClaim>),
    /// Offline, or its retry is someone else's: the next pick.
    Skip,
    /// The retry rules forbid another attempt.
    GiveUp,
}

impl Attempts {
    #[inline]
    fn new(pool: &Pool, req: &Request<UpBody>, client: &ClientInfo) -> Self {
        let hash = pool.hash_on.as_ref().and_then(|on| {
            crate::balancer::request_key(on, client.addr.ip(), req.uri(), req.headers())
        });
        if let Some(b) = &pool.retry_budget {
            b.deposit();
        }
        let started = Instant::now();
        let mut place = Place::default();
        if pool.queue.config.fair {
            place.key = fair_key(req, client);
        }
        Attempts {
            ctx: PickContext {
                client_hint: u64::from(client.addr.port()),
                hash,
            },
            tried: Tried::default(),
            place,
            started,
            until: started + pool.request_timeout,
            count: 0,
            last_error: ErrorKind::NoServer,
        }
    }

    /// Server `i` was picked: marks it tried, checks its availability (the reference's
    /// high-availability rule) and, from the second attempt on, the retry rules
    /// ([`retry_allowed`]); names it in the log.
    #[inline]
    fn admit(&mut self, pool: &Pool, i: usize, log: &mut Option<AccessLog>) -> Admission {
        let server = &pool.servers[i];
        self.tried.insert(i);
        let claim = match server.availability(pool.ha, &crate::clock::now_ms) {
            Availability::Up => None,
            Availability::Offline => return Admission::Skip,
            Availability::RetryDue => match server.claim_retry() {
                Some(c) => Some(c),
                None => return Admission::Skip,
            },
        };
        self.count += 1;
        if self.count > 1 {
            if !retry_allowed(pool, self.count) {
                if let Some(l) = log {
                    l.reason = "retries_exhausted";
                }
                return Admission::GiveUp;
            }
            server
                .redispatched
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        if let Some(l) = log {
            l.server = Some(server.name.clone());
            l.forwarded = Some(self.started.saturating_duration_since(l.start));
            l.queue = Some(self.place.queued);
        }
        Admission::Try(claim)
    }

    /// When the request goes out. Nothing waited (no queue): a request sent on a reused
    /// connection on its first attempt was sent at `started`, which saves a clock read.
    #[inline]
    fn sent_at(&self, reused: bool) -> Instant {
        if reused && self.count == 1 && !self.place.waited {
            self.started
        } else {
            Instant::now()
        }
    }
}

/// What is kept of a request before it is sent, so that it can be sent again if its response
/// never starts: an idempotent request whose body is known whole ([`replay_body`]). The body is
/// copied; the head comes back from a failed HTTP/1.1 exchange, while HTTP/2 takes the request
/// whole, so its head is copied too.
struct ReplayCopy {
    body: Option<UpBody>,
    h2: Option<Request<UpBody>>,
}

impl ReplayCopy {
    /// Takes the copy, and turns an HTTP/1.1 request into HTTP/2 form when `sender` speaks it.
    #[inline]
    fn take(req: &mut Request<UpBody>, sender: &Sender, pool: &Pool, server: &Server) -> Self {
        let mut body = replay_body(req);
        if !matches!(sender, Sender::H2(_)) {
            return ReplayCopy { body, h2: None };
        }
        let h2 = body.take().map(|b| copy_head(req, b));
        if req.version() != Version::HTTP_2 {
            to_h2(req, &target(pool, server));
        }
        ReplayCopy { body: None, h2 }
    }

    /// The request to send again, from the copy and the head an HTTP/1.1 exchange gave back.
    #[inline]
    fn take_request(&mut self, kept: Option<http::request::Parts>) -> Option<Request<UpBody>> {
        match (self.h2.take(), kept, self.body.take()) {
            (Some(copy), _, _) => Some(copy),
            (None, Some(parts), Some(body)) => Some(Request::from_parts(parts, body)),
            _ => None,
        }
    }
}

/// Why no server is tried (next).
enum Refusal {
    /// The pool's own answer (`[queue]` statuses, `Retry-After`).
    Pool(ErrorKind),
    /// The request's: its time ran out.
    Request(ErrorKind),
    /// No server is left to try.
    NoneLeft,
}

/// The balancer's pick among the servers not tried yet (the one a sticky cookie names first,
/// while it persists), with one of its `maxconn` slots taken, unless the request must wait
/// behind others in the pool's queue (only the oldest waiter may take a slot).
fn pick(
    pool: &Pool,
    ctx: &PickContext,
    tried: &Tried,
    place: &mut Place,
    stuck: Option<usize>,
) -> Option<(usize, InFlight)> {
    if must_wait(pool, tried, place) {
        return None;
    }
    // Another worker may take the server's last slot between the pick and the claim: then the
    // pick is made again, and sees the server full (or a slot freed meanwhile).
    for _ in 0..4 {
        let view = PoolView::new(pool, tried);
        let i = match stuck.filter(|i| view.persists(*i)) {
            Some(i) => i,
            None => view.pick(&***pool.balancer.load(), ctx)?,
        };
        if let Some(slot) = InFlight::claim(&pool.servers[i]) {
            if let Some(t) = place.ticket.take() {
                t.used();
            }
            return Some((i, slot));
        }
    }
    None
}

/// Newcomers wait behind requests already queued; a waiter, until it is the oldest.
fn must_wait(pool: &Pool, tried: &Tried, place: &Place) -> bool {
    match &place.ticket {
        Some(t) => !t.is_first(),
        None => tried.is_empty() && !pool.queue.is_empty(),
    }
}

/// Nothing was picked: waits in the pool's queue for a slot if a server could serve once one
/// frees (`Ok`: pick again); when every server is down, newcomers and waiters alike are
/// answered at once.
async fn wait_for_slot(
    pool: &Pool,
    tried: &Tried,
    place: &mut Place,
    until: Instant,
) -> Result<(), Refusal> {
    let waiting_helps = must_wait(pool, tried, place) || pool.only_overloaded(tried);
    if tried.is_empty() && pool.any_alive() && waiting_helps {
        return match place.wait(pool, until).await {
            Ok(()) => Ok(()),
            Err(ErrorKind::RequestTimeout) => Err(Refusal::Request(ErrorKind::RequestTimeout)),
            Err(kind) => Err(Refusal::Pool(kind)),
        };
    }
    Err(Refusal::NoneLeft)
}

/// The answer when no server is left: the pool's `no_server` refusal, or what the last
/// attempt came to.
fn give_up(pool: &Pool, last_error: ErrorKind, log: Option<AccessLog>) -> Response<ProxyBody> {
    match last_error {
        ErrorKind::NoServer => refuse(pool, ErrorKind::NoServer, log),
        other => error_response(other, log),
    }
}

/// A connection to server `i` of `pool`: an idle one (no time) or a new one (the time its
/// connect took). `None`:
/// the connect failed, which counts against the server (high availability, passive health,
/// `overload_backoff` on a timeout); the request is untouched and may go elsewhere.
pub(super) async fn open(
    pool: &Pool,
    i: usize,
    until: Instant,
    client: &ClientInfo,
) -> Option<(Sender, Option<std::time::Duration>)> {
    let server = &pool.servers[i];
    let proxied = pool.send_proxy.map(|_| client.addr);
    if let Some(s) = take_connection(pool.protocol, &server.peer, proxied) {
        return Some((s, None));
    }
    let header = pool
        .send_proxy
        .map(|v| crate::upstream::proxy_header::header(v, client, server.addr));
    let mut to = target(pool, server);
    to.proxy = header.as_deref().zip(proxied);
    let began = Instant::now();
    match connect(&to, &server.peer, connect_budget(pool, until)).await {
        Ok(s) => {
            let had = server.connect_succeeded();
            if !pool.ha.offline_timeout.is_zero() && had >= pool.ha.attempts {
                monitor::availability_changed(
                    pool,
                    server,
                    true,
                    "connect succeeded on retry".into(),
                );
            }
            Some((s, Some(began.elapsed())))
        }
        Err(e) => {
            if e.kind() == std::io::ErrorKind::TimedOut {
                server.back_off(pool.overload_backoff);
            }
            connect_failed(pool, server, &e);
            monitor::observe(pool, i, Seen::L4Error);
            None
        }
    }
}

/// What an exchange came to, and where the request goes next.
pub(super) enum Outcome {
    /// The server answered.
    Response(Response<UpstreamBody>),
    /// The same server again, on a fresh connection (a reused one turned out closed).
    SameServer(Request<UpBody>),
    /// The next server, with what the client is told if none is left.
    NextServer(Request<UpBody>, Option<ErrorKind>),
    /// The client is answered with this.
    Fail(ErrorKind),
}

/// Judges one exchange with server `i`: a request that was not written, or whose response
/// never started and that may be sent again (`replay`), moves on; anything else is answered.
/// `out_of_time`: the response wait was cut by the request's own `request_timeout`.
pub(super) fn judge(
    pool: &Pool,
    i: usize,
    reused: bool,
    sent: Result<Result<Response<UpstreamBody>, SendError>, tokio::time::error::Elapsed>,
    replay: Option<Request<UpBody>>,
    out_of_time: bool,
) -> Outcome {
    let server = &pool.servers[i];
    match sent {
        Ok(Ok(resp)) => return Outcome::Response(resp),
        Err(_) if out_of_time => return Outcome::Fail(ErrorKind::RequestTimeout),
        Err(_) => {
            monitor::observe(pool, i, Seen::BadResponse);
            return Outcome::Fail(ErrorKind::UpstreamTimeout);
        }
        Ok(Err(SendError::Unsent(back, e))) => {
            // Nothing was written: the request is intact and may go elsewhere.
            if reused {
                return Outcome::SameServer(*back);
            }
            connect_failed(pool, server, &e);
            return Outcome::NextServer(*back, None);
        }
        Ok(Err(SendError::NoResponse(_))) if reused && replay.is_some() => {
            // The server closed the idle connection as the request went out: not the
            // server's failure; a fresh connection to it gets the request again.
            return Outcome::SameServer(replay.expect("checked in the guard"));
        }
        Ok(Err(SendError::Client(kind))) => return Outcome::Fail(kind),
        Ok(Err(SendError::Ambiguous(why))) => {
            // Framing a client could read differently: refused, and the connection is
            // dropped instead of reused.
            tracing::warn!(pool = %pool.name, server = %server.name, why, "ambiguous response refused");
        }
        Ok(Err(SendError::NoResponse(e) | SendError::Failed(e))) => {
            tracing::debug!(pool = %pool.name, server = %server.name, error = %e, "upstream exchange failed");
        }
    }
    monitor::observe(pool, i, Seen::BadResponse);
    match replay {
        Some(again) => Outcome::NextServer(again, Some(ErrorKind::BadUpstream)),
        None => Outcome::Fail(ErrorKind::BadUpstream),
    }
}

/// A request's place in its pool's backlog queue, kept across its waits.
#[derive(Default)]
pub(super) struct Place {
    pub(super) ticket: Option<crate::backend::queue::Ticket>,
    /// When the wait runs out (`[queue] timeout` from the first wait).
    pub(super) deadline: Option<Instant>,
    /// How long it waited in all.
    pub(super) queued: std::time::Duration,
    pub(super) waited: bool,
    /// The request's flow in a fair queue ([`fair_key`]).
    pub(super) key: u64,
}

/// A request's key in a fair queue: the route's rate-limit key when the rate-limit step gave
/// one ([`crate::limits::FairKey`]), else its client's address.
#[cold]
fn fair_key<B>(req: &Request<B>, client: &ClientInfo) -> u64 {
    match req.extensions().get::<crate::limits::FairKey>() {
        Some(k) => k.0,
        None => crate::limits::ip_key(client.addr.ip()),
    }
}

impl Place {
    /// Waits for a slot (entering the queue the first time). `Ok`: woken, pick again.
    /// Errors: `QueueFull` (no place), `QueueTimeout` (waited `[queue] timeout`),
    /// `RequestTimeout` (the request's own time ran out first).
    pub(super) async fn wait(&mut self, pool: &Pool, until: Instant) -> Result<(), ErrorKind> {
        if self.ticket.is_none() {
            self.ticket = Some(pool.queue.enter(self.key).ok_or(ErrorKind::QueueFull)?);
        }
        let t = self.ticket.as_ref().expect("entered above");
        let queue_until = *self
            .deadline
            .get_or_insert_with(|| Instant::now() + pool.queue.config.timeout);
        self.waited = true;
        match tokio::time::timeout_at(queue_until.min(until), t.woken()).await {
            Ok(()) => {
                t.rewait();
                let entered = queue_until - pool.queue.config.timeout;
                self.queued = Instant::now().saturating_duration_since(entered);
                Ok(())
            }
            Err(_) if queue_until > until => Err(ErrorKind::RequestTimeout),
            Err(_) => {
                pool.queue
                    .timed_out
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                Err(ErrorKind::QueueTimeout)
            }
        }
    }
}

/// Whether attempt number `attempts` (above 1) may be made: the pool's `retries` and its
/// retry budget, the one place the retry rules live.
pub(super) fn retry_allowed(pool: &Pool, attempts: u32) -> bool {
    let over_limit = pool.retries.is_some_and(|r| attempts > r + 1);
    !over_limit && pool.retry_budget.as_ref().map_or(true, |b| b.withdraw())
}

/// What a 101 from a server needs besides the response.
pub(super) struct Switch<'a> {
    /// The client's side of the upgrade, if it asked for one.
    pub(super) client_side: Option<ClientUpgrade>,
    /// The protocols the client asked for.
    pub(super) asked: Option<&'a HeaderValue>,
    pub(super) sent_at: Instant,
    pub(super) in_flight: InFlight,
}

/// A server's 101: checked against what the client asked for, then both sides are joined in a
/// tunnel that belongs to the server's sessions. A switch nobody asked for is a 502.
#[cold]
pub(super) fn switch_protocols(
    pool: &Pool,
    i: usize,
    resp: Response<UpstreamBody>,
    switch: Switch<'_>,
    mut log: Option<AccessLog>,
) -> Response<ProxyBody> {
    let server = &pool.servers[i];
    let (mut parts, body) = resp.into_parts();
    let server_side = match body {
        UpstreamBody::H1(b) => b.into_upgraded(),
        UpstreamBody::H2(..) => None,
    };
    // The server must switch to a protocol the client asked for (and was allowed).
    let named = parts
        .headers
        .get(http::header::UPGRADE)
        .and_then(allowed_upgrades)
        .zip(switch.asked)
        .is_some_and(|(got, asked)| {
            let asked = asked.to_str().unwrap_or("");
            got.to_str().unwrap_or("").split(',').all(|p| {
                asked
                    .split(',')
                    .any(|a| a.trim().eq_ignore_ascii_case(p.trim()))
            })
        });
    let (true, Some(client_side), Some(server_side)) = (named, switch.client_side, server_side)
    else {
        monitor::observe(pool, i, Seen::BadResponse);
        return error_response(ErrorKind::BadUpstream, log);
    };
    monitor::observe(pool, i, Seen::Status(101));
    let protocol = parts.headers.get(http::header::UPGRADE).cloned();
    headers::strip_hop_by_hop(&mut parts.headers, |_| false);
    parts.headers.insert(
        http::header::CONNECTION,
        HeaderValue::from_static("upgrade"),
    );
    if let Some(p) = protocol {
        parts.headers.insert(http::header::UPGRADE, p);
    }
    if let Some(l) = &mut log {
        l.status = 101;
        l.upstream_ms = Some(switch.sent_at.elapsed().as_secs_f64() * 1000.0);
    }
    // The connection now belongs to the tunnel: never back to the idle pool.
    server
        .peer
        .spawn_session(tunnel(client_side, server_side, switch.in_flight));
    Response::from_parts(parts, ProxyBody::full(bytes::Bytes::new(), log))
}

/// A server's response, on its way to the client: observed for health, its hop-by-hop fields
/// removed, its time recorded, and its body streamed with the connection to give back.
#[inline]
pub(super) fn respond(
    pool: &Pool,
    i: usize,
    resp: Response<UpstreamBody>,
    sent_at: Instant,
    mut in_flight: InFlight,
    mut log: Option<AccessLog>,
) -> Response<ProxyBody> {
    let server = &pool.servers[i];
    monitor::observe(pool, i, Seen::Status(resp.status().as_u16()));
    if resp.status() == http::StatusCode::SERVICE_UNAVAILABLE {
        server.back_off(pool.overload_backoff);
        in_flight.keep_backoff();
    }
    let (mut parts, body) = resp.into_parts();
    if !matches!(&body, UpstreamBody::H1(b) if b.head_stripped()) {
        headers::strip_hop_by_hop(&mut parts.headers, |_| false);
    }
    let took = sent_at.elapsed();
    server.latency.observe(took);
    if pool.tracks_latency {
        server.observe_latency(took.as_secs_f64() * 1e6, clock::now_ms());
    }
    if let Some(l) = &mut log {
        l.status = parts.status.as_u16();
        l.upstream_ms = Some(took.as_secs_f64() * 1000.0);
        l.sent = Some(sent_at.saturating_duration_since(l.start));
    }
    let reuse = Reusable {
        peer: server.peer.clone(),
        max_idle: pool.max_idle_per_server,
    };
    Response::from_parts(parts, ProxyBody::upstream(body, in_flight, reuse, log))
}
