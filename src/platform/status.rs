//! Status forwarding to the Platform (docs/platform-protocol.md, "Status forwarding"): the frames
//! for a run, a job, a step and a log chunk, built from our own rows, and the `state.replay`
//! snapshot sent after each reconnect. The forwarder ([`forwarder`]) subscribes to the run events
//! (`crate::runs::events`); frames go through `Link::send`, one FIFO, so the Platform sees them in
//! the order they were published.

use std::sync::Arc;

use postgres::Client;
use serde_json::{json, Value};

use super::Link;
use crate::{
    crypto::random_uuid,
    db::{DbError, Pool},
    runs::{
        events::{Change, RunEvent},
        store::views,
    },
};

/// One JSON object per run: active runs and those of the last 24 hours, newest first, at most
/// 500, each with its jobs (`RunSnapshot` / `JobSnapshot`).
pub fn recent_runs(client: &mut Client) -> Result<Vec<Value>, DbError> {
    views::recent_runs(client)
}

/// `execution.status` for one run, from its row.
pub fn run_frame(client: &mut Client, run_id: &str) -> Result<Option<Value>, DbError> {
    Ok(views::run_status_fields(client, run_id)?.map(|body| framed("execution.status", body)))
}

/// `job.status.forward` for one job, from its row. `orchestrator_id` is our instance id.
pub fn job_frame(
    client: &mut Client,
    job_id: &str,
    orchestrator_id: &str,
) -> Result<Option<Value>, DbError> {
    Ok(views::job_status_fields(client, job_id)?.map(|body| {
        let mut frame = framed("job.status.forward", body);
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

/// The Platform status forwarder, a run-events subscriber: each run or job event becomes the
/// frame read from its row now (so the Platform gets the latest state), each step event the
/// step's frame; a claim sends nothing. `orchestrator_id` is our instance id.
pub fn forwarder(
    pool: Pool,
    link: Arc<Link>,
    orchestrator_id: String,
) -> Box<dyn Fn(&RunEvent) + Send + Sync> {
    Box::new(move |event: &RunEvent| match &event.change {
        Change::Run { .. } => {
            let run_id = &event.run_id;
            if let Err(e) = pool.with_retry(|c| forward_run(&link, c, run_id)) {
                log::warn!("forwarding run {run_id} failed: {e}");
            }
        }
        Change::Job { job_id, .. } => {
            if let Err(e) = pool.with_retry(|c| forward_job(&link, c, job_id, &orchestrator_id)) {
                log::warn!("forwarding job {job_id} failed: {e}");
            }
        }
        Change::Step {
            job_id,
            job_name,
            step,
        } => link.send(step_frame(&event.run_id, job_id, job_name, step)),
        // The Platform protocol has no frame for a claim: the job's status is unchanged.
        Change::Claimed { .. } => {}
    })
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
