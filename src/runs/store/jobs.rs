//! Jobs and steps as agents report them (docs/agent-protocol.md, "Frames from the agent"): a
//! job's first `running` starts it (and its run), terminal states are immutable (an identical
//! replay is a no-op), steps never go back from a terminal state (the reference's concurrent
//! writes left successful steps `running` and then `failed`), and a run ends only when every job
//! is terminal and no queue row is live (the reference's run flapped to `success` while a job
//! still ran). A job's start or end runs in one transaction under the run's row lock: the run is
//! read (`super::runs::load`), `lifecycle::apply` decides, `super::runs::decide_and_write` writes
//! the effects. A step change reads only the step (see [`step_status`]).

use std::collections::BTreeMap;

use postgres::Client;
use serde_json::Value;

use super::{col, runs};
use crate::{
    db::DbError,
    runs::failure::{Failure, StepFailure},
    runs::lifecycle::{apply, Effect, Event, Job, QueueRow, Run},
    runs::state::{step_is_terminal, JobStatus},
};

/// A change to one run: its id and the effects written, in order, for publishing
/// (`crate::runs::publish`). Empty effects for a replay or an unknown job.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Outcome {
    pub run_id: Option<String>,
    /// Each effect with the job id and name it concerns (empty for run effects).
    pub effects: Vec<(Effect, Option<(String, String)>)>,
    /// The agent's `step.status` frame of a step change (published with it).
    pub report: Option<Value>,
}

impl Outcome {
    /// Whether the event's own job changed (false for a replay).
    pub fn job_changed(&self) -> bool {
        !self.effects.is_empty()
    }

    /// The run's final status when this change ended it.
    pub fn run_ended(&self) -> Option<&'static str> {
        self.effects.iter().find_map(|(e, _)| match e {
            Effect::RunEnded { status } => Some(status.as_str()),
            _ => None,
        })
    }

    /// How many waiting jobs became dispatchable.
    pub fn queued(&self) -> usize {
        self.effects
            .iter()
            .filter(|(e, _)| matches!(e, Effect::Queue { .. }))
            .count()
    }
}

/// Who reports a job's end or start: the agent id and the token it authenticated with.
#[derive(Debug, Clone, Copy)]
pub struct Reporter<'a> {
    pub agent_id: &'a str,
    pub token_id: Option<&'a str>,
}

/// What an ended job records beyond its status.
#[derive(Debug, Clone, Copy, Default)]
pub struct Ending<'a> {
    pub error: Option<&'a str>,
    pub log_bytes: i64,
}

/// The job started on `agent_id` (authenticated with `token_id`); its run starts with it when it
/// was `pending`. Safe to repeat: a job already running is left alone.
pub fn job_running(
    client: &mut Client,
    job_id: &str,
    agent_id: &str,
    token_id: Option<&str>,
) -> Result<Outcome, DbError> {
    let by = Reporter { agent_id, token_id };
    change(
        client,
        job_id,
        |job| Event::Started { job },
        Some(by),
        Ending::default(),
    )
}

/// Records a job's terminal status, reconciles its unfinished steps, moves its run's `needs` on
/// (downstream jobs queued or skipped, cascading) and ends the run when nothing is left.
pub fn job_terminal(
    client: &mut Client,
    job_id: &str,
    status: &str,
    error: Option<&str>,
    log_bytes: i64,
) -> Result<Outcome, DbError> {
    let Some(status) = JobStatus::parse(status) else {
        return Ok(Outcome::default());
    };
    let ending = Ending { error, log_bytes };
    change(
        client,
        job_id,
        |job| Event::Ended { job, status },
        None,
        ending,
    )
}

/// An agent's terminal `job.status`, in one transaction: its queue row finished (`queue_status`)
/// and the job recorded (as [`job_terminal`]), or neither. `None` when the queue row is no longer
/// held by this agent and token (requeued, expired, cancelled or revoked meanwhile): nothing is
/// written then. A row without a token, or an agent without one, binds no token (see
/// `super::queue::adopt`). Safe to repeat: when an earlier call committed, a repeat finds the job
/// ended as reported by this agent and answers an empty change.
pub fn agent_terminal(
    client: &mut Client,
    job_id: &str,
    by: Reporter<'_>,
    queue_status: &str,
    status: &str,
    ending: Ending<'_>,
) -> Result<Option<Outcome>, DbError> {
    let Some(status) = JobStatus::parse(status) else {
        return Ok(None);
    };
    let mut tx = client
        .transaction()
        .map_err(DbError::query("starting a job update"))?;
    let Some((run_id, job_name)) = runs::lock_run_of_job(&mut tx, job_id)? else {
        return Ok(None);
    };
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
        // Our own earlier try may have committed with its answer lost (the caller retries):
        // then the row is finished as we asked, by this agent, and the job ended as reported.
        let ours = tx
            .query_opt(
                "SELECT 1 FROM dispatch_queue q JOIN execution_jobs j ON j.job_id = q.id
                  WHERE q.id = $1::text::uuid AND q.status = $2 AND q.agent_id = $3 AND j.status = $4",
                &[&job_id, &queue_status, &by.agent_id, &status.as_str()],
            )
            .map_err(DbError::query("reading a finished job"))?;
        return Ok(ours.map(|_| Outcome {
            run_id: Some(run_id),
            ..Outcome::default()
        }));
    }
    let event = Event::Ended {
        job: job_name,
        status,
    };
    let outcome = runs::decide_and_write(&mut tx, &run_id, &event, None, ending)?;
    tx.commit()
        .map_err(DbError::query("committing a job update"))?;
    Ok(Some(outcome))
}

/// One change of one job, in one transaction under its run's row lock.
fn change(
    client: &mut Client,
    job_id: &str,
    event: impl FnOnce(String) -> Event,
    by: Option<Reporter<'_>>,
    ending: Ending<'_>,
) -> Result<Outcome, DbError> {
    let mut tx = client
        .transaction()
        .map_err(DbError::query("starting a job update"))?;
    let Some((run_id, job_name)) = runs::lock_run_of_job(&mut tx, job_id)? else {
        return Ok(Outcome::default());
    };
    let outcome = runs::decide_and_write(&mut tx, &run_id, &event(job_name), by, ending)?;
    tx.commit()
        .map_err(DbError::query("committing a job update"))?;
    Ok(outcome)
}

/// Records an agent's `step.status` as the lifecycle decides (`Event::StepChanged`): a step not
/// recorded yet is created, a terminal step never changes again, an identical replay writes
/// nothing. The step's row is read and then written only if it still has the status read (no
/// transaction and no run lock: a job's steps are reported by one session, in order; a concurrent
/// writer is the job's end reconciling its steps, and it wins). Returns the change to publish,
/// empty when nothing was written. Safe to repeat.
pub fn step_status(
    client: &mut Client,
    job_id: &str,
    run_id: &str,
    frame: &Value,
) -> Result<Outcome, DbError> {
    const READING: &str = "reading a step";
    let index = frame["stepIndex"].as_i64().unwrap_or(0) as i32;
    let state = frame["state"].as_str().unwrap_or("pending").to_owned();
    let row = client
        .query_opt(
            "SELECT j.job_name, j.status, q.status, s.status
               FROM execution_jobs j
               LEFT JOIN dispatch_queue q ON q.id = j.job_id
               LEFT JOIN execution_steps s ON s.job_id = j.job_id AND s.step_index = $2
              WHERE j.job_id = $1::text::uuid",
            &[&job_id, &index],
        )
        .map_err(DbError::query(READING))?;
    let Some(row) = row else {
        return Ok(Outcome::default());
    };
    let job_name: String = col(&row, 0, READING)?;
    let job_status: String = col(&row, 1, READING)?;
    let queue: Option<String> = col(&row, 2, READING)?;
    let recorded: Option<String> = col(&row, 3, READING)?;
    let job = Job {
        id: job_id.to_owned(),
        status: JobStatus::parse(&job_status).unwrap_or(JobStatus::Pending),
        queue: QueueRow::from_status(queue.as_deref()),
        steps: recorded.iter().map(|r| (index, r.clone())).collect(),
    };
    let run = Run {
        status: None,
        jobs: BTreeMap::from([(job_name.clone(), job)]),
        needs: Vec::new(),
    };
    let event = Event::StepChanged {
        job: job_name,
        step: index,
        status: state,
    };
    let effects = apply(&run, &event);
    let mut written = 0;
    for effect in &effects {
        if let Effect::StepChanged { step, status, .. } = effect {
            let step = StepRow::of(frame, *step, status);
            written += write_step(client, job_id, run_id, &step, recorded.as_deref())?;
        }
    }
    if written == 0 {
        return Ok(Outcome {
            run_id: Some(run_id.to_owned()),
            ..Outcome::default()
        });
    }
    Ok(runs::outcome(run_id, &run, effects, Some(frame.clone())))
}

/// A step's columns from the agent's frame.
struct StepRow<'a> {
    index: i32,
    name: &'a str,
    status: &'a str,
    step_type: Option<&'a str>,
    duration: Option<i64>,
    exit_code: Option<i32>,
    error: Option<String>,
    secrets: Value,
}

impl<'a> StepRow<'a> {
    fn of(frame: &'a Value, index: i32, status: &'a str) -> StepRow<'a> {
        let data = &frame["data"];
        let failure = Failure::read(data.get("error"));
        StepRow {
            index,
            name: frame["stepName"].as_str().unwrap_or(""),
            status,
            step_type: frame["step_type"].as_str(),
            duration: data.get("durationMs").and_then(Value::as_i64),
            exit_code: failure.as_ref().and_then(|f| f.exit_code),
            error: failure.as_ref().and_then(Failure::stored),
            secrets: secrets_accessed(frame.get("secretsAccessed")),
        }
    }
}

/// The key names a step read (`step.status.secretsAccessed`), as the agent sent them but
/// bounded: strings only, at most 256 of at most 255 characters (anything else is dropped).
fn secrets_accessed(sent: Option<&Value>) -> Value {
    let names: Vec<&str> = sent
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .filter(|k| !k.is_empty() && k.chars().count() <= 255)
        .take(256)
        .collect();
    serde_json::json!(names)
}

/// Writes the step when its row still has the status `recorded` (`None`: no row yet). Returns
/// whether it wrote.
fn write_step(
    client: &mut Client,
    job_id: &str,
    run_id: &str,
    s: &StepRow<'_>,
    recorded: Option<&str>,
) -> Result<u64, DbError> {
    let terminal = step_is_terminal(s.status);
    client
        .execute(
            "INSERT INTO execution_steps (job_id, run_id, step_index, step_name, status, step_type, started_at,
                 completed_at, duration_ms, exit_code, error_message, secrets_accessed)
             VALUES ($1::text::uuid, $2::text::uuid, $3, $4, $5, $6,
                     CASE WHEN $5 = 'running' THEN now() END, CASE WHEN $7 THEN now() END, $8, $9, $10, $11)
             ON CONFLICT (job_id, step_index) DO UPDATE SET
                 status = EXCLUDED.status,
                 step_name = EXCLUDED.step_name,
                 step_type = COALESCE(EXCLUDED.step_type, execution_steps.step_type),
                 started_at = COALESCE(execution_steps.started_at, EXCLUDED.started_at),
                 completed_at = COALESCE(execution_steps.completed_at, EXCLUDED.completed_at),
                 duration_ms = COALESCE(EXCLUDED.duration_ms, execution_steps.duration_ms),
                 exit_code = COALESCE(EXCLUDED.exit_code, execution_steps.exit_code),
                 error_message = COALESCE(EXCLUDED.error_message, execution_steps.error_message),
                 secrets_accessed = EXCLUDED.secrets_accessed
               WHERE execution_steps.status IS NOT DISTINCT FROM $12::text",
            &[
                &job_id, &run_id, &s.index, &s.name, &s.status, &s.step_type, &terminal,
                &s.duration, &s.exit_code, &s.error, &s.secrets, &recorded,
            ],
        )
        .map_err(DbError::query("recording a step"))
}

/// Fills in the exit code and message of a job's failed steps from its terminal `job.status`
/// (`stepResults`, see `crate::runs::failure`), where the step's own `step.status` left them
/// unknown (it was lost, or carried no error). A step is found by name, else by its position;
/// what is already recorded is kept. Safe to repeat. Returns how many steps changed.
pub fn record_step_failures(
    client: &mut Client,
    job_id: &str,
    failed: &[StepFailure],
) -> Result<u64, DbError> {
    let mut changed = 0;
    for step in failed {
        let Some(f) = &step.failure else { continue };
        changed += client
            .execute(
                "UPDATE execution_steps
                    SET exit_code = COALESCE(exit_code, $3), error_message = COALESCE(error_message, $4)
                  WHERE job_id = $1::text::uuid AND status = 'failed'
                    AND (exit_code IS NULL OR error_message IS NULL)
                    AND step_index = COALESCE(
                        (SELECT min(step_index) FROM execution_steps
                          WHERE job_id = $1::text::uuid AND step_name = $2 AND $2 <> ''),
                        $5)",
                &[&job_id, &step.name, &f.exit_code, &f.stored(), &step.index],
            )
            .map_err(DbError::query("recording a failed step"))?;
    }
    Ok(changed)
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

/// Running jobs silent for longer than `secs`: `(job id, run id)`. A job waiting for its agent
/// to come back (queue row `recovering`) is not stale: its recovery window decides
/// (`queue::expire_recoveries`), however long `KICI_AGENT_MAX_RECONNECT_DELAY_MS` makes it.
pub fn stale_jobs(client: &mut Client, secs: i64) -> Result<Vec<(String, String)>, DbError> {
    let rows = client
        .query(
            "SELECT j.job_id::text, j.run_id::text FROM execution_jobs j
              WHERE j.status = 'running' AND j.last_heartbeat_at < now() - make_interval(secs => $1::bigint)
                AND NOT EXISTS (SELECT 1 FROM dispatch_queue q WHERE q.id = j.job_id AND q.status = 'recovering')",
            &[&secs],
        )
        .map_err(DbError::query("finding stale jobs"))?;
    super::queue::pairs(&rows, "finding stale jobs")
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    #[test]
    fn secrets_accessed_keeps_bounded_names_only() {
        let sent = json!(["DB", 7, "", null, "k".repeat(256), "NPM"]);
        assert_eq!(super::secrets_accessed(Some(&sent)), json!(["DB", "NPM"]));
        assert_eq!(super::secrets_accessed(None), json!([]));
        assert_eq!(super::secrets_accessed(Some(&json!({"DB": 1}))), json!([]));
        let many: Vec<String> = (0..300).map(|i| format!("K{i}")).collect();
        let kept = super::secrets_accessed(Some(&json!(many)));
        assert_eq!(kept.as_array().unwrap().len(), 256);
        assert_eq!(kept[255], "K255");
    }
}
