//! The process's own families, as Prometheus's client libraries name them (`process_*`,
//! without langur's prefix, so existing dashboards and alerts find them): CPU time, resident
//! and virtual memory, open and allowed file descriptors, start time. Read from `/proc/self`
//! at scrape time (Linux; elsewhere the families are left out), nothing on the request path.

use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;

/// Clock ticks per second in `/proc` (`USER_HZ`, what `sysconf(_SC_CLK_TCK)` answers on Linux).
const TICKS: f64 = 100.0;

#[derive(Debug)]
pub(super) struct Process {
    /// When the instance started (s since the Unix epoch): the start time when `/proc/stat`
    /// cannot be read (systemd's `ProcSubset=pid` hides it), a second or so after the exact one.
    pub started_unix: f64,
}

/// What `/proc/self` says, each `None` when it cannot be read.
#[derive(Debug, Default, PartialEq)]
struct Sample {
    cpu_seconds: Option<f64>,
    resident_bytes: Option<i64>,
    virtual_bytes: Option<i64>,
    open_fds: Option<i64>,
    max_fds: Option<i64>,
    start_time: Option<f64>,
}

/// The fields of `/proc/self/stat` after the command name (which may hold spaces and `)`):
/// `state` is field 0 here (3 in proc(5)).
fn stat_fields(stat: &str) -> Vec<&str> {
    stat.rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default()
}

fn sample() -> Sample {
    let read = |p: &str| std::fs::read_to_string(p).ok();
    let stat = read("/proc/self/stat").unwrap_or_default();
    let f = stat_fields(&stat);
    let num = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok());
    // proc(5): utime 14, stime 15, starttime 22, vsize 23.
    let cpu = num(11).zip(num(12)).map(|(u, s)| (u + s) as f64 / TICKS);
    let boot = read("/proc/stat").and_then(|s| {
        s.lines()
            .find_map(|l| l.strip_prefix("btime ")?.trim().parse::<u64>().ok())
    });
    let start = num(19).zip(boot).map(|(t, b)| b as f64 + t as f64 / TICKS);
    let rss = read("/proc/self/status").and_then(|s| {
        s.lines().find_map(|l| {
            l.strip_prefix("VmRSS:")?
                .trim()
                .strip_suffix("kB")?
                .trim()
                .parse::<i64>()
                .ok()
        })
    });
    let max_fds = read("/proc/self/limits").and_then(|s| {
        let line = s.lines().find(|l| l.starts_with("Max open files"))?;
        line["Max open files".len()..]
            .split_whitespace()
            .next()?
            .parse()
            .ok()
    });
    Sample {
        cpu_seconds: cpu,
        resident_bytes: rss.map(|kb| kb * 1024),
        virtual_bytes: num(20).map(|v| v as i64),
        open_fds: std::fs::read_dir("/proc/self/fd")
            .ok()
            .map(|d| d.count() as i64),
        max_fds,
        start_time: start,
    }
}

fn one<M: EncodeMetric>(
    enc: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    kind: MetricType,
    metric: M,
) -> std::fmt::Result {
    metric.encode(enc.encode_descriptor(name, help, None, kind)?)
}

impl prometheus_client::collector::Collector for Process {
    /// Named in full (no `# UNIT` line, as the client libraries write them).
    fn encode(&self, mut enc: DescriptorEncoder) -> std::fmt::Result {
        let s = sample();
        let e = &mut enc;
        if let Some(v) = s.cpu_seconds {
            let help = "Total user and system CPU time spent in seconds.";
            one(
                e,
                "process_cpu_seconds",
                help,
                MetricType::Counter,
                ConstCounter::new(v),
            )?;
        }
        let gauges = [
            (
                "process_resident_memory_bytes",
                "Resident memory size in bytes.",
                s.resident_bytes,
            ),
            (
                "process_virtual_memory_bytes",
                "Virtual memory size in bytes.",
                s.virtual_bytes,
            ),
            (
                "process_open_fds",
                "Number of open file descriptors.",
                s.open_fds,
            ),
            (
                "process_max_fds",
                "Maximum number of open file descriptors.",
                s.max_fds,
            ),
        ];
        for (name, help, v) in gauges {
            if let Some(v) = v {
                one(e, name, help, MetricType::Gauge, ConstGauge::new(v))?;
            }
        }
        if let Some(v) = s.start_time.or(Some(self.started_unix)) {
            let help = "Start time of the process since unix epoch in seconds.";
            one(
                e,
                "process_start_time_seconds",
                help,
                MetricType::Gauge,
                ConstGauge::new(v),
            )?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_fields_survive_a_command_name_with_spaces_and_parens() {
        let stat = "42 (a b) c) S 1 42 42 0 -1 0 1 2 3 4 150 50 0 0 20 0 1 0 300 1000 5";
        let f = stat_fields(stat);
        assert_eq!(f[0], "S");
        assert_eq!((f[11], f[12], f[19], f[20]), ("150", "50", "300", "1000"));
    }

    #[test]
    fn this_process_is_read() {
        let s = sample();
        if cfg!(target_os = "linux") {
            assert!(s.cpu_seconds.is_some() && s.start_time.is_some());
            assert!(s.resident_bytes.unwrap() > 0 && s.open_fds.unwrap() > 0);
            assert!(s.max_fds.unwrap() >= s.open_fds.unwrap());
        }
    }
}
