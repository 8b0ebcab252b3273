//! Agent tokens (docs/agent-protocol.md, "Authentication"): `kat_` + 64 hex, stored as SHA-256 hex
//! with the first 12 characters kept for display. Valid while not revoked, not consumed and not
//! expired.

use postgres::Client;
use serde_json::Value;

use super::{DbError, ISO};
use crate::crypto;

/// What registration checks a token against.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentToken {
    pub id: String,
    /// The first 12 characters (`kat_` + 8 hex): what logs may show of a token.
    pub prefix: String,
    /// `None`: any label may be advertised.
    pub labels: Option<Vec<String>>,
    pub mandatory_labels: Vec<String>,
    pub agent_type: String,
    pub created_by: Option<String>,
}

pub fn generate() -> String {
    format!("kat_{}", crypto::generate_token())
}

fn strings(v: Option<Value>) -> Option<Vec<String>> {
    v.and_then(|v| serde_json::from_value(v).ok())
}

/// The valid token with this plaintext, and marks it seen.
pub fn authenticate(client: &mut Client, token: &str) -> Result<Option<AgentToken>, DbError> {
    let row = client
        .query_opt(
            "UPDATE agent_tokens SET last_seen_at = now()
              WHERE token_hash = $1 AND revoked_at IS NULL AND consumed_at IS NULL
                AND (expires_at IS NULL OR expires_at > now())
             RETURNING id::text, labels, mandatory_labels, agent_type, created_by, token_prefix",
            &[&crypto::hash_token(token)],
        )
        .map_err(DbError::query("checking an agent token"))?;
    const CX: &str = "reading an agent token";
    row.map(|r| {
        Ok(AgentToken {
            id: DbError::column(&r, 0, CX)?,
            labels: strings(DbError::column(&r, 1, CX)?),
            mandatory_labels: strings(DbError::column(&r, 2, CX)?).unwrap_or_default(),
            agent_type: DbError::column(&r, 3, CX)?,
            created_by: DbError::column(&r, 4, CX)?,
            prefix: DbError::column(&r, 5, CX)?,
        })
    })
    .transpose()
}

/// Creates a static token; returns (plaintext shown once, id).
pub fn create(
    client: &mut Client,
    description: Option<&str>,
    labels: Option<&[String]>,
    mandatory: &[String],
    created_by: &str,
) -> Result<(String, String), DbError> {
    let token = generate();
    let labels = labels.map(|l| serde_json::json!(l));
    let row = client
        .query_one(
            "INSERT INTO agent_tokens (id, token_hash, token_prefix, description, labels, mandatory_labels, created_by)
             VALUES ($1::text::uuid, $2, $3, $4, $5, $6, $7) RETURNING id::text",
            &[
                &crypto::random_uuid(),
                &crypto::hash_token(&token),
                &token[..12].to_owned(),
                &description,
                &labels,
                &serde_json::json!(mandatory),
                &created_by,
            ],
        )
        .map_err(DbError::query("creating an agent token"))?;
    Ok((token, DbError::column(&row, 0, "creating an agent token")?))
}

/// Every token, newest first; never the hash.
pub fn list(client: &mut Client) -> Result<Vec<Value>, DbError> {
    let sql = format!(
        "SELECT jsonb_build_object('id', id, 'prefix', token_prefix, 'description', description,
            'labels', labels, 'mandatoryLabels', mandatory_labels, 'type', agent_type,
            'createdBy', created_by,
            'createdAt', to_char(created_at AT TIME ZONE 'UTC', {ISO}),
            'expiresAt', to_char(expires_at AT TIME ZONE 'UTC', {ISO}),
            'lastSeenAt', to_char(last_seen_at AT TIME ZONE 'UTC', {ISO}),
            'revoked', revoked_at IS NOT NULL)
         FROM agent_tokens ORDER BY created_at DESC, id"
    );
    let rows = client
        .query(&sql, &[])
        .map_err(DbError::query("listing agent tokens"))?;
    DbError::first_column(&rows, "listing agent tokens")
}

/// Revokes by id or by its displayed prefix; returns the ids revoked (none when no live token
/// matched), so the caller can end their agents' sessions.
pub fn revoke(client: &mut Client, id_or_prefix: &str) -> Result<Vec<String>, DbError> {
    let rows = client
        .query(
            "UPDATE agent_tokens SET revoked_at = now()
              WHERE revoked_at IS NULL AND (id::text = $1 OR token_prefix = $1)
             RETURNING id::text",
            &[&id_or_prefix],
        )
        .map_err(DbError::query("revoking an agent token"))?;
    DbError::first_column(&rows, "revoking an agent token")
}

/// Of these token ids, the ones that were revoked or deleted. Expiry is not checked: it bounds
/// when a token may authenticate, not how long a session that authenticated in time may run.
pub fn revoked_among(client: &mut Client, ids: &[String]) -> Result<Vec<String>, DbError> {
    let rows = client
        .query(
            "SELECT i FROM unnest($1::text[]) AS i
              WHERE NOT EXISTS (SELECT 1 FROM agent_tokens t WHERE t.id::text = i AND t.revoked_at IS NULL)",
            &[&ids],
        )
        .map_err(DbError::query("checking live agent tokens"))?;
    DbError::first_column(&rows, "checking live agent tokens")
}
