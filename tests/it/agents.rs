//! The agent link of a real daemon with scripted agents over real sockets: tokens and their
//! gates, dispatch to each job's own outcome with steps and logs stored, busy rejects, ack
//! timeouts (4031), the five-attempt limit, cancellation, and resuming after an agent or
//! orchestrator restart. Jobs are queued the way the pipeline queues them (`create_run`).

use crate::support;

use std::time::Duration;

use serde_json::{json, Value};
use support::{
    agent::{agent_token, one, queue_run, setup, wait_value, TestAgent, LABELS, OWNER},
    daemon::*,
    pg::PgCluster,
    webhook::admin,
};

const T: Duration = Duration::from_secs(10);

#[test]
fn happy_path_each_job_to_its_own_outcome_with_logs_stored() {
    let pg = PgCluster::shared();
    let s = setup(pg, &[]);
    let token = agent_token(&s, json!({}));
    let mut a = TestAgent::online(s.d.addr, "agent-1", &token);
    let (run, jobs) = queue_run(&s.db, &["build", "test"], &["linux"]);

    let first = a.dispatch(T).expect("first job dispatched");
    assert_eq!(
        (first["runId"].as_str(), first["jobId"].as_str()),
        (Some(run.as_str()), Some(jobs[0].as_str()))
    );
    assert_eq!(first["jobConfig"]["name"], "build");
    assert_eq!(first["lockFileUrl"], "");
    assert!(first["timestamp"].is_i64() && first["messageId"].is_string());
    assert!(
        a.dispatch(Duration::from_millis(500)).is_none(),
        "capacity 1: one job at a time"
    );
    a.run_job(&first, "success");
    let second = a.dispatch(T).expect("second job after the first ended");
    a.run_job(&second, "failed");

    let q = |sql: &str, want: &str| wait_value(pg, &s.db, sql, want);
    q(
        &format!("SELECT status FROM execution_runs WHERE run_id = '{run}'"),
        "failed",
    );
    q(&format!("SELECT string_agg(job_name || '=' || status, ',' ORDER BY job_name) FROM execution_jobs WHERE run_id = '{run}'"), "build=success,test=failed");
    q(
        &format!(
            "SELECT string_agg(status, ',' ORDER BY id) FROM dispatch_queue WHERE run_id = '{run}'"
        ),
        &{
            let mut v = [("completed", &jobs[0]), ("failed", &jobs[1])];
            v.sort_by(|a, b| a.1.cmp(b.1));
            v.iter().map(|x| x.0).collect::<Vec<_>>().join(",")
        },
    );
    q(&format!("SELECT status || ':' || coalesce(error_message, '') || ':' || coalesce(exit_code::text, '') FROM execution_steps WHERE job_id = '{}'", jobs[1]), "failed:to stderr:3");
    let started = one(pg, &s.db, &format!("SELECT started_at IS NOT NULL AND duration_ms IS NOT NULL FROM execution_jobs WHERE job_id = '{}'", jobs[0]));
    assert_eq!(started, "t");
    let log = s
        .logs
        .join(format!("kici-logs/executions/{run}/job-build/step-0.log"));
    let text = std::fs::read_to_string(&log).unwrap_or_else(|e| panic!("{}: {e}", log.display()));
    let lines: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(
        lines
            .iter()
            .map(|l| l["msg"].as_str().unwrap())
            .collect::<Vec<_>>(),
        ["hello from kici", "second line"]
    );
    assert_eq!(lines[0]["level"], "stdout");
    assert!(s
        .logs
        .join(format!("kici-logs/executions/{run}/job-build/step--1.log"))
        .is_file());
    let bytes = one(
        pg,
        &s.db,
        &format!(
            "SELECT log_bytes > 0 FROM execution_jobs WHERE job_id = '{}'",
            jobs[0]
        ),
    );
    assert_eq!(bytes, "t", "log bytes are counted");
}

#[test]
fn tokens_are_checked_and_label_gates_close_with_4010() {
    let pg = PgCluster::shared();
    let s = setup(pg, &[]);
    let mut bad = TestAgent::connect(s.d.addr, "intruder");
    let answer = bad.auth("kat_0000000000000000000000000000000000000000000000000000000000000000");
    assert_eq!(
        answer,
        json!({"type": "auth.failure", "reason": "Invalid or expired token"})
    );
    assert_eq!(bad.wait_closed(T), Some(4010));

    let mut first = TestAgent::connect(s.d.addr, "eager");
    first.send(json!({"type": "agent.register", "agentId": "eager", "labels": []}));
    assert_eq!(first.wait_closed(T), Some(4010), "register before auth");

    let scoped = agent_token(
        &s,
        json!({"labels": ["linux", "kici:role:builder", "kici:role:init-runner"]}),
    );
    let mut ok = TestAgent::connect(s.d.addr, "scoped-ok");
    assert_eq!(ok.auth(&scoped)["type"], "auth.success");
    assert!(
        ok.register(&LABELS, &[]).is_some(),
        "os/arch/host labels are self-reported and allowed"
    );
    let mut gpu = TestAgent::connect(s.d.addr, "scoped-gpu");
    assert_eq!(gpu.auth(&scoped)["type"], "auth.success");
    assert!(gpu.register(&["linux", "gpu"], &[]).is_none());
    assert_eq!(gpu.wait_closed(T), Some(4010));

    // Revoked tokens stop working.
    let listed = admin(&s.d, OWNER, "GET", "/agent-tokens", json!({})).json();
    let id = listed["tokens"][0]["id"].as_str().unwrap().to_owned();
    assert_eq!(
        admin(
            &s.d,
            OWNER,
            "DELETE",
            &format!("/agent-tokens/{id}"),
            json!({})
        )
        .status,
        200
    );
    let mut revoked = TestAgent::connect(s.d.addr, "late");
    assert_eq!(revoked.auth(&scoped)["type"], "auth.failure");

    // An auth.request that never comes: 4002 after 5 s.
    let mut silent = TestAgent::connect(s.d.addr, "silent");
    assert_eq!(silent.wait_closed(Duration::from_secs(8)), Some(4002));
}

#[test]
fn busy_reject_requeues_to_another_agent_and_ack_timeout_closes_4031() {
    let pg = PgCluster::shared();
    let s = setup(pg, &[("KICI_DISPATCH_ACK_TIMEOUT_MS", "1000")]);
    let token = agent_token(&s, json!({}));
    let mut a = TestAgent::online(s.d.addr, "agent-a", &token);
    let (run, jobs) = queue_run(&s.db, &["only"], &[]);
    let job = a.dispatch(T).expect("dispatched to the first agent");
    let mut reject = json!({"type": "job.reject", "messageId": "m", "runId": run, "jobId": jobs[0], "reason": "busy", "timestamp": 1});
    a.send(reject.clone());
    let mut b = TestAgent::online(s.d.addr, "agent-b", &token);
    let again = b.dispatch(T).expect("requeued to the second agent");
    assert_eq!(
        again["jobId"], job["jobId"],
        "the job id is stable across requeues"
    );
    // agent-b never acknowledges: closed with 4031, and the job goes back to agent-a.
    assert_eq!(b.wait_closed(Duration::from_secs(5)), Some(4031));
    a.send(
        json!({"type": "agent.status", "messageId": "s", "agentId": "agent-a", "activeJobs": 0}),
    );
    let third = a.dispatch(T).expect("requeued after the ack timeout");
    a.run_job(&third, "success");
    wait_value(
        pg,
        &s.db,
        &format!(
            "SELECT status || ':' || dispatch_attempts FROM dispatch_queue WHERE id = '{}'",
            jobs[0]
        ),
        "completed:2",
    );
    wait_value(
        pg,
        &s.db,
        &format!("SELECT status FROM execution_runs WHERE run_id = '{run}'"),
        "success",
    );
    reject["jobId"] = json!("not-mine");
    a.send(reject);
}

#[test]
fn five_failed_attempts_fail_the_job() {
    let pg = PgCluster::shared();
    let s = setup(pg, &[]);
    let token = agent_token(&s, json!({}));
    let (run, jobs) = queue_run(&s.db, &["doomed"], &[]);
    for i in 0..5 {
        let mut a = TestAgent::online(s.d.addr, &format!("rejecter-{i}"), &token);
        let job = a
            .dispatch(T)
            .unwrap_or_else(|| panic!("attempt {i} not dispatched"));
        a.send(json!({"type": "job.reject", "messageId": "m", "runId": run, "jobId": job["jobId"], "reason": "busy", "timestamp": 1}));
        std::thread::sleep(Duration::from_millis(200));
    }
    wait_value(
        pg,
        &s.db,
        &format!(
            "SELECT status || ':' || dispatch_attempts FROM dispatch_queue WHERE id = '{}'",
            jobs[0]
        ),
        "failed:5",
    );
    wait_value(
        pg,
        &s.db,
        &format!("SELECT status FROM execution_runs WHERE run_id = '{run}'"),
        "failed",
    );
    let reason = one(
        pg,
        &s.db,
        &format!(
            "SELECT error_message FROM execution_jobs WHERE job_id = '{}'",
            jobs[0]
        ),
    );
    assert!(
        reason.contains("re-dispatch attempts exhausted"),
        "{reason}"
    );
}

#[test]
fn cancel_mid_job() {
    let pg = PgCluster::shared();
    let s = setup(pg, &[]);
    let token = agent_token(&s, json!({}));
    let mut a = TestAgent::online(s.d.addr, "agent-c", &token);
    let (run, jobs) = queue_run(&s.db, &["long", "later"], &[]);
    let job = a.dispatch(T).unwrap();
    a.ack(&job);
    a.status(&job, "running", Value::Null);
    wait_value(
        pg,
        &s.db,
        &format!("SELECT status FROM execution_runs WHERE run_id = '{run}'"),
        "running",
    );
    let r = admin(
        &s.d,
        OWNER,
        "POST",
        &format!("/runs/{run}/cancel"),
        json!({}),
    );
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(
        r.json()["cancelledJobs"],
        2,
        "one told to cancel, one still queued"
    );
    let cancel = a
        .recv_type("job.cancel", T)
        .expect("job.cancel sent to the agent");
    assert_eq!(
        (cancel["jobId"].as_str(), cancel["reason"].as_str()),
        (Some(jobs[0].as_str()), Some("run cancelled via API"))
    );
    a.status(
        &job,
        "cancelled",
        json!({"durationMs": 3, "stepResults": []}),
    );
    wait_value(
        pg,
        &s.db,
        &format!("SELECT status FROM execution_runs WHERE run_id = '{run}'"),
        "cancelled",
    );
    assert!(
        a.dispatch(Duration::from_millis(500)).is_none(),
        "the cancelled queued job is never dispatched"
    );
    assert_eq!(
        admin(
            &s.d,
            OWNER,
            "POST",
            "/runs/00000000-0000-0000-0000-000000000000/cancel",
            json!({})
        )
        .status,
        404
    );
}

#[test]
fn an_agent_that_reconnects_within_the_window_resumes_its_job() {
    let pg = PgCluster::shared();
    let s = setup(pg, &[]);
    let token = agent_token(&s, json!({}));
    let mut a = TestAgent::online(s.d.addr, "agent-r", &token);
    let (run, jobs) = queue_run(&s.db, &["resumable"], &[]);
    let job = a.dispatch(T).unwrap();
    a.ack(&job);
    a.status(&job, "running", Value::Null);
    wait_value(
        pg,
        &s.db,
        &format!(
            "SELECT status FROM execution_jobs WHERE job_id = '{}'",
            jobs[0]
        ),
        "running",
    );
    a.vanish();
    wait_value(
        pg,
        &s.db,
        &format!("SELECT status FROM dispatch_queue WHERE id = '{}'", jobs[0]),
        "recovering",
    );
    let mut back = TestAgent::connect(s.d.addr, "agent-r");
    assert_eq!(back.auth(&token)["type"], "auth.success");
    assert!(back
        .register(&LABELS, &[(jobs[0].as_str(), run.as_str())])
        .is_some());
    wait_value(
        pg,
        &s.db,
        &format!("SELECT status FROM dispatch_queue WHERE id = '{}'", jobs[0]),
        "dispatched",
    );
    back.log(&job, 0, &["after the reconnect"]);
    back.status(&job, "success", json!({"durationMs": 9, "stepResults": []}));
    wait_value(
        pg,
        &s.db,
        &format!("SELECT status FROM execution_runs WHERE run_id = '{run}'"),
        "success",
    );
}

#[test]
fn an_orchestrator_restart_mid_job_resumes_it() {
    let pg = PgCluster::shared();
    let mut s = setup(pg, &[]);
    let token = agent_token(&s, json!({}));
    let mut a = TestAgent::online(s.d.addr, "agent-s", &token);
    let (run, jobs) = queue_run(&s.db, &["survivor"], &[]);
    let job = a.dispatch(T).unwrap();
    a.ack(&job);
    a.status(&job, "running", Value::Null);
    wait_value(
        pg,
        &s.db,
        &format!(
            "SELECT status FROM execution_jobs WHERE job_id = '{}'",
            jobs[0]
        ),
        "running",
    );
    let port = s.d.addr.port();
    assert_eq!(s.d.terminate(), Some(0));
    assert_eq!(
        a.wait_closed(T),
        Some(1001),
        "agents are told the server is going away"
    );
    let mut env = base_env(&s.db);
    env.retain(|(k, _)| k != "KICI_PORT");
    env.push(("KICI_PORT".into(), port.to_string()));
    env.push(("KICI_STORAGE_TYPE".into(), "filesystem".into()));
    env.push(("KICI_STORAGE_FS_PATH".into(), s.logs.display().to_string()));
    s.d = Daemon::start(&env);
    s.d.wait_ready_status(200, T);
    wait_value(
        pg,
        &s.db,
        &format!("SELECT status FROM dispatch_queue WHERE id = '{}'", jobs[0]),
        "recovering",
    );
    let mut back = TestAgent::connect(s.d.addr, "agent-s");
    assert_eq!(back.auth(&token)["type"], "auth.success");
    assert!(back
        .register(&LABELS, &[(jobs[0].as_str(), run.as_str())])
        .is_some());
    wait_value(
        pg,
        &s.db,
        &format!("SELECT status FROM dispatch_queue WHERE id = '{}'", jobs[0]),
        "dispatched",
    );
    back.status(&job, "success", json!({"durationMs": 9, "stepResults": []}));
    wait_value(
        pg,
        &s.db,
        &format!("SELECT status FROM execution_runs WHERE run_id = '{run}'"),
        "success",
    );
}
