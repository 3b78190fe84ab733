//! Duration parsing and its bounds, limits read from both formats, key suggestions, error lines.

use super::*;

#[test]
fn durations() {
    assert!(parse_duration("10")
        .unwrap_err()
        .contains("\"10ms\" or \"10s\""));
    assert!(parse_duration("2000").is_err());
    assert!(parse_duration("1.5").is_err());
    assert!(parse_duration("1_000").is_err());
    assert_eq!(parse_duration("0").unwrap(), Duration::ZERO);
    assert_eq!(parse_duration("1.5s").unwrap(), Duration::from_millis(1500));
    assert_eq!(parse_duration_secs("10").unwrap(), Duration::from_secs(10));
    assert_eq!(
        parse_duration_secs("10ms").unwrap(),
        Duration::from_millis(10)
    );
    assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
    assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
    assert_eq!(parse_duration("0s").unwrap(), Duration::ZERO);
    assert!(parse_duration("ten").is_err());
    // Past 10 years: refused, however written (no overflow downstream).
    assert_eq!(parse_duration("3650d").unwrap(), MAX_DURATION);
    for huge in ["3651d", "18446744073709551615s 999ms", "1000years"] {
        assert!(parse_duration(huge)
            .unwrap_err()
            .contains("more than 10 years"));
    }
    assert!(parse_duration_secs("18446744073709551615").is_err());
    // Finer than a millisecond: refused (it would count as 0 ms, or be cut).
    for fine in ["500us", "1500us", "1ms 1ns"] {
        assert!(
            parse_duration(fine)
                .unwrap_err()
                .contains("whole milliseconds"),
            "{fine}"
        );
    }
    assert_eq!(parse_duration("2000us").unwrap(), Duration::from_millis(2));
    assert!(parse_duration("").is_err());
}

#[test]
fn limits_in_both_formats() {
    let t = parse_str(
        "l.toml",
        "[server]\nmax_body_size = \"2 MiB\"\nheader_read_timeout = \"5s\"\nmax_connections = 50\n",
        true,
    )
    .unwrap();
    assert_eq!(t.server.limits.max_body_size, 2 << 20);
    assert_eq!(t.server.limits.header_read_timeout, Duration::from_secs(5));
    assert_eq!(t.server.limits.max_connections, 50);
    let l = parse_str(
        "l.conf",
        "[SERVER]\nMaxUriLength 4096\nShutdownTimeout 3s\n",
        false,
    )
    .unwrap();
    assert_eq!(l.server.limits.max_uri_length, 4096);
    assert_eq!(l.server.limits.shutdown_timeout, Duration::from_secs(3));
    let e = parse_str(
        "bad.toml",
        "[server]\nmax_header_size = \"1k\"\nbody_timeout = \"0s\"\nmax_headers = 0\n",
        true,
    )
    .unwrap_err()
    .to_string();
    for want in [
        "bad.toml:2",
        "max_header_size",
        "bad.toml:3",
        "body_timeout",
        "bad.toml:4",
        "max_headers",
    ] {
        assert!(e.contains(want), "{want} missing from: {e}");
    }
}

#[test]
fn suggestions() {
    assert_eq!(
        suggest("ballance", &["balance", "attempts"]),
        Some("balance")
    );
    assert_eq!(suggest("zzz", &["balance", "attempts"]), None);
}

#[test]
fn lines() {
    assert_eq!(line_of("a\nb\nc", 0), 1);
    assert_eq!(line_of("a\nb\nc", 2), 2);
    assert_eq!(line_of("a\nb\nc", 99), 3);
}
