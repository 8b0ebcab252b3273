//! Durability and credentials under hostile conditions, against a real daemon, PostgreSQL and the
//! fake GitHub: no installation token is ever stored in the job queue; each job's token is minted
//! when it is sent, for its one repository with contents:read (read only for a fork's pull
//! request); a job whose token cannot be minted goes back to the queue with the reason; a
//! delivery whose claim expired is processed again exactly once without a second run, a live
//! claim is left alone, and after 3 attempts the delivery fails with the reason; runs are unique
//! per (delivery, workflow) also on a database that already held duplicates; an oversize GitHub
//! delivery is refused with 413 (relayed: `rejected_misconfigured`) and nothing is recorded.

use crate::support;

use std::time::{Duration, Instant};

use serde_json::{json, Value};
use support::{
    agent::{agent_token, one, wait_value, Setup, TestAgent, OWNER},
    daemon::*,
    fake_github::{rsa_key_pair, FakeGitHub},
    pg::PgCluster,
    platform::PlatformDouble,
    webhook::*,
};

const T: Duration = Duration::from_secs(10);
const SECRET: &str = "hostile durability secret";
const SHA: &str = "3333333333333333333333333333333333333333";
const PR_SHA: &str = "4444444444444444444444444444444444444444";

fn lock() -> Vec<u8> {
    let job = support::lock::static_job;
    support::lock::ci_lock_file(json!([
            {"name": "ci", "contentHash": "ci-hash",
             "triggers": [{"_type": "push", "branches": [{"type": "glob", "pattern": "main"}], "paths": []},
                          {"_type": "pr", "events": ["opened"], "targetBranches": [{"type": "glob", "pattern": "main"}],
                           "sourceBranches": [], "paths": []}],
             "jobs": [job("build", json!([])), job("deploy", json!(["build"]))]},
    ]))
}

struct World {
    s: Setup,
    gh: FakeGitHub,
    env: Vec<(String, String)>,
}

fn world(extra: &[(&str, &str)]) -> World {
    let (key_pem, public_der) = rsa_key_pair();
    let gh = FakeGitHub::start(8181, "Hostile App", "hostile-app", public_der);
    gh.put_file("acme/app", SHA, ".kici/kici.lock.json", &lock());
    gh.put_file("acme/app", PR_SHA, ".kici/kici.lock.json", &lock());
    let pg = PgCluster::shared();
    let db = pg.create_database();
    let (mut env, logs) = support::agent::agent_env(&db, "hostile");
    env.push(("KICI_GITHUB_API_URL".into(), gh.url.clone()));
    env.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    let d = Daemon::start(&env);
    d.wait_ready_status(200, T);
    github_source(&d, OWNER, "hostile", "8181", &key_pem, SECRET);
    World {
        s: Setup { d, db, logs },
        gh,
        env,
    }
}

impl World {
    /// Starts the daemon again after `self.s.d.terminate()`.
    fn start_again(&mut self) {
        self.s.d = Daemon::start(&self.env);
        self.s.d.wait_ready_status(200, T);
    }

    fn deliver(&self, event: &str, delivery: &str, body: &[u8]) -> HttpResponse {
        let sig = format!("sha256={}", sign(SECRET, body));
        post(
            &self.s.d,
            "/webhook/acme/github",
            &[
                ("X-GitHub-Event", event),
                ("X-GitHub-Delivery", delivery),
                ("X-GitHub-Hook-Installation-Target-ID", "8181"),
                ("X-Hub-Signature-256", &sig),
                ("Content-Type", "application/json"),
            ],
            body,
        )
    }

    fn push(&self, delivery: &str) -> HttpResponse {
        let body = json!({
            "ref": "refs/heads/main", "before": "0000000000000000000000000000000000000000", "after": SHA,
            "repository": {"full_name": "acme/app", "name": "app", "owner": {"login": "acme"}, "default_branch": "main",
                           "clone_url": "https://github.example/acme/app.git"},
            "installation": {"id": 42}, "sender": {"login": "dev", "id": 9},
            "head_commit": {"id": SHA, "message": "change"},
        });
        self.deliver("push", delivery, body.to_string().as_bytes())
    }

    fn q(&self, sql: &str) -> String {
        one(PgCluster::shared(), &self.s.db, sql)
    }

    fn wait(&self, sql: &str, want: &str) {
        wait_value(PgCluster::shared(), &self.s.db, sql, want);
    }

    fn wait_processed(&self, delivery: &str) {
        self.wait(
            &format!("SELECT status FROM event_log WHERE delivery_id = '{delivery}'"),
            "processed",
        );
    }
}

fn contents_read_for_app() -> Value {
    json!({"repositories": ["app"], "permissions": {"contents": "read"}})
}

#[test]
fn tokens_are_minted_when_a_job_is_sent_for_its_one_repository_and_never_stored() {
    let w = world(&[]);
    assert_eq!(w.push("gh-cred").status, 202);
    w.wait_processed("gh-cred");
    // The pipeline read the lock file with a token for this repository's contents only.
    let grants = w.gh.grants_except_checks();
    assert_eq!(grants.len(), 1, "{grants:?}");
    assert_eq!(grants[0].request, contents_read_for_app());
    assert_eq!(grants[0].installation, "42");

    let stored = w.q("SELECT string_agg(dispatch::text, E'\\n') FROM dispatch_queue");
    assert_eq!(
        stored.lines().count(),
        2,
        "build and deploy are queued: {stored}"
    );
    for g in &grants {
        assert!(
            !stored.contains(&g.token),
            "a token is stored in the queue: {stored}"
        );
    }
    assert!(!stored.contains("ghs_"), "{stored}");
    assert!(
        !stored.contains("\"token\"") && !stored.contains("sourceAuth"),
        "{stored}"
    );
    let reference: Value = serde_json::from_str(
        &w.q("SELECT dispatch->'credentials' FROM dispatch_queue WHERE job_name = 'build'"),
    )
    .unwrap();
    assert_eq!(
        reference,
        json!({"provider": "github", "routingKey": "github:8181", "appId": "8181", "installationId": 42,
               "repository": "acme/app", "permissions": {"contents": "read"}, "forkPullRequest": false})
    );

    let token = agent_token(&w.s, json!({}));
    let mut agent = TestAgent::online(w.s.d.addr, "cred-agent", &token);
    let job = agent.dispatch(T).expect("build is dispatched");
    assert!(
        job.get("credentials").is_none(),
        "the reference is not sent: {job}"
    );
    let sent = job["token"].as_str().expect("a token in job.dispatch");
    assert_eq!(
        job["sourceAuth"],
        json!({"kind": "basic", "user": "x-access-token", "secret": sent})
    );
    let grant = w.gh.grant_of(sent).expect("a token the fake issued");
    assert_eq!(grant.request, contents_read_for_app());
    assert_eq!(grant.installation, "42");
    // Valid for an hour, so the pipeline's token (same scope) was reused rather than minting again.
    assert_eq!(w.gh.grants_except_checks().len(), 1);
    agent.run_job(&job, "success");
    let deploy = agent.dispatch(T).expect("deploy follows build");
    assert_eq!(deploy["jobConfig"]["name"], "deploy");
    assert!(w.gh.grant_of(deploy["token"].as_str().unwrap()).is_some());
}

#[test]
fn a_fork_pull_request_job_gets_a_read_only_token() {
    let w = world(&[]);
    let body = json!({
        "action": "opened", "number": 7,
        "pull_request": {"number": 7,
            "head": {"ref": "patch-1", "sha": PR_SHA, "repo": {"full_name": "mallory/app"}},
            "base": {"ref": "main", "sha": SHA, "repo": {"full_name": "acme/app"}}},
        "repository": {"full_name": "acme/app", "name": "app", "owner": {"login": "acme"}, "default_branch": "main"},
        "installation": {"id": 42}, "sender": {"login": "mallory", "id": 66},
    });
    assert_eq!(
        w.deliver("pull_request", "gh-fork", body.to_string().as_bytes())
            .status,
        202
    );
    w.wait_processed("gh-fork");
    assert_eq!(
        w.q("SELECT dispatch->'credentials'->>'forkPullRequest' FROM dispatch_queue WHERE job_name = 'build'"),
        "true"
    );
    let token = agent_token(&w.s, json!({}));
    let mut agent = TestAgent::online(w.s.d.addr, "fork-agent", &token);
    let job = agent.dispatch(T).expect("the fork's build is dispatched");
    assert_eq!(job["jobConfig"]["event"]["isForkPR"], true);
    let grant =
        w.gh.grant_of(job["token"].as_str().unwrap())
            .expect("issued by the fake");
    assert_eq!(grant.request["repositories"], json!(["app"]));
    let permissions = grant.request["permissions"]
        .as_object()
        .expect("permissions asked for");
    assert!(!permissions.is_empty());
    assert!(
        permissions.values().all(|level| level == "read"),
        "a fork's job token must be read-only: {permissions:?}"
    );
}

#[test]
fn a_job_whose_token_cannot_be_minted_is_requeued_with_the_reason() {
    let w = world(&[]);
    // Tokens that live 10 minutes are never handed out from the cache (15 minutes are required),
    // so the job's dispatch must mint its own.
    w.gh.set_token_lifetime(600);
    assert_eq!(w.push("gh-refused").status, 202);
    w.wait_processed("gh-refused");
    assert_eq!(w.gh.grants_except_checks().len(), 1);
    w.gh.refuse_tokens(true);
    let token = agent_token(&w.s, json!({}));
    let mut agent = TestAgent::online(w.s.d.addr, "refused-agent", &token);
    let build = "SELECT status || '|' || dispatch_attempts || '|' || coalesce(last_error, '') FROM dispatch_queue WHERE job_name = 'build'";
    let deadline = Instant::now() + T;
    let row = loop {
        let row = w.q(build);
        if row.starts_with("pending|1|") {
            break row;
        }
        assert!(Instant::now() < deadline, "never requeued: {row}");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(row.contains("could not get a token for acme/app"), "{row}");
    assert!(
        row.contains("422") && row.contains("not accessible"),
        "GitHub's answer is named: {row}"
    );
    assert!(agent.dispatch(Duration::from_millis(300)).is_none());

    // Not retried at once (each retry would fail the same way), but after a backoff.
    std::thread::sleep(Duration::from_secs(2));
    assert!(w.q(build).starts_with("pending|1|"), "{}", w.q(build));
    // GitHub answers again: the job is offered again without any new event, with a fresh token.
    w.gh.refuse_tokens(false);
    let job = agent
        .dispatch(Duration::from_secs(20))
        .expect("dispatched once tokens can be minted");
    let sent = job["token"].as_str().unwrap();
    assert_ne!(
        sent,
        w.gh.grants_except_checks()[0].token,
        "the pipeline's short-lived token is not reused"
    );
    assert_eq!(
        w.gh.grant_of(sent).unwrap().request,
        contents_read_for_app()
    );
}

#[test]
fn an_expired_claim_is_processed_again_once_a_live_one_is_left_and_a_spent_one_fails() {
    let mut w = world(&[]);
    for d in ["gh-crashed", "gh-live", "gh-spent"] {
        assert_eq!(w.push(d).status, 202);
        w.wait_processed(d);
    }
    let runs = "SELECT count(*) FROM execution_runs WHERE delivery_id = 'gh-crashed'";
    let jobs = "SELECT count(*) FROM dispatch_queue q JOIN execution_runs r USING (run_id) WHERE r.delivery_id = 'gh-crashed'";
    assert_eq!((w.q(runs).as_str(), w.q(jobs).as_str()), ("1", "2"));
    w.s.d.terminate();
    // A worker claimed gh-crashed 10 minutes ago and died after creating its run; gh-live arrived
    // two hours ago (a backlog) but was claimed a minute ago; gh-spent used its three attempts.
    w.q(
        "UPDATE event_log SET status = 'processing', claimed_at = now() - interval '10 minutes',
                received_at = now() - interval '10 minutes' WHERE delivery_id = 'gh-crashed'",
    );
    w.q(
        "UPDATE event_log SET status = 'processing', claimed_at = now() - interval '1 minute',
                received_at = now() - interval '2 hours' WHERE delivery_id = 'gh-live'",
    );
    w.q("UPDATE event_log SET status = 'processing', claimed_at = now() - interval '10 minutes',
                received_at = now() - interval '40 minutes', processing_attempts = 3 WHERE delivery_id = 'gh-spent'");
    w.start_again();
    w.wait_processed("gh-crashed");
    w.wait(
        "SELECT status FROM event_log WHERE delivery_id = 'gh-spent'",
        "failed",
    );
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(
        w.q("SELECT status || '|' || processing_attempts FROM event_log WHERE delivery_id = 'gh-crashed'"),
        "processed|2",
        "processed again exactly once"
    );
    assert_eq!(
        w.q(runs),
        "1",
        "no second run for the same delivery and workflow"
    );
    assert_eq!(
        w.q(jobs),
        "2",
        "the existing run's jobs are not queued again"
    );
    assert_eq!(
        w.q("SELECT status || '|' || processing_attempts FROM event_log WHERE delivery_id = 'gh-live'"),
        "processing|1",
        "a claim a minute old holds, however old the delivery"
    );
    let why = w.q("SELECT error_message FROM event_log WHERE delivery_id = 'gh-spent'");
    assert!(
        why.starts_with("processing did not finish after 3 attempts"),
        "{why}"
    );
    assert!(w.s.d.stderr().contains("already exists; not queued again"));
}

#[test]
fn runs_are_unique_per_delivery_and_workflow_also_after_old_duplicates() {
    let mut w = world(&[]);
    w.s.d.terminate();
    // The database as an older version left it: no 0004, and two runs for one delivery.
    w.q(
        "DROP INDEX execution_runs_one_per_delivery; DROP INDEX event_log_unfinished;
         ALTER TABLE execution_runs DROP COLUMN duplicate_of;
         ALTER TABLE event_log DROP COLUMN claimed_at, DROP COLUMN processing_attempts;
         ALTER TABLE dispatch_queue DROP COLUMN retry_after;
         DELETE FROM schema_migrations WHERE name = '0004_delivery_leases'",
    );
    w.q(
        "INSERT INTO execution_runs (run_id, workflow_name, delivery_id, started_at) VALUES
           ('00000000-0000-4000-8000-000000000001', 'ci', 'gh-twice', now() - interval '2 minutes'),
           ('00000000-0000-4000-8000-000000000002', 'ci', 'gh-twice', now() - interval '1 minute'),
           ('00000000-0000-4000-8000-000000000003', 'docs', 'gh-twice', now())",
    );
    w.start_again();
    assert_eq!(
        w.q("SELECT string_agg(right(run_id::text, 1) || '>' || coalesce(right(duplicate_of::text, 1), '-'), ',' ORDER BY run_id)
               FROM execution_runs WHERE delivery_id = 'gh-twice'"),
        "1>-,2>1,3>-",
        "the later duplicate is marked, the first and the other workflow are not"
    );
    let mut client = postgres::Client::connect(&w.s.db, postgres::NoTls).unwrap();
    let refused = client
        .simple_query(
            "INSERT INTO execution_runs (run_id, workflow_name, delivery_id) VALUES (gen_random_uuid(), 'ci', 'gh-twice')",
        )
        .expect_err("a second run of ci for gh-twice is refused by the database");
    assert_eq!(
        refused.as_db_error().and_then(|e| e.constraint()),
        Some("execution_runs_one_per_delivery"),
        "{refused}"
    );
}

#[test]
fn an_oversize_github_delivery_gets_413_and_nothing_is_recorded() {
    let w = world(&[("KICI_EVENT_LOG_MAX_PAYLOAD_BYTES", "4096")]);
    let padding = "x".repeat(5000);
    let body = json!({
        "ref": "refs/heads/main", "before": "0000000000000000000000000000000000000000", "after": SHA,
        "repository": {"full_name": "acme/app"}, "installation": {"id": 42}, "padding": padding,
    })
    .to_string();
    let r = w.deliver("push", "gh-huge", body.as_bytes());
    assert_eq!(r.status, 413, "{}", String::from_utf8_lossy(&r.body));
    let reason = r.json()["reason"].as_str().unwrap_or_default().to_owned();
    assert!(
        reason.contains("KICI_EVENT_LOG_MAX_PAYLOAD_BYTES (4096 bytes)")
            && reason.contains(&format!("{} bytes", body.len())),
        "{reason}"
    );
    assert_eq!(
        w.q("SELECT (SELECT count(*) FROM event_log) || '|' || (SELECT count(*) FROM dedup_cache)"),
        "0|0",
        "nothing recorded, so GitHub's redelivery is not a duplicate"
    );
    // Under the limit it is accepted as before.
    assert_eq!(w.push("gh-small").status, 202);
    w.wait_processed("gh-small");
}

#[test]
fn an_oversize_relayed_github_delivery_is_rejected_and_nothing_is_recorded() {
    let (key_pem, public_der) = rsa_key_pair();
    let gh = FakeGitHub::start(8282, "Relay App", "relay-app", public_der);
    let platform = PlatformDouble::start(None);
    let pg = PgCluster::shared();
    let db = pg.create_database();
    let mut env = platform.hybrid_env(&db, OWNER);
    for (k, v) in [
        ("KICI_CLUSTER_INSTANCE_ID", "inst-hostile"),
        ("KICI_EVENT_LOG_MAX_PAYLOAD_BYTES", "4096"),
        ("KICI_GITHUB_API_URL", gh.url.as_str()),
    ] {
        env.push((k.into(), v.into()));
    }
    let d = Daemon::start(&env);
    d.wait_ready_status(200, T);
    github_source(&d, OWNER, "relay", "8282", &key_pem, SECRET);
    platform.wait_for("source.register", T, |f| {
        f["sources"][0]["routingKey"] == "github:8282"
    });
    let body =
        json!({"ref": "refs/heads/main", "after": SHA, "repository": {"full_name": "acme/app"},
                      "installation": {"id": 42}, "padding": "y".repeat(5000)})
        .to_string();
    let start = |id: &str, delivery: &str, body: &[u8]| {
        json!({
            "messageId": id, "routingKey": "github:8282", "deliveryId": delivery, "event": "push",
            "action": null, "signatureHeaderName": "x-hub-signature-256",
            "signatureHeader": format!("sha256={}", sign(SECRET, body)),
            "headers": {"content-type": "application/json", "x-github-event": "push"},
        })
    };
    let m = platform.relay(
        start("m-huge", "d-huge", body.as_bytes()),
        body.as_bytes(),
        1024,
    );
    let ack = platform.wait_for("webhook.ack", T, |a| a["messageId"] == m);
    assert_eq!(ack["result"], "rejected_misconfigured", "{ack}");
    let reason = ack["reason"].as_str().unwrap_or_default();
    assert!(
        reason.contains("KICI_EVENT_LOG_MAX_PAYLOAD_BYTES (4096 bytes)"),
        "{reason}"
    );
    assert_eq!(
        one(
            pg,
            &db,
            "SELECT count(*) FROM event_log WHERE delivery_id = 'd-huge'"
        ),
        "0"
    );
    // A small one on the same link is accepted.
    let small = br#"{"ref":"refs/heads/main","repository":{"full_name":"acme/app"},"after":"abc"}"#;
    let m = platform.relay(start("m-small", "d-small", small), small, 1024);
    let ack = platform.wait_for("webhook.ack", T, |a| a["messageId"] == m);
    assert_eq!(ack["result"], "accepted", "{ack}");
}
