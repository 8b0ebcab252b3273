//! An agent id bound to the token it registered with. Pure.
//!
//! Agents choose their own `agentId`, so the id alone cannot say who may resume a job: while an
//! agent was away (its jobs in the recovery window) any other token, even a label-restricted
//! one, could register the same id and then report for, log into, get upload URLs and OIDC
//! tokens for that agent's jobs. The queue row records the token a job was dispatched to
//! (`dispatch_queue.agent_token_id`, migrations/0005_agent_identity.sql), so the binding holds
//! across orchestrator restarts and between orchestrators sharing the database.
//!
//! A refused registration closes with 4010: the real agent never reconnects after it
//! (docs/agent-protocol.md, "Close codes"), so an impostor does not hammer the orchestrator —
//! the reference's 4003 for this case made it retry forever. See also docs/agent-protocol.md,
//! "Identity and ownership".

/// Close code of a refused identity: the agent does not retry.
pub const REFUSED: u16 = 4010;

/// The token an agent authenticated with, as logs may show it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TokenRef<'a> {
    pub id: Option<&'a str>,
    pub prefix: Option<&'a str>,
}

impl TokenRef<'_> {
    /// The token's displayed prefix, or what stands for "none".
    pub fn shown(&self) -> &str {
        match (self.id, self.prefix) {
            (None, _) => "(no token: KICI_AGENT_AUTH=none)",
            (Some(_), Some(p)) => p,
            (Some(_), None) => "(a deleted token)",
        }
    }
}

/// Another token holds jobs under the id being registered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Conflict {
    /// What the log says (both token prefixes, never a token).
    pub log: String,
    /// What the agent is told (`auth.failure` reason).
    pub reason: String,
}

/// Whether `agent_id` may register with `token`, given which tokens hold live jobs under that id
/// (`(token, job count)` from the queue, or from a connected agent). Only two different tokens
/// conflict: without auth there is no token to bind, and a job recorded without one (dispatched
/// without auth, or before migration 0005) binds none — refusing it would lock out, for good,
/// every agent that held a job across the upgrade.
pub fn verdict(
    agent_id: &str,
    token: TokenRef<'_>,
    holders: &[(TokenRef<'_>, i64)],
) -> Result<(), Conflict> {
    let Some(mine) = token.id else {
        return Ok(());
    };
    let other_token = |h: &TokenRef<'_>| h.id.is_some_and(|id| id != mine);
    let Some((other, jobs)) = holders.iter().find(|(h, _)| other_token(h)) else {
        return Ok(());
    };
    Err(Conflict {
        log: format!(
            "agent id {agent_id} refused for token {}: it is bound to token {}, which holds {jobs} \
             job(s) under it (dispatched or waiting for it to reconnect)",
            token.shown(),
            other.shown()
        ),
        reason: format!(
            "agent id {agent_id} is in use by another agent token that holds jobs; \
             choose another KICI_AGENT_ID or use that agent's token"
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINE: TokenRef<'static> = TokenRef {
        id: Some("t1"),
        prefix: Some("kat_11111111"),
    };
    const OTHER: TokenRef<'static> = TokenRef {
        id: Some("t2"),
        prefix: Some("kat_22222222"),
    };
    const NONE: TokenRef<'static> = TokenRef {
        id: None,
        prefix: None,
    };

    #[test]
    fn another_tokens_jobs_refuse_the_id() {
        assert_eq!(verdict("a", MINE, &[]), Ok(()));
        assert_eq!(verdict("a", MINE, &[(MINE, 2)]), Ok(()));
        let c = verdict("a", OTHER, &[(MINE, 2)]).unwrap_err();
        assert!(
            c.log.contains("kat_22222222")
                && c.log.contains("kat_11111111")
                && c.log.contains("2 job(s)"),
            "{}",
            c.log
        );
        assert!(!c.reason.contains("kat_"), "{}", c.reason);
        assert!(verdict("a", OTHER, &[(NONE, 1), (MINE, 1)]).is_err());
    }

    #[test]
    fn jobs_recorded_without_a_token_bind_none() {
        assert_eq!(verdict("a", NONE, &[(NONE, 3)]), Ok(()));
        assert_eq!(
            verdict("a", MINE, &[(NONE, 1)]),
            Ok(()),
            "dispatched before 0005"
        );
        assert_eq!(verdict("a", NONE, &[(MINE, 1)]), Ok(()), "auth turned off");
        assert_eq!(
            TokenRef {
                id: Some("x"),
                prefix: None
            }
            .shown(),
            "(a deleted token)"
        );
    }
}
