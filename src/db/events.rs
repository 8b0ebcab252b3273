//! The durable record of accepted webhooks: `dedup_cache` + `event_log`, written for a whole
//! batch of deliveries in ONE statement (hence one commit, one WAL flush) — the group commit that
//! lets ingestion keep up with many concurrent senders. A delivery whose id is already in
//! `dedup_cache` is a duplicate; its event_log row is left alone. So is one whose dedup entry
//! expired while the event log still holds it (`(org_id, delivery_id)` is unique there): it is
//! answered as a duplicate, never as accepted without a record (docs/operations.md, "Webhook
//! intake and dedup").

use postgres::{Client, Statement};

use super::DbError;

/// One accepted delivery, as stored.
#[derive(Debug, Clone)]
pub struct Delivery {
    /// The event_log row id: a time-ordered UUID (crypto::uuid_v7).
    pub id: String,
    pub org_id: String,
    pub delivery_id: String,
    pub routing_key: Option<String>,
    pub event: Option<String>,
    pub action: Option<String>,
    pub provider: Option<String>,
    pub repo: Option<String>,
    pub git_ref: Option<String>,
    /// `None` when the payload was too large to keep (`payload_omitted = size_exceeded`).
    pub payload: Option<Vec<u8>>,
    pub size: i64,
    /// SHA-256 hex of the raw body.
    pub hash: String,
    /// How long the delivery id stays in the dedup cache.
    pub dedup_ttl_secs: i32,
    /// Relayed by the Platform (`event_log.source = 'relay'`), else posted to us (`'direct'`).
    pub relayed: bool,
    /// The request headers kept (a JSON object, secrets left out: `ingest::kept_headers`).
    pub headers: Option<String>,
}

const RECORD: &str = "
WITH input AS (
    SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[],
                         $8::text[], $9::bytea[], $10::int8[], $11::text[], $12::int4[], $13::text[], $14::bool[], $15::text[])
        AS t(org_id, delivery_id, routing_key, event, action, provider, repo, ref, payload, size, hash, ttl, id, relayed, headers)
), fresh AS (
    INSERT INTO dedup_cache (delivery_id, expires_at)
    SELECT delivery_id, now() + make_interval(secs => ttl) FROM input
    ON CONFLICT (delivery_id) DO NOTHING
    RETURNING delivery_id
), logged AS (
    INSERT INTO event_log (id, org_id, delivery_id, routing_key, event, action, source, provider, repo_identifier, ref,
                           payload, payload_omitted, payload_omitted_reason, payload_size_bytes, payload_hash, status,
                           headers)
    SELECT i.id::uuid, i.org_id, i.delivery_id, i.routing_key, i.event, i.action,
           CASE WHEN i.relayed THEN 'relay' ELSE 'direct' END, i.provider, i.repo, i.ref,
           i.payload, i.payload IS NULL, CASE WHEN i.payload IS NULL THEN 'size_exceeded' END, i.size, i.hash, 'received',
           i.headers::jsonb
    FROM input i JOIN fresh f USING (delivery_id)
    ON CONFLICT (org_id, delivery_id) DO NOTHING
    RETURNING delivery_id
)
SELECT delivery_id FROM logged";

/// The same write for exactly one delivery, with plain parameters: at low concurrency most
/// batches hold one delivery, and this skips building and unnesting fifteen arrays.
const RECORD_ONE: &str = "
WITH fresh AS (
    INSERT INTO dedup_cache (delivery_id, expires_at)
    VALUES ($2::text, now() + make_interval(secs => $12::int4))
    ON CONFLICT (delivery_id) DO NOTHING
    RETURNING delivery_id
), logged AS (
    INSERT INTO event_log (id, org_id, delivery_id, routing_key, event, action, source, provider, repo_identifier, ref,
                           payload, payload_omitted, payload_omitted_reason, payload_size_bytes, payload_hash, status,
                           headers)
    SELECT $13::text::uuid, $1::text, delivery_id, $3::text, $4::text, $5::text,
           CASE WHEN $14::bool THEN 'relay' ELSE 'direct' END, $6::text, $7::text, $8::text,
           $9::bytea, $9::bytea IS NULL, CASE WHEN $9::bytea IS NULL THEN 'size_exceeded' END, $10::int8, $11::text, 'received',
           $15::text::jsonb
    FROM fresh
    ON CONFLICT (org_id, delivery_id) DO NOTHING
    RETURNING delivery_id
)
SELECT delivery_id FROM logged";

/// The two record statements, prepared once per recorder connection.
pub struct RecordStatements {
    batch: Statement,
    one: Statement,
}

pub fn prepare_record(client: &mut Client) -> Result<RecordStatements, DbError> {
    let batch = client
        .prepare(RECORD)
        .map_err(DbError::query("preparing the webhook record statement"))?;
    let one = client
        .prepare(RECORD_ONE)
        .map_err(DbError::query("preparing the webhook record statement"))?;
    Ok(RecordStatements { batch, one })
}

/// Records the batch (delivery ids must be distinct within it); returns, per delivery, whether
/// it was new (`true`) or a duplicate. When this returns Ok, the new ones are committed.
pub fn record(
    client: &mut Client,
    stmts: &RecordStatements,
    batch: &[&Delivery],
) -> Result<Vec<bool>, DbError> {
    if let [d] = batch {
        let rows = client
            .query(
                &stmts.one,
                &[
                    &d.org_id,
                    &d.delivery_id,
                    &d.routing_key,
                    &d.event,
                    &d.action,
                    &d.provider,
                    &d.repo,
                    &d.git_ref,
                    &d.payload,
                    &d.size,
                    &d.hash,
                    &d.dedup_ttl_secs,
                    &d.id,
                    &d.relayed,
                    &d.headers,
                ],
            )
            .map_err(DbError::query("recording a webhook"))?;
        return Ok(vec![!rows.is_empty()]);
    }
    let col = |f: fn(&Delivery) -> Option<String>| {
        batch.iter().map(|d| f(d)).collect::<Vec<Option<String>>>()
    };
    let org: Vec<&str> = batch.iter().map(|d| d.org_id.as_str()).collect();
    let ids: Vec<&str> = batch.iter().map(|d| d.delivery_id.as_str()).collect();
    let routing = col(|d| d.routing_key.clone());
    let event = col(|d| d.event.clone());
    let action = col(|d| d.action.clone());
    let provider = col(|d| d.provider.clone());
    let repo = col(|d| d.repo.clone());
    let git_ref = col(|d| d.git_ref.clone());
    let payload: Vec<Option<&[u8]>> = batch.iter().map(|d| d.payload.as_deref()).collect();
    let size: Vec<i64> = batch.iter().map(|d| d.size).collect();
    let hash: Vec<&str> = batch.iter().map(|d| d.hash.as_str()).collect();
    let ttl: Vec<i32> = batch.iter().map(|d| d.dedup_ttl_secs).collect();
    let row_ids: Vec<&str> = batch.iter().map(|d| d.id.as_str()).collect();
    let relayed: Vec<bool> = batch.iter().map(|d| d.relayed).collect();
    let headers = col(|d| d.headers.clone());
    let rows = client
        .query(
            &stmts.batch,
            &[
                &org, &ids, &routing, &event, &action, &provider, &repo, &git_ref, &payload, &size,
                &hash, &ttl, &row_ids, &relayed, &headers,
            ],
        )
        .map_err(DbError::query("recording webhooks"))?;
    let fresh: std::collections::HashSet<String> = rows.iter().map(|r| r.get(0)).collect();
    Ok(batch
        .iter()
        .map(|d| fresh.contains(&d.delivery_id))
        .collect())
}

/// Deletes expired dedup entries; returns how many.
pub fn expire_dedup(client: &mut Client) -> Result<u64, DbError> {
    let a = client
        .execute("DELETE FROM dedup_cache WHERE expires_at < now()", &[])
        .map_err(DbError::query("expiring dedup entries"))?;
    let b = client
        .execute(
            "DELETE FROM generic_idempotency WHERE expires_at < now()",
            &[],
        )
        .map_err(DbError::query("expiring idempotency markers"))?;
    Ok(a + b)
}
