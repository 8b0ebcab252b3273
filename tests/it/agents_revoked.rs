//! Sessions that must end: a revoked token's live agent (through `kici-admin agent-token revoke`
//! on this orchestrator, and through another orchestrator sharing the database) and a stranger
//! flooding pings before registering. Real daemons, scripted agents over real sockets.

use crate::support;

use std::{
    net::TcpStream,
    time::{Duration, Instant},
};

use serde_json::json;
use support::{
    agent::{agent_token, queue_job, running, setup, token_id, wait_value, TestAgent, OWNER},
    daemon::*,
    pg::PgCluster,
    webhook::admin,
};
use tungstenite::{stream::MaybeTlsStream, Message, WebSocket};

const T: Duration = Duration::from_secs(10);

#[test]
fn revoking_a_token_ends_its_session_within_a_second_and_requeues_its_job() {
    let pg = PgCluster::shared();
    let s = setup(pg, &[]);
    let doomed = agent_token(&s, json!({}));
    let spare = agent_token(&s, json!({}));
    let (run, job_id) = queue_job(&s.db, "moved", "h", "l");
    let (mut a, _) = running(&s, "agent-doomed", &doomed);
    let mut b = TestAgent::online(s.d.addr, "agent-spare", &spare);
    assert!(
        b.dispatch(Duration::from_millis(300)).is_none(),
        "nothing else queued"
    );

    let id = token_id(&s, &doomed);
    let url = format!("http://{}", s.d.addr);
    let out = cli(
        &[
            "--url",
            &url,
            "--token",
            OWNER,
            "agent-token",
            "revoke",
            &id,
        ],
        &[],
    );
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    let revoked_at = Instant::now();
    assert_eq!(
        a.wait_closed(Duration::from_secs(1)),
        Some(4010),
        "closed within a second"
    );
    println!(
        "closed {:?} after the revoke answered",
        revoked_at.elapsed()
    );
    let moved = b.dispatch(T).expect("the job goes to another agent");
    assert_eq!(moved["jobId"].as_str(), Some(job_id.as_str()));
    b.ack(&moved);
    b.status(
        &moved,
        "success",
        json!({"durationMs": 1, "stepResults": []}),
    );
    wait_value(
        pg,
        &s.db,
        &format!("SELECT status FROM execution_runs WHERE run_id = '{run}'"),
        "success",
    );
    let mut again = TestAgent::connect(s.d.addr, "agent-doomed");
    assert_eq!(again.auth(&doomed)["type"], "auth.failure");
}

#[test]
fn a_token_revoked_through_another_orchestrator_ends_the_session_here() {
    let pg = PgCluster::shared();
    let s = setup(pg, &[]);
    let mut env = base_env(&s.db);
    env.push(("KICI_STORAGE_TYPE".into(), "filesystem".into()));
    env.push(("KICI_STORAGE_FS_PATH".into(), s.logs.display().to_string()));
    let second = Daemon::start(&env);
    second.wait_ready_status(200, T);
    let token = agent_token(&s, json!({}));
    let (_, job_id) = queue_job(&s.db, "far", "h", "l");
    let mut a = TestAgent::online(second.addr, "agent-far", &token);
    let job = a
        .dispatch(T)
        .expect("dispatched by the second orchestrator");
    a.ack(&job);
    let id = token_id(&s, &token);
    let r = admin(
        &s.d,
        OWNER,
        "DELETE",
        &format!("/agent-tokens/{id}"),
        json!({}),
    );
    assert_eq!(r.status, 200);
    assert_eq!(
        a.wait_closed(Duration::from_millis(2500)),
        Some(4010),
        "the second orchestrator checks its sessions' tokens every second"
    );
    wait_value(
        pg,
        &s.db,
        &format!("SELECT status || ':' || coalesce(agent_id, '-') FROM dispatch_queue WHERE id = '{job_id}'"),
        "pending:-",
    );
}

type Raw = WebSocket<MaybeTlsStream<TcpStream>>;

fn raw(s: &support::agent::Setup) -> Raw {
    let (ws, _) = tungstenite::connect(format!("ws://{}/ws", s.d.addr)).unwrap();
    if let MaybeTlsStream::Plain(t) = ws.get_ref() {
        t.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
    }
    ws
}

fn pings(ws: &mut Raw, n: u8) {
    for i in 0..n {
        if ws.send(Message::Ping(vec![i].into())).is_err() {
            break;
        }
    }
}

/// Pongs received until the connection ends (or `within` passes), and the close code.
fn drain(ws: &mut Raw, within: Duration) -> (usize, Option<u16>) {
    let (mut pongs, deadline) = (0, Instant::now() + within);
    while Instant::now() < deadline {
        match ws.read() {
            Ok(Message::Pong(_)) => pongs += 1,
            Ok(Message::Close(f)) => return (pongs, f.map(|f| u16::from(f.code))),
            Ok(_) => {}
            Err(tungstenite::Error::Io(e))
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(_) => return (pongs, None),
        }
    }
    (pongs, None)
}

#[test]
fn a_ping_flood_before_registration_is_answered_a_handful_of_times_then_closed() {
    let pg = PgCluster::shared();
    let s = setup(pg, &[]);
    let mut stranger = raw(&s);
    pings(&mut stranger, 50);
    let (pongs, code) = drain(&mut stranger, Duration::from_secs(3));
    assert_eq!(pongs, 5, "at most a handful answered");
    assert_eq!(code, Some(4003));

    // A registered agent's pings are all answered.
    let token = agent_token(&s, json!({}));
    let mut agent = raw(&s);
    let text = |v: serde_json::Value| Message::text(v.to_string());
    agent
        .send(text(
            json!({"type": "auth.request", "token": token, "protocolVersion": 1}),
        ))
        .unwrap();
    agent
        .send(text(
            json!({"type": "agent.register", "messageId": "m", "agentId": "pinger",
                          "labels": ["linux"], "platform": "linux", "arch": "x64"}),
        ))
        .unwrap();
    pings(&mut agent, 20);
    assert_eq!(drain(&mut agent, Duration::from_secs(1)), (20, None));
}
