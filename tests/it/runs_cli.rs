//! `kici-admin runs list|show|cancel` and the admin read routes behind them, against a real
//! daemon and PostgreSQL. Runs, jobs, steps, needs and queue rows are written with SQL, as the
//! pipeline and the agent link would leave them.

use crate::support;

use std::time::Duration;

use serde_json::{json, Value};
use support::{daemon::*, pg::PgCluster, webhook::admin};

const OWNER: &str = "2e2e2e2e2e2e2e2e2e2e2e2e2e2e2e2e2e2e2e2e2e2e2e2e2e2e2e2e2e2e2e2e";
const FAILED_RUN: &str = "0190aaaa-0000-7000-8000-000000000001";
const RUNNING_RUN: &str = "0190aaaa-0000-7000-8000-000000000002";
const BUILD_JOB: &str = "0190bbbb-0000-7000-8000-000000000001";
const TEST_JOB: &str = "0190bbbb-0000-7000-8000-000000000002";
const DEPLOY_JOB: &str = "0190bbbb-0000-7000-8000-000000000003";

struct Setup {
    d: Daemon,
    url: String,
    logs: std::path::PathBuf,
}

fn setup() -> Setup {
    let pg = PgCluster::shared();
    let db = pg.create_database();
    let logs = std::env::temp_dir().join(format!("kici-runs-cli-{}", std::process::id()));
    std::fs::create_dir_all(&logs).unwrap();
    let mut env = base_env(&db);
    env.push(("KICI_BOOTSTRAP_ADMIN_TOKEN".into(), OWNER.into()));
    env.push(("KICI_STORAGE_TYPE".into(), "filesystem".into()));
    env.push(("KICI_STORAGE_FS_PATH".into(), logs.display().to_string()));
    let d = Daemon::start(&env);
    d.wait_ready_status(200, Duration::from_secs(10));
    pg.psql(
        &db,
        &format!(
            "INSERT INTO execution_runs (run_id, workflow_name, status, provider, routing_key,
                 repo_identifier, ref, sha, trigger_event, failure_reason, job_count, started_at,
                 completed_at, duration_ms)
             VALUES ('{FAILED_RUN}', 'ci', 'failed', 'local', 'generic:acme:src1', 'acme/app',
                 'refs/heads/main', '0123456789abcdef0123', 'push', 'job build failed', 3,
                 now() - interval '10 minutes', now() - interval '9 minutes', 61500),
                ('{RUNNING_RUN}', 'nightly', 'running', 'github', 'github:77', 'acme/other',
                 'refs/heads/dev', 'ffff', 'push', NULL, 1, now() - interval '1 minute', NULL, NULL);
             INSERT INTO execution_jobs (job_id, run_id, job_name, status, matrix_values, agent_id,
                 error_message, started_at, completed_at, duration_ms, created_at)
             VALUES ('{BUILD_JOB}', '{FAILED_RUN}', 'build (linux)', 'failed', '{{\"os\":\"linux\"}}',
                 'agent-7', 'step make exited with 2', now(), now(), 1200, now() - interval '3 s'),
                ('{TEST_JOB}', '{FAILED_RUN}', 'test', 'skipped', NULL, NULL, NULL, NULL, NULL,
                 NULL, now() - interval '2 s'),
                ('{DEPLOY_JOB}', '{FAILED_RUN}', 'deploy', 'pending', NULL, NULL, NULL, NULL, NULL,
                 NULL, now() - interval '1 s');
             INSERT INTO execution_steps (job_id, run_id, step_index, step_name, status,
                 duration_ms, exit_code, error_message)
             VALUES ('{BUILD_JOB}', '{FAILED_RUN}', 0, 'checkout', 'success', 300, 0, NULL),
                ('{BUILD_JOB}', '{FAILED_RUN}', 1, 'make', 'failed', 900, 2, 'make: *** Error 2');
             INSERT INTO execution_job_needs (run_id, job_name, upstream_name, run_on)
             VALUES ('{FAILED_RUN}', 'test', 'build (linux)', 'success');
             INSERT INTO dispatch_queue (id, run_id, workflow_name, job_name, dispatch, status,
                 dispatch_attempts, last_error)
             VALUES ('{DEPLOY_JOB}', '{FAILED_RUN}', 'ci', 'deploy', '{{}}', 'pending', 2,
                 'no agent has the labels [gpu]');"
        ),
    );
    Setup {
        url: format!("http://{}", d.addr),
        d,
        logs,
    }
}

impl Setup {
    fn run(&self, token: &str, args: &[&str]) -> std::process::Output {
        let mut all = vec!["--url", &self.url, "--token", token];
        all.extend_from_slice(args);
        cli(&all, &[])
    }

    fn ok(&self, token: &str, args: &[&str]) -> String {
        let out = self.run(token, args);
        assert!(
            out.status.success(),
            "kici-admin {args:?} failed:\n{}{}",
            stdout(&out),
            stderr(&out)
        );
        stdout(&out)
    }

    fn token(&self, role: &str, routing_key: Option<&str>) -> String {
        let r = admin(
            &self.d,
            OWNER,
            "POST",
            "/tokens",
            json!({ "label": role, "role": role, "routingKey": routing_key }),
        );
        assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
        r.json()["token"].as_str().unwrap().to_owned()
    }
}

#[test]
fn runs_list_and_show() {
    let s = setup();

    let out = s.ok(OWNER, &["runs", "list"]);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 3, "{out}");
    assert!(lines[0].starts_with("RUN ID"), "{out}");
    // Newest first.
    assert!(lines[1].starts_with(RUNNING_RUN), "{out}");
    assert!(
        lines[1].contains(" running ") && lines[1].contains(" nightly "),
        "{out}"
    );
    assert!(lines[2].starts_with(FAILED_RUN), "{out}");
    assert!(
        lines[2].contains(" acme/app ") && lines[2].contains(" main "),
        "{out}"
    );
    assert!(
        lines[2].ends_with("1 failed, 1 skipped, 1 pending"),
        "{out}"
    );

    let out = s.ok(OWNER, &["runs", "list", "--status", "failed", "--json"]);
    let v: Value = serde_json::from_str(&out).unwrap();
    let runs = v["runs"].as_array().unwrap();
    assert_eq!(runs.len(), 1, "{out}");
    assert_eq!(runs[0]["runId"], FAILED_RUN);
    assert_eq!(
        runs[0]["jobs"],
        json!({"failed": 1, "skipped": 1, "pending": 1})
    );
    assert_eq!(runs[0]["durationMs"], 61500);
    let out = s.ok(OWNER, &["runs", "list", "--limit", "1", "--json"]);
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["runs"].as_array().unwrap().len(), 1);
    assert_eq!(v["runs"][0]["runId"], RUNNING_RUN);

    let out = s.run(OWNER, &["runs", "list", "--status", "done"]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.contains("HTTP 400: Validation error")
            && err.contains("status: \"done\" is not a run status"),
        "{err}"
    );

    let out = s.ok(OWNER, &["runs", "show", FAILED_RUN]);
    let logs = s.logs.display().to_string();
    for want in [
        format!("Run {FAILED_RUN}\n"),
        "  Workflow:       ci\n".into(),
        "  Status:         failed\n".into(),
        "  Failure:        job build failed\n".into(),
        "  Ref:            refs/heads/main @ 0123456789ab\n".into(),
        "  Duration:       1m01s\n".into(),
        format!("  Logs:           {logs}/kici-logs/executions/{FAILED_RUN}/\n"),
        "  build (linux) [failed] matrix {\"os\":\"linux\"} on agent-7 in 1.2s\n    error: step make exited with 2\n".into(),
        "    step 1: make [failed] in 900ms exit 2\n      error: make: *** Error 2\n".into(),
        format!("      log: {logs}/kici-logs/executions/{FAILED_RUN}/job-build (linux)/step-1.log\n"),
        "  test [skipped]\n    needs: build (linux)\n".into(),
        "  deploy [pending]\n    queue: pending after 2 attempt(s): no agent has the labels [gpu]".into(),
    ] {
        assert!(out.contains(&want), "missing {want:?} in:\n{out}");
    }

    let out = s.ok(OWNER, &["runs", "show", FAILED_RUN, "--json"]);
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["run"]["status"], "failed");
    assert_eq!(v["run"]["failureReason"], "job build failed");
    let jobs = v["jobs"].as_array().unwrap();
    assert_eq!(jobs.len(), 3);
    assert_eq!(jobs[0]["name"], "build (linux)");
    assert_eq!(jobs[0]["agentId"], "agent-7");
    assert_eq!(jobs[0]["matrixValues"], json!({"os": "linux"}));
    let steps = jobs[0]["steps"].as_array().unwrap();
    assert_eq!(steps.len(), 2);
    assert_eq!(steps[1]["exitCode"], 2);
    assert_eq!(
        steps[1]["log"]["key"],
        format!("kici-logs/executions/{FAILED_RUN}/job-build (linux)/step-1.log")
    );
    assert_eq!(steps[1]["log"]["storage"], "filesystem");
    assert_eq!(
        jobs[2]["queue"]["lastError"],
        "no agent has the labels [gpu]"
    );

    // Unknown and malformed IDs are both "not found", with a hint.
    for id in ["0190aaaa-0000-7000-8000-0000000000ff", "not-a-uuid"] {
        let out = s.run(OWNER, &["runs", "show", id]);
        assert_eq!(out.status.code(), Some(1));
        assert_eq!(
            stderr(&out).trim(),
            format!("Error: HTTP 404: Run not found: no run \"{id}\" (see kici-admin runs list for the IDs)")
        );
    }
}

#[test]
fn auditors_read_runs_and_scoped_tokens_see_only_their_key() {
    let s = setup();
    let auditor = s.token("auditor", None);
    let out = s.ok(&auditor, &["runs", "list", "--json"]);
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["runs"].as_array().unwrap().len(), 2);
    assert!(s
        .ok(&auditor, &["runs", "show", FAILED_RUN])
        .contains("Workflow:       ci"));
    // Reading is not cancelling.
    let out = s.run(&auditor, &["runs", "cancel", RUNNING_RUN]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains(r#"HTTP 403: Role "auditor" does not have permission"#),
        "{}",
        stderr(&out)
    );

    let scoped = s.token("admin", Some("github:77"));
    let v: Value = serde_json::from_str(&s.ok(&scoped, &["runs", "list", "--json"])).unwrap();
    let ids: Vec<&str> = v["runs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["runId"].as_str().unwrap())
        .collect();
    assert_eq!(ids, [RUNNING_RUN]);
    let out = s.run(&scoped, &["runs", "show", FAILED_RUN]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("HTTP 403: Access denied"),
        "{}",
        stderr(&out)
    );

    // Other methods on the read paths are 405, not 404.
    let r = admin(
        &s.d,
        OWNER,
        "DELETE",
        &format!("/runs/{FAILED_RUN}"),
        json!({}),
    );
    assert_eq!(r.status, 405);
    let r = admin(&s.d, OWNER, "POST", "/runs", json!({}));
    assert_eq!(r.status, 405);
}

#[test]
fn runs_cancel_ends_queued_jobs() {
    let s = setup();
    let out = s.ok(OWNER, &["runs", "cancel", FAILED_RUN]);
    assert!(
        out.starts_with(&format!("Run cancelled: {FAILED_RUN} (")),
        "{out}"
    );
    let out = s.run(
        OWNER,
        &["runs", "cancel", "0190aaaa-0000-7000-8000-0000000000ff"],
    );
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(stderr(&out).trim(), "Error: HTTP 404: Run not found");
}

#[test]
fn runs_help_needs_no_token() {
    for args in [
        &["runs", "--help"][..],
        &["runs", "list", "--help"],
        &["runs", "show", "--help"],
        &["runs", "cancel", "--help"],
    ] {
        let out = cli(args, &[]);
        assert!(out.status.success(), "{args:?}: {}", stderr(&out));
        assert!(
            stdout(&out).contains("Usage: kici-admin runs"),
            "{}",
            stdout(&out)
        );
    }
}
