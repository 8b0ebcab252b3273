//! Admin tokens: only SHA-256 hashes are stored (crypto::hash_token); the plaintext is shown once.

use postgres::Client;

use super::{DbError, BOOTSTRAP_LOCK_KEY, ISO};
use crate::crypto;

/// The label of the token that `KICI_BOOTSTRAP_ADMIN_TOKEN` sets (reserved: the admin API
/// refuses it for new tokens).
pub const BOOTSTRAP_LABEL: &str = "bootstrap";

/// What `ensure_bootstrap_token` did at start-up (docs/operations.md, "Boot and shutdown").
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
                    // One row only, the first bootstrap token: `UPDATE … WHERE label = 'bootstrap'`
                    // would give every token so labelled the env token's hash (and owner role).
                    "UPDATE admin_tokens SET token_hash = $1, role = 'owner', routing_key = NULL
                     WHERE id = (SELECT id FROM admin_tokens WHERE label = 'bootstrap'
                                 ORDER BY created_at, id LIMIT 1)
                     RETURNING revoked",
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
                let revoked: Vec<bool> =
                    DbError::first_column(&updated, "storing KICI_BOOTSTRAP_ADMIN_TOKEN")?;
                Bootstrap::FromEnv {
                    revoked: revoked.iter().all(|r| *r),
                }
            }
        }
        None => {
            let row = tx
                .query_one("SELECT count(*) FROM admin_tokens WHERE NOT revoked AND (expires_at IS NULL OR expires_at > now())", &[])
                .map_err(DbError::query("counting active admin tokens"))?;
            let active: i64 = DbError::column(&row, 0, "counting active admin tokens")?;
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

/// The token row a valid `Authorization: Bearer` maps to; `last_used_at` is bumped in the same
/// statement. `None` for unknown, revoked or expired tokens.
pub fn authenticate(
    client: &mut Client,
    token: &str,
) -> Result<Option<crate::rbac::Caller>, DbError> {
    let rows = client
        .query(
            "UPDATE admin_tokens SET last_used_at = now()
             WHERE token_hash = $1 AND NOT revoked AND (expires_at IS NULL OR expires_at > now())
             RETURNING id::text, role, routing_key",
            &[&crypto::hash_token(token)],
        )
        .map_err(DbError::query("checking the admin token"))?;
    const CX: &str = "reading the admin token";
    let Some(r) = rows.first() else {
        return Ok(None);
    };
    let Some(role) = crate::rbac::Role::parse(DbError::column(r, 1, CX)?) else {
        return Ok(None);
    };
    Ok(Some(crate::rbac::Caller {
        token_id: DbError::column(r, 0, CX)?,
        role,
        routing_key: DbError::column(r, 2, CX)?,
    }))
}

/// Creates a token; returns (plaintext shown once, id).
pub fn create(
    client: &mut Client,
    label: &str,
    role: crate::rbac::Role,
    routing_key: Option<&str>,
) -> Result<(String, String), DbError> {
    let token = crypto::generate_token();
    let row = client
        .query_one(
            "INSERT INTO admin_tokens (token_hash, label, role, routing_key) VALUES ($1, $2, $3, $4) RETURNING id::text",
            &[&crypto::hash_token(&token), &label, &role.as_str(), &routing_key],
        )
        .map_err(DbError::query("creating an admin token"))?;
    Ok((token, DbError::column(&row, 0, "creating an admin token")?))
}

/// Every token, newest first, revoked ones included; never the hash.
pub fn list(client: &mut Client) -> Result<Vec<serde_json::Value>, DbError> {
    let sql = format!(
        "SELECT jsonb_build_object('id', id, 'label', label, 'role', role, 'routing_key', routing_key,
            'created_at', to_char(created_at AT TIME ZONE 'UTC', {ISO}),
            'expires_at', to_char(expires_at AT TIME ZONE 'UTC', {ISO}),
            'last_used_at', to_char(last_used_at AT TIME ZONE 'UTC', {ISO}),
            'revoked', revoked)
         FROM admin_tokens ORDER BY created_at DESC, id"
    );
    let rows = client
        .query(&sql, &[])
        .map_err(DbError::query("listing admin tokens"))?;
    DbError::first_column(&rows, "listing admin tokens")
}

/// Revokes by id; false when no such token. A malformed id fails with SQLSTATE 22P02.
pub fn revoke(client: &mut Client, id: &str) -> Result<bool, DbError> {
    let n = client
        .execute(
            "UPDATE admin_tokens SET revoked = true WHERE id = $1::text::uuid",
            &[&id],
        )
        .map_err(DbError::query("revoking an admin token"))?;
    Ok(n > 0)
}
