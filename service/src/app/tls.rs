//! TLS on idlinkd's gRPC port, accepted here rather than by tonic so that the certificate can
//! change without a restart: Kubernetes rotates a mounted Secret in place, and the next
//! handshake after the files change presents the new certificate while open connections keep
//! theirs. With `client_ca_file`, clients must present a certificate that CA issued (mTLS).

use std::{
    path::{Path, PathBuf},
    pin::Pin,
    sync::{Arc, Mutex, PoisonError, RwLock},
    task::{Context, Poll},
    time::{Duration, Instant},
};

use rustls::{
    RootCertStore, ServerConfig,
    crypto::CryptoProvider,
    pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject},
    server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier},
    sign::CertifiedKey,
};
use tokio::{
    io::{AsyncRead, AsyncWrite, ReadBuf},
    net::TcpStream,
};
use tonic::transport::server::{Connected, TcpConnectInfo};

use crate::config::{ConfigError, TlsSettings};

/// How often, at most, a handshake looks at the certificate files.
const RELOAD_CHECK: Duration = Duration::from_secs(1);

fn invalid(key: &str, path: &Path, why: impl std::fmt::Display) -> ConfigError {
    ConfigError::Invalid(format!("server.tls.{key} {}: {why}", path.display()))
}

fn read(key: &str, path: &Path) -> Result<Vec<u8>, ConfigError> {
    std::fs::read(path).map_err(|e| invalid(key, path, e))
}

/// A certificate chain and its key, from PEM files' bytes.
fn certified_key(provider: &CryptoProvider, files: &CertFiles, cert_pem: &[u8], key_pem: &[u8]) -> Result<CertifiedKey, ConfigError> {
    let chain: Vec<CertificateDer<'static>> =
        CertificateDer::pem_slice_iter(cert_pem).collect::<Result<_, _>>().map_err(|e| invalid("cert_file", &files.cert, e))?;
    if chain.is_empty() {
        return Err(invalid("cert_file", &files.cert, "holds no certificate"));
    }
    let key = PrivateKeyDer::from_pem_slice(key_pem).map_err(|e| invalid("key_file", &files.key, e))?;
    let signing_key = provider.key_provider.load_private_key(key).map_err(|e| invalid("key_file", &files.key, e))?;
    let certified = CertifiedKey::new(chain, signing_key);
    certified.keys_match().map_err(|e| invalid("key_file", &files.key, format!("does not match the certificate: {e}")))?;
    Ok(certified)
}

struct CertFiles {
    cert: PathBuf,
    key: PathBuf,
}

/// The files' bytes as last loaded, and the key made of them.
struct Loaded {
    cert_pem: Vec<u8>,
    key_pem: Vec<u8>,
    key: Arc<CertifiedKey>,
}

/// Serves the certificate of the files as they are now: re-read at most every
/// [`RELOAD_CHECK`]; a pair that does not load (a rotation half done) keeps the last good one.
struct ReloadingCert {
    files: CertFiles,
    provider: Arc<CryptoProvider>,
    loaded: RwLock<Loaded>,
    checked: Mutex<Instant>,
}

impl std::fmt::Debug for ReloadingCert {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReloadingCert").field("cert", &self.files.cert).finish_non_exhaustive()
    }
}

impl ReloadingCert {
    fn load(files: CertFiles, provider: Arc<CryptoProvider>) -> Result<Self, ConfigError> {
        let (cert_pem, key_pem) = (read("cert_file", &files.cert)?, read("key_file", &files.key)?);
        let key = Arc::new(certified_key(&provider, &files, &cert_pem, &key_pem)?);
        Ok(Self { files, provider, loaded: RwLock::new(Loaded { cert_pem, key_pem, key }), checked: Mutex::new(Instant::now()) })
    }

    fn reload_if_changed(&self) {
        {
            let mut checked = self.checked.lock().unwrap_or_else(PoisonError::into_inner);
            if checked.elapsed() < RELOAD_CHECK {
                return;
            }
            *checked = Instant::now();
        }
        let (Ok(cert_pem), Ok(key_pem)) = (std::fs::read(&self.files.cert), std::fs::read(&self.files.key)) else {
            tracing::warn!(cert = %self.files.cert.display(), "TLS certificate files unreadable; serving the last good certificate");
            return;
        };
        {
            let loaded = self.loaded.read().unwrap_or_else(PoisonError::into_inner);
            if loaded.cert_pem == cert_pem && loaded.key_pem == key_pem {
                return;
            }
        }
        match certified_key(&self.provider, &self.files, &cert_pem, &key_pem) {
            Ok(key) => {
                *self.loaded.write().unwrap_or_else(PoisonError::into_inner) = Loaded { cert_pem, key_pem, key: Arc::new(key) };
                tracing::info!(cert = %self.files.cert.display(), "TLS certificate reloaded");
            }
            Err(e) => tracing::warn!(error = %e, "new TLS certificate files do not load; serving the last good certificate"),
        }
    }
}

impl ResolvesServerCert for ReloadingCert {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.reload_if_changed();
        Some(self.loaded.read().unwrap_or_else(PoisonError::into_inner).key.clone())
    }
}

/// The TLS side of the gRPC port.
#[derive(Clone)]
pub struct TlsAcceptor(tokio_rustls::TlsAcceptor);

impl TlsAcceptor {
    /// Loads the certificate, key and client CA now, so a bad one stops start-up naming its key.
    pub fn new(settings: &TlsSettings) -> Result<Self, ConfigError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let resolver =
            ReloadingCert::load(CertFiles { cert: settings.cert_file.clone(), key: settings.key_file.clone() }, provider.clone())?;
        let builder = ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| ConfigError::Invalid(format!("server.tls: {e}")))?;
        let builder = match &settings.client_ca_file {
            None => builder.with_no_client_auth(),
            Some(path) => {
                let mut roots = RootCertStore::empty();
                for cert in CertificateDer::pem_slice_iter(&read("client_ca_file", path)?) {
                    roots.add(cert.map_err(|e| invalid("client_ca_file", path, e))?).map_err(|e| invalid("client_ca_file", path, e))?;
                }
                let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                    .build()
                    .map_err(|e| invalid("client_ca_file", path, e))?;
                builder.with_client_cert_verifier(verifier)
            }
        };
        let mut config = builder.with_cert_resolver(Arc::new(resolver));
        config.alpn_protocols = vec![b"h2".to_vec()];
        Ok(Self(tokio_rustls::TlsAcceptor::from(Arc::new(config))))
    }

    pub async fn accept(&self, socket: TcpStream) -> std::io::Result<Accepted> {
        Ok(Accepted::Tls(Box::new(self.0.accept(socket).await?)))
    }
}

/// An accepted connection of the gRPC port, in plaintext or TLS. Its connect info is the TCP
/// peer either way, so the audit log and `remote_addr` read it the same.
pub enum Accepted {
    Plain(TcpStream),
    Tls(Box<tokio_rustls::server::TlsStream<TcpStream>>),
}

impl Connected for Accepted {
    type ConnectInfo = TcpConnectInfo;

    fn connect_info(&self) -> TcpConnectInfo {
        match self {
            Accepted::Plain(socket) => socket.connect_info(),
            Accepted::Tls(tls) => tls.get_ref().0.connect_info(),
        }
    }
}

impl AsyncRead for Accepted {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Accepted::Plain(socket) => Pin::new(socket).poll_read(cx, buf),
            Accepted::Tls(tls) => Pin::new(tls.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Accepted {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            Accepted::Plain(socket) => Pin::new(socket).poll_write(cx, buf),
            Accepted::Tls(tls) => Pin::new(tls.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Accepted::Plain(socket) => Pin::new(socket).poll_flush(cx),
            Accepted::Tls(tls) => Pin::new(tls.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Accepted::Plain(socket) => Pin::new(socket).poll_shutdown(cx),
            Accepted::Tls(tls) => Pin::new(tls.as_mut()).poll_shutdown(cx),
        }
    }

    fn poll_write_vectored(self: Pin<&mut Self>, cx: &mut Context<'_>, bufs: &[std::io::IoSlice<'_>]) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            Accepted::Plain(socket) => Pin::new(socket).poll_write_vectored(cx, bufs),
            Accepted::Tls(tls) => Pin::new(tls.as_mut()).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Accepted::Plain(socket) => socket.is_write_vectored(),
            Accepted::Tls(tls) => tls.is_write_vectored(),
        }
    }
}
