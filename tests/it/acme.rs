//! `[acme]` against a real ACME server: Debian's `pebble`, started here on loopback with its
//! validation ports pointing at langur's listeners. Certificates obtained over HTTP-01 and
//! TLS-ALPN-01 and served to a client that trusts only Pebble's issuing root; a restart that
//! reuses the stored certificate; a renewal that swaps the certificate under an open
//! connection; a failing challenge that keeps the old certificate and reports the error.

use crate::common;
use crate::tls_h2::{ensure_provider, p, Pki};

use bytes::Bytes;
use common::*;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use langur::Langur;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};

/// A running pebble, killed when dropped.
struct Pebble {
    child: Child,
    /// Its ACME directory URL, and the CA its own HTTPS certificate comes from.
    directory: String,
    pki: Pki,
    management: SocketAddr,
}

impl Drop for Pebble {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The pebble binary, or `None` (with the reason printed) when it is missing outside CI.
fn pebble_binary() -> Option<PathBuf> {
    let found = std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .map(|d| d.join("pebble"))
        .find(|p| p.is_file());
    if found.is_none() {
        assert!(
            std::env::var_os("CI").is_none(),
            "pebble is not installed (apt-get install pebble); CI must run the ACME tests"
        );
        eprintln!("skipped: the pebble binary is not installed (apt-get install pebble)");
    }
    found
}

impl Pebble {
    /// Starts pebble on loopback, validating HTTP-01 on `http_port` and TLS-ALPN-01 on
    /// `tls_port` of `localhost`; its HTTPS certificate is made here (the package ships none).
    async fn start(bin: &Path, http_port: u16, tls_port: u16) -> Pebble {
        Pebble::start_with(bin, http_port, tls_port, None).await
    }

    /// [`Pebble::start`], requiring an external account binding with `eab` (key identifier,
    /// base64url HMAC key) when given.
    async fn start_with(
        bin: &Path,
        http_port: u16,
        tls_port: u16,
        eab: Option<(&str, &str)>,
    ) -> Pebble {
        // Its own directory per configuration: tests run at once.
        let pki = Pki::new(if eab.is_some() {
            "pebble-eab"
        } else {
            "pebble"
        });
        let (cert, key, _) = pki.issue("pebble-wfe", &["localhost", "127.0.0.1"]);
        let (listen, management) = (dead_addr().await, dead_addr().await);
        let config = serde_json::json!({ "pebble": {
            "listenAddress": listen.to_string(),
            "managementListenAddress": management.to_string(),
            "certificate": p(&cert),
            "privateKey": p(&key),
            "httpPort": http_port,
            "tlsPort": tls_port,
            "ocspResponderURL": "",
            "externalAccountBindingRequired": eab.is_some(),
            "externalAccountMACKeys": eab.map(|(kid, key)| serde_json::json!({ kid: key })),
        }});
        let config_path = pki.dir.join("pebble.json");
        std::fs::write(&config_path, config.to_string()).unwrap();
        let log = std::fs::File::create(pki.dir.join("pebble.log")).unwrap();
        let child = Command::new(bin)
            .arg("-config")
            .arg(&config_path)
            .env("PEBBLE_VA_NOSLEEP", "1")
            .env("PEBBLE_WFE_NONCEREJECT", "0")
            .env("PEBBLE_AUTHZREUSE", "0")
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .stdin(Stdio::null())
            .spawn()
            .unwrap();
        let pebble = Pebble {
            child,
            directory: format!("https://{listen}/dir"),
            pki,
            management,
        };
        for _ in 0..100 {
            if TcpStream::connect(listen).await.is_ok()
                && TcpStream::connect(management).await.is_ok()
            {
                return pebble;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("pebble did not start: {}", pebble.log());
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.pki.dir.join("pebble.log")).unwrap_or_default()
    }

    /// The root that issues pebble's certificates (its management interface, `/roots/0`).
    async fn issuing_root(&self) -> rustls::pki_types::CertificateDer<'static> {
        use rustls::pki_types::pem::PemObject;
        let tls = tls(
            &self.pki.client(&[b"http/1.1"]),
            self.management,
            "127.0.0.1",
        )
        .await;
        let (status, body) = get_over(tls, "/roots/0").await;
        assert_eq!(status, 200);
        rustls::pki_types::CertificateDer::from_pem_slice(&body).unwrap()
    }
}

async fn tls(
    connector: &tokio_rustls::TlsConnector,
    at: SocketAddr,
    sni: &str,
) -> tokio_rustls::client::TlsStream<TcpStream> {
    let tcp = TcpStream::connect(at).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from(sni.to_string()).unwrap();
    connector.connect(name, tcp).await.unwrap()
}

/// A client trusting only `root`, offering http/1.1.
fn trusting(root: &rustls::pki_types::CertificateDer<'static>) -> tokio_rustls::TlsConnector {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(root.clone()).unwrap();
    let mut config = rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    tokio_rustls::TlsConnector::from(Arc::new(config))
}

/// An HTTP/1.1 connection over `io`, kept open for more requests.
async fn h1<T>(io: T) -> hyper::client::conn::http1::SendRequest<Full<Bytes>>
where
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io))
        .await
        .unwrap();
    tokio::spawn(conn);
    send
}

async fn send(
    s: &mut hyper::client::conn::http1::SendRequest<Full<Bytes>>,
    host: &str,
    path: &str,
) -> (u16, Bytes) {
    let req = http::Request::get(path)
        .header("host", host)
        .body(Full::new(Bytes::new()))
        .unwrap();
    let resp = s.send_request(req).await.unwrap();
    let status = resp.status().as_u16();
    (status, resp.into_body().collect().await.unwrap().to_bytes())
}

async fn get_over<T>(io: T, path: &str) -> (u16, Bytes)
where
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    send(&mut h1(io).await, "localhost", path).await
}

/// The certificate a TLS connection was given (its leaf, DER).
fn leaf(tls: &tokio_rustls::client::TlsStream<TcpStream>) -> Vec<u8> {
    tls.get_ref().1.peer_certificates().unwrap()[0].to_vec()
}

fn config(
    pebble: &Pebble,
    storage: &Path,
    tls_port: u16,
    backend: SocketAddr,
    challenge: &str,
) -> String {
    format!(
        r#"
[admin]
hosts = ["test.local"]

[tls]
listen = ["127.0.0.1:{tls_port}"]

[acme]
directory = "{dir}"
directory_ca = "{ca}"
email = "ops@example.com"
storage = "{storage}"
challenge = "{challenge}"

[[route]]
host = ["localhost"]
acme = true
pool = "app"

[pools.app]
servers = ["{backend}"]
"#,
        dir = pebble.directory,
        ca = p(&pebble.pki.ca_path()),
        storage = p(storage),
    )
}

/// What an ACME test starts with: the pebble binary, a backend, the plain listener pebble
/// validates HTTP-01 on (and its port), and a free port for the TLS listener. `None` when
/// pebble is not installed (outside CI).
async fn setup() -> Option<(PathBuf, Backend, TcpListener, u16, u16)> {
    let bin = pebble_binary()?;
    ensure_provider();
    let backend = Backend::start("app").await;
    let plain = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let http_port = plain.local_addr().unwrap().port();
    let tls_port = dead_addr().await.port();
    Some((bin, backend, plain, http_port, tls_port))
}

/// A listener on `port` that closes every connection it accepts (`None` if the port is taken).
async fn close_every_connection_on(port: u16) -> Option<tokio::task::JoinHandle<()>> {
    let listener = TcpListener::bind(("127.0.0.1", port)).await.ok()?;
    Some(tokio::spawn(async move {
        while let Ok((conn, _)) = listener.accept().await {
            drop(conn);
        }
    }))
}

/// Starts langur from `text` (written to `file`, so a reload reads it) on `plain`, with an
/// admin listener.
async fn start(text: &str, file: &Path, plain: TcpListener) -> Langur {
    std::fs::write(file, text).unwrap();
    let mut config = langur::config::load(file).unwrap();
    config.server.access_log = false;
    let admin = TcpListener::bind("127.0.0.1:0").await.unwrap();
    Langur::start_on(config, vec![plain], Some(admin))
        .await
        .unwrap()
}

/// `/api/certificates`' entry for `localhost` once it has a certificate, within 30 s.
async fn certified(langur: &Langur, pebble: &Pebble) -> serde_json::Value {
    let admin = langur.admin_addr().unwrap();
    let mut last = serde_json::Value::Null;
    for _ in 0..300 {
        let list: serde_json::Value =
            serde_json::from_slice(&get(admin, "/api/certificates").await.body).unwrap();
        let entry = list
            .as_array()
            .unwrap_or_else(|| panic!("{list}"))
            .iter()
            .find(|c| c["source"] == "acme")
            .cloned()
            .unwrap();
        if !entry["not_after"].is_null() {
            return entry;
        }
        if let Some(e) = entry["last_error"].as_str() {
            panic!("ACME failed: {e}\npebble:\n{}", pebble.log());
        }
        last = entry;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!(
        "no certificate within 30 s: {last}\npebble:\n{}",
        pebble.log()
    );
}

#[tokio::test]
async fn certificates_from_pebble_over_http_01_and_tls_alpn_01_renewed_and_reused() {
    let Some((bin, backend, plain, http_port, tls_port)) = setup().await else {
        return;
    };
    let pebble = Pebble::start(&bin, http_port, tls_port).await;
    let storage = pebble.pki.dir.join("storage-http");

    // HTTP-01: obtained, listed, measured, served to a client trusting only pebble's root.
    let text = config(&pebble, &storage, tls_port, backend.addr, "http-01");
    let langur = start(&text, &pebble.pki.dir.join("langur.toml"), plain).await;
    let first = certified(&langur, &pebble).await;
    assert!(first["last_error"].is_null(), "{first}");
    assert!(
        first["issuer"].as_str().unwrap().contains("Pebble"),
        "{first}"
    );
    assert!(first["expires_in"].as_i64().unwrap() > 0);
    let events = get(langur.admin_addr().unwrap(), "/api/events")
        .await
        .text();
    assert!(events.contains("certificate obtained"), "{events}");
    let metrics = get(langur.admin_addr().unwrap(), "/metrics").await.text();
    assert!(
        metrics.contains("langur_certificate_expiry_seconds{name=\"localhost\",source=\"acme\"}"),
        "{metrics}"
    );
    let client = trusting(&pebble.issuing_root().await);
    let at: SocketAddr = format!("127.0.0.1:{tls_port}").parse().unwrap();
    let open = tls(&client, at, "localhost").await;
    let before = leaf(&open);
    let mut open = h1(open).await;
    let (status, body) = send(&mut open, "localhost", "/").await;
    assert_eq!((status, body.as_ref()), (200, b"app".as_ref()));
    // A reload keeps serving it: the new snapshot's listener reads the same store.
    langur::server::reload(langur.shared()).unwrap();
    assert_eq!(leaf(&tls(&client, at, "localhost").await), before);
    // A challenge path nobody asked for: 404 from langur, not the backend.
    let probe = get(
        langur.listen_addrs()[0],
        "/.well-known/acme-challenge/nothing",
    )
    .await;
    assert_eq!(probe.status, 404);
    assert_eq!(backend.hits(), 1);

    // Renewal: a new certificate for new handshakes; the open connection goes on.
    langur.renew_certificates_now();
    let mut after = before.clone();
    for _ in 0..300 {
        after = leaf(&tls(&client, at, "localhost").await);
        if after != before {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_ne!(
        before,
        after,
        "the renewed certificate is served: {}",
        pebble.log()
    );
    let renewed = certified(&langur, &pebble).await;
    assert!(renewed["last_error"].is_null(), "{renewed}");
    let (status, _) = send(&mut open, "localhost", "/").await;
    assert_eq!(
        status, 200,
        "the connection opened before the renewal still works"
    );
    langur.shutdown().await;
    // Pebble's port for http-01 is now held by a listener that closes every connection: left
    // free, another test could take it and answer, or hold the validation past the wait below.
    let closing = close_every_connection_on(http_port).await;

    // A restart reuses the stored certificate: no attempt, the same certificate.
    let plain = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let langur = start(&text, &pebble.pki.dir.join("langur.toml"), plain).await;
    let list: serde_json::Value = serde_json::from_slice(
        &get(langur.admin_addr().unwrap(), "/api/certificates")
            .await
            .body,
    )
    .unwrap();
    assert!(list[0]["last_attempt"].is_null(), "{list}");
    assert_eq!(list[0]["not_after"], renewed["not_after"]);
    assert_eq!(leaf(&tls(&client, at, "localhost").await), after);

    // A challenge that fails (pebble validates on a port where connections are closed at
    // once): the problem's detail reported, an event, the old certificate still served.
    langur.renew_certificates_now();
    let admin = langur.admin_addr().unwrap();
    let mut failed = serde_json::Value::Null;
    for _ in 0..300 {
        let list: serde_json::Value =
            serde_json::from_slice(&get(admin, "/api/certificates").await.body).unwrap();
        if !list[0]["last_error"].is_null() {
            failed = list[0].clone();
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let error = failed["last_error"].as_str().unwrap_or_default();
    assert!(error.contains("urn:ietf:params:acme:error:"), "{failed}");
    assert_eq!(failed["not_after"], renewed["not_after"]);
    assert_eq!(leaf(&tls(&client, at, "localhost").await), after);
    let events = get(admin, "/api/events").await.text();
    assert!(events.contains("L7RSP"), "{events}");
    langur.shutdown().await;

    // TLS-ALPN-01, on the same TLS port (pebble validates there), with storage of its own.
    let storage = pebble.pki.dir.join("storage-alpn");
    let text = config(&pebble, &storage, tls_port, backend.addr, "tls-alpn-01");
    let plain = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let langur = start(&text, &pebble.pki.dir.join("langur.toml"), plain).await;
    let got = certified(&langur, &pebble).await;
    assert!(got["last_error"].is_null(), "{got}");
    let alpn = tls(&client, at, "localhost").await;
    assert_ne!(leaf(&alpn), after, "a certificate of its own");
    let (status, body) = get_over(alpn, "/").await;
    assert_eq!((status, body.as_ref()), (200, b"app".as_ref()));
    langur.shutdown().await;

    // Two instances on one storage: B orders (it starts first and takes the lock), pebble
    // validates on A's port and A answers from the storage; A takes B's certificate instead of
    // ordering. One certificate issued, both serve it.
    let issued_before = pebble.log().matches("Issued certificate").count();
    let storage = pebble.pki.dir.join("storage-shared");
    if let Some(closing) = closing {
        closing.abort();
        let _ = closing.await;
    }
    let plain_a = TcpListener::bind(("127.0.0.1", http_port)).await.unwrap();
    let tls_b = dead_addr().await;
    let text_b = config(&pebble, &storage, tls_b.port(), backend.addr, "http-01");
    let b = start(
        &text_b,
        &pebble.pki.dir.join("b.toml"),
        TcpListener::bind("127.0.0.1:0").await.unwrap(),
    )
    .await;
    let text_a = config(&pebble, &storage, tls_port, backend.addr, "http-01");
    let a = start(&text_a, &pebble.pki.dir.join("a.toml"), plain_a).await;
    let (got_a, got_b) = (certified(&a, &pebble).await, certified(&b, &pebble).await);
    assert!(got_a["last_error"].is_null() && got_b["last_error"].is_null());
    assert_eq!(
        leaf(&tls(&client, at, "localhost").await),
        leaf(&tls(&client, tls_b, "localhost").await)
    );
    let issued = pebble.log().matches("Issued certificate").count();
    assert_eq!(issued, issued_before + 1, "{}", pebble.log());
    a.shutdown().await;
    b.shutdown().await;
    drop(pebble);
}

/// A CA that requires an external account binding (RFC 8555 7.3.4) issues once langur binds
/// the account with the key it gave; the key never shows in what langur reports.
#[tokio::test]
async fn a_ca_requiring_external_account_binding_issues_to_a_bound_account() {
    let Some((bin, backend, plain, http_port, tls_port)) = setup().await else {
        return;
    };
    let key = "zWNDZM6eQGHWpSRTPal5eIUYFTu7EajVIoguysqZ9wG44nMEtx3MUAsUDkMTQ12W";
    let pebble = Pebble::start_with(&bin, http_port, tls_port, Some(("kid-7", key))).await;
    let storage = pebble.pki.dir.join("storage-eab");
    let text = config(&pebble, &storage, tls_port, backend.addr, "http-01").replace(
        "challenge = \"http-01\"",
        &format!("challenge = \"http-01\"\neab_kid = \"kid-7\"\neab_hmac_key = \"{key}\""),
    );
    let langur = start(&text, &pebble.pki.dir.join("langur.toml"), plain).await;
    let entry = certified(&langur, &pebble).await;
    assert!(entry["last_error"].is_null(), "{entry}");
    let account = std::fs::read_dir(storage.join("accounts")).unwrap().count();
    assert_eq!(account, 1);
    let file = pebble.pki.dir.join("langur.toml");
    let seen = format!("{:?}", langur::config::load(&file).unwrap().acme);
    assert!(
        seen.contains("kid-7") && seen.contains("<secret>"),
        "{seen}"
    );
    langur.shutdown().await;
}
