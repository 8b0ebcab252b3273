//! Runs read back as JSON, rendered by PostgreSQL: the fields of the Platform's status frames
//! (`execution.status`, `job.status.forward`, the `state.replay` snapshot; the frames themselves
//! are built by src/platform/status.rs) and the admin API's run list and run detail
//! (src/http/admin/runs.rs).

use postgres::Client;
use serde_json::Value;

use super::{col, is_uuid};
use crate::db::{DbError, ISO};

/// Milliseconds since the epoch of a timestamptz column, as SQL.
macro_rules! ms {
    ($col:expr) => {
        concat!("(extract(epoch FROM ", $col, ") * 1000)::bigint")
    };
}

/// One JSON object per run: active runs and those of the last 24 hours, newest first, at most
/// 500, each with its jobs (`RunSnapshot` / `JobSnapshot`).
pub fn recent_runs(client: &mut Client) -> Result<Vec<Value>, DbError> {
    const READING: &str = "reading recent runs for state.replay";
    let sql =
        concat!(
        "SELECT jsonb_strip_nulls(jsonb_build_object(",
        " 'runId', r.run_id::text, 'workflowName', r.workflow_name, 'status', r.status,",
        " 'jobCount', r.job_count, 'startedAt', ", ms!("r.started_at"), ",",
        " 'routingKey', r.routing_key, 'repoIdentifier', r.repo_identifier, 'sha', r.sha,",
        " 'ref', r.ref, 'triggerEvent', r.trigger_event, 'commitMessage', r.commit_message,",
        " 'completedAt', ", ms!("r.completed_at"), ", 'durationMs', r.duration_ms,",
        " 'parentRunId', r.parent_run_id::text, 'originalRunId', r.original_run_id::text,",
        " 'triggeredBy', r.triggered_by, 'failureReason', r.failure_reason,",
        " 'jobs', COALESCE((SELECT jsonb_agg(jsonb_strip_nulls(jsonb_build_object(",
        "   'jobId', j.job_id::text, 'jobName', j.job_name, 'status', j.status,",
        "   'startedAt', ", ms!("j.started_at"), ", 'completedAt', ", ms!("j.completed_at"), ",",
        "   'durationMs', j.duration_ms, 'errorMessage', j.error_message, 'agentId', j.agent_id,",
        "   'runsOnLabels', j.runs_on_labels, 'environments', j.environments))",
        "   ORDER BY j.created_at, j.job_name)",
        "  FROM execution_jobs j WHERE j.run_id = r.run_id), '[]'::jsonb)))",
        " FROM execution_runs r",
        " WHERE r.status IN ('pending', 'running', 'cancelling', 'held')",
        "    OR r.started_at > now() - interval '24 hours'",
        " ORDER BY r.started_at DESC LIMIT 500"
    );
    let rows = client.query(sql, &[]).map_err(DbError::query(READING))?;
    rows.iter().map(|r| col(r, 0, READING)).collect()
}

/// One run's row as the Platform's `execution.status` fields.
pub fn run_status_fields(client: &mut Client, run_id: &str) -> Result<Option<Value>, DbError> {
    let sql = concat!(
        "SELECT jsonb_strip_nulls(jsonb_build_object(",
        " 'runId', run_id::text, 'workflowName', workflow_name, 'status', status,",
        " 'startedAt', ",
        ms!("started_at"),
        ", 'repoIdentifier', repo_identifier,",
        " 'repoProvider', provider, 'sha', sha, 'ref', ref, 'triggerEvent', trigger_event,",
        " 'commitMessage', commit_message, 'jobCount', job_count,",
        " 'completedAt', ",
        ms!("completed_at"),
        ", 'durationMs', duration_ms,",
        " 'parentRunId', parent_run_id::text, 'originalRunId', original_run_id::text,",
        " 'triggeredBy', triggered_by, 'failureReason', failure_reason,",
        " 'logBytes', log_bytes, 'initFailure', init_failure))",
        " FROM execution_runs WHERE run_id = $1::text::uuid"
    );
    let row = client
        .query_opt(sql, &[&run_id])
        .map_err(DbError::query("reading a run for execution.status"))?;
    row.map(|r| col(&r, 0, "reading a run for execution.status"))
        .transpose()
}

/// One job's row as the Platform's `job.status.forward` fields.
pub fn job_status_fields(client: &mut Client, job_id: &str) -> Result<Option<Value>, DbError> {
    let sql = concat!(
        "SELECT jsonb_strip_nulls(jsonb_build_object(",
        " 'runId', run_id::text, 'jobId', job_id::text, 'jobName', job_name, 'status', status,",
        " 'matrixValues', matrix_values, 'startedAt', ",
        ms!("started_at"),
        ",",
        " 'completedAt', ",
        ms!("completed_at"),
        ", 'durationMs', duration_ms,",
        " 'errorMessage', error_message, 'agentId', agent_id, 'runsOnLabels', runs_on_labels,",
        " 'environments', environments, 'logBytes', log_bytes))",
        " FROM execution_jobs WHERE job_id = $1::text::uuid"
    );
    let row = client
        .query_opt(sql, &[&job_id])
        .map_err(DbError::query("reading a job for job.status.forward"))?;
    row.map(|r| col(&r, 0, "reading a job for job.status.forward"))
        .transpose()
}

fn ts(col: &str) -> String {
    format!("to_char({col} AT TIME ZONE 'UTC', {ISO})")
}

/// The run fields both routes show; `r` is `execution_runs`.
fn run_fields() -> String {
    format!(
        "'runId', r.run_id, 'workflowName', r.workflow_name, 'status', r.status,
         'provider', r.provider, 'routingKey', r.routing_key, 'repo', r.repo_identifier,
         'ref', r.ref, 'sha', r.sha, 'event', r.trigger_event, 'deliveryId', r.delivery_id,
         'failureReason', r.failure_reason, 'jobCount', r.job_count,
         'startedAt', {}, 'completedAt', {},
         'durationMs', COALESCE(r.duration_ms,
             (extract(epoch FROM r.completed_at - r.started_at) * 1000)::bigint),
         'jobs', COALESCE((SELECT jsonb_object_agg(s.status, s.n) FROM
             (SELECT j.status, count(*) AS n FROM execution_jobs j WHERE j.run_id = r.run_id
               GROUP BY j.status) s), '{{}}'::jsonb)",
        ts("r.started_at"),
        ts("r.completed_at")
    )
}

/// `GET /runs`: newest first, filtered by status and routing key.
pub fn list_runs(
    client: &mut Client,
    status: Option<&str>,
    routing_key: Option<&str>,
    limit: i64,
) -> Result<Vec<Value>, DbError> {
    let sql = format!(
        "SELECT jsonb_build_object({}) FROM execution_runs r
          WHERE ($1::text IS NULL OR r.status = $1) AND ($2::text IS NULL OR r.routing_key = $2)
          ORDER BY r.started_at DESC, r.run_id DESC LIMIT $3",
        run_fields()
    );
    client
        .query(&sql, &[&status, &routing_key, &limit])
        .map_err(DbError::query("listing runs"))?
        .iter()
        .map(|r| col(r, 0, "listing runs"))
        .collect()
}

/// `GET /runs/:runId`: the run, its jobs (with queue row and needs), and its steps as
/// `(job id, step)`; `None` for an unknown run (or an id that is not a UUID).
pub type RunDetail = (Value, Vec<Value>, Vec<(String, Value)>);

pub fn show_run(client: &mut Client, run_id: &str) -> Result<Option<RunDetail>, DbError> {
    if !is_uuid(run_id) {
        return Ok(None);
    }
    let run_sql = format!(
        "SELECT jsonb_build_object({},
             'commitMessage', r.commit_message, 'triggerDecision', r.trigger_decision,
             'initFailure', r.init_failure, 'parentRunId', r.parent_run_id,
             'originalRunId', r.original_run_id, 'triggeredBy', r.triggered_by,
             'logBytes', r.log_bytes, 'updatedAt', {})
           FROM execution_runs r WHERE r.run_id = $1::text::uuid",
        run_fields(),
        ts("r.updated_at")
    );
    let jobs_sql = format!(
        "SELECT jsonb_build_object('jobId', j.job_id, 'name', j.job_name, 'status', j.status,
             'matrixValues', j.matrix_values, 'agentId', j.agent_id, 'runsOn', j.runs_on_labels,
             'error', j.error_message, 'outputs', j.outputs, 'logBytes', j.log_bytes,
             'createdAt', {}, 'startedAt', {}, 'completedAt', {},
             'durationMs', COALESCE(j.duration_ms,
                 (extract(epoch FROM j.completed_at - j.started_at) * 1000)::bigint),
             'lastHeartbeatAt', {},
             'environments', j.environments, 'secrets', j.secrets_resolution,
             'queue', (SELECT jsonb_build_object('status', q.status, 'attempts', q.dispatch_attempts,
                 'lastError', q.last_error, 'agentId', q.agent_id)
                 FROM dispatch_queue q WHERE q.id = j.job_id),
             'needs', COALESCE((SELECT jsonb_agg(jsonb_build_object('job', n.upstream_name,
                 'runOn', n.run_on) ORDER BY n.upstream_name)
                 FROM execution_job_needs n WHERE n.run_id = j.run_id AND n.job_name = j.job_name),
                 '[]'::jsonb),
             'cache', (SELECT jsonb_object_agg(c.kind, c.hit) FROM job_cache_use c
                 WHERE c.job_id = j.job_id))
           FROM execution_jobs j WHERE j.run_id = $1::text::uuid ORDER BY j.created_at, j.job_name",
        ts("j.created_at"),
        ts("j.started_at"),
        ts("j.completed_at"),
        ts("j.last_heartbeat_at")
    );
    let steps_sql = format!(
        "SELECT s.job_id::text, jsonb_build_object('index', s.step_index, 'name', s.step_name,
             'type', s.step_type, 'status', s.status, 'startedAt', {}, 'completedAt', {},
             'durationMs', COALESCE(s.duration_ms,
                 (extract(epoch FROM s.completed_at - s.started_at) * 1000)::bigint),
             'exitCode', s.exit_code, 'error', s.error_message, 'logPath', s.log_path,
             'secretsAccessed', s.secrets_accessed)
           FROM execution_steps s WHERE s.run_id = $1::text::uuid ORDER BY s.job_id, s.step_index",
        ts("s.started_at"),
        ts("s.completed_at")
    );
    let Some(run) = client
        .query_opt(&run_sql, &[&run_id])
        .map_err(DbError::query("reading a run"))?
    else {
        return Ok(None);
    };
    let run: Value = col(&run, 0, "reading a run")?;
    let jobs = client
        .query(&jobs_sql, &[&run_id])
        .map_err(DbError::query("reading a run's jobs"))?
        .iter()
        .map(|r| col(r, 0, "reading a run's jobs"))
        .collect::<Result<Vec<Value>, DbError>>()?;
    let steps = client
        .query(&steps_sql, &[&run_id])
        .map_err(DbError::query("reading a run's steps"))?
        .iter()
        .map(|r| {
            Ok((
                col(r, 0, "reading a run's steps")?,
                col(r, 1, "reading a run's steps")?,
            ))
        })
        .collect::<Result<Vec<(String, Value)>, DbError>>()?;
    Ok(Some((run, jobs, steps)))
}
