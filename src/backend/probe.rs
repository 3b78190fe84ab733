//! Active checks: one probe of one server, classified with HAProxy's status codes.
//!
//! The HTTP check is written by hand on a raw socket (a request line and three headers out,
//! `httparse` in) so every way it can fail maps to exactly one status: connect refused or
//! unreachable `L4CON`, connect timeout `L4TOUT`, no complete response head in time `L7TOUT`, a
//! response that is not HTTP `L7RSP`, an unexpected status `L7STS`, a body that does not match
//! `expect_body` `L7RSP`, a 404 with `disable_on_404` `L7OKC`.

use super::health::{CheckResult, CheckStatus};
use crate::config::{CheckConfig, CheckKind};
use std::io::ErrorKind as Io;
use std::net::SocketAddr;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::{timeout_at, Instant};

/// How much of a body `expect_body` looks at.
const BODY_WINDOW: usize = 16 * 1024;

/// Runs one check against `addr`.
pub async fn probe(
    addr: SocketAddr,
    check: &CheckConfig,
    body_re: Option<&regex::Regex>,
) -> CheckResult {
    let start = Instant::now();
    let deadline = start + check.timeout;
    let done =
        |status, code, detail: String| CheckResult::new(status, code, detail, start.elapsed());
    let mut stream = match timeout_at(deadline, TcpStream::connect(addr)).await {
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
    if check.kind == CheckKind::Tcp {
        return done(CheckStatus::L4Ok, None, "connected".into());
    }
    let _ = stream.set_nodelay(true);
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
    if code == 404 && check.disable_on_404 {
        return done(
            CheckStatus::L7OkC,
            Some(code),
            "404: alive, not taking new requests".into(),
        );
    }
    if !check.expect_status.iter().any(|m| m.matches(code)) {
        return done(
            CheckStatus::L7Sts,
            Some(code),
            format!("unexpected status {code}"),
        );
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
