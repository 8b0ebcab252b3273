//! Processing a recorded delivery again (docs/operations.md, "Reruns and replays"): a **rerun**
//! starts one workflow of a finished run again at the same commit (all its jobs, or with
//! `failed_only` the jobs that did not pass and everything downstream of them); a **replay**
//! processes the whole delivery again with the lock file as it is now. Both read the event from
//! the delivery's stored payload, so the commit never changes, and create runs through
//! `process::start_run` like the delivery's own processing, told apart by a key
//! (`execution_runs.rerun_key`, migration 0010) that keeps each processing safe to repeat.
//! GitHub's "Re-run" buttons arrive as `check_run`/`check_suite` `rerequested` deliveries and are
//! handled in `rerequest.rs`; the SQL is in `rerun_records.rs`.

use std::{
    collections::{BTreeMap, BTreeSet},
    fmt,
};

use serde_json::Value;

use super::{
    lockfile::parse_and_validate,
    origin::origin,
    origin::read_lock,
    plan::Plan,
    process::{evaluate, normalized, start_run, Deps, PipelineError, Work, LOCK_PATH},
    rerun_records as records,
};
use crate::{
    db::DbError,
    runs::{
        needs::{readiness, NeedsEdge},
        state::JobStatus,
        store::runs::{existing_run_of, Again as StoreAgain},
    },
};

pub use super::{
    rerequest::{is_rerequest, rerequested},
    rerun_records::RunRef,
};

/// The run `run_id` as a rerun reads it; `None` when unknown.
pub fn run_ref(client: &mut postgres::Client, run_id: &str) -> Result<Option<RunRef>, DbError> {
    records::run(client, run_id)
}

/// A delivery processed again: what the store records on its runs, and for a failed-only rerun
/// the previous run's job statuses.
#[derive(Debug, Clone, Default)]
pub struct Again {
    pub store: StoreAgain,
    pub previous_jobs: Option<PreviousJobs>,
}

/// The jobs of the run a failed-only rerun repeats, by name.
#[derive(Debug, Clone, Default)]
pub struct PreviousJobs {
    pub run_id: String,
    pub statuses: BTreeMap<String, JobStatus>,
}

/// Why a rerun or a replay was refused; every message names the value and what to do.
#[derive(Debug)]
pub enum RerunError {
    UnknownRun(String),
    UnknownDelivery(String),
    /// The delivery belongs to another routing key than the caller's token is restricted to.
    OutOfScope,
    /// Several deliveries (of different orgs) have this delivery id.
    AmbiguousDelivery(String),
    /// The run has not ended (`status`).
    Active {
        run_id: String,
        status: String,
    },
    /// The delivery has not been processed yet (`status`).
    NotProcessed {
        delivery: String,
        status: String,
    },
    /// The run was not started by a recorded delivery, or it is no longer in the event log.
    DeliveryGone {
        run_id: String,
        delivery: Option<String>,
    },
    /// The delivery was recorded without its payload (`reason`).
    NoPayload {
        delivery: String,
        reason: String,
    },
    /// A plain generic delivery: it names no repository, so it starts no runs.
    NoRepository(String),
    /// The lock file at the commit is missing or invalid now.
    LockFile {
        sha: String,
        detail: String,
    },
    WorkflowGone {
        workflow: String,
        sha: String,
    },
    /// `failed_only` on a run whose jobs all passed.
    NothingFailed(String),
    /// `failed_only`, and every job that did not pass would be skipped by its needs again.
    NothingToRun(String),
    /// The repository or its lock file could not be read (GitHub, a local folder).
    Source(String),
    Db(DbError),
}

impl fmt::Display for RerunError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RerunError::UnknownRun(id) => {
                write!(f, "no run {id:?} (see kici-admin runs list for the IDs)")
            }
            RerunError::UnknownDelivery(id) => write!(
                f,
                "no delivery {id:?} in the event log (give its delivery id, e.g. X-GitHub-Delivery, \
                 or its event-log id)"
            ),
            RerunError::OutOfScope => f.write_str(
                "Access denied: token is restricted to a single routing key and this delivery \
                 came through a different one",
            ),
            RerunError::AmbiguousDelivery(id) => write!(
                f,
                "several recorded deliveries have the id {id:?} (one per org); give the event-log id \
                 of the one to replay"
            ),
            RerunError::Active { run_id, status } => write!(
                f,
                "run {run_id} is still {status}: wait for it to end, or cancel it first \
                 (kici-admin runs cancel {run_id}), then re-run it"
            ),
            RerunError::NotProcessed { delivery, status } => write!(
                f,
                "delivery {delivery} is still {status}: the pipeline has not finished it yet; \
                 replay it once it has"
            ),
            RerunError::DeliveryGone { run_id, delivery: None } => write!(
                f,
                "run {run_id} was not started by a recorded delivery, so there is nothing to \
                 process again; push again or redeliver the webhook"
            ),
            RerunError::DeliveryGone {
                run_id,
                delivery: Some(d),
            } => write!(
                f,
                "delivery {d} that started run {run_id} is no longer in the event log; push again \
                 or redeliver the webhook from GitHub"
            ),
            RerunError::NoPayload { delivery, reason } => write!(
                f,
                "delivery {delivery} was recorded without its payload ({reason}), so it cannot be \
                 processed again; push again or redeliver the webhook"
            ),
            RerunError::NoRepository(d) => write!(
                f,
                "delivery {d} came from a generic source that names no repository: it starts no \
                 runs, so there is nothing to replay"
            ),
            RerunError::LockFile { sha, detail } => write!(
                f,
                "{detail}; fix {LOCK_PATH} at {sha} (kici compile) and replay the delivery \
                 (kici-admin event-log replay <deliveryId>)"
            ),
            RerunError::WorkflowGone { workflow, sha } => write!(
                f,
                "workflow {workflow:?} is not in {LOCK_PATH} at {sha} any more; replay the delivery \
                 (kici-admin event-log replay <deliveryId>) to run what the lock file holds now"
            ),
            RerunError::NothingFailed(id) => write!(
                f,
                "every job of run {id} passed, so --failed-only has nothing to run again; re-run \
                 without --failed-only to run every job"
            ),
            RerunError::NothingToRun(id) => write!(
                f,
                "every job of run {id} that did not pass would be skipped again by its needs, so \
                 --failed-only has nothing to run; re-run without --failed-only to run every job"
            ),
            RerunError::Source(m) => write!(f, "reading the repository failed: {m}"),
            RerunError::Db(e) => e.fmt(f),
        }
    }
}

impl std::error::Error for RerunError {}

impl From<DbError> for RerunError {
    fn from(e: DbError) -> RerunError {
        RerunError::Db(e)
    }
}

impl From<PipelineError> for RerunError {
    fn from(e: PipelineError) -> RerunError {
        match e {
            PipelineError::Db(e) => RerunError::Db(e),
            PipelineError::Payload(m) => RerunError::Source(m.to_owned()),
            PipelineError::Source(m) => RerunError::Source(m),
        }
    }
}

/// What to re-run, and who asked.
#[derive(Debug, Clone)]
pub struct Ask {
    pub failed_only: bool,
    /// `execution_runs.triggered_by` of the new run.
    pub triggered_by: String,
    /// Tells this processing apart (`execution_runs.rerun_key`): asking again with the same key
    /// finds the run it started instead of starting another.
    pub key: String,
}

/// A rerun that was started (or found, when its key had started it already).
#[derive(Debug, Clone)]
pub struct Rerun {
    pub run_id: String,
    pub rerun_of: String,
    pub workflow: String,
    pub sha: Option<String>,
    /// The key had already started this run: nothing new was created.
    pub existing: bool,
    /// The workflow was refused before any job (over a limit, an init failure): the new run is
    /// recorded failed with this reason.
    pub failure: Option<String>,
    /// Jobs recorded as passed in the previous run and not run again (failed-only).
    pub kept: Vec<String>,
}

/// Starts workflow `run_id` again at the same commit. Refuses runs that have not ended.
pub fn rerun(deps: &Deps, run_id: &str, ask: &Ask) -> Result<Rerun, RerunError> {
    let previous = deps
        .pool
        .with_retry(|c| records::run(c, run_id))?
        .ok_or_else(|| RerunError::UnknownRun(run_id.to_owned()))?;
    rerun_of(deps, &previous, ask)
}

/// [`rerun`] of a run already read.
pub fn rerun_of(deps: &Deps, previous: &RunRef, ask: &Ask) -> Result<Rerun, RerunError> {
    let run_id = previous.run_id.as_str();
    if !matches!(previous.status.as_str(), "success" | "failed" | "cancelled") {
        return Err(RerunError::Active {
            run_id: run_id.to_owned(),
            status: previous.status.clone(),
        });
    }
    let gone = || RerunError::DeliveryGone {
        run_id: run_id.to_owned(),
        delivery: previous.delivery_id.clone(),
    };
    let delivery_id = previous.delivery_id.as_deref().ok_or_else(gone)?;
    let found = deps
        .pool
        .with_retry(|c| existing_run_of(c, delivery_id, &previous.workflow, &ask.key))?;
    let answer = |new: String, existing, failure, kept| Rerun {
        run_id: new,
        rerun_of: run_id.to_owned(),
        workflow: previous.workflow.clone(),
        sha: previous.sha.clone(),
        existing,
        failure,
        kept,
    };
    if let Some(found) = found {
        return Ok(answer(found, true, None, Vec::new()));
    }
    let recorded = deps
        .pool
        .with_retry(|c| records::delivery_of_run(c, delivery_id, previous.routing_key.as_deref()))?
        .ok_or_else(gone)?;
    let work = recorded.work()?;
    let previous_jobs = if ask.failed_only {
        let statuses = deps.pool.with_retry(|c| records::job_statuses(c, run_id))?;
        if statuses.values().all(|s| *s == JobStatus::Success) {
            return Err(RerunError::NothingFailed(run_id.to_owned()));
        }
        Some(PreviousJobs {
            run_id: run_id.to_owned(),
            statuses,
        })
    } else {
        None
    };
    let (_, event, generic) = normalized(deps, &work);
    let origin = origin(deps, &work, &event, generic.as_ref().map(|g| g.id.as_str()))
        .map_err(RerunError::Source)?;
    let sha = event.sha.clone();
    let bytes = read_lock(deps, &event, &origin)?.ok_or_else(|| RerunError::LockFile {
        sha: sha.clone(),
        detail: format!(
            "there is no {LOCK_PATH} in {} at {sha}",
            event.repo.as_deref().unwrap_or("(no repository)")
        ),
    })?;
    let lock = parse_and_validate(&bytes).map_err(|e| RerunError::LockFile {
        sha: sha.clone(),
        detail: e.to_string(),
    })?;
    let wf = lock
        .workflows
        .iter()
        .find(|w| w.name == previous.workflow)
        .ok_or_else(|| RerunError::WorkflowGone {
            workflow: previous.workflow.clone(),
            sha: sha.clone(),
        })?;
    if let (Some(prev), Ok(plan)) = (
        &previous_jobs,
        super::plan::plan_workflow(wf, deps.max_jobs_per_run),
    ) {
        if wave(&plan, prev).0.is_empty() {
            return Err(RerunError::NothingToRun(run_id.to_owned()));
        }
    }
    let again = Again {
        store: StoreAgain {
            key: ask.key.clone(),
            triggered_by: Some(ask.triggered_by.clone()),
            parent_run_id: Some(run_id.to_owned()),
            original_run_id: Some(
                previous
                    .original_run_id
                    .clone()
                    .unwrap_or_else(|| run_id.to_owned()),
            ),
            ended: Vec::new(),
            kept_from: previous_jobs.as_ref().map(|p| p.run_id.clone()),
        },
        previous_jobs,
    };
    // The same event matched before: the decision is the previous run's.
    let trace = previous.trigger_decision.clone().unwrap_or(Value::Null);
    let (new, failure) = start_run(deps, &work, &lock, wf, &event, &origin, trace, Some(&again))?;
    (deps.wake)();
    let kept = deps
        .pool
        .with_retry(|c| records::kept_jobs(c, &new))
        .unwrap_or_default();
    log::info!(
        "run {new}: re-run of run {run_id} (workflow {}, {}), {}",
        previous.workflow,
        ask.triggered_by,
        if ask.failed_only {
            "failed jobs only"
        } else {
            "every job"
        }
    );
    Ok(answer(new, false, failure, kept))
}

/// What a replay did: the runs it started and the delivery's outcome as now recorded.
#[derive(Debug, Clone)]
pub struct Replayed {
    pub event_log_id: String,
    pub delivery_id: String,
    pub runs: Vec<String>,
    /// The event-log entry after the replay: status, error and decision traces.
    pub status: String,
    pub error: Option<String>,
    pub decisions: Value,
}

/// Processes delivery `id` (its delivery id or event-log id) again with the lock file as it is
/// now at the delivery's commit; `key` and `triggered_by` are recorded on the runs it starts.
/// `scope`: the routing key the caller is restricted to, if any.
pub fn replay(
    deps: &Deps,
    id: &str,
    key: &str,
    triggered_by: &str,
    scope: Option<&str>,
) -> Result<Replayed, RerunError> {
    let found = deps.pool.with_retry(|c| records::delivery(c, id))?;
    let recorded = match found.len() {
        0 => return Err(RerunError::UnknownDelivery(id.to_owned())),
        1 => found
            .into_iter()
            .next()
            .ok_or_else(|| RerunError::UnknownDelivery(id.to_owned()))?,
        _ => return Err(RerunError::AmbiguousDelivery(id.to_owned())),
    };
    if scope.is_some_and(|k| k != recorded.work.routing_key) {
        return Err(RerunError::OutOfScope);
    }
    if !super::process::has_repository(&recorded.work.provider) {
        return Err(RerunError::NoRepository(recorded.work.delivery_id.clone()));
    }
    if matches!(recorded.status.as_str(), "received" | "processing") {
        return Err(RerunError::NotProcessed {
            delivery: recorded.work.delivery_id.clone(),
            status: recorded.status.clone(),
        });
    }
    let work: Work = recorded.work()?;
    let again = Again {
        store: StoreAgain {
            key: key.to_owned(),
            triggered_by: Some(triggered_by.to_owned()),
            ..StoreAgain::default()
        },
        previous_jobs: None,
    };
    let runs = evaluate(deps, &work, Some(&again))?;
    let (status, error, decisions) = deps
        .pool
        .with_retry(|c| records::outcome(c, &work.event_log_id))?;
    log::info!(
        "delivery {}: replayed ({triggered_by}): {status}, {} run(s)",
        work.delivery_id,
        runs.len()
    );
    Ok(Replayed {
        event_log_id: work.event_log_id,
        delivery_id: work.delivery_id,
        runs,
        status,
        error,
        decisions,
    })
}

/// A failed-only rerun's first wave (pure): the jobs queued at once, and the jobs recorded as
/// ended when the run is created with their status and reason. A job is run again when it did
/// not pass in `previous` (failed, cancelled, skipped, timed out, or new in the lock file), and
/// so is everything downstream of such a job; the others passed and are kept as `success`
/// without running. A job whose needs can no longer hold once those are known is `skipped`.
pub fn wave(plan: &Plan, previous: &PreviousJobs) -> Wave {
    let names: Vec<&str> = plan.jobs.iter().map(|j| j.name.as_str()).collect();
    wave_of(&names, &plan.needs, previous)
}

/// The jobs queued at once, and those recorded as ended at creation with status and reason.
pub type Wave = (Vec<String>, BTreeMap<String, (JobStatus, String)>);

/// [`wave`] over the plan's job names and `needs` edges.
pub fn wave_of(jobs: &[&str], needs: &[NeedsEdge], previous: &PreviousJobs) -> Wave {
    let mut again: BTreeSet<String> = jobs
        .iter()
        .filter(|j| previous.statuses.get(**j) != Some(&JobStatus::Success))
        .map(|j| (*j).to_owned())
        .collect();
    // Downstream of a job that runs again: its inputs change, so it runs again too.
    loop {
        let more: Vec<String> = needs
            .iter()
            .filter(|e| again.contains(&e.upstream) && !again.contains(&e.job))
            .map(|e| e.job.clone())
            .collect();
        if more.is_empty() {
            break;
        }
        again.extend(more);
    }
    let mut ended = BTreeMap::new();
    let mut statuses = BTreeMap::new();
    for name in jobs {
        let name = (*name).to_owned();
        if again.contains(&name) {
            statuses.insert(name, JobStatus::Pending);
        } else {
            let why = format!(
                "passed in run {}; kept, not run again (failed-only rerun)",
                previous.run_id
            );
            statuses.insert(name.clone(), JobStatus::Success);
            ended.insert(name, (JobStatus::Success, why));
        }
    }
    let verdict = readiness(needs, &statuses);
    for name in verdict.skipped {
        let why = crate::runs::store::runs::SKIPPED_BY_NEEDS.to_owned();
        ended.insert(name, (JobStatus::Skipped, why));
    }
    (verdict.ready, ended)
}

#[cfg(test)]
#[path = "rerun_tests.rs"]
mod tests;
