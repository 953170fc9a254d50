//! HTTPS for the API (`[server.tls]`): rustls with ring, TLS 1.2 and 1.3, HTTP/1.1 over ALPN.
//! The certificate and key are read at start and again on every reload, so a renewed
//! certificate is picked up by SIGHUP; a reload whose files do not load keeps the old ones.

use std::path::Path;
use std::sync::Arc;

use rustls::ServerConfig;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use crate::config::TlsConfig;

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("server.tls.cert_file {path}: {why}")]
    Cert { path: String, why: String },
    #[error("server.tls.key_file {path}: {why}")]
    Key { path: String, why: String },
    #[error("server.tls: the certificate and key do not form a usable pair: {0}")]
    Pair(rustls::Error),
}

fn shown(path: &Path) -> String {
    path.display().to_string()
}

fn read_certs(config: &TlsConfig) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let cert_err = |why: String| TlsError::Cert {
        path: shown(&config.cert_file),
        why,
    };
    let path = crate::config::resolve_file(&config.cert_file).map_err(cert_err)?;
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&path)
        .map_err(|e| cert_err(e.to_string()))?
        .collect::<Result<_, _>>()
        .map_err(|e| cert_err(e.to_string()))?;
    if certs.is_empty() {
        return Err(cert_err("holds no PEM certificate".into()));
    }
    Ok(certs)
}

fn read_key(config: &TlsConfig) -> Result<PrivateKeyDer<'static>, TlsError> {
    let key_err = |why: String| TlsError::Key {
        path: shown(&config.key_file),
        why,
    };
    let path = crate::config::resolve_file(&config.key_file).map_err(key_err)?;
    PrivateKeyDer::from_pem_file(&path).map_err(|e| key_err(e.to_string()))
}

/// Everything wrong with the files `config` names: the certificate's problem and the key's,
/// both, or whether they fail to pair.
pub fn problems(config: &TlsConfig) -> Vec<TlsError> {
    match (read_certs(config), read_key(config)) {
        (Ok(certs), Ok(key)) => build(certs, key).err().into_iter().collect(),
        (certs, key) => [certs.err(), key.err()].into_iter().flatten().collect(),
    }
}

/// Build the acceptor's configuration from the PEM files `config` names.
pub fn load(config: &TlsConfig) -> Result<Arc<ServerConfig>, TlsError> {
    build(read_certs(config)?, read_key(config)?)
}

fn build(
    certs: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
) -> Result<Arc<ServerConfig>, TlsError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut server = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(TlsError::Pair)?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(TlsError::Pair)?;
    server.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(server))
}
