//! TLS for MLLP (rustls with the `ring` provider): loading certificates and
//! keys from PEM files, the server side (optionally verifying client
//! certificates against a CA bundle: mutual TLS) and the client side used by
//! `recordhub send` and `recordhub load`.
//!
//! The handshake itself runs in each connection's task
//! (`server.rs`), under [`HANDSHAKE_TIMEOUT`], so a slow or garbage
//! handshake never holds up the accept loop. What a peer proved in the
//! handshake (its certificate's subject CN) becomes its
//! [`Identity`](super::allow::Identity) for the sender allow-list.
//!
//! Deliberately not here: certificate revocation (CRLs, OCSP) and reloading
//! certificates without a restart.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio_rustls::rustls::{self, ClientConfig, RootCertStore, ServerConfig};
use tokio_rustls::{TlsAcceptor, TlsConnector};

/// How long a new connection has to complete its TLS handshake: long enough
/// for a slow WAN link, short enough that a peer that opens a socket and
/// sends nothing (or garbage) gives its slot back quickly.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// The files one TLS listener uses (`tls = { cert, key, client_ca }`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// PEM: the server certificate first, then its intermediates.
    pub cert: PathBuf,
    /// PEM: the private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
    /// PEM: CA certificates that client certificates must chain to. When
    /// set, a client without a valid certificate is refused in the handshake.
    pub client_ca: Option<PathBuf>,
}

/// Why a TLS setting could not be used; each names the file.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// The file could not be read or holds no PEM block of the kind needed.
    #[error("{}: {what}: give a readable PEM file", path.display())]
    Pem { path: PathBuf, what: String },
    /// rustls refused the certificate, key or CA set (e.g. key does not match).
    #[error("{}: {message}", path.display())]
    Rustls { path: PathBuf, message: String },
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Every certificate in a PEM file (at least one).
///
/// # Errors
/// Unreadable file, or no `CERTIFICATE` block in it.
pub fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem = |what: String| TlsError::Pem { path: path.to_path_buf(), what };
    let iter = CertificateDer::pem_file_iter(path).map_err(|e| pem(format!("cannot read certificates ({e})")))?;
    let certs: Vec<_> = iter.collect::<Result<_, _>>().map_err(|e| pem(format!("bad certificate PEM ({e})")))?;
    if certs.is_empty() {
        return Err(pem("no CERTIFICATE block found".into()));
    }
    Ok(certs)
}

/// The private key in a PEM file.
///
/// # Errors
/// Unreadable file, or no private key block in it.
pub fn load_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    PrivateKeyDer::from_pem_file(path)
        .map_err(|e| TlsError::Pem { path: path.to_path_buf(), what: format!("no usable private key ({e})") })
}

fn roots(path: &Path) -> Result<RootCertStore, TlsError> {
    let mut store = RootCertStore::empty();
    for cert in load_certs(path)? {
        store.add(cert).map_err(|e| TlsError::Rustls {
            path: path.to_path_buf(),
            message: format!("not a usable CA certificate: {e}"),
        })?;
    }
    Ok(store)
}

/// The server side of one listener: its certificate and key, and client
/// certificate verification when `client_ca` is set (then required).
///
/// # Errors
/// A file is unreadable or not PEM, the key does not match the certificate,
/// or the CA bundle is unusable; the error names the file.
pub fn acceptor(files: &TlsFiles) -> Result<TlsAcceptor, TlsError> {
    let certs = load_certs(&files.cert)?;
    let key = load_key(&files.key)?;
    let builder = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Rustls { path: files.cert.clone(), message: e.to_string() })?;
    let builder = match &files.client_ca {
        Some(ca) => {
            let verifier =
                rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots(ca)?), provider())
                    .build()
                    .map_err(|e| TlsError::Rustls { path: ca.clone(), message: e.to_string() })?;
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let config = builder.with_single_cert(certs, key).map_err(|e| TlsError::Rustls {
        path: files.key.clone(),
        message: format!("this key with certificate {}: {e}", files.cert.display()),
    })?;
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// Client-side settings (`--tls-ca`, `--tls-cert`/`--tls-key`, `--tls-server-name`).
#[derive(Debug, Clone, Default)]
pub struct ClientTls {
    /// CA bundle the server's certificate must chain to.
    pub ca: PathBuf,
    /// Our certificate and key, for a listener that wants mutual TLS.
    pub cert_key: Option<(PathBuf, PathBuf)>,
    /// The name to verify in the server's certificate; default: the host of the address.
    pub server_name: Option<String>,
}

/// A connector and the server name to present, ready to wrap TCP streams.
#[derive(Clone)]
pub struct Connector {
    pub connector: TlsConnector,
    pub server_name: ServerName<'static>,
}

impl ClientTls {
    /// Builds the connector for `addr` (`host:port`).
    ///
    /// # Errors
    /// A file is unreadable or not PEM, or the server name is not a DNS name or IP.
    pub fn connector(&self, addr: &str) -> Result<Connector, TlsError> {
        let builder = ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| TlsError::Rustls { path: self.ca.clone(), message: e.to_string() })?
            .with_root_certificates(roots(&self.ca)?);
        let config = match &self.cert_key {
            Some((cert, key)) => {
                builder.with_client_auth_cert(load_certs(cert)?, load_key(key)?).map_err(|e| TlsError::Rustls {
                    path: key.clone(),
                    message: format!("this key with certificate {}: {e}", cert.display()),
                })?
            }
            None => builder.with_no_client_auth(),
        };
        let host = match &self.server_name {
            Some(name) => name.clone(),
            None => host_of(addr).to_string(),
        };
        let server_name = ServerName::try_from(host.clone()).map_err(|_| TlsError::Rustls {
            path: self.ca.clone(),
            message: format!("{host:?} is not a DNS name or IP address; give --tls-server-name"),
        })?;
        Ok(Connector { connector: TlsConnector::from(Arc::new(config)), server_name })
    }
}

/// `host` from `host:port` or `[v6]:port`.
fn host_of(addr: &str) -> &str {
    let host = addr.rsplit_once(':').map_or(addr, |(h, _)| h);
    host.trim_start_matches('[').trim_end_matches(']')
}

/// The subject common name (CN) of a DER certificate, if it has one.
pub fn subject_cn(cert: &CertificateDer<'_>) -> Option<String> {
    let (_, parsed) = x509_parser::parse_x509_certificate(cert.as_ref()).ok()?;
    let cn = parsed.subject().iter_common_name().next()?;
    cn.as_str().ok().map(str::to_string)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_of_strips_the_port_and_brackets() {
        assert_eq!(host_of("localhost:2575"), "localhost");
        assert_eq!(host_of("127.0.0.1:2575"), "127.0.0.1");
        assert_eq!(host_of("[::1]:2575"), "::1");
    }

    #[test]
    fn a_missing_certificate_file_is_named() {
        let files =
            TlsFiles { cert: "/nonexistent/server.pem".into(), key: "/nonexistent/server.key".into(), client_ca: None };
        let err = acceptor(&files).err().map(|e| e.to_string()).unwrap_or_default();
        assert!(err.starts_with("/nonexistent/server.pem: cannot read certificates"), "{err}");
    }
}
