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

/// Build the acceptor's configuration from the PEM files `config` names.
pub fn load(config: &TlsConfig) -> Result<Arc<ServerConfig>, TlsError> {
    let cert_err = |why: String| TlsError::Cert {
        path: shown(&config.cert_file),
        why,
    };
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&config.cert_file)
        .map_err(|e| cert_err(e.to_string()))?
        .collect::<Result<_, _>>()
        .map_err(|e| cert_err(e.to_string()))?;
    if certs.is_empty() {
        return Err(cert_err("holds no PEM certificate".into()));
    }
    let key = PrivateKeyDer::from_pem_file(&config.key_file).map_err(|e| TlsError::Key {
        path: shown(&config.key_file),
        why: e.to_string(),
    })?;
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
