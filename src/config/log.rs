//! `[log]` and `[tracing]`: what an access-log line looks like (`format`), where it goes
//! (`access`), and whether and where request spans go (`[tracing]`). Parsed here, at load, so
//! that an unknown variable or destination is a configuration error with its line; the lines
//! themselves are written by `access_log`.

use super::raw::At;
use super::Diag;
use std::net::SocketAddr;
use std::path::PathBuf;

/// A value an access-log line can carry: the JSON format's field names, which are also the
/// template variables (`{client}`, `{status}`, ...).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Field {
    /// When the request began: RFC 3339, UTC, milliseconds (`2026-01-31T12:00:00.123Z`).
    Time,
    /// The client's IP address (the client behind trusted proxies, see `[clients]`).
    Client,
    ClientPort,
    /// The socket's peer when it is not the client (the proxy or load balancer in front, see
    /// docs/clients.md), `unix` for a Unix-domain socket; absent otherwise.
    Peer,
    Method,
    /// `http` or `https`.
    Scheme,
    /// The `Host` (or HTTP/2 `:authority`) as the client sent it.
    Host,
    /// The path as the client sent it.
    Path,
    /// The query without `?` (absent when there is none).
    Query,
    /// `HTTP/1.0`, `HTTP/1.1` or `HTTP/2.0`.
    Protocol,
    Status,
    /// The request body's length (its `Content-Length`; absent for a chunked body).
    BytesIn,
    /// Body bytes sent to the client.
    BytesOut,
    /// The route that matched: its 1-based position in the file (`#2`).
    Route,
    Pool,
    /// The server's name as written in the pool.
    Server,
    /// What the cache did: `hit`, `miss`, `stale`, `revalidated`, `bypass`.
    Cache,
    /// Why the request did not end well (`no_server`, `client_aborted`, ...).
    Reason,
    RequestId,
    /// The W3C trace ID (32 hex digits) of the request's `traceparent`.
    TraceId,
    UserAgent,
    Referer,
    /// `TLSv1.2` or `TLSv1.3` on a TLS listener.
    TlsVersion,
    /// The cipher suite's IANA name (`TLS_AES_128_GCM_SHA256`).
    TlsCipher,
    /// The server name the client asked for in its TLS handshake.
    Sni,
    /// PROXY v2's `PP2_TYPE_AUTHORITY`: the host name the client asked the load balancer for.
    ProxyAuthority,
    /// PROXY v2's `PP2_TYPE_SSL`: the TLS version the client used with the load balancer.
    ProxySsl,
    /// Milliseconds waited in the pool's queue.
    QueueMs,
    /// Milliseconds to connect to the server (0 on a reused connection).
    ConnectMs,
    /// Milliseconds from the request leaving for the server to its response head (nginx's
    /// `$upstream_header_time`, HAProxy's `Tr`).
    HeaderMs,
    /// Milliseconds from the request's head to the end of its response body.
    TotalMs,
    /// The path sent to the server when a route rewrote it.
    Rewritten,
}

impl Field {
    /// Every field, in the JSON format's order.
    pub const ALL: &'static [Field] = &[
        Field::Time,
        Field::Client,
        Field::ClientPort,
        Field::Peer,
        Field::Method,
        Field::Scheme,
        Field::Host,
        Field::Path,
        Field::Query,
        Field::Protocol,
        Field::Status,
        Field::BytesIn,
        Field::BytesOut,
        Field::Route,
        Field::Pool,
        Field::Server,
        Field::Cache,
        Field::Reason,
        Field::RequestId,
        Field::TraceId,
        Field::UserAgent,
        Field::Referer,
        Field::TlsVersion,
        Field::TlsCipher,
        Field::Sni,
        Field::ProxyAuthority,
        Field::ProxySsl,
        Field::QueueMs,
        Field::ConnectMs,
        Field::HeaderMs,
        Field::TotalMs,
        Field::Rewritten,
    ];

    /// The field's name (JSON key, template variable).
    pub fn name(self) -> &'static str {
        match self {
            Field::Time => "time",
            Field::Client => "client",
            Field::ClientPort => "client_port",
            Field::Peer => "peer",
            Field::Method => "method",
            Field::Scheme => "scheme",
            Field::Host => "host",
            Field::Path => "path",
            Field::Query => "query",
            Field::Protocol => "protocol",
            Field::Status => "status",
            Field::BytesIn => "bytes_in",
            Field::BytesOut => "bytes_out",
            Field::Route => "route",
            Field::Pool => "pool",
            Field::Server => "server",
            Field::Cache => "cache",
            Field::Reason => "reason",
            Field::RequestId => "request_id",
            Field::TraceId => "trace_id",
            Field::UserAgent => "user_agent",
            Field::Referer => "referer",
            Field::TlsVersion => "tls_version",
            Field::TlsCipher => "tls_cipher",
            Field::Sni => "sni",
            Field::ProxyAuthority => "proxy_authority",
            Field::ProxySsl => "proxy_ssl",
            Field::QueueMs => "queue_ms",
            Field::ConnectMs => "connect_ms",
            Field::HeaderMs => "header_ms",
            Field::TotalMs => "total_ms",
            Field::Rewritten => "rewritten",
        }
    }

    pub fn from_name(name: &str) -> Option<Field> {
        Field::ALL.iter().copied().find(|f| f.name() == name)
    }
}

/// A piece of a `[log] format` template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Piece {
    Text(Box<str>),
    Field(Field),
}

/// `[log] format`: how an access-log line is written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LogFormat {
    /// `key=value` pairs (logfmt), every field; the default.
    Logfmt,
    /// One JSON object per line, every field (absent ones `null`).
    Json,
    /// Apache's and nginx's combined format.
    Combined,
    /// HAProxy's `option httplog`.
    Haproxy,
    /// The operator's template: text with `{field}` variables.
    Template(Vec<Piece>),
}

impl LogFormat {
    /// Whether lines of this format may show `field` (the request path skips gathering the
    /// rest).
    pub fn shows(&self, field: Field) -> bool {
        match self {
            LogFormat::Logfmt | LogFormat::Json => true,
            LogFormat::Combined => matches!(field, Field::UserAgent | Field::Referer),
            LogFormat::Haproxy => false,
            LogFormat::Template(pieces) => pieces.contains(&Piece::Field(field)),
        }
    }
}

/// Parses a `[log] format` template: `{field}` variables, `{{` and `}}` for braces. The error
/// names the unknown variable and lists the known ones.
pub fn parse_template(text: &str) -> Result<Vec<Piece>, String> {
    let mut pieces = Vec::new();
    let mut literal = String::new();
    let mut rest = text;
    while let Some(i) = rest.find(['{', '}']) {
        literal.push_str(&rest[..i]);
        let (c, after) = (rest.as_bytes()[i], &rest[i + 1..]);
        if after.as_bytes().first() == Some(&c) {
            literal.push(c as char);
            rest = &after[1..];
            continue;
        }
        if c == b'}' {
            return Err("a `}` without its `{` (write `}}` for a brace)".into());
        }
        let Some(end) = after.find('}') else {
            return Err("a `{` without its `}` (write `{{` for a brace)".into());
        };
        let name = after[..end].trim();
        let Some(field) = Field::from_name(name) else {
            let known: Vec<&str> = Field::ALL.iter().map(|f| f.name()).collect();
            return Err(format!(
                "unknown variable `{{{name}}}` (known: {})",
                known.join(", ")
            ));
        };
        if !literal.is_empty() {
            pieces.push(Piece::Text(std::mem::take(&mut literal).into()));
        }
        pieces.push(Piece::Field(field));
        rest = &after[end + 1..];
    }
    literal.push_str(rest);
    if !literal.is_empty() {
        pieces.push(Piece::Text(literal.into()));
    }
    Ok(pieces)
}

/// `[log] access`: where access-log lines go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LogTarget {
    Stdout,
    Stderr,
    /// Appended to; reopened on `SIGUSR1` (logrotate's convention).
    File(PathBuf),
    /// RFC 3164 messages over UDP (RFC 5426), facility `local0`.
    SyslogUdp(SocketAddr),
    /// RFC 3164 messages to a Unix datagram socket (`/dev/log`).
    SyslogUnix(PathBuf),
}

/// Lines queued for the writer when `[log] queue` is unset (about 8 MiB at worst).
pub const DEFAULT_QUEUE: usize = 16 * 1024;

/// `[log]`, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogSettings {
    pub format: LogFormat,
    pub access: LogTarget,
    /// Lines waiting for the writer at most; a line that finds the queue full is dropped
    /// and counted.
    pub queue: usize,
}

impl Default for LogSettings {
    fn default() -> LogSettings {
        LogSettings {
            format: LogFormat::Logfmt,
            access: LogTarget::Stdout,
            queue: DEFAULT_QUEUE,
        }
    }
}

/// `[tracing]`, validated: present means W3C trace context is continued (a new span ID per
/// hop) or started on every request.
#[derive(Debug, Clone, PartialEq)]
pub struct TracingSettings {
    /// Where spans are sent (OTLP/HTTP, protobuf): the full URL of the traces endpoint.
    pub otlp: Option<String>,
    /// The share of new traces sampled, 0 to 1 (a request's `traceparent` decides for its own).
    pub ratio: f64,
    /// `service.name` of the spans.
    pub service_name: String,
}

/// `[log]` as read (unchecked).
#[derive(Debug, Default)]
pub(crate) struct RawLog {
    pub format: Option<At<String>>,
    pub access: Option<At<String>>,
    pub queue: Option<At<i64>>,
}

/// `[tracing]` as read (unchecked).
#[derive(Debug, Default)]
pub(crate) struct RawTracing {
    pub otlp: Option<At<String>>,
    pub ratio: Option<At<f64>>,
    pub service_name: Option<At<String>>,
}

pub(crate) const LOG_KEYS: &[&str] = &["format", "access", "queue"];
pub(crate) const TRACING_KEYS: &[&str] = &["otlp", "ratio", "service_name"];

/// Checks `[log]`: every problem reported with its line and key.
pub(crate) fn log(raw: &RawLog, base: &std::path::Path, diag: &mut Diag) -> LogSettings {
    let mut s = LogSettings::default();
    if let Some(f) = &raw.format {
        match format(&f.value) {
            Ok(format) => s.format = format,
            Err(e) => diag.error(f.line, Some("format"), format!("`format`: {e}")),
        }
    }
    if let Some(a) = &raw.access {
        match target(&a.value, base).and_then(|t| usable(&t).map(|()| t)) {
            Ok(t) => s.access = t,
            Err(e) => diag.error(a.line, Some("access"), format!("`access`: {e}")),
        }
    }
    if let Some(q) = &raw.queue {
        match usize::try_from(q.value) {
            Ok(n @ 1..=1_048_576) => s.queue = n,
            _ => diag.error(
                q.line,
                Some("queue"),
                format!(
                    "`queue` must be between 1 and 1048576 lines, not {}",
                    q.value
                ),
            ),
        }
    }
    s
}

/// A `format` value: a format's name, or a template (anything with a `{`).
fn format(text: &str) -> Result<LogFormat, String> {
    Ok(match text {
        "logfmt" => LogFormat::Logfmt,
        "json" => LogFormat::Json,
        "combined" => LogFormat::Combined,
        "haproxy" | "httplog" => LogFormat::Haproxy,
        t if t.chars().any(|c| c.is_control() && c != '\t') => {
            return Err("a control character (a line break, say) would split or garble every line".into())
        }
        t if t.contains('{') => LogFormat::Template(parse_template(t)?),
        other => {
            return Err(format!(
                "unknown format `{other}`: write logfmt, json, combined, haproxy, or a template with {{field}} variables"
            ))
        }
    })
}

/// An `access` value: `stdout`, `stderr`, `syslog:udp://HOST:PORT`, `syslog:unix:PATH`, or a
/// file name (relative to the configuration file).
fn target(text: &str, base: &std::path::Path) -> Result<LogTarget, String> {
    if let Some(rest) = text.strip_prefix("syslog:") {
        if let Some(addr) = rest.strip_prefix("udp://") {
            use std::net::ToSocketAddrs;
            let a = addr
                .to_socket_addrs()
                .map_err(|e| format!("cannot resolve `{addr}`: {e}"))?
                .next()
                .ok_or_else(|| format!("`{addr}` resolves to no address"))?;
            return Ok(LogTarget::SyslogUdp(a));
        }
        if let Some(path) = rest.strip_prefix("unix:").filter(|p| !p.is_empty()) {
            return Ok(LogTarget::SyslogUnix(PathBuf::from(path)));
        }
        return Err(format!(
            "`{text}`: write syslog:udp://HOST:PORT or syslog:unix:/dev/log"
        ));
    }
    Ok(match text {
        "stdout" => LogTarget::Stdout,
        "stderr" => LogTarget::Stderr,
        "" => return Err("empty: write stdout, stderr, a file name or syslog:...".into()),
        path => LogTarget::File(base.join(path)),
    })
}

/// Whether a destination can be opened as the writer will (so `langur check` and a reload
/// refuse what a start would): a regular file or a FIFO, or a file that can be made in an
/// existing directory (a device or a directory cannot hold a log: `stdout` and `stderr` are
/// written as such), a syslog socket that exists.
fn usable(t: &LogTarget) -> Result<(), String> {
    use std::os::unix::fs::FileTypeExt;
    match t {
        LogTarget::File(p) => match std::fs::metadata(p) {
            Ok(m) if m.is_file() || m.file_type().is_fifo() => Ok(()),
            Ok(_) => Err(format!(
                "`{}` is neither a regular file nor a FIFO (write stdout or stderr for those)",
                p.display()
            )),
            Err(_) => match p.parent().map(std::fs::metadata) {
                Some(Ok(d)) if d.is_dir() => Ok(()),
                _ => Err(format!("`{}`: its directory does not exist", p.display())),
            },
        },
        LogTarget::SyslogUnix(p) => match std::fs::metadata(p) {
            Ok(m) if m.file_type().is_socket() => Ok(()),
            _ => Err(format!("no syslog socket at `{}`", p.display())),
        },
        _ => Ok(()),
    }
}

/// Checks `[tracing]`.
pub(crate) fn tracing(raw: Option<&RawTracing>, diag: &mut Diag) -> Option<TracingSettings> {
    let raw = raw?;
    let mut s = TracingSettings {
        otlp: None,
        ratio: 1.0,
        service_name: "langur".into(),
    };
    if let Some(o) = &raw.otlp {
        match otlp_endpoint(&o.value) {
            Ok(url) => s.otlp = Some(url),
            Err(e) => diag.error(o.line, Some("otlp"), format!("`otlp`: {e}")),
        }
    }
    if let Some(r) = &raw.ratio {
        if (0.0..=1.0).contains(&r.value) {
            s.ratio = r.value;
        } else {
            diag.error(
                r.line,
                Some("ratio"),
                format!("`ratio` must be between 0 and 1, not {}", r.value),
            );
        }
    }
    if let Some(n) = &raw.service_name {
        match n.value.trim() {
            "" => diag.error(n.line, Some("service_name"), "`service_name` is empty"),
            name if name.chars().any(char::is_control) => diag.error(
                n.line,
                Some("service_name"),
                "`service_name` has a control character",
            ),
            name => s.service_name = name.to_string(),
        }
    }
    Some(s)
}

/// An OTLP/HTTP endpoint: `http://HOST:PORT` takes the traces path `/v1/traces` (as
/// `OTEL_EXPORTER_OTLP_ENDPOINT` does); a URL with a path is used as written.
fn otlp_endpoint(text: &str) -> Result<String, String> {
    let uri: http::Uri = text
        .parse()
        .map_err(|e| format!("`{text}` is not a URL: {e}"))?;
    match uri.scheme_str() {
        Some("http") => {}
        Some("https") => {
            return Err(
                "https is not supported: send to a collector over http (on this host or a trusted network)"
                    .into(),
            )
        }
        _ => return Err(format!("`{text}`: write http://HOST:PORT")),
    }
    if uri.host().map_or(true, str::is_empty) {
        return Err(format!("`{text}` names no host"));
    }
    Ok(match uri.path() {
        "" | "/" => format!("{}/v1/traces", text.trim_end_matches('/')),
        _ => text.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_parse_variables_and_braces() {
        let p = parse_template("{client} \"{path}\" {{x}} {status}").unwrap();
        assert_eq!(
            p,
            vec![
                Piece::Field(Field::Client),
                Piece::Text(" \"".into()),
                Piece::Field(Field::Path),
                Piece::Text("\" {x} ".into()),
                Piece::Field(Field::Status),
            ]
        );
        let e = parse_template("{nope}").unwrap_err();
        assert!(
            e.contains("unknown variable `{nope}`") && e.contains("trace_id"),
            "{e}"
        );
        assert!(parse_template("{client").is_err());
        assert!(format("{client}\n{status}").is_err());
        assert!(format("{client}\t{status}").is_ok());
        assert!(parse_template("a } b").is_err());
    }

    #[test]
    fn destinations_and_endpoints() {
        let base = std::path::Path::new("/etc/langur");
        assert_eq!(target("stdout", base), Ok(LogTarget::Stdout));
        assert_eq!(
            target("access.log", base),
            Ok(LogTarget::File("/etc/langur/access.log".into()))
        );
        assert_eq!(
            target("syslog:udp://127.0.0.1:514", base),
            Ok(LogTarget::SyslogUdp("127.0.0.1:514".parse().unwrap()))
        );
        assert_eq!(
            target("syslog:unix:/dev/log", base),
            Ok(LogTarget::SyslogUnix("/dev/log".into()))
        );
        assert!(target("syslog:tcp://x:1", base).is_err());
        assert_eq!(
            otlp_endpoint("http://127.0.0.1:4318").unwrap(),
            "http://127.0.0.1:4318/v1/traces"
        );
        assert_eq!(
            otlp_endpoint("http://c:4318/custom/traces").unwrap(),
            "http://c:4318/custom/traces"
        );
        assert!(otlp_endpoint("https://c:4318").is_err());
        assert!(otlp_endpoint("127.0.0.1:4318").is_err());
    }
}
