//! The daemon's shared services (`App`), built once by `daemon.rs` and shared by every
//! connection thread, the Platform link and housekeeping; and the narrow views of it that the
//! admin handlers take (`SourceCtx`, `AgentCtx`, `RunCtx`), so each handler sees only the
//! services its area uses. The HTTP route table (`http/routes.rs`) and the Platform link
//! (`platform/`) both depend on this module; neither depends on the other.

use std::{sync::Arc, time::Instant};

use crate::{
    agent::Hub,
    config::Config,
    crypto::SecretBox,
    db::Pool,
    github::api::GitHubApi,
    ingest::Intake,
    pipeline::process::Pipeline,
    platform::Link,
    sources::registry::{Kind, SourceRegistry},
    storage::Storage,
};

/// Shared by every connection thread.
pub struct App {
    pub config: Arc<Config>,
    pub pool: Pool,
    pub started: Instant,
    /// Seals and opens source secrets with `KICI_SECRET_KEY` (and `_OLD` during rotation).
    pub secrets: SecretBox,
    /// Where GitHub App credentials are checked (`KICI_GITHUB_API_URL`).
    pub github: GitHubApi,
    /// Every enabled source with its secret, kept current by the LISTEN thread.
    pub registry: Arc<SourceRegistry>,
    /// Webhook intake: verification, filtering, dedup and recording for direct and relayed
    /// deliveries alike (it holds the rate limiter and the group-committing recorder).
    pub intake: Intake,
    /// Caches and logs; `None` when no storage is configured (caches off).
    pub storage: Option<Arc<Storage>>,
    /// The Platform link (platform and hybrid modes).
    pub platform: Option<Arc<Link>>,
    /// Connected agents, their jobs and the queue.
    pub agents: Arc<Hub>,
    /// Turns recorded deliveries into runs and queued jobs.
    pub pipeline: Arc<Pipeline>,
}

impl App {
    /// What the source routes (GitHub App and generic sources) use.
    pub fn sources(&self) -> SourceCtx<'_> {
        SourceCtx {
            config: &self.config,
            pool: &self.pool,
            secrets: &self.secrets,
            github: &self.github,
            registry: &self.registry,
        }
    }

    /// What the agent-token and run-cancel routes use.
    pub fn agents(&self) -> AgentCtx<'_> {
        AgentCtx {
            pool: &self.pool,
            agents: &self.agents,
        }
    }

    /// What the workflow secret, environment, rotation and audit routes use.
    pub fn workflow_secrets(&self) -> SecretCtx<'_> {
        SecretCtx {
            pool: &self.pool,
            secrets: &self.secrets,
        }
    }

    /// What the run listing routes use.
    pub fn runs(&self) -> RunCtx<'_> {
        RunCtx {
            pool: &self.pool,
            storage: &self.storage,
        }
    }
}

/// Sources: their rows, sealed secrets, the GitHub credential check, and this instance's
/// registry (refreshed at once after an admin change).
pub struct SourceCtx<'a> {
    /// For the webhook URL a new source is told (mode, public URL, base path).
    pub config: &'a Config,
    pub pool: &'a Pool,
    pub secrets: &'a SecretBox,
    pub github: &'a GitHubApi,
    pub registry: &'a SourceRegistry,
}

impl SourceCtx<'_> {
    /// Applies an admin change to this instance's registry at once, so a webhook right after the
    /// admin call already sees it (other instances follow through LISTEN/NOTIFY).
    pub fn refresh_source(&self, kind: Kind, routing_key: &str) {
        let keys = [(kind, routing_key.to_owned())];
        if let Err(e) = self
            .pool
            .with_retry(|c| self.registry.refresh(c, self.secrets, &keys))
        {
            log::warn!("refreshing source {routing_key} locally failed ({e}); the LISTEN thread will catch up");
        }
    }
}

/// Agents: their tokens, and the hub that ends sessions and cancels runs.
pub struct AgentCtx<'a> {
    pub pool: &'a Pool,
    pub agents: &'a Hub,
}

/// Runs: their rows, and the storage their logs are read from.
pub struct RunCtx<'a> {
    pub pool: &'a Pool,
    pub storage: &'a Option<Arc<Storage>>,
}

/// Workflow secrets and environments: their rows and the box that seals them.
pub struct SecretCtx<'a> {
    pub pool: &'a Pool,
    pub secrets: &'a SecretBox,
}
