//! The KiCI orchestrator: one binary, `kici-admin`, that is both the admin CLI and the daemon.
//! `main.rs` is glue; everything else lives in these modules (docs/architecture.md, "Rooms", is the
//! map).

pub mod agent;
pub mod app;
pub mod caches;
pub mod checks;
pub mod cli;
pub mod config;
pub mod crypto;
pub mod daemon;
pub mod db;
pub mod diagnose;
pub mod github;
pub mod http;
pub mod ingest;
pub mod jsregex;
pub mod logging;
pub mod metrics;
pub mod pipeline;
pub mod platform;
pub mod rbac;
pub mod runs;
pub mod secrets;
pub mod service;
pub mod sources;
pub mod storage;
pub mod supervise;
pub mod tls;

#[cfg(test)]
pub(crate) mod props;

use std::fmt;

/// What a command can fail with; `main` turns it into `Error: <message>` and exit code 1
/// ([`Error::exit_code`]), or, for [`Error::Outcome`], the message and that outcome's code.
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// Invalid configuration (the message lists every problem).
    Config(String),
    /// A database failure, with what we were doing.
    Db(db::DbError),
    /// The daemon could not start (port taken, pending migrations, signals).
    Startup(String),
    /// Wrong use of the CLI that argh cannot see (conflicting flags, missing inputs).
    Usage(String),
    /// The admin API refused a request or could not be reached (the message says which).
    Api(String),
    /// The command worked, and what it watched ended badly: `runs logs --follow` on a run that
    /// failed (1) or was cancelled (2). Scripts read the code.
    Outcome { message: String, code: u8 },
}

impl Error {
    /// The process exit code `main` uses for this error.
    pub fn exit_code(&self) -> u8 {
        match self {
            Error::Outcome { code, .. } => *code,
            _ => 1,
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Config(m) | Error::Startup(m) | Error::Usage(m) | Error::Api(m) => {
                f.write_str(m)
            }
            Error::Db(e) => e.fmt(f),
            Error::Outcome { message, .. } => f.write_str(message),
        }
    }
}

impl std::error::Error for Error {}

impl From<db::DbError> for Error {
    fn from(e: db::DbError) -> Error {
        Error::Db(e)
    }
}

/// rustls needs one process-wide crypto provider; ring is the one every TLS user here shares.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}
