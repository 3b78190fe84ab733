//! `[log]` and `[tracing]` in TOML, read as written (checked in `config::log`).

use super::{RawConfig, Reader, Val};
use crate::config::log::{RawTracing, LOG_KEYS, TRACING_KEYS};

impl Reader<'_> {
    /// `[log]`: `format`, `access` and `queue`.
    pub(super) fn log(&mut self, raw: &mut RawConfig, val: &Val<'_>) {
        self.table(val, "[log]", |r, k, v, line| match k {
            "format" => raw.log.format = r.string(k, v),
            "access" => raw.log.access = r.string(k, v),
            "queue" => raw.log.queue = r.int(k, v),
            _ => r.diag.unknown_key(line, "[log]", k, LOG_KEYS),
        })
    }

    /// `[tracing]`: `otlp`, `ratio`, `service_name`; the section's presence turns trace
    /// context on.
    pub(super) fn tracing(&mut self, raw: &mut RawConfig, val: &Val<'_>) {
        let mut t = RawTracing::default();
        self.table(val, "[tracing]", |r, k, v, line| match k {
            "otlp" => t.otlp = r.string(k, v),
            "ratio" => t.ratio = r.float(k, v),
            "service_name" => t.service_name = r.string(k, v),
            _ => r.diag.unknown_key(line, "[tracing]", k, TRACING_KEYS),
        });
        raw.tracing = Some(t);
    }
}
