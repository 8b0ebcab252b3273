//! The job queue in PostgreSQL (`dispatch_queue`, docs/architecture.md, "Database tables") with
//! an atomic claim: the chosen row is selected `FOR UPDATE SKIP LOCKED` and marked `dispatched`
//! in the same statement, so a job is never handed to two agents, even by several orchestrators
//! sharing the database. (The reference selects outside a transaction and updates in a second
//! statement; with 8 agents and 200 jobs it dispatched 55–67 of them twice.)

use std::sync::LazyLock;

use postgres::{Client, GenericClient, Row};
use serde_json::{json, Value};

use super::{col, jobs::Outcome, runs};
use crate::{
    db::{DbError, PooledClient},
    runs::lifecycle::{apply, Event, Run},
    runs::requirements::{patterns_from_json, patterns_to_json, Compiled, Requirements},
};

/// After this many failed dispatches a job fails for good.
pub const MAX_ATTEMPTS: i32 = 5;
/// How many pending rows one claim looks at (regex requirements are checked in Rust).
const CLAIM_WINDOW: i64 = 32;

/// A claim: the oldest pending, dispatchable row among those `filter` admits is locked (skipping
/// rows another claim holds), marked `dispatched` to the agent in parameter `agent` (token id in
/// `token`) with an ack deadline of `ack_ms` milliseconds, and returned as [`claimed`] reads it,
/// the org-wide-secrets flag included.
fn claim_sql(filter: &str, agent: &str, token: &str, ack_ms: &str) -> String {
    format!(
        "UPDATE dispatch_queue
            SET status = 'dispatched', agent_id = {agent}, agent_token_id = {token}::text::uuid,
                updated_at = now(), ack_deadline = now() + make_interval(secs => {ack_ms}::bigint / 1000.0)
           FROM (SELECT id AS claimed, updated_at AS pending_since FROM dispatch_queue
                  WHERE status = 'pending' AND (expires_at IS NULL OR expires_at > now())
                    AND (retry_after IS NULL OR retry_after <= now())
                    AND {filter}
                  ORDER BY created_at, id LIMIT 1
                  FOR UPDATE SKIP LOCKED) c
          WHERE id = c.claimed
         RETURNING id::text, run_id::text, job_name, dispatch,
                   EXTRACT(EPOCH FROM now() - c.pending_since)::float8,
                   {}",
        crate::secrets::dispatch::org_has_org_wide_sql("dispatch_queue.routing_key")
    )
}

/// The fast claim: jobs with exact labels only, in one statement (the row lock is held through
/// the update inside the statement).
static CLAIM_FAST: LazyLock<String> = LazyLock::new(|| {
    claim_sql(
        "$1::jsonb @> runs_on_labels AND runs_on_labels @> $2::jsonb
         AND runs_on_patterns = '[]'::jsonb AND exclude_patterns = '[]'::jsonb
         AND NOT (exclude_labels ?| $5::text[])",
        "$3",
        "$6",
        "$4",
    )
});

/// The claim of the first still-pending job among eligible ids (regex requirements).
static CLAIM_ELIGIBLE: LazyLock<String> =
    LazyLock::new(|| claim_sql("id = ANY($1::text[]::uuid[])", "$2", "$4", "$3"));

/// The pending jobs with regex requirements an agent's labels may satisfy, oldest first.
const CANDIDATES: &str =
    "SELECT id::text, runs_on_labels, runs_on_patterns, exclude_labels, exclude_patterns
               FROM dispatch_queue
              WHERE status = 'pending' AND (expires_at IS NULL OR expires_at > now())
                AND (retry_after IS NULL OR retry_after <= now())
                AND $1::jsonb @> runs_on_labels
                AND runs_on_labels @> $2::jsonb
                AND (runs_on_patterns <> '[]'::jsonb OR exclude_patterns <> '[]'::jsonb)
              ORDER BY created_at, id
              LIMIT $3";

/// A job to queue (what the pipeline produces).
#[derive(Debug, Clone)]
pub struct NewJob {
    pub id: String,
    pub run_id: String,
    pub workflow_name: String,
    pub job_name: String,
    /// The `job.dispatch` frame without `type`, `messageId` and `timestamp`.
    pub dispatch: Value,
    pub requirements: Requirements,
    pub routing_key: Option<String>,
}

/// A claimed job, ready to send.
#[derive(Debug, Clone)]
pub struct Claimed {
    pub id: String,
    pub run_id: String,
    pub job_name: String,
    pub dispatch: Value,
    /// Seconds since the job last became dispatchable (its row's `updated_at` before the claim).
    pub pending_secs: f64,
    /// Whether the job's org had org-wide secrets when it was claimed (read by the claim itself,
    /// so a job that declares no environment costs no secrets query when this is false).
    pub org_secrets: bool,
}

/// Queues a job as `pending` (dispatchable) or `waiting` (for its needs).
pub fn enqueue(client: &mut impl GenericClient, job: &NewJob, status: &str) -> Result<(), DbError> {
    let r = &job.requirements;
    client
        .execute(
            // clock_timestamp(), not now(): jobs queued in one transaction keep their order.
            "INSERT INTO dispatch_queue (id, run_id, workflow_name, job_name, dispatch, runs_on_labels,
                 runs_on_patterns, exclude_labels, exclude_patterns, routing_key, status, created_at)
             VALUES ($1::text::uuid, $2::text::uuid, $3, $4, $5, $6, $7, $8, $9, $10, $11, clock_timestamp())",
            &[
                &job.id,
                &job.run_id,
                &job.workflow_name,
                &job.job_name,
                &job.dispatch,
                &json!(r.labels),
                &patterns_to_json(&r.patterns),
                &json!(r.exclude_labels),
                &patterns_to_json(&r.exclude_patterns),
                &job.routing_key,
                &status,
            ],
        )
        .map_err(DbError::query("queueing a job"))?;
    Ok(())
}

fn strings(v: Value) -> Vec<String> {
    serde_json::from_value(v).unwrap_or_default()
}

const CLAIMING: &str = "claiming a queued job";

fn claimed(row: &Row) -> Result<Claimed, DbError> {
    Ok(Claimed {
        id: col(row, 0, CLAIMING)?,
        run_id: col(row, 1, CLAIMING)?,
        job_name: col(row, 2, CLAIMING)?,
        dispatch: col(row, 3, CLAIMING)?,
        pending_secs: col(row, 4, CLAIMING)?,
        org_secrets: col(row, 5, CLAIMING)?,
    })
}

/// Claims the oldest pending job this agent may run: `dispatched` to it, with an ack deadline.
/// Returns it with the change to publish (`Event::Claimed`, decided from the claimed row alone:
/// the run's row is not locked).
///
/// Not safe to repeat (a claim whose commit was lost with the connection would claim a second
/// job): call it once (`super::once`), never through `Pool::with_retry`.
pub fn claim(
    client: &mut PooledClient,
    agent_id: &str,
    token_id: Option<&str>,
    labels: &[String],
    taint: &[String],
    ack_timeout_ms: i64,
) -> Result<Option<(Claimed, Outcome)>, DbError> {
    let Some(job) = claim_row(client, agent_id, token_id, labels, taint, ack_timeout_ms)? else {
        return Ok(None);
    };
    let run = Run::claimed(&job.job_name, &job.id);
    let event = Event::Claimed {
        job: job.job_name.clone(),
        agent: agent_id.to_owned(),
    };
    let outcome = runs::outcome(&job.run_id, &run, apply(&run, &event), None);
    Ok(Some((job, outcome)))
}

/// The claim itself: the row marked `dispatched`, or none.
fn claim_row(
    client: &mut PooledClient,
    agent_id: &str,
    token_id: Option<&str>,
    labels: &[String],
    taint: &[String],
    ack_timeout_ms: i64,
) -> Result<Option<Claimed>, DbError> {
    // Fast path, one statement: jobs with exact labels only (the row lock is held through the
    // update inside the statement). Jobs with regex requirements take the path below.
    let fast = client
        .prepared(CLAIM_FAST.as_str())
        .map_err(DbError::query(CLAIMING))?;
    let fast = client
        .query_opt(
            &fast,
            &[
                &json!(labels),
                &json!(taint),
                &agent_id,
                &ack_timeout_ms,
                &labels,
                &token_id,
            ],
        )
        .map_err(DbError::query(CLAIMING))?;
    if let Some(row) = fast {
        return claimed(&row).map(Some);
    }
    // Regex requirements are checked in Rust, before any row is locked: the candidates are read
    // without locks (a job's requirements never change), each distinct pattern compiled once,
    // and only the eligible ids go to the locking claim, which checks the status again.
    let candidates = client
        .prepared(CANDIDATES)
        .map_err(DbError::query("selecting queued jobs"))?;
    let rows = client
        .query(&candidates, &[&json!(labels), &json!(taint), &CLAIM_WINDOW])
        .map_err(DbError::query("selecting queued jobs"))?;
    const READING: &str = "reading a queued job's requirements";
    let mut compiled = Compiled::default();
    let mut eligible = Vec::new();
    for r in &rows {
        let req = Requirements {
            labels: strings(col(r, 1, READING)?),
            patterns: patterns_from_json(&col::<Value>(r, 2, READING)?),
            exclude_labels: strings(col(r, 3, READING)?),
            exclude_patterns: patterns_from_json(&col::<Value>(r, 4, READING)?),
        };
        if compiled.eligible(labels, taint, &req) {
            eligible.push(col::<String>(r, 0, READING)?);
        }
    }
    if eligible.is_empty() {
        return Ok(None);
    }
    let eligible_claim = client
        .prepared(CLAIM_ELIGIBLE.as_str())
        .map_err(DbError::query(CLAIMING))?;
    let row = client
        .query_opt(
            &eligible_claim,
            &[&eligible, &agent_id, &ack_timeout_ms, &token_id],
        )
        .map_err(DbError::query(CLAIMING))?;
    row.as_ref().map(claimed).transpose()
}

/// The agent acknowledged (or started) the job: no ack deadline any more.
pub fn acked(client: &mut Client, job_id: &str) -> Result<(), DbError> {
    client
        .execute(
            "UPDATE dispatch_queue SET ack_deadline = NULL, updated_at = now()
              WHERE id = $1::text::uuid AND status = 'dispatched'",
            &[&job_id],
        )
        .map_err(DbError::query("recording a job ack"))?;
    Ok(())
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Requeued {
    Pending,
    /// The last attempt: the job (of this run) failed for good.
    Failed {
        run_id: String,
    },
    /// Not dispatched to that agent any more (already requeued or finished).
    Gone,
}

/// Puts a job dispatched to `agent_id` back in the queue, or fails it after [`MAX_ATTEMPTS`].
/// With `backoff_secs > 0` it is not claimed again for `backoff_secs × 2^(attempts so far)`:
/// for failures that the next claim would hit again at once (its credentials could not be
/// minted), where an immediate retry, woken by the queue's own NOTIFY, would use up every
/// attempt within milliseconds.
///
/// Not safe to repeat (a retry after a lost commit would answer `Gone` for a job it failed):
/// call it once (`super::once`), never through `Pool::with_retry`.
pub fn requeue(
    client: &mut Client,
    job_id: &str,
    agent_id: &str,
    why: &str,
    backoff_secs: i64,
) -> Result<Requeued, DbError> {
    let row = client
        .query_opt(
            "UPDATE dispatch_queue
                SET status = CASE WHEN dispatch_attempts + 1 >= $3 THEN 'failed' ELSE 'pending' END,
                    dispatch_attempts = dispatch_attempts + 1, agent_id = NULL, agent_token_id = NULL,
                    ack_deadline = NULL,
                    last_error = $4, updated_at = now(),
                    retry_after = CASE WHEN $5::bigint > 0
                                       THEN now() + make_interval(secs => $5::bigint * power(2, dispatch_attempts))
                                  END
              WHERE id = $1::text::uuid AND status IN ('dispatched', 'recovering') AND agent_id = $2
             RETURNING status, run_id::text",
            &[&job_id, &agent_id, &MAX_ATTEMPTS, &why, &backoff_secs],
        )
        .map_err(DbError::query("requeueing a job"))?;
    let Some(row) = row else {
        return Ok(Requeued::Gone);
    };
    Ok(match col::<String>(&row, 0, "requeueing a job")?.as_str() {
        "failed" => Requeued::Failed {
            run_id: col(&row, 1, "requeueing a job")?,
        },
        _ => Requeued::Pending,
    })
}

/// Marks a queue row finished (`completed`, `failed` or `cancelled`).
pub fn finish(client: &mut Client, job_id: &str, status: &str) -> Result<(), DbError> {
    client
        .execute(
            "UPDATE dispatch_queue SET status = $2, ack_deadline = NULL, recovery_deadline = NULL, updated_at = now()
              WHERE id = $1::text::uuid AND status NOT IN ('completed', 'failed', 'cancelled', 'expired')",
            &[&job_id, &status],
        )
        .map_err(DbError::query("finishing a queued job"))?;
    Ok(())
}

/// An agent went away with jobs in flight: they wait `window_secs` for it (the same id with the
/// same token) to come back.
pub fn start_recovery(
    client: &mut Client,
    agent_id: &str,
    token_id: Option<&str>,
    window_secs: i64,
) -> Result<u64, DbError> {
    client
        .execute(
            "UPDATE dispatch_queue
                SET status = 'recovering', ack_deadline = NULL, updated_at = now(),
                    recovery_deadline = now() + make_interval(secs => $2::bigint)
              WHERE agent_id = $1 AND status = 'dispatched'
                AND (agent_token_id IS NULL OR $3::text::uuid IS NULL OR agent_token_id = $3::text::uuid)",
            &[&agent_id, &window_secs, &token_id],
        )
        .map_err(DbError::query("starting job recovery"))
}

/// On boot: every job dispatched by a previous process waits for its agent to re-register.
pub fn recover_after_restart(client: &mut Client, window_secs: i64) -> Result<u64, DbError> {
    client
        .execute(
            "UPDATE dispatch_queue
                SET status = 'recovering', ack_deadline = NULL, updated_at = now(),
                    recovery_deadline = GREATEST(COALESCE(recovery_deadline, now()), now())
                                        + make_interval(secs => $1::bigint)
              WHERE status IN ('dispatched', 'recovering')",
            &[&window_secs],
        )
        .map_err(DbError::query("recovering dispatched jobs after a restart"))
}

/// A job a re-registering agent takes back.
#[derive(Debug, Clone)]
pub struct Adopted {
    pub run_id: String,
    pub job_name: String,
    pub dispatch: Value,
}

/// A re-registering agent reports a job it still runs: it is its again, when the job was waiting
/// for (or dispatched to) this agent id **with this token** — after an orchestrator restart too,
/// since the token id is on the row.
///
/// A row without a token binds none: it was dispatched without auth, or before the token was
/// recorded (migrations/0005_agent_identity.sql). Refusing those would close every agent that
/// held a job across the upgrade with 4010, which it never retries; the first agent of that id
/// to take such a row back binds it to its token. An agent without a token (auth off) is
/// likewise not held to one.
pub fn adopt(
    client: &mut Client,
    job_id: &str,
    agent_id: &str,
    token_id: Option<&str>,
) -> Result<Option<Adopted>, DbError> {
    let row = client
        .query_opt(
            "UPDATE dispatch_queue
                SET status = 'dispatched', recovery_deadline = NULL, ack_deadline = NULL,
                    agent_token_id = COALESCE(agent_token_id, $3::text::uuid), updated_at = now()
              WHERE id = $1::text::uuid AND status IN ('recovering', 'dispatched') AND agent_id = $2
                AND (agent_token_id IS NULL OR $3::text::uuid IS NULL OR agent_token_id = $3::text::uuid)
             RETURNING run_id::text, job_name, dispatch",
            &[&job_id, &agent_id, &token_id],
        )
        .map_err(DbError::query("re-adopting a job"))?;
    const ADOPTING: &str = "re-adopting a job";
    row.map(|r| {
        Ok(Adopted {
            run_id: col(&r, 0, ADOPTING)?,
            job_name: col(&r, 1, ADOPTING)?,
            dispatch: col(&r, 2, ADOPTING)?,
        })
    })
    .transpose()
}

/// A token holding live jobs (dispatched or recovering) under an agent id.
#[derive(Debug, Clone)]
pub struct Holder {
    /// `None` for jobs dispatched without auth (`KICI_AGENT_AUTH=none`).
    pub token_id: Option<String>,
    /// `None` when the token row was deleted.
    pub token_prefix: Option<String>,
    pub jobs: i64,
}

/// Which tokens hold live jobs under `agent_id`.
pub fn holders_of(client: &mut Client, agent_id: &str) -> Result<Vec<Holder>, DbError> {
    const HOLDERS: &str = "reading which token holds an agent id's jobs";
    let rows = client
        .query(
            "SELECT q.agent_token_id::text, t.token_prefix, count(*)
               FROM dispatch_queue q LEFT JOIN agent_tokens t ON t.id = q.agent_token_id
              WHERE q.agent_id = $1 AND q.status IN ('dispatched', 'recovering')
              GROUP BY 1, 2",
            &[&agent_id],
        )
        .map_err(DbError::query(HOLDERS))?;
    rows.iter()
        .map(|r| {
            Ok(Holder {
                token_id: col(r, 0, HOLDERS)?,
                token_prefix: col(r, 1, HOLDERS)?,
                jobs: col(r, 2, HOLDERS)?,
            })
        })
        .collect()
}

/// Jobs waiting for an agent of one of these tokens (`recovering`): `(job id, agent id)`.
pub fn recovering_of_tokens(
    client: &mut Client,
    token_ids: &[String],
) -> Result<Vec<(String, String)>, DbError> {
    const RECOVERING: &str = "reading the recovering jobs of revoked tokens";
    let rows = client
        .query(
            "SELECT id::text, agent_id FROM dispatch_queue
              WHERE status = 'recovering' AND agent_token_id = ANY($1::text[]::uuid[])
                AND agent_id IS NOT NULL",
            &[&token_ids],
        )
        .map_err(DbError::query(RECOVERING))?;
    pairs(&rows, RECOVERING)
}

/// Jobs whose agent did not come back in time: failed, with their run ids.
pub fn expire_recoveries(client: &mut Client) -> Result<Vec<(String, String)>, DbError> {
    let rows = client
        .query(
            "UPDATE dispatch_queue SET status = 'failed', updated_at = now(),
                    last_error = 'agent disconnected and did not reconnect within the recovery window'
              WHERE status = 'recovering' AND recovery_deadline < now()
             RETURNING id::text, run_id::text",
            &[],
        )
        .map_err(DbError::query("expiring job recoveries"))?;
    pairs(&rows, "expiring job recoveries")
}

/// Live (not finished) queue rows of a run: `(job id, status, agent id)`.
pub fn live_of_run(
    client: &mut Client,
    run_id: &str,
) -> Result<Vec<(String, String, Option<String>)>, DbError> {
    const LIVE: &str = "reading a run's queued jobs";
    let rows = client
        .query(
            "SELECT id::text, status, agent_id FROM dispatch_queue
              WHERE run_id = $1::text::uuid AND status IN ('waiting', 'pending', 'dispatched', 'recovering')",
            &[&run_id],
        )
        .map_err(DbError::query(LIVE))?;
    rows.iter()
        .map(|r| Ok((col(r, 0, LIVE)?, col(r, 1, LIVE)?, col(r, 2, LIVE)?)))
        .collect()
}

pub fn last_error(client: &mut Client, job_id: &str) -> Result<Option<String>, DbError> {
    let row = client
        .query_opt(
            "SELECT last_error FROM dispatch_queue WHERE id = $1::text::uuid",
            &[&job_id],
        )
        .map_err(DbError::query("reading a job's last error"))?;
    match row {
        Some(r) => col(&r, 0, "reading a job's last error"),
        None => Ok(None),
    }
}

/// Two text columns of every row.
pub(crate) fn pairs(rows: &[Row], context: &'static str) -> Result<Vec<(String, String)>, DbError> {
    rows.iter()
        .map(|r| Ok((col(r, 0, context)?, col(r, 1, context)?)))
        .collect()
}
