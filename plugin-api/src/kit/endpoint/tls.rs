//! TLS for listening endpoints and for plugins that switch to TLS mid-connection (FTP's
//! `AUTH TLS`): rustls, with the ring provider (it builds with a C compiler alone).

use super::stream::Stream;
use crate::files;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use std::io;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpStream;

/// The largest certificate chain or key file read: a PEM chain is a few kilobytes.
const MAX_PEM_BYTES: u64 = files::MIB;

/// How long a client may take to complete the TLS handshake.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// A server's TLS configuration: its certificate chain and key, and the ALPN protocols it
/// offers. Cheap to clone.
#[derive(Clone)]
pub struct TlsConfig {
    config: Arc<rustls::ServerConfig>,
}

impl std::fmt::Debug for TlsConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsConfig")
            .field("alpn", &self.config.alpn_protocols)
            .finish()
    }
}

impl TlsConfig {
    /// Reads a PEM certificate chain (server certificate first) and a PEM private key, and
    /// checks that they belong together. Errors name the file and what is wrong with it.
    pub fn from_pem_files(cert_chain: &Path, private_key: &Path) -> Result<Self, String> {
        let chain_pem = read_pem(cert_chain, "certificate")?;
        let key_pem = read_pem(private_key, "private key")?;
        let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&chain_pem)
            .collect::<Result<_, _>>()
            .map_err(|e| format!("cannot read the certificate {}: {e}", cert_chain.display()))?;
        if chain.is_empty() {
            return Err(format!(
                "the certificate file {} holds no PEM certificate",
                cert_chain.display()
            ));
        }
        let key = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| {
            format!(
                "the key file {} holds no usable PEM private key: {e}",
                private_key.display()
            )
        })?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let signing_key = provider
            .key_provider
            .load_private_key(key.clone_key())
            .map_err(|e| format!("cannot use the private key {}: {e}", private_key.display()))?;
        let certified = rustls::sign::CertifiedKey::new(chain.clone(), signing_key);
        certified.keys_match().map_err(|_| {
            format!(
                "the private key {} does not match the certificate {}",
                private_key.display(),
                cert_chain.display()
            )
        })?;
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| format!("cannot configure TLS: {e}"))?
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .map_err(|e| {
                format!(
                    "cannot use the certificate {} with the key {}: {e}",
                    cert_chain.display(),
                    private_key.display()
                )
            })?;
        Ok(Self {
            config: Arc::new(config),
        })
    }

    /// Offers these ALPN protocols, most preferred first (HTTP/2 servers offer `h2`, then
    /// `http/1.1`).
    pub fn with_alpn(mut self, protocols: &[&[u8]]) -> Self {
        Arc::make_mut(&mut self.config).alpn_protocols =
            protocols.iter().map(|p| p.to_vec()).collect();
        self
    }

    /// Runs the server side of the TLS handshake on `stream`, within `HANDSHAKE_TIMEOUT` (10 s).
    pub async fn accept(&self, stream: TcpStream) -> io::Result<Stream> {
        let acceptor = tokio_rustls::TlsAcceptor::from(self.config.clone());
        match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
            Ok(Ok(tls)) => Ok(Stream::from(tls)),
            Ok(Err(e)) => Err(io::Error::new(
                e.kind(),
                format!("TLS handshake failed: {e}"),
            )),
            Err(_) => Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("TLS handshake not completed within {HANDSHAKE_TIMEOUT:?}"),
            )),
        }
    }
}

/// Through the kit's file policy: one open, checked with `fstat`, read within the bound, so a
/// key swapped for a FIFO between a check and the read cannot hang the host.
fn read_pem(path: &Path, what: &str) -> Result<Vec<u8>, String> {
    files::read_regular(path, MAX_PEM_BYTES)
        .map_err(|e| format!("cannot read the {what} {}: {e}", path.display()))
}
