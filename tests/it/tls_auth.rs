//! Certificates on both sides of a handshake: a client certificate presented to servers that
//! require one (`tls_cert`, `tls_key`), with real rustls servers and clients.

use crate::common;
use crate::tls_h2::{ensure_provider, p, wait_for_check, Pki};

use bytes::Bytes;
use common::*;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use tokio::net::TcpListener;

/// A TLS server that requires a client certificate signed by `pki`'s CA; answers with the
/// client certificate's size. Counts the handshakes that presented a certificate.
async fn mtls_backend(pki: &Pki) -> (SocketAddr, Arc<AtomicUsize>) {
    let (c, k, _) = pki.issue("mtls-backend", &["backend.test"]);
    let id = langur::tls::load_identity(&c, &k).unwrap();
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(rustls::pki_types::CertificateDer::from(
            pki.ca.der().to_vec(),
        ))
        .unwrap();
    let verifier = rustls::server::WebPkiClientVerifier::builder(Arc::new(roots))
        .build()
        .unwrap();
    let mut config = rustls::ServerConfig::builder()
        .with_client_cert_verifier(verifier)
        .with_single_cert(id.key.cert.clone(), {
            use rustls::pki_types::pem::PemObject;
            rustls::pki_types::PrivateKeyDer::from_pem_file(&k).unwrap()
        })
        .unwrap();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let presented = Arc::new(AtomicUsize::new(0));
    let count = presented.clone();
    tokio::spawn(async move {
        loop {
            let Ok((s, _)) = l.accept().await else {
                continue;
            };
            let (acceptor, count) = (acceptor.clone(), count.clone());
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(s).await else {
                    return;
                };
                let Some(certs) = tls.get_ref().1.peer_certificates() else {
                    return;
                };
                count.fetch_add(1, Ordering::SeqCst);
                let size = certs[0].len();
                let svc =
                    hyper::service::service_fn(move |_req: http::Request<Incoming>| async move {
                        Ok::<_, std::convert::Infallible>(http::Response::new(Full::new(
                            Bytes::from(format!("client certificate of {size} bytes")),
                        )))
                    });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(tls), svc)
                    .await;
            });
        }
    });
    (addr, presented)
}

#[tokio::test]
async fn a_server_that_requires_a_client_certificate_is_reached_with_tls_cert() {
    ensure_provider();
    let pki = Pki::new("client-cert");
    let (backend, presented) = mtls_backend(&pki).await;
    let (cc, ck, der) = pki.issue("langur-client", &["langur.test"]);
    let ca = p(&pki.ca_path());
    let lg = start_with_admin(toml_config(&format!(
        "[[route]]\nmatch = ['^/with$']\npool = \"with\"\n[[route]]\nmatch = ['^/without$']\npool = \"without\"\n\
         [pools.with]\ntls = true\ntls_ca = \"{ca}\"\ntls_server_name = \"backend.test\"\n\
         tls_cert = \"{}\"\ntls_key = \"{}\"\nservers = [\"{backend}\"]\n\
         [pools.with.check]\ntype = \"http\"\npath = \"/\"\ninterval = \"100ms\"\ntimeout = \"300ms\"\n\
         [pools.without]\ntls = true\ntls_ca = \"{ca}\"\ntls_server_name = \"backend.test\"\nservers = [\"{backend}\"]\n",
        p(&cc),
        p(&ck)
    )))
    .await;
    let at = lg.listen_addrs()[0];
    let r = get(at, "/with").await;
    assert_eq!(
        (r.status.as_u16(), r.text()),
        (200, format!("client certificate of {} bytes", der.len()))
    );
    // Without a certificate the server ends the handshake: nothing to serve the request.
    let r = get(at, "/without").await;
    assert!(
        r.status == 502 || r.status == 503,
        "{} {}",
        r.status,
        r.text()
    );
    // The checks present the certificate too: the HTTP check passes.
    wait_for_check(lg.admin_addr().unwrap(), &[("with", "L7OK")]).await;
    assert!(presented.load(Ordering::SeqCst) >= 2);
    lg.shutdown().await;
}

#[test]
fn a_client_certificate_needs_its_key_and_tls() {
    let pki = Pki::new("client-cert-config");
    let (cc, ck, _) = pki.issue("c", &["c.test"]);
    let base = "[[route]]\nmatch = ['^/']\npool = \"p\"\n[pools.p]\nservers = [\"127.0.0.1:1\"]\n";
    for (extra, want) in [
        (
            format!("tls = true\ntls_cert = \"{}\"\n", p(&cc)),
            "t.toml:7: `tls_cert` needs `tls_key`",
        ),
        (
            format!("tls_cert = \"{}\"\ntls_key = \"{}\"\n", p(&cc), p(&ck)),
            "t.toml:6: a client certificate needs `tls = true`",
        ),
        (
            format!(
                "tls = true\ntls_cert = \"{}\"\ntls_key = \"{}\"\n",
                p(&ck),
                p(&ck)
            ),
            "t.toml:7: ",
        ),
    ] {
        let err = langur::config::parse_str("t.toml", &format!("{base}{extra}"), true)
            .unwrap_err()
            .to_string();
        assert!(err.contains(want), "{err}");
    }
}
