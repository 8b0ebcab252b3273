//! Generic webhook sources. The verification secret (HMAC secret or bearer token) is kept out of
//! the `verification_config` column and sealed in `scoped_secrets` instead (the reference stores
//! it in plaintext JSONB); rows are rendered to the API's JSON by PostgreSQL itself.

use postgres::{types::ToSql, Client};
use serde_json::Value;

use super::{secrets, DbError, ISO};
use crate::crypto::SecretBox;

/// The `scoped_secrets` key of a generic source's verification secret.
pub const SECRET_KEY: &str = "verification";

/// A column value for inserts and partial updates.
#[derive(Debug, Clone, PartialEq)]
pub enum Val {
    Text(Option<String>),
    Int(i32),
    Json(Option<Value>),
    Bool(bool),
}

impl Val {
    fn as_sql(&self) -> &(dyn ToSql + Sync) {
        match self {
            Val::Text(v) => v,
            Val::Int(v) => v,
            Val::Json(v) => v,
            Val::Bool(v) => v,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum SecretChange {
    Keep,
    Set(String),
    Clear,
}

fn row_sql(alias: &str) -> String {
    let ts = |c: &str| format!("to_char({alias}.{c} AT TIME ZONE 'UTC', {ISO})");
    let cols = [
        "id",
        "customer_id",
        "name",
        "routing_key",
        "verification_method",
        "verification_config",
        "event_type_header",
        "event_type_path",
        "idempotency_key_header",
        "idempotency_key_path",
        "dedup_window_seconds",
        "max_payload_bytes",
        "allowed_events",
        "strip_headers",
        "enabled",
        "rate_limit_rpm",
        "provider_type",
        "git_config",
    ];
    let mut parts: Vec<String> = cols.iter().map(|c| format!("'{c}', {alias}.{c}")).collect();
    for c in ["created_at", "updated_at", "deleted_at"] {
        parts.push(format!("'{c}', {}", ts(c)));
    }
    parts.push(format!(
        "'has_secret', EXISTS (SELECT 1 FROM scoped_secrets ss WHERE ss.org_id = '{}' AND ss.scope = '__generic__/' || {alias}.id::text AND ss.key = '{SECRET_KEY}')",
        secrets::SYSTEM_ORG
    ));
    format!("jsonb_build_object({})", parts.join(", "))
}

/// Inserts a source (columns beyond the required ones as given) and its secret in one
/// transaction; returns its row. A name taken among the org's live rows fails with 23505.
pub fn create(
    client: &mut Client,
    sbox: &SecretBox,
    org: &str,
    name: &str,
    cols: &[(&'static str, Val)],
    secret: Option<&str>,
) -> Result<Value, DbError> {
    let id = crate::crypto::random_uuid();
    let routing_key = format!("generic:{org}:{id}");
    let mut names = vec!["id", "customer_id", "name", "routing_key"];
    let id_val = Val::Text(Some(id.clone()));
    let (org_val, name_val, rk_val) = (
        Val::Text(Some(org.into())),
        Val::Text(Some(name.into())),
        Val::Text(Some(routing_key)),
    );
    let mut params: Vec<&(dyn ToSql + Sync)> = vec![
        id_val.as_sql(),
        org_val.as_sql(),
        name_val.as_sql(),
        rk_val.as_sql(),
    ];
    for (c, v) in cols {
        names.push(c);
        params.push(v.as_sql());
    }
    let placeholders: Vec<String> = (1..=names.len())
        .map(|i| {
            if i == 1 {
                "$1::text::uuid".into()
            } else {
                format!("${i}")
            }
        })
        .collect();
    let sql = format!(
        "INSERT INTO generic_webhook_sources AS g ({}) VALUES ({}) RETURNING {}",
        names.join(", "),
        placeholders.join(", "),
        row_sql("g")
    );
    let mut tx = client
        .transaction()
        .map_err(DbError::query("starting a transaction"))?;
    let row = tx
        .query_one(&sql, &params)
        .map_err(DbError::query("creating the generic source"))?;
    if let Some(s) = secret {
        secrets::put(&mut tx, sbox, &secrets::generic_scope(&id), SECRET_KEY, s)?;
    }
    tx.commit()
        .map_err(DbError::query("committing the generic source"))?;
    // The secret row is written after the INSERT returned: recompute has_secret.
    let mut v: Value = DbError::column(&row, 0, "creating the generic source")?;
    v["has_secret"] = Value::Bool(secret.is_some());
    Ok(v)
}

pub fn list(client: &mut Client, org: &str, include_deleted: bool) -> Result<Vec<Value>, DbError> {
    let sql = format!(
        "SELECT {} FROM generic_webhook_sources g WHERE g.customer_id = $1 AND ($2 OR g.deleted_at IS NULL)
         ORDER BY g.created_at, g.id",
        row_sql("g")
    );
    let rows = client
        .query(&sql, &[&org, &include_deleted])
        .map_err(DbError::query("listing generic sources"))?;
    DbError::first_column(&rows, "listing generic sources")
}

/// The live (not soft-deleted) row. A malformed id fails with 22P02.
pub fn get(client: &mut Client, id: &str) -> Result<Option<Value>, DbError> {
    let sql = format!("SELECT {} FROM generic_webhook_sources g WHERE g.id = $1::text::uuid AND g.deleted_at IS NULL", row_sql("g"));
    let row = client
        .query_opt(&sql, &[&id])
        .map_err(DbError::query("reading the generic source"))?;
    row.map(|r| DbError::column(&r, 0, "reading the generic source"))
        .transpose()
}

/// Partial update of a live row (and its secret) in one transaction; `None` when absent.
pub fn update(
    client: &mut Client,
    sbox: &SecretBox,
    id: &str,
    cols: &[(&'static str, Val)],
    secret: &SecretChange,
) -> Result<Option<Value>, DbError> {
    let mut params: Vec<&(dyn ToSql + Sync)> = vec![&id];
    let mut sets = vec!["updated_at = now()".to_owned()];
    for (i, (c, v)) in cols.iter().enumerate() {
        sets.push(format!("{c} = ${}", i + 2));
        params.push(v.as_sql());
    }
    let sql = format!(
        "UPDATE generic_webhook_sources AS g SET {} WHERE g.id = $1::text::uuid AND g.deleted_at IS NULL RETURNING g.id",
        sets.join(", ")
    );
    let mut tx = client
        .transaction()
        .map_err(DbError::query("starting a transaction"))?;
    if tx
        .query_opt(&sql, &params)
        .map_err(DbError::query("updating the generic source"))?
        .is_none()
    {
        return Ok(None);
    }
    let scope = secrets::generic_scope(id);
    match secret {
        SecretChange::Keep => {}
        SecretChange::Set(s) => secrets::put(&mut tx, sbox, &scope, SECRET_KEY, s)?,
        SecretChange::Clear => secrets::delete(&mut tx, &scope, SECRET_KEY)?,
    }
    tx.commit()
        .map_err(DbError::query("committing the generic source update"))?;
    get(client, id)
}

/// Soft delete (sets `deleted_at`) or hard delete (row and secret). False when there is no
/// live row with this id.
pub fn delete(client: &mut Client, id: &str, hard: bool) -> Result<bool, DbError> {
    let mut tx = client
        .transaction()
        .map_err(DbError::query("starting a transaction"))?;
    let sql = if hard {
        "DELETE FROM generic_webhook_sources WHERE id = $1::text::uuid AND deleted_at IS NULL"
    } else {
        "UPDATE generic_webhook_sources SET deleted_at = now(), updated_at = now() WHERE id = $1::text::uuid AND deleted_at IS NULL"
    };
    let n = tx
        .execute(sql, &[&id])
        .map_err(DbError::query("deleting the generic source"))?;
    if n > 0 && hard {
        secrets::delete_scope(&mut tx, &secrets::generic_scope(id))?;
    }
    tx.commit()
        .map_err(DbError::query("committing the generic source deletion"))?;
    Ok(n > 0)
}

pub fn set_enabled(client: &mut Client, id: &str, enabled: bool) -> Result<bool, DbError> {
    let n = client
        .execute(
            "UPDATE generic_webhook_sources SET enabled = $2, updated_at = now() WHERE id = $1::text::uuid AND deleted_at IS NULL",
            &[&id, &enabled],
        )
        .map_err(DbError::query("enabling/disabling the generic source"))?;
    Ok(n > 0)
}

pub fn secret(client: &mut Client, sbox: &SecretBox, id: &str) -> Result<Option<String>, DbError> {
    secrets::get(client, sbox, &secrets::generic_scope(id), SECRET_KEY)
}
