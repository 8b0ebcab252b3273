//! The agent link (docs/agent-protocol.md; its parts: "Implementation"): agents connect to
//! `GET /ws` on the orchestrator's port, authenticate with `kat_` tokens, register with labels,
//! and receive `job.dispatch` frames for queued jobs they may run; they report status, steps and
//! logs back.
//!
//! `Hub` holds the parts: the `registry` of connected agents and held jobs (in memory), their
//! `writer`s (socket writes), and the `dispatcher` (queue claims and the thread that offers work,
//! enforces ack deadlines and expires lost jobs). A connection is a `protocol` state machine
//! (pure) driven by a `session` over the socket; `handle` acts on what agents send; the queue, jobs
//! and runs are `crate::runs`; `revoke` ends the sessions of revoked tokens; `messages`, `select`,
//! `identity`, `cache_keys`, `terminal` and `wsframe` are pure; `uploads` signs URLs.

pub mod cache_keys;
pub mod credentials;
pub mod dispatcher;
pub mod handle;
pub mod identity;
pub mod log_writer;
pub mod logs;
pub mod messages;
pub mod protocol;
pub mod registry;
pub mod revoke;
pub mod select;
pub mod session;
pub mod terminal;
pub mod uploads;
pub mod writer;
pub mod wsframe;

#[cfg(test)]
mod hub_tests;

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use serde_json::{json, Value};

use crate::{
    db::Pool,
    http::server::ShutdownHandle,
    platform::{oidc::Minter, Link},
    runs::{events::Events, store::queue},
    storage::Storage,
};
use credentials::JobCredentials;
use dispatcher::Wakeup;
use logs::Logs;
pub use registry::{Agent, Owned, Registry};
pub use writer::Writer;

pub struct HubConfig {
    /// `KICI_DISPATCH_ACK_TIMEOUT_MS` (default 10 000, at least 1 000).
    pub ack_timeout: Duration,
    /// How long jobs of a vanished agent wait for it (2 × `KICI_AGENT_MAX_RECONNECT_DELAY_MS`).
    pub recovery_window: Duration,
    /// `KICI_AGENT_AUTH=none` turns token checks off (development only).
    pub auth_required: bool,
    pub instance_id: String,
}

/// The agent link's shared parts, one per daemon.
pub struct Hub {
    pub pool: Pool,
    pub storage: Option<Arc<Storage>>,
    pub link: Option<Arc<Link>>,
    pub minter: Option<Minter>,
    pub cfg: HubConfig,
    pub logs: Logs,
    registry: Registry,
    /// Where job and run changes are published (the daemon subscribes the Platform forwarder).
    pub events: Arc<Events>,
    shutdown: Mutex<Option<ShutdownHandle>>,
    wakeup: Wakeup,
    credentials: Mutex<Option<Arc<dyn JobCredentials>>>,
    /// Opens the secrets of dispatched jobs (`crate::secrets::dispatch`), set by the daemon.
    job_secrets: std::sync::OnceLock<crate::secrets::dispatch::JobSecrets>,
}

impl Hub {
    pub fn new(
        pool: Pool,
        storage: Option<Arc<Storage>>,
        link: Option<Arc<Link>>,
        minter: Option<Minter>,
        cfg: HubConfig,
    ) -> Hub {
        Hub {
            logs: Logs::new(storage.clone(), pool.clone()),
            pool,
            storage,
            link,
            minter,
            cfg,
            registry: Registry::default(),
            events: Arc::default(),
            shutdown: Mutex::default(),
            wakeup: Wakeup::default(),
            credentials: Mutex::default(),
            job_secrets: std::sync::OnceLock::new(),
        }
    }

    pub fn set_job_secrets(&self, secrets: crate::secrets::dispatch::JobSecrets) {
        let _ = self.job_secrets.set(secrets);
    }

    /// Adds the job's secrets, environment and variables to its frame (docs/secrets.md,
    /// "Resolution at dispatch"); without a resolver set, a job that names an environment fails.
    pub fn with_secrets(
        &self,
        job: &queue::Claimed,
        frame: &mut Value,
    ) -> Result<(), crate::secrets::dispatch::Refusal> {
        crate::secrets::dispatch::attach(self.job_secrets.get(), &self.pool, job, frame)
    }

    pub fn set_credentials(&self, credentials: Arc<dyn JobCredentials>) {
        *self.credentials.lock().unwrap_or_else(|p| p.into_inner()) = Some(credentials);
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
                handle::finish_job(self, run_id, &job_id, "cancelled", Some(reason));
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
            handle::finish_job(self, run_id, &job_id, "cancelled", Some(reason));
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
