//! Stats as HAProxy's `show stat` CSV, so tools that read HAProxy's CSV by name or position
//! work.

use super::{haproxy_status, last_check, since_change_secs, Shared};
use crate::backend::{Pool, Server};
use std::sync::atomic::Ordering::Relaxed;

/// HAProxy's `show stat` columns, in its order, as far as `dses`; langur fills the ones it has
/// and leaves the others empty, so tools that read HAProxy's CSV by name or position work.
pub const CSV_COLUMNS: &[&str] = &[
    "pxname",
    "svname",
    "qcur",
    "qmax",
    "scur",
    "smax",
    "slim",
    "stot",
    "bin",
    "bout",
    "dreq",
    "dresp",
    "ereq",
    "econ",
    "eresp",
    "wretr",
    "wredis",
    "status",
    "weight",
    "act",
    "bck",
    "chkfail",
    "chkdown",
    "lastchg",
    "downtime",
    "qlimit",
    "pid",
    "iid",
    "sid",
    "throttle",
    "lbtot",
    "tracked",
    "type",
    "rate",
    "rate_lim",
    "rate_max",
    "check_status",
    "check_code",
    "check_duration",
    "hrsp_1xx",
    "hrsp_2xx",
    "hrsp_3xx",
    "hrsp_4xx",
    "hrsp_5xx",
    "hrsp_other",
    "hanafail",
    "req_rate",
    "req_rate_max",
    "req_tot",
    "cli_abrt",
    "srv_abrt",
    "comp_in",
    "comp_out",
    "comp_byp",
    "comp_rsp",
    "lastsess",
    "last_chk",
    "last_agt",
    "qtime",
    "ctime",
    "rtime",
    "ttime",
    "agent_status",
    "agent_code",
    "agent_duration",
    "check_desc",
    "agent_desc",
    "check_rise",
    "check_fall",
    "check_health",
    "agent_rise",
    "agent_fall",
    "agent_health",
    "addr",
    "cookie",
    "mode",
    "algo",
    "conn_rate",
    "conn_rate_max",
    "conn_tot",
    "intercepted",
    "dcon",
    "dses",
];

/// The `hrsp_*` columns of the five status classes, in the order of the servers' counters.
const CLASSES: [&str; 5] = ["hrsp_1xx", "hrsp_2xx", "hrsp_3xx", "hrsp_4xx", "hrsp_5xx"];

/// The stats in HAProxy's `show stat` CSV: a `# ` header line of [`CSV_COLUMNS`], a
/// `FRONTEND` row per listener, then per pool a row per server and a `BACKEND` row summing
/// them.
pub fn csv(shared: &Shared) -> String {
    let rt = shared.live().runtime.load();
    let mut out = format!("# {}\n", CSV_COLUMNS.join(","));
    for (i, l) in shared.traffic().listeners.all().iter().enumerate() {
        frontend_row(l, rt.pools.len() + i, rt.limits.max_connections).end(&mut out);
    }
    for (pid, p) in rt.pools.iter().enumerate() {
        let mut sum = Sum::default();
        for (sid, s) in p.servers.iter().enumerate() {
            let row = server_row(p, s, pid, sid, &mut sum);
            row.end(&mut out);
        }
        backend_row(p, pid, &sum).end(&mut out);
    }
    out
}

/// One CSV line being filled, a field per column of [`CSV_COLUMNS`] (empty unless set).
struct Row(Vec<String>);

impl Row {
    fn new() -> Row {
        Row(vec![String::new(); CSV_COLUMNS.len()])
    }

    /// Sets the column called `name` (one of [`CSV_COLUMNS`]).
    fn set(&mut self, name: &str, v: impl Into<String>) {
        let col = CSV_COLUMNS
            .iter()
            .position(|c| *c == name)
            .expect("known column");
        self.0[col] = v.into();
    }

    /// Appends the line to `out`.
    fn end(self, out: &mut String) {
        out.push_str(&self.0.join(","));
        out.push('\n');
    }
}

/// A pool's servers added up, for its `BACKEND` row.
#[derive(Default)]
struct Sum {
    /// Responses by status class (1xx..5xx).
    classes: [u64; 5],
    scur: usize,
    stot: u64,
    econ: u64,
    wredis: u64,
    act: usize,
    bck: usize,
    /// Servers whose HAProxy status is `UP`.
    up: usize,
}

/// A server's row (`type` 2), added to its pool's `sum` as it is read. `pid` and `sid`
/// count from 0; HAProxy's `iid` and `sid` from 1.
fn server_row(p: &Pool, s: &Server, pid: usize, sid: usize, sum: &mut Sum) -> Row {
    let classes: Vec<u64> = s.responses.iter().map(|c| c.load(Relaxed)).collect();
    for (total, v) in sum.classes.iter_mut().zip(&classes) {
        *total += v;
    }
    let status = haproxy_status(p, s);
    let inflight = s.in_flight.load(Relaxed);
    let reqs = s.requests.load(Relaxed);
    let econ = s.connect_failures_total.load(Relaxed);
    let wredis = s.redispatched.load(Relaxed);
    sum.up += usize::from(status == "UP");
    sum.scur += inflight;
    sum.stot += reqs;
    sum.econ += econ;
    sum.wredis += wredis;
    sum.act += usize::from(!s.backup);
    sum.bck += usize::from(s.backup);
    let mut row = Row::new();
    row.set("pxname", csv_field(&p.name));
    row.set("svname", csv_field(&s.name));
    row.set("qcur", "0");
    row.set("scur", inflight.to_string());
    row.set("smax", s.max_in_flight.load(Relaxed).to_string());
    let maxconn = s.maxconn.load(Relaxed);
    if maxconn > 0 {
        row.set("slim", maxconn.to_string());
    }
    row.set("stot", reqs.to_string());
    row.set("econ", econ.to_string());
    row.set("eresp", s.errors.load(Relaxed).to_string());
    row.set("wredis", wredis.to_string());
    row.set("status", status);
    row.set("weight", s.weight.load(Relaxed).to_string());
    row.set("act", u8::from(!s.backup).to_string());
    row.set("bck", u8::from(s.backup).to_string());
    row.set("chkfail", s.check_failures.load(Relaxed).to_string());
    row.set("chkdown", s.downs.load(Relaxed).to_string());
    row.set("lastchg", since_change_secs(s).to_string());
    row.set("pid", "1");
    row.set("iid", (pid + 1).to_string());
    row.set("sid", (sid + 1).to_string());
    row.set("lbtot", reqs.to_string());
    row.set("type", "2");
    check_columns(&mut row, s);
    for (name, v) in CLASSES.iter().zip(&classes) {
        row.set(name, v.to_string());
    }
    row.set("hrsp_other", "0");
    row.set("req_tot", reqs.to_string());
    row.set("addr", super::address(s));
    row.set("mode", "http");
    row
}

/// The last check's columns (status, code, duration in ms, description), left empty for a
/// server without checks.
fn check_columns(row: &mut Row, s: &Server) {
    let Some(c) = last_check(s) else { return };
    row.set("check_status", c.status.as_str());
    if let Some(code) = c.code {
        row.set("check_code", code.to_string());
    }
    row.set("check_duration", c.duration.as_millis().to_string());
    let desc = if c.detail.is_empty() {
        c.status.description().to_string()
    } else {
        c.detail
    };
    row.set("check_desc", csv_field(&desc));
}

/// A pool's `BACKEND` row (`type` 1, `sid` 0): its queue and its servers' `sum`; `UP` while
/// any server is.
fn backend_row(p: &Pool, pid: usize, sum: &Sum) -> Row {
    let mut row = Row::new();
    row.set("pxname", csv_field(&p.name));
    row.set("svname", "BACKEND");
    row.set("qcur", p.queue.len().to_string());
    row.set("qmax", p.queue.max_seen.load(Relaxed).to_string());
    row.set("scur", sum.scur.to_string());
    row.set("stot", sum.stot.to_string());
    row.set("econ", sum.econ.to_string());
    row.set("wredis", sum.wredis.to_string());
    row.set("status", if sum.up > 0 { "UP" } else { "DOWN" });
    row.set("act", sum.act.to_string());
    row.set("bck", sum.bck.to_string());
    row.set("qlimit", p.queue.config.max.to_string());
    row.set("pid", "1");
    row.set("iid", (pid + 1).to_string());
    row.set("sid", "0");
    row.set("lbtot", sum.stot.to_string());
    row.set("type", "1");
    for (name, v) in CLASSES.iter().zip(&sum.classes) {
        row.set(name, v.to_string());
    }
    row.set("req_tot", sum.stot.to_string());
    row.set("mode", "http");
    row.set("algo", csv_field(&p.balance.haproxy_name()));
    row
}

/// A listener's `FRONTEND` row (`type` 0, `sid` 0; `iid` after the pools'), as HAProxy fills
/// a frontend's: sessions open (`scur`) and in all (`stot`: connections not refused before
/// HTTP), bytes, requests refused by a rule (`dreq`: `deny`/`allow`, `rate_limit`) and
/// answered as malformed, too large or too slow (`ereq`), the last second's rates, responses
/// by class, connections in all (`conn_tot`) and refused at once (`dcon`: per-client limit,
/// PROXY header), the most open at once (`smax`, read once a second) and the limit (`slim`:
/// `[server] max_connections`, which is the process's, over every listener); `pxname` is the
/// listener's address.
fn frontend_row(l: &crate::session::counters::Listener, iid: usize, limit: usize) -> Row {
    use crate::session::counters::Refusal;
    let t = l.totals();
    let r = l.rates();
    let mut row = Row::new();
    row.set("pxname", csv_field(&l.name));
    row.set("svname", "FRONTEND");
    row.set("scur", t.open.to_string());
    row.set("smax", r.open_max.max(t.open).to_string());
    row.set("slim", limit.to_string());
    row.set(
        "stot",
        (t.accepted.saturating_sub(t.refused_total())).to_string(),
    );
    row.set("bin", t.bytes_in.to_string());
    row.set("bout", t.bytes_out.to_string());
    row.set("dreq", (t.denied + t.rate_limited).to_string());
    row.set("ereq", t.bad_requests.to_string());
    row.set("status", "OPEN");
    row.set("pid", "1");
    row.set("iid", (iid + 1).to_string());
    row.set("sid", "0");
    row.set("type", "0");
    let rate = |v: f64| format!("{}", v.round() as u64);
    row.set("rate", rate(r.conn));
    row.set("rate_max", rate(r.conn_max));
    for (i, name) in CLASSES.iter().enumerate() {
        row.set(name, t.classes[i].to_string());
    }
    row.set("hrsp_other", t.classes[5].to_string());
    row.set("req_rate", rate(r.req));
    row.set("req_rate_max", rate(r.req_max));
    row.set("req_tot", t.requests().to_string());
    row.set("mode", "http");
    row.set("conn_rate", rate(r.conn));
    row.set("conn_rate_max", rate(r.conn_max));
    row.set("conn_tot", t.accepted.to_string());
    let dcon = t.refused[Refusal::Limit as usize] + t.refused[Refusal::ProxyProtocol as usize];
    row.set("dcon", dcon.to_string());
    row
}

/// A field quoted as CSV needs it (a comma, quote or line break inside; quotes doubled).
fn csv_field(v: &str) -> String {
    if v.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", v.replace('"', "\"\""))
    } else {
        v.to_string()
    }
}
