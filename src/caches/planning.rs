//! The build job at planning (docs/caches.md, "The build job"): when a new run's tarballs are
//! fresh in storage it is planned as usual; when one is missing or expired, a `__build__` job is
//! added and every execution job needs it. The first run to miss builds; a run missing the same
//! tarballs meanwhile gets a `__build__` job that is never dispatched and ends as the building
//! one does (`super::on_jobs_ended`).

use std::sync::Arc;

use super::{
    build::{build_dispatch, build_job_name, Tarballs, TARBALLS_KEY},
    claims::{self, Joined},
};
use crate::{
    db::Pool,
    runs::{
        events::Events,
        needs::run_on_text,
        requirements::Requirements,
        state::JobStatus,
        store::{jobs, queue::NewJob},
    },
    storage::{Storage, StorageError},
};

/// What the pipeline passes in: the store and whether build jobs are on
/// (`KICI_CACHE_BUILD_JOBS`).
#[derive(Clone)]
pub struct CachePlanning {
    pub storage: Arc<Storage>,
    pub build_jobs: bool,
}

/// A run that joined another run's build: settled once the run exists ([`after_created`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingJoin {
    pub build_key: String,
    pub run_id: String,
    pub job_id: String,
}

/// Whether every tarball of `t` is fresh (each hit renews the entry's last access).
fn all_fresh(storage: &Storage, t: &Tarballs) -> Result<bool, StorageError> {
    let now = jiff::Timestamp::now();
    if storage.cached_head(&t.source_key(), now)?.is_none() {
        return Ok(false);
    }
    if let Some((deps, hash)) = t.deps_keys() {
        if storage.cached_head(&deps, now)?.is_none() || storage.cached_head(&hash, now)?.is_none()
        {
            return Ok(false);
        }
    }
    Ok(true)
}

/// Adds the build job to a run being planned when its tarballs are not all cached. `now` are
/// the jobs queued at once, `later` those waiting, `needs` the edges (job, upstream, run-on).
/// Returns the join to settle once the run is created, when another run builds the tarballs.
pub fn add_build_job(
    cfg: &CachePlanning,
    pool: &Pool,
    run_id: &str,
    workflow: &str,
    now: &mut Vec<NewJob>,
    later: &mut Vec<NewJob>,
    needs: &mut Vec<(String, String, String)>,
) -> Option<PendingJoin> {
    let first = now.first().or(later.first())?.clone();
    let t = Tarballs::of(&first.dispatch, &first.requirements.labels)?;
    // Each job's own platform: a job on another platform than the first gets no deps URL for a
    // tarball built for the first (a miss: it installs inline), but the same source tarball.
    for job in now.iter_mut().chain(later.iter_mut()) {
        if let Some(own) = Tarballs::of(&job.dispatch, &job.requirements.labels) {
            job.dispatch[TARBALLS_KEY] = own.to_value();
        }
    }
    if !cfg.build_jobs {
        return None;
    }
    match all_fresh(&cfg.storage, &t) {
        Ok(true) => return None,
        Ok(false) => {}
        Err(e) => {
            log::warn!(
                "run {run_id}: cannot read the cache ({e}); its jobs start without tarballs and \
                 no build job is added"
            );
            return None;
        }
    }
    let build = NewJob {
        id: crate::crypto::random_uuid(),
        run_id: run_id.to_owned(),
        workflow_name: workflow.to_owned(),
        job_name: build_job_name(workflow),
        dispatch: build_dispatch(&first.dispatch, workflow, &t),
        requirements: Requirements {
            labels: t.builder_labels(),
            ..Requirements::default()
        },
        routing_key: first.routing_key.clone(),
    };
    let build_key = t.build_key();
    let owns = match pool.with_retry(|c| claims::claim(c, &build_key, run_id, &build.id)) {
        Ok(owns) => owns,
        Err(e) => {
            log::warn!(
                "run {run_id}: claiming the build of {build_key} failed ({e}); building it anyway"
            );
            true
        }
    };
    let success = run_on_text(&[JobStatus::Success]);
    for job in now.iter().chain(later.iter()) {
        needs.push((
            job.job_name.clone(),
            build.job_name.clone(),
            success.clone(),
        ));
    }
    later.append(now);
    let join = (!owns).then(|| PendingJoin {
        build_key,
        run_id: run_id.to_owned(),
        job_id: build.id.clone(),
    });
    if owns {
        log::info!(
            "run {run_id}: tarballs of {workflow} not cached; {} builds them",
            build.job_name
        );
        now.push(build);
    } else {
        log::info!(
            "run {run_id}: tarballs of {workflow} are being built by another run; waiting for it"
        );
        later.push(build);
    }
    join
}

/// Settles a join once its run exists: records the waiter, or, when the build ended meanwhile,
/// ends this run's build job the same way.
pub fn after_created(pool: &Pool, events: &Events, wake: &dyn Fn(), join: &PendingJoin) {
    let joined = pool.with_retry(|c| claims::join(c, &join.build_key, &join.run_id, &join.job_id));
    let (status, reason) = match joined {
        Ok(Joined::Waiting) => return,
        Ok(Joined::Built) => ("success", None),
        Ok(Joined::Failed(why)) => ("failed", Some(why)),
        Err(e) => (
            "failed",
            Some(format!("waiting for the cache build failed: {e}")),
        ),
    };
    end_waiter(
        pool,
        events,
        wake,
        &join.run_id,
        &join.job_id,
        status,
        reason.as_deref(),
    );
}

/// Ends a waiting run's `__build__` job (its queue row and the job), moving its run on.
pub fn end_waiter(
    pool: &Pool,
    events: &Events,
    wake: &dyn Fn(),
    run_id: &str,
    job_id: &str,
    status: &str,
    reason: Option<&str>,
) {
    let queue_status = if status == "success" {
        "completed"
    } else {
        status
    };
    let turn = events.turn(run_id);
    let ended = pool.with_retry(|c| {
        crate::runs::store::queue::finish(c, job_id, queue_status)?;
        jobs::job_terminal(c, job_id, status, reason, 0)
    });
    match ended {
        Ok(outcome) => {
            crate::runs::publish(events, &turn, &outcome);
            if outcome.queued() > 0 {
                wake();
            }
        }
        Err(e) => log::warn!("ending the waiting build job {job_id} failed: {e}"),
    }
}

/// The reason waiters of a failed build are given.
pub fn failed_reason(run_id: &str, status: &str, error: Option<&str>) -> String {
    let mut why = format!("the build job of run {run_id} ended {status}");
    if let Some(e) = error.filter(|e| !e.is_empty()) {
        why.push_str(": ");
        why.push_str(e);
    }
    why
}
