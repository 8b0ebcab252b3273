//! The event log as operators read it (docs/operations.md, "Event log"), against a real daemon,
//! PostgreSQL and the fake GitHub: a push that matches nothing is explained per workflow in words
//! by `kici-admin event-log show`; the list filters by source, status and time and pages with a
//! cursor; signature headers and secrets never appear; scoped tokens see only their key.

use crate::support;

use std::time::{Duration, Instant};

use serde_json::{json, Value};
use support::{
    agent::{one, Setup, OWNER},
    daemon::*,
    fake_github::{rsa_key_pair, FakeGitHub},
    pg::PgCluster,
    webhook::*,
};

const T: Duration = Duration::from_secs(10);
const SECRET: &str = "event log webhook secret";
const SHA: &str = "2222222222222222222222222222222222222222";
const BEFORE: &str = "0000000000000000000000000000000000000002";

fn lock() -> Vec<u8> {
    let job = json!({"_type": "static", "name": "build", "runsOn": [{"kind": "exact", "value": "linux"}],
                     "needs": [], "steps": [{"name": "step-1", "hasOutputs": false}]});
    let glob = |p: &str| json!({"type": "glob", "pattern": p});
    json!({
        "schemaVersion": 29,
        "source": {"file": ".kici/workflows/ci.ts", "export": "#default"},
        "contentHash": "lock-hash",
        "workflows": [
            {"name": "deploy", "contentHash": "d", "triggers": [
                {"_type": "push", "branches": [glob("main"), glob("release/*")], "paths": []}],
             "jobs": [job.clone()]},
            {"name": "build", "contentHash": "b", "triggers": [
                {"_type": "push", "branches": [glob("**")], "paths": ["src/**"]}],
             "jobs": [job]},
        ],
    })
    .to_string()
    .into_bytes()
}

struct World {
    s: Setup,
    _gh: FakeGitHub,
}

fn world() -> World {
    let (key_pem, public_der) = rsa_key_pair();
    let gh = FakeGitHub::start(7171, "Event Log App", "event-log-app", public_der);
    gh.put_file("acme/app", SHA, ".kici/kici.lock.json", &lock());
    gh.set_compare(
        "acme/app",
        BEFORE,
        SHA,
        &["README.md", "docs/guide.md", "Cargo.toml"],
    );
    let s = support::agent::setup(PgCluster::shared(), &[("KICI_GITHUB_API_URL", &gh.url)]);
    github_source(&s.d, OWNER, "events", "7171", &key_pem, SECRET);
    World { s, _gh: gh }
}

/// A signed push of `sha` to `branch`; returns the signature header sent.
fn push(w: &World, delivery: &str, branch: &str, sha: &str) -> String {
    let body = github_push_body("acme/app", branch, BEFORE, sha);
    let (r, sig) = post_github_push(
        &w.s.d,
        SECRET,
        "7171",
        delivery,
        &body,
        &[("Authorization", "Bearer not-for-the-log")],
    );
    assert_eq!(r.status, 202, "{}", String::from_utf8_lossy(&r.body));
    sig
}

fn processed(w: &World, delivery: &str) {
    let pg = PgCluster::shared();
    let deadline = Instant::now() + T;
    let sql = format!("SELECT status FROM event_log WHERE delivery_id = '{delivery}'");
    while matches!(
        one(pg, &w.s.db, &sql).as_str(),
        "" | "received" | "processing"
    ) {
        assert!(Instant::now() < deadline, "{delivery} never processed");
        std::thread::sleep(Duration::from_millis(30));
    }
}

fn admin_cli(w: &World, token: &str, args: &[&str]) -> std::process::Output {
    let url = format!("http://{}", w.s.d.addr);
    let mut all = vec!["--url", &url, "--token", token];
    all.extend_from_slice(args);
    cli(&all, &[])
}

#[test]
fn a_push_that_matches_nothing_says_why_per_workflow_and_keeps_no_secret() {
    let w = world();
    let sig = push(&w, "el-nomatch", "feature/x", SHA);
    processed(&w, "el-nomatch");
    let out = admin_cli(&w, OWNER, &["event-log", "show", "el-nomatch"]);
    let text = stdout(&out);
    assert!(out.status.success(), "{text}{}", stderr(&out));
    for wanted in [
        "Delivery el-nomatch",
        "Status:     processed",
        "Outcome:    no run started: no workflow matched",
        "x-github-event: push",
        "x-github-delivery: el-nomatch",
        "workflow deploy: push to `feature/x` does not match branches `main`, `release/*`",
        "workflow build: paths: none of the 3 changed files matches `src/**`",
    ] {
        assert!(text.contains(wanted), "wanted {wanted:?} in:\n{text}");
    }
    let json_out = admin_cli(&w, OWNER, &["event-log", "show", "el-nomatch", "--json"]);
    let answer: Value = serde_json::from_slice(&json_out.stdout).expect("JSON");
    assert_eq!(answer["workflows"].as_array().map(Vec::len), Some(2));
    assert_eq!(answer["workflows"][0]["matched"], false);
    assert!(answer["delivery"]["processedAt"].is_string(), "{answer}");
    assert!(answer["delivery"]["sizeBytes"].as_i64() > Some(100));
    let headers = answer["delivery"]["headers"].as_object().expect("headers");
    assert!(headers.contains_key("x-github-hook-installation-target-id"));
    for both in [
        text.as_str(),
        &answer.to_string(),
        &one(
            PgCluster::shared(),
            &w.s.db,
            "SELECT headers::text FROM event_log WHERE delivery_id = 'el-nomatch'",
        ),
    ] {
        let lower = both.to_ascii_lowercase();
        for secret in [
            "x-hub-signature",
            "authorization",
            "not-for-the-log",
            &sig[7..],
            SECRET,
        ] {
            assert!(
                !lower.contains(&secret.to_ascii_lowercase()),
                "{secret} leaked:\n{both}"
            );
        }
    }
    let missing = admin_cli(&w, OWNER, &["event-log", "show", "no-such-delivery"]);
    assert_eq!(missing.status.code(), Some(1));
    assert!(
        stderr(&missing).contains("see kici-admin event-log list"),
        "{}",
        stderr(&missing)
    );
}

#[test]
fn the_list_filters_and_pages() {
    let w = world();
    push(&w, "el-a", "feature/a", SHA);
    push(&w, "el-b", "feature/b", SHA);
    // No lock file at this commit.
    push(
        &w,
        "el-c",
        "main",
        "3333333333333333333333333333333333333333",
    );
    for d in ["el-a", "el-b", "el-c"] {
        processed(&w, d);
    }
    let ids = |args: &[&str]| -> Vec<String> {
        let mut all = vec!["event-log", "list", "--json"];
        all.extend_from_slice(args);
        let out = admin_cli(&w, OWNER, &all);
        assert!(out.status.success(), "{}", stderr(&out));
        let v: Value = serde_json::from_slice(&out.stdout).unwrap();
        v["events"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["deliveryId"].as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(ids(&[]), ["el-c", "el-b", "el-a"]);
    assert_eq!(ids(&["--status", "lockfile_missing"]), ["el-c"]);
    let out = admin_cli(&w, OWNER, &["event-log", "show", "el-c"]);
    assert!(
        stdout(&out).contains(
            "Outcome:    lock file missing: no .kici/kici.lock.json in acme/app at \
                               3333333333333333333333333333333333333333; add .kici/kici.lock.json"
        ),
        "{}",
        stdout(&out)
    );
    assert_eq!(
        ids(&["--status", "processed", "--source", "github:7171"]),
        ["el-b", "el-a"]
    );
    assert!(ids(&["--source", "generic"]).is_empty());
    assert_eq!(ids(&["--source", "github", "--since", "1h"]).len(), 3);
    assert!(ids(&["--since", "2099-01-01T00:00:00Z"]).is_empty());
    // Pages: a full page ends with a cursor; the next page starts after it.
    let out = admin_cli(&w, OWNER, &["event-log", "list", "--limit", "2", "--json"]);
    let page: Value = serde_json::from_slice(&out.stdout).unwrap();
    let cursor = page["cursor"]
        .as_str()
        .expect("a cursor after a full page")
        .to_owned();
    assert_eq!(ids(&["--limit", "2", "--after", &cursor]), ["el-a"]);
    // The table lines up, and a full page says how to go on.
    let out = admin_cli(&w, OWNER, &["event-log", "list", "--limit", "2"]);
    let text = stdout(&out);
    let lines: Vec<&str> = text.lines().collect();
    assert!(lines[0].starts_with("RECEIVED"), "{text}");
    let col = lines[0].find("STATUS").unwrap();
    assert!(lines[1][col..].starts_with("lockfile_missing"), "{text}");
    assert!(lines[2][col..].starts_with("processed"), "{text}");
    assert!(text.contains(&format!("--after {cursor}")), "{text}");
    // A bad filter is refused, naming it.
    let bad = admin_cli(&w, OWNER, &["event-log", "list", "--since", "1y"]);
    assert_eq!(bad.status.code(), Some(1));
    assert!(stderr(&bad).contains("since"), "{}", stderr(&bad));
    // Scopes: an auditor reads; a token of another routing key sees nothing.
    let token = |body: Value| {
        let r = admin(&w.s.d, OWNER, "POST", "/tokens", body);
        assert_eq!(r.status, 201);
        r.json()["token"].as_str().unwrap().to_owned()
    };
    let auditor = token(json!({"label": "aud", "role": "auditor"}));
    let other = token(json!({"label": "other", "role": "admin", "routingKey": "github:1"}));
    let r = admin(&w.s.d, &auditor, "GET", "/events", Value::Null);
    assert_eq!(r.json()["events"].as_array().map(Vec::len), Some(3));
    let r = admin(&w.s.d, &other, "GET", "/events", Value::Null);
    assert_eq!(r.json()["events"], json!([]));
    assert_eq!(
        admin(&w.s.d, &other, "GET", "/events/el-a", Value::Null).status,
        404
    );
}
