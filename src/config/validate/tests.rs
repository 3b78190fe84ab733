//! Validation tests.

use super::*;

#[test]
fn method_names_are_lenient() {
    for n in [
        "Round-Robin",
        "RoundRobin",
        "round_robin",
        "lockless-round-robin",
        "Locking Round Robin",
    ] {
        assert_eq!(parse_balance(n), Some(BalanceMethod::RoundRobin), "{n}");
    }
    assert_eq!(
        parse_balance("First-Alive"),
        Some(BalanceMethod::FirstAlive)
    );
    assert_eq!(
        parse_balance("Least-Connections"),
        Some(BalanceMethod::LeastConnections)
    );
    assert_eq!(parse_balance("Naïve"), None);
    assert_eq!(parse_balance("NAIVE"), Some(BalanceMethod::Naive));
    assert_eq!(parse_balance("fastest"), None);
}

#[test]
fn repeated_server_adds_weight() {
    let text = "[PROXY_ENTRY]\nServerList 127.0.0.1:80 127.0.0.1:81 127.0.0.1:80 127.0.0.1:82 127.0.0.1:80 127.0.0.1:81\nLoadBalancer RoundRobin\nMatch ^/.*\n";
    let c = parse_str("t", text, false).unwrap();
    let w: Vec<(u16, u32)> = c.pools[0]
        .servers
        .iter()
        .map(|s| (s.addr.port(), s.weight))
        .collect();
    assert_eq!(w, vec![(80, 3), (81, 2), (82, 1)]);
}

#[test]
fn toml_reports_every_error_with_lines() {
    let text = "[server]\nlisten = [\"127.0.0.1:8080\"]\nworkrs = 2\n\n[[route]]\nmatch = ['(']\npool = \"web\"\n\n[pools.web]\nservers = [\"127.0.0.1:notaport\"]\nbalance = \"round-robbin\"\n";
    let errs = parse_str("t.toml", text, true).unwrap_err().0;
    let lines: Vec<usize> = errs.iter().map(|e| e.line).collect();
    assert_eq!(lines, vec![3, 6, 10, 11], "{errs:?}");
    assert!(
        errs[0].message.contains("did you mean `workers`"),
        "{}",
        errs[0].message
    );
    assert!(
        errs[3].message.contains("round-robin"),
        "{}",
        errs[3].message
    );
}

#[test]
fn defaults_are_copied_into_pools() {
    let text = "[defaults]\nbalance = \"least-connections\"\nattempts = 5\noffline_timeout = \"0s\"\n[[route]]\nmatch = ['.']\npool = \"a\"\n[pools.a]\nservers = [\"127.0.0.1:1\"]\n[pools.b]\nbalance = \"first-alive\"\nservers = [\"127.0.0.1:2\"]\n";
    let c = parse_str("t.toml", text, true).unwrap();
    assert_eq!(c.pools[0].balance, BalanceMethod::LeastConnections);
    assert_eq!(c.pools[0].attempts, 5);
    assert_eq!(c.pools[0].offline_timeout, Duration::ZERO);
    assert_eq!(c.pools[1].balance, BalanceMethod::FirstAlive);
    assert_eq!(c.warnings.len(), 1, "pool b is unused: {:?}", c.warnings);
}

#[test]
fn unknown_pool_is_named() {
    let text =
        "[[route]]\nmatch = ['.']\npool = \"statc\"\n[pools.static]\nservers = [\"127.0.0.1:1\"]\n";
    let errs = parse_str("t.toml", text, true).unwrap_err().0;
    assert_eq!(errs.len(), 1);
    assert_eq!(errs[0].line, 3);
    assert!(errs[0].message.contains("did you mean `static`"));
}

#[test]
fn checks_merge_per_server_and_report_bad_values() {
    let text = r#"
[[route]]
match = ['^/']
pool = "p"
[pools.p]
observe = "layer7"
error_limit = 3
on_error = "mark-down"
on_marked_down = "shutdown-sessions"
server = [
  { address = "127.0.0.1:1" },
  { address = "127.0.0.1:2", check = false },
  { address = "127.0.0.1:3", backup = true, check = { path = "/deep", rise = 5 } },
]
[pools.p.check]
type = "http"
path = "/health"
interval = "1s"
expect_status = ["2xx", 301]
disable_on_404 = true
"#;
    let c = parse_str("t.toml", text, true).unwrap();
    let p = &c.pools[0];
    let s0 = p.servers[0].check.as_ref().unwrap();
    assert_eq!(
        (s0.kind, s0.path.as_str(), s0.rise, s0.fall),
        (CheckKind::Http, "/health", 2, 3)
    );
    assert_eq!(
        s0.expect_status,
        vec![StatusMatch::Class(2), StatusMatch::Code(301)]
    );
    assert_eq!(s0.fastinter, Duration::from_millis(500));
    assert!(s0.disable_on_404);
    assert!(p.servers[1].check.is_none(), "check = false");
    let s2 = p.servers[2].check.as_ref().unwrap();
    assert_eq!(
        (s2.path.as_str(), s2.rise, s2.interval),
        ("/deep", 5, Duration::from_secs(1))
    );
    assert!(p.servers[2].backup);
    assert_eq!(p.observe.unwrap().on_error, OnError::MarkDown);
    assert!(p.shutdown_sessions_on_down && !p.shutdown_backup_sessions_on_up);

    let bad = "[[route]]\nmatch = ['^/']\npool = \"p\"\n[pools.p]\nservers = [\"127.0.0.1:1\"]\nobserve = \"layer9\"\non_error = \"mark-dwn\"\n[pools.p.check]\ntype = \"icmp\"\nrise = 0\nexpect_status = [\"7xx\"]\nintreval = \"1s\"\n";
    let errs = parse_str("t.toml", bad, true).unwrap_err().0;
    let text: Vec<String> = errs.iter().map(|e| e.to_string()).collect();
    assert!(
        text.iter()
            .any(|e| e.contains(":12: unknown key `intreval`") && e.contains("interval")),
        "{text:?}"
    );
    assert!(text.iter().any(|e| e.contains(":6: `observe`")), "{text:?}");
    assert!(
        text.iter().any(|e| e.contains(":9: check `type`")),
        "{text:?}"
    );
    assert!(text.iter().any(|e| e.contains(":10: `rise`")), "{text:?}");
    assert!(
        text.iter().any(|e| e.contains(":11: `expect_status`")),
        "{text:?}"
    );
}

fn errors(file: &str, text: &str) -> Vec<String> {
    let toml = file.ends_with(".toml");
    match parse_str(file, text, toml) {
        Ok(_) => Vec::new(),
        Err(e) => e.0.iter().map(|e| e.to_string()).collect(),
    }
}

const ROUTE: &str = "[[route]]\nmatch = ['^/']\npool = 'p'\n[pools.p]\nservers = ['127.0.0.1:1']\n";

#[test]
fn listeners_that_take_the_same_connections_are_errors() {
    let cases: &[(&str, &str)] = &[
        // The same address twice in one list.
        (
            "[server]\nlisten = ['127.0.0.1:8080', '127.0.0.1:8080']\n",
            ":2: `listen`: 127.0.0.1:8080 is also a client listener on line 2",
        ),
        (
            "[server]\nlisten = [\n  '127.0.0.1:8080',\n  '127.0.0.1:8080',\n]\n",
            ":4: `listen`: 127.0.0.1:8080 is also a client listener on line 3",
        ),
        // A wildcard and a specific address on one port, either order, either family.
        (
            "[server]\nlisten = ['0.0.0.0:8080', '127.0.0.1:8080']\n",
            "127.0.0.1:8080 overlaps 0.0.0.0:8080",
        ),
        (
            "[server]\nlisten = ['127.0.0.1:8080', '0.0.0.0:8080']\n",
            "0.0.0.0:8080 overlaps 127.0.0.1:8080",
        ),
        (
            "[server]\nlisten = ['[::]:8080', '127.0.0.1:8080']\n",
            "127.0.0.1:8080 overlaps [::]:8080",
        ),
        (
            "[server]\nlisten = ['[::1]:8080', '[::]:8080']\n",
            "[::]:8080 overlaps [::1]:8080",
        ),
        // Across client, TLS and admin listeners.
        (
            "[server]\nlisten = ['127.0.0.1:8080']\n[admin]\nlisten = '127.0.0.1:8080'\n",
            ":4: `listen`: 127.0.0.1:8080 is also a client listener on line 2; the admin listener",
        ),
        (
            "[server]\nlisten = ['127.0.0.1:9090']\n",
            ":2: `listen`: 127.0.0.1:9090 is also the default admin listener",
        ),
        (
            "[admin]\nlisten = '127.0.0.1:8080'\n",
            ":2: `listen`: 127.0.0.1:8080 is also the default client listener",
        ),
        (
            "[admin]\nlisten = '0.0.0.0:9999'\n",
            ":2: the admin listener 0.0.0.0:9999 is not on loopback",
        ),
        (
            "[admin]\nlisten = '[::]:9999'\ntoken = ''\n",
            ":2: the admin listener [::]:9999 is not on loopback",
        ),
        (
            "[admin]\nlisten = '0.0.0.0:8080'\ntoken = 't'\n",
            "0.0.0.0:8080 overlaps 127.0.0.1:8080, the default client listener",
        ),
    ];
    for (text, want) in cases {
        let e = errors("t.toml", &format!("{text}{ROUTE}"));
        assert!(
            e.iter()
                .any(|e| e.contains(want) && e.starts_with("t.toml:")),
            "{text}\nwant {want}\ngot {e:?}"
        );
    }
    // TLS listeners are checked before their certificates are read.
    let e = errors("t.toml", &format!("[server]\nlisten = ['127.0.0.1:8443']\n[tls]\nlisten = ['127.0.0.1:8443']\ncertificates = [{{ cert = 'none.pem', key = 'none.key' }}]\n{ROUTE}"));
    assert!(
        e.iter().any(|e| e.contains(
            ":4: `listen`: 127.0.0.1:8443 is also a client listener on line 2; a TLS listener"
        )),
        "{e:?}"
    );
    // The legacy format names its lines too.
    let e = errors("t.conf", "[SERVER]\nListen 127.0.0.1:8080\nListen 127.0.0.1:8080\n[PROXY_ENTRY]\nServerList 127.0.0.1:1\nMatch /\n");
    assert!(
        e.iter().any(|e| e
            .starts_with("t.conf:3: `listen`: 127.0.0.1:8080 is also a client listener on line 2")),
        "{e:?}"
    );
    // Not overlapping: other ports, other addresses, other families, port 0.
    for ok in [
        "[server]\nlisten = ['127.0.0.1:8080', '127.0.0.1:8081']\n",
        "[server]\nlisten = ['127.0.0.1:8080', '127.0.0.2:8080']\n",
        "[server]\nlisten = ['127.0.0.1:8080', '[::1]:8080']\n",
        "[server]\nlisten = ['0.0.0.0:8080', '[::1]:8080']\n",
        "[server]\nlisten = ['127.0.0.1:0', '127.0.0.1:0']\n[admin]\nlisten = '127.0.0.1:0'\n",
    ] {
        let e = errors("t.toml", &format!("{ok}{ROUTE}"));
        assert!(e.is_empty(), "{ok}: {e:?}");
    }
}

/// Every key that takes a duration, in both formats, refuses a bare number and says to
/// write the unit; `0` needs none; the reference's `OfflineTimeOut` stays in seconds.
#[test]
fn durations_need_a_unit_everywhere() {
    let toml_keys: &[(&str, &str)] = &[
        ("[server]", "header_read_timeout"),
        ("[server]", "keepalive_timeout"),
        ("[server]", "body_timeout"),
        ("[server]", "request_timeout"),
        ("[server]", "shutdown_timeout"),
        ("[defaults]", "offline_timeout"),
        ("[defaults]", "connect_timeout"),
        ("[defaults]", "response_timeout"),
        ("[defaults]", "read_timeout"),
        ("[defaults]", "slowstart"),
        ("[defaults]", "overload_backoff"),
        ("[pools.p]", "offline_timeout"),
        ("[pools.p]", "slowstart"),
        ("[pools.p.queue]", "timeout"),
        ("[pools.p.queue]", "retry_after"),
        ("[pools.p.check]", "interval"),
        ("[pools.p.check]", "fastinter"),
        ("[pools.p.check]", "downinter"),
        ("[pools.p.check]", "timeout"),
        ("[cache]", "default_ttl"),
        ("[cache]", "min_ttl"),
        ("[cache]", "max_ttl"),
        ("[cache]", "lock_timeout"),
    ];
    let pool = "[[route]]\nmatch = ['^/']\npool = 'p'\ngrace = '1s'\n";
    for (section, key) in toml_keys {
        for value in ["2000", "'2000'", "1.5", "2_000"] {
            let servers = if section.starts_with("[pools.p") && *section != "[pools.p]" {
                "[pools.p]\nservers = ['127.0.0.1:1']\n"
            } else if *section == "[pools.p]" {
                ""
            } else {
                "[pools.p]\nservers = ['127.0.0.1:1']\n"
            };
            let own = if *section == "[pools.p]" {
                "servers = ['127.0.0.1:1']\n"
            } else {
                ""
            };
            let text = format!("{pool}{servers}{section}\n{own}{key} = {value}\n");
            let line = text
                .lines()
                .position(|l| l.starts_with(&format!("{key} =")))
                .unwrap()
                + 1;
            let e = errors("t.toml", &text);
            let digits = value.trim_matches('\'').replace('_', "");
            // A `check` table's keys are named `check.KEY`.
            let named = if section.ends_with(".check]") {
                format!("check.{key}")
            } else {
                key.to_string()
            };
            let want = format!("t.toml:{line}: `{named}`: `");
            assert!(
                e.iter().any(|e| e.starts_with(&want)
                    && e.contains(&format!("write \"{digits}ms\" or \"{digits}s\""))),
                "{section} {key} = {value}: {e:?}"
            );
        }
        let zero = format!("{pool}[pools.p]\nservers = ['127.0.0.1:1']\n{section}\n{key} = 0\n")
            .replace(
                "[pools.p]\nservers = ['127.0.0.1:1']\n[pools.p]\n",
                "[pools.p]\nservers = ['127.0.0.1:1']\n",
            );
        let e = errors("t.toml", &zero);
        assert!(
            e.iter().all(|e| !e.contains("no unit")),
            "{section} {key} = 0: {e:?}"
        );
    }
    let e = errors(
        "t.toml",
        "[[route]]\nmatch = ['^/']\npool = 'p'\ngrace = 30\n[pools.p]\nservers = ['127.0.0.1:1']\n",
    );
    assert!(
        e.iter()
            .any(|e| e.starts_with("t.toml:4: `grace`: `30` has no unit")),
        "{e:?}"
    );
    let ok = parse_str("t.toml", "[[route]]\nmatch = ['^/']\npool = 'p'\n[pools.p]\nservers = ['127.0.0.1:1']\n[pools.p.check]\ninterval = '2000ms'\n", true).unwrap();
    assert_eq!(
        ok.pools[0].servers[0].check.as_ref().unwrap().interval,
        Duration::from_secs(2)
    );

    // Legacy: every duration key but OfflineTimeOut.
    let entry = "[PROXY_ENTRY]\nServerList 127.0.0.1:1\nMatch /\n";
    for (section, key) in [
        ("[SERVER]", "HeaderReadTimeout"),
        ("[SERVER]", "KeepAliveTimeout"),
        ("[SERVER]", "BodyTimeout"),
        ("[SERVER]", "RequestTimeout"),
        ("[SERVER]", "ShutdownTimeout"),
        ("[PROXY_ENTRY]", "ConnectTimeout"),
        ("[PROXY_ENTRY]", "ResponseTimeout"),
        ("[PROXY_ENTRY]", "ReadTimeout"),
        ("[PROXY_ENTRY]", "Grace"),
        ("[PROXY_DEFAULTS]", "ConnectTimeout"),
        ("[CACHE]", "DefaultTTL"),
        ("[CACHE]", "MinTTL"),
        ("[CACHE]", "MaxTTL"),
        ("[CACHE]", "LockTimeout"),
    ] {
        let text = if section == "[PROXY_ENTRY]" {
            format!("{entry}{key} 2000\n")
        } else {
            format!("{section}\n{key} 2000\n{entry}")
        };
        let line = text.lines().position(|l| l.starts_with(key)).unwrap() + 1;
        let e = errors("t.conf", &text);
        assert!(
            e.iter()
                .any(|e| e.starts_with(&format!("t.conf:{line}: `{key}`: `2000` has no unit"))),
            "{section} {key}: {e:?}"
        );
    }
    let c = parse_str(
        "t.conf",
        &format!("{entry}OfflineTimeOut 5\nConnectTimeout 1500ms\n"),
        false,
    )
    .unwrap();
    assert_eq!(c.pools[0].offline_timeout, Duration::from_secs(5));
    assert_eq!(c.pools[0].connect_timeout, Duration::from_millis(1500));
}

/// A size without a unit is bytes, in both formats.
#[test]
fn a_bare_size_is_bytes() {
    let c = parse_str("t.toml", &format!("[server]\nmax_body_size = 1048576\nrequest_buffer = '4096'\nh2_window = 0x20000\n[cache]\nmax_size = 4_194_304\n{ROUTE}"), true).unwrap();
    assert_eq!(c.server.limits.max_body_size, 1 << 20);
    assert_eq!(c.server.limits.request_buffer, 4096);
    assert_eq!(c.server.h2.window, 0x20000);
    assert_eq!(c.cache.max_size, 4 << 20);
    let c = parse_str("t.conf", "[SERVER]\nMaxBodySize 2048\n[CACHE]\nMaxSize 8388608\n[PROXY_ENTRY]\nServerList 127.0.0.1:1\nMatch /\n", false).unwrap();
    assert_eq!(c.server.limits.max_body_size, 2048);
    assert_eq!(c.cache.max_size, 8 << 20);
}

#[test]
fn admin_hosts_and_reuse_port() {
    let c = parse_str("t.toml", &format!("[server]\nreuse_port = true\n[admin]\nhosts = ['Admin.Example.com.', '10.0.0.5', '[::1]']\n{ROUTE}"), true).unwrap();
    assert!(c.server.reuse_port);
    assert_eq!(c.admin.hosts, vec!["admin.example.com", "10.0.0.5", "::1"]);
    let e = errors(
        "t.toml",
        &format!(
            "[admin]\nhosts = ['http://admin.example.com', 'a.example:9090', 'a/b', '']\n{ROUTE}"
        ),
    );
    assert_eq!(
        e.iter()
            .filter(|e| e.starts_with("t.toml:2: `hosts`:"))
            .count(),
        4,
        "{e:?}"
    );
    let c = parse_str("t.conf", "[SERVER]\nReusePort On\n[ADMIN]\nHosts a.example b.example\n[PROXY_ENTRY]\nServerList 127.0.0.1:1\nMatch /\n", false).unwrap();
    assert!(c.server.reuse_port);
    assert_eq!(c.admin.hosts, vec!["a.example", "b.example"]);
}

#[test]
fn state_file_is_relative_to_the_configuration() {
    let c = parse_str(
        "/etc/langur/t.toml",
        &format!("[server]\nstate_file = 'state/servers'\n{ROUTE}"),
        true,
    )
    .unwrap();
    assert_eq!(
        c.server.state_file.as_deref(),
        Some(std::path::Path::new("/etc/langur/state/servers"))
    );
    let e = errors("t.toml", &format!("[server]\nstate_file = ''\n{ROUTE}"));
    assert!(
        e.iter().any(|e| e.starts_with("t.toml:2: `state_file`")),
        "{e:?}"
    );
}

#[test]
fn toml_syntax_error_has_a_line() {
    let errs = parse_str("t.toml", "[server]\nlisten = [\n", true)
        .unwrap_err()
        .0;
    assert_eq!(errs.len(), 1);
    assert!(errs[0].line >= 2, "{errs:?}");
}

#[test]
fn cache_rules_are_read_in_their_order_and_checked() {
    use crate::config::route::{IgnoreQuery, StatusSet};
    let route = "[[route]]\nmatch = ['^/']\npool = 'p'\ncache = true\n";
    let pools = "[pools.p]\nservers = ['127.0.0.1:1']\n";
    let text = format!(
        "{route}cache_ttl = {{ any = '1m', '5xx' = '10s', '404' = '1m', '200' = '10m' }}\n\
         cache_key = {{ ignore_query = ['utm_*', 'gclid'] }}\n{pools}"
    );
    let c = parse_str("t.toml", &text, true).unwrap();
    let rules = &c.routes[0].rules;
    let sets: Vec<StatusSet> = rules.cache_ttl.iter().map(|(s, _)| *s).collect();
    assert_eq!(
        sets,
        [
            StatusSet::Code(404),
            StatusSet::Code(200),
            StatusSet::Class(5),
            StatusSet::Any
        ],
        "exact codes, then classes, then any"
    );
    assert_eq!(rules.cache_ttl[1].1, Duration::from_secs(600));
    assert!(rules.ignore_query.ignores("utm_source") && !rules.ignore_query.ignores("id"));
    let whole = format!("{route}cache_key = {{ ignore_query = true }}\n{pools}");
    let c = parse_str("t.toml", &whole, true).unwrap();
    assert_eq!(c.routes[0].rules.ignore_query, IgnoreQuery::All);
    assert!(!c.routes[0].rules.is_empty());

    for (rule, error) in [
        ("cache_ttl = { '6xx' = '1m' }", "`6xx` is not a status"),
        ("cache_ttl = { '20' = '1m' }", "`20` is not a status"),
        ("cache_ttl = { '200' = 'soon' }", "`cache_ttl.200`"),
    ] {
        let errs = errors("t.toml", &format!("{route}{rule}\n{pools}"));
        assert!(
            errs.iter().any(|e| e.contains(":5:") && e.contains(error)),
            "{rule}: {errs:?}"
        );
    }
    let uncached = format!(
        "[[route]]\nmatch = ['^/']\npool = 'p'\ncache_ttl = {{ '200' = '1m' }}\n\
         cache_key = {{ ignore_query = true }}\n{pools}"
    );
    let c = parse_str("t.toml", &uncached, true).unwrap();
    let warned: Vec<String> = c.warnings.iter().map(|w| w.to_string()).collect();
    for key in ["`cache_ttl` has no effect", "`cache_key` has no effect"] {
        assert!(warned.iter().any(|w| w.contains(key)), "{warned:?}");
    }
}

#[test]
fn server_names_are_unique_in_a_pool() {
    let ok = "[[route]]\nmatch = ['^/']\npool = 'p'\n[pools.p]\nserver = [\n  { address = '127.0.0.1:1', name = 'a' },\n  { address = '127.0.0.1:2' },\n]\n";
    let c = parse_str("t.toml", ok, true).unwrap();
    let names: Vec<(&str, &str)> = c.pools[0]
        .servers
        .iter()
        .map(|s| (s.name.as_str(), s.address.as_str()))
        .collect();
    assert_eq!(
        names,
        [("a", "127.0.0.1:1"), ("127.0.0.1:2", "127.0.0.1:2")]
    );
    let bad = "[[route]]\nmatch = ['^/']\npool = 'p'\n[pools.p]\nserver = [\n  { address = '127.0.0.1:1', name = 'a' },\n  { address = '127.0.0.1:2', name = 'a' },\n  { address = '127.0.0.1:1', name = 'b' },\n  { address = '127.0.0.1:3', name = 'a/b' },\n  { address = '127.0.0.1:4', name = '127.0.0.1:5' },\n  { address = '127.0.0.1:5' },\n]\n";
    let e = errors("t.toml", bad);
    assert_eq!(e.len(), 4, "{e:?}");
    assert!(
        e[0].starts_with("t.toml:7: `name`") && e[0].contains("two servers named `a`"),
        "{e:?}"
    );
    assert!(
        e[1].starts_with("t.toml:8: `name`") && e[1].contains("has the address of server `a`"),
        "{e:?}"
    );
    assert!(
        e[2].starts_with("t.toml:9: `name`") && e[2].contains("`a/b`"),
        "{e:?}"
    );
    assert!(
        e[3].starts_with("t.toml:11: `name`") && e[3].contains("servers named `127.0.0.1:5`"),
        "{e:?}"
    );
}

#[test]
fn sticky_and_split_errors_name_their_line_and_key() {
    let text = "[[route]]\npath_prefix = '/'\npools = [{ pool = 'a', weight = 95 }, { pool = 'nope' }, { pool = 'a' }]\n[[route]]\npath = '/x'\npools = [{ pool = 'a', weight = 0 }]\n[[route]]\npath = '/y'\npool = 'a'\npools = [{ pool = 'a' }]\n[pools.a]\nservers = ['127.0.0.1:1']\nsticky = { cookie = 'S R V', mode = 'insert' }\n[pools.b]\nservers = ['127.0.0.1:2']\nsticky = { cookie = 'JS', mode = 'prefix', max_age = '1h' }\n[pools.c]\nservers = ['127.0.0.1:3']\nsticky = { mode = 'rewrite', cookie = 'X', secret = 'short' }\n";
    let e = errors("t.toml", text);
    for want in [
        "t.toml:3: `pools` names pool `nope`, which is not defined",
        "t.toml:3: `pools` names pool `a` twice",
        "t.toml:6: the weights of `pools` are all 0",
        "t.toml:10: a route with `pools` (a traffic split) has no `pool`",
        "t.toml:13: `sticky.cookie` must be a cookie name",
        "t.toml:16: `sticky.max_age` is for mode \"insert\"",
        "t.toml:19: `sticky.mode` must be \"insert\" or \"prefix\", not `rewrite`",
    ] {
        assert!(e.iter().any(|x| x.starts_with(want)), "{want}\n{e:#?}");
    }
    let ok = "[[route]]\npath_prefix = '/'\npools = [{ pool = 'a', weight = 95 }, { pool = 'b', weight = 5 }]\n[pools.a]\nservers = ['127.0.0.1:1']\nsticky = { cookie = 'SRV', max_age = '1h', secure = true, httponly = false, domain = 'example.com', secret = 'sixteen chars at least' }\n[pools.b]\nservers = ['127.0.0.1:2']\n";
    let c = parse_str("t.toml", ok, true).unwrap();
    assert_eq!(c.routes[0].split, [(0, 95), (1, 5)]);
    let s = c.pools[0].sticky.as_ref().unwrap();
    assert_eq!(
        (s.max_age, s.secure, s.httponly),
        (Some(Duration::from_secs(3600)), Some(true), false)
    );
}

#[test]
fn cluster_keys_are_checked_with_their_lines() {
    let e = errors(
        "c.toml",
        &format!("{ROUTE}[cluster]\nredis = 'http://x'\nprefx = 'a:'\ntimeout = '0s'\n"),
    );
    assert!(
        e.iter()
            .any(|e| e.contains("c.toml:7") && e.contains("not a Redis URL")),
        "{e:?}"
    );
    assert!(
        e.iter()
            .any(|e| e.contains("c.toml:8") && e.contains("did you mean `prefix`")),
        "{e:?}"
    );
    assert!(
        e.iter()
            .any(|e| e.contains("c.toml:9") && e.contains("`timeout`")),
        "{e:?}"
    );
    let e = errors("c.toml", "[cluster]\nname = 'a'\n");
    assert!(e.iter().any(|e| e.contains("needs `redis")), "{e:?}");
    let e = errors(
        "c.toml",
        "[cluster]\nname = 'a'\nredis = 'redis+sentinel://s1:26379,s2:x/m'\n",
    );
    assert!(
        e.iter()
            .any(|e| e.contains("c.toml:3") && e.contains("`redis`") && e.contains("not a port")),
        "{e:?}"
    );
    let e = errors("c.toml", "[cluster]\nredis = 'redis+sentinel://s1:26379'\n");
    assert!(
        e.iter()
            .any(|e| e.contains("c.toml:2") && e.contains("no master name")),
        "{e:?}"
    );
    let limited = "[[route]]\nmatch = ['^/']\npool = 'p'\nrate_limit = { rate = '1/s', scope = 'cluster' }\n[pools.p]\nservers = ['127.0.0.1:1']\n";
    let e = errors("c.toml", limited);
    assert!(
        e.iter()
            .any(|e| e.contains("c.toml:4") && e.contains("needs a [cluster]")),
        "{e:?}"
    );
    let ok = format!("{limited}[cluster]\nredis = 'redis://127.0.0.1:6379/0'\n");
    let c = parse_str("c.toml", &ok, true).unwrap();
    let cl = c.cluster.unwrap();
    assert_eq!(
        (cl.prefix.as_str(), cl.timeout),
        ("langur:", Duration::from_millis(5))
    );
    assert_eq!(
        c.routes[0].rules.rate_limit.as_ref().unwrap().scope,
        crate::config::route::LimitScope::Cluster
    );
}

#[test]
fn the_shared_cache_needs_a_cluster_and_a_size_it_can_keep() {
    let route = "[[route]]\nmatch = ['^/']\npool = 'p'\ncache = true\n[pools.p]\nservers = ['127.0.0.1:1']\n";
    let alone = format!(
        "{route}[cache]\nmax_object_size = '1k'\nshared = true\nshared_max_object_size = '2k'\n"
    );
    let e = errors("c.toml", &alone);
    assert!(
        e.iter()
            .any(|e| e.contains("c.toml:9") && e.contains("needs a [cluster]")),
        "{e:?}"
    );
    assert!(
        e.iter()
            .any(|e| e.contains("c.toml:10") && e.contains("larger than `max_object_size`")),
        "{e:?}"
    );
    let ok =
        format!("{route}[cache]\nshared = true\n[cluster]\nredis = 'redis://127.0.0.1:6379/0'\n");
    let c = parse_str("c.toml", &ok, true).unwrap();
    assert!(c.cache.shared);
    assert_eq!(c.cache.shared_max_object_size, 1 << 20);
    let off = parse_str("c.toml", route, true).unwrap();
    assert!(!off.cache.shared);
}

/// Keys inside tables are named whole (`check.path`, not `path`, which reads as the route's),
/// and a negative size says so.
#[test]
fn nested_keys_and_negative_sizes_are_named_plainly() {
    let route = "[[route]]\nmatch = ['^/']\npool = 'p'\n";
    for (text, want) in [
        (
            format!("{route}[pools.p]\nservers = ['127.0.0.1:1']\ncheck = {{ path = 5 }}\n"),
            "t.toml:6: `check.path` must be a string",
        ),
        (
            format!("{route}[pools.p]\nservers = ['127.0.0.1:1']\n[cache]\nmax_size = -1\n"),
            "t.toml:7: `max_size` must not be negative",
        ),
        (
            format!(
                "{route}cache_ttl = {{ '6xx' = '1m' }}\n[pools.p]\nservers = ['127.0.0.1:1']\n"
            ),
            "t.toml:4: `cache_ttl`: `6xx` is not a status",
        ),
    ] {
        let e = errors("t.toml", &text);
        assert!(e.iter().any(|x| x.starts_with(want)), "{want}\n{e:#?}");
    }
}

/// A duration past 10 years is refused wherever it is written, naming its line and key (a
/// huge `default_ttl` or `lock_timeout` overflowed the shared cache's expiry and lock).
#[test]
fn durations_past_ten_years_are_errors_on_their_line() {
    for (key, section) in [
        ("default_ttl", "[cache]"),
        ("min_ttl", "[cache]"),
        ("lock_timeout", "[cache]"),
        ("request_timeout", "[server]"),
    ] {
        let text = format!("{section}\n{key} = \"18446744073709551615s 999ms\"\n{ROUTE}");
        let errs = errors("l.toml", &text);
        assert!(
            errs.iter()
                .any(|e| e.contains(&format!("l.toml:2: `{key}`")) && e.contains("10 years")),
            "{key}: {errs:?}"
        );
    }
    let legacy =
        "[PROXY_ENTRY]\nServerList 127.0.0.1:1\nMatch /\nOfflineTimeOut 18446744073709551615\n";
    let errs = errors("l.conf", legacy);
    assert!(errs.iter().any(|e| e.contains("10 years")), "{errs:?}");
}

/// Numbers past what langur's arithmetic holds are refused on their line, naming their key:
/// sizes past 1 PiB, a rate limit's burst past 10 years of its rate, an HSTS `max-age` that is
/// not a number; and a legacy file's key is named as the file writes it.
#[test]
fn numbers_past_their_bounds_are_errors_on_their_line() {
    let cases = [
        (
            "[cache]\nmax_object_size = \"16 EiB\"\n",
            "l.toml:2: `max_object_size`",
        ),
        (
            "[cache]\nmax_size = \"99999999999 TiB\"\n",
            "l.toml:2: `max_size`",
        ),
        (
            "[server]\nmax_body_size = \"2 PiB\"\n",
            "l.toml:2: `max_body_size`",
        ),
    ];
    for (text, want) in cases {
        let errs = errors("l.toml", &format!("{text}{ROUTE}"));
        assert!(
            errs.iter().any(|e| e.contains(want) && e.contains("1 PiB")),
            "{want}: {errs:?}"
        );
    }
    let limited = "[[route]]\nmatch = ['^/']\npool = 'p'\nrate_limit = { key = 'route', rate = '1/d', burst = 213505 }\n[pools.p]\nservers = ['127.0.0.1:1']\n";
    let errs = errors("l.toml", limited);
    assert!(
        errs.iter()
            .any(|e| e.contains("l.toml:4: `rate_limit.burst`") && e.contains("10 years")),
        "{errs:?}"
    );
    let fine = limited.replace("213505", "3650");
    assert_eq!(errors("l.toml", &fine), Vec::<String>::new());
    for bad in [
        "max-age=abc",
        "max-age=-1",
        "max-age=99999999999999999999999999",
        "includeSubDomains",
    ] {
        let text = format!("[server]\nhsts = \"{bad}\"\n{ROUTE}");
        let errs = errors("l.toml", &text);
        assert!(
            errs.iter().any(|e| e.contains("l.toml:2: `hsts`")),
            "{bad}: {errs:?}"
        );
    }
    for good in [
        "max-age=63072000; includeSubDomains",
        "max-age=\\\"600\\\"",
        "preload; Max-Age=0",
    ] {
        let text = format!("[server]\nhsts = \"{good}\"\n[tls]\nlisten = ['127.0.0.1:0']\n{ROUTE}");
        let errs = errors("l.toml", &text);
        assert!(!errs.iter().any(|e| e.contains("hsts")), "{good}: {errs:?}");
    }
    let legacy = "[PROXY_ENTRY]\nServerList 127.0.0.1:1\nMatch /\nAttemptsCount -3\n";
    let errs = errors("l.conf", legacy);
    assert!(
        errs.iter()
            .any(|e| e.contains("l.conf:4: `AttemptsCount`") && !e.contains("`attempts`")),
        "{errs:?}"
    );
}
