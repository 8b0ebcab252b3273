//! The hub's in-memory state, without I/O: which agents are connected (their labels, capacity,
//! taint and writer) and which job each one holds (for ownership checks, ack deadlines and late
//! messages). The database claims and the socket writes that change it are elsewhere
//! (src/agent/dispatcher.rs, src/agent/writer.rs).

use std::{
    collections::{HashMap, HashSet},
    sync::{atomic::AtomicBool, Arc, Mutex, MutexGuard},
    time::{Duration, Instant},
};

use super::{
    cache_keys::{JobScope, Platform},
    identity::{self, TokenRef},
    logs::LogBudget,
    messages, Hub, Writer,
};
use crate::db::agent_tokens::AgentToken;

/// How long a late message about a finished job is still accepted from its agent.
const LATE_GRACE: Duration = Duration::from_secs(30);

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
    pub(super) paused: AtomicBool,
    pub(super) drain_lock: Mutex<()>,
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

    /// The ids of the jobs it holds.
    pub(super) fn active(&self) -> MutexGuard<'_, HashSet<String>> {
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
    /// What of its log may still be stored (docs/agent-protocol.md, "Limits").
    pub budget: LogBudget,
    /// The cache keys its dispatch allows it to write.
    pub scope: JobScope,
}

/// Connected agents by id, and held jobs by id.
#[derive(Default)]
pub struct Registry {
    agents: Mutex<HashMap<String, Arc<Agent>>>,
    jobs: Mutex<HashMap<String, Owned>>,
}

impl Registry {
    pub(super) fn agents(&self) -> MutexGuard<'_, HashMap<String, Arc<Agent>>> {
        self.agents.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(super) fn jobs(&self) -> MutexGuard<'_, HashMap<String, Owned>> {
        self.jobs.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Every connected agent, lowest id first (the reference's default pick).
    pub(super) fn by_id(&self) -> Vec<Arc<Agent>> {
        let mut sorted: Vec<Arc<Agent>> = self.agents().values().cloned().collect();
        sorted.sort_by(|a, b| a.id.cmp(&b.id));
        sorted
    }

    /// Registers a connection's agent. An agent id connected with another token is refused
    /// (which token holds jobs under the id is checked before, in the queue: `Hub::binding` in
    /// src/agent/revoke.rs); the same agent reconnecting replaces its previous connection.
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

    /// Takes a connection's agent out (nothing when another connection replaced it): the agent,
    /// the jobs it holds, and those of them it never acknowledged.
    pub(super) fn disconnect(
        &self,
        agent_id: &str,
        connection_id: &str,
    ) -> Option<(Arc<Agent>, Vec<String>, Vec<String>)> {
        let removed = {
            let mut agents = self.agents();
            match agents.get(agent_id) {
                Some(a) if a.connection_id == connection_id => agents.remove(agent_id),
                _ => None,
            }
        };
        let agent = removed?;
        let held: Vec<String> = agent.active().iter().cloned().collect();
        let unacked: Vec<String> = {
            let jobs = self.jobs();
            held.iter()
                .filter(|j| jobs.get(*j).is_some_and(|o| o.ack_deadline.is_some()))
                .cloned()
                .collect()
        };
        Some((agent, held, unacked))
    }

    pub fn agent(&self, id: &str) -> Option<Arc<Agent>> {
        self.agents().get(id).cloned()
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

    pub(super) fn track(&self, job_id: &str, owned: Owned) {
        self.jobs().insert(job_id.to_owned(), owned);
    }

    pub(super) fn update_job(&self, job_id: &str, f: impl FnOnce(&mut Owned)) {
        if let Some(o) = self.jobs().get_mut(job_id) {
            f(o);
        }
    }

    /// Jobs whose acknowledgement deadline passed before `now`, with their agents.
    pub(super) fn overdue(&self, now: Instant) -> Vec<(String, String)> {
        self.jobs()
            .iter()
            .filter(|(_, o)| o.ack_deadline.is_some_and(|d| d < now))
            .map(|(j, o)| (j.clone(), o.agent_id.clone()))
            .collect()
    }

    /// Forgets jobs finished long enough ago that no late message about them counts.
    pub(super) fn forget_finished(&self, now: Instant) {
        self.jobs().retain(|_, o| {
            o.finished_at
                .is_none_or(|t| now.duration_since(t) < LATE_GRACE)
        });
    }
}

/// The registry as the rest of the agent link reaches it, through the hub.
impl Hub {
    pub(super) fn agents(&self) -> MutexGuard<'_, HashMap<String, Arc<Agent>>> {
        self.registry.agents()
    }

    pub(super) fn jobs(&self) -> MutexGuard<'_, HashMap<String, Owned>> {
        self.registry.jobs()
    }

    pub fn agent(&self, id: &str) -> Option<Arc<Agent>> {
        self.registry.agent(id)
    }

    pub fn agent_count(&self) -> usize {
        self.agents().len()
    }

    /// `(agents, free slots, busy slots)` for `/metrics`.
    pub fn slots(&self) -> (usize, u64, u64) {
        // Each agent's own lock is taken after the registry's is released.
        let agents: Vec<Arc<Agent>> = self.agents().values().cloned().collect();
        let (free, used) = agents.iter().fold((0, 0), |(f, u), a| {
            let busy = a.active_count() as u64;
            (f + u64::from(a.max).saturating_sub(busy), u + busy)
        });
        (agents.len(), free, used)
    }

    /// Every agent connected to this orchestrator, lowest id first (for `diagnose`).
    pub fn connected(&self) -> Vec<Arc<Agent>> {
        self.registry.by_id()
    }

    /// See [`Registry::owned_by`].
    pub fn owned_by(&self, agent: &Agent, job_id: &str) -> Option<Owned> {
        self.registry.owned_by(agent, job_id)
    }

    pub(super) fn track(&self, job_id: &str, owned: Owned) {
        self.registry.track(job_id, owned);
    }

    pub(super) fn update_job(&self, job_id: &str, f: impl FnOnce(&mut Owned)) {
        self.registry.update_job(job_id, f);
    }

    /// See [`Registry::register`].
    pub fn register(&self, agent: Arc<Agent>) -> Result<(), identity::Conflict> {
        self.registry.register(agent)
    }
}
