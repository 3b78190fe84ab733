//! `[server]` limits, `[tls]`, `[cache]`, and the sizes and paths they hold.

use super::*;

/// A byte size ([`crate::config::parse_size`]); `default` when absent or wrong (then said).
pub(super) fn size(diag: &mut Diag, v: Option<&At<String>>, key: &str, default: u64) -> u64 {
    let Some(v) = v else { return default };
    match crate::config::parse_size(&v.value) {
        Ok(b) => b,
        Err(e) => {
            diag.error(v.line, Some(key), format!("`{key}`: {e}"));
            default
        }
    }
}

/// A path from the config, relative to the config file's directory.
pub(super) fn config_path(diag: &Diag, p: &str) -> std::path::PathBuf {
    let path = std::path::Path::new(p);
    if path.is_absolute() {
        return path.to_path_buf();
    }
    match std::path::Path::new(&diag.file).parent() {
        Some(dir) if std::path::Path::new(&diag.file).is_file() => dir.join(path),
        _ => path.to_path_buf(),
    }
}

/// `[tls]`, when the file has it: its listeners (each added to `bound`) and the certificates
/// offered by SNI; both are required, certificates unless `[acme]` supplies them. `None` without `[tls]`, or (reported) when no
/// certificate loads or the server configuration cannot be built.
pub(super) fn tls_listen(
    raw: &RawConfig,
    diag: &mut Diag,
    bound: &mut Vec<Bound>,
) -> Option<TlsListen> {
    let line = raw.tls_line?;
    let mut listen = Vec::new();
    for a in &raw.tls_listen {
        match resolve(&a.value) {
            Ok(addr) => {
                listen.push(addr);
                bound.push((addr, Some(a.line), "a TLS listener"));
            }
            Err(e) => diag.error(a.line, Some("listen"), e),
        }
    }
    if listen.is_empty() {
        diag.error(line, Some("listen"), "[tls] needs `listen` addresses");
    }
    let mut entries = Vec::new();
    for entry in &raw.tls_certs {
        let (c, k) = (
            config_path(diag, &entry.cert.value),
            config_path(diag, &entry.key.value),
        );
        let clients = client_verifier(entry, diag);
        match crate::tls::load_identity(&c, &k) {
            Ok(identity) => entries.push(crate::tls::Entry { identity, clients }),
            Err(e) => diag.error(entry.cert.line, Some("certificates"), e),
        }
    }
    // Without files, `[acme]` supplies every certificate.
    if raw.tls_certs.is_empty() && raw.acme.is_none() {
        diag.error(
            line,
            Some("certificates"),
            "[tls] needs at least one certificate and key",
        );
    }
    if entries.is_empty() && (raw.acme.is_none() || !raw.tls_certs.is_empty()) {
        return None;
    }
    match crate::tls::Listener::new(entries, true, raw.acme.is_some()) {
        Ok(config) => Some(TlsListen {
            listen,
            config: std::sync::Arc::new(config),
        }),
        Err(e) => {
            diag.error(line, None, e);
            None
        }
    }
}

/// A certificate entry's verifier of client certificates: `client_ca` (PEM), `client_auth`
/// (`required`, the default, or `optional`) and `client_crl` (PEM CRL files). `None` without
/// `client_ca`; `client_auth` or `client_crl` without it, or a file that does not load, is an
/// error on its line.
fn client_verifier(
    entry: &RawCertificate,
    diag: &mut Diag,
) -> Option<std::sync::Arc<dyn rustls::server::danger::ClientCertVerifier>> {
    use crate::tls::ClientAuth;
    let auth = match entry.client_auth.as_ref() {
        None => ClientAuth::Required,
        Some(a) => match a.value.as_str() {
            "required" => ClientAuth::Required,
            "optional" => ClientAuth::Optional,
            other => {
                diag.error(
                    a.line,
                    Some("client_auth"),
                    format!("`client_auth` must be \"required\" or \"optional\", not `{other}`"),
                );
                ClientAuth::Required
            }
        },
    };
    let Some(ca) = &entry.client_ca else {
        if let Some(a) = entry.client_auth.as_ref().or(entry.client_crl.first()) {
            diag.error(
                a.line,
                Some("client_ca"),
                "`client_auth` and `client_crl` need `client_ca` (the CAs client certificates must come from)",
            );
        }
        return None;
    };
    let crls: Vec<_> = entry
        .client_crl
        .iter()
        .map(|c| config_path(diag, &c.value))
        .collect();
    let crl_refs: Vec<&std::path::Path> = crls.iter().map(|p| p.as_path()).collect();
    crate::tls::client_auth::verifier(&config_path(diag, &ca.value), &crl_refs, auth)
        .map_err(|e| diag.error(ca.line, Some("client_ca"), e))
        .ok()
}

/// `[server]`'s client limits; an unset key takes [`Limits::default`]'s value. Timeouts must be
/// more than zero; sizes are bytes within their ranges (`max_uri_length` at most
/// `max_header_size`).
pub(super) fn limits(l: &RawLimits, diag: &mut Diag) -> Limits {
    let d = Limits::default();
    // A timeout is its key's name, checked to be more than zero, or the default.
    macro_rules! time {
        ($key:ident) => {
            nonzero(diag, l.$key.as_ref(), stringify!($key), d.$key)
        };
    }
    // hyper's read buffer cannot be smaller than 8 KiB.
    let max_header_size = size_in(
        diag,
        l.max_header_size.as_ref(),
        "max_header_size",
        d.max_header_size as u64,
        8192..=(1 << 20),
    );
    let max_uri_length = size_in(
        diag,
        l.max_uri_length.as_ref(),
        "max_uri_length",
        d.max_uri_length as u64,
        16..=max_header_size,
    );
    let request_buffer = size_in(
        diag,
        l.request_buffer.as_ref(),
        "request_buffer",
        d.request_buffer as u64,
        0..=(64 << 20),
    );
    Limits {
        header_read_timeout: time!(header_read_timeout),
        keepalive_timeout: time!(keepalive_timeout),
        body_timeout: time!(body_timeout),
        request_timeout: time!(request_timeout),
        shutdown_timeout: time!(shutdown_timeout),
        max_header_size: max_header_size as usize,
        max_headers: ranged(diag, l.max_headers.as_ref(), "max_headers", 1, 1000)
            .map_or(d.max_headers, |n| n as usize),
        max_uri_length: max_uri_length as usize,
        max_body_size: size(
            diag,
            l.max_body_size.as_ref(),
            "max_body_size",
            d.max_body_size,
        ),
        max_connections: ranged(
            diag,
            l.max_connections.as_ref(),
            "max_connections",
            1,
            10_000_000,
        )
        .map_or(d.max_connections, |n| n as usize),
        request_buffer: request_buffer as usize,
        max_connections_per_client: ranged(
            diag,
            l.max_connections_per_client.as_ref(),
            "max_connections_per_client",
            0,
            10_000_000,
        )
        .map_or(d.max_connections_per_client, |n| n as usize),
    }
}

/// A size within `range`; out of it is an error naming the key, and the value is clamped.
pub(super) fn size_in(
    diag: &mut Diag,
    v: Option<&At<String>>,
    key: &str,
    default: u64,
    range: std::ops::RangeInclusive<u64>,
) -> u64 {
    let n = size(diag, v, key, default);
    if !range.contains(&n) {
        if let Some(at) = v {
            diag.error(
                at.line,
                Some(key),
                format!(
                    "`{key}` must be between {} and {} bytes, not {n}",
                    range.start(),
                    range.end()
                ),
            );
        }
    }
    n.clamp(*range.start(), *range.end())
}

/// `[cache]`; an unset key takes [`CacheConfig::default`]'s value, except `max_object_size`,
/// which is then at most a quarter of `max_size`.
pub(super) fn cache(c: &RawCache, cluster: bool, diag: &mut Diag) -> CacheConfig {
    let d = CacheConfig::default();
    let max_size = size(diag, c.max_size.as_ref(), "max_size", d.max_size);
    // Unset, the largest object is at most a quarter of the budget.
    let max_object_size = max_object_size(
        c.max_object_size.as_ref(),
        d.max_object_size.min(max_size / 4),
        max_size,
        diag,
    );
    let types = match &c.types {
        Some(list) => content_types(list, diag),
        None => d.types.clone(),
    };
    let min_ttl = c.min_ttl.as_ref().map_or(d.min_ttl, |v| v.value);
    let max_ttl = max_ttl(c, min_ttl, diag);
    CacheConfig {
        max_size,
        max_object_size,
        types,
        default_ttl: c.default_ttl.as_ref().map_or(d.default_ttl, |v| v.value),
        min_ttl,
        max_ttl,
        lock_timeout: c.lock_timeout.as_ref().map_or(d.lock_timeout, |v| v.value),
        max_variants: ranged(diag, c.max_variants.as_ref(), "max_variants", 1, 1024)
            .map_or(d.max_variants, |n| n as usize),
        store_private: c.store_private.unwrap_or(false),
        store_set_cookie: c.store_set_cookie.unwrap_or(false),
        store_authorized: c.store_authorized.unwrap_or(false),
        bypass_headers: match &c.bypass_headers {
            None => d.bypass_headers,
            Some(list) => bypass_headers(list, diag),
        },
        request_cookie: match c.request_cookie.as_ref() {
            None => d.request_cookie,
            Some(v) => request_cookie(v, diag).unwrap_or(d.request_cookie),
        },
        shared: shared(c.shared.as_ref(), cluster, diag),
        shared_max_object_size: shared_max_object_size(c, max_object_size, diag),
    }
}

/// `shared`, which needs `[cluster]` (its Redis).
fn shared(v: Option<&At<bool>>, cluster: bool, diag: &mut Diag) -> bool {
    match v {
        Some(at) if at.value && !cluster => {
            let msg = "`shared = true` needs a [cluster] section (its Redis)";
            diag.error(at.line, Some("shared"), msg);
            false
        }
        Some(at) => at.value,
        None => false,
    }
}

/// `shared_max_object_size`: at most `max_object_size` (only what is stored in memory is
/// shared); unset, the default or `max_object_size`, whichever is smaller.
fn shared_max_object_size(c: &RawCache, max_object_size: u64, diag: &mut Diag) -> u64 {
    let default = crate::config::DEFAULT_CACHE_SHARED_MAX_OBJECT_SIZE.min(max_object_size);
    let key = "shared_max_object_size";
    let n = size(diag, c.shared_max_object_size.as_ref(), key, default);
    if let Some(at) = c
        .shared_max_object_size
        .as_ref()
        .filter(|_| n > max_object_size)
    {
        diag.error(
            at.line,
            Some(key),
            format!("`{key}` ({n} bytes) is larger than `max_object_size` ({max_object_size} bytes): only what is kept in memory is shared"),
        );
    }
    n
}

/// The largest object kept, in bytes (`default` when unset); set larger than `max_size`, an
/// error.
fn max_object_size(v: Option<&At<String>>, default: u64, max_size: u64, diag: &mut Diag) -> u64 {
    let max_object_size = size(diag, v, "max_object_size", default);
    if max_object_size > max_size {
        if let Some(at) = v {
            diag.error(
                at.line,
                Some("max_object_size"),
                format!("`max_object_size` ({max_object_size} bytes) is larger than `max_size` ({max_size} bytes)"),
            );
        }
    }
    max_object_size
}

/// The content types kept, lowercased: `*`, `type/*` or `type/subtype`; others are reported
/// and left out.
fn content_types(list: &[At<String>], diag: &mut Diag) -> Vec<String> {
    let mut types = Vec::new();
    for t in list {
        let v = t.value.trim().to_ascii_lowercase();
        if is_type_pattern(&v) {
            types.push(v);
        } else {
            diag.error(
                t.line,
                Some("types"),
                format!(
                    "`{}` is not a content type pattern (write text/html, image/* or *)",
                    t.value
                ),
            );
        }
    }
    types
}

/// Whether a (lowercased) `types` entry is `*`, or a type and subtype both non-empty, the
/// type without `*` and the subtype `*` or without one.
fn is_type_pattern(v: &str) -> bool {
    v == "*"
        || v.split_once('/').is_some_and(|(a, b)| {
            !a.is_empty() && !b.is_empty() && !a.contains('*') && (b == "*" || !b.contains('*'))
        })
}

/// The longest lifetime given to a stored response: unset or zero is no bound; shorter than
/// `min_ttl`, an error.
fn max_ttl(c: &RawCache, min_ttl: Duration, diag: &mut Diag) -> Option<Duration> {
    let max_ttl = c.max_ttl.as_ref().map(|v| v.value).filter(|t| !t.is_zero());
    if let (Some(max), Some(at)) = (max_ttl, c.max_ttl.as_ref()) {
        if max < min_ttl {
            diag.error(
                at.line,
                Some("max_ttl"),
                "`max_ttl` is shorter than `min_ttl`",
            );
        }
    }
    max_ttl
}

/// The request fields that make a request bypass the cache; a name that is no header field
/// name is reported and left out.
fn bypass_headers(list: &[At<String>], diag: &mut Diag) -> Vec<http::HeaderName> {
    list.iter()
        .filter_map(
            |n| match http::HeaderName::from_bytes(n.value.trim().as_bytes()) {
                Ok(h) => Some(h),
                Err(_) => {
                    diag.error(
                        n.line,
                        Some("bypass_headers"),
                        format!("`{}` is not a header field name", n.value),
                    );
                    None
                }
            },
        )
        .collect()
}

/// What a request `Cookie` does to caching: `explicit`, `pass` or `ignore` (any case); `None`
/// (reported) for anything else.
fn request_cookie(v: &At<String>, diag: &mut Diag) -> Option<RequestCookie> {
    match v.value.to_ascii_lowercase().as_str() {
        "explicit" => Some(RequestCookie::Explicit),
        "pass" => Some(RequestCookie::Pass),
        "ignore" => Some(RequestCookie::Ignore),
        other => {
            diag.error(
                v.line,
                Some("request_cookie"),
                format!(
                    "`request_cookie = \"{other}\"`: expected \"explicit\", \"pass\" or \"ignore\""
                ),
            );
            None
        }
    }
}

/// The `max-age` of a `Strict-Transport-Security` value (RFC 6797 6.1.1: delta-seconds,
/// quoted or not); `None` when it has none that is a number.
pub(super) fn hsts_max_age(value: &str) -> Option<u64> {
    value.split(';').find_map(|d| {
        let (name, arg) = d.split_once('=')?;
        if !name.trim().eq_ignore_ascii_case("max-age") {
            return None;
        }
        let arg = arg.trim();
        let arg = arg
            .strip_prefix('"')
            .and_then(|a| a.strip_suffix('"'))
            .unwrap_or(arg);
        arg.bytes()
            .all(|b| b.is_ascii_digit())
            .then(|| arg.parse().ok())?
    })
}
