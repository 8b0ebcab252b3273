//! `scoped_secrets`: values sealed with the master key (crypto::SecretBox), each bound by its
//! AAD to `<org_id>:<scope>:<key>` so a row copied onto another owner does not decrypt.

use postgres::GenericClient;

use super::DbError;
use crate::crypto::{self, SecretBox};

/// Owner of orchestrator-wide secrets (docs/operations.md, "Secrets at rest").
pub const SYSTEM_ORG: &str = "__system__";

pub fn github_scope(source_id: &str) -> String {
    format!("__source__/{source_id}")
}

pub fn generic_scope(source_id: &str) -> String {
    format!("__generic__/{source_id}")
}

pub fn put(
    c: &mut impl GenericClient,
    sbox: &SecretBox,
    scope: &str,
    key: &str,
    value: &str,
) -> Result<(), DbError> {
    let sealed = sbox.seal(value.as_bytes(), &crypto::aad(SYSTEM_ORG, scope, key));
    c.execute(
        "INSERT INTO scoped_secrets (org_id, scope, key, encrypted_value) VALUES ($1, $2, $3, $4)
         ON CONFLICT (org_id, scope, key) DO UPDATE SET encrypted_value = EXCLUDED.encrypted_value, updated_at = now()",
        &[&SYSTEM_ORG, &scope, &key, &sealed],
    )
    .map_err(DbError::query("storing a secret"))?;
    Ok(())
}

/// The decrypted value, `None` when absent. A value that does not decrypt (wrong key, tampered
/// row) is an error naming its AAD, never silently absent.
pub fn get(
    c: &mut impl GenericClient,
    sbox: &SecretBox,
    scope: &str,
    key: &str,
) -> Result<Option<String>, DbError> {
    let row = c
        .query_opt(
            "SELECT encrypted_value FROM scoped_secrets WHERE org_id = $1 AND scope = $2 AND key = $3",
            &[&SYSTEM_ORG, &scope, &key],
        )
        .map_err(DbError::query("reading a secret"))?;
    let Some(row) = row else { return Ok(None) };
    let stored: String = DbError::column(&row, 0, "reading a secret")?;
    let plain = sbox
        .open(&stored, &crypto::aad(SYSTEM_ORG, scope, key))
        .map_err(|e| {
            DbError::Refused(format!(
                "{e}: check KICI_SECRET_KEY (and KICI_SECRET_KEY_OLD during a rotation)"
            ))
        })?;
    String::from_utf8(plain)
        .map(Some)
        .map_err(|_| DbError::Refused(format!("secret {scope}:{key} is not UTF-8")))
}

pub fn delete_scope(c: &mut impl GenericClient, scope: &str) -> Result<(), DbError> {
    c.execute(
        "DELETE FROM scoped_secrets WHERE org_id = $1 AND scope = $2",
        &[&SYSTEM_ORG, &scope],
    )
    .map_err(DbError::query("deleting secrets"))?;
    Ok(())
}

pub fn delete(c: &mut impl GenericClient, scope: &str, key: &str) -> Result<(), DbError> {
    c.execute(
        "DELETE FROM scoped_secrets WHERE org_id = $1 AND scope = $2 AND key = $3",
        &[&SYSTEM_ORG, &scope, &key],
    )
    .map_err(DbError::query("deleting a secret"))?;
    Ok(())
}
