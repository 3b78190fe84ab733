//! Active checks: one probe of one server, classified with HAProxy's status codes.
//!
//! The HTTP check is written by hand on a raw socket (a request line and three headers out,
//! `httparse` in) so every way it can fail maps to exactly one status: connect refused or
//! unreachable `L4CON`, connect timeout `L4TOUT`, no complete response head in time `L7TOUT`, a
//! response that is not HTTP `L7RSP`, an unexpected status `L7STS`, a body that does not match
//! `expect_body` `L7RSP`, a 404 with `disable_on_404` `L7OKC`.
//!
//! Checks follow the pool's transport: with `tls = true` the handshake comes first (`L6OK` for a
//! TCP check, `L6TOUT` when it does not finish in time, `L6RSP` when it fails), and an HTTP check
//! of an HTTP/2 pool is an HTTP/2 request (hyper's client; the same statuses).

use super::health::{CheckResult, CheckStatus};
use crate::config::{CheckConfig, CheckKind};
use std::io::ErrorKind as Io;
use std::net::SocketAddr;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::{timeout_at, Instant};

/// How much of a body `expect_body` looks at.
const BODY_WINDOW: usize = 16 * 1024;

/// How a pool's servers are reached.
#[derive(Clone, Copy, Default)]
pub struct Transport<'a> {
    pub tls: Option<&'a crate::tls::Upstream>,
    /// The server as configured (`host:port`), for SNI and the Host header.
    pub host: &'a str,
    pub h2: bool,
    /// `send_proxy`: a PROXY header first (`LOCAL`, or v1's `UNKNOWN`), as HAProxy's
    /// `check-send-proxy`.
    pub send_proxy: Option<crate::config::SendProxy>,
    /// A server on a Unix-domain socket: its path.
    pub unix: Option<&'a std::path::Path>,
}

trait CheckIo: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send> CheckIo for T {}

/// How a check ended: HAProxy's status, the HTTP status when one came, and what happened.
struct Verdict {
    status: CheckStatus,
    code: Option<u16>,
    detail: String,
}

impl Verdict {
    fn new(status: CheckStatus, detail: impl Into<String>) -> Verdict {
        Verdict {
            status,
            code: None,
            detail: detail.into(),
        }
    }

    fn with_code(status: CheckStatus, code: u16, detail: impl Into<String>) -> Verdict {
        Verdict {
            status,
            code: Some(code),
            detail: detail.into(),
        }
    }
}

/// A step of a check: `Err` is the check decided there (passed or failed), with no step
/// after it.
type Step<T> = Result<T, Verdict>;

/// Runs one check against `addr`.
pub async fn probe(
    addr: SocketAddr,
    check: &CheckConfig,
    body_re: Option<&regex::Regex>,
    how: Transport<'_>,
) -> CheckResult {
    let start = Instant::now();
    let deadline = start + check.timeout;
    let v = match run(addr, check, body_re, how, deadline).await {
        Ok(v) | Err(v) => v,
    };
    CheckResult::new(v.status, v.code, v.detail, start.elapsed())
}

/// The check's steps: the connection, the transport, then the HTTP exchange of the pool's
/// protocol.
async fn run(
    addr: SocketAddr,
    check: &CheckConfig,
    body_re: Option<&regex::Regex>,
    how: Transport<'_>,
    deadline: Instant,
) -> Step<Verdict> {
    let stream: Box<dyn CheckIo> = match how.unix {
        Some(path) => {
            let mut stream = connect_unix(path, deadline).await?;
            send_proxy(&mut stream, how, deadline).await?;
            if check.kind == CheckKind::Tcp {
                return Err(Verdict::new(CheckStatus::L4Ok, "connected"));
            }
            Box::new(stream)
        }
        None => {
            let mut stream = connect(addr, deadline).await?;
            send_proxy(&mut stream, how, deadline).await?;
            transport(stream, check, how, deadline).await?
        }
    };
    if how.h2 {
        return probe_h2(stream, check, body_re, how, deadline).await;
    }
    let host = match how.unix {
        Some(_) => "localhost".to_string(),
        None => addr.to_string(),
    };
    probe_h1(stream, &host, check, body_re, deadline).await
}

/// `send_proxy`: the check's PROXY header first (`L4TOUT` when it cannot be written in time).
async fn send_proxy<S: tokio::io::AsyncWrite + Unpin>(
    stream: &mut S,
    how: Transport<'_>,
    deadline: Instant,
) -> Step<()> {
    let Some(version) = how.send_proxy else {
        return Ok(());
    };
    let header = crate::upstream::proxy_header::check(version);
    match timeout_at(deadline, stream.write_all(&header)).await {
        Err(_) => Err(Verdict::new(
            CheckStatus::L4Tout,
            "timed out sending the PROXY header",
        )),
        Ok(Err(e)) => Err(Verdict::new(CheckStatus::SockErr, e.to_string())),
        Ok(Ok(())) => Ok(()),
    }
}

/// A connection to a server on a Unix-domain socket: `L4TOUT` when it does not open in time,
/// `L4CON` when nothing listens there.
async fn connect_unix(path: &std::path::Path, deadline: Instant) -> Step<tokio::net::UnixStream> {
    match timeout_at(deadline, tokio::net::UnixStream::connect(path)).await {
        Err(_) => Err(Verdict::new(CheckStatus::L4Tout, "connect timed out")),
        Ok(Err(e)) => Err(Verdict::new(CheckStatus::L4Con, e.to_string())),
        Ok(Ok(s)) => Ok(s),
    }
}

/// The TCP connection: `L4TOUT` when it does not open in time, `L4CON` when it is refused or
/// the server cannot be reached, `SOCKERR` for any other failure.
async fn connect(addr: SocketAddr, deadline: Instant) -> Step<TcpStream> {
    let stream = match timeout_at(deadline, TcpStream::connect(addr)).await {
        Err(_) => return Err(Verdict::new(CheckStatus::L4Tout, "connect timed out")),
        Ok(Err(e)) => {
            let status = match e.kind() {
                Io::ConnectionRefused
                | Io::ConnectionReset
                | Io::ConnectionAborted
                | Io::HostUnreachable
                | Io::NetworkUnreachable
                | Io::AddrNotAvailable => CheckStatus::L4Con,
                _ => CheckStatus::SockErr,
            };
            return Err(Verdict::new(status, e.to_string()));
        }
        Ok(Ok(s)) => s,
    };
    let _ = stream.set_nodelay(true);
    Ok(stream)
}

/// The pool's transport over the connection: plain, or the TLS handshake first (`L6TOUT`
/// when it does not finish in time, `L6RSP` when it fails). A TCP check ends here: `L4OK`
/// once connected, `L6OK` once the handshake is done.
async fn transport(
    stream: TcpStream,
    check: &CheckConfig,
    how: Transport<'_>,
    deadline: Instant,
) -> Step<Box<dyn CheckIo>> {
    match how.tls {
        None if check.kind == CheckKind::Tcp => Err(Verdict::new(CheckStatus::L4Ok, "connected")),
        None => Ok(Box::new(stream)),
        Some(tls) => match timeout_at(deadline, tls.handshake(how.host, stream)).await {
            Err(_) => Err(Verdict::new(CheckStatus::L6Tout, "TLS handshake timed out")),
            Ok(Err(e)) => Err(Verdict::new(
                CheckStatus::L6Rsp,
                format!("TLS handshake failed: {e}"),
            )),
            Ok(Ok(s)) if check.kind == CheckKind::Tcp => {
                drop(s);
                Err(Verdict::new(CheckStatus::L6Ok, "TLS handshake done"))
            }
            Ok(Ok(s)) => Ok(Box::new(s)),
        },
    }
}

/// The HTTP/1.1 check: a GET written by hand, its response head read with `httparse`, then
/// the status and (with `expect_body`) the body judged.
async fn probe_h1(
    mut stream: Box<dyn CheckIo>,
    host: &str,
    check: &CheckConfig,
    body_re: Option<&regex::Regex>,
    deadline: Instant,
) -> Step<Verdict> {
    let request = format!(
        "GET {} HTTP/1.1\r\nHost: {}\r\nUser-Agent: langur-health-check\r\nConnection: close\r\n\r\n",
        check.path, host
    );
    match timeout_at(deadline, stream.write_all(request.as_bytes())).await {
        Err(_) => {
            return Err(Verdict::new(
                CheckStatus::L7Tout,
                "timed out sending the request",
            ))
        }
        Ok(Err(e)) => return Err(Verdict::new(CheckStatus::SockErr, e.to_string())),
        Ok(Ok(())) => {}
    }
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 4096];
    let (code, head_len) = read_head(&mut stream, &mut buf, &mut chunk, deadline).await?;
    judge_status(code, check)?;
    if let Some(re) = body_re {
        let mut body = buf[head_len..].to_vec();
        while body.len() < BODY_WINDOW && !re.is_match(&String::from_utf8_lossy(&body)) {
            match timeout_at(deadline, stream.read(&mut chunk)).await {
                Ok(Ok(n)) if n > 0 => body.extend_from_slice(&chunk[..n]),
                _ => break,
            }
        }
        judge_body(&mut body, re, code)?;
    }
    Ok(passed(code))
}

/// Reads into `buf` until a complete response head: its status code and length. `L7TOUT`
/// when it does not come in time, `L7RSP` when the connection fails or closes first, the
/// head passes 64 KiB, or what came is not HTTP.
async fn read_head(
    stream: &mut Box<dyn CheckIo>,
    buf: &mut Vec<u8>,
    chunk: &mut [u8],
    deadline: Instant,
) -> Step<(u16, usize)> {
    loop {
        let n = match timeout_at(deadline, stream.read(chunk)).await {
            Err(_) => {
                return Err(Verdict::new(
                    CheckStatus::L7Tout,
                    "no complete response in time",
                ))
            }
            Ok(Err(e)) => {
                return Err(Verdict::new(
                    CheckStatus::L7Rsp,
                    format!("read failed: {e}"),
                ))
            }
            Ok(Ok(n)) => n,
        };
        if n == 0 {
            return Err(Verdict::new(
                CheckStatus::L7Rsp,
                "connection closed before a complete response",
            ));
        }
        buf.extend_from_slice(&chunk[..n]);
        let mut headers = [httparse::EMPTY_HEADER; 64];
        let mut resp = httparse::Response::new(&mut headers);
        match resp.parse(buf) {
            Ok(httparse::Status::Complete(len)) => return Ok((resp.code.unwrap_or(0), len)),
            Ok(httparse::Status::Partial) if buf.len() < 64 * 1024 => continue,
            Ok(httparse::Status::Partial) => {
                return Err(Verdict::new(CheckStatus::L7Rsp, "response head too large"))
            }
            Err(e) => {
                return Err(Verdict::new(
                    CheckStatus::L7Rsp,
                    format!("not an HTTP response ({e})"),
                ))
            }
        }
    }
}

/// What a status alone decides: a 404 that drains (`disable_on_404`), or a status not
/// expected. `Ok`: the status is fine (the body may still be checked).
fn judge_status(code: u16, check: &CheckConfig) -> Step<()> {
    if code == 404 && check.disable_on_404 {
        return Err(Verdict::with_code(
            CheckStatus::L7OkC,
            code,
            "404: alive, not taking new requests",
        ));
    }
    if !check.expect_status.iter().any(|m| m.matches(code)) {
        return Err(Verdict::with_code(
            CheckStatus::L7Sts,
            code,
            format!("unexpected status {code}"),
        ));
    }
    Ok(())
}

/// Whether the first [`BODY_WINDOW`] bytes of a body (`seen`, cut to that) match
/// `expect_body`: `L7RSP` when they do not.
fn judge_body(seen: &mut Vec<u8>, re: &regex::Regex, code: u16) -> Step<()> {
    seen.truncate(BODY_WINDOW);
    if !re.is_match(&String::from_utf8_lossy(seen)) {
        return Err(Verdict::with_code(
            CheckStatus::L7Rsp,
            code,
            format!("body does not match `{}`", re.as_str()),
        ));
    }
    Ok(())
}

/// A check that passed with status `code`.
fn passed(code: u16) -> Verdict {
    Verdict::with_code(CheckStatus::L7Ok, code, format!("status {code}"))
}

/// The HTTP check of an HTTP/2 pool: one GET on a fresh HTTP/2 connection.
async fn probe_h2(
    io: Box<dyn CheckIo>,
    check: &CheckConfig,
    body_re: Option<&regex::Regex>,
    how: Transport<'_>,
    deadline: Instant,
) -> Step<Verdict> {
    let handshake = hyper::client::conn::http2::Builder::new(hyper_util::rt::TokioExecutor::new())
        .timer(hyper_util::rt::TokioTimer::new())
        .handshake::<_, http_body_util::Empty<bytes::Bytes>>(hyper_util::rt::TokioIo::new(io));
    let (mut send, conn) = match timeout_at(deadline, handshake).await {
        Err(_) => {
            return Err(Verdict::new(
                CheckStatus::L7Tout,
                "no HTTP/2 settings in time",
            ))
        }
        Ok(Err(e)) => {
            return Err(Verdict::new(
                CheckStatus::L7Rsp,
                format!("not HTTP/2 ({e})"),
            ))
        }
        Ok(Ok(x)) => x,
    };
    let driver = tokio::spawn(conn);
    let scheme = if how.tls.is_some() { "https" } else { "http" };
    let Ok(req) = http::Request::get(format!("{scheme}://{}{}", how.host, check.path))
        .header(http::header::USER_AGENT, "langur-health-check")
        .body(http_body_util::Empty::new())
    else {
        driver.abort();
        return Err(Verdict::new(
            CheckStatus::L7Rsp,
            "cannot build the check request",
        ));
    };
    let result = exchange_h2(&mut send, req, check, body_re, deadline).await;
    driver.abort();
    result
}

/// The HTTP/2 check's request and response: `L7TOUT` when no response comes in time,
/// `L7RSP` when the request fails, then the status and the body judged as over HTTP/1.1.
async fn exchange_h2(
    send: &mut hyper::client::conn::http2::SendRequest<http_body_util::Empty<bytes::Bytes>>,
    req: http::Request<http_body_util::Empty<bytes::Bytes>>,
    check: &CheckConfig,
    body_re: Option<&regex::Regex>,
    deadline: Instant,
) -> Step<Verdict> {
    use http_body_util::BodyExt;
    let resp = match timeout_at(deadline, send.send_request(req)).await {
        Err(_) => return Err(Verdict::new(CheckStatus::L7Tout, "no response in time")),
        Ok(Err(e)) => {
            return Err(Verdict::new(
                CheckStatus::L7Rsp,
                format!("request failed: {e}"),
            ))
        }
        Ok(Ok(r)) => r,
    };
    let code = resp.status().as_u16();
    judge_status(code, check)?;
    if let Some(re) = body_re {
        let mut body = resp.into_body();
        let mut seen = Vec::new();
        while seen.len() < BODY_WINDOW {
            match timeout_at(deadline, body.frame()).await {
                Ok(Some(Ok(f))) => {
                    if let Some(d) = f.data_ref() {
                        seen.extend_from_slice(d);
                    }
                }
                _ => break,
            }
        }
        judge_body(&mut seen, re, code)?;
    }
    Ok(passed(code))
}
