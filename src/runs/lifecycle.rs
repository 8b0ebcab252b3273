//! The run lifecycle as a pure function: `(a run's current state, an event) → effects`. No I/O,
//! no clock: the store (`super::store`) reads the state under the run's row lock, asks
//! [`apply`], writes the effects in the same transaction and publishes them
//! (`super::events`). So "a job ended: which downstream jobs are queued or skipped, does the
//! run end" is decided here, once, and tested as a table.
//!
//! Rules (docs/architecture.md, "Runs and run events"):
//! - a new run queues the jobs without `needs` at once; the others wait;
//! - a job's first `running` starts it, and its run when the run was `pending`;
//! - a claimed job (its queue row `dispatched` to an agent) is held by that agent; a claim changes
//!   no job status, and is decided from the claimed row alone (see [`Run::claimed`]);
//! - a terminal job status is final: the same status again is a replay (no effect), another one
//!   is ignored; any live status may end in any terminal one;
//! - a step's reported status is recorded unless the step is terminal (steps never go back) or
//!   already has that status (an identical replay); a step not recorded yet is recorded;
//! - when a job ends, every waiting job whose `needs` now all hold is queued, and every one with
//!   an upstream that ended in a status its edge does not accept is skipped, cascading;
//! - a run ends when every job is terminal and none of its queue rows is live, with the status
//!   `state::aggregate_run_status` gives.

use std::collections::BTreeMap;

use super::{
    needs::{readiness, NeedsEdge},
    state::{aggregate_run_status, step_is_terminal, JobStatus, RunStatus},
};

/// Where a job's queue row is (`dispatch_queue.status`), as far as the lifecycle cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueueRow {
    /// `waiting`: for its needs.
    Waiting,
    /// `pending`, `dispatched` or `recovering`.
    Live,
    /// Finished (`completed`, `failed`, `cancelled`, `skipped`, `expired`), or none.
    Done,
}

impl QueueRow {
    pub fn from_status(status: Option<&str>) -> QueueRow {
        match status {
            Some("waiting") => QueueRow::Waiting,
            Some("pending" | "dispatched" | "recovering") => QueueRow::Live,
            _ => QueueRow::Done,
        }
    }
}

/// One job of the run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Job {
    pub id: String,
    pub status: JobStatus,
    pub queue: QueueRow,
    /// Its steps' recorded statuses by index, as far as they were read: the reported step for a
    /// step change, none otherwise.
    pub steps: BTreeMap<i32, String>,
}

/// A run as the lifecycle sees it: its status, its jobs by name, its `needs` edges.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Run {
    /// `None` for a status outside [`RunStatus`] (`cancelling`, `held`).
    pub status: Option<RunStatus>,
    pub jobs: BTreeMap<String, Job>,
    pub needs: Vec<NeedsEdge>,
}

impl Run {
    /// What a claim knows: the claimed queue row alone (the job `job_id` named `job`, its row
    /// live, its job still `pending`); the run's own row is neither read nor locked, so a claim
    /// costs no more than its `UPDATE`.
    pub fn claimed(job: &str, job_id: &str) -> Run {
        let claimed = Job {
            id: job_id.to_owned(),
            status: JobStatus::Pending,
            queue: QueueRow::Live,
            steps: BTreeMap::new(),
        };
        Run {
            status: None,
            jobs: BTreeMap::from([(job.to_owned(), claimed)]),
            needs: Vec::new(),
        }
    }
}

/// What happened to a run or one of its jobs (by name).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// The run is being created (every job `pending`, its queue row not yet `pending`): which
    /// jobs are queued at once, the others waiting for their needs.
    Created,
    /// The job's queue row was claimed for (dispatched to) `agent`.
    Claimed { job: String, agent: String },
    /// An agent reported the job running (first time, or again after a reconnect).
    Started { job: String },
    /// The job ended (agent report, cancel, lost agent, exhausted attempts, staleness, skip).
    Ended { job: String, status: JobStatus },
    /// An agent reported step `step` of the job in `status` (the agent's spelling).
    StepChanged {
        job: String,
        step: i32,
        status: String,
    },
}

/// What to write, and then publish, in this order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Effect {
    /// The job is held by `agent` (its queue row is already `dispatched`: nothing to write).
    JobClaimed { job: String, agent: String },
    /// The step's row records `status` (created when the step was not recorded yet).
    StepChanged {
        job: String,
        step: i32,
        status: String,
    },
    /// The job is now `running`.
    JobStarted { job: String },
    /// The run went from `pending` to `running`.
    RunStarted,
    /// The job ended with this status (its unfinished steps end with it).
    JobEnded { job: String, status: JobStatus },
    /// The waiting job's needs all hold: its queue row becomes `pending`.
    Queue { job: String },
    /// The waiting job can never run: its queue row becomes `skipped` (a `JobEnded` follows).
    Skip { job: String },
    /// Every job is terminal and nothing is queued: the run ends with this status.
    RunEnded { status: RunStatus },
}

/// The effects of `event` on `run`; none for an unknown job, a replay or an ignored report.
pub fn apply(run: &Run, event: &Event) -> Vec<Effect> {
    match event {
        Event::Created => {
            let statuses: BTreeMap<String, JobStatus> = run
                .jobs
                .keys()
                .map(|name| (name.clone(), JobStatus::Pending))
                .collect();
            readiness(&run.needs, &statuses)
                .ready
                .into_iter()
                .map(|job| Effect::Queue { job })
                .collect()
        }
        Event::Claimed { job, agent } => match run.jobs.get(job) {
            Some(j) if j.queue == QueueRow::Live && !j.status.is_terminal() => {
                vec![Effect::JobClaimed {
                    job: job.clone(),
                    agent: agent.clone(),
                }]
            }
            _ => Vec::new(),
        },
        Event::StepChanged { job, step, status } => {
            let Some(j) = run.jobs.get(job) else {
                return Vec::new();
            };
            match j.steps.get(step) {
                Some(recorded) if recorded == status || step_is_terminal(recorded) => Vec::new(),
                _ => vec![Effect::StepChanged {
                    job: job.clone(),
                    step: *step,
                    status: status.clone(),
                }],
            }
        }
        Event::Started { job } => match run.jobs.get(job) {
            Some(j) if !j.status.is_terminal() && j.status != JobStatus::Running => {
                let mut out = vec![Effect::JobStarted { job: job.clone() }];
                if run.status == Some(RunStatus::Pending) {
                    out.push(Effect::RunStarted);
                }
                out
            }
            _ => Vec::new(),
        },
        Event::Ended { job, status } => {
            let Some(j) = run.jobs.get(job) else {
                return Vec::new();
            };
            if j.status.is_terminal() || !status.is_terminal() {
                return Vec::new();
            }
            let mut next = run.clone();
            if let Some(j) = next.jobs.get_mut(job) {
                j.status = *status;
                j.queue = match j.queue {
                    // The ended job's own waiting row can never be dispatched any more.
                    QueueRow::Waiting => QueueRow::Done,
                    other => other,
                };
            }
            let mut out = vec![Effect::JobEnded {
                job: job.clone(),
                status: *status,
            }];
            out.extend(settle(&mut next));
            out
        }
    }
}

/// Moves the `needs` graph on after a job ended, and ends the run when nothing is left.
fn settle(run: &mut Run) -> Vec<Effect> {
    let mut out = Vec::new();
    let statuses: BTreeMap<String, JobStatus> = run
        .jobs
        .iter()
        .map(|(name, j)| (name.clone(), j.status))
        .collect();
    let verdict = readiness(&run.needs, &statuses);
    for name in &verdict.ready {
        if let Some(j) = run
            .jobs
            .get_mut(name)
            .filter(|j| j.queue == QueueRow::Waiting)
        {
            j.queue = QueueRow::Live;
            out.push(Effect::Queue { job: name.clone() });
        }
    }
    for name in &verdict.skipped {
        if let Some(j) = run
            .jobs
            .get_mut(name)
            .filter(|j| j.queue == QueueRow::Waiting)
        {
            j.queue = QueueRow::Done;
            j.status = JobStatus::Skipped;
            out.push(Effect::Skip { job: name.clone() });
            out.push(Effect::JobEnded {
                job: name.clone(),
                status: JobStatus::Skipped,
            });
        }
    }
    let all_terminal = run.jobs.values().all(|j| j.status.is_terminal());
    let nothing_queued = run.jobs.values().all(|j| j.queue == QueueRow::Done);
    let open = !matches!(
        run.status,
        Some(RunStatus::Success | RunStatus::Failed | RunStatus::Cancelled)
    );
    if !run.jobs.is_empty() && all_terminal && nothing_queued && open {
        let statuses: Vec<JobStatus> = run.jobs.values().map(|j| j.status).collect();
        out.push(Effect::RunEnded {
            status: aggregate_run_status(&statuses),
        });
    }
    out
}

#[cfg(test)]
#[path = "lifecycle_tests.rs"]
mod tests;
