//! One agent connection, on the HTTP connection thread that received `GET /ws`
//! (spec-runtime.md §2.1): the upgrade, the auth (5 s) and registration (10 s) windows with
//! their close codes, then frames until the agent goes away, falls silent for 180 s (4004), or
//! the daemon stops (1001). Reads use a 1 s socket timeout as the session's clock.
//!
//! A per-connection budget (100 messages/s, burst 200; 500 KB/s, burst 2 MB) slows a flooding
//! agent down by reading from it later — backpressure through TCP — and never drops a message:
//! the reference's limiter silently dropped job-state frames, and jobs never completed.

use std::{
    io::{Read, Write},
    net::TcpStream,
    sync::Arc,
    time::{Duration, Instant},
};

use super::{
    handle, identity,
    messages::{self, AgentMsg},
    select,
    wsframe::{self, MAX_MESSAGE},
    Agent, Hub, Writer,
};
use crate::{db::agent_tokens, http::Request};

const READ_TICK: Duration = Duration::from_secs(1);
const AUTH_WINDOW: Duration = Duration::from_secs(5);
const REGISTER_WINDOW: Duration = Duration::from_secs(10);
const UNHEALTHY_AFTER: Duration = Duration::from_secs(90);
const SILENT_CLOSE: Duration = Duration::from_secs(180);
/// Control frames (ping, pong) answered before registration. Each ping costs a pong, so a
/// stranger who has not even authenticated could otherwise keep us writing for free; a real
/// agent sends none before it registers.
pub const PRE_REGISTER_CONTROL_FRAMES: u32 = 5;

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

    fn new() -> Budget {
        Budget {
            msgs: Self::MSG_BURST,
            bytes: Self::BYTE_BURST,
            at: Instant::now(),
            warned: None,
        }
    }

    /// How long to wait before this message may be handled (zero when within budget).
    fn spend(&mut self, size: usize) -> Duration {
        let now = Instant::now();
        let dt = now.duration_since(self.at).as_secs_f64();
        self.at = now;
        self.msgs = (self.msgs + dt * Self::MSG_RATE).min(Self::MSG_BURST) - 1.0;
        self.bytes = (self.bytes + dt * Self::BYTE_RATE).min(Self::BYTE_BURST) - size as f64;
        let wait = (-self.msgs / Self::MSG_RATE)
            .max(-self.bytes / Self::BYTE_RATE)
            .max(0.0);
        Duration::from_secs_f64(wait.min(5.0))
    }

    /// Spends the budget for a message of `size` bytes, waiting when it is exhausted (warning
    /// the agent at most once a second).
    fn pace(&mut self, writer: &Writer, size: usize) {
        let wait = self.spend(size);
        if wait.is_zero() {
            return;
        }
        let now = Instant::now();
        if self
            .warned
            .is_none_or(|t| now.duration_since(t) > Duration::from_secs(1))
        {
            self.warned = Some(now);
            writer.send(&messages::rate_limit_warning(wait.as_millis() as u64));
        }
        std::thread::sleep(wait);
    }
}

enum Phase {
    Auth {
        until: Instant,
    },
    Register {
        until: Instant,
        token: Option<agent_tokens::AgentToken>,
    },
    Registered {
        agent: Arc<Agent>,
        token: Option<agent_tokens::AgentToken>,
    },
}

fn header<'a>(req: &'a Request, name: &str) -> &'a str {
    req.header(name).unwrap_or("")
}

/// Answers the upgrade and runs the session until it ends.
pub fn serve(hub: &Arc<Hub>, req: &Request, mut stream: TcpStream, buffered: Vec<u8>) {
    let has = |name: &str, token: &str| {
        header(req, name)
            .split(',')
            .any(|t| t.trim().eq_ignore_ascii_case(token))
    };
    let key = header(req, "sec-websocket-key").to_owned();
    if req.method != "GET"
        || !has("upgrade", "websocket")
        || !has("connection", "upgrade")
        || key.is_empty()
    {
        let body = r#"{"error":"Expected a WebSocket upgrade (GET /ws with Upgrade: websocket)"}"#;
        let _ = write!(stream, "HTTP/1.1 400 Bad Request\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len());
        return;
    }
    if header(req, "sec-websocket-version") != "13" {
        let _ = write!(stream, "HTTP/1.1 426 Upgrade Required\r\nSec-WebSocket-Version: 13\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
        return;
    }
    // No Sec-WebSocket-Extensions in the answer: permessage-deflate is declined.
    let accept = wsframe::accept_key(&key);
    let answer = format!("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {accept}\r\n\r\n");
    let Ok(write_half) = stream.try_clone() else {
        return;
    };
    let writer = Arc::new(Writer::new(write_half));
    if !writer.write(answer.as_bytes()) {
        return;
    }
    let _ = stream.set_read_timeout(Some(READ_TICK));
    let connection_id = crate::crypto::random_uuid();
    let mut session = Session {
        hub,
        writer,
        connection_id,
        phase: if hub.cfg.auth_required {
            Phase::Auth {
                until: Instant::now() + AUTH_WINDOW,
            }
        } else {
            Phase::Register {
                until: Instant::now() + REGISTER_WINDOW,
                token: None,
            }
        },
        peer: req.peer.to_string(),
    };
    session.run(&mut stream, buffered);
    if let Phase::Registered { agent, .. } = &session.phase {
        hub.unregister(&agent.id, &session.connection_id);
    }
}

struct Session<'a> {
    hub: &'a Arc<Hub>,
    writer: Arc<Writer>,
    connection_id: String,
    phase: Phase,
    peer: String,
}

impl Session<'_> {
    fn close(&self, code: u16, reason: &str) {
        log::info!(
            "agent connection from {} closed: {code} {reason}",
            self.peer
        );
        self.writer.close(code, reason);
    }

    /// Another token holds this agent id: 4010, which the agent does not retry.
    fn refuse_identity(&self, conflict: &identity::Conflict) -> bool {
        log::warn!("{} (from {})", conflict.log, self.peer);
        self.writer.send(&messages::auth_failure(&conflict.reason));
        self.close(identity::REFUSED, "Authentication failed");
        false
    }

    fn run(&mut self, stream: &mut TcpStream, mut buf: Vec<u8>) {
        let mut assembler = wsframe::Assembler::default();
        let mut budget = Budget::new();
        let mut last_heard = Instant::now();
        let mut warned_unhealthy = false;
        let mut control_frames = 0u32;
        let mut chunk = vec![0u8; 64 * 1024];
        loop {
            // Every complete frame already read.
            loop {
                let parsed = match wsframe::parse(&buf, MAX_MESSAGE) {
                    Ok(p) => p,
                    Err(e) => {
                        return self.close(if e.code == 1009 { 4003 } else { e.code }, e.reason)
                    }
                };
                let Some((frame, used)) = parsed else { break };
                buf.drain(..used);
                last_heard = Instant::now();
                warned_unhealthy = false;
                let size = frame.payload.len();
                let message = match assembler.push(frame, MAX_MESSAGE) {
                    Ok(Some(m)) => m,
                    Ok(None) => continue,
                    Err(e) => {
                        return self.close(if e.code == 1009 { 4003 } else { e.code }, e.reason)
                    }
                };
                let registered = matches!(self.phase, Phase::Registered { .. });
                if matches!(message, wsframe::Message::Ping(_) | wsframe::Message::Pong)
                    && !registered
                {
                    control_frames += 1;
                    if control_frames > PRE_REGISTER_CONTROL_FRAMES {
                        return self.close(4003, "Too many control frames before registration");
                    }
                }
                if matches!(
                    message,
                    wsframe::Message::Text(_) | wsframe::Message::Ping(_)
                ) {
                    budget.pace(&self.writer, size);
                }
                match message {
                    wsframe::Message::Text(text) => {
                        if !self.text(&text) {
                            return;
                        }
                    }
                    wsframe::Message::Binary(_) | wsframe::Message::Pong => {}
                    wsframe::Message::Ping(p) => {
                        self.writer.send_raw(wsframe::OP_PONG, &p);
                    }
                    wsframe::Message::Close(_) => {
                        self.writer
                            .send_raw(wsframe::OP_CLOSE, &1000u16.to_be_bytes());
                        return;
                    }
                }
            }
            if self.writer.is_closed() {
                return;
            }
            if self.hub.shutting_down() {
                return self.close(1001, "Server shutting down");
            }
            let now = Instant::now();
            match &self.phase {
                Phase::Auth { until } if now > *until => return self.close(4002, "Auth timeout"),
                Phase::Register { until, .. } if now > *until => {
                    return self.close(4002, "Registration timeout")
                }
                Phase::Registered { agent, .. } => {
                    let silent = now.duration_since(last_heard);
                    if silent > SILENT_CLOSE {
                        return self.close(4004, "Heartbeat timeout");
                    }
                    if silent > UNHEALTHY_AFTER && !warned_unhealthy {
                        warned_unhealthy = true;
                        log::warn!(
                            "agent {} silent for {} s (unhealthy)",
                            agent.id,
                            silent.as_secs()
                        );
                    }
                }
                _ => {}
            }
            match stream.read(&mut chunk) {
                Ok(0) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
                Err(e) if crate::http::conn::read_again(&e) => {}
                Err(_) => return,
            }
        }
    }

    /// One text message; false ends the session.
    fn text(&mut self, text: &str) -> bool {
        let msg = messages::parse(text);
        if let AgentMsg::Invalid { why } = &msg {
            log::warn!("invalid message from agent at {}: {why}", self.peer);
            self.writer.send(&messages::invalid_message());
            let reason = if why == "Malformed JSON" {
                "Malformed JSON"
            } else {
                "Invalid message format"
            };
            self.close(4003, reason);
            return false;
        }
        match (&self.phase, msg) {
            (
                Phase::Auth { .. },
                AgentMsg::Auth {
                    token,
                    protocol_version,
                },
            ) => self.auth(&token, protocol_version),
            (Phase::Auth { .. }, AgentMsg::Heartbeat) => true,
            (Phase::Auth { .. }, _) => {
                self.writer
                    .send(&messages::auth_failure("Authentication required"));
                self.close(4010, "Authentication failed");
                false
            }
            (Phase::Register { .. } | Phase::Registered { .. }, AgentMsg::Register(r)) => {
                self.register(*r)
            }
            (Phase::Register { .. }, AgentMsg::Heartbeat | AgentMsg::Ignored { .. }) => true,
            (Phase::Register { .. }, _) => {
                self.close(4003, "Not registered");
                false
            }
            (Phase::Registered { agent, .. }, msg) => {
                let agent = agent.clone();
                for reply in handle::on_message(self.hub, &agent, msg) {
                    self.writer.send(&reply);
                }
                true
            }
        }
    }

    fn auth(&mut self, token: &str, protocol_version: i64) -> bool {
        if protocol_version < 1 {
            self.writer
                .send(&messages::auth_failure("Unsupported protocol version"));
            self.close(4005, "Protocol error");
            return false;
        }
        match self
            .hub
            .pool
            .with_retry(|c| agent_tokens::authenticate(c, token))
        {
            Ok(Some(t)) => {
                self.writer
                    .send(&messages::auth_success(&self.connection_id));
                self.phase = Phase::Register {
                    until: Instant::now() + REGISTER_WINDOW,
                    token: Some(t),
                };
                true
            }
            Ok(None) => {
                self.writer
                    .send(&messages::auth_failure("Invalid or expired token"));
                self.close(4010, "Authentication failed");
                false
            }
            Err(e) => {
                // Not the agent's fault: a normal close, so it retries later.
                log::warn!("agent authentication failed on the database side: {e}");
                self.close(1011, "Database unavailable");
                false
            }
        }
    }

    fn register(&mut self, r: messages::Register) -> bool {
        let token = match &self.phase {
            Phase::Register { token, .. } | Phase::Registered { token, .. } => token.clone(),
            Phase::Auth { .. } => None,
        };
        if let Err(refused) =
            select::register_gates(token.as_ref(), &r.agent_id, &r.labels, r.running_as_uid)
        {
            log::warn!("agent {} refused: {}", r.agent_id, refused.reason);
            self.writer.send(&messages::auth_failure(&refused.reason));
            self.close(refused.code, "Authentication failed");
            return false;
        }
        if let Phase::Registered { agent, .. } = &self.phase {
            if agent.id != r.agent_id {
                self.close(4003, "Agent id changed on a registered connection");
                return false;
            }
        }
        let agent = Arc::new(Agent::new(
            self.connection_id.clone(),
            token.as_ref(),
            &r,
            self.writer.clone(),
        ));
        match self.hub.binding(&agent.id, agent.token()) {
            Ok(Ok(())) => {}
            Ok(Err(conflict)) => return self.refuse_identity(&conflict),
            Err(e) => {
                // Not the agent's fault: a normal close, so it retries later.
                log::warn!(
                    "checking agent id {} against the queue failed: {e}",
                    agent.id
                );
                self.close(1011, "Database unavailable");
                return false;
            }
        }
        if let Phase::Registered { agent: old, .. } = &self.phase {
            // Re-registration on the same socket keeps the jobs it holds.
            let held: Vec<String> = old.active().iter().cloned().collect();
            agent.active().extend(held);
        }
        if let Err(conflict) = self.hub.register(agent.clone()) {
            return self.refuse_identity(&conflict);
        }
        self.writer
            .send(&messages::register_ack(&r.agent_id, &r.labels));
        self.phase = Phase::Registered {
            agent: agent.clone(),
            token,
        };
        handle::after_register(self.hub, &agent, &r.in_flight);
        true
    }
}

/// Whether a request asks to upgrade to a WebSocket.
pub fn is_upgrade(req: &Request) -> bool {
    req.header("upgrade")
        .is_some_and(|u| u.to_ascii_lowercase().contains("websocket"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn budget_allows_bursts_then_slows_down() {
        let mut b = Budget::new();
        for _ in 0..199 {
            assert!(b.spend(10).is_zero());
        }
        let wait = b.spend(10);
        assert!(
            wait.is_zero() || wait < Duration::from_millis(20),
            "{wait:?}"
        );
        // Far over the byte budget: a wait proportional to the excess, capped.
        let wait = b.spend(4_000_000);
        assert!(wait >= Duration::from_secs(3), "{wait:?}");
        assert!(wait <= Duration::from_secs(5));
    }
}
