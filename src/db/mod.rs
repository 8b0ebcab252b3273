//! Everything that talks to PostgreSQL: connecting (TLS included), the connection pool, the
//! embedded migrations and one file per table group. Nothing else in the crate holds a `Client`.

pub mod agent_tokens;
pub mod checksum;
pub mod connect;
pub mod event_log;
pub mod events;
pub mod generic;
pub mod migrate;
pub mod pool;
pub mod secrets;
pub mod sources;
pub mod tokens;
pub mod url;

pub use connect::Connector;
pub use pool::{Pool, PooledClient};

use std::fmt;

/// Advisory lock keys (session/transaction scoped). 543210001 is the reference's migration key
/// (docs/operations.md, "Database and migrations") so that a reference instance and ours never
/// migrate one database at once.
pub const MIGRATION_LOCK_KEY: i64 = 543_210_001;
pub const BOOTSTRAP_LOCK_KEY: i64 = 543_210_002;

/// `to_char` pattern for every timestamp we show: ISO-8601 UTC with milliseconds.
pub const ISO: &str = "'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"'";

#[derive(Debug)]
#[non_exhaustive]
pub enum DbError {
    /// The connection URL or its TLS settings are unusable (no connection was attempted).
    Config(String),
    /// Opening a connection failed: server down, wrong credentials, TLS handshake refused.
    Connect { url: String, detail: String },
    /// A statement failed on an open connection (or the connection broke during it).
    Query {
        context: &'static str,
        detail: String,
        code: Option<String>,
    },
    /// Every pooled connection stayed busy for the whole acquire timeout.
    PoolTimeout,
    /// A row's column did not have the type (or nullability) the code expects: a schema that
    /// differs from the migrations, never a connection problem.
    Decode {
        context: &'static str,
        detail: String,
    },
    /// The database's state forbids going on: a changed, unknown or pending migration, or a
    /// conflicting bootstrap token. The message says what to do.
    Refused(String),
}

impl fmt::Display for DbError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DbError::Config(m) | DbError::Refused(m) => f.write_str(m),
            DbError::Connect { url, detail } => {
                write!(f, "cannot connect to PostgreSQL at {url}: {detail}")
            }
            DbError::Query {
                context, detail, ..
            } => write!(f, "{context}: {detail}"),
            DbError::Decode { context, detail } => {
                write!(f, "{context}: unexpected column value: {detail}")
            }
            DbError::PoolTimeout => f.write_str("timed out waiting for a free database connection"),
        }
    }
}

impl std::error::Error for DbError {}

impl DbError {
    /// Wraps a failed statement with what we were doing.
    pub fn query(context: &'static str) -> impl FnOnce(postgres::Error) -> DbError {
        move |e| DbError::Query {
            context,
            detail: describe(&e),
            code: e.code().map(|c| c.code().to_owned()),
        }
    }

    /// Reads column `idx` of `row` as `T`, or says which column did not fit.
    pub fn column<'a, T: postgres::types::FromSql<'a>>(
        row: &'a postgres::Row,
        idx: usize,
        context: &'static str,
    ) -> Result<T, DbError> {
        row.try_get(idx).map_err(|e| DbError::Decode {
            context,
            detail: describe(&e),
        })
    }

    /// Column 0 of every row (a list of ids, names or JSON documents).
    pub fn first_column<T: for<'a> postgres::types::FromSql<'a>>(
        rows: &[postgres::Row],
        context: &'static str,
    ) -> Result<Vec<T>, DbError> {
        rows.iter()
            .map(|r| DbError::column(r, 0, context))
            .collect()
    }

    /// The SQLSTATE of a failed statement (e.g. "23505" for a unique violation).
    pub fn sqlstate(&self) -> Option<&str> {
        match self {
            DbError::Query { code, .. } => code.as_deref(),
            _ => None,
        }
    }

    /// True when the database could not be reached or the connection broke: callers answer 503.
    pub fn is_unavailable(&self) -> bool {
        match self {
            DbError::Connect { .. } | DbError::PoolTimeout => true,
            DbError::Query { code, .. } => code.is_none(),
            _ => false,
        }
    }
}

/// `postgres::Error`'s own Display says only "db error"; the server's message is in its source.
pub fn describe(e: &postgres::Error) -> String {
    if let Some(db) = e.as_db_error() {
        let mut s = format!("{}: {}", db.severity(), db.message());
        if let Some(d) = db.detail() {
            s.push_str(&format!(" ({d})"));
        }
        return s;
    }
    let mut s = e.to_string();
    let mut src = std::error::Error::source(e);
    while let Some(inner) = src {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        src = inner.source();
    }
    s
}
