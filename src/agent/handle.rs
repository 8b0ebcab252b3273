//! What the orchestrator does with each message of a registered agent (docs/agent-protocol.md,
//! "Frames from the agent"), and the end of a job whatever ended it (agent report, cancel, lost
//! agent, exhausted attempts, staleness). Job-scoped messages count only from the agent that holds
//! the job; every state change is written through `crate::runs` first, and its events are then
//! published (`Hub::events`: the Platform forwarder and whoever else subscribed).

use std::{sync::atomic::Ordering, sync::Arc, time::Instant};

use serde_json::Value;

use super::{
    cache_keys::JobScope, logs::LogBudget, messages::AgentMsg, messages::JobRef, terminal, uploads,
    Agent, Hub, Owned,
};
use crate::{
    platform::{oidc, status},
    runs::{
        self,
        events::{now_ms, RunEvent, Turn},
        failure,
        store::{jobs, queue},
    },
};

const TERMINAL_FROM_AGENT: [&str; 3] = ["success", "failed", "cancelled"];

/// A registered agent's message. Returns the frames to send back.
pub fn on_message(hub: &Hub, agent: &Arc<Agent>, msg: AgentMsg) -> Vec<Value> {
    if let AgentMsg::Cache {
        kind,
        job_id,
        frame,
    } = &msg
    {
        return uploads::on_request(hub, agent, kind, job_id, frame);
    }
    reply(hub, agent, msg).into_iter().collect()
}

/// Jobs as one agent (id and token) holds them, for the OIDC mint.
pub(super) struct HeldBy<'a> {
    pub(super) hub: &'a Hub,
    pub(super) agent: &'a Agent,
}

impl oidc::OwnedJobs for HeldBy<'_> {
    fn run_of(&self, agent_id: &str, job_id: &str) -> Option<String> {
        (agent_id == self.agent.id)
            .then(|| self.hub.owned_by(self.agent, job_id))
            .flatten()
            .filter(|o| o.finished_at.is_none())
            .map(|o| o.run_id)
    }
}

fn reply(hub: &Hub, agent: &Arc<Agent>, msg: AgentMsg) -> Option<Value> {
    match msg {
        AgentMsg::JobAck(job) => {
            if owned(hub, agent, &job).is_some() {
                acknowledged(hub, &job.job_id);
            }
            None
        }
        AgentMsg::JobReject { job, reason } => {
            if owned(hub, agent, &job).is_some() {
                // A busy or draining agent gets nothing more until it reports spare capacity.
                agent.paused.store(true, Ordering::SeqCst);
                hub.requeue(
                    &job.job_id,
                    &agent.id,
                    &format!("rejected by agent {} ({reason})", agent.id),
                );
                hub.kick();
            }
            None
        }
        AgentMsg::JobStatus { job, state, data } => {
            job_status(hub, agent, &job, &state, &data);
            None
        }
        AgentMsg::StepStatus { job, frame } => {
            let o = owned(hub, agent, &job)?;
            let turn = hub.events.turn(&o.run_id);
            match hub
                .pool
                .with_retry(|c| jobs::step_status(c, &job.job_id, &o.run_id, &frame))
            {
                Ok(outcome) => runs::publish(&hub.events, &turn, &outcome),
                Err(e) => log::warn!("recording a step of job {} failed: {e}", job.job_id),
            }
            let step = frame["stepIndex"].as_i64().unwrap_or(0);
            if frame["state"]
                .as_str()
                .is_some_and(|s| s != "running" && s != "pending")
            {
                hub.logs.flush_step(&job.job_id, step);
            }
            None
        }
        AgentMsg::LogChunk {
            job,
            step_index,
            lines,
        } => {
            let o = owned(hub, agent, &job)?;
            // The job's cap (docs/agent-protocol.md, "Limits"): lines past it are not stored,
            // one truncation line is; the agent is neither slowed further nor dropped for it.
            let mut admitted = None;
            hub.update_job(&job.job_id, |o| {
                admitted = Some((o.budget.admit(&lines), o.budget.truncation_line()))
            });
            let (admitted, truncation) = admitted?;
            let mut lines = lines;
            lines.truncate(admitted.keep);
            if admitted.truncate {
                log::info!(
                    "job {} passed its log cap; later lines are not stored",
                    job.job_id
                );
                lines.push(truncation);
            }
            if lines.is_empty() {
                return None;
            }
            let ts = jiff::Timestamp::now().as_millisecond();
            let bytes =
                hub.logs
                    .append(&o.run_id, &job.job_id, &o.job_name, step_index, &lines, ts);
            hub.update_job(&job.job_id, |o| o.log_bytes += bytes);
            if let Some(link) = &hub.link {
                link.send(status::log_frame(
                    &o.run_id,
                    &job.job_id,
                    step_index,
                    &lines,
                ));
            }
            None
        }
        AgentMsg::JobHeartbeat(job) => {
            if owned(hub, agent, &job).is_some() {
                let _ = hub.pool.with_retry(|c| jobs::heartbeat(c, &job.job_id));
            }
            None
        }
        AgentMsg::Status { active_jobs } => {
            if (active_jobs as usize) < agent.max as usize {
                agent.paused.store(false, Ordering::SeqCst);
                hub.drain(agent);
            }
            None
        }
        AgentMsg::ApiRequest {
            request_id,
            method,
            params,
        } => {
            let result = match method.as_str() {
                oidc::METHOD => {
                    let held = HeldBy { hub, agent };
                    oidc::handle(hub.minter.as_ref(), &held, &agent.id, &params)
                }
                other => Err(format!("Unknown API method '{other}'")),
            };
            Some(super::messages::api_response(&request_id, result))
        }
        // Answered by `on_message`.
        AgentMsg::Cache { .. } => None,
        AgentMsg::ConcurrencyReport { message_id, job } => {
            Some(super::messages::concurrency_ack(&message_id, &job))
        }
        AgentMsg::EventEmit { request_id } => {
            Some(super::messages::event_emit_response(&request_id))
        }
        AgentMsg::ApprovalRequest {
            message_id,
            job,
            step_index,
        } => Some(super::messages::approval_resolved(
            &message_id,
            &job,
            step_index,
        )),
        AgentMsg::Heartbeat | AgentMsg::ConfigAck | AgentMsg::Ignored { .. } => None,
        // Handled by the session (phases, re-registration, errors).
        AgentMsg::Auth { .. } | AgentMsg::Register(_) | AgentMsg::Invalid { .. } => None,
    }
}

/// The job if `agent` (its id and token) holds it; anything else about it is dropped, nothing
/// stored, and logged.
fn owned(hub: &Hub, agent: &Agent, job: &JobRef) -> Option<Owned> {
    let o = hub.owned_by(agent, &job.job_id);
    if o.is_none() {
        log::info!(
            "agent {} (token {}) sent a message about job {}, which it does not hold; ignored",
            agent.id,
            agent.token().shown(),
            job.job_id
        );
    }
    o
}

fn acknowledged(hub: &Hub, job_id: &str) {
    let mut was_pending = false;
    hub.update_job(job_id, |o| was_pending = o.ack_deadline.take().is_some());
    if was_pending {
        if let Err(e) = hub.pool.with_retry(|c| queue::acked(c, job_id)) {
            log::warn!("recording the ack of job {job_id} failed: {e}");
        }
    }
}

fn job_status(hub: &Hub, agent: &Arc<Agent>, job: &JobRef, state: &str, data: &Value) {
    let Some(o) = owned(hub, agent, job) else {
        return;
    };
    match state {
        "running" => {
            acknowledged(hub, &job.job_id);
            let token = agent.token_id.as_deref();
            let turn = hub.events.turn(&o.run_id);
            match hub
                .pool
                .with_retry(|c| jobs::job_running(c, &job.job_id, &agent.id, token))
            {
                Ok(outcome) => runs::publish(&hub.events, &turn, &outcome),
                Err(e) => log::warn!("marking job {} running failed: {e}", job.job_id),
            }
        }
        s if TERMINAL_FROM_AGENT.contains(&s) => {
            if o.finished_at.is_some() {
                return; // a replay of a recorded end
            }
            acknowledged(hub, &job.job_id);
            hub.logs.flush_job(&job.job_id);
            terminal_status(hub, agent, &job.job_id, s, data, &o);
        }
        "cancelling" => {
            let turn = hub.events.turn(&o.run_id);
            hub.events.publish_one(
                &turn,
                RunEvent::job(&o.run_id, &job.job_id, &o.job_name, "cancelling", now_ms()),
            )
        }
        _ => {}
    }
}

/// A terminal `job.status`: written to the database first (retried with pauses), and only once
/// committed is the job done in memory. When every try fails it stays open, so the agent's resend
/// of the same status is recorded rather than ignored as a replay.
fn terminal_status(
    hub: &Hub,
    agent: &Arc<Agent>,
    job_id: &str,
    state: &str,
    data: &Value,
    o: &Owned,
) {
    // A build job's success counts only with `data.buildComplete` (docs/caches.md).
    let incomplete = crate::caches::build::incomplete_build(&o.job_name, state, data);
    let (state, data) = incomplete.as_ref().map_or((state, data), |d| ("failed", d));
    let queue_status = match state {
        "success" => "completed",
        other => other,
    };
    // The job's error names its failing step (docs/agent-protocol.md, "Frames from the agent").
    let error = failure::job_error(data);
    let by = jobs::Reporter {
        agent_id: &agent.id,
        token_id: agent.token_id.as_deref(),
    };
    let ending = jobs::Ending {
        error: error.as_deref(),
        log_bytes: o.log_bytes as i64,
    };
    let turn = hub.events.turn(&o.run_id);
    let written = terminal::until_committed(
        &terminal::BACKOFF,
        std::thread::sleep,
        |n, e| log::warn!("recording the end of job {job_id} ({state}) failed, try {n}: {e}"),
        || {
            hub.pool
                .with_retry(|c| jobs::agent_terminal(c, job_id, by, queue_status, state, ending))
        },
    );
    let finished = match written {
        Ok(Some(f)) => f,
        Ok(None) => {
            log::warn!(
                "agent {} reported job {job_id} {state}, but the job is no longer held by it; ignored",
                agent.id
            );
            drop(turn);
            agent.active().remove(job_id);
            hub.jobs().remove(job_id);
            hub.drain(agent);
            return;
        }
        Err(e) => {
            log::error!(
                "the end of job {job_id} ({state}) is not recorded: {e}; the job stays open so \
                 the agent's resend is recorded"
            );
            return;
        }
    };
    let failed = failure::failed_steps(data);
    if !failed.is_empty() {
        if let Err(e) = hub
            .pool
            .with_retry(|c| jobs::record_step_failures(c, job_id, &failed))
        {
            log::warn!("recording the failed steps of job {job_id} failed: {e}");
        }
    }
    agent.active().remove(job_id);
    agent.paused.store(false, Ordering::SeqCst);
    hub.update_job(job_id, |o| o.finished_at = Some(Instant::now()));
    after_finish(hub, &turn, job_id, &finished);
    // Claims publish under their own run's turn.
    drop(turn);
    hub.drain(agent);
}

/// Ends a job (its queue row is the caller's), and its run when it was the last; downstream
/// jobs are queued or skipped with it (`crate::runs::lifecycle`).
pub fn finish_job(hub: &Hub, run_id: &str, job_id: &str, status: &str, error: Option<&str>) {
    let turn = hub.events.turn(run_id);
    match hub
        .pool
        .with_retry(|c| jobs::job_terminal(c, job_id, status, error, 0))
    {
        Ok(outcome) => after_finish(hub, &turn, job_id, &outcome),
        Err(e) => log::warn!("recording the end of job {job_id} failed: {e}"),
    }
}

/// Publishes what the job's end changed, and wakes the dispatcher for jobs it queued.
fn after_finish(hub: &Hub, turn: &Turn<'_>, job_id: &str, outcome: &jobs::Outcome) {
    if let (Some(run), Some(run_status)) = (&outcome.run_id, outcome.run_ended()) {
        log::info!("run {run} finished: {run_status} (its last job was {job_id})");
    }
    runs::publish(&hub.events, turn, outcome);
    if outcome.queued() > 0 {
        hub.wake();
    }
    crate::caches::on_jobs_ended(&hub.pool, &hub.events, &|| hub.wake(), outcome);
}

/// After `agent.register`: jobs the agent reports as still running are its again (also after an
/// orchestrator restart), then queued work is offered.
pub fn after_register(hub: &Hub, agent: &Arc<Agent>, in_flight: &[(String, String)]) {
    let token = agent.token_id.as_deref();
    for (job_id, _) in in_flight {
        match hub
            .pool
            .with_retry(|c| queue::adopt(c, job_id, &agent.id, token))
        {
            Ok(Some(job)) => {
                let turn = hub.events.turn(&job.run_id);
                agent.active().insert(job_id.clone());
                hub.track(
                    job_id,
                    Owned {
                        agent_id: agent.id.clone(),
                        token_id: agent.token_id.clone(),
                        scope: JobScope::of(&job.run_id, job_id, &job.dispatch),
                        run_id: job.run_id,
                        job_name: job.job_name,
                        ack_deadline: None,
                        finished_at: None,
                        log_bytes: 0,
                        budget: LogBudget::of(&job.dispatch),
                    },
                );
                if let Ok(outcome) = hub
                    .pool
                    .with_retry(|c| jobs::job_running(c, job_id, &agent.id, token))
                {
                    runs::publish(&hub.events, &turn, &outcome);
                }
                // Back from recovery: its silence while away does not make it stale.
                if let Err(e) = hub.pool.with_retry(|c| jobs::heartbeat(c, job_id)) {
                    log::warn!("recording job {job_id}'s return failed: {e}");
                }
                log::info!("agent {} resumed job {job_id}", agent.id);
            }
            Ok(None) => log::info!(
                "agent {} (token {}) reports job {job_id}, which is not waiting for it; ignored",
                agent.id,
                agent.token().shown()
            ),
            Err(e) => log::warn!("re-adopting job {job_id} failed: {e}"),
        }
    }
    hub.drain(agent);
}

/// Slow housekeeping (every few seconds): jobs whose agent did not come back, and running jobs
/// without heartbeats for two intervals.
pub fn expire(hub: &Hub, stale_after_secs: i64) {
    match hub.pool.with_retry(queue::expire_recoveries) {
        Ok(expired) => {
            for (job_id, run_id) in expired {
                log::warn!(
                    "job {job_id} failed: its agent did not reconnect within the recovery window"
                );
                hub.jobs().remove(&job_id);
                finish_job(
                    hub,
                    &run_id,
                    &job_id,
                    "failed",
                    Some("agent disconnected and did not reconnect within the recovery window"),
                );
            }
        }
        Err(e) => log::debug!("expiring recoveries failed: {e}"),
    }
    if let Ok(stale) = hub
        .pool
        .with_retry(|c| jobs::stale_jobs(c, stale_after_secs))
    {
        for (job_id, run_id) in stale {
            log::warn!("job {job_id} sent no heartbeat for {stale_after_secs} s: timed_out_stale");
            let _ = hub.pool.with_retry(|c| queue::finish(c, &job_id, "failed"));
            finish_job(
                hub,
                &run_id,
                &job_id,
                "timed_out_stale",
                Some("no job heartbeat from the agent"),
            );
        }
    }
}
