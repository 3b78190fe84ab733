//! Client certificates on TLS listeners (mutual TLS): the verifier a certificate entry's
//! `client_ca`, `client_auth` and `client_crl` make (rustls's `WebPkiClientVerifier`), what a
//! verified certificate tells the servers and the routes (subject, names, fingerprint), and why
//! a handshake failed.

use super::provider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, CertificateRevocationListDer};
use rustls::server::danger::ClientCertVerifier;
use rustls::server::WebPkiClientVerifier;
use std::fmt::Write;
use std::path::Path;
use std::sync::Arc;

/// `client_auth`: whether a client must present a certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientAuth {
    /// No certificate, no handshake (TLS 1.3 alert `certificate_required`, RFC 8446 4.4.2.4).
    Required,
    /// A certificate is verified when presented; a client without one is let in unverified.
    Optional,
}

/// The verifier of a certificate entry: the CAs of `ca` (a PEM file), the revocation lists
/// of `crls` (PEM files, RFC 5280 5), checked for the client's own certificate (whose issuer's
/// list must be among them: an unknown status is refused).
pub fn verifier(
    ca: &Path,
    crls: &[&Path],
    auth: ClientAuth,
) -> Result<Arc<dyn ClientCertVerifier>, String> {
    let mut roots = rustls::RootCertStore::empty();
    use crate::regular_file::{read, MAX_PEM};
    let pem = read(ca, MAX_PEM).map_err(|e| format!("cannot read `{}`: {e}", ca.display()))?;
    for c in CertificateDer::pem_slice_iter(&pem) {
        let c = c.map_err(|e| format!("`{}`: {e}", ca.display()))?;
        roots
            .add(c)
            .map_err(|e| format!("`{}`: {e}", ca.display()))?;
    }
    if roots.is_empty() {
        return Err(format!("`{}` holds no certificate", ca.display()));
    }
    let mut lists = Vec::new();
    for path in crls {
        let pem =
            read(path, MAX_PEM).map_err(|e| format!("cannot read `{}`: {e}", path.display()))?;
        let found = CertificateRevocationListDer::pem_slice_iter(&pem)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| format!("`{}` is not a PEM CRL file: {e}", path.display()))?;
        if found.is_empty() {
            return Err(format!("`{}` holds no CRL", path.display()));
        }
        lists.extend(found);
    }
    let mut builder = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider());
    if !lists.is_empty() {
        builder = builder.with_crls(lists).only_check_end_entity_revocation();
    }
    if auth == ClientAuth::Optional {
        builder = builder.allow_unauthenticated();
    }
    builder
        .build()
        .map_err(|e| format!("`{}`: {e}", ca.display()))
}

/// A verified client certificate as servers and routes see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientCert {
    /// The subject as an RFC 4514 string (`CN=alice,O=Example`): most specific first, the
    /// characters RFC 4514 2.4 names escaped, control bytes as `\XX`.
    pub subject: String,
    /// The subject alternative names, OpenSSL style: `DNS:a.example, email:x@example,
    /// URI:spiffe://example/x, IP:192.0.2.1`.
    pub sans: String,
    /// SHA-256 of the certificate's DER, lowercase hex (64 characters).
    pub sha256: String,
}

impl ClientCert {
    /// What the end-entity certificate `der` says; `None` when it cannot be parsed (it was
    /// verified, so it can).
    pub fn of(der: &[u8]) -> Option<ClientCert> {
        let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
        let registry = x509_parser::objects::oid_registry();
        let mut subject = String::new();
        for rdn in cert
            .subject()
            .iter_rdn()
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
        {
            for (i, attr) in rdn.iter().enumerate() {
                let sep = if i > 0 { "+" } else { "," };
                if !subject.is_empty() || i > 0 {
                    subject.push_str(sep);
                }
                match x509_parser::objects::oid2abbrev(attr.attr_type(), registry) {
                    Ok(name) => subject.push_str(name),
                    Err(_) => subject.push_str(&attr.attr_type().to_id_string()),
                }
                subject.push('=');
                match attr.as_str() {
                    Ok(v) => escape_into(&mut subject, v),
                    // RFC 4514 2.4: a value that is not a string, as `#` and its BER in hex.
                    Err(_) => {
                        subject.push('#');
                        hex_into(&mut subject, attr.attr_value().data);
                    }
                }
            }
        }
        let mut sans = Vec::new();
        if let Ok(Some(ext)) = cert.subject_alternative_name() {
            use x509_parser::extensions::GeneralName;
            for name in &ext.value.general_names {
                match name {
                    GeneralName::DNSName(n) => sans.push(format!("DNS:{n}")),
                    GeneralName::RFC822Name(n) => sans.push(format!("email:{n}")),
                    GeneralName::URI(n) => sans.push(format!("URI:{n}")),
                    GeneralName::IPAddress(b) => {
                        if let Some(ip) = ip_of(b) {
                            sans.push(format!("IP:{ip}"));
                        }
                    }
                    _ => {}
                }
            }
        }
        let mut sans = sans.join(", ");
        sans.retain(|c| !c.is_control());
        let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, der);
        let mut sha256 = String::with_capacity(64);
        hex_into(&mut sha256, digest.as_ref());
        Some(ClientCert {
            subject,
            sans,
            sha256,
        })
    }
}

fn ip_of(b: &[u8]) -> Option<std::net::IpAddr> {
    match b.len() {
        4 => Some(<[u8; 4]>::try_from(b).ok()?.into()),
        16 => Some(<[u8; 16]>::try_from(b).ok()?.into()),
        _ => None,
    }
}

fn hex_into(out: &mut String, bytes: &[u8]) {
    for b in bytes {
        let _ = write!(out, "{b:02x}");
    }
}

/// RFC 4514 2.4: `"+,;<>\` and a leading `#` or space or a trailing space escaped with `\`;
/// control characters (not allowed in a field value) as `\XX`.
fn escape_into(out: &mut String, v: &str) {
    let last = v.chars().count().saturating_sub(1);
    for (i, c) in v.chars().enumerate() {
        match c {
            '"' | '+' | ',' | ';' | '<' | '>' | '\\' => {
                out.push('\\');
                out.push(c);
            }
            '#' if i == 0 => out.push_str("\\#"),
            ' ' if i == 0 || i == last => out.push_str("\\ "),
            c if c.is_control() => {
                let mut buf = [0; 4];
                for b in c.encode_utf8(&mut buf).bytes() {
                    let _ = write!(out, "\\{b:02X}");
                }
            }
            c => out.push(c),
        }
    }
}

/// Why a TLS handshake with a client failed, as the counter's `reason` label and the log
/// line name it: `no_certificate`, `unknown_ca`, `expired`, `revoked`, `bad_certificate`
/// (a client certificate refused for another reason), `timeout` or `protocol` (anything else:
/// no shared version or cipher, a bad message, the client's own alert, a reset).
pub fn failure_reason(e: &std::io::Error) -> &'static str {
    use rustls::{CertificateError as C, Error as E};
    let Some(tls) = e.get_ref().and_then(|e| e.downcast_ref::<E>()) else {
        return "protocol";
    };
    match tls {
        E::NoCertificatesPresented => "no_certificate",
        E::InvalidCertificate(C::UnknownIssuer) => "unknown_ca",
        E::InvalidCertificate(C::Expired | C::ExpiredContext { .. }) => "expired",
        E::InvalidCertificate(C::Revoked) => "revoked",
        E::InvalidCertificate(_) => "bad_certificate",
        _ => "protocol",
    }
}

/// The reasons [`failure_reason`] gives, in the counters' order.
pub const FAILURE_REASONS: [&str; 7] = [
    "no_certificate",
    "unknown_ca",
    "expired",
    "revoked",
    "bad_certificate",
    "timeout",
    "protocol",
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subjects_are_written_as_rfc_4514_says() {
        let mut params = rcgen::CertificateParams::new(vec!["a.test".to_string()]).unwrap();
        params.distinguished_name = rcgen::DistinguishedName::new();
        params
            .distinguished_name
            .push(rcgen::DnType::OrganizationName, "Example, Inc.");
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, " alice#1");
        params.subject_alt_names.push(rcgen::SanType::Rfc822Name(
            "alice@example.org".try_into().unwrap(),
        ));
        params
            .subject_alt_names
            .push(rcgen::SanType::IpAddress("192.0.2.1".parse().unwrap()));
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        let c = ClientCert::of(cert.der()).unwrap();
        assert_eq!(c.subject, "CN=\\ alice#1,O=Example\\, Inc.");
        assert_eq!(c.sans, "DNS:a.test, email:alice@example.org, IP:192.0.2.1");
        assert_eq!(c.sha256.len(), 64);
        assert!(ClientCert::of(b"not a certificate").is_none());
    }

    #[test]
    fn failures_are_named_by_their_cause() {
        let io = |e: rustls::Error| std::io::Error::new(std::io::ErrorKind::InvalidData, e);
        assert_eq!(
            failure_reason(&io(rustls::Error::NoCertificatesPresented)),
            "no_certificate"
        );
        assert_eq!(
            failure_reason(&io(rustls::Error::InvalidCertificate(
                rustls::CertificateError::Revoked
            ))),
            "revoked"
        );
        assert_eq!(
            failure_reason(&std::io::Error::from(std::io::ErrorKind::ConnectionReset)),
            "protocol"
        );
    }
}
