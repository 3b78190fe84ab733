//! `[cluster]` in TOML, read as written (checked in `config::cluster`).

use super::{RawConfig, Reader, Val};
use crate::config::cluster::{RawCluster, CLUSTER_KEYS};

impl Reader<'_> {
    /// `[cluster]`: `redis`, `name`, `prefix`, `timeout`, `connect_timeout`, `heartbeat`.
    pub(super) fn cluster(&mut self, raw: &mut RawConfig, val: &Val<'_>, line: usize) {
        let mut c = RawCluster {
            line,
            ..RawCluster::default()
        };
        self.table(val, "[cluster]", |r, k, v, line| match k {
            "redis" => c.redis = r.string(k, v),
            "name" => c.name = r.string(k, v),
            "prefix" => c.prefix = r.string(k, v),
            "timeout" => c.timeout = r.duration(k, v),
            "connect_timeout" => c.connect_timeout = r.duration(k, v),
            "heartbeat" => c.heartbeat = r.duration(k, v),
            _ => r.diag.unknown_key(line, "[cluster]", k, CLUSTER_KEYS),
        });
        raw.cluster = Some(c);
    }
}
