//! Runs: created from a plan with their jobs, queue rows and `needs` in one transaction, recorded
//! as failed before any job (a corrupt lock file, an init failure), read back as the lifecycle
//! sees them, and changed by writing the lifecycle's effects.

use std::collections::BTreeMap;

use postgres::{Client, GenericClient, Transaction};
use serde_json::Value;

use super::{
    col,
    jobs::{Ending, Outcome, Reporter},
    queue::{self, NewJob},
};
use crate::{
    db::DbError,
    runs::{
        lifecycle::{apply, Effect, Event, Job, QueueRow, Run},
        needs::{parse_run_on, NeedsEdge},
        state::{JobStatus, RunStatus},
    },
};

/// Why a skipped job did not run.
pub const SKIPPED_BY_NEEDS: &str = "an upstream job did not end as this job's needs require";

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
    /// `execution_job_needs`: (job name, upstream name, accepted upstream statuses
    /// comma-separated).
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
///
/// Safe to repeat with the same `run`: a retry after a commit whose answer was lost with the
/// connection finds the run it wrote through its delivery (`ON CONFLICT … DO NOTHING`) and
/// answers [`Created::New`], since the run found has this run's id.
pub fn create_run(client: &mut Client, run: &NewRun) -> Result<Created, DbError> {
    create(client, run, &Again::default())
}

/// A delivery processed again (a rerun or a replay, src/pipeline/rerun.rs): which processing this
/// is, who asked, the run it re-runs, and the jobs recorded as already ended when the run is
/// created (passed in the run it re-runs, or skipped by their needs from the start).
#[derive(Debug, Clone, Default)]
pub struct Again {
    /// `execution_runs.rerun_key` (migration 0010): '' for a delivery's own processing.
    pub key: String,
    pub triggered_by: Option<String>,
    /// The run re-run (`parent_run_id`) and the first run of the chain (`original_run_id`).
    pub parent_run_id: Option<String>,
    pub original_run_id: Option<String>,
    /// Jobs ended at creation, with their status and why (no queue row: never dispatched).
    pub ended: Vec<(NewJob, JobStatus, String)>,
    /// The run whose passed jobs are kept: their outputs are copied, for the jobs after them.
    pub kept_from: Option<String>,
}

/// [`create_run`] for a delivery processed again; the same guarantees, per `again.key`.
pub fn create_run_again(
    client: &mut Client,
    run: &NewRun,
    again: &Again,
) -> Result<Created, DbError> {
    create(client, run, again)
}

fn create(client: &mut Client, run: &NewRun, again: &Again) -> Result<Created, DbError> {
    let mut tx = client
        .transaction()
        .map_err(DbError::query("starting a run"))?;
    let count = (run.jobs.len() + run.waiting.len() + again.ended.len()) as i32;
    let inserted = tx
        .execute(
            "INSERT INTO execution_runs (run_id, workflow_name, provider, routing_key, repo_identifier, ref, sha,
                 delivery_id, trigger_event, trigger_decision, job_count, rerun_key, triggered_by,
                 parent_run_id, original_run_id)
             VALUES ($1::text::uuid, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13,
                 $14::text::uuid, $15::text::uuid)
             ON CONFLICT (delivery_id, workflow_name, rerun_key) WHERE duplicate_of IS NULL DO NOTHING",
            &[
                &run.run_id, &run.workflow_name, &run.provider, &run.routing_key, &run.repo, &run.git_ref,
                &run.sha, &run.delivery_id, &run.trigger_event, &run.trigger_decision, &count,
                &again.key, &again.triggered_by, &again.parent_run_id, &again.original_run_id,
            ],
        )
        .map_err(DbError::query("recording a run"))?;
    if inserted == 0 {
        // Only a delivery id can conflict; the conflicting run committed, so a new statement sees
        // it.
        let delivery = run.delivery_id.as_deref().unwrap_or_default();
        return match existing_run_of(&mut tx, delivery, &run.workflow_name, &again.key)? {
            Some(existing) if existing == run.run_id => Ok(Created::New),
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
    for (job, status, why) in &again.ended {
        let matrix = job.dispatch.pointer("/jobConfig/matrixValues").cloned();
        let labels = serde_json::json!(job.requirements.labels);
        tx.execute(
            "INSERT INTO execution_jobs (job_id, run_id, job_name, runs_on_labels, matrix_values, status,
                 error_message, completed_at, duration_ms)
             VALUES ($1::text::uuid, $2::text::uuid, $3, $4, $5, $6, $7, now(), 0)",
            &[&job.id, &run.run_id, &job.job_name, &labels, &matrix, &status.as_str(), why],
        )
        .map_err(DbError::query("recording a job ended at creation"))?;
    }
    if let Some(from) = again
        .kept_from
        .as_deref()
        .filter(|_| !again.ended.is_empty())
    {
        tx.execute(
            "UPDATE execution_jobs n SET outputs = p.outputs
               FROM execution_jobs p
              WHERE n.run_id = $1::text::uuid AND n.status = 'success'
                AND p.run_id = $2::text::uuid AND p.job_name = n.job_name",
            &[&run.run_id, &from],
        )
        .map_err(DbError::query("keeping the outputs of passed jobs"))?;
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

/// The run `delivery_id` already started for `workflow` (migration 0004 allows one).
pub fn existing_run(
    client: &mut impl GenericClient,
    delivery_id: &str,
    workflow: &str,
) -> Result<Option<String>, DbError> {
    existing_run_of(client, delivery_id, workflow, "")
}

/// The run of `workflow` the processing `rerun_key` of `delivery_id` started (migration 0010).
pub fn existing_run_of(
    client: &mut impl GenericClient,
    delivery_id: &str,
    workflow: &str,
    rerun_key: &str,
) -> Result<Option<String>, DbError> {
    let row = client
        .query_opt(
            "SELECT run_id::text FROM execution_runs
              WHERE delivery_id = $1 AND workflow_name = $2 AND rerun_key = $3 AND duplicate_of IS NULL",
            &[&delivery_id, &workflow, &rerun_key],
        )
        .map_err(DbError::query("looking for a delivery's run"))?;
    row.map(|r| col(&r, 0, "looking for a delivery's run"))
        .transpose()
}

/// Where a run that failed before any job came from.
#[derive(Debug, Clone, Copy)]
pub struct FailedRun<'a> {
    pub workflow: &'a str,
    pub reason: &'a str,
    pub scope: &'a str,
    pub delivery_id: &'a str,
    pub routing_key: Option<&'a str>,
    pub repo: Option<&'a str>,
    pub sha: Option<&'a str>,
}

/// A run that failed before any job could start; returns its id (the existing one when this
/// delivery already recorded it: processed again after a crash, or a retry of this call).
pub fn failed_run(client: &mut Client, run: &FailedRun<'_>) -> Result<String, DbError> {
    failed_run_again(client, run, &Again::default())
}

/// [`failed_run`] for a delivery processed again (`again.ended` is not used: there are no jobs).
pub fn failed_run_again(
    client: &mut Client,
    run: &FailedRun<'_>,
    again: &Again,
) -> Result<String, DbError> {
    let run_id = crate::crypto::random_uuid();
    let init = serde_json::json!({"scope": run.scope, "category": "init", "message": run.reason});
    let inserted = client
        .execute(
            "INSERT INTO execution_runs (run_id, workflow_name, status, routing_key, repo_identifier, sha, delivery_id,
                 failure_reason, init_failure, completed_at, duration_ms, rerun_key, triggered_by,
                 parent_run_id, original_run_id)
             VALUES ($1::text::uuid, $2, 'failed', $3, $4, $5, $6, $7, $8, now(), 0, $9, $10,
                 $11::text::uuid, $12::text::uuid)
             ON CONFLICT (delivery_id, workflow_name, rerun_key) WHERE duplicate_of IS NULL DO NOTHING",
            &[
                &run_id, &run.workflow, &run.routing_key, &run.repo, &run.sha, &run.delivery_id, &run.reason, &init,
                &again.key, &again.triggered_by, &again.parent_run_id, &again.original_run_id,
            ],
        )
        .map_err(DbError::query("recording a failed run"))?;
    if inserted > 0 {
        return Ok(run_id);
    }
    existing_run_of(client, run.delivery_id, run.workflow, &again.key)?.ok_or_else(|| {
        DbError::Query {
            context: "recording a failed run",
            detail: format!(
                "delivery {} has a run of {:?} that vanished while it was looked up; retry",
                run.delivery_id, run.workflow
            ),
            code: None,
        }
    })
}

/// Locks the run of `job_id` (jobs of one run change one at a time: two jobs finishing together
/// would each see the other still running, and neither would end the run). Returns the run id
/// and the job's name, or `None` for an unknown job.
pub fn lock_run_of_job(
    tx: &mut Transaction<'_>,
    job_id: &str,
) -> Result<Option<(String, String)>, DbError> {
    const LOCKING: &str = "locking a run";
    let row = tx
        .query_opt(
            "SELECT r.run_id::text, j.job_name
               FROM execution_jobs j JOIN execution_runs r ON r.run_id = j.run_id
              WHERE j.job_id = $1::text::uuid
                FOR UPDATE OF r",
            &[&job_id],
        )
        .map_err(DbError::query(LOCKING))?;
    row.map(|r| Ok((col(&r, 0, LOCKING)?, col(&r, 1, LOCKING)?)))
        .transpose()
}

/// The run as the lifecycle sees it (call under its row lock).
pub fn load(client: &mut impl GenericClient, run_id: &str) -> Result<Run, DbError> {
    load_some(client, run_id, None)
}

/// [`load`], or only the run's status and job `only` (without `needs`): all a start needs, so
/// each of a large run's jobs starting does not read the whole run.
fn load_some(
    client: &mut impl GenericClient,
    run_id: &str,
    only: Option<&str>,
) -> Result<Run, DbError> {
    const READING: &str = "reading a run's state";
    let status: Option<String> = client
        .query_opt(
            "SELECT status FROM execution_runs WHERE run_id = $1::text::uuid",
            &[&run_id],
        )
        .map_err(DbError::query(READING))?
        .map(|r| col(&r, 0, READING))
        .transpose()?;
    let mut jobs = BTreeMap::new();
    let rows = client
        .query(
            "SELECT j.job_name, j.job_id::text, j.status, q.status
               FROM execution_jobs j LEFT JOIN dispatch_queue q ON q.id = j.job_id
              WHERE j.run_id = $1::text::uuid AND ($2::text IS NULL OR j.job_name = $2)",
            &[&run_id, &only],
        )
        .map_err(DbError::query(READING))?;
    for r in &rows {
        let status: String = col(r, 2, READING)?;
        let queue: Option<String> = col(r, 3, READING)?;
        jobs.insert(
            col::<String>(r, 0, READING)?,
            Job {
                id: col(r, 1, READING)?,
                // An unknown spelling counts as live, so it never ends the run.
                status: JobStatus::parse(&status).unwrap_or(JobStatus::Pending),
                queue: QueueRow::from_status(queue.as_deref()),
                steps: BTreeMap::new(),
            },
        );
    }
    if only.is_some() {
        return Ok(Run {
            status: status.as_deref().and_then(run_status),
            jobs,
            needs: Vec::new(),
        });
    }
    let needs = client
        .query(
            "SELECT job_name, upstream_name, run_on FROM execution_job_needs WHERE run_id = $1::text::uuid",
            &[&run_id],
        )
        .map_err(DbError::query("reading a run's needs"))?
        .iter()
        .map(|r| {
            Ok(NeedsEdge {
                job: col(r, 0, READING)?,
                upstream: col(r, 1, READING)?,
                run_on: parse_run_on(&col::<String>(r, 2, READING)?),
            })
        })
        .collect::<Result<Vec<_>, DbError>>()?;
    Ok(Run {
        status: status.as_deref().and_then(run_status),
        jobs,
        needs,
    })
}

fn run_status(s: &str) -> Option<RunStatus> {
    [
        RunStatus::Pending,
        RunStatus::Running,
        RunStatus::Success,
        RunStatus::Failed,
        RunStatus::Cancelled,
    ]
    .into_iter()
    .find(|r| r.as_str() == s)
}

/// Reads the run, applies `event`, writes the effects (inside the caller's transaction, which
/// holds the run's row lock). `by` is the agent for a start; `ending` the ended job's error and
/// log size.
pub fn decide_and_write(
    tx: &mut Transaction<'_>,
    run_id: &str,
    event: &Event,
    by: Option<Reporter<'_>>,
    ending: Ending<'_>,
) -> Result<Outcome, DbError> {
    let run = match event {
        Event::Started { job } | Event::Claimed { job, .. } | Event::StepChanged { job, .. } => {
            load_some(tx, run_id, Some(job))?
        }
        Event::Ended { .. } | Event::Created => load(tx, run_id)?,
    };
    let effects = apply(&run, event);
    let primary = match event {
        Event::Started { job } | Event::Ended { job, .. } => job.as_str(),
        Event::Claimed { job, .. } | Event::StepChanged { job, .. } => job.as_str(),
        Event::Created => "",
    };
    let mut out = Outcome {
        run_id: Some(run_id.to_owned()),
        effects: Vec::with_capacity(effects.len()),
        report: None,
    };
    for effect in effects {
        let about = about(&run, &effect);
        let id = about.as_ref().map(|(id, _)| id.as_str()).unwrap_or("");
        match &effect {
            // Written by their own statements, not under the run's lock: a claim by the claiming
            // `UPDATE` (`super::queue::claim`), a step with its details
            // (`super::jobs::step_status`).
            Effect::JobClaimed { .. } | Effect::StepChanged { .. } => {}
            Effect::JobStarted { .. } => {
                let by = by.unwrap_or(Reporter {
                    agent_id: "",
                    token_id: None,
                });
                tx.execute(
                    "UPDATE execution_jobs
                        SET status = 'running', agent_id = $2, agent_token_id = $3::text::uuid,
                            started_at = COALESCE(started_at, now()), last_heartbeat_at = now()
                      WHERE job_id = $1::text::uuid",
                    &[&id, &by.agent_id, &by.token_id],
                )
                .map_err(DbError::query("marking a job running"))?;
            }
            Effect::RunStarted => {
                tx.execute(
                    "UPDATE execution_runs SET status = 'running', updated_at = now()
                      WHERE run_id = $1::text::uuid AND status = 'pending'",
                    &[&run_id],
                )
                .map_err(DbError::query("marking a run running"))?;
            }
            Effect::JobEnded { job, status } => {
                let (error, log_bytes) = if job == primary {
                    (ending.error, ending.log_bytes)
                } else {
                    (Some(SKIPPED_BY_NEEDS), 0)
                };
                end_job(tx, id, *status, error, log_bytes)?;
            }
            // A waiting queue row leaves `waiting` once: queued, or skipped for good.
            Effect::Queue { .. } | Effect::Skip { .. } => {
                let (to, context) = match effect {
                    Effect::Queue { .. } => ("pending", "queueing downstream jobs"),
                    _ => ("skipped", "skipping downstream jobs"),
                };
                tx.execute(
                    "UPDATE dispatch_queue SET status = $2, updated_at = now()
                      WHERE id = $1::text::uuid AND status = 'waiting'",
                    &[&id, &to],
                )
                .map_err(DbError::query(context))?;
            }
            Effect::RunEnded { status } => {
                let status = status.as_str();
                let failure = (status == "failed").then_some("one or more jobs failed");
                tx.execute(
                    "UPDATE execution_runs
                        SET status = $2, completed_at = now(), updated_at = now(),
                            failure_reason = COALESCE(failure_reason, $3),
                            duration_ms = (extract(epoch FROM now() - started_at) * 1000)::bigint
                      WHERE run_id = $1::text::uuid AND status NOT IN ('success', 'failed', 'cancelled')",
                    &[&run_id, &status, &failure],
                )
                .map_err(DbError::query("finishing a run"))?;
            }
        }
        out.effects.push((effect, about));
    }
    Ok(out)
}

/// The job (id and name) an effect concerns; none for the run's own effects.
pub(crate) fn about(run: &Run, effect: &Effect) -> Option<(String, String)> {
    let job_of = |name: &str| run.jobs.get(name).map(|j| (j.id.clone(), name.to_owned()));
    match effect {
        Effect::JobClaimed { job, .. }
        | Effect::StepChanged { job, .. }
        | Effect::JobStarted { job }
        | Effect::JobEnded { job, .. }
        | Effect::Queue { job }
        | Effect::Skip { job } => job_of(job),
        Effect::RunStarted | Effect::RunEnded { .. } => None,
    }
}

/// The change `effects` make to run `run_id` (`run` as they were decided on), for publishing;
/// `report` is the agent's frame of a step change.
pub(crate) fn outcome(
    run_id: &str,
    run: &Run,
    effects: Vec<Effect>,
    report: Option<Value>,
) -> Outcome {
    Outcome {
        run_id: Some(run_id.to_owned()),
        effects: effects
            .into_iter()
            .map(|e| {
                let about = about(run, &e);
                (e, about)
            })
            .collect(),
        report,
    }
}

/// A job's terminal status, with its unfinished steps reconciled.
fn end_job(
    tx: &mut Transaction<'_>,
    job_id: &str,
    status: JobStatus,
    error: Option<&str>,
    log_bytes: i64,
) -> Result<(), DbError> {
    tx.execute(
        "UPDATE execution_jobs
            SET status = $2, completed_at = now(), error_message = COALESCE($3, error_message),
                log_bytes = log_bytes + $4,
                duration_ms = (extract(epoch FROM now() - COALESCE(started_at, now())) * 1000)::bigint
          WHERE job_id = $1::text::uuid AND status NOT IN ('success', 'failed', 'cancelled', 'skipped',
                'timed_out_stale', 'drift_dropped')",
        &[&job_id, &status.as_str(), &error, &log_bytes],
    )
    .map_err(DbError::query("finishing a job"))?;
    let step_status = match status {
        JobStatus::Success => "success",
        JobStatus::Cancelled => "cancelled",
        _ => "failed",
    };
    tx.execute(
        "UPDATE execution_steps SET status = $2, completed_at = COALESCE(completed_at, now())
          WHERE job_id = $1::text::uuid AND status NOT IN ('success', 'failed', 'skipped', 'cancelled')",
        &[&job_id, &step_status],
    )
    .map_err(DbError::query("reconciling a job's steps"))?;
    Ok(())
}

/// Whether the run exists (an id that is not a UUID names none).
pub fn exists(client: &mut Client, run_id: &str) -> Result<bool, DbError> {
    if !super::is_uuid(run_id) {
        return Ok(false);
    }
    let row = client
        .query_opt(
            "SELECT 1 FROM execution_runs WHERE run_id = $1::text::uuid",
            &[&run_id],
        )
        .map_err(DbError::query("looking up a run"))?;
    Ok(row.is_some())
}

/// A run is being cancelled: `cancelling` while its live jobs end.
pub fn mark_cancelling(client: &mut Client, run_id: &str) -> Result<bool, DbError> {
    let n = client
        .execute(
            "UPDATE execution_runs SET status = 'cancelling', updated_at = now()
              WHERE run_id = $1::text::uuid AND status IN ('pending', 'running')",
            &[&run_id],
        )
        .map_err(DbError::query("marking a run cancelling"))?;
    Ok(n > 0)
}

/// Jobs of a run that are `pending` with no queue row at all (created before every job had one).
pub fn unqueued_jobs(client: &mut Client, run_id: &str) -> Result<Vec<String>, DbError> {
    const READING: &str = "reading a run's waiting jobs";
    client
        .query(
            "SELECT job_id::text FROM execution_jobs WHERE run_id = $1::text::uuid AND status = 'pending'
               AND NOT EXISTS (SELECT 1 FROM dispatch_queue q WHERE q.id = execution_jobs.job_id)",
            &[&run_id],
        )
        .map_err(DbError::query(READING))?
        .iter()
        .map(|r| col(r, 0, READING))
        .collect()
}
