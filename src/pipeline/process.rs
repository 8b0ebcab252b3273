//! From a recorded delivery to queued jobs (docs/architecture.md, "Data path"), on worker threads
//! so webhook answers never wait for GitHub: normalize → read `.kici/kici.lock.json` at the event's
//! commit (GitHub Contents API with an installation token, or a local repository's working tree) →
//! validate → changed files when a trigger filters paths → match → plan → one run per matched
//! workflow with its jobs queued → the agents are woken. The delivery's event-log entry records the
//! outcome and every workflow's decision trace, also when nothing matched.

use std::{
    any::Any,
    fmt,
    panic::{self, AssertUnwindSafe},
    sync::{mpsc, Arc, Mutex},
};

use serde_json::{json, Value};

use super::{
    cache::LockCache,
    event::{normalize_generic, normalize_github, normalize_local, NormalizedEvent},
    lease::{self, SweepVerdict},
    lockfile::parse_and_validate,
    matcher::{match_all, needs_changed_files},
    mint::Mint,
    origin::{changed_files, origin, read_lock},
    records,
    rerun::Again,
};
use crate::{
    crypto::SecretBox,
    db::{DbError, Pool},
    github::{repo, GitHubApi},
    runs::{
        events::Events,
        store::runs::{failed_run, failed_run_again, FailedRun},
        Waker,
    },
    sources::registry::{GenericSource, SourceRegistry},
};

pub(super) use super::origin::Origin;
pub(super) use super::start::start_run;

pub const LOCK_PATH: &str = ".kici/kici.lock.json";

/// Whether a provider's deliveries name a repository, hence a lock file to read (GitHub and
/// local sources; a plain generic source has none, so the pipeline has nothing to do).
pub fn has_repository(provider: &str) -> bool {
    provider == "github" || provider == "local"
}

/// A delivery the recorder committed (direct or relayed).
#[derive(Debug, Clone)]
pub struct Work {
    pub event_log_id: String,
    pub delivery_id: String,
    pub routing_key: String,
    /// `github`, `generic` or `local`.
    pub provider: String,
    pub event: Option<String>,
    pub action: Option<String>,
    pub body: Vec<u8>,
}

pub struct Deps {
    pub locks: LockCache,
    pub pool: Pool,
    pub secrets: SecretBox,
    pub github: GitHubApi,
    /// Shared with the agent link's minter (`mint::Mint`), so a job's token for the repository
    /// the pipeline just read may come from the cache.
    pub tokens: Arc<repo::InstallationTokens>,
    pub registry: Arc<SourceRegistry>,
    /// Wakes the agents' dispatcher once jobs are queued.
    pub wake: Waker,
    /// Where a new run is announced (the Platform forwarder subscribes).
    pub events: Arc<Events>,
    /// `KICI_MAX_JOBS_PER_RUN`: a matched workflow planning more jobs is a failed run.
    pub max_jobs_per_run: usize,
    /// With storage: the source and dependency caches (a `__build__` job when they miss).
    pub caches: Option<crate::caches::CachePlanning>,
    /// The check reporter's wake-up: told when an installation accepts new permissions, and
    /// which runs started here report nowhere.
    pub checks: Option<Arc<crate::checks::Wake>>,
}

/// Deliveries waiting for a worker, at most: beyond, they stay `received` in the event log and
/// the sweep (`Pipeline::sweep`) hands them over later — the event log is the durable queue.
const QUEUE_LIMIT: usize = 10_000;

pub struct Pipeline {
    tx: Mutex<mpsc::SyncSender<Work>>,
    /// Also used by reruns and replays, which process a recorded delivery again on the
    /// requester's thread (src/pipeline/rerun.rs).
    deps: Arc<Deps>,
}

impl Pipeline {
    pub fn start(deps: Arc<Deps>, workers: usize) -> Pipeline {
        let (tx, rx) = mpsc::sync_channel::<Work>(QUEUE_LIMIT);
        let rx = Arc::new(Mutex::new(rx));
        let shared = deps.clone();
        for i in 0..workers.max(1) {
            let (rx, deps) = (rx.clone(), deps.clone());
            // `handle` catches a panic per delivery; the supervisor is the net under that net
            // (a panic in the worker loop itself). The loop ends when the sender is dropped.
            let spawned = crate::supervise::spawn(
                &format!("pipeline-{i}"),
                || false,
                move || loop {
                    let next = rx.lock().unwrap_or_else(|p| p.into_inner()).recv();
                    let Ok(work) = next else { return };
                    handle(&deps, &work);
                },
            );
            if let Err(e) = spawned {
                log::error!("cannot start a pipeline worker: {e}");
            }
        }
        Pipeline {
            tx: Mutex::new(tx),
            deps: shared,
        }
    }

    /// What processing a delivery needs (reruns and replays use it too).
    pub fn deps(&self) -> &Deps {
        &self.deps
    }

    /// Hands a recorded delivery to the workers without ever blocking the webhook's thread.
    /// Only deliveries of [`has_repository`] providers are worth submitting.
    pub fn submit(&self, work: Work) {
        if let Err(mpsc::TrySendError::Full(w)) = self
            .tx
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .try_send(work)
        {
            log::warn!(
                "pipeline queue full: delivery {} waits for the sweep",
                w.delivery_id
            );
        }
    }

    /// Resubmits GitHub and local deliveries that missed their worker (a full queue, a restart
    /// before processing) or whose claim expired (a worker crashed mid-way), and fails those out
    /// of attempts: nothing accepted is left unprocessed, nothing is retried forever
    /// (`lease::verdict`).
    pub fn sweep(&self, pool: &Pool) {
        let found = match pool.with_retry(|c| records::unfinished(c, 500)) {
            Ok(found) => found,
            Err(e) => return log::warn!("pipeline sweep failed: {e}"),
        };
        let mut resubmitted = 0;
        for (seen, work) in found {
            match lease::verdict(&seen) {
                SweepVerdict::Leave => {}
                SweepVerdict::Resubmit => {
                    resubmitted += 1;
                    self.submit(work);
                }
                SweepVerdict::GiveUp(why) => {
                    match pool.with_retry(|c| records::give_up(c, &work.event_log_id, &seen, &why))
                    {
                        Ok(true) => log::warn!("delivery {} failed: {why}", work.delivery_id),
                        Ok(false) => {}
                        Err(e) => log::warn!(
                            "delivery {}: recording the failure failed: {e}",
                            work.delivery_id
                        ),
                    }
                }
            }
        }
        if resubmitted > 0 {
            log::info!("pipeline sweep: {resubmitted} delivery(ies) handed to the workers again");
        }
    }
}

impl Deps {
    /// Mints installation tokens with this pipeline's key store and cache.
    pub fn mint(&self) -> Mint {
        Mint {
            pool: self.pool.clone(),
            secrets: self.secrets.clone(),
            github: self.github.clone(),
            tokens: self.tokens.clone(),
            registry: self.registry.clone(),
        }
    }
}

/// Processes one delivery; whatever goes wrong, including a panic, ends it `failed` with the
/// reason instead of leaving it `processing` (the sweep would hand it over again after every
/// restart) or ending the worker thread.
fn handle(deps: &Deps, work: &Work) {
    let id = &work.delivery_id;
    let _ids = crate::logging::ids(&[("deliveryId", id)]);
    // Unwind safety: a panic abandons only this delivery's locals; `deps` is shared state
    // behind its own locks (the pool, the caches), which the next delivery uses as usual.
    let outcome = panic::catch_unwind(AssertUnwindSafe(|| process(deps, work)));
    let error = match outcome {
        Ok(Ok(())) => return,
        Ok(Err(e)) => {
            log::warn!("delivery {id}: pipeline failed: {e}");
            e.to_string()
        }
        Err(payload) => {
            let e = panicked(payload.as_ref());
            log::error!("delivery {id}: {e}");
            e
        }
    };
    crate::metrics::hooks::delivery_processed("failed", 0);
    let _ = deps.pool.with_retry(|c| {
        records::mark_delivery(
            c,
            &work.event_log_id,
            "failed",
            0,
            None,
            &json!([]),
            Some(&error),
        )
    });
}

/// The failure reason recorded for a delivery whose processing panicked.
fn panicked(payload: &(dyn Any + Send)) -> String {
    let message = payload
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| payload.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("(no message)");
    format!(
        "the pipeline panicked while processing this delivery: {message}; this is a bug in the \
         orchestrator, please report it with the delivery id"
    )
}

pub(super) fn db_err(e: DbError) -> String {
    e.to_string()
}

/// Why a delivery could not be processed (recorded as its failure reason).
#[derive(Debug)]
pub enum PipelineError {
    Db(DbError),
    /// The payload lacks what the pipeline needs (a repository, an installation).
    Payload(&'static str),
    /// The repository's origin or its lock file could not be read (GitHub, a local source).
    Source(String),
}

impl fmt::Display for PipelineError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PipelineError::Db(e) => e.fmt(f),
            PipelineError::Payload(m) => f.write_str(m),
            PipelineError::Source(m) => f.write_str(m),
        }
    }
}

impl std::error::Error for PipelineError {}

impl From<DbError> for PipelineError {
    fn from(e: DbError) -> PipelineError {
        PipelineError::Db(e)
    }
}

fn process(deps: &Deps, work: &Work) -> Result<(), PipelineError> {
    let claimed = deps
        .pool
        .with_retry(|c| records::claim_delivery(c, &work.event_log_id))?;
    let Some(attempt) = claimed else {
        return Ok(());
    };
    if attempt > 1 {
        log::info!(
            "delivery {}: processing again (attempt {attempt}); runs it already started are kept",
            work.delivery_id
        );
    }
    evaluate(deps, work, None).map(drop)
}

/// A delivery's payload and its normalized event, with the generic source it came through.
pub(super) fn normalized(
    deps: &Deps,
    work: &Work,
) -> (Value, NormalizedEvent, Option<Arc<GenericSource>>) {
    let payload: Value = serde_json::from_slice(&work.body).unwrap_or_else(|_| json!({}));
    let snapshot = deps.registry.snapshot();
    let generic = snapshot.generic_by_key(&work.routing_key).cloned();
    let event_name = work.event.clone().unwrap_or_default();
    let event = match (work.provider.as_str(), &generic) {
        ("github", _) => normalize_github(&event_name, work.action.as_deref(), &payload),
        ("local", _) => normalize_local(&event_name, &payload),
        (_, Some(src)) => normalize_generic(&src.id, &src.name, &event_name, &payload),
        _ => normalize_generic("", "", &event_name, &payload),
    };
    (payload, event, generic)
}

/// Everything after the claim: reads the lock file, matches, starts the runs and records the
/// outcome on the delivery's event-log entry; returns the runs started. `again` is set when the
/// delivery is processed again (a replay, or a GitHub re-run request: src/pipeline/rerun.rs).
pub(super) fn evaluate(
    deps: &Deps,
    work: &Work,
    again: Option<&Again>,
) -> Result<Vec<String>, PipelineError> {
    let (payload, mut event, generic) = normalized(deps, work);
    if super::rerun::is_rerequest(work, &payload) {
        return super::rerun::rerequested(deps, work, &payload);
    }
    let mark =
        |status: &str, matched: i32, run: Option<&str>, decisions: Value, error: Option<&str>| {
            crate::metrics::hooks::delivery_processed(status, matched);
            deps.pool
                .with_retry(|c| {
                    records::mark_delivery(
                        c,
                        &work.event_log_id,
                        status,
                        matched,
                        run,
                        &decisions,
                        error,
                    )
                })
                .map_err(PipelineError::Db)
        };
    if let Some(installation) = super::installation::permissions_accepted(work, &payload) {
        deps.tokens.forget_installation(installation);
        if let Some(checks) = &deps.checks {
            checks.unpark(&work.routing_key);
        }
        let why = super::installation::summary(installation);
        return mark("processed", 0, None, json!([{ "summary": why }]), None).map(|_| Vec::new());
    }
    if !event.kind.is_matchable() {
        let why = format!(
            "event {:?} is not one the pipeline matches",
            event.kind.as_str()
        );
        return mark("processed", 0, None, json!([{"summary": why}]), None).map(|_| Vec::new());
    }
    let origin = origin(deps, work, &event, generic.as_ref().map(|g| g.id.as_str()))
        .map_err(PipelineError::Source)?;
    let lock_bytes = read_lock(deps, &event, &origin)?;
    if matches!(origin, Origin::None) {
        let why = "a generic source without a repository: no lock file to match";
        return mark("processed", 0, None, json!([{ "summary": why }]), None).map(|_| Vec::new());
    }
    let Some(lock_bytes) = lock_bytes else {
        let why = format!(
            "no {LOCK_PATH} in {} at {}",
            event.repo.as_deref().unwrap_or("(no repository)"),
            event.sha
        );
        return mark("lockfile_missing", 0, None, json!([{"summary": why}]), None)
            .map(|_| Vec::new());
    };
    let lock = match parse_and_validate(&lock_bytes) {
        Ok(l) => l,
        Err(e) => {
            let reason = e.to_string();
            let failed = FailedRun {
                workflow: "(lock file)",
                reason: &reason,
                scope: "run",
                delivery_id: &work.delivery_id,
                routing_key: Some(&work.routing_key),
                repo: event.repo.as_deref(),
                sha: Some(&event.sha),
            };
            // Safe to repeat: a second try finds the run through its delivery.
            let run = deps.pool.with_retry(|c| match again {
                Some(a) => failed_run_again(c, &failed, &a.store),
                None => failed_run(c, &failed),
            })?;
            log::warn!("delivery {}: {reason}", work.delivery_id);
            return mark(
                "lockfile_corrupt",
                0,
                Some(&run),
                json!([{"summary": reason}]),
                Some(&reason),
            )
            .map(|_| vec![run]);
        }
    };
    if needs_changed_files(&lock.workflows, &event) {
        event.changed_files = Some(
            changed_files(deps, &origin, &event, &payload).unwrap_or_else(|e| {
                log::warn!(
                    "delivery {}: changed files unavailable ({e}); path filters see none",
                    work.delivery_id
                );
                Vec::new()
            }),
        );
    }
    let matching = std::time::Instant::now();
    let decisions = match_all(&lock.workflows, &event);
    crate::metrics::hooks::trigger_match(matching);
    let (mut runs, mut failures) = (Vec::new(), Vec::new());
    for decision in decisions.iter().filter(|d| d.matched) {
        let Some(wf) = lock
            .workflows
            .iter()
            .find(|w| w.name == decision.workflow_name)
        else {
            continue;
        };
        let trace = serde_json::to_value(decision).unwrap_or(Value::Null);
        let (run, failure) = start_run(deps, work, &lock, wf, &event, &origin, trace, again)?;
        runs.push(run);
        failures.extend(failure);
    }
    if !runs.is_empty() {
        (deps.wake)();
    }
    let all = serde_json::to_value(&decisions).unwrap_or(Value::Null);
    log::info!(
        "delivery {}: {} workflow(s) matched, {} run(s)",
        work.delivery_id,
        runs.len(),
        runs.len()
    );
    // Every matched workflow refused before creating a job (over a limit, needing JavaScript):
    // the delivery failed, and the event log says why next to the failed runs.
    let status = if !runs.is_empty() && failures.len() == runs.len() {
        "failed"
    } else {
        "processed"
    };
    let error = (!failures.is_empty()).then(|| failures.join("; "));
    let first = runs.first().map(String::as_str);
    mark(status, runs.len() as i32, first, all, error.as_deref())?;
    Ok(runs)
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_panic_becomes_a_failure_reason_with_its_message() {
        let caught = std::panic::catch_unwind(|| panic!("index {} out of range", 7));
        let reason = super::panicked(caught.expect_err("panicked").as_ref());
        assert!(reason.contains("panicked while processing this delivery: index 7 out of range"));
        let caught = std::panic::catch_unwind(|| std::panic::panic_any(42u8));
        assert!(super::panicked(caught.expect_err("panicked").as_ref()).contains("(no message)"));
    }
}
