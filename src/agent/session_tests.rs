//! Whole sessions over in-memory streams: a scripted reader for what the agent sends, a
//! capturing writer for what it receives, and a fake backend instead of the database.

use std::{
    collections::VecDeque,
    io::{self, Read, Write},
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc, Mutex,
    },
    time::{Duration, Instant},
};

use serde_json::{json, Value};

use super::*;
use crate::{
    agent::{
        identity::Conflict,
        protocol::PRE_REGISTER_CONTROL_FRAMES,
        writer::WriteHalf,
        wsframe::{client, server_frames, OP_CLOSE, OP_PING, OP_PONG, OP_TEXT},
    },
    db::agent_tokens::AgentToken,
};

/// What the agent sends, read by read: bytes, or an error (a timed-out read is a tick).
struct Script(VecDeque<io::Result<Vec<u8>>>);

impl Read for Script {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self.0.pop_front() {
            None => Ok(0),
            Some(Err(e)) => Err(e),
            Some(Ok(mut bytes)) => {
                let n = bytes.len().min(buf.len());
                buf[..n].copy_from_slice(&bytes[..n]);
                if n < bytes.len() {
                    self.0.push_front(Ok(bytes.split_off(n)));
                }
                Ok(n)
            }
        }
    }
}

/// What the agent receives, and whether the server ended the connection.
#[derive(Clone, Default)]
struct Wire {
    bytes: Arc<Mutex<Vec<u8>>>,
    shut: Arc<AtomicBool>,
}

impl Write for Wire {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.bytes.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl WriteHalf for Wire {
    fn shutdown(&mut self) {
        self.shut.store(true, Ordering::SeqCst);
    }
}

impl Wire {
    /// The frames received: JSON text frames as their `type` (and `reason`), others by kind.
    fn received(&self) -> Vec<String> {
        server_frames(&self.bytes.lock().unwrap())
            .into_iter()
            .map(|f| match f.opcode {
                OP_TEXT => {
                    let v: Value = serde_json::from_slice(&f.payload).unwrap();
                    match v["reason"].as_str() {
                        Some(r) => format!("{} ({r})", v["type"].as_str().unwrap()),
                        None => v["type"].as_str().unwrap().to_owned(),
                    }
                }
                OP_PONG => format!("pong {:?}", f.payload),
                OP_CLOSE => format!(
                    "close {} {}",
                    u16::from_be_bytes([f.payload[0], f.payload[1]]),
                    String::from_utf8_lossy(&f.payload[2..])
                ),
                op => format!("opcode {op}"),
            })
            .collect()
    }
}

/// Tokens `kat_good` (id t1) and `kat_down` (the database fails); records what it is asked.
#[derive(Default)]
struct Fake {
    calls: Mutex<Vec<String>>,
    stopping: AtomicBool,
    held_by_other: AtomicBool,
}

impl Fake {
    fn note(&self, call: String) {
        self.calls.lock().unwrap().push(call);
    }

    fn calls(&self) -> Vec<String> {
        self.calls.lock().unwrap().clone()
    }
}

impl Backend for Fake {
    fn check_token(&self, token: &str) -> AuthOutcome {
        self.note(format!("check {token}"));
        match token {
            "kat_good" => AuthOutcome::Valid(AgentToken {
                id: "t1".into(),
                prefix: "kat_good".into(),
                labels: None,
                mandatory_labels: Vec::new(),
                agent_type: "static".into(),
                created_by: None,
            }),
            "kat_down" => AuthOutcome::Unavailable,
            _ => AuthOutcome::Invalid,
        }
    }

    fn enroll(&self, agent: &Arc<Agent>, previous: Option<&Arc<Agent>>) -> RegisterOutcome {
        self.note(format!(
            "enroll {} token {} again {}",
            agent.id,
            agent.token().shown(),
            previous.is_some()
        ));
        if self.held_by_other.load(Ordering::SeqCst) {
            return RegisterOutcome::Refused(Conflict {
                log: "held by kat_other".into(),
                reason: "agent id in use".into(),
            });
        }
        RegisterOutcome::Registered
    }

    fn resume(&self, agent: &Arc<Agent>, in_flight: &[(String, String)]) {
        self.note(format!("resume {} {}", agent.id, in_flight.len()));
    }

    fn deliver(&self, agent: &Arc<Agent>, msg: AgentMsg) -> Vec<Value> {
        self.note(format!("deliver {} {msg:?}", agent.id));
        match msg {
            AgentMsg::ApiRequest { request_id, .. } => {
                vec![json!({"type": "agent.api.response", "requestId": request_id})]
            }
            _ => Vec::new(),
        }
    }

    fn stopping(&self) -> bool {
        self.stopping.load(Ordering::SeqCst)
    }

    fn disconnected(&self, agent: &Agent) {
        self.note(format!("disconnected {}", agent.id));
    }
}

fn text(v: Value) -> Vec<u8> {
    client(OP_TEXT, true, v.to_string().as_bytes())
}

fn auth(token: &str) -> Vec<u8> {
    text(json!({"type": "auth.request", "token": token, "protocolVersion": 1}))
}

fn register(id: &str) -> Vec<u8> {
    text(
        json!({"type": "agent.register", "messageId": "m", "agentId": id,
                "labels": ["linux"], "platform": "linux", "arch": "x64"}),
    )
}

fn tick() -> io::Result<Vec<u8>> {
    Err(io::ErrorKind::WouldBlock.into())
}

/// Runs a session (tokens required) over `script`; what the agent received, and the wire.
fn run(backend: &Fake, script: Vec<io::Result<Vec<u8>>>) -> (Vec<String>, Wire) {
    let wire = Wire::default();
    let writer = Arc::new(Writer::over(Box::new(wire.clone())));
    let protocol = Protocol::new(true, "c1".into(), "test".into(), Instant::now());
    drive(backend, &mut Script(script.into()), writer, protocol, &[]);
    (wire.received(), wire)
}

#[test]
fn a_whole_session_auth_register_a_job_message_and_close() {
    let fake = Fake::default();
    let (received, wire) = run(
        &fake,
        vec![
            Ok(auth("kat_good")),
            Ok(register("a1")),
            Ok(text(
                json!({"type": "job.ack", "runId": "r1", "jobId": "j1"}),
            )),
            tick(),
            Ok(text(
                json!({"type": "agent.api.request", "requestId": "q1", "method": "m", "params": {}}),
            )),
            Ok(client(OP_PING, true, b"hi")),
            Ok(client(OP_CLOSE, true, &1000u16.to_be_bytes())),
            Ok(text(json!({"type": "heartbeat"}))),
        ],
    );
    assert_eq!(
        received,
        [
            "auth.success",
            "register.ack",
            "agent.api.response",
            "pong [104, 105]",
            "close 1000 "
        ]
    );
    assert_eq!(
        fake.calls(),
        [
            "check kat_good",
            "enroll a1 token kat_good again false",
            "resume a1 0",
            "deliver a1 JobAck(JobRef { run_id: \"r1\", job_id: \"j1\" })",
            "deliver a1 ApiRequest { request_id: \"q1\", method: \"m\", params: Object {} }",
            "disconnected a1",
        ]
    );
    assert!(
        !wire.shut.load(Ordering::SeqCst),
        "the agent's close is answered; the agent ends the connection"
    );
}

#[test]
fn a_bad_token_gets_auth_failure_and_4010() {
    let fake = Fake::default();
    let (received, wire) = run(&fake, vec![Ok(auth("kat_bad")), Ok(register("a1"))]);
    assert_eq!(
        received,
        [
            "auth.failure (Invalid or expired token)",
            "close 4010 Authentication failed"
        ]
    );
    assert_eq!(fake.calls(), ["check kat_bad"], "never registered");
    assert!(wire.shut.load(Ordering::SeqCst));
}

#[test]
fn a_database_outage_closes_1011_so_the_agent_retries() {
    let fake = Fake::default();
    let (received, _) = run(&fake, vec![Ok(auth("kat_down"))]);
    assert_eq!(received, ["close 1011 Database unavailable"]);
}

#[test]
fn an_agent_id_held_by_another_token_is_refused_4010() {
    let fake = Fake::default();
    fake.held_by_other.store(true, Ordering::SeqCst);
    let (received, _) = run(&fake, vec![Ok(auth("kat_good")), Ok(register("a1"))]);
    assert_eq!(
        received,
        [
            "auth.success",
            "auth.failure (agent id in use)",
            "close 4010 Authentication failed"
        ]
    );
    assert!(!fake.calls().iter().any(|c| c.starts_with("disconnected")));
}

#[test]
fn an_oversized_frame_closes_4003_before_its_payload_is_read() {
    let fake = Fake::default();
    let mut header = vec![0x81, 0x80 | 127];
    header.extend_from_slice(&(5u64 << 20).to_be_bytes());
    header.extend_from_slice(&[1, 2, 3, 4]);
    let (received, wire) = run(
        &fake,
        vec![Ok(auth("kat_good")), Ok(register("a1")), Ok(header)],
    );
    assert_eq!(
        received,
        ["auth.success", "register.ack", "close 4003 Message too big"]
    );
    assert!(wire.shut.load(Ordering::SeqCst));
    assert_eq!(fake.calls().last().unwrap(), "disconnected a1");
}

#[test]
fn a_ping_flood_before_registration_gets_five_pongs_then_4003() {
    let fake = Fake::default();
    let pings: Vec<io::Result<Vec<u8>>> =
        (0..50u8).map(|i| Ok(client(OP_PING, true, &[i]))).collect();
    let (received, _) = run(&fake, pings);
    let pongs = received.iter().filter(|f| f.starts_with("pong")).count();
    assert_eq!(pongs, PRE_REGISTER_CONTROL_FRAMES as usize);
    assert_eq!(
        received.last().unwrap(),
        "close 4003 Too many control frames before registration"
    );
    assert!(fake.calls().is_empty());
}

#[test]
fn a_frame_cut_by_a_read_timeout_resumes_on_the_next_read() {
    let fake = Fake::default();
    let whole = auth("kat_good");
    let (a, b) = whole.split_at(5);
    let (received, _) = run(
        &fake,
        vec![
            Ok(a.to_vec()),
            tick(),
            tick(),
            Ok(b.to_vec()),
            Ok(register("a1")),
        ],
    );
    assert_eq!(received, ["auth.success", "register.ack"]);
    // The reader ended (EOF): a registered agent is disconnected from the hub.
    assert_eq!(fake.calls().last().unwrap(), "disconnected a1");
}

#[test]
fn a_stopping_daemon_closes_1001() {
    let fake = Fake::default();
    fake.stopping.store(true, Ordering::SeqCst);
    let (received, _) = run(&fake, vec![tick()]);
    assert_eq!(received, ["close 1001 Server shutting down"]);
}

#[test]
fn bytes_read_with_the_upgrade_request_are_handled_first() {
    let fake = Fake::default();
    let wire = Wire::default();
    let writer = Arc::new(Writer::over(Box::new(wire.clone())));
    let protocol = Protocol::new(true, "c1".into(), "test".into(), Instant::now());
    let mut script = Script(vec![Ok(register("a1"))].into());
    drive(&fake, &mut script, writer, protocol, &auth("kat_good"));
    assert_eq!(wire.received(), ["auth.success", "register.ack"]);
}

#[test]
fn the_hub_backend_closes_1011_when_its_database_is_down() {
    // A hub whose pool points at a closed port: the token check fails like an outage.
    let connector = crate::db::Connector::from_url("postgres://kici@127.0.0.1:1/none").unwrap();
    let hub = Hub::new(
        crate::db::Pool::new(connector, 1, Duration::from_millis(100)),
        None,
        None,
        None,
        crate::agent::HubConfig {
            ack_timeout: Duration::from_secs(10),
            recovery_window: Duration::from_secs(120),
            auth_required: true,
            instance_id: "test".into(),
        },
    );
    let wire = Wire::default();
    let writer = Arc::new(Writer::over(Box::new(wire.clone())));
    let protocol = Protocol::new(true, "c1".into(), "test".into(), Instant::now());
    let mut script = Script(vec![Ok(auth("kat_anything"))].into());
    drive(&hub, &mut script, writer, protocol, &[]);
    assert_eq!(wire.received(), ["close 1011 Database unavailable"]);
}
