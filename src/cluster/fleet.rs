//! The fleet view: each instance writes a heartbeat record (`PREFIX node:ID`, JSON, expiring
//! after three heartbeats) and its ID in a sorted set (`PREFIX nodes`, scored by the time of
//! the beat), so any instance can list the live ones, flag those whose configuration differs
//! and sum their rates (`/api/cluster`).

use super::Cluster;
use serde_json::{json, Value};
use std::sync::atomic::Ordering::Relaxed;
use std::time::{SystemTime, UNIX_EPOCH};

/// Instances listed at most.
const MAX_INSTANCES: isize = 1000;

/// Milliseconds since the Unix epoch.
fn now_unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

impl Cluster {
    /// Sets what the heartbeat says of this instance besides its identity (once): counters
    /// and rates as a JSON object.
    pub fn on_status(&self, f: impl Fn() -> Value + Send + Sync + 'static) {
        let _ = self.status.set(Box::new(f));
    }

    /// The checksum of the configuration this instance serves (set on every load).
    pub fn set_config_sum(&self, sum: u64) {
        self.config_sum.store(sum, Relaxed);
    }

    /// This instance's record, as the heartbeat writes it.
    pub fn record(&self) -> Value {
        let mut r = match self.status.get() {
            Some(f) => f(),
            None => json!({}),
        };
        if let Some(o) = r.as_object_mut() {
            o.insert("name".into(), self.name.clone().into());
            o.insert("id".into(), self.id.clone().into());
            o.insert("version".into(), env!("CARGO_PKG_VERSION").into());
            let sum = format!("{:016x}", self.config_sum.load(Relaxed));
            o.insert("config".into(), sum.into());
            o.insert("at_unix_ms".into(), now_unix_ms().into());
        }
        r
    }

    /// Writes the heartbeat (record, set member, and the removal of long-gone members).
    pub(super) async fn beat(&self) {
        let hb = self.config.heartbeat.as_millis() as u64;
        let now = now_unix_ms();
        let node = self.key(&format!("node:{}", self.id));
        let nodes = self.key("nodes");
        let mut pipe = redis::pipe();
        pipe.cmd("SET")
            .arg(&node)
            .arg(self.record().to_string())
            .arg("PX")
            .arg(hb * 3)
            .ignore();
        pipe.cmd("ZADD").arg(&nodes).arg(now).arg(&self.id).ignore();
        pipe.cmd("ZREMRANGEBYSCORE")
            .arg(&nodes)
            .arg("-inf")
            .arg(now.saturating_sub(hb * 10))
            .ignore();
        pipe.cmd("PEXPIRE").arg(&nodes).arg(hb * 10).ignore();
        let mut conn = self.conn();
        let write = async move { pipe.query_async::<()>(&mut conn).await };
        self.call_within(self.config.connect_timeout, write).await;
    }

    /// The live instances' records (beat within three heartbeats), read within
    /// `connect_timeout`; `None` when Redis cannot be reached.
    async fn members(&self) -> Option<Vec<Value>> {
        let hb = self.config.heartbeat.as_millis() as u64;
        let since = now_unix_ms().saturating_sub(hb * 3);
        let nodes = self.key("nodes");
        let mut conn = self.conn();
        let ids = async {
            redis::cmd("ZRANGEBYSCORE")
                .arg(&nodes)
                .arg(since)
                .arg("+inf")
                .arg("LIMIT")
                .arg(0)
                .arg(MAX_INSTANCES)
                .query_async::<Vec<String>>(&mut conn)
                .await
        };
        let limit = self.config.connect_timeout;
        let ids = self.call_within(limit, ids).await?;
        if ids.is_empty() {
            return Some(Vec::new());
        }
        let keys: Vec<String> = ids.iter().map(|i| self.key(&format!("node:{i}"))).collect();
        let mut conn = self.conn();
        let get = async move {
            redis::cmd("MGET")
                .arg(&keys)
                .query_async::<Vec<Option<String>>>(&mut conn)
                .await
        };
        let texts = self.call_within(limit, get).await?;
        // A record that does not read as JSON (written by something else) is left out.
        let records = texts.into_iter().flatten();
        Some(
            records
                .filter_map(|t| serde_json::from_str(&t).ok())
                .collect(),
        )
    }

    /// `/api/cluster`: Redis's state, the live instances (this one first; `config_differs`
    /// when an instance's configuration checksum is not this one's), and their summed rates.
    pub async fn fleet(&self) -> Value {
        let me = self.record();
        let members = self.members().await;
        let reachable = members.is_some();
        let mut list = members.unwrap_or_default();
        list.retain(|r| r.get("id") != me.get("id"));
        list.insert(0, me.clone());
        let now = now_unix_ms();
        for r in &mut list {
            let differs = r.get("config") != me.get("config");
            let at = r.get("at_unix_ms").and_then(Value::as_u64);
            let age = at.map(|t| now.saturating_sub(t));
            if let Some(o) = r.as_object_mut() {
                o.insert("heartbeat_age_ms".into(), age.into());
                o.insert("config_differs".into(), differs.into());
                o.insert("self".into(), (r_id(o) == me.get("id")).into());
            }
        }
        let sum = |k: &str| -> f64 { list.iter().filter_map(|r| r.get(k)?.as_f64()).sum() };
        json!({
            "redis": {
                "url": super::redacted(&self.config.redis),
                "up": self.is_up() && reachable,
                "master": self.master(),
                "prefix": self.config.prefix,
                "errors": self.errors.load(Relaxed),
                "outages": self.outages.load(Relaxed),
            },
            "purges": {
                "sent": self.purges_sent.load(Relaxed),
                "unsent": self.purges_unsent.load(Relaxed),
                "received": self.purges_received.load(Relaxed),
                "ignored": self.purges_ignored.load(Relaxed),
                "subscribed": self.subscribed.load(Relaxed),
            },
            "instances": list,
            "sum": {
                "requests_per_second": sum("requests_per_second"),
                "requests": sum("requests"),
            },
            "config_differs": list.iter().any(|r| r["config_differs"] == true),
        })
    }
}

fn r_id(o: &serde_json::Map<String, Value>) -> Option<&Value> {
    o.get("id")
}
