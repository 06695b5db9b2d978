//! TLS to the fleet's Redis (`rediss://`, built only with the `redis-tls` feature): the redis
//! crate's client for a TLS target, with rustls's crypto provider installed and the CA file of
//! `?ca=` read and checked; and which failures are a certificate that did not verify.
//!
//! The handshake itself is the redis crate's (rustls, TLS 1.2 and 1.3, the certificate checked
//! for the URL's host name): it builds a `rustls::ClientConfig` at every connect, from the
//! process's default provider.

use std::path::{Path, PathBuf};

use redis::{Client, ConnectionInfo, RedisError, TlsCertificates};
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

/// Whether `e` is a server's certificate that did not verify (a CA that is not trusted, a host
/// name or IP address it is not valid for, expired): at start a configuration error
/// (docs/reference.md §10), not an outage.
///
/// The redis crate keeps the handshake's failure as the `io::Error` that rustls's stream
/// gives (`InvalidData`, wrapping the `rustls::Error`), behind an `Arc` it shows as the
/// error's source; a `rustls::Error` it converts itself is kept the same way. Its cluster
/// client keeps only the text of each seed's failure, in the error's detail: there rustls's
/// words for it ([`REFUSED_CERTIFICATE`]) are looked for.
pub fn is_certificate_error(e: &RedisError) -> bool {
    if e.detail().is_some_and(|d| d.contains(REFUSED_CERTIFICATE)) {
        return true;
    }
    type Shared = std::sync::Arc<dyn std::error::Error + Send + Sync>;
    let invalid = |err: &(dyn std::error::Error + 'static)| {
        matches!(
            err.downcast_ref::<rustls::Error>(),
            Some(rustls::Error::InvalidCertificate(_))
        )
    };
    let mut next: Option<&(dyn std::error::Error + 'static)> = Some(e);
    // The chain is short (the error, its Arc, the io::Error); the bound is against a cycle.
    for _ in 0..8 {
        let Some(err) = next else { return false };
        let inner = match err.downcast_ref::<Shared>() {
            Some(shared) => &**shared as &(dyn std::error::Error + 'static),
            None => err,
        };
        if invalid(inner) {
            return true;
        }
        if let Some(wrapped) = inner
            .downcast_ref::<std::io::Error>()
            .and_then(std::io::Error::get_ref)
        {
            if invalid(wrapped) {
                return true;
            }
        }
        next = inner.source();
    }
    false
}

/// How rustls shows a certificate it did not verify (`invalid peer certificate: UnknownIssuer`).
const REFUSED_CERTIFICATE: &str = "invalid peer certificate";

#[cfg(test)]
mod tests {
    use super::*;
    use rustls::CertificateError;

    /// The error the redis crate gives when rustls refuses the server's certificate during
    /// the handshake of a new connection.
    fn handshake(why: CertificateError) -> RedisError {
        let refused = rustls::Error::InvalidCertificate(why);
        RedisError::from(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            refused,
        ))
    }

    #[test]
    fn a_certificate_that_does_not_verify_is_a_certificate_error() {
        for why in [
            CertificateError::UnknownIssuer,
            CertificateError::BadSignature,
            CertificateError::NotValidForName,
            CertificateError::Expired,
        ] {
            assert!(is_certificate_error(&handshake(why.clone())), "{why:?}");
        }
        let converted = RedisError::from(rustls::Error::InvalidCertificate(
            CertificateError::UnknownIssuer,
        ));
        assert!(is_certificate_error(&converted));
    }

    /// The cluster client's failure to reach every seed, which keeps only their errors' text.
    #[test]
    fn a_cluster_whose_seeds_certificates_do_not_verify_is_a_certificate_error() {
        let why = rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer);
        assert!(why.to_string().starts_with(REFUSED_CERTIFICATE), "{why}");
        let detail = format!("Failed to connect to each cluster node (127.0.0.1:7000: {why})");
        let seeds = RedisError::from((
            redis::ErrorKind::Io,
            "It failed to check startup nodes.",
            detail,
        ));
        assert!(is_certificate_error(&seeds));
        let detail = "Failed to connect to each cluster node (127.0.0.1:7000: Connection refused)";
        let down = RedisError::from((
            redis::ErrorKind::Io,
            "It failed to check startup nodes.",
            detail.to_owned(),
        ));
        assert!(!is_certificate_error(&down));
    }

    #[test]
    fn an_outage_or_another_tls_failure_is_not() {
        let refused = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
        assert!(!is_certificate_error(&RedisError::from(refused)));
        // The server refusing fc-init (no client certificate): an alert, not a verification.
        let alert = rustls::Error::AlertReceived(rustls::AlertDescription::CertificateRequired);
        let alert = std::io::Error::new(std::io::ErrorKind::InvalidData, alert);
        assert!(!is_certificate_error(&RedisError::from(alert)));
        let auth = RedisError::from((redis::ErrorKind::AuthenticationFailed, "WRONGPASS"));
        assert!(!is_certificate_error(&auth));
    }
}
