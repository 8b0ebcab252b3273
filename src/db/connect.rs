//! Turns `KICI_DATABASE_URL` into a connector. The `postgres` crate rejects libpq's
//! `sslmode=verify-ca|verify-full` and `sslrootcert=` (docs/operations.md, "Database and
//! migrations"), so the TLS part of the URL is parsed here and handed to rustls; everything else
//! goes to `postgres::Config`.
//!
//! TLS is used only when the URL asks for it (`sslmode=require|verify-ca|verify-full`). With
//! rustls every one of them verifies the server certificate chain *and* host name: stricter than
//! libpq's `require`. A private CA is given with `sslrootcert=<file>`; without it the system bundle
//! (when present) and the Mozilla roots are trusted.

use std::{str::FromStr, time::Duration};

use postgres::{config::SslMode, Client, NoTls};
use rustls_pki_types::{pem::PemObject, CertificateDer};

use super::DbError;

use super::url::split_tls_params;

/// Default for `connect_timeout` when the URL sets none: a dead host must not hang `/ready` or
/// start.
const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
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
        let display = super::url::redact_database_url(url);
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
        res.map_err(|e| {
            crate::metrics::hooks::db_error("connect");
            DbError::Connect {
                url: self.display.clone(),
                detail: super::describe(&e),
            }
        })
    }

    /// The same target under another `application_name` (how a connection shows in
    /// pg_stat_activity).
    pub fn with_application_name(&self, name: &str) -> Connector {
        let mut c = self.clone();
        c.config.application_name(name);
        c
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
        _ => roots = crate::tls::public_and_system_roots(),
    }
    let cfg = rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(tokio_postgres_rustls::MakeRustlsConnect::new(cfg))
}

#[cfg(test)]
mod tests {
    use super::*;

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
