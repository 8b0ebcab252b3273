//! The SQL of reruns and replays (src/pipeline/rerun.rs): the run to re-run, the recorded delivery
//! it came from, its jobs' statuses, the runs at a commit (for GitHub's re-run requests) and the
//! delivery's outcome after a replay.

use std::collections::BTreeMap;

use postgres::{Client, Row};
use serde_json::Value;

use super::{process::Work, records, rerun::RerunError};
use crate::{
    db::DbError,
    runs::{
        state::JobStatus,
        store::{col, is_uuid},
    },
};

/// A run as a rerun needs it.
#[derive(Debug, Clone)]
pub struct RunRef {
    pub run_id: String,
    pub workflow: String,
    pub status: String,
    pub routing_key: Option<String>,
    pub repo: Option<String>,
    pub sha: Option<String>,
    pub delivery_id: Option<String>,
    pub original_run_id: Option<String>,
    pub trigger_decision: Option<Value>,
}

const RUN_COLUMNS: &str = "run_id::text, workflow_name, status, routing_key, repo_identifier, sha,
    delivery_id, original_run_id::text, trigger_decision";

fn run_ref(r: &Row) -> Result<RunRef, DbError> {
    const READING: &str = "reading a run to re-run";
    Ok(RunRef {
        run_id: col(r, 0, READING)?,
        workflow: col(r, 1, READING)?,
        status: col(r, 2, READING)?,
        routing_key: col(r, 3, READING)?,
        repo: col(r, 4, READING)?,
        sha: col(r, 5, READING)?,
        delivery_id: col(r, 6, READING)?,
        original_run_id: col(r, 7, READING)?,
        trigger_decision: col(r, 8, READING)?,
    })
}

/// The run `run_id`; `None` when unknown (or not a UUID).
pub fn run(client: &mut Client, run_id: &str) -> Result<Option<RunRef>, DbError> {
    if !is_uuid(run_id) {
        return Ok(None);
    }
    let sql = format!("SELECT {RUN_COLUMNS} FROM execution_runs WHERE run_id = $1::text::uuid");
    client
        .query_opt(&sql, &[&run_id])
        .map_err(DbError::query("reading a run to re-run"))?
        .map(|r| run_ref(&r))
        .transpose()
}

/// The latest run of each workflow (or of `workflow` only) that a source started for a
/// repository at commit `sha`.
pub fn runs_at(
    client: &mut Client,
    routing_key: &str,
    repo: &str,
    sha: &str,
    workflow: Option<&str>,
) -> Result<Vec<RunRef>, DbError> {
    let sql = format!(
        "SELECT DISTINCT ON (workflow_name) {RUN_COLUMNS} FROM execution_runs
          WHERE sha = $1 AND routing_key = $2 AND repo_identifier = $3
            AND ($4::text IS NULL OR workflow_name = $4) AND duplicate_of IS NULL
          ORDER BY workflow_name, started_at DESC"
    );
    client
        .query(&sql, &[&sha, &routing_key, &repo, &workflow])
        .map_err(DbError::query("finding the runs at a commit"))?
        .iter()
        .map(run_ref)
        .collect()
}

/// Each job's status in run `run_id`, by name.
pub fn job_statuses(
    client: &mut Client,
    run_id: &str,
) -> Result<BTreeMap<String, JobStatus>, DbError> {
    const READING: &str = "reading the jobs of a run to re-run";
    let rows = client
        .query(
            "SELECT job_name, status FROM execution_jobs WHERE run_id = $1::text::uuid",
            &[&run_id],
        )
        .map_err(DbError::query(READING))?;
    let mut out = BTreeMap::new();
    for r in &rows {
        let status: String = col(r, 1, READING)?;
        // An unknown spelling is not a pass: the job runs again.
        out.insert(
            col(r, 0, READING)?,
            JobStatus::parse(&status).unwrap_or(JobStatus::Failed),
        );
    }
    Ok(out)
}

/// The jobs of a new run recorded as passed at creation (kept by a failed-only rerun).
pub fn kept_jobs(client: &mut Client, run_id: &str) -> Result<Vec<String>, DbError> {
    const READING: &str = "reading a rerun's kept jobs";
    client
        .query(
            "SELECT j.job_name FROM execution_jobs j
              WHERE j.run_id = $1::text::uuid AND j.status = 'success'
                AND NOT EXISTS (SELECT 1 FROM dispatch_queue q WHERE q.id = j.job_id)
              ORDER BY j.job_name",
            &[&run_id],
        )
        .map_err(DbError::query(READING))?
        .iter()
        .map(|r| col(r, 0, READING))
        .collect()
}

/// A recorded delivery.
#[derive(Debug, Clone)]
pub struct Recorded {
    /// The delivery as the pipeline processes it; its body is empty when the payload was not kept.
    pub work: Work,
    pub payload_kept: bool,
    pub status: String,
    pub omitted: Option<String>,
}

impl Recorded {
    /// The delivery as the pipeline processes it; refused when its payload was not kept.
    pub fn work(&self) -> Result<Work, RerunError> {
        if !self.payload_kept {
            return Err(RerunError::NoPayload {
                delivery: self.work.delivery_id.clone(),
                reason: self
                    .omitted
                    .clone()
                    .unwrap_or_else(|| "not kept".to_owned()),
            });
        }
        Ok(self.work.clone())
    }
}

/// The columns [`records::work`] reads, then the status and why the payload was not kept.
const DELIVERY_COLUMNS: &str = "id::text, delivery_id, coalesce(routing_key, ''),
    coalesce(provider, ''), event, action, payload, status, payload_omitted_reason";

fn recorded(r: &Row) -> Result<Recorded, DbError> {
    const READING: &str = "reading a recorded delivery";
    let payload: Option<Vec<u8>> = col(r, 6, READING)?;
    Ok(Recorded {
        payload_kept: payload.is_some(),
        work: records::work(r, payload.unwrap_or_default(), READING)?,
        status: col(r, 7, READING)?,
        omitted: col(r, 8, READING)?,
    })
}

/// The delivery a run was built from (its delivery id, through the same source).
pub fn delivery_of_run(
    client: &mut Client,
    delivery_id: &str,
    routing_key: Option<&str>,
) -> Result<Option<Recorded>, DbError> {
    let sql = format!(
        "SELECT {DELIVERY_COLUMNS} FROM event_log
          WHERE delivery_id = $1 AND routing_key IS NOT DISTINCT FROM $2
          ORDER BY received_at LIMIT 1"
    );
    client
        .query_opt(&sql, &[&delivery_id, &routing_key])
        .map_err(DbError::query("reading the delivery of a run"))?
        .map(|r| recorded(&r))
        .transpose()
}

/// The deliveries named `id` (at most two are read): its event-log id, or its delivery id (one
/// per org).
pub fn delivery(client: &mut Client, id: &str) -> Result<Vec<Recorded>, DbError> {
    let by_log_id = is_uuid(id).then_some(id);
    let sql = format!(
        "SELECT {DELIVERY_COLUMNS} FROM event_log
          WHERE delivery_id = $1 OR id = $2::text::uuid
          ORDER BY received_at LIMIT 2"
    );
    client
        .query(&sql, &[&id, &by_log_id])
        .map_err(DbError::query("reading a recorded delivery"))?
        .iter()
        .map(recorded)
        .collect()
}

/// The delivery's recorded outcome: status, error, decision traces.
pub fn outcome(
    client: &mut Client,
    event_log_id: &str,
) -> Result<(String, Option<String>, Value), DbError> {
    const READING: &str = "reading a delivery's outcome";
    let r = client
        .query_one(
            "SELECT status, error_message, coalesce(decisions, '[]'::jsonb) FROM event_log
              WHERE id = $1::text::uuid",
            &[&event_log_id],
        )
        .map_err(DbError::query(READING))?;
    Ok((
        col(&r, 0, READING)?,
        col(&r, 1, READING)?,
        col(&r, 2, READING)?,
    ))
}
