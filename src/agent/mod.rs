//! The agent link (spec-runtime.md §2): agents connect to `GET /ws` on the orchestrator's port,
//! authenticate with `kat_` tokens, register with labels, and receive `job.dispatch` frames for
//! queued jobs they may run; they report status, steps and logs back.
//!
//! `Hub` is the shared state: connected agents (labels, capacity, taint, their writer), which
//! job each one holds (for ownership checks, ack deadlines and recovery), and the queue claims.
//! `session` runs one connection on its own thread; `handle` acts on what agents send; the
//! queue, jobs and runs are `crate::runs`; `revoke` ends the sessions of revoked tokens; `messages`,
//! `select`, `identity`, `cache_keys`, `terminal` and `wsframe` are pure; `uploads` signs URLs.

pub mod cache_keys;
pub mod credentials;
pub mod handle;
pub mod identity;
pub mod logs;
pub mod messages;
pub mod revoke;
pub mod select;
pub mod session;
pub mod terminal;
pub mod uploads;
pub mod wsframe;

#[cfg(test)]
mod hub_tests;

use std::{
    collections::{HashMap, HashSet},
    io::Write,
    net::{Shutdown, TcpStream},
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc, Condvar, Mutex, MutexGuard,
    },
    time::{Duration, Instant},
};

use serde_json::{json, Value};

use crate::{
    db::{agent_tokens::AgentToken, Pool},
    http::server::ShutdownHandle,
    platform::{oidc::Minter, Link},
    runs::{events::Events, store::queue},
    storage::Storage,
};
use cache_keys::{JobScope, Platform};
use credentials::JobCredentials;
use identity::TokenRef;
use logs::Logs;

/// How long a late message about a finished job is still accepted from its agent.
const LATE_GRACE: Duration = Duration::from_secs(30);

pub struct HubConfig {
    /// `KICI_DISPATCH_ACK_TIMEOUT_MS` (default 10 000, at least 1 000).
    pub ack_timeout: Duration,
    /// How long jobs of a vanished agent wait for it (2 × `KICI_AGENT_MAX_RECONNECT_DELAY_MS`).
    pub recovery_window: Duration,
    /// `KICI_AGENT_AUTH=none` turns token checks off (development only).
    pub auth_required: bool,
    pub instance_id: String,
}

/// One connection's write side: whole frames written under a lock, from any thread.
pub struct Writer {
    stream: Mutex<TcpStream>,
    closed: AtomicBool,
}

impl Writer {
    pub fn new(stream: TcpStream) -> Writer {
        let _ = stream.set_write_timeout(Some(Duration::from_secs(10)));
        Writer {
            stream: Mutex::new(stream),
            closed: AtomicBool::new(false),
        }
    }

    fn write(&self, bytes: &[u8]) -> bool {
        if self.closed.load(Ordering::SeqCst) {
            return false;
        }
        let mut s = self.stream.lock().unwrap_or_else(|p| p.into_inner());
        let ok = s.write_all(bytes).and_then(|_| s.flush()).is_ok();
        if !ok {
            self.closed.store(true, Ordering::SeqCst);
        }
        ok
    }

    /// Sends a JSON text frame; false when the connection is gone.
    pub fn send(&self, frame: &Value) -> bool {
        self.write(&wsframe::encode(
            wsframe::OP_TEXT,
            frame.to_string().as_bytes(),
        ))
    }

    pub fn send_raw(&self, opcode: u8, payload: &[u8]) -> bool {
        self.write(&wsframe::encode(opcode, payload))
    }

    /// Sends a close frame and ends the connection (its reader sees the end and cleans up).
    pub fn close(&self, code: u16, reason: &str) {
        self.write(&wsframe::close(code, reason));
        self.closed.store(true, Ordering::SeqCst);
        let s = self.stream.lock().unwrap_or_else(|p| p.into_inner());
        let _ = s.shutdown(Shutdown::Both);
    }

    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::SeqCst)
    }
}

/// A registered agent.
pub struct Agent {
    pub id: String,
    pub connection_id: String,
    /// The token it authenticated with (`None` with `KICI_AGENT_AUTH=none`): with the id, its
    /// identity (src/agent/identity.rs).
    pub token_id: Option<String>,
    pub token_prefix: Option<String>,
    /// What it registered as: deps cache entries it may write are for this platform only.
    pub platform: Platform,
    pub labels: Vec<String>,
    pub taint: Vec<String>,
    pub max: u32,
    pub writer: Arc<Writer>,
    active: Mutex<HashSet<String>>,
    /// Set by a `job.reject{busy}`: no dispatch until the agent reports spare capacity.
    paused: AtomicBool,
    drain_lock: Mutex<()>,
}

impl Agent {
    pub fn new(
        connection_id: String,
        token: Option<&AgentToken>,
        reg: &messages::Register,
        writer: Arc<Writer>,
    ) -> Agent {
        Agent {
            id: reg.agent_id.clone(),
            connection_id,
            token_id: token.map(|t| t.id.clone()),
            token_prefix: token.map(|t| t.prefix.clone()),
            platform: Platform {
                platform: reg.platform.clone(),
                arch: reg.arch.clone(),
            },
            labels: reg.labels.clone(),
            taint: token
                .map(|t| t.mandatory_labels.clone())
                .unwrap_or_default(),
            max: reg.max_concurrency,
            writer,
            active: Mutex::default(),
            paused: AtomicBool::new(false),
            drain_lock: Mutex::new(()),
        }
    }

    pub fn token(&self) -> TokenRef<'_> {
        TokenRef {
            id: self.token_id.as_deref(),
            prefix: self.token_prefix.as_deref(),
        }
    }

    fn active(&self) -> MutexGuard<'_, HashSet<String>> {
        self.active.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn active_count(&self) -> usize {
        self.active().len()
    }
}

/// A job held by an agent (or recently finished by it).
#[derive(Debug, Clone)]
pub struct Owned {
    pub agent_id: String,
    /// The token of the agent it was dispatched to: only that agent *and* token may act on it.
    pub token_id: Option<String>,
    pub run_id: String,
    pub job_name: String,
    pub ack_deadline: Option<Instant>,
    pub finished_at: Option<Instant>,
    pub log_bytes: u64,
    /// The cache keys its dispatch allows it to write.
    pub scope: JobScope,
}

pub struct Hub {
    pub pool: Pool,
    pub storage: Option<Arc<Storage>>,
    pub link: Option<Arc<Link>>,
    pub minter: Option<Minter>,
    pub cfg: HubConfig,
    pub logs: Logs,
    /// Where job and run changes are published (the daemon subscribes the Platform forwarder).
    pub events: Arc<Events>,
    agents: Mutex<HashMap<String, Arc<Agent>>>,
    jobs: Mutex<HashMap<String, Owned>>,
    shutdown: Mutex<Option<ShutdownHandle>>,
    wake: (Mutex<bool>, Condvar),
    credentials: Mutex<Option<Arc<dyn JobCredentials>>>,
}

/// A job whose credentials could not be minted waits 5 s, then 10, 20, 40 before its next
/// attempts: about a minute and a quarter of GitHub trouble before it fails for good.
const CREDENTIALS_BACKOFF_SECS: i64 = 5;
/// How often the dispatcher thread looks at ack deadlines when nothing wakes it.
const DISPATCH_TICK: Duration = Duration::from_millis(200);
/// How often lost agents' jobs and stale jobs are looked for.
const EXPIRE_EVERY: Duration = Duration::from_secs(5);
/// A running job without a heartbeat for two intervals (2 × 60 s) is stale.
const STALE_AFTER_SECS: i64 = 120;

impl Hub {
    pub fn new(
        pool: Pool,
        storage: Option<Arc<Storage>>,
        link: Option<Arc<Link>>,
        minter: Option<Minter>,
        cfg: HubConfig,
    ) -> Hub {
        Hub {
            pool,
            logs: Logs::new(storage.clone()),
            storage,
            link,
            minter,
            cfg,
            events: Arc::default(),
            agents: Mutex::default(),
            jobs: Mutex::default(),
            shutdown: Mutex::default(),
            wake: (Mutex::new(false), Condvar::new()),
            credentials: Mutex::default(),
        }
    }

    pub fn set_credentials(&self, credentials: Arc<dyn JobCredentials>) {
        *self.credentials.lock().unwrap_or_else(|p| p.into_inner()) = Some(credentials);
    }

    /// Asks the dispatcher thread to offer queued work to the agents (non-blocking): after a job
    /// is queued here, or another orchestrator queued one (NOTIFY).
    pub fn wake(&self) {
        let (lock, cv) = &self.wake;
        *lock.lock().unwrap_or_else(|p| p.into_inner()) = true;
        cv.notify_one();
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
                    let woken = {
                        let (lock, cv) = &hub.wake;
                        let guard = lock.lock().unwrap_or_else(|p| p.into_inner());
                        let (mut guard, _) = cv
                            .wait_timeout_while(guard, DISPATCH_TICK, |w| !*w)
                            .unwrap_or_else(|p| p.into_inner());
                        std::mem::take(&mut *guard)
                    };
                    if woken {
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

    pub fn set_shutdown(&self, handle: ShutdownHandle) {
        *self.shutdown.lock().unwrap_or_else(|p| p.into_inner()) = Some(handle);
    }

    pub fn shutting_down(&self) -> bool {
        self.shutdown
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
            .is_some_and(ShutdownHandle::is_shutdown)
    }

    fn agents(&self) -> MutexGuard<'_, HashMap<String, Arc<Agent>>> {
        self.agents.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn jobs(&self) -> MutexGuard<'_, HashMap<String, Owned>> {
        self.jobs.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn agent(&self, id: &str) -> Option<Arc<Agent>> {
        self.agents().get(id).cloned()
    }

    pub fn agent_count(&self) -> usize {
        self.agents().len()
    }

    /// The job as `agent` holds it: dispatched to its id and token, recovering on it, or finished
    /// by it less than 30 s ago (late logs). Job-scoped messages about anything else are ignored.
    pub fn owned_by(&self, agent: &Agent, job_id: &str) -> Option<Owned> {
        self.jobs()
            .get(job_id)
            .filter(|o| o.agent_id == agent.id && o.token_id == agent.token_id)
            .filter(|o| o.finished_at.is_none_or(|t| t.elapsed() < LATE_GRACE))
            .cloned()
    }

    fn track(&self, job_id: &str, owned: Owned) {
        self.jobs().insert(job_id.to_owned(), owned);
    }

    fn update_job(&self, job_id: &str, f: impl FnOnce(&mut Owned)) {
        if let Some(o) = self.jobs().get_mut(job_id) {
            f(o);
        }
    }

    /// Registers a connection's agent. An agent id connected with another token is refused
    /// (which token holds jobs under the id is checked before, in the queue: `Hub::binding` in
    /// src/agent/revoke.rs); the same agent
    /// reconnecting replaces its previous connection.
    pub fn register(&self, agent: Arc<Agent>) -> Result<(), identity::Conflict> {
        let previous = {
            let mut agents = self.agents();
            if let Some(old) = agents.get(&agent.id) {
                if old.connection_id != agent.connection_id {
                    let held = old.active_count() as i64;
                    identity::verdict(&agent.id, agent.token(), &[(old.token(), held)])?;
                }
            }
            agents.insert(agent.id.clone(), agent.clone())
        };
        if let Some(old) = previous.filter(|o| o.connection_id != agent.connection_id) {
            // Jobs of the old connection now belong to the new one.
            let moved: Vec<String> = old.active().drain().collect();
            agent.active().extend(moved);
            old.writer.close(1000, "Replaced by a new connection");
        }
        log::info!(
            "agent {} registered (labels {}, capacity {})",
            agent.id,
            agent.labels.join(","),
            agent.max
        );
        Ok(())
    }

    /// A connection ended. Jobs its agent never acknowledged go back to the queue; running ones
    /// wait for the agent to come back within the recovery window.
    pub fn unregister(&self, agent_id: &str, connection_id: &str) {
        let removed = {
            let mut agents = self.agents();
            match agents.get(agent_id) {
                Some(a) if a.connection_id == connection_id => agents.remove(agent_id),
                _ => None,
            }
        };
        let Some(agent) = removed else { return };
        let held: Vec<String> = agent.active().iter().cloned().collect();
        let unacked: Vec<String> = {
            let jobs = self.jobs();
            held.iter()
                .filter(|j| jobs.get(*j).is_some_and(|o| o.ack_deadline.is_some()))
                .cloned()
                .collect()
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
    /// frees a slot, or another orchestrator queued work).
    pub fn kick(&self) {
        let agents: Vec<Arc<Agent>> = self.agents().values().cloned().collect();
        let mut sorted = agents;
        // The reference's default pick: lowest agent id first.
        sorted.sort_by(|a, b| a.id.cmp(&b.id));
        for agent in sorted {
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
                Ok(Some(job)) => job,
                Ok(None) => return,
                Err(e) => {
                    log::warn!("claiming a job for agent {} failed: {e}", agent.id);
                    return;
                }
            };
            // Minted before the ack deadline starts: a slow token request is not the agent's delay.
            let minter = self
                .credentials
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone();
            let frame = match credentials::frame(&job, minter.as_deref()) {
                Ok(frame) => frame,
                Err(why) => {
                    let why = why.to_string();
                    self.requeue_after(&job.id, &agent.id, &why, CREDENTIALS_BACKOFF_SECS);
                    continue;
                }
            };
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
            Ok(queue::Requeued::Failed) => {
                let reason = format!(
                    "re-dispatch attempts exhausted ({} attempts; last: {why})",
                    queue::MAX_ATTEMPTS
                );
                log::warn!("job {job_id} failed: {reason}");
                handle::finish_job(self, job_id, "failed", Some(&reason));
            }
            Ok(queue::Requeued::Pending) => log::info!("job {job_id} requeued: {why}"),
            Ok(queue::Requeued::Gone) => {}
            Err(e) => log::warn!("requeueing job {job_id} failed: {e}"),
        }
    }

    /// Housekeeping, every fraction of a second: acknowledgements that did not come in time
    /// close the agent (4031) and requeue its job.
    pub fn check_ack_deadlines(&self) {
        let now = Instant::now();
        let late: Vec<(String, String)> = self
            .jobs()
            .iter()
            .filter(|(_, o)| o.ack_deadline.is_some_and(|d| d < now))
            .map(|(j, o)| (j.clone(), o.agent_id.clone()))
            .collect();
        let requeued = !late.is_empty();
        for (job, agent_id) in late {
            log::warn!(
                "agent {agent_id} did not acknowledge job {job} within {:?}",
                self.cfg.ack_timeout
            );
            if let Some(agent) = self.agent(&agent_id) {
                agent.writer.close(4031, "Dispatch acknowledgement timeout");
                self.agents().remove(&agent_id);
            }
            self.requeue(
                &job,
                &agent_id,
                "no acknowledgement within the dispatch deadline",
            );
        }
        let now = Instant::now();
        self.jobs().retain(|_, o| {
            o.finished_at
                .is_none_or(|t| now.duration_since(t) < LATE_GRACE)
        });
        if requeued {
            self.kick();
        }
    }

    /// Sends `job.cancel` for every live job of a run and cancels what is still queued. Returns
    /// how many jobs were cancelled or told to cancel.
    pub fn cancel_run(
        &self,
        run_id: &str,
        force: bool,
        reason: &str,
    ) -> Result<usize, crate::db::DbError> {
        let live = self.pool.with_retry(|c| queue::live_of_run(c, run_id))?;
        let mut count = 0;
        for (job_id, status, agent_id) in live {
            if status == "pending" || status == "waiting" {
                self.pool
                    .with_retry(|c| queue::finish(c, &job_id, "cancelled"))?;
                handle::finish_job(self, &job_id, "cancelled", Some(reason));
                count += 1;
                continue;
            }
            let Some(agent) = agent_id.as_deref().and_then(|a| self.agent(a)) else {
                continue;
            };
            if agent
                .writer
                .send(&messages::job_cancel(run_id, &job_id, reason, force))
            {
                count += 1;
            }
        }
        self.pool
            .with_retry(|c| crate::runs::store::runs::mark_cancelling(c, run_id))?;
        // Jobs not yet created in the queue (waiting on needs) end with the run.
        let pending = self
            .pool
            .with_retry(|c| crate::runs::store::runs::unqueued_jobs(c, run_id))?;
        for job_id in pending {
            handle::finish_job(self, &job_id, "cancelled", Some(reason));
            count += 1;
        }
        Ok(count)
    }
}

/// The `job.dispatch` frame for a claimed job: its stored fields plus ids and timestamps.
pub fn dispatch_frame(job: &queue::Claimed) -> Value {
    let mut frame = match &job.dispatch {
        Value::Object(o) => {
            let mut o = o.clone();
            o.remove(credentials::CREDENTIALS_KEY);
            Value::Object(o)
        }
        _ => json!({}),
    };
    frame["type"] = json!("job.dispatch");
    frame["messageId"] = json!(crate::crypto::random_uuid());
    frame["runId"] = json!(job.run_id);
    frame["jobId"] = json!(job.id);
    frame["timestamp"] = json!(jiff::Timestamp::now().as_millisecond());
    if frame.get("lockFileUrl").is_none() {
        frame["lockFileUrl"] = json!("");
    }
    frame
}
