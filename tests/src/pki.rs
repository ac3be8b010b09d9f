//! Certificates made in the test: a certificate authority, server certificates for
//! `localhost` and 127.0.0.1, client certificates, as PEM files in a directory of their own.

use std::path::{Path, PathBuf};

use rcgen::{BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose};

pub struct TestPki {
    dir: tempfile::TempDir,
    issuer: Issuer<'static, KeyPair>,
    pub ca_pem: String,
}

/// A certificate and its key, PEM.
pub struct Issued {
    pub cert_pem: String,
    pub key_pem: String,
}

impl Default for TestPki {
    fn default() -> Self {
        Self::new("idlink test CA")
    }
}

impl TestPki {
    pub fn new(name: &str) -> Self {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
        let ca = params.self_signed(&key).unwrap();
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("ca.pem"), ca.pem()).unwrap();
        Self { dir, issuer: Issuer::new(params, key), ca_pem: ca.pem() }
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    pub fn ca_file(&self) -> PathBuf {
        self.dir.path().join("ca.pem")
    }

    fn issue(&self, names: &[&str], usage: ExtendedKeyUsagePurpose, cn: &str) -> Issued {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(names.iter().map(|n| (*n).to_owned()).collect::<Vec<_>>()).unwrap();
        params.distinguished_name.push(DnType::CommonName, cn);
        params.extended_key_usages = vec![usage];
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        Issued { cert_pem: cert.pem(), key_pem: key.serialize_pem() }
    }

    /// A server certificate for `localhost` and 127.0.0.1.
    pub fn server(&self) -> Issued {
        self.issue(&["localhost", "127.0.0.1"], ExtendedKeyUsagePurpose::ServerAuth, "localhost")
    }

    /// A client certificate (mTLS).
    pub fn client(&self, name: &str) -> Issued {
        self.issue(&[name], ExtendedKeyUsagePurpose::ClientAuth, name)
    }

    /// Writes `issued` as `<name>.pem` and `<name>.key`; answers their paths.
    pub fn write(&self, name: &str, issued: &Issued) -> (PathBuf, PathBuf) {
        let (cert, key) = (self.dir.path().join(format!("{name}.pem")), self.dir.path().join(format!("{name}.key")));
        std::fs::write(&cert, &issued.cert_pem).unwrap();
        std::fs::write(&key, &issued.key_pem).unwrap();
        (cert, key)
    }
}

/// A gRPC server of the test's own on loopback (an OTLP collector, say): plaintext, or TLS
/// with a server certificate of `pki`. Returns its address.
pub async fn serve_on_loopback(routes: tonic::service::Routes, pki: Option<&TestPki>) -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let mut server = tonic::transport::Server::builder();
    if let Some(pki) = pki {
        let issued = pki.server();
        let identity = tonic::transport::Identity::from_pem(issued.cert_pem, issued.key_pem);
        server = server.tls_config(tonic::transport::ServerTlsConfig::new().identity(identity)).unwrap();
    }
    tokio::spawn(server.add_routes(routes).serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)));
    addr
}
