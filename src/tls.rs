//! TLS with rustls: the listener side (certificates chosen by SNI, ALPN offering h2 and
//! http/1.1, TLS 1.2 and 1.3 only) and the upstream side (a pool's `tls = true`).
//!
//! Certificates are read when the config is loaded, so a reload re-reads them and a missing file,
//! a key that does not match its certificate or a certificate without names is an error naming
//! the config line, like any other config error.

use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use std::path::Path;
use std::sync::Arc;

fn provider() -> Arc<CryptoProvider> {
    CryptoProvider::get_default()
        .cloned()
        .unwrap_or_else(|| Arc::new(rustls::crypto::aws_lc_rs::default_provider()))
}

/// A certificate chain and its key, with the DNS names the certificate is valid for.
#[derive(Debug, Clone)]
pub struct Identity {
    pub names: Vec<String>,
    pub key: Arc<CertifiedKey>,
    /// The leaf's issuer as RFC 4514 writes it, and its `notAfter` (seconds since the Unix
    /// epoch, RFC 5280 4.1.2.5).
    pub issuer: String,
    pub not_after: i64,
}

/// Reads a PEM certificate chain and its PEM private key; checks they belong together.
pub fn load_identity(cert: &Path, key: &Path) -> Result<Identity, String> {
    use crate::regular_file::{read, MAX_PEM};
    let chain = read(cert, MAX_PEM)
        .map_err(|e| format!("cannot read certificate `{}`: {e}", cert.display()))?;
    let private = read(key, MAX_PEM)
        .map_err(|e| format!("cannot read a private key from `{}`: {e}", key.display()))?;
    identity_from_pem(&chain, &private).map_err(|e| match e {
        PemError::Chain(e) => format!("`{}`: {e}", cert.display()),
        PemError::Key(e) => format!("`{}`: {e}", key.display()),
        PemError::Mismatch(e) => format!(
            "the key `{}` does not belong to the certificate `{}`: {e}",
            key.display(),
            cert.display()
        ),
    })
}

/// Why PEM text is not an identity: the chain, the key, or the pair.
#[derive(Debug)]
pub enum PemError {
    Chain(String),
    Key(String),
    Mismatch(String),
}

impl std::fmt::Display for PemError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PemError::Chain(e) => write!(f, "certificate: {e}"),
            PemError::Key(e) => write!(f, "private key: {e}"),
            PemError::Mismatch(e) => write!(f, "the key does not belong to the certificate: {e}"),
        }
    }
}

/// An identity from a PEM chain (leaf first) and a PEM private key.
pub fn identity_from_pem(chain: &[u8], key: &[u8]) -> Result<Identity, PemError> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(chain)
        .collect::<Result<_, _>>()
        .map_err(|e| PemError::Chain(format!("not a PEM certificate file: {e}")))?;
    if chain.is_empty() {
        return Err(PemError::Chain("holds no certificate".into()));
    }
    let private = PrivateKeyDer::from_pem_slice(key).map_err(|e| PemError::Key(e.to_string()))?;
    let names = {
        let ee = webpki::EndEntityCert::try_from(&chain[0])
            .map_err(|e| PemError::Chain(format!("cannot parse the certificate: {e}")))?;
        ee.valid_dns_names()
            .map(|n| n.to_ascii_lowercase())
            .collect::<Vec<_>>()
    };
    let (issuer, not_after) = match x509_parser::parse_x509_certificate(&chain[0]) {
        Ok((_, c)) => (c.issuer().to_string(), c.validity().not_after.timestamp()),
        Err(e) => {
            return Err(PemError::Chain(format!(
                "cannot parse the certificate: {e}"
            )))
        }
    };
    let certified = CertifiedKey::from_der(chain, private, &provider())
        .map_err(|e| PemError::Mismatch(e.to_string()))?;
    Ok(Identity {
        names,
        key: Arc::new(certified),
        issuer,
        not_after,
    })
}

pub mod acme;
pub mod client_auth;

pub use client_auth::{ClientAuth, ClientCert};

/// Picks the certificate whose names match the SNI name (exactly, or a `*.` wildcard one
/// label deep); the first certificate when nothing matches or no name was sent.
#[derive(Debug)]
struct Sni {
    identities: Vec<Identity>,
    /// Certificates obtained over ACME and the TLS-ALPN-01 answers, when `[acme]` is on
    /// (set by the server once the listener is built; kept across reloads).
    acme: arc_swap::ArcSwapOption<acme::Issued>,
}

impl Sni {
    /// The index of the identity for `name`.
    fn pick(&self, name: Option<&str>) -> Option<usize> {
        if let Some(name) = name {
            let name = name.to_ascii_lowercase();
            if let Some(i) = self
                .identities
                .iter()
                .position(|id| id.names.contains(&name))
            {
                return Some(i);
            }
            if let Some((_, rest)) = name.split_once('.') {
                let w = format!("*.{rest}");
                if let Some(i) = self.identities.iter().position(|id| id.names.contains(&w)) {
                    return Some(i);
                }
            }
        }
        (!self.identities.is_empty()).then_some(0)
    }
}

impl ResolvesServerCert for Sni {
    /// An ACME handshake (ALPN `acme-tls/1`, RFC 8737 3) gets its challenge certificate or
    /// nothing; otherwise a name certified over ACME gets that certificate, any other the
    /// files' choice ([`Sni::pick`]).
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        if let Some(issued) = &*self.acme.load() {
            let name = hello.server_name().map(|n| n.to_ascii_lowercase());
            let challenge = hello
                .alpn()
                .is_some_and(|mut a| a.any(|p| p == acme::ACME_TLS_ALPN));
            match (challenge, name) {
                (true, name) => return issued.challenge(name.as_deref()?),
                (false, Some(n)) => {
                    if let Some(key) = issued.get(&n) {
                        return Some(key);
                    }
                }
                (false, None) => {}
            }
        }
        let i = self.pick(hello.server_name())?;
        Some(self.identities[i].key.clone())
    }
}

/// A certificate entry of `[tls]`: its identity and, with `client_ca`, the verifier of the
/// clients of the names it serves.
pub struct Entry {
    pub identity: Identity,
    pub clients: Option<Arc<dyn rustls::server::danger::ClientCertVerifier>>,
}

/// A TLS listener's configurations, chosen by the ClientHello's SNI name as the certificate
/// is: entries without client authentication share one, an entry with it has its own (its
/// verifier, its session-ticket keys, so a session resumed under one entry's rules is never
/// resumed under another's).
#[derive(Debug)]
pub struct Listener {
    sni: Arc<Sni>,
    /// Per identity, its configuration's place in `configs`.
    config_of: Vec<usize>,
    configs: Vec<Arc<rustls::ServerConfig>>,
}

impl Listener {
    /// The listener over `entries` (none only when `acme` supplies certificates); ALPN h2
    /// then http/1.1 (`h2`), else http/1.1 only; with `acme`, `acme-tls/1` last (answered
    /// only to TLS-ALPN-01 validations, see [`Listener::attach`]).
    pub fn new(entries: Vec<Entry>, h2: bool, acme: bool) -> Result<Listener, String> {
        let mut verifiers = Vec::with_capacity(entries.len());
        let mut identities = Vec::with_capacity(entries.len());
        for e in entries {
            verifiers.push(e.clients);
            identities.push(e.identity);
        }
        let sni = Arc::new(Sni {
            identities,
            acme: Default::default(),
        });
        let alpn = Alpn { h2, acme };
        let mut configs = vec![server_config(sni.clone(), None, alpn)?];
        let mut config_of = Vec::with_capacity(verifiers.len());
        for v in verifiers {
            match v {
                None => config_of.push(0),
                Some(v) => {
                    config_of.push(configs.len());
                    configs.push(server_config(sni.clone(), Some(v), alpn)?);
                }
            }
        }
        Ok(Listener {
            sni,
            config_of,
            configs,
        })
    }

    /// The configuration for a ClientHello naming `sni`.
    pub fn config_for(&self, sni: Option<&str>) -> Arc<rustls::ServerConfig> {
        let i = self.sni.pick(sni).map_or(0, |i| self.config_of[i]);
        self.configs[i].clone()
    }

    /// Serves the certificates and TLS-ALPN-01 answers of `issued` (before the files').
    pub fn attach(&self, issued: Arc<acme::Issued>) {
        self.sni.acme.store(Some(issued));
    }

    /// The certificate files' identities, in file order.
    pub fn identities(&self) -> &[Identity] {
        &self.sni.identities
    }

    /// Whether some entry asks clients for certificates.
    #[inline]
    pub fn asks_for_client_certs(&self) -> bool {
        self.configs.len() > 1
    }
}

/// The protocols a listener offers by ALPN.
#[derive(Debug, Clone, Copy)]
struct Alpn {
    h2: bool,
    acme: bool,
}

/// A listener's TLS configuration: certificates by `sni`, clients verified by `clients` (else
/// not asked), ALPN h2 then http/1.1 (then `acme-tls/1`).
fn server_config(
    sni: Arc<Sni>,
    clients: Option<Arc<dyn rustls::server::danger::ClientCertVerifier>>,
    alpn: Alpn,
) -> Result<Arc<rustls::ServerConfig>, String> {
    let builder = rustls::ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| e.to_string())?;
    let builder = match clients {
        Some(v) => builder.with_client_cert_verifier(v),
        None => builder.with_no_client_auth(),
    };
    let mut config = builder.with_cert_resolver(sni);
    // Stateless session tickets (RFC 8446 4.6.1; RFC 5077 for TLS 1.2), as nginx, HAProxy and
    // Go's crypto/tls issue by default: any client resumes, on any worker, where rustls's
    // default keeps 256 sessions per configuration. Keys rotate every 6 hours (rustls's
    // `Ticketer`); each configuration, so each reload, has its own, so a session is never
    // resumed under another entry's rules, nor past a reload that re-read `client_crl`.
    config.ticketer = rustls::crypto::aws_lc_rs::Ticketer::new().map_err(|e| e.to_string())?;
    config.alpn_protocols = if alpn.h2 {
        vec![b"h2".to_vec(), b"http/1.1".to_vec()]
    } else {
        vec![b"http/1.1".to_vec()]
    };
    if alpn.acme {
        config.alpn_protocols.push(acme::ACME_TLS_ALPN.to_vec());
    }
    Ok(Arc::new(config))
}

/// How langur talks TLS to a pool's servers.
#[derive(Debug, Clone)]
pub struct Upstream {
    pub config: Arc<rustls::ClientConfig>,
    /// The name sent in SNI and verified (else the server's host).
    pub server_name: Option<String>,
}

impl Upstream {
    /// The name to present to a server configured as `host:port` (or `[v6]:port`).
    fn name_for(&self, server: &str) -> Result<ServerName<'static>, String> {
        let host = server.rsplit_once(':').map_or(server, |(h, _)| h);
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let n = self.server_name.as_deref().unwrap_or(host);
        ServerName::try_from(n.to_string()).map_err(|e| format!("`{n}`: {e}"))
    }

    /// The TLS handshake with the server configured as `server`, over `stream`.
    pub async fn handshake(
        &self,
        server: &str,
        stream: tokio::net::TcpStream,
    ) -> std::io::Result<tokio_rustls::client::TlsStream<tokio::net::TcpStream>> {
        let name = self.name_for(server).map_err(std::io::Error::other)?;
        tokio_rustls::TlsConnector::from(self.config.clone())
            .connect(name, stream)
            .await
    }
}

/// A client configuration: trusting `ca` (a PEM file) or the system's roots, offering `alpn`,
/// presenting `identity` (a certificate chain and its key, RFC 8446 4.4.2) to servers that ask
/// for one. `verify = false` accepts any certificate (for self-signed test backends only).
pub fn client_config(
    ca: Option<&Path>,
    verify: bool,
    alpn: &[&[u8]],
    identity: Option<&Identity>,
) -> Result<Arc<rustls::ClientConfig>, String> {
    let builder = rustls::ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| e.to_string())?;
    let mut config = if verify {
        let mut roots = rustls::RootCertStore::empty();
        match ca {
            Some(path) => {
                let pem = crate::regular_file::read(path, crate::regular_file::MAX_PEM)
                    .map_err(|e| format!("cannot read CA file `{}`: {e}", path.display()))?;
                for c in CertificateDer::pem_slice_iter(&pem) {
                    let c = c.map_err(|e| format!("`{}`: {e}", path.display()))?;
                    roots
                        .add(c)
                        .map_err(|e| format!("`{}`: {e}", path.display()))?;
                }
                if roots.is_empty() {
                    return Err(format!("`{}` holds no certificate", path.display()));
                }
            }
            None => {
                for c in rustls_native_certs::load_native_certs().certs {
                    let _ = roots.add(c);
                }
            }
        }
        with_identity(builder.with_root_certificates(roots), identity)
    } else {
        with_identity(
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(NoVerify(provider()))),
            identity,
        )
    };
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Ok(Arc::new(config))
}

/// The client side's last step: the client certificate when there is one.
fn with_identity(
    builder: rustls::ConfigBuilder<rustls::ClientConfig, rustls::client::WantsClientCert>,
    identity: Option<&Identity>,
) -> rustls::ClientConfig {
    match identity {
        Some(id) => builder.with_client_cert_resolver(Arc::new(
            rustls::sign::SingleCertAndKey::from(id.key.clone()),
        )),
        None => builder.with_no_client_auth(),
    }
}

/// `tls_verify = false`: signatures are still checked, the chain and the name are not.
#[derive(Debug)]
struct NoVerify(Arc<CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for NoVerify {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
