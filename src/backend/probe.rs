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
}

trait CheckIo: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send> CheckIo for T {}

/// Runs one check against `addr`.
pub async fn probe(
    addr: SocketAddr,
    check: &CheckConfig,
    body_re: Option<&regex::Regex>,
    how: Transport<'_>,
) -> CheckResult {
    let start = Instant::now();
    let deadline = start + check.timeout;
    let done =
        |status, code, detail: String| CheckResult::new(status, code, detail, start.elapsed());
    let stream = match timeout_at(deadline, TcpStream::connect(addr)).await {
        Err(_) => return done(CheckStatus::L4Tout, None, "connect timed out".into()),
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
            return done(status, None, e.to_string());
        }
        Ok(Ok(s)) => s,
    };
    let _ = stream.set_nodelay(true);
    let mut stream: Box<dyn CheckIo> = match how.tls {
        None if check.kind == CheckKind::Tcp => {
            return done(CheckStatus::L4Ok, None, "connected".into())
        }
        None => Box::new(stream),
        Some(tls) => match timeout_at(deadline, tls.handshake(how.host, stream)).await {
            Err(_) => return done(CheckStatus::L6Tout, None, "TLS handshake timed out".into()),
            Ok(Err(e)) => {
                return done(
                    CheckStatus::L6Rsp,
                    None,
                    format!("TLS handshake failed: {e}"),
                )
            }
            Ok(Ok(s)) if check.kind == CheckKind::Tcp => {
                drop(s);
                return done(CheckStatus::L6Ok, None, "TLS handshake done".into());
            }
            Ok(Ok(s)) => Box::new(s),
        },
    };
    if how.h2 {
        return probe_h2(stream, check, body_re, how, deadline, done).await;
    }
    let request = format!(
        "GET {} HTTP/1.1\r\nHost: {}\r\nUser-Agent: langur-health-check\r\nConnection: close\r\n\r\n",
        check.path, addr
    );
    match timeout_at(deadline, stream.write_all(request.as_bytes())).await {
        Err(_) => {
            return done(
                CheckStatus::L7Tout,
                None,
                "timed out sending the request".into(),
            )
        }
        Ok(Err(e)) => return done(CheckStatus::SockErr, None, e.to_string()),
        Ok(Ok(())) => {}
    }
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 4096];
    let (code, head_len) = loop {
        let n = match timeout_at(deadline, stream.read(&mut chunk)).await {
            Err(_) => {
                return done(
                    CheckStatus::L7Tout,
                    None,
                    "no complete response in time".into(),
                )
            }
            Ok(Err(e)) => return done(CheckStatus::L7Rsp, None, format!("read failed: {e}")),
            Ok(Ok(n)) => n,
        };
        if n == 0 {
            return done(
                CheckStatus::L7Rsp,
                None,
                "connection closed before a complete response".into(),
            );
        }
        buf.extend_from_slice(&chunk[..n]);
        let mut headers = [httparse::EMPTY_HEADER; 64];
        let mut resp = httparse::Response::new(&mut headers);
        match resp.parse(&buf) {
            Ok(httparse::Status::Complete(len)) => break (resp.code.unwrap_or(0), len),
            Ok(httparse::Status::Partial) if buf.len() < 64 * 1024 => continue,
            Ok(httparse::Status::Partial) => {
                return done(CheckStatus::L7Rsp, None, "response head too large".into())
            }
            Err(e) => {
                return done(
                    CheckStatus::L7Rsp,
                    None,
                    format!("not an HTTP response ({e})"),
                )
            }
        }
    };
    if let Some((status, detail)) = judge_status(code, check) {
        return done(status, Some(code), detail);
    }
    if let Some(re) = body_re {
        let mut body = buf[head_len..].to_vec();
        while body.len() < BODY_WINDOW && !re.is_match(&String::from_utf8_lossy(&body)) {
            match timeout_at(deadline, stream.read(&mut chunk)).await {
                Ok(Ok(n)) if n > 0 => body.extend_from_slice(&chunk[..n]),
                _ => break,
            }
        }
        body.truncate(BODY_WINDOW);
        if !re.is_match(&String::from_utf8_lossy(&body)) {
            return done(
                CheckStatus::L7Rsp,
                Some(code),
                format!("body does not match `{}`", re.as_str()),
            );
        }
    }
    done(CheckStatus::L7Ok, Some(code), format!("status {code}"))
}

/// What a status alone decides: a 404 that drains (`disable_on_404`), or a status not
/// expected. `None`: the status is fine (the body may still be checked).
fn judge_status(code: u16, check: &CheckConfig) -> Option<(CheckStatus, String)> {
    if code == 404 && check.disable_on_404 {
        return Some((
            CheckStatus::L7OkC,
            "404: alive, not taking new requests".into(),
        ));
    }
    if !check.expect_status.iter().any(|m| m.matches(code)) {
        return Some((CheckStatus::L7Sts, format!("unexpected status {code}")));
    }
    None
}

/// The HTTP check of an HTTP/2 pool: one GET on a fresh HTTP/2 connection.
async fn probe_h2(
    io: Box<dyn CheckIo>,
    check: &CheckConfig,
    body_re: Option<&regex::Regex>,
    how: Transport<'_>,
    deadline: Instant,
    done: impl Fn(CheckStatus, Option<u16>, String) -> CheckResult,
) -> CheckResult {
    use http_body_util::BodyExt;
    let handshake = hyper::client::conn::http2::Builder::new(hyper_util::rt::TokioExecutor::new())
        .timer(hyper_util::rt::TokioTimer::new())
        .handshake::<_, http_body_util::Empty<bytes::Bytes>>(hyper_util::rt::TokioIo::new(io));
    let (mut send, conn) = match timeout_at(deadline, handshake).await {
        Err(_) => {
            return done(
                CheckStatus::L7Tout,
                None,
                "no HTTP/2 settings in time".into(),
            )
        }
        Ok(Err(e)) => return done(CheckStatus::L7Rsp, None, format!("not HTTP/2 ({e})")),
        Ok(Ok(x)) => x,
    };
    let driver = tokio::spawn(conn);
    let scheme = if how.tls.is_some() { "https" } else { "http" };
    let Ok(req) = http::Request::get(format!("{scheme}://{}{}", how.host, check.path))
        .header(http::header::USER_AGENT, "langur-health-check")
        .body(http_body_util::Empty::new())
    else {
        driver.abort();
        return done(
            CheckStatus::L7Rsp,
            None,
            "cannot build the check request".into(),
        );
    };
    let result = async {
        let resp = match timeout_at(deadline, send.send_request(req)).await {
            Err(_) => return done(CheckStatus::L7Tout, None, "no response in time".into()),
            Ok(Err(e)) => return done(CheckStatus::L7Rsp, None, format!("request failed: {e}")),
            Ok(Ok(r)) => r,
        };
        let code = resp.status().as_u16();
        if let Some((status, detail)) = judge_status(code, check) {
            return done(status, Some(code), detail);
        }
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
            seen.truncate(BODY_WINDOW);
            if !re.is_match(&String::from_utf8_lossy(&seen)) {
                return done(
                    CheckStatus::L7Rsp,
                    Some(code),
                    format!("body does not match `{}`", re.as_str()),
                );
            }
        }
        done(CheckStatus::L7Ok, Some(code), format!("status {code}"))
    }
    .await;
    driver.abort();
    result
}
