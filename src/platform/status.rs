//! Status forwarding to the Platform (spec-runtime.md §1.6): the frames for a run, a job, a step
//! and a log chunk, built from our own rows, and the `state.replay` snapshot sent after each
//! reconnect. Frames go through `Link::send`, one FIFO, so the Platform sees them in the order
//! they were produced.

use postgres::Client;
use serde_json::{json, Value};

use super::Link;
use crate::{crypto::random_uuid, db::DbError};

/// Milliseconds since the epoch of a timestamptz column, as SQL.
macro_rules! ms {
    ($col:expr) => {
        concat!("(extract(epoch FROM ", $col, ") * 1000)::bigint")
    };
}

/// One JSON object per run: active runs and those of the last 24 hours, newest first, at most
/// 500, each with its jobs (`RunSnapshot` / `JobSnapshot`).
pub fn recent_runs(client: &mut Client) -> Result<Vec<Value>, DbError> {
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
    let rows = client
        .query(sql, &[])
        .map_err(DbError::query("reading recent runs for state.replay"))?;
    Ok(rows.iter().map(|r| r.get::<_, Value>(0)).collect())
}

/// `execution.status` for one run, from its row.
pub fn run_frame(client: &mut Client, run_id: &str) -> Result<Option<Value>, DbError> {
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
        " FROM execution_runs WHERE run_id::text = $1"
    );
    let row = client
        .query_opt(sql, &[&run_id])
        .map_err(DbError::query("reading a run for execution.status"))?;
    Ok(row.map(|r| framed("execution.status", r.get(0))))
}

/// `job.status.forward` for one job, from its row. `orchestrator_id` is our instance id.
pub fn job_frame(
    client: &mut Client,
    job_id: &str,
    orchestrator_id: &str,
) -> Result<Option<Value>, DbError> {
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
        " FROM execution_jobs WHERE job_id::text = $1"
    );
    let row = client
        .query_opt(sql, &[&job_id])
        .map_err(DbError::query("reading a job for job.status.forward"))?;
    Ok(row.map(|r| {
        let mut frame = framed("job.status.forward", r.get(0));
        frame["orchestratorId"] = json!(orchestrator_id);
        frame
    }))
}

/// `step.status.forward` from an agent's `step.status` (fields as the agent sent them).
pub fn step_frame(run_id: &str, job_id: &str, job_name: &str, step: &Value) -> Value {
    let mut frame = json!({
        "type": "step.status.forward",
        "messageId": random_uuid(),
        "runId": run_id,
        "jobId": job_id,
        "jobName": job_name,
        "timestamp": jiff::Timestamp::now().as_millisecond(),
    });
    for key in [
        "stepIndex",
        "stepName",
        "state",
        "data",
        "secretsAccessed",
        "concurrencyKind",
        "groupId",
    ] {
        if let Some(v) = step.get(key) {
            frame[key] = v.clone();
        }
    }
    frame
}

/// `log.chunk` for the browser's live view.
pub fn log_frame(run_id: &str, job_id: &str, step_index: i64, lines: &[String]) -> Value {
    json!({
        "type": "log.chunk",
        "messageId": random_uuid(),
        "runId": run_id,
        "jobId": job_id,
        "stepIndex": step_index,
        "lines": lines,
        "timestamp": jiff::Timestamp::now().as_millisecond(),
    })
}

fn framed(kind: &str, mut body: Value) -> Value {
    body["type"] = json!(kind);
    body["messageId"] = json!(random_uuid());
    body["timestamp"] = json!(jiff::Timestamp::now().as_millisecond());
    body
}

/// Reads a run's row and queues its `execution.status`; a missing run is logged, not an error.
pub fn forward_run(link: &Link, client: &mut Client, run_id: &str) -> Result<(), DbError> {
    match run_frame(client, run_id)? {
        Some(frame) => link.send(frame),
        None => log::warn!("execution.status for unknown run {run_id} not sent"),
    }
    Ok(())
}

/// Reads a job's row and queues its `job.status.forward`.
pub fn forward_job(
    link: &Link,
    client: &mut Client,
    job_id: &str,
    orchestrator_id: &str,
) -> Result<(), DbError> {
    match job_frame(client, job_id, orchestrator_id)? {
        Some(frame) => link.send(frame),
        None => log::warn!("job.status.forward for unknown job {job_id} not sent"),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn step_and_log_frames() {
        let step = json!({"type":"step.status","stepIndex":2,"stepName":"build","state":"running","extra":1});
        let f = step_frame("r", "j", "build", &step);
        assert_eq!(
            (
                f["type"].as_str(),
                f["stepIndex"].as_i64(),
                f["state"].as_str()
            ),
            (Some("step.status.forward"), Some(2), Some("running"))
        );
        assert!(f.get("extra").is_none());
        let l = log_frame("r", "j", 0, &["a".into(), "b".into()]);
        assert_eq!(l["lines"], json!(["a", "b"]));
        assert_eq!(l["type"], "log.chunk");
    }
}
