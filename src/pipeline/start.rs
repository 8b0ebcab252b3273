//! Starting a run for a matched workflow (docs/architecture.md, "Planning"): the plan becomes a
//! run row and its jobs, the first wave queued and the rest waiting for their needs, once per
//! delivery, workflow and processing (a repeat after a crash finds the run it already started).

use serde_json::Value;

use super::{
    dispatch::dispatch_body,
    event::NormalizedEvent,
    lockfile::{LockFile, LockWorkflow},
    origin::Origin,
    plan::{plan_workflow, LabelPattern, Plan},
    process::{Deps, PipelineError, Work},
    rerun::Again,
};
use crate::runs::{
    events::{now_ms, RunEvent},
    lifecycle::{self, Effect, Event, QueueRow},
    needs::run_on_text,
    requirements::{Pattern, Requirements},
    state::{JobStatus, RunStatus},
    store::{
        queue::NewJob,
        runs::{
            create_run, create_run_again, failed_run, failed_run_again, Created, FailedRun, NewRun,
        },
    },
};

/// The run's id, with the reason when it was recorded as failed before any job was created.
#[allow(clippy::too_many_arguments)]
pub(super) fn start_run(
    deps: &Deps,
    work: &Work,
    lock: &LockFile,
    wf: &LockWorkflow,
    event: &NormalizedEvent,
    origin: &Origin,
    trace: Value,
    again: Option<&Again>,
) -> Result<(String, Option<String>), PipelineError> {
    let failed = |reason: &str| {
        let failed = FailedRun {
            workflow: &wf.name,
            reason,
            scope: "run",
            delivery_id: &work.delivery_id,
            routing_key: Some(&work.routing_key),
            repo: event.repo.as_deref(),
            sha: Some(&event.sha),
        };
        deps.pool
            .with_retry(|c| match again {
                Some(a) => failed_run_again(c, &failed, &a.store),
                None => failed_run(c, &failed),
            })
            .map_err(PipelineError::Db)
    };
    let refused = |reason: String| failed(&reason).map(|run| (run, Some(reason)));
    if let Some(reason) = &wf.init_failure {
        return refused(reason.clone());
    }
    let plan = match plan_workflow(wf, deps.max_jobs_per_run) {
        Ok(p) => p,
        Err(e) => return refused(e.to_string()),
    };
    let run_id = crate::crypto::random_uuid();
    // A failed-only rerun records the jobs that passed before as ended (src/pipeline/rerun.rs).
    let (ready, mut ended) = match again.and_then(|a| a.previous_jobs.as_ref()) {
        Some(previous) => super::rerun::wave(&plan, previous),
        None => (first_wave(&plan), Default::default()),
    };
    let mut store = again.map(|a| a.store.clone()).unwrap_or_default();
    let (mut now, mut later) = (Vec::new(), Vec::new());
    for job in &plan.jobs {
        let new = NewJob {
            id: crate::crypto::random_uuid(),
            run_id: run_id.clone(),
            workflow_name: wf.name.clone(),
            job_name: job.name.clone(),
            dispatch: dispatch_body(lock, wf, job, event, origin),
            requirements: Requirements {
                labels: job.runs_on_labels.clone(),
                patterns: patterns(&job.runs_on_patterns),
                exclude_labels: job.exclude_labels.clone(),
                exclude_patterns: patterns(&job.exclude_patterns),
            },
            routing_key: Some(work.routing_key.clone()),
        };
        if let Some((status, why)) = ended.remove(&job.name) {
            store.ended.push((new, status, why));
        } else if ready.contains(&job.name) {
            now.push(new);
        } else {
            later.push(new);
        }
    }
    let mut needs: Vec<(String, String, String)> = plan
        .needs
        .iter()
        .map(|n| (n.job.clone(), n.upstream.clone(), run_on_text(&n.run_on)))
        .collect();
    let join = deps.caches.as_ref().and_then(|c| {
        crate::caches::add_build_job(
            c, &deps.pool, &run_id, &wf.name, &mut now, &mut later, &mut needs,
        )
    });
    let run = NewRun {
        run_id: run_id.clone(),
        workflow_name: wf.name.clone(),
        provider: Some(work.provider.clone()),
        routing_key: Some(work.routing_key.clone()),
        repo: event.repo.clone(),
        git_ref: Some(
            event
                .source_branch
                .clone()
                .unwrap_or_else(|| event.target_branch.clone()),
        ),
        sha: Some(event.sha.clone()),
        delivery_id: Some(work.delivery_id.clone()),
        trigger_event: Some(event.kind.as_str().to_owned()),
        trigger_decision: Some(trace),
        jobs: now,
        waiting: later,
        needs,
    };
    // Safe to repeat (see `create_run`): a retry after a lost commit finds this run.
    // The run's turn from before it exists, so its `pending` precedes its first claim.
    let turn = deps.events.turn(&run_id);
    let created = deps.pool.with_retry(|c| match again {
        Some(_) => create_run_again(c, &run, &store),
        None => create_run(c, &run),
    })?;
    if let Created::Existing(existing) = created {
        log::info!(
            "delivery {}: run {existing} of workflow {} already exists; not queued again",
            work.delivery_id,
            wf.name
        );
        return Ok((existing, None));
    }
    if work.provider != "github" {
        if let Some(checks) = &deps.checks {
            checks.reports_nowhere(&run_id);
        }
    }
    deps.events
        .publish_one(&turn, RunEvent::run(&run_id, "pending", now_ms()));
    // Jobs a failed-only rerun recorded as ended: subscribers see their status like any end.
    for (job, status, _) in &store.ended {
        let ended = RunEvent::job(&run_id, &job.id, &job.job_name, status.as_str(), now_ms());
        deps.events.publish_one(&turn, ended);
    }
    drop(turn);
    if let Some(join) = &join {
        crate::caches::after_created(&deps.pool, &deps.events, deps.wake.as_ref(), join);
    }
    log::info!(
        "run {run_id}: workflow {} with {} job(s)",
        wf.name,
        plan.jobs.len()
    );
    Ok((run_id, None))
}

/// The jobs of a new run that are queued at once (the lifecycle's `Created` rule); the others
/// wait for their needs.
fn first_wave(plan: &Plan) -> Vec<String> {
    let run = lifecycle::Run {
        status: Some(RunStatus::Pending),
        jobs: plan
            .jobs
            .iter()
            .map(|j| {
                let job = lifecycle::Job {
                    id: String::new(),
                    status: JobStatus::Pending,
                    queue: QueueRow::Waiting,
                    steps: Default::default(),
                };
                (j.name.clone(), job)
            })
            .collect(),
        needs: plan.needs.clone(),
    };
    lifecycle::apply(&run, &Event::Created)
        .into_iter()
        .filter_map(|e| match e {
            Effect::Queue { job } => Some(job),
            _ => None,
        })
        .collect()
}

/// The lock file's regex matchers with their flags, as the queue stores them.
fn patterns(from: &[LabelPattern]) -> Vec<Pattern> {
    from.iter()
        .map(|p| Pattern {
            source: p.source.clone(),
            flags: p.flags.clone(),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn lock_file_regex_flags_reach_the_queue() {
        let from = [super::LabelPattern {
            source: "^linux".into(),
            flags: "i".into(),
        }];
        let got = super::patterns(&from);
        assert_eq!(
            (got[0].source.as_str(), got[0].flags.as_str()),
            ("^linux", "i")
        );
    }
}
