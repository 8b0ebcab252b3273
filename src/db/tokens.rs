//! Admin tokens: only SHA-256 hashes are stored (crypto::hash_token); the plaintext is shown once.

use postgres::Client;

use super::{DbError, BOOTSTRAP_LOCK_KEY};
use crate::crypto;

/// What `ensure_bootstrap_token` did at start-up (spec-admin.md §5.2).
#[derive(Debug, PartialEq, Eq)]
pub enum Bootstrap {
    /// `KICI_BOOTSTRAP_ADMIN_TOKEN` was upserted as the owner token labelled `bootstrap`.
    /// `revoked` tells that this row was revoked earlier and stays revoked.
    FromEnv { revoked: bool },
    /// No env token and no active token existed: a new owner token was generated. Shown once.
    Generated(String),
    /// No env token, and active tokens exist: nothing to do.
    Existing,
}

/// Runs in one transaction under an advisory lock, so instances starting together neither
/// generate several tokens nor race on the `bootstrap` row.
pub fn ensure_bootstrap_token(
    client: &mut Client,
    env_token: Option<&str>,
) -> Result<Bootstrap, DbError> {
    let mut tx = client
        .transaction()
        .map_err(DbError::query("starting the bootstrap transaction"))?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&BOOTSTRAP_LOCK_KEY])
        .map_err(DbError::query("acquiring the bootstrap lock"))?;
    let outcome = match env_token {
        Some(token) => {
            let hash = crypto::hash_token(token);
            let updated = tx
                .query(
                    "UPDATE admin_tokens SET token_hash = $1, role = 'owner'
                     WHERE label = 'bootstrap' RETURNING revoked",
                    &[&hash],
                )
                .map_err(map_unique("storing KICI_BOOTSTRAP_ADMIN_TOKEN"))?;
            if updated.is_empty() {
                tx.execute(
                    "INSERT INTO admin_tokens (token_hash, label, role) VALUES ($1, 'bootstrap', 'owner')",
                    &[&hash],
                )
                .map_err(map_unique("storing KICI_BOOTSTRAP_ADMIN_TOKEN"))?;
                Bootstrap::FromEnv { revoked: false }
            } else {
                Bootstrap::FromEnv {
                    revoked: updated.iter().all(|r| r.get::<_, bool>(0)),
                }
            }
        }
        None => {
            let active: i64 = tx
                .query_one("SELECT count(*) FROM admin_tokens WHERE NOT revoked AND (expires_at IS NULL OR expires_at > now())", &[])
                .map_err(DbError::query("counting active admin tokens"))?
                .get(0);
            if active > 0 {
                Bootstrap::Existing
            } else {
                let token = crypto::generate_token();
                tx.execute(
                    "INSERT INTO admin_tokens (token_hash, label, role) VALUES ($1, 'bootstrap', 'owner')",
                    &[&crypto::hash_token(&token)],
                )
                .map_err(DbError::query("storing the generated admin token"))?;
                Bootstrap::Generated(token)
            }
        }
    };
    tx.commit()
        .map_err(DbError::query("committing the bootstrap token"))?;
    Ok(outcome)
}

fn map_unique(context: &'static str) -> impl FnOnce(postgres::Error) -> DbError {
    move |e| {
        if e.code() == Some(&postgres::error::SqlState::UNIQUE_VIOLATION) {
            DbError::Refused(format!(
                "{context}: that token is already in use by another admin token; choose a different KICI_BOOTSTRAP_ADMIN_TOKEN \
                 (generate one with: openssl rand -hex 32)"
            ))
        } else {
            DbError::query(context)(e)
        }
    }
}
