//! `[acme]`: certificates obtained and renewed automatically (RFC 8555) for the host names of
//! routes with `acme = true`, as written ([`RawAcme`]) and validated ([`AcmeConfig`]). See
//! docs/tls.md.

use super::raw::{At, RawConfig};
use super::Diag;
use std::path::{Path, PathBuf};

/// `[acme]` as read (unchecked).
#[derive(Debug, Default)]
pub(crate) struct RawAcme {
    pub directory: Option<At<String>>,
    pub directory_ca: Option<At<String>>,
    pub email: Option<At<String>>,
    pub storage: Option<At<String>>,
    pub challenge: Option<At<String>>,
    pub eab_kid: Option<At<String>>,
    pub eab_hmac_key: Option<At<String>>,
    /// The section's own line.
    pub line: usize,
}

pub(crate) const ACME_KEYS: &[&str] = &[
    "directory",
    "directory_ca",
    "email",
    "storage",
    "challenge",
    "eab_kid",
    "eab_hmac_key",
];

/// Let's Encrypt's production directory: the default `directory`.
pub const LETS_ENCRYPT: &str = "https://acme-v02.api.letsencrypt.org/directory";
/// Let's Encrypt's staging directory (`directory = "letsencrypt-staging"`): untrusted
/// certificates, generous rate limits.
pub const LETS_ENCRYPT_STAGING: &str = "https://acme-staging-v02.api.letsencrypt.org/directory";
/// Where account and certificates are kept when `storage` is not set.
pub const DEFAULT_ACME_STORAGE: &str = "/var/lib/langur/acme";

/// How the ACME server is shown that langur answers for a name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Challenge {
    /// HTTP-01 (RFC 8555 8.3): `GET /.well-known/acme-challenge/TOKEN` on port 80, answered
    /// by the plain listeners before routing.
    Http01,
    /// TLS-ALPN-01 (RFC 8737): a handshake on port 443 offering only `acme-tls/1`, answered by
    /// the TLS listeners with a self-signed certificate carrying the key authorization's digest.
    TlsAlpn01,
}

impl Challenge {
    pub fn as_str(self) -> &'static str {
        match self {
            Challenge::Http01 => "http-01",
            Challenge::TlsAlpn01 => "tls-alpn-01",
        }
    }
}

/// `[acme]` validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AcmeConfig {
    /// The directory URL (https).
    pub directory: String,
    /// A PEM certificate trusted for the directory's own TLS certificate (a private ACME
    /// server); `None`: the system's roots.
    pub directory_ca: Option<PathBuf>,
    /// The account's contact (`mailto:` added).
    pub email: Option<String>,
    /// Account key, certificates and the lock file.
    pub storage: PathBuf,
    pub challenge: Challenge,
    /// The names to certify, one certificate each: the exact `host` names of routes with
    /// `acme = true`, lower case, sorted, each once.
    pub names: Vec<String>,
    /// External account binding (RFC 8555 7.3.4), for CAs that tie ACME accounts to accounts
    /// of their own (ZeroSSL, Google Trust Services, many private CAs).
    pub eab: Option<Eab>,
}

/// An external account binding: the key identifier and the HMAC key the CA gave.
#[derive(Clone, PartialEq, Eq)]
pub struct Eab {
    pub kid: String,
    /// The HMAC-SHA256 key, decoded from the base64url the CA shows.
    pub hmac_key: Vec<u8>,
}

impl std::fmt::Debug for Eab {
    /// The key is a secret: never shown.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Eab")
            .field("kid", &self.kid)
            .field("hmac_key", &"<secret>")
            .finish()
    }
}

/// Checks `[acme]` and the routes' `acme` keys: the directory (a named choice or an https
/// URL), `directory_ca` (a PEM certificate, read now), the email, the storage directory
/// (relative to `base`), the challenge, and the names (exact host names: a wildcard needs
/// DNS-01, which langur does not do; a regex names nothing). `None` without `[acme]`.
pub(crate) fn acme(
    raw: &RawConfig,
    has_tls: bool,
    base: &Path,
    diag: &mut Diag,
) -> Option<AcmeConfig> {
    let names = names(raw, diag);
    let Some(a) = &raw.acme else {
        if let Some(r) = raw
            .routes
            .iter()
            .find(|r| r.acme.as_ref().is_some_and(|a| a.value))
        {
            let msg = "`acme = true` needs an [acme] section (where certificates come from)";
            diag.error(
                r.acme.as_ref().map_or(r.line, |a| a.line),
                Some("acme"),
                msg,
            );
        }
        return None;
    };
    if !has_tls {
        let msg = "[acme] certificates are served on TLS listeners: add [tls] listen";
        diag.error(a.line, None, msg);
    }
    if names.is_empty() {
        let msg = "no route has `acme = true` with `host` names: [acme] certifies nothing";
        diag.warn(a.line, None, msg);
    }
    let directory = match a.directory.as_ref() {
        None => LETS_ENCRYPT.to_string(),
        Some(d) => directory(d, diag),
    };
    let directory_ca = a
        .directory_ca
        .as_ref()
        .and_then(|c| directory_ca(c, base, diag));
    let email = a.email.as_ref().and_then(|e| email(e, diag));
    let challenge = match a.challenge.as_ref().map(|c| (c.value.as_str(), c.line)) {
        None | Some(("http-01", _)) => Challenge::Http01,
        Some(("tls-alpn-01", _)) => Challenge::TlsAlpn01,
        Some((other, line)) => {
            let msg = format!("`challenge` must be \"http-01\" or \"tls-alpn-01\", not `{other}`");
            diag.error(line, Some("challenge"), msg);
            Challenge::Http01
        }
    };
    Some(AcmeConfig {
        directory,
        directory_ca,
        email,
        storage: storage(a, base, diag),
        challenge,
        names,
        eab: eab(a, diag),
    })
}

/// `storage`: a directory (relative to `base`), made at start when missing; empty, or
/// something else already in its place, is an error.
fn storage(a: &RawAcme, base: &Path, diag: &mut Diag) -> PathBuf {
    let Some(s) = a.storage.as_ref() else {
        return PathBuf::from(DEFAULT_ACME_STORAGE);
    };
    let path = base.join(&s.value);
    if s.value.is_empty() {
        diag.error(
            s.line,
            Some("storage"),
            "`storage` is empty: name a directory",
        );
    } else if path.exists() && !path.is_dir() {
        let msg = format!("`storage`: `{}` is not a directory", path.display());
        diag.error(s.line, Some("storage"), msg);
    }
    path
}

/// `eab_kid` and `eab_hmac_key`: both or neither; the key in base64url (padded or not, as
/// CAs show it), at least 16 bytes once decoded.
fn eab(a: &RawAcme, diag: &mut Diag) -> Option<Eab> {
    use base64::Engine;
    let (kid, key) = match (&a.eab_kid, &a.eab_hmac_key) {
        (None, None) => return None,
        (Some(k), Some(h)) => (k, h),
        (Some(k), None) => {
            diag.error(k.line, Some("eab_kid"), "`eab_kid` needs `eab_hmac_key`");
            return None;
        }
        (None, Some(h)) => {
            diag.error(
                h.line,
                Some("eab_hmac_key"),
                "`eab_hmac_key` needs `eab_kid`",
            );
            return None;
        }
    };
    if kid.value.is_empty() || kid.value.chars().any(|c| c.is_control() || c == ' ') {
        diag.error(
            kid.line,
            Some("eab_kid"),
            "`eab_kid` is empty or has spaces",
        );
        return None;
    }
    let text = key.value.trim_end_matches('=');
    let decoded = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(text);
    // The key is a secret: a message never repeats it.
    let why = match decoded {
        Ok(k) if k.len() >= 16 => {
            return Some(Eab {
                kid: kid.value.clone(),
                hmac_key: k,
            })
        }
        Ok(_) => "`eab_hmac_key` is shorter than 16 bytes once decoded",
        Err(_) => "`eab_hmac_key` is not base64url (A-Z, a-z, 0-9, `-`, `_`)",
    };
    diag.error(key.line, Some("eab_hmac_key"), why);
    None
}

/// `directory_ca`: a PEM certificate file (relative to `base`), read now to check it.
fn directory_ca(c: &At<String>, base: &Path, diag: &mut Diag) -> Option<PathBuf> {
    use rustls::pki_types::{pem::PemObject, CertificateDer};
    let path = base.join(&c.value);
    let pem = crate::regular_file::read(&path, crate::regular_file::MAX_PEM);
    match pem
        .map_err(|e| e.to_string())
        .and_then(|p| CertificateDer::from_pem_slice(&p).map_err(|e| e.to_string()))
    {
        Ok(_) => Some(path),
        Err(e) => {
            let msg = format!("`directory_ca`: `{}`: {e}", path.display());
            diag.error(c.line, Some("directory_ca"), msg);
            None
        }
    }
}

/// `email`: an address (a `mailto:` in front is dropped), without spaces or controls.
fn email(e: &At<String>, diag: &mut Diag) -> Option<String> {
    let v = e.value.trim_start_matches("mailto:");
    let ok = v.split_once('@').is_some_and(|(l, d)| {
        !l.is_empty() && !d.is_empty() && v.bytes().all(|b| b.is_ascii_graphic())
    });
    if !ok {
        let msg = format!("`email`: `{}` is not an address", e.value);
        diag.error(e.line, Some("email"), msg);
    }
    ok.then(|| v.to_string())
}

/// `directory`: `"letsencrypt"`, `"letsencrypt-staging"` or an https URL.
fn directory(d: &At<String>, diag: &mut Diag) -> String {
    match d.value.as_str() {
        "letsencrypt" => return LETS_ENCRYPT.to_string(),
        "letsencrypt-staging" => return LETS_ENCRYPT_STAGING.to_string(),
        _ => {}
    }
    match d.value.parse::<http::Uri>() {
        Ok(u) if u.authority().is_some_and(|a| a.as_str().contains('@')) => {
            let msg = "`directory`: a URL with a user name or password (ACME accounts are keys, \
                       and the URL is logged)";
            diag.error(d.line, Some("directory"), msg);
            String::new()
        }
        Ok(u) if u.scheme_str() == Some("https") && u.host().is_some() => d.value.clone(),
        _ => {
            let msg = format!(
                "`directory`: `{}` is not an https URL (or \"letsencrypt\", \"letsencrypt-staging\")",
                d.value
            );
            diag.error(d.line, Some("directory"), msg);
            String::new()
        }
    }
}

/// The exact host names of routes with `acme = true`; a route with it and no exact name, a
/// wildcard or a regex is an error on its line.
fn names(raw: &RawConfig, diag: &mut Diag) -> Vec<String> {
    let mut names = Vec::new();
    for r in &raw.routes {
        let Some(flag) = r.acme.as_ref().filter(|a| a.value) else {
            continue;
        };
        if r.hosts.is_empty() {
            let msg = "`acme = true` needs `host` names to certify";
            diag.error(flag.line, Some("acme"), msg);
        }
        for h in &r.hosts {
            match acme_name(&h.value) {
                Ok(n) => names.push(n),
                Err(e) => diag.error(h.line, Some("host"), e),
            }
        }
    }
    names.sort();
    names.dedup();
    names
}

/// A host entry as a name to certify: exact DNS names only, lower case.
fn acme_name(host: &str) -> Result<String, String> {
    if host.starts_with("*.") {
        return Err(format!(
            "`{host}`: a wildcard certificate needs the DNS-01 challenge, which langur does not do; name each host, or use a certificate file"
        ));
    }
    if host.starts_with('~') {
        return Err(format!(
            "`{host}`: a host regex names no certificate; list the exact names on a route with `acme = true`"
        ));
    }
    let name = host.trim_end_matches('.').to_ascii_lowercase();
    let label_ok = |l: &str| {
        !l.is_empty()
            && l.len() <= 63
            && !l.starts_with('-')
            && !l.ends_with('-')
            && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
    };
    let ip = name.parse::<std::net::Ipv4Addr>().is_ok() || name.starts_with('[');
    if ip || name.len() > 253 || !name.split('.').all(label_ok) {
        return Err(format!("`{host}` is not a DNS name ACME can certify"));
    }
    Ok(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_to_certify_are_exact_dns_names() {
        assert_eq!(acme_name("WWW.Example.com.").unwrap(), "www.example.com");
        assert_eq!(acme_name("localhost").unwrap(), "localhost");
        assert!(acme_name("*.example.com").unwrap_err().contains("DNS-01"));
        assert!(acme_name("~^a").unwrap_err().contains("regex"));
        assert!(acme_name("192.0.2.1").is_err());
        assert!(acme_name("[::1]").is_err());
        assert!(acme_name("a_b.example").is_err());
        assert!(acme_name("-a.example").is_err());
    }

    fn errors_of(text: &str) -> Vec<crate::config::ConfigError> {
        crate::config::parse_str("t.toml", text, true)
            .unwrap_err()
            .0
    }

    /// Each error's line and key.
    fn at(errs: &[crate::config::ConfigError]) -> Vec<(usize, Option<&str>)> {
        errs.iter().map(|e| (e.line, e.key.as_deref())).collect()
    }

    /// Each error at its line, all at once.
    #[test]
    fn acme_keys_are_checked_with_their_lines() {
        let text = r#"[tls]
listen = ["127.0.0.1:0"]
[acme]
directory = "http://acme.example/dir"
directory_ca = "/nonexistent/ca.pem"
email = "nobody"
challenge = "dns-01"
colour = "blue"
storage = ""

[[route]]
host = ["*.example.com", "www.example.com"]
acme = true
pool = "p"

[[route]]
path = "/x"
acme = true
pool = "p"

[pools.p]
servers = ["127.0.0.1:1"]
"#;
        let errs = errors_of(text);
        assert_eq!(
            at(&errs),
            vec![
                (4, Some("directory")),
                (5, Some("directory_ca")),
                (6, Some("email")),
                (7, Some("challenge")),
                (8, Some("colour")),
                (9, Some("storage")),
                (12, Some("host")),
                (18, Some("acme")),
            ],
            "{errs:?}"
        );
        assert!(errs[6].message.contains("DNS-01"), "{}", errs[6].message);
    }

    /// A directory URL with credentials, a storage path that is a file, a `directory_ca` that
    /// is a device: each refused on its line, none read or blocking.
    #[test]
    fn acme_paths_and_urls_that_cannot_work() {
        let scratch = crate::scratch_dir("acme-file");
        let file = scratch.path().join("storage");
        std::fs::write(&file, "x").unwrap();
        let text = format!(
            "[tls]\nlisten = [\"127.0.0.1:0\"]\n[acme]\ndirectory = \"https://u:p@acme.example/dir\"\n\
             directory_ca = \"/dev/zero\"\nstorage = \"{}\"\n[[route]]\nhost = [\"a.example\"]\n\
             acme = true\npool = \"p\"\n[pools.p]\nservers = [\"127.0.0.1:1\"]\n",
            file.display()
        );
        let errs = errors_of(&text);
        assert_eq!(
            at(&errs),
            vec![
                (4, Some("directory")),
                (5, Some("directory_ca")),
                (6, Some("storage"))
            ],
            "{errs:?}"
        );
        assert!(errs[0].message.contains("user name"), "{}", errs[0].message);
        assert!(
            errs[1].message.contains("not a regular file"),
            "{}",
            errs[1].message
        );
        assert!(
            errs[2].message.contains("not a directory"),
            "{}",
            errs[2].message
        );
    }

    /// The binding: both keys or neither, the key base64url of at least 16 bytes, never
    /// repeated in a message.
    #[test]
    fn external_account_binding_keys() {
        let base = "[tls]\nlisten = [\"127.0.0.1:0\"]\n[acme]\nstorage = \"/tmp/x\"\n";
        let tail = "[[route]]\nhost = [\"a.example\"]\nacme = true\npool = \"p\"\n[pools.p]\nservers = [\"127.0.0.1:1\"]\n";
        let key = "zWNDZM6eQGHWpSRTPal5eIUYFTu7EajVIoguysqZ9wG44nMEtx3MUAsUDkMTQ12W";
        let ok = format!("{base}eab_kid = \"k1\"\neab_hmac_key = \"{key}\"\n{tail}");
        let eab = crate::config::parse_str("t.toml", &ok, true)
            .unwrap()
            .acme
            .unwrap()
            .eab
            .unwrap();
        assert_eq!((eab.kid.as_str(), eab.hmac_key.len()), ("k1", 48));
        assert!(!format!("{eab:?}").contains(key));
        // Padded, as some CAs show it.
        let padded = ok.replace(key, "AAAAAAAAAAAAAAAAAAAAAA==");
        assert!(crate::config::parse_str("t.toml", &padded, true).is_ok());
        for (bad, line, k) in [
            (format!("{base}eab_kid = \"k1\"\n{tail}"), 5, "eab_kid"),
            (
                format!("{base}eab_hmac_key = \"{key}\"\n{tail}"),
                5,
                "eab_hmac_key",
            ),
            (ok.replace(key, "not base64!"), 6, "eab_hmac_key"),
            (ok.replace(key, "c2hvcnQ"), 6, "eab_hmac_key"),
            (ok.replace("\"k1\"", "\"\""), 5, "eab_kid"),
        ] {
            let errs = crate::config::parse_str("t.toml", &bad, true)
                .unwrap_err()
                .0;
            assert_eq!(
                (errs[0].line, errs[0].key.as_deref()),
                (line, Some(k)),
                "{errs:?}"
            );
            assert!(!errs[0].message.contains(key));
        }
    }

    #[test]
    fn acme_supplies_the_certificates_of_tls_and_needs_it() {
        let ok = "[tls]\nlisten = [\"127.0.0.1:0\"]\n[acme]\nstorage = \"/tmp/x\"\n[[route]]\nhost = [\"a.example\"]\nacme = true\npool = \"p\"\n[pools.p]\nservers = [\"127.0.0.1:1\"]\n";
        let c = crate::config::parse_str("t.toml", ok, true).unwrap();
        let acme = c.acme.unwrap();
        assert_eq!(acme.names, vec!["a.example".to_string()]);
        assert_eq!(acme.directory, LETS_ENCRYPT);
        assert_eq!(acme.challenge, Challenge::Http01);
        let no_tls = ok.replace("[tls]\nlisten = [\"127.0.0.1:0\"]\n", "");
        let errs = crate::config::parse_str("t.toml", &no_tls, true)
            .unwrap_err()
            .0;
        assert!(errs[0].message.contains("[tls] listen"), "{errs:?}");
        let no_acme = "[[route]]\nhost = [\"a.example\"]\nacme = true\npool = \"p\"\n[pools.p]\nservers = [\"127.0.0.1:1\"]\n";
        let errs = crate::config::parse_str("t.toml", no_acme, true)
            .unwrap_err()
            .0;
        assert_eq!(errs[0].line, 3, "{errs:?}");
    }
}
