//! Source and dependency caches through storage (docs/caches.md): the `__build__` job that
//! makes a workflow's tarballs when they are not cached (`build`: the job as data; `planning`:
//! added to a run at planning, one build shared by the runs that need it; `claims`: the durable
//! claims in PostgreSQL), and the presigned tarball URLs in each execution job's dispatch
//! (`dispatch`); and the workflow caches of `ctx.cache` (`user`: namespaces and quota, pure;
//! `user_store`: restore, save and commit in storage); and what they hold (`usage`).

pub mod build;
pub mod claims;
pub mod dispatch;
pub mod planning;
pub mod usage;
pub mod user;
pub mod user_store;

use crate::{
    db::Pool,
    runs::{events::Events, lifecycle::Effect, state::JobStatus, store::jobs::Outcome},
};

use serde_json::Value;

pub use dispatch::add_tarball_urls;
pub use planning::{add_build_job, after_created, CachePlanning, PendingJoin};

/// After jobs ended: a `__build__` job that built (or failed to build) a claimed build ends the
/// build, and with it the waiting runs' own build jobs, the same way (a failure carries this
/// build's reason). `wake` is called when jobs were queued.
pub fn on_jobs_ended(pool: &Pool, events: &Events, wake: &dyn Fn(), outcome: &Outcome) {
    let Some(run_id) = &outcome.run_id else {
        return;
    };
    for (effect, who) in &outcome.effects {
        let (Effect::JobEnded { status, .. }, Some((job_id, name))) = (effect, who) else {
            continue;
        };
        if !build::is_build_job(name) {
            continue;
        }
        let built = *status == JobStatus::Success;
        let reason = (!built).then(|| {
            let error = pool
                .with_retry(|c| claims::job_error(c, job_id))
                .ok()
                .flatten();
            planning::failed_reason(run_id, status.as_str(), error.as_deref())
        });
        let waiters =
            match pool.with_retry(|c| claims::resolve(c, job_id, built, reason.as_deref())) {
                Ok(w) => w,
                Err(e) => {
                    log::warn!("ending the cache build of job {job_id} failed: {e}");
                    continue;
                }
            };
        let (status, reason) = if built {
            ("success", None)
        } else {
            ("failed", reason.as_deref())
        };
        for w in waiters {
            planning::end_waiter(pool, events, wake, &w.run_id, &w.job_id, status, reason);
        }
    }
}

/// `runs show`: whether a job started from cache, per tarball (`    cache: source hit, deps
/// miss`); nothing for a job dispatched without tarballs.
pub fn cache_line(job: &Value) -> Option<String> {
    let cache = job.get("cache")?.as_object()?;
    let parts: Vec<String> = ["source", "deps"]
        .iter()
        .filter_map(|kind| {
            let hit = cache.get(*kind)?.as_bool()?;
            Some(format!("{kind} {}", if hit { "hit" } else { "miss" }))
        })
        .collect();
    (!parts.is_empty()).then(|| format!("    cache: {}", parts.join(", ")))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    #[test]
    fn the_cache_line_says_hit_or_miss_per_tarball() {
        let job = json!({"cache": {"deps": false, "source": true}});
        assert_eq!(
            super::cache_line(&job).as_deref(),
            Some("    cache: source hit, deps miss")
        );
        assert_eq!(super::cache_line(&json!({"cache": null})), None);
        assert_eq!(super::cache_line(&json!({})), None);
    }
}
