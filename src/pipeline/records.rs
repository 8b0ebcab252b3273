//! The pipeline's database side: the delivery's event-log entry (claimed for processing with a
//! lease, marked with the outcome and every workflow's decision trace, given up by the sweep).
//! Runs and jobs are written by `crate::runs::store`.

use postgres::{Client, Row};
use serde_json::Value;

use super::{
    lease::{Unfinished, LEASE_SECS, MAX_PROCESSING_ATTEMPTS, RECEIVED_GRACE_SECS},
    process::Work,
};
use crate::{db::DbError, runs::store::col};

/// The delivery's event-log entry after the pipeline looked at it.
pub fn mark_delivery(
    client: &mut Client,
    event_log_id: &str,
    status: &str,
    matched: i32,
    run_id: Option<&str>,
    decisions: &Value,
    error: Option<&str>,
) -> Result<(), DbError> {
    client
        .execute(
            "UPDATE event_log SET status = $2, matched_count = $3, run_id = $4::text::uuid, decisions = $5,
                    error_message = $6, processed_at = now()
              WHERE id = $1::text::uuid",
            &[&event_log_id, &status, &matched, &run_id, decisions, &error],
        )
        .map_err(DbError::query("recording what the pipeline decided"))?;
    Ok(())
}

/// Claims a delivery for processing: `received`, or `processing` under a claim whose lease is over
/// (a worker crashed), with attempts left. One statement, so two workers (or two orchestrators)
/// never both get it. Returns the attempt number, or `None` when someone else holds it (or it is
/// finished, or out of attempts: the sweep fails it).
pub fn claim_delivery(client: &mut Client, event_log_id: &str) -> Result<Option<i32>, DbError> {
    let row = client
        .query_opt(
            "UPDATE event_log
                SET status = 'processing', claimed_at = now(), processing_attempts = processing_attempts + 1
              WHERE id = $1::text::uuid
                AND (status = 'received'
                     OR (status = 'processing'
                         AND coalesce(claimed_at, received_at) <= now() - make_interval(secs => $2::bigint)
                         AND processing_attempts < $3))
             RETURNING processing_attempts",
            &[&event_log_id, &LEASE_SECS, &MAX_PROCESSING_ATTEMPTS],
        )
        .map_err(DbError::query("claiming a delivery"))?;
    row.map(|r| col(&r, 0, "claiming a delivery")).transpose()
}

/// GitHub and local deliveries of the last day that may need the sweep: `received` for
/// [`RECEIVED_GRACE_SECS`], or `processing` under a claim older than [`LEASE_SECS`]; oldest
/// first. The sweep decides with [`super::lease::verdict`]; the work carries the stored payload
/// (empty when none was kept).
pub fn unfinished(client: &mut Client, limit: i64) -> Result<Vec<(Unfinished, Work)>, DbError> {
    let rows = client
        .query(
            "SELECT id::text, delivery_id, coalesce(routing_key, ''), provider, event, action, payload, status,
                    extract(epoch FROM now() - received_at)::bigint,
                    extract(epoch FROM now() - claimed_at)::bigint, processing_attempts
               FROM event_log
              WHERE ((status = 'received' AND received_at <= now() - make_interval(secs => $1::bigint))
                     OR (status = 'processing'
                         AND coalesce(claimed_at, received_at) <= now() - make_interval(secs => $2::bigint)))
                AND provider IN ('github', 'local')
                AND received_at > now() - interval '1 day'
              ORDER BY received_at LIMIT $3",
            &[&RECEIVED_GRACE_SECS, &LEASE_SECS, &limit],
        )
        .map_err(DbError::query("finding unprocessed deliveries"))?;
    const READING: &str = "reading an unprocessed delivery";
    rows.iter()
        .map(|r| {
            let payload: Option<Vec<u8>> = col(r, 6, READING)?;
            let found = Unfinished {
                status: col(r, 7, READING)?,
                received_age_secs: col(r, 8, READING)?,
                claimed_age_secs: col(r, 9, READING)?,
                attempts: col(r, 10, READING)?,
                has_payload: payload.is_some(),
            };
            let work = work(r, payload.unwrap_or_default(), READING)?;
            Ok((found, work))
        })
        .collect()
}

/// Marks a delivery the sweep gave up on `failed` with the reason, unless a worker claimed it
/// since the sweep looked (same status and attempt count, and any claim still expired).
pub fn give_up(
    client: &mut Client,
    event_log_id: &str,
    seen: &Unfinished,
    reason: &str,
) -> Result<bool, DbError> {
    let n = client
        .execute(
            "UPDATE event_log SET status = 'failed', error_message = $4, processed_at = now()
              WHERE id = $1::text::uuid AND status = $2 AND processing_attempts = $3
                AND (status = 'received'
                     OR coalesce(claimed_at, received_at) <= now() - make_interval(secs => $5::bigint))",
            &[&event_log_id, &seen.status, &seen.attempts, &reason, &LEASE_SECS],
        )
        .map_err(DbError::query("failing a delivery"))?;
    Ok(n > 0)
}

/// The delivery of an event-log row whose first columns are `id::text, delivery_id,
/// coalesce(routing_key, ''), provider, event, action`, with `body`.
pub(super) fn work(r: &Row, body: Vec<u8>, reading: &'static str) -> Result<Work, DbError> {
    Ok(Work {
        event_log_id: col(r, 0, reading)?,
        delivery_id: col(r, 1, reading)?,
        routing_key: col(r, 2, reading)?,
        provider: col(r, 3, reading)?,
        event: col(r, 4, reading)?,
        action: col(r, 5, reading)?,
        body,
    })
}
