//! `GET /runs/:runId/logs` and `kici-admin runs logs` against a real daemon whose filesystem
//! store receives the step logs of scripted agents: lines in order with a resumable cursor,
//! `--follow` started before the jobs end and exiting by the run's outcome, parameter errors,
//! and routing-key scoping as for `runs show`.

use crate::support;

use std::{
    process::{Child, Output, Stdio},
    time::{Duration, Instant},
};

use serde_json::{json, Value};
use support::{
    agent::{agent_token, queue_run, setup, wait_value, Setup, TestAgent, OWNER},
    daemon::*,
    pg::PgCluster,
    webhook::admin,
};

const T: Duration = Duration::from_secs(20);

fn follow(s: &Setup, run: &str, extra: &[&str]) -> Child {
    let url = format!("http://{}", s.d.addr);
    let mut args = vec![
        "--url", &url, "--token", OWNER, "runs", "logs", run, "--follow",
    ];
    args.extend_from_slice(extra);
    command()
        .args(&args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run kici-admin")
}

/// The child's output once it exits (killed after `T`).
fn finish(mut child: Child) -> Output {
    let deadline = Instant::now() + T;
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            let out = child.wait_with_output().unwrap();
            panic!(
                "runs logs --follow did not end:\n{}{}",
                stdout(&out),
                stderr(&out)
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    child.wait_with_output().unwrap()
}

fn logs(s: &Setup, token: &str, run: &str, query: &str) -> (u16, Value) {
    let r = admin(
        &s.d,
        token,
        "GET",
        &format!("/runs/{run}/logs{query}"),
        json!({}),
    );
    let body = serde_json::from_slice(&r.body).unwrap_or(Value::Null);
    (r.status, body)
}

fn printed(v: &Value) -> String {
    format!(
        "{}/{} {}",
        v["job"].as_str().unwrap(),
        v["step"],
        v["line"].as_str().unwrap()
    )
}

fn wait_run(s: &Setup, run: &str, status: &str) {
    wait_value(
        PgCluster::shared(),
        &s.db,
        &format!("SELECT status FROM execution_runs WHERE run_id = '{run}'"),
        status,
    );
}

#[test]
fn lines_come_in_order_with_a_cursor_and_follow_exits_1_for_a_failed_run() {
    let pg = PgCluster::shared();
    let s = setup(pg, &[]);
    let token = agent_token(&s, json!({}));
    let mut a = TestAgent::online(s.d.addr, "agent-logs", &token);
    let (run, _) = queue_run(&s.db, &["build", "test"], &[]);
    let follower = follow(&s, &run, &[]);
    let first = a.dispatch(T).expect("build dispatched");
    a.run_job(&first, "success");
    let second = a.dispatch(T).expect("test dispatched");
    a.run_job(&second, "failed");
    wait_run(&s, &run, "failed");

    let out = finish(follower);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    // A job's setup log can grow until the job ends, so a follower may get it after the job's
    // step lines; each line comes once, and each step's lines in order.
    let text = stdout(&out);
    let printed_lines: Vec<&str> = text.lines().collect();
    let mut sorted = printed_lines.clone();
    sorted.sort();
    assert_eq!(
        sorted,
        [
            "[build/0] hello from kici",
            "[build/0] second line",
            "[build/setup] [workflow-runner] Cloning",
            "[test/0] hello from kici",
            "[test/0] second line",
            "[test/setup] [workflow-runner] Cloning",
        ],
        "{text}"
    );
    let at = |l: &str| printed_lines.iter().position(|p| *p == l).unwrap();
    assert!(at("[build/0] hello from kici") < at("[build/0] second line"));
    assert!(at("[build/0] second line") < at("[test/0] hello from kici"));
    assert!(stderr(&out).contains("failed"), "{}", stderr(&out));

    // All at once, then two at a time with the cursor: the same lines in the same order.
    let (status, all) = logs(&s, OWNER, &run, "");
    assert_eq!(status, 200, "{all}");
    assert_eq!(
        (all["complete"].as_bool(), all["stored"].as_bool()),
        (Some(true), Some(true))
    );
    let lines = all["lines"].as_array().unwrap();
    assert_eq!(lines.len(), 6);
    assert_eq!(lines[1]["stream"], "stdout");
    assert!(lines[1]["ts"].as_str().unwrap().ends_with('Z'));
    let mut paged = Vec::new();
    let mut query = "?limit=2".to_owned();
    for _ in 0..10 {
        let (status, page) = logs(&s, OWNER, &run, &query);
        assert_eq!(status, 200, "{page}");
        assert!(page["lines"].as_array().unwrap().len() <= 2);
        paged.extend(page["lines"].as_array().unwrap().iter().map(printed));
        if page["complete"] == true {
            break;
        }
        query = format!("?limit=2&after={}", page["cursor"].as_str().unwrap());
    }
    assert_eq!(paged, lines.iter().map(printed).collect::<Vec<_>>());

    // Filters, and plain lines for one step through the CLI.
    let (_, one) = logs(&s, OWNER, &run, "?job=test&step=0");
    assert_eq!(
        one["lines"]
            .as_array()
            .unwrap()
            .iter()
            .map(printed)
            .collect::<Vec<_>>(),
        ["test/0 hello from kici", "test/0 second line"]
    );
    let url = format!("http://{}", s.d.addr);
    let base = ["--url", &url, "--token", OWNER, "runs", "logs", &run];
    let out = cli(
        &[&base[..], &["--job", "build", "--step", "0"]].concat(),
        &[],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out), "hello from kici\nsecond line\n");
    let out = cli(&[&base[..], &["--json", "--job", "build"]].concat(), &[]);
    let json: Vec<Value> = stdout(&out)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(json.len(), 3);
    assert_eq!(
        (json[2]["job"].as_str(), json[2]["step"].as_i64()),
        (Some("build"), Some(0))
    );

    // Bad parameters are named; an unknown run is a 404 and the CLI says what to do.
    let (status, bad) = logs(&s, OWNER, &run, "?step=x&limit=0&after=zz&job=");
    assert_eq!(status, 400, "{bad}");
    let paths: Vec<&str> = bad["details"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["path"].as_str().unwrap())
        .collect();
    assert_eq!(paths, ["step", "limit", "after"]);
    let (status, bad) = logs(&s, OWNER, &run, "?job=deploy");
    assert_eq!(status, 400, "{bad}");
    assert!(bad.to_string().contains("build, test"), "{bad}");
    let missing = "0190cccc-0000-7000-8000-000000000009";
    assert_eq!(logs(&s, OWNER, missing, "").0, 404);
    let out = cli(
        &["--url", &url, "--token", OWNER, "runs", "logs", missing],
        &[],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("no run"), "{}", stderr(&out));
    let out = cli(&[&base[..], &["--job", "deploy"]].concat(), &[]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("\"deploy\" is not a job of this run")
            && stderr(&out).contains("kici-admin runs show"),
        "{}",
        stderr(&out)
    );
    let out = cli(&[&base[..], &["--step", "-3"]].concat(), &[]);
    assert!(stderr(&out).contains("--step -3"), "{}", stderr(&out));
}

#[test]
fn follow_started_before_the_job_prints_its_lines_and_exits_0() {
    let pg = PgCluster::shared();
    let s = setup(pg, &[]);
    let (run, _) = queue_run(&s.db, &["solo"], &[]);
    let follower = follow(&s, &run, &["--json"]);
    std::thread::sleep(Duration::from_millis(1500));
    let token = agent_token(&s, json!({}));
    let mut a = TestAgent::online(s.d.addr, "agent-solo", &token);
    let job = a.dispatch(T).expect("solo dispatched");
    a.run_job(&job, "success");
    let out = finish(follower);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let got: Vec<String> = stdout(&out)
        .lines()
        .map(|l| printed(&serde_json::from_str(l).unwrap()))
        .collect();
    let mut got = got;
    got.sort();
    assert_eq!(
        got,
        [
            "solo/-1 [workflow-runner] Cloning",
            "solo/0 hello from kici",
            "solo/0 second line"
        ]
    );
}

#[test]
fn scoped_tokens_are_refused_as_for_runs_show() {
    let pg = PgCluster::shared();
    let s = setup(pg, &[]);
    let (run, _) = queue_run(&s.db, &["quiet"], &[]);
    let token = |role: &str, key: Option<&str>| {
        let r = admin(
            &s.d,
            OWNER,
            "POST",
            "/tokens",
            json!({ "label": role, "role": role, "routingKey": key }),
        );
        assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
        r.json()["token"].as_str().unwrap().to_owned()
    };
    let other = token("auditor", Some("github:77"));
    let shown = admin(&s.d, &other, "GET", &format!("/runs/{run}"), json!({})).status;
    assert!(shown == 403 || shown == 404, "{shown}");
    assert_eq!(logs(&s, &other, &run, "").0, shown);
    let auditor = token("auditor", None);
    let (status, body) = logs(&s, &auditor, &run, "");
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["lines"], json!([]));
    assert_eq!(body["complete"], false, "the job has not run");
    assert_eq!(logs(&s, "not-a-token", &run, "").0, 401);
}

#[test]
fn without_storage_the_answer_says_nothing_is_stored() {
    let pg = PgCluster::shared();
    let db = pg.create_database();
    let mut env = base_env(&db);
    env.push(("KICI_BOOTSTRAP_ADMIN_TOKEN".into(), OWNER.into()));
    let d = Daemon::start(&env);
    d.wait_ready_status(200, T);
    let (run, _) = queue_run(&db, &["nowhere"], &[]);
    let get = || {
        let r = admin(&d, OWNER, "GET", &format!("/runs/{run}/logs"), json!({}));
        assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
        r.json()
    };
    let body = get();
    assert_eq!(
        (&body["lines"], &body["stored"], &body["complete"]),
        (&json!([]), &json!(false), &json!(false))
    );
    pg.psql(
        &db,
        &format!("UPDATE execution_runs SET status = 'cancelled' WHERE run_id = '{run}'"),
    );
    let body = get();
    assert_eq!(
        (&body["complete"], &body["runStatus"]),
        (&json!(true), &json!("cancelled"))
    );
    // A follower of a cancelled run exits 2.
    let url = format!("http://{}", d.addr);
    let out = cli(
        &[
            "--url", &url, "--token", OWNER, "runs", "logs", &run, "--follow",
        ],
        &[],
    );
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
}

#[test]
fn runs_logs_help_names_every_option() {
    let out = cli(&["runs", "logs", "--help"], &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    let help = stdout(&out);
    for option in ["--job", "--step", "--follow", "--json", "run_id"] {
        assert!(help.contains(option), "{option} in {help}");
    }
}

#[test]
fn a_finished_step_is_readable_while_its_job_still_runs() {
    let pg = PgCluster::shared();
    let s = setup(pg, &[]);
    let token = agent_token(&s, json!({}));
    let mut a = TestAgent::online(s.d.addr, "agent-live", &token);
    let (run, _) = queue_run(&s.db, &["long"], &[]);
    let job = a.dispatch(T).expect("long dispatched");
    a.ack(&job);
    a.status(&job, "running", Value::Null);
    a.log(&job, -1, &["setting up"]);
    a.step(&job, 0, "first", "running", Value::Null);
    a.log(&job, 0, &["one", "two"]);
    a.step(&job, 0, "first", "success", json!({"durationMs": 3}));
    a.step(&job, 1, "second", "running", Value::Null);
    let deadline = Instant::now() + T;
    let page = loop {
        let (status, page) = logs(&s, OWNER, &run, "");
        assert_eq!(status, 200, "{page}");
        // Lines are readable as they arrive: wait until all three have.
        if page["lines"].as_array().unwrap().len() >= 3 || Instant::now() > deadline {
            break page;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let got: Vec<String> = page["lines"]
        .as_array()
        .unwrap()
        .iter()
        .map(printed)
        .collect();
    // Lines are readable as they arrive: the setup line too (agent/logs.rs).
    assert_eq!(
        got,
        ["long/-1 setting up", "long/0 one", "long/0 two"],
        "{page}"
    );
    assert_eq!(page["complete"], false);
    // The job ends: the second step's line comes after the cursor.
    a.log(&job, 1, &["three"]);
    a.step(&job, 1, "second", "success", json!({"durationMs": 3}));
    a.status(&job, "success", json!({"durationMs": 9}));
    wait_run(&s, &run, "success");
    let cursor = page["cursor"].as_str().unwrap();
    let (_, rest) = logs(&s, OWNER, &run, &format!("?after={cursor}"));
    let got: Vec<String> = rest["lines"]
        .as_array()
        .unwrap()
        .iter()
        .map(printed)
        .collect();
    assert_eq!(got, ["long/1 three"], "{rest}");
    assert_eq!(rest["complete"], true);
}
