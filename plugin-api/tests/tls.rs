//! TLS endpoints with a real rustls client over 127.0.0.1: ALPN as the plugin sets it, and the
//! certificate the endpoint names.

use plugin_api::tokio::io::{AsyncReadExt, AsyncWriteExt};
use plugin_api::{tokio, Endpoint};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

fn self_signed(dir: &Path) -> (PathBuf, PathBuf) {
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    let status = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
        ])
        .args(["-nodes", "-days", "1", "-subj", "/CN=localhost"])
        .args(["-addext", "subjectAltName=DNS:localhost"])
        // webpki refuses a CA certificate as the server's own.
        .args(["-addext", "basicConstraints=critical,CA:FALSE"])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .stderr(std::process::Stdio::null())
        .status()
        .expect("openssl runs");
    assert!(status.success());
    (cert, key)
}

/// Connects offering `protocols` and returns what the server agreed and what it then sent.
async fn client(port: u16, cert: &Path, protocols: &[&[u8]]) -> (Option<Vec<u8>>, String) {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(cert).unwrap() {
        roots.add(cert.unwrap()).unwrap();
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = protocols.iter().map(|p| p.to_vec()).collect();
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    let mut tls = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .unwrap();
    let agreed = tls.get_ref().1.alpn_protocol().map(<[u8]>::to_vec);
    let mut said = String::new();
    tls.read_to_string(&mut said).await.unwrap();
    (agreed, said)
}

#[test]
fn an_ssl_listener_offers_the_alpn_protocols_the_plugin_sets() {
    let dir = std::env::temp_dir().join(format!("plugin-api-tls-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (cert, key) = self_signed(&dir);
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let endpoint: Endpoint = format!(
            "ssl:0:interface=127.0.0.1:privateKey={}:certKey={}",
            key.display(),
            cert.display()
        )
        .parse()
        .unwrap();
        let mut listener = endpoint.bind().unwrap();
        listener.set_alpn(&[b"h2", b"http/1.1"]);
        assert!(listener.is_tls());
        let port = listener.port().unwrap();
        let server = tokio::spawn(async move {
            for _ in 0..3 {
                let (mut stream, _) = listener.accept().await.unwrap();
                assert!(stream.is_tls() && stream.tcp().is_none());
                let agreed = stream
                    .alpn_protocol()
                    .map(<[u8]>::to_vec)
                    .unwrap_or_default();
                stream.write_all(&agreed).await.unwrap();
                stream.shutdown().await.unwrap();
            }
        });
        assert_eq!(
            client(port, &cert, &[b"h2"]).await,
            (Some(b"h2".to_vec()), "h2".to_string())
        );
        assert_eq!(
            client(port, &cert, &[b"http/1.1", b"h2"]).await,
            (Some(b"h2".to_vec()), "h2".to_string()),
            "the server's preference wins"
        );
        assert_eq!(client(port, &cert, &[]).await, (None, String::new()));
        server.await.unwrap();
    });
    std::fs::remove_dir_all(&dir).unwrap();
}
