//! The token side of an agent's identity, with I/O: whether an id is free for a token (the
//! queue knows which token holds jobs under it), and ending the sessions of revoked tokens
//! (docs/agent-protocol.md, "Identity and ownership").
//!
//! A revoked token's live session used to stay connected and keep receiving jobs. The admin
//! revoke route now ends this orchestrator's sessions of that token at once; other orchestrators
//! on the same database notice within [`CHECK_EVERY`] by asking which of their live sessions'
//! tokens are still valid (one small query a second, only while agents are connected). Jobs of a
//! revoked token are requeued right away: a revoked agent is not coming back, so there is no
//! recovery window to wait out.

use std::{sync::Arc, time::Duration};

use super::{
    identity::{self, Conflict, TokenRef},
    messages, Agent, Hub,
};
use crate::{
    db::{agent_tokens, DbError},
    runs::store::queue,
};

/// How often live sessions' tokens are checked against the database.
pub const CHECK_EVERY: Duration = Duration::from_secs(1);

const REVOKED: &str = "the agent's token was revoked";

impl Hub {
    /// Whether `agent_id` may register with `token`: refused while another token holds jobs
    /// (dispatched or recovering) under that id, on any orchestrator sharing the database.
    pub fn binding(
        &self,
        agent_id: &str,
        token: TokenRef<'_>,
    ) -> Result<Result<(), Conflict>, DbError> {
        let rows = self.pool.with_retry(|c| queue::holders_of(c, agent_id))?;
        let holders: Vec<(TokenRef<'_>, i64)> = rows
            .iter()
            .map(|h| {
                let t = TokenRef {
                    id: h.token_id.as_deref(),
                    prefix: h.token_prefix.as_deref(),
                };
                (t, h.jobs)
            })
            .collect();
        Ok(identity::verdict(agent_id, token, &holders))
    }

    /// Ends this orchestrator's sessions of these tokens (close 4010, which the agent does not
    /// retry) and requeues their jobs, and the jobs still waiting for an agent of theirs to come
    /// back. Returns how many sessions were ended.
    pub fn revoke_tokens(&self, token_ids: &[String]) -> usize {
        if token_ids.is_empty() {
            return 0;
        }
        let ended: Vec<Arc<Agent>> = {
            let mut agents = self.agents();
            let ids: Vec<String> = agents
                .values()
                .filter(|a| a.token_id.as_ref().is_some_and(|t| token_ids.contains(t)))
                .map(|a| a.id.clone())
                .collect();
            // Out of the map first: the session's own clean-up then finds nothing to put into a
            // recovery window.
            ids.iter().filter_map(|id| agents.remove(id)).collect()
        };
        for agent in &ended {
            log::warn!(
                "agent {} disconnected: its token {} was revoked",
                agent.id,
                agent.token().shown()
            );
            agent.writer.send(&messages::auth_failure("Token revoked"));
            agent.writer.close(identity::REFUSED, "Token revoked");
            let held: Vec<String> = agent.active().drain().collect();
            for job in held {
                self.requeue(&job, &agent.id, REVOKED);
            }
        }
        match self
            .pool
            .with_retry(|c| queue::recovering_of_tokens(c, token_ids))
        {
            Ok(rows) => {
                for (job, agent_id) in rows {
                    self.requeue(&job, &agent_id, REVOKED);
                }
            }
            Err(e) => log::warn!("requeueing the waiting jobs of revoked agent tokens failed: {e}"),
        }
        self.kick();
        ended.len()
    }

    /// Housekeeping, once a second: sessions whose token was revoked (here or through another
    /// orchestrator on the same database) end.
    pub fn end_revoked_sessions(&self) {
        let mut ids: Vec<String> = self
            .agents()
            .values()
            .filter_map(|a| a.token_id.clone())
            .collect();
        ids.sort();
        ids.dedup();
        if ids.is_empty() {
            return;
        }
        match self
            .pool
            .with_retry(|c| agent_tokens::revoked_among(c, &ids))
        {
            Ok(revoked) if !revoked.is_empty() => {
                self.revoke_tokens(&revoked);
            }
            Ok(_) => {}
            Err(e) => log::debug!("checking live agent tokens failed: {e}"),
        }
    }
}
