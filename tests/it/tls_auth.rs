//! Certificates on both sides of a handshake: a client certificate presented to servers that
//! require one (`tls_cert`, `tls_key`), with real rustls servers and clients.

use crate::common;
use crate::tls_h2::{ensure_provider, p, wait_for_check, Pki};

use bytes::Bytes;
use common::*;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use langur::Langur;
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
            "t.toml:6: `tls_cert`: a client certificate needs `tls = true`",
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

/// A client certificate (chain and key) signed by `ca`, with this serial number and
/// validity; returns the rustls forms and the PEM files written for it.
fn client_cert(
    pki: &Pki,
    ca: &rcgen::CertifiedIssuer<'static, rcgen::KeyPair>,
    file: &str,
    serial: u64,
    expired: bool,
) -> (
    Vec<rustls::pki_types::CertificateDer<'static>>,
    rustls::pki_types::PrivateKeyDer<'static>,
) {
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(vec!["alice.example".to_string()]).unwrap();
    params.distinguished_name = rcgen::DistinguishedName::new();
    params
        .distinguished_name
        .push(rcgen::DnType::OrganizationName, "Example");
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, file);
    params.serial_number = Some(rcgen::SerialNumber::from(serial));
    if expired {
        params.not_before = rcgen::date_time_ymd(2000, 1, 1);
        params.not_after = rcgen::date_time_ymd(2001, 1, 1);
    }
    let cert = params.signed_by(&key, ca).unwrap();
    std::fs::write(pki.dir.join(format!("{file}.pem")), cert.pem()).unwrap();
    (
        vec![cert.der().clone()],
        rustls::pki_types::PrivateKeyDer::try_from(key.serialize_der()).unwrap(),
    )
}

/// A client trusting `pki`'s CA, presenting `cert` when asked.
fn connector(
    pki: &Pki,
    cert: Option<&(
        Vec<rustls::pki_types::CertificateDer<'static>>,
        rustls::pki_types::PrivateKeyDer<'static>,
    )>,
) -> tokio_rustls::TlsConnector {
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(rustls::pki_types::CertificateDer::from(
            pki.ca.der().to_vec(),
        ))
        .unwrap();
    let builder = rustls::ClientConfig::builder().with_root_certificates(roots);
    let mut config = match cert {
        Some((chain, key)) => builder
            .with_client_auth_cert(chain.clone(), key.clone_key())
            .unwrap(),
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    tokio_rustls::TlsConnector::from(Arc::new(config))
}

/// GET `path` over TLS to `sni` with `fields`: the status, the backend's name and the body;
/// an error when the handshake or the exchange failed.
async fn tls_get(
    at: SocketAddr,
    sni: &str,
    with: &tokio_rustls::TlsConnector,
    path: &str,
    fields: &[(&str, &str)],
) -> Result<(u16, String, String), String> {
    use http_body_util::BodyExt;
    let tcp = tokio::net::TcpStream::connect(at).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from(sni.to_string()).unwrap();
    let tls = with.connect(name, tcp).await.map_err(|e| e.to_string())?;
    let (mut send, conn) =
        hyper::client::conn::http1::handshake::<_, Full<Bytes>>(TokioIo::new(tls))
            .await
            .map_err(|e| e.to_string())?;
    tokio::spawn(conn);
    let mut req = http::Request::get(path).header("host", sni);
    for (k, v) in fields {
        req = req.header(*k, *v);
    }
    let resp = send
        .send_request(req.body(Full::new(Bytes::new())).unwrap())
        .await
        .map_err(|e| format!("{e:?}"))?;
    let status = resp.status().as_u16();
    let backend = resp
        .headers()
        .get("x-backend")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    let body = resp
        .into_body()
        .collect()
        .await
        .map_err(|e| e.to_string())?;
    Ok((
        status,
        backend,
        String::from_utf8_lossy(&body.to_bytes()).into_owned(),
    ))
}

/// `[tls]` with three entries: `open.test` (no client certificates), `req.test` (required,
/// with a CRL revoking serial 66) and `opt.test` (optional); `/headers` goes to the pool
/// `cert` for a verified client whose subject names alice, everything else to `plain`.
async fn mtls_langur(pki: &Pki, cert: &Backend, plain: &Backend) -> Langur {
    let entry = |name: &str, extra: &str| {
        let (c, k, _) = pki.issue(name, &[name]);
        format!("{{ cert = \"{}\", key = \"{}\"{extra} }}", p(&c), p(&k))
    };
    let ca = p(&pki.ca_path());
    let crl = rcgen::CertificateRevocationListParams {
        this_update: rcgen::date_time_ymd(2020, 1, 1),
        next_update: rcgen::date_time_ymd(2100, 1, 1),
        crl_number: rcgen::SerialNumber::from(1u64),
        issuing_distribution_point: None,
        revoked_certs: vec![rcgen::RevokedCertParams {
            serial_number: rcgen::SerialNumber::from(66u64),
            revocation_time: rcgen::date_time_ymd(2024, 1, 1),
            reason_code: Some(rcgen::RevocationReason::KeyCompromise),
            invalidity_date: None,
        }],
        key_identifier_method: rcgen::KeyIdMethod::Sha256,
    }
    .signed_by(&pki.ca)
    .unwrap();
    let crl_path = pki.dir.join("ca.crl");
    std::fs::write(&crl_path, crl.pem().unwrap()).unwrap();
    let entries = [
        entry("open.test", ""),
        entry(
            "req.test",
            &format!(", client_ca = \"{ca}\", client_crl = \"{}\"", p(&crl_path)),
        ),
        entry(
            "opt.test",
            &format!(", client_ca = \"{ca}\", client_auth = \"optional\""),
        ),
    ]
    .join(", ");
    let mut config = toml_config(&format!(
        "[tls]\nlisten = [\"127.0.0.1:0\"]\ncertificates = [{entries}]\n\
         [[route]]\npath = \"/headers\"\nclient_cert = \"verified\"\nclient_cert_subject = \"~^CN=alice\"\npool = \"cert\"\n\
         [[route]]\npath_prefix = \"/\"\npool = \"plain\"\n\
         [pools.cert]\nservers = [\"{}\"]\n[pools.plain]\nservers = [\"{}\"]\n",
        cert.addr, plain.addr
    ));
    config.admin.hosts.push("test.local".into());
    config.server.access_log = false;
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let admin = TcpListener::bind("127.0.0.1:0").await.unwrap();
    Langur::start_on(config, vec![l], Some(admin))
        .await
        .unwrap()
}

#[tokio::test]
async fn mutual_tls_required_and_optional_send_the_verified_client_to_the_server() {
    ensure_provider();
    let pki = Pki::new("mtls");
    let (cert_pool, plain_pool) = (Backend::start("cert").await, Backend::start("plain").await);
    let lg = mtls_langur(&pki, &cert_pool, &plain_pool).await;
    let at = lg.tls_addrs()[0];
    let alice = client_cert(&pki, &pki.ca, "alice", 7, false);
    let with_alice = connector(&pki, Some(&alice));
    let anonymous = connector(&pki, None);
    let forged = [
        ("x-client-cert-subject", "CN=mallory"),
        ("x-client-cert-sha256", "00"),
    ];

    // Required: the verified client's fields reach the server, forged ones do not.
    let (status, backend, body) = tls_get(at, "req.test", &with_alice, "/headers", &forged)
        .await
        .unwrap();
    assert_eq!((status, backend.as_str()), (200, "cert"), "{body}");
    assert!(
        body.contains("x-client-cert-subject: CN=alice,O=Example\n"),
        "{body}"
    );
    assert!(
        body.contains("x-client-cert-san: DNS:alice.example\n"),
        "{body}"
    );
    let fingerprint = {
        let d = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, alice.0[0].as_ref());
        d.as_ref()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>()
    };
    assert!(
        body.contains(&format!("x-client-cert-sha256: {fingerprint}\n")),
        "{body}"
    );
    assert!(
        !body.contains("mallory") && !body.contains("sha256: 00\n"),
        "{body}"
    );
    // Required, without a certificate: refused.
    assert!(tls_get(at, "req.test", &anonymous, "/", &[]).await.is_err());

    // Optional: with a certificate as above; without one, let in unverified, no route
    // `client_cert = "verified"` takes it, and the forged fields are removed.
    let (status, backend, body) = tls_get(at, "opt.test", &with_alice, "/headers", &[])
        .await
        .unwrap();
    assert_eq!((status, backend.as_str()), (200, "cert"));
    assert!(body.contains(&fingerprint), "{body}");
    let (status, backend, body) = tls_get(at, "opt.test", &anonymous, "/headers", &forged)
        .await
        .unwrap();
    assert_eq!((status, backend.as_str()), (200, "plain"));
    assert!(!body.contains("x-client-cert"), "{body}");

    // No client authentication on open.test: no fields, whatever the client says.
    let (_, backend, body) = tls_get(at, "open.test", &anonymous, "/headers", &forged)
        .await
        .unwrap();
    assert_eq!(backend, "plain");
    assert!(!body.contains("x-client-cert"), "{body}");
    lg.shutdown().await;
}

#[tokio::test]
async fn revoked_expired_and_foreign_client_certificates_are_refused_and_counted() {
    ensure_provider();
    let pki = Pki::new("mtls-bad");
    let (cert_pool, plain_pool) = (Backend::start("cert").await, Backend::start("plain").await);
    let lg = mtls_langur(&pki, &cert_pool, &plain_pool).await;
    let at = lg.tls_addrs()[0];
    let other = {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "another CA");
        rcgen::CertifiedIssuer::self_signed(params, rcgen::KeyPair::generate().unwrap()).unwrap()
    };
    let revoked = client_cert(&pki, &pki.ca, "revoked", 66, false);
    let expired = client_cert(&pki, &pki.ca, "expired", 8, true);
    let foreign = client_cert(&pki, &other, "foreign", 9, false);
    for c in [&revoked, &expired, &foreign] {
        let r = tls_get(at, "req.test", &connector(&pki, Some(c)), "/", &[]).await;
        assert!(r.is_err(), "{r:?}");
    }
    // Optional authentication still refuses a bad certificate.
    let r = tls_get(at, "opt.test", &connector(&pki, Some(&foreign)), "/", &[]).await;
    assert!(r.is_err(), "{r:?}");
    let r = tls_get(at, "req.test", &connector(&pki, None), "/", &[]).await;
    assert!(r.is_err(), "{r:?}");

    let admin = lg.admin_addr().unwrap();
    let t = std::time::Instant::now();
    loop {
        let stats: serde_json::Value =
            serde_json::from_str(&get(admin, "/api/stats").await.text()).unwrap();
        let f = &stats["tls_handshake_failures"];
        let got = (
            f["revoked"].as_u64(),
            f["expired"].as_u64(),
            f["unknown_ca"].as_u64(),
            f["no_certificate"].as_u64(),
        );
        if got == (Some(1), Some(1), Some(2), Some(1)) {
            break;
        }
        assert!(t.elapsed() < std::time::Duration::from_secs(5), "{f}");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let metrics = get(admin, "/metrics").await.text();
    assert!(
        metrics.contains("langur_tls_handshake_failures_total{reason=\"revoked\"} 1"),
        "{metrics}"
    );
    lg.shutdown().await;
}

#[test]
fn client_authentication_keys_are_checked() {
    let pki = Pki::new("mtls-config");
    let (c, k, _) = pki.issue("a", &["a.test"]);
    let ca = p(&pki.ca_path());
    let tls = |extra: &str| {
        format!(
            "[[route]]\nmatch = ['^/']\npool = \"p\"\n[pools.p]\nservers = [\"127.0.0.1:1\"]\n\
             [tls]\nlisten = [\"127.0.0.1:0\"]\ncertificates = [{{ cert = \"{}\", key = \"{}\"{extra} }}]\n",
            p(&c),
            p(&k)
        )
    };
    for (extra, want) in [
        (
            ", client_auth = \"optional\"".to_string(),
            "`client_auth` and `client_crl` need `client_ca`",
        ),
        (
            format!(", client_ca = \"{ca}\", client_auth = \"sometimes\""),
            "`client_auth` must be \"required\" or \"optional\"",
        ),
        (
            format!(", client_ca = \"{ca}\", client_crl = \"{ca}\""),
            "holds no CRL",
        ),
        (
            ", client_ca = \"/nonexistent/ca.pem\"".to_string(),
            "/nonexistent/ca.pem",
        ),
    ] {
        let err = langur::config::parse_str("t.toml", &tls(&extra), true)
            .unwrap_err()
            .to_string();
        assert!(err.contains(want) && err.contains("t.toml:8"), "{err}");
    }
    let route = "[[route]]\nclient_cert = \"maybe\"\npool = \"p\"\n[pools.p]\nservers = [\"127.0.0.1:1\"]\n";
    let err = langur::config::parse_str("t.toml", route, true)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("t.toml:2") && err.contains("\"verified\" or \"none\""),
        "{err}"
    );
}
