//! The hub's in-memory checks without a database: the pool points at a closed port, so every
//! write fails the way a PostgreSQL outage does.

use std::{
    io::{self, Write},
    sync::Arc,
    time::{Duration, Instant},
};

use serde_json::json;

use super::{
    cache_keys::JobScope,
    logs::{LogBudget, DEFAULT_MAX_LOG_BYTES},
    messages::{AgentMsg, JobRef, Register},
    writer::WriteHalf,
    Agent, Hub, HubConfig, Owned, Writer,
};
use crate::{
    db::{agent_tokens::AgentToken, Connector, Pool},
    platform::oidc::OwnedJobs,
};

fn hub() -> Hub {
    // Port 1 on loopback: connections are refused at once.
    let connector = Connector::from_url("postgres://kici@127.0.0.1:1/none").expect("a valid URL");
    Hub::new(
        Pool::new(connector, 2, Duration::from_millis(200)),
        None,
        None,
        None,
        HubConfig {
            ack_timeout: Duration::from_secs(10),
            recovery_window: Duration::from_secs(120),
            auth_required: true,
            instance_id: "test".into(),
        },
    )
}

/// A connection that takes every byte.
struct Discard;

impl Write for Discard {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl WriteHalf for Discard {
    fn shutdown(&mut self) {}
}

fn agent(id: &str, token: &str) -> Arc<Agent> {
    let token = AgentToken {
        id: token.into(),
        prefix: format!("kat_{token}"),
        labels: None,
        mandatory_labels: Vec::new(),
        agent_type: "static".into(),
        created_by: None,
    };
    let reg = Register {
        message_id: "m".into(),
        agent_id: id.into(),
        labels: vec!["linux".into()],
        platform: "linux".into(),
        arch: "x64".into(),
        max_concurrency: 1,
        in_flight: Vec::new(),
        hostname: None,
        version: None,
        running_as_uid: None,
    };
    let connection = crate::crypto::random_uuid();
    Arc::new(Agent::new(
        connection,
        Some(&token),
        &reg,
        Arc::new(Writer::over(Box::new(Discard))),
    ))
}

/// Job `j1` of run `r1`, dispatched to `agent` and acknowledged.
fn hold(hub: &Hub, agent: &Agent) {
    agent.active().insert("j1".into());
    hub.track(
        "j1",
        Owned {
            agent_id: agent.id.clone(),
            token_id: agent.token_id.clone(),
            run_id: "r1".into(),
            job_name: "build".into(),
            ack_deadline: None,
            finished_at: None,
            log_bytes: 0,
            budget: LogBudget::with_cap(DEFAULT_MAX_LOG_BYTES),
            scope: JobScope::default(),
        },
    );
}

#[test]
fn a_job_counts_only_for_the_agent_id_and_token_it_was_dispatched_to() {
    let hub = hub();
    let owner = agent("a", "t1");
    hold(&hub, &owner);
    assert!(hub.owned_by(&owner, "j1").is_some());
    assert!(
        hub.owned_by(&agent("a", "t2"), "j1").is_none(),
        "same id, other token"
    );
    assert!(
        hub.owned_by(&agent("b", "t1"), "j1").is_none(),
        "same token, other id"
    );
    let mint_for = |a: &Agent| {
        super::handle::HeldBy {
            hub: &hub,
            agent: a,
        }
        .run_of(&a.id, "j1")
    };
    assert_eq!(mint_for(&owner), Some("r1".into()));
    assert_eq!(
        mint_for(&agent("a", "t2")),
        None,
        "no OIDC token for an impostor"
    );
}

#[test]
fn a_connected_id_is_refused_to_another_token_and_replaced_by_its_own() {
    let hub = hub();
    let first = agent("a", "t1");
    hub.register(first.clone()).unwrap();
    let conflict = hub.register(agent("a", "t2")).unwrap_err();
    assert!(
        conflict.log.contains("kat_t1") && conflict.log.contains("kat_t2"),
        "{}",
        conflict.log
    );
    assert!(!first.writer.is_closed());
    hub.register(agent("a", "t1")).unwrap();
    assert!(
        first.writer.is_closed(),
        "the same agent's new connection replaces the old one"
    );
}

#[test]
fn revoking_a_token_closes_its_sessions_here() {
    let hub = hub();
    let (doomed, kept) = (agent("a", "t1"), agent("b", "t2"));
    hub.register(doomed.clone()).unwrap();
    hub.register(kept.clone()).unwrap();
    hold(&hub, &doomed);
    assert_eq!(hub.revoke_tokens(&["t1".to_owned()]), 1);
    assert!(doomed.writer.is_closed() && !kept.writer.is_closed());
    assert!(hub.agent("a").is_none() && hub.agent("b").is_some());
    assert!(
        hub.owned_by(&doomed, "j1").is_none(),
        "its job is no longer its"
    );
}

#[test]
fn an_unrecorded_terminal_status_leaves_the_job_open_for_the_resend() {
    let hub = hub();
    let a = agent("a", "t1");
    hold(&hub, &a);
    let status = AgentMsg::JobStatus {
        job: JobRef {
            run_id: "r1".into(),
            job_id: "j1".into(),
        },
        state: "success".into(),
        data: json!({"durationMs": 1}),
    };
    let started = Instant::now();
    assert!(super::handle::on_message(&hub, &a, status).is_empty());
    let tried_for = started.elapsed();
    assert!(
        tried_for >= Duration::from_millis(1700),
        "retried with pauses: {tried_for:?}"
    );
    let o = hub.owned_by(&a, "j1").expect("still held");
    assert!(
        o.finished_at.is_none(),
        "not done in memory, so a resend is not a replay"
    );
    assert!(
        a.active().contains("j1"),
        "its slot stays taken until the end is recorded"
    );
}

#[test]
fn only_the_current_connection_ending_takes_its_agent_out() {
    let hub = hub();
    let (first, second) = (agent("a", "t1"), agent("a", "t1"));
    hub.register(first.clone()).unwrap();
    hub.register(second.clone()).unwrap();
    assert!(
        hub.registry.disconnect("a", &first.connection_id).is_none(),
        "the replaced connection's end changes nothing"
    );
    assert!(hub.agent("a").is_some());
    hold(&hub, &second);
    let (gone, held, unacked) = hub
        .registry
        .disconnect("a", &second.connection_id)
        .expect("the current connection");
    assert_eq!(gone.connection_id, second.connection_id);
    assert_eq!((held, unacked), (vec!["j1".to_owned()], vec![]));
    assert!(hub.agent("a").is_none());
}

#[test]
fn overdue_acknowledgements_and_long_finished_jobs() {
    let hub = hub();
    let a = agent("a", "t1");
    hold(&hub, &a);
    let now = Instant::now();
    assert!(hub.registry.overdue(now).is_empty(), "acknowledged");
    hub.update_job("j1", |o| o.ack_deadline = Some(now));
    assert!(hub.registry.overdue(now).is_empty(), "not yet past");
    assert_eq!(
        hub.registry.overdue(now + Duration::from_millis(1)),
        [("j1".to_owned(), "a".to_owned())]
    );
    hub.update_job("j1", |o| {
        o.ack_deadline = None;
        o.finished_at = Some(now);
    });
    hub.registry.forget_finished(now + Duration::from_secs(29));
    assert!(hub.jobs().contains_key("j1"), "late messages still count");
    hub.registry.forget_finished(now + Duration::from_secs(30));
    assert!(!hub.jobs().contains_key("j1"));
}

#[test]
fn a_missed_ack_closes_the_agent_and_leaves_its_other_jobs_to_the_sessions_end() {
    let hub = hub();
    let a = agent("a", "t1");
    hub.register(a.clone()).unwrap();
    hold(&hub, &a);
    a.active().insert("j2".into());
    hub.track(
        "j2",
        Owned {
            agent_id: "a".into(),
            token_id: a.token_id.clone(),
            run_id: "r1".into(),
            job_name: "test".into(),
            ack_deadline: Some(Instant::now() - Duration::from_millis(1)),
            finished_at: None,
            log_bytes: 0,
            budget: LogBudget::with_cap(DEFAULT_MAX_LOG_BYTES),
            scope: JobScope::default(),
        },
    );
    hub.check_ack_deadlines();
    assert!(a.writer.is_closed(), "closed with 4031");
    assert!(!a.active().contains("j2"), "the overdue job is requeued");
    // Still registered: the session's end (`Hub::unregister`) finds the acknowledged job and
    // puts it into the recovery window.
    let (_, held, unacked) = hub
        .registry
        .disconnect("a", &a.connection_id)
        .expect("the agent is still registered when its session ends");
    assert_eq!((held, unacked), (vec!["j1".to_owned()], vec![]));
}
