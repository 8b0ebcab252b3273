//! The event log read back for operators (docs/operations.md, "Event log"): deliveries newest
//! first with filters and a cursor, and one delivery with its kept headers, decision traces and
//! the runs it started. Rows are rendered to JSON by PostgreSQL, as the other admin reads are.

use postgres::Client;
use serde_json::Value;

use super::{DbError, ISO};
use crate::runs::store::{col, is_uuid};

/// Delivery statuses (migrations/0002_execution.sql), the values `status=` may take.
pub const STATUSES: [&str; 7] = [
    "received",
    "processing",
    "processed",
    "duplicate",
    "lockfile_missing",
    "lockfile_corrupt",
    "failed",
];

/// What `source=` names: the way in, the provider, or one source by its routing key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SourceFilter {
    /// `relay` or `direct`.
    Via(String),
    /// `github`, `generic` or `local`.
    Provider(String),
    RoutingKey(String),
}

impl SourceFilter {
    pub fn parse(text: &str) -> SourceFilter {
        match text {
            "relay" | "direct" => SourceFilter::Via(text.to_owned()),
            "github" | "generic" | "local" => SourceFilter::Provider(text.to_owned()),
            key => SourceFilter::RoutingKey(key.to_owned()),
        }
    }
}

/// One list request, validated.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ListQuery {
    pub source: Option<SourceFilter>,
    pub status: Option<String>,
    /// RFC 3339: only deliveries received at or after it.
    pub since: Option<String>,
    /// A routing-key scoped token sees only its key's deliveries.
    pub scope: Option<String>,
    /// The last row of the previous page (its event-log id).
    pub after: Option<String>,
    pub limit: i64,
}

fn fields() -> String {
    format!(
        "'id', e.id::text, 'deliveryId', e.delivery_id, 'org', e.org_id, 'routingKey', e.routing_key,
         'via', e.source, 'provider', e.provider, 'event', e.event, 'action', e.action,
         'repo', e.repo_identifier, 'ref', e.ref, 'status', e.status, 'matchedCount', e.matched_count,
         'runId', e.run_id::text, 'sizeBytes', e.payload_size_bytes,
         'receivedAt', to_char(e.received_at AT TIME ZONE 'UTC', {ISO}),
         'processedAt', to_char(e.processed_at AT TIME ZONE 'UTC', {ISO}),
         'error', e.error_message"
    )
}

/// Deliveries newest first; a cursor row that does not exist (or is not a UUID) yields nothing.
pub fn list(client: &mut Client, q: &ListQuery) -> Result<Vec<Value>, DbError> {
    const LISTING: &str = "listing the event log";
    if q.after.as_deref().is_some_and(|a| !is_uuid(a)) {
        return Ok(Vec::new());
    }
    let (via, provider, key) = match &q.source {
        Some(SourceFilter::Via(v)) => (Some(v.as_str()), None, None),
        Some(SourceFilter::Provider(p)) => (None, Some(p.as_str()), None),
        Some(SourceFilter::RoutingKey(k)) => (None, None, Some(k.as_str())),
        None => (None, None, None),
    };
    let sql = format!(
        "SELECT jsonb_build_object({}) FROM event_log e
          WHERE ($1::text IS NULL OR e.source = $1) AND ($2::text IS NULL OR e.provider = $2)
            AND ($3::text IS NULL OR e.routing_key = $3) AND ($4::text IS NULL OR e.status = $4)
            AND ($5::text IS NULL OR e.received_at >= $5::text::timestamptz)
            AND ($6::text IS NULL OR e.routing_key = $6)
            AND ($7::text IS NULL OR (e.received_at, e.id) <
                 (SELECT c.received_at, c.id FROM event_log c WHERE c.id = $7::text::uuid))
          ORDER BY e.received_at DESC, e.id DESC LIMIT $8",
        fields()
    );
    client
        .query(
            &sql,
            &[
                &via, &provider, &key, &q.status, &q.since, &q.scope, &q.after, &q.limit,
            ],
        )
        .map_err(DbError::query(LISTING))?
        .iter()
        .map(|r| col(r, 0, LISTING))
        .collect()
}

/// One delivery by its delivery id (or its event-log id), the newest when several orgs hold the
/// id, with what the list has plus its headers, traces, payload facts and the runs it started.
pub fn show(client: &mut Client, id: &str) -> Result<Option<(Value, Vec<Value>)>, DbError> {
    const READING: &str = "reading a delivery";
    let sql = format!(
        "SELECT jsonb_build_object({},
                'headers', e.headers, 'decisions', e.decisions, 'payloadKept', e.payload IS NOT NULL,
                'payloadOmittedReason', e.payload_omitted_reason, 'payloadSha256', e.payload_hash,
                'attempts', e.processing_attempts,
                'claimedAt', to_char(e.claimed_at AT TIME ZONE 'UTC', {ISO}))
           FROM event_log e
          WHERE e.delivery_id = $1 OR ($2 AND e.id = $1::text::uuid)
          ORDER BY e.received_at DESC LIMIT 1",
        fields()
    );
    let row = client
        .query_opt(&sql, &[&id, &is_uuid(id)])
        .map_err(DbError::query(READING))?;
    let Some(row) = row else { return Ok(None) };
    let delivery: Value = col(&row, 0, READING)?;
    let delivery_id = delivery["deliveryId"].as_str().unwrap_or(id).to_owned();
    let runs = client
        .query(
            &format!(
                "SELECT jsonb_build_object('runId', r.run_id::text, 'workflowName', r.workflow_name,
                        'status', r.status, 'failureReason', r.failure_reason,
                        'startedAt', to_char(r.started_at AT TIME ZONE 'UTC', {ISO}))
                   FROM execution_runs r
                  WHERE r.delivery_id = $1 AND r.duplicate_of IS NULL
                  ORDER BY r.started_at, r.workflow_name"
            ),
            &[&delivery_id],
        )
        .map_err(DbError::query(READING))?
        .iter()
        .map(|r| col(r, 0, READING))
        .collect::<Result<Vec<Value>, _>>()?;
    Ok(Some((delivery, runs)))
}
