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
#[derive(Debug)]
pub struct Identity {
    pub names: Vec<String>,
    pub key: Arc<CertifiedKey>,
}

/// Reads a PEM certificate chain and its PEM private key; checks they belong together.
pub fn load_identity(cert: &Path, key: &Path) -> Result<Identity, String> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .map_err(|e| format!("cannot read certificate `{}`: {e}", cert.display()))?
        .collect::<Result<_, _>>()
        .map_err(|e| format!("`{}` is not a PEM certificate file: {e}", cert.display()))?;
    if chain.is_empty() {
        return Err(format!("`{}` holds no certificate", cert.display()));
    }
    let private = PrivateKeyDer::from_pem_file(key)
        .map_err(|e| format!("cannot read a private key from `{}`: {e}", key.display()))?;
    let names = {
        let ee = webpki::EndEntityCert::try_from(&chain[0])
            .map_err(|e| format!("`{}`: cannot parse the certificate: {e}", cert.display()))?;
        ee.valid_dns_names()
            .map(|n| n.to_ascii_lowercase())
            .collect::<Vec<_>>()
    };
    let certified = CertifiedKey::from_der(chain, private, &provider()).map_err(|e| {
        format!(
            "the key `{}` does not belong to the certificate `{}`: {e}",
            key.display(),
            cert.display()
        )
    })?;
    Ok(Identity {
        names,
        key: Arc::new(certified),
    })
}

/// Picks the certificate whose names match the SNI name (exactly, or a `*.` wildcard one
/// label deep); the first certificate when nothing matches or no name was sent.
#[derive(Debug)]
struct Sni {
    identities: Vec<Identity>,
}

impl Sni {
    fn pick(&self, name: Option<&str>) -> Option<Arc<CertifiedKey>> {
        if let Some(name) = name {
            let name = name.to_ascii_lowercase();
            let wildcard = name.split_once('.').map(|(_, rest)| format!("*.{rest}"));
            for id in &self.identities {
                if id.names.contains(&name) {
                    return Some(id.key.clone());
                }
            }
            if let Some(w) = wildcard {
                for id in &self.identities {
                    if id.names.contains(&w) {
                        return Some(id.key.clone());
                    }
                }
            }
        }
        self.identities.first().map(|i| i.key.clone())
    }
}

impl ResolvesServerCert for Sni {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.pick(hello.server_name())
    }
}

/// The listener's TLS configuration: SNI over `identities`, ALPN h2 then http/1.1.
pub fn server_config(
    identities: Vec<Identity>,
    h2: bool,
) -> Result<Arc<rustls::ServerConfig>, String> {
    let mut config = rustls::ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| e.to_string())?
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(Sni { identities }));
    config.alpn_protocols = if h2 {
        vec![b"h2".to_vec(), b"http/1.1".to_vec()]
    } else {
        vec![b"http/1.1".to_vec()]
    };
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
                let certs = CertificateDer::pem_file_iter(path)
                    .map_err(|e| format!("cannot read CA file `{}`: {e}", path.display()))?;
                for c in certs {
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
