//! Failures explained (docs/agent-protocol.md, "Frames from the agent"; docs/operations.md,
//! "Admin CLI", runs): a step the scripted agent fails with exit code 3, in the real agent's shapes
//! (`step.status` `data.error` an object, `job.status` `stepResults[].error` a string), is
//! recorded with its exit code and a readable message, the job's error names the step, and
//! `kici-admin runs show` prints the exit code and the last 20 lines of the step's stored log
//! (filesystem store and S3 through s3s-fs; without storage, from the database).

use crate::support;

use std::time::Duration;

use serde_json::{json, Value};
use support::{
    agent::{agent_token, one, queue_run, setup, wait_value, Setup, TestAgent, OWNER},
    daemon::{base_env, cli, stderr, stdout, Daemon},
    pg::PgCluster,
    s3::S3Server,
};

const T: Duration = Duration::from_secs(10);

/// What the real agent's runner puts in a failed step's message: the step's error, its stack,
/// then the exit code.
fn runner_message(message: &str, code: i32) -> String {
    format!(
        "{message}\n\n    at Object.run (/w/.kici/workflows/basic.ts:21:10)\n    exit code: {code}"
    )
}

fn runs_show(s: &Setup, run: &str, json: bool) -> String {
    let url = format!("http://{}", s.d.addr);
    let mut args = vec!["--url", &url, "--token", OWNER, "runs", "show", run];
    if json {
        args.push("--json");
    }
    let out = cli(&args, &[]);
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    stdout(&out)
}

/// The scripted agent runs job `build`: step 0 `checkout` succeeds, step 1 `make` logs 25 lines
/// and fails with exit code 3, as the real agent reports it. Returns (run id, job id, lines) once
/// the run has ended.
fn fail_make(pg: &PgCluster, s: &Setup, agent: &str) -> (String, String, Vec<String>) {
    let token = agent_token(s, json!({}));
    let mut a = TestAgent::online(s.d.addr, agent, &token);
    let (run, jobs) = queue_run(&s.db, &["build"], &[]);
    let job = a.dispatch(T).expect("dispatched");
    a.ack(&job);
    a.status(&job, "running", Value::Null);
    a.step(&job, 0, "checkout", "running", Value::Null);
    a.step(&job, 0, "checkout", "success", json!({"durationMs": 3}));
    a.step(&job, 1, "make", "running", Value::Null);
    let lines: Vec<String> = (1..=25).map(|i| format!("make line {i}")).collect();
    let refs: Vec<&str> = lines.iter().map(String::as_str).collect();
    a.log(&job, 1, &refs[..10]);
    a.log(&job, 1, &refs[10..]);
    let message = runner_message("make failed", 3);
    a.step(
        &job,
        1,
        "make",
        "failed",
        json!({"durationMs": 40, "error": {"message": message, "exitCode": 3}}),
    );
    a.status(
        &job,
        "failed",
        json!({"durationMs": 90, "stepResults": [
            {"name": "checkout", "status": "success", "durationMs": 3},
            {"name": "make", "status": "failed", "durationMs": 40, "error": message}]}),
    );
    wait_value(
        pg,
        &s.db,
        &format!("SELECT status FROM execution_runs WHERE run_id = '{run}'"),
        "failed",
    );
    (run, jobs[0].clone(), lines)
}

#[test]
fn a_failed_step_shows_its_exit_code_and_last_lines() {
    let pg = PgCluster::shared();
    let s = setup(pg, &[]);
    let (run, job_id, lines) = fail_make(pg, &s, "agent-f");
    assert_eq!(
        one(
            pg,
            &s.db,
            &format!(
                "SELECT exit_code || '|' || error_message FROM execution_steps
                  WHERE job_id = '{job_id}' AND step_index = 1"
            )
        ),
        "3|make failed"
    );
    assert_eq!(
        one(
            pg,
            &s.db,
            &format!("SELECT error_message FROM execution_jobs WHERE job_id = '{job_id}'")
        ),
        r#"step "make": exit code 3: make failed"#
    );
    assert_eq!(
        one(
            pg,
            &s.db,
            "SELECT count(*) FROM execution_steps WHERE error_message LIKE '%[object Object]%'
                OR error_message LIKE '{%'"
        ),
        "0"
    );

    let text = runs_show(&s, &run, false);
    assert!(
        text.contains(r#"    error: step "make": exit code 3: make failed"#),
        "{text}"
    );
    assert!(
        text.contains("\nFailed steps:\n  build / step 1 (make): exit code 3: make failed\n"),
        "{text}"
    );
    let mut tail = String::from("    last 20 line(s) of its log:\n");
    for line in &lines[5..] {
        tail.push_str(&format!("    | {line}\n"));
    }
    assert!(text.contains(tail.trim_end()), "{text}");
    assert!(!text.contains("| make line 5\n"), "{text}");

    let v: Value = serde_json::from_str(&runs_show(&s, &run, true)).unwrap();
    let failed = v["failedSteps"].as_array().expect("failedSteps");
    assert_eq!(failed.len(), 1, "{v}");
    assert_eq!(
        (&failed[0]["job"], &failed[0]["step"], &failed[0]["name"]),
        (&json!("build"), &json!(1), &json!("make"))
    );
    assert_eq!(failed[0]["exitCode"], 3);
    assert_eq!(failed[0]["error"], "make failed");
    assert_eq!(failed[0]["lastLines"], json!(lines[5..]));
}

#[test]
fn the_job_status_alone_explains_the_step() {
    // The step's own failure frame carries no error (or was never sent): the final
    // `job.status` string is read instead.
    let pg = PgCluster::shared();
    let s = setup(pg, &[]);
    let token = agent_token(&s, json!({}));
    let mut a = TestAgent::online(s.d.addr, "agent-g", &token);
    let (run, jobs) = queue_run(&s.db, &["test"], &[]);
    let job = a.dispatch(T).expect("dispatched");
    a.ack(&job);
    a.status(&job, "running", Value::Null);
    a.step(&job, 0, "unit", "running", Value::Null);
    a.log(&job, 0, &["to stderr"]);
    a.status(
        &job,
        "failed",
        json!({"durationMs": 20, "stepResults": [
            {"name": "unit", "status": "failed", "durationMs": 9,
             "error": runner_message("to stderr", 3)}]}),
    );
    let job_id = &jobs[0];
    wait_value(
        pg,
        &s.db,
        &format!("SELECT status FROM execution_runs WHERE run_id = '{run}'"),
        "failed",
    );
    wait_value(
        pg,
        &s.db,
        &format!(
            "SELECT status || '|' || exit_code || '|' || error_message FROM execution_steps
              WHERE job_id = '{job_id}' AND step_index = 0"
        ),
        "failed|3|to stderr",
    );
    assert_eq!(
        one(
            pg,
            &s.db,
            &format!("SELECT error_message FROM execution_jobs WHERE job_id = '{job_id}'")
        ),
        r#"step "unit": exit code 3: to stderr"#
    );
    let text = runs_show(&s, &run, false);
    assert!(
        text.contains(
            "  test / step 0 (unit): exit code 3: to stderr\n    last 1 line(s) of its log:\n    | to stderr"
        ),
        "{text}"
    );
}

#[test]
fn last_lines_from_s3() {
    let s3 = S3Server::start();
    s3.create_bucket("kici-logs-it");
    let env = s3.env("kici-logs-it");
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let pg = PgCluster::shared();
    let s = setup(pg, &env);
    let (run, _, lines) = fail_make(pg, &s, "agent-s3");
    let v: Value = serde_json::from_str(&runs_show(&s, &run, true)).unwrap();
    assert_eq!(v["failedSteps"][0]["exitCode"], 3, "{v}");
    assert_eq!(v["failedSteps"][0]["lastLines"], json!(lines[5..]), "{v}");
}

#[test]
fn without_storage_the_last_lines_come_from_the_database() {
    let pg = PgCluster::shared();
    let db = pg.create_database();
    let mut env = base_env(&db);
    env.push(("KICI_BOOTSTRAP_ADMIN_TOKEN".into(), OWNER.into()));
    let d = Daemon::start(&env);
    d.wait_ready_status(200, T);
    let s = Setup {
        d,
        db,
        logs: std::env::temp_dir(),
    };
    let (run, _, lines) = fail_make(pg, &s, "agent-n");
    let v: Value = serde_json::from_str(&runs_show(&s, &run, true)).unwrap();
    let failed = &v["failedSteps"][0];
    assert_eq!(
        (&failed["exitCode"], &failed["error"]),
        (&json!(3), &json!("make failed")),
        "{v}"
    );
    assert_eq!(failed["lastLines"], json!(lines[5..]), "{v}");
    let text = runs_show(&s, &run, false);
    assert!(
        text.contains("  build / step 1 (make): exit code 3: make failed\n    last 20 line(s) of its log:\n    | make line 6\n"),
        "{text}"
    );
}
