//! HTTPS: the API served with a certificate made for the test (the `openssl` command), reached
//! by a real TLS client (rustls) that trusts only that certificate; and the errors a user sees
//! for a missing or mismatched certificate and key.

use std::path::Path;
use std::process::Command;
use std::sync::Arc;

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName};
use sluice_api::Api;
use sluice_scheduler::Catalog;
use sluice_store::{SqliteStore, Store};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_rustls::rustls;

fn self_signed(dir: &Path) {
    let o = Command::new("openssl")
        .args(["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-days", "2"])
        .args(["-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"])
        // A server certificate, not a CA (rustls refuses a CA as an end entity).
        .args(["-addext", "basicConstraints=critical,CA:FALSE", "-addext", "extendedKeyUsage=serverAuth"])
        .arg("-keyout")
        .arg(dir.join("key.pem"))
        .arg("-out")
        .arg(dir.join("cert.pem"))
        .output()
        .expect("openssl is installed");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_answers_over_https_with_the_configured_certificate() {
    let dir = tempfile::tempdir().unwrap();
    self_signed(dir.path());
    let store: Arc<dyn Store> =
        Arc::new(SqliteStore::open(&dir.path().join("sluice.db").display().to_string()).await.unwrap());
    let (_tx, catalog) = tokio::sync::watch::channel(Arc::new(Catalog::default()));
    let api = Api::builder(store, catalog, dir.path().join("logs")).build();
    let acceptor = sluice_api::tls::acceptor(&dir.path().join("cert.pem"), &dir.path().join("key.pem")).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(sluice_api::serve_tls(listener, api, acceptor, std::future::pending()));

    let mut roots = rustls::RootCertStore::empty();
    roots.add(CertificateDer::from_pem_file(dir.path().join("cert.pem")).unwrap()).unwrap();
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut tls = connector.connect(ServerName::try_from("localhost").unwrap(), tcp).await.expect("the handshake");
    tls.write_all(b"GET /api/v1/dags HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n").await.unwrap();
    let mut answer = String::new();
    tls.read_to_string(&mut answer).await.unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.contains("\"failed_files\":[]"), "{answer}");

    // Plain HTTP on the HTTPS port gets no answer from the API.
    let mut plain = tokio::net::TcpStream::connect(addr).await.unwrap();
    plain.write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n").await.unwrap();
    let mut junk = Vec::new();
    let _ = plain.read_to_end(&mut junk).await;
    assert!(!String::from_utf8_lossy(&junk).contains("\"status\":\"ok\""));
}

#[test]
fn a_missing_or_mismatched_certificate_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let missing = sluice_api::tls::acceptor(&dir.path().join("nope.pem"), &dir.path().join("key.pem")).err().unwrap();
    assert!(missing.to_string().contains("cannot read the certificate"), "{missing}");
    self_signed(dir.path());
    let other = tempfile::tempdir().unwrap();
    self_signed(other.path());
    let mismatched =
        sluice_api::tls::acceptor(&dir.path().join("cert.pem"), &other.path().join("key.pem")).err().unwrap();
    assert!(mismatched.to_string().contains("do not make a server identity"), "{mismatched}");
    std::fs::write(dir.path().join("empty.pem"), "").unwrap();
    let empty = sluice_api::tls::acceptor(&dir.path().join("empty.pem"), &dir.path().join("key.pem")).err().unwrap();
    assert!(empty.to_string().contains("holds no PEM certificate"), "{empty}");
}
