//! The pipeline's database side: runs created from plans (jobs whose needs are met are queued
//! `pending`, the others `waiting`), runs recorded as failed before any job (corrupt lock file,
//! init failures), the `needs` DAG advanced when a job ends (downstream jobs queued or skipped,
//! cascading), and the delivery's event-log entry with its decision traces.

use std::collections::BTreeMap;

use postgres::{Client, GenericClient};
use serde_json::Value;

use super::{
    lease::{Unfinished, LEASE_SECS, MAX_PROCESSING_ATTEMPTS, RECEIVED_GRACE_SECS},
    plan::{readiness, NeedsEdge},
    state::JobStatus,
};
use crate::db::DbError;

/// `run_on` statuses as stored in `execution_job_needs.run_on`.
pub fn run_on_text(run_on: &[JobStatus]) -> String {
    run_on
        .iter()
        .map(|s| s.as_str())
        .collect::<Vec<_>>()
        .join(",")
}

/// The run `delivery_id` already started for `workflow` (migration 0004 allows one).
pub fn existing_run(
    client: &mut impl GenericClient,
    delivery_id: &str,
    workflow: &str,
) -> Result<Option<String>, DbError> {
    let row = client
        .query_opt(
            "SELECT run_id::text FROM execution_runs
              WHERE delivery_id = $1 AND workflow_name = $2 AND duplicate_of IS NULL",
            &[&delivery_id, &workflow],
        )
        .map_err(DbError::query("looking for a delivery's run"))?;
    Ok(row.map(|r| r.get(0)))
}

/// A run that failed before any job could start; returns its id (the existing one when this
/// delivery already recorded it: processed again after a crash).
#[allow(clippy::too_many_arguments)]
pub fn failed_run(
    client: &mut Client,
    workflow: &str,
    reason: &str,
    scope: &str,
    delivery_id: &str,
    routing_key: Option<&str>,
    repo: Option<&str>,
    sha: Option<&str>,
) -> Result<String, DbError> {
    let run_id = crate::crypto::random_uuid();
    let init = serde_json::json!({"scope": scope, "category": "init", "message": reason});
    let inserted = client
        .execute(
            "INSERT INTO execution_runs (run_id, workflow_name, status, routing_key, repo_identifier, sha, delivery_id,
                 failure_reason, init_failure, completed_at, duration_ms)
             VALUES ($1::text::uuid, $2, 'failed', $3, $4, $5, $6, $7, $8, now(), 0)
             ON CONFLICT (delivery_id, workflow_name) WHERE duplicate_of IS NULL DO NOTHING",
            &[&run_id, &workflow, &routing_key, &repo, &sha, &delivery_id, &reason, &init],
        )
        .map_err(DbError::query("recording a failed run"))?;
    if inserted > 0 {
        return Ok(run_id);
    }
    existing_run(client, delivery_id, workflow)?.ok_or_else(|| DbError::Query {
        context: "recording a failed run",
        detail: format!(
            "delivery {delivery_id} has a run of {workflow:?} that vanished while it was looked up; retry"
        ),
        code: None,
    })
}

/// What advancing a run's DAG did: how many jobs became dispatchable, and which job ids can
/// never run (to be ended as `skipped` by the caller).
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Advanced {
    pub queued: u64,
    pub skipped: Vec<String>,
}

/// Re-evaluates a run's `needs` after one of its jobs ended.
pub fn advance_run(client: &mut Client, run_id: &str) -> Result<Advanced, DbError> {
    let edges: Vec<NeedsEdge> = client
        .query(
            "SELECT job_name, upstream_name, run_on FROM execution_job_needs WHERE run_id = $1::text::uuid",
            &[&run_id],
        )
        .map_err(DbError::query("reading a run's needs"))?
        .iter()
        .map(|r| NeedsEdge {
            job: r.get(0),
            upstream: r.get(1),
            run_on: r
                .get::<_, String>(2)
                .split(',')
                .filter_map(JobStatus::parse)
                .collect(),
        })
        .collect();
    if edges.is_empty() {
        return Ok(Advanced::default());
    }
    let statuses: BTreeMap<String, JobStatus> = client
        .query(
            "SELECT job_name, status FROM execution_jobs WHERE run_id = $1::text::uuid",
            &[&run_id],
        )
        .map_err(DbError::query("reading a run's jobs"))?
        .iter()
        .filter_map(|r| {
            Some((
                r.get::<_, String>(0),
                JobStatus::parse(&r.get::<_, String>(1))?,
            ))
        })
        .collect();
    let verdict = readiness(&edges, &statuses);
    let queued = client
        .execute(
            "UPDATE dispatch_queue SET status = 'pending', updated_at = now()
              WHERE run_id = $1::text::uuid AND job_name = ANY($2) AND status = 'waiting'",
            &[&run_id, &verdict.ready],
        )
        .map_err(DbError::query("queueing downstream jobs"))?;
    let skipped = client
        .query(
            "UPDATE dispatch_queue SET status = 'skipped', updated_at = now()
              WHERE run_id = $1::text::uuid AND job_name = ANY($2) AND status = 'waiting'
             RETURNING id::text",
            &[&run_id, &verdict.skipped],
        )
        .map_err(DbError::query("skipping downstream jobs"))?
        .iter()
        .map(|r| r.get(0))
        .collect();
    Ok(Advanced { queued, skipped })
}

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
                    error_message = $6
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
    Ok(row.map(|r| r.get(0)))
}

/// GitHub and local deliveries of the last day that may need the sweep: `received` for
/// [`RECEIVED_GRACE_SECS`], or `processing` under a claim older than [`LEASE_SECS`]; oldest
/// first. The sweep decides with [`super::lease::verdict`]; the work carries the stored payload
/// (empty when none was kept).
pub fn unfinished(
    client: &mut Client,
    limit: i64,
) -> Result<Vec<(Unfinished, super::process::Work)>, DbError> {
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
    Ok(rows
        .iter()
        .map(|r| {
            let payload: Option<Vec<u8>> = r.get(6);
            let found = Unfinished {
                status: r.get(7),
                received_age_secs: r.get(8),
                claimed_age_secs: r.get(9),
                attempts: r.get(10),
                has_payload: payload.is_some(),
            };
            let work = super::process::Work {
                event_log_id: r.get(0),
                delivery_id: r.get(1),
                routing_key: r.get(2),
                provider: r.get(3),
                event: r.get(4),
                action: r.get(5),
                body: payload.unwrap_or_default(),
            };
            (found, work)
        })
        .collect())
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
            "UPDATE event_log SET status = 'failed', error_message = $4
              WHERE id = $1::text::uuid AND status = $2 AND processing_attempts = $3
                AND (status = 'received'
                     OR coalesce(claimed_at, received_at) <= now() - make_interval(secs => $5::bigint))",
            &[&event_log_id, &seen.status, &seen.attempts, &reason, &LEASE_SECS],
        )
        .map_err(DbError::query("failing a delivery"))?;
    Ok(n > 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_on_round_trip() {
        let text = run_on_text(&[JobStatus::Success, JobStatus::Skipped]);
        assert_eq!(text, "success,skipped");
        let back: Vec<JobStatus> = text.split(',').filter_map(JobStatus::parse).collect();
        assert_eq!(back, [JobStatus::Success, JobStatus::Skipped]);
    }
}
