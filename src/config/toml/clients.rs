//! `[server]`'s client-identity keys in TOML, read as written.

use super::{At, DeValue, Reader, Val};
use crate::config::raw::RawClients;

/// The keys [`Reader::client_key`] reads.
pub(super) const CLIENT_KEYS: &[&str] = &[
    "proxy_protocol",
    "proxy_protocol_from",
    "proxy_protocol_timeout",
    "trusted_proxies",
    "real_ip_header",
    "forwarded_headers",
    "forwarded",
    "x_real_ip",
];

impl Reader<'_> {
    /// A client-identity key of `[server]` into `c`; false when `k` is not one.
    pub(super) fn client_key(&mut self, c: &mut RawClients, k: &str, v: &Val<'_>) -> bool {
        match k {
            "proxy_protocol" => match v.get_ref() {
                DeValue::Boolean(b) => c.proxy_protocol = Some(At::new(*b, self.line(v.span()))),
                DeValue::String(_) | DeValue::Array(_) => {
                    c.proxy_protocol = Some(At::new(true, self.line(v.span())));
                    c.proxy_protocol_listeners = self.str_list(k, v);
                }
                _ => self.type_error(
                    k,
                    v,
                    "true, false, or a list of listener addresses (\"0.0.0.0:8443\")",
                ),
            },
            "proxy_protocol_from" => c.proxy_protocol_from = Some(self.str_list(k, v)),
            "proxy_protocol_timeout" => c.proxy_protocol_timeout = self.duration(k, v),
            "trusted_proxies" => c.trusted_proxies = self.str_list(k, v),
            "real_ip_header" => c.real_ip_header = self.string(k, v),
            "forwarded_headers" => c.forwarded_headers = self.string(k, v),
            "forwarded" => c.forwarded = self.string(k, v),
            "x_real_ip" => c.x_real_ip = self.bool(k, v),
            _ => return false,
        }
        true
    }
}
