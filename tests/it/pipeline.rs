//! From webhook to jobs against a real daemon, PostgreSQL and the fake GitHub (App token
//! exchange, Contents API, compare): a signed push to a matching branch creates a run with its
//! matrix children and `needs` in the queue and an agent runs it to `success`; a non-matching
//! branch or path creates nothing and the event log says why; a schema-28 lock file records a
//! failed run; a failing upstream skips its downstream; a local repository source reads the lock
//! file from the working tree.

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
const SECRET: &str = "pipeline webhook secret";
const SHA: &str = "1111111111111111111111111111111111111111";

fn lock(schema: u64, deploy_needs: Value) -> Vec<u8> {
    let job = |name: &str, extra: Value| {
        let mut j = support::lock::static_job(name, json!([]));
        for (k, v) in extra.as_object().unwrap() {
            j[k] = v.clone();
        }
        j
    };
    json!({
        "schemaVersion": schema,
        "source": {"file": ".kici/workflows/ci.ts", "export": "#default"},
        "contentHash": "lock-hash",
        "workflows": [
            {"name": "ci", "contentHash": "ci-hash", "source": {"file": ".kici/workflows/ci.ts", "export": "#default"},
             "triggers": [{"_type": "push", "branches": [{"type": "glob", "pattern": "main"}], "paths": []}],
             "jobs": [
                job("build", json!({"matrix": {"_type": "static", "values": {"node": ["20", "22"]}}})),
                job("lint", json!({})),
                job("deploy", json!({"needs": deploy_needs})),
             ]},
            {"name": "docs", "contentHash": "docs-hash",
             "triggers": [{"_type": "push", "branches": [{"type": "glob", "pattern": "**"}], "paths": ["docs/**"]}],
             "jobs": [job("publish", json!({}))]},
        ],
    })
    .to_string()
    .into_bytes()
}

struct World {
    s: Setup,
    gh: FakeGitHub,
}

fn world() -> World {
    let (key_pem, public_der) = rsa_key_pair();
    let gh = FakeGitHub::start(7777, "Pipeline App", "pipeline-app", public_der);
    let pg = PgCluster::shared();
    let s = support::agent::setup(pg, &[("KICI_GITHUB_API_URL", &gh.url)]);
    github_source(&s.d, OWNER, "pipeline", "7777", &key_pem, SECRET);
    World { s, gh }
}

fn push(w: &World, delivery: &str, branch: &str, before: &str) -> HttpResponse {
    let body = github_push_body("acme/app", branch, before, SHA);
    post_github_push(&w.s.d, SECRET, "7777", delivery, &body, &[]).0
}

fn delivery_row(pg: &PgCluster, db: &str, delivery: &str) -> (String, String, Value) {
    let deadline = Instant::now() + T;
    loop {
        let row = one(pg, db, &format!(
            "SELECT status || '|' || matched_count || '|' || coalesce(decisions::text, 'null') FROM event_log WHERE delivery_id = '{delivery}'"));
        let parts: Vec<&str> = row.splitn(3, '|').collect();
        if parts.len() == 3 && parts[0] != "received" && parts[0] != "processing" {
            return (
                parts[0].to_owned(),
                parts[1].to_owned(),
                serde_json::from_str(parts[2]).unwrap_or(Value::Null),
            );
        }
        assert!(
            Instant::now() < deadline,
            "delivery {delivery} never processed: {row:?}"
        );
        std::thread::sleep(Duration::from_millis(30));
    }
}

#[test]
fn a_matching_push_becomes_a_run_that_an_agent_completes() {
    let w = world();
    let pg = PgCluster::shared();
    w.gh.put_file(
        "acme/app",
        SHA,
        ".kici/kici.lock.json",
        &lock(29, json!(["lint"])),
    );
    w.gh.set_compare(
        "acme/app",
        "0000000000000000000000000000000000000001",
        SHA,
        &["src/main.rs"],
    );
    let sent = Instant::now();
    assert_eq!(
        push(
            &w,
            "gh-1",
            "main",
            "0000000000000000000000000000000000000001"
        )
        .status,
        202
    );
    let (status, matched, decisions) = delivery_row(pg, &w.s.db, "gh-1");
    println!("webhook to processed run: {:?}", sent.elapsed());
    assert_eq!((status.as_str(), matched.as_str()), ("processed", "1"));
    let docs = decisions
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["workflowName"] == "docs")
        .unwrap();
    assert_eq!(
        docs["matched"], false,
        "docs/** does not match src/main.rs: {docs}"
    );
    let run = one(
        pg,
        &w.s.db,
        "SELECT run_id FROM execution_runs WHERE delivery_id = 'gh-1'",
    );
    let queued = one(pg, &w.s.db, &format!("SELECT string_agg(job_name || '=' || status, ',' ORDER BY job_name) FROM dispatch_queue WHERE run_id = '{run}'"));
    assert_eq!(
        queued,
        "build (20)=pending,build (22)=pending,deploy=waiting,lint=pending"
    );
    // The runs CLI sees it (when the runs command exists) — the admin API answers from the rows.
    let token = agent_token(&w.s, json!({}));
    let mut agent = TestAgent::online(w.s.d.addr, "pipeline-agent", &token);
    let mut order = Vec::new();
    while order.len() < 4 {
        let job = agent
            .dispatch(T)
            .unwrap_or_else(|| panic!("only {order:?} dispatched"));
        assert_eq!(job["repoUrl"], "https://github.example/acme/app.git");
        assert_eq!(
            (job["sha"].as_str(), job["ref"].as_str()),
            (Some(SHA), Some("main"))
        );
        assert!(job["token"].as_str().unwrap().starts_with("ghs_"));
        assert_eq!(
            job["sourceAuth"]["secret"], job["token"],
            "token and sourceAuth.secret must be identical"
        );
        assert_eq!(job["jobConfig"]["workflowName"], "ci");
        assert_eq!(job["jobConfig"]["contentHash"], "ci-hash");
        order.push(job["jobConfig"]["name"].as_str().unwrap().to_owned());
        agent.run_job(&job, "success");
    }
    assert_eq!(
        order.last().map(String::as_str),
        Some("deploy"),
        "deploy waits for lint: {order:?}"
    );
    wait_value(
        pg,
        &w.s.db,
        &format!("SELECT status FROM execution_runs WHERE run_id = '{run}'"),
        "success",
    );
    let matrix = one(pg, &w.s.db, &format!("SELECT matrix_values::text FROM execution_jobs WHERE run_id = '{run}' AND job_name = 'build (22)'"));
    assert_eq!(matrix, r#"{"node": "22"}"#);
}

#[test]
fn no_match_corrupt_lock_and_a_failing_upstream() {
    let w = world();
    let pg = PgCluster::shared();
    w.gh.put_file(
        "acme/app",
        SHA,
        ".kici/kici.lock.json",
        &lock(29, json!(["lint"])),
    );
    // A branch no trigger accepts: no run, and the event log says why.
    assert_eq!(
        push(
            &w,
            "gh-feature",
            "feature/x",
            "0000000000000000000000000000000000000000"
        )
        .status,
        202
    );
    let (status, matched, decisions) = delivery_row(pg, &w.s.db, "gh-feature");
    assert_eq!((status.as_str(), matched.as_str()), ("processed", "0"));
    let ci = decisions
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["workflowName"] == "ci")
        .unwrap();
    assert_eq!(ci["matched"], false);
    assert!(
        ci.to_string().contains("feature/x"),
        "the trace names the branch: {ci}"
    );
    assert_eq!(
        one(
            pg,
            &w.s.db,
            "SELECT count(*) FROM execution_runs WHERE delivery_id = 'gh-feature'"
        ),
        "0"
    );

    // Schema 28: a failed run telling the user to recompile.
    let sha28 = "2222222222222222222222222222222222222222";
    w.gh.put_file(
        "acme/app",
        sha28,
        ".kici/kici.lock.json",
        &lock(28, json!(["lint"])),
    );
    let body = json!({"ref": "refs/heads/main", "before": "0000000000000000000000000000000000000000", "after": sha28,
                      "repository": {"full_name": "acme/app"}, "installation": {"id": 42}}).to_string();
    let sig = format!("sha256={}", sign(SECRET, body.as_bytes()));
    let r = post(
        &w.s.d,
        "/webhook/acme/github",
        &[
            ("X-GitHub-Event", "push"),
            ("X-GitHub-Delivery", "gh-28"),
            ("X-GitHub-Hook-Installation-Target-ID", "7777"),
            ("X-Hub-Signature-256", &sig),
        ],
        body.as_bytes(),
    );
    assert_eq!(r.status, 202);
    let (status, _, _) = delivery_row(pg, &w.s.db, "gh-28");
    assert_eq!(status, "lockfile_corrupt");
    let reason = one(
        pg,
        &w.s.db,
        "SELECT status || ': ' || failure_reason FROM execution_runs WHERE delivery_id = 'gh-28'",
    );
    assert!(reason.starts_with("failed: "), "{reason}");
    assert!(reason.contains("kici compile"), "{reason}");

    // lint fails: deploy (needs lint) is skipped and the run fails.
    assert_eq!(
        push(
            &w,
            "gh-2",
            "main",
            "0000000000000000000000000000000000000000"
        )
        .status,
        202
    );
    delivery_row(pg, &w.s.db, "gh-2");
    let run = one(
        pg,
        &w.s.db,
        "SELECT run_id FROM execution_runs WHERE delivery_id = 'gh-2'",
    );
    let token = agent_token(&w.s, json!({}));
    let mut agent = TestAgent::online(w.s.d.addr, "failing-agent", &token);
    for _ in 0..3 {
        let job = agent
            .dispatch(T)
            .expect("build (20), build (22) and lint are dispatched");
        let outcome = if job["jobConfig"]["name"] == "lint" {
            "failed"
        } else {
            "success"
        };
        agent.run_job(&job, outcome);
    }
    wait_value(
        pg,
        &w.s.db,
        &format!("SELECT status FROM execution_runs WHERE run_id = '{run}'"),
        "failed",
    );
    assert_eq!(
        one(
            pg,
            &w.s.db,
            &format!(
                "SELECT status FROM execution_jobs WHERE run_id = '{run}' AND job_name = 'deploy'"
            )
        ),
        "skipped"
    );
    assert!(
        agent.dispatch(Duration::from_millis(500)).is_none(),
        "deploy is never dispatched"
    );
    assert!(w.gh.tokens_issued() >= 1);
}

#[test]
fn a_local_repository_source_reads_the_working_tree() {
    let pg = PgCluster::shared();
    let s = support::agent::setup(pg, &[]);
    let base = std::env::temp_dir().join(format!("kici-local-{}", std::process::id()));
    let repo = base.join("acme/tool/.kici");
    std::fs::create_dir_all(&repo).unwrap();
    std::fs::write(repo.join("kici.lock.json"), lock(29, json!(["lint"]))).unwrap();
    let r = admin(
        &s.d,
        OWNER,
        "POST",
        "/generic-sources",
        json!({
            "orgId": "acme", "name": "tools", "verificationMethod": "none", "providerType": "local",
            "gitConfig": {"localPath": base.display().to_string()},
        }),
    );
    assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
    let body =
        json!({"ref": "refs/heads/main", "after": SHA, "repository": {"full_name": "acme/tool"}})
            .to_string();
    let r = post(
        &s.d,
        "/webhook/acme/generic/tools",
        &[
            ("X-Event-Type", "push"),
            ("X-Request-ID", "local-1"),
            ("Content-Type", "application/json"),
        ],
        body.as_bytes(),
    );
    assert_eq!(r.status, 202, "{}", String::from_utf8_lossy(&r.body));
    let deadline = Instant::now() + T;
    let run = loop {
        let run = one(
            pg,
            &s.db,
            "SELECT run_id FROM execution_runs WHERE workflow_name = 'ci'",
        );
        if !run.is_empty() {
            break run;
        }
        assert!(Instant::now() < deadline, "no run from the local source");
        std::thread::sleep(Duration::from_millis(30));
    };
    let token = agent_token(&s, json!({}));
    let mut agent = TestAgent::online(s.d.addr, "local-agent", &token);
    let job = agent.dispatch(T).unwrap();
    assert_eq!(
        job["repoUrl"],
        format!("file://{}", base.join("acme/tool").display())
    );
    assert!(
        job.get("token").is_none(),
        "no token for a local repository"
    );
    assert_eq!(job["runId"].as_str(), Some(run.as_str()));
    let _ = std::fs::remove_dir_all(&base);
}
