//! What the orchestrator does with each message of a registered agent (spec-runtime.md §2.2,
//! §2.5–§2.10), and the end of a job whatever ended it (agent report, cancel, lost agent,
//! exhausted attempts, staleness). Job-scoped messages count only from the agent that holds the
//! job; every state change is persisted first and then forwarded to the Platform.

use std::{sync::atomic::Ordering, sync::Arc, time::Instant};

use serde_json::{json, Value};

use super::{jobs, messages::AgentMsg, messages::JobRef, queue, Agent, Hub, Owned};
use crate::{
    platform::{oidc, status},
    storage::{keys, Area, Audience, Meta},
};

const TERMINAL_FROM_AGENT: [&str; 3] = ["success", "failed", "cancelled"];

/// A registered agent's message. Returns a frame to send back, if any.
pub fn on_message(hub: &Hub, agent: &Arc<Agent>, msg: AgentMsg) -> Option<Value> {
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
            if let Err(e) = hub
                .pool
                .with_retry(|c| jobs::step_status(c, &job.job_id, &o.run_id, &frame))
            {
                log::warn!("recording a step of job {} failed: {e}", job.job_id);
            }
            let step = frame["stepIndex"].as_i64().unwrap_or(0);
            if frame["state"]
                .as_str()
                .is_some_and(|s| s != "running" && s != "pending")
            {
                hub.logs.flush_step(&job.job_id, step);
            }
            if let Some(link) = &hub.link {
                link.send(status::step_frame(
                    &o.run_id,
                    &job.job_id,
                    &o.job_name,
                    &frame,
                ));
            }
            None
        }
        AgentMsg::LogChunk {
            job,
            step_index,
            lines,
        } => {
            let o = owned(hub, agent, &job)?;
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
                oidc::METHOD => oidc::handle(hub.minter.as_ref(), hub, &agent.id, &params),
                other => Err(format!("Unknown API method '{other}'")),
            };
            Some(super::messages::api_response(&request_id, result))
        }
        AgentMsg::Cache {
            kind,
            job_id,
            frame,
        } => cache(hub, agent, &kind, &job_id, &frame),
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

/// The job if `agent` holds it; anything else about it is dropped (and logged).
fn owned(hub: &Hub, agent: &Agent, job: &JobRef) -> Option<Owned> {
    let o = hub.owned_by(&agent.id, &job.job_id);
    if o.is_none() {
        log::debug!(
            "agent {} sent a message about job {} it does not hold; ignored",
            agent.id,
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
            match hub
                .pool
                .with_retry(|c| jobs::job_running(c, &job.job_id, &agent.id))
            {
                Ok(run_started) => {
                    forward_job(hub, &job.job_id);
                    if run_started {
                        forward_run(hub, &o.run_id);
                    }
                }
                Err(e) => log::warn!("marking job {} running failed: {e}", job.job_id),
            }
        }
        s if TERMINAL_FROM_AGENT.contains(&s) => {
            if o.finished_at.is_some() {
                return; // an identical replay
            }
            acknowledged(hub, &job.job_id);
            hub.logs.flush_job(&job.job_id);
            agent.active().remove(&job.job_id);
            agent.paused.store(false, Ordering::SeqCst);
            hub.update_job(&job.job_id, |o| o.finished_at = Some(Instant::now()));
            let queue_status = match s {
                "success" => "completed",
                other => other,
            };
            if let Err(e) = hub
                .pool
                .with_retry(|c| queue::finish(c, &job.job_id, queue_status))
            {
                log::warn!("finishing queue row {} failed: {e}", job.job_id);
            }
            let error = failure_text(data);
            finish_job_with_logs(hub, &job.job_id, s, error.as_deref(), o.log_bytes as i64);
            hub.drain(agent);
        }
        "cancelling" => forward_job(hub, &job.job_id),
        _ => {}
    }
}

/// The job's error: `data.error`, else the first failed step's.
fn failure_text(data: &Value) -> Option<String> {
    jobs::error_text(data.get("error")).or_else(|| {
        data.get("stepResults")?
            .as_array()?
            .iter()
            .find(|s| s["status"] == "failed")
            .and_then(|s| {
                jobs::error_text(s.get("error"))
                    .map(|e| format!("step {}: {e}", s["name"].as_str().unwrap_or("?")))
            })
    })
}

/// Ends a job (its queue row is the caller's), its run when it was the last, and tells the
/// Platform.
pub fn finish_job(hub: &Hub, job_id: &str, status: &str, error: Option<&str>) {
    finish_job_with_logs(hub, job_id, status, error, 0);
}

fn finish_job_with_logs(
    hub: &Hub,
    job_id: &str,
    status: &str,
    error: Option<&str>,
    log_bytes: i64,
) {
    match hub
        .pool
        .with_retry(|c| jobs::job_terminal(c, job_id, status, error, log_bytes))
    {
        Ok(f) => {
            if f.job_changed {
                forward_job(hub, job_id);
            }
            if let (Some(run), Some(run_status)) = (&f.run_id, f.run_status) {
                log::info!("run {run} finished: {run_status}");
                forward_run(hub, run);
            } else if let (true, Some(run)) = (f.job_changed, &f.run_id) {
                advance(hub, run);
            }
        }
        Err(e) => log::warn!("recording the end of job {job_id} failed: {e}"),
    }
}

/// A job of the run ended: downstream jobs whose needs are now met are queued, those that can
/// never run are skipped (cascading through `finish_job`), also when the upstream failed within
/// milliseconds of its dispatch.
fn advance(hub: &Hub, run_id: &str) {
    match hub
        .pool
        .with_retry(|c| crate::pipeline::records::advance_run(c, run_id))
    {
        Ok(a) => {
            for job_id in &a.skipped {
                finish_job(
                    hub,
                    job_id,
                    "skipped",
                    Some("an upstream job did not end as this job's needs require"),
                );
            }
            if a.queued > 0 {
                hub.wake();
            }
        }
        Err(e) => log::warn!("advancing run {run_id} failed: {e}"),
    }
}

fn forward_job(hub: &Hub, job_id: &str) {
    if let Some(link) = &hub.link {
        let id = &hub.cfg.instance_id;
        if let Err(e) = hub
            .pool
            .with_retry(|c| status::forward_job(link, c, job_id, id))
        {
            log::warn!("forwarding job {job_id} failed: {e}");
        }
    }
}

fn forward_run(hub: &Hub, run_id: &str) {
    if let Some(link) = &hub.link {
        if let Err(e) = hub
            .pool
            .with_retry(|c| status::forward_run(link, c, run_id))
        {
            log::warn!("forwarding run {run_id} failed: {e}");
        }
    }
}

/// After `agent.register`: jobs the agent reports as still running are its again (also after an
/// orchestrator restart), then queued work is offered.
pub fn after_register(hub: &Hub, agent: &Arc<Agent>, in_flight: &[(String, String)]) {
    for (job_id, _) in in_flight {
        match hub.pool.with_retry(|c| queue::adopt(c, job_id, &agent.id)) {
            Ok(Some((run_id, job_name))) => {
                agent.active().insert(job_id.clone());
                hub.track(
                    job_id,
                    Owned {
                        agent_id: agent.id.clone(),
                        run_id,
                        job_name,
                        ack_deadline: None,
                        finished_at: None,
                        log_bytes: 0,
                    },
                );
                let _ = hub
                    .pool
                    .with_retry(|c| jobs::job_running(c, job_id, &agent.id));
                log::info!("agent {} resumed job {job_id}", agent.id);
            }
            Ok(None) => log::info!(
                "agent {} reports job {job_id}, which is not waiting for it; ignored",
                agent.id
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
            for (job_id, _) in expired {
                log::warn!(
                    "job {job_id} failed: its agent did not reconnect within the recovery window"
                );
                hub.jobs().remove(&job_id);
                finish_job(
                    hub,
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
        for (job_id, _) in stale {
            log::warn!("job {job_id} sent no heartbeat for {stale_after_secs} s: timed_out_stale");
            let _ = hub.pool.with_retry(|c| queue::finish(c, &job_id, "failed"));
            finish_job(
                hub,
                &job_id,
                "timed_out_stale",
                Some("no job heartbeat from the agent"),
            );
        }
    }
}

/// `cache.*` / `provenance.*` (§2.8): URLs from the storage layer for the job's own keys, or the
/// documented "unavailable" answers.
fn cache(hub: &Hub, agent: &Agent, kind: &str, job_id: &str, f: &Value) -> Option<Value> {
    let o = hub.owned_by(&agent.id, job_id);
    let request_id = f["messageId"].as_str().unwrap_or("").to_owned();
    let text = |k: &str| f[k].as_str().unwrap_or("").to_owned();
    let now = jiff::Timestamp::now();
    let key = match (kind, text("cacheType").as_str()) {
        (_, "source") if kind.starts_with("cache.upload") => {
            Some(keys::source(&text("contentHash")))
        }
        (_, "deps") if kind.starts_with("cache.upload") => Some(keys::deps(
            &text("platform"),
            &text("arch"),
            &text("lockfileHash"),
        )),
        _ if kind.starts_with("provenance.upload") => o
            .as_ref()
            .map(|o| keys::provenance(&o.run_id, job_id, &text("subjectDigest"))),
        _ => None,
    };
    let storage = hub.storage.as_ref().filter(|_| o.is_some());
    match kind {
        "cache.upload.request" | "provenance.upload.request" => {
            let url = match (storage, &key) {
                (Some(s), Some(k)) => s
                    .upload_url(Area::Cache, k, Audience::Agent, now)
                    .unwrap_or_else(|e| {
                        log::warn!("upload URL for {k} failed: {e}");
                        String::new()
                    }),
                _ => String::new(),
            };
            let reply = if kind.starts_with("cache") {
                "cache.upload.response"
            } else {
                "provenance.upload.response"
            };
            Some(json!({ "type": reply, "requestId": request_id, "uploadUrl": url }))
        }
        "cache.upload.complete" | "provenance.upload.complete" => {
            if let (Some(s), Some(k)) = (storage, &key) {
                if let Err(e) = s.commit(Area::Cache, k, now) {
                    log::warn!("committing {k} failed: {e}");
                }
                let deps_hash = text("depsHash");
                if text("cacheType") == "deps" && !deps_hash.is_empty() {
                    let hash_key =
                        keys::deps_hash(&text("platform"), &text("arch"), &text("lockfileHash"));
                    let _ = s.put(
                        Area::Cache,
                        &hash_key,
                        deps_hash.as_bytes(),
                        Some(&Meta::new(now)),
                    );
                }
            }
            None
        }
        "cache.user.restore.request" => Some(
            json!({ "type": "cache.user.restore.response", "requestId": request_id, "hit": false }),
        ),
        "cache.user.save.request" => Some(
            json!({ "type": "cache.user.save.response", "requestId": request_id, "skip": true }),
        ),
        _ => None,
    }
}
