//! Durable, live step logs (docs/agent-protocol.md, "Logs"): a line a scripted agent sends is
//! readable through `GET /runs/:runId/logs` within a second while its step runs; after `kill -9`
//! of the daemon mid-step and a restart, the step's stored log holds every line read before the
//! kill and every line after, none doubled; compaction writes the step's key and empties its rows;
//! without storage the lines stay in the table (until `KICI_LOG_RETENTION_DAYS`) and a daemon
//! started with storage compacts them.

use crate::support;

use std::time::{Duration, Instant};

use serde_json::{json, Value};
use support::{
    agent::{agent_token, one, queue_run, setup, wait_value, Setup, TestAgent, LABELS, OWNER},
    daemon::*,
    pg::PgCluster,
    webhook::admin,
};

const T: Duration = Duration::from_secs(20);

/// Every line of the run readable now, as `step line`, from the start.
fn read_all(s: &Setup, run: &str) -> Vec<String> {
    let r = admin(&s.d, OWNER, "GET", &format!("/runs/{run}/logs"), json!({}));
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    r.json()["lines"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| format!("{} {}", l["step"], l["line"].as_str().unwrap()))
        .collect()
}

/// Polls until `want` is among the readable lines; returns how long that took.
fn readable(s: &Setup, run: &str, want: &str) -> Duration {
    let start = Instant::now();
    while !read_all(s, run).iter().any(|l| l == want) {
        assert!(start.elapsed() < T, "{want:?} never readable");
        std::thread::sleep(Duration::from_millis(20));
    }
    start.elapsed()
}

fn stored_lines(s: &Setup, run: &str, job: &str, step: i64) -> Vec<String> {
    let path = s.logs.join(format!(
        "kici-logs/executions/{run}/job-{job}/step-{step}.log"
    ));
    let text = std::fs::read_to_string(&path).unwrap_or_default();
    text.lines()
        .map(|l| {
            let v: Value = serde_json::from_str(l).unwrap();
            v["msg"].as_str().unwrap().to_owned()
        })
        .collect()
}

fn rows(s: &Setup, job_id: &str) -> String {
    one(
        PgCluster::shared(),
        &s.db,
        &format!("SELECT count(*) FROM execution_log_lines WHERE job_id = '{job_id}'"),
    )
}

#[test]
fn a_line_is_readable_within_a_second_while_its_step_runs_and_compaction_empties_the_table() {
    let pg = PgCluster::shared();
    let s = setup(pg, &[]);
    let token = agent_token(&s, json!({}));
    let mut a = TestAgent::online(s.d.addr, "agent-live", &token);
    let (run, jobs) = queue_run(&s.db, &["live"], &[]);
    let job = a.dispatch(T).expect("dispatched");
    a.ack(&job);
    a.status(&job, "running", Value::Null);
    a.step(&job, 0, "first", "running", Value::Null);
    for i in 0..5 {
        a.log(&job, 0, &[&format!("line {i}")]);
        let took = readable(&s, &run, &format!("0 line {i}"));
        assert!(took < Duration::from_secs(1), "line {i} took {took:?}");
    }
    assert_eq!(rows(&s, &jobs[0]), "5", "the lines wait in the table");
    assert!(
        stored_lines(&s, &run, "live", 0).is_empty(),
        "nothing compacted yet"
    );
    a.step(&job, 0, "first", "success", json!({"durationMs": 3}));
    a.log(&job, -1, &["setup"]);
    a.status(&job, "success", json!({"durationMs": 9}));
    // The job's logs are compacted before its end is recorded.
    succeeded_and_compacted(pg, &s.db, &run, &jobs[0]);
    let want: Vec<String> = (0..5).map(|i| format!("line {i}")).collect();
    assert_eq!(stored_lines(&s, &run, "live", 0), want);
    assert_eq!(stored_lines(&s, &run, "live", -1), ["setup"]);
    let mut all: Vec<String> = want.iter().map(|l| format!("0 {l}")).collect();
    all.insert(0, "-1 setup".into());
    assert_eq!(read_all(&s, &run), all);
}

#[test]
fn after_kill_9_mid_step_the_stored_log_has_every_read_line_once() {
    let pg = PgCluster::shared();
    let mut s = setup(pg, &[]);
    let token = agent_token(&s, json!({}));
    let mut a = TestAgent::online(s.d.addr, "agent-k", &token);
    let (run, jobs) = queue_run(&s.db, &["killed"], &[]);
    let job = a.dispatch(T).expect("dispatched");
    a.ack(&job);
    a.status(&job, "running", Value::Null);
    a.step(&job, 0, "long", "running", Value::Null);
    for i in 0..20 {
        a.log(&job, 0, &[&format!("before {i}a"), &format!("before {i}b")]);
    }
    readable(&s, &run, "0 before 19b");
    let port = s.d.addr.port();
    signal(s.d.child.id(), "KILL");
    let _ = s.d.child.wait();
    a.vanish();
    let mut env = base_env(&s.db);
    env.retain(|(k, _)| k != "KICI_PORT");
    env.push(("KICI_PORT".into(), port.to_string()));
    env.push(("KICI_STORAGE_TYPE".into(), "filesystem".into()));
    env.push(("KICI_STORAGE_FS_PATH".into(), s.logs.display().to_string()));
    s.d = Daemon::start(&env);
    s.d.wait_ready_status(200, T);
    // Read back from the table after the restart, before the agent returns.
    let before: Vec<String> = (0..20)
        .flat_map(|i| [format!("0 before {i}a"), format!("0 before {i}b")])
        .collect();
    assert_eq!(read_all(&s, &run), before);
    wait_value(
        pg,
        &s.db,
        &format!("SELECT status FROM dispatch_queue WHERE id = '{}'", jobs[0]),
        "recovering",
    );
    let mut back = TestAgent::connect(s.d.addr, "agent-k");
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
    for i in 0..10 {
        back.log(&job, 0, &[&format!("after {i}")]);
    }
    readable(&s, &run, "0 after 9");
    back.step(&job, 0, "long", "success", json!({"durationMs": 3}));
    back.status(&job, "success", json!({"durationMs": 9, "stepResults": []}));
    succeeded_and_compacted(pg, &s.db, &run, &jobs[0]);
    let mut want: Vec<String> = before.iter().map(|l| l[2..].to_owned()).collect();
    want.extend((0..10).map(|i| format!("after {i}")));
    assert_eq!(stored_lines(&s, &run, "killed", 0), want);
    let mut read = before.clone();
    read.extend((0..10).map(|i| format!("0 after {i}")));
    assert_eq!(read_all(&s, &run), read);
}

#[test]
fn without_storage_lines_stay_in_the_table_and_a_daemon_with_storage_compacts_them_at_boot() {
    let pg = PgCluster::shared();
    let db = pg.create_database();
    let logs = std::env::temp_dir().join(format!(
        "kici-live-logs-{}-{}",
        std::process::id(),
        db.rsplit('/').next().unwrap()
    ));
    let mut env = base_env(&db);
    env.push(("KICI_BOOTSTRAP_ADMIN_TOKEN".into(), OWNER.into()));
    let d = Daemon::start(&env);
    d.wait_ready_status(200, T);
    let mut s = Setup { d, db, logs };
    let token = agent_token(&s, json!({}));
    let mut a = TestAgent::online(s.d.addr, "agent-db", &token);
    let (run, jobs) = queue_run(&s.db, &["kept"], &[]);
    let job = a.dispatch(T).expect("dispatched");
    a.run_job(&job, "success");
    wait_value(
        pg,
        &s.db,
        &format!("SELECT status FROM execution_runs WHERE run_id = '{run}'"),
        "success",
    );
    let lines = [
        "-1 [workflow-runner] Cloning",
        "0 hello from kici",
        "0 second line",
    ];
    assert_eq!(read_all(&s, &run), lines);
    let r = admin(&s.d, OWNER, "GET", &format!("/runs/{run}/logs"), json!({}));
    assert_eq!(r.json()["stored"], false);
    assert_eq!(rows(&s, &jobs[0]), "3");
    a.vanish();
    assert_eq!(s.d.terminate(), Some(0));
    env.push(("KICI_STORAGE_TYPE".into(), "filesystem".into()));
    env.push(("KICI_STORAGE_FS_PATH".into(), s.logs.display().to_string()));
    s.d = Daemon::start(&env);
    s.d.wait_ready_status(200, T);
    wait_value(
        pg,
        &s.db,
        &format!(
            "SELECT count(*) FROM execution_log_lines WHERE job_id = '{}'",
            jobs[0]
        ),
        "0",
    );
    assert_eq!(
        stored_lines(&s, &run, "kept", -1),
        ["[workflow-runner] Cloning"]
    );
    assert_eq!(
        stored_lines(&s, &run, "kept", 0),
        ["hello from kici", "second line"]
    );
    assert_eq!(read_all(&s, &run), lines);
}

#[test]
fn without_storage_lines_older_than_the_retention_are_deleted() {
    let pg = PgCluster::shared();
    let db = pg.create_database();
    let mut env = base_env(&db);
    env.push(("KICI_BOOTSTRAP_ADMIN_TOKEN".into(), OWNER.into()));
    env.push(("KICI_LOG_RETENTION_DAYS".into(), "7".into()));
    let d = Daemon::start(&env);
    d.wait_ready_status(200, T);
    let mut s = Setup {
        d,
        db,
        logs: std::env::temp_dir(),
    };
    let token = agent_token(&s, json!({}));
    let mut a = TestAgent::online(s.d.addr, "agent-old", &token);
    let (run, jobs) = queue_run(&s.db, &["old", "new"], &[]);
    for _ in 0..2 {
        let job = a.dispatch(T).expect("dispatched");
        a.run_job(&job, "success");
    }
    wait_value(
        pg,
        &s.db,
        &format!("SELECT status FROM execution_runs WHERE run_id = '{run}'"),
        "success",
    );
    assert_eq!(rows(&s, &jobs[0]), "3");
    assert_eq!(rows(&s, &jobs[1]), "3");
    pg.psql(
        &s.db,
        &format!(
            "UPDATE execution_log_lines SET created_at = now() - interval '8 days' WHERE job_id = '{}'",
            jobs[0]
        ),
    );
    a.vanish();
    assert_eq!(s.d.terminate(), Some(0));
    s.d = Daemon::start(&env);
    s.d.wait_ready_status(200, T);
    wait_value(
        pg,
        &s.db,
        &format!(
            "SELECT count(*) FROM execution_log_lines WHERE job_id = '{}'",
            jobs[0]
        ),
        "0",
    );
    assert_eq!(rows(&s, &jobs[1]), "3", "lines within the retention stay");
}

#[test]
fn a_job_past_its_log_cap_stores_one_truncation_line_and_nothing_after_it() {
    let pg = PgCluster::shared();
    let s = setup(pg, &[]);
    let token = agent_token(&s, json!({}));
    let (run, jobs) = queue_run(&s.db, &["chatty"], &[]);
    // A 100-byte cap: a line costs its text plus a newline, so nine 10-character lines fit.
    one(
        pg,
        &s.db,
        &format!(
            "UPDATE dispatch_queue SET dispatch = dispatch || '{{\"maxLogSizeBytes\": \"100\"}}' \
             WHERE id = '{}' RETURNING id",
            jobs[0]
        ),
    );
    let mut a = TestAgent::online(s.d.addr, "agent-cap", &token);
    let job = a.dispatch(T).expect("dispatched");
    assert_eq!(job["maxLogSizeBytes"], "100");
    a.ack(&job);
    a.status(&job, "running", Value::Null);
    a.step(&job, 0, "loud", "running", Value::Null);
    let line = |i: usize| format!("line-{i:05}");
    let first: Vec<String> = (0..5).map(line).collect();
    let second: Vec<String> = (5..10).map(line).collect();
    a.log(
        &job,
        0,
        &first.iter().map(String::as_str).collect::<Vec<_>>(),
    );
    a.log(
        &job,
        0,
        &second.iter().map(String::as_str).collect::<Vec<_>>(),
    );
    a.log(&job, 0, &["after the cap"]);
    a.step(&job, 0, "loud", "success", json!({"durationMs": 3}));
    a.log(&job, 1, &["a later step"]);
    // Still connected and heard: the job ends normally.
    a.status(&job, "success", json!({"durationMs": 9}));
    wait_value(
        pg,
        &s.db,
        &format!("SELECT status FROM execution_runs WHERE run_id = '{run}'"),
        "success",
    );
    let cut = "[log truncated: the job's log passed 100 bytes; later lines were not stored]";
    let mut want: Vec<String> = (0..9).map(line).collect();
    want.push(cut.into());
    assert_eq!(stored_lines(&s, &run, "chatty", 0), want);
    assert!(stored_lines(&s, &run, "chatty", 1).is_empty());
    let read: Vec<String> = want.iter().map(|l| format!("0 {l}")).collect();
    assert_eq!(read_all(&s, &run), read);
}

/// Waits until the run succeeded and its job's log lines left the table (compacted).
fn succeeded_and_compacted(pg: &PgCluster, db: &str, run: &str, job: &str) {
    wait_value(
        pg,
        db,
        &format!("SELECT status FROM execution_runs WHERE run_id = '{run}'"),
        "success",
    );
    wait_value(
        pg,
        db,
        &format!("SELECT count(*) FROM execution_log_lines WHERE job_id = '{job}'"),
        "0",
    );
}
