//! W3C Trace Context (<https://www.w3.org/TR/trace-context/>) on the request path.
//!
//! With `[tracing]`, every request continues its caller's trace or starts one
//! ([`Propagation::apply`]): the server receives `traceparent: 00-TRACE-SPAN-FLAGS` with the
//! caller's trace ID (or a new one), this hop's own new span ID and the sampling decision;
//! `tracestate` goes on untouched (and is removed with a `traceparent` that is not valid, as
//! the specification says, section 3.3). Without `[tracing]` the headers pass through like any
//! other and only the trace ID is read, for the log ([`observe`]), when the format shows it.
//!
//! The header is parsed here rather than by the SDK's `TraceContextPropagator`, which builds a
//! `Context` (an allocation) per request; the unit tests hold this parser to the propagator's
//! verdicts.

use crate::config::log::TracingSettings;
use http::header::{HeaderMap, HeaderName, HeaderValue};
use opentelemetry::trace::{SpanKind, TraceId};
use opentelemetry_sdk::trace::{
    IdGenerator, RandomIdGenerator, Sampler, SamplingDecision, ShouldSample,
};

pub const TRACEPARENT: HeaderName = HeaderName::from_static("traceparent");
pub const TRACESTATE: HeaderName = HeaderName::from_static("tracestate");

/// A request's place in a trace.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Trace {
    pub trace_id: [u8; 16],
    /// This hop's span (what the server sees as its parent); for a context only observed,
    /// the caller's.
    pub span_id: [u8; 8],
    /// The caller's span, when the request came with a valid `traceparent`.
    pub parent: Option<[u8; 8]>,
    pub sampled: bool,
    /// This hop made a span of its own (`[tracing]` is on).
    pub ours: bool,
}

impl Trace {
    /// 32 lowercase hex digits.
    pub fn trace_id_hex(&self) -> String {
        hex(&self.trace_id)
    }
}

fn hex(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(char::from(b"0123456789abcdef"[usize::from(b >> 4)]));
        s.push(char::from(b"0123456789abcdef"[usize::from(b & 15)]));
    }
    s
}

/// The trace context of a request's `traceparent`, read only (the header is left as is).
pub fn observe(headers: &HeaderMap) -> Option<Trace> {
    let (trace_id, span_id, flags) = parse(headers)?;
    Some(Trace {
        trace_id,
        span_id,
        parent: None,
        sampled: flags & 1 == 1,
        ours: false,
    })
}

/// `[tracing]` on the request path: how new traces are sampled.
#[derive(Debug, Clone)]
pub struct Propagation {
    sampler: Sampler,
}

impl Propagation {
    pub fn new(settings: &TracingSettings) -> Propagation {
        Propagation {
            sampler: Sampler::TraceIdRatioBased(settings.ratio),
        }
    }

    /// Continues the request's trace (its trace ID and sampled flag, a new span ID) or starts
    /// one (new IDs, sampled by the ratio), and sets `traceparent` for the server.
    pub fn apply(&self, headers: &mut HeaderMap) -> Trace {
        let ids = RandomIdGenerator::default();
        let span_id = ids.new_span_id().to_bytes();
        let trace = match parse(headers) {
            Some((trace_id, parent, flags)) => Trace {
                trace_id,
                span_id,
                parent: Some(parent),
                sampled: flags & 1 == 1,
                ours: true,
            },
            None => {
                // An invalid traceparent takes its tracestate with it (section 3.3.1).
                headers.remove(TRACESTATE);
                let trace_id = ids.new_trace_id();
                let sampled = self.sampled(trace_id);
                Trace {
                    trace_id: trace_id.to_bytes(),
                    span_id,
                    parent: None,
                    sampled,
                    ours: true,
                }
            }
        };
        headers.insert(TRACEPARENT, traceparent(&trace));
        trace
    }

    fn sampled(&self, trace_id: TraceId) -> bool {
        let r = self
            .sampler
            .should_sample(None, trace_id, "", &SpanKind::Server, &[], &[]);
        r.decision == SamplingDecision::RecordAndSample
    }
}

/// `00-TRACE-SPAN-FLAGS` for this hop.
fn traceparent(t: &Trace) -> HeaderValue {
    let text = format!(
        "00-{}-{}-{:02x}",
        hex(&t.trace_id),
        hex(&t.span_id),
        u8::from(t.sampled)
    );
    HeaderValue::from_str(&text).expect("hex digits and dashes")
}

/// A request's one valid `traceparent` (section 3.2): version, trace ID, parent ID, flags.
/// Two `traceparent` fields, or one that is not valid, give `None`.
fn parse(headers: &HeaderMap) -> Option<([u8; 16], [u8; 8], u8)> {
    let mut all = headers.get_all(TRACEPARENT).iter();
    let value = all.next()?;
    if all.next().is_some() {
        return None;
    }
    parse_value(value.as_bytes())
}

fn parse_value(v: &[u8]) -> Option<([u8; 16], [u8; 8], u8)> {
    let v = trim(v);
    if v.len() < 55 || v[2] != b'-' || v[35] != b'-' || v[52] != b'-' {
        return None;
    }
    let version = unhex::<1>(&v[0..2])?[0];
    // Version 255 is invalid; 00 is exactly 55 characters; a later version may add fields
    // after a dash (section 3.2.4).
    if version == 0xff || (version == 0 && v.len() != 55) || (v.len() > 55 && v[55] != b'-') {
        return None;
    }
    let trace_id = unhex::<16>(&v[3..35])?;
    let span_id = unhex::<8>(&v[36..52])?;
    let flags = unhex::<1>(&v[53..55])?[0];
    if trace_id == [0; 16] || span_id == [0; 8] {
        return None;
    }
    Some((trace_id, span_id, flags))
}

fn trim(v: &[u8]) -> &[u8] {
    let start = v
        .iter()
        .position(|b| !matches!(b, b' ' | b'\t'))
        .unwrap_or(v.len());
    let end = v
        .iter()
        .rposition(|b| !matches!(b, b' ' | b'\t'))
        .map_or(start, |i| i + 1);
    &v[start..end]
}

/// `N` bytes from `2N` lowercase hex digits (uppercase is not valid, section 3.2.2).
fn unhex<const N: usize>(text: &[u8]) -> Option<[u8; N]> {
    let digit = |c: u8| match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    };
    let mut out = [0u8; N];
    for (i, o) in out.iter_mut().enumerate() {
        *o = digit(text[2 * i])? << 4 | digit(text[2 * i + 1])?;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry::propagation::TextMapPropagator;
    use opentelemetry::trace::TraceContextExt;
    use opentelemetry_sdk::propagation::TraceContextPropagator;
    use std::collections::HashMap;

    const GOOD: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    /// The SDK's propagator and this parser agree on what is a valid `traceparent`.
    #[test]
    fn agrees_with_the_sdk_propagator() {
        let cases = [
            GOOD,
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            "00-4bf92f3577b34da6a3ce929d0e0e473-600f067aa0ba902b7-01",
            "zz-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "",
        ];
        let sdk = TraceContextPropagator::new();
        for c in cases {
            let carrier = HashMap::from([("traceparent".to_string(), c.to_string())]);
            let cx = sdk.extract(&carrier);
            let theirs = cx.span().span_context().is_valid();
            let ours = parse_value(c.as_bytes());
            assert_eq!(ours.is_some(), theirs, "{c}");
            if let Some((t, s, f)) = ours {
                let sc = cx.span().span_context().clone();
                assert_eq!(t, sc.trace_id().to_bytes(), "{c}");
                assert_eq!(s, sc.span_id().to_bytes(), "{c}");
                assert_eq!(f & 1 == 1, sc.is_sampled(), "{c}");
            }
        }
    }

    #[test]
    fn continues_a_trace_with_a_new_span_and_starts_one_when_absent() {
        let p = Propagation::new(&TracingSettings {
            otlp: None,
            ratio: 1.0,
            service_name: "t".into(),
        });
        let mut h = HeaderMap::new();
        h.insert(TRACEPARENT, HeaderValue::from_static(GOOD));
        h.insert(TRACESTATE, HeaderValue::from_static("k=v"));
        let t = p.apply(&mut h);
        assert_eq!(t.trace_id_hex(), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(t.parent, Some(*b"\x00\xf0\x67\xaa\x0b\xa9\x02\xb7"));
        let sent = h[TRACEPARENT].to_str().unwrap().to_string();
        assert!(
            sent.starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-"),
            "{sent}"
        );
        assert!(
            !sent.contains("00f067aa0ba902b7") && sent.ends_with("-01"),
            "{sent}"
        );
        assert_eq!(h[TRACESTATE], "k=v");
        // None: a new trace, sampled at ratio 1; a bad one is replaced and loses tracestate.
        let mut h = HeaderMap::new();
        h.insert(TRACEPARENT, HeaderValue::from_static("00-bad"));
        h.insert(TRACESTATE, HeaderValue::from_static("k=v"));
        let t = p.apply(&mut h);
        assert!(t.parent.is_none() && t.sampled);
        assert!(h.get(TRACESTATE).is_none());
        let sent = parse(&h).unwrap();
        assert_eq!((sent.0, sent.1, sent.2), (t.trace_id, t.span_id, 1));
        let never = Propagation::new(&TracingSettings {
            otlp: None,
            ratio: 0.0,
            service_name: "t".into(),
        });
        assert!(!never.apply(&mut HeaderMap::new()).sampled);
    }
}
