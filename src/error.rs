//! The ways a request can fail. Its kind decides, in one place, the status code the client
//! sees, the reason written to the access log, and the short body. Whether a request may move on
//! to another server is decided where that is known, in the pipeline (`proxy/mod.rs`): only if
//! nothing of it was written, or it is idempotent, bodiless and its response never started.

use http::StatusCode;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// No route matched the path.
    NoRoute,
    /// Every server of the pool is offline or failed to connect.
    NoServer,
    /// The server did not start its response in time.
    UpstreamTimeout,
    /// The server's response was broken, or the connection died mid-exchange.
    BadUpstream,
    /// The request already went through this instance.
    Loop,
    /// Every usable server is at its `maxconn` and the pool's queue is full.
    QueueFull,
    /// The request waited in the queue longer than the queue's `timeout`.
    QueueTimeout,
    /// No response head within `request_timeout` of the request head.
    RequestTimeout,
    /// The request's framing or head is malformed or ambiguous.
    BadRequest,
    /// The request-target is longer than `max_uri_length`.
    UriTooLong,
    /// More header fields than `max_headers`.
    HeadersTooLarge,
    /// The body is larger than `max_body_size`.
    BodyTooLarge,
    /// The client went silent while sending its body (`body_timeout`).
    ClientTimeout,
    /// A method a reverse proxy does not serve (CONNECT).
    MethodNotAllowed,
    /// A transfer coding langur does not implement (RFC 9112 6.1).
    NotImplemented,
    /// The route's `deny`/`allow` refuse the client's address.
    Forbidden,
    /// The route's `basic_auth` needs credentials that were not given or not valid.
    Unauthorized,
    /// The client (or the route's key) is over the route's `rate_limit`.
    RateLimited,
}

impl ErrorKind {
    pub fn status(self) -> StatusCode {
        match self {
            ErrorKind::NoRoute => StatusCode::NOT_FOUND,
            ErrorKind::NoServer => StatusCode::SERVICE_UNAVAILABLE,
            ErrorKind::UpstreamTimeout => StatusCode::GATEWAY_TIMEOUT,
            ErrorKind::BadUpstream => StatusCode::BAD_GATEWAY,
            ErrorKind::Loop => StatusCode::LOOP_DETECTED,
            // The defaults; a pool's `[queue]` may choose others.
            ErrorKind::QueueFull => StatusCode::SERVICE_UNAVAILABLE,
            ErrorKind::QueueTimeout => StatusCode::GATEWAY_TIMEOUT,
            ErrorKind::RequestTimeout => StatusCode::GATEWAY_TIMEOUT,
            ErrorKind::BadRequest => StatusCode::BAD_REQUEST,
            ErrorKind::UriTooLong => StatusCode::URI_TOO_LONG,
            ErrorKind::HeadersTooLarge => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            ErrorKind::BodyTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ErrorKind::ClientTimeout => StatusCode::REQUEST_TIMEOUT,
            ErrorKind::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ErrorKind::NotImplemented => StatusCode::NOT_IMPLEMENTED,
            ErrorKind::Forbidden => StatusCode::FORBIDDEN,
            ErrorKind::Unauthorized => StatusCode::UNAUTHORIZED,
            ErrorKind::RateLimited => StatusCode::TOO_MANY_REQUESTS,
        }
    }

    /// The client did something wrong: its connection is closed after the answer, since what
    /// it sends next cannot be trusted to start a request.
    pub fn closes(self) -> bool {
        matches!(
            self,
            ErrorKind::BadRequest
                | ErrorKind::UriTooLong
                | ErrorKind::HeadersTooLarge
                | ErrorKind::BodyTooLarge
                | ErrorKind::ClientTimeout
                | ErrorKind::NotImplemented
        )
    }

    /// The access log's `reason` field.
    pub fn reason(self) -> &'static str {
        match self {
            ErrorKind::NoRoute => "no_route",
            ErrorKind::NoServer => "no_server",
            ErrorKind::UpstreamTimeout => "upstream_timeout",
            ErrorKind::BadUpstream => "bad_upstream",
            ErrorKind::Loop => "loop_detected",
            ErrorKind::QueueFull => "queue_full",
            ErrorKind::QueueTimeout => "queue_timeout",
            ErrorKind::RequestTimeout => "request_timeout",
            ErrorKind::BadRequest => "bad_request",
            ErrorKind::UriTooLong => "uri_too_long",
            ErrorKind::HeadersTooLarge => "headers_too_large",
            ErrorKind::BodyTooLarge => "body_too_large",
            ErrorKind::ClientTimeout => "client_body_timeout",
            ErrorKind::MethodNotAllowed => "method_not_allowed",
            ErrorKind::NotImplemented => "not_implemented",
            ErrorKind::Forbidden => "denied",
            ErrorKind::Unauthorized => "unauthorized",
            ErrorKind::RateLimited => "rate_limited",
        }
    }

    /// The short plain-text body the client gets.
    pub fn body(self) -> &'static str {
        match self {
            ErrorKind::NoRoute => "404 Not Found: no route matches this path\n",
            ErrorKind::NoServer => {
                "503 Service Unavailable: no server was available to take this request\n"
            }
            ErrorKind::UpstreamTimeout => {
                "504 Gateway Timeout: the server did not answer in time\n"
            }
            ErrorKind::BadUpstream => "502 Bad Gateway: the server's response was not valid\n",
            ErrorKind::Loop => {
                "508 Loop Detected: this request already passed through this proxy\n"
            }
            ErrorKind::QueueFull => {
                "Every server is busy and the queue is full; try again shortly\n"
            }
            ErrorKind::QueueTimeout => {
                "Every server stayed busy while this request waited; try again shortly\n"
            }
            ErrorKind::RequestTimeout => {
                "504 Gateway Timeout: no response within the request time limit\n"
            }
            ErrorKind::BadRequest => "400 Bad Request: malformed or ambiguous request\n",
            ErrorKind::UriTooLong => "414 URI Too Long\n",
            ErrorKind::HeadersTooLarge => "431 Request Header Fields Too Large\n",
            ErrorKind::BodyTooLarge => "413 Content Too Large\n",
            ErrorKind::ClientTimeout => "408 Request Timeout: the request body stopped arriving\n",
            ErrorKind::MethodNotAllowed => "405 Method Not Allowed: this is a reverse proxy\n",
            ErrorKind::NotImplemented => {
                "501 Not Implemented: a transfer coding this proxy does not implement\n"
            }
            ErrorKind::Forbidden => "403 Forbidden\n",
            ErrorKind::Unauthorized => "401 Unauthorized\n",
            ErrorKind::RateLimited => {
                "429 Too Many Requests: over this route's rate limit; retry after Retry-After\n"
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classes() {
        assert_eq!(ErrorKind::NoServer.status(), 503);
        assert_eq!(ErrorKind::UpstreamTimeout.status(), 504);
        assert_eq!(ErrorKind::BadUpstream.status(), 502);
        assert_eq!(ErrorKind::Loop.status(), 508);
    }
}
