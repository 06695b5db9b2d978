//! TLS to the fleet's Redis (`rediss://`, built only with the `redis-tls` feature): the redis
//! crate's client for a TLS target, with rustls's crypto provider installed and the CA file of
//! `?ca=` read and checked.
//!
//! The handshake itself is the redis crate's (rustls, TLS 1.2 and 1.3, the certificate checked
//! for the URL's host name): it builds a `rustls::ClientConfig` at every connect, from the
//! process's default provider.

use std::path::{Path, PathBuf};

use redis::{Client, ConnectionInfo, TlsCertificates};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;

/// The client of a TLS target; `ca` is the PEM file of the only CAs to trust (`None`: the
/// system's roots).
pub fn client(ca: Option<PathBuf>, info: ConnectionInfo) -> Result<Client, String> {
    install_provider();
    let Some(path) = ca else {
        return Client::open(info).map_err(|e| e.to_string());
    };
    let shown = path.display();
    let pem = ca_pem(&path)?;
    let certificates = TlsCertificates {
        client_tls: None,
        root_cert: Some(pem),
    };
    Client::build_with_tls(info, certificates).map_err(|e| format!("the CA file {shown}: {e}"))
}

/// The PEM text of the CA file of `?ca=`, checked to hold at least one certificate.
pub fn ca_pem(path: &Path) -> Result<Vec<u8>, String> {
    install_provider();
    let shown = path.display();
    let pem = std::fs::read(path).map_err(|e| format!("reading the CA file {shown}: {e}"))?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("the CA file {shown}: {e}"))?;
    if certs.is_empty() {
        return Err(format!(
            "the CA file {shown} holds no PEM certificate (-----BEGIN CERTIFICATE-----)"
        ));
    }
    Ok(pem)
}

/// Makes ring rustls's process-wide crypto provider, once, before the first handshake. rustls
/// would pick it by itself only while ring is the one provider compiled in; installing it keeps
/// TLS working should another crate ever enable aws-lc-rs too (rustls then panics rather than
/// choose). Nothing else in fc-init installs one, so the install cannot lose to another.
pub fn install_provider() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}
