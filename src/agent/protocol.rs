//! One agent connection's protocol state, without the socket, the database or a clock
//! (docs/agent-protocol.md, "Connection", "Authentication", "Registration", "Close codes",
//! "Limits"): bytes and the time come in, [`Action`]s go out, and the driver in
//! src/agent/session.rs performs them (writes, token checks, registration, message handling) and
//! feeds the outcomes back.
//!
//! Phases: `Auth` (only when tokens are required: an `auth.request` within 5 s), `Register` (an
//! `agent.register` within 10 s), `Registered` (messages until the agent goes away, falls silent
//! for 180 s, or the daemon stops). Before registration at most 5 control frames are answered.
//!
//! A per-connection budget (100 messages/s, burst 200; 500 KB/s, burst 2 MB) slows a flooding
//! agent down by reading from it later — backpressure through TCP — and never drops a message:
//! the reference's limiter silently dropped job-state frames, and jobs never completed.

use std::time::{Duration, Instant};

use serde_json::Value;

use super::{
    identity::{self, Conflict},
    messages::{self, AgentMsg, Register},
    select,
    wsframe::{self, FrameError, Message, MAX_MESSAGE},
};
use crate::db::agent_tokens::AgentToken;

pub const AUTH_WINDOW: Duration = Duration::from_secs(5);
pub const REGISTER_WINDOW: Duration = Duration::from_secs(10);
/// Silence after which a registered agent is logged as unhealthy.
pub const UNHEALTHY_AFTER: Duration = Duration::from_secs(90);
/// Silence after which a registered agent is closed (4004).
pub const SILENT_CLOSE: Duration = Duration::from_secs(180);
/// Control frames (ping, pong) answered before registration. Each ping costs a pong, so a
/// stranger who has not even authenticated could otherwise keep us writing for free; a real
/// agent sends none before it registers.
pub const PRE_REGISTER_CONTROL_FRAMES: u32 = 5;

/// Close codes of the agent link (framing errors carry RFC 6455's own: 1002, 1007).
pub mod close {
    /// The agent closed, or its agent id connected again and replaced this connection.
    pub const NORMAL: u16 = 1000;
    pub const SHUTTING_DOWN: u16 = 1001;
    /// The database failed on our side: the agent retries later.
    pub const UNAVAILABLE: u16 = 1011;
    /// No `auth.request` or `agent.register` within its window.
    pub const TIMEOUT: u16 = 4002;
    /// A malformed or oversized message, a message out of phase, too many control frames.
    pub const POLICY: u16 = 4003;
    pub const HEARTBEAT_TIMEOUT: u16 = 4004;
    pub const UNSUPPORTED_VERSION: u16 = 4005;
    /// Authentication or registration refused: the agent does not retry.
    pub const REFUSED: u16 = super::identity::REFUSED;
}

/// What the driver does, in order. `Close` and `AnswerClose` end the session.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// A JSON text frame.
    Send(Value),
    Pong(Vec<u8>),
    /// Read nothing more for this long (the budget is spent).
    Wait(Duration),
    /// Check the token, then call [`Protocol::on_auth_result`].
    Authenticate {
        token: String,
    },
    /// Bind the agent id to the token and register it, then call
    /// [`Protocol::on_register_result`].
    Register {
        reg: Box<Register>,
        token: Option<AgentToken>,
    },
    /// Take back the jobs the agent says it still runs (after a registration).
    Resume {
        in_flight: Vec<(String, String)>,
    },
    /// A registered agent's message, for the handler.
    Deliver(AgentMsg),
    /// Send a close frame and end the connection.
    Close {
        code: u16,
        reason: &'static str,
    },
    /// Answer the agent's close (1000) and end the session.
    AnswerClose,
}

/// What the token check found.
#[derive(Debug, Clone, PartialEq)]
pub enum AuthOutcome {
    Valid(AgentToken),
    /// Unknown, revoked or expired.
    Invalid,
    /// The database failed.
    Unavailable,
}

/// What the registration found.
#[derive(Debug, Clone, PartialEq)]
pub enum RegisterOutcome {
    Registered,
    /// Another token holds this agent id.
    Refused(Conflict),
    /// The database failed.
    Unavailable,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Phase {
    Auth {
        until: Instant,
    },
    Register {
        until: Instant,
        token: Option<AgentToken>,
    },
    Registered {
        agent_id: String,
        token: Option<AgentToken>,
    },
}

/// Token buckets: messages and bytes per second with bursts.
struct Budget {
    msgs: f64,
    bytes: f64,
    at: Instant,
    warned: Option<Instant>,
}

impl Budget {
    const MSG_RATE: f64 = 100.0;
    const MSG_BURST: f64 = 200.0;
    const BYTE_RATE: f64 = 500_000.0;
    const BYTE_BURST: f64 = 2_000_000.0;

    fn new(now: Instant) -> Budget {
        Budget {
            msgs: Self::MSG_BURST,
            bytes: Self::BYTE_BURST,
            at: now,
            warned: None,
        }
    }

    /// How long to wait before this message may be handled (zero when within budget).
    fn spend(&mut self, size: usize, now: Instant) -> Duration {
        let dt = now.saturating_duration_since(self.at).as_secs_f64();
        self.at = now;
        self.msgs = (self.msgs + dt * Self::MSG_RATE).min(Self::MSG_BURST) - 1.0;
        self.bytes = (self.bytes + dt * Self::BYTE_RATE).min(Self::BYTE_BURST) - size as f64;
        let wait = (-self.msgs / Self::MSG_RATE)
            .max(-self.bytes / Self::BYTE_RATE)
            .max(0.0);
        Duration::from_secs_f64(wait.min(5.0))
    }

    /// Spends the budget for a message of `size` bytes: a wait when it is exhausted (warning
    /// the agent at most once a second).
    fn pace(&mut self, size: usize, now: Instant, out: &mut Vec<Action>) {
        let wait = self.spend(size, now);
        if wait.is_zero() {
            return;
        }
        if self
            .warned
            .is_none_or(|t| now.saturating_duration_since(t) > Duration::from_secs(1))
        {
            self.warned = Some(now);
            out.push(Action::Send(messages::rate_limit_warning(
                wait.as_millis() as u64
            )));
        }
        out.push(Action::Wait(wait));
    }
}

pub struct Protocol {
    phase: Phase,
    connection_id: String,
    /// Who is connected, for logs.
    peer: String,
    received: Vec<u8>,
    assembler: wsframe::Assembler,
    budget: Budget,
    last_heard: Instant,
    warned_unhealthy: bool,
    control_frames: u32,
    /// The registration being checked by the driver.
    registering: Option<Box<Register>>,
    ended: bool,
}

impl Protocol {
    /// A connection just upgraded at `now`.
    pub fn new(auth_required: bool, connection_id: String, peer: String, now: Instant) -> Protocol {
        Protocol {
            phase: if auth_required {
                Phase::Auth {
                    until: now + AUTH_WINDOW,
                }
            } else {
                Phase::Register {
                    until: now + REGISTER_WINDOW,
                    token: None,
                }
            },
            connection_id,
            peer,
            received: Vec::new(),
            assembler: wsframe::Assembler::default(),
            budget: Budget::new(now),
            last_heard: now,
            warned_unhealthy: false,
            control_frames: 0,
            registering: None,
            ended: false,
        }
    }

    pub fn phase(&self) -> &Phase {
        &self.phase
    }

    pub fn connection_id(&self) -> &str {
        &self.connection_id
    }

    pub fn peer(&self) -> &str {
        &self.peer
    }

    /// Whether an action ended the session (nothing more is done after it).
    pub fn ended(&self) -> bool {
        self.ended
    }

    /// Bytes read from the connection.
    pub fn receive(&mut self, bytes: &[u8]) {
        self.received.extend_from_slice(bytes);
    }

    /// Handles the next complete frame received: `None` when more bytes are needed.
    pub fn next_frame(&mut self, now: Instant) -> Option<Vec<Action>> {
        if self.ended {
            return None;
        }
        match wsframe::parse(&self.received, MAX_MESSAGE) {
            Ok(None) => None,
            Ok(Some((frame, used))) => {
                self.received.drain(..used);
                Some(self.on_frame(frame, now))
            }
            Err(e) => Some(self.frame_error(&e)),
        }
    }

    /// One frame from the agent.
    pub fn on_frame(&mut self, frame: wsframe::Frame, now: Instant) -> Vec<Action> {
        if self.ended {
            return Vec::new();
        }
        self.last_heard = now;
        self.warned_unhealthy = false;
        let message = match self.assembler.push(frame, MAX_MESSAGE) {
            Ok(Some(m)) => m,
            Ok(None) => return Vec::new(),
            Err(e) => return self.frame_error(&e),
        };
        let registered = matches!(self.phase, Phase::Registered { .. });
        if matches!(message, Message::Ping(_) | Message::Pong) && !registered {
            self.control_frames += 1;
            if self.control_frames > PRE_REGISTER_CONTROL_FRAMES {
                return self.close(close::POLICY, "Too many control frames before registration");
            }
        }
        let mut out = Vec::new();
        // A fragmented message is charged whole (all its fragments), when it is complete.
        match &message {
            Message::Text(text) => self.budget.pace(text.len(), now, &mut out),
            Message::Ping(payload) => self.budget.pace(payload.len(), now, &mut out),
            _ => {}
        }
        match message {
            Message::Text(text) => out.extend(self.on_text(&text)),
            Message::Binary(_) | Message::Pong => {}
            Message::Ping(p) => out.push(Action::Pong(p)),
            Message::Close(_) => {
                self.ended = true;
                out.push(Action::AnswerClose);
            }
        }
        out
    }

    /// Time passing without frames: the auth and registration windows, and silence.
    pub fn on_tick(&mut self, now: Instant) -> Vec<Action> {
        if self.ended {
            return Vec::new();
        }
        match &self.phase {
            Phase::Auth { until } if now > *until => self.close(close::TIMEOUT, "Auth timeout"),
            Phase::Register { until, .. } if now > *until => {
                self.close(close::TIMEOUT, "Registration timeout")
            }
            Phase::Registered { agent_id, .. } => {
                let silent = now.saturating_duration_since(self.last_heard);
                if silent > SILENT_CLOSE {
                    return self.close(close::HEARTBEAT_TIMEOUT, "Heartbeat timeout");
                }
                if silent > UNHEALTHY_AFTER && !self.warned_unhealthy {
                    self.warned_unhealthy = true;
                    log::warn!(
                        "agent {agent_id} silent for {} s (unhealthy)",
                        silent.as_secs()
                    );
                }
                Vec::new()
            }
            _ => Vec::new(),
        }
    }

    /// The daemon is stopping.
    pub fn on_shutdown(&mut self) -> Vec<Action> {
        if self.ended {
            return Vec::new();
        }
        self.close(close::SHUTTING_DOWN, "Server shutting down")
    }

    /// The outcome of an [`Action::Authenticate`].
    pub fn on_auth_result(&mut self, outcome: AuthOutcome, now: Instant) -> Vec<Action> {
        match outcome {
            AuthOutcome::Valid(token) => {
                self.phase = Phase::Register {
                    until: now + REGISTER_WINDOW,
                    token: Some(token),
                };
                vec![Action::Send(messages::auth_success(&self.connection_id))]
            }
            AuthOutcome::Invalid => self.refuse("Invalid or expired token"),
            // Not the agent's fault: a normal close, so it retries later.
            AuthOutcome::Unavailable => self.close(close::UNAVAILABLE, "Database unavailable"),
        }
    }

    /// The outcome of an [`Action::Register`].
    pub fn on_register_result(&mut self, outcome: RegisterOutcome) -> Vec<Action> {
        let Some(reg) = self.registering.take() else {
            return Vec::new();
        };
        match outcome {
            RegisterOutcome::Registered => {
                let token = match &mut self.phase {
                    Phase::Register { token, .. } | Phase::Registered { token, .. } => token.take(),
                    Phase::Auth { .. } => None,
                };
                self.phase = Phase::Registered {
                    agent_id: reg.agent_id.clone(),
                    token,
                };
                vec![
                    Action::Send(messages::register_ack(&reg.agent_id, &reg.labels)),
                    Action::Resume {
                        in_flight: reg.in_flight,
                    },
                ]
            }
            RegisterOutcome::Refused(conflict) => self.refuse_identity(&conflict),
            // Not the agent's fault: a normal close, so it retries later.
            RegisterOutcome::Unavailable => self.close(close::UNAVAILABLE, "Database unavailable"),
        }
    }

    fn close(&mut self, code: u16, reason: &'static str) -> Vec<Action> {
        self.ended = true;
        vec![Action::Close { code, reason }]
    }

    /// `auth.failure` with `why`, then 4010, which the agent does not retry.
    fn refuse(&mut self, why: &str) -> Vec<Action> {
        let mut out = vec![Action::Send(messages::auth_failure(why))];
        out.extend(self.close(close::REFUSED, "Authentication failed"));
        out
    }

    /// A framing error: its own close code, except an oversized message (4003, not 1009).
    fn frame_error(&mut self, e: &FrameError) -> Vec<Action> {
        let code = if e.code == 1009 {
            close::POLICY
        } else {
            e.code
        };
        self.close(code, e.reason)
    }

    /// Another token holds this agent id.
    fn refuse_identity(&mut self, conflict: &Conflict) -> Vec<Action> {
        log::warn!("{} (from {})", conflict.log, self.peer);
        self.refuse(&conflict.reason)
    }

    fn on_text(&mut self, text: &str) -> Vec<Action> {
        let msg = messages::parse(text);
        if let AgentMsg::Invalid { why } = &msg {
            log::warn!("invalid message from agent at {}: {why}", self.peer);
            let reason = if why == "Malformed JSON" {
                "Malformed JSON"
            } else {
                "Invalid message format"
            };
            let mut out = vec![Action::Send(messages::invalid_message())];
            out.extend(self.close(close::POLICY, reason));
            return out;
        }
        match (&self.phase, msg) {
            (
                Phase::Auth { .. },
                AgentMsg::Auth {
                    token,
                    protocol_version,
                },
            ) => {
                if protocol_version < 1 {
                    let mut out = vec![Action::Send(messages::auth_failure(
                        "Unsupported protocol version",
                    ))];
                    out.extend(self.close(close::UNSUPPORTED_VERSION, "Protocol error"));
                    return out;
                }
                vec![Action::Authenticate { token }]
            }
            (Phase::Auth { .. }, AgentMsg::Heartbeat) => Vec::new(),
            (Phase::Auth { .. }, _) => self.refuse("Authentication required"),
            (Phase::Register { .. } | Phase::Registered { .. }, AgentMsg::Register(r)) => {
                self.on_register(r)
            }
            (Phase::Register { .. }, AgentMsg::Heartbeat | AgentMsg::Ignored { .. }) => Vec::new(),
            (Phase::Register { .. }, _) => self.close(close::POLICY, "Not registered"),
            (Phase::Registered { .. }, msg) => vec![Action::Deliver(msg)],
        }
    }

    /// The register gates (pure), then the driver's binding check and registration.
    fn on_register(&mut self, r: Box<Register>) -> Vec<Action> {
        let (token, registered_as) = match &self.phase {
            Phase::Register { token, .. } => (token.clone(), None),
            Phase::Registered { token, agent_id } => (token.clone(), Some(agent_id)),
            Phase::Auth { .. } => (None, None),
        };
        if let Err(refused) =
            select::register_gates(token.as_ref(), &r.agent_id, &r.labels, r.running_as_uid)
        {
            log::warn!("agent {} refused: {}", r.agent_id, refused.reason);
            let mut out = vec![Action::Send(messages::auth_failure(&refused.reason))];
            self.ended = true;
            out.push(Action::Close {
                code: refused.code,
                reason: "Authentication failed",
            });
            return out;
        }
        if registered_as.is_some_and(|id| *id != r.agent_id) {
            return self.close(close::POLICY, "Agent id changed on a registered connection");
        }
        self.registering = Some(r.clone());
        vec![Action::Register { reg: r, token }]
    }
}

#[cfg(test)]
#[path = "protocol_tests.rs"]
mod tests;
