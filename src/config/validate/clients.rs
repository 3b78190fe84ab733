//! `[server]`'s client-identity keys and a pool's `send_proxy`: trust lists, the PROXY
//! protocol's listeners, the forwarding fields (see docs/clients.md).

use super::*;
use crate::client_identity::{RealIpFrom, Trust, TrustEntry};

/// The client-identity settings; `listeners` are the client and TLS listeners, as configured
/// (what `proxy_protocol = [...]` may name).
pub(super) fn clients(
    raw: &RawConfig,
    listeners: &[ListenAddr],
    diag: &mut Diag,
) -> ClientSettings {
    let c = &raw.clients;
    let trusted = trust(&c.trusted_proxies, "trusted_proxies", diag);
    let real_ip_from = match &c.real_ip_header {
        None => RealIpFrom::default(),
        Some(v) => RealIpFrom::parse(&v.value).unwrap_or_else(|| {
            diag.error(v.line, Some("real_ip_header"), format!(
                "`real_ip_header` must be \"X-Forwarded-For\", \"Forwarded\" or \"X-Real-IP\", not `{}`",
                v.value
            ));
            RealIpFrom::default()
        }),
    };
    if let (Some(v), true) = (&c.real_ip_header, trusted.is_empty()) {
        diag.warn(
            v.line,
            Some("real_ip_header"),
            "`real_ip_header` has no effect without `trusted_proxies` (no peer's word is believed)",
        );
    }
    ClientSettings {
        proxy_protocol: proxy_protocol(c, listeners, diag),
        trusted,
        real_ip_from,
        forwarding: forwarding(c, diag),
    }
}

/// A trust list (`trusted_proxies`, `proxy_protocol_from`); bad entries are reported.
fn trust(list: &[At<String>], key: &str, diag: &mut Diag) -> Trust {
    let mut t = Trust::default();
    for e in list {
        match TrustEntry::parse(&e.value) {
            Ok(entry) => t.push(entry),
            Err(msg) => diag.error(e.line, Some(key), format!("`{key}`: {msg}")),
        }
    }
    t
}

/// `proxy_protocol` with the peers that may send the header (required) and the listeners it
/// covers (each must be one of `listeners`).
fn proxy_protocol(
    c: &RawClients,
    listeners: &[ListenAddr],
    diag: &mut Diag,
) -> Option<ProxyProtocolIn> {
    let timeout = nonzero(
        diag,
        c.proxy_protocol_timeout.as_ref(),
        "proxy_protocol_timeout",
        DEFAULT_PROXY_PROTOCOL_TIMEOUT,
    );
    let from = c
        .proxy_protocol_from
        .as_ref()
        .map(|l| trust(l, "proxy_protocol_from", diag));
    let on = match &c.proxy_protocol {
        Some(on) if on.value => on,
        _ => {
            if let Some(line) = l_first(&c.proxy_protocol_from) {
                diag.warn(
                    line,
                    Some("proxy_protocol_from"),
                    "`proxy_protocol_from` has no effect without `proxy_protocol = true`",
                );
            }
            return None;
        }
    };
    let from = match from {
        Some(f) if !f.is_empty() => f,
        _ => {
            diag.error(on.line, Some("proxy_protocol"), "`proxy_protocol` needs `proxy_protocol_from`: the networks your load balancers or proxies connect from, e.g. [\"10.0.0.0/8\"] ([\"0.0.0.0/0\", \"::/0\"] believes any peer)");
            Trust::default()
        }
    };
    let listeners = (!c.proxy_protocol_listeners.is_empty())
        .then(|| covered(&c.proxy_protocol_listeners, listeners, diag));
    Some(ProxyProtocolIn {
        listeners,
        from,
        timeout,
    })
}

/// The line of a list's first entry.
fn l_first(list: &Option<Vec<At<String>>>) -> Option<usize> {
    list.as_ref()?.first().map(|a| a.line)
}

/// The listeners `proxy_protocol = [...]` names; each must be a configured one.
fn covered(names: &[At<String>], listeners: &[ListenAddr], diag: &mut Diag) -> Vec<ListenAddr> {
    let mut out = Vec::new();
    for n in names {
        let addr = match listen_addr(&n.value) {
            Ok(a) => a,
            Err(e) => {
                diag.error(
                    n.line,
                    Some("proxy_protocol"),
                    format!("`proxy_protocol`: {e}"),
                );
                continue;
            }
        };
        if !listeners.contains(&addr) {
            let known: Vec<String> = listeners.iter().map(|l| l.to_string()).collect();
            diag.error(n.line, Some("proxy_protocol"), format!(
                "`proxy_protocol`: {} is none of the listeners ({}); name them as `listen` and [tls] `listen` do",
                n.value,
                known.join(", ")
            ));
            continue;
        }
        out.push(addr);
    }
    out
}

/// A listening address as written: `unix:PATH` (an absolute path) or `host:port`.
pub(super) fn listen_addr(text: &str) -> Result<ListenAddr, String> {
    match text.strip_prefix("unix:") {
        Some(path) if path.starts_with('/') => Ok(ListenAddr::Unix(path.into())),
        Some(_) => Err(format!(
            "`{text}`: a Unix-domain socket needs an absolute path (unix:/run/langur.sock)"
        )),
        None => resolve(text).map(ListenAddr::Tcp),
    }
}

/// `forwarded_headers`, `forwarded` and `x_real_ip`.
fn forwarding(c: &RawClients, diag: &mut Diag) -> Forwarding {
    let mut f = Forwarding::default();
    if let Some(v) = &c.forwarded_headers {
        match v.value.to_ascii_lowercase().as_str() {
            "replace" => f.append = false,
            "append" => f.append = true,
            _ => diag.error(v.line, Some("forwarded_headers"), format!(
                "`forwarded_headers` must be \"replace\" (the default: a client's own forwarding fields are dropped unless it is a trusted proxy) or \"append\", not `{}`",
                v.value
            )),
        }
    }
    if let Some(v) = &c.forwarded {
        let (x, rfc) = match v.value.to_ascii_lowercase().as_str() {
            "x-forwarded" => (true, false),
            "rfc7239" => (false, true),
            "both" => (true, true),
            _ => {
                diag.error(v.line, Some("forwarded"), format!(
                    "`forwarded` must be \"x-forwarded\" (X-Forwarded-For, -Proto, -Host), \"rfc7239\" (Forwarded) or \"both\", not `{}`",
                    v.value
                ));
                (true, false)
            }
        };
        f.x_forwarded = x;
        f.rfc7239 = rfc;
    }
    f.x_real_ip = c.x_real_ip.unwrap_or(false);
    f
}

/// A pool's `send_proxy` (its own, else `[defaults]`'s): `v1` or `v2`.
pub(super) fn send_proxy(
    v: Option<&At<String>>,
    protocol: Protocol,
    diag: &mut Diag,
) -> Option<SendProxy> {
    let v = v?;
    let version = match v.value.to_ascii_lowercase().as_str() {
        "v1" | "1" => SendProxy::V1,
        "v2" | "2" => SendProxy::V2,
        _ => {
            diag.error(
                v.line,
                Some("send_proxy"),
                format!(
                    "`send_proxy` must be \"v1\" (text) or \"v2\" (binary), not `{}`",
                    v.value
                ),
            );
            return None;
        }
    };
    if protocol == Protocol::H2 {
        diag.warn(v.line, Some("send_proxy"), "with protocol = \"h2\", `send_proxy` gives every request a connection of its own: an HTTP/2 connection is shared by every client, and a PROXY header names one");
    }
    Some(version)
}
