//! `rotate-key`: re-seal every sealed value under the current `KICI_SECRET_KEY`, in one
//! transaction (docs/secrets.md, "Key rotation"). Every sealed value of this orchestrator is a
//! row of `scoped_secrets`: workflow secrets, GitHub App private keys and webhook secrets, and
//! generic sources' verification secrets. A value that opens with neither the current nor the
//! old key aborts the whole rotation, naming the row (table, org, scope, key), never the value.

use std::fmt;

use postgres::Client;

use crate::{
    crypto::{self, KeyUsed, SecretBox},
    db::DbError,
};

/// What a rotation did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rotated {
    /// Rows re-sealed (every row of `scoped_secrets`).
    pub resealed: u64,
    /// Of those, how many opened only with `KICI_SECRET_KEY_OLD`.
    pub with_old_key: u64,
    /// The `key_version` every row now has.
    pub key_version: i32,
}

#[derive(Debug)]
pub enum RotateError {
    /// A row that cannot be opened: nothing was changed.
    Undecryptable {
        table: &'static str,
        org: String,
        scope: String,
        key: String,
        reason: String,
    },
    Db(DbError),
}

impl From<DbError> for RotateError {
    fn from(e: DbError) -> RotateError {
        RotateError::Db(e)
    }
}

impl fmt::Display for RotateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RotateError::Undecryptable {
                table,
                org,
                scope,
                key,
                reason,
            } => write!(
                f,
                "key rotation aborted, nothing was changed: {table} row (org {org:?}, scope {scope:?}, key {key:?}) \
                 cannot be decrypted ({reason}); set KICI_SECRET_KEY_OLD to the key it was sealed with, \
                 or delete or re-set that secret"
            ),
            RotateError::Db(e) => e.fmt(f),
        }
    }
}

impl std::error::Error for RotateError {}

/// Re-seals every row under the current key in one transaction; the rows are locked for its
/// duration, so a concurrent `secret set` waits instead of being overwritten.
pub fn rotate(client: &mut Client, sbox: &SecretBox) -> Result<Rotated, RotateError> {
    const CONTEXT: &str = "rotating the secret key";
    let mut tx = client.transaction().map_err(DbError::query(CONTEXT))?;
    tx.batch_execute("LOCK TABLE scoped_secrets IN SHARE ROW EXCLUSIVE MODE")
        .map_err(DbError::query(CONTEXT))?;
    let version_row = tx
        .query_one(
            "SELECT COALESCE(max(key_version), 0) + 1 FROM scoped_secrets",
            &[],
        )
        .map_err(DbError::query(CONTEXT))?;
    let key_version: i32 = DbError::column(&version_row, 0, CONTEXT)?;
    let rows = tx
        .query(
            "SELECT id::text, org_id, scope, key, encrypted_value FROM scoped_secrets
             ORDER BY org_id, scope, key",
            &[],
        )
        .map_err(DbError::query(CONTEXT))?;
    let mut resealed = Vec::with_capacity(rows.len());
    let mut with_old_key = 0;
    for row in &rows {
        let id: String = DbError::column(row, 0, CONTEXT)?;
        let org: String = DbError::column(row, 1, CONTEXT)?;
        let scope: String = DbError::column(row, 2, CONTEXT)?;
        let key: String = DbError::column(row, 3, CONTEXT)?;
        let stored: String = DbError::column(row, 4, CONTEXT)?;
        let aad = crypto::aad(&org, &scope, &key);
        match sbox.open_with_info(&stored, &aad) {
            Ok((plain, used)) => {
                if used == KeyUsed::Old {
                    with_old_key += 1;
                }
                resealed.push((id, sbox.seal(&plain, &aad)));
            }
            Err(e) => {
                // Dropping `tx` rolls back: nothing written so far survives.
                return Err(RotateError::Undecryptable {
                    table: "scoped_secrets",
                    org,
                    scope,
                    key,
                    reason: e.to_string(),
                });
            }
        }
    }
    let update = tx
        .prepare(
            "UPDATE scoped_secrets SET encrypted_value = $2, key_version = $3
             WHERE id = $1::text::uuid",
        )
        .map_err(DbError::query(CONTEXT))?;
    for (id, sealed) in &resealed {
        tx.execute(&update, &[id, sealed, &key_version])
            .map_err(DbError::query(CONTEXT))?;
    }
    tx.commit().map_err(DbError::query(CONTEXT))?;
    Ok(Rotated {
        resealed: resealed.len() as u64,
        with_old_key,
        key_version,
    })
}
