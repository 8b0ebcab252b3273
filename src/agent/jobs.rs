//! Run, job and step records as agents report (spec-runtime.md §3.8, §3.9): a job's first
//! `running` starts it (and its run), terminal states are immutable (an identical replay is a
//! no-op), steps never go back from a terminal state (the reference's concurrent writes left
//! successful steps `running` and then `failed`), and a run ends only when every job is terminal
//! and no queue row is live (the reference's run flapped to `success` while a job still ran).

use postgres::{Client, GenericClient};
use serde_json::Value;

use super::queue::{self, NewJob};
use crate::{
    db::DbError,
    pipeline::{
        records,
        state::{aggregate_run_status, JobStatus},
    },
};

const TERMINAL_STEP: [&str; 4] = ["success", "failed", "skipped", "cancelled"];

/// Job statuses as stored; an unknown spelling counts as not terminal.
fn parse_statuses(statuses: &[String]) -> Option<Vec<JobStatus>> {
    statuses.iter().map(|s| JobStatus::parse(s)).collect()
}

/// A run with its jobs, created in one transaction together with their queue rows.
pub struct NewRun {
    pub run_id: String,
    pub workflow_name: String,
    pub provider: Option<String>,
    pub routing_key: Option<String>,
    pub repo: Option<String>,
    pub git_ref: Option<String>,
    pub sha: Option<String>,
    pub delivery_id: Option<String>,
    pub trigger_event: Option<String>,
    pub trigger_decision: Option<Value>,
    /// Jobs to queue now (`pending`), and jobs whose needs are not met yet (`waiting`).
    pub jobs: Vec<NewJob>,
    pub waiting: Vec<NewJob>,
    /// `execution_job_needs`: (job name, upstream name, accepted upstream statuses comma-separated).
    pub needs: Vec<(String, String, String)>,
}

/// What [`create_run`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Created {
    New,
    /// The delivery already started a run of this workflow (processed again after a crash):
    /// nothing was written; this is that run's id.
    Existing(String),
}

/// Records the run with its jobs and queue rows, or nothing when its delivery already started a
/// run of the same workflow (one per delivery and workflow, enforced by migration 0004's index).
pub fn create_run(client: &mut Client, run: &NewRun) -> Result<Created, DbError> {
    let mut tx = client
        .transaction()
        .map_err(DbError::query("starting a run"))?;
    let count = (run.jobs.len() + run.waiting.len()) as i32;
    let inserted = tx
        .execute(
            "INSERT INTO execution_runs (run_id, workflow_name, provider, routing_key, repo_identifier, ref, sha,
                 delivery_id, trigger_event, trigger_decision, job_count)
             VALUES ($1::text::uuid, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
             ON CONFLICT (delivery_id, workflow_name) WHERE duplicate_of IS NULL DO NOTHING",
            &[
                &run.run_id, &run.workflow_name, &run.provider, &run.routing_key, &run.repo, &run.git_ref,
                &run.sha, &run.delivery_id, &run.trigger_event, &run.trigger_decision, &count,
            ],
        )
        .map_err(DbError::query("recording a run"))?;
    if inserted == 0 {
        // Only a delivery id can conflict; the conflicting run committed, so a new statement sees it.
        let delivery = run.delivery_id.as_deref().unwrap_or_default();
        return match records::existing_run(&mut tx, delivery, &run.workflow_name)? {
            Some(existing) => Ok(Created::Existing(existing)),
            None => Err(DbError::Query {
                context: "recording a run",
                detail: format!(
                    "delivery {delivery} has a run of {:?} that vanished while it was looked up; retry",
                    run.workflow_name
                ),
                code: None,
            }),
        };
    }
    for job in run.jobs.iter().chain(&run.waiting) {
        let matrix = job.dispatch.pointer("/jobConfig/matrixValues").cloned();
        let labels = serde_json::json!(job.requirements.labels);
        tx.execute(
            "INSERT INTO execution_jobs (job_id, run_id, job_name, runs_on_labels, matrix_values)
             VALUES ($1::text::uuid, $2::text::uuid, $3, $4, $5)",
            &[&job.id, &run.run_id, &job.job_name, &labels, &matrix],
        )
        .map_err(DbError::query("recording a job"))?;
    }
    for job in &run.jobs {
        queue::enqueue(&mut tx, job, "pending")?;
    }
    for job in &run.waiting {
        queue::enqueue(&mut tx, job, "waiting")?;
    }
    for (job, upstream, run_on) in &run.needs {
        tx.execute(
            "INSERT INTO execution_job_needs (run_id, job_name, upstream_name, run_on)
             VALUES ($1::text::uuid, $2, $3, $4)",
            &[&run.run_id, job, upstream, run_on],
        )
        .map_err(DbError::query("recording a job's needs"))?;
    }
    tx.commit().map_err(DbError::query("committing a run"))?;
    Ok(Created::New)
}

/// The job started on `agent_id` (authenticated with `token_id`). Returns whether its run went
/// from `pending` to `running`.
pub fn job_running(
    client: &mut Client,
    job_id: &str,
    agent_id: &str,
    token_id: Option<&str>,
) -> Result<bool, DbError> {
    let mut tx = client
        .transaction()
        .map_err(DbError::query("starting a job update"))?;
    let run: Option<String> = tx
        .query_opt(
            "UPDATE execution_jobs
                SET status = 'running', agent_id = $2, agent_token_id = $3::text::uuid,
                    started_at = COALESCE(started_at, now()), last_heartbeat_at = now()
              WHERE job_id = $1::text::uuid AND status NOT IN ('running', 'success', 'failed', 'cancelled',
                    'skipped', 'timed_out_stale', 'drift_dropped')
             RETURNING run_id::text",
            &[&job_id, &agent_id, &token_id],
        )
        .map_err(DbError::query("marking a job running"))?
        .map(|r| r.get(0));
    let started = match run {
        Some(run_id) => {
            tx.execute(
                "UPDATE execution_runs SET status = 'running', updated_at = now()
                  WHERE run_id = $1::text::uuid AND status = 'pending'",
                &[&run_id],
            )
            .map_err(DbError::query("marking a run running"))?
                > 0
        }
        None => false,
    };
    tx.commit()
        .map_err(DbError::query("committing a job update"))?;
    Ok(started)
}

/// What a terminal job status changed.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Finished {
    /// False for a replay (the job was already terminal).
    pub job_changed: bool,
    pub run_id: Option<String>,
    /// The run's final status when this job was its last one.
    pub run_status: Option<&'static str>,
}

/// Records a job's terminal status, reconciles its unfinished steps, and ends its run when it was
/// the last live job.
pub fn job_terminal(
    client: &mut Client,
    job_id: &str,
    status: &str,
    error: Option<&str>,
    log_bytes: i64,
) -> Result<Finished, DbError> {
    let mut tx = client
        .transaction()
        .map_err(DbError::query("starting a job update"))?;
    let finished = terminal_in(&mut tx, job_id, status, error, log_bytes)?;
    tx.commit()
        .map_err(DbError::query("committing a job update"))?;
    Ok(finished)
}

/// Who reports a job's end: the agent id and the token it authenticated with.
#[derive(Debug, Clone, Copy)]
pub struct Reporter<'a> {
    pub agent_id: &'a str,
    pub token_id: Option<&'a str>,
}

/// An agent's terminal `job.status`, in one transaction: its queue row finished (`queue_status`)
/// and the job recorded, or neither. `None` when the queue row is no longer held by this agent
/// and token (requeued, expired, cancelled or revoked meanwhile): nothing is written then. A row
/// without a token, or an agent without one, binds no token (see `queue::adopt`).
pub fn agent_terminal(
    client: &mut Client,
    job_id: &str,
    by: Reporter<'_>,
    queue_status: &str,
    status: &str,
    error: Option<&str>,
    log_bytes: i64,
) -> Result<Option<Finished>, DbError> {
    let mut tx = client
        .transaction()
        .map_err(DbError::query("starting a job update"))?;
    let held = tx
        .execute(
            "UPDATE dispatch_queue SET status = $2, ack_deadline = NULL, recovery_deadline = NULL, updated_at = now()
              WHERE id = $1::text::uuid AND status IN ('dispatched', 'recovering')
                AND agent_id = $3
                AND (agent_token_id IS NULL OR $4::text::uuid IS NULL OR agent_token_id = $4::text::uuid)",
            &[&job_id, &queue_status, &by.agent_id, &by.token_id],
        )
        .map_err(DbError::query("finishing a queued job"))?;
    if held == 0 {
        return Ok(None);
    }
    let finished = terminal_in(&mut tx, job_id, status, error, log_bytes)?;
    tx.commit()
        .map_err(DbError::query("committing a job update"))?;
    Ok(Some(finished))
}

fn terminal_in(
    tx: &mut postgres::Transaction<'_>,
    job_id: &str,
    status: &str,
    error: Option<&str>,
    log_bytes: i64,
) -> Result<Finished, DbError> {
    // Jobs of one run end one at a time: two jobs finishing together would each see the other
    // still running, and neither would end the run.
    tx.execute(
        "SELECT 1 FROM execution_runs
          WHERE run_id = (SELECT run_id FROM execution_jobs WHERE job_id = $1::text::uuid) FOR UPDATE",
        &[&job_id],
    )
    .map_err(DbError::query("locking a run"))?;
    let run: Option<String> = tx
        .query_opt(
            "UPDATE execution_jobs
                SET status = $2, completed_at = now(), error_message = COALESCE($3, error_message),
                    log_bytes = log_bytes + $4,
                    duration_ms = (extract(epoch FROM now() - COALESCE(started_at, now())) * 1000)::bigint
              WHERE job_id = $1::text::uuid AND status NOT IN ('success', 'failed', 'cancelled', 'skipped',
                    'timed_out_stale', 'drift_dropped')
             RETURNING run_id::text",
            &[&job_id, &status, &error, &log_bytes],
        )
        .map_err(DbError::query("finishing a job"))?
        .map(|r| r.get(0));
    let Some(run_id) = run else {
        return Ok(Finished::default());
    };
    let step_status = match status {
        "success" => "success",
        "cancelled" => "cancelled",
        _ => "failed",
    };
    tx.execute(
        "UPDATE execution_steps SET status = $2, completed_at = COALESCE(completed_at, now())
          WHERE job_id = $1::text::uuid AND status NOT IN ('success', 'failed', 'skipped', 'cancelled')",
        &[&job_id, &step_status],
    )
    .map_err(DbError::query("reconciling a job's steps"))?;
    let run_status = finish_run_if_done(tx, &run_id)?;
    Ok(Finished {
        job_changed: true,
        run_id: Some(run_id),
        run_status,
    })
}

/// Ends the run when all its jobs are terminal and nothing of it is queued; returns its status.
pub fn finish_run_if_done(
    tx: &mut impl GenericClient,
    run_id: &str,
) -> Result<Option<&'static str>, DbError> {
    let rows = tx
        .query(
            "SELECT status FROM execution_jobs WHERE run_id = $1::text::uuid",
            &[&run_id],
        )
        .map_err(DbError::query("reading a run's jobs"))?;
    let statuses: Vec<String> = rows.iter().map(|r| r.get(0)).collect();
    let parsed = parse_statuses(&statuses).unwrap_or_default();
    if parsed.is_empty() || parsed.iter().any(|s| !s.is_terminal()) {
        return Ok(None);
    }
    let live = tx
        .query_one(
            "SELECT count(*) FROM dispatch_queue WHERE run_id = $1::text::uuid
                AND status IN ('waiting', 'pending', 'dispatched', 'recovering')",
            &[&run_id],
        )
        .map_err(DbError::query("reading a run's queue"))?
        .get::<_, i64>(0);
    if live > 0 {
        return Ok(None);
    }
    let status = aggregate_run_status(&parsed).as_str();
    let failure = (status == "failed").then_some("one or more jobs failed");
    let n = tx
        .execute(
            "UPDATE execution_runs
                SET status = $2, completed_at = now(), updated_at = now(), failure_reason = COALESCE(failure_reason, $3),
                    duration_ms = (extract(epoch FROM now() - started_at) * 1000)::bigint
              WHERE run_id = $1::text::uuid AND status NOT IN ('success', 'failed', 'cancelled')",
            &[&run_id, &status, &failure],
        )
        .map_err(DbError::query("finishing a run"))?;
    Ok((n > 0).then_some(status))
}

/// A step's error as text: the agent sends `{message, exitCode}` objects or plain strings (the
/// reference stored `[object Object]`).
pub fn error_text(error: Option<&Value>) -> Option<String> {
    match error? {
        Value::String(s) => Some(s.clone()),
        Value::Object(o) => o
            .get("message")
            .and_then(Value::as_str)
            .map(str::to_owned)
            .or_else(|| Some(Value::Object(o.clone()).to_string())),
        Value::Null => None,
        other => Some(other.to_string()),
    }
}

/// Records an agent's `step.status`; a terminal step never goes back to `running`.
pub fn step_status(
    client: &mut Client,
    job_id: &str,
    run_id: &str,
    frame: &Value,
) -> Result<(), DbError> {
    let index = frame["stepIndex"].as_i64().unwrap_or(0) as i32;
    let name = frame["stepName"].as_str().unwrap_or("").to_owned();
    let state = frame["state"].as_str().unwrap_or("pending").to_owned();
    let data = &frame["data"];
    let error = error_text(data.get("error"));
    let exit_code = data
        .pointer("/error/exitCode")
        .and_then(Value::as_i64)
        .map(|c| c as i32);
    let duration = data.get("durationMs").and_then(Value::as_i64);
    let step_type = frame["step_type"].as_str().map(str::to_owned);
    let secrets = frame
        .get("secretsAccessed")
        .cloned()
        .unwrap_or_else(|| serde_json::json!([]));
    let terminal = TERMINAL_STEP.contains(&state.as_str());
    client
        .execute(
            "INSERT INTO execution_steps (job_id, run_id, step_index, step_name, status, step_type, started_at,
                 completed_at, duration_ms, exit_code, error_message, secrets_accessed)
             VALUES ($1::text::uuid, $2::text::uuid, $3, $4, $5, $6,
                     CASE WHEN $5 = 'running' THEN now() END, CASE WHEN $7 THEN now() END, $8, $9, $10, $11)
             ON CONFLICT (job_id, step_index) DO UPDATE SET
                 status = CASE WHEN execution_steps.status IN ('success', 'failed', 'skipped', 'cancelled')
                               THEN execution_steps.status ELSE EXCLUDED.status END,
                 step_name = EXCLUDED.step_name,
                 step_type = COALESCE(EXCLUDED.step_type, execution_steps.step_type),
                 started_at = COALESCE(execution_steps.started_at, EXCLUDED.started_at),
                 completed_at = COALESCE(execution_steps.completed_at, EXCLUDED.completed_at),
                 duration_ms = COALESCE(EXCLUDED.duration_ms, execution_steps.duration_ms),
                 exit_code = COALESCE(EXCLUDED.exit_code, execution_steps.exit_code),
                 error_message = COALESCE(EXCLUDED.error_message, execution_steps.error_message),
                 secrets_accessed = EXCLUDED.secrets_accessed",
            &[&job_id, &run_id, &index, &name, &state, &step_type, &terminal, &duration, &exit_code, &error, &secrets],
        )
        .map_err(DbError::query("recording a step"))?;
    Ok(())
}

pub fn heartbeat(client: &mut Client, job_id: &str) -> Result<(), DbError> {
    client
        .execute(
            "UPDATE execution_jobs SET last_heartbeat_at = now() WHERE job_id = $1::text::uuid AND status = 'running'",
            &[&job_id],
        )
        .map_err(DbError::query("recording a job heartbeat"))?;
    Ok(())
}

/// Running jobs silent for longer than `secs`: `(job id, run id)`.
pub fn stale_jobs(client: &mut Client, secs: i64) -> Result<Vec<(String, String)>, DbError> {
    let rows = client
        .query(
            "SELECT job_id::text, run_id::text FROM execution_jobs
              WHERE status = 'running' AND last_heartbeat_at < now() - make_interval(secs => $1::bigint)",
            &[&secs],
        )
        .map_err(DbError::query("finding stale jobs"))?;
    Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_aggregation() {
        let aggregate = |v: &[&str]| {
            let statuses: Vec<String> = v.iter().map(|x| x.to_string()).collect();
            aggregate_run_status(&parse_statuses(&statuses).unwrap()).as_str()
        };
        assert_eq!(aggregate(&["success", "skipped"]), "success");
        assert_eq!(aggregate(&["success", "cancelled"]), "cancelled");
        assert_eq!(aggregate(&["cancelled", "failed"]), "failed");
        assert_eq!(aggregate(&["timed_out_stale"]), "failed");
        assert_eq!(aggregate(&["drift_dropped", "success"]), "failed");
    }

    #[test]
    fn step_errors_are_text() {
        let obj = serde_json::json!({"message": "exit code: 3", "exitCode": 3});
        assert_eq!(error_text(Some(&obj)).as_deref(), Some("exit code: 3"));
        assert_eq!(
            error_text(Some(&serde_json::json!("boom"))).as_deref(),
            Some("boom")
        );
        assert_eq!(error_text(Some(&Value::Null)), None);
        assert_eq!(error_text(None), None);
        let odd = serde_json::json!({"code": 1});
        assert_eq!(error_text(Some(&odd)).as_deref(), Some(r#"{"code":1}"#));
    }
}
