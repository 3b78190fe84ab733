//! How a line is written, on the writer thread: `logfmt` (`key=value`, the default), `json`
//! (one object per line), `combined` (Apache's and nginx's), `haproxy` (HAProxy's
//! `option httplog`) and templates. Times are UTC.

use super::Line;
use crate::config::log::{Field, LogFormat, Piece};
use std::io::Write;
use std::time::{Duration, SystemTime};

/// What of a request the format shows, so the request path gathers only that.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Shows {
    /// Host, user agent, referer, the body's length.
    pub request_fields: bool,
    /// The trace ID of an incoming `traceparent` (when `[tracing]` is off).
    pub trace_id: bool,
    /// The hop in front of the client: the socket's peer, what a PROXY header said.
    pub hop: bool,
}

impl Shows {
    pub fn of(format: &LogFormat) -> Shows {
        Shows {
            request_fields: [
                Field::Host,
                Field::UserAgent,
                Field::Referer,
                Field::BytesIn,
            ]
            .into_iter()
            .any(|f| format.shows(f)),
            trace_id: format.shows(Field::TraceId),
            hop: [Field::Peer, Field::ProxyAuthority, Field::ProxySsl]
                .into_iter()
                .any(|f| format.shows(f)),
        }
    }
}

/// The wall clock and the monotonic clock read together once per batch: a line's start in
/// wall time is derived from its monotonic start, so the request path reads no wall clock.
pub(super) struct Clock {
    wall: SystemTime,
    mono: std::time::Instant,
}

impl Clock {
    pub fn now() -> Clock {
        Clock {
            wall: SystemTime::now(),
            mono: std::time::Instant::now(),
        }
    }

    /// When the line's request began, in wall time.
    pub fn start_of(&self, line: &Line) -> SystemTime {
        let age = self.mono.saturating_duration_since(line.start.into_std());
        self.wall.checked_sub(age).unwrap_or(self.wall)
    }
}

/// Appends one line (without its newline) in `format`.
pub(super) fn write(buf: &mut Vec<u8>, format: &LogFormat, line: &Line, clock: &Clock) {
    let time = clock.start_of(line);
    match format {
        LogFormat::Logfmt => logfmt(buf, line, time),
        LogFormat::Json => json(buf, line, time),
        LogFormat::Combined => combined(buf, line, time),
        LogFormat::Haproxy => haproxy(buf, line, time),
        LogFormat::Template(pieces) => template(buf, pieces, line, time),
    }
}

/// One field's value.
enum Value<'a> {
    Text(&'a str),
    Bytes(&'a [u8]),
    Owned(String),
    Int(u64),
    Ms(f64),
    Absent,
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn opt_text(v: Option<&str>) -> Value<'_> {
    v.map_or(Value::Absent, Value::Text)
}

fn header(v: Option<&http::HeaderValue>) -> Value<'_> {
    v.map_or(Value::Absent, |v| Value::Bytes(v.as_bytes()))
}

/// The client's IP as text (an IPv4-mapped IPv6 address shown as IPv4).
fn client_ip(line: &Line) -> std::net::IpAddr {
    match line.client.ip() {
        std::net::IpAddr::V6(v6) => v6
            .to_ipv4_mapped()
            .map_or(std::net::IpAddr::V6(v6), std::net::IpAddr::V4),
        v4 => v4,
    }
}

fn value<'a>(line: &'a Line, field: Field, time: SystemTime) -> Value<'a> {
    let request_field = matches!(
        field,
        Field::Method | Field::Host | Field::Path | Field::Query | Field::Protocol
    );
    if line.unparsed && request_field {
        return Value::Absent;
    }
    match field {
        Field::Time => Value::Owned(humantime::format_rfc3339_millis(time).to_string()),
        Field::Client => Value::Owned(client_ip(line).to_string()),
        Field::ClientPort => Value::Int(u64::from(line.client.port())),
        Field::Method => Value::Text(line.method.as_str()),
        Field::Scheme => Value::Text(line.scheme),
        Field::Host => match (&line.host, line.uri.authority()) {
            (Some(h), _) => Value::Bytes(h.as_bytes()),
            (None, Some(a)) => Value::Text(a.as_str()),
            (None, None) => Value::Absent,
        },
        Field::Path => Value::Text(line.uri.path()),
        Field::Query => opt_text(line.uri.query()),
        Field::Protocol => Value::Text(protocol(line.version)),
        Field::Status => Value::Int(u64::from(line.status)),
        Field::BytesIn => line.bytes_in.map_or(Value::Absent, Value::Int),
        Field::BytesOut => Value::Int(line.bytes),
        Field::Route => line
            .route
            .map_or(Value::Absent, |i| Value::Owned(format!("#{}", i + 1))),
        Field::Pool => opt_text(line.pool.as_deref()),
        Field::Server => opt_text(line.server.as_deref()),
        Field::Cache => opt_text(Some(line.cache).filter(|c| !c.is_empty())),
        Field::Reason => opt_text(Some(line.reason).filter(|c| !c.is_empty())),
        Field::RequestId => header(line.request_id.as_ref()),
        Field::TraceId => line
            .trace
            .as_ref()
            .map_or(Value::Absent, |t| Value::Owned(t.trace_id_hex())),
        Field::UserAgent => header(line.user_agent.as_ref()),
        Field::Referer => header(line.referer.as_ref()),
        Field::TlsVersion => opt_text(line.tls.as_ref().map(|t| t.version)),
        Field::TlsCipher => opt_text(line.tls.as_ref().map(|t| t.cipher)),
        Field::Sni => opt_text(line.tls.as_ref().and_then(|t| t.sni.as_deref())),
        Field::Peer => match line.hop.as_deref() {
            None => Value::Absent,
            Some(h) => h
                .peer
                .map_or(Value::Text("unix"), |p| Value::Owned(p.to_string())),
        },
        Field::ProxyAuthority => opt_text(proxied(line).and_then(|o| o.authority.as_deref())),
        Field::ProxySsl => opt_text(proxied(line).and_then(|o| o.ssl.as_deref())),
        Field::QueueMs => line.queue.map_or(Value::Absent, |d| Value::Ms(ms(d))),
        Field::ConnectMs => connect(line).map_or(Value::Absent, |d| Value::Ms(ms(d))),
        Field::HeaderMs => line.upstream_ms.map_or(Value::Absent, Value::Ms),
        Field::TotalMs => Value::Ms(ms(line.total)),
        Field::Rewritten => opt_text(line.rewritten.as_deref()),
    }
}

/// What a PROXY header said of the line's client, if one came.
fn proxied(line: &Line) -> Option<&crate::session::Origin> {
    line.hop.as_ref()?.origin.as_deref()
}

/// The connect time: zero when the request went out on a reused connection.
fn connect(line: &Line) -> Option<Duration> {
    line.connect.or(line.sent.map(|_| Duration::ZERO))
}

fn protocol(v: http::Version) -> &'static str {
    match v {
        http::Version::HTTP_09 => "HTTP/0.9",
        http::Version::HTTP_10 => "HTTP/1.0",
        http::Version::HTTP_2 => "HTTP/2.0",
        http::Version::HTTP_3 => "HTTP/3.0",
        _ => "HTTP/1.1",
    }
}

/// A JSON string (serde_json's escaping); bytes that are not UTF-8 are replaced.
fn json_str(buf: &mut Vec<u8>, text: &[u8]) {
    let text = String::from_utf8_lossy(text);
    let _ = serde_json::to_writer(&mut *buf, text.as_ref());
}

/// `{"time":"...","client":"...",...}`: every field, absent ones `null`, times in ms.
fn json(buf: &mut Vec<u8>, line: &Line, time: SystemTime) {
    buf.push(b'{');
    for (i, &f) in Field::ALL.iter().enumerate() {
        if i > 0 {
            buf.push(b',');
        }
        buf.push(b'"');
        buf.extend_from_slice(f.name().as_bytes());
        buf.extend_from_slice(b"\":");
        match value(line, f, time) {
            Value::Text(t) => json_str(buf, t.as_bytes()),
            Value::Bytes(b) => json_str(buf, b),
            Value::Owned(s) => json_str(buf, s.as_bytes()),
            Value::Int(n) => {
                let _ = write!(buf, "{n}");
            }
            Value::Ms(x) => {
                let _ = write!(buf, "{x:.3}");
            }
            Value::Absent => buf.extend_from_slice(b"null"),
        }
    }
    buf.push(b'}');
}

/// `key=value` pairs, every field (`-` when absent); a value with a space, `=`, a quote or a
/// control byte is quoted with JSON's escapes.
fn logfmt(buf: &mut Vec<u8>, line: &Line, time: SystemTime) {
    for (i, &f) in Field::ALL.iter().enumerate() {
        if i > 0 {
            buf.push(b' ');
        }
        buf.extend_from_slice(f.name().as_bytes());
        buf.push(b'=');
        let text: &[u8] = match value(line, f, time) {
            Value::Text(t) => t.as_bytes(),
            Value::Bytes(b) => b,
            Value::Owned(s) => {
                logfmt_value(buf, s.as_bytes());
                continue;
            }
            Value::Int(n) => {
                let _ = write!(buf, "{n}");
                continue;
            }
            Value::Ms(x) => {
                let _ = write!(buf, "{x:.3}");
                continue;
            }
            Value::Absent => b"-",
        };
        logfmt_value(buf, text);
    }
}

/// A logfmt value: bare when it is UTF-8 text without spaces, `=`, quotes, backslashes or
/// control bytes; else quoted with JSON's escapes (bytes that are not UTF-8 replaced, as the
/// JSON format does).
fn logfmt_value(buf: &mut Vec<u8>, text: &[u8]) {
    let plain = !text.is_empty()
        && text
            .iter()
            .all(|&b| b > b' ' && b != b'=' && b != b'"' && b != b'\\' && b != 0x7f)
        && (text.is_ascii() || std::str::from_utf8(text).is_ok());
    if plain {
        buf.extend_from_slice(text);
    } else {
        json_str(buf, text);
    }
}

/// A value inside a quoted or bare field of `combined`, `haproxy` and templates, escaped as
/// nginx does by default: `"`, `\`, control bytes and bytes above 0x7e as `\xHH`.
fn escaped(buf: &mut Vec<u8>, text: &[u8]) {
    for &b in text {
        if b == b'"' || b == b'\\' || !(0x20..0x7f).contains(&b) {
            let _ = write!(buf, "\\x{b:02X}");
        } else {
            buf.push(b);
        }
    }
}

/// `dd/Mon/yyyy:HH:MM:SS` and the milliseconds, from an RFC 3339 time.
fn clf_time(time: SystemTime) -> (String, String) {
    let t = humantime::format_rfc3339_millis(time).to_string();
    // YYYY-MM-DDTHH:MM:SS.mmmZ
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let month = t[5..7].parse::<usize>().unwrap_or(1).clamp(1, 12);
    let date = format!(
        "{}/{}/{}:{}",
        &t[8..10],
        MONTHS[month - 1],
        &t[0..4],
        &t[11..19]
    );
    (date, t[20..23].to_string())
}

/// The request line as the client sent it: `GET /path?query HTTP/1.1` (an HTTP/1 target in
/// absolute form as written; an HTTP/2 request's path, as nginx writes it); `unparsed` for a
/// head refused before it was parsed.
fn request_line(buf: &mut Vec<u8>, line: &Line, unparsed: &str) {
    if line.unparsed {
        buf.extend_from_slice(unparsed.as_bytes());
        return;
    }
    buf.extend_from_slice(line.method.as_str().as_bytes());
    buf.push(b' ');
    match (line.version, line.uri.path_and_query()) {
        (http::Version::HTTP_2, Some(pq)) => escaped(buf, pq.as_str().as_bytes()),
        _ => escaped(buf, line.uri.to_string().as_bytes()),
    }
    buf.push(b' ');
    buf.extend_from_slice(protocol(line.version).as_bytes());
}

/// Apache's and nginx's combined format: `%h %l %u %t "%r" %>s %b "%{Referer}i"
/// "%{User-agent}i"` (the user is `-`; `%b` counts body bytes, 0 as nginx writes it).
fn combined(buf: &mut Vec<u8>, line: &Line, time: SystemTime) {
    let (date, _) = clf_time(time);
    let _ = write!(buf, "{} - - [{date} +0000] \"", client_ip(line));
    request_line(buf, line, "-");
    let _ = write!(buf, "\" {} {} \"", line.status, line.bytes);
    quoted_header(buf, line.referer.as_ref());
    buf.extend_from_slice(b"\" \"");
    quoted_header(buf, line.user_agent.as_ref());
    buf.push(b'"');
}

fn quoted_header(buf: &mut Vec<u8>, v: Option<&http::HeaderValue>) {
    match v {
        Some(v) => escaped(buf, v.as_bytes()),
        None => buf.push(b'-'),
    }
}

/// HAProxy's `option httplog`: `client:port [date] frontend backend/server TR/Tw/Tc/Tr/Ta
/// status bytes - - TERM actconn/feconn/beconn/srv_conn/retries srv_queue/backend_queue
/// "request"`. The frontend is `langur` (`langur~` on TLS), the backend the pool, a missing
/// server `<NOSRV>`; TR is 0 (a head is read whole), a phase not reached is -1; the
/// connection and queue counters are not tracked per line and are 0.
fn haproxy(buf: &mut Vec<u8>, line: &Line, time: SystemTime) {
    let (date, millis) = clf_time(time);
    let timer = |d: Option<f64>| d.map_or(-1, |x| x.round() as i64);
    let frontend = if line.tls.is_some() {
        "langur~"
    } else {
        "langur"
    };
    let reached = line.server.is_some();
    let _ = write!(
        buf,
        "{}:{} [{date}.{millis}] {frontend} {}/{} 0/{}/{}/{}/{} {} {} - - {}-- 0/0/0/0/0 0/0 \"",
        client_ip(line),
        line.client.port(),
        line.pool.as_deref().unwrap_or(frontend),
        line.server.as_deref().unwrap_or("<NOSRV>"),
        timer(line.queue.map(ms).or(reached.then_some(0.0))),
        timer(connect(line).map(ms)),
        timer(line.upstream_ms),
        ms(line.total).round() as i64,
        line.status,
        line.bytes,
        termination(line.reason),
    );
    request_line(buf, line, "<BADREQ>");
    buf.push(b'"');
}

/// The first two characters of HAProxy's termination state for a reason: who ended the
/// session (`C` client, `S` server, `P` proxy, `s` server-side timeout, `c` client-side
/// timeout) and in which phase (`R` request, `Q` queue, `C` connect, `H` headers, `D` data).
fn termination(reason: &str) -> &'static str {
    match reason {
        "" => "--",
        "client_aborted" => "CD",
        "client_body_timeout" => "cD",
        "upstream_aborted" | "file_read_error" => "SD",
        "upstream_read_timeout" => "sD",
        "upstream_timeout" => "sH",
        "bad_upstream" => "SH",
        "no_server" | "retries_exhausted" => "SC",
        "queue_timeout" => "sQ",
        "queue_full" => "PQ",
        "request_timeout" => "sC",
        _ => "PR",
    }
}

/// A template: text as written, each variable's value escaped (`-` when absent).
fn template(buf: &mut Vec<u8>, pieces: &[Piece], line: &Line, time: SystemTime) {
    for p in pieces {
        match p {
            Piece::Text(t) => buf.extend_from_slice(t.as_bytes()),
            Piece::Field(f) => match value(line, *f, time) {
                Value::Text(t) => escaped(buf, t.as_bytes()),
                Value::Bytes(b) => escaped(buf, b),
                Value::Owned(s) => escaped(buf, s.as_bytes()),
                Value::Int(n) => {
                    let _ = write!(buf, "{n}");
                }
                Value::Ms(x) => {
                    let _ = write!(buf, "{x:.3}");
                }
                Value::Absent => buf.push(b'-'),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lf(text: &[u8]) -> String {
        let mut buf = Vec::new();
        logfmt_value(&mut buf, text);
        String::from_utf8(buf).expect("logfmt lines are UTF-8")
    }

    /// Bare only when nothing in it could end or forge a field; bytes that are not UTF-8
    /// never reach the line raw.
    #[test]
    fn logfmt_values_are_bare_or_quoted() {
        assert_eq!(lf(b"curl/8.5"), "curl/8.5");
        assert_eq!(lf("caf\u{e9}".as_bytes()), "caf\u{e9}");
        assert_eq!(lf(b"a b"), "\"a b\"");
        assert_eq!(lf(b"k=v"), "\"k=v\"");
        assert_eq!(lf(b"say \"hi\""), "\"say \\\"hi\\\"\"");
        assert_eq!(lf(b""), "\"\"");
        assert_eq!(
            lf(b"\xff\xfe\xc3\xa9\x80"),
            "\"\u{fffd}\u{fffd}\u{e9}\u{fffd}\""
        );
        let mut buf = Vec::new();
        escaped(&mut buf, b"a\"\\\n\xff");
        assert_eq!(buf, b"a\\x22\\x5C\\x0A\\xFF");
    }
}
