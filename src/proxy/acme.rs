//! The ACME phase: HTTP-01 challenges (RFC 8555 8.3) answered on plain listeners before the
//! `[server]` rules and routing, so no route, redirect or rule stands in the way. Only when
//! `[acme]` is on.

use super::body::{ClientIn, ProxyBody};
use crate::access_log::AccessLog;

use crate::session::ClientInfo;
use http::header::{HeaderValue, CONTENT_TYPE};
use http::{Method, Request, Response, StatusCode};

/// The path HTTP-01 tokens are asked for under.
const PREFIX: &str = "/.well-known/acme-challenge/";

/// The answer to a validation request: the key authorization of a token being validated
/// (200, `application/octet-stream` as RFC 8555 8.3 says), else 404. `None`: not a challenge
/// request (another path, a method other than GET or HEAD, or TLS). Kept out of line: only
/// instances with `[acme]` call it, and it must not grow the request path of the others.
#[inline(never)]
pub(super) fn answer(
    issued: &crate::tls::acme::Issued,
    req: &Request<ClientIn>,
    client: &ClientInfo,
    log: &mut Option<AccessLog>,
) -> Option<Response<ProxyBody>> {
    let token = req.uri().path().strip_prefix(PREFIX)?;
    if client.hop_scheme != "http" || !matches!(*req.method(), Method::GET | Method::HEAD) {
        return None;
    }
    let (status, body) = match issued.http_answer(token) {
        Some(key_authorization) => (StatusCode::OK, key_authorization),
        None => (StatusCode::NOT_FOUND, String::new()),
    };
    let mut l = log.take();
    if let Some(l) = &mut l {
        l.status = status.as_u16();
    }
    let mut resp = Response::new(ProxyBody::full(body, l));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    Some(resp)
}
