//! GitHub App sources (`sources` + their two secrets). Row and secrets are written in one
//! transaction, so the `sources_change` NOTIFY (sent at commit) is never seen before the secrets.

use postgres::Client;
use serde_json::Value;

use super::{secrets, DbError, ISO};
use crate::crypto::SecretBox;

pub const PRIVATE_KEY: &str = "privateKey";
pub const WEBHOOK_SECRET: &str = "webhookSecret";

pub struct NewSource<'a> {
    pub name: &'a str,
    pub app_id: &'a str,
    pub slug: Option<&'a str>,
    pub private_key: &'a str,
    pub webhook_secret: Option<&'a str>,
}

pub fn routing_key(app_id: &str) -> String {
    format!("github:{app_id}")
}

/// Inserts the row and its secrets; returns the new id. A taken routing key fails with 23505.
pub fn create(client: &mut Client, sbox: &SecretBox, s: &NewSource) -> Result<String, DbError> {
    let mut tx = client
        .transaction()
        .map_err(DbError::query("starting a transaction"))?;
    let config = serde_json::json!({ "appId": s.app_id });
    let row = tx
        .query_one(
            "INSERT INTO sources (provider, name, routing_key, config, slug) VALUES ('github', $1, $2, $3, $4) RETURNING id::text",
            &[&s.name, &routing_key(s.app_id), &config, &s.slug],
        )
        .map_err(DbError::query("creating the source"))?;
    let id: String = DbError::column(&row, 0, "creating the source")?;
    let scope = secrets::github_scope(&id);
    secrets::put(&mut tx, sbox, &scope, PRIVATE_KEY, s.private_key)?;
    if let Some(w) = s.webhook_secret.filter(|w| !w.is_empty()) {
        secrets::put(&mut tx, sbox, &scope, WEBHOOK_SECRET, w)?;
    }
    tx.commit()
        .map_err(DbError::query("committing the source"))?;
    Ok(id)
}

pub fn list(client: &mut Client) -> Result<Vec<Value>, DbError> {
    let sql = format!(
        "SELECT jsonb_build_object('id', s.id, 'provider', s.provider, 'name', s.name, 'slug', s.slug,
            'routingKey', s.routing_key, 'customerId', s.customer_id, 'config', s.config,
            'createdAt', to_char(s.created_at AT TIME ZONE 'UTC', {ISO}),
            'updatedAt', to_char(s.updated_at AT TIME ZONE 'UTC', {ISO}),
            'hasWebhookSecret', EXISTS (SELECT 1 FROM scoped_secrets ss WHERE ss.org_id = $1
                AND ss.scope = '__source__/' || s.id::text AND ss.key = $2))
         FROM sources s ORDER BY s.created_at, s.routing_key"
    );
    let rows = client
        .query(&sql, &[&secrets::SYSTEM_ORG, &WEBHOOK_SECRET])
        .map_err(DbError::query("listing sources"))?;
    DbError::first_column(&rows, "listing sources")
}

/// (id, app id) of the source with this routing key.
pub fn find(client: &mut Client, routing_key: &str) -> Result<Option<(String, String)>, DbError> {
    let row = client
        .query_opt(
            "SELECT id::text, config->>'appId' FROM sources WHERE routing_key = $1",
            &[&routing_key],
        )
        .map_err(DbError::query("looking up the source"))?;
    const CX: &str = "looking up the source";
    row.map(|r| {
        let app_id: Option<String> = DbError::column(&r, 1, CX)?;
        Ok((DbError::column(&r, 0, CX)?, app_id.unwrap_or_default()))
    })
    .transpose()
}

#[derive(Default)]
pub struct Update<'a> {
    pub name: Option<&'a str>,
    pub customer_id: Option<&'a str>,
    /// Shallow-merged into `config`; `appId` is immutable and ignored here.
    pub config: Option<&'a serde_json::Map<String, Value>>,
    pub private_key: Option<&'a str>,
    pub webhook_secret: Option<&'a str>,
}

/// Applies the update in one transaction and always bumps `updated_at` (so secret-only changes
/// also notify). Returns the name after the update, `None` when the source does not exist.
pub fn update(
    client: &mut Client,
    sbox: &SecretBox,
    routing_key: &str,
    u: &Update,
) -> Result<Option<String>, DbError> {
    let mut config = u.config.cloned().unwrap_or_default();
    config.remove("appId");
    let mut tx = client
        .transaction()
        .map_err(DbError::query("starting a transaction"))?;
    let row = tx
        .query_opt(
            "UPDATE sources SET name = COALESCE($2, name), customer_id = COALESCE($3, customer_id),
                 config = config || $4, updated_at = now()
             WHERE routing_key = $1 RETURNING id::text, name",
            &[
                &routing_key,
                &u.name,
                &u.customer_id,
                &Value::Object(config),
            ],
        )
        .map_err(DbError::query("updating the source"))?;
    let Some(row) = row else { return Ok(None) };
    let scope = secrets::github_scope(DbError::column(&row, 0, "updating the source")?);
    if let Some(k) = u.private_key {
        secrets::put(&mut tx, sbox, &scope, PRIVATE_KEY, k)?;
    }
    if let Some(w) = u.webhook_secret {
        secrets::put(&mut tx, sbox, &scope, WEBHOOK_SECRET, w)?;
    }
    tx.commit()
        .map_err(DbError::query("committing the source update"))?;
    Ok(Some(DbError::column(&row, 1, "updating the source")?))
}

/// Deletes the secrets and the row; false when there was no such source.
pub fn delete(client: &mut Client, routing_key: &str) -> Result<bool, DbError> {
    let mut tx = client
        .transaction()
        .map_err(DbError::query("starting a transaction"))?;
    let row = tx
        .query_opt(
            "DELETE FROM sources WHERE routing_key = $1 RETURNING id::text",
            &[&routing_key],
        )
        .map_err(DbError::query("deleting the source"))?;
    let Some(row) = row else { return Ok(false) };
    let id: &str = DbError::column(&row, 0, "deleting the source")?;
    secrets::delete_scope(&mut tx, &secrets::github_scope(id))?;
    tx.commit()
        .map_err(DbError::query("committing the source deletion"))?;
    Ok(true)
}

/// `None` when the source does not exist; `Some(None)` when it has no webhook secret.
pub fn webhook_secret(
    client: &mut Client,
    sbox: &SecretBox,
    routing_key: &str,
) -> Result<Option<Option<String>>, DbError> {
    let Some((id, _)) = find(client, routing_key)? else {
        return Ok(None);
    };
    secrets::get(client, sbox, &secrets::github_scope(&id), WEBHOOK_SECRET).map(Some)
}
