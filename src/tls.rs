//! Trust roots for outgoing TLS (PostgreSQL, the Platform link, its HTTPS endpoints): the
//! webpki (Mozilla) roots plus the system bundle, so corporate CAs installed on the host work.
//! `SSL_CERT_FILE` names another bundle, as for OpenSSL-based tools.

use rustls_pki_types::{pem::PemObject, CertificateDer};

const SYSTEM_CA_BUNDLES: &[&str] = &[
    "/etc/ssl/certs/ca-certificates.crt",
    "/etc/pki/tls/certs/ca-bundle.crt",
];

/// webpki roots + `$SSL_CERT_FILE` (else the first system bundle found). Unreadable or invalid
/// certificates in a bundle are skipped.
pub fn public_and_system_roots() -> rustls::RootCertStore {
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    let custom = std::env::var("SSL_CERT_FILE")
        .ok()
        .filter(|f| !f.is_empty());
    let bundles: Vec<&str> = match custom.as_deref() {
        Some(file) => vec![file],
        None => SYSTEM_CA_BUNDLES.to_vec(),
    };
    for bundle in bundles {
        if let Ok(certs) = CertificateDer::pem_file_iter(bundle) {
            for cert in certs.flatten() {
                let _ = roots.add(cert);
            }
            break;
        }
    }
    roots
}

/// The same trust for ureq: the certificates of `$SSL_CERT_FILE` or the system bundle (which
/// carries the public roots on Debian-like systems), else ureq's built-in webpki roots.
pub fn ureq_roots() -> ureq::tls::RootCerts {
    let custom = std::env::var("SSL_CERT_FILE")
        .ok()
        .filter(|f| !f.is_empty());
    let bundles: Vec<String> = match custom {
        Some(file) => vec![file],
        None => SYSTEM_CA_BUNDLES.iter().map(|s| s.to_string()).collect(),
    };
    for bundle in bundles {
        let Ok(pem) = std::fs::read(&bundle) else {
            continue;
        };
        let certs: Vec<ureq::tls::Certificate<'static>> = ureq::tls::parse_pem(&pem)
            .filter_map(|item| match item {
                Ok(ureq::tls::PemItem::Certificate(c)) => Some(c.to_owned()),
                _ => None,
            })
            .collect();
        if !certs.is_empty() {
            return ureq::tls::RootCerts::Specific(std::sync::Arc::new(certs));
        }
    }
    ureq::tls::RootCerts::WebPki
}
