//! `[dns]` (the resolver servers' names go through) and a pool's `dns_*` keys, validated; a
//! server address that names a host (`api.internal:8080`) rather than an IP address.

use super::raw::{At, RawDns, RawPoolSettings};
use super::Diag;
use std::net::SocketAddr;
use std::time::Duration;

/// How long one query to a name server may take when `[dns] timeout` is not set.
pub const DEFAULT_DNS_TIMEOUT: Duration = Duration::from_secs(2);
/// The shortest time an answer is kept before it is asked again (`dns_min_ttl`).
pub const DEFAULT_DNS_MIN_TTL: Duration = Duration::from_secs(1);
/// The longest (`dns_max_ttl`).
pub const DEFAULT_DNS_MAX_TTL: Duration = Duration::from_secs(300);
/// The shortest `dns_min_ttl` allowed: a name is never asked more often.
pub const MIN_DNS_TTL: Duration = Duration::from_millis(100);

/// `[dns]`: where server names are resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DnsSettings {
    /// Name servers asked instead of the system's (`/etc/resolv.conf`); empty: the system's.
    pub servers: Vec<SocketAddr>,
    /// How long one query may take.
    pub timeout: Duration,
    /// Which records become servers.
    pub family: DnsFamily,
}

impl Default for DnsSettings {
    fn default() -> Self {
        DnsSettings {
            servers: Vec::new(),
            timeout: DEFAULT_DNS_TIMEOUT,
            family: DnsFamily::Both,
        }
    }
}

/// `[dns] family`: A and AAAA records (`both`), or only one of them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DnsFamily {
    Both,
    Ipv4,
    Ipv6,
}

/// A pool's rules for its servers named by DNS.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DnsPolicy {
    /// An answer is asked again after its TTL, but never sooner than this...
    pub min_ttl: Duration,
    /// ...nor later than this.
    pub max_ttl: Duration,
    /// A name may resolve to nothing (at start, and later: its servers are then removed);
    /// otherwise that is an error at start and a stale answer later.
    pub allow_empty: bool,
}

impl Default for DnsPolicy {
    fn default() -> Self {
        DnsPolicy {
            min_ttl: DEFAULT_DNS_MIN_TTL,
            max_ttl: DEFAULT_DNS_MAX_TTL,
            allow_empty: false,
        }
    }
}

impl DnsPolicy {
    /// When an answer whose records live `ttl` is asked again.
    pub fn refresh_after(&self, ttl: Duration) -> Duration {
        ttl.clamp(self.min_ttl, self.max_ttl)
    }
}

/// A server written as `host:port` with a host name: resolved at start, then again in the
/// background; every address becomes a server.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct DnsName {
    /// Lower case, without a trailing dot.
    pub host: String,
    /// 0 for an SRV name (the records give the ports).
    pub port: u16,
    /// A pool's `srv`: the name's SRV records give the servers, their ports and weights.
    pub srv: bool,
}

/// `host:port` with a host name (not an IP address, not `unix:`); `None` otherwise, or when
/// the host is not a valid name (the address is then checked as before and reported).
pub fn dns_name(text: &str) -> Option<DnsName> {
    if text.starts_with("unix:") || text.parse::<SocketAddr>().is_ok() {
        return None;
    }
    let (host, port) = text.rsplit_once(':')?;
    let port: u16 = port.parse().ok()?;
    let host = host.trim_end_matches('.').to_ascii_lowercase();
    if host.parse::<std::net::IpAddr>().is_ok() || !valid_name(&host) {
        return None;
    }
    Some(DnsName {
        host,
        port,
        srv: false,
    })
}

/// A pool's `srv` name (`_http._tcp.api.service.consul`); `None` when it is not a valid name.
pub fn srv_name(text: &str) -> Option<DnsName> {
    let host = text.trim_end_matches('.').to_ascii_lowercase();
    valid_name(&host).then_some(DnsName {
        host,
        port: 0,
        srv: true,
    })
}

/// RFC 1123 host name: labels of letters, digits and `-` (`_` too, as SRV owners have it), not
/// starting or ending with `-`, the last not all digits (`300.1.2.3` is a bad address, not a
/// name); at most 253 bytes.
pub fn valid_name(host: &str) -> bool {
    !host.is_empty()
        && host.len() <= 253
        && !host
            .rsplit('.')
            .next()
            .unwrap_or("")
            .bytes()
            .all(|b| b.is_ascii_digit())
        && host.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
                && !label.starts_with('-')
                && !label.ends_with('-')
        })
}

/// `[dns]`, validated: name servers as `ip` (port 53) or `ip:port`, a timeout above zero, a
/// family of `both`, `ipv4` or `ipv6`.
pub(crate) fn settings(raw: &RawDns, diag: &mut Diag) -> DnsSettings {
    let mut out = DnsSettings::default();
    for s in &raw.servers {
        let addr = s.value.parse::<SocketAddr>().or_else(|_| {
            s.value
                .trim_start_matches('[')
                .trim_end_matches(']')
                .parse::<std::net::IpAddr>()
                .map(|ip| SocketAddr::new(ip, 53))
        });
        match addr {
            Ok(a) => out.servers.push(a),
            Err(_) => diag.error(
                s.line,
                Some("servers"),
                format!(
                    "`[dns] servers`: `{}` is not an IP address (with an optional port: 10.0.0.2:53)",
                    s.value
                ),
            ),
        }
    }
    if let Some(t) = &raw.timeout {
        if t.value.is_zero() {
            diag.error(t.line, Some("timeout"), "`timeout` must be more than zero");
        } else {
            out.timeout = t.value;
        }
    }
    if let Some(f) = &raw.family {
        out.family = match f.value.to_ascii_lowercase().as_str() {
            "both" => DnsFamily::Both,
            "ipv4" => DnsFamily::Ipv4,
            "ipv6" => DnsFamily::Ipv6,
            other => {
                diag.error(
                    f.line,
                    Some("family"),
                    format!("`family` must be \"both\", \"ipv4\" or \"ipv6\", not `{other}`"),
                );
                DnsFamily::Both
            }
        };
    }
    out
}

/// A pool's `dns_min_ttl`, `dns_max_ttl` and `dns_allow_empty`, its own or `[defaults]`'; the
/// minimum at least 100ms and not above the maximum.
pub(crate) fn policy(s: &RawPoolSettings, d: &RawPoolSettings, diag: &mut Diag) -> DnsPolicy {
    let pick = |own: &Option<At<Duration>>, def: &Option<At<Duration>>| own.clone().or(def.clone());
    let mut p = DnsPolicy {
        allow_empty: s.dns_allow_empty.or(d.dns_allow_empty).unwrap_or(false),
        ..DnsPolicy::default()
    };
    let min = pick(&s.dns_min_ttl, &d.dns_min_ttl);
    let max = pick(&s.dns_max_ttl, &d.dns_max_ttl);
    if let Some(m) = &min {
        if m.value < MIN_DNS_TTL {
            diag.error(
                m.line,
                Some("dns_min_ttl"),
                "`dns_min_ttl` must be at least 100ms",
            );
        } else {
            p.min_ttl = m.value;
        }
    }
    if let Some(m) = &max {
        p.max_ttl = m.value;
    }
    if p.max_ttl < p.min_ttl {
        let line = max.as_ref().or(min.as_ref()).map_or(0, |a| a.line);
        diag.error(
            line,
            Some("dns_max_ttl"),
            format!(
                "`dns_max_ttl` ({:?}) is below `dns_min_ttl` ({:?})",
                p.max_ttl, p.min_ttl
            ),
        );
        p.max_ttl = p.min_ttl;
    }
    p
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_addresses() {
        assert_eq!(
            dns_name("API.internal.:8080"),
            Some(DnsName {
                host: "api.internal".into(),
                port: 8080,
                srv: false,
            })
        );
        assert_eq!(dns_name("127.0.0.1:80"), None);
        assert_eq!(dns_name("[::1]:80"), None);
        assert_eq!(dns_name("unix:/run/x.sock"), None);
        assert_eq!(dns_name("api.internal"), None, "no port");
        assert_eq!(dns_name("-bad.example:80"), None);
        assert_eq!(dns_name("a b:80"), None);
        assert_eq!(dns_name("300.1.2.3:80"), None, "a bad address");
    }

    #[test]
    fn refresh_is_clamped() {
        let p = DnsPolicy {
            min_ttl: Duration::from_secs(2),
            max_ttl: Duration::from_secs(60),
            allow_empty: false,
        };
        assert_eq!(p.refresh_after(Duration::ZERO), Duration::from_secs(2));
        assert_eq!(
            p.refresh_after(Duration::from_secs(30)),
            Duration::from_secs(30)
        );
        assert_eq!(
            p.refresh_after(Duration::from_secs(86400)),
            Duration::from_secs(60)
        );
    }
}
