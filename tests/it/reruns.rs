//! Reruns and replays against a real daemon, PostgreSQL, the fake GitHub and the scripted agent:
//! `kici-admin runs rerun --failed-only` runs only the failed job and what depends on it, the
//! passed job kept; a signed `check_run` `rerequested` webhook re-runs our run at the same commit
//! (once per run, however often GitHub asks) and one for a check run that is not ours is recorded
//! as ignored; the admin API refuses reruns of active runs, auditors and other routing keys; a
//! push that found no lock file starts its run when replayed after the lock file is in place.

use crate::support;

use std::time::{Duration, Instant};

use serde_json::{json, Value};
use support::{
    agent::{agent_token, one, wait_value, Setup, TestAgent, OWNER},
    daemon::*,
    fake_github::{rsa_key_pair, FakeGitHub},
    pg::PgCluster,
    webhook::*,
};

const T: Duration = Duration::from_secs(10);
const SECRET: &str = "rerun webhook secret";
const SHA: &str = "2222222222222222222222222222222222222222";

/// Workflow `ci`: `lint` and `unit` at once, `deploy` after both.
fn lock() -> Vec<u8> {
    let job = support::lock::static_job;
    support::lock::ci_lock_file(json!([
            {"name": "ci", "contentHash": "ci-hash", "source": {"file": ".kici/workflows/ci.ts", "export": "#default"},
             "triggers": [{"_type": "push", "branches": [{"type": "glob", "pattern": "main"}], "paths": []}],
             "jobs": [job("lint", json!([])), job("unit", json!([])), job("deploy", json!(["lint", "unit"]))]},
    ]))
}

struct World {
    s: Setup,
    gh: FakeGitHub,
    routing_key: String,
}

fn world() -> World {
    let (key_pem, public_der) = rsa_key_pair();
    let gh = FakeGitHub::start(8888, "Rerun App", "rerun-app", public_der);
    let s = support::agent::setup(PgCluster::shared(), &[("KICI_GITHUB_API_URL", &gh.url)]);
    github_source(&s.d, OWNER, "reruns", "8888", &key_pem, SECRET);
    let routing_key = one(
        PgCluster::shared(),
        &s.db,
        "SELECT routing_key FROM sources LIMIT 1",
    );
    World { s, gh, routing_key }
}

/// Posts a signed GitHub delivery through the real HTTP front.
fn deliver(w: &World, event: &str, delivery: &str, body: &Value) -> HttpResponse {
    let body = body.to_string();
    support::webhook::post_github_event(&w.s.d, SECRET, "8888", event, delivery, &body, &[]).0
}

fn repository() -> Value {
    json!({"full_name": "acme/app", "name": "app", "owner": {"login": "acme"}, "default_branch": "main",
           "clone_url": "https://github.example/acme/app.git"})
}

fn push(w: &World, delivery: &str) {
    let body = json!({"ref": "refs/heads/main", "before": "0000000000000000000000000000000000000000",
        "after": SHA, "repository": repository(), "installation": {"id": 42},
        "sender": {"login": "dev", "id": 9}, "head_commit": {"id": SHA, "message": "change"}});
    assert_eq!(deliver(w, "push", delivery, &body).status, 202);
}

fn check_run_rerequested(w: &World, delivery: &str, external_id: &str, name: &str) {
    let body = json!({"action": "rerequested", "repository": repository(), "installation": {"id": 42},
        "sender": {"login": "reviewer", "id": 11},
        "check_run": {"id": 555, "name": name, "external_id": external_id, "head_sha": SHA,
                      "status": "completed", "conclusion": "failure"}});
    assert_eq!(deliver(w, "check_run", delivery, &body).status, 202);
}

/// The delivery's status and decisions once the pipeline is done with it.
fn processed(w: &World, delivery: &str) -> (String, Value) {
    let deadline = Instant::now() + T;
    loop {
        let row = one(PgCluster::shared(), &w.s.db, &format!(
            "SELECT status || '|' || coalesce(decisions::text, 'null') FROM event_log WHERE delivery_id = '{delivery}'"));
        if let Some((status, decisions)) = row.split_once('|') {
            if status != "received" && status != "processing" {
                return (
                    status.to_owned(),
                    serde_json::from_str(decisions).unwrap_or(Value::Null),
                );
            }
        }
        assert!(
            Instant::now() < deadline,
            "delivery {delivery} never processed: {row:?}"
        );
        std::thread::sleep(Duration::from_millis(30));
    }
}

fn sql(w: &World, q: &str) -> String {
    one(PgCluster::shared(), &w.s.db, q)
}

fn run_status(w: &World, run: &str, want: &str) {
    wait_value(
        PgCluster::shared(),
        &w.s.db,
        &format!("SELECT status FROM execution_runs WHERE run_id = '{run}'"),
        want,
    );
}

/// Runs every job dispatched until `n` ran: `unit` ends with `unit_outcome`, the others pass.
/// Returns the names in dispatch order.
fn run_jobs(agent: &mut TestAgent, n: usize, unit_outcome: &str) -> Vec<String> {
    let mut order = Vec::new();
    while order.len() < n {
        let job = agent
            .dispatch(T)
            .unwrap_or_else(|| panic!("only {order:?} dispatched"));
        assert_eq!(job["sha"], SHA, "a rerun runs at the same commit");
        let name = job["jobConfig"]["name"].as_str().unwrap().to_owned();
        agent.run_job(
            &job,
            if name == "unit" {
                unit_outcome
            } else {
                "success"
            },
        );
        order.push(name);
    }
    order
}

fn cli_as(w: &World, token: &str, args: &[&str]) -> std::process::Output {
    let url = format!("http://{}", w.s.d.addr);
    let mut all = vec!["--url", url.as_str(), "--token", token];
    all.extend_from_slice(args);
    cli(&all, &[])
}

fn jobs_of(w: &World, run: &str) -> String {
    sql(w, &format!(
        "SELECT string_agg(job_name || '=' || status, ',' ORDER BY job_name) FROM execution_jobs WHERE run_id = '{run}'"))
}

#[test]
fn failed_only_reruns_and_a_github_rerequest_run_again_at_the_same_commit() {
    let w = world();
    w.gh.put_file("acme/app", SHA, ".kici/kici.lock.json", &lock());
    push(&w, "push-1");
    assert_eq!(processed(&w, "push-1").0, "processed");
    let first = sql(
        &w,
        "SELECT run_id FROM execution_runs WHERE delivery_id = 'push-1'",
    );
    let token = agent_token(&w.s, json!({}));
    let mut agent = TestAgent::online(w.s.d.addr, "rerun-agent", &token);
    let mut ran = run_jobs(&mut agent, 2, "failed");
    ran.sort();
    assert_eq!(ran, ["lint", "unit"]);
    run_status(&w, &first, "failed");
    assert_eq!(
        jobs_of(&w, &first),
        "deploy=skipped,lint=success,unit=failed"
    );

    // --failed-only: unit runs again, deploy after it; lint is kept as passed, with its outputs.
    sql(&w, &format!(
        "UPDATE execution_jobs SET outputs = '{{\"version\": \"1.2\"}}' WHERE run_id = '{first}' AND job_name = 'lint'"));
    let out = cli_as(
        &w,
        OWNER,
        &["runs", "rerun", &first, "--failed-only", "--json"],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let answer: Value = serde_json::from_str(&stdout(&out)).expect("JSON");
    let second = answer["runId"].as_str().expect("runId").to_owned();
    assert_eq!(answer["rerunOf"], first.as_str());
    assert_eq!(answer["keptJobs"], json!(["lint"]));
    assert_eq!(
        sql(&w, &format!("SELECT sha || '|' || delivery_id || '|' || triggered_by || '|' || parent_run_id || '|' || original_run_id FROM execution_runs WHERE run_id = '{second}'")),
        format!("{SHA}|push-1|rerun (failed jobs only) by admin token {}|{first}|{first}",
            sql(&w, "SELECT id FROM admin_tokens WHERE label = 'bootstrap'"))
    );
    assert_eq!(run_jobs(&mut agent, 2, "success"), ["unit", "deploy"]);
    run_status(&w, &second, "success");
    let shown = cli_as(&w, OWNER, &["runs", "show", &second]);
    assert!(
        stdout(&shown).contains(&format!(
            "Re-run of:      {first} (rerun (failed jobs only)"
        )),
        "{}",
        stdout(&shown)
    );
    let kept = sql(
        &w,
        &format!(
        "SELECT error_message FROM execution_jobs WHERE run_id = '{second}' AND job_name = 'lint'"),
    );
    assert!(kept.contains(&format!("passed in run {first}")), "{kept}");
    assert_eq!(
        sql(&w, &format!("SELECT outputs->>'version' FROM execution_jobs WHERE run_id = '{second}' AND job_name = 'lint'")),
        "1.2"
    );

    // Nothing failed any more: --failed-only says so and how to run everything.
    let out = cli_as(&w, OWNER, &["runs", "rerun", &second, "--failed-only"]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("re-run without --failed-only"),
        "{}",
        stderr(&out)
    );

    // GitHub's "Re-run" on the check run of the second run: every job again, same commit.
    check_run_rerequested(&w, "rerequest-1", &second, "kici/ci");
    let (status, decisions) = processed(&w, "rerequest-1");
    assert_eq!(status, "processed", "{decisions}");
    let third = sql(&w, &format!(
        "SELECT run_id FROM execution_runs WHERE parent_run_id = '{second}' AND triggered_by = 'check_run.rerequested by reviewer'"));
    assert!(!third.is_empty(), "no rerun: {decisions}");
    assert_eq!(
        sql(
            &w,
            "SELECT run_id FROM event_log WHERE delivery_id = 'rerequest-1'"
        ),
        third
    );
    assert_eq!(
        sql(
            &w,
            &format!("SELECT original_run_id FROM execution_runs WHERE run_id = '{third}'")
        ),
        first
    );
    // While it runs, a rerun is refused with the fix, through the API.
    let r = admin(
        &w.s.d,
        OWNER,
        "POST",
        &format!("/runs/{third}/rerun"),
        json!({}),
    );
    assert_eq!(r.status, 409, "{}", String::from_utf8_lossy(&r.body));
    assert!(r.json()["error"]
        .as_str()
        .unwrap()
        .contains("kici-admin runs cancel"));
    let mut ran = run_jobs(&mut agent, 3, "success");
    ran.sort();
    assert_eq!(ran, ["deploy", "lint", "unit"]);
    run_status(&w, &third, "success");

    // The same run asked again (one of its job check runs): found, not started twice.
    check_run_rerequested(&w, "rerequest-2", &second, "kici/ci/job/unit");
    let (_, decisions) = processed(&w, "rerequest-2");
    assert!(
        decisions.to_string().contains("already re-run"),
        "{decisions}"
    );
    assert_eq!(
        sql(
            &w,
            &format!("SELECT count(*) FROM execution_runs WHERE parent_run_id = '{second}'")
        ),
        "1"
    );
    // A check run of someone else's: recorded as ignored, no run.
    check_run_rerequested(&w, "rerequest-3", "not-a-run", "other-ci/build");
    let (status, decisions) = processed(&w, "rerequest-3");
    assert_eq!(status, "processed");
    assert!(
        decisions.to_string().contains("is not one of ours"),
        "{decisions}"
    );
    assert_eq!(sql(&w, "SELECT count(*) FROM execution_runs"), "3");
    // Without an external_id, the name and head_sha find our latest run of the workflow.
    check_run_rerequested(&w, "rerequest-4", "", "kici/ci");
    assert_eq!(processed(&w, "rerequest-4").0, "processed");
    let fourth = sql(
        &w,
        &format!("SELECT run_id FROM execution_runs WHERE parent_run_id = '{third}'"),
    );
    assert!(!fourth.is_empty());

    // "Re-run all checks" of the suite: the latest run of each workflow at its head_sha, once
    // it has ended (an active one is recorded as not re-run, with the reason).
    let suite = json!({"action": "rerequested", "repository": repository(), "installation": {"id": 42},
        "sender": {"login": "reviewer", "id": 11}, "check_suite": {"id": 77, "head_sha": SHA}});
    assert_eq!(deliver(&w, "check_suite", "suite-1", &suite).status, 202);
    let (_, decisions) = processed(&w, "suite-1");
    assert!(
        decisions.to_string().contains("is still pending"),
        "{decisions}"
    );
    run_jobs(&mut agent, 3, "success");
    run_status(&w, &fourth, "success");
    assert_eq!(deliver(&w, "check_suite", "suite-2", &suite).status, 202);
    assert_eq!(processed(&w, "suite-2").0, "processed");
    assert_eq!(
        sql(
            &w,
            &format!("SELECT triggered_by FROM execution_runs WHERE parent_run_id = '{fourth}'")
        ),
        "check_suite.rerequested by reviewer"
    );
}

#[test]
fn api_reruns_need_write_access_to_the_runs_key_and_replays_pick_up_a_fixed_lock_file() {
    let w = world();
    // The push finds no lock file: nothing runs, and the event log says so.
    push(&w, "push-nolock");
    assert_eq!(processed(&w, "push-nolock").0, "lockfile_missing");
    let out = cli_as(&w, OWNER, &["event-log", "replay", "push-nolock"]);
    assert!(
        out.status.success(),
        "a replay that still finds nothing reports it: {}",
        stderr(&out)
    );
    assert!(
        stdout(&out).contains("lockfile_missing, 0 run(s)"),
        "{}",
        stdout(&out)
    );

    // The lock file is there now: the replay starts the run.
    w.gh.put_file("acme/app", SHA, ".kici/kici.lock.json", &lock());
    let auditor = admin(
        &w.s.d,
        OWNER,
        "POST",
        "/tokens",
        json!({"label": "ro", "role": "auditor"}),
    );
    let auditor = auditor.json()["token"].as_str().unwrap().to_owned();
    let r = admin(
        &w.s.d,
        &auditor,
        "POST",
        "/events/push-nolock/replay",
        json!({}),
    );
    assert_eq!(r.status, 403, "auditors may not replay");
    let out = cli_as(&w, OWNER, &["event-log", "replay", "push-nolock", "--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let replayed: Value = serde_json::from_str(&stdout(&out)).expect("JSON");
    assert_eq!(replayed["status"], "processed", "{replayed}");
    let run = replayed["runs"][0].as_str().expect("a run").to_owned();
    assert_eq!(
        sql(&w, &format!("SELECT delivery_id || '|' || sha || '|' || triggered_by FROM execution_runs WHERE run_id = '{run}'")),
        format!("push-nolock|{SHA}|replay by admin token {}",
            sql(&w, "SELECT id FROM admin_tokens WHERE label = 'bootstrap'"))
    );
    assert_eq!(
        sql(
            &w,
            "SELECT run_id FROM event_log WHERE delivery_id = 'push-nolock'"
        ),
        run
    );
    let r = admin(
        &w.s.d,
        OWNER,
        "POST",
        "/events/no-such-delivery/replay",
        json!({}),
    );
    assert_eq!(r.status, 404);

    // Finish it, then re-run it through the API with the various tokens.
    let token = agent_token(&w.s, json!({}));
    let mut agent = TestAgent::online(w.s.d.addr, "api-agent", &token);
    run_jobs(&mut agent, 3, "success");
    run_status(&w, &run, "success");
    let r = admin(
        &w.s.d,
        &auditor,
        "POST",
        &format!("/runs/{run}/rerun"),
        json!({}),
    );
    assert_eq!(r.status, 403, "{}", String::from_utf8_lossy(&r.body));
    let scoped = |key: &str| {
        let r = admin(
            &w.s.d,
            OWNER,
            "POST",
            "/tokens",
            json!({"label": format!("scoped-{key}"), "role": "admin", "routingKey": key}),
        );
        r.json()["token"].as_str().unwrap().to_owned()
    };
    let other = scoped("some-other-key");
    let r = admin(
        &w.s.d,
        &other,
        "POST",
        &format!("/runs/{run}/rerun"),
        json!({}),
    );
    assert_eq!(r.status, 403, "{}", String::from_utf8_lossy(&r.body));
    let r = admin(
        &w.s.d,
        &other,
        "POST",
        "/events/push-nolock/replay",
        json!({}),
    );
    assert_eq!(r.status, 403, "{}", String::from_utf8_lossy(&r.body));
    let r = admin(
        &w.s.d,
        OWNER,
        "POST",
        "/runs/00000000-0000-0000-0000-000000000000/rerun",
        json!({}),
    );
    assert_eq!(r.status, 404);
    let r = admin(
        &w.s.d,
        OWNER,
        "POST",
        &format!("/runs/{run}/rerun"),
        json!({"failedOnly": "yes"}),
    );
    assert_eq!(r.status, 400);
    let mine = scoped(&w.routing_key);
    let r = admin(
        &w.s.d,
        &mine,
        "POST",
        &format!("/runs/{run}/rerun"),
        json!({}),
    );
    assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
    let again = r.json()["runId"].as_str().unwrap().to_owned();
    assert_eq!(r.json()["keptJobs"], json!([]));
    let mut ran = run_jobs(&mut agent, 3, "success");
    ran.sort();
    assert_eq!(ran, ["deploy", "lint", "unit"]);
    run_status(&w, &again, "success");

    // Once the delivery's payload is gone, a rerun says what to do instead.
    sql(&w, "UPDATE event_log SET payload = NULL, payload_omitted = true, payload_omitted_reason = 'size_exceeded' WHERE delivery_id = 'push-nolock'");
    let r = admin(
        &w.s.d,
        OWNER,
        "POST",
        &format!("/runs/{again}/rerun"),
        json!({}),
    );
    assert_eq!(r.status, 410, "{}", String::from_utf8_lossy(&r.body));
    assert!(r.json()["error"].as_str().unwrap().contains("redeliver"));
}

/// A local repository whose lock file's `ci` workflow triggers on pushes to `branch`.
fn write_local_lock(repo: &std::path::Path, branch: &str) {
    std::fs::create_dir_all(repo.join(".kici")).unwrap();
    let lock = json!({"schemaVersion": 29, "source": {"file": ".kici/workflows/ci.ts", "export": "#default"},
        "workflows": [{"name": "ci", "contentHash": "h",
            "triggers": [{"_type": "push", "branches": [{"type": "glob", "pattern": branch}], "paths": []}],
            "jobs": [{"_type": "static", "name": "build", "runsOn": [{"kind": "exact", "value": "linux"}],
                      "needs": [], "steps": []}]}]});
    std::fs::write(repo.join(".kici/kici.lock.json"), lock.to_string()).unwrap();
}

#[test]
fn a_replay_after_fixing_a_local_lock_file_starts_the_run_it_missed() {
    use support::git::git_ok;
    let s = support::agent::setup(PgCluster::shared(), &[]);
    let base = std::env::temp_dir().join(format!("kici-replay-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&base);
    let repo = base.join("acme/app");
    std::fs::create_dir_all(&repo).unwrap();
    git_ok(&repo, &["init", "-q", "-b", "main"]);
    write_local_lock(&repo, "mian");
    git_ok(&repo, &["add", "."]);
    git_ok(
        &repo,
        &["commit", "-q", "-m", "Add the lock file, with a typo"],
    );
    let head = git_ok(&repo, &["rev-parse", "HEAD"]);
    let url = format!("http://{}", s.d.addr);
    let admin_cli = |args: &[&str]| {
        let mut all = vec!["--url", url.as_str(), "--token", OWNER];
        all.extend_from_slice(args);
        let out = cli(&all, &[]);
        assert!(out.status.success(), "{args:?}: {}", stderr(&out));
        stdout(&out)
    };
    let base_str = base.display().to_string();
    let out = admin_cli(&[
        "source", "add", "local", "--org", "acme", "--path", &base_str,
    ]);
    let id = added_source_id(&out);
    let out = admin_cli(&["source", "trigger-local", &id]);
    let delivery = out
        .lines()
        .find_map(|l| l.trim().strip_prefix("Delivery ID:"))
        .expect("a delivery id")
        .trim()
        .to_owned();
    let q = format!(
        "SELECT status || '|' || matched_count FROM event_log WHERE delivery_id = '{delivery}'"
    );
    wait_value(PgCluster::shared(), &s.db, &q, "processed|0");

    // The fix, committed on the same branch: the replay reads the lock file as it is now.
    write_local_lock(&repo, "main");
    git_ok(&repo, &["commit", "-q", "-am", "Fix the branch"]);
    let out = admin_cli(&["event-log", "replay", &delivery]);
    assert!(
        out.contains("replayed: processed, 1 run(s) started"),
        "{out}"
    );
    wait_value(PgCluster::shared(), &s.db, &q, "processed|1");
    let run = one(
        PgCluster::shared(),
        &s.db,
        &format!("SELECT run_id FROM execution_runs WHERE delivery_id = '{delivery}'"),
    );
    assert!(out.contains(&format!("run {run}")), "{out}");
    assert_eq!(
        one(
            PgCluster::shared(),
            &s.db,
            &format!("SELECT sha FROM execution_runs WHERE run_id = '{run}'")
        ),
        head,
        "the run is for the delivery's commit"
    );
    let token = agent_token(&s, json!({}));
    let mut agent = TestAgent::online(s.d.addr, "local-agent", &token);
    let job = agent.dispatch(T).expect("the replayed run's job");
    assert_eq!(job["jobConfig"]["name"], "build");
    agent.run_job(&job, "success");
    wait_value(
        PgCluster::shared(),
        &s.db,
        &format!("SELECT status FROM execution_runs WHERE run_id = '{run}'"),
        "success",
    );
    let _ = std::fs::remove_dir_all(&base);
}
