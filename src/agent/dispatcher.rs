//! Dispatch: offering queued jobs to agents with spare capacity (claims in the queue, frames
//! through the agents' writers), putting jobs back when an agent fails them, and the dispatcher
//! thread: wake-ups, ack deadlines, revoked tokens, lost and stale jobs (docs/agent-protocol.md,
//! "Job dispatch", "Disconnect and recovery", "Heartbeats and staleness").

use std::{
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc, Condvar, Mutex,
    },
    time::{Duration, Instant},
};

use super::{
    cache_keys::JobScope, credentials, handle, logs::LogBudget, revoke, Agent, Hub, Owned,
};
use crate::{runs::store::queue, secrets::dispatch::Refusal};

/// A job whose credentials could not be minted waits 5 s, then 10, 20, 40 before its next
/// attempts: about a minute and a quarter of GitHub trouble before it fails for good.
const CREDENTIALS_BACKOFF_SECS: i64 = 5;
/// How often the dispatcher thread looks at ack deadlines when nothing wakes it.
const DISPATCH_TICK: Duration = Duration::from_millis(200);
/// How often lost agents' jobs and stale jobs are looked for.
const EXPIRE_EVERY: Duration = Duration::from_secs(5);
/// A running job without a heartbeat for two intervals (2 × 60 s) is stale.
const STALE_AFTER_SECS: i64 = 120;

/// A wake-up call for the dispatcher thread: set from any thread, taken by the thread.
#[derive(Default)]
pub struct Wakeup {
    rung: Mutex<bool>,
    cv: Condvar,
}

impl Wakeup {
    fn ring(&self) {
        *self.rung.lock().unwrap_or_else(|p| p.into_inner()) = true;
        self.cv.notify_one();
    }

    /// Waits up to `timeout` for a ring; whether one came (and takes it).
    fn wait(&self, timeout: Duration) -> bool {
        let guard = self.rung.lock().unwrap_or_else(|p| p.into_inner());
        let (mut guard, _) = self
            .cv
            .wait_timeout_while(guard, timeout, |w| !*w)
            .unwrap_or_else(|p| p.into_inner());
        std::mem::take(&mut *guard)
    }
}

impl Hub {
    /// Asks the dispatcher thread to offer queued work to the agents (non-blocking): after a job
    /// is queued here, or another orchestrator queued one (NOTIFY).
    pub fn wake(&self) {
        self.wakeup.ring();
    }

    /// The dispatcher thread: drains on wake-ups, enforces ack deadlines, expires lost and stale
    /// jobs. Runs until `stop`.
    pub fn start_dispatcher(self: &Arc<Self>, stop: Arc<AtomicBool>) {
        let hub = self.clone();
        let stopping = stop.clone();
        let spawned = crate::supervise::spawn(
            "dispatcher",
            move || stopping.load(Ordering::SeqCst),
            move || {
                let mut last_expire = Instant::now();
                let mut last_token_check = Instant::now();
                while !stop.load(Ordering::SeqCst) {
                    if hub.wakeup.wait(DISPATCH_TICK) {
                        hub.kick();
                    }
                    hub.check_ack_deadlines();
                    if last_token_check.elapsed() >= revoke::CHECK_EVERY {
                        last_token_check = Instant::now();
                        hub.end_revoked_sessions();
                    }
                    if last_expire.elapsed() >= EXPIRE_EVERY {
                        last_expire = Instant::now();
                        handle::expire(&hub, STALE_AFTER_SECS);
                        // Jobs whose requeue backoff ended (credentials that could not be minted)
                        // are offered again: nothing else wakes the dispatcher for them.
                        hub.kick();
                    }
                }
            },
        );
        if let Err(e) = spawned {
            log::error!("cannot start the dispatcher thread: {e}");
        }
    }

    /// A connection ended. Jobs its agent never acknowledged go back to the queue; running ones
    /// wait for the agent to come back within the recovery window.
    pub fn unregister(&self, agent_id: &str, connection_id: &str) {
        let Some((agent, held, unacked)) = self.registry.disconnect(agent_id, connection_id) else {
            return;
        };
        for job in &unacked {
            self.requeue(
                job,
                agent_id,
                "agent disconnected before acknowledging the job",
            );
        }
        if held.len() > unacked.len() {
            let secs = self.cfg.recovery_window.as_secs() as i64;
            let token = agent.token_id.as_deref();
            match self
                .pool
                .with_retry(|c| queue::start_recovery(c, agent_id, token, secs))
            {
                Ok(n) => log::info!("agent {agent_id} disconnected with {n} job(s) in flight; waiting {secs} s for it"),
                Err(e) => log::warn!("agent {agent_id} disconnected; recording recovery failed: {e}"),
            }
        } else {
            log::info!("agent {agent_id} disconnected");
        }
        self.kick();
    }

    /// Offers queued work to every agent with spare capacity (after a job is queued, an agent
    /// frees a slot, or another orchestrator queued work), lowest agent id first.
    pub fn kick(&self) {
        for agent in self.registry.by_id() {
            self.drain(&agent);
        }
    }

    /// Dispatches queued jobs to one agent while it has spare capacity.
    pub fn drain(&self, agent: &Arc<Agent>) {
        let _one_at_a_time = agent.drain_lock.lock().unwrap_or_else(|p| p.into_inner());
        while !agent.writer.is_closed()
            && !agent.paused.load(Ordering::SeqCst)
            && agent.active_count() < agent.max as usize
            && !self.shutting_down()
        {
            let ack_ms = self.cfg.ack_timeout.as_millis() as i64;
            let token = agent.token_id.as_deref();
            // Not through `with_retry`: a claim is not safe to repeat.
            let claimed = crate::runs::store::once(&self.pool, |c| {
                queue::claim(c, &agent.id, token, &agent.labels, &agent.taint, ack_ms)
            });
            let job = match claimed {
                Ok(Some((job, claim))) => {
                    crate::metrics::hooks::dispatched(job.pending_secs);
                    // Published before the frame is sent, so it precedes whatever the agent
                    // then reports about the job.
                    let turn = self.events.turn(&job.run_id);
                    crate::runs::publish(&self.events, &turn, &claim);
                    job
                }
                Ok(None) => return,
                Err(e) => {
                    log::warn!("claiming a job for agent {} failed: {e}", agent.id);
                    return;
                }
            };
            let _ids = crate::logging::ids(&[("runId", &job.run_id), ("jobId", &job.id)]);
            // Minted before the ack deadline starts: a slow token request is not the agent's delay.
            let minter = self
                .credentials
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone();
            let mut frame = match credentials::frame(&job, minter.as_deref()) {
                Ok(frame) => frame,
                Err(why) => {
                    let why = why.to_string();
                    self.requeue_after(&job.id, &agent.id, &why, CREDENTIALS_BACKOFF_SECS);
                    continue;
                }
            };
            match self.with_secrets(&job, &mut frame) {
                Ok(()) => {}
                Err(Refusal::Retry(why)) => {
                    self.requeue_after(&job.id, &agent.id, &why, CREDENTIALS_BACKOFF_SECS);
                    continue;
                }
                Err(Refusal::Fail(why)) => {
                    self.fail_claimed(&job, &why);
                    continue;
                }
            }
            crate::caches::add_tarball_urls(
                &mut frame,
                &job.id,
                self.storage.as_deref(),
                &self.pool,
            );
            agent.active().insert(job.id.clone());
            self.track(
                &job.id,
                Owned {
                    agent_id: agent.id.clone(),
                    token_id: agent.token_id.clone(),
                    run_id: job.run_id.clone(),
                    job_name: job.job_name.clone(),
                    ack_deadline: Some(Instant::now() + self.cfg.ack_timeout),
                    finished_at: None,
                    log_bytes: 0,
                    budget: LogBudget::of(&job.dispatch),
                    scope: JobScope::of(&job.run_id, &job.id, &job.dispatch),
                },
            );
            if agent.writer.send(&frame) {
                log::debug!(
                    "job {} ({}) dispatched to {}",
                    job.id,
                    job.job_name,
                    agent.id
                );
            } else {
                agent.active().remove(&job.id);
                self.requeue(
                    &job.id,
                    &agent.id,
                    "the agent's connection failed during dispatch",
                );
                return;
            }
        }
    }

    /// A claimed job that must not run (its secrets cannot be given to it): failed with `why`.
    fn fail_claimed(&self, job: &queue::Claimed, why: &str) {
        log::warn!(
            "job {} ({}) failed at dispatch: {why}",
            job.id,
            job.job_name
        );
        if let Err(e) = self
            .pool
            .with_retry(|c| queue::finish(c, &job.id, "failed"))
        {
            log::warn!("failing job {} failed: {e}", job.id);
        }
        handle::finish_job(self, &job.run_id, &job.id, "failed", Some(why));
    }

    /// Back to the queue (or failed after the last attempt); the job's run may end with it.
    pub fn requeue(&self, job_id: &str, agent_id: &str, why: &str) {
        self.requeue_after(job_id, agent_id, why, 0);
    }

    /// [`Hub::requeue`], not offered again for `backoff_secs` doubled per attempt so far.
    fn requeue_after(&self, job_id: &str, agent_id: &str, why: &str, backoff_secs: i64) {
        if let Some(a) = self.agent(agent_id) {
            a.active().remove(job_id);
        }
        self.jobs().remove(job_id);
        // Not through `with_retry`: a requeue is not safe to repeat.
        match crate::runs::store::once(&self.pool, |c| {
            queue::requeue(c, job_id, agent_id, why, backoff_secs)
        }) {
            Ok(queue::Requeued::Failed { run_id }) => {
                let reason = format!(
                    "re-dispatch attempts exhausted ({} attempts; last: {why})",
                    queue::MAX_ATTEMPTS
                );
                log::warn!("job {job_id} failed: {reason}");
                handle::finish_job(self, &run_id, job_id, "failed", Some(&reason));
            }
            Ok(queue::Requeued::Pending) => log::info!("job {job_id} requeued: {why}"),
            Ok(queue::Requeued::Gone) => {}
            Err(e) => log::warn!("requeueing job {job_id} failed: {e}"),
        }
    }

    /// Housekeeping, every fraction of a second: acknowledgements that did not come in time
    /// close the agent (4031) and requeue their jobs. The agent stays registered until its
    /// session ends (a closed writer gets no more work meanwhile), so the session's clean-up
    /// ([`Hub::unregister`]) handles its other jobs as after any disconnect: those not yet
    /// acknowledged are requeued, the acknowledged ones wait for it in the recovery window.
    pub fn check_ack_deadlines(&self) {
        let late = self.registry.overdue(Instant::now());
        let requeued = !late.is_empty();
        for (job, agent_id) in late {
            log::warn!(
                "agent {agent_id} did not acknowledge job {job} within {:?}",
                self.cfg.ack_timeout
            );
            if let Some(agent) = self.agent(&agent_id) {
                agent.writer.close(4031, "Dispatch acknowledgement timeout");
            }
            self.requeue(
                &job,
                &agent_id,
                "no acknowledgement within the dispatch deadline",
            );
        }
        self.registry.forget_finished(Instant::now());
        if requeued {
            self.kick();
        }
    }
}
