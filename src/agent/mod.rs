//! The agent link (docs/agent-protocol.md; its parts: "Implementation"): agents connect to
//! `GET /ws` on the orchestrator's port, authenticate with `kat_` tokens, register with labels,
//! and receive `job.dispatch` frames for queued jobs they may run; they report status, steps and
//! logs back.
//!
//! `Hub` holds the parts: the `registry` of connected agents and held jobs (in memory), their
//! `writer`s (socket writes), and the `dispatcher` (queue claims and the thread that offers work,
//! enforces ack deadlines and expires lost jobs). A connection is a `protocol` state machine
//! (pure) driven by a `session` over the socket; `handle` acts on what agents send; `queue` and
//! `jobs` are the database; `revoke` ends the sessions of revoked tokens; `messages`, `select`,
//! `identity`, `cache_keys`, `terminal` and `wsframe` are pure; `uploads` signs URLs.

pub mod cache_keys;
pub mod credentials;
pub mod dispatcher;
pub mod handle;
pub mod identity;
pub mod jobs;
pub mod logs;
pub mod messages;
pub mod protocol;
pub mod queue;
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
    shutdown: Mutex<Option<ShutdownHandle>>,
    wakeup: Wakeup,
    credentials: Mutex<Option<Arc<dyn JobCredentials>>>,
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
            pool,
            logs: Logs::new(storage.clone()),
            storage,
            link,
            minter,
            cfg,
            registry: Registry::default(),
            shutdown: Mutex::default(),
            wakeup: Wakeup::default(),
            credentials: Mutex::default(),
        }
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
        self.pool.with_retry(|c| {
            c.execute(
                "UPDATE execution_runs SET status = 'cancelling', updated_at = now()
                  WHERE run_id = $1::text::uuid AND status IN ('pending', 'running')",
                &[&run_id],
            )
            .map_err(crate::db::DbError::query("marking a run cancelling"))
        })?;
        // Jobs not yet created in the queue (waiting on needs) end with the run.
        let pending: Vec<String> = self.pool.with_retry(|c| {
            let rows = c
                .query(
                    "SELECT job_id::text FROM execution_jobs WHERE run_id = $1::text::uuid AND status = 'pending'
                       AND NOT EXISTS (SELECT 1 FROM dispatch_queue q WHERE q.id = execution_jobs.job_id)",
                    &[&run_id],
                )
                .map_err(crate::db::DbError::query("reading a run's waiting jobs"))?;
            Ok(rows.iter().map(|r| r.get(0)).collect())
        })?;
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
