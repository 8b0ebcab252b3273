//! Turns `KICI_DATABASE_URL` into a connector. The `postgres` crate rejects libpq's
//! `sslmode=verify-ca|verify-full` and `sslrootcert=` (reference/crates.md §1.2), so the TLS part of
//! the URL is parsed here and handed to rustls; everything else goes to `postgres::Config`.
//!
//! TLS is used only when the URL asks for it (`sslmode=require|verify-ca|verify-full`). With
//! rustls every one of them verifies the server certificate chain *and* host name: stricter than
//! libpq's `require`. A private CA is given with `sslrootcert=<file>`; without it the system bundle
//! (when present) and the Mozilla roots are trusted.

use std::{str::FromStr, time::Duration};

use postgres::{config::SslMode, Client, NoTls};
use rustls_pki_types::{pem::PemObject, CertificateDer};

use super::DbError;

fn percent_decode(s: &str) -> String {
    crate::http::parse::percent_decode(s).unwrap_or_else(|| s.to_owned())
}

/// Default for `connect_timeout` when the URL sets none: a dead host must not hang `/ready` or start.
const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
const SYSTEM_CA_BUNDLES: &[&str] = &[
    "/etc/ssl/certs/ca-certificates.crt",
    "/etc/pki/tls/certs/ca-bundle.crt",
];

/// How to open connections to one database; cheap to clone.
#[derive(Clone)]
pub struct Connector {
    config: postgres::Config,
    tls: Option<tokio_postgres_rustls::MakeRustlsConnect>,
    /// The URL with its password masked, for messages.
    display: String,
}

impl std::fmt::Debug for Connector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connector")
            .field("url", &self.display)
            .field("tls", &self.tls.is_some())
            .finish()
    }
}

impl Connector {
    pub fn from_url(url: &str) -> Result<Connector, DbError> {
        let display = crate::config::redact_database_url(url);
        let parts = split_tls_params(url);
        let mut config = postgres::Config::from_str(&parts.rest).map_err(|e| {
            DbError::Config(format!(
                "KICI_DATABASE_URL {display} is not a valid PostgreSQL URL: {e}"
            ))
        })?;
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(DEFAULT_CONNECT_TIMEOUT);
        }
        if config.get_application_name().is_none() {
            config.application_name("kici-orchestrator");
        }
        let tls = match parts.sslmode.as_deref() {
            Some("require" | "verify-ca" | "verify-full") => {
                config.ssl_mode(SslMode::Require);
                Some(tls_connector(parts.sslrootcert.as_deref(), &display)?)
            }
            Some("disable" | "allow" | "prefer") | None => {
                // Plain TCP: `prefer` without a TLS connector falls back to unencrypted, which is
                // what libpq does against a server without TLS.
                config.ssl_mode(SslMode::Disable);
                None
            }
            Some(other) => {
                return Err(DbError::Config(format!(
                    "KICI_DATABASE_URL {display}: sslmode={other} is not supported; use disable, prefer, require, verify-ca or verify-full"
                )))
            }
        };
        Ok(Connector {
            config,
            tls,
            display,
        })
    }

    pub fn connect(&self) -> Result<Client, DbError> {
        let res = match &self.tls {
            Some(tls) => self.config.connect(tls.clone()),
            None => self.config.connect(NoTls),
        };
        res.map_err(|e| DbError::Connect {
            url: self.display.clone(),
            detail: super::describe(&e),
        })
    }

    pub fn display_url(&self) -> &str {
        &self.display
    }
}

fn tls_connector(
    rootcert: Option<&str>,
    display: &str,
) -> Result<tokio_postgres_rustls::MakeRustlsConnect, DbError> {
    let mut roots = rustls::RootCertStore::empty();
    match rootcert {
        Some(path) if path != "system" => {
            let certs = CertificateDer::pem_file_iter(path).map_err(|e| {
                DbError::Config(format!(
                    "KICI_DATABASE_URL {display}: cannot read sslrootcert file {path}: {e}"
                ))
            })?;
            for cert in certs {
                let cert = cert.map_err(|e| {
                    DbError::Config(format!("KICI_DATABASE_URL {display}: sslrootcert file {path} is not valid PEM: {e}"))
                })?;
                roots.add(cert).map_err(|e| {
                    DbError::Config(format!(
                        "KICI_DATABASE_URL {display}: certificate in {path} rejected: {e}"
                    ))
                })?;
            }
            if roots.is_empty() {
                return Err(DbError::Config(format!(
                    "KICI_DATABASE_URL {display}: sslrootcert file {path} contains no certificate"
                )));
            }
        }
        _ => {
            roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
            for bundle in SYSTEM_CA_BUNDLES {
                if let Ok(certs) = CertificateDer::pem_file_iter(bundle) {
                    for cert in certs.flatten() {
                        let _ = roots.add(cert);
                    }
                    break;
                }
            }
        }
    }
    let cfg = rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(tokio_postgres_rustls::MakeRustlsConnect::new(cfg))
}

#[derive(Debug, PartialEq)]
struct TlsParts {
    rest: String,
    sslmode: Option<String>,
    sslrootcert: Option<String>,
}

/// Removes `sslmode` and `sslrootcert` from either URL form, returning them apart.
fn split_tls_params(url: &str) -> TlsParts {
    let mut sslmode = None;
    let mut sslrootcert = None;
    let is_url = url.starts_with("postgres://") || url.starts_with("postgresql://");
    let rest = if is_url {
        match url.split_once('?') {
            None => url.to_owned(),
            Some((base, query)) => {
                let kept: Vec<&str> = query
                    .split('&')
                    .filter(|kv| {
                        let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
                        match k {
                            "sslmode" => sslmode = Some(percent_decode(v)),
                            "sslrootcert" => sslrootcert = Some(percent_decode(v)),
                            _ => return !kv.is_empty(),
                        }
                        false
                    })
                    .collect();
                if kept.is_empty() {
                    base.to_owned()
                } else {
                    format!("{base}?{}", kept.join("&"))
                }
            }
        }
    } else {
        let mut kept = Vec::new();
        for (k, v, raw) in keyword_pairs(url) {
            match k.as_str() {
                "sslmode" => sslmode = Some(v),
                "sslrootcert" => sslrootcert = Some(v),
                _ => kept.push(raw),
            }
        }
        kept.join(" ")
    };
    TlsParts {
        rest,
        sslmode,
        sslrootcert,
    }
}

/// `key=value key='quoted \' value'` → (key, unquoted value, raw text of the pair).
fn keyword_pairs(s: &str) -> Vec<(String, String, String)> {
    let mut out = Vec::new();
    let mut chars = s.char_indices().peekable();
    while let Some(&(start, c)) = chars.peek() {
        if c.is_whitespace() {
            chars.next();
            continue;
        }
        let mut key = String::new();
        while let Some(&(_, c)) = chars.peek() {
            if c == '=' || c.is_whitespace() {
                break;
            }
            key.push(c);
            chars.next();
        }
        while matches!(chars.peek(), Some(&(_, c)) if c.is_whitespace()) {
            chars.next();
        }
        let mut value = String::new();
        if matches!(chars.peek(), Some(&(_, '='))) {
            chars.next();
            while matches!(chars.peek(), Some(&(_, c)) if c.is_whitespace()) {
                chars.next();
            }
            if matches!(chars.peek(), Some(&(_, '\''))) {
                chars.next();
                while let Some((_, c)) = chars.next() {
                    match c {
                        '\\' => {
                            if let Some((_, n)) = chars.next() {
                                value.push(n)
                            }
                        }
                        '\'' => break,
                        _ => value.push(c),
                    }
                }
            } else {
                while let Some(&(_, c)) = chars.peek() {
                    if c.is_whitespace() {
                        break;
                    }
                    value.push(c);
                    chars.next();
                }
            }
        }
        let end = chars.peek().map(|&(i, _)| i).unwrap_or(s.len());
        out.push((key, value, s[start..end].to_owned()));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_form_tls_params_are_split_off() {
        let p = split_tls_params("postgresql://u:p@db:5432/kici?sslmode=verify-full&sslrootcert=%2Fetc%2Fca.pem&application_name=x");
        assert_eq!(p.rest, "postgresql://u:p@db:5432/kici?application_name=x");
        assert_eq!(p.sslmode.as_deref(), Some("verify-full"));
        assert_eq!(p.sslrootcert.as_deref(), Some("/etc/ca.pem"));
        let p = split_tls_params("postgres://db/kici?sslmode=require");
        assert_eq!(p.rest, "postgres://db/kici");
        assert_eq!(p.sslmode.as_deref(), Some("require"));
        let p = split_tls_params("postgres://db/kici");
        assert_eq!(
            p,
            TlsParts {
                rest: "postgres://db/kici".into(),
                sslmode: None,
                sslrootcert: None
            }
        );
    }

    #[test]
    fn keyword_form_tls_params_are_split_off() {
        let p = split_tls_params(
            "host=db user=ci password='a b\\'c' sslmode=verify-ca sslrootcert = /ca.pem dbname=k",
        );
        assert_eq!(p.rest, "host=db user=ci password='a b\\'c' dbname=k");
        assert_eq!(p.sslmode.as_deref(), Some("verify-ca"));
        assert_eq!(p.sslrootcert.as_deref(), Some("/ca.pem"));
    }

    #[test]
    fn connector_modes() {
        let c = Connector::from_url("postgresql://u:secretpw@127.0.0.1:5/k").unwrap();
        assert!(c.tls.is_none());
        assert!(!format!("{c:?}").contains("secretpw"));
        assert_eq!(
            c.config.get_connect_timeout(),
            Some(&DEFAULT_CONNECT_TIMEOUT)
        );
        let c = Connector::from_url("postgresql://127.0.0.1:5/k?sslmode=verify-full").unwrap();
        assert!(c.tls.is_some());
        let e = Connector::from_url("postgresql://127.0.0.1:5/k?sslmode=bogus").unwrap_err();
        assert!(e.to_string().contains("sslmode=bogus"), "{e}");
        let e = Connector::from_url(
            "postgresql://127.0.0.1:5/k?sslmode=require&sslrootcert=/nonexistent/ca.pem",
        )
        .unwrap_err();
        assert!(e.to_string().contains("/nonexistent/ca.pem"), "{e}");
    }
}
