//! What the listeners serve for `[acme]`: the certificates obtained at run time, swapped in
//! whole (handshakes read them without a lock), and the answers to the challenges in progress
//! (HTTP-01 tokens, TLS-ALPN-01 certificates). The ACME client that fills them is
//! `crate::acme`.

use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::sign::CertifiedKey;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

/// The ALPN protocol of TLS-ALPN-01 validations (RFC 8737 6.2).
pub const ACME_TLS_ALPN: &[u8] = b"acme-tls/1";

/// At most this many HTTP-01 answers are held (one per name being validated).
const MAX_ANSWERS: usize = 1024;

/// Certificates by name and the challenge answers; one per process, kept across reloads.
#[derive(Debug, Default)]
pub struct Issued {
    certs: arc_swap::ArcSwap<HashMap<String, Arc<CertifiedKey>>>,
    /// TLS-ALPN-01: the challenge certificate per name being validated.
    alpn: Mutex<HashMap<String, Arc<CertifiedKey>>>,
    /// HTTP-01: the key authorization per token.
    http: Mutex<HashMap<String, String>>,
    /// Where HTTP-01 answers are also written as files (`[acme] storage`'s `http-01`), so
    /// every instance sharing the storage answers the validations of the one that orders.
    shared: Mutex<Option<PathBuf>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Issued {
    /// The certificate for `name` (lower case), if one was obtained.
    pub fn get(&self, name: &str) -> Option<Arc<CertifiedKey>> {
        self.certs.load().get(name).cloned()
    }

    /// Serves `key` for `name` from the next handshake on; connections already open keep
    /// theirs.
    pub fn put(&self, name: &str, key: Arc<CertifiedKey>) {
        self.certs.rcu(|m| {
            let mut m = HashMap::clone(m);
            m.insert(name.to_string(), key.clone());
            m
        });
    }

    /// The TLS-ALPN-01 certificate for `name`, while its validation runs.
    pub fn challenge(&self, name: &str) -> Option<Arc<CertifiedKey>> {
        lock(&self.alpn).get(name).cloned()
    }

    /// Answers TLS-ALPN-01 for `name` with `key` (`None`: stop answering).
    pub fn set_challenge(&self, name: &str, key: Option<Arc<CertifiedKey>>) {
        let mut m = lock(&self.alpn);
        match key {
            Some(k) => {
                m.insert(name.to_string(), k);
            }
            None => {
                m.remove(name);
            }
        }
    }

    /// Shares HTTP-01 answers through files in `dir` (`None`: in memory only).
    pub fn share_http_answers(&self, dir: Option<PathBuf>) {
        *lock(&self.shared) = dir;
    }

    /// The HTTP-01 answer for `token` (the path's last segment): this instance's, else one
    /// another instance sharing the storage wrote (a token is 1 to 128 characters of the
    /// base64url alphabet, RFC 8555 8.3; anything else is not looked for; at most 1 KiB read).
    pub fn http_answer(&self, token: &str) -> Option<String> {
        if let Some(k) = lock(&self.http).get(token) {
            return Some(k.clone());
        }
        let dir = lock(&self.shared).clone()?;
        let ok = (1..=128).contains(&token.len())
            && token
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if !ok {
            return None;
        }
        // A regular file only: opening a FIFO would block this worker thread.
        crate::regular_file::read_string(&dir.join(token), 1024).ok()
    }

    /// Answers HTTP-01 for `token` with `key_authorization` (`None`: stop answering), in
    /// memory and, when shared, as a file.
    pub fn set_http_answer(&self, token: &str, key_authorization: Option<String>) {
        let shared = lock(&self.shared).clone();
        let mut m = lock(&self.http);
        match key_authorization {
            Some(k) if m.len() < MAX_ANSWERS => {
                if let Some(dir) = shared {
                    if let Err(e) = std::fs::write(dir.join(token), &k) {
                        tracing::warn!(token, error = %e, "an HTTP-01 answer is not shared");
                    }
                }
                m.insert(token.to_string(), k);
            }
            Some(_) => {}
            None => {
                if let Some(dir) = shared {
                    let _ = std::fs::remove_file(dir.join(token));
                }
                m.remove(token);
            }
        }
    }
}

/// A handshake's connection, or `None` when it negotiated `acme-tls/1`: a validation, which
/// is closed once the handshake is done (RFC 8737 3).
pub fn not_a_validation<IO>(
    s: tokio_rustls::server::TlsStream<IO>,
) -> Option<tokio_rustls::server::TlsStream<IO>> {
    (s.get_ref().1.alpn_protocol() != Some(ACME_TLS_ALPN)).then_some(s)
}

/// The TLS-ALPN-01 certificate for `name` (RFC 8737 3): self-signed, the name as its only
/// subject alternative name, the critical `acmeIdentifier` extension holding `digest` (the
/// SHA-256 of the key authorization), with a fresh P-256 key.
pub fn challenge_certificate(name: &str, digest: &[u8]) -> Result<Arc<CertifiedKey>, String> {
    let mut params =
        rcgen::CertificateParams::new(vec![name.to_string()]).map_err(|e| e.to_string())?;
    params.custom_extensions = vec![rcgen::CustomExtension::new_acme_identifier(digest)];
    let key = rcgen::KeyPair::generate().map_err(|e| e.to_string())?;
    let cert = params.self_signed(&key).map_err(|e| e.to_string())?;
    let private = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
    let chain = vec![CertificateDer::from(cert.der().to_vec())];
    // Not `from_der`: its check that key and certificate agree parses the certificate as
    // webpki does, which refuses the critical `acmeIdentifier` extension.
    let signer = super::provider()
        .key_provider
        .load_private_key(private)
        .map_err(|e| e.to_string())?;
    Ok(Arc::new(CertifiedKey::new(chain, signer)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_are_set_and_taken_back() {
        let issued = Issued::default();
        issued.set_http_answer("tok", Some("tok.thumb".into()));
        assert_eq!(issued.http_answer("tok").as_deref(), Some("tok.thumb"));
        issued.set_http_answer("tok", None);
        assert_eq!(issued.http_answer("tok"), None);
        let key = challenge_certificate("a.example", &[7; 32]).unwrap();
        issued.set_challenge("a.example", Some(key.clone()));
        assert!(issued.challenge("a.example").is_some());
        assert!(issued.get("a.example").is_none());
        issued.put("a.example", key);
        assert!(issued.get("a.example").is_some());
        issued.set_challenge("a.example", None);
        assert!(issued.challenge("a.example").is_none());
    }

    #[test]
    fn http_answers_are_shared_through_files() {
        let scratch = crate::scratch_dir("http01");
        let base = scratch.path().to_path_buf();
        let dir = base.join("answers");
        std::fs::create_dir_all(&dir).unwrap();
        let (orders, other) = (Issued::default(), Issued::default());
        orders.share_http_answers(Some(dir.clone()));
        other.share_http_answers(Some(dir.clone()));
        orders.set_http_answer("Tok-en_1", Some("Tok-en_1.thumb".into()));
        assert_eq!(
            other.http_answer("Tok-en_1").as_deref(),
            Some("Tok-en_1.thumb")
        );
        std::fs::write(base.join("secret"), "x").unwrap();
        assert_eq!(
            other.http_answer("../secret"),
            None,
            "not a token: not looked for"
        );
        orders.set_http_answer("Tok-en_1", None);
        assert_eq!(other.http_answer("Tok-en_1"), None);
    }
}
