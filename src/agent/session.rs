//! One agent connection, on the HTTP connection thread that received `GET /ws`
//! (docs/agent-protocol.md, "Connection"): answers the upgrade, then drives the connection's
//! protocol state (src/agent/protocol.rs) over the stream until the session ends. The driver
//! reads bytes, hands them to the protocol with the time, and performs its actions: frames
//! through the connection's [`Writer`], token checks, registration and message handling through
//! a [`Backend`] (the hub in production, a fake in src/agent/session_tests.rs).
//!
//! The driver is generic over `Read`: in production a `TcpStream` whose 1 s read timeout is the
//! session's clock (a timed-out read is a tick, and a frame cut by it resumes on the next read).

use std::{
    collections::VecDeque,
    io::{Read, Write},
    net::TcpStream,
    sync::Arc,
    time::{Duration, Instant},
};

use serde_json::Value;

use super::{
    handle,
    messages::AgentMsg,
    protocol::{Action, AuthOutcome, Protocol, RegisterOutcome},
    wsframe, Agent, Hub, Writer,
};
use crate::{db::agent_tokens, http::Request};

const READ_TICK: Duration = Duration::from_secs(1);

/// What a session needs from the rest of the daemon.
pub trait Backend {
    /// Whether a `kat_` token is valid.
    fn check_token(&self, token: &str) -> AuthOutcome;
    /// Binds the agent id to its token and registers the agent; `previous` is this connection's
    /// earlier registration, whose jobs the new one keeps.
    fn enroll(&self, agent: &Arc<Agent>, previous: Option<&Arc<Agent>>) -> RegisterOutcome;
    /// Takes back the jobs a (re)registered agent says it still runs.
    fn resume(&self, agent: &Arc<Agent>, in_flight: &[(String, String)]);
    /// A registered agent's message; the frames to send back.
    fn deliver(&self, agent: &Arc<Agent>, msg: AgentMsg) -> Vec<Value>;
    /// Whether the daemon is stopping.
    fn stopping(&self) -> bool;
    /// A registered agent's connection ended.
    fn disconnected(&self, agent: &Agent);
}

impl Backend for Hub {
    fn check_token(&self, token: &str) -> AuthOutcome {
        match self
            .pool
            .with_retry(|c| agent_tokens::authenticate(c, token))
        {
            Ok(Some(t)) => AuthOutcome::Valid(t),
            Ok(None) => AuthOutcome::Invalid,
            Err(e) => {
                log::warn!("agent authentication failed on the database side: {e}");
                AuthOutcome::Unavailable
            }
        }
    }

    fn enroll(&self, agent: &Arc<Agent>, previous: Option<&Arc<Agent>>) -> RegisterOutcome {
        match self.binding(&agent.id, agent.token()) {
            Ok(Ok(())) => {}
            Ok(Err(conflict)) => return RegisterOutcome::Refused(conflict),
            Err(e) => {
                log::warn!(
                    "checking agent id {} against the queue failed: {e}",
                    agent.id
                );
                return RegisterOutcome::Unavailable;
            }
        }
        if let Some(old) = previous {
            // Re-registration on the same socket keeps the jobs it holds.
            let held: Vec<String> = old.active().iter().cloned().collect();
            agent.active().extend(held);
        }
        match self.register(agent.clone()) {
            Ok(()) => RegisterOutcome::Registered,
            Err(conflict) => RegisterOutcome::Refused(conflict),
        }
    }

    fn resume(&self, agent: &Arc<Agent>, in_flight: &[(String, String)]) {
        handle::after_register(self, agent, in_flight);
    }

    fn deliver(&self, agent: &Arc<Agent>, msg: AgentMsg) -> Vec<Value> {
        handle::on_message(self, agent, msg)
    }

    fn stopping(&self) -> bool {
        self.shutting_down()
    }

    fn disconnected(&self, agent: &Agent) {
        self.unregister(&agent.id, &agent.connection_id);
    }
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
    let protocol = Protocol::new(
        hub.cfg.auth_required,
        crate::crypto::random_uuid(),
        req.peer.to_string(),
        Instant::now(),
    );
    drive(&**hub, &mut stream, writer, protocol, &buffered);
}

/// Runs an upgraded connection until it ends: `buffered` is what was read past the upgrade
/// request, `writer` writes to the same connection. A registered agent is disconnected from the
/// backend at the end.
pub fn drive<B: Backend + ?Sized, R: Read>(
    backend: &B,
    stream: &mut R,
    writer: Arc<Writer>,
    protocol: Protocol,
    buffered: &[u8],
) {
    let mut session = Session {
        backend,
        writer,
        protocol,
        agent: None,
    };
    session.protocol.receive(buffered);
    session.run(stream);
    if let Some(agent) = &session.agent {
        backend.disconnected(agent);
    }
}

struct Session<'a, B: ?Sized> {
    backend: &'a B,
    writer: Arc<Writer>,
    protocol: Protocol,
    /// The agent as registered on this connection.
    agent: Option<Arc<Agent>>,
}

impl<B: Backend + ?Sized> Session<'_, B> {
    fn run<R: Read>(&mut self, stream: &mut R) {
        let mut chunk = vec![0u8; 64 * 1024];
        loop {
            // Every complete frame already read.
            while let Some(actions) = self.protocol.next_frame(Instant::now()) {
                if !self.perform(actions) {
                    return;
                }
            }
            if self.writer.is_closed() {
                return;
            }
            if self.backend.stopping() {
                let actions = self.protocol.on_shutdown();
                self.perform(actions);
                return;
            }
            let actions = self.protocol.on_tick(Instant::now());
            if !self.perform(actions) {
                return;
            }
            match stream.read(&mut chunk) {
                Ok(0) => return,
                Ok(n) => self.protocol.receive(&chunk[..n]),
                Err(e) if crate::http::conn::read_again(&e) => {}
                Err(_) => return,
            }
        }
    }

    /// Performs the protocol's actions in order (and those their outcomes call for); false once
    /// the session ended.
    fn perform(&mut self, actions: Vec<Action>) -> bool {
        let mut queue = VecDeque::from(actions);
        while let Some(action) = queue.pop_front() {
            match action {
                Action::Send(frame) => {
                    self.writer.send(&frame);
                }
                Action::Pong(payload) => {
                    self.writer.send_raw(wsframe::OP_PONG, &payload);
                }
                Action::Wait(wait) => std::thread::sleep(wait),
                Action::Authenticate { token } => {
                    let outcome = self.backend.check_token(&token);
                    queue.extend(self.protocol.on_auth_result(outcome, Instant::now()));
                }
                Action::Register { reg, token } => {
                    let agent = Arc::new(Agent::new(
                        self.protocol.connection_id().to_owned(),
                        token.as_ref(),
                        &reg,
                        self.writer.clone(),
                    ));
                    let outcome = self.backend.enroll(&agent, self.agent.as_ref());
                    if outcome == RegisterOutcome::Registered {
                        self.agent = Some(agent);
                    }
                    queue.extend(self.protocol.on_register_result(outcome));
                }
                Action::Resume { in_flight } => {
                    if let Some(agent) = &self.agent {
                        self.backend.resume(agent, &in_flight);
                    }
                }
                Action::Deliver(msg) => {
                    if let Some(agent) = &self.agent {
                        for reply in self.backend.deliver(agent, msg) {
                            self.writer.send(&reply);
                        }
                    }
                }
                Action::Close { code, reason } => {
                    log::info!(
                        "agent connection from {} closed: {code} {reason}",
                        self.protocol.peer()
                    );
                    self.writer.close(code, reason);
                    return false;
                }
                Action::AnswerClose => {
                    self.writer
                        .send_raw(wsframe::OP_CLOSE, &1000u16.to_be_bytes());
                    return false;
                }
            }
        }
        true
    }
}

/// Whether a request asks to upgrade to a WebSocket.
pub fn is_upgrade(req: &Request) -> bool {
    req.header("upgrade")
        .is_some_and(|u| u.to_ascii_lowercase().contains("websocket"))
}

#[cfg(test)]
#[path = "session_tests.rs"]
mod tests;
