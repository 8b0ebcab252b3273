//! The agent link's settings (docs/agent-protocol.md, "Timings"): `KICI_AGENT_AUTH`,
//! `KICI_DISPATCH_ACK_TIMEOUT_MS`, `KICI_AGENT_MAX_RECONNECT_DELAY_MS`.

use std::time::Duration;

use super::Loader;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentSettings {
    /// `token` (default) or `none` (development: any agent may connect).
    pub auth_required: bool,
    pub ack_timeout: Duration,
    /// Jobs of a disconnected agent wait 2 × the agents' maximum reconnect delay.
    pub recovery_window: Duration,
}

impl Loader {
    pub(super) fn agent_settings(&mut self) -> AgentSettings {
        let auth = self.choice("KICI_AGENT_AUTH", &[("token", true), ("none", false)], true);
        let ack_rule = "must be a whole number of milliseconds, at least 1000";
        let ack = self.number("KICI_DISPATCH_ACK_TIMEOUT_MS", 10_000u64, ack_rule);
        if ack < 1000 {
            let got = self.get("KICI_DISPATCH_ACK_TIMEOUT_MS").unwrap_or_default();
            self.problem(
                "KICI_DISPATCH_ACK_TIMEOUT_MS",
                format!("{ack_rule}, got {got:?}"),
            );
        }
        let delay_rule = "must be a whole number of milliseconds";
        let delay = self.number("KICI_AGENT_MAX_RECONNECT_DELAY_MS", 60_000u64, delay_rule);
        if auth == Some(false) {
            self.warnings.push(
                "KICI_AGENT_AUTH=none: any agent that reaches /ws may register and run jobs".into(),
            );
        }
        AgentSettings {
            auth_required: auth.unwrap_or(true),
            ack_timeout: Duration::from_millis(ack.max(1000)),
            recovery_window: Duration::from_millis(delay.saturating_mul(2)),
        }
    }
}
