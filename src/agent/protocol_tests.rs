//! The agent link's protocol as tables of (state, input) → actions, with a fixed start time.

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::*;
use crate::agent::{identity::Conflict, wsframe::OP_CLOSE};
use wsframe::{client, Frame, OP_BINARY, OP_CONTINUATION, OP_PING, OP_PONG, OP_TEXT};

fn token(labels: Option<&[&str]>) -> AgentToken {
    AgentToken {
        id: "t1".into(),
        prefix: "kat_t1".into(),
        labels: labels.map(|l| l.iter().map(|s| s.to_string()).collect()),
        mandatory_labels: Vec::new(),
        agent_type: "static".into(),
        created_by: None,
    }
}

fn frame(opcode: u8, payload: &[u8]) -> Frame {
    Frame {
        fin: true,
        opcode,
        payload: payload.to_vec(),
    }
}

fn text(v: Value) -> Frame {
    frame(OP_TEXT, v.to_string().as_bytes())
}

fn register(id: &str, labels: &[&str]) -> Frame {
    text(
        json!({"type": "agent.register", "messageId": "m", "agentId": id,
                "labels": labels, "platform": "linux", "arch": "x64"}),
    )
}

/// An action as a line of the tables.
fn show(a: &Action) -> String {
    match a {
        Action::Send(v) => match v["reason"].as_str() {
            Some(r) => format!("send {} ({r})", v["type"].as_str().unwrap_or("?")),
            None => format!("send {}", v["type"].as_str().unwrap_or("?")),
        },
        Action::Pong(p) => format!("pong {p:?}"),
        Action::Wait(_) => "wait".into(),
        Action::Authenticate { token } => format!("authenticate {token}"),
        Action::Register { reg, token } => format!(
            "register {} with {}",
            reg.agent_id,
            token.as_ref().map_or("no token", |t| t.id.as_str())
        ),
        Action::Resume { in_flight } => format!("resume {}", in_flight.len()),
        Action::Deliver(m) => format!("deliver {m:?}"),
        Action::Close { code, reason } => format!("close {code} {reason}"),
        Action::AnswerClose => "answer close".into(),
    }
}

fn shown(actions: &[Action]) -> Vec<String> {
    actions.iter().map(show).collect()
}

#[derive(Clone, Copy, Debug)]
enum State {
    /// Tokens required, nothing received yet.
    Auth,
    /// Authenticated with token t1 (labels unrestricted).
    Register,
    /// `KICI_AGENT_AUTH=none`: registration first.
    NoAuth,
    /// Registered as `a1` with token t1.
    Registered,
}

fn at(t0: Instant, state: State) -> Protocol {
    let mut p = Protocol::new(
        !matches!(state, State::NoAuth),
        "c1".into(),
        "peer".into(),
        t0,
    );
    if matches!(state, State::Register | State::Registered) {
        p.on_auth_result(AuthOutcome::Valid(token(None)), t0);
    }
    if matches!(state, State::Registered) {
        p.on_frame(register("a1", &["linux"]), t0);
        p.on_register_result(RegisterOutcome::Registered);
    }
    p
}

enum Input {
    Frame(Frame),
    Bytes(Vec<u8>),
    Tick(Duration),
    Auth(AuthOutcome),
    Registration(RegisterOutcome),
    Shutdown,
}

fn apply(p: &mut Protocol, t0: Instant, input: Input) -> Vec<Action> {
    match input {
        Input::Frame(f) => p.on_frame(f, t0),
        Input::Bytes(b) => {
            p.receive(&b);
            p.next_frame(t0).unwrap_or_default()
        }
        Input::Tick(d) => p.on_tick(t0 + d),
        Input::Auth(o) => p.on_auth_result(o, t0),
        Input::Registration(o) => {
            // The registration the outcome is for.
            let mut out = p.on_frame(register("a1", &["linux"]), t0);
            out.extend(p.on_register_result(o));
            out
        }
        Input::Shutdown => p.on_shutdown(),
    }
}

fn phase_name(p: &Protocol) -> &'static str {
    match p.phase() {
        Phase::Auth { .. } => "auth",
        Phase::Register { .. } => "register",
        Phase::Registered { .. } => "registered",
    }
}

fn conflict() -> Conflict {
    Conflict {
        log: "agent id a1 is held by kat_t0".into(),
        reason: "agent id a1 is in use by another token".into(),
    }
}

#[test]
fn phases_inputs_and_actions() {
    use Input::*;
    use State::{Auth as A, NoAuth, Register as R, Registered as Reg};
    let s = |v: Value| Frame(text(v));
    let auth = |version: i64| {
        s(json!({"type": "auth.request", "token": "kat_x", "protocolVersion": version}))
    };
    let heartbeat = || s(json!({"type": "heartbeat", "timestamp": 1}));
    let ack = || s(json!({"type": "job.ack", "runId": "r1", "jobId": "j1"}));
    const REFUSED: &str = "close 4010 Authentication failed";
    #[rustfmt::skip]
    let table: Vec<(State, Input, &[&str], &str)> = vec![
        // Authentication.
        (A, auth(1), &["authenticate kat_x"], "auth"),
        (A, auth(0), &["send auth.failure (Unsupported protocol version)", "close 4005 Protocol error"], "auth"),
        (A, heartbeat(), &[], "auth"),
        (A, Frame(register("a1", &[])), &["send auth.failure (Authentication required)", REFUSED], "auth"),
        (A, ack(), &["send auth.failure (Authentication required)", REFUSED], "auth"),
        (A, Frame(frame(OP_TEXT, b"{")), &["send error", "close 4003 Malformed JSON"], "auth"),
        (A, s(json!({"type": "job.ack"})), &["send error", "close 4003 Invalid message format"], "auth"),
        (A, Auth(AuthOutcome::Valid(token(None))), &["send auth.success"], "register"),
        (A, Auth(AuthOutcome::Invalid), &["send auth.failure (Invalid or expired token)", REFUSED], "auth"),
        (A, Auth(AuthOutcome::Unavailable), &["close 1011 Database unavailable"], "auth"),
        (A, Tick(Duration::from_millis(4_900)), &[], "auth"),
        (A, Tick(Duration::from_millis(5_100)), &["close 4002 Auth timeout"], "auth"),
        // Registration.
        (R, Frame(register("a1", &["linux"])), &["register a1 with t1"], "register"),
        (NoAuth, Frame(register("a1", &["linux"])), &["register a1 with no token"], "register"),
        (NoAuth, auth(1), &["close 4003 Not registered"], "register"),
        (R, Frame(register("a1", &["kici:privileged:root"])),
            &["send auth.failure (label kici:privileged:root requires an agent running as root)", REFUSED], "register"),
        (R, heartbeat(), &[], "register"),
        (R, s(json!({"type": "run.event"})), &[], "register"),
        (R, ack(), &["close 4003 Not registered"], "register"),
        (R, Registration(RegisterOutcome::Registered), &["register a1 with t1", "send register.ack", "resume 0"], "registered"),
        (R, Registration(RegisterOutcome::Refused(conflict())),
            &["register a1 with t1", "send auth.failure (agent id a1 is in use by another token)", REFUSED], "register"),
        (R, Registration(RegisterOutcome::Unavailable), &["register a1 with t1", "close 1011 Database unavailable"], "register"),
        (R, Tick(Duration::from_millis(9_900)), &[], "register"),
        (R, Tick(Duration::from_millis(10_100)), &["close 4002 Registration timeout"], "register"),
        // Registered.
        (Reg, ack(), &["deliver JobAck(JobRef { run_id: \"r1\", job_id: \"j1\" })"], "registered"),
        (Reg, heartbeat(), &["deliver Heartbeat"], "registered"),
        (Reg, Frame(register("a1", &["linux"])), &["register a1 with t1"], "registered"),
        (Reg, Frame(register("a2", &["linux"])), &["close 4003 Agent id changed on a registered connection"], "registered"),
        (Reg, Tick(Duration::from_secs(100)), &[], "registered"),
        (Reg, Tick(Duration::from_secs(181)), &["close 4004 Heartbeat timeout"], "registered"),
        // Any phase.
        (A, Frame(frame(OP_PING, b"p")), &["pong [112]"], "auth"),
        (Reg, Frame(frame(OP_PONG, b"")), &[], "registered"),
        (R, Frame(frame(OP_BINARY, b"x")), &[], "register"),
        (R, Frame(frame(OP_CLOSE, &1000u16.to_be_bytes())), &["answer close"], "register"),
        (Reg, Shutdown, &["close 1001 Server shutting down"], "registered"),
        // Framing.
        (Reg, Bytes(vec![0x81, 0x01, b'x']), &["close 1002 Client frames must be masked"], "registered"),
        (Reg, Bytes(vec![0x91, 0x81, 0, 0, 0, 0, b'x']), &["close 1002 Reserved bits set (no extension was negotiated)"], "registered"),
        (A, Bytes(client(OP_TEXT, true, &[0xff, 0xfe])), &["close 1007 Text message is not UTF-8"], "auth"),
        (A, Bytes(client(OP_CONTINUATION, true, b"x")), &["close 1002 Continuation without a message"], "auth"),
        (A, Bytes(client(OP_TEXT, true, &[b' '; 10])[..6].to_vec()), &[], "auth"),
    ];
    let t0 = Instant::now();
    for (i, (state, input, expected, phase)) in table.into_iter().enumerate() {
        let mut p = at(t0, state);
        let got = apply(&mut p, t0, input);
        assert_eq!(shown(&got), *expected, "row {i} ({state:?})");
        assert_eq!(phase_name(&p), phase, "row {i} ({state:?}): phase after");
    }
}

#[test]
fn an_oversized_message_closes_4003_whether_announced_or_assembled() {
    let t0 = Instant::now();
    let mut p = at(t0, State::Registered);
    // A header announcing more than 4 MiB: refused before the payload arrives.
    let mut header = vec![0x81, 0x80 | 127];
    header.extend_from_slice(&(MAX_MESSAGE as u64 + 1).to_be_bytes());
    header.extend_from_slice(&[0; 4]);
    p.receive(&header);
    assert_eq!(
        shown(&p.next_frame(t0).unwrap()),
        ["close 4003 Message too big"]
    );
    assert!(p.ended());

    // Fragments that add up to more than 4 MiB.
    let mut p = at(t0, State::Registered);
    let half = vec![b'x'; MAX_MESSAGE / 2 + 1];
    let first = Frame {
        fin: false,
        opcode: OP_TEXT,
        payload: half.clone(),
    };
    assert!(p.on_frame(first, t0).is_empty());
    let last = frame(OP_CONTINUATION, &half);
    assert_eq!(shown(&p.on_frame(last, t0)), ["close 4003 Message too big"]);
}

#[test]
fn five_control_frames_are_answered_before_registration_then_4003() {
    let t0 = Instant::now();
    for state in [State::Auth, State::Register, State::NoAuth] {
        let mut p = at(t0, state);
        for i in 0..PRE_REGISTER_CONTROL_FRAMES as u8 {
            let opcode = if i % 2 == 0 { OP_PING } else { OP_PONG };
            let got = p.on_frame(frame(opcode, &[i]), t0);
            let expected: &[&str] = if opcode == OP_PING { &["pong"] } else { &[] };
            assert_eq!(
                got.iter()
                    .map(|a| show(a)[..4].to_owned())
                    .collect::<Vec<_>>(),
                expected
                    .iter()
                    .map(|s| s[..4].to_owned())
                    .collect::<Vec<_>>(),
                "{state:?} frame {i}"
            );
        }
        assert_eq!(
            shown(&p.on_frame(frame(OP_PING, b""), t0)),
            ["close 4003 Too many control frames before registration"],
            "{state:?}"
        );
        assert!(p.on_frame(frame(OP_PING, b""), t0).is_empty(), "ended");
    }
    // A registered agent's pings are all answered.
    let mut p = at(t0, State::Registered);
    for i in 0..50u8 {
        assert_eq!(
            shown(&p.on_frame(frame(OP_PING, &[i]), t0)),
            [format!("pong [{i}]")]
        );
    }
}

#[test]
fn the_budget_paces_a_flood_and_warns_at_most_once_a_second() {
    let t0 = Instant::now();
    let mut p = at(t0, State::Registered);
    let heartbeat = || text(json!({"type": "heartbeat"}));
    // The burst: 200 messages at once (registering spent one).
    for _ in 0..199 {
        assert_eq!(shown(&p.on_frame(heartbeat(), t0)), ["deliver Heartbeat"]);
    }
    let got = p.on_frame(heartbeat(), t0);
    assert_eq!(
        shown(&got),
        ["send rate.limit.warning", "wait", "deliver Heartbeat"]
    );
    assert_eq!(got[1], Action::Wait(Duration::from_millis(10)));
    // Still over budget 5 ms later: a wait, no second warning.
    let later = t0 + Duration::from_millis(5);
    assert_eq!(
        shown(&p.on_frame(heartbeat(), later)),
        ["wait", "deliver Heartbeat"]
    );
    // Refilled after two seconds.
    let refilled = t0 + Duration::from_secs(2);
    assert_eq!(
        shown(&p.on_frame(heartbeat(), refilled)),
        ["deliver Heartbeat"]
    );
    // Bytes count too: far over 2 MB waits in proportion, capped at 5 s.
    let big = frame(OP_PING, &[0; 100]);
    for _ in 0..20_000 {
        p.budget.spend(100, refilled);
    }
    let got = p.on_frame(big, refilled);
    assert!(
        matches!(got[..], [Action::Send(_), Action::Wait(w), Action::Pong(_)] if w == Duration::from_secs(5)),
        "{got:?}"
    );
}

/// A message sent in many small fragments costs its whole size: fragmenting does not slip a
/// flood past the byte budget.
#[test]
fn a_fragmented_message_is_charged_whole() {
    let t0 = Instant::now();
    let mut p = at(t0, State::Registered);
    // 1 MB of JSON in 1 KB fragments, three times: 3 MB, over the 2 MB burst.
    let body = format!(
        r#"{{"type":"heartbeat","pad":"{}"}}"#,
        "x".repeat(1_000_000)
    );
    let mut waited = false;
    for _ in 0..3 {
        let chunks: Vec<&[u8]> = body.as_bytes().chunks(1024).collect();
        for (i, chunk) in chunks.iter().enumerate() {
            let opcode = if i == 0 { OP_TEXT } else { OP_CONTINUATION };
            let f = Frame {
                fin: i + 1 == chunks.len(),
                opcode,
                payload: chunk.to_vec(),
            };
            let got = p.on_frame(f, t0);
            waited |= got.iter().any(|a| matches!(a, Action::Wait(_)));
        }
    }
    assert!(waited, "3 MB at once must exceed the byte budget");
}

#[test]
fn the_budget_allows_bursts_then_slows_down() {
    let t0 = Instant::now();
    let mut b = Budget::new(t0);
    for _ in 0..199 {
        assert!(b.spend(10, t0).is_zero());
    }
    assert!(b.spend(10, t0).is_zero());
    // Far over the byte budget: a wait proportional to the excess, capped.
    let wait = b.spend(4_000_000, t0);
    assert!(wait >= Duration::from_secs(3), "{wait:?}");
    assert!(wait <= Duration::from_secs(5));
}

#[test]
fn frames_split_across_reads_are_handled_once_whole_and_in_order() {
    let t0 = Instant::now();
    let mut p = at(t0, State::Auth);
    let mut bytes = client(OP_PING, true, b"a");
    bytes.extend(client(
        OP_TEXT,
        true,
        json!({"type": "auth.request", "token": "kat_x", "protocolVersion": 1})
            .to_string()
            .as_bytes(),
    ));
    let (first, rest) = bytes.split_at(9);
    p.receive(first);
    assert_eq!(shown(&p.next_frame(t0).unwrap()), ["pong [97]"]);
    assert!(p.next_frame(t0).is_none(), "the text frame is not complete");
    p.receive(rest);
    assert_eq!(shown(&p.next_frame(t0).unwrap()), ["authenticate kat_x"]);
    assert!(p.next_frame(t0).is_none());
}

#[test]
fn a_frame_resets_the_silence_clock_and_the_unhealthy_warning() {
    let t0 = Instant::now();
    let mut p = at(t0, State::Registered);
    p.on_tick(t0 + Duration::from_secs(100));
    assert!(p.warned_unhealthy);
    p.on_frame(frame(OP_PONG, b""), t0 + Duration::from_secs(150));
    assert!(!p.warned_unhealthy);
    assert!(p.on_tick(t0 + Duration::from_secs(320)).is_empty());
    assert_eq!(
        shown(&p.on_tick(t0 + Duration::from_secs(331))),
        ["close 4004 Heartbeat timeout"]
    );
}

#[test]
fn a_token_limited_to_some_labels_refuses_others() {
    let t0 = Instant::now();
    let mut p = Protocol::new(true, "c1".into(), "peer".into(), t0);
    p.on_auth_result(AuthOutcome::Valid(token(Some(&["linux"]))), t0);
    assert_eq!(
        shown(&p.on_frame(register("a1", &["linux", "gpu"]), t0)),
        [
            "send auth.failure (labels not allowed by this token: gpu)",
            "close 4010 Authentication failed"
        ]
    );
    assert!(p.ended());
}

#[test]
fn a_re_registration_keeps_the_token_and_answers_with_in_flight_jobs() {
    let t0 = Instant::now();
    let mut p = at(t0, State::Registered);
    let again = text(
        json!({"type": "agent.register", "messageId": "m2", "agentId": "a1",
        "labels": ["linux"], "platform": "linux", "arch": "x64",
        "inFlightJobs": [{"runId": "r1", "jobId": "j1"}]}),
    );
    assert_eq!(shown(&p.on_frame(again, t0)), ["register a1 with t1"]);
    assert_eq!(
        shown(&p.on_register_result(RegisterOutcome::Registered)),
        ["send register.ack", "resume 1"]
    );
    assert!(matches!(p.phase(), Phase::Registered { token: Some(t), .. } if t.id == "t1"));
    assert!(
        p.on_register_result(RegisterOutcome::Registered).is_empty(),
        "no outcome without a registration"
    );
}
