//! TLS for switchyard, on rustls with the ring provider (no OpenSSL).
//!
//! - [`ServerTls`]: a listener's certificate and key, loaded from PEM files and reloaded on
//!   demand (SIGHUP in the binary) without dropping the node; optionally with a client CA,
//!   which makes it mutual TLS: a client without a certificate signed by that CA is refused at
//!   the handshake (the peer listener).
//! - [`client_config`]: what clients (the CLI, the worker, `tap`, peers) trust: the system's
//!   roots plus a `--ca-cert`, and optionally their own certificate (a peer's).
//! - [`certs`]: `switchyard certs init` / `certs node`: a CA and node certificates for people
//!   who have none.

pub mod certs;

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// Why TLS material could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{path}: {message}")]
    File { path: String, message: String },
    #[error("{0}")]
    Config(String),
}

fn file_err(path: &Path, message: impl std::fmt::Display) -> TlsError {
    TlsError::File {
        path: path.display().to_string(),
        message: message.to_string(),
    }
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    install_provider();
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Make ring the process's rustls provider, for HTTP clients built without a configuration of
/// their own (reqwest asks for one). Idempotent.
pub fn install_provider() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}

/// The certificates of a PEM file (at least one).
pub fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| file_err(path, e))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| file_err(path, e))?;
    if certs.is_empty() {
        return Err(file_err(
            path,
            "no certificate (expected PEM: BEGIN CERTIFICATE)",
        ));
    }
    Ok(certs)
}

/// The private key of a PEM file.
pub fn load_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    PrivateKeyDer::from_pem_file(path).map_err(|e| file_err(path, format!("no private key: {e}")))
}

/// Where a listener's certificate comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
    /// Clients must present a certificate signed by this CA (mutual TLS).
    pub client_ca: Option<PathBuf>,
}

impl ServerFiles {
    fn load(&self) -> Result<Arc<rustls::ServerConfig>, TlsError> {
        let certs = load_certs(&self.cert)?;
        let key = load_key(&self.key)?;
        let builder = rustls::ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| TlsError::Config(e.to_string()))?;
        let builder = match &self.client_ca {
            None => builder.with_no_client_auth(),
            Some(ca) => {
                let mut roots = rustls::RootCertStore::empty();
                for c in load_certs(ca)? {
                    roots.add(c).map_err(|e| file_err(ca, e))?;
                }
                let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                    Arc::new(roots),
                    provider(),
                )
                .build()
                .map_err(|e| file_err(ca, e))?;
                builder.with_client_cert_verifier(verifier)
            }
        };
        let mut config = builder
            .with_single_cert(certs, key)
            .map_err(|e| file_err(&self.key, format!("does not match the certificate: {e}")))?;
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(Arc::new(config))
    }
}

/// A listener's TLS configuration, reloadable.
pub struct ServerTls {
    files: ServerFiles,
    current: RwLock<Arc<rustls::ServerConfig>>,
}

impl std::fmt::Debug for ServerTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerTls")
            .field("files", &self.files)
            .finish()
    }
}

impl ServerTls {
    /// Load the files once (an error names the file).
    pub fn load(files: ServerFiles) -> Result<Self, TlsError> {
        let current = RwLock::new(files.load()?);
        Ok(Self { files, current })
    }

    /// The configuration new connections get.
    pub fn current(&self) -> Arc<rustls::ServerConfig> {
        self.current.read().expect("tls config lock").clone()
    }

    /// Read the files again; on an error the previous configuration stays.
    pub fn reload(&self) -> Result<(), TlsError> {
        let fresh = self.files.load()?;
        *self.current.write().expect("tls config lock") = fresh;
        Ok(())
    }

    pub fn files(&self) -> &ServerFiles {
        &self.files
    }
}

/// A client configuration: the system's trusted roots (where there are any) plus the
/// certificates of the `ca` files, and `identity` (certificate, key) to present when a server asks.
pub fn client_config(
    ca: &[&Path],
    identity: Option<(&Path, &Path)>,
) -> Result<rustls::ClientConfig, TlsError> {
    let mut roots = rustls::RootCertStore::empty();
    for c in rustls_native_certs::load_native_certs().certs {
        let _ = roots.add(c);
    }
    for ca in ca {
        for c in load_certs(ca)? {
            roots.add(c).map_err(|e| file_err(ca, e))?;
        }
    }
    let builder = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Config(e.to_string()))?
        .with_root_certificates(roots);
    let mut config = match identity {
        None => builder.with_no_client_auth(),
        Some((cert, key)) => builder
            .with_client_auth_cert(load_certs(cert)?, load_key(key)?)
            .map_err(|e| file_err(key, format!("does not match the certificate: {e}")))?,
    };
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

/// [`client_config`] with the system's roots only, loaded once per process.
pub fn system_client_config() -> Arc<rustls::ClientConfig> {
    static CONFIG: std::sync::OnceLock<Arc<rustls::ClientConfig>> = std::sync::OnceLock::new();
    CONFIG
        .get_or_init(|| Arc::new(client_config(&[], None).expect("the system's roots load")))
        .clone()
}
